//! Passive health: reporting outcomes, and the rules that act on them.
//!
//! A balancer learns about its backends in two ways. Service discovery and active health
//! checks tell it: [`Balancer::update`](crate::Balancer::update),
//! [`Balancer::set_health`](crate::Balancer::set_health), and
//! [`Backend::with_health`](crate::Backend::with_health) for a backend that joins already
//! [`Draining`](crate::Health::Draining) or [`Down`](crate::Health::Down). And the requests
//! themselves report how they went. This guide is about the second way: it needs no
//! health-check traffic, and it notices what discovery does not see, such as a backend that
//! is up but answers every request with an error.
//!
//! # Reporting outcomes
//!
//! Every policy reacts to what requests report, on the same lock-free pick path. A
//! [`Pick`](crate::Pick) ends in one of three ways, and each releases its in-flight slot:
//!
//! * [`pick.success(latency)`](crate::Pick::success): resets the backend's run of failures,
//!   and feeds its latency estimate if the policy keeps one ([`PeakEwma`](crate::PeakEwma),
//!   [`Prequal`](crate::Prequal)) and soft health's latency average if it is on.
//! * [`pick.failure()`](crate::Pick::failure) (or [`failure_of`](crate::Pick::failure_of),
//!   saying what kind): one more failure in a row; enough of them eject the backend if
//!   outlier detection is configured. For `PeakEwma` and `Prequal` it is a latency of at
//!   least their failure penalty; for least connections and P2C with a failure penalty, a
//!   request in flight that fades (below).
//! * dropping it: reports nothing (`PeakEwma` and `Prequal` take the time it was held as a
//!   latency).
//!
//! ```
//! use std::time::{Duration, Instant};
//! use lbkit::{Backend, Balancer, HealthConfig, OutlierDetection, PowerOfTwoChoices, Request,
//!             SlowStart};
//!
//! /// Stands in for your client.
//! fn call(addr: &str) -> Result<String, String> {
//!     Ok(format!("reply from {addr}"))
//! }
//!
//! let backends = [Backend::new("a", "10.0.0.1:80"), Backend::new("b", "10.0.0.2:80")];
//! let lb = PowerOfTwoChoices::builder()
//!     .health(
//!         HealthConfig::new()
//!             // 5 failures in a row: out for 30 s, then 60 s, ...
//!             .outlier_detection(OutlierDetection::default())
//!             // under half of the backends healthy: use them all
//!             .panic_threshold(0.5)
//!             // newcomers, and backends back from ejection, ramp up over 30 s
//!             .slow_start(SlowStart::new(Duration::from_secs(30))),
//!     )
//!     .build(backends)?;
//! let pick = lb.pick(&Request::new()).expect("a backend is eligible");
//! let started = Instant::now();
//! match call(*pick) {
//!     Ok(_) => pick.success(started.elapsed()), // feeds PeakEwma's latency estimate too
//!     Err(_) => pick.failure(),                 // counts toward ejection
//! }
//! # Ok::<(), lbkit::Error>(())
//! ```
//!
//! The rules are a [`HealthConfig`](crate::HealthConfig), nothing enabled by default, given to
//! a builder's `.health(config)` or, while the balancer serves, to
//! [`Balancer::set_health_config`](crate::Balancer::set_health_config) (which also works
//! through an `Arc<dyn Balancer<T>>`; a new clock restarts everything measured in time:
//! ejections, ramps, latency estimates). Each value is checked, and an error names the first
//! one out of range.
//!
//! # What each rule does
//!
//! * **Outlier ejection** ([`OutlierDetection`](crate::OutlierDetection), as Envoy's): after
//!   `consecutive_failures` failures in a row (default 5) a backend is ejected for
//!   `base_ejection_time x n` (default 30 s; n = how many times it was ejected, lowered by one
//!   for every `base_ejection_time` it spent in service since its last ejection; capped at
//!   `max_ejection_time`, default 300 s), and returns by itself when the time is up. Never
//!   more than `max_ejection_percent` of the set (default 10) is ejected at once (at least
//!   one backend may always be). [`Status::is_ejected`](crate::Status::is_ejected) shows it.
//!   A success resets the run of failures.
//! * **Panic threshold** (Envoy's): when fewer than this share of the backends that could
//!   serve (weight above 0, not draining) are healthy (up and not ejected), health is ignored
//!   and every one of them is eligible again, rather than crushing the survivors. Backends
//!   that are draining or of weight 0 stay out: that was the operator's decision.
//! * **Slow start** ([`SlowStart`](crate::SlowStart), Envoy's formula): a backend that joins by
//!   an update (not the initial set) or returns from ejection ramps its effective weight from
//!   `weight x min_weight_percent` to `weight` over `window`, as
//!   `weight x max(min_weight_percent / 100, (t / window)^(1 / aggression))` (defaults:
//!   `aggression` 1.0, a straight line; `min_weight_percent` 10). Slow start reaches the
//!   hashing policies through bounded loads: a joining cache node takes its keys gradually.
//!
//! The hashing policies pass over an ejected backend as over a `Down` one: its keys walk on
//! to their next preference, and come back when it returns.
//!
//! These rules change which backends are eligible and with what weight, so they act where the
//! snapshot is built: a report that crosses the failure threshold marks the balancer for a
//! rebuild, the next pick rebuilds (under the writer lock, never blocking other picks), and
//! time-based changes (an ejection ending, a slow start ramping) are noticed by a sampled clock
//! check on the pick path that runs only while such a change is due. Time enters through a
//! [`Clock`](crate::Clock) ([`ManualClock`](crate::ManualClock) in tests); the pick path never
//! reads the system clock except on a sample of picks while an ejection or a ramp is due.
//!
//! ```
//! use std::time::Duration;
//! use lbkit::{Backend, Balancer, HealthConfig, ManualClock, OutlierDetection, Request,
//!             RoundRobin};
//!
//! let clock = ManualClock::new();
//! let lb = RoundRobin::builder()
//!     .health(
//!         HealthConfig::new()
//!             .outlier_detection(OutlierDetection::default())
//!             .clock(clock.clone()),
//!     )
//!     .build([Backend::new("a", ()), Backend::new("b", ())])?;
//!
//! // "a" fails 5 times in a row ("b" succeeds in between, which does not reset "a").
//! let mut failures = 0;
//! while failures < 5 {
//!     let pick = lb.pick(&Request::new()).unwrap();
//!     if pick.id() == "a" {
//!         pick.failure();
//!         failures += 1;
//!     } else {
//!         pick.success(Duration::from_millis(1));
//!     }
//! }
//! // Ejected for 30 s: every pick goes to "b".
//! assert!((0..10).all(|_| lb.pick(&Request::new()).unwrap().id() == "b"));
//! assert!(lb.status().iter().any(|s| s.id() == "a" && s.is_ejected()));
//!
//! // When the time is up, "a" returns by itself.
//! clock.advance(Duration::from_secs(30));
//! assert!((0..10).any(|_| lb.pick(&Request::new()).unwrap().id() == "a"));
//! # Ok::<(), lbkit::Error>(())
//! ```
//!
//! # Timeouts outside the balancer
//!
//! A pick is a counter, not a connection: lbkit has no timeouts of its own. When your client
//! gives up on an attempt, what you do with the pick decides what the balancer learns.
//!
//! * **Report it as a failure** (`pick.failure()`). Outlier detection counts failures, not
//!   latency, so a slow backend is ejected only when your timeouts turn its slowness into
//!   failures. In the simulation below, a backend that turned 4x slower unannounced was
//!   ejected this way under `WeightedRoundRobin` and `Random`; under the load-aware policies
//!   its queue never reached the timeout, so the rules had nothing to act on there.
//! * **Drop it** without a report (what `lbkit::service`, feature `tower`, does when a
//!   response future is dropped before it completes: a timeout, a cancelled request). The
//!   slot is released and nothing is counted: the run of failures is neither extended nor
//!   reset, and no latency is learnt.
//!
//! Either way the slot is released at once, while the backend may still be working on the
//! abandoned request: until it finishes, the backend carries more than its in-flight count
//! shows. Retry through a new pick that avoids the backends already tried
//! ([`Request::avoid`](crate::Request::avoid); through the tower middleware, an
//! `lbkit::service::Attempts` record): without it, a hashing policy picks the same backend
//! again for as long as it is eligible (and, with bounded loads, has room).
//!
//! # What the rules did in the simulation
//!
//! `cargo run --release --example simulate` prints a second table, *passive health*: a backend
//! fails silently (it stays `Up` and answers every request with an error after 1 ms), another
//! turns 4x slower, attempts time out after 1 s, each request is tried at most 3 times (each
//! retry avoiding the backends already tried), and every policy runs without health rules and
//! then with outlier detection (5 failures in a
//! row, 30 s x ejections, at most 20% ejected), a panic threshold of 0.5 and a 10 s slow start.
//! The table and the full discussion are in `examples/simulate/README.md`; in short:
//!
//! * **A failing backend**: errors fell from 36,027 to 226,259 (depending on the policy) to
//!   10 to 13, and no request failed. Without the rules `LeastConnections` was the worst, as
//!   a backend that fails in 1 ms always has the fewest in flight.
//! * **Retries that avoid the tried backends**: with retries that are fresh picks instead, a
//!   hashing policy retried each key of the failing backend there, so 3.8% to 12.1% of the
//!   requests failed all 3 tries; avoiding, none did (126 for `JumpHash`, whose tries timed
//!   out on its slow backends), as with the load-aware policies.
//! * **The p99 of successes hides failures**: with fresh retries and no rules the hashing rows
//!   looked fast because the requests that would have been slow failed instead.
//! * **The ejection cap**: under `RoundRobin` the slow backends timed out and were ejected too,
//!   which filled the 20% cap, so the failing backend could be ejected only half of the time.
//!   The cap exists so that a bad rule cannot eject the fleet; size it above the number of
//!   backends that can be bad at once.
//! * **Slow start** is not isolated by that run: the table compares all three rules together
//!   against none.
//!
//! # Slow backends: soft health
//!
//! Outlier detection counts failures, so a backend that turns slow keeps its full share until
//! its requests time out, is ejected, returns, and is ejected again. Soft health
//! ([`HealthConfig::soft_health`](crate::HealthConfig::soft_health), [`SoftHealth`]) instead
//! lowers a weight multiplier for a backend whose mean latency or failure share is worse than
//! its peers' median (by as much as it is worse, at once), raises it by half again per
//! interval once it is as good, and holds it in a band between. It acts through weights:
//! the weighted request policies, the load-aware ones (which compare load per weight), and
//! the hashing policies' bounded loads.
//!
//! `cargo run --release --example simulate -- --soft-health`: a backend turns 4x slower,
//! attempts time out after 1 s; with the ejection rules alone weighted round robin's p99.9 is
//! 1,001 ms with 1,165 timeouts, and the slow backend is ejected 75% of the time (flapping in
//! and out); with soft health added, 78.9 ms, no timeout, never ejected, and p99 41.6 ms
//! against 42.3 for least connections (the table is in `examples/simulate/README.md`, with
//! the price: backends slow by design, relative to the median, fall to the floor unless
//! `latency_tolerance` is above their spread).
//!
//! [`SoftHealth`]: crate::SoftHealth
//!
//! # Backends that fail fast: failures as load
//!
//! A backend that answers every request with an error in 1 ms holds its requests briefly, so
//! to least connections and P2C it looks idle, and it draws traffic like a black hole until
//! it is ejected. `LeastConnections::builder().failure_penalty(d)` (and the same for
//! `PowerOfTwoChoices`) makes each reported failure weigh as one more request in flight,
//! fading as exp(-age / d). In the simulator's intermittent-failure table (`-- --intermittent
//! --flaky-share 0.1 --reject-share 0.2`), a 1 s penalty took least connections' errors from
//! 1,862 (the ejection rules alone) to 165.
//!
//! # `PeakEwma`
//!
//! [`PeakEwma`](crate::PeakEwma) is P2C on latency x (in flight + 1) / weight, with the
//! estimate decaying with a time constant (10 s by default; `PeakEwma::builder().decay(..)`).
//! It learns only from `pick.success(latency)`; a backend not yet observed starts at
//! `default_latency` (10 ms by default): set it near your real latencies.
