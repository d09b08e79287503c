//! The [`Core`] every policy wraps: one snapshot pointer, one writer lock, and the rebuilds
//! that apply membership, health and time.

use std::cell::Cell;
use std::sync::{Arc, Weak};

use ahash::AHashMap;

use crate::backend::{Backend, Health};
use crate::engine::entry::Entry;
use crate::engine::load::LoadSweep;
use crate::engine::pick::{Member, Pick};
use crate::engine::policy::Policy;
use crate::engine::rules::{
    apply_outlier_rules, effective_weight, is_ramping, weight_scale, Sweep,
};
use crate::engine::sequence::Sequence;
use crate::engine::snapshot::{eligible_of, IdIndex, Snapshot, View};
use crate::engine::soft::{apply_soft_health, SoftSweep};
use crate::engine::state::{nanos, Feedback, State, FULL_SOFT_WEIGHT, NEVER};
use crate::engine::state::{COUNT_LATENCY, COUNT_OUTCOMES};
use crate::engine::subset::COVERAGE_SCALE;
use crate::engine::sync::{ArcSwap, Guard, Mutex};
use crate::engine::tiers::{arrange, group_snapshot, Inputs, Standing, Tiers};
use crate::error::{Error, NoPick};
use crate::health::HealthConfig;
use crate::observe::TrafficShare;
use crate::observe::{Ejection, Event, Watcher};
use crate::placement::{id_hash, GAMMA};
use crate::request::Request;
use crate::status::Status;
use crate::subset::Subset;
use crate::topology::Topology;

/// The most backends one set may hold: 2^22 (4,194,304). The bound makes every sum of
/// effective weights fit in a `u64` (weights below 2^32, times 1000 under slow start, times
/// 2^22 backends stays below 2^64), and every index fit in a `u32`.
pub const MAX_BACKENDS: usize = 1 << 22;

/// A removed backend whose picks are still held: its state (weakly: the picks hold it, and
/// the metrics exporter's record until an export finds it gone) and the weight it had.
struct Retired {
    state: Weak<State>,
    weight: u32,
    /// Where it stood (for its status line).
    place: Place,
}

/// A backend's priority level and locality, for its status line.
#[derive(Clone)]
struct Place {
    priority: u32,
    locality: Option<Arc<str>>,
}

impl Place {
    fn of<T>(e: &Entry<T>) -> Place {
        Place {
            priority: e.priority,
            locality: e.locality.clone(),
        }
    }
}

/// What the writer lock guards.
struct Writer<T> {
    /// The states of removed backends that still have picks held, so that a backend removed
    /// and added back before they drop keeps counting them.
    retired: AHashMap<Arc<str>, Retired>,
    config: HealthConfig,
    /// How the localities of a level share its traffic.
    topology: Topology,
    /// The statistical ejection rules' intervals.
    sweep: Sweep,
    /// Soft health's intervals.
    soft: SoftSweep,
    /// Load-aware locality routing's samples.
    load: LoadSweep,
    /// When the weights load reports give are next read into the table.
    reweigh: Reweigh,
    /// Every backend of the set, sorted by id: the subset's members and the others, whose
    /// states (health, what reports taught) are kept for when they enter it.
    universe: Box<[Arc<Entry<T>>]>,
    /// This client's subset rule.
    subset: Subset,
    /// The subset of `universe`: `(index, coverage in parts of 2^16)`, by index; `None` for
    /// every backend at full coverage.
    selection: Option<Vec<(usize, u32)>>,
}

impl<T> Writer<T> {
    /// The next time a sweep is due (a time-based change for the snapshot).
    fn next_sweep(&self) -> u64 {
        self.sweep
            .next_at
            .min(self.soft.next_at)
            .min(self.load.next_at)
            .min(self.reweigh.next_at)
    }

    /// What reports must count for the sweeps that are on.
    fn counting(&self) -> u8 {
        let mut counting = 0;
        if self.sweep.next_at != NEVER || self.soft.next_at != NEVER {
            counting |= COUNT_OUTCOMES;
        }
        if self.soft.next_at != NEVER {
            counting |= COUNT_LATENCY;
        }
        counting
    }

    /// The rules that act on reports and time: ejections (and the statistical sweep), soft
    /// health, then the localities' utilisation.
    fn apply_rules(&mut self, members: &[Arc<Entry<T>>], now: u64) {
        apply_outlier_rules(members, &self.config, now, &mut self.sweep);
        apply_soft_health(members, &self.config, now, &mut self.soft);
        self.load.apply(members, &self.topology, now);
        self.reweigh.apply(now);
    }

    /// The members a snapshot has now, and their coverage (`None`: full): the subset, or
    /// every backend when there is no subset or none of the subset can take a pick (down,
    /// draining, of weight 0 or ejected; a degraded backend serves).
    fn members(&self) -> (Members<T>, bool) {
        let Some(selection) = &self.selection else {
            return ((self.universe.clone(), None), false);
        };
        let can_serve = |e: &Arc<Entry<T>>| {
            e.weight > 0
                && matches!(e.state.health(), Health::Up | Health::Degraded)
                && e.state.ejected_until() == 0
        };
        if !selection.iter().any(|&(i, _)| can_serve(&self.universe[i])) {
            return ((self.universe.clone(), None), true);
        }
        (self.selected(), false)
    }

    /// The subset's members and coverage, whether they can serve or not.
    fn selected(&self) -> Members<T> {
        let Some(selection) = &self.selection else {
            return (self.universe.clone(), None);
        };
        let members = selection
            .iter()
            .map(|&(i, _)| Arc::clone(&self.universe[i]))
            .collect();
        let coverage = selection.iter().map(|&(_, c)| c).collect();
        (members, Some(coverage))
    }

    /// The backend with this id, in the whole set.
    fn find(&self, id: &str) -> Option<&Arc<Entry<T>>> {
        self.universe
            .binary_search_by(|e| (*e.id).cmp(id))
            .ok()
            .map(|i| &self.universe[i])
    }
}

/// The refresh of weights from load reports: every `weight_update_period` (gRFC A58), a
/// time-based change that rebuilds the snapshot, whose table then reads every backend's
/// weight anew. Any other rebuild reads them too.
struct Reweigh {
    /// The period in clock nanoseconds; `None` for a policy that weighs by no reports.
    period: Option<u64>,
    /// Clock nanoseconds of the next refresh; [`NEVER`] without one.
    next_at: u64,
}

impl Reweigh {
    /// The refreshes of `config`'s period from `now` on.
    fn start(config: Option<crate::engine::orca::WeightConfig>, now: u64) -> Self {
        let period = config.map(|c| c.weight_update_period());
        Reweigh {
            period,
            next_at: period.map_or(NEVER, |p| now.saturating_add(p).min(NEVER - 1)),
        }
    }

    /// Moves the next refresh a period past `now` if it is due (the rebuild that follows
    /// reads the weights).
    fn apply(&mut self, now: u64) {
        if let Some(period) = self.period {
            if now >= self.next_at {
                self.next_at = now.saturating_add(period).min(NEVER - 1);
            }
        }
    }
}

/// A snapshot's members and their coverage under a subset (`None`: full).
type Members<T> = (Box<[Arc<Entry<T>>]>, Option<Box<[u32]>>);

/// Whether two member lists are the same entries (so a table built for one serves the other).
fn same_members<T>(a: &[Arc<Entry<T>>], b: &[Arc<Entry<T>>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| Arc::ptr_eq(x, y))
}

/// The snapshot of the writer's members at `now`, keeping `current`'s table (if the policy's
/// table does not depend on health) and id index when the members are the same entries. A
/// fallback to the whole set that the policy cannot build (a table too small for it) keeps the
/// subset instead, whose table was built before.
fn build_members<T, P: Policy<T>>(
    policy: &P,
    writer: &Writer<T>,
    current: Option<&Snapshot<T, P::Table>>,
    now: u64,
) -> Result<Snapshot<T, P::Table>, Error> {
    let attempt = |(members, coverage): Members<T>| {
        let same = current.filter(|c| same_members(&members, &c.members));
        build(
            policy,
            members,
            coverage,
            same,
            same.map(|c| Arc::clone(&c.ids)),
            &writer.config,
            (&writer.topology, &writer.load),
            writer.next_sweep(),
            now,
        )
    };
    let (members, fell_back) = writer.members();
    match attempt(members) {
        Err(e) if fell_back => attempt(writer.selected()).map_err(|_| e),
        result => result,
    }
}

