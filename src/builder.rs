//! One way to build every policy: `X::new(backends)` for the defaults, `X::builder()` for
//! everything else.
//!
//! Every policy's `builder()` returns a [`Builder`] whose type parameter is the policy's own
//! configuration (`HashRingConfig`, `PeakEwmaConfig`, ...). The knobs every policy shares are
//! written once, here, under the same names everywhere:
//!
//! * [`health`](Builder::health) on every policy (passive health: outlier ejection, panic
//!   threshold, slow start; it can be changed later through
//!   [`Balancer::set_health_config`](crate::Balancer::set_health_config));
//! * [`subset`](Builder::subset) on every policy (subsetting for large fleets; it can be
//!   changed later through [`Balancer::set_subset`](crate::Balancer::set_subset));
//! * [`observer`](Builder::observer) on every policy (events: ejections, panic mode,
//!   updates, ...);
//! * [`seed`](Builder::seed) on the policies that draw random numbers ([`Seedable`]), so
//!   their choices replay exactly;
//! * [`load_factor`](Builder::load_factor) on the hashing policies that offer bounded loads
//!   ([`LoadBounded`]).
//!
//! A policy's own knobs (`points_per_weight`, `table_size`, `decay`, ...) are methods of its
//! `Builder<XConfig>`, documented on the policy. `build(backends)` ends the chain and checks
//! everything: a value out of range is an [`Error::InvalidConfig`](crate::Error::InvalidConfig)
//! naming it.
//!
//! ```
//! use std::time::Duration;
//! use lbkit::{Backend, HashRing, HealthConfig, OutlierDetection, PowerOfTwoChoices};
//!
//! let backends = || vec![Backend::new("a", ()), Backend::new("b", ()).with_weight(2)];
//! let p2c = PowerOfTwoChoices::builder()
//!     .seed(7)
//!     .health(HealthConfig::new().outlier_detection(OutlierDetection::default()))
//!     .build(backends())?;
//! let ring = HashRing::builder()
//!     .points_per_weight(1000)
//!     .load_factor(1.25)
//!     .seed(7)
//!     .build(backends())?;
//! # let _ = (p2c, ring);
//! # Ok::<(), lbkit::Error>(())
//! ```

use crate::engine::sequence::entropy_seed;
use crate::health::HealthConfig;
use crate::observe::{Observer, Watcher};
use crate::subset::Subset;
use crate::topology::Topology;
use std::sync::Arc;

/// Configures one policy; made by the policy's `builder()`, ended by `build(backends)`.
///
/// `C` is the policy's own configuration type; see the module docs for what every builder
/// shares.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder<C> {
    pub(crate) config: C,
    pub(crate) health: HealthConfig,
    seed: Option<u64>,
    pub(crate) load_factor: Option<f64>,
    pub(crate) subset: Subset,
    pub(crate) topology: Topology,
    pub(crate) observer: Option<Watcher>,
    /// The balancer's name, given to [`Builder::name`].
    name: Option<Arc<str>>,
}

/// Marks the policies whose builder has [`Builder::seed`]: they draw random numbers (a
/// weighted draw, two candidates, the spread of requests without a key).
pub trait Seedable {}

/// Marks the hashing policies whose builder has [`Builder::load_factor`] (bounded loads).
pub trait LoadBounded {}

impl<C> Builder<C> {
    pub(crate) fn new(config: C) -> Self {
        Builder {
            config,
            health: HealthConfig::new(),
            seed: None,
            load_factor: None,
            subset: Subset::All,
            topology: Topology::new(),
            // With the `tracing` feature every balancer tells its events.
            observer: cfg!(feature = "tracing").then(|| Watcher::new(default_name::<C>())),
            name: None,
        }
    }

    /// Passive-health rules from the start (outlier ejection, panic threshold, slow start;
    /// none by default). Checked by `build`: [`Error::InvalidConfig`](crate::Error::InvalidConfig)
    /// names the first value out of range.
    pub fn health(mut self, config: HealthConfig) -> Self {
        self.health = config;
        self
    }

    /// Uses only a subset of the backends this client is given (deterministic aperture or
    /// rendezvous subsetting; see [`crate::subset`]); every backend by default. It can be
    /// changed later through [`Balancer::set_subset`](crate::Balancer::set_subset).
    pub fn subset(mut self, subset: Subset) -> Self {
        self.subset = subset;
        self
    }

