//! Drop-in presets: nginx, libmemcached, Envoy and proxyless gRPC.
//!
//! [`PresetRing::envoy_ring_hash`](crate::PresetRing::envoy_ring_hash),
//! [`grpc_ring_hash`](crate::PresetRing::grpc_ring_hash) and
//! [`envoy_maglev`](crate::PresetRing::envoy_maglev) send every key where Envoy's `RING_HASH`,
//! gRPC's `ring_hash` (gRFC A42/A76) and Envoy's `MAGLEV` would, so a Rust service agrees with
//! the Envoy sidecars beside it. Backend ids are the hosts' hash keys (`ip:port`, or the
//! `hash_key` metadata); the request hash is theirs: `Request::with_key(header_value)` hashes
//! the value with XXH64 (seed 0), as Envoy's header hash policy and gRPC's
//! `request_hash_header` do for one value, and `Request::with_hash(h)` takes a 64-bit hash
//! computed elsewhere. Ring and table sizes are set on the builder
//! (`minimum_ring_size`, `maximum_ring_size`, `table_size`), with the programs' defaults.
//! `tests/presets.rs` checks them against the expected values of Envoy's own tests and
//! 260,000 keys over 13 server sets recorded by an independent model of the published
//! algorithms (`scripts/record-envoy.py`, re-run in CI), with zero mismatches. The exact
//! recipes, and when Envoy's host order can make its ring differ, are in
//! [`Preset`](crate::Preset). To see what a migration moves:
//! `cargo run --release --example route -- --algo nginx --diff grpc-ring-hash --backends
//! 10.0.0.1:80,10.0.0.2:80 --keys keys.txt`.
//!
//! [`PresetRing::nginx(backends)`](crate::PresetRing::nginx) sends every key where nginx's
//! `hash $key consistent` would, and [`PresetRing::ketama(backends)`](crate::PresetRing::ketama)
//! where libmemcached's weighted ketama would, byte for byte, so a Rust service can take over
//! traffic from nginx, or sit beside C/PHP/Python/Java memcached clients, without a cold
//! cache. Backend ids are the `host:port` names those programs are configured with. Both are
//! ordinary balancers (health, `pick_n` in nginx's retry order, bounded loads).
//! `tests/presets.rs` replays 45,000 keys recorded from nginx 1.22.1 and libmemcached 1.1.4
//! (`tests/data/compat`) with zero mismatches, and CI re-records them from the real programs
//! (`scripts/check-compat.sh`). Try it: `cargo run --release --example route -- --algo
//! nginx --backends 10.0.0.1:80,10.0.0.2:80=2 --keys -`.
//!
//! ```
//! use lbkit::{Backend, Balancer, PresetRing, Request};
//!
//! // Where nginx 1.22.1 sent `GET /user:00000000` (tests/data/compat/nginx-three.tsv): the
//! // key is the value of the `hash` directive's expression, here `$request_uri`.
//! let nginx = PresetRing::nginx(
//!     ["127.0.0.1:18100", "127.0.0.1:18101", "127.0.0.1:18102"].map(|id| Backend::new(id, ())),
//! )?;
//! assert_eq!(nginx.pick(&Request::with_key("/user:00000000")).unwrap().id(), "127.0.0.1:18100");
//!
//! // Where libmemcached 1.1.4 sent the key `user:00000001`
//! // (tests/data/compat/ketama-three.tsv).
//! let ketama = PresetRing::ketama(
//!     ["cache-a.internal:11211", "cache-b.internal:11211", "cache-c.internal:11211"]
//!         .map(|id| Backend::new(id, ())),
//! )?;
//! let pick = ketama.pick(&Request::with_key("user:00000001")).unwrap();
//! assert_eq!(pick.id(), "cache-c.internal:11211");
//! # Ok::<(), lbkit::Error>(())
//! ```
//!
//! # What must match
//!
//! * **Ids**: nginx's `server` directive's address as written; for libmemcached, host and
//!   port, a missing port meaning 11211.
//! * **Weights**: the programs' weights, as [`Backend::with_weight`](crate::Backend::with_weight).
//! * **Keys**: [`Request::with_key`](crate::Request::with_key) hashes the bytes as the program
//!   does (for nginx, the value of the `hash` directive's expression, e.g. `$request_uri` with
//!   its leading `/`). [`Request::with_hash`](crate::Request::with_hash) takes the low 32 bits
//!   of its value as that hash, already computed.
//!
//! The compatible mapping holds whenever every backend is eligible and no load bound is
//! configured; a backend that is down moves its keys to the next distinct server on the ring,
//! which is what nginx's retries do too. Each program's exact recipe, and the versions it was
//! checked against, are in the docs of [`Preset`](crate::hash::Preset).
//!
//! Bounded loads and passive health work on top, through the builder:
//!
//! ```
//! use lbkit::hash::Preset;
//! use lbkit::{Backend, HealthConfig, OutlierDetection, PresetRing};
//!
//! let ring = PresetRing::builder(Preset::Ketama)
//!     .load_factor(1.25)
//!     .health(HealthConfig::new().outlier_detection(OutlierDetection::default()))
//!     .build([Backend::new("10.0.0.1:11211", ()), Backend::new("10.0.0.2:11211", ())])?;
//! # let _ = ring;
//! # Ok::<(), lbkit::Error>(())
//! ```
//!
//! Cost: as [`HashRing`](crate::HashRing) (the same radix-indexed ring) plus the program's key
//! hash: CRC-32 for nginx, MD5 for ketama.