impl<C> crate::builder::Builder<C> {
    /// The core of a balancer over `backends` with `policy` and what this builder sets for
    /// every policy (health, topology, subset, observer); see [`Core::new`] for the errors.
    pub(crate) fn core<T, P: Policy<T>>(
        self,
        policy: P,
        backends: impl IntoIterator<Item = Backend<T>>,
    ) -> Result<Core<T, P>, Error> {
        Core::new(
            policy,
            backends,
            self.health,
            self.topology,
            self.subset,
            self.observer,
        )
    }
}

/// The shared body of every balancer: one policy, one snapshot pointer, one writer lock.
pub(crate) struct Core<T, P: Policy<T>> {
    pub(crate) policy: P,
    current: ArcSwap<Snapshot<T, P::Table>>,
    feedback: Arc<Feedback>,
    writer: Mutex<Writer<T>>,
    /// Told of every change, after the writer lock is released.
    observer: Option<Watcher>,
    /// The counter behind the draws that choose priority levels and localities for the
    /// policies that draw none of their own.
    draws: Sequence,
}

impl<T, P: Policy<T>> Core<T, P> {
    /// A core over `backends` with passive-health rules `config`; see [`Core::update`] and
    /// [`Core::set_health_config`] for the errors.
    pub(crate) fn new(
        policy: P,
        backends: impl IntoIterator<Item = Backend<T>>,
        config: HealthConfig,
        topology: Topology,
        subset: Subset,
        observer: Option<Watcher>,
    ) -> Result<Self, Error> {
        config.validate()?;
        topology.validate()?;
        subset.validate()?;
        let feedback = Arc::new(Feedback::new(
            Arc::clone(&config.clock),
            config.outlier_detection.map(|o| o.consecutive_failures),
            policy.latency_tracking(),
            policy.failure_load(),
            policy.report_weights(),
        ));
        let now = feedback.now_ns();
        let backends = sorted_and_checked(backends.into_iter().collect())?;
        let members: Vec<Arc<Entry<T>>> = backends
            .into_iter()
            .map(|(position, b)| {
                let state = State::new(&feedback, now, false);
                if let Some(health) = b.health {
                    state.set_health(health);
                }
                entry(b, position, Arc::new(state))
            })
            .collect();
        let sweep = Sweep::start(&members, &config, now);
        let soft = SoftSweep::start(&members, &config, now);
        let load = LoadSweep::start(&topology, now);
        let reweigh = Reweigh::start(policy.report_weights(), now);
        feedback.set_counted(counted(&config));
        feedback.set_local_threshold(local_threshold(&config));
        let selection = subset.select(members.iter().map(|e| &*e.id))?;
        let writer = Writer {
            retired: AHashMap::new(),
            config,
            topology,
            sweep,
            soft,
            load,
            reweigh,
            universe: members.into(),
            subset,
            selection,
        };
        let snapshot = build_members(&policy, &writer, None, now)?;
        #[cfg(feature = "metrics")]
        if let Some(exporter) = observer.as_ref().and_then(|w| w.exporter.as_ref()) {
            if exporter.interval_ns == 0 {
                return Err(Error::config(
                    "metrics",
                    "an export interval of 0 would export on every pick".to_owned(),
                ));
            }
            // The first export is at the end of `new`; the next one interval later.
            feedback.start_exports(now.saturating_add(exporter.interval_ns));
        }
        publish_caps(&snapshot);
        feedback.set_counting(writer.counting());
        let core = Core {
            policy,
            current: ArcSwap::from_pointee(snapshot),
            feedback,
            writer: Mutex::new(writer),
            observer,
            draws: Sequence::counter(0),
        };
        // With an exporter, the set as built (every gauge, and every counter at 0).
        core.export_metrics();
        Ok(core)
    }

    /// The current snapshot, rebuilt first if a report or the clock made it stale.
    #[inline]
    pub(crate) fn load(&self) -> Guard<Arc<Snapshot<T, P::Table>>> {
        let snap = self.current.load();
        // A pick count's nudge to check whether metrics are due (never without an exporter).
        #[cfg(feature = "metrics")]
        let nudged = self.feedback.export_nudged();
        #[cfg(not(feature = "metrics"))]
        let nudged = false;
        if self.feedback.is_dirty() || nudged || self.due(snap.refresh_at) {
            drop(snap);
            self.refresh();
            return self.current.load();
        }
        snap
    }

    /// Whether the time-based change due at `refresh_at` has come. Reads the clock on every
    /// call for a cheap clock, else on one call in 16 per thread.
    #[inline]
    fn due(&self, refresh_at: u64) -> bool {
        if refresh_at == NEVER {
            return false;
        }
        thread_local! {
            static TICK: Cell<u32> = const { Cell::new(0) };
        }
        if !self.feedback.clock_is_cheap() {
            let tick = TICK.with(|t| {
                t.set(t.get().wrapping_add(1));
                t.get()
            });
            if tick % 16 != 0 {
                return false;
            }
        }
        self.feedback.now_ns() >= refresh_at
    }

    /// Applies reports and time (ejections, returns, ramps, the panic threshold), tells the
    /// observers, and records metrics if an export is due.
    #[cold]
    fn refresh(&self) {
        self.apply_due();
        self.deliver();
        #[cfg(feature = "metrics")]
        self.export_if_due();
    }

    /// Applies reports and time, if a report or the clock made the snapshot stale. Skipped if
    /// another writer holds the lock (it will publish a fresh snapshot anyway).
    fn apply_due(&self) {
        {
            let Some(mut writer) = self.writer.try_lock() else {
                return;
            };
            let writer = &mut *writer;
            // The clock first: if it panics, nothing was taken or changed, and a later pick
            // tries again.
            let now = self.feedback.now_ns();
            let current = self.current.load_full();
            if !self.feedback.is_dirty() && now < current.refresh_at {
                // Only an export of metrics was due.
                return;
            }
            self.feedback.take_dirty();
            let before = self.before(&current);
            writer.apply_rules(&current.members, now);
            // Same members (unless a subset fell back to the whole set, or came back): only a
            // policy table can fail, and it did not for this set before.
            let Ok(snapshot) = self.rebuild(writer, &current, now) else {
                return;
            };
            self.enqueue(changes(before, &snapshot, None));
            self.current.store(Arc::new(snapshot));
        }
    }

    /// Records metrics if a pick count nudged (once every 1024 picks of a backend), the
    /// interval is over and no other thread is recording them: the first pick to find it
    /// over wins the interval. Skipped (until the next interval) if a
    /// writer holds the lock: a pick never waits for it.
    #[cfg(feature = "metrics")]
    fn export_if_due(&self) {
        let Some(exporter) = self.observer.as_ref().and_then(|w| w.exporter.as_ref()) else {
            return;
        };
        if !self.feedback.take_export_nudge() {
            return;
        }
        let now = self.feedback.now_ns();
        if self.feedback.claim_export(now, exporter.interval_ns) {
            if let Some(writer) = self.writer.try_lock() {
                self.export_locked(&writer, exporter);
            }
        }
    }

    /// [`Balancer::export_metrics`](crate::Balancer::export_metrics).
    pub(crate) fn export_metrics(&self) {
        #[cfg(feature = "metrics")]
        if let Some(exporter) = self.observer.as_ref().and_then(|w| w.exporter.as_ref()) {
            drop(self.load());
            let writer = self.writer.lock();
            self.export_locked(&writer, exporter);
        }
    }

    /// Records every line through the exporter, under the writer lock (the recorder is
    /// library code, not the caller's: it does not call back into the balancer).
    #[cfg(feature = "metrics")]
    fn export_locked(&self, writer: &Writer<T>, exporter: &crate::observe::metrics::Exporter) {
        let snap = self.current.load();
        let lines = self.lines(writer, &snap, Arc::clone);
        let name = self.observer.as_ref().map(|w| &w.name);
        if let Some(name) = name {
            exporter.record(name, &lines, snap.panic.is_some());
        }
    }

