//! Hash flooding: keys chosen by an attacker.
//!
//! The placement hash is pinned and unkeyed on purpose (every instance of a fleet must agree,
//! see [placement](super::placement)), so anyone can compute it: an attacker who controls
//! request keys (a user id, a URL, a header) can search offline for keys that all land on one
//! backend of a known set (a few x n tries per key for n equal backends) and send them all.
//! They can also send one key over and over (a hot key), which no hash can spread. Either way,
//! without bounded loads, every such request goes to that one backend: it takes the whole
//! flood while the others idle. Ids are hashed too, but they come from the operator, not the
//! attacker.
//!
//! What limits the damage:
//!
//! * **Bounded loads** ([`HashRing`](crate::HashRing), [`Maglev`](crate::Maglev),
//!   [`Rendezvous`](crate::Rendezvous), [`PresetRing`](crate::PresetRing) with
//!   `load_factor(c)`): no backend takes a new pick while it holds
//!   `ceil(c x (total + 1) x w_i / W)` or more (see
//!   [bounded loads](crate::hash#bounded-loads)), so a hot key, or a flood of colliding keys,
//!   spills to each key's next preferences once its backend is at capacity. With equal
//!   weights, no backend ever holds more than `ceil(c x k / n)` of `k` held picks
//!   (tests/hostile.rs checks it for c = 1.25: 1,000 picks of one key on 8 backends, at most
//!   157 on any, against all 1,000 on one without bounds; the example below is the same
//!   check). The cap counts requests *in flight*: it protects the backends' concurrency, not
//!   their caches (the spilled keys miss on their second choice), and it needs picks held for
//!   as long as the requests run. [`JumpHash`](crate::JumpHash) has no bounded loads.
//! * **A keyed hash**: when keys come from untrusted clients, hash them yourself with a
//!   keyed hash (SipHash-1-3 or keyed BLAKE3, say) under a secret, and route with
//!   [`Request::with_hash`](crate::Request::with_hash). Without the secret an attacker cannot
//!   aim keys at a backend (they can still send one hot key: bounded loads handle that). The
//!   price is the fleet agreement this crate otherwise gives for free: every process that
//!   must send a key to the same backend has to share the secret (and rotating it moves
//!   every key at once).
//! * Rate limiting per key or per client, upstream of the balancer, for floods that would
//!   overload the whole set anyway: bounded loads spread load, they do not shed it.
//!
//! Keys of any length are accepted (the hash reads every byte, so a pick costs time linear in
//! the key's length; cap key lengths upstream if that matters), and nothing an attacker
//! sends as a key can make a pick fail or panic.
//!
//! ```
//! use lbkit::{Backend, Balancer, HashRing, Request};
//!
//! // One hot key held 1,000 times on 8 equal backends, c = 1.25: no backend holds more than
//! // ceil(1.25 x 1000 / 8) = 157 of them.
//! let lb = HashRing::builder()
//!     .load_factor(1.25)
//!     .build((0..8).map(|i| Backend::new(format!("10.0.0.{i}:80"), ())))?;
//! let held: Vec<_> = (0..1000).map(|_| lb.pick(&Request::with_key("hot")).unwrap()).collect();
//! assert!(lb.status().iter().all(|s| s.in_flight() <= 157));
//! drop(held);
//! # Ok::<(), lbkit::Error>(())
//! ```
