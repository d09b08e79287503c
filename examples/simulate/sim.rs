//! The simulation core of `examples/simulate`: a discrete-event model of one client tier
//! sending requests through a balancer to a fleet, in simulated time.
//!
//! Kept apart from the program's argument parsing and charts so that `tests/simulate.rs` can
//! include it (`#[path = "../examples/simulate/sim.rs"] mod sim;`) and check it.
//!
//! # The model
//!
//! * **Backends.** Each has `workers` requests in service at once and a FIFO queue behind
//!   them. A request's service time is exponential with mean `miss_time` (or `hit_time` on a
//!   cache hit) times the backend's slowness (1, or `slow_factor` for the slow ones).
//! * **Arrivals.** A Poisson process at `load` times the fleet's capacity (capacity counted
//!   with every request a cache miss), each request carrying a key drawn from a Zipf
//!   distribution over `keys` keys. The arrival sequence, keys and service-time draws come from
//!   the seed alone and are the same for every policy (common random numbers).
//! * **Cache.** Each backend remembers the keys it served recently (two generations of
//!   `cache / 2` keys each: a key seen in either is a hit). Only affinity (the same key to
//!   the same backend) makes it pay.
//! * **Balancer.** Driven only through the public [`Balancer`] trait, as a service would:
//!   `pick` on arrival with the key, the [`Pick`] guard held until the request completes, then
//!   reported with [`Pick::success`] (its latency at that backend, queueing included) or, for
//!   the requests of a backend that fails, [`Pick::failure`]. The balancer's clock is a
//!   [`ManualClock`] that follows simulated time.
//! * **Scenario.** At 30% of the run one backend fails: it is set `Down` and the requests it
//!   held fail and are retried at once through new picks. With [`Config::silent_failure`]
//!   nobody tells the balancer: the backend stays `Up` and answers every request with an
//!   error after [`Config::error_time`], which the client reports with [`Pick::failure`] and
//!   retries (at most [`Config::attempts`] tries per request); only passive health
//!   ([`Config::health`], [`health_rules`]) can take it out. At 50% one backend turns `slowdown` times
//!   slower. At 70% a new backend joins through `update`. Before and after each membership
//!   change, the same probe keys are routed (pick, then drop at once) to measure how many
//!   moved, against the minimum: on a failure the keys that were on the failed backend, on a
//!   join the new backend's fair share.
//! * **Client.** Each attempt can time out ([`Config::timeout`]): the client reports a
//!   failure and retries elsewhere, while the backend still serves the abandoned request (it
//!   is not told), as most servers do.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet, VecDeque};
use std::time::Duration;