    /// How the localities of each priority level share its traffic (see [`Topology`]); no
    /// split by locality by default. It can be changed later through
    /// [`Balancer::set_topology`](crate::Balancer::set_topology). Checked by `build`:
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) with parameter `"locality"`.
    pub fn topology(mut self, topology: Topology) -> Self {
        self.topology = topology;
        self
    }

    /// Tells `observer` of every change in where traffic goes (ejections, returns, panic
    /// mode, slow starts that end, updates, soft-health weights, subset changes, the shares
    /// of priority levels and localities; see [`crate::observe`]).
    ///
    /// Several observers may be given: each is told every event, in the order they were
    /// given.
    pub fn observer(mut self, observer: impl Observer) -> Self {
        self.watcher().add(Arc::new(observer));
        self
    }

    /// Names the balancer, for the `balancer` label of its metrics and the field of its
    /// tracing events (the `metrics` and `tracing` features). By default, the policy's name
    /// (`"RoundRobin"`, `"HashRing"`, ...): give a name of your own to tell two balancers
    /// of one policy apart.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        let name = name.into();
        if let Some(watcher) = &mut self.observer {
            watcher.name = Arc::clone(&name);
        }
        self.name = Some(name);
        self
    }

    /// Records the balancer's counters, gauges and events through the
    /// [`metrics`](https://docs.rs/metrics) facade (the `metrics` feature), to whatever
    /// recorder the application installed (Prometheus, StatsD, OpenTelemetry, ...). Counters
    /// and gauges are recorded when the balancer is built, at most once per `interval` as
    /// picks go (checked once every 1024 picks of a backend: nothing on the picks in between),
    /// and whenever [`Balancer::export_metrics`](crate::Balancer::export_metrics) is called
    /// (call it on a timer if the balancer may take fewer than 1024 picks per backend in an
    /// interval, or may go idle); events (an ejection, panic mode, an update) as they happen. The metrics and their labels are in
    /// the [table](crate::observe#metrics). An `interval` of 0 is an
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) at `build`.
    ///
    /// Install the recorder before calling this: the metrics' descriptions (Prometheus's
    /// `# HELP` lines) go to the recorder installed when it is called.
    ///
    /// ```
    /// use std::time::Duration;
    /// use lbkit::{Backend, Balancer, RoundRobin};
    /// let lb = RoundRobin::builder()
    ///     .name("checkout")
    ///     .metrics(Duration::from_secs(1))
    ///     .build([Backend::new("a", ())])?;
    /// lb.export_metrics(); // also every second, as picks go
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    #[cfg(feature = "metrics")]
    pub fn metrics(mut self, interval: std::time::Duration) -> Self {
        let ns = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
        self.watcher().exporter = Some(Arc::new(crate::observe::metrics::Exporter::new(ns)));
        self
    }

    /// The watcher, made if there is none yet.
    fn watcher(&mut self) -> &mut Watcher {
        let name = self.name.clone().unwrap_or_else(default_name::<C>);
        self.observer.get_or_insert_with(|| Watcher::new(name))
    }

    /// The seed given to [`seed`](Builder::seed), or one drawn from the clock and the process.
    pub(crate) fn seed_or_entropy(&self) -> u64 {
        self.seed.unwrap_or_else(entropy_seed)
    }
}

impl<C: Seedable> Builder<C> {
    /// Seeds every random choice of the policy, so that the same seed and the same calls
    /// from one thread replay the same picks. Without it the policy seeds itself from the
    /// clock and the process.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}

impl<C: LoadBounded> Builder<C> {
    /// Turns on bounded loads with factor `c` (see [`hash`](crate::hash#bounded-loads)): no
    /// pick goes to a backend already holding `ceil(c x (total + 1) x w / W)` picks or more;
    /// the key walks on to its next preference. Off unless set; `build` rejects a `c` below
    /// 1, NaN or infinite with [`Error::InvalidConfig`](crate::Error::InvalidConfig)
    /// (`"load_factor"`).
    pub fn load_factor(mut self, c: f64) -> Self {
        self.load_factor = Some(c);
        self
    }
}

/// The policy's name, from its configuration type's (`RoundRobinConfig` gives
/// `"RoundRobin"`).
fn default_name<C>() -> Arc<str> {
    let full = std::any::type_name::<C>();
    let last = full.rsplit("::").next().unwrap_or(full);
    Arc::from(last.strip_suffix("Config").unwrap_or(last))
}
