//! Per-backend state that outlives rebuilds: in-flight count, health, and what reports taught
//! the balancer (failures in a row, ejection, slow-start ramp, peak-EWMA latency).
//!
//! One [`State`] per backend id, on its own cache line, shared by every entry that has stood
//! for that id; a held pick keeps it alive after the backend was removed. Reports reach it
//! through the pick, and reach the balancer-wide [`Feedback`] through it.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::Health;
use crate::clock::Clock;
use crate::engine::orca::{BackendWeight, WeightConfig};
use crate::engine::sync::Ordering;
use crate::engine::sync::{ArcSwap, AtomicBool, AtomicU32, AtomicU64, AtomicU8};
use crate::health::{Failure, FailureClasses};
use crate::observe::Ejection;
use crate::report::LoadReport;

/// What every state of one balancer shares: the clock, what reports must do, and the flag
/// that asks for a rebuild.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Feedback {
    /// The clock of every time-based rule; replaced (rarely) by `set_health_config`.
    clock: ArcSwap<Arc<dyn Clock>>,
    /// Whether reading `clock` is cheap (see [`Clock::is_cheap`]).
    cheap_clock: AtomicBool,
    /// Failures in a row that make a backend a candidate for ejection; `u32::MAX` when
    /// outlier detection is off.
    failure_threshold: AtomicU32,
    /// The peak-EWMA time constant and starting latency, when latency is tracked.
    latency: Option<LatencyTracking>,
    /// How load reports weigh backends, when the policy schedules by reported weights.
    pub(crate) report_weights: Option<WeightConfig>,
    /// The time constant, in milliseconds, with which a failure's weight as a request in
    /// flight fades, when failures weigh on load (see [`State::failure_load`]).
    failure_load_ms: Option<f64>,
    /// Set by a report that may change who is eligible; cleared by the rebuild applying it.
    dirty: AtomicBool,
    /// Clock nanoseconds at which the next export of metrics is due ([`NEVER`] without the
    /// `metrics` feature's exporter).
    #[cfg(feature = "metrics")]
    export_at: AtomicU64,
    /// Set once every 1024 picks of a backend while exports are on: the next pick checks the
    /// clock against `export_at`. Beside `dirty`, which every pick reads.
    #[cfg(feature = "metrics")]
    export_nudged: AtomicBool,
    /// What reports count per backend for the rules that sweep: [`COUNT_OUTCOMES`] (the
    /// statistical ejection rules, soft health), [`COUNT_LATENCY`] (soft health).
    counting: AtomicU8,
    /// The kinds of failure that count toward ejection ([`FailureClasses::bits`]).
    counted: AtomicU8,
    /// Local-origin failures in a row that eject, when they are counted apart; 0 (never a
    /// valid threshold) when they are not ([`OutlierDetection::consecutive_local_origin_failures`]).
    ///
    /// [`OutlierDetection::consecutive_local_origin_failures`]:
    ///     crate::OutlierDetection::consecutive_local_origin_failures
    local_threshold: AtomicU32,
}

/// Peak-EWMA parameters, in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LatencyTracking {
    pub(crate) decay_ns: f64,
    pub(crate) default_ns: f64,
    /// The least latency a failure counts as (0: the time the pick was held).
    pub(crate) failure_penalty_ns: f64,
}

impl LatencyTracking {
    /// The parameters of a latency estimate (Peak EWMA's and Prequal's knobs), checked.
    ///
    /// Errors: [`Error::InvalidConfig`](crate::Error::InvalidConfig) for a zero `decay` or
    /// `default_latency`.
    pub(crate) fn new(
        decay: Duration,
        default_latency: Duration,
        failure_penalty: Duration,
    ) -> Result<Self, crate::Error> {
        if decay.is_zero() {
            return Err(crate::Error::config("decay", "must be above zero"));
        }
        if default_latency.is_zero() {
            return Err(crate::Error::config(
                "default_latency",
                "must be above zero",
            ));
        }
        Ok(LatencyTracking {
            decay_ns: decay.as_nanos() as f64,
            default_ns: default_latency.as_nanos() as f64,
            failure_penalty_ns: failure_penalty.as_nanos() as f64,
        })
    }
}

impl Feedback {
    pub(crate) fn new(
        clock: Arc<dyn Clock>,
        failure_threshold: Option<u32>,
        latency: Option<LatencyTracking>,
        failure_load: Option<Duration>,
        report_weights: Option<WeightConfig>,
    ) -> Self {
        Feedback {
            report_weights,
            failure_load_ms: failure_load.map(|d| d.as_secs_f64() * 1e3),
            cheap_clock: AtomicBool::new(clock.is_cheap()),
            clock: ArcSwap::from_pointee(clock),
            failure_threshold: AtomicU32::new(failure_threshold.unwrap_or(u32::MAX)),
            latency,
            dirty: AtomicBool::new(false),
            #[cfg(feature = "metrics")]
            export_at: AtomicU64::new(NEVER),
            #[cfg(feature = "metrics")]
            export_nudged: AtomicBool::new(false),
            counting: AtomicU8::new(0),
            counted: AtomicU8::new(FailureClasses::default().bits()),
            local_threshold: AtomicU32::new(0),
        }
    }

    /// Writer only: the kinds of failure that count toward ejection.
    pub(crate) fn set_counted(&self, counted: FailureClasses) {
        // Relaxed: a report that reads the old value classifies one failure by the old rules.
        self.counted.store(counted.bits(), Ordering::Relaxed);
    }

    /// Whether a failure of this kind counts toward ejection.
    #[inline]
    pub(crate) fn counts(&self, failure: Failure) -> bool {
        // Relaxed: see `set_counted`.
        self.counted.load(Ordering::Relaxed) & failure.bit() != 0
    }

    /// Writer only: local-origin failures in a row that eject, counted apart (`None`: they
    /// are not counted apart).
    pub(crate) fn set_local_threshold(&self, threshold: Option<u32>) {
        // Relaxed: as in `reconfigure`.
        self.local_threshold
            .store(threshold.unwrap_or(0), Ordering::Relaxed);
    }

    /// Local-origin failures in a row that eject; 0 when not counted apart.
    #[inline]
    pub(crate) fn local_threshold(&self) -> u32 {
        // Relaxed: as in `reconfigure`.
        self.local_threshold.load(Ordering::Relaxed)
    }

    /// Writer only: what reports count for the rules that sweep ([`COUNT_OUTCOMES`],
    /// [`COUNT_LATENCY`]).
    pub(crate) fn set_counting(&self, counting: u8) {
        // Relaxed: a report that reads the old value counts once more or less, in the interval
        // that the change of rules starts anyway.
        self.counting.store(counting, Ordering::Relaxed);
    }

    #[inline]
    fn counting(&self) -> u8 {
        // Relaxed: see `set_counting`.
        self.counting.load(Ordering::Relaxed)
    }

    /// Writer only: a new clock and failure threshold.
    pub(crate) fn reconfigure(&self, clock: Arc<dyn Clock>, failure_threshold: Option<u32>) {
        // Relaxed: a pick that reads the old value samples the clock once more or less often.
        self.cheap_clock.store(clock.is_cheap(), Ordering::Relaxed);
        self.clock.store(Arc::new(clock));
        // Relaxed: reports that read the old threshold only act a little late or early once.
        self.failure_threshold
            .store(failure_threshold.unwrap_or(u32::MAX), Ordering::Relaxed);
    }