    /// Whether `state` (upgraded from the retired map, under the writer lock) is held by
    /// nothing but that upgrade and the metrics exporter's record (which keeps it to read
    /// what it counted last): then no pick holds it, and the backend added back starts afresh
    /// as it would without metrics.
    fn only_exported(&self, id: &str, state: &Arc<State>) -> bool {
        #[cfg(feature = "metrics")]
        if let Some(exporter) = self.observer.as_ref().and_then(|w| w.exporter.as_ref()) {
            // Under the writer lock no other reference can be taken from nothing: a count of
            // 2 stays 2.
            return Arc::strong_count(state) == 2 && exporter.holds(id, state);
        }
        let _ = (id, state);
        false
    }

    /// The members' state before a change, if an observer will be told of it.
    fn before(&self, current: &Snapshot<T, P::Table>) -> Option<Before> {
        self.observer.as_ref().map(|_| Before::of(current))
    }

    /// Queues `events` for the observer: called under the writer lock, so the queue holds
    /// every change in the order the writers made them.
    fn enqueue(&self, events: Vec<Event>) {
        if let Some(observer) = &self.observer {
            observer.enqueue(events);
        }
    }

    /// Tells the observer of the queued events; called with no lock held (see
    /// [`Watcher::deliver`]).
    fn deliver(&self) {
        if let Some(observer) = &self.observer {
            observer.deliver();
        }
    }

    /// A snapshot of the writer's members now, keeping `current`'s table (if the policy's
    /// table does not depend on health) and id index when the members are the same entries.
    fn rebuild(
        &self,
        writer: &Writer<T>,
        current: &Snapshot<T, P::Table>,
        now: u64,
    ) -> Result<Snapshot<T, P::Table>, Error> {
        build_members(&self.policy, writer, Some(current), now)
    }

    /// A pick for `request`, or why there is none (see [`NoPick`]).
    #[inline]
    pub(crate) fn try_pick(&self, request: &Request<'_>) -> Result<Pick<T>, NoPick> {
        let snap = self.load();
        if let Some(tiers) = &snap.tiers {
            return self.tiered_pick(&snap, tiers, request);
        }
        // The plain pick: no steering and no caps, so every eligible member is acceptable.
        if !request.is_steered() && !snap.capped {
            if let Some(index) = self.policy.choose(&snap, request, |_| true) {
                if let Some(pick) = snap.pick(index, request.work()) {
                    return Ok(pick);
                }
                // A cap that an update in progress just set: choose among those with room.
            }
        }
        self.steered(&snap, std::iter::once(&**snap), request)
    }

