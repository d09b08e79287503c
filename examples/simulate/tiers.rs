//! The two-zone, two-tier scenario (`--tiers`): a calling fleet spread over two zones, each
//! caller with its own balancer, in front of a primary tier (priority 0, backends in both
//! zones) and a disaster-recovery tier (priority 1) in another region.
//!
//! * **Fleet.** [`Tiers::primary`] backends in zones `a` and `b` (half in each, `p-a-00`,
//!   `p-b-00`, ...) and [`Tiers::backup`] in region `dr` (`dr-00`, ...), all of normal speed
//!   and weight 1, served as `fleet.rs` serves them ([`Server`]: workers, a FIFO queue,
//!   exponential service times of mean `miss_time`; no cache).
//! * **Callers.** [`Tiers::callers`] callers, the first `share_a` of them in zone `a`, the
//!   rest in `b`; each has its own balancer (the same policy, its own seed), as every process
//!   of a real fleet does, and sees only its own requests in flight. An arrival of the
//!   workload goes to a caller drawn uniformly from the seed, so a zone's share of the
//!   requests is its share of the callers; or, with [`Tiers::traffic_a`], first to zone `a`
//!   with that probability (else `b`), then to one of that zone's callers uniformly, so that
//!   a zone's callers can send more than their share of the requests.
//! * **Network.** A request served in the caller's zone costs nothing more; one served in the
//!   other zone [`Tiers::cross_zone`] more (a round trip between zones), one served by the DR
//!   region [`Tiers::cross_region`] more. The pick is held for it, as a client holds its
//!   connection until the response is back.
//! * **Routing** ([`Routing`]): the level balanced as a whole (no topology), every caller
//!   keeping to its own zone (`Topology::locality_weights` with only the caller's zone: the
//!   naive "stay local"), `Topology::zone_aware` with the calling fleet's real shares (by
//!   count of callers), `Topology::load_aware` with a backend's workers as its capacity, or
//!   `Topology::load_aware_reported`, fed by the backends' own reports.
//! * **Load reports.** Under [`Routing::LoadAwareReported`] only, every response carries its
//!   backend's utilisation in-band, as an ORCA trailer does: `(busy workers + queued) /
//!   workers` as the server sends the response (above 1 when it queues; lbkit counts that as
//!   fully busy), handed to the caller's balancer (`Balancer::report_load`) when the
//!   response is back.
//! * **Changes.** A run is cut into equal phases by arrival; at the start of each phase the
//!   backends its [`Phase`] lists are set `Down` (or `Degraded`) on every caller's balancer at
//!   once, as a control plane pushes it. A backend set `Down` drops what it held; those
//!   attempts fail and are retried at once through a new pick that avoids it.
//!
//! Everything is measured per phase, by the requests that arrived in it: where the picks went
//! (the caller's zone, the other zone, the DR region), latency (arrival to response, network
//! included), failed attempts, and the spread of the picks over the primary backends healthy
//! through the phase (max / mean).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::time::Duration;

use lbkit::{Backend, Balancer, Error, Health, LoadReport, ManualClock, Pick, Request, Topology};

use crate::config::Config;
use crate::fleet::{Queued, Server};
use crate::policies::{self, Options};
use crate::workload::Workload;

/// The zones of the calling fleet and the primary tier, and the DR region.
pub const ZONES: [&str; 2] = ["a", "b"];
/// The DR tier's locality.
pub const DR: &str = "dr";

/// How a caller's balancer splits the primary level between the zones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// No topology: the level is balanced as a whole.
    Flat,
    /// `Topology::locality_weights` with weight 1 for the caller's zone only: every request
    /// stays local while the local zone has a healthy backend (the naive policy).
    LocalOnly,
    /// `Topology::zone_aware(caller's zone, fleet shares)`.
    ZoneAware,
    /// `Topology::load_aware(caller's zone, workers per backend)`, defaults otherwise: the
    /// zones share by measured utilisation (the caller's own picks in flight).
    LoadAware,
    /// `Topology::load_aware_reported(caller's zone)`, defaults otherwise: the zones share by
    /// the utilisation the backends report in their responses (Envoy's design, with ORCA).
    LoadAwareReported,
}