    /// Whether reading the clock is cheap enough to do on every pick (a manual clock).
    #[inline]
    pub(crate) fn clock_is_cheap(&self) -> bool {
        // Relaxed: see `reconfigure`.
        self.cheap_clock.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn is_dirty(&self) -> bool {
        // Relaxed: a late read only delays the rebuild to a later pick; the rebuild itself
        // reads the states under the writer lock.
        self.dirty.load(Ordering::Relaxed)
    }

    /// Asks the next pick to rebuild, applying the rules (an update may have made room under
    /// the ejection cap for a backend it held back).
    pub(crate) fn mark_dirty(&self) {
        // Release: as in `report_failure`, paired with `take_dirty`.
        self.dirty.store(true, Ordering::Release);
    }

    /// Clears the flag; returns whether it was set. Called under the writer lock, before the
    /// states are read, so a report racing with the rebuild sets it again.
    pub(crate) fn take_dirty(&self) -> bool {
        // AcqRel: pairs with the Release in `report_failure`, so the failure counts it
        // published are visible to the rebuild that follows.
        self.dirty.swap(false, Ordering::AcqRel)
    }

    /// Whether a pick count asked the next pick to check whether metrics are due.
    #[cfg(feature = "metrics")]
    #[inline]
    pub(crate) fn export_nudged(&self) -> bool {
        // Relaxed: a late read only delays an export to a later pick.
        self.export_nudged.load(Ordering::Relaxed)
    }

    /// Asks the next pick to check whether metrics are due (if exports are on).
    #[cfg(feature = "metrics")]
    fn nudge_export(&self) {
        // Relaxed: as in `export_nudged`.
        if self.export_at.load(Ordering::Relaxed) != NEVER {
            self.export_nudged.store(true, Ordering::Relaxed);
        }
    }

    /// Takes the nudge; whether there was one.
    #[cfg(feature = "metrics")]
    pub(crate) fn take_export_nudge(&self) -> bool {
        // Relaxed: as in `export_nudged`; the load first keeps the line clean when unset.
        self.export_nudged.load(Ordering::Relaxed)
            && self.export_nudged.swap(false, Ordering::Relaxed)
    }

    /// Whether this caller wins the export due at `now` (if one is): the interval's next is
    /// set `interval` ahead, so one caller per interval exports.
    #[cfg(feature = "metrics")]
    pub(crate) fn claim_export(&self, now: u64, interval: u64) -> bool {
        // Relaxed: the value orders nothing else; the compare-exchange alone makes one winner.
        let at = self.export_at.load(Ordering::Relaxed);
        at != NEVER
            && now >= at
            && self
                .export_at
                .compare_exchange(
                    at,
                    now.saturating_add(interval.max(1)),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Starts exporting: the next export is due at `at`.
    #[cfg(feature = "metrics")]
    pub(crate) fn start_exports(&self, at: u64) {
        // Relaxed: see `export_nudged`.
        self.export_at.store(at, Ordering::Relaxed);
    }

    pub(crate) fn failure_threshold(&self) -> u32 {
        // Relaxed: see `reconfigure`.
        self.failure_threshold.load(Ordering::Relaxed)
    }

    pub(crate) fn now_ns(&self) -> u64 {
        nanos(&***self.clock.load())
    }
}

/// A clock's time in nanoseconds, saturating at `u64::MAX` (584 years).
pub(crate) fn nanos(clock: &dyn Clock) -> u64 {
    u64::try_from(clock.now().as_nanos()).unwrap_or(u64::MAX)
}

/// [`Feedback::set_counting`]: reports count successes and failures.
pub(crate) const COUNT_OUTCOMES: u8 = 1;
/// [`Feedback::set_counting`]: successes count their latency too.
pub(crate) const COUNT_LATENCY: u8 = 2;

/// [`State`]'s reported utilisation before any report.
pub(crate) const NO_REPORT: u32 = u32::MAX;

/// A soft-health multiplier of 1: the backend's full weight (see [`State::soft_weight`]).
pub(crate) const FULL_SOFT_WEIGHT: u32 = 1 << 16;

/// "Not ramping": the value of [`State::ramp_start`] for a backend at full weight.
pub(crate) const FULL_WEIGHT: u64 = u64::MAX;

/// "No time-based change due": a refresh time that never comes.
pub(crate) const NEVER: u64 = u64::MAX;

/// One backend's reports in a soft-health interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SoftCounts {
    /// Successes as the rules see them (with failures of kinds not counted).
    pub(crate) successes: u64,
    /// Failures of the kinds counted.
    pub(crate) failures: u64,
    /// Successes reported with a latency.
    pub(crate) timed: u64,
    /// The sum of their latencies, in nanoseconds.
    pub(crate) latency_ns: u64,
}

/// What [`State::revive`] changed, to undo it.
pub(crate) struct Revival {
    health: Health,
    ejected_until: u64,
    ejections: u32,
    returned_at: u64,
    failures: u32,
    local_failures: u32,
    tripped_at: u64,
    ramp_start: u64,
    soft_weight: u32,
    recent_failures: u64,
    reported_utilisation: u32,
    report_weight: [u64; 3],
    reported_load: u64,
    restart: bool,
}

/// One backend's counters. Fields written only by the writer (under its lock) are marked so.
///
/// Aligned to 64-byte lines of its own: two threads picking different backends never share
/// a line. Laid out in order (`repr(C)`) so that what a pick or a report touches (the
/// in-flight count and cap, the failure run, recent failures, the latency score, the feedback
/// pointer, the success count) sits on the first line, and what failures, the writer's rules
/// and sweeps read on the lines after, and what load reports write on the last. Five lines in
/// all (320 bytes), of which picks touch the
/// first: the working set of a pick over 1000 backends is 64 KB, however many lines follow.
/// (Aligning to 128 would keep adjacent-line prefetch apart too, at twice the lines a pick
/// pulls in.)
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct State {
    // The first line: what every pick and report touches.
    /// Picks held now (low 32 bits) and picks ever taken, modulo 2^32 (high 32 bits; the
    /// carries out of them are counted in `pick_wraps`): one RMW counts both.
    in_flight: AtomicU64,
    /// The backend's hard cap on picks held at once, 0 for none. Written by the writer
    /// (under its lock) after a snapshot with the new value is built and before it is
    /// published; read by every acquire on the same cache line as `in_flight`.
    max_in_flight: AtomicU32,
    consecutive_failures: AtomicU32,
    /// Local-origin failures in a row, while they are counted apart.
    local_failures: AtomicU32,
    health: AtomicU8,
    /// Recent failures as load, when failures weigh on load: the clock in milliseconds at the
    /// last failure (high 40 bits) and the faded weight then, in [`FAILURE_UNIT`]s of one
    /// request in flight (low 24 bits). See [`State::failure_load`].
    recent_failures: AtomicU64,
    /// Peak EWMA as a log score: ln(cost in ns) + stamp / decay (see `PeakEwma`).
    score: AtomicU64,
    /// Clock nanoseconds of the last latency observation.
    stamp: AtomicU64,
    feedback: Arc<Feedback>,
    /// Picks that reported success, since the state was made (a counter for operators).
    succeeded: AtomicU64,
    // The second: what the statistical rules and soft health count, and the writer's rules.
    /// Failures of kinds the ejection rules do not count, which they see as successes, and
    /// failures of the kinds they count, reported since the state was made, counted while the
    /// statistical ejection rules or soft health are on. The rules' successes are these plus
    /// `succeeded` (so a success report adds to one counter only).
    other_successes: AtomicU64,
    failures: AtomicU64,
    /// The sum of the latencies of successes reported since the state was made, in
    /// nanoseconds (each at most 2^50), counted while soft health is on; wrapping, so an
    /// interval's difference is exact.
    latencies: AtomicU64,
    /// How many successes `latencies` sums.
    timed: AtomicU64,
    /// Writer only: the end of the current ejection in clock nanoseconds, 0 if not ejected.
    ejected_until: AtomicU64,
    /// One more than the clock nanoseconds of the report that crossed the failure threshold (0
    /// if none since the run was cleared): an ejection runs from then, not from the rebuild
    /// that applies it.
    tripped_at: AtomicU64,
    /// Writer only: when the last ejection ended.
    returned_at: AtomicU64,
    /// Writer only: the ejection multiplier (how many times ejected, decayed).
    ejections: AtomicU32,
    /// Writer only: the soft-health multiplier on the effective weight, in 2^-16 units
    /// ([`FULL_SOFT_WEIGHT`] when healthy).
    soft_weight: AtomicU32,
    // The third: counters of rarer events, and what only the writer reads.
    /// Picks that reported a failure, by kind ([`Failure::index`]), since the state was made.
    failed: [AtomicU64; 3],
    /// Picks whose key's first choice this backend was, and that went on because it was
    /// above its bounded-loads capacity.
    spills: AtomicU64,
    /// Writer only: when the slow-start ramp began, or [`FULL_WEIGHT`].
    ramp_start: AtomicU64,
    /// How many times the pick count in `in_flight`'s high bits wrapped past 2^32.
    pick_wraps: AtomicU32,
    /// Writer only: why the last ejection happened ([`Ejection::to_u8`]; 0 if never).
    ejected_by: AtomicU8,
    /// Writer only: `successes` and `failures` at the last sweep of those rules.
    swept: (AtomicU64, AtomicU64),
    // The fourth: what only the soft-health sweep reads.
    /// Writer only: `successes`, `failures`, `latencies` and `timed` at the last soft-health
    /// sweep.
    soft_seen: [AtomicU64; 4],
    // The fifth: what load reports write.
    reports: Reports,
}

/// What the backend's load reports said, on a line of its own: reports write it, rebuilds and
/// locality sweeps read it.
#[derive(Debug, Default)]
#[repr(C, align(64))]
struct Reports {
    /// The utilisation of the latest report, in parts per million ([`NO_REPORT`] if none;
    /// see [`State::new`]), and the clock nanoseconds it came at.
    utilisation: AtomicU32,
    at: AtomicU64,
    /// Client-side weighted round robin's weight (gRFC A58; see [`BackendWeight`]), as
    /// [`BackendWeight::to_bits`] packs it: the weight, and when the run of reports began and
    /// when the last came.
    weight: [AtomicU64; 3],
    /// The latest reported load ([`LoadReport::load`]), in [`LOAD_UNIT`](crate::report::LOAD_UNIT)s; 0 if none.
    load: AtomicU64,
    /// Set by the writer when the backend is ready again: the next report starts a new run
    /// (see [`State::report_weight_ready`]).
    restart: AtomicBool,
}

/// Picks of one backend between two nudges (see [`State::counted`]); a power of two.
const NUDGE_EVERY: u64 = 1024;

/// The most work held on one backend that a pick costing more than 1 may take it to: 2^31,
/// half the low word's range, so that picks of cost 1 (which add without a check) would need
/// 2^31 more held at once to carry into the pick count.
pub(crate) const COSTED_LIMIT: u64 = 1 << 31;

/// One in the pick count of [`State::in_flight`]'s high bits.
const PICK_ONE: u64 = 1 << 32;
/// The bits of [`State::in_flight`] that count the picks held.
const HELD_MASK: u64 = PICK_ONE - 1;

/// A backend's counters since its state was made (see [`State::counters`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Picks held, from the same reading of the word as `picks`: a pick taken during the
    /// reading is in both or in neither.
    pub(crate) held: usize,
    pub(crate) picks: u64,
    pub(crate) successes: u64,
    /// By kind ([`Failure::index`]).
    pub(crate) failures: [u64; 3],
    pub(crate) spills: u64,
}

/// One request in flight in the units of [`State::failure_load`] (a failure weighs one).
pub(crate) const FAILURE_UNIT: u64 = 1 << 10;

/// Bits of [`State::recent_failures`] that hold the weight (the rest hold the time).
const LOAD_BITS: u32 = 24;
const LOAD_MASK: u64 = (1 << LOAD_BITS) - 1;
/// The time kept beside the weight, in milliseconds, wraps after 2^40 ms (34 years).
const STAMP_MASK: u64 = (1 << (64 - LOAD_BITS)) - 1;

impl State {
    /// A fresh state at `now_ns`, ramping up from there if `ramp`.
    pub(crate) fn new(feedback: &Arc<Feedback>, now_ns: u64, ramp: bool) -> Self {
        let score = feedback
            .latency
            .map_or(0.0, |l| l.default_ns.ln() + now_ns as f64 / l.decay_ns);
        State {
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU32::new(0),
            health: AtomicU8::new(Health::Up.to_u8()),
            consecutive_failures: AtomicU32::new(0),
            local_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            tripped_at: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            ejected_by: AtomicU8::new(0),
            returned_at: AtomicU64::new(0),
            ramp_start: AtomicU64::new(if ramp { now_ns } else { FULL_WEIGHT }),
            score: AtomicU64::new(score.to_bits()),
            stamp: AtomicU64::new(now_ns),
            succeeded: AtomicU64::new(0),
            failed: Default::default(),
            spills: AtomicU64::new(0),
            pick_wraps: AtomicU32::new(0),
            other_successes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            swept: (AtomicU64::new(0), AtomicU64::new(0)),
            latencies: AtomicU64::new(0),
            timed: AtomicU64::new(0),
            soft_seen: Default::default(),
            reports: Reports {
                utilisation: AtomicU32::new(NO_REPORT),
                ..Reports::default()
            },
            soft_weight: AtomicU32::new(FULL_SOFT_WEIGHT),
            recent_failures: AtomicU64::new(0),
            feedback: Arc::clone(feedback),
        }
    }

