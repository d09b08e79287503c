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

use std::sync::Arc;

use ahash::AHashMap;
use metrics::{counter, gauge, Label, SharedString};

use crate::engine::state::Counters;
use crate::engine::sync::Mutex;
use crate::observe::{Ejection, Event};
use crate::status::Status;

/// One backend as the last export saw it.
struct Seen {
    /// The state's address: a backend removed, drained and added back has a new state whose
    /// counters start again from 0.
    state: usize,
    counters: Counters,
    /// Picks released without a report, as that export computed them.
    dropped: u64,
    /// The number of the export that listed it last.
    listed: u64,
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

    /// Records the balancer's lines (each with its state's address): the counters' growth
    /// since the last export, and every gauge. A backend the last export saw and this one does
    /// not (removed and drained) gets its gauges set to 0 once, and is forgotten.
    pub(crate) fn record(&self, balancer: &Arc<str>, lines: &[(Status, usize)], panic: bool) {
        let name = SharedString::from(Arc::clone(balancer));
        let mut record = self.seen.lock();
        record.exports += 1;
        let export = record.exports;
        let seen = &mut record.backends;
        let mut eligible = 0u64;
        let mut shares: Option<(u64, u64)> = None;
        for (line, state) in lines {
            let labels = labels(&name, &line.id);
            let now = line.counters;
            let (before, dropped_before) = match seen.get(&line.id) {
                Some(s) if s.state == *state => (s.counters, s.dropped),
                _ => (Counters::default(), 0),
            };
            let grew = |now: u64, before: u64| now.saturating_sub(before);
            counter!("lbkit_picks_total", labels.iter()).increment(grew(now.picks, before.picks));
            counter!("lbkit_successes_total", labels.iter())
                .increment(grew(now.successes, before.successes));
            for (kind, (now, before)) in KINDS.iter().zip(now.failures.iter().zip(before.failures))
            {
                let mut with_kind = labels.clone();
                with_kind.push(Label::new("kind", *kind));
                counter!("lbkit_failures_total", with_kind.iter()).increment(grew(*now, before));
            }
            let dropped = |c: &Counters, held: u64| {
                c.picks
                    .saturating_sub(held)
                    .saturating_sub(c.successes)
                    .saturating_sub(c.failures.iter().sum())
            };
            // Picks taken, less those held (the same reading) and those reported (read after):
            // never too high, so a count recorded is never taken back; one too low catches up
            // at the next export.
            let held = now.held as u64;
            let dropped_now = dropped(&now, held);
            counter!("lbkit_dropped_total", labels.iter())
                .increment(dropped_now.saturating_sub(dropped_before));
            counter!("lbkit_spills_total", labels.iter())
                .increment(grew(now.spills, before.spills));
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
            // The pick count can go back: a pick the tower `Balance` took to look and gave
            // back unused leaves it. The highest count recorded is kept, so that no pick is
            // recorded twice (one recorded while such a pick was held stands in for the next).
            let counters = Counters {
                picks: now.picks.max(before.picks),
                ..now
            };
            seen.insert(
                Arc::clone(&line.id),
                Seen {
                    state: *state,
                    counters,
                    dropped: dropped_now,
                    listed: export,
                },
            );
        }
        // Gone since the last export (removed and drained): every gauge of theirs to 0, once.
        seen.retain(|id, seen| {
            let here = seen.listed == export;
            if !here {
                let labels = labels(&name, id);
                for gauge in BACKEND_GAUGES {
                    gauge!(gauge, labels.iter()).set(0.0);
                }
            }
            here
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