    /// The draw that chooses a request's priority level and locality: the policy's (a
    /// hashing policy's comes from the key), else the next of a Weyl sequence (the counter
    /// times the golden ratio), whose points spread over the levels' shares with a
    /// discrepancy that grows only with the logarithm of the picks, so the shares are met
    /// within a few picks over any run. The counter steps without a locked instruction:
    /// threads that share a stripe may repeat a value, which only repeats a draw.
    /// The request comes back with whatever the policy computed for the draw (a hashing
    /// policy's key hash), to choose with.
    #[inline]
    fn tier_draw<'r>(&self, request: &Request<'r>) -> (u64, Request<'r>) {
        match self.policy.tier_draw(request) {
            (Some(draw), request) => (draw, request),
            (None, request) => (
                self.draws.next_unsynchronized().wrapping_mul(GAMMA),
                request,
            ),
        }
    }

    /// A pick from a set with priority levels, degraded members or a locality split: a
    /// group first, then the policy's choice in it.
    #[inline]
    fn tiered_pick(
        &self,
        snap: &Snapshot<T, P::Table>,
        tiers: &Tiers<T, P::Table>,
        request: &Request<'_>,
    ) -> Result<Pick<T>, NoPick> {
        let (draw, request) = self.tier_draw(request);
        let first = tiers.choose(draw);
        let group = &tiers.groups[first].snap;
        if !request.is_steered() && !group.capped {
            if let Some(index) = self.policy.choose(group, &request, |_| true) {
                if let Some(pick) = group.pick(index, request.work()) {
                    return Ok(pick);
                }
            }
        }
        let groups = tiers.order(first).map(|g| &tiers.groups[g].snap);
        self.steered(snap, groups, &request)
    }

    /// [`Core::pick_n`] over groups: the preferred member, then each group's choices in
    /// order from the drawn one (the avoided members left out), then the avoided ones.
    fn tiered_pick_n(
        &self,
        snap: &Snapshot<T, P::Table>,
        tiers: &Tiers<T, P::Table>,
        request: &Request<'_>,
        n: usize,
    ) -> Vec<Pick<T>> {
        let mut out = Vec::with_capacity(n.min(snap.eligible.len() + 1));
        if n == 0 {
            return out;
        }
        let (draw, request) = self.tier_draw(request);
        let request = &request;
        let first = tiers.choose(draw);
        let avoid = Avoided::new(request.avoided());
        let preferred = preferred(snap, request, &avoid)
            .filter(|&i| {
                snap.pick(i, request.work())
                    .map(|pick| out.push(pick))
                    .is_some()
            })
            .map(|i| &snap.states[i]);
        let passes: &[Option<bool>] = if avoid.is_empty() {
            &[None]
        } else {
            &[Some(false), Some(true)]
        };
        let mut chosen = Vec::new();
        // Only the first group's choice may count a bounded-loads spill (the first choice of
        // `pick_n`); the groups after it choose for the same request.
        let quiet = (*request).without_spill_count();
        let mut asked = request;
        for &avoided in passes {
            for g in tiers.order(first) {
                if out.len() >= n {
                    return out;
                }
                let group = &tiers.groups[g].snap;
                let accept = |i: usize| {
                    avoided.map_or(true, |a| avoid.contains(group, i) == a)
                        && preferred.map_or(true, |p| !Arc::ptr_eq(p, &group.states[i]))
                        && (!group.capped || group.has_room(i, request.work()))
                };
                chosen.clear();
                self.policy
                    .choose_n(group, asked, n - out.len(), accept, &mut chosen);
                asked = &quiet;
                out.extend(chosen.iter().filter_map(|&i| group.pick(i, request.work())));
            }
        }
        out
    }

    /// The pick of a request that steers, or from a set with caps: the preferred member
    /// (whatever its group), then `groups` in order (the snapshot itself for a flat set; with
    /// priority levels, the groups with a share, the drawn one first) with the avoided
    /// members left out, then again with them.
    #[inline(never)]
    fn steered<'s>(
        &self,
        snap: &Snapshot<T, P::Table>,
        groups: impl Iterator<Item = &'s Snapshot<T, P::Table>> + Clone,
        request: &Request<'_>,
    ) -> Result<Pick<T>, NoPick>
    where
        P::Table: 's,
        T: 's,
    {
        if snap.members.is_empty() {
            return Err(NoPick::Empty);
        }
        let avoid = Avoided::new(request.avoided());
        if let Some(index) = preferred(snap, request, &avoid) {
            if let Some(pick) = snap.pick(index, request.work()) {
                return Ok(pick);
            }
        }
        if snap.eligible.is_empty() {
            return Err(NoPick::NoneEligible);
        }
        // The avoided members last: when nothing else can take it, the avoid list is ignored
        // (see `Request::avoid`).
        let passes: &[bool] = if avoid.is_empty() {
            &[false]
        } else {
            &[true, false]
        };
        for &leave_out_avoided in passes {
            for group in groups.clone() {
                if group.eligible.is_empty() {
                    continue;
                }
                // Checking room costs a read of each candidate's count: only with caps (or
                // once an acquire failed, which means a cap appeared after the snapshot was
                // built).
                let check_room = Cell::new(group.capped);
                let accept = |i: usize| {
                    (!leave_out_avoided || !avoid.contains(group, i))
                        && (!check_room.get() || group.has_room(i, request.work()))
                };
                if let Some(pick) = self.acquire(group, request, &check_room, accept) {
                    return Ok(pick);
                }
            }
        }
        Err(NoPick::AllAtCapacity)
    }

    /// Chooses among the members `accept` allows and takes a slot on the one chosen. A
    /// failed acquire means another thread took its last slot since `accept` saw room (or a
    /// cap appeared): room is checked from then on, and the policy chooses again, a bounded
    /// number of times (each failure is a slot another pick took).
    fn acquire(
        &self,
        snap: &Snapshot<T, P::Table>,
        request: &Request<'_>,
        check_room: &Cell<bool>,
        accept: impl Fn(usize) -> bool,
    ) -> Option<Pick<T>> {
        for _ in 0..=snap.eligible.len().min(CHOOSE_AGAIN) {
            let index = self.policy.choose(snap, request, &accept)?;
            if let Some(pick) = snap.pick(index, request.work()) {
                return Some(pick);
            }
            check_room.set(true);
        }
        None
    }

    pub(crate) fn pick_n(&self, request: &Request<'_>, n: usize) -> Vec<Pick<T>> {
        let snap = self.load();
        if let Some(tiers) = &snap.tiers {
            return self.tiered_pick_n(&snap, tiers, request, n);
        }
        let mut out = Vec::with_capacity(n.min(snap.eligible.len() + 1));
        if n == 0 {
            return out;
        }
        let mut chosen = Vec::with_capacity(n.min(snap.eligible.len()));
        if !request.is_steered() && !snap.capped {
            self.policy
                .choose_n(&snap, request, n, |_| true, &mut chosen);
            // A member that a cap set meanwhile filled is left out.
            out.extend(chosen.iter().filter_map(|&i| snap.pick(i, request.work())));
            return out;
        }
        let avoid = Avoided::new(request.avoided());
        let first = preferred(&snap, request, &avoid).filter(|&i| {
            snap.pick(i, request.work())
                .map(|pick| out.push(pick))
                .is_some()
        });
        let room = |i: usize| Some(i) != first && snap.has_room(i, request.work());
        let mut left = n - out.len();
        if left == 0 {
            return out;
        }
        // Those not avoided first, in the policy's order; then the avoided ones.
        self.policy.choose_n(
            &snap,
            request,
            left,
            |i| !avoid.contains(&snap, i) && room(i),
            &mut chosen,
        );
        out.extend(chosen.iter().filter_map(|&i| snap.pick(i, request.work())));
        left = n - out.len();
        if left > 0 && !avoid.is_empty() {
            chosen.clear();
            self.policy.choose_n(
                &snap,
                request,
                left,
                |i| avoid.contains(&snap, i) && room(i),
                &mut chosen,
            );
            out.extend(chosen.iter().filter_map(|&i| snap.pick(i, request.work())));
        }
        out
    }

    /// Replaces the whole set. Errors: an empty id, a duplicate id, more than
    /// [`MAX_BACKENDS`] backends, or whatever the policy's table rejects; then nothing
    /// changes.
    ///
    /// The caller's values that this update releases (replaced or removed backends, the old
    /// snapshot, or the new set on error) are dropped after the writer lock is released, so
    /// a value whose `Drop` calls back into the balancer cannot deadlock it.
    pub(crate) fn update(&self, backends: Vec<Backend<T>>) -> Result<(), Error> {
        let backends = sorted_and_checked(backends)?;
        let mut released = Released::default();
        let result = {
            let mut writer = self.writer.lock();
            let result = self.update_locked(&mut writer, backends, &mut released);
            self.enqueue(std::mem::take(&mut released.events));
            result
        };
        drop(released);
        self.deliver();
        result
    }

    /// The body of [`Core::update`], under the writer lock. Everything that may hold the last
    /// reference to a caller's value goes to `released`, to be dropped after the lock.
    fn update_locked(
        &self,
        writer: &mut Writer<T>,
        backends: Vec<(usize, Backend<T>)>,
        released: &mut Released<T, P::Table>,
    ) -> Result<(), Error> {
        let current = self.current.load_full();
        released.snapshots.push(Arc::clone(&current));
        let now = self.feedback.now_ns();
        let watched = self.before(&current);
        let ramp = writer.config.slow_start.is_some();
        let mut revived = Vec::new();
        // Health given with a backend (`Backend::with_health`), applied to its state, and what
        // it was, to restore if the build fails.
        let mut given = Vec::new();
        let members: Vec<Arc<Entry<T>>> = backends
            .into_iter()
            .map(|(position, b)| {
                let state = if let Some(e) = writer.find(&b.id) {
                    Arc::clone(&e.state)
                } else if let Some(state) = writer
                    .retired
                    .get(&b.id)
                    .and_then(|r| r.state.upgrade())
                    .filter(|state| !self.only_exported(&b.id, state))
                {
                    // Picks are still held from before its removal: keep counting them.
                    revived.push(Arc::clone(&state));
                    state
                } else {
                    Arc::new(State::new(&self.feedback, now, ramp))
                };
                if let Some(health) = b.health {
                    given.push((Arc::clone(&state), health));
                }
                entry(b, position, state)
            })
            .collect();
        released.entries.extend(members.iter().cloned());
        // A revived backend joins afresh, as a new one would (`Up`, not ejected, no failures,
        // ramping, no load report), before the snapshot is built so that the snapshot has its ramp. Its old
        // settings are restored if the build fails, so that nothing changes on error.
        let saved: Vec<_> = revived.iter().map(|s| s.revive(now, ramp)).collect();
        let before: Vec<Health> = given.iter().map(|(s, _)| s.health()).collect();
        // Set up again after `Down`: its reports start a new run (see `set_health`).
        let pending: Vec<Option<bool>> = given
            .iter()
            .zip(&before)
            .map(|((state, health), &was)| {
                state.set_health(*health);
                (was == Health::Down && *health != Health::Down)
                    .then(|| state.report_weight_ready())
            })
            .collect();
        // The subset of the new set (the rule was checked when it was set).
        let selection = writer.subset.select(members.iter().map(|e| &*e.id));
        let universe: Box<[Arc<Entry<T>>]> = members.into();
        let old_universe = std::mem::replace(&mut writer.universe, universe);
        let old_selection = writer.selection.take();
        let snapshot = match selection.and_then(|selection| {
            writer.selection = selection;
            build_members(&self.policy, writer, None, now)
        }) {
            Ok(snapshot) => snapshot,
            Err(e) => {
                writer.universe = old_universe;
                writer.selection = old_selection;
                for (((state, _), health), pending) in given.iter().zip(before).zip(pending).rev() {
                    state.set_health(health);
                    if let Some(pending) = pending {
                        state.undo_ready(pending);
                    }
                }
                for (state, saved) in revived.iter().zip(saved) {
                    state.undo_revive(saved);
                }
                return Err(e);
            }
        };
        for old in old_universe.iter() {
            if writer.find(&old.id).is_none() {
                #[cfg(feature = "metrics")]
                if let Some(observer) = &self.observer {
                    if let Some(exporter) = &observer.exporter {
                        exporter.adopt(&observer.name, &old.id, &old.state);
                    }
                }
                writer.retired.insert(
                    Arc::clone(&old.id),
                    Retired {
                        state: Arc::downgrade(&old.state),
                        weight: old.weight,
                        place: Place::of(old),
                    },
                );
            }
        }
        let universe = std::mem::take(&mut writer.universe);
        writer.retired.retain(|id, retired| {
            retired.state.strong_count() > 0
                && universe.binary_search_by(|e| (*e.id).cmp(id)).is_err()
        });
        writer.universe = universe;
        if watched.is_some() {
            let kept = old_universe
                .iter()
                .filter(|e| writer.find(&e.id).is_some())
                .count();
            let counts = (
                writer.universe.len() - kept,
                old_universe.len() - kept,
                kept,
            );
            let update = Some((counts, writer.selection.is_some()));
            released.events = changes(watched, &snapshot, update);
        }
        released.entries.extend(old_universe.iter().cloned());
        publish_caps(&snapshot);
        released
            .snapshots
            .push(self.current.swap(Arc::new(snapshot)));
        if writer.config.outlier_detection.is_some() {
            // A removed ejected backend, or a larger set, makes room under the cap for a
            // backend it held back: the next pick applies the rules.
            self.feedback.mark_dirty();
        }
        Ok(())
    }

    /// [`Balancer::report_load`](crate::Balancer::report_load): lock-free for a member.
    pub(crate) fn report_load(&self, id: &str, report: crate::LoadReport) -> Result<(), Error> {
        report.validate()?;
        // Stored through the reference the lookup found: no reference count taken, so a
        // report writes no line but the state's own.
        let store = |state: &State| state.take_report(&report, self.feedback.now_ns());
        let snap = self.current.load();
        if let Some(i) = snap.find_by_hash(id) {
            store(&snap.states[i]);
            return Ok(());
        }
        drop(snap);
        let writer = self.writer.lock();
        let entry = writer
            .find(id)
            .ok_or_else(|| Error::UnknownId(id.to_owned()))?;
        store(&entry.state);
        Ok(())
    }

    /// Sets one backend's health (one of the subset or not). Error: no backend has this id;
    /// then nothing changes.
    pub(crate) fn set_health(&self, id: &str, health: Health) -> Result<(), Error> {
        let writer = self.writer.lock();
        let current = self.current.load_full();
        let state = Arc::clone(
            &writer
                .find(id)
                .ok_or_else(|| Error::UnknownId(id.to_owned()))?
                .state,
        );
        let before = state.health();
        if before == health {
            return Ok(());
        }
        // The clock before any change: if it panics, nothing has changed.
        let now = self.feedback.now_ns();
        let watched = self.before(&current);
        state.set_health(health);
        // Ready again after `Down`: its reports start a new run (a blackout, with one), in
        // the snapshot built now.
        let pending = (before == Health::Down).then(|| state.report_weight_ready());
        match self.rebuild(&writer, &current, now) {
            Ok(snapshot) => {
                publish_caps(&snapshot);
                self.enqueue(changes(watched, &snapshot, None));
                self.current.store(Arc::new(snapshot));
                drop(writer);
                self.deliver();
                Ok(())
            }
            Err(e) => {
                state.set_health(before);
                if let Some(pending) = pending {
                    state.undo_ready(pending);
                }
                Err(e)
            }
        }
    }

    /// Replaces the subset rule. Error: a value out of range; then nothing changes.
    pub(crate) fn set_subset(&self, subset: Subset) -> Result<(), Error> {
        subset.validate()?;
        let mut released = Released::default();
        let result = {
            let mut writer = self.writer.lock();
            let writer = &mut *writer;
            let current = self.current.load_full();
            released.snapshots.push(Arc::clone(&current));
            // The clock before any change: if it panics, nothing has changed.
            let now = self.feedback.now_ns();
            let before = self.before(&current);
            subset
                .select(writer.universe.iter().map(|e| &*e.id))
                .and_then(|selection| {
                    let old = std::mem::replace(&mut writer.selection, selection);
                    let old_subset = std::mem::replace(&mut writer.subset, subset);
                    match self.rebuild(writer, &current, now) {
                        Ok(snapshot) => Ok(snapshot),
                        Err(e) => {
                            writer.selection = old;
                            writer.subset = old_subset;
                            Err(e)
                        }
                    }
                })
                .map(|snapshot| {
                    publish_caps(&snapshot);
                    self.enqueue(changes(before, &snapshot, None));
                    released
                        .snapshots
                        .push(self.current.swap(Arc::new(snapshot)));
                    if writer.config.outlier_detection.is_some() {
                        // A different set of members: the ejection cap may have room.
                        self.feedback.mark_dirty();
                    }
                })
        };
        drop(released);
        self.deliver();
        result
    }

    /// Replaces the topology (how a level's localities share its traffic). Error: an empty
    /// or repeated locality name; then nothing changes.
    pub(crate) fn set_topology(&self, topology: Topology) -> Result<(), Error> {
        topology.validate()?;
        let mut guard = self.writer.lock();
        let writer = &mut *guard;
        let current = self.current.load_full();
        let watched = self.before(&current);
        let now = self.feedback.now_ns();
        // Load-aware rules that measure the same way keep their samples (a new probe,
        // threshold, period or local zone changes nothing measured); others start over.
        let load = match (&topology.load, &writer.topology.load) {
            _ if topology.load == writer.topology.load => None,
            (Some(new), Some(old)) if new.signal == old.signal => {
                let mut kept = writer.load.clone();
                kept.reschedule(&topology, now);
                Some(kept)
            }
            _ => Some(LoadSweep::start(&topology, now)),
        };
        let old = std::mem::replace(&mut writer.topology, topology);
        let old_load = load.map(|load| std::mem::replace(&mut writer.load, load));
        let snapshot = match self.rebuild(writer, &current, now) {
            Ok(snapshot) => snapshot,
            Err(e) => {
                writer.topology = old;
                if let Some(old_load) = old_load {
                    writer.load = old_load;
                }
                return Err(e);
            }
        };
        publish_caps(&snapshot);
        self.enqueue(changes(watched, &snapshot, None));
        self.current.store(Arc::new(snapshot));
        drop(guard);
        drop(old);
        self.deliver();
        Ok(())
    }

    /// Replaces the health configuration. A new clock restarts everything measured in time
    /// (ejections, ramps, latency estimates, load reports); a rule switched off ends what it
    /// started.
    /// Error: a value out of range (see [`HealthConfig`]); then nothing changes.
    pub(crate) fn set_health_config(&self, config: HealthConfig) -> Result<(), Error> {
        config.validate()?;
        let mut guard = self.writer.lock();
        let writer = &mut *guard;
        let new_clock = !Arc::ptr_eq(&writer.config.clock, &config.clock);
        // The new clock before any change: if it panics, nothing has changed.
        let now = nanos(&*config.clock);
        self.feedback.reconfigure(
            Arc::clone(&config.clock),
            config.outlier_detection.map(|o| o.consecutive_failures),
        );
        let current = self.current.load_full();
        let watched = self.before(&current);
        let threshold = |c: &HealthConfig| {
            c.outlier_detection
                .map(|o| (o.consecutive_failures, o.consecutive_local_origin_failures))
        };
        let new_threshold = threshold(&writer.config) != threshold(&config);
        for e in writer.universe.iter() {
            let s = &e.state;
            if new_clock || config.outlier_detection.is_none() {
                if s.ejected_until() != 0 && !new_clock {
                    // Its ejection ends here: ready again, as when one runs out.
                    let _ = s.report_weight_ready();
                }
                s.forget_ejections();
            }
            if new_clock || new_threshold {
                // When a run crossed the old threshold, on the old clock, is no start for an
                // ejection under these rules: a run that meets them is ejected from now.
                s.clear_trip();
            }
            if new_clock || config.slow_start.is_none() {
                s.stop_ramp();
            }
            if new_clock {
                s.reset_latency(now);
                s.forget_failure_load();
                s.forget_report();
            }
        }
        let sweeps = |c: &HealthConfig| {
            c.outlier_detection
                .filter(|o| o.sweeps())
                .map(|o| o.interval)
        };
        self.feedback.set_counted(counted(&config));
        self.feedback.set_local_threshold(local_threshold(&config));
        let (before, after) = (sweeps(&writer.config), sweeps(&config));
        let soft = |c: &HealthConfig| c.soft_health.map(|h| h.interval);
        let (soft_before, soft_after) = (soft(&writer.config), soft(&config));
        writer.config = config;
        match (before, after) {
            (Some(_), Some(interval)) if !new_clock => writer.sweep.reschedule(interval, now),
            _ => writer.sweep = Sweep::start(&writer.universe, &writer.config, now),
        }
        match (soft_before, soft_after) {
            (Some(_), Some(interval)) if !new_clock => writer.soft.reschedule(interval, now),
            _ => writer.soft = SoftSweep::start(&writer.universe, &writer.config, now),
        }
        if new_clock {
            writer.load = LoadSweep::start(&writer.topology, now);
            writer.reweigh = Reweigh::start(self.policy.report_weights(), now);
        }
        self.feedback.set_counting(writer.counting());
        let writer = &mut *writer;
        writer.apply_rules(&current.members, now);
        // A policy whose table does not depend on health keeps it: no rule changes it.
        let snapshot = self.rebuild(writer, &current, now)?;
        publish_caps(&snapshot);
        self.enqueue(changes(watched, &snapshot, None));
        self.current.store(Arc::new(snapshot));
        drop(guard);
        self.deliver();
        Ok(())
    }

    pub(crate) fn backends(&self) -> Vec<Member<T>> {
        self.load().members.iter().map(Member::new).collect()
    }

    pub(crate) fn status(&self) -> Vec<Status> {
        // Rules and time applied first (if due); then, under the writer lock (which a pick
        // only tries for, to rebuild), the snapshot and the writer's lists agree.
        drop(self.load());
        let writer = self.writer.lock();
        let snap = self.current.load();
        self.lines(&writer, &snap, |_| ())
            .into_iter()
            .map(|(line, ())| line)
            .collect()
    }

    /// The status lines of `snap` (the current snapshot, read under the writer lock), each
    /// with what `keep` takes of its state: the members, then the backends outside the subset
    /// and the removed ones that still hold picks.
    fn lines<K>(
        &self,
        writer: &Writer<T>,
        snap: &Snapshot<T, P::Table>,
        keep: impl Fn(&Arc<State>) -> K,
    ) -> Vec<(Status, K)> {
        let now = snap.tracks_latency.then(|| self.feedback.now_ns());
        // Once per call, O(table): counted from the table picks use, indexed by member.
        let shares = match &snap.tiers {
            None => self.policy.table_shares(&snap.table, snap.members.len()),
            Some(tiers) => self.group_table_shares(snap, tiers),
        };
        let mut lines: Vec<(Status, K)> = snap
            .members
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let line = Status {
                    coverage: snap.coverage.as_ref().map_or(COVERAGE_SCALE, |c| c[i]),
                    effective_weight: snap.weights[i],
                    weight_scale: snap.weight_scale,
                    table_share: shares.as_ref().and_then(|s| s.get(i).copied()),
                    ..self.line(&e.id, e.weight, &Place::of(e), &e.state, now)
                };
                (line, keep(&e.state))
            })
            .collect();
        // Backends that are no longer members but still hold picks: removed, or outside the
        // subset.
        let member = |id: &str| snap.members.binary_search_by(|e| (*e.id).cmp(id)).is_ok();
        // Each line is kept by the count it shows (read once): a pick released between a
        // separate check and the read would list a backend with nothing held.
        let outside = writer
            .universe
            .iter()
            // A cheap first look (most backends outside a subset hold nothing); the line's
            // own count decides.
            .filter(|e| !member(&e.id) && e.state.in_flight() > 0)
            .map(|e| {
                let line = Status {
                    coverage: 0,
                    ..self.line(&e.id, e.weight, &Place::of(e), &e.state, now)
                };
                (line, keep(&e.state))
            })
            .filter(|(line, _)| line.in_flight > 0);
        lines.extend(outside);
        let mut removed: Vec<(Status, K)> = writer
            .retired
            .iter()
            .filter_map(|(id, r)| {
                let state = r.state.upgrade()?;
                let line = Status {
                    removed: true,
                    ..self.line(id, r.weight, &r.place, &state, now)
                };
                (line.in_flight > 0 && !member(id)).then(|| (line, keep(&state)))
            })
            .collect();
        removed.sort_unstable_by(|a, b| a.0.id.cmp(&b.0.id));
        lines.extend(removed);
        lines
    }

    /// With groups, each member's entries in its group's table (the classes of one level or
    /// locality share a table, counted once), indexed by the outer snapshot's members; `None`
    /// for a policy without entries per member.
    fn group_table_shares(
        &self,
        snap: &Snapshot<T, P::Table>,
        tiers: &Tiers<T, P::Table>,
    ) -> Option<Vec<u64>> {
        let mut shares: Option<Vec<u64>> = None;
        let mut counted: Vec<*const P::Table> = Vec::new();
        for group in tiers.groups.iter() {
            let g = &group.snap;
            if counted.contains(&Arc::as_ptr(&g.table)) {
                continue;
            }
            counted.push(Arc::as_ptr(&g.table));
            let Some(of) = self.policy.table_shares(&g.table, g.members.len()) else {
                continue;
            };
            let shares = shares.get_or_insert_with(|| vec![0; snap.members.len()]);
            for (e, n) in g.members.iter().zip(of) {
                if let Ok(i) = snap.members.binary_search_by(|m| m.id.cmp(&e.id)) {
                    shares[i] = n;
                }
            }
        }
        shares
    }

    /// One backend's status line as its state tells it, outside any snapshot: not eligible
    /// (effective weight 0), fully covered, a member. `now`: the clock, if the policy keeps a
    /// latency estimate.
    fn line(
        &self,
        id: &Arc<str>,
        weight: u32,
        place: &Place,
        state: &State,
        now: Option<u64>,
    ) -> Status {
        let counters = state.counters();
        Status {
            id: Arc::clone(id),
            weight,
            priority: place.priority,
            locality: place.locality.clone(),
            in_flight: counters.held,
            health: state.health(),
            ejected: state.ejected_until() != 0,
            soft_weight: state.soft_weight(),
            coverage: COVERAGE_SCALE,
            effective_weight: 0,
            weight_scale: 1,
            ejected_until: state.ejected_until(),
            ejections: state.ejections(),
            consecutive_failures: state.consecutive_failures(),
            counters,
            latency: now.and_then(|now| state.latency_estimate(now)),
            removed: false,
            table_share: None,
        }
    }
}

