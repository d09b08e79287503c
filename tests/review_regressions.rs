//! Regressions found by a review of failures as load, soft health and subsetting: each test
//! failed before its fix (a too-small table hidden by a subset, a failure load that outlived
//! a clock change or a revival, soft health's latency count wrapping or truncated to 0 us).

use std::time::Duration;

use lbkit::{
    Backend, Balancer, Health, HealthConfig, LeastConnections, Maglev, ManualClock,
    OutlierDetection, RendezvousSubset, Request, SoftHealth, Subset,
};

fn ids(n: usize) -> Vec<Backend<()>> {
    (0..n).map(|i| Backend::new(format!("s{i}"), ())).collect()
}

/// A new clock "restarts everything measured in time", but the failure load keeps the old
/// clock's millisecond stamp: on a clock that reads lower, it never fades.
#[test]
fn failure_load_fades_after_a_clock_change() {
    let old = ManualClock::new();
    old.advance(Duration::from_secs(1000));
    let lb = LeastConnections::builder()
        .failure_penalty(Duration::from_secs(1))
        .health(HealthConfig::new().clock(old.clone()))
        .build([Backend::new("a", ()), Backend::new("b", ())])
        .unwrap();
    for _ in 0..2 {
        lb.pick(&Request::new().prefer("a")).unwrap().failure();
    }
    let new = ManualClock::new();
    lb.set_health_config(HealthConfig::new().clock(new.clone()))
        .unwrap();
    // 60 time constants on the new clock: nothing of the failures is left.
    new.advance(Duration::from_secs(60));
    let _b = lb.pick(&Request::new().prefer("b")).unwrap();
    // a is idle, b holds one request: a must win.
    for _ in 0..4 {
        assert_eq!(lb.pick(&Request::new()).unwrap().id(), "a");
    }
}

/// The members of the subset that are in `lb`'s snapshot now.
fn subset_members(lb: &dyn Balancer<()>) -> Vec<String> {
    lb.status().iter().map(|s| s.id().to_owned()).collect()
}

/// Maglev whose table fits the subset but not the whole set: the fallback to the whole set
/// fails to build. set_health's only documented error is an unknown id.
#[test]
fn set_health_of_a_known_id_does_not_fail_on_the_fallback() {
    let lb = Maglev::builder()
        .table_size(5)
        .subset(Subset::Rendezvous(RendezvousSubset::new(2).salt(1)))
        .build(ids(10))
        .unwrap();
    let members = subset_members(&lb);
    assert_eq!(members.len(), 2);
    lb.set_health(&members[0], Health::Down).unwrap();
    let r = lb.set_health(&members[1], Health::Down);
    assert!(r.is_ok(), "{r:?}");
}

/// The same through the rules: the rebuild that applies an ejection cannot build the
/// fallback; it is dropped silently, the ejected backend keeps taking picks.
#[test]
fn an_ejection_that_empties_the_subset_is_applied() {
    let lb = Maglev::builder()
        .table_size(5)
        .subset(Subset::Rendezvous(RendezvousSubset::new(2).salt(1)))
        .health(HealthConfig::new().outlier_detection(OutlierDetection {
            consecutive_failures: 3,
            ..OutlierDetection::default()
        }))
        .build(ids(10))
        .unwrap();
    let members = subset_members(&lb);
    lb.set_health(&members[0], Health::Down).unwrap();
    let bad = &members[1];
    for _ in 0..3 {
        lb.pick(&Request::new().prefer(bad)).unwrap().failure();
    }
    let status = lb.status();
    let s = status.iter().find(|s| s.id() == bad).unwrap();
    assert!(s.is_ejected());
    for k in 0..20u64 {
        // None is fine (no fallback can be built); the ejected backend is not.
        if let Some(p) = lb.pick(&Request::with_hash(k)) {
            assert_ne!(p.id(), bad, "an ejected backend still takes picks");
        }
    }
}

/// set_health_config returns an error after it changed the config and ejected a backend.
#[test]
fn set_health_config_error_changes_nothing() {
    let lb = Maglev::builder()
        .table_size(5)
        .subset(Subset::Rendezvous(RendezvousSubset::new(2).salt(1)))
        .build(ids(10))
        .unwrap();
    let members = subset_members(&lb);
    lb.set_health(&members[0], Health::Down).unwrap();
    let bad = &members[1];
    for _ in 0..3 {
        lb.pick(&Request::new().prefer(bad)).unwrap().failure();
    }
    let r = lb.set_health_config(HealthConfig::new().outlier_detection(OutlierDetection {
        consecutive_failures: 3,
        ..OutlierDetection::default()
    }));
    if r.is_err() {
        let status = lb.status();
        let s = status.iter().find(|s| s.id() == bad).unwrap();
        assert!(!s.is_ejected(), "error {r:?}, but {bad} was ejected");
    }
}

