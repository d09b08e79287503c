//! Failures as load for least connections and P2C (`Builder::failure_penalty`): each reported
//! failure weighs as one more request in flight, fading as exp(-age / penalty), so that a
//! backend that fails fast stops looking idle before any ejection.

use std::time::Duration;

use lbkit::{
    Backend, Balancer, Error, Failure, HealthConfig, LeastConnections, ManualClock, Pick,
    PowerOfTwoChoices, Request,
};

fn least_connections(clock: &ManualClock, penalty: Option<Duration>) -> LeastConnections<()> {
    let mut builder = LeastConnections::builder().health(HealthConfig::new().clock(clock.clone()));
    if let Some(penalty) = penalty {
        builder = builder.failure_penalty(penalty);
    }
    builder
        .build(["a", "b", "bad"].map(|id| Backend::new(id, ())))
        .unwrap()
}

fn p2c(clock: &ManualClock, penalty: Option<Duration>) -> PowerOfTwoChoices<()> {
    let mut builder = PowerOfTwoChoices::builder()
        .seed(3)
        .health(HealthConfig::new().clock(clock.clone()));
    if let Some(penalty) = penalty {
        builder = builder.failure_penalty(penalty);
    }
    builder
        .build(["a", "b", "bad"].map(|id| Backend::new(id, ())))
        .unwrap()
}

/// A millisecond-stepped run: 3 requests arrive every millisecond; "bad" fails after 1 ms
/// (an overload answer when `overload`), the others succeed after 10 ms. Returns the share of
/// requests "bad" got.
fn bad_share(lb: &dyn Balancer<()>, clock: &ManualClock, overload: bool) -> f64 {
    let mut open: Vec<(u64, Pick<()>)> = Vec::new();
    let (mut bad, mut all) = (0u32, 0u32);
    for now in 0..3000u64 {
        for _ in 0..3 {
            let pick = lb.pick(&Request::new()).unwrap();
            all += 1;
            let hold = if pick.id() == "bad" {
                bad += 1;
                1
            } else {
                10
            };
            open.push((now + hold, pick));
        }
        clock.advance(Duration::from_millis(1));
        let (done, held): (Vec<_>, Vec<_>) = open.into_iter().partition(|(end, _)| *end <= now + 1);
        open = held;
        for (_, pick) in done {
            if pick.id() != "bad" {
                pick.success(Duration::from_millis(10));
            } else if overload {
                pick.failure_of(Failure::Overloaded { retry_after: None });
            } else {
                pick.failure_of(Failure::LocalOrigin);
            }
        }
    }
    drop(open);
    assert!(lb.status().iter().all(|s| s.in_flight() == 0));
    f64::from(bad) / f64::from(all)
}

#[test]
fn least_connections_sends_a_fast_failing_backend_a_small_share_with_the_penalty() {
    for overload in [false, true] {
        let clock = ManualClock::new();
        let without = bad_share(&least_connections(&clock, None), &clock, overload);
        let clock = ManualClock::new();
        let penalty = Some(Duration::from_secs(1));
        let with = bad_share(&least_connections(&clock, penalty), &clock, overload);
        // Without: the failing backend holds each request 1 ms against 10 ms, so it is the
        // least loaded most of the time and takes most requests.
        assert!(
            without > 0.5,
            "overload {overload}: without the penalty: {without}"
        );
        // With: each failure weighs as a request for about a second; the others hold about
        // ten requests each, so "bad" gets about ten failures' worth per second.
        eprintln!("least connections, overload {overload}: {without:.3} -> {with:.4}");
        assert!(with < 0.02, "overload {overload}: with the penalty: {with}");
        // It still gets a few requests as its failures fade, so a recovery would be seen.
        assert!(
            with > 0.001,
            "overload {overload}: with the penalty: {with}"
        );
    }
}

#[test]
fn p2c_sends_a_fast_failing_backend_a_small_share_with_the_penalty() {
    let clock = ManualClock::new();
    let without = bad_share(&p2c(&clock, None), &clock, false);
    let clock = ManualClock::new();
    let with = bad_share(&p2c(&clock, Some(Duration::from_secs(1))), &clock, false);
    // P2C without the penalty: "bad" wins every comparison it is drawn into (2/3 of picks).
    assert!(without > 0.5, "without the penalty: {without}");
    eprintln!("p2c: {without:.3} -> {with:.4}");
    assert!(with < 0.02, "with the penalty: {with}");
    assert!(with > 0.001, "with the penalty: {with}");
}

