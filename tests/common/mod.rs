//! Shared by the integration tests and the fuzz targets: the one registry of every policy and
//! variant (presets, bounded loads), so that every suite runs over all of them.
//!
//! # Adding a policy or a variant
//!
//! Add one line to [`POLICIES`], for example
//! `policy!("HashRing", HashRing::new, Oracle::None),` for a policy built from backends
//! only, or `policy!("Name", Name::with_seed, seeded, Oracle::None),` for one with a seed.
//! Every suite then covers it: model (tests/model.rs), stress (tests/stress.rs), errors
//! (tests/errors.rs), hostile input (tests/hostile.rs), soak (tests/soak.rs), tower
//! (tests/tower.rs) and both fuzz targets (fuzz/fuzz_targets/*.rs include this file). The
//! `Oracle` says which exact, policy-specific check the model test adds on top of the
//! generic invariants; `Oracle::None` gets the generic invariants only. Passive health is
//! reached through the trait ([`Balancer::set_health_config`]), so no suite needs a
//! per-policy path to it.
//!
//! A policy that draws random numbers (a hashing policy spreading key-less requests, say)
//! must be listed in its seeded form: the suites replay the same calls on a twin built with
//! the same seed and require the same picks.

#![allow(dead_code)] // each test file uses its own part of this module

use lbkit::{Backend, Balancer, Error, Health, HealthConfig, ManualClock, Status, Topology};
use lbkit::{
    ClientSideWeightedRoundRobin, First, LeastConnections, PeakEwma, PowerOfTwoChoices, Prequal,
    Random, RoundRobin, WeightedRoundRobin,
};
use lbkit::{HashRing, JumpHash, Maglev, Preset, PresetRing, Rendezvous};

/// A balancer over `u32` values, built from a backend set and a seed (ignored by policies
/// that draw no random numbers).
pub type Constructor = fn(Vec<Backend<u32>>, u64) -> Result<Box<dyn Balancer<u32>>, Error>;

/// The same policy over `()` values (the tower suite's inner services carry none).
pub type UnitConstructor = fn(Vec<Backend<()>>, u64) -> Result<Box<dyn Balancer<()>>, Error>;

/// The policy-specific property a policy promises exactly, checked by tests/model.rs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oracle {
    /// No exact per-pick property beyond the generic invariants (e.g. `Random`).
    None,
    /// Each pick is the next eligible backend in id order; `pick_n` continues the rotation.
    RoundRobin,
    /// Every window of sum(weights / gcd) consecutive picks gives each backend its weight.
    WeightedRoundRobin,
    /// Each sequential pick has minimal in_flight / weight; ties are taken in turns.
    LeastConnections,
    /// The pick is the lighter of two distinct candidates.
    PowerOfTwoChoices,
    /// Peak EWMA: P2C whose cost is latency x (in flight + 1) / weight. Its winner can be the
    /// heaviest by in_flight / weight, so only the generic invariants hold per pick; with
    /// nothing in flight the heavier candidate of a pair always wins.
    PeakEwma,
    /// Jump hash: weights other than 0 are ignored, so every eligible backend gets an equal
    /// share; only the generic invariants hold per pick.
    Unweighted,
    /// First: each pick is the first eligible backend with room in the order the list was
    /// given (so it depends on list order, and without caps it sends everything to one
    /// backend); tests/steering.rs checks it exactly.
    First,
}

/// One policy under test.
#[derive(Clone, Copy)]
pub struct Policy {
    /// The public type's name, for failure messages.
    pub name: &'static str,
    /// Builds one.
    pub new: Constructor,
    /// Builds one over `()` values.
    pub new_unit: UnitConstructor,
    /// Its exact property.
    pub oracle: Oracle,
    /// Whether it places requests by key (consistent hashing).
    pub hashing: bool,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

fn ring<T: Send + Sync + 'static>(b: Vec<Backend<T>>, seed: u64) -> Result<HashRing<T>, Error> {
    HashRing::builder().seed(seed).build(b)
}

