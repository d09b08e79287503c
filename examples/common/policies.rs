//! The policies the example programs know, by name: one table shared by `examples/route.rs`
//! and `examples/simulate`. A new policy joins both programs with one line in [`table`].
//!
//! Included with `#[path = "..."] mod policies;` by each program (and by their tests), so it is
//! plain code, not a library module.
#![allow(dead_code)] // each including program uses a different part of this file

use std::time::Duration;

use lbkit::{Backend, Balancer, Builder, Error, HealthConfig, ManualClock};
use lbkit::{ClientSideWeightedRoundRobin, WeightedRoundRobin};
use lbkit::{HashRing, JumpHash, Maglev, Preset, PresetRing, Rendezvous};
use lbkit::{LeastConnections, PeakEwma, PowerOfTwoChoices, Prequal, Random, RoundRobin};

/// How a program asks for a policy beyond its backends.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Seed for every random choice of the policy; `None` seeds from entropy.
    pub seed: Option<u64>,
    /// Bounded-load factor `c` for hashing policies that support it; `None` leaves it off.
    pub bound: Option<f64>,
    /// The clock the policy reads when outcomes are reported (peak EWMA's latency decay):
    /// the simulator's simulated time. `None`: the system's monotonic clock.
    pub clock: Option<ManualClock>,
    /// Passive-health rules (outlier detection, panic threshold, slow start) to apply, read
    /// on [`Options::clock`] if one is given. `None`: none.
    pub health: Option<HealthConfig>,
    /// Peak EWMA's failure penalty; `None` leaves the policy's default (5 s).
    pub failure_penalty: Option<Duration>,
    /// Least connections' and P2C's failure penalty (failures weigh as requests in flight,
    /// fading with this time constant); `None` leaves it off, their default.
    pub failure_load: Option<Duration>,
    /// Client-side weighted round robin's blackout period (how long a backend reports before
    /// its weight counts); `None` leaves gRFC A58's default (10 s).
    pub blackout_period: Option<Duration>,
    /// The balancer's name (the `balancer` label of its metrics); `None`: the policy's.
    pub name: Option<String>,
    /// Records the balancer's metrics every this often (`Builder::metrics`); `None`: no
    /// metrics. Needs lbkit's `metrics` feature, and is ignored without it: a program that
    /// offers it refuses to run without the feature.
    pub metrics: Option<Duration>,
}

/// A boxed balancer, or the library's reason for refusing the backends or options.
pub type Built<T> = Result<Box<dyn Balancer<T>>, Error>;

/// One row of the table.
pub struct Policy<T> {
    /// The name users type (`--algo NAME`) and the simulator prints.
    pub name: &'static str,
    /// Whether the policy places requests by key (consistent hashing). The simulator sends keyed
    /// requests to every policy; only these use the key.
    pub hashing: bool,
    /// Whether the policy accepts [`Options::bound`]. Asking another policy for a bound is a
    /// usage error in the programs, never silently ignored.
    pub bounded: bool,
    /// Builds the policy over `backends`. Never called with `bound: Some(_)` unless `bounded`.
    pub build: fn(Vec<Backend<T>>, Options) -> Built<T>,
}

/// Every policy, in the order the programs list them.
///
/// To add a policy, add one entry here.
/// The row of a hashing policy that takes a load bound: its builder, with `Options::bound`
/// and `Options::seed` applied when given.
macro_rules! hashing {
    ($name:literal, $builder:expr) => {
        Policy {
            name: $name,
            hashing: true,
            bounded: true,
            build: |b, o| {
                let mut builder = common($builder, &o);
                if let Some(c) = o.bound {
                    builder = builder.load_factor(c);
                }
                if let Some(seed) = o.seed {
                    builder = builder.seed(seed);
                }
                boxed(builder.build(b)?, &o)
            },
        }
    };
}

