//! The `metrics` feature: a balancer's counters, gauges and events through the
//! [`metrics`](https://docs.rs/metrics) facade (see [`Builder::metrics`](crate::Builder::metrics)
//! and the table in the [module docs](crate::observe#metrics)).
//!
//! Counters and gauges are read from the balancer's own atomics (the ones
//! [`Status`](crate::Status) shows) and recorded when the balancer is built, at most once per
//! interval by a pick (once every 1024 picks of a backend the acquire that counts the pick
//! raises a flag, and the next pick reads the clock against the interval), and by
//! [`Balancer::export_metrics`](crate::Balancer::export_metrics): never on each pick. So the
//! pick path costs the same with or without a recorder; an export costs one pass over the
//! backends and a few recorder calls per backend. Events (ejections, panic mode, updates) are
//! recorded as they are told to observers, after the writer lock.

use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

use ahash::AHashMap;
use metrics::{counter, gauge, Label, SharedString};

use crate::engine::state::{Counters, State};
use crate::engine::sync::Mutex;
use crate::observe::{Ejection, Event};
use crate::status::Status;

/// One backend as the last export saw it.
struct Seen {
    /// Its state, held: so that what it counts after its last line (a report of a pick that
    /// ends after it left the list) can still be read, and so that its address is never
    /// another state's (a backend removed, drained and added back has a new state, whose
    /// counters start again from 0).
    state: Arc<State>,
    counters: Counters,
    /// Picks released without a report, as that export computed them.
    dropped: u64,
    /// The number of the export that listed it last.
    listed: u64,
    /// Whether its gauges show it listed (false once they were set to 0 for leaving).
    shown: bool,
}

impl Seen {
    /// Records what the state counted since this record of it: the counters' growth, and the
    /// picks dropped (never too high, so a count recorded is never taken back). Makes no
    /// recorder call (and no labels) when nothing grew.
    fn catch_up(&mut self, name: &SharedString, id: &Arc<str>) {
        let now = self.state.counters();
        // A pick count below the one recorded is no growth (see `record_counters`).
        if (Counters {
            picks: now.picks.max(self.counters.picks),
            ..now
        }) == self.counters
        {
            return;
        }
        (self.counters, self.dropped) =
            record_counters(&labels(name, id), &now, (self.counters, self.dropped));
    }
}

/// What the exports recorded so far.
struct Record {
    /// Per backend id, what the last export that listed it recorded.
    backends: AHashMap<Arc<str>, Seen>,
    /// The exports made: each numbers the backends it lists, so that one look at each entry
    /// after the lines finds those it did not list (one pass, not a search of the lines per
    /// entry).
    exports: u64,
}

/// What a balancer records through the facade, and what it recorded last.
pub(crate) struct Exporter {
    /// Nanoseconds between two exports.
    pub(crate) interval_ns: u64,
    /// What the exports recorded.
    seen: Mutex<Record>,
}

impl Exporter {
    pub(crate) fn new(interval_ns: u64) -> Self {
        describe();
        Exporter {
            interval_ns,
            seen: Mutex::new(Record {
                backends: AHashMap::new(),
                exports: 0,
            }),
        }
    }

    /// Whether the record of backend `id` holds `state` (called under the writer lock, as
    /// [`record`](Exporter::record) is).
    pub(crate) fn holds(&self, id: &str, state: &Arc<State>) -> bool {
        self.seen
            .lock()
            .backends
            .get(id)
            .is_some_and(|seen| Arc::ptr_eq(&seen.state, state))
    }

    /// Takes on the state of backend `id`, leaving the set (called by the update that removes
    /// it, under the writer lock), so that what it counted is recorded even if no export ever
    /// listed it (added, picked and removed between two exports): the next export records its
    /// growth from what was recorded of it (from 0 if nothing was), as for any backend it no
    /// longer lists. A record of another state under the same id (removed, added back afresh,
    /// removed again) has its last growth recorded first.
    pub(crate) fn adopt(&self, balancer: &Arc<str>, id: &Arc<str>, state: &Arc<State>) {
        let mut record = self.seen.lock();
        // The last export's number: the next export does not list it, so it catches up.
        let listed = record.exports;
        if let Some(seen) = record.backends.get_mut(id) {
            if Arc::ptr_eq(&seen.state, state) {
                return;
            }
            seen.catch_up(&SharedString::from(Arc::clone(balancer)), id);
        }
        record.backends.insert(
            Arc::clone(id),
            Seen {
                state: Arc::clone(state),
                counters: Counters::default(),
                dropped: 0,
                listed,
                shown: false,
            },
        );
    }

