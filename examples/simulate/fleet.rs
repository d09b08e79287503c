//! The fleet model: the backends behind the balancer, as the simulation sees them.
//!
//! Each backend ([`Server`]) serves `workers` requests at once, with a FIFO queue behind them.
//! A request's service time is its exponential draw (mean 1) times `miss_time`, or `hit_time`
//! on a cache hit, times the backend's slowness: 1, or `slow_factor` for the slow ones, and
//! `slowdown` times more once it slows down. Each backend's cache remembers the keys it served
//! recently (two generations of `cache / 2` keys each: a key seen in either is a hit), so only
//! affinity (the same key to the same backend) makes it pay. A failed backend serves nothing
//! and answers every request with an error.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use lbkit::Backend;

use crate::config::Config;
use crate::workload::Arrival;

/// A backend's id in the simulation: `b00`, `b01`, ... (so id order is index order).
pub fn backend_id(i: usize) -> String {
    format!("b{i:02}")
}

/// The balancer's view of the fleet: one backend per server, named by [`backend_id`], its
/// value the server's index, with the server's weight.
pub fn backends(servers: &[Server]) -> Vec<Backend<usize>> {
    servers
        .iter()
        .enumerate()
        .map(|(i, s)| Backend::new(backend_id(i), i).with_weight(s.weight))
        .collect()
}

/// Recently served keys of one backend: two generations of `capacity / 2` keys.
struct Cache {
    current: HashSet<u32>,
    previous: HashSet<u32>,
    generation: usize,
}

impl Cache {
    fn new(capacity: usize) -> Self {
        Cache {
            current: HashSet::new(),
            previous: HashSet::new(),
            generation: capacity.div_ceil(2),
        }
    }

    /// Whether `key` was served recently; remembers it as served now.
    fn touch(&mut self, key: u32) -> bool {
        if self.generation == 0 {
            return false;
        }
        if self.current.contains(&key) {
            return true;
        }
        let hit = self.previous.contains(&key);
        if self.current.len() >= self.generation {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key);
        hit
    }
}

/// One attempt waiting in a backend's queue, as the engine names it. The backend serves it
/// even if the client gave up on it meanwhile (the generation no longer matches the slot's).
#[derive(Debug, Clone, Copy)]
pub struct Queued {
    /// The engine's slot of the request.
    pub slot: usize,
    /// The slot's generation when this attempt was sent.
    pub generation: u32,
    /// The request's index in the arrival sequence.
    pub arrival: usize,
}

/// One backend of the fleet.
pub struct Server {
    slowness: f64,
    pub weight: u32,
    /// Whether the balancer was told it is up (`false` once set `Down`).
    pub up: bool,
    /// Whether it failed: it serves nothing and answers every request with an error.
    pub broken: bool,
    /// The share of the responses it serves that are errors (an intermittent failure).
    pub flaky: f64,
    /// The share of its requests it rejects at once (429s), without serving them.
    pub rejects: f64,
    /// Attempts the clients are waiting on here (queued, in service, or about to error).
    pub in_flight: usize,
    /// Requests in service, abandoned ones included.
    busy: usize,
    workers: usize,
    queue: VecDeque<Queued>,
    cache: Cache,
}

impl Server {
    /// A backend of `config`'s fleet, `slowness` times slower than a normal one.
    pub fn new(config: &Config, slowness: f64) -> Self {
        Server {
            slowness,
            weight: if config.capacity_weights {
                // Weight 3 for a normal backend: a 3x slower one gets 1.
                (3.0 / slowness).round().max(1.0) as u32
            } else {
                1
            },
            up: true,
            broken: false,
            flaky: 0.0,
            rejects: 0.0,
            in_flight: 0,
            busy: 0,
            workers: config.workers,
            queue: VecDeque::new(),
            cache: Cache::new(config.cache),
        }
    }

    /// Its load as it would report it (ORCA's utilisation): requests in service and queued
    /// over workers, so above 1 when it queues.
    pub fn utilisation(&self) -> f64 {
        (self.busy + self.queue.len()) as f64 / self.workers.max(1) as f64
    }

    /// Whether a worker is free to start a request now.
    pub fn has_free_worker(&self) -> bool {
        self.busy < self.workers
    }

    /// Puts `queued` at the back of the queue, until a worker is free.
    pub fn wait(&mut self, queued: Queued) {
        self.queue.push_back(queued);
    }

    /// A worker starts serving `arrival`: how long it takes, and whether the backend's cache
    /// had its key (`None`: no lookup, the run has no keys or no cache).
    pub fn start(&mut self, arrival: &Arrival, config: &Config) -> (Duration, Option<bool>) {
        self.busy += 1;
        let hit = (config.keys > 0 && config.cache > 0).then(|| self.cache.touch(arrival.key));
        let mean = if hit == Some(true) {
            config.hit_time
        } else {
            config.miss_time
        };
        (mean.mul_f64(arrival.work * self.slowness), hit)
    }

    /// A worker is done with a request: the next one waiting, if any, which it takes.
    pub fn release_worker(&mut self) -> Option<Queued> {
        self.busy -= 1;
        self.queue.pop_front()
    }

    /// The backend turns `factor` times slower, for the requests it starts from now on.
    pub fn slow_down(&mut self, factor: f64) {
        self.slowness *= factor;
    }

    /// The backend fails: it drops its queue and what it was serving, and from now on answers
    /// every request with an error.
    pub fn fail(&mut self) {
        self.broken = true;
        self.queue.clear();
        self.busy = 0;
    }
}
