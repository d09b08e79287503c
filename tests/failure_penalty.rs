//! PeakEwma's failure penalty (Linkerd's): a backend that fails fast stops looking cheap, and
//! draws a small share before any ejection; without the penalty it draws the most.

use std::time::Duration;

use lbkit::{Backend, Balancer, HealthConfig, ManualClock, PeakEwma, Request};

/// Sequential requests: "bad" fails after 1 ms, the others succeed after 10 ms. Returns the
/// share of requests "bad" got.
fn bad_share(penalty: Duration) -> f64 {
    let clock = ManualClock::new();
    let lb = PeakEwma::builder()
        .seed(7)
        .failure_penalty(penalty)
        .health(HealthConfig::new().clock(clock.clone()))
        .build(["a", "b", "bad"].map(|id| Backend::new(id, ())))
        .unwrap();
    let n = 3000;
    let mut bad = 0;
    for _ in 0..n {
        let pick = lb.pick(&Request::new()).unwrap();
        if pick.id() == "bad" {
            bad += 1;
            clock.advance(Duration::from_millis(1));
            pick.failure();
        } else {
            clock.advance(Duration::from_millis(10));
            pick.success(Duration::from_millis(10));
        }
    }
    assert!(lb.status().iter().all(|s| s.in_flight() == 0));
    f64::from(bad) / f64::from(n)
}

#[test]
fn a_fast_failing_backend_draws_a_small_share_with_the_penalty() {
    let with = bad_share(Duration::from_secs(5));
    let without = bad_share(Duration::ZERO);
    // Without the penalty, 1 ms failures look ten times cheaper than 10 ms successes: the
    // failing backend takes most requests. With it, a few percent (it is retried as its
    // estimate decays).
    assert!(without > 0.5, "without the penalty: {without}");
    assert!(with < 0.05, "with the penalty: {with}");
}

#[test]
fn the_penalty_is_a_floor_not_a_replacement() {
    // A failure that took longer than the penalty counts as the time it took: a 9 s failure
    // costs more than a 5 s penalty would (the other backend wins every comparison after it).
    let clock = ManualClock::new();
    let lb = PeakEwma::builder()
        .seed(1)
        .failure_penalty(Duration::from_millis(100))
        .health(HealthConfig::new().clock(clock.clone()))
        .build(["a", "b"].map(|id| Backend::new(id, ())))
        .unwrap();
    let a = lb.pick(&Request::new().prefer("a")).unwrap();
    clock.advance(Duration::from_secs(9));
    a.failure();
    let b = lb.pick(&Request::new().prefer("b")).unwrap();
    b.success(Duration::from_secs(1));
    // b's 1 s is below a's 9 s, above the 100 ms penalty: "a" must lose.
    for _ in 0..50 {
        assert_eq!(lb.pick(&Request::new()).unwrap().id(), "b");
    }
}