/// What an update releases: dropped after the writer lock, never under it.
struct Released<T, X> {
    snapshots: Vec<Arc<Snapshot<T, X>>>,
    entries: Vec<Arc<Entry<T>>>,
    /// For the observer, told after the lock.
    events: Vec<Event>,
}

impl<T, X> Default for Released<T, X> {
    fn default() -> Self {
        Released {
            snapshots: Vec::new(),
            entries: Vec::new(),
            events: Vec::new(),
        }
    }
}

/// How many times a steered pick chooses again after losing a slot to another thread (at
/// most once per eligible member).
const CHOOSE_AGAIN: usize = 8;

/// The index of the member `request` prefers, if the preference can be honoured: the id is in
/// the set, preferable (see [`Snapshot::preferable`]), not avoided, and has room.
#[inline]
fn preferred<T, X>(
    snap: &Snapshot<T, X>,
    request: &Request<'_>,
    avoid: &Avoided<'_>,
) -> Option<usize> {
    let index = snap.find_by_hash(request.preferred()?)?;
    (snap.preferable[index] && !avoid.contains(snap, index) && snap.has_room(index, request.work()))
        .then_some(index)
}

/// An avoid list, prepared once per pick: the [`id_hash`] of each of its first
/// [`Avoided::HASHED`] ids, so that testing a candidate is a comparison with the member's
/// precomputed hash ([`Snapshot::id_hashes`]), confirmed on the id only when the hashes
/// match. Ids beyond the first `HASHED` are compared as strings. Unknown ids never match.
struct Avoided<'a> {
    hashes: [u64; Avoided::HASHED],
    ids: &'a [&'a str],
}