use lbkit::{Backend, Balancer, Error, Health, ManualClock, Pick, Request};
use lbkit::{HealthConfig, OutlierDetection, SlowStart};

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
    /// Whether one backend fails at 30% of the run.
    pub fail: bool,
    /// Whether the failure goes unannounced: the backend is not set `Down` but answers every
    /// request with an error after `error_time`.
    pub silent_failure: bool,
    /// How long a failed backend takes to answer with an error.
    pub error_time: Duration,
    /// The client gives up on an attempt after this long; `None`: it waits forever.
    pub timeout: Option<Duration>,
    /// Tries per request (the first and the retries) before the client gives up on it.
    pub attempts: usize,
    /// Whether the balancer applies [`health_rules`] (passive health).
    pub health: bool,
    /// Whether one backend joins at 70% of the run.
    pub join: bool,
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
            fail: true,
            silent_failure: false,
            error_time: Duration::from_millis(1),
            timeout: None,
            attempts: 3,
            health: false,
            join: true,
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
        if !(self.zipf.is_finite() && self.zipf >= 0.0) {
            return Err("the Zipf exponent must be a number >= 0".into());
        }
        if self.miss_time.is_zero() || self.hit_time.is_zero() {
            return Err("service times must be above zero".into());
        }
        if self.attempts == 0 {
            return Err("attempts must be at least 1".into());
        }
        if self.error_time.is_zero() || self.timeout.is_some_and(|t| t.is_zero()) {
            return Err("the error time and the timeout must be above zero".into());
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

    /// Backend `i`'s slowness at the start.
    fn slowness(&self, i: usize) -> f64 {
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
}

/// The passive-health rules the simulator applies with [`Config::health`] (its clock is set
/// by the simulation): eject after 5 failures in a row for 30 s x the number of ejections
/// (at most 300 s), never more than 20% of the set; ignore health below 50% healthy; ramp a
/// joining or returning backend's weight from 10% over 10 s.
pub fn health_rules() -> HealthConfig {
    HealthConfig::new()
        .outlier_detection(OutlierDetection {
            consecutive_failures: 5,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 20.0,
        })
        .panic_threshold(0.5)
        .slow_start(SlowStart::new(Duration::from_secs(10)))
}

/// A backend's id in the simulation: `b00`, `b01`, ... (so id order is index order).
pub fn backend_id(i: usize) -> String {
    format!("b{i:02}")
}

/// SplitMix64: tiny, seedable, and fixed forever (unlike a library RNG whose stream may
/// change between versions), so a seed replays the same run on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1), never 0 or 1.
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Exponential with mean 1.
    pub fn exp(&mut self) -> f64 {
        -self.unit().ln()
    }
}

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

/// How many probe keys one membership change moved.
#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    /// What happened: `"fail"` or `"join"`.
    pub change: &'static str,
    /// Fraction of probe keys routed to another backend after the change than before.
    pub moved: f64,
    /// The least fraction that had to move: the failed backend's keys, or the joining
    /// backend's fair share.
    pub minimum: f64,
}

/// What one policy did with the workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The policy's name.
    pub policy: String,
    /// Latency (arrival to completion, retries included) of every request that succeeded,
    /// sorted.
    pub latencies: Vec<Duration>,
    /// Requests that found no eligible backend.
    pub dropped: usize,
    /// Attempts retried because they failed (an error, a timeout, or a backend set `Down`
    /// under them).
    pub retried: usize,
    /// Attempts that ended in an error (reported with [`Pick::failure`]).
    pub errors: usize,
    /// Attempts the client gave up on after [`Config::timeout`] (reported as failures).
    pub timeouts: usize,
    /// Requests that failed on every one of their [`Config::attempts`] tries.
    pub failed: usize,
    /// Cache lookups that hit, and all lookups.
    pub cache_hits: usize,
    /// All cache lookups (0 with the cache off).
    pub cache_lookups: usize,
    /// The most requests ever in flight on one backend.
    pub max_in_flight: usize,
    /// In-flight requests per eligible backend, averaged over the samples.
    pub mean_in_flight: f64,
    /// One entry per membership change, in order.
    pub moves: Vec<Move>,
    /// Ids of every backend that took part, in index order.
    pub backend_ids: Vec<String>,
    /// `(time, in-flight per backend)` samples read from `Balancer::status`.
    pub load: Vec<(Duration, Vec<usize>)>,
    /// The backends ejected by passive health at each of those samples.
    pub ejected: Vec<Vec<usize>>,
    /// Total in flight reported by `Balancer::status` after the last request completed.
    pub in_flight_after: usize,
}

impl Outcome {
    /// The latency at quantile `q` (0..=1); zero if nothing completed.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() as f64 * q).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[i - 1]
    }

    /// The share of the samples from `from` on in which `backend` was ejected.
    pub fn ejected_share(&self, backend: usize, from: Duration) -> f64 {
        let mut samples = 0;
        let mut ejected = 0;
        for ((at, _), e) in self.load.iter().zip(&self.ejected) {
            if *at >= from {
                samples += 1;
                ejected += usize::from(e.contains(&backend));
            }
        }
        ejected as f64 / samples.max(1) as f64
    }

    /// Cache hit rate (0 with the cache off).
    pub fn hit_rate(&self) -> f64 {
        if self.cache_lookups == 0 {
            0.0
        } else {
            self.cache_hits as f64 / self.cache_lookups as f64
        }
    }
}