impl Routing {
    /// Every routing, in the order of the tables.
    pub const ALL: [Routing; 5] = [
        Routing::Flat,
        Routing::LocalOnly,
        Routing::ZoneAware,
        Routing::LoadAware,
        Routing::LoadAwareReported,
    ];

    /// The name printed in the tables.
    pub fn name(self) -> &'static str {
        match self {
            Routing::Flat => "flat",
            Routing::LocalOnly => "local only",
            Routing::ZoneAware => "zone-aware",
            Routing::LoadAware => "load-aware",
            Routing::LoadAwareReported => "load-aware (reports)",
        }
    }
}

/// What changes at the start of a phase: these backends (by index) go `Down` or `Degraded`.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// The label of the phase in the tables.
    pub label: String,
    /// Backends set `Down` at its start (and staying down).
    pub down: Vec<usize>,
    /// Backends set `Degraded` at its start.
    pub degraded: Vec<usize>,
}

/// The scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Tiers {
    /// Seed, requests per run, workers per backend, load (as a fraction of the primary
    /// tier's capacity), service times, keys, attempts: the fields of `Config` that apply.
    pub config: Config,
    /// Primary backends (priority 0), half in each zone.
    pub primary: usize,
    /// DR backends (priority 1).
    pub backup: usize,
    /// Callers, each with its own balancer.
    pub callers: usize,
    /// Zone `a`'s share of the callers (zone `b` has the rest).
    pub share_a: f64,
    /// The probability that an arrival goes to a caller in zone `a` (then to one of its
    /// callers uniformly); `None`: every caller is equally likely, so zone `a` sends
    /// `share_a` of the requests. Without callers in both zones it is ignored.
    pub traffic_a: Option<f64>,
    /// The extra latency of a request served in the other zone.
    pub cross_zone: Duration,
    /// The extra latency of a request served by the DR region.
    pub cross_region: Duration,
}

impl Default for Tiers {
    fn default() -> Self {
        Tiers {
            config: Config {
                requests: 200_000,
                backends: 20,
                slow_backends: 0,
                load: 0.6,
                // Uniform keys and no cache: the hashing policy's load follows its placement,
                // not a hot key.
                zipf: 0.0,
                cache: 0,
                slowdown: None,
                fail: false,
                join: false,
                samples: 1,
                ..Config::default()
            },
            primary: 20,
            backup: 20,
            callers: 20,
            share_a: 0.5,
            traffic_a: None,
            cross_zone: Duration::from_millis(1),
            cross_region: Duration::from_millis(15),
        }
    }
}

/// What one phase of one run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// The phase's label.
    pub label: String,
    /// Picks by where they went: the caller's zone, the other zone, the DR region.
    pub local: usize,
    /// Picks served in the other zone.
    pub cross: usize,
    /// Picks served by the DR tier.
    pub dr: usize,
    /// Picks by degraded primary backends.
    pub degraded: usize,
    /// Latencies of the requests that arrived in the phase and succeeded, sorted.
    pub latencies: Vec<Duration>,
    /// Attempts that failed (their backend went `Down` under them).
    pub errors: usize,
    /// Requests that found no backend or ran out of tries.
    pub failed: usize,
    /// Picks per primary backend healthy (`Up`) through the phase, in index order.
    pub primary_load: Vec<usize>,
    /// Primary backends healthy (`Up`) in the phase.
    pub healthy: usize,
    /// Primary backends `Degraded` in the phase.
    pub degraded_backends: usize,
}

impl Measured {
    fn picks(&self) -> usize {
        self.local + self.cross + self.dr
    }

    /// The share of the picks that crossed zones (primary backends in the other zone).
    pub fn cross_share(&self) -> f64 {
        self.cross as f64 / self.picks().max(1) as f64
    }

    /// The share of the picks served by the DR tier.
    pub fn dr_share(&self) -> f64 {
        self.dr as f64 / self.picks().max(1) as f64
    }

    /// The share of the picks served by degraded primary backends.
    pub fn degraded_share(&self) -> f64 {
        self.degraded as f64 / self.picks().max(1) as f64
    }

