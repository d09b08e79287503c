//! The workload: the requests the client tier sends, drawn from the seed alone, so that every
//! policy sees the same arrival sequence, keys and service-time draws (common random numbers).
//!
//! Arrivals are a Poisson process at `load` times the fleet's capacity (capacity counted with
//! every request a cache miss); each request carries a key drawn from a Zipf distribution over
//! `keys` keys, and a service-time draw that the backend serving it scales by its speed and
//! its cache (`fleet.rs`).

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
    /// Its service-time draw (exponential, mean 1), scaled by the backend's speed and cache.
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
        let mut now = 0.0;
        let arrivals: Vec<Arrival> = (0..config.requests)
            .map(|_| {
                now += mean_gap * rng.exp();
                Arrival {
                    at: Duration::from_secs_f64(now),
                    key: zipf.sample(&mut rng),
                    work: rng.exp(),
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