fn bounded_ring<T: Send + Sync + 'static>(
    b: Vec<Backend<T>>,
    seed: u64,
) -> Result<HashRing<T>, Error> {
    HashRing::builder().seed(seed).load_factor(1.25).build(b)
}

fn maglev<T: Send + Sync + 'static>(b: Vec<Backend<T>>, seed: u64) -> Result<Maglev<T>, Error> {
    // A small prime table keeps debug-mode rebuilds quick; the set stays below it.
    Maglev::builder().seed(seed).table_size(1031).build(b)
}

/// PeakEwma on a clock of its own that stands still: a pick dropped without a report feeds the
/// time it was held as a latency, so with the system clock two replays of the same calls would
/// see different latencies. On a manual clock they replay exactly.
fn peak_ewma<T: Send + Sync + 'static>(
    b: Vec<Backend<T>>,
    seed: u64,
) -> Result<PeakEwma<T>, Error> {
    PeakEwma::builder()
        .seed(seed)
        .health(HealthConfig::new().clock(ManualClock::new()))
        .build(b)
}

/// Prequal on a clock of its own that stands still, as [`peak_ewma`] and for the same
/// reason: it keeps the same latency estimate.
fn prequal<T: Send + Sync + 'static>(b: Vec<Backend<T>>, seed: u64) -> Result<Prequal<T>, Error> {
    Prequal::builder()
        .seed(seed)
        .health(HealthConfig::new().clock(ManualClock::new()))
        .build(b)
}

/// Prequal whose RIF adds the backends' reported load (server-side RIF) to its own count:
/// until a backend reports (the fuzz targets send reports), plain Prequal.
fn prequal_load_signal<T: Send + Sync + 'static>(
    b: Vec<Backend<T>>,
    seed: u64,
) -> Result<Prequal<T>, Error> {
    Prequal::builder()
        .seed(seed)
        .load_signal(lbkit::LoadSignal::Combined { per_unit: 1.0 })
        .health(HealthConfig::new().clock(ManualClock::new()))
        .build(b)
}

fn least_connections_failure_penalty<T: Send + Sync + 'static>(
    b: Vec<Backend<T>>,
) -> Result<LeastConnections<T>, Error> {
    LeastConnections::builder()
        .failure_penalty(std::time::Duration::from_millis(50))
        .build(b)
}

/// P2C comparing requests in flight plus the backends' reported loads: until a backend
/// reports (the fuzz targets send reports), the same as plain P2C.
fn p2c_load_signal<T: Send + Sync + 'static>(
    b: Vec<Backend<T>>,
    seed: u64,
) -> Result<PowerOfTwoChoices<T>, Error> {
    PowerOfTwoChoices::builder()
        .seed(seed)
        .load_signal(lbkit::LoadSignal::Combined { per_unit: 1.0 })
        .build(b)
}

fn p2c_failure_penalty<T: Send + Sync + 'static>(
    b: Vec<Backend<T>>,
    seed: u64,
) -> Result<PowerOfTwoChoices<T>, Error> {
    PowerOfTwoChoices::builder()
        .seed(seed)
        .failure_penalty(std::time::Duration::from_millis(50))
        .build(b)
}

/// Observed: an observer counting events, and (with the `metrics` feature) metrics exported
/// every millisecond to whatever recorder is installed (none: the facade's no-op one), so
/// every suite runs the event queue and the exports that picks trigger.
fn observed<C>(builder: lbkit::Builder<C>) -> lbkit::Builder<C> {
    let events = std::sync::atomic::AtomicU64::new(0);
    let builder = builder.name("observed").observer(move |_: &lbkit::Event| {
        // Relaxed: a count nobody reads.
        events.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    #[cfg(feature = "metrics")]
    let builder = builder.metrics(std::time::Duration::from_millis(1));
    builder
}

fn observed_least_connections<T: Send + Sync + 'static>(
    b: Vec<Backend<T>>,
) -> Result<LeastConnections<T>, Error> {
    observed(LeastConnections::builder()).build(b)
}

fn observed_maglev<T: Send + Sync + 'static>(
    b: Vec<Backend<T>>,
    seed: u64,
) -> Result<Maglev<T>, Error> {
    observed(Maglev::builder())
        .seed(seed)
        .table_size(1031)
        .build(b)
}