    /// The busiest primary backend's picks over the mean of the primary backends healthy
    /// through the phase.
    pub fn max_over_mean(&self) -> f64 {
        let n = self.primary_load.len().max(1) as f64;
        let sum: usize = self.primary_load.iter().sum();
        let max = self.primary_load.iter().copied().max().unwrap_or(0);
        if sum == 0 {
            0.0
        } else {
            max as f64 / (sum as f64 / n)
        }
    }

    /// The DR share Envoy's arithmetic gives for this phase's primary health
    /// ([`envoy_dr_share`]), out of `primary` backends.
    pub fn envoy_dr_share(&self, primary: usize) -> f64 {
        envoy_dr_share(self.healthy, self.degraded_backends, primary)
    }

    /// The latency at quantile `q`.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() as f64 * q).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[i - 1]
    }
}

/// Envoy's share of the traffic for the DR tier (priority 1, fully healthy) when the primary
/// tier has `healthy` of `total` backends healthy and `degraded` degraded, with the default
/// overprovisioning factor 1.4 (`priority.rst`): what [`Measured::dr_share`] should be.
pub fn envoy_dr_share(healthy: usize, degraded: usize, total: usize) -> f64 {
    let health = (140 * healthy / total).min(100);
    let degraded_health = (140 * degraded / total).min(100);
    let normalized = (health + degraded_health + 100).min(100);
    let p0 = (health * 100 / normalized).min(100);
    let p1 = (100 * 100 / normalized).min(100 - p0);
    p1 as f64 / 100.0
}

impl Tiers {
    /// The workload of a run: the arrivals of `config`, its load counted against the primary
    /// tier's capacity.
    pub fn workload(&self) -> Workload {
        Workload::new(&Config {
            backends: self.primary,
            slow_backends: 0,
            ..self.config.clone()
        })
    }

    /// The zone of primary backend `i` (`a`, `b`, `a`, ... interleaved, so any prefix of
    /// the order is split evenly) or the DR region.
    pub fn zone_of(&self, i: usize) -> &'static str {
        if i < self.primary {
            ZONES[i % 2]
        } else {
            DR
        }
    }

    /// Backend `i`'s id.
    pub fn id(&self, i: usize) -> String {
        if i < self.primary {
            format!("p-{}-{:02}", ZONES[i % 2], i / 2)
        } else {
            format!("dr-{:02}", i - self.primary)
        }
    }

    /// The fleet as each caller's balancer sees it.
    pub fn backends(&self) -> Vec<Backend<usize>> {
        (0..self.primary + self.backup)
            .map(|i| {
                Backend::new(self.id(i), i)
                    .with_priority(u32::from(i >= self.primary))
                    .with_locality(self.zone_of(i))
            })
            .collect()
    }

    /// How many callers are in zone `a` (callers `0..n`).
    pub fn callers_in_a(&self) -> usize {
        ((self.callers as f64 * self.share_a).round() as usize).min(self.callers)
    }

    /// Caller `c`'s zone.
    pub fn caller_zone(&self, c: usize) -> &'static str {
        if c < self.callers_in_a() {
            ZONES[0]
        } else {
            ZONES[1]
        }
    }

    /// The calling fleet's shares, as the callers count them.
    pub fn fleet_shares(&self) -> [(&'static str, f64); 2] {
        let in_a = (0..self.callers)
            .filter(|&c| self.caller_zone(c) == ZONES[0])
            .count() as f64
            / self.callers as f64;
        [(ZONES[0], in_a), (ZONES[1], 1.0 - in_a)]
    }

    /// The extra latency of a request from a caller in `from` served by backend `to`.
    fn network(&self, from: &str, to: usize) -> Duration {
        match self.zone_of(to) {
            DR => self.cross_region,
            zone if zone == from => Duration::ZERO,
            _ => self.cross_zone,
        }
    }

    /// The phases of the failover table: 0, 20, 30 and 40% of the primary backends `Down`,
    /// then 40% `Down` and 20% `Degraded`, then 60 and 100% `Down`. The backends go in index
    /// order, which alternates zones, so each step takes as many from `a` as from `b`.
    pub fn failover_phases(&self) -> Vec<Phase> {
        let n = self.primary;
        let first = |pct: usize| (0..n * pct / 100).collect::<Vec<_>>();
        let mut phases: Vec<Phase> = [0, 20, 30, 40]
            .into_iter()
            .map(|pct| Phase {
                label: format!("{pct}% down"),
                down: first(pct),
                degraded: Vec::new(),
            })
            .collect();
        // 40% down and 20% degraded: a degraded backend serves only when the healthy capacity
        // of every level, DR included, falls short.
        phases.push(Phase {
            label: "40% down, 20% degraded".into(),
            down: first(40),
            degraded: (n * 40 / 100..n * 60 / 100).collect(),
        });
        for pct in [60, 100] {
            phases.push(Phase {
                label: format!("{pct}% down"),
                down: first(pct),
                degraded: Vec::new(),
            });
        }
        phases
    }

    /// 4 in 10 of zone `a`'s primary backends: with them down, zone `a` is short of backends
    /// for its callers.
    pub fn zone_a_short(&self) -> Vec<usize> {
        let in_a: Vec<usize> = (0..self.primary).step_by(2).collect();
        let k = in_a.len() * 4 / 10;
        in_a[..k].to_vec()
    }
}

