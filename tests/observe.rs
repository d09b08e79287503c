//! Events (`Builder::observer`): each rule's sequence under a `ManualClock`, and an observer
//! that calls back into the balancer from inside the callback.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use lbkit::{
    Aperture, Backend, Balancer, Ejection, Event, Failure, FailurePercentageEjection, Health,
    HealthConfig, ManualClock, OutlierDetection, Request, RoundRobin, SlowStart, SoftHealth,
    Subset, WeightedRoundRobin,
};

type Log = Arc<Mutex<Vec<Event>>>;

fn recorder() -> (Log, impl Fn(&Event) + Send + Sync + 'static) {
    let log: Log = Arc::default();
    let sink = Arc::clone(&log);
    (log, move |e: &Event| sink.lock().unwrap().push(e.clone()))
}

fn take(log: &Log) -> Vec<Event> {
    std::mem::take(&mut *log.lock().unwrap())
}

fn ids(n: usize) -> Vec<Backend<()>> {
    (0..n).map(|i| Backend::new(format!("b{i}"), ())).collect()
}

fn fail(lb: &dyn Balancer<()>, id: &str, n: usize, kind: Failure) {
    for _ in 0..n {
        lb.pick(&Request::new().prefer(id))
            .unwrap()
            .failure_of(kind);
    }
}

#[test]
fn an_ejection_and_its_return() {
    let clock = ManualClock::new();
    let (log, observer) = recorder();
    let lb = RoundRobin::builder()
        .health(
            HealthConfig::new()
                .clock(clock.clone())
                .outlier_detection(OutlierDetection::default()),
        )
        .observer(observer)
        .build(ids(10))
        .unwrap();
    clock.advance(Duration::from_secs(5));
    fail(&lb, "b3", 5, Failure::Error);
    // The fifth failure asks for a rebuild; the next pick runs it.
    drop(lb.pick(&Request::new()));
    assert_eq!(
        take(&log),
        [Event::Ejected {
            id: "b3".into(),
            why: Ejection::ConsecutiveFailures,
            until: Duration::from_secs(35),
        }]
    );
    clock.advance(Duration::from_secs(30));
    drop(lb.pick(&Request::new()));
    assert_eq!(take(&log), [Event::Returned { id: "b3".into() }]);
    // Ejected again: base x 2 (its multiplier did not decay in no time).
    fail(&lb, "b3", 5, Failure::Error);
    drop(lb.pick(&Request::new()));
    assert_eq!(
        take(&log),
        [Event::Ejected {
            id: "b3".into(),
            why: Ejection::ConsecutiveFailures,
            until: Duration::from_secs(35 + 60),
        }]
    );
}

#[test]
fn every_rule_names_itself() {
    let clock = ManualClock::new();
    let (log, observer) = recorder();
    let lb = RoundRobin::builder()
        .health(
            HealthConfig::new()
                .clock(clock.clone())
                .outlier_detection(OutlierDetection {
                    consecutive_local_origin_failures: Some(2),
                    failure_percentage: Some(FailurePercentageEjection {
                        minimum_hosts: 1,
                        request_volume: 10,
                        ..FailurePercentageEjection::default()
                    }),
                    max_ejection_percent: 100.0,
                    ..OutlierDetection::default()
                }),
        )
        .observer(observer)
        .build(ids(10))
        .unwrap();
    fail(&lb, "b1", 2, Failure::LocalOrigin);
    drop(lb.pick(&Request::new()));
    // Nine errors and a success: 90% failures, never five in a row.
    for i in 0..10 {
        let pick = lb.pick(&Request::new().prefer("b2")).unwrap();
        if i == 4 {
            pick.success(Duration::from_millis(1));
        } else {
            pick.failure();
        }
    }
    clock.advance(Duration::from_secs(10));
    drop(lb.pick(&Request::new()));
    let whys: Vec<(String, Ejection)> = take(&log)
        .into_iter()
        .filter_map(|e| match e {
            Event::Ejected { id, why, .. } => Some((id.to_string(), why)),
            _ => None,
        })
        .collect();
    assert_eq!(
        whys,
        [
            ("b1".to_owned(), Ejection::LocalOriginFailures),
            ("b2".to_owned(), Ejection::FailurePercentage)
        ]
    );
}