    /// Records the balancer's lines (each with its state): the counters' growth since the last
    /// export, and every gauge. A backend an earlier export listed and this one does not (out
    /// of the subset, or removed and drained) has what it counted since recorded, and its
    /// gauges set to 0 once; it is remembered while its state lives on (so that a backend
    /// back in the subset counts on from what was recorded) and forgotten once this record
    /// holds the last reference to it (nothing can count on it any more).
    ///
    /// Called under the balancer's writer lock: no state nobody else holds can be taken up
    /// again meanwhile (the retired map's are upgraded only under that lock).
    pub(crate) fn record(&self, balancer: &Arc<str>, lines: &[(Status, Arc<State>)], panic: bool) {
        let name = SharedString::from(Arc::clone(balancer));
        let mut record = self.seen.lock();
        record.exports += 1;
        let export = record.exports;
        let seen = &mut record.backends;
        let mut eligible = 0u64;
        let mut shares: Option<(u64, u64)> = None;
        for (line, state) in lines {
            let labels = labels(&name, &line.id);
            let before = match seen.get_mut(&line.id) {
                Some(s) if Arc::ptr_eq(&s.state, state) => (s.counters, s.dropped),
                Some(s) => {
                    // Another state under the same id (removed, then added back afresh): what
                    // the old one counted since its last record, then the new one from 0.
                    s.catch_up(&name, &line.id);
                    (Counters::default(), 0)
                }
                None => (Counters::default(), 0),
            };
            let (counters, dropped_now) = record_counters(&labels, &line.counters, before);
            gauge!("lbkit_in_flight", labels.iter()).set(line.in_flight as f64);
            gauge!("lbkit_effective_weight", labels.iter()).set(line.effective_weight());
            // Whether picks can go to it now: its effective weight (which panic mode gives a
            // backend that is down), not `is_eligible` (the backend by itself).
            let takes_picks = line.effective_weight > 0;
            gauge!("lbkit_eligible", labels.iter()).set(f64::from(u8::from(takes_picks)));
            gauge!("lbkit_ejected", labels.iter()).set(f64::from(u8::from(line.is_ejected())));
            gauge!("lbkit_soft_health", labels.iter()).set(line.soft_health());
            if let Some(latency) = line.latency() {
                gauge!("lbkit_latency_seconds", labels.iter()).set(latency.as_secs_f64());
            }
            if line.is_removed() || line.coverage() == 0.0 {
                // Out of the table while it drains.
                gauge!("lbkit_table_share", labels.iter()).set(0.0);
            }
            if let Some(share) = line.table_share() {
                gauge!("lbkit_table_share", labels.iter()).set(share as f64);
                shares =
                    Some(shares.map_or((share, share), |(lo, hi)| (lo.min(share), hi.max(share))));
            }
            eligible += u64::from(takes_picks);
            seen.insert(
                Arc::clone(&line.id),
                Seen {
                    state: Arc::clone(state),
                    counters,
                    dropped: dropped_now,
                    listed: export,
                    shown: true,
                },
            );
        }
        // Not listed by this export (out of the subset, or removed and drained): what each
        // counted since its last line, its gauges to 0 once; forgotten once its state is gone.
        seen.retain(|id, seen| {
            if seen.listed == export {
                return true;
            }
            // Only this record holds the state: no pick, snapshot or set does, and under the
            // writer lock nothing can take it up again, so its counts are final.
            let gone = Arc::strong_count(&seen.state) == 1;
            if gone {
                // Acquire: pairs with the Release of the last other reference's drop (as
                // `Arc`'s own drop does), so the reports made before it are all read below.
                fence(Ordering::Acquire);
            }
            seen.catch_up(&name, id);
            if seen.shown {
                seen.shown = false;
                let labels = labels(&name, id);
                for gauge in BACKEND_GAUGES {
                    gauge!(gauge, labels.iter()).set(0.0);
                }
            }
            !gone
        });
        drop(record);
        let balancer = [Label::new("balancer", name.clone())];
        let members = lines
            .iter()
            .filter(|(l, _)| !l.is_removed() && l.coverage() > 0.0);
        gauge!("lbkit_backends", balancer.iter()).set(members.count() as f64);
        gauge!("lbkit_eligible_backends", balancer.iter()).set(eligible as f64);
        gauge!("lbkit_panic", balancer.iter()).set(f64::from(u8::from(panic)));
        if let Some((lo, hi)) = shares {
            gauge!("lbkit_table_share_min", balancer.iter()).set(lo as f64);
            gauge!("lbkit_table_share_max", balancer.iter()).set(hi as f64);
        }
    }