/// Runs the scenario's `phases` with `policy` under `routing`, one [`Measured`] per phase.
///
/// # Errors
/// An unknown policy, or whatever the policy's constructor, `set_topology` or `set_health`
/// returns, as text.
pub fn run(
    tiers: &Tiers,
    workload: &Workload,
    policy: &str,
    routing: Routing,
    phases: &[Phase],
) -> Result<Vec<Measured>, String> {
    let Some(row) = policies::find::<usize>(policy) else {
        return Err(format!("unknown policy {policy:?}"));
    };
    run_policy(tiers, workload, row.build, routing, phases).map_err(|e| format!("{policy}: {e}"))
}

/// [`run`] with the policy's constructor.
fn run_policy(
    tiers: &Tiers,
    workload: &Workload,
    build: fn(Vec<Backend<usize>>, Options) -> policies::Built<usize>,
    routing: Routing,
    phases: &[Phase],
) -> Result<Vec<Measured>, Error> {
    if phases.is_empty() {
        return Ok(Vec::new());
    }
    let arrivals = &workload.arrivals;
    let per_phase = arrivals.len().div_ceil(phases.len()).max(1);
    let mut sim = Simulation::new(tiers, workload, build, routing, per_phase)?;
    let mut next = 0;
    loop {
        let arrival = arrivals.get(next).map(|a| a.at);
        let event = sim.events.peek().map(|Reverse(e)| e.0);
        let Some(now) = [arrival, event].into_iter().flatten().min() else {
            break;
        };
        sim.clock.set(now);
        if event == Some(now) {
            sim.event(now)?;
            continue;
        }
        let p = next / per_phase;
        if p == sim.measured.len() {
            sim.begin(&phases[p], now)?;
        }
        let slot = sim.slot();
        sim.dispatch(slot, next, sim.caller_of(next), 0, now);
        next += 1;
    }
    Ok(sim.finish())
}

/// A request in the system.
struct Job {
    arrival: usize,
    caller: usize,
    backend: usize,
    picked: Duration,
    attempt: usize,
    pick: Pick<usize>,
    /// The backend's utilisation as it sent the response, when the routing takes reports.
    report: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// `backend` finished serving the attempt; its worker is free.
    Served { backend: usize },
    /// The response is back at the caller.
    Responded,
}

/// One run: the callers' balancers, the servers, the requests in flight and what the phases
/// measured so far (the last one is the current phase).
struct Simulation<'a> {
    tiers: &'a Tiers,
    workload: &'a Workload,
    clock: ManualClock,
    callers: Vec<Box<dyn Balancer<usize>>>,
    /// Whether responses carry their backend's load report to the caller's balancer.
    reports: bool,
    servers: Vec<Server>,
    ids: Vec<String>,
    down: Vec<bool>,
    degraded: Vec<bool>,
    /// Jobs by slot; a slot's generation, bumped at the end of each attempt, invalidates the
    /// events of attempts that are over.
    jobs: Vec<Option<Job>>,
    generations: Vec<u32>,
    /// By slot: the backends the request in it has tried (its avoid list).
    tried: Vec<Vec<usize>>,
    free: Vec<usize>,
    /// Events: (time, slot, generation, what).
    events: BinaryHeap<Reverse<(Duration, usize, u32, Event)>>,
    measured: Vec<Measured>,
    /// By phase: which primary backends were healthy through it.
    healthy_in: Vec<Vec<bool>>,
    /// Arrivals per phase: arrival `i` is in phase `i / per_phase`.
    per_phase: usize,
}

