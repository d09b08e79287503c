//! The event engine: runs one policy over the workload in simulated time, driving its
//! balancer as a service would, and records what happened in an [`Outcome`].
//!
//! * **Balancer.** Driven only through the public [`Balancer`] trait: `pick` on arrival with
//!   the key, the [`Pick`] guard held until the request completes, then reported with
//!   [`Pick::success`] (its latency at that backend, queueing included) or, for an attempt
//!   that failed, [`Pick::failure`]. Every answer the backend sends (a response or an error)
//!   first hands the balancer the backend's load report ([`Pick::report_load`], what
//!   [`Server::load_report`] measured over the last second), as an ORCA trailer would; a
//!   timeout or a backend set `Down` under a request brings none. Only policies that read
//!   reports (client-side weighted round robin) act on them. The balancer's clock is a [`ManualClock`] that follows
//!   simulated time.
//! * **Scenario.** At 30% of the run one backend fails: it is set `Down` and the requests it
//!   held fail and are retried at once through new picks. With [`Config::silent_failure`]
//!   nobody tells the balancer: the backend stays `Up` and answers every request with an
//!   error after [`Config::error_time`], which the client reports with [`Pick::failure`] and
//!   retries (at most [`Config::attempts`] tries per request; with [`Config::avoid_tried`] a
//!   retry's pick avoids the backends the request already tried, [`Request::avoid`]); only
//!   passive health ([`Config::health`], [`health_rules`]) can take it out. At 50% one backend turns
//!   `slowdown` times slower. At 70% a new backend joins through `update`. Before and after
//!   each membership change, the same probe keys are routed (pick, then drop at once) to
//!   measure how many moved, against the minimum: on a failure the keys that were on the
//!   failed backend, on a join the new backend's fair share.
//! * **Work.** Every attempt holds its request's size ([`workload::size`]) on its backend
//!   while it is in flight, measured here whatever the balancer is told: with
//!   [`Config::costs`] the request says it (`Request::cost`), otherwise every request costs 1.
//! * **Client.** Each attempt can time out ([`Config::timeout`]): the client reports a
//!   failure and retries elsewhere, while the backend still serves the abandoned request (it
//!   is not told), as most servers do.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use lbkit::{Backend, Balancer, Error, Health, HealthConfig, ManualClock, Pick, Request};

use crate::config::{rules_of, Config};
use crate::fleet::{self, backend_id, Queued, Server};
use crate::report::{Move, Outcome};
use crate::workload::{self, Workload};

/// Builds a balancer over the simulation's backends (the value is the backend's index), on
/// the given clock, which the simulation moves along simulated time, with the given
/// passive-health rules if any ([`health_rules`] when [`Config::health`] is set).
pub type Build<'a> = &'a dyn Fn(
    Vec<Backend<usize>>,
    ManualClock,
    Option<HealthConfig>,
) -> Result<Box<dyn Balancer<usize>>, Error>;

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
    /// `backend` answered it with an error.
    Error { backend: usize },
    /// The client stopped waiting for it.
    Timeout,
}

/// A change of the scenario: a backend fails, slows down, or joins.
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
    /// Those of the requests that arrived in the second half of the run.
    latencies_second_half: Vec<Duration>,
    dropped: usize,
    retried: usize,
    errors: usize,
    timeouts: usize,
    failed: usize,
    cache_hits: usize,
    cache_lookups: usize,
    max_in_flight: usize,
    in_flight_sum: f64,
    /// The most work held on one backend, and the sum over the samples of the mean work
    /// per backend up.
    max_work: u64,
    work_sum: f64,
    waited: usize,
    /// When the slowdown happens, if it does, and the picks of each backend from then on.
    slowed_at: Option<Duration>,
    picks_after_slowdown: Vec<usize>,
    moves: Vec<Move>,
    load: Vec<(Duration, Vec<usize>)>,
    ejected: Vec<Vec<usize>>,
    /// Backend ids by index, for the avoid lists of retries.
    ids: Vec<String>,
    /// By slot: the backends the request in it has tried (its avoid list).
    tried: Vec<Vec<usize>>,
}