    /// Keeps a load report's utilisation (parts per million) and when it came.
    fn set_reported_utilisation(&self, ppm: u32, now: u64) {
        // Relaxed: the writer's sweep reads the pair whenever it runs; a report landing
        // between its two reads is seen with a neighbouring time, which only shifts its
        // expiry by one report.
        self.reports.at.store(now, Ordering::Relaxed);
        self.reports
            .utilisation
            .store(ppm.min(NO_REPORT - 1), Ordering::Relaxed);
    }

    /// Forgets the latest load report and the weight reports gave (a new clock: their times
    /// were read on the old one).
    pub(crate) fn forget_report(&self) {
        // Relaxed: see `set_reported_utilisation`.
        self.reports.utilisation.store(NO_REPORT, Ordering::Relaxed);
        self.store_report_weight(BackendWeight::new());
        // Relaxed: writer only (no report of the old clock is pending a restart any more).
        self.reports.restart.store(false, Ordering::Relaxed);
        // The reported load carries no time: it stands.
    }

    /// Takes a load report (checked) that came at `now`: its utilisation, its load, and the
    /// weight it gives when the policy weighs backends by reports.
    pub(crate) fn take_report(&self, report: &LoadReport, now: u64) {
        if let Some(ppm) = report.utilization_ppm() {
            self.set_reported_utilisation(ppm, now);
        }
        if let Some(load) = report.load_units() {
            // Relaxed: a figure picks read as advice; one pick may see the last one.
            self.reports.load.store(load, Ordering::Relaxed);
        }
        if let Some(config) = &self.feedback.report_weights {
            let (qps, eps, utilization) = report.weight_inputs();
            let mut weight = self.report_weight();
            // A restart the writer asked for is taken by the report that clears the flag (a
            // report racing with the request leaves it set for the next one): never lost.
            // Relaxed load first, so that reports do not write the line for nothing; the
            // swap's Acquire pairs with the writer's Release (nothing else rides on it).
            let restart = self.reports.restart.load(Ordering::Relaxed)
                && self.reports.restart.swap(false, Ordering::Acquire);
            if restart {
                weight.on_ready();
            }
            if weight.on_report(qps, eps, utilization, now, config) || restart {
                self.store_report_weight(weight);
            }
        }
    }