/// Builds a balancer over the simulation's backends (the value is the backend's index), on
/// the given clock, which the simulation moves along simulated time, with the given
/// passive-health rules if any ([`health_rules`] when [`Config::health`] is set).
pub type Build<'a> = &'a dyn Fn(
    Vec<Backend<usize>>,
    ManualClock,
    Option<HealthConfig>,
) -> Result<Box<dyn Balancer<usize>>, Error>;

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

struct Server {
    slowness: f64,
    weight: u32,
    /// Whether the balancer was told it is up (`false` once set `Down`).
    up: bool,
    /// Whether it failed: it serves nothing and answers every request with an error.
    broken: bool,
    /// Attempts the clients are waiting on here (queued, in service, or about to error).
    in_flight: usize,
    /// Requests in service, abandoned ones included.
    busy: usize,
    queue: VecDeque<Queued>,
    cache: Cache,
}

impl Server {
    fn new(config: &Config, slowness: f64) -> Self {
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
            in_flight: 0,
            busy: 0,
            queue: VecDeque::new(),
            cache: Cache::new(config.cache),
        }
    }
}

/// One attempt waiting in a backend's queue. The backend serves it even if the client gave
/// up on it meanwhile (the generation no longer matches the slot's).
#[derive(Debug, Clone, Copy)]
struct Queued {
    slot: usize,
    generation: u32,
    arrival: usize,
}

/// A request in the system: which arrival, and the guard of its current attempt's pick.
struct Job {
    arrival: usize,
    backend: usize,
    /// When the current pick was made: the latency reported is measured from here.
    picked: Duration,
    /// Which try this is, from 0.
    attempt: usize,
    pick: Pick<usize>,
}

/// What happens to an attempt (slot, generation) at some time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// `backend` finished serving it (the worker is free again, whoever still waits).
    Served { backend: usize },
    /// Its backend answered with an error.
    Error,
    /// The client stopped waiting for it.
    Timeout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Change {
    Fail,
    Slow,
    Join,
}

/// Runs `workload` through the balancer `build` makes, under `config`'s scenario.
///
/// # Errors
/// Whatever the policy's constructor or `update` returns.
pub fn run(
    config: &Config,
    workload: &Workload,
    policy: &str,
    build: Build<'_>,
) -> Result<Outcome, Error> {
    let mut sim = Simulation::new(config, workload, build)?;
    sim.run()?;
    Ok(sim.finish(policy))
}

struct Simulation<'a> {
    config: &'a Config,
    workload: &'a Workload,
    lb: Box<dyn Balancer<usize>>,
    clock: ManualClock,
    servers: Vec<Server>,
    /// Jobs by slot; a slot's generation, bumped at the end of each attempt, invalidates the
    /// events of attempts that are over.
    jobs: Vec<Option<Job>>,
    generations: Vec<u32>,
    free: Vec<usize>,
    /// Events: (time, slot, generation, what).
    events: BinaryHeap<Reverse<(Duration, usize, u32, Event)>>,
    latencies: Vec<Duration>,
    dropped: usize,
    retried: usize,
    errors: usize,
    timeouts: usize,
    failed: usize,
    cache_hits: usize,
    cache_lookups: usize,
    max_in_flight: usize,
    in_flight_sum: f64,
    moves: Vec<Move>,
    load: Vec<(Duration, Vec<usize>)>,
    ejected: Vec<Vec<usize>>,
}