impl<'a> Simulation<'a> {
    fn new(
        tiers: &'a Tiers,
        workload: &'a Workload,
        build: fn(Vec<Backend<usize>>, Options) -> policies::Built<usize>,
        routing: Routing,
        per_phase: usize,
    ) -> Result<Self, Error> {
        let config = &tiers.config;
        let clock = ManualClock::new();
        let shares = tiers.fleet_shares();
        let mut callers: Vec<Box<dyn Balancer<usize>>> = Vec::new();
        for c in 0..tiers.callers {
            let options = Options {
                seed: Some(lbkit::hash::mix(config.seed, c as u64)),
                clock: Some(clock.clone()),
                ..Options::default()
            };
            let lb = build(tiers.backends(), options)?;
            let zone = tiers.caller_zone(c);
            match routing {
                Routing::Flat => {}
                Routing::LocalOnly => lb.set_topology(Topology::locality_weights([(zone, 1)]))?,
                Routing::ZoneAware => lb.set_topology(Topology::zone_aware(zone, shares))?,
                Routing::LoadAware => {
                    lb.set_topology(Topology::load_aware(zone, config.workers as f64))?
                }
                Routing::LoadAwareReported => {
                    lb.set_topology(Topology::load_aware_reported(zone))?
                }
            }
            callers.push(lb);
        }
        let total = tiers.primary + tiers.backup;
        Ok(Simulation {
            tiers,
            workload,
            clock,
            callers,
            reports: routing == Routing::LoadAwareReported,
            servers: (0..total).map(|_| Server::new(config, 1.0)).collect(),
            ids: (0..total).map(|i| tiers.id(i)).collect(),
            down: vec![false; total],
            degraded: vec![false; total],
            jobs: Vec::new(),
            generations: Vec::new(),
            tried: Vec::new(),
            free: Vec::new(),
            events: BinaryHeap::new(),
            measured: Vec::new(),
            healthy_in: Vec::new(),
            per_phase,
        })
    }

    /// The caller of `arrival`, drawn from the seed: uniformly, or with
    /// [`Tiers::traffic_a`], its zone first, then one of the zone's callers.
    fn caller_of(&self, arrival: usize) -> usize {
        let tiers = self.tiers;
        let draw = lbkit::hash::mix(tiers.config.seed ^ 0x7469_6572, arrival as u64);
        let in_a = tiers.callers_in_a();
        match tiers.traffic_a {
            Some(p) if in_a > 0 && in_a < tiers.callers => {
                // The top 53 bits as a uniform fraction in [0, 1) choose the zone; a second
                // draw the caller in it.
                let zone_draw = (draw >> 11) as f64 / (1u64 << 53) as f64;
                let caller_draw = lbkit::hash::mix(draw, 1);
                if zone_draw < p {
                    (caller_draw % in_a as u64) as usize
                } else {
                    in_a + (caller_draw % (tiers.callers - in_a) as u64) as usize
                }
            }
            _ => (draw % tiers.callers as u64) as usize,
        }
    }

    /// A free slot for a new request.
    fn slot(&mut self) -> usize {
        self.free.pop().unwrap_or_else(|| {
            self.jobs.push(None);
            self.generations.push(0);
            self.tried.push(Vec::new());
            self.jobs.len() - 1
        })
    }

    /// The current phase's measures.
    fn current(&mut self) -> &mut Measured {
        self.measured.last_mut().expect("a phase has begun")
    }