pub fn table<T: Send + Sync + 'static>() -> Vec<Policy<T>> {
    vec![
        Policy {
            name: "round-robin",
            hashing: false,
            bounded: false,
            build: |b, o| boxed(common(RoundRobin::builder(), &o).build(b)?, &o),
        },
        Policy {
            name: "weighted-round-robin",
            hashing: false,
            bounded: false,
            build: |b, o| boxed(common(WeightedRoundRobin::builder(), &o).build(b)?, &o),
        },
        Policy {
            name: "client-side-weighted-round-robin",
            hashing: false,
            bounded: false,
            build: |b, o| {
                // Its weights come from the load reports the backends send
                // (`Pick::report_load`), refreshed on the clock of `Options::clock`.
                let mut builder = common(ClientSideWeightedRoundRobin::builder(), &o);
                if let Some(period) = o.blackout_period {
                    builder = builder.blackout_period(period);
                }
                boxed(builder.build(b)?, &o)
            },
        },
        Policy {
            name: "random",
            hashing: false,
            bounded: false,
            build: |b, o| {
                let mut builder = common(Random::builder(), &o);
                if let Some(seed) = o.seed {
                    builder = builder.seed(seed);
                }
                boxed(builder.build(b)?, &o)
            },
        },
        Policy {
            name: "least-connections",
            hashing: false,
            bounded: false,
            build: |b, o| {
                let mut builder = common(LeastConnections::builder(), &o);
                if let Some(penalty) = o.failure_load {
                    builder = builder.failure_penalty(penalty);
                }
                boxed(builder.build(b)?, &o)
            },
        },
        Policy {
            name: "p2c",
            hashing: false,
            bounded: false,
            build: |b, o| {
                let mut builder = common(PowerOfTwoChoices::builder(), &o);
                if let Some(seed) = o.seed {
                    builder = builder.seed(seed);
                }
                if let Some(penalty) = o.failure_load {
                    builder = builder.failure_penalty(penalty);
                }
                boxed(builder.build(b)?, &o)
            },
        },
        Policy {
            name: "peak-ewma",
            hashing: false,
            bounded: false,
            build: |b, o| {
                let mut builder = common(PeakEwma::builder(), &o);
                if let Some(seed) = o.seed {
                    builder = builder.seed(seed);
                }
                if let Some(penalty) = o.failure_penalty {
                    builder = builder.failure_penalty(penalty);
                }
                boxed(builder.build(b)?, &o)
            },
        },
        Policy {
            name: "prequal",
            hashing: false,
            bounded: false,
            build: |b, o| {
                let mut builder = common(Prequal::builder(), &o);
                if let Some(seed) = o.seed {
                    builder = builder.seed(seed);
                }
                if let Some(penalty) = o.failure_penalty {
                    builder = builder.failure_penalty(penalty);
                }
                boxed(builder.build(b)?, &o)
            },
        },
        hashing!("ring", HashRing::builder()),
        hashing!("maglev", Maglev::builder()),
        hashing!("rendezvous", Rendezvous::builder()),
        hashing!("nginx", PresetRing::builder(Preset::Nginx)),
        hashing!("ketama", PresetRing::builder(Preset::Ketama)),
        hashing!(
            "envoy-ring-hash",
            PresetRing::builder(Preset::EnvoyRingHash)
        ),
        hashing!("grpc-ring-hash", PresetRing::builder(Preset::GrpcRingHash)),
        hashing!("envoy-maglev", PresetRing::builder(Preset::EnvoyMaglev)),
        Policy {
            name: "jump",
            hashing: true,
            bounded: false,
            build: |b, o| {
                let mut builder = common(JumpHash::builder(), &o);
                if let Some(seed) = o.seed {
                    builder = builder.seed(seed);
                }
                boxed(builder.build(b)?, &o)
            },
        },
    ]
}

/// `builder` with what every policy takes at build time only: [`Options::name`] and
/// [`Options::metrics`].
fn common<C>(builder: Builder<C>, options: &Options) -> Builder<C> {
    let mut builder = builder;
    if let Some(name) = &options.name {
        builder = builder.name(name.as_str());
    }
    #[cfg(feature = "metrics")]
    if let Some(every) = options.metrics {
        builder = builder.metrics(every);
    }
    builder
}

/// Boxes `balancer`, with `options.health` if given, on `options.clock` if given.
pub fn boxed<T, B>(balancer: B, options: &Options) -> Built<T>
where
    B: Balancer<T> + 'static,
{
    if options.clock.is_some() || options.health.is_some() {
        let mut config = options.health.clone().unwrap_or_default();
        if let Some(clock) = &options.clock {
            config = config.clock(clock.clone());
        }
        balancer.set_health_config(config)?;
    }
    Ok(Box::new(balancer))
}

/// The row named `name`, if there is one.
pub fn find<T: Send + Sync + 'static>(name: &str) -> Option<Policy<T>> {
    table().into_iter().find(|p| p.name == name)
}
