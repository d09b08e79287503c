//! The configuration of a run: [`Config`] holds everything that defines one (the fleet, the
//! workload, the scenario's events, the client's timeouts and tries), and [`Config::default`]
//! is the README's scenario. [`health_rules`] are the passive-health rules every balancer gets
//! with [`Config::health`].
//!
//! The program's flags, which fill a `Config`, are parsed in `main.rs`, so that
//! `tests/simulate.rs` can include this file without them.

use std::time::Duration;

use lbkit::{
    FailurePercentageEjection, HealthConfig, OutlierDetection, SlowStart, SoftHealth,
    SuccessRateEjection,
};

/// Everything that defines a run. [`Config::default`] is the README's scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Seed of the arrival sequence, keys and service times, and of the randomised policies.
    pub seed: u64,
    /// Requests per policy.
    pub requests: usize,
    /// Backends at the start.
    pub backends: usize,
    /// How many of them are slow (the last ones).
    pub slow_backends: usize,
    /// How much slower the slow ones are.
    pub slow_factor: f64,
    /// Requests one backend serves at once; more wait in its queue.
    pub workers: usize,
    /// Mean service time of a request that misses the backend's cache.
    pub miss_time: Duration,
    /// Mean service time of a cache hit.
    pub hit_time: Duration,
    /// Offered load as a fraction of the starting fleet's capacity (all misses).
    pub load: f64,
    /// Distinct keys; 0 sends requests without keys (and turns the cache off).
    pub keys: usize,
    /// Zipf exponent of key popularity.
    pub zipf: f64,
    /// Keys each backend's cache holds; 0 turns caching off.
    pub cache: usize,
    /// Whether backends get weights proportional to their capacity (`true`) or all weight 1.
    pub capacity_weights: bool,
    /// One backend becomes this many times slower half-way; `None`: no slowdown.
    pub slowdown: Option<f64>,
    /// Every backend's speed drifts, up to this factor slower and faster than its own, along
    /// a sinusoid of its own period and phase ([`crate::fleet::Drift`]); `None`: no drift.
    pub drift: Option<f64>,
    /// Whether a backend's load report counts its queue in its utilisation: busy worker-time
    /// over the last second plus the requests queued now, over its workers (above 1 when it
    /// queues, as ORCA's application utilisation may be). `false`: busy worker-time alone,
    /// what a CPU utilisation would say.
    pub queued_utilisation: bool,
    /// The mean period of the drift: each backend's is drawn between half and 1.5 times it.
    pub drift_period: Duration,
    /// Whether one backend fails at 30% of the run.
    pub fail: bool,
    /// Whether the failure goes unannounced: the backend is not set `Down` but answers every
    /// request with an error after `error_time`.
    pub silent_failure: bool,
    /// Whether the failure is intermittent instead: at 30% of the run one backend starts
    /// failing [`Config::flaky_share`] of the requests it serves (an error after the work), and
    /// another rejects [`Config::reject_share`] of its requests after `error_time` (a 429),
    /// both unannounced.
    pub intermittent: bool,
    /// The share of its responses the flaky backend fails.
    pub flaky_share: f64,
    /// The share of its requests the rejecting backend turns away fast.
    pub reject_share: f64,
    /// How long a failed backend takes to answer with an error.
    pub error_time: Duration,
    /// The client gives up on an attempt after this long; `None`: it waits forever.
    pub timeout: Option<Duration>,
    /// Tries per request (the first and the retries) before the client gives up on it.
    pub attempts: usize,
    /// Whether a retry avoids the backends its request already tried ([`lbkit::Request::avoid`]);
    /// `false`: a retry is a fresh pick (which a hashing policy sends back to the same backend).
    pub avoid_tried: bool,
    /// Whether the balancer applies [`health_rules`] (passive health).
    pub health: bool,
    /// Whether the health rules include the statistical ejection rules (success rate and
    /// failure percentage, gRFC A50's defaults; [`statistical_rules`]) and Peak EWMA keeps its
    /// failure penalty (off otherwise, to show what the consecutive rule alone does).
    pub statistical: bool,
    /// Whether the health rules include soft health ([`lbkit::SoftHealth`]'s defaults).
    pub soft: bool,
    /// Whether one backend joins at 70% of the run.
    pub join: bool,
    /// Whether request sizes (service-time draws) follow a capped Pareto law
    /// ([`crate::workload::Pareto`]) instead of an exponential one, both of mean 1.
    pub pareto: bool,
    /// The Pareto law's shape: the lower, the heavier the tail.
    pub pareto_alpha: f64,
    /// The largest Pareto draw, as a multiple of the smallest.
    pub pareto_cap: f64,
    /// Whether each request tells the balancer its work (`Request::cost` of its size in
    /// [`crate::workload::COST_UNIT`]s, [`crate::workload::size`]); `false`: every request
    /// costs 1.
    pub costs: bool,
    /// Keys routed before and after each membership change to count moves.
    pub probe_keys: usize,
    /// Points of the per-backend load-over-time series.
    pub samples: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 1,
            requests: 1_000_000,
            backends: 20,
            slow_backends: 3,
            slow_factor: 3.0,
            workers: 8,
            miss_time: Duration::from_millis(10),
            hit_time: Duration::from_millis(2),
            load: 0.8,
            keys: 100_000,
            zipf: 0.99,
            cache: 1_000,
            capacity_weights: true,
            slowdown: Some(4.0),
            drift: None,
            drift_period: Duration::from_secs(30),
            queued_utilisation: false,
            fail: true,
            silent_failure: false,
            error_time: Duration::from_millis(1),
            timeout: None,
            intermittent: false,
            flaky_share: 0.3,
            reject_share: 0.5,
            attempts: 3,
            avoid_tried: true,
            health: false,
            statistical: false,
            soft: false,
            join: true,
            pareto: false,
            pareto_alpha: 1.5,
            pareto_cap: 1_000.0,
            costs: false,
            probe_keys: 10_000,
            samples: 200,
        }
    }
}

