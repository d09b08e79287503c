//! Consistent hashing: the pinned placement hash, and the policies that send the same key to
//! the same backend.
//!
//! A keyed request ([`Request::with_key`](crate::Request::with_key) or
//! [`Request::with_hash`](crate::Request::with_hash)) goes to the same backend for as long as
//! the set allows, and when a backend joins or leaves, few keys move. Every instance of a
//! service computes the same mapping from the same set of (id, weight) pairs, whatever the
//! order it learned them in, its platform or its version of lbkit.
//!
//! ```
//! use lbkit::{Backend, Balancer, Health, Maglev, Rendezvous, Request};
//!
//! let backends = || (1..=4).map(|i| Backend::new(format!("cache-{i}"), i));
//! // Every process that builds from the same (id, weight) set agrees on every key.
//! let a = Rendezvous::new(backends())?;
//! let b = Rendezvous::new(backends().rev())?; // another order: the same mapping
//! let key = Request::with_key("user-42");
//! let home = a.pick(&key).unwrap().id().to_owned();
//! assert_eq!(b.pick(&key).unwrap().id(), home);
//!
//! // Replicas: the top 2, the first being `pick`'s.
//! let replicas = a.pick_n(&key, 2);
//! assert_eq!(replicas[0].id(), home);
//! drop(replicas);
//!
//! // A backend going down moves only its own keys, and they come back.
//! a.set_health(&home, Health::Down)?;
//! assert_ne!(a.pick(&key).unwrap().id(), home);
//! a.set_health(&home, Health::Up)?;
//! assert_eq!(a.pick(&key).unwrap().id(), home);
//!
//! // Bounded loads: one hot key held 40 times spreads over several backends, none above
//! // ceil(1.25 x 40 / 4) = 13.
//! let lb = Maglev::builder().load_factor(1.25).build(backends())?;
//! let held: Vec<_> = (0..40).map(|_| lb.pick(&key).unwrap()).collect();
//! assert!(lb.status().iter().all(|s| s.in_flight() <= 13));
//! # drop(held);
//! # Ok::<(), lbkit::Error>(())
//! ```
//!
//! | policy | pick | update | memory | minimal disruption | choose it for |
//! |---|---|---|---|---|---|
//! | [`HashRing`] | O(1) (radix index) | O(points) | ~17 B x points | yes, while the lightest weight stays (or with a fixed `weight_unit`) | churn, weights, replicas in ring order |
//! | [`Maglev`] | O(1) (one table slot) | O(M log M) | 4 B x M | no (a few % extra) | fastest lookups, tight balance |
//! | [`Rendezvous`] | O(n) | O(n log n) | 12 B x n | yes, exact | exact shares, top-n replicas, up to ~1000s |
//! | [`JumpHash`] | O(log n), no table | O(n) | 4 B x n | yes, at the end of the list | numbered shards (order dependent) |
//! | [`PresetRing`] | O(1) + the program's key hash | O(points) | as `HashRing` | yes | agreeing with nginx or libmemcached ([`preset`]) |
//!
//! Timings, with the commands that reproduce them: `benches/README.md`.
//!
//! # What every hashing policy does
//!
//! * **Walking on.** Each policy defines, for each key, an order of preference over the
//!   backends (see each module's "Exact derivation"). A pick takes the first backend in that
//!   order that is eligible: `Down`, `Draining` and weight-0 backends are passed over. The
//!   tables are built over all backends, healthy or not, so a backend going down moves only
//!   its own keys (to their next preference), they come back when it is up, and a health
//!   change costs no rebuild.
//! * **Steering and caps.** A backend the request [avoids](crate::Request::avoid), or one
//!   at its [`max_in_flight`](crate::Backend::with_max_in_flight) cap, is walked past
//!   exactly as an ineligible one, for this request only: the key takes its next
//!   preference and no other key moves (HAProxy's `hash-preserve-affinity maxconn`).
//!   Bounded loads apply on top, their capacities computed over the eligible backends as
//!   always. When every eligible backend with room is avoided, the avoid list is ignored.
//! * **`pick_n`** returns distinct eligible backends: the k-th is the first in the key's
//!   order not among the first k - 1 (with room, under bounded loads). The first is the one
//!   `pick` returns.
//! * **Requests without a key** are spread at random: each draws a 64-bit value from a
//!   per-thread SplitMix64 stream, seeded by the builder's `seed` (or `JumpHash::with_seed`),
//!   and is then placed as a key with that hash.
//! * **Errors.** Constructors and builders check their configuration (`Err`
//!   [`Error::InvalidConfig`](crate::Error::InvalidConfig) naming the parameter), and so does
//!   every update (a Maglev table smaller than the set, a ring whose `max_points` cannot give
//!   every backend a point): on
//!   error nothing changes.
//!
//! # Bounded loads
//!
//! Consistent hashing with bounded loads (Mirrokni, Thorup and Zadimoghaddam, SODA 2018; as
//! HAProxy's `hash-balance-factor` and Envoy's `hash_balance_factor`), for [`HashRing`],
//! [`Maglev`] and [`Rendezvous`] through their builders' `load_factor(c)`, off unless set.
//! With load factor `c >= 1`, no pick goes to a backend `i` whose in-flight count is already
//! at or above
//!
//! ```text
//! capacity_i = ceil(c x (total + 1) x w_i / W)
//! ```
//!
//! where `total` counts the picks held on eligible backends (in a `pick_n`, its earlier picks
//! included), `w_i` is the backend's weight and `W` the sum of the eligible weights; the key
//! walks on to its next preference instead. A hot key therefore spills over to its second,
//! third, ... choices, and no backend carries more than about `c` times its share. Envoy
//! recommends `c` between 1.2 and 2.0: lower spreads more evenly and moves more keys off
//! their first choice.
//!
//! The capacities add up to at least `c x (total + 1) > total`, so some eligible backend
//! always has room, and every policy's order reaches every backend: a pick always finds one
//! within its capacity. Only two cases can find none, and then the key takes its first
//! eligible preference regardless of load: counts that other threads change during the pick
//! (each count is read once, at a slightly different instant), and the later picks of a
//! `pick_n` after its earlier ones took the only backends with room (distinct results win).
//!
//! The test is exact, in integers: `c` is taken as `ceil(c x 2^32) / 2^32` (at most 2^-32
//! above `c`; factors above about 4.29e9 all act as that value), and since an integer count
//! `m` is at least `ceil(q)` exactly when it is at least `q`, a backend is full when
//! `in_flight_i x W x 2^32 >= ceil(c x 2^32) x (total + 1) x w_i`, both sides computed in
//! 192 bits. Nothing overflows, nothing else is rounded.
//!
//! Cost: a candidate with nothing in flight always has room (its capacity is at least 1),
//! and is taken at no extra cost. Otherwise the pick sums the in-flight counts of the
//! eligible backends once (O(n), one counter per backend; `cargo bench --bench hashing`, group
//! `bounded/1000`, measures it against the unbounded pick over the same load);
//! a running total kept beside the per-backend counters would make that O(1), but it would
//! have to stay exact across health changes, updates and picks released after their backend
//! left the set, and would add a shared, contended cache line to every pick and release of
//! every policy. Bounded loads are for keyed traffic that can go elsewhere at some cost
//! (caches), where an O(n) sum at a thousand backends is cheap next to a cache miss.
//!
//! # More
//!
//! * [`docs::placement`](crate::docs::placement): the placement hash, precisely, and how to
//!   reproduce any mapping in another language.
//! * [`docs::hash_flooding`](crate::docs::hash_flooding): what an attacker who controls keys
//!   can do, and what limits it (bounded loads, a keyed hash).

pub(crate) mod compat;
mod crc32;
pub(crate) mod envoy;
mod md5;

pub mod jump;
pub mod maglev;
mod points;
pub mod preset;
pub mod rendezvous;
pub mod ring;
mod walk;

pub use jump::{jump_hash, JumpHash, JumpHashConfig};
pub use maglev::{Maglev, MaglevConfig};
pub use preset::{Preset, PresetRing, PresetRingConfig};
pub use rendezvous::{Rendezvous, RendezvousConfig};
pub use ring::{HashRing, HashRingConfig};

pub use crate::placement::{id_hash, key_hash, mix, ID_SEED, KEY_SEED};

/// Whether `n` is prime (trial division; `n` is a table size, at most a few million).
pub(crate) fn is_prime(n: u32) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n % 2 == 0 {
        return false;
    }
    let mut d = 3u32;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}
