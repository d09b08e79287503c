//! The fleet model: the backends behind the balancer, as the simulation sees them.
//!
//! Each backend ([`Server`]) serves `workers` requests at once, with a FIFO queue behind them.
//! A request's service time is its exponential draw (mean 1) times `miss_time`, or `hit_time`
//! on a cache hit, times the backend's slowness: 1, or `slow_factor` for the slow ones, and
//! `slowdown` times more once it slows down. Each backend's cache remembers the keys it served
//! recently (two generations of `cache / 2` keys each: a key seen in either is a hit), so only
//! affinity (the same key to the same backend) makes it pay. A failed backend serves nothing
//! and answers every request with an error. With [`Config::drift`] every backend's speed also
//! drifts ([`Drift`]), slowly and without anyone telling the balancer.
//!
//! Every backend measures its own load as an ORCA server would ([`LoadWindow`]), and each
//! response it sends carries that report ([`Server::load_report`]): over the last second of
//! simulated time, its utilisation (worker-time busy over worker-time available), the
//! requests it answered per second and the errors per second among them.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use lbkit::{Backend, LoadReport};

use crate::config::Config;
use crate::workload::{Arrival, Rng};

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

/// How a backend's speed drifts with time: its slowness is multiplied by
/// `factor^sin(2 pi t / period + phase)`, so it swings between `factor` times slower and
/// `factor` times faster than its own, each backend with its own period and phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Drift {
    factor: f64,
    period: Duration,
    phase: f64,
}

impl Drift {
    /// Backend `i`'s drift under `config` (`None` without [`Config::drift`]): a period drawn
    /// uniformly between half and 1.5 times [`Config::drift_period`] and a uniform phase,
    /// both from the seed and `i`, so a seed replays the same drift.
    pub fn of(config: &Config, i: usize) -> Option<Drift> {
        let factor = config.drift?;
        let mut rng = Rng::new(lbkit::hash::mix(config.seed ^ i as u64, 0xd41f7));
        Some(Drift {
            factor,
            period: config.drift_period.mul_f64(0.5 + rng.unit()),
            phase: std::f64::consts::TAU * rng.unit(),
        })
    }

    /// The multiplier of the backend's slowness at `now`.
    pub fn at(&self, now: Duration) -> f64 {
        let turn = now.as_secs_f64() / self.period.as_secs_f64().max(1e-9);
        self.factor
            .powf((std::f64::consts::TAU * turn + self.phase).sin())
    }
}

/// The span a backend's load report covers: its last second of simulated time, kept as
/// [`BUCKETS`] buckets of 100 ms (so the report covers between 0.9 and 1 s).
pub const REPORT_WINDOW: Duration = Duration::from_secs(1);
const BUCKET: Duration = Duration::from_millis(100);
const BUCKETS: usize = (REPORT_WINDOW.as_millis() / BUCKET.as_millis()) as usize;

/// One [`BUCKET`] of a backend's measurements.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which bucket of the run this is (time / [`BUCKET`]).
    index: u64,
    /// Worker-seconds spent serving.
    busy: f64,
    /// Requests answered (served, or answered with an error).
    answered: u32,
    /// Of those, errors.
    errors: u32,
}

/// What a backend measures of its own load over the last [`REPORT_WINDOW`]: a ring of
/// buckets, busy time integrated as workers start and stop.
#[derive(Debug, Clone, Default)]
pub struct LoadWindow {
    buckets: [Bucket; BUCKETS],
    /// Busy time is integrated up to here.
    accounted: Duration,
}

impl LoadWindow {
    fn bucket(&mut self, at: Duration) -> &mut Bucket {
        let index = (at.as_nanos() / BUCKET.as_nanos()) as u64;
        let b = &mut self.buckets[index as usize % BUCKETS];
        if b.index != index {
            *b = Bucket {
                index,
                ..Bucket::default()
            };
        }
        b
    }

    /// Counts `busy` workers busy from the last accounting up to `now`.
    fn account(&mut self, busy: usize, now: Duration) {
        if busy == 0 {
            self.accounted = self.accounted.max(now);
            return;
        }
        while self.accounted < now {
            let at = self.accounted;
            let next = Duration::from_nanos(
                ((at.as_nanos() / BUCKET.as_nanos() + 1) * BUCKET.as_nanos()) as u64,
            );
            let end = next.min(now);
            self.bucket(at).busy += busy as f64 * (end - at).as_secs_f64();
            self.accounted = end;
        }
    }

    /// The report over the buckets of the last [`REPORT_WINDOW`] up to `now`.
    /// With `queue` requests waiting now added to the busy share.
    fn load(&mut self, workers: usize, queue: usize, now: Duration) -> Load {
        let current = (now.as_nanos() / BUCKET.as_nanos()) as u64;
        let oldest = current.saturating_sub(BUCKETS as u64 - 1);
        let from = BUCKET.as_secs_f64() * oldest as f64;
        let span = (now.as_secs_f64() - from).max(1e-9);
        let (mut busy, mut answered, mut errors) = (0.0, 0, 0);
        for b in &self.buckets {
            if (oldest..=current).contains(&b.index) {
                busy += b.busy;
                answered += b.answered;
                errors += b.errors;
            }
        }
        Load {
            utilisation: (busy / span + queue as f64) / workers.max(1) as f64,
            qps: f64::from(answered) / span,
            errors_per_second: f64::from(errors) / span,
        }
    }
}