/// Soft health decodes an interval's latency count from 20 bits: a backend with more than
/// 2^20 timed successes in one interval (1 s at ~1M rps, or 10 s at ~100k rps) looks as slow as
/// its summed latency over a handful of requests, and is cut to the floor.
#[test]
fn a_busy_backend_is_not_cut_by_soft_health() {
    let clock = ManualClock::new();
    let lb = LeastConnections::builder()
        .health(
            HealthConfig::new()
                .clock(clock.clone())
                .soft_health(SoftHealth::default()),
        )
        .build(ids(3))
        .unwrap();
    let ms = Duration::from_millis(1);
    for _ in 0..(1u32 << 20) + 10 {
        lb.pick(&Request::new().prefer("s0")).unwrap().success(ms);
    }
    for id in ["s1", "s2"] {
        for _ in 0..100 {
            lb.pick(&Request::new().prefer(id)).unwrap().success(ms);
        }
    }
    clock.advance(Duration::from_secs(1));
    let _ = lb.pick(&Request::new());
    for s in lb.status() {
        assert_eq!(s.soft_health(), 1.0, "{} cut with the same latency", s.id());
    }
}

/// A revived backend "joins again as a new backend would ... only the held picks' in-flight
/// count carries over": its failure load carries over too.
#[test]
fn a_revived_backend_leaves_its_failure_load_behind() {
    let lb = LeastConnections::builder()
        .failure_penalty(Duration::from_secs(3600))
        .build([Backend::new("a", ()), Backend::new("b", ())])
        .unwrap();
    for _ in 0..3 {
        lb.pick(&Request::new().prefer("a")).unwrap().failure();
    }
    let held = lb.pick(&Request::new().prefer("a")).unwrap();
    lb.update(vec![Backend::new("b", ())]).unwrap();
    lb.update(vec![Backend::new("a", ()), Backend::new("b", ())])
        .unwrap();
    let _b1 = lb.pick(&Request::new().prefer("b")).unwrap();
    let _b2 = lb.pick(&Request::new().prefer("b")).unwrap();
    // a: one held pick (as a new backend with it would have); b: two.
    assert_eq!(lb.pick(&Request::new()).unwrap().id(), "a");
    drop(held);
}

/// Latencies are summed in whole microseconds: when most backends answer in under 1 us, the
/// median is 0 and any backend whose mean reaches 1 us is "infinitely" slower, cut to the
/// floor at once (a backend 1.5x slower than its peers should be cut by at most half).
#[test]
fn sub_microsecond_latencies_do_not_cut_to_the_floor() {
    let clock = ManualClock::new();
    let lb = LeastConnections::builder()
        .health(
            HealthConfig::new()
                .clock(clock.clone())
                .soft_health(SoftHealth::default()),
        )
        .build(ids(3))
        .unwrap();
    for (id, ns) in [("s0", 800), ("s1", 800), ("s2", 1200)] {
        for _ in 0..100 {
            lb.pick(&Request::new().prefer(id))
                .unwrap()
                .success(Duration::from_nanos(ns));
        }
    }
    clock.advance(Duration::from_secs(1));
    let _ = lb.pick(&Request::new());
    let status = lb.status();
    let s2 = status.iter().find(|s| s.id() == "s2").unwrap();
    assert!(s2.soft_health() >= 0.5, "cut to {}", s2.soft_health());
}

/// Accounting across updates, subset changes and health changes, against a model: every id
/// in the snapshot counts exactly the picks held on it.
#[test]
fn accounting_across_subset_changes_matches_a_model() {
    use lbkit::{Aperture, PowerOfTwoChoices, RoundRobin};
    use std::collections::HashMap;
    let lbs: Vec<Box<dyn Balancer<()>>> = vec![
        Box::new(RoundRobin::new(ids(6)).unwrap()),
        Box::new(
            LeastConnections::builder()
                .failure_penalty(Duration::from_millis(5))
                .build(ids(6))
                .unwrap(),
        ),
        Box::new(PowerOfTwoChoices::with_seed(ids(6), 3).unwrap()),
    ];
    for lb in lbs {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut held: Vec<lbkit::Pick<()>> = Vec::new();
        for step in 0..4000 {
            match next(10) {
                0..=3 => {
                    if let Some(p) = lb.pick(&Request::new()) {
                        held.push(p);
                    }
                }
                4 | 5 => {
                    if !held.is_empty() {
                        let i = next(held.len() as u64) as usize;
                        let p = held.swap_remove(i);
                        if next(2) == 0 {
                            p.failure();
                        }
                    }
                }
                6 => {
                    let set: Vec<_> = (0..10)
                        .filter(|_| next(2) == 0)
                        .map(|i| Backend::new(format!("s{i}"), ()))
                        .collect();
                    lb.update(set).unwrap();
                }
                7 => {
                    let subset = match next(3) {
                        0 => Subset::All,
                        1 => Subset::Aperture(Aperture::new(next(4) as usize, 4)),
                        _ => Subset::Rendezvous(
                            RendezvousSubset::new(1 + next(4) as usize).salt(next(5)),
                        ),
                    };
                    lb.set_subset(subset).unwrap();
                }
                _ => {
                    let id = format!("s{}", next(10));
                    let h = [Health::Up, Health::Down, Health::Draining][next(3) as usize];
                    let _ = lb.set_health(&id, h);
                }
            }
            let mut model: HashMap<String, usize> = HashMap::new();
            for p in &held {
                *model.entry(p.id().to_owned()).or_default() += 1;
            }
            for s in lb.status() {
                assert_eq!(
                    s.in_flight(),
                    model.get(s.id()).copied().unwrap_or(0),
                    "step {step}: {}",
                    s.id()
                );
            }
        }
        held.clear();
        assert!(lb.status().iter().all(|s| s.in_flight() == 0));
    }
}
