//! Guides: the explanations that span several policies. Documentation only, no items.
//!
//! Each type's own docs say what it does and what it costs; these pages say how the pieces
//! fit together and how to choose among them.
//!
//! * [`choosing`]: which policy for which traffic, decided in a few questions, with pointers
//!   to the simulation behind the advice.
//! * [`passive_health`]: reporting outcomes ([`Pick::success`](crate::Pick::success),
//!   [`Pick::failure`](crate::Pick::failure)), what outlier ejection, the panic threshold and
//!   slow start each do with them, and what a timeout outside the balancer means.
//! * [`placement`]: the pinned placement hash, precisely, and where each hashing policy's
//!   exact derivation is, to reproduce a mapping in another language.
//! * [`hash_flooding`]: what an attacker who chooses the keys can do to the hashing policies,
//!   and what limits the damage.
//! * [`tiers`]: priority levels (backup tiers), degraded backends, panic per level and
//!   locality weights, as Envoy defines them, for every policy.
//! * [`presets`]: drop-in mappings of nginx's `hash $key consistent` and libmemcached's
//!   weighted ketama, to take over traffic without cold caches.
//!
//! Outside the API docs, in the repository: `examples/simulate/README.md` (the simulator's
//! scenario and every result table, each with its command), `benches/README.md` (timings, each
//! with its command) and `CONTRIBUTING.md` (the checks CI runs, and the stress evidence).

pub mod choosing;
pub mod hash_flooding;
pub mod passive_health;
pub mod placement;
pub mod presets;
pub mod tiers;