impl<'a> Simulation<'a> {
    fn new(config: &'a Config, workload: &'a Workload, build: Build<'_>) -> Result<Self, Error> {
        let servers: Vec<Server> = (0..config.backends)
            .map(|i| Server::new(config, config.slowness(i)))
            .collect();
        let backends = servers
            .iter()
            .enumerate()
            .map(|(i, s)| Backend::new(backend_id(i), i).with_weight(s.weight))
            .collect();
        let clock = ManualClock::new();
        let health = config.health.then(health_rules);
        Ok(Simulation {
            config,
            workload,
            lb: build(backends, clock.clone(), health)?,
            clock,
            servers,
            jobs: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            events: BinaryHeap::new(),
            latencies: Vec::with_capacity(workload.arrivals.len()),
            dropped: 0,
            retried: 0,
            errors: 0,
            timeouts: 0,
            failed: 0,
            cache_hits: 0,
            cache_lookups: 0,
            max_in_flight: 0,
            in_flight_sum: 0.0,
            moves: Vec::new(),
            load: Vec::new(),
            ejected: Vec::new(),
        })
    }

    fn at_fraction(&self, f: f64) -> Duration {
        self.workload.span.mul_f64(f)
    }

    fn run(&mut self) -> Result<(), Error> {
        let mut changes: Vec<(Duration, Change)> = Vec::new();
        if self.config.fail {
            changes.push((self.at_fraction(0.3), Change::Fail));
        }
        if self.config.slowdown.is_some() {
            changes.push((self.at_fraction(0.5), Change::Slow));
        }
        if self.config.join {
            changes.push((self.at_fraction(0.7), Change::Join));
        }
        let samples = self.config.samples.max(1);
        let sample_every = self.workload.span / samples as u32;
        let mut next_sample = Duration::ZERO;
        let mut next_change = 0;
        let mut next_arrival = 0;
        loop {
            let arrival = self.workload.arrivals.get(next_arrival).map(|a| a.at);
            let event = self.events.peek().map(|Reverse(e)| e.0);
            let change = changes.get(next_change).map(|c| c.0);
            // The earliest of the four; on a tie: sample, change, event, arrival.
            let Some(now) = [arrival, event, change].into_iter().flatten().min() else {
                break;
            };
            if next_sample <= now && self.load.len() < samples {
                self.clock.set(next_sample);
                self.sample(next_sample);
                next_sample += sample_every.max(Duration::from_nanos(1));
                continue;
            }
            self.clock.set(now);
            if change == Some(now) {
                let (_, what) = changes[next_change];
                next_change += 1;
                self.change(what, now)?;
            } else if event == Some(now) {
                let Some(Reverse((_, slot, generation, what))) = self.events.pop() else {
                    unreachable!("peeked above")
                };
                let current = self.generations[slot] == generation;
                match what {
                    Event::Served { backend } => {
                        if !self.servers[backend].broken {
                            self.served(backend, now);
                            if current {
                                self.succeed(slot, now);
                            }
                        }
                    }
                    Event::Error if current => {
                        self.errors += 1;
                        self.fail(slot, now);
                    }
                    Event::Timeout if current => {
                        self.timeouts += 1;
                        self.fail(slot, now);
                    }
                    Event::Error | Event::Timeout => {}
                }
            } else {
                let index = next_arrival;
                next_arrival += 1;
                let slot = self.free.pop().unwrap_or_else(|| {
                    self.jobs.push(None);
                    self.generations.push(0);
                    self.jobs.len() - 1
                });
                self.dispatch(slot, index, 0, now);
            }
        }
        Ok(())
    }

