//! Kinds of failure (`Pick::failure_of`): which count toward ejection
//! (`OutlierDetection::counted`), that a kind not counted ends a run of failures and counts
//! as a success for the statistical rules, and that every kind costs Peak EWMA (an overload
//! answer's retry-after as a floor).

use std::time::Duration;

use lbkit::{Backend, Balancer, Failure, FailureClasses, FailurePercentageEjection};
use lbkit::{HealthConfig, ManualClock, OutlierDetection, PeakEwma, Request, RoundRobin};

const OVERLOADED: Failure = Failure::Overloaded { retry_after: None };

fn balancer(clock: &ManualClock, rules: OutlierDetection) -> RoundRobin<()> {
    RoundRobin::builder()
        .health(
            HealthConfig::new()
                .clock(clock.clone())
                .outlier_detection(rules),
        )
        .build(["a", "b", "c", "d", "e"].map(|id| Backend::new(id, ())))
        .unwrap()
}

fn report(lb: &dyn Balancer<()>, id: &str, kinds: &[Option<Failure>]) {
    for kind in kinds {
        let pick = lb.pick(&Request::new().prefer(id)).unwrap();
        assert_eq!(pick.id(), id);
        match kind {
            Some(kind) => pick.failure_of(*kind),
            None => pick.success(Duration::from_millis(1)),
        }
    }
}

fn ejected(lb: &dyn Balancer<()>, id: &str) -> bool {
    lb.status().iter().any(|s| s.id() == id && s.is_ejected())
}

#[test]
fn overload_answers_do_not_count_by_default_and_end_a_run() {
    let clock = ManualClock::new();
    let lb = balancer(&clock, OutlierDetection::default());
    report(&lb, "a", &[Some(OVERLOADED); 10]);
    assert!(
        !ejected(&lb, "a"),
        "ten 429s in a row eject nothing by default"
    );
    // Four errors, a 429, four errors: the 429 ended the first run.
    let mut kinds = vec![Some(Failure::Error); 4];
    kinds.push(Some(OVERLOADED));
    kinds.extend([Some(Failure::Error); 4]);
    report(&lb, "b", &kinds);
    assert!(!ejected(&lb, "b"));
    // Local-origin failures count: five in a row eject.
    report(&lb, "c", &[Some(Failure::LocalOrigin); 5]);
    assert!(ejected(&lb, "c"));
}

#[test]
fn counting_every_kind_ejects_on_overload_answers() {
    let clock = ManualClock::new();
    let lb = balancer(
        &clock,
        OutlierDetection {
            counted: FailureClasses::all(),
            ..OutlierDetection::default()
        },
    );
    report(&lb, "a", &[Some(OVERLOADED); 5]);
    assert!(ejected(&lb, "a"));
    // And counting none of a kind: errors alone then never eject.
    let clock = ManualClock::new();
    let lb = balancer(
        &clock,
        OutlierDetection {
            counted: FailureClasses {
                error: false,
                ..FailureClasses::default()
            },
            ..OutlierDetection::default()
        },
    );
    report(&lb, "a", &[Some(Failure::Error); 20]);
    assert!(!ejected(&lb, "a"));
    // `failure()` is an error answer.
    for _ in 0..20 {
        lb.pick(&Request::new().prefer("b")).unwrap().failure();
    }
    assert!(!ejected(&lb, "b"));
}

#[test]
fn the_statistical_rules_see_a_kind_not_counted_as_a_success() {
    let rules = |counted| OutlierDetection {
        consecutive_failures: u32::MAX,
        max_ejection_percent: 100.0,
        failure_percentage: Some(FailurePercentageEjection {
            threshold: 50,
            minimum_hosts: 5,
            request_volume: 10,
            ..FailurePercentageEjection::default()
        }),
        counted,
        ..OutlierDetection::default()
    };
    for (counted, expected) in [
        (FailureClasses::default(), false),
        (FailureClasses::all(), true),
    ] {
        let clock = ManualClock::new();
        let lb = balancer(&clock, rules(counted));
        for id in ["a", "b", "c", "d"] {
            report(&lb, id, &[None; 20]);
        }
        report(&lb, "e", &[Some(OVERLOADED); 20]);
        clock.advance(Duration::from_secs(10));
        drop(lb.pick(&Request::new()));
        assert_eq!(ejected(&lb, "e"), expected, "{counted:?}");
    }
}

#[test]
fn every_kind_costs_peak_ewma_and_retry_after_is_a_floor() {
    let clock = ManualClock::new();
    let lb = PeakEwma::builder()
        .seed(1)
        .failure_penalty(Duration::from_millis(100))
        .health(HealthConfig::new().clock(clock.clone()))
        .build(["a", "b"].map(|id| Backend::new(id, ())))
        .unwrap();
    // "a" sheds load with `Retry-After: 9`, "b" answers in 1 s: "a" must lose every
    // comparison (9 s against 1 s), though its 429 came at once and is not counted for
    // ejection.
    lb.pick(&Request::new().prefer("a"))
        .unwrap()
        .failure_of(Failure::Overloaded {
            retry_after: Some(Duration::from_secs(9)),
        });
    lb.pick(&Request::new().prefer("b"))
        .unwrap()
        .success(Duration::from_secs(1));
    for _ in 0..50 {
        assert_eq!(lb.pick(&Request::new()).unwrap().id(), "b");
    }
    assert!(lb.status().iter().all(|s| s.in_flight() == 0));
}
