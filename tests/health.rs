//! Passive health and feedback, driven by a `ManualClock`: outlier ejection after k failures,
//! return after the backoff (and a longer one the second time), the max-ejection cap, the
//! panic threshold switching on and off, slow-start shares at chosen points of the window,
//! and peak EWMA steering away from a slow backend and back once its estimate decays.

use std::collections::BTreeMap;
use std::time::Duration;

use lbkit::{Backend, Balancer, Health, HealthConfig, ManualClock, OutlierDetection, SlowStart};
use lbkit::{LeastConnections, PeakEwma, Request, RoundRobin, WeightedRoundRobin};

fn backends(ids: &[&str]) -> Vec<Backend<()>> {
    ids.iter().map(|id| Backend::new(*id, ())).collect()
}

/// How many of `n` picks (dropped at once) went to each id.
fn counts(lb: &dyn Balancer<()>, n: usize) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let pick = lb.pick(&Request::new()).expect("an eligible backend");
        *out.entry(pick.id().to_owned()).or_default() += 1;
    }
    out
}

fn ejected(lb: &dyn Balancer<()>) -> Vec<String> {
    lb.status()
        .into_iter()
        .filter(|s| s.is_ejected())
        .map(|s| s.id().to_owned())
        .collect()
}

/// Picks until one lands on `id` (bounded: a backend that is never picked fails the test).
fn pick_on(lb: &dyn Balancer<()>, id: &str) -> lbkit::Pick<()> {
    for _ in 0..10_000 {
        let pick = lb.pick(&Request::new()).unwrap();
        if pick.id() == id {
            return pick;
        }
    }
    panic!("{id} is never picked");
}

/// Reports `k` failures on backend `id`.
fn fail(lb: &dyn Balancer<()>, id: &str, k: usize) {
    for _ in 0..k {
        pick_on(lb, id).failure();
    }
}

fn outliers(clock: &ManualClock, percent: f64) -> HealthConfig {
    HealthConfig::new()
        .clock(clock.clone())
        .outlier_detection(OutlierDetection {
            max_ejection_percent: percent,
            ..OutlierDetection::default()
        })
}

#[test]
fn ejection_after_k_failures_and_return_after_the_backoff() {
    let clock = ManualClock::new();
    let lb = RoundRobin::builder()
        .health(outliers(&clock, 10.0))
        .build(backends(&["a", "b", "c", "d"]))
        .unwrap();
    // Four failures are not enough; a success resets the run.
    fail(&lb, "a", 4);
    assert!(ejected(&lb).is_empty());
    pick_on(&lb, "a").success(Duration::from_millis(1));
    fail(&lb, "a", 4);
    assert!(ejected(&lb).is_empty(), "the success reset the run");
    fail(&lb, "a", 1);
    assert_eq!(ejected(&lb), ["a"]);
    assert!(
        !counts(&lb, 300).contains_key("a"),
        "no picks while ejected"
    );
    assert!(!lb.status()[0].is_eligible());

    // Back after base_ejection_time (30 s), by itself.
    clock.advance(Duration::from_secs(29));
    assert!(!counts(&lb, 30).contains_key("a"));
    clock.advance(Duration::from_secs(1));
    assert_eq!(counts(&lb, 400)["a"], 100);
    assert!(ejected(&lb).is_empty());

    // Ejected again at once: twice as long (60 s).
    fail(&lb, "a", 5);
    assert_eq!(ejected(&lb), ["a"]);
    clock.advance(Duration::from_secs(59));
    assert!(!counts(&lb, 30).contains_key("a"));
    clock.advance(Duration::from_secs(1));
    assert!(counts(&lb, 40).contains_key("a"));

    // After serving well for two base times, the multiplier has decayed: 30 s again.
    clock.advance(Duration::from_secs(60));
    fail(&lb, "a", 5);
    clock.advance(Duration::from_secs(30));
    assert!(ejected(&lb).is_empty());
}