    /// Starts `phase`: its backends go `Degraded` or `Down` on every caller's balancer; the
    /// attempts the downed backends held fail and are retried.
    fn begin(&mut self, phase: &Phase, now: Duration) -> Result<(), Error> {
        let primary = self.tiers.primary;
        for &b in &phase.degraded {
            self.degraded[b] = true;
            for lb in &self.callers {
                lb.set_health(&self.ids[b], Health::Degraded)?;
            }
        }
        let mut orphans = Vec::new();
        for &b in &phase.down {
            if self.down[b] {
                continue;
            }
            self.down[b] = true;
            self.degraded[b] = false;
            self.servers[b].fail(now);
            self.servers[b].up = false;
            for lb in &self.callers {
                lb.set_health(&self.ids[b], Health::Down)?;
            }
            orphans.extend(
                (0..self.jobs.len())
                    .filter(|&s| matches!(&self.jobs[s], Some(j) if j.backend == b)),
            );
        }
        let healthy: Vec<bool> = (0..primary)
            .map(|b| !self.down[b] && !self.degraded[b])
            .collect();
        self.measured.push(Measured {
            label: phase.label.clone(),
            local: 0,
            cross: 0,
            dr: 0,
            degraded: 0,
            latencies: Vec::new(),
            errors: 0,
            failed: 0,
            primary_load: vec![0; primary],
            healthy: healthy.iter().filter(|&&h| h).count(),
            degraded_backends: (0..primary).filter(|&b| self.degraded[b]).count(),
        });
        self.healthy_in.push(healthy);
        for slot in orphans {
            let job = self.end_attempt(slot);
            job.pick.failure();
            self.current().errors += 1;
            if job.attempt + 1 < self.tiers.config.attempts {
                self.dispatch(slot, job.arrival, job.caller, job.attempt + 1, now);
            } else {
                self.current().failed += 1;
                self.free.push(slot);
            }
        }
        Ok(())
    }

    /// Ends the current attempt of `slot`.
    fn end_attempt(&mut self, slot: usize) -> Job {
        let job = self.jobs[slot].take().expect("a current attempt");
        self.servers[job.backend].in_flight -= 1;
        self.generations[slot] = self.generations[slot].wrapping_add(1);
        job
    }

    /// Picks a backend for try `attempt` of `arrival` from `caller`'s balancer, avoiding the
    /// backends the request tried, and sends it there in `slot`.
    fn dispatch(
        &mut self,
        slot: usize,
        arrival: usize,
        caller: usize,
        attempt: usize,
        now: Duration,
    ) {
        let tiers = self.tiers;
        if attempt == 0 {
            self.tried[slot].clear();
        }
        let a = &self.workload.arrivals[arrival];
        let request = if tiers.config.keys == 0 {
            Request::new()
        } else {
            Request::with_hash(self.workload.key_hashes[a.key as usize])
        };
        let avoid: Vec<&str> = self.tried[slot]
            .iter()
            .map(|&i| self.ids[i].as_str())
            .collect();
        let Some(pick) = self.callers[caller].pick(&request.avoid(&avoid)) else {
            self.current().failed += 1;
            self.free.push(slot);
            return;
        };
        let backend = *pick;
        self.tried[slot].push(backend);
        let zone = tiers.caller_zone(caller);
        let degraded = self.degraded[backend];
        let m = self.current();
        match tiers.zone_of(backend) {
            DR => m.dr += 1,
            z if z == zone => m.local += 1,
            _ => m.cross += 1,
        }
        m.degraded += usize::from(degraded);
        if backend < tiers.primary {
            m.primary_load[backend] += 1;
        }
        let generation = self.generations[slot];
        let server = &mut self.servers[backend];
        assert!(server.up, "picked {} while it is down", self.ids[backend]);
        server.in_flight += 1;
        self.jobs[slot] = Some(Job {
            arrival,
            caller,
            backend,
            picked: now,
            attempt,
            pick,
            report: None,
        });
        if server.has_free_worker() {
            let (service, _) = server.start(a, &tiers.config, now);
            self.events.push(Reverse((
                now + service,
                slot,
                generation,
                Event::Served { backend },
            )));
        } else {
            server.wait(Queued {
                slot,
                generation,
                arrival,
            });
        }
    }