    fn request(&self, arrival: usize) -> Request<'static> {
        if self.config.keys == 0 {
            Request::new()
        } else {
            let key = self.workload.arrivals[arrival].key;
            Request::with_hash(self.workload.key_hashes[key as usize])
        }
    }

    /// Picks a backend for try `attempt` of the request of `arrival` and sends it there, in
    /// `slot`.
    fn dispatch(&mut self, slot: usize, arrival: usize, attempt: usize, now: Duration) {
        let Some(pick) = self.lb.pick(&self.request(arrival)) else {
            self.dropped += 1;
            self.free.push(slot);
            return;
        };
        let backend = *pick;
        let generation = self.generations[slot];
        let server = &mut self.servers[backend];
        // Only the panic threshold may bring back a backend set `Down`.
        assert!(
            server.up || self.config.health,
            "the balancer picked a backend that is down"
        );
        server.in_flight += 1;
        self.max_in_flight = self.max_in_flight.max(server.in_flight);
        self.jobs[slot] = Some(Job {
            arrival,
            backend,
            picked: now,
            attempt,
            pick,
        });
        if let Some(timeout) = self.config.timeout {
            self.events
                .push(Reverse((now + timeout, slot, generation, Event::Timeout)));
        }
        let queued = Queued {
            slot,
            generation,
            arrival,
        };
        if server.broken {
            let at = now + self.config.error_time;
            self.events
                .push(Reverse((at, slot, generation, Event::Error)));
        } else if server.busy < self.config.workers {
            self.start(backend, queued, now);
        } else {
            server.queue.push_back(queued);
        }
    }

    /// Starts serving `queued` on `backend`.
    fn start(&mut self, backend: usize, queued: Queued, now: Duration) {
        let arrival = self.workload.arrivals[queued.arrival];
        let server = &mut self.servers[backend];
        server.busy += 1;
        let hit = if self.config.keys > 0 && self.config.cache > 0 {
            self.cache_lookups += 1;
            server.cache.touch(arrival.key)
        } else {
            false
        };
        self.cache_hits += usize::from(hit);
        let mean = if hit {
            self.config.hit_time
        } else {
            self.config.miss_time
        };
        let service = mean.mul_f64(arrival.work * server.slowness);
        self.events.push(Reverse((
            now + service,
            queued.slot,
            queued.generation,
            Event::Served { backend },
        )));
    }

    /// A worker of `backend` is free: it takes the next request in the queue.
    fn served(&mut self, backend: usize, now: Duration) {
        let server = &mut self.servers[backend];
        server.busy -= 1;
        if let Some(next) = server.queue.pop_front() {
            self.start(backend, next, now);
        }
    }

    /// Ends the current attempt of `slot`: the next one gets a new generation.
    fn end_attempt(&mut self, slot: usize) -> Job {
        let job = self.jobs[slot].take().expect("a current attempt exists");
        self.servers[job.backend].in_flight -= 1;
        self.generations[slot] = self.generations[slot].wrapping_add(1);
        job
    }

    /// The request in `slot` succeeded.
    fn succeed(&mut self, slot: usize, now: Duration) {
        let job = self.end_attempt(slot);
        // Report its latency at this backend, which releases the slot.
        job.pick.success(now - job.picked);
        self.latencies
            .push(now - self.workload.arrivals[job.arrival].at);
        self.free.push(slot);
    }

    /// The current attempt of `slot` failed: report it, and retry through a new pick if the
    /// request has tries left.
    fn fail(&mut self, slot: usize, now: Duration) {
        let job = self.end_attempt(slot);
        job.pick.failure();
        if job.attempt + 1 < self.config.attempts {
            self.retried += 1;
            self.dispatch(slot, job.arrival, job.attempt + 1, now);
        } else {
            self.failed += 1;
            self.free.push(slot);
        }
    }

    fn sample(&mut self, at: Duration) {
        let status = self.lb.status();
        let mut row = vec![0; self.servers.len()];
        let mut eligible = 0;
        let mut total = 0;
        let mut ejected = Vec::new();
        for s in &status {
            let i: usize = s.id()[1..].parse().expect("ids are b<index>");
            row[i] = s.in_flight();
            total += s.in_flight();
            eligible += usize::from(s.is_eligible());
            if s.is_ejected() {
                ejected.push(i);
            }
        }
        self.ejected.push(ejected);
        self.in_flight_sum += total as f64 / eligible.max(1) as f64;
        self.load.push((at, row));
    }

    /// Where each probe key goes now (pick, and drop at once).
    fn probe(&self) -> Vec<Option<usize>> {
        self.workload
            .probes
            .iter()
            .map(|&k| {
                let request = Request::with_hash(self.workload.key_hashes[k as usize]);
                self.lb.pick(&request).map(|p| *p)
            })
            .collect()
    }

    fn record_move(&mut self, change: &'static str, before: &[Option<usize>], minimum: f64) {
        if before.is_empty() || self.config.keys == 0 {
            return;
        }
        let after = self.probe();
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        self.moves.push(Move {
            change,
            moved: moved as f64 / before.len() as f64,
            minimum,
        });
    }

    fn change(&mut self, what: Change, now: Duration) -> Result<(), Error> {
        let (failing, slowing) = self.config.victims();
        match what {
            Change::Slow => {
                let factor = self.config.slowdown.unwrap_or(1.0);
                self.servers[slowing].slowness *= factor;
            }
            Change::Fail => {
                let server = &mut self.servers[failing];
                server.broken = true;
                server.queue.clear();
                server.busy = 0;
                if !self.config.silent_failure {
                    // Announced: the balancer routes elsewhere from now on. (Unannounced, no
                    // membership changes, so there is no move to measure.)
                    let before = self.probe();
                    self.servers[failing].up = false;
                    self.lb.set_health(&backend_id(failing), Health::Down)?;
                    let on_failed = before.iter().filter(|&&b| b == Some(failing)).count();
                    let minimum = on_failed as f64 / before.len().max(1) as f64;
                    self.record_move("fail", &before, minimum);
                }
                // The failed backend's requests come back as errors; the client retries each
                // at once, through a new pick.
                let orphans: Vec<usize> = (0..self.jobs.len())
                    .filter(|&s| matches!(&self.jobs[s], Some(j) if j.backend == failing))
                    .collect();
                for slot in orphans {
                    self.errors += 1;
                    self.fail(slot, now);
                }
            }
            Change::Join => {
                let before = self.probe();
                let joining = self.servers.len();
                self.servers.push(Server::new(self.config, 1.0));
                let backends: Vec<Backend<usize>> = self
                    .servers
                    .iter()
                    .enumerate()
                    .map(|(i, s)| Backend::new(backend_id(i), i).with_weight(s.weight))
                    .collect();
                self.lb.update(backends)?;
                let eligible: u32 = self.servers.iter().filter(|s| s.up).map(|s| s.weight).sum();
                let share = self.servers[joining].weight as f64 / eligible.max(1) as f64;
                self.record_move("join", &before, share);
            }
        }
        Ok(())
    }

    fn finish(mut self, policy: &str) -> Outcome {
        self.latencies.sort_unstable();
        let in_flight_after = self.lb.status().iter().map(|s| s.in_flight()).sum();
        let samples = self.load.len().max(1) as f64;
        Outcome {
            policy: policy.to_string(),
            latencies: self.latencies,
            dropped: self.dropped,
            retried: self.retried,
            errors: self.errors,
            timeouts: self.timeouts,
            failed: self.failed,
            cache_hits: self.cache_hits,
            cache_lookups: self.cache_lookups,
            max_in_flight: self.max_in_flight,
            mean_in_flight: self.in_flight_sum / samples,
            moves: self.moves,
            backend_ids: (0..self.servers.len()).map(backend_id).collect(),
            load: self.load,
            ejected: self.ejected,
            in_flight_after,
        }
    }
}

fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.1}")
    }
}

/// The results as a text table: a header, a rule, and one row per outcome. Errors, timeouts
/// and failed requests get columns when some request timed out or failed.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut changes: Vec<&'static str> = Vec::new();
    for o in outcomes {
        for m in &o.moves {
            if !changes.contains(&m.change) {
                changes.push(m.change);
            }
        }
    }
    let name_width = outcomes
        .iter()
        .map(|o| o.policy.len())
        .max()
        .unwrap_or(0)
        .max("policy".len());
    let mut header = format!(
        "{:<name_width$} {:>8} {:>8} {:>8} {:>13} {:>6}",
        "policy", "p50 ms", "p99 ms", "p99.9 ms", "in-flight max", "mean",
    );
    header.push_str(&format!(" {:>10}", "cache hits"));
    for c in &changes {
        header.push_str(&format!(" {:>16}", format!("moved on {c} (min)")));
    }
    header.push_str(&format!(" {:>8}", "retried"));
    // Failures beyond the announced one's retries: show what they cost.
    let failures = outcomes.iter().any(|o| o.timeouts > 0 || o.failed > 0);
    if failures {
        header.push_str(&format!(
            " {:>8} {:>8} {:>8}",
            "errors", "timeouts", "failed"
        ));
    }
    let mut out = header.clone();
    out.push('\n');
    out.push_str(&"-".repeat(header.len()));
    out.push('\n');
    for o in outcomes {
        let mut row = format!(
            "{:<name_width$} {:>8} {:>8} {:>8} {:>13} {:>6.1} {:>9.1}%",
            o.policy,
            millis(o.quantile(0.5)),
            millis(o.quantile(0.99)),
            millis(o.quantile(0.999)),
            o.max_in_flight,
            o.mean_in_flight,
            o.hit_rate() * 100.0,
        );
        for c in &changes {
            let cell = match o.moves.iter().find(|m| m.change == *c) {
                Some(m) => format!("{:.1}% ({:.1}%)", m.moved * 100.0, m.minimum * 100.0),
                None => "-".to_string(),
            };
            row.push_str(&format!(" {:>16}", cell));
        }
        row.push_str(&format!(" {:>8}", o.retried));
        if failures {
            row.push_str(&format!(
                " {:>8} {:>8} {:>8}",
                o.errors, o.timeouts, o.failed
            ));
        }
        out.push_str(&row);
        out.push('\n');
    }
    out
}