#[test]
fn never_more_than_max_ejection_percent() {
    let clock = ManualClock::new();
    let ids: Vec<String> = (0..10).map(|i| format!("b{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    // 10% of 10: one at a time.
    let lb = RoundRobin::builder()
        .health(outliers(&clock, 10.0))
        .build(backends(&ids))
        .unwrap();
    for id in ["b1", "b2", "b3"] {
        fail(&lb, id, 5);
    }
    assert_eq!(ejected(&lb).len(), 1);
    // The others stay candidates: when the first returns, one of them takes its place.
    clock.advance(Duration::from_secs(30));
    lb.status();
    assert_eq!(ejected(&lb).len(), 1);

    // 30%: three; and below one backend's share (5% of 10) still one may go.
    for (percent, most) in [(30.0, 3), (5.0, 1)] {
        let lb = RoundRobin::builder()
            .health(outliers(&ManualClock::new(), percent))
            .build(backends(&ids))
            .unwrap();
        for id in ["b1", "b2", "b3", "b4", "b5"] {
            fail(&lb, id, 5);
        }
        assert_eq!(ejected(&lb).len(), most, "{percent}%");
    }
}

#[test]
fn panic_threshold_spreads_over_all_when_too_few_are_healthy() {
    let clock = ManualClock::new();
    let lb = RoundRobin::builder()
        .health(HealthConfig::new().clock(clock).panic_threshold(0.5))
        .build(backends(&["a", "b", "c", "d", "e"]))
        .unwrap();
    lb.set_health("e", Health::Draining).unwrap();
    // 4 could serve; 2 healthy is not below half: only the healthy ones.
    lb.set_health("a", Health::Down).unwrap();
    lb.set_health("b", Health::Down).unwrap();
    let got = counts(&lb, 100);
    assert_eq!(got.keys().collect::<Vec<_>>(), ["c", "d"]);
    // 1 healthy of 4: panic, all four that could serve share (draining stays out).
    lb.set_health("c", Health::Down).unwrap();
    let got = counts(&lb, 400);
    assert_eq!(got.keys().collect::<Vec<_>>(), ["a", "b", "c", "d"]);
    assert!(got.values().all(|&n| n == 100));
    // Recovery switches it off again.
    lb.set_health("a", Health::Up).unwrap();
    let got = counts(&lb, 100);
    assert_eq!(got.keys().collect::<Vec<_>>(), ["a", "d"]);
    // Disabled by configuring without it: health wins even with none healthy.
    lb.set_health_config(HealthConfig::new()).unwrap();
    lb.set_health("a", Health::Down).unwrap();
    lb.set_health("d", Health::Down).unwrap();
    assert!(lb.pick(&Request::new()).is_none());
}

#[test]
fn panic_threshold_counts_ejected_backends_as_unhealthy() {
    let clock = ManualClock::new();
    let lb = RoundRobin::builder()
        .health(outliers(&clock, 50.0).panic_threshold(0.6))
        .build(backends(&["a", "b"]))
        .unwrap();
    fail(&lb, "a", 5);
    assert_eq!(ejected(&lb), ["a"]);
    // 1 of 2 healthy is below 60%: panic mode serves the ejected one too.
    assert_eq!(counts(&lb, 10).len(), 2);
}

#[test]
fn slow_start_shares_at_chosen_points_of_the_window() {
    let clock = ManualClock::new();
    let lb = WeightedRoundRobin::builder()
        .health(
            HealthConfig::new()
                .clock(clock.clone())
                .slow_start(SlowStart::new(Duration::from_secs(100))),
        )
        .build(backends(&["a", "b"]))
        .unwrap();
    // The initial set is not ramped.
    assert_eq!(
        counts(&lb, 1000),
        BTreeMap::from([("a".into(), 500), ("b".into(), 500)])
    );
    lb.update(backends(&["a", "b", "c"])).unwrap();
    // Linear ramp from 10%: effective weights 1 : 1 : max(0.1, t / window). Each count below
    // is over whole periods of the exact schedule.
    for (seconds, share_of_c) in [(0, 0.1), (25, 0.25), (50, 0.5), (75, 0.75), (100, 1.0)] {
        clock.set(Duration::from_secs(seconds));
        let total = 2.0 + share_of_c;
        let n = (total * 1000.0) as usize;
        let got = counts(&lb, n);
        let c = got.get("c").copied().unwrap_or(0) as f64 / n as f64;
        assert!(
            (c - share_of_c / total).abs() < 0.002,
            "t = {seconds} s: c got {c}, expected {}",
            share_of_c / total
        );
    }
}

#[test]
fn returning_from_ejection_ramps_up() {
    let clock = ManualClock::new();
    let lb = WeightedRoundRobin::builder()
        .health(outliers(&clock, 50.0).slow_start(SlowStart {
            window: Duration::from_secs(10),
            aggression: 1.0,
            min_weight_percent: 20.0,
        }))
        .build(backends(&["a", "b"]))
        .unwrap();
    fail(&lb, "a", 5);
    clock.advance(Duration::from_secs(30));
    // Just back: a at 20% of its weight.
    let got = counts(&lb, 1200);
    assert_eq!(got["a"], 200, "{got:?}");
    clock.advance(Duration::from_secs(10));
    assert_eq!(counts(&lb, 1000)["a"], 500);
}

#[test]
fn least_connections_respects_ejection_and_slow_start() {
    let clock = ManualClock::new();
    let lb = LeastConnections::builder()
        .health(outliers(&clock, 50.0).slow_start(SlowStart {
            window: Duration::from_secs(10),
            aggression: 1.0,
            min_weight_percent: 20.0,
        }))
        .build(backends(&["a", "b"]))
        .unwrap();
    fail(&lb, "b", 5);
    let held: Vec<_> = (0..10).map(|_| lb.pick(&Request::new()).unwrap()).collect();
    assert!(held.iter().all(|p| p.id() == "a"), "ejected b got a pick");
    drop(held);
    let on = |held: &[lbkit::Pick<()>], id: &str| held.iter().filter(|p| p.id() == id).count();
    // Back after the base ejection time, b ramps from 20% of its weight: held picks go by
    // in-flight per effective weight, so b takes one for every five of a's. (At full weight
    // it would take half.)
    clock.advance(Duration::from_secs(30));
    let mut held: Vec<_> = (0..12).map(|_| lb.pick(&Request::new()).unwrap()).collect();
    assert_eq!(
        (on(&held, "a"), on(&held, "b")),
        (10, 2),
        "b ramping at 20%"
    );
    // Halfway through the ramp, b at 50%: 6 more picks bring the counts to 12 : 6.
    clock.advance(Duration::from_secs(5));
    held.extend((0..6).map(|_| lb.pick(&Request::new()).unwrap()));
    assert_eq!(
        (on(&held, "a"), on(&held, "b")),
        (12, 6),
        "b ramping at 50%"
    );
    // Ramp over: b at full weight, 6 more picks even the counts.
    clock.advance(Duration::from_secs(5));
    held.extend((0..6).map(|_| lb.pick(&Request::new()).unwrap()));
    assert_eq!(
        (on(&held, "a"), on(&held, "b")),
        (12, 12),
        "b at full weight"
    );
}

#[test]
fn peak_ewma_avoids_a_slow_backend_and_retries_it_after_decay() {
    let clock = ManualClock::new();
    let lb = PeakEwma::builder()
        .decay(Duration::from_secs(10))
        .seed(3)
        .health(HealthConfig::new().clock(clock.clone()))
        .build(backends(&["fast", "slow"]))
        .unwrap();
    let serve = |lb: &PeakEwma<()>, rounds: usize| -> BTreeMap<String, usize> {
        let mut got = BTreeMap::new();
        for _ in 0..rounds {
            let pick = lb.pick(&Request::new()).unwrap();
            let latency = if pick.id() == "slow" { 500 } else { 5 };
            *got.entry(pick.id().to_owned()).or_default() += 1;
            clock.advance(Duration::from_millis(10));
            pick.success(Duration::from_millis(latency));
        }
        got
    };
    // Once each has been observed, the slow one gets (almost) nothing.
    serve(&lb, 50);
    let got = serve(&lb, 1000);
    assert!(got.get("slow").copied().unwrap_or(0) <= 5, "{got:?}");
    // Unobserved for a while, its estimate decays below the fast one's: tried again.
    clock.advance(Duration::from_secs(60));
    let got = serve(&lb, 20);
    assert!(got.get("slow").copied().unwrap_or(0) >= 1, "{got:?}");
}

#[test]
fn peak_ewma_weighs_in_flight_load() {
    let lb = PeakEwma::with_seed(backends(&["a", "b"]), 9).unwrap();
    // Equal estimates: the one with fewer in flight wins every time.
    let held: Vec<_> = (0..6).map(|_| lb.pick(&Request::new()).unwrap()).collect();
    let on_a = held.iter().filter(|p| p.id() == "a").count();
    assert_eq!(on_a, 3, "alternates: {held:?}");
}

#[test]
fn bad_health_values_are_rejected_and_change_nothing() {
    let clock = ManualClock::new();
    let lb = RoundRobin::builder()
        .health(outliers(&clock, 50.0))
        .build(backends(&["a", "b"]))
        .unwrap();
    let bad = HealthConfig::new().panic_threshold(f64::NAN);
    assert!(lb.set_health_config(bad).is_err());
    // Still configured as before: five failures eject.
    fail(&lb, "a", 5);
    assert_eq!(ejected(&lb), ["a"]);
    assert!(PeakEwma::builder()
        .decay(Duration::ZERO)
        .build(Vec::<Backend<()>>::new())
        .is_err());
}

#[test]
fn reports_after_removal_are_harmless_and_exact() {
    let clock = ManualClock::new();
    let lb = RoundRobin::builder()
        .health(outliers(&clock, 50.0))
        .build(backends(&["a", "b"]))
        .unwrap();
    let held: Vec<_> = (0..4).map(|_| lb.pick(&Request::new()).unwrap()).collect();
    lb.update(backends(&["b"])).unwrap();
    for pick in held {
        pick.failure();
    }
    assert_eq!(lb.status().len(), 1);
    assert_eq!(lb.status()[0].in_flight(), 0);
}