    /// Handles the next event, due `now`.
    ///
    /// # Errors
    /// Whatever `report_load` returns (a backend not in the set, a report out of range).
    fn event(&mut self, now: Duration) -> Result<(), Error> {
        let Some(Reverse((_, slot, generation, what))) = self.events.pop() else {
            return Ok(());
        };
        let current = self.generations[slot] == generation;
        match what {
            Event::Served { backend } => {
                if self.servers[backend].broken {
                    return Ok(());
                }
                if let Some(q) = self.servers[backend].release_worker(now) {
                    let a = &self.workload.arrivals[q.arrival];
                    let (service, _) = self.servers[backend].start(a, &self.tiers.config, now);
                    self.events.push(Reverse((
                        now + service,
                        q.slot,
                        q.generation,
                        Event::Served { backend },
                    )));
                }
                if current {
                    // The response leaves with the backend's load as it is now (the next
                    // request in its queue, if any, already started).
                    let utilisation = self.servers[backend].utilisation();
                    let job = self.jobs[slot].as_mut().expect("a current attempt");
                    if self.reports {
                        job.report = Some(utilisation);
                    }
                    let zone = self.tiers.caller_zone(job.caller);
                    let back = now + self.tiers.network(zone, backend);
                    self.events
                        .push(Reverse((back, slot, generation, Event::Responded)));
                }
            }
            Event::Responded if current => {
                let job = self.end_attempt(slot);
                if let Some(utilisation) = job.report {
                    self.callers[job.caller].report_load(
                        &self.ids[job.backend],
                        LoadReport::new().utilization(utilisation),
                    )?;
                }
                job.pick.success(now - job.picked);
                // Counted in the phase the request arrived in.
                let latency = now - self.workload.arrivals[job.arrival].at;
                self.measured[job.arrival / self.per_phase]
                    .latencies
                    .push(latency);
                self.free.push(slot);
            }
            Event::Responded => {}
        }
        Ok(())
    }

    /// What the phases measured, once every request is done.
    fn finish(self) -> Vec<Measured> {
        let in_flight: usize = self
            .callers
            .iter()
            .flat_map(|lb| lb.status())
            .map(|s| s.in_flight())
            .sum();
        assert_eq!(in_flight, 0, "picks still in flight after the run");
        let mut measured = self.measured;
        for (m, healthy) in measured.iter_mut().zip(&self.healthy_in) {
            m.latencies.sort_unstable();
            // Only the primary backends healthy through the phase count in its spread.
            let load = std::mem::take(&mut m.primary_load);
            m.primary_load = load
                .into_iter()
                .zip(healthy)
                .filter(|(_, &healthy)| healthy)
                .map(|(n, _)| n)
                .collect();
        }
        measured
    }
}
fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.1}")
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// One row of the zone table: the fleet, the routing, the policy, and what it measured.
pub struct ZoneRow {
    /// The situation (callers' split, backends down).
    pub fleet: String,
    /// The routing.
    pub routing: Routing,
    /// The policy.
    pub policy: String,
    /// The run's single phase.
    pub measured: Measured,
}

/// The zone-awareness table.
pub fn zone_table(rows: &[ZoneRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| fleet | routing | policy | cross-zone | p50 | p99 | load max/mean |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|---:|");
    for r in rows {
        let m = &r.measured;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} ms | {} ms | {:.2} |",
            r.fleet,
            r.routing.name(),
            r.policy,
            pct(m.cross_share()),
            ms(m.quantile(0.5)),
            ms(m.quantile(0.99)),
            m.max_over_mean(),
        );
    }
    out
}

/// The failover table: one row per phase of each policy's run.
pub fn failover_table(tiers: &Tiers, runs: &[(String, Vec<Measured>)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| policy | primary | healthy | DR share (Envoy) | degraded share | cross-zone | p50 | p99 | load max/mean | failed attempts | failed requests |"
    );
    let _ = writeln!(
        out,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (policy, phases) in runs {
        for m in phases {
            let _ = writeln!(
                out,
                "| {policy} | {} | {} | {} ({}) | {} | {} | {} ms | {} ms | {} | {} | {} |",
                m.label,
                pct(m.healthy as f64 / tiers.primary as f64),
                pct(m.dr_share()),
                pct(m.envoy_dr_share(tiers.primary)),
                pct(m.degraded_share()),
                pct(m.cross_share()),
                ms(m.quantile(0.5)),
                ms(m.quantile(0.99)),
                if m.primary_load.is_empty() {
                    "-".to_string()
                } else {
                    format!("{:.2}", m.max_over_mean())
                },
                m.errors,
                m.failed,
            );
        }
    }
    out
}
