//! The workload: the requests the client tier sends, drawn from the seed alone, so that every
//! policy sees the same arrival sequence, keys and service-time draws (common random numbers).
//!
//! Arrivals are a Poisson process at `load` times the fleet's capacity (capacity counted with
//! every request a cache miss); each request carries a key drawn from a Zipf distribution over
//! `keys` keys, and a service-time draw that the backend serving it scales by its speed and
//! its cache (`fleet.rs`). The draw is exponential, or with [`Config::pareto`] a capped
//! Pareto law ([`Pareto`]), always of mean 1 so the offered load stays `load`; [`size`] says
//! how much work a draw is in [`COST_UNIT`]s, the request's `Request::cost` when the run
//! balances work ([`Config::costs`]).

use std::time::Duration;

use crate::config::Config;

#[path = "../common/rng.rs"]
mod rng;
pub use rng::Rng;

/// One request of the arrival sequence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrival {
    /// When it arrives.
    pub at: Duration,
    /// Its key, an index into [`Workload::key_hashes`].
    pub key: u32,
    /// Its service-time draw (exponential, or Pareto with [`Config::pareto`]; mean 1),
    /// scaled by the backend's speed and cache.
    pub work: f64,
}

/// The arrival sequence every policy sees, and the keys.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Requests in arrival order.
    pub arrivals: Vec<Arrival>,
    /// Pinned placement hash of each key `key-N` (`lbkit::hash::key_hash`).
    pub key_hashes: Vec<u64>,
    /// Keys routed before and after each membership change.
    pub probes: Vec<u32>,
    /// The time of the last arrival.
    pub span: Duration,
}

impl Workload {
    /// Draws the workload of `config` from its seed.
    pub fn new(config: &Config) -> Self {
        let mut rng = Rng::new(config.seed);
        let capacity: f64 = (0..config.backends)
            .map(|i| config.workers as f64 / (config.miss_time.as_secs_f64() * config.slowness(i)))
            .sum();
        let mean_gap = 1.0 / (config.load * capacity);
        let key_hashes: Vec<u64> = (0..config.keys)
            .map(|k| lbkit::hash::key_hash(format!("key-{k}").as_bytes()))
            .collect();
        let zipf = Zipf::new(config.keys, config.zipf);
        let pareto = config
            .pareto
            .then(|| Pareto::new(config.pareto_alpha, config.pareto_cap));
        let mut now = 0.0;
        let arrivals: Vec<Arrival> = (0..config.requests)
            .map(|_| {
                now += mean_gap * rng.exp();
                Arrival {
                    at: Duration::from_secs_f64(now),
                    key: zipf.sample(&mut rng),
                    work: match &pareto {
                        Some(p) => p.sample(&mut rng),
                        None => rng.exp(),
                    },
                }
            })
            .collect();
        let probe_count = config.probe_keys.min(config.keys);
        let probes = (0..probe_count)
            .map(|i| (i * config.keys / probe_count) as u32)
            .collect();
        let span = arrivals.last().map_or(Duration::ZERO, |a| a.at);
        Workload {
            arrivals,
            key_hashes,
            probes,
            span,
        }
    }
}

/// The unit of a request's work ([`size`]): 100 us of a normal-speed backend's cache-miss
/// service time, so a request of mean size is `miss_time / COST_UNIT` units (100 by default).
pub const COST_UNIT: Duration = Duration::from_micros(100);

/// The work of a request whose service-time draw is `work` (mean 1; its cache-miss service
/// time on a normal backend is `work x miss_time`), in [`COST_UNIT`]s: rounded, and clamped
/// to `1..=lbkit::MAX_COST`, what `Request::cost` accepts.
pub fn size(work: f64, miss_time: Duration) -> u32 {
    let units = (work * miss_time.as_secs_f64() / COST_UNIT.as_secs_f64()).round();
    units.clamp(1.0, f64::from(lbkit::MAX_COST)) as u32
}

/// Heavy-tailed request sizes: a Pareto law of shape `alpha` and minimum 1, each draw capped
/// at `cap` (a draw above it counts as `cap`), then divided by the capped law's mean so the
/// draws have mean 1, as the exponential ones do. One uniform per draw (inverse CDF:
/// `u^(-1/alpha)`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pareto {
    alpha: f64,
    cap: f64,
    mean: f64,
}

impl Pareto {
    /// The law of shape `alpha` (> 0) capped at `cap` (>= 1), `Config::check`'s bounds.
    pub fn new(alpha: f64, cap: f64) -> Self {
        Pareto {
            alpha,
            cap,
            mean: Pareto::capped_mean(alpha, cap),
        }
    }

    /// The mean of `min(X, cap)` for X Pareto of shape `alpha` and minimum 1:
    /// `1 + (integral from 1 to cap of x^-alpha dx)`.
    pub fn capped_mean(alpha: f64, cap: f64) -> f64 {
        if (alpha - 1.0).abs() < 1e-12 {
            1.0 + cap.ln()
        } else {
            1.0 + (1.0 - cap.powf(1.0 - alpha)) / (alpha - 1.0)
        }
    }

    /// The smallest draw and the largest, as multiples of the mean.
    pub fn range(&self) -> (f64, f64) {
        (1.0 / self.mean, self.cap / self.mean)
    }

    /// A draw, as a multiple of the capped law's mean.
    pub fn sample(&self, rng: &mut Rng) -> f64 {
        rng.unit().powf(-1.0 / self.alpha).min(self.cap) / self.mean
    }
}

/// Zipf sampling by inverse CDF (binary search over the cumulative weights).
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, exponent: f64) -> Self {
        let mut total = 0.0;
        let cumulative = (1..=n)
            .map(|rank| {
                total += (rank as f64).powf(-exponent);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    fn sample(&self, rng: &mut Rng) -> u32 {
        let Some(&total) = self.cumulative.last() else {
            return 0;
        };
        let u = rng.unit() * total;
        let i = self.cumulative.partition_point(|&c| c < u);
        i.min(self.cumulative.len() - 1) as u32
    }
}
