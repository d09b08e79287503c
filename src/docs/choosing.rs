//! Choosing a policy.
//!
//! Two questions decide most cases: should the same key go to the same backend every time,
//! and can the backends' speed change without anyone telling the balancer? The answers below
//! come from lbkit's fleet simulator, `cargo run --release --example simulate`: 20 backends,
//! 3 of them 3x slower (and weighted so), one failing at 30% of the run, one turning 4x
//! slower at 50% with no weight saying so, one joining at 70%, Zipf-distributed keys and a
//! cache per backend. Its scenario, its full tables and the command behind every figure are
//! in `examples/simulate/README.md` in the repository; the figures quoted here are from its
//! default run (seed 1).
//!
//! ```
//! use std::time::Duration;
//! use lbkit::{Backend, HashRing, JumpHash, PeakEwma, PowerOfTwoChoices};
//!
//! let fleet = || (1..=4).map(|i| Backend::new(format!("10.0.0.{i}:80"), i));
//! // Requests without affinity: the default.
//! let requests = PowerOfTwoChoices::new(fleet())?;
//! // Backends whose latency changes: report latencies with `Pick::success`.
//! let by_latency = PeakEwma::builder()
//!     .default_latency(Duration::from_millis(5)) // near the latencies you expect
//!     .build(fleet())?;
//! // A cache: key affinity, and no backend above about 1.25 x its share of the requests
//! // in flight.
//! let cache = HashRing::builder().load_factor(1.25).build(fleet())?;
//! // Numbered shards of equal capacity, added and removed at the end of the list.
//! let shards = JumpHash::new((0..8).map(|i| Backend::new(format!("shard-{i}"), i)))?;
//! # let _ = (requests, by_latency, cache, shards);
//! # Ok::<(), lbkit::Error>(())
//! ```
//!
//! # Requests without affinity: a load-aware policy
//!
//! A fleet that is not perfectly uniform needs a policy that sees load. Of the request
//! policies only [`LeastConnections`](crate::LeastConnections),
//! [`PowerOfTwoChoices`](crate::PowerOfTwoChoices), [`PeakEwma`](crate::PeakEwma) and
//! [`Prequal`](crate::Prequal) do, and only they survived the simulated scenario: p99 of 42
//! to 47 ms, against 31 to 34 s for the others.
//!
//! * [`PowerOfTwoChoices`](crate::PowerOfTwoChoices) is the default for requests: within 2%
//!   of least connections at O(1) per pick instead of O(n).
//! * [`LeastConnections`](crate::LeastConnections) for long-lived connections and small sets,
//!   where its exact choice matters more than its scan. A backend that fails fast always has
//!   the fewest in flight, so it draws picks like a black hole: give it
//!   [outlier detection](super::passive_health).
//! * [`PeakEwma`](crate::PeakEwma) for backends whose latency changes. It also reads the
//!   latency each request reports ([`Pick::success`](crate::Pick::success)), so it notices a
//!   backend turning slow before its queue does: p99 43 ms and p99.9 78 ms, a fifth under
//!   P2C, for a little more queue depth (up to 18 in flight on one backend against 10 for
//!   P2C). It learns only from what you report.
//! * [`Prequal`](crate::Prequal) (YouTube's balancer) reads the same latency estimate and the
//!   same loads, but lexicographically: of 8 weighted candidates, those whose load per unit
//!   of weight is not above the 0.75 quantile of theirs, the one with the lowest expected
//!   latency (Peak EWMA's estimate x (in flight + 1) / weight). The lowest p99 (42 ms) and
//!   p99.9 (73 ms) of the request policies in the simulation, with 11 in flight at most on
//!   one backend; 8 candidates cost about twice Peak EWMA's pick. Like Peak EWMA, it learns
//!   only from what you report.
//! * The load-blind policies are only as good as their weights are current.
//!   [`WeightedRoundRobin`](crate::WeightedRoundRobin) and [`Random`](crate::Random) follow the
//!   weights, and did well until a backend slowed down unannounced; from then on its queue
//!   grew without bound. [`RoundRobin`](crate::RoundRobin) ignores weights: alike backends,
//!   alike requests.
//!
//! # Keyed requests: a hashing policy, with bounded loads
//!
//! When the same key should reach the same backend (a cache, a session, a shard), hash it:
//! [`Request::with_key`](crate::Request::with_key). Every request policy got the same 45.3%
//! cache hit rate in the simulation; the hashing policies got 74.6% (75.1% for jump), and a
//! p50 of 2.1 to 2.5 ms against 3.1 to 4.6 ms.
//!
//! Without a bound a hashing policy cannot shed load: when one backend slowed down its keys
//! kept coming, and p99 reached 6.3 s to 24 s. Bounded loads (`load_factor(c)` on the
//! builders of [`HashRing`](crate::HashRing), [`Maglev`](crate::Maglev),
//! [`Rendezvous`](crate::Rendezvous) and [`PresetRing`](crate::PresetRing); see
//! [`hash`](crate::hash#bounded-loads)) pass over a backend that already holds about `c`
//! times its share of the requests in flight, to the key's next choice. At `c = 1.25` they gave
//! up 8.5 to 8.6 points of hit rate and held p99 at 39 to 40 ms. Use them when a key can be
//! served elsewhere at some cost (a cache miss); leave them off when it cannot (a shard owns
//! its data).
//!
//! * [`HashRing`](crate::HashRing): affinity under churn. A change moves only the keys it must
//!   (while the lightest weight stays, or always with a fixed
//!   [`weight_unit`](crate::Builder::weight_unit)); weights; replicas in ring order
//!   ([`pick_n`](crate::Balancer::pick_n)).
//! * [`Maglev`](crate::Maglev): an O(1) lookup (one table slot) that stays fast at any size,
//!   and tight balance, for a few percent more keys moved than the minimum on a change.
//! * [`Rendezvous`](crate::Rendezvous): exact shares, exact minimal disruption, top-n
//!   replicas; O(n) per pick, so up to thousands of backends.
//! * [`PresetRing`](crate::PresetRing): to agree key for key with nginx or a ketama memcached
//!   client ([presets](super::presets)).
//! * [`JumpHash`](crate::JumpHash): numbered shards of equal capacity whose count changes at the
//!   end of the list. It numbers backends in list order (the one order-dependent policy),
//!   ignores weights above 0, and has no bounded loads.
//!
//! # Then, for any policy
//!
//! * If a backend can fail without service discovery saying so, report outcomes and add
//!   passive health: [`passive_health`](super::passive_health). If backends can turn slow
//!   without failing, add soft health ([`SoftHealth`](crate::SoftHealth)); if they can fail
//!   fast, give least connections or P2C a failure penalty.
//! * If thousands of clients share thousands of backends, give each client a subset
//!   ([`subset`](crate::subset)): deterministic aperture for even load, rendezvous
//!   subsetting for the least churn.
//! * To watch ejections, panic mode and updates as they happen, give the builder an
//!   [`observer`](crate::observe).
//! * If keys come from untrusted clients, read [`hash_flooding`](super::hash_flooding).
//! * Costs per pick and per update are in each policy's docs, and measured in
//!   `benches/README.md`.