impl<'a> Simulation<'a> {
    fn new(config: &'a Config, workload: &'a Workload, build: Build<'_>) -> Result<Self, Error> {
        let servers: Vec<Server> = (0..config.backends)
            .map(|i| Server::new(config, config.slowness(i)).drifting(config, i))
            .collect();
        let backends = fleet::backends(&servers);
        let clock = ManualClock::new();
        let health = rules_of(config);
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
            latencies_second_half: Vec::new(),
            dropped: 0,
            retried: 0,
            errors: 0,
            timeouts: 0,
            failed: 0,
            cache_hits: 0,
            cache_lookups: 0,
            max_in_flight: 0,
            in_flight_sum: 0.0,
            max_work: 0,
            work_sum: 0.0,
            waited: 0,
            slowed_at: config.slowdown.map(|_| workload.span.mul_f64(0.5)),
            picks_after_slowdown: vec![0; config.backends + 1],
            moves: Vec::new(),
            load: Vec::new(),
            ejected: Vec::new(),
            ids: (0..=config.backends).map(backend_id).collect(),
            tried: Vec::new(),
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
                            if current && self.flaked(slot, backend) {
                                self.servers[backend].served_error(now);
                                self.errors += 1;
                                self.report_load(slot, now);
                                self.fail(slot, now);
                            } else if current {
                                self.report_load(slot, now);
                                self.succeed(slot, now);
                            }
                        }
                    }
                    Event::Error { backend } => {
                        self.servers[backend].answered_error(now);
                        if current {
                            self.errors += 1;
                            self.report_load(slot, now);
                            self.fail(slot, now);
                        }
                    }
                    Event::Timeout if current => {
                        self.timeouts += 1;
                        self.fail(slot, now);
                    }
                    Event::Timeout => {}
                }
            } else {
                let index = next_arrival;
                next_arrival += 1;
                let slot = self.free.pop().unwrap_or_else(|| {
                    self.jobs.push(None);
                    self.generations.push(0);
                    self.tried.push(Vec::new());
                    self.jobs.len() - 1
                });
                self.dispatch(slot, index, 0, now);
            }
        }
        Ok(())
    }

    fn request(&self, arrival: usize) -> Request<'static> {
        let request = if self.config.keys == 0 {
            Request::new()
        } else {
            let key = self.workload.arrivals[arrival].key;
            Request::with_hash(self.workload.key_hashes[key as usize])
        };
        if self.config.costs {
            request.cost(self.size(arrival))
        } else {
            request
        }
    }

    /// The work of the request of `arrival`, in [`workload::COST_UNIT`]s.
    fn size(&self, arrival: usize) -> u32 {
        workload::size(self.workload.arrivals[arrival].work, self.config.miss_time)
    }

    /// Picks a backend for try `attempt` of the request of `arrival` and sends it there, in
    /// `slot`.
    fn dispatch(&mut self, slot: usize, arrival: usize, attempt: usize, now: Duration) {
        if attempt == 0 {
            self.tried[slot].clear();
        }
        let picked = if self.config.avoid_tried && attempt > 0 {
            let avoid: Vec<&str> = self.tried[slot]
                .iter()
                .map(|&i| self.ids[i].as_str())
                .collect();
            self.lb.pick(&self.request(arrival).avoid(&avoid))
        } else {
            self.lb.pick(&self.request(arrival))
        };
        let Some(pick) = picked else {
            self.dropped += 1;
            self.free.push(slot);
            return;
        };
        let backend = *pick;
        self.tried[slot].push(backend);
        if self.slowed_at.is_some_and(|at| now >= at) {
            self.picks_after_slowdown[backend] += 1;
        }
        let generation = self.generations[slot];
        let size = u64::from(self.size(arrival));
        let server = &mut self.servers[backend];
        // Only the panic threshold may bring back a backend set `Down`.
        assert!(
            server.up || self.config.health,
            "the balancer picked a backend that is down"
        );
        server.in_flight += 1;
        server.work += size;
        self.max_in_flight = self.max_in_flight.max(server.in_flight);
        self.max_work = self.max_work.max(server.work);
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
        let rejects = self.servers[backend].rejects;
        let rejected = rejects > 0.0 && self.chance(arrival, attempt, 1) < rejects;
        let server = &mut self.servers[backend];
        if server.broken || rejected {
            let at = now + self.config.error_time;
            self.events
                .push(Reverse((at, slot, generation, Event::Error { backend })));
        } else if server.has_free_worker() {
            self.start(backend, queued, now);
        } else {
            self.waited += 1;
            server.wait(queued);
        }
    }

    /// Starts serving `queued` on `backend`.
    fn start(&mut self, backend: usize, queued: Queued, now: Duration) {
        let arrival = &self.workload.arrivals[queued.arrival];
        let (service, hit) = self.servers[backend].start(arrival, self.config, now);
        if let Some(hit) = hit {
            self.cache_lookups += 1;
            self.cache_hits += usize::from(hit);
        }
        self.events.push(Reverse((
            now + service,
            queued.slot,
            queued.generation,
            Event::Served { backend },
        )));
    }

    /// A worker of `backend` is free: it takes the next request in the queue.
    fn served(&mut self, backend: usize, now: Duration) {
        if let Some(next) = self.servers[backend].release_worker(now) {
            self.start(backend, next, now);
        }
    }

    /// Ends the current attempt of `slot`: the next one gets a new generation.
    fn end_attempt(&mut self, slot: usize) -> Job {
        let job = self.jobs[slot].take().expect("a current attempt exists");
        let size = u64::from(self.size(job.arrival));
        let server = &mut self.servers[job.backend];
        server.in_flight -= 1;
        server.work -= size;
        self.generations[slot] = self.generations[slot].wrapping_add(1);
        job
    }

    /// A draw in [0, 1) for try `attempt` of `arrival`, replayed by the same seed.
    fn chance(&self, arrival: usize, attempt: usize, salt: u64) -> f64 {
        let key = self.config.seed ^ ((arrival as u64) << 8) ^ attempt as u64;
        (lbkit::hash::mix(key, salt) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Whether the current attempt in `slot`, served by `backend`, comes back as an error
    /// (the backend is flaky).
    fn flaked(&self, slot: usize, backend: usize) -> bool {
        let flaky = self.servers[backend].flaky;
        flaky > 0.0
            && self.jobs[slot]
                .as_ref()
                .is_some_and(|job| self.chance(job.arrival, job.attempt, 2) < flaky)
    }

    /// The backend of the current attempt in `slot` answers it: its load report goes with
    /// the answer, to the balancer, before the outcome is reported.
    fn report_load(&mut self, slot: usize, now: Duration) {
        let Some(job) = &self.jobs[slot] else {
            return;
        };
        let report = self.servers[job.backend].load_report(now, self.config.queued_utilisation);
        job.pick
            .report_load(report)
            .expect("a backend's report is finite and at least 0");
    }

    /// The request in `slot` succeeded.
    fn succeed(&mut self, slot: usize, now: Duration) {
        let job = self.end_attempt(slot);
        // Report its latency at this backend, which releases the slot.
        job.pick.success(now - job.picked);
        let arrived = self.workload.arrivals[job.arrival].at;
        self.latencies.push(now - arrived);
        if arrived >= self.at_fraction(0.5) {
            self.latencies_second_half.push(now - arrived);
        }
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
        let up = self.servers.iter().filter(|s| s.up);
        let (work, count) = up.fold((0u64, 0u32), |(w, n), s| (w + s.work, n + 1));
        self.work_sum += work as f64 / f64::from(count.max(1));
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
                self.servers[slowing].slow_down(factor);
            }
            Change::Fail if self.config.intermittent => {
                // Unannounced and partial: the balancer sees only the errors.
                let (flaky, rejecting) = self.config.intermittent_victims();
                self.servers[flaky].flaky = self.config.flaky_share;
                self.servers[rejecting].rejects = self.config.reject_share;
            }
            Change::Fail => {
                self.servers[failing].fail(now);
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
                self.servers
                    .push(Server::new(self.config, 1.0).drifting(self.config, joining));
                self.lb.update(fleet::backends(&self.servers))?;
                let eligible: u32 = self.servers.iter().filter(|s| s.up).map(|s| s.weight).sum();
                let share = self.servers[joining].weight as f64 / eligible.max(1) as f64;
                self.record_move("join", &before, share);
            }
        }
        Ok(())
    }

    fn finish(mut self, policy: &str) -> Outcome {
        self.latencies.sort_unstable();
        self.latencies_second_half.sort_unstable();
        let in_flight_after = self.lb.status().iter().map(|s| s.in_flight()).sum();
        let samples = self.load.len().max(1) as f64;
        Outcome {
            policy: policy.to_string(),
            latencies: self.latencies,
            latencies_second_half: self.latencies_second_half,
            dropped: self.dropped,
            retried: self.retried,
            errors: self.errors,
            timeouts: self.timeouts,
            failed: self.failed,
            cache_hits: self.cache_hits,
            cache_lookups: self.cache_lookups,
            max_in_flight: self.max_in_flight,
            waited: self.waited,
            picks_after_slowdown: self.picks_after_slowdown,
            mean_in_flight: self.in_flight_sum / samples,
            max_work: self.max_work,
            mean_work: self.work_sum / samples,
            moves: self.moves,
            backend_ids: (0..self.servers.len()).map(backend_id).collect(),
            load: self.load,
            ejected: self.ejected,
            in_flight_after,
        }
    }
}
