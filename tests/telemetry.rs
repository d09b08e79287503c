//! The `metrics` and `tracing` features (issue #17): what a balancer records through the
//! `metrics` facade (read back from a debugging recorder installed for this thread only) and
//! the `tracing` events it emits, under a `ManualClock`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lbkit::{
    Backend, Balancer, Error, Failure, HashRing, Health, HealthConfig, LeastConnections,
    ManualClock, OutlierDetection, Pick, RendezvousSubset, Request, RoundRobin, Subset,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// What the recorder holds, summed over snapshots (a snapshot hands over what was recorded
/// since the last: counters' increments, gauges' last values).
#[derive(Default)]
struct Seen {
    counters: BTreeMap<String, u64>,
    gauges: BTreeMap<String, f64>,
}

impl Seen {
    /// Takes a snapshot: counters add up, gauges set since the last snapshot replace theirs.
    fn take(&mut self, snapshotter: &Snapshotter) {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            match value {
                DebugValue::Counter(n) => *self.counters.entry(name).or_default() += n,
                DebugValue::Gauge(v) => {
                    self.gauges.insert(name, v.into_inner());
                }
                DebugValue::Histogram(_) => {}
            }
        }
    }

    fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    fn gauge(&self, name: &str) -> Option<f64> {
        self.gauges.get(name).copied()
    }
}

fn backends(n: usize) -> Vec<Backend<()>> {
    (0..n).map(|i| Backend::new(format!("b{i}"), ())).collect()
}

/// Per-backend counters equal what was done, however often they are exported (exports record
/// growth, not totals); events count as they happen; gauges follow.
#[test]
fn counters_gauges_and_events_reach_the_recorder() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut seen = Seen::default();
    let clock = ManualClock::new();
    metrics::with_local_recorder(&recorder, || {
        let lb = LeastConnections::builder()
            .name("api")
            .metrics(Duration::from_secs(1))
            .health(
                HealthConfig::new()
                    .clock(clock.clone())
                    .outlier_detection(OutlierDetection::default()),
            )
            .build(backends(3))
            .unwrap();
        let mut done: BTreeMap<String, [u64; 4]> = BTreeMap::new();
        let mut held: Vec<Pick<()>> = Vec::new();
        for i in 0..300u64 {
            let pick = lb.pick(&Request::new()).unwrap();
            let tally = done.entry(pick.id().to_owned()).or_default();
            match i % 4 {
                0 => {
                    tally[0] += 1;
                    pick.success(Duration::from_millis(3));
                }
                1 => {
                    tally[1] += 1;
                    pick.failure_of(Failure::Overloaded { retry_after: None });
                }
                2 => {
                    tally[2] += 1;
                    drop(pick);
                }
                _ => {
                    tally[3] += 1;
                    held.push(pick);
                }
            }
            if i % 50 == 0 {
                lb.export_metrics();
                seen.take(&snapshotter);
            }
        }
        lb.export_metrics();
        lb.export_metrics();
        seen.take(&snapshotter);
        for (id, [ok, overloaded, dropped, holding]) in &done {
            let l = format!("backend={id},balancer=api");
            assert_eq!(
                seen.counter(&format!("lbkit_picks_total{{{l}}}")),
                ok + overloaded + dropped + holding,
                "{id}"
            );
            assert_eq!(seen.counter(&format!("lbkit_successes_total{{{l}}}")), *ok);
            assert_eq!(
                seen.counter(&format!("lbkit_failures_total{{{l},kind=overloaded}}")),
                *overloaded
            );
            assert_eq!(
                seen.counter(&format!("lbkit_failures_total{{{l},kind=error}}")),
                0
            );
            assert_eq!(
                seen.counter(&format!("lbkit_dropped_total{{{l}}}")),
                *dropped
            );
            assert_eq!(
                seen.gauge(&format!("lbkit_in_flight{{{l}}}")),
                Some(*holding as f64)
            );
        }
        // The held picks end as drops: counted as such at the next export.
        let held_total = held.len() as u64;
        drop(held);
        lb.export_metrics();
        seen.take(&snapshotter);
        let dropped: u64 = (0..3)
            .map(|i| seen.counter(&format!("lbkit_dropped_total{{backend=b{i},balancer=api}}")))
            .sum();
        let want: u64 = done.values().map(|t| t[2] + t[3]).sum();
        assert_eq!(dropped, want);
        assert!(held_total > 0);

        // An ejection and its return.
        clock.advance(Duration::from_secs(5));
        for _ in 0..5 {
            lb.pick(&Request::new().prefer("b1")).unwrap().failure();
        }
        drop(lb.pick(&Request::new()));
        seen.take(&snapshotter);
        let b1 = "backend=b1,balancer=api";
        assert_eq!(
            seen.counter(&format!(
                "lbkit_ejections_total{{{b1},reason=consecutive_failures}}"
            )),
            1
        );
        assert_eq!(seen.gauge(&format!("lbkit_ejected{{{b1}}}")), Some(1.0));
        lb.export_metrics();
        seen.take(&snapshotter);
        assert_eq!(seen.gauge(&format!("lbkit_eligible{{{b1}}}")), Some(0.0));
        assert_eq!(
            seen.gauge("lbkit_eligible_backends{balancer=api}"),
            Some(2.0)
        );
        assert_eq!(seen.gauge("lbkit_backends{balancer=api}"), Some(3.0));
        assert_eq!(
            seen.counter(&format!("lbkit_failures_total{{{b1},kind=error}}")),
            5
        );
        clock.advance(Duration::from_secs(30));
        drop(lb.pick(&Request::new()));
        seen.take(&snapshotter);
        assert_eq!(seen.counter(&format!("lbkit_returns_total{{{b1}}}")), 1);
        assert_eq!(seen.gauge(&format!("lbkit_ejected{{{b1}}}")), Some(0.0));

        // An update counts; a backend removed is set to 0 once, then forgotten.
        let keep = lb.pick(&Request::new().prefer("b2")).unwrap();
        lb.update(backends(2)).unwrap();
        seen.take(&snapshotter);
        assert_eq!(seen.counter("lbkit_updates_total{balancer=api}"), 1);
        lb.export_metrics();
        seen.take(&snapshotter);
        let b2 = "backend=b2,balancer=api";
        assert_eq!(
            seen.gauge(&format!("lbkit_in_flight{{{b2}}}")),
            Some(1.0),
            "draining"
        );
        assert_eq!(seen.gauge("lbkit_backends{balancer=api}"), Some(2.0));
        drop(keep);
        lb.export_metrics();
        seen.take(&snapshotter);
        assert_eq!(
            seen.gauge(&format!("lbkit_in_flight{{{b2}}}")),
            Some(0.0),
            "drained"
        );
    });
}