    /// The latest reported load in [`LOAD_UNIT`](crate::report::LOAD_UNIT)s (0 if none).
    #[inline]
    pub(crate) fn reported_load(&self) -> u64 {
        // Relaxed: see `take_report`.
        self.reports.load.load(Ordering::Relaxed)
    }

    /// The weight reports give at `now` (0: unknown; see [`BackendWeight::weight`]); while a
    /// restart is pending ([`report_weight_ready`](State::report_weight_ready)), the weight
    /// of a run that has not begun.
    pub(crate) fn reported_weight(&self, now: u64, config: &WeightConfig) -> f64 {
        let mut weight = self.report_weight();
        // Relaxed: the writer reads its own store, or a report's clear (after which the
        // fields hold the new run).
        if self.reports.restart.load(Ordering::Relaxed) {
            weight.on_ready();
        }
        weight.weight(now, config)
    }

    /// Writer only: the backend became ready again (it came back up, or its ejection ended):
    /// the blackout of its reports starts over with the next report (A58's
    /// `OnSubchannelBecomesReady`), and until then its weight is that of a run not begun.
    /// Returns whether a restart was pending already, for [`State::undo_ready`].
    pub(crate) fn report_weight_ready(&self) -> bool {
        // Release: pairs with the Acquire of the report that takes the restart.
        self.feedback.report_weights.is_some() && self.reports.restart.swap(true, Ordering::Release)
    }

    /// Writer only: undoes [`report_weight_ready`](State::report_weight_ready), given what
    /// it returned (a failed update).
    pub(crate) fn undo_ready(&self, was_pending: bool) {
        if self.feedback.report_weights.is_some() {
            // Relaxed: see `reported_weight`.
            self.reports.restart.store(was_pending, Ordering::Relaxed);
        }
    }

    fn report_weight(&self) -> BackendWeight {
        // `last_updated` first, with Acquire: it pairs with the Release of the report that
        // stored it, so the run's start read after it is that report's or a later one's (a
        // report after an expiry starts a new run: never an old start with a fresh update).
        // Relaxed for the rest: two reports racing may interleave their weights, each a
        // value one of them wrote, as an EWMA's lost update (grpc-go takes a lock per
        // backend here; a report here stays lock-free).
        let [weight, since, updated] = &self.reports.weight;
        let updated = updated.load(Ordering::Acquire);
        let since = since.load(Ordering::Relaxed);
        let weight = weight.load(Ordering::Relaxed);
        BackendWeight::from_bits([weight, since, updated])
    }

    fn store_report_weight(&self, weight: BackendWeight) {
        // `last_updated` last, with Release: see `report_weight`.
        let [w, since, updated] = weight.to_bits();
        self.reports.weight[0].store(w, Ordering::Relaxed);
        self.reports.weight[1].store(since, Ordering::Relaxed);
        self.reports.weight[2].store(updated, Ordering::Release);
    }

    /// The latest reported utilisation (parts per million) and when it came, if any.
    pub(crate) fn reported_utilisation(&self) -> Option<(u32, u64)> {
        // Relaxed: see `set_reported_utilisation`.
        let ppm = self.reports.utilisation.load(Ordering::Relaxed);
        (ppm != NO_REPORT).then(|| (ppm, self.reports.at.load(Ordering::Relaxed)))
    }

    /// Counts one more pick held (and taken), holding `cost` units of work, unless they do not
    /// fit under the backend's cap: then `false`, and nothing changed. A pick of cost 1 without
    /// a cap is one plain `fetch_add`; with a cap or a larger cost, a compare-exchange loop
    /// that never takes the work held above the cap (or above [`COSTED_LIMIT`]), however many
    /// threads acquire at once.
    #[inline]
    pub(crate) fn try_acquire(&self, cost: u32) -> bool {
        // Relaxed: the cap is published to picks by the snapshot swap that follows its store
        // (Release / Acquire inside ArcSwap); a pick still reading the previous snapshot may
        // see either value, as a pick that started before the update may.
        let cap = self.max_in_flight.load(Ordering::Relaxed);
        if cap == 0 && cost == 1 {
            // Relaxed: the count is a statistic read by later picks; no other memory is
            // published through it, and the atomic RMW alone makes every increment count
            // exactly once. The same RMW counts the pick taken, in the high bits.
            let before = self.in_flight.fetch_add(PICK_ONE + 1, Ordering::Relaxed);
            self.counted(before);
            return true;
        }
        let limit = if cap == 0 {
            COSTED_LIMIT
        } else {
            u64::from(cap).min(COSTED_LIMIT)
        };
        self.acquire_within(limit, u64::from(cost))
    }

    /// The checked acquire: adds `cost` only if the work held stays within `limit`.
    #[inline(never)]
    fn acquire_within(&self, limit: u64, cost: u64) -> bool {
        // Relaxed load and compare-exchange: every change of the count is an RMW of this one
        // atomic, so they are totally ordered (its modification order) and each exchange
        // succeeds only from the value it read: no two acquires can both take the last slot.
        // Nothing else is published through the count.
        let mut current = self.in_flight.load(Ordering::Relaxed);
        loop {
            if (current & HELD_MASK) + cost > limit {
                return false;
            }
            match self.in_flight.compare_exchange_weak(
                current,
                current.wrapping_add(PICK_ONE + cost),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(before) => {
                    self.counted(before);
                    return true;
                }
                Err(now) => current = now,
            }
        }
    }

    /// After an acquire that read `before`: once every [`NUDGE_EVERY`] picks of the backend,
    /// the rare work the pick count drives (a test on a value already in a register otherwise).
    #[inline]
    fn counted(&self, before: u64) {
        if (before >> 32) & (NUDGE_EVERY - 1) == NUDGE_EVERY - 1 {
            self.every_nudge(before);
        }
    }

    /// The carry out of the pick count, if this acquire wrapped it (once every 2^32 picks of
    /// the backend); and the nudge that makes the next pick check whether metrics are due.
    #[cold]
    #[inline(never)]
    fn every_nudge(&self, before: u64) {
        if before >> 32 == u64::from(u32::MAX) {
            // Relaxed: a count; see `counters` for a read racing with it.
            self.pick_wraps.fetch_add(1, Ordering::Relaxed);
        }
        #[cfg(feature = "metrics")]
        self.feedback.nudge_export();
    }

