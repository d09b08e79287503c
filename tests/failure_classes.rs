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

fn split(local: u32) -> OutlierDetection {
    OutlierDetection {
        consecutive_local_origin_failures: Some(local),
        ..OutlierDetection::default()
    }
}

#[test]
fn local_origin_failures_counted_apart_eject_on_their_own_threshold() {
    let clock = ManualClock::new();
    let lb = balancer(&clock, split(3));
    // Three local-origin failures in a row: ejected (the answered rule needs five).
    report(&lb, "a", &[Some(Failure::LocalOrigin); 3]);
    assert!(ejected(&lb, "a"));
    // Two, then any answer (here an error answer: the connection worked), then two: the
    // answer ended the local-origin run.
    let l = Some(Failure::LocalOrigin);
    report(&lb, "b", &[l, l, Some(Failure::Error), l, l]);
    assert!(!ejected(&lb, "b"));
    report(&lb, "c", &[l, l, Some(OVERLOADED), l, l, None, l, l]);
    assert!(!ejected(&lb, "c"));
}

#[test]
fn local_origin_failures_counted_apart_neither_extend_nor_end_an_answered_run() {
    let clock = ManualClock::new();
    let lb = balancer(&clock, split(10));
    let (e, l) = (Some(Failure::Error), Some(Failure::LocalOrigin));
    // Four errors, two local-origin failures, one error: five answered failures in a row.
    report(&lb, "a", &[e, e, e, e, l, l, e]);
    assert!(ejected(&lb, "a"));
    // Without the split, the same reports are seven failures in a row, and four local-origin
    // failures among four errors count too.
    let lb = balancer(&clock, OutlierDetection::default());
    report(&lb, "b", &[e, e, l, l]);
    assert!(!ejected(&lb, "b"));
    report(&lb, "b", &[e]);
    assert!(ejected(&lb, "b"));
    // With the split, four local-origin failures and four errors eject nothing.
    let lb = balancer(&clock, split(5));
    report(&lb, "c", &[e, l, e, l, e, l, e, l]);
    assert!(!ejected(&lb, "c"));
}

#[test]
fn local_origin_failures_counted_apart_are_not_seen_by_the_statistical_rules() {
    let clock = ManualClock::new();
    let rules = OutlierDetection {
        failure_percentage: Some(FailurePercentageEjection {
            threshold: 50,
            minimum_hosts: 1,
            request_volume: 9,
            ..FailurePercentageEjection::default()
        }),
        consecutive_failures: u32::MAX,
        max_ejection_percent: 100.0,
        ..split(u32::MAX)
    };
    let lb = balancer(&clock, rules);
    // Two local-origin failures to each success: 67% of the requests failed, but for the
    // statistical rules "a" has 9 answers, all successes.
    let mut kinds = Vec::new();
    for _ in 0..9 {
        kinds.extend([Some(Failure::LocalOrigin), Some(Failure::LocalOrigin), None]);
    }
    report(&lb, "a", &kinds);
    // And "b": 10 errors among 10 answers: 100% failures.
    report(&lb, "b", &[Some(Failure::Error); 10]);
    clock.advance(Duration::from_secs(10));
    lb.pick(&Request::new())
        .unwrap()
        .success(Duration::from_millis(1));
    assert!(!ejected(&lb, "a"));
    assert!(ejected(&lb, "b"));
    // Without the split, "a"'s 18 local-origin failures of 27 (67%) eject it.
    let lb = balancer(
        &clock,
        OutlierDetection {
            consecutive_local_origin_failures: None,
            ..rules
        },
    );
    report(&lb, "a", &kinds);
    clock.advance(Duration::from_secs(10));
    lb.pick(&Request::new())
        .unwrap()
        .success(Duration::from_millis(1));
    assert!(ejected(&lb, "a"));
}

#[test]
fn a_local_origin_threshold_of_zero_is_a_typed_error() {
    let built = RoundRobin::builder()
        .health(HealthConfig::new().outlier_detection(split(0)))
        .build([Backend::new("a", ())]);
    assert!(matches!(built, Err(lbkit::Error::InvalidConfig { .. })));
}