/// Zones: a topology that weighs localities, over the suites' backends, which name none (so
/// each class of the level is one group, the unnamed locality weighing 0): every pick goes
/// through the tiered path (a group chosen first, then the policy inside it, with its
/// fallbacks for caps and steering, and `pick_n` across groups), and must do exactly what
/// the flat policy does, oracles included. The split itself is tested in tests/tiers.rs.
fn zones() -> Topology {
    Topology::locality_weights([("zone-0", 1), ("zone-1", 1)])
}

fn zoned_round_robin<T: Send + Sync + 'static>(b: Vec<Backend<T>>) -> Result<RoundRobin<T>, Error> {
    RoundRobin::builder().topology(zones()).build(b)
}

/// Load-aware locality routing over the suites' backends, which name no locality: one
/// group, re-split every 100 ms from the picks held (the sweep runs under every suite).
fn load_aware_least_connections<T: Send + Sync + 'static>(
    b: Vec<Backend<T>>,
) -> Result<LeastConnections<T>, Error> {
    LeastConnections::builder()
        .topology(
            Topology::load_aware("zone-0", 4.0)
                .update_period(std::time::Duration::from_millis(100)),
        )
        .build(b)
}

fn zoned_maglev<T: Send + Sync + 'static>(
    b: Vec<Backend<T>>,
    seed: u64,
) -> Result<Maglev<T>, Error> {
    Maglev::builder()
        .seed(seed)
        .table_size(1031)
        .topology(zones())
        .build(b)
}

fn bounded_maglev<T: Send + Sync + 'static>(
    b: Vec<Backend<T>>,
    seed: u64,
) -> Result<Maglev<T>, Error> {
    Maglev::builder()
        .seed(seed)
        .table_size(1031)
        .load_factor(1.25)
        .build(b)
}

fn bounded_rendezvous<T: Send + Sync + 'static>(
    b: Vec<Backend<T>>,
    seed: u64,
) -> Result<Rendezvous<T>, Error> {
    Rendezvous::builder().seed(seed).load_factor(1.25).build(b)
}

fn nginx<T: Send + Sync + 'static>(b: Vec<Backend<T>>, seed: u64) -> Result<PresetRing<T>, Error> {
    PresetRing::builder(Preset::Nginx).seed(seed).build(b)
}

fn ketama<T: Send + Sync + 'static>(b: Vec<Backend<T>>, seed: u64) -> Result<PresetRing<T>, Error> {
    PresetRing::builder(Preset::Ketama).seed(seed).build(b)
}

fn bounded_ketama<T: Send + Sync + 'static>(
    b: Vec<Backend<T>>,
    seed: u64,
) -> Result<PresetRing<T>, Error> {
    PresetRing::builder(Preset::Ketama)
        .seed(seed)
        .load_factor(1.25)
        .build(b)
}

fn envoy_ring_hash<T: Send + Sync + 'static>(
    b: Vec<Backend<T>>,
    seed: u64,
) -> Result<PresetRing<T>, Error> {
    PresetRing::builder(Preset::EnvoyRingHash)
        .seed(seed)
        .build(b)
}

fn grpc_ring_hash<T: Send + Sync + 'static>(
    b: Vec<Backend<T>>,
    seed: u64,
) -> Result<PresetRing<T>, Error> {
    PresetRing::builder(Preset::GrpcRingHash)
        .seed(seed)
        .build(b)
}