impl<'a> Avoided<'a> {
    const HASHED: usize = 8;

    #[inline]
    fn new(ids: &'a [&'a str]) -> Self {
        let mut hashes = [0; Avoided::HASHED];
        for (h, id) in hashes.iter_mut().zip(ids) {
            *h = id_hash(id);
        }
        Avoided { hashes, ids }
    }

    #[inline]
    fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    #[inline]
    fn contains<T, X>(&self, snap: &Snapshot<T, X>, index: usize) -> bool {
        let hash = snap.ids.hashes[index];
        let id = || -> &str { &snap.members[index].id };
        let (hashed, rest) = self.ids.split_at(self.ids.len().min(Avoided::HASHED));
        hashed
            .iter()
            .zip(&self.hashes)
            .any(|(a, &h)| h == hash && *a == id())
            || rest.contains(&id())
    }
}

/// The kinds of failure that count toward ejection under `config`.
/// Local-origin failures in a row that eject, if counted apart.
fn local_threshold(config: &HealthConfig) -> Option<u32> {
    config
        .outlier_detection
        .and_then(|o| o.consecutive_local_origin_failures)
}

fn counted(config: &HealthConfig) -> crate::health::FailureClasses {
    config
        .outlier_detection
        .map(|o| o.counted)
        .unwrap_or_default()
}

/// Writer only: stores each member's cap into its state, once the snapshot carrying them is
/// built and before it is published.
fn publish_caps<T, X>(snap: &Snapshot<T, X>) {
    for e in snap.members.iter() {
        if e.state.max_in_flight() != e.max_in_flight {
            e.state.set_max_in_flight(e.max_in_flight);
        }
    }
}

fn entry<T>(backend: Backend<T>, position: usize, state: Arc<State>) -> Arc<Entry<T>> {
    Arc::new(Entry {
        id: backend.id,
        weight: backend.weight,
        max_in_flight: backend.max_in_flight.unwrap_or(0),
        position,
        value: backend.value,
        state,
        priority: backend.priority,
        locality: backend.locality,
    })
}