#[test]
fn panic_entered_and_left() {
    let (log, observer) = recorder();
    let lb = RoundRobin::builder()
        .health(HealthConfig::new().panic_threshold(0.5))
        .observer(observer)
        .build(ids(4))
        .unwrap();
    lb.set_health("b0", Health::Down).unwrap();
    lb.set_health("b1", Health::Down).unwrap();
    assert!(take(&log).is_empty(), "2 of 4 healthy: not below half");
    lb.set_health("b2", Health::Down).unwrap();
    assert_eq!(
        take(&log),
        [Event::PanicEntered {
            healthy: 1,
            could: 4
        }]
    );
    lb.set_health("b0", Health::Up).unwrap();
    assert_eq!(
        take(&log),
        [Event::PanicLeft {
            healthy: 2,
            could: 4
        }]
    );
}

#[test]
fn slow_start_done_and_updates() {
    let clock = ManualClock::new();
    let (log, observer) = recorder();
    let lb = WeightedRoundRobin::builder()
        .health(
            HealthConfig::new()
                .clock(clock.clone())
                .slow_start(SlowStart::new(Duration::from_secs(10))),
        )
        .observer(observer)
        .build(ids(3))
        .unwrap();
    lb.update(ids(4)).unwrap();
    assert_eq!(
        take(&log),
        [Event::Updated {
            added: 1,
            removed: 0,
            kept: 3
        }]
    );
    // The ramp moves in steps; the one that ends it says so, once.
    for _ in 0..12 {
        clock.advance(Duration::from_secs(1));
        drop(lb.pick(&Request::new()));
    }
    assert_eq!(take(&log), [Event::SlowStartDone { id: "b3".into() }]);
    lb.update(ids(2)).unwrap();
    assert_eq!(
        take(&log),
        [Event::Updated {
            added: 0,
            removed: 2,
            kept: 2
        }]
    );
}

#[test]
fn soft_weights_and_subsets() {
    let clock = ManualClock::new();
    let (log, observer) = recorder();
    let lb = WeightedRoundRobin::builder()
        .health(
            HealthConfig::new()
                .clock(clock.clone())
                .soft_health(SoftHealth::default()),
        )
        .observer(observer)
        .build(ids(4))
        .unwrap();
    for _ in 0..400 {
        let pick = lb.pick(&Request::new()).unwrap();
        let ms = if pick.id() == "b3" { 40 } else { 10 };
        pick.success(Duration::from_millis(ms));
    }
    clock.advance(Duration::from_secs(1));
    drop(lb.pick(&Request::new()));
    assert_eq!(
        take(&log),
        [Event::SoftWeight {
            id: "b3".into(),
            multiplier: 0.25
        }]
    );
    lb.set_subset(Subset::Aperture(Aperture::new(0, 4).min_aperture(1)))
        .unwrap();
    let events = take(&log);
    assert!(
        matches!(events.as_slice(), [Event::SubsetChanged { members }] if *members < 4),
        "{events:?}"
    );
}

#[test]
fn an_observer_may_call_back_into_the_balancer() {
    // The observer holds the balancer (through a Weak set after it is built) and calls
    // `status`, `update` and `set_health` from inside its callback: on an update, a health
    // change, and a rebuild that a pick runs. Nothing deadlocks.
    static DEPTH: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let clock = ManualClock::new();
    let slot: Arc<OnceLock<std::sync::Weak<dyn Balancer<()>>>> = Arc::default();
    let seen = Arc::new(Mutex::new(0usize));
    let (inner, count) = (Arc::clone(&slot), Arc::clone(&seen));
    let lb: Arc<dyn Balancer<()>> = Arc::new(
        RoundRobin::builder()
            .health(
                HealthConfig::new()
                    .clock(clock.clone())
                    .outlier_detection(OutlierDetection::default()),
            )
            .observer(move |event: &Event| {
                // Never nested: the events of the calls below come after this one returns.
                let depth = DEPTH.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                assert_eq!(depth, 0, "the observer was called from inside itself");
                *count.lock().unwrap() += 1;
                let Some(lb) = inner.get().and_then(std::sync::Weak::upgrade) else {
                    return;
                };
                let _ = lb.status();
                if let Event::Ejected { id, .. } = event {
                    // React by draining it, and by replacing the set.
                    lb.set_health(id, Health::Draining).unwrap();
                    lb.update(ids(6)).unwrap();
                }
                DEPTH.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            })
            .build(ids(5))
            .unwrap(),
    );
    slot.set(Arc::downgrade(&lb)).ok().unwrap();
    fail(&*lb, "b1", 5, Failure::Error);
    drop(lb.pick(&Request::new()));
    // Ejected, then what the observer's own calls changed (the update at least), in order.
    assert!(*seen.lock().unwrap() >= 2);
    assert_eq!(lb.status().len(), 6);
    let b1 = lb.status().into_iter().find(|s| s.id() == "b1").unwrap();
    assert_eq!(b1.health(), Health::Draining);
}

