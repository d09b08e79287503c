//! The request-spreading policies: every request may go to any backend, and the policy
//! spreads them by turn, by weight, at random or by load.
//!
//! They ignore request keys (see [`hash`](crate::hash) for the policies that send a key to
//! the same backend). All of them are built the same way (`X::new(backends)`, or
//! `X::builder()` ... `.build(backends)`, see [`Builder`](crate::Builder)), pick through the
//! shared engine on `&self` without locks, and honour health, weights and passive health.
//!
//! | policy | picks | cost per pick | choose it for |
//! |---|---|---|---|
//! | [`RoundRobin`] | the next eligible backend in id order, per thread | O(1) | alike backends, alike requests |
//! | [`WeightedRoundRobin`] | smooth weighted turns (a precomputed EDF schedule) | O(1) | unequal backends, alike requests |
//! | [`ClientSideWeightedRoundRobin`] | smooth weighted turns, weights from the backends' load reports (gRFC A58) | O(1) | backends that report their load (ORCA) |
//! | [`Random`] | weighted at random (alias table) | O(1) | stateless spread |
//! | [`LeastConnections`] | fewest in flight per unit of weight, ties in turn | O(n) | long-lived connections, small sets |
//! | [`PowerOfTwoChoices`] | the lighter of two weighted draws | O(1) | the default for requests |
//! | [`PeakEwma`] | the cheaper of two weighted draws by latency x (in flight + 1) / weight | O(1) | backends whose latency changes |
//! | [`Prequal`] | of d weighted draws (8 by default), the lowest latency among those not above a quantile of in flight / weight | O(d) | latency first, load as a guard |
//! | [`First`] | the first eligible backend with room, in list order | O(1), O(k) past k full | as few busy backends as possible |
//!
//! Only [`LeastConnections`], [`PowerOfTwoChoices`], [`PeakEwma`] and [`Prequal`] see load: with backends that are not perfectly alike, or whose speed
//! changes without their weight saying so, prefer them (the simulator's README,
//! `examples/simulate/README.md`, shows by how much). Each module below explains its
//! algorithm, where it comes from, its cost and when to choose it. [`First`] is the one
//! request-spreading policy whose choice depends on the order the backends were given in.

mod choice;
pub mod client_side_weighted_round_robin;
pub mod first;
pub mod least_connections;
pub mod peak_ewma;
pub mod power_of_two;
pub mod prequal;
pub mod random;
pub mod round_robin;
mod schedule;
pub mod weighted_round_robin;

pub use client_side_weighted_round_robin::{
    ClientSideWeightedRoundRobin, ClientSideWeightedRoundRobinConfig,
};
pub use first::{First, FirstConfig};
pub use least_connections::{LeastConnections, LeastConnectionsConfig};
pub use peak_ewma::{PeakEwma, PeakEwmaConfig};
pub use power_of_two::{PowerOfTwoChoices, PowerOfTwoChoicesConfig};
pub use prequal::{Prequal, PrequalConfig};
pub use random::{Random, RandomConfig};
pub use round_robin::{RoundRobin, RoundRobinConfig};
pub use weighted_round_robin::{WeightedRoundRobin, WeightedRoundRobinConfig, SCHEDULE_LIMIT};