/// Sorts by id, remembering each backend's position in the caller's list, and rejects empty
/// ids, duplicate ids and oversized sets.
fn sorted_and_checked<T>(backends: Vec<Backend<T>>) -> Result<Vec<(usize, Backend<T>)>, Error> {
    if backends.len() > MAX_BACKENDS {
        return Err(Error::TooManyBackends {
            count: backends.len(),
            max: MAX_BACKENDS,
        });
    }
    if backends.iter().any(|b| b.id.is_empty()) {
        return Err(Error::EmptyId);
    }
    if let Some(b) = backends.iter().find(|b| b.locality.as_deref() == Some("")) {
        return Err(Error::config(
            "locality",
            format!("backend {:?} names an empty locality", b.id),
        ));
    }
    if let Some(b) = backends.iter().find(|b| b.max_in_flight == Some(0)) {
        return Err(Error::config(
            "max_in_flight",
            format!(
                "backend {:?} has a cap of 0, which could never be picked",
                b.id
            ),
        ));
    }
    let mut backends: Vec<(usize, Backend<T>)> = backends.into_iter().enumerate().collect();
    backends.sort_unstable_by(|a, b| a.1.id.cmp(&b.1.id));
    if let Some(pair) = backends.windows(2).find(|w| w[0].1.id == w[1].1.id) {
        return Err(Error::DuplicateId(pair[0].1.id.to_string()));
    }
    Ok(backends)
}

/// The members' state before a change, for the observer.
struct Before {
    /// By id: the end of the ejection (0: none), whether ramping, the soft-health weight.
    members: AHashMap<Arc<str>, (u64, bool, u32)>,
    panic: Option<(usize, usize)>,
    shares: Vec<(u32, Option<Arc<str>>, u64)>,
}

/// The levels' and localities' shares of a snapshot, in parts per million: one level as a
/// whole for a flat set with members.
fn traffic_shares<T, X>(snap: &Snapshot<T, X>) -> Vec<(u32, Option<Arc<str>>, u64)> {
    match (&snap.tiers, snap.members.first()) {
        (Some(tiers), _) => tiers.traffic_shares(),
        (None, Some(e)) => vec![(e.priority, None, 1_000_000)],
        (None, None) => Vec::new(),
    }
}

impl Before {
    fn of<T, X>(snap: &Snapshot<T, X>) -> Self {
        Before {
            members: snap
                .members
                .iter()
                .zip(snap.ramping.iter())
                .map(|(e, &ramping)| {
                    let s = &e.state;
                    (
                        Arc::clone(&e.id),
                        (s.ejected_until(), ramping, s.soft_weight()),
                    )
                })
                .collect(),
            panic: snap.panic,
            shares: traffic_shares(snap),
        }
    }
}

/// What changed from `before` to `after`, as events. `update`: for an update, the backends
/// added, removed and kept, and whether a subset rule is in force.
fn changes<T, X>(
    before: Option<Before>,
    after: &Snapshot<T, X>,
    update: Option<((usize, usize, usize), bool)>,
) -> Vec<Event> {
    let Some(before) = before else {
        return Vec::new();
    };
    let mut events = Vec::new();
    if let Some(((added, removed, kept), _)) = update {
        events.push(Event::Updated {
            added,
            removed,
            kept,
        });
    }
    let mut same_members = before.members.len() == after.members.len();
    for (e, &ramping) in after.members.iter().zip(after.ramping.iter()) {
        let Some(&(until, was_ramping, soft)) = before.members.get(&e.id) else {
            same_members = false;
            continue;
        };
        let s = &e.state;
        let id = || Arc::clone(&e.id);
        match (until, s.ejected_until()) {
            (0, 0) => {}
            (0, now) => events.push(Event::Ejected {
                id: id(),
                why: s.ejected_by().unwrap_or(Ejection::ConsecutiveFailures),
                until: std::time::Duration::from_nanos(now),
            }),
            (_, 0) => events.push(Event::Returned { id: id() }),
            _ => {}
        }
        if was_ramping && !ramping {
            events.push(Event::SlowStartDone { id: id() });
        }
        if s.soft_weight() != soft {
            events.push(Event::SoftWeight {
                id: id(),
                multiplier: f64::from(s.soft_weight()) / f64::from(FULL_SOFT_WEIGHT),
            });
        }
    }
    match (before.panic, after.panic) {
        (None, Some((healthy, could))) => events.push(Event::PanicEntered { healthy, could }),
        (Some(_), None) => {
            let (healthy, could) = after.healthy;
            events.push(Event::PanicLeft { healthy, could });
        }
        _ => {}
    }
    let subset_in_force = match update {
        Some((_, subset)) => subset,
        None => true,
    };
    if !same_members && subset_in_force {
        events.push(Event::SubsetChanged {
            members: after.members.len(),
        });
    }
    let shares = traffic_shares(after);
    if shares != before.shares {
        events.push(Event::SharesChanged {
            shares: shares
                .into_iter()
                .map(|(priority, locality, ppm)| TrafficShare {
                    priority,
                    locality,
                    share: ppm as f64 / 1e6,
                })
                .collect(),
        });
    }
    events
}

/// Builds a snapshot at clock time `now`: who is eligible (health, ejection, the panic
/// threshold) and with what effective weight (slow start). `previous` is the table to keep if
/// the policy's table does not depend on those; `ids`, the id index of the same members.
#[allow(clippy::too_many_arguments)] // each is one input of the snapshot
fn build<T, P: Policy<T>>(
    policy: &P,
    members: Box<[Arc<Entry<T>>]>,
    coverage: Option<Box<[u32]>>,
    previous: Option<&Snapshot<T, P::Table>>,
    ids: Option<Arc<IdIndex>>,
    config: &HealthConfig,
    (topology, load): (&Topology, &LoadSweep),
    sweep_at: u64,
    now: u64,
) -> Result<Snapshot<T, P::Table>, Error> {
    // The next sweep of the statistical ejection rules, if any, is a time-based change.
    let mut refresh_at = sweep_at;
    let standing: Vec<Standing> = members
        .iter()
        .map(|e| {
            let until = e.state.ejected_until();
            if until != 0 {
                refresh_at = refresh_at.min(until);
            }
            match e.state.health() {
                _ if e.weight == 0 => Standing::Out,
                Health::Draining => Standing::Out,
                Health::Down => Standing::Unavailable,
                _ if until != 0 => Standing::Unavailable,
                Health::Degraded => Standing::Degraded,
                Health::Up => Standing::Healthy,
            }
        })
        .collect();
    // Could serve at all (the operator's view) and healthy (could, and up and not ejected).
    let could_count = standing.iter().filter(|s| s.could_serve()).count();
    let healthy_count = standing.iter().filter(|&&s| s == Standing::Healthy).count();
    // The effective weight of every member that could serve (slow start, soft health,
    // coverage); those that end up ineligible are left out below.
    let weights_all: Vec<u64> = members
        .iter()
        .zip(&standing)
        .enumerate()
        .map(|(index, (e, s))| {
            if !s.could_serve() {
                return 0;
            }
            let coverage = coverage.as_ref().map(|c| c[index]);
            effective_weight(e, coverage, config, now, &mut refresh_at)
        })
        .collect();
    let tracks_latency = policy.latency_tracking().is_some();
    let scale = weight_scale(config, coverage.is_some());
    let inputs = Inputs {
        members: &members,
        standing: &standing,
        overprovisioning: config.overprovisioning_percent(),
        panic_threshold_ppm: config.panic_threshold_ppm(),
        topology,
        load,
    };
    let arrangement = arrange(
        &inputs,
        previous.and_then(|p| p.tiers.as_ref()),
        !P::TABLE_USES_HEALTH,
        |group, of, is_eligible, table| {
            let weights: Vec<u64> = of.iter().map(|&i| weights_all[i]).collect();
            group_snapshot(
                policy,
                group,
                is_eligible,
                &weights,
                table,
                tracks_latency,
                scale,
                now,
            )
        },
    )?;
    let panic = arrangement.panic;
    let is_eligible: Box<[bool]> = arrangement.is_eligible.into();
    let (eligible, weights) = eligible_of(&members, &is_eligible, |i| weights_all[i]);
    let table = match previous {
        Some(previous) if !P::TABLE_USES_HEALTH => Arc::clone(&previous.table),
        _ => Arc::new(policy.build(&View {
            members: &members,
            eligible: &eligible,
            now,
            weight_scale: scale,
        })?),
    };
    let states = members.iter().map(|e| Arc::clone(&e.state)).collect();
    let capped = members.iter().any(|e| e.max_in_flight != 0);
    let ids = ids.unwrap_or_else(|| Arc::new(IdIndex::new(members.iter().map(|e| &*e.id))));
    let preferable = members
        .iter()
        .map(|e| {
            let health = e.state.health();
            let draining = health == Health::Draining || e.weight == 0;
            health != Health::Down && (draining || e.state.ejected_until() == 0)
        })
        .collect();
    let ramping = members.iter().map(|e| is_ramping(e, config, now)).collect();
    Ok(Snapshot {
        weight_scale: scale,
        panic: panic.then_some((healthy_count, could_count)),
        healthy: (healthy_count, could_count),
        ramping,
        members,
        states,
        eligible,
        is_eligible,
        weights,
        table,
        refresh_at,
        capped,
        preferable,
        ids,
        tracks_latency,
        coverage,
        tiers: arrangement.tiers,
    })
}