/// Without `export_metrics`: an export at build, then at most once per interval, checked
/// once every 1024 picks of a backend.
#[test]
fn picks_export_at_most_once_per_interval() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut seen = Seen::default();
    let clock = ManualClock::new();
    metrics::with_local_recorder(&recorder, || {
        let lb = RoundRobin::builder()
            .metrics(Duration::from_secs(10))
            .health(HealthConfig::new().clock(clock.clone()))
            .build(backends(2))
            .unwrap();
        seen.take(&snapshotter);
        assert_eq!(
            seen.gauge("lbkit_backends{balancer=RoundRobin}"),
            Some(2.0),
            "exported at build, under the policy's name"
        );
        let picks = |seen: &Seen| {
            seen.counter("lbkit_picks_total{backend=b0,balancer=RoundRobin}")
                + seen.counter("lbkit_picks_total{backend=b1,balancer=RoundRobin}")
        };
        let pick = |n: u64| {
            for _ in 0..n {
                drop(lb.pick(&Request::new()));
            }
        };
        // Within the interval: however many picks, no export.
        pick(10_000);
        seen.take(&snapshotter);
        assert_eq!(picks(&seen), 0, "not within the interval");
        // Over: the next nudge (the 1024th pick of b0 or b1 from here, 2048 picks at most)
        // exports, once.
        clock.advance(Duration::from_secs(10));
        pick(2048);
        seen.take(&snapshotter);
        let exported = picks(&seen);
        assert!(
            (10_000..=12_048).contains(&exported),
            "{exported}: the picks up to the export"
        );
        pick(10_000);
        seen.take(&snapshotter);
        assert_eq!(picks(&seen), exported, "once per interval");
        clock.advance(Duration::from_secs(10));
        pick(2048);
        seen.take(&snapshotter);
        assert!(picks(&seen) > exported, "the next interval");
        lb.export_metrics();
        seen.take(&snapshotter);
        assert_eq!(picks(&seen), 2 * (10_000 + 2048), "every pick, once");
    });
}