    /// Whether an acquire of `cost` would succeed now (no cap, or room under it): a hint
    /// for choosing, which [`try_acquire`](State::try_acquire) confirms.
    #[inline]
    pub(crate) fn has_room(&self, cost: u32) -> bool {
        // Relaxed: see `try_acquire`; the answer is advisory.
        let cap = self.max_in_flight.load(Ordering::Relaxed);
        cap == 0 || self.in_flight() as u64 + u64::from(cost) <= u64::from(cap)
    }

    /// The cap on picks held at once, 0 for none.
    pub(crate) fn max_in_flight(&self) -> u32 {
        // Relaxed: see `try_acquire`.
        self.max_in_flight.load(Ordering::Relaxed)
    }

    /// Writer only: sets the cap (0 for none), before the snapshot that carries it is
    /// published.
    pub(crate) fn set_max_in_flight(&self, cap: u32) {
        // Relaxed: published by the snapshot swap that follows (see `try_acquire`).
        self.max_in_flight.store(cap, Ordering::Relaxed);
    }

    /// Counts one more pick held, ignoring any cap (unit tests that set counts directly).
    #[cfg(test)]
    pub(crate) fn acquire(&self) {
        let before = self.in_flight.fetch_add(PICK_ONE + 1, Ordering::Relaxed);
        self.counted(before);
    }

    /// Gives back the `cost` a pick acquired.
    #[inline]
    pub(crate) fn release(&self, cost: u32) {
        // Relaxed: as in `acquire`; each release pairs with exactly one acquire of the same
        // counter and cost (the pick holds the state alive and its cost), so the count in the
        // low bits never goes below zero and never borrows from the pick count.
        self.in_flight.fetch_sub(u64::from(cost), Ordering::Relaxed);
    }