/// A small table keeps the suites fast (the default 65537 is tested in tests/presets.rs).
fn envoy_maglev<T: Send + Sync + 'static>(
    b: Vec<Backend<T>>,
    seed: u64,
) -> Result<PresetRing<T>, Error> {
    PresetRing::builder(Preset::EnvoyMaglev)
        .table_size(1031)
        .seed(seed)
        .build(b)
}

fn bounded_envoy_maglev<T: Send + Sync + 'static>(
    b: Vec<Backend<T>>,
    seed: u64,
) -> Result<PresetRing<T>, Error> {
    PresetRing::builder(Preset::EnvoyMaglev)
        .table_size(1031)
        .seed(seed)
        .load_factor(1.25)
        .build(b)
}

/// `policy!("Name", Type::new, oracle)` for a policy without a seed,
/// `policy!("Name", Type::with_seed, seeded, oracle)` for a seeded one, and
/// `policy!(hashing "Name", build, seeded, oracle)` for a hashing policy.
macro_rules! policy {
    ($name:literal, $new:path, $oracle:expr) => {
        Policy {
            name: $name,
            new: |backends, _seed| Ok(Box::new($new(backends)?)),
            new_unit: |backends, _seed| Ok(Box::new($new(backends)?)),
            oracle: $oracle,
            hashing: false,
        }
    };
    ($name:literal, $new:path, seeded, $oracle:expr) => {
        Policy {
            name: $name,
            new: |backends, seed| Ok(Box::new($new(backends, seed)?)),
            new_unit: |backends, seed| Ok(Box::new($new(backends, seed)?)),
            oracle: $oracle,
            hashing: false,
        }
    };
    (hashing $name:literal, $new:path, seeded, $oracle:expr) => {
        Policy {
            name: $name,
            new: |backends, seed| Ok(Box::new($new(backends, seed)?)),
            new_unit: |backends, seed| Ok(Box::new($new(backends, seed)?)),
            oracle: $oracle,
            hashing: true,
        }
    };
}