#[test]
fn a_failure_weighs_one_request_fading_with_the_penalty_as_time_constant() {
    let clock = ManualClock::new();
    let tau = Duration::from_secs(10);
    let lb = LeastConnections::builder()
        .failure_penalty(tau)
        .health(HealthConfig::new().clock(clock.clone()))
        .build(["a", "b"].map(|id| Backend::new(id, ())))
        .unwrap();
    for _ in 0..4 {
        lb.pick(&Request::new().prefer("a")).unwrap().failure();
    }
    // "a" weighs 4 requests: "b" wins while it holds fewer than 4 picks.
    let mut held = Vec::new();
    for _ in 0..3 {
        let pick = lb.pick(&Request::new()).unwrap();
        assert_eq!(pick.id(), "b");
        held.push(pick);
    }
    // One time constant later "a" weighs 4 / e = 1.47: more than "b"'s 3 is not so, so "a".
    clock.advance(tau);
    assert_eq!(lb.pick(&Request::new()).unwrap().id(), "a");
    // With "b" at 1 in flight, "a" (1.47) still loses.
    held.truncate(1);
    assert_eq!(lb.pick(&Request::new()).unwrap().id(), "b");
    // Two more time constants: 4 / e^3 = 0.2 < 1, "a" wins.
    clock.advance(tau * 2);
    assert_eq!(lb.pick(&Request::new()).unwrap().id(), "a");
    // Long after, nothing is left: both idle, they take turns.
    drop(held);
    clock.advance(tau * 100);
    let ids: Vec<String> = (0..4)
        .map(|_| lb.pick(&Request::new()).unwrap().id().to_owned())
        .collect();
    assert_eq!(ids.iter().filter(|id| *id == "a").count(), 2, "{ids:?}");
}

#[test]
fn failures_add_up_and_successes_do_not_clear_them() {
    let clock = ManualClock::new();
    let lb = LeastConnections::builder()
        .failure_penalty(Duration::from_secs(60))
        .health(HealthConfig::new().clock(clock.clone()))
        .build(["a", "b"].map(|id| Backend::new(id, ())))
        .unwrap();
    lb.pick(&Request::new().prefer("a")).unwrap().failure();
    lb.pick(&Request::new().prefer("a")).unwrap().failure();
    // A success does not wipe recent failures (unlike a run of consecutive failures).
    lb.pick(&Request::new().prefer("a"))
        .unwrap()
        .success(Duration::from_millis(1));
    let b = lb.pick(&Request::new()).unwrap();
    assert_eq!(b.id(), "b");
    // "a" weighs 2, "b" 1: "b" again.
    assert_eq!(lb.pick(&Request::new()).unwrap().id(), "b");
}

#[test]
fn without_the_option_failures_weigh_nothing() {
    let clock = ManualClock::new();
    let lb = least_connections(&clock, None);
    for _ in 0..10 {
        lb.pick(&Request::new().prefer("a")).unwrap().failure();
    }
    let held = lb.pick(&Request::new().prefer("b")).unwrap();
    let held2 = lb.pick(&Request::new().prefer("bad")).unwrap();
    // "a" is idle and its failures weigh nothing: it wins.
    assert_eq!(lb.pick(&Request::new()).unwrap().id(), "a");
    drop((held, held2));
}

#[test]
fn a_penalty_below_a_millisecond_is_a_typed_error() {
    for penalty in [Duration::ZERO, Duration::from_micros(999)] {
        let lc = LeastConnections::builder()
            .failure_penalty(penalty)
            .build([Backend::new("a", ())]);
        assert!(
            matches!(lc, Err(Error::InvalidConfig { .. })),
            "{penalty:?}"
        );
        let p2c = PowerOfTwoChoices::builder()
            .failure_penalty(penalty)
            .build([Backend::new("a", ())]);
        assert!(
            matches!(p2c, Err(Error::InvalidConfig { .. })),
            "{penalty:?}"
        );
    }
    assert!(LeastConnections::builder()
        .failure_penalty(Duration::from_millis(1))
        .build([Backend::new("a", ())])
        .is_ok());
}