    /// Gives back a pick that was never used (the tower `Balance` took it to look at a
    /// backend whose service was not ready): the `cost` it holds and its count among the picks
    /// taken, in one RMW, so no reading sees it taken and not held (dropped). A borrow out of
    /// the pick count (it wrapped past 2^32 since this pick was counted) is taken from
    /// `pick_wraps`; a read racing with it may see the count 2^32 too high for the
    /// nanoseconds until then, as [`counters`](State::counters) says of the carry.
    #[cfg(feature = "tower")]
    pub(crate) fn give_back(&self, cost: u32) {
        // Relaxed: as in `release`; the pick being given back holds `cost` in the low bits
        // (so they never borrow) and one in the pick count (carried into `pick_wraps` if it
        // wrapped since).
        let before = self
            .in_flight
            .fetch_sub(PICK_ONE + u64::from(cost), Ordering::Relaxed);
        if before >> 32 == 0 {
            // Relaxed: a count; see `counters`.
            self.pick_wraps.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Work held now: the costs of the picks held (their number when every request costs
    /// 1). Below 2^32 per backend: picks that cost more than 1 keep it within
    /// [`COSTED_LIMIT`] (2^31), and it takes 2^31 more picks of cost 1 (each holds memory: a
    /// `Pick` is 24 bytes, 48 GiB for 2^31 of them) to pass 2^32.
    #[inline]
    pub(crate) fn in_flight(&self) -> usize {
        // Relaxed: a load-balancing decision needs a recent value, not a synchronised one.
        (self.in_flight.load(Ordering::Relaxed) & HELD_MASK) as usize
    }

    /// The counters since the state was made: picks held and taken, successes and failures
    /// reported, spills. The first two are one reading; the reports are read after it, so a
    /// pick ending during the read may count as held and reported at once (never as taken and
    /// neither held nor reported): picks less held less reported is never too high. A read racing
    /// with the acquire that carries the 2^32nd pick of a backend out of the low word may
    /// miss that carry (2^32 too few) for the nanoseconds until it is counted.
    pub(crate) fn counters(&self) -> Counters {
        // Relaxed: counts, as above. The wraps before the word: a carry counted between the
        // two reads then belongs to a word read after its wrap (exact); read the other way, a
        // word from before the wrap could meet the carry's count (2^32 too many).
        let wraps = self.pick_wraps.load(Ordering::Relaxed);
        let word = self.in_flight.load(Ordering::Relaxed);
        Counters {
            held: (word & HELD_MASK) as usize,
            picks: u64::from(wraps) << 32 | word >> 32,
            successes: self.succeeded.load(Ordering::Relaxed),
            failures: [
                self.failed[0].load(Ordering::Relaxed),
                self.failed[1].load(Ordering::Relaxed),
                self.failed[2].load(Ordering::Relaxed),
            ],
            spills: self.spills.load(Ordering::Relaxed),
        }
    }

    /// A pick whose first choice this backend was went on because it was above its
    /// bounded-loads capacity.
    #[inline]
    pub(crate) fn count_spill(&self) {
        // Relaxed: a count.
        self.spills.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn health(&self) -> Health {
        // Relaxed: health is only written under the writer lock, and the snapshot swap
        // (release/acquire inside ArcSwap) orders it for picks; status reads are advisory.
        Health::from_u8(self.health.load(Ordering::Relaxed))
    }

    pub(crate) fn set_health(&self, health: Health) {
        // Relaxed: see `health`.
        self.health.store(health.to_u8(), Ordering::Relaxed);
    }

    /// Writer only (Relaxed loads and stores of the writer-only fields are ordered by the
    /// writer lock and published to picks by the snapshot swap).
    pub(crate) fn ejected_until(&self) -> u64 {
        self.ejected_until.load(Ordering::Relaxed)
    }

    /// Writer only: why the backend was last ejected.
    pub(crate) fn ejected_by(&self) -> Option<Ejection> {
        // Relaxed, as every writer-only field (see `ejected_until`).
        Ejection::from_u8(self.ejected_by.load(Ordering::Relaxed))
    }

    /// Writer only: how many times the backend was ejected (the decayed multiplier).
    pub(crate) fn ejections(&self) -> u32 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// Writer only: when the last ejection ended (0 if never).
    pub(crate) fn returned_at(&self) -> u64 {
        self.returned_at.load(Ordering::Relaxed)
    }

    /// Writer only: when the slow-start ramp began, or [`FULL_WEIGHT`].
    pub(crate) fn ramp_start(&self) -> u64 {
        self.ramp_start.load(Ordering::Relaxed)
    }

    /// Writer only: ejects the backend until `until` (clock nanoseconds, above 0) as its
    /// `times`-th ejection, and forgets its run of failures.
    pub(crate) fn eject(&self, until: u64, times: u32, why: Ejection) {
        // Relaxed, as every writer-only field (see `ejected_until`).
        self.ejected_by.store(why.to_u8(), Ordering::Relaxed);
        self.ejections.store(times, Ordering::Relaxed);
        self.ejected_until.store(until, Ordering::Relaxed);
        self.clear_failures();
    }

    /// Writer only: ends the ejection at `at`, with a fresh run of failures, ramping up from
    /// `at` if `ramp`.
    pub(crate) fn end_ejection(&self, at: u64, ramp: bool) {
        // Relaxed, as every writer-only field (see `ejected_until`).
        self.ejected_until.store(0, Ordering::Relaxed);
        self.returned_at.store(at, Ordering::Relaxed);
        self.clear_failures();
        if ramp {
            self.restart_ramp(at);
        }
        // Ready again: its reports start a new run (whether one was pending is moot here).
        let _ = self.report_weight_ready();
    }

    /// Writer only: forgets every ejection, past and present (outlier detection switched off,
    /// or a new clock).
    pub(crate) fn forget_ejections(&self) {
        // Relaxed, as every writer-only field (see `ejected_until`).
        self.ejected_until.store(0, Ordering::Relaxed);
        self.ejections.store(0, Ordering::Relaxed);
        self.returned_at.store(0, Ordering::Relaxed);
    }

    /// Writer only: the slow-start ramp starts (again) at `at`.
    pub(crate) fn restart_ramp(&self, at: u64) {
        // Relaxed, as every writer-only field (see `ejected_until`).
        self.ramp_start.store(at, Ordering::Relaxed);
    }

    /// Writer only: the backend has its full weight, no ramp.
    pub(crate) fn stop_ramp(&self) {
        self.restart_ramp(FULL_WEIGHT);
    }

    /// Writer only: a removed backend whose picks are still held joins again as a new
    /// backend would: `Up`, not ejected and never ejected before (multiplier 0), with no run
    /// of failures, its full soft-health weight, ramping from `now` if `ramp`. (Only the held picks' in-flight count
    /// carries over.) Returns what [`State::undo_revive`] restores if the update fails.
    pub(crate) fn revive(&self, now: u64, ramp: bool) -> Revival {
        // Relaxed loads and stores, as every writer-only field (see `ejected_until`); the
        // failure fields race only with reports on the old picks, which may land either side.
        let saved = Revival {
            health: self.health(),
            ejected_until: self.ejected_until(),
            ejections: self.ejections(),
            returned_at: self.returned_at(),
            failures: self.consecutive_failures.load(Ordering::Relaxed),
            local_failures: self.local_failures.load(Ordering::Relaxed),
            tripped_at: self.tripped_at.load(Ordering::Relaxed),
            ramp_start: self.ramp_start(),
            soft_weight: self.soft_weight(),
            recent_failures: self.recent_failures.swap(0, Ordering::Relaxed),
            // Relaxed: see `set_reported_utilisation`. A report racing with the revival
            // lands either side, as one on the old picks would.
            reported_utilisation: self.reports.utilisation.swap(NO_REPORT, Ordering::Relaxed),
            // Relaxed: as `reported_utilisation`.
            report_weight: self
                .reports
                .weight
                .each_ref()
                .map(|w| w.swap(0, Ordering::Relaxed)),
            reported_load: self.reports.load.swap(0, Ordering::Relaxed),
            restart: self.reports.restart.swap(false, Ordering::Relaxed),
        };
        self.set_health(Health::Up);
        self.set_soft_weight(FULL_SOFT_WEIGHT);
        self.forget_ejections();
        self.clear_failures();
        self.restart_ramp(if ramp { now } else { FULL_WEIGHT });
        saved
    }

    /// Writer only: undoes [`State::revive`].
    pub(crate) fn undo_revive(&self, saved: Revival) {
        self.set_health(saved.health);
        // Relaxed, as in `revive`.
        self.ejected_until
            .store(saved.ejected_until, Ordering::Relaxed);
        self.ejections.store(saved.ejections, Ordering::Relaxed);
        self.returned_at.store(saved.returned_at, Ordering::Relaxed);
        self.consecutive_failures
            .store(saved.failures, Ordering::Relaxed);
        self.local_failures
            .store(saved.local_failures, Ordering::Relaxed);
        self.tripped_at.store(saved.tripped_at, Ordering::Relaxed);
        self.restart_ramp(saved.ramp_start);
        self.set_soft_weight(saved.soft_weight);
        self.recent_failures
            .store(saved.recent_failures, Ordering::Relaxed);
        self.reports
            .utilisation
            .store(saved.reported_utilisation, Ordering::Relaxed);
        for (field, bits) in self.reports.weight.iter().zip(saved.report_weight) {
            field.store(bits, Ordering::Relaxed);
        }
        self.reports
            .load
            .store(saved.reported_load, Ordering::Relaxed);
        self.reports.restart.store(saved.restart, Ordering::Relaxed);
    }

    /// Writer only: forgets recent failures as load (after the clock changed: their stamp
    /// is on the old clock).
    pub(crate) fn forget_failure_load(&self) {
        // Relaxed: advisory, as in `failure_load`.
        self.recent_failures.store(0, Ordering::Relaxed);
    }

    pub(crate) fn consecutive_failures(&self) -> u32 {
        // Relaxed: the rebuild reads this after `take_dirty`'s Acquire, which makes the count
        // that raised the flag visible.
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    fn clear_failures(&self) {
        // Relaxed: a report racing with this store may be lost, which only delays ejection.
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.local_failures.store(0, Ordering::Relaxed);
        self.tripped_at.store(0, Ordering::Relaxed);
    }

    /// Local-origin failures in a row (while counted apart).
    pub(crate) fn local_failures(&self) -> u32 {
        // Relaxed: as `consecutive_failures`.
        self.local_failures.load(Ordering::Relaxed)
    }

    /// Whether a run of failures has reached a threshold: `consecutive` answered failures, or
    /// the local-origin threshold (if local-origin failures are counted apart).
    pub(crate) fn tripped(&self, consecutive: u32) -> bool {
        let local = self.feedback.local_threshold();
        self.consecutive_failures() >= consecutive || (local != 0 && self.local_failures() >= local)
    }

    /// A request ended in a failure of `kind`: to each rule as it counts that kind.
    pub(crate) fn report_failure_of(&self, kind: Failure) {
        // Relaxed: a count.
        self.failed[kind.index()].fetch_add(1, Ordering::Relaxed);
        self.add_failure_load();
        let local_threshold = self.feedback.local_threshold();
        if local_threshold != 0 {
            if kind == Failure::LocalOrigin {
                self.report_local_failure(local_threshold);
                return;
            }
            // An answer: the connection worked.
            self.end_local_run();
        }
        if self.counts(kind) {
            self.report_failure();
        } else {
            self.report_success_to_rules();
        }
    }

    /// A local-origin failure counted apart: one more in the run; the report that reaches
    /// `threshold` asks for a rebuild, as in `report_failure`.
    fn report_local_failure(&self, threshold: u32) {
        // Relaxed RMW: exact counting, saturating.
        let before = self
            .local_failures
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1))
            .unwrap_or(u32::MAX);
        if before.saturating_add(1) == threshold {
            self.trip();
        }
    }

    /// Ends a run of local-origin failures (an answer came back).
    #[inline]
    fn end_local_run(&self) {
        // Load first: avoid dirtying the line when there is nothing to reset. Relaxed: a
        // racing failure may be lost, which only delays ejection.
        if self.local_failures.load(Ordering::Relaxed) != 0 {
            self.local_failures.store(0, Ordering::Relaxed);
        }
    }

    /// A run crossed its threshold now: the ejection runs from here; ask for a rebuild.
    fn trip(&self) {
        // Relaxed: ordered for the rebuild by the Release below.
        self.tripped_at
            .store(self.feedback.now_ns().saturating_add(1), Ordering::Relaxed);
        // Release: publishes the count to the rebuild (see `take_dirty`).
        self.feedback.dirty.store(true, Ordering::Release);
    }

    /// Forgets when the threshold was crossed, keeping the failure count.
    pub(crate) fn clear_trip(&self) {
        // Relaxed: writer only.
        self.tripped_at.store(0, Ordering::Relaxed);
    }

    /// When the failure threshold was crossed, if it was.
    pub(crate) fn tripped_at(&self) -> Option<u64> {
        // Relaxed: read after `take_dirty`'s Acquire, like the failure count.
        self.tripped_at.load(Ordering::Relaxed).checked_sub(1)
    }

    /// Writer only: the successes and failures reported since the last call (since the
    /// state was made, the first time), for the statistical rules' interval.
    pub(crate) fn take_interval(&self) -> (u64, u64) {
        // Relaxed: a report racing with the sweep lands in this interval or the next, as a
        // report racing with gRPC's bucket swap does; each is counted exactly once.
        let successes = self.rule_successes();
        let failures = self.failures.load(Ordering::Relaxed);
        // Writer only: plain loads and stores, no read-modify-write needed.
        let last_successes = self.swept.0.load(Ordering::Relaxed);
        let last_failures = self.swept.1.load(Ordering::Relaxed);
        self.swept.0.store(successes, Ordering::Relaxed);
        self.swept.1.store(failures, Ordering::Relaxed);
        (
            successes.wrapping_sub(last_successes),
            failures.wrapping_sub(last_failures),
        )
    }

    /// Writer only: the successes, failures, and latencies of successes (count, sum in
    /// microseconds) reported since the last call, for soft health's interval.
    pub(crate) fn take_soft_interval(&self) -> SoftCounts {
        // Relaxed: as in `take_interval`.
        let now = [
            self.rule_successes(),
            self.failures.load(Ordering::Relaxed),
            self.latencies.load(Ordering::Relaxed),
            self.timed.load(Ordering::Relaxed),
        ];
        let mut diff = [0u64; 4];
        for ((seen, now), diff) in self.soft_seen.iter().zip(now).zip(&mut diff) {
            // Writer only: plain loads and stores.
            *diff = now.wrapping_sub(seen.load(Ordering::Relaxed));
            seen.store(now, Ordering::Relaxed);
        }
        SoftCounts {
            successes: diff[0],
            failures: diff[1],
            timed: diff[3],
            latency_ns: diff[2],
        }
    }

    /// Writer only: the soft-health multiplier, in 2^-16 units of the weight.
    pub(crate) fn soft_weight(&self) -> u32 {
        // Relaxed, as every writer-only field (see `ejected_until`).
        self.soft_weight.load(Ordering::Relaxed)
    }

    /// Writer only: sets the soft-health multiplier (published by the snapshot that follows).
    pub(crate) fn set_soft_weight(&self, weight: u32) {
        // Relaxed, as every writer-only field (see `ejected_until`).
        self.soft_weight.store(weight, Ordering::Relaxed);
    }

    /// Writer only: lowers the ejection multiplier by `by` (intervals spent not ejected).
    pub(crate) fn decay_ejections(&self, by: u32) {
        let times = self.ejections();
        if times > 0 {
            // Relaxed, as every writer-only field (see `ejected_until`).
            self.ejections
                .store(times.saturating_sub(by), Ordering::Relaxed);
        }
    }

    /// Successes as the statistical rules see them, since the state was made (wrapping):
    /// successes reported and failures of kinds they do not count.
    fn rule_successes(&self) -> u64 {
        // Relaxed: counts, read by the sweeps (see `take_interval`).
        self.succeeded
            .load(Ordering::Relaxed)
            .wrapping_add(self.other_successes.load(Ordering::Relaxed))
    }

    /// A request on this backend succeeded after `latency`.
    pub(crate) fn report_success(&self, latency: Duration) {
        // Relaxed: a count (the operators' and the statistical rules' both).
        self.succeeded.fetch_add(1, Ordering::Relaxed);
        self.end_failure_run();
        if self.feedback.counting() & COUNT_LATENCY != 0 {
            // Nanoseconds, so that a median under a microsecond is not 0; at most 2^50 ns (13
            // days) each, so 2^14 of them fit before a sum wraps within one interval.
            let ns = u64::try_from(latency.as_nanos())
                .unwrap_or(u64::MAX)
                .min(1 << 50);
            // Relaxed: counts, read by the sweep (see `take_soft_interval`), wrapping by design.
            self.latencies.fetch_add(ns, Ordering::Relaxed);
            self.timed.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(tracking) = self.feedback.latency {
            self.observe_latency(latency, tracking);
        }
    }

    /// Whether a failure of this kind counts toward ejection.
    #[inline]
    pub(crate) fn counts(&self, failure: Failure) -> bool {
        self.feedback.counts(failure)
    }

    /// A failure of a kind the ejection rules do not count: a success as they see it (the
    /// run of failures ends, and the statistical rules count one success).
    pub(crate) fn report_success_to_rules(&self) {
        if self.feedback.counting() & COUNT_OUTCOMES != 0 {
            // Relaxed: a count, read by the sweep (see `take_interval`).
            self.other_successes.fetch_add(1, Ordering::Relaxed);
        }
        self.end_failure_run();
    }

    /// Ends the runs of failures (an answer that counts as a success came back).
    #[inline]
    fn end_failure_run(&self) {
        // Load first: avoid dirtying the line when there is nothing to reset.
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            self.tripped_at.store(0, Ordering::Relaxed);
        }
        self.end_local_run();
    }

    /// A request on this backend failed.
    pub(crate) fn report_failure(&self) {
        if self.feedback.counting() & COUNT_OUTCOMES != 0 {
            // Relaxed: as in `report_success`.
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        // Relaxed RMW: exact counting; saturates instead of wrapping after 2^32 failures.
        let before = self
            .consecutive_failures
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1))
            .unwrap_or(u32::MAX);
        // Only the one report that crosses the threshold asks for a rebuild (and reads the
        // clock): the rebuild it triggers applies the rules to the whole run. Later failures
        // of the same run change nothing a rebuild would act on (an ejection the cap defers
        // starts at the rebuild that frees room, which the ending ejection schedules), so a
        // failure storm past the cap, or on a removed backend, costs no rebuild per pick.
        if before.saturating_add(1) == self.feedback.failure_threshold() {
            self.trip();
        }
    }

    /// The clock in milliseconds (for [`State::failure_load`]).
    #[inline]
    pub(crate) fn now_ms(&self) -> u64 {
        self.feedback.now_ns() / 1_000_000
    }

    /// Recent failures as load, in [`FAILURE_UNIT`]s of one request in flight, at the clock
    /// time `now_ms()` gives (asked only if there are any): each failure weighs one request,
    /// fading as exp(-age / time constant), so that in all it weighs as one request held for
    /// the time constant. 0 when failures do not weigh on load.
    #[inline]
    pub(crate) fn failure_load(&self, now_ms: impl FnOnce() -> u64) -> u64 {
        // Relaxed: advisory, like the in-flight count it is added to.
        let packed = self.recent_failures.load(Ordering::Relaxed);
        if packed & LOAD_MASK == 0 {
            // The common case, decided on this line alone.
            return 0;
        }
        match self.feedback.failure_load_ms {
            Some(tau) => faded(packed, now_ms() & STAMP_MASK, tau),
            None => 0,
        }
    }

    /// A failure (of any kind) on this backend: one more request's weight of recent failures,
    /// if failures weigh on load. Reads the clock only then.
    pub(crate) fn add_failure_load(&self) {
        let Some(tau) = self.feedback.failure_load_ms else {
            return;
        };
        let now = self.now_ms() & STAMP_MASK;
        // Relaxed RMW: exact (no failure is lost to a racing one); nothing else is published
        // through the value.
        let _ = self
            .recent_failures
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |packed| {
                let weight = (faded(packed, now, tau) + FAILURE_UNIT).min(LOAD_MASK);
                Some(((packed >> LOAD_BITS).max(now) << LOAD_BITS) | weight)
            });
    }

    /// Writer only: restarts the latency estimate at the default (after the clock changed).
    pub(crate) fn reset_latency(&self, now_ns: u64) {
        let score = self
            .feedback
            .latency
            .map_or(0.0, |l| l.default_ns.ln() + now_ns as f64 / l.decay_ns);
        // Relaxed: advisory, as in `observe_latency`.
        self.score.store(score.to_bits(), Ordering::Relaxed);
        self.stamp.store(now_ns, Ordering::Relaxed);
    }

    /// Peak EWMA: the cost decays toward zero as exp(-elapsed / decay) between observations;
    /// an observation above the decayed cost replaces it at once (the peak), one below moves
    /// it toward the observation by 1 - exp(-elapsed since the last observation / decay).
    /// Stored as a log score so picks compare costs without reading the clock.
    fn observe_latency(&self, latency: Duration, tracking: LatencyTracking) {
        self.observe_latency_at(latency, self.feedback.now_ns(), tracking);
    }

    /// The clock now, for a pick that will report its elapsed time (see `observe_elapsed`).
    #[inline]
    pub(crate) fn now_ns(&self) -> u64 {
        self.feedback.now_ns()
    }

    /// A pick taken at `started` ended without a latency report (dropped: a timeout, a
    /// cancelled request; or failed): the time it was held is a latency observation, so a
    /// backend that hangs or fails slowly never looks faster than the time it already took
    /// (tower's `PeakEwma` records the same on drop).
    pub(crate) fn observe_elapsed(&self, started: u64) {
        if let Some(tracking) = self.feedback.latency {
            let now = self.feedback.now_ns();
            let held = Duration::from_nanos(now.saturating_sub(started));
            self.observe_latency_at(held, now, tracking);
        }
    }

    /// A pick taken at `started` failed: the time it was held is a latency observation, or
    /// the failure penalty if that is more (Linkerd's), so that a backend that fails fast
    /// stops looking cheap.
    pub(crate) fn observe_failure(&self, started: u64, floor: Option<Duration>) {
        if let Some(tracking) = self.feedback.latency {
            let now = self.feedback.now_ns();
            let held = now.saturating_sub(started) as f64;
            let floor = floor.map_or(0.0, |d| d.as_nanos() as f64);
            let latency = held.max(tracking.failure_penalty_ns).max(floor);
            self.observe_latency_at(Duration::from_nanos(latency as u64), now, tracking);
        }
    }

    fn observe_latency_at(&self, latency: Duration, now: u64, tracking: LatencyTracking) {
        let rtt = (latency.as_nanos() as f64).max(1.0);
        // Relaxed: the estimate is advisory; two reports racing may lose one observation,
        // which an EWMA tolerates (tower's and Finagle's lock instead, on every report).
        let score = f64::from_bits(self.score.load(Ordering::Relaxed));
        let stamp = self.stamp.load(Ordering::Relaxed).min(now);
        let decayed = (score - now as f64 / tracking.decay_ns).exp();
        let cost = if rtt >= decayed {
            rtt
        } else {
            let w = (-((now - stamp) as f64) / tracking.decay_ns).exp();
            decayed * w + rtt * (1.0 - w)
        };
        let score = cost.ln() + now as f64 / tracking.decay_ns;
        self.score.store(score.to_bits(), Ordering::Relaxed);
        self.stamp.store(now, Ordering::Relaxed);
    }

    /// The peak-EWMA latency estimate at clock time `now` (decayed since the last
    /// observation), if the policy keeps one.
    pub(crate) fn latency_estimate(&self, now: u64) -> Option<Duration> {
        let tracking = self.feedback.latency?;
        let cost = (self.latency_score() - now as f64 / tracking.decay_ns).exp();
        // Saturates: a cost beyond u64 nanoseconds (584 years) reads as that.
        Some(Duration::from_nanos(cost as u64))
    }

    /// The peak-EWMA log score (see `observe_latency`).
    #[inline]
    pub(crate) fn latency_score(&self) -> f64 {
        // Relaxed: advisory, as in `observe_latency`.
        f64::from_bits(self.score.load(Ordering::Relaxed))
    }
}

/// The weight of `packed` (see [`State::recent_failures`]) faded to `now_ms`, with time
/// constant `tau_ms`.
#[inline]
fn faded(packed: u64, now_ms: u64, tau_ms: f64) -> u64 {
    let weight = packed & LOAD_MASK;
    let age = now_ms.saturating_sub(packed >> LOAD_BITS);
    if weight == 0 || age == 0 {
        return weight;
    }
    // Truncates: a weight below one unit is gone.
    (weight as f64 * (-(age as f64) / tau_ms).exp()) as u64
}

#[cfg(test)]
impl Default for State {
    /// A state of its own, for unit tests of the machinery that reads states.
    fn default() -> Self {
        let feedback = Arc::new(Feedback::new(
            Arc::new(crate::clock::ManualClock::new()),
            None,
            None,
            None,
            None,
        ));
        State::new(&feedback, 0, false)
    }
}

#[cfg(all(test, not(lbkit_loom)))]
mod layout {
    use super::State;
    use std::mem::{offset_of, size_of};