/// Every policy of the crate. Each suite runs over all of them.
pub const POLICIES: &[Policy] = &[
    policy!("RoundRobin", RoundRobin::new, Oracle::RoundRobin),
    policy!(
        "WeightedRoundRobin",
        WeightedRoundRobin::new,
        Oracle::WeightedRoundRobin
    ),
    // Weights from load reports (gRFC A58): until backends report, round robin over the
    // eligible ones whatever their configured weights; tests/client_side_weighted_round_robin.rs
    // checks the reports, and the fuzz targets send them.
    policy!(
        "ClientSideWeightedRoundRobin",
        ClientSideWeightedRoundRobin::new,
        Oracle::RoundRobin
    ),
    policy!("Random", Random::with_seed, seeded, Oracle::None),
    policy!(
        "LeastConnections",
        LeastConnections::new,
        Oracle::LeastConnections
    ),
    policy!(
        "PowerOfTwoChoices",
        PowerOfTwoChoices::with_seed,
        seeded,
        Oracle::PowerOfTwoChoices
    ),
    policy!("PeakEwma", peak_ewma, seeded, Oracle::PeakEwma),
    policy!("Prequal", prequal, seeded, Oracle::None),
    policy!(
        "Prequal+load_signal",
        prequal_load_signal,
        seeded,
        Oracle::None
    ),
    // Failures as load: the exact in-flight oracles hold until a failure is reported (the
    // suites that check oracles report none); tests/failure_load.rs checks the penalty.
    policy!(
        "LeastConnections+failure_penalty",
        least_connections_failure_penalty,
        Oracle::LeastConnections
    ),
    policy!(
        "PowerOfTwoChoices+failure_penalty",
        p2c_failure_penalty,
        seeded,
        Oracle::PowerOfTwoChoices
    ),
    policy!(
        "PowerOfTwoChoices+load_signal",
        p2c_load_signal,
        seeded,
        Oracle::PowerOfTwoChoices
    ),
    policy!("First", First::new, Oracle::First),
    // Observed (events, and metrics with the feature): what the suites check must not change.
    policy!(
        "LeastConnections+observed",
        observed_least_connections,
        Oracle::LeastConnections
    ),
    // Zones: every pick through the tiered path (a locality group, then the policy).
    policy!("RoundRobin+zones", zoned_round_robin, Oracle::RoundRobin),
    policy!(
        "LeastConnections+load_aware",
        load_aware_least_connections,
        Oracle::LeastConnections
    ),
    // Hashing policies spread requests without a key at random: seeded, like Random.
    policy!(hashing "HashRing", ring, seeded, Oracle::None),
    policy!(hashing "Maglev", maglev, seeded, Oracle::None),
    policy!(hashing "Rendezvous", Rendezvous::with_seed, seeded, Oracle::None),
    policy!(hashing "JumpHash", JumpHash::with_seed, seeded, Oracle::Unweighted),
    policy!(hashing "PresetRing::nginx", nginx, seeded, Oracle::None),
    policy!(hashing "PresetRing::ketama", ketama, seeded, Oracle::None),
    policy!(hashing "PresetRing::envoy_ring_hash", envoy_ring_hash, seeded, Oracle::None),
    policy!(hashing "PresetRing::grpc_ring_hash", grpc_ring_hash, seeded, Oracle::None),
    policy!(hashing "PresetRing::envoy_maglev", envoy_maglev, seeded, Oracle::None),
    // Bounded loads: every hashing policy that offers them.
    policy!(hashing "HashRing+bound", bounded_ring, seeded, Oracle::None),
    policy!(hashing "Maglev+bound", bounded_maglev, seeded, Oracle::None),
    policy!(hashing "Rendezvous+bound", bounded_rendezvous, seeded, Oracle::None),
    policy!(
        hashing "PresetRing::ketama+bound",
        bounded_ketama,
        seeded,
        Oracle::None
    ),
    policy!(
        hashing "PresetRing::envoy_maglev+bound",
        bounded_envoy_maglev,
        seeded,
        Oracle::None
    ),
    policy!(hashing "Maglev+observed", observed_maglev, seeded, Oracle::None),
    policy!(hashing "Maglev+zones", zoned_maglev, seeded, Oracle::None),
];

/// The registry entry with this name (panics on a name not in [`POLICIES`]).
pub fn policy(name: &str) -> Policy {
    *POLICIES
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no policy {name} in the registry"))
}

/// `(id, weight, in_flight, health)` of every backend, in the order `status()` gives.
pub fn summary(lb: &dyn Balancer<u32>) -> Vec<(String, u32, usize, Health)> {
    lb.status()
        .iter()
        .map(|s: &Status| (s.id().to_owned(), s.weight(), s.in_flight(), s.health()))
        .collect()
}

/// A backend with this id, weight and value.
pub fn backend(id: &str, weight: u32, value: u32) -> Backend<u32> {
    Backend::new(id, value).with_weight(weight)
}

/// Whether load `a_in_flight / a_weight` is below `b_in_flight / b_weight`, exactly.
pub fn lighter(a_in_flight: usize, a_weight: u32, b_in_flight: usize, b_weight: u32) -> bool {
    (a_in_flight as u128) * u128::from(b_weight) < (b_in_flight as u128) * u128::from(a_weight)
}

/// Greatest common divisor.
pub fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The load factor every `+bound` entry of [`POLICIES`] is built with (`load_factor(1.25)`),
/// as `(numerator, denominator)`, for tests that check the documented capacity exactly.
pub const REGISTRY_LOAD_FACTOR: (u64, u64) = (5, 4);

/// The bounded-load variants of [`POLICIES`] (named `...+bound`), each with its unbounded
/// twin: the same entry without `+bound`, built the same way but for the load factor.
pub fn bounded_with_twins() -> Vec<(Policy, Policy)> {
    POLICIES
        .iter()
        .filter_map(|p| {
            let twin = p.name.strip_suffix("+bound")?;
            Some((*p, policy(twin)))
        })
        .collect()
}