    /// Records one event: ejections, returns, panic mode, updates, subset changes.
    pub(crate) fn event(&self, balancer: &Arc<str>, event: &Event) {
        let name = SharedString::from(Arc::clone(balancer));
        let balancer = [Label::new("balancer", name.clone())];
        match event {
            Event::Ejected { id, why, .. } => {
                let mut labels = labels(&name, id);
                labels.push(Label::new("reason", reason(*why)));
                counter!("lbkit_ejections_total", labels.iter()).increment(1);
                gauge!("lbkit_ejected", self::labels(&name, id).iter()).set(1.0);
            }
            Event::Returned { id } => {
                counter!("lbkit_returns_total", labels(&name, id).iter()).increment(1);
                gauge!("lbkit_ejected", labels(&name, id).iter()).set(0.0);
            }
            Event::PanicEntered { .. } => {
                counter!("lbkit_panics_total", balancer.iter()).increment(1);
                gauge!("lbkit_panic", balancer.iter()).set(1.0);
            }
            Event::PanicLeft { .. } => {
                gauge!("lbkit_panic", balancer.iter()).set(0.0);
            }
            Event::Updated { .. } => {
                counter!("lbkit_updates_total", balancer.iter()).increment(1);
            }
            Event::SubsetChanged { .. } => {
                counter!("lbkit_subset_changes_total", balancer.iter()).increment(1);
            }
            Event::SharesChanged { .. } => {
                counter!("lbkit_share_changes_total", balancer.iter()).increment(1);
            }
            Event::SlowStartDone { .. } | Event::SoftWeight { .. } => {}
        }
    }
}

/// Every per-backend gauge: what a backend that is gone has set to 0.
const BACKEND_GAUGES: [&str; 7] = [
    "lbkit_in_flight",
    "lbkit_effective_weight",
    "lbkit_eligible",
    "lbkit_ejected",
    "lbkit_soft_health",
    "lbkit_latency_seconds",
    "lbkit_table_share",
];

/// The failure kinds, in the order of [`Counters::failures`], as the `kind` label says them.
const KINDS: [&str; 3] = ["local_origin", "error", "overloaded"];

/// Records a backend's counters' growth from `before` (its counters and dropped picks as last
/// recorded) to `now`; returns them as recorded now. The picks dropped as of `now` are the
/// picks taken, less those held (the same reading) and those reported (read after): never too
/// high, so a count recorded is never taken back; one too low catches up at the next export.
fn record_counters(labels: &[Label], now: &Counters, before: (Counters, u64)) -> (Counters, u64) {
    let (before, dropped_before) = before;
    let grew = |now: u64, before: u64| now.saturating_sub(before);
    counter!("lbkit_picks_total", labels.iter()).increment(grew(now.picks, before.picks));
    counter!("lbkit_successes_total", labels.iter())
        .increment(grew(now.successes, before.successes));
    for (kind, (now, before)) in KINDS.iter().zip(now.failures.iter().zip(before.failures)) {
        let mut with_kind = labels.to_vec();
        with_kind.push(Label::new("kind", *kind));
        counter!("lbkit_failures_total", with_kind.iter()).increment(grew(*now, before));
    }
    let dropped_now = (now.picks)
        .saturating_sub(now.held as u64)
        .saturating_sub(now.successes)
        .saturating_sub(now.failures.iter().sum());
    counter!("lbkit_dropped_total", labels.iter())
        .increment(dropped_now.saturating_sub(dropped_before));
    counter!("lbkit_spills_total", labels.iter()).increment(grew(now.spills, before.spills));
    // The pick count can go back: a pick the tower `Balance` took to look and gave back
    // unused leaves it. The highest count recorded is kept, so that no pick is recorded twice
    // (one recorded while such a pick was held stands in for the next).
    let recorded = Counters {
        picks: now.picks.max(before.picks),
        ..*now
    };
    (recorded, dropped_now)
}