/// A backend's load over its last [`REPORT_WINDOW`], as its report gives it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    /// Busy worker-time over worker-time (plus queued requests over workers, with
    /// [`Config::queued_utilisation`]).
    pub utilisation: f64,
    /// Requests answered per second.
    pub qps: f64,
    /// Of those, errors per second.
    pub errors_per_second: f64,
}

impl Load {
    /// As ORCA's fields: application utilisation, rps, and eps when there were errors.
    pub fn report(&self) -> LoadReport {
        let report = LoadReport::new()
            .utilization(self.utilisation)
            .qps(self.qps);
        if self.errors_per_second > 0.0 {
            report.errors_per_second(self.errors_per_second)
        } else {
            report
        }
    }
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
    /// How its speed drifts with time, if it does.
    pub drift: Option<Drift>,
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
    /// The work those attempts hold: the sum of their sizes
    /// ([`crate::workload::size`]), whatever the balancer was told.
    pub work: u64,
    /// Requests in service, abandoned ones included.
    busy: usize,
    workers: usize,
    queue: VecDeque<Queued>,
    cache: Cache,
    window: LoadWindow,
}

impl Server {
    /// A backend of `config`'s fleet, `slowness` times slower than a normal one.
    pub fn new(config: &Config, slowness: f64) -> Self {
        Server {
            slowness,
            drift: None,
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
            work: 0,
            busy: 0,
            workers: config.workers,
            queue: VecDeque::new(),
            cache: Cache::new(config.cache),
            window: LoadWindow::default(),
        }
    }

    /// This backend, `i` of `config`'s fleet, drifting as [`Drift::of`] says.
    pub fn drifting(mut self, config: &Config, i: usize) -> Self {
        self.drift = Drift::of(config, i);
        self
    }

    /// The load report its response sends at `now` (after counting that response): over the
    /// last [`REPORT_WINDOW`], the share of its worker-time spent serving (abandoned requests
    /// included: a server does not know the client gave up), the requests it answered per
    /// second and, if any, the errors per second among them.
    /// With `queued`, the utilisation adds the requests queued now over its workers
    /// ([`Config::queued_utilisation`]).
    pub fn load_report(&mut self, now: Duration, queued: bool) -> LoadReport {
        self.load(now, queued).report()
    }

    /// The figures of [`Server::load_report`].
    pub fn load(&mut self, now: Duration, queued: bool) -> Load {
        self.window.account(self.busy, now);
        let queue = if queued { self.queue.len() } else { 0 };
        self.window.load(self.workers, queue, now)
    }

    /// It answered a request with an error at `now` without serving it (it failed, or
    /// rejects).
    pub fn answered_error(&mut self, now: Duration) {
        self.window.account(self.busy, now);
        let bucket = self.window.bucket(now);
        bucket.errors += 1;
        bucket.answered += 1;
    }

    /// It served a request but answered it with an error (flaky): the response counted by
    /// [`Server::release_worker`] was an error.
    pub fn served_error(&mut self, now: Duration) {
        self.window.bucket(now).errors += 1;
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
    /// Started at `now` (its speed then, with [`Server::drift`]).
    pub fn start(
        &mut self,
        arrival: &Arrival,
        config: &Config,
        now: Duration,
    ) -> (Duration, Option<bool>) {
        self.window.account(self.busy, now);
        self.busy += 1;
        let hit = (config.keys > 0 && config.cache > 0).then(|| self.cache.touch(arrival.key));
        let mean = if hit == Some(true) {
            config.hit_time
        } else {
            config.miss_time
        };
        let drift = self.drift.map_or(1.0, |d| d.at(now));
        (mean.mul_f64(arrival.work * self.slowness * drift), hit)
    }

    /// A worker is done with a request at `now` (one more answered): the next one waiting,
    /// if any, which it takes.
    pub fn release_worker(&mut self, now: Duration) -> Option<Queued> {
        self.window.account(self.busy, now);
        self.window.bucket(now).answered += 1;
        self.busy -= 1;
        self.queue.pop_front()
    }

    /// The backend turns `factor` times slower, for the requests it starts from now on.
    pub fn slow_down(&mut self, factor: f64) {
        self.slowness *= factor;
    }

    /// The backend fails at `now`: it drops its queue and what it was serving, and from now
    /// on answers every request with an error.
    pub fn fail(&mut self, now: Duration) {
        self.window.account(self.busy, now);
        self.broken = true;
        self.queue.clear();
        self.busy = 0;
    }
}