#[test]
fn a_ramp_that_ends_while_the_backend_is_down_is_told_too() {
    let clock = ManualClock::new();
    let (log, observer) = recorder();
    let lb = WeightedRoundRobin::builder()
        .health(
            HealthConfig::new()
                .clock(clock.clone())
                .slow_start(SlowStart::new(Duration::from_secs(10))),
        )
        .observer(observer)
        .build(ids(3))
        .unwrap();
    lb.update(ids(4)).unwrap();
    lb.set_health("b3", Health::Down).unwrap();
    take(&log);
    clock.advance(Duration::from_secs(12));
    lb.set_health("b3", Health::Up).unwrap();
    assert_eq!(take(&log), [Event::SlowStartDone { id: "b3".into() }]);
}

#[test]
fn status_shows_the_effective_weight_the_ejection_and_the_failure_run() {
    let clock = ManualClock::new();
    let lb = WeightedRoundRobin::builder()
        .health(
            HealthConfig::new()
                .clock(clock.clone())
                .outlier_detection(OutlierDetection::default())
                .slow_start(SlowStart::new(Duration::from_secs(10))),
        )
        .build(ids(4).into_iter().map(|b| b.with_weight(2)))
        .unwrap();
    let line = |id: &str| lb.status().into_iter().find(|s| s.id() == id).unwrap();
    assert_eq!(line("b0").effective_weight(), 2.0);
    fail(&lb, "b0", 3, Failure::Error);
    assert_eq!(line("b0").consecutive_failures(), 3);
    assert_eq!(line("b0").ejected_until(), None);
    fail(&lb, "b0", 2, Failure::Error);
    drop(lb.pick(&Request::new()));
    let b0 = line("b0");
    assert_eq!(b0.ejected_until(), Some(Duration::from_secs(30)));
    assert_eq!((b0.ejections(), b0.consecutive_failures()), (1, 0));
    assert_eq!(b0.effective_weight(), 0.0, "not eligible");
    // Back after 30 s, ramping over 10 s (Envoy's weight x max(10%, t / window)): a quarter
    // in, 2 x 0.25.
    clock.advance(Duration::from_millis(32_500));
    drop(lb.pick(&Request::new()));
    let b0 = line("b0");
    assert_eq!(b0.ejected_until(), None);
    assert_eq!(b0.effective_weight(), 0.5);
}

#[test]
fn events_from_many_threads_are_told_in_the_order_of_the_changes() {
    // Four threads flip their own backend Down and Up; with a panic threshold of 0.9 over 8
    // backends any one down enters panic mode and all up leaves it. Told in the order the
    // changes were made, PanicEntered and PanicLeft alternate, starting with PanicEntered.
    // (A stress test, and a weak one: telling each writer's events after its own unlock, as a
    // first version did, failed it in one of six runs here, when a writer was preempted
    // between its unlock and its telling; the queue makes the order hold by construction.)
    let (log, observer) = recorder();
    let lb = Arc::new(
        RoundRobin::builder()
            .health(HealthConfig::new().panic_threshold(0.9))
            .observer(observer)
            .build(ids(8))
            .unwrap(),
    );
    std::thread::scope(|s| {
        for t in 0..4 {
            let lb = Arc::clone(&lb);
            s.spawn(move || {
                let id = format!("b{t}");
                for _ in 0..2000 {
                    lb.set_health(&id, Health::Down).unwrap();
                    drop(lb.pick(&Request::new()));
                    lb.set_health(&id, Health::Up).unwrap();
                }
            });
        }
    });
    let panics: Vec<bool> = take(&log)
        .into_iter()
        .filter_map(|e| match e {
            Event::PanicEntered { .. } => Some(true),
            Event::PanicLeft { .. } => Some(false),
            _ => None,
        })
        .collect();
    assert!(!panics.is_empty());
    for (i, entered) in panics.iter().enumerate() {
        assert_eq!(*entered, i % 2 == 0, "event {i} of {}", panics.len());
    }
    assert_eq!(panics.len() % 2, 0, "all up at the end: panic left last");
}