/// The passive-health comparison as a text table: one row per policy, each cell
/// `before -> after` from the same scenario run without and then with the health rules. With
/// `failed` (the failed backend and when it failed), a last column: the share of the time
/// from then on that it was ejected, with the health rules.
pub fn health_table(pairs: &[(Outcome, Outcome)], failed: Option<(usize, Duration)>) -> String {
    let name_width = pairs
        .iter()
        .map(|(o, _)| o.policy.len())
        .max()
        .unwrap_or(0)
        .max("policy".len());
    let columns = [
        "p99 ms",
        "p99.9 ms",
        "errors",
        "timeouts",
        "failed requests",
    ];
    let mut header = format!("{:<name_width$}", "policy");
    for c in columns {
        header.push_str(&format!(" {c:>17}"));
    }
    if let Some((backend, _)) = failed {
        header.push_str(&format!(
            " {:>11}",
            format!("{} ejected", backend_id(backend))
        ));
    }
    let mut out = header.clone();
    out.push('\n');
    out.push_str(&"-".repeat(header.len()));
    out.push('\n');
    for (before, after) in pairs {
        let cells = [
            (millis(before.quantile(0.99)), millis(after.quantile(0.99))),
            (
                millis(before.quantile(0.999)),
                millis(after.quantile(0.999)),
            ),
            (before.errors.to_string(), after.errors.to_string()),
            (before.timeouts.to_string(), after.timeouts.to_string()),
            (before.failed.to_string(), after.failed.to_string()),
        ];
        let mut row = format!("{:<name_width$}", before.policy);
        for (b, a) in cells {
            row.push_str(&format!(" {:>17}", format!("{b} -> {a}")));
        }
        if let Some((backend, from)) = failed {
            let share = after.ejected_share(backend, from) * 100.0;
            row.push_str(&format!(" {share:>10.0}%"));
        }
        out.push_str(&row);
        out.push('\n');
    }
    out
}