    #[test]
    fn what_picks_and_reports_touch_shares_the_first_line() {
        for end in [
            offset_of!(State, in_flight) + 8,
            offset_of!(State, max_in_flight) + 4,
            offset_of!(State, consecutive_failures) + 4,
            offset_of!(State, local_failures) + 4,
            offset_of!(State, recent_failures) + 8,
            offset_of!(State, score) + 8,
            offset_of!(State, stamp) + 8,
            offset_of!(State, feedback) + 8,
            offset_of!(State, succeeded) + 8,
            offset_of!(State, health) + 1,
        ] {
            assert!(end <= 64, "{end}");
        }
        // What the statistical rules count on the second line, not the third.
        for end in [
            offset_of!(State, other_successes) + 8,
            offset_of!(State, failures) + 8,
            offset_of!(State, latencies) + 8,
            offset_of!(State, timed) + 8,
        ] {
            assert!(end <= 128, "{end}");
        }
        // What load reports write, on the fifth line.
        assert_eq!(offset_of!(State, reports), 256);
        assert_eq!(size_of::<State>(), 320);
    }
}

#[cfg(all(test, feature = "tower"))]
mod give_back {
    use super::{State, PICK_ONE};
    use std::sync::atomic::Ordering;

    #[test]
    fn a_pick_given_back_leaves_only_its_slot_for_that_instant() {
        let state = State::default();
        assert!(state.try_acquire(1));
        assert!(state.try_acquire(3));
        state.give_back(3);
        let counters = state.counters();
        assert_eq!((counters.held, counters.picks), (1, 1));
        // One pick short of 2^32, then the pick that carries the count out of the word and
        // its give-back, which borrows the carry back.
        state
            .in_flight
            .store(u64::from(u32::MAX - 1) * PICK_ONE + 1, Ordering::Relaxed);
        assert!(state.try_acquire(1));
        assert!(state.try_acquire(1));
        assert_eq!(state.counters().picks, 1 << 32);
        assert_eq!(state.pick_wraps.load(Ordering::Relaxed), 1);
        state.give_back(1);
        let counters = state.counters();
        assert_eq!((counters.held, counters.picks), (2, (1 << 32) - 1));
        assert_eq!(state.pick_wraps.load(Ordering::Relaxed), 0);
    }
}
