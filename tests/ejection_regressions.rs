//! Regressions found by the `operations` fuzz target's model of the documented health rules
//! (`lbkit::health`, `lbkit::docs::passive_health`), each against the documented rule:
//!
//! * a backend held back by the ejection cap is ejected as soon as an update makes room
//!   (the cap defers an ejection, it does not cancel it). Before the fix, an update that
//!   removed the ejected backend (or grew the set) applied no rule and asked for no rebuild,
//!   so the failing backend stayed in service until it failed `consecutive_failures` times
//!   again after a success;
//! * an ejected backend "returns by itself when the time is up", so its time in service, which
//!   lowers the next ejection's multiplier, runs from then. Before the fix it ran from the
//!   first pick after that, so after a quiet spell the next ejection was longer than documented;
//! * a backend removed and added back joins as a new one. Before the fix, if picks on it were
//!   still held, it kept its ejection multiplier (and its next ejection was longer) as it did
//!   not when they had been dropped;
//! * new rules on a new clock ("a new clock restarts everything measured in time") eject a
//!   run that meets them from now. Before the fix, the ejection was back-dated to when the run
//!   crossed the old threshold on the old clock, so it could be found served in full at once.

use std::time::Duration;

use lbkit::{Backend, Balancer, HealthConfig, ManualClock, OutlierDetection, Request, RoundRobin};

/// Outlier detection: one failure ejects, for 1 s x n, at most `percent` of the set.
fn rules(clock: &ManualClock, percent: f64) -> HealthConfig {
    HealthConfig::new()
        .outlier_detection(OutlierDetection {
            consecutive_failures: 1,
            base_ejection_time: Duration::from_secs(1),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: percent,
            ..OutlierDetection::default()
        })
        .clock(clock.clone())
}

fn ejected(lb: &dyn Balancer<()>) -> Vec<String> {
    lb.status()
        .iter()
        .filter(|s| s.is_ejected())
        .map(|s| s.id().to_owned())
        .collect()
}

#[test]
fn an_update_that_makes_room_under_the_cap_ejects_the_backend_it_held_back() {
    let clock = ManualClock::new();
    // 3 backends at 50%: at most 1 ejected (1.5, rounded down).
    let lb = RoundRobin::builder()
        .health(rules(&clock, 50.0))
        .build(["a", "b", "c"].map(|id| Backend::new(id, ())))
        .unwrap();
    // "a" fails: ejected. "b" fails: held back by the cap.
    for failing in ["a", "b"] {
        let pick = (0..3)
            .map(|_| lb.pick(&Request::new()).unwrap())
            .find(|p| p.id() == failing)
            .unwrap();
        pick.failure();
    }
    assert_eq!(ejected(&lb), ["a"]);
    // "a" leaves the set: with 2 backends the cap is still 1, and nothing is ejected.
    lb.update(vec![Backend::new("b", ()), Backend::new("c", ())])
        .unwrap();
    assert_eq!(ejected(&lb), ["b"], "the backend the cap held back");
    assert!((0..10).all(|_| lb.pick(&Request::new()).unwrap().id() == "c"));
}

#[test]
fn time_in_service_runs_from_the_end_of_the_ejection_not_from_the_next_pick() {
    let clock = ManualClock::new();
    let lb = RoundRobin::builder()
        .health(rules(&clock, 100.0))
        .build([Backend::new("a", ())])
        .unwrap();
    lb.pick(&Request::new()).unwrap().failure();
    assert_eq!(ejected(&lb), ["a"], "for 1 s (n = 1)");
    // Back at 1 s; the next pick comes 999 s later: 999 s in service lower n back to 0.
    clock.advance(Duration::from_secs(1000));
    lb.pick(&Request::new()).unwrap().failure(); // n = 1 again: 1 s
    clock.advance(Duration::from_secs(1));
    assert!(
        lb.pick(&Request::new()).is_some(),
        "ejected for longer than 1 s: {:?}",
        lb.status()
    );
}

#[test]
fn a_backend_added_back_while_its_picks_are_held_starts_with_no_ejection_history() {
    let clock = ManualClock::new();
    let lb = RoundRobin::builder()
        .health(rules(&clock, 100.0))
        .build([Backend::new("a", ())])
        .unwrap();
    let held = lb.pick(&Request::new()).unwrap();
    lb.pick(&Request::new()).unwrap().failure();
    assert_eq!(ejected(&lb), ["a"], "for 1 s (n = 1)");
    lb.update(Vec::new()).unwrap();
    lb.update(vec![Backend::new("a", ())]).unwrap(); // a new backend: n = 0
    held.failure(); // its first ejection: 1 s
    clock.advance(Duration::from_secs(1));
    assert!(
        lb.pick(&Request::new()).is_some(),
        "ejected for longer than 1 s: {:?}",
        lb.status()
    );
}

#[test]
fn a_run_that_meets_new_rules_on_a_new_clock_is_ejected_from_now() {
    let clock = ManualClock::new();
    let lb = RoundRobin::builder()
        .health(rules(&clock, 100.0))
        .build([Backend::new("a", ())])
        .unwrap();
    let held: Vec<_> = (0..3).map(|_| lb.pick(&Request::new()).unwrap()).collect();
    let mut held = held.into_iter();
    held.next().unwrap().failure();
    assert_eq!(ejected(&lb), ["a"], "for 1 s (n = 1)");
    // Two more failures while ejected: a run of 2, which crossed no threshold of these rules.
    held.for_each(|p| p.failure());
    clock.advance(Duration::from_millis(345));
    // New rules on a new clock ("restarts everything measured in time"): 2 failures eject,
    // for 1 ms. The run meets them: ejected now, for 1 ms, not back-dated to when the run
    // was counted under the old clock (and found served in full at once).
    let next = HealthConfig::new()
        .outlier_detection(OutlierDetection {
            consecutive_failures: 2,
            base_ejection_time: Duration::from_millis(1),
            max_ejection_time: Duration::from_millis(1),
            max_ejection_percent: 100.0,
            ..OutlierDetection::default()
        })
        .clock(clock.clone());
    lb.set_health_config(next).unwrap();
    assert_eq!(ejected(&lb), ["a"], "a run of 2 under a threshold of 2");
    clock.advance(Duration::from_millis(1));
    assert!(ejected(&lb).is_empty(), "back after 1 ms");
}