/// The shares of a `SharesChanged` event as `(priority, locality, percent rounded to 0.01)`.
fn shares_of(event: &Event) -> Vec<(u32, Option<String>, f64)> {
    let Event::SharesChanged { shares } = event else {
        panic!("not a SharesChanged: {event:?}");
    };
    shares
        .iter()
        .map(|s| {
            (
                s.priority,
                s.locality.as_deref().map(str::to_owned),
                (s.share * 10_000.0).round() / 100.0,
            )
        })
        .collect()
}

/// Failover across priority levels, told as it happens: P0 of 10 backends and P1 of 10;
/// P0 at 70% healthy keeps 98% (Envoy: 70 x 1.4), at 50% 70%, all down 0%. A health
/// change that moves no share tells nothing.
#[test]
fn shares_change_as_a_level_fails_over() {
    let (log, observer) = recorder();
    let set =
        (0..20).map(|i| Backend::new(format!("b{i:02}"), ()).with_priority(u32::from(i >= 10)));
    let lb = RoundRobin::builder().observer(observer).build(set).unwrap();
    assert!(take(&log).is_empty());
    lb.set_health("b00", Health::Down).unwrap();
    // 90% x 1.4 = 126: P0 keeps everything.
    assert!(take(&log).is_empty());
    lb.set_health("b01", Health::Down).unwrap();
    lb.set_health("b02", Health::Down).unwrap();
    assert_eq!(
        take(&log).iter().map(shares_of).collect::<Vec<_>>(),
        [
            // 80%: 112, still all of it; 70%: 98.
            vec![(0, None, 98.0), (1, None, 2.0)],
        ]
    );
    lb.set_health("b03", Health::Down).unwrap();
    lb.set_health("b04", Health::Down).unwrap();
    let events = take(&log);
    assert_eq!(shares_of(&events[1]), [(0, None, 70.0), (1, None, 30.0)]);
    for i in 5..10 {
        lb.set_health(&format!("b{i:02}"), Health::Down).unwrap();
    }
    assert_eq!(shares_of(take(&log).last().unwrap()), [(1, None, 100.0)]);
}

/// Load-aware routing on reports tells each move of the zones' shares: Envoy's worked
/// example after the first sample.
#[test]
fn shares_change_as_load_aware_routing_moves_traffic() {
    let clock = ManualClock::new();
    let (log, observer) = recorder();
    let set = (0..30).map(|i| {
        Backend::new(format!("z{}-{:02}", i / 10, i % 10), ()).with_locality(format!("z{}", i / 10))
    });
    let lb = RoundRobin::builder()
        .health(HealthConfig::new().clock(clock.clone()))
        .topology(lbkit::Topology::load_aware_reported("z0"))
        .observer(observer)
        .build(set)
        .unwrap();
    for i in 0..30 {
        let u = [0.7, 0.3, 0.4][i / 10];
        lb.report_load(
            &format!("z{}-{:02}", i / 10, i % 10),
            lbkit::LoadReport::new().utilization(u),
        )
        .unwrap();
    }
    assert!(take(&log).is_empty());
    clock.advance(Duration::from_secs(1));
    drop(lb.pick(&Request::new()));
    let z = |n: &str| Some(n.to_owned());
    assert_eq!(
        take(&log).iter().map(shares_of).collect::<Vec<_>>(),
        [vec![
            (0, z("z0"), 18.75),
            (0, z("z1"), 43.75),
            (0, z("z2"), 37.5)
        ]]
    );
    // The same reports again: the smoothed values do not move, nothing is told.
    clock.advance(Duration::from_secs(1));
    drop(lb.pick(&Request::new()));
    assert!(take(&log).is_empty());
}
