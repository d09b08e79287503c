//! The placement hash, precisely.
//!
//! Where a key goes must not depend on the process, the platform, the Rust version or the
//! crate version, or a fleet of service instances would disagree. Every hash that decides
//! placement in lbkit is **XXH3-64** (the 64-bit variant of xxHash3, as specified by its
//! author and implemented by `xxhash-rust`, pinned to one version in `Cargo.toml`) with one of
//! two fixed seeds:
//!
//! * a key's bytes: `XXH3_64bits_withSeed(key, 0x6c62_6b69_745f_6b65)`
//!   ([`key_hash`](crate::hash::key_hash));
//! * a backend id's UTF-8 bytes: `XXH3_64bits_withSeed(id, 0x6c62_6b69_745f_6964)`
//!   ([`id_hash`](crate::hash::id_hash)).
//!
//! (The seeds are the ASCII bytes of `"lbkit_ke"` and `"lbkit_id"`, big-endian.) Golden
//! tests pin exact outputs, so a change that would move keys fails the test suite.
//! [`mix`](crate::hash::mix) combines two 64-bit values for the policies that derive points,
//! offsets or scores from them. Each policy's module documents its exact derivation, precisely
//! enough to reproduce a mapping in another language; the crate's tests check the balancers
//! against such reimplementations written from the docs alone.
//!
//! ```
//! use lbkit::hash::{id_hash, key_hash, mix, ID_SEED, KEY_SEED};
//!
//! assert_eq!(KEY_SEED.to_be_bytes(), *b"lbkit_ke");
//! assert_eq!(ID_SEED.to_be_bytes(), *b"lbkit_id");
//! // The golden values; the first two agree with the Python `xxhash` package, e.g.
//! // xxhash.xxh3_64_intdigest(b"user-42", seed=0x6c626b69745f6b65).
//! assert_eq!(key_hash(b"user-42"), 0x4ff1_7b6b_7ea9_71e2);
//! assert_eq!(id_hash("10.0.0.1:80"), 0xa2f6_7058_4d03_bfb9);
//! assert_eq!(mix(1, 2), 0xb0ca_ed0a_7bf9_c2c8);
//! ```
//!
//! A request keyed with [`Request::with_hash`](crate::Request::with_hash) skips `key_hash`:
//! its 64-bit value is used as the key's hash (the presets take its low 32 bits).
//!
//! # Each policy's exact derivation
//!
//! * [`HashRing`](crate::HashRing): the points and the successor rule, in
//!   [`hash::ring`](crate::hash::ring#exact-derivation-to-reproduce-a-mapping-in-another-language).
//! * [`Maglev`](crate::Maglev): offsets, skips, the population order and the lookup, in
//!   [`hash::maglev`](crate::hash::maglev#exact-derivation).
//! * [`Rendezvous`](crate::Rendezvous): the raw score, weight classes and the pinned logarithm,
//!   in [`hash::rendezvous`](crate::hash::rendezvous#exact-derivation).
//! * [`JumpHash`](crate::JumpHash): the probes and the walk, in
//!   [`hash::jump`](crate::hash::jump#exact-derivation).
//! * [`PresetRing`](crate::PresetRing): not lbkit's hash but the other program's, point for
//!   point: each variant of [`Preset`](crate::hash::Preset) gives its recipe (see also
//!   [presets](super::presets)).
//!
//! Two of them by hand, from those derivations: with equal weights, `Rendezvous` sends a key
//! to the backend with the highest `mix(key_hash(key), id_hash(id))`; `JumpHash`, with every
//! backend eligible, to the backend numbered `jump_hash(key_hash(key), n)` in list order.
//!
//! ```
//! use lbkit::hash::{id_hash, jump_hash, key_hash, mix};
//! use lbkit::{Backend, Balancer, JumpHash, Rendezvous, Request};
//!
//! let ids = ["cache-a:11211", "cache-b:11211", "cache-c:11211", "cache-d:11211"];
//! let rendezvous = Rendezvous::new(ids.map(|id| Backend::new(id, ())))?;
//! let jump = JumpHash::new(ids.map(|id| Backend::new(id, ())))?;
//! for key in ["user-1", "user-2", "user-42", "session:9f86d081"] {
//!     let h = key_hash(key.as_bytes());
//!     let highest = ids.iter().max_by_key(|id| mix(h, id_hash(id))).unwrap();
//!     assert_eq!(rendezvous.pick(&Request::with_key(key)).unwrap().id(), *highest);
//!     let bucket = jump_hash(h, ids.len() as u32) as usize;
//!     assert_eq!(jump.pick(&Request::with_key(key)).unwrap().id(), ids[bucket]);
//! }
//! # Ok::<(), lbkit::Error>(())
//! ```