/// The `balancer` and `backend` labels.
fn labels(balancer: &SharedString, id: &Arc<str>) -> Vec<Label> {
    vec![
        Label::new("balancer", balancer.clone()),
        Label::new("backend", SharedString::from(Arc::clone(id))),
    ]
}

/// The `reason` label of an ejection.
fn reason(why: Ejection) -> &'static str {
    match why {
        Ejection::ConsecutiveFailures => "consecutive_failures",
        Ejection::LocalOriginFailures => "local_origin_failures",
        Ejection::SuccessRate => "success_rate",
        Ejection::FailurePercentage => "failure_percentage",
    }
}

/// Tells the recorder installed now what each metric is (once per exporter; recorders keep
/// the first or the last, and they are all the same).
fn describe() {
    use metrics::{describe_counter, describe_gauge, Unit};
    describe_counter!(
        "lbkit_picks_total",
        Unit::Count,
        "Picks taken on the backend."
    );
    describe_counter!(
        "lbkit_successes_total",
        Unit::Count,
        "Picks that reported success."
    );
    describe_counter!(
        "lbkit_failures_total",
        Unit::Count,
        "Picks that reported a failure, by kind (local_origin, error, overloaded)."
    );
    describe_counter!(
        "lbkit_dropped_total",
        Unit::Count,
        "Picks released without a report (timeouts, cancellations)."
    );
    describe_counter!(
        "lbkit_spills_total",
        Unit::Count,
        "Picks whose key's first choice was the backend and went on because it was above its bounded-loads capacity."
    );
    describe_counter!(
        "lbkit_ejections_total",
        Unit::Count,
        "Outlier ejections of the backend, by reason."
    );
    describe_counter!("lbkit_returns_total", Unit::Count, "Ejections that ended.");
    describe_counter!(
        "lbkit_panics_total",
        Unit::Count,
        "Times the balancer entered panic mode."
    );
    describe_counter!(
        "lbkit_updates_total",
        Unit::Count,
        "Updates of the backend set applied."
    );
    describe_counter!(
        "lbkit_subset_changes_total",
        Unit::Count,
        "Changes of this client's subset."
    );
    describe_counter!(
        "lbkit_share_changes_total",
        Unit::Count,
        "Changes of how traffic splits between priority levels and localities."
    );
    describe_gauge!(
        "lbkit_in_flight",
        Unit::Count,
        "Picks held on the backend now."
    );
    describe_gauge!(
        "lbkit_effective_weight",
        "The weight picks see, in units of the configured weight (0 if it takes no new picks)."
    );
    describe_gauge!(
        "lbkit_eligible",
        "1 if the backend can receive new picks now (its effective weight is above 0, also in panic mode), else 0."
    );
    describe_gauge!(
        "lbkit_ejected",
        "1 while outlier detection has ejected the backend."
    );
    describe_gauge!(
        "lbkit_soft_health",
        "The soft-health multiplier on the weight, in [floor, 1]."
    );
    describe_gauge!(
        "lbkit_latency_seconds",
        Unit::Seconds,
        "The policy's latency estimate (peak EWMA)."
    );
    describe_gauge!(
        "lbkit_table_share",
        Unit::Count,
        "Ring points or Maglev slots the backend owns in the hashing table."
    );
    describe_gauge!(
        "lbkit_table_share_min",
        Unit::Count,
        "The fewest entries any backend owns."
    );
    describe_gauge!(
        "lbkit_table_share_max",
        Unit::Count,
        "The most entries any backend owns."
    );
    describe_gauge!(
        "lbkit_backends",
        Unit::Count,
        "Backends in the set (or the subset)."
    );
    describe_gauge!(
        "lbkit_eligible_backends",
        Unit::Count,
        "Backends that can receive new picks now (effective weight above 0)."
    );
    describe_gauge!(
        "lbkit_panic",
        "1 while the panic threshold has every backend eligible."
    );
}