/// The hashing table's shares, and their min and max over the set (Envoy's gauges).
#[test]
fn table_shares_are_gauges() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut seen = Seen::default();
    metrics::with_local_recorder(&recorder, || {
        let lb = HashRing::builder()
            .points_per_weight(100)
            .metrics(Duration::from_secs(1))
            .build([
                Backend::new("a", ()),
                Backend::new("b", ()).with_weight(2),
                Backend::new("c", ()).with_weight(3),
            ])
            .unwrap();
        lb.export_metrics();
        seen.take(&snapshotter);
        assert_eq!(
            seen.gauge("lbkit_table_share{backend=b,balancer=HashRing}"),
            Some(200.0)
        );
        assert_eq!(
            seen.gauge("lbkit_table_share_min{balancer=HashRing}"),
            Some(100.0)
        );
        assert_eq!(
            seen.gauge("lbkit_table_share_max{balancer=HashRing}"),
            Some(300.0)
        );
    });
}

#[test]
fn an_interval_of_zero_is_refused() {
    let got = RoundRobin::builder()
        .metrics(Duration::ZERO)
        .build(backends(1))
        .map(|_| ());
    assert!(matches!(got, Err(Error::InvalidConfig { .. })), "{got:?}");
}

/// A `tracing` subscriber that keeps each event's level, message and fields.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<(tracing::Level, String)>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push_str(&format!(" {}={}", field.name(), value));
    }
}

impl tracing::Subscriber for Events {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        let target = event.metadata().target();
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), format!("{target}:{}", fields.0)));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A global subscriber that records nothing and asks `tracing` to check every event at the
/// thread that makes it (`Interest::sometimes`). `tracing` caches a callsite's interest for the
/// whole process, computed on the first thread to reach it: with only the test's thread-local
/// `Events` registered, a test ejecting a backend on another thread at that moment would have
/// it computed from no subscriber at all (`Interest::never`), and the traced test would miss
/// its events (it did, about once in five runs). With this one as the global default, no
/// callsite is ever cached as never.
struct Anchor;

impl tracing::Subscriber for Anchor {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        false
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Makes [`Anchor`] the global default, once, before any test installs its own subscriber.
fn anchor() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing::dispatcher::set_global_default(tracing::Dispatch::new(Anchor))
            .expect("no other global subscriber in this test binary");
    });
}

/// Ejections and returns as `tracing` events, with the balancer's name and the backend's id,
/// with no observer configured.
#[test]
fn ejections_are_traced() {
    anchor();
    let events = Events::default();
    let clock = ManualClock::new();
    tracing::subscriber::with_default(events.clone(), || {
        let lb = RoundRobin::builder()
            .name("edge")
            .health(
                HealthConfig::new()
                    .clock(clock.clone())
                    .outlier_detection(OutlierDetection::default()),
            )
            .build(backends(4))
            .unwrap();
        for _ in 0..5 {
            lb.pick(&Request::new().prefer("b2"))
                .unwrap()
                .failure_of(Failure::LocalOrigin);
        }
        drop(lb.pick(&Request::new()));
        clock.advance(Duration::from_secs(30));
        drop(lb.pick(&Request::new()));
    });
    let got = events.0.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, tracing::Level::WARN);
    assert_eq!(
        got[0].1,
        "lbkit: message=backend ejected balancer=edge backend=b2 reason=ConsecutiveFailures until_ms=30000"
    );
    assert_eq!(got[1].0, tracing::Level::INFO);
    assert_eq!(
        got[1].1,
        "lbkit: message=backend returned balancer=edge backend=b2"
    );
}