impl Config {
    /// The reason this configuration cannot run, if any.
    pub fn check(&self) -> Result<(), String> {
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if self.backends == 0 {
            return Err("at least one backend is needed".into());
        }
        if self.slow_backends > self.backends {
            return Err("more slow backends than backends".into());
        }
        if self.workers == 0 {
            return Err("workers must be at least 1".into());
        }
        if !positive(self.load) {
            return Err("load must be a positive number".into());
        }
        if !positive(self.slow_factor) || !self.slowdown.map_or(true, positive) {
            return Err("slowness factors must be positive numbers".into());
        }
        if !self.drift.map_or(true, |d| d.is_finite() && d >= 1.0) || self.drift_period.is_zero() {
            return Err("the drift factor must be at least 1 and its period above zero".into());
        }
        if !(self.zipf.is_finite() && self.zipf >= 0.0) {
            return Err("the Zipf exponent must be a number >= 0".into());
        }
        if self.miss_time.is_zero() || self.hit_time.is_zero() {
            return Err("service times must be above zero".into());
        }
        if self.attempts == 0 {
            return Err("attempts must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.flaky_share) || !(0.0..=1.0).contains(&self.reject_share) {
            return Err("flaky and reject shares must be between 0 and 1".into());
        }
        if self.error_time.is_zero() || self.timeout.is_some_and(|t| t.is_zero()) {
            return Err("the error time and the timeout must be above zero".into());
        }
        if !(self.pareto_alpha.is_finite() && self.pareto_alpha > 0.0) {
            return Err("the Pareto shape must be a number above 0".into());
        }
        if !(self.pareto_cap.is_finite() && self.pareto_cap >= 1.0) {
            return Err("the Pareto cap must be a number of at least 1".into());
        }
        if self.keys > u32::MAX as usize {
            return Err("at most 2^32 - 1 keys".into());
        }
        Ok(())
    }

    /// The scenario of the passive-health comparison: this one with the failure unannounced
    /// and a timeout per attempt (1 s unless one is set), with or without the health rules.
    pub fn passive(&self, health: bool) -> Config {
        Config {
            silent_failure: true,
            timeout: self.timeout.or(Some(Duration::from_secs(1))),
            health,
            ..self.clone()
        }
    }

    /// The slow-backend scenario of soft health's comparison: one backend slows down
    /// (unannounced) and none fails, attempts time out after 1 s (unless a timeout is set),
    /// the health rules on; `soft` adds soft health to them.
    pub fn slow_backend(&self, soft: bool) -> Config {
        Config {
            fail: false,
            slowdown: self.slowdown.or(Some(4.0)),
            soft,
            ..self.passive(true)
        }
    }

    /// The first scenario of the load-report table: one backend slows down half-way
    /// (unannounced; 4x unless a slowdown is set), nothing fails or joins, no drift.
    pub fn reports_slowdown(&self) -> Config {
        Config {
            slowdown: self.slowdown.or(Some(4.0)),
            drift: None,
            fail: false,
            join: false,
            ..self.clone()
        }
    }

    /// The second scenario of the load-report table: every backend's speed drifts (2x either
    /// way unless a drift is set), no slowdown, nothing fails or joins.
    pub fn reports_drift(&self) -> Config {
        Config {
            slowdown: None,
            drift: self.drift.or(Some(2.0)),
            fail: false,
            join: false,
            ..self.clone()
        }
    }

    /// The scenario of the heavy-tailed table: request sizes from the capped Pareto law,
    /// requests without keys (so no cache: service time is size x the backend's slowness),
    /// nothing fails, slows down, drifts or joins; `costs` says whether each request tells
    /// the balancer its size.
    pub fn pareto_sizes(&self, costs: bool) -> Config {
        Config {
            pareto: true,
            costs,
            keys: 0,
            slowdown: None,
            drift: None,
            fail: false,
            join: false,
            ..self.clone()
        }
    }

    /// Backend `i`'s share of the starting fleet's capacity once the slowdown has happened
    /// (its slowness as the run ends, without drift): the share a policy that knew every
    /// backend's speed would send it.
    pub fn capacity_share_after_slowdown(&self, i: usize) -> f64 {
        let (_, slowing) = self.victims();
        let capacity = |j: usize| {
            let slowdown = if j == slowing {
                self.slowdown.unwrap_or(1.0)
            } else {
                1.0
            };
            1.0 / (self.slowness(j) * slowdown)
        };
        capacity(i) / (0..self.backends).map(capacity).sum::<f64>()
    }

    /// Backend `i`'s slowness at the start.
    pub fn slowness(&self, i: usize) -> f64 {
        if i >= self.backends - self.slow_backends && i < self.backends {
            self.slow_factor
        } else {
            1.0
        }
    }

    /// Which backend fails, and which one turns slow: normal-speed ones, distinct when
    /// possible.
    pub fn victims(&self) -> (usize, usize) {
        let normal = (self.backends - self.slow_backends).max(1);
        (normal / 4, (normal / 2).max(normal.min(2) - 1))
    }

    /// With [`Config::intermittent`]: the flaky backend (the one that fails otherwise) and
    /// the rejecting one (another normal-speed backend, distinct when possible).
    pub fn intermittent_victims(&self) -> (usize, usize) {
        let normal = (self.backends - self.slow_backends).max(1);
        (self.victims().0, (normal * 3 / 4).min(normal - 1))
    }

    /// The intermittent-failure scenario: the failure intermittent and unannounced, no
    /// slowdown, attempts time out after 1 s; `statistical` adds the statistical ejection
    /// rules (and Peak EWMA's failure penalty) to the consecutive-failure rule.
    pub fn intermittent(&self, statistical: bool) -> Config {
        Config {
            intermittent: true,
            silent_failure: true,
            slowdown: None,
            timeout: self.timeout.or(Some(Duration::from_secs(1))),
            health: true,
            statistical,
            ..self.clone()
        }
    }
}

/// The passive-health rules the simulator applies with [`Config::health`] (its clock is set
/// by the simulation): eject after 5 failures in a row for 30 s x the number of ejections
/// (at most 300 s), never more than 20% of the set; ignore health below 50% healthy; ramp a
/// joining or returning backend's weight from 10% over 10 s.
pub fn health_rules() -> HealthConfig {
    health_rules_with(false)
}

/// [`health_rules`] with the statistical ejection rules too: success rate (stdev factor
/// 1.9, at least 5 backends with 100 reports in a 10 s interval) and failure percentage
/// (above 85%, 50 reports), gRFC A50's defaults.
pub fn statistical_rules() -> HealthConfig {
    health_rules_with(true)
}

/// The health rules of `config`: none, [`health_rules`] or [`statistical_rules`], with soft
/// health's defaults added when [`Config::soft`].
pub fn rules_of(config: &Config) -> Option<HealthConfig> {
    if !config.health {
        return None;
    }
    let rules = if config.statistical {
        statistical_rules()
    } else {
        health_rules()
    };
    Some(if config.soft {
        rules.soft_health(SoftHealth::default())
    } else {
        rules
    })
}

fn health_rules_with(statistical: bool) -> HealthConfig {
    HealthConfig::new()
        .outlier_detection(OutlierDetection {
            consecutive_failures: 5,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 20.0,
            success_rate: statistical.then(SuccessRateEjection::default),
            failure_percentage: statistical.then(FailurePercentageEjection::default),
            ..OutlierDetection::default()
        })
        .panic_threshold(0.5)
        .slow_start(SlowStart::new(Duration::from_secs(10)))
}