/// Implements [`Balancer`](crate::Balancer) and `Debug` for a policy type with a `core`
/// field, by delegation: every policy is the same calls into its [`Core`].
macro_rules! impl_balancer {
    ($ty:ident) => {
        impl<T: Send + Sync + 'static> $crate::Balancer<T> for $ty<T> {
            #[inline]
            fn pick(&self, request: &$crate::Request<'_>) -> Option<$crate::Pick<T>> {
                self.core.try_pick(request).ok()
            }

            #[inline]
            fn try_pick(
                &self,
                request: &$crate::Request<'_>,
            ) -> Result<$crate::Pick<T>, $crate::NoPick> {
                self.core.try_pick(request)
            }

            fn pick_n(&self, request: &$crate::Request<'_>, n: usize) -> Vec<$crate::Pick<T>> {
                self.core.pick_n(request, n)
            }

            fn update(&self, backends: Vec<$crate::Backend<T>>) -> Result<(), $crate::Error> {
                self.core.update(backends)
            }

            fn set_health(&self, id: &str, health: $crate::Health) -> Result<(), $crate::Error> {
                self.core.set_health(id, health)
            }

            fn set_health_config(&self, config: $crate::HealthConfig) -> Result<(), $crate::Error> {
                self.core.set_health_config(config)
            }

            fn set_topology(&self, topology: $crate::Topology) -> Result<(), $crate::Error> {
                self.core.set_topology(topology)
            }

            fn report_load(
                &self,
                id: &str,
                report: $crate::LoadReport,
            ) -> Result<(), $crate::Error> {
                self.core.report_load(id, report)
            }

            fn set_subset(&self, subset: $crate::Subset) -> Result<(), $crate::Error> {
                self.core.set_subset(subset)
            }

            fn status(&self) -> Vec<$crate::Status> {
                self.core.status()
            }

            fn export_metrics(&self) {
                self.core.export_metrics()
            }

            fn backends(&self) -> Vec<$crate::Member<T>> {
                self.core.backends()
            }
        }

        impl<T: Send + Sync + 'static> std::fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("backends", &self.core.status())
                    .finish()
            }
        }
    };
}
pub(crate) use impl_balancer;

#[cfg(test)]
mod tests {
    use super::*;

    /// The eligible member of lowest id: just enough of a policy to drive the engine (not the
    /// public `First`, which follows list order).
    struct LowestId;

    impl<T> Policy<T> for LowestId {
        type Table = ();
        const TABLE_USES_HEALTH: bool = true;

        fn build(&self, _: &View<'_, T>) -> Result<(), Error> {
            Ok(())
        }

        fn choose(
            &self,
            snap: &Snapshot<T, ()>,
            _: &Request<'_>,
            accept: impl Fn(usize) -> bool,
        ) -> Option<usize> {
            snap.eligible.iter().map(|e| e.index).find(|&i| accept(i))
        }

        fn choose_n(
            &self,
            snap: &Snapshot<T, ()>,
            _: &Request<'_>,
            n: usize,
            accept: impl Fn(usize) -> bool,
            out: &mut Vec<usize>,
        ) {
            out.extend(
                snap.eligible
                    .iter()
                    .map(|e| e.index)
                    .filter(|&i| accept(i))
                    .take(n),
            );
        }
    }

    /// Counts its table builds; its table ignores health, as the hashing policies' do.
    #[derive(Default)]
    struct Counting(std::sync::atomic::AtomicUsize);

    impl<T> Policy<T> for Counting {
        type Table = ();
        const TABLE_USES_HEALTH: bool = false;

        fn build(&self, _: &View<'_, T>) -> Result<(), Error> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }

        fn choose(
            &self,
            snap: &Snapshot<T, ()>,
            r: &Request<'_>,
            accept: impl Fn(usize) -> bool,
        ) -> Option<usize> {
            LowestId.choose(snap, r, accept)
        }

        fn choose_n(
            &self,
            snap: &Snapshot<T, ()>,
            r: &Request<'_>,
            n: usize,
            accept: impl Fn(usize) -> bool,
            out: &mut Vec<usize>,
        ) {
            LowestId.choose_n(snap, r, n, accept, out)
        }
    }

    /// Mutant of `build` (the guard `!P::TABLE_USES_HEALTH` as `false`): a health change must
    /// not rebuild a table that ignores health (the hashing docs: "a health change costs no
    /// rebuild"); an update does rebuild it.
    #[test]
    fn a_health_change_keeps_a_table_that_ignores_health() {
        let core = Core::new(
            Counting::default(),
            set(&["a", "b"]),
            HealthConfig::new(),
            Topology::new(),
            Subset::All,
            None,
        )
        .unwrap();
        let builds = || core.policy.0.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(builds(), 1);
        core.set_health("a", Health::Down).unwrap();
        core.set_health("a", Health::Up).unwrap();
        assert_eq!(builds(), 1);
        core.update(set(&["a", "b", "c"])).unwrap();
        assert_eq!(builds(), 2);
    }

    fn set(ids: &[&str]) -> Vec<Backend<()>> {
        ids.iter().map(|id| Backend::new(*id, ())).collect()
    }

    fn retired(core: &Core<(), LowestId>) -> Vec<String> {
        let mut ids: Vec<String> = core
            .writer
            .lock()
            .retired
            .keys()
            .map(|id| id.to_string())
            .collect();
        ids.sort();
        ids
    }

    /// Mutants of the retired map's `retain` (`strong_count() > 0 && ...` as `>=` or `||`):
    /// it must hold exactly the removed backends with picks still held, so that memory stays
    /// bounded under id churn.
    #[test]
    fn the_retired_map_holds_exactly_the_removed_backends_with_held_picks() {
        let core = Core::new(
            LowestId,
            set(&["a"]),
            HealthConfig::new(),
            Topology::new(),
            Subset::All,
            None,
        )
        .unwrap();
        let held = core.try_pick(&Request::new()).unwrap();
        assert_eq!(held.id(), "a");
        // Churn through ids nobody holds: none of them stays.
        for i in 0..100 {
            core.update(set(&[&format!("churn-{i}")])).unwrap();
        }
        // The last one removed is still referenced by the snapshot that update replaced
        // (dropped after the lock); the next update forgets it.
        assert_eq!(retired(&core), ["a", "churn-98"]);
        core.update(set(&["churn-99"])).unwrap();
        assert_eq!(retired(&core), ["a"]);
        // "a" comes back: revived from the map, and it leaves it.
        core.update(set(&["a", "b"])).unwrap();
        assert_eq!(core.status()[0].in_flight, 1);
        assert_eq!(retired(&core), ["churn-99"]);
        core.update(set(&["a", "b"])).unwrap();
        assert!(retired(&core).is_empty());
        // Removed again while held, then released: gone at the next update.
        core.update(set(&["b"])).unwrap();
        assert_eq!(retired(&core), ["a"]);
        drop(held);
        core.update(set(&["c"])).unwrap();
        core.update(set(&["c"])).unwrap();
        assert!(retired(&core).is_empty());
    }
}