/// Picks that all report, taken and ended on other threads while this one exports over and
/// over: no export ever records a dropped pick (a pick taken during a reading is counted as
/// taken and held together, or not at all).
#[test]
fn exports_racing_with_picks_never_count_a_reported_pick_as_dropped() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut seen = Seen::default();
    let lb = Arc::new(
        RoundRobin::builder()
            .name("race")
            .metrics(Duration::from_secs(3600))
            .build(backends(2))
            .unwrap(),
    );
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (lb, done) = (Arc::clone(&lb), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut n = 0u64;
                // Relaxed: a stop flag.
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let pick = lb.pick(&Request::new()).unwrap();
                    std::hint::spin_loop();
                    pick.success(Duration::from_micros(1));
                    n += 1;
                }
                n
            })
        })
        .collect();
    metrics::with_local_recorder(&recorder, || {
        for _ in 0..20_000 {
            lb.export_metrics();
        }
    });
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let picks: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    metrics::with_local_recorder(&recorder, || lb.export_metrics());
    seen.take(&snapshotter);
    let total = |metric: &str| -> u64 {
        (0..2)
            .map(|i| seen.counter(&format!("{metric}{{backend=b{i},balancer=race}}")))
            .sum()
    };
    assert!(picks > 0);
    assert_eq!(total("lbkit_dropped_total"), 0);
    assert_eq!(total("lbkit_picks_total"), picks);
    assert_eq!(total("lbkit_successes_total"), picks);
}

/// A backend ejected and then removed: once it drains, every gauge of its own reads 0 (not
/// "ejected" forever).
#[test]
fn a_removed_backend_leaves_no_gauge_behind() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut seen = Seen::default();
    metrics::with_local_recorder(&recorder, || {
        let lb = HashRing::builder()
            .name("gone")
            .metrics(Duration::from_secs(3600))
            .health(HealthConfig::new().outlier_detection(OutlierDetection::default()))
            .build(backends(3))
            .unwrap();
        for _ in 0..5 {
            lb.pick(&Request::new().prefer("b0")).unwrap().failure();
        }
        drop(lb.pick(&Request::new()));
        lb.export_metrics();
        seen.take(&snapshotter);
        let b0 = "backend=b0,balancer=gone";
        assert_eq!(seen.gauge(&format!("lbkit_ejected{{{b0}}}")), Some(1.0));
        assert!(seen.gauge(&format!("lbkit_table_share{{{b0}}}")).unwrap() > 0.0);
        lb.update(backends(3).split_off(1)).unwrap();
        lb.export_metrics();
        seen.take(&snapshotter);
        for gauge in [
            "lbkit_ejected",
            "lbkit_table_share",
            "lbkit_in_flight",
            "lbkit_eligible",
        ] {
            assert_eq!(
                seen.gauge(&format!("{gauge}{{{b0}}}")),
                Some(0.0),
                "{gauge}"
            );
        }
    });
}

/// A pick reported after the last export of its backend, which is then removed: the removal's
/// export still records the report (exports record growth; a backend that leaves is recorded
/// one last time before it is forgotten).
#[test]
fn counts_made_after_the_last_export_of_a_removed_backend_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut seen = Seen::default();
    metrics::with_local_recorder(&recorder, || {
        let lb = LeastConnections::builder()
            .name("gone")
            .metrics(Duration::from_secs(3600))
            .build(backends(2))
            .unwrap();
        let pick = lb.pick(&Request::new().prefer("b0")).unwrap();
        lb.export_metrics();
        pick.failure_of(Failure::Overloaded { retry_after: None });
        let dropped = lb.pick(&Request::new().prefer("b0")).unwrap();
        drop(dropped);
        lb.update(backends(2).split_off(1)).unwrap();
        lb.export_metrics();
        lb.export_metrics();
        seen.take(&snapshotter);
        let b0 = "backend=b0,balancer=gone";
        assert_eq!(seen.counter(&format!("lbkit_picks_total{{{b0}}}")), 2);
        assert_eq!(
            seen.counter(&format!("lbkit_failures_total{{{b0},kind=overloaded}}")),
            1
        );
        assert_eq!(seen.counter(&format!("lbkit_dropped_total{{{b0}}}")), 1);
        assert_eq!(seen.gauge(&format!("lbkit_in_flight{{{b0}}}")), Some(0.0));
        // Added back afresh: counted from 0 again, on top of what was recorded.
        lb.update(backends(2)).unwrap();
        lb.pick(&Request::new().prefer("b0"))
            .unwrap()
            .success(Duration::from_millis(1));
        lb.export_metrics();
        seen.take(&snapshotter);
        assert_eq!(seen.counter(&format!("lbkit_picks_total{{{b0}}}")), 3);
        assert_eq!(seen.counter(&format!("lbkit_successes_total{{{b0}}}")), 1);

        // Removed with a pick held: listed while it drains; the report that drains it comes
        // after that export, and the next one records it.
        let held = lb.pick(&Request::new().prefer("b1")).unwrap();
        lb.update(vec![Backend::new("b0", ())]).unwrap();
        lb.export_metrics();
        seen.take(&snapshotter);
        let b1 = "backend=b1,balancer=gone";
        assert_eq!(seen.gauge(&format!("lbkit_in_flight{{{b1}}}")), Some(1.0));
        held.success(Duration::from_millis(1));
        lb.export_metrics();
        seen.take(&snapshotter);
        assert_eq!(seen.counter(&format!("lbkit_successes_total{{{b1}}}")), 1);
        assert_eq!(seen.gauge(&format!("lbkit_in_flight{{{b1}}}")), Some(0.0));

        // Removed and added back before an export: it starts afresh, as without metrics
        // (the exporter's hold on its old state revives nothing), and both are recorded.
        lb.pick(&Request::new().prefer("b0"))
            .unwrap()
            .success(Duration::from_millis(1));
        lb.update(Vec::new()).unwrap();
        lb.update(vec![Backend::new("b0", ())]).unwrap();
        assert_eq!(lb.status()[0].picks(), 0, "a new state");
        lb.pick(&Request::new()).unwrap().failure();
        lb.export_metrics();
        seen.take(&snapshotter);
        assert_eq!(seen.counter(&format!("lbkit_picks_total{{{b0}}}")), 5);
        assert_eq!(seen.counter(&format!("lbkit_successes_total{{{b0}}}")), 2);
        assert_eq!(
            seen.counter(&format!("lbkit_failures_total{{{b0},kind=error}}")),
            1
        );
    });
}

/// Backends that leave the subset (their state kept) and come back are not counted again:
/// the picks recorded are the picks taken, across subset changes and exports.
#[test]
fn a_backend_back_in_the_subset_is_not_counted_twice() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut seen = Seen::default();
    let ids = |lb: &RoundRobin<()>| -> Vec<String> {
        lb.status().iter().map(|s| s.id().to_owned()).collect()
    };
    metrics::with_local_recorder(&recorder, || {
        let first = Subset::Rendezvous(RendezvousSubset::new(2).salt(1));
        let lb = RoundRobin::builder()
            .name("sub")
            .metrics(Duration::from_secs(3600))
            .subset(first)
            .build(backends(20))
            .unwrap();
        let inside = ids(&lb);
        // Another subset with none of the first's members.
        let other = (2..)
            .map(|salt| Subset::Rendezvous(RendezvousSubset::new(2).salt(salt)))
            .find(|&s| {
                lb.set_subset(s).unwrap();
                ids(&lb).iter().all(|id| !inside.contains(id))
            })
            .unwrap();
        lb.set_subset(first).unwrap();
        for _ in 0..10 {
            drop(lb.pick(&Request::new()));
        }
        lb.export_metrics();
        lb.set_subset(other).unwrap();
        lb.export_metrics();
        seen.take(&snapshotter);
        for id in &inside {
            let l = format!("backend={id},balancer=sub");
            assert_eq!(
                seen.gauge(&format!("lbkit_eligible{{{l}}}")),
                Some(0.0),
                "{id} is out"
            );
        }
        lb.set_subset(first).unwrap();
        lb.export_metrics();
        for _ in 0..4 {
            drop(lb.pick(&Request::new()));
        }
        lb.export_metrics();
        seen.take(&snapshotter);
        let picks: u64 = inside
            .iter()
            .map(|id| seen.counter(&format!("lbkit_picks_total{{backend={id},balancer=sub}}")))
            .sum();
        assert_eq!(picks, 14);
        let dropped: u64 = inside
            .iter()
            .map(|id| seen.counter(&format!("lbkit_dropped_total{{backend={id},balancer=sub}}")))
            .sum();
        assert_eq!(dropped, 14);
    });
}

/// In panic mode a backend that is down takes picks: the eligibility gauges say so (they
/// follow the effective weight picks see, not health alone).
#[test]
fn eligible_gauges_follow_where_picks_go_in_panic_mode() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut seen = Seen::default();
    metrics::with_local_recorder(&recorder, || {
        let lb = RoundRobin::builder()
            .name("panic")
            .metrics(Duration::from_secs(3600))
            .health(HealthConfig::new().panic_threshold(0.5))
            .build(backends(3))
            .unwrap();
        lb.set_health("b0", Health::Down).unwrap();
        lb.export_metrics();
        seen.take(&snapshotter);
        let b0 = "backend=b0,balancer=panic";
        assert_eq!(seen.gauge(&format!("lbkit_eligible{{{b0}}}")), Some(0.0));
        assert_eq!(
            seen.gauge("lbkit_eligible_backends{balancer=panic}"),
            Some(2.0)
        );
        lb.set_health("b1", Health::Down).unwrap();
        let picked: Vec<String> = (0..3)
            .map(|_| lb.pick(&Request::new()).unwrap().id().to_owned())
            .collect();
        assert!(picked.iter().any(|id| id == "b0"), "{picked:?}");
        lb.export_metrics();
        seen.take(&snapshotter);
        assert_eq!(seen.gauge("lbkit_panic{balancer=panic}"), Some(1.0));
        assert_eq!(seen.gauge(&format!("lbkit_eligible{{{b0}}}")), Some(1.0));
        assert_eq!(
            seen.gauge("lbkit_eligible_backends{balancer=panic}"),
            Some(3.0)
        );
        // Out of panic: down is out again.
        lb.set_health("b1", Health::Up).unwrap();
        lb.export_metrics();
        seen.take(&snapshotter);
        assert_eq!(seen.gauge(&format!("lbkit_eligible{{{b0}}}")), Some(0.0));
        assert_eq!(
            seen.gauge("lbkit_eligible_backends{balancer=panic}"),
            Some(2.0)
        );
    });
}

/// A backend added, picked and removed between two exports, which no export ever listed,
/// has its counts recorded; and so has a state added back afresh and removed again before
/// the next export.
#[test]
fn counts_of_a_backend_that_lives_between_exports_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut seen = Seen::default();
    metrics::with_local_recorder(&recorder, || {
        let lb = LeastConnections::builder()
            .name("between")
            .metrics(Duration::from_secs(3600))
            .build(backends(1))
            .unwrap();
        lb.export_metrics();
        // b1 lives between two exports.
        lb.update(backends(2)).unwrap();
        lb.pick(&Request::new().prefer("b1"))
            .unwrap()
            .success(Duration::from_millis(1));
        lb.update(backends(1)).unwrap();
        lb.export_metrics();
        // b0: recorded once, removed, added back afresh, picked, removed again.
        lb.pick(&Request::new().prefer("b0"))
            .unwrap()
            .success(Duration::from_millis(1));
        lb.export_metrics();
        lb.update(backends(2).split_off(1)).unwrap();
        lb.update(backends(2)).unwrap();
        assert_eq!(lb.status()[0].picks(), 0, "b0 added back afresh");
        lb.pick(&Request::new().prefer("b0"))
            .unwrap()
            .success(Duration::from_millis(1));
        lb.update(backends(2).split_off(1)).unwrap();
        lb.export_metrics();
        lb.export_metrics();
        seen.take(&snapshotter);
        for (backend, want) in [("b0", 2), ("b1", 1)] {
            let labels = format!("backend={backend},balancer=between");
            assert_eq!(
                seen.counter(&format!("lbkit_picks_total{{{labels}}}")),
                want
            );
            assert_eq!(
                seen.counter(&format!("lbkit_successes_total{{{labels}}}")),
                want
            );
        }
    });
}
