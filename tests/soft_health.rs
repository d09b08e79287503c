//! Soft health (`HealthConfig::soft_health`): a multiplier on effective weight, cut at once
//! for a backend slower or failing more than its peers, recovered gradually, never an
//! ejection. Driven with a `ManualClock`, through the public API.

mod common;

use std::time::Duration;

use common::POLICIES;
use lbkit::{
    Backend, Balancer, Error, HealthConfig, Maglev, ManualClock, Request, SoftHealth,
    WeightedRoundRobin,
};

const IDS: [&str; 4] = ["a", "b", "c", "slow"];

fn config(clock: &ManualClock) -> HealthConfig {
    HealthConfig::new()
        .clock(clock.clone())
        .soft_health(SoftHealth::default())
}

/// `n` picks, each reported a success after 10 ms, or `slow_ms` on "slow". Returns how many
/// went to "slow".
fn serve(lb: &dyn Balancer<()>, n: usize, slow_ms: u64) -> usize {
    let mut slow = 0;
    for _ in 0..n {
        let pick = lb.pick(&Request::new()).unwrap();
        let ms = if pick.id() == "slow" {
            slow += 1;
            slow_ms
        } else {
            10
        };
        pick.success(Duration::from_millis(ms));
    }
    slow
}

fn multiplier(lb: &dyn Balancer<()>, id: &str) -> f64 {
    lb.status()
        .iter()
        .find(|s| s.id() == id)
        .unwrap()
        .soft_health()
}

#[test]
fn a_slow_backend_loses_weight_at_once_and_regains_it_gradually() {
    let clock = ManualClock::new();
    let lb = WeightedRoundRobin::builder()
        .health(config(&clock))
        .build(IDS.map(|id| Backend::new(id, ())))
        .unwrap();
    // First interval: "slow" answers in 40 ms, the others in 10: a quarter of the weight.
    assert_eq!(serve(&lb, 400, 40), 100);
    clock.advance(Duration::from_secs(1));
    let shed = serve(&lb, 1300, 40);
    assert_eq!(multiplier(&lb, "slow"), 0.25);
    // Weights 4 : 4 : 4 : 1 -> 100 of 1300.
    assert_eq!(shed, 100);
    // Still 4x slower (with 100 reports, enough to judge): cut again, to a sixteenth.
    clock.advance(Duration::from_secs(1));
    serve(&lb, 100, 40);
    assert_eq!(multiplier(&lb, "slow"), 0.0625);
    // Once more: the 0.05 floor.
    serve(&lb, 1000, 40);
    clock.advance(Duration::from_secs(1));
    serve(&lb, 4, 40);
    // 0.05 in 2^-16 units, rounded.
    assert_eq!(multiplier(&lb, "slow"), 3277.0 / 65536.0);
    // Healthy again: times 3/2 per interval, from the floor back to 1 in 8 intervals.
    let mut seen = Vec::new();
    for _ in 0..9 {
        clock.advance(Duration::from_secs(1));
        serve(&lb, 800, 10);
        seen.push(multiplier(&lb, "slow"));
    }
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert!(seen[0] < 0.08 && seen[1] < 0.12, "gradual: {seen:?}");
    assert!(seen[6] < 1.0, "gradual: {seen:?}");
    assert_eq!(*seen.last().unwrap(), 1.0, "{seen:?}");
    // It was never ejected, never out.
    assert!(lb.status().iter().all(|s| s.is_eligible()));
}

#[test]
fn failures_cut_the_weight_by_the_square_of_the_success_ratio() {
    let clock = ManualClock::new();
    let lb = WeightedRoundRobin::builder()
        .health(config(&clock))
        .build(IDS.map(|id| Backend::new(id, ())))
        .unwrap();
    for i in 0..400 {
        let pick = lb.pick(&Request::new()).unwrap();
        // "slow" fails half its requests (fast).
        if pick.id() == "slow" && i % 8 == 3 {
            pick.failure();
        } else {
            pick.success(Duration::from_millis(10));
        }
    }
    clock.advance(Duration::from_secs(1));
    lb.pick(&Request::new())
        .unwrap()
        .success(Duration::from_millis(10));
    // 50% successes against 100%: 0.5^2 = 0.25.
    assert_eq!(multiplier(&lb, "slow"), 0.25);
}

#[test]
fn a_backend_in_the_tolerance_band_keeps_its_weight() {
    let clock = ManualClock::new();
    let lb = WeightedRoundRobin::builder()
        .health(config(&clock))
        .build(IDS.map(|id| Backend::new(id, ())))
        .unwrap();
    for _ in 0..5 {
        // 14 ms against 10: within 1.5x.
        serve(&lb, 400, 14);
        clock.advance(Duration::from_secs(1));
    }
    serve(&lb, 4, 14);
    assert_eq!(multiplier(&lb, "slow"), 1.0);
}

#[test]
fn bounded_loads_shed_a_slow_backends_keys() {
    // Hold one pick per key; count those on "slow" with its full weight and with a quarter.
    let held_on_slow = |slow_first: bool| {
        let clock = ManualClock::new();
        let lb = Maglev::builder()
            .load_factor(1.25)
            .seed(1)
            .health(config(&clock))
            .build(IDS.map(|id| Backend::new(id, ())))
            .unwrap();
        if slow_first {
            serve(&lb, 400, 40);
            clock.advance(Duration::from_secs(1));
            serve(&lb, 4, 40);
            assert_eq!(multiplier(&lb, "slow"), 0.25);
        }
        let held: Vec<_> = (0..400u32)
            .map(|k| lb.pick(&Request::with_key(&k.to_be_bytes())).unwrap())
            .collect();
        held.iter().filter(|p| p.id() == "slow").count()
    };
    let (full, shed) = (held_on_slow(false), held_on_slow(true));
    // Full weight: about a quarter of 400, at most its 1.25 x share (125). A quarter of the
    // weight: a capacity of 1.25 x 400 x 1/13 (39), so most of its keys spill to the next
    // backends.
    assert!(full > 80 && full <= 125, "{full}");
    assert!(shed <= 39 && shed * 2 < full, "{shed} of {full}");
}

#[test]
fn switching_soft_health_off_restores_every_weight() {
    let clock = ManualClock::new();
    let lb = WeightedRoundRobin::builder()
        .health(config(&clock))
        .build(IDS.map(|id| Backend::new(id, ())))
        .unwrap();
    serve(&lb, 400, 40);
    clock.advance(Duration::from_secs(1));
    serve(&lb, 4, 40);
    assert_eq!(multiplier(&lb, "slow"), 0.25);
    lb.set_health_config(HealthConfig::new().clock(clock.clone()))
        .unwrap();
    assert_eq!(multiplier(&lb, "slow"), 1.0);
    assert_eq!(serve(&lb, 400, 40), 100);
}

#[test]
fn nobody_is_judged_without_volume_or_peers() {
    let clock = ManualClock::new();
    let lb = WeightedRoundRobin::builder()
        .health(config(&clock))
        .build(IDS.map(|id| Backend::new(id, ())))
        .unwrap();
    // 19 reports each: under the volume of 20.
    serve(&lb, 76, 400);
    clock.advance(Duration::from_secs(1));
    serve(&lb, 4, 400);
    assert_eq!(multiplier(&lb, "slow"), 1.0);
}

#[test]
fn bad_soft_health_values_are_typed_errors_and_change_nothing() {
    let bad = [
        SoftHealth {
            interval: Duration::ZERO,
            ..SoftHealth::default()
        },
        SoftHealth {
            request_volume: 0,
            ..SoftHealth::default()
        },
        SoftHealth {
            minimum_hosts: 0,
            ..SoftHealth::default()
        },
        SoftHealth {
            floor: 0.0,
            ..SoftHealth::default()
        },
        SoftHealth {
            floor: 1.5,
            ..SoftHealth::default()
        },
        SoftHealth {
            floor: f64::NAN,
            ..SoftHealth::default()
        },
        SoftHealth {
            latency_tolerance: 0.9,
            ..SoftHealth::default()
        },
        SoftHealth {
            latency_tolerance: f64::INFINITY,
            ..SoftHealth::default()
        },
        SoftHealth {
            failure_tolerance: -0.1,
            ..SoftHealth::default()
        },
        SoftHealth {
            failure_tolerance: f64::NAN,
            ..SoftHealth::default()
        },
    ];
    let clock = ManualClock::new();
    let lb = WeightedRoundRobin::builder()
        .health(config(&clock))
        .build(IDS.map(|id| Backend::new(id, ())))
        .unwrap();
    serve(&lb, 400, 40);
    clock.advance(Duration::from_secs(1));
    serve(&lb, 4, 40);
    for rules in bad {
        let built = WeightedRoundRobin::builder()
            .health(HealthConfig::new().soft_health(rules))
            .build([Backend::new("a", ())]);
        assert!(
            matches!(built, Err(Error::InvalidConfig { .. })),
            "{rules:?}"
        );
        let set = lb.set_health_config(HealthConfig::new().clock(clock.clone()).soft_health(rules));
        assert!(matches!(set, Err(Error::InvalidConfig { .. })), "{rules:?}");
        // Nothing changed: the multiplier stays.
        assert_eq!(multiplier(&lb, "slow"), 0.25);
    }
}

#[test]
fn every_policy_keeps_its_guarantees_with_soft_health() {
    // Every registry policy, with soft health and a slow backend: picks keep coming, nothing
    // leaks, and the multiplier is cut for policies that report through weights.
    for policy in POLICIES {
        let clock = ManualClock::new();
        let lb = (policy.new)(IDS.iter().map(|id| common::backend(id, 1, 0)).collect(), 7).unwrap();
        lb.set_health_config(config(&clock)).unwrap();
        for round in 0..4 {
            for i in 0..400u32 {
                let key = i.to_be_bytes();
                let pick = lb.pick(&Request::with_key(&key)).unwrap();
                let ms = if pick.id() == "slow" { 40 } else { 10 };
                pick.success(Duration::from_millis(ms));
            }
            clock.advance(Duration::from_secs(1));
            let _ = round;
        }
        let status = lb.status();
        assert!(status.iter().all(|s| s.in_flight() == 0), "{}", policy.name);
        assert!(status.iter().all(|s| s.is_eligible()), "{}", policy.name);
        let slow = status.iter().find(|s| s.id() == "slow").unwrap();
        assert!(
            slow.soft_health() <= 1.0 && slow.soft_health() >= 0.05,
            "{}",
            policy.name
        );
    }
}

#[test]
fn the_sweep_runs_when_due_and_only_then() {
    let clock = ManualClock::new();
    let lb = WeightedRoundRobin::builder()
        .health(config(&clock).outlier_detection(lbkit::OutlierDetection {
            consecutive_failures: 1,
            max_ejection_percent: 100.0,
            ..lbkit::OutlierDetection::default()
        }))
        .build(IDS.map(|id| Backend::new(id, ())))
        .unwrap();
    serve(&lb, 400, 40);
    // Half an interval on, a failure asks for a rebuild: that rebuild must not sweep early.
    clock.advance(Duration::from_millis(500));
    lb.pick(&Request::new().prefer("a")).unwrap().failure();
    serve(&lb, 4, 40);
    assert_eq!(
        multiplier(&lb, "slow"),
        1.0,
        "swept before the interval was over"
    );
    // Well past the interval (not exactly on it): it runs.
    clock.advance(Duration::from_millis(1300));
    serve(&lb, 4, 40);
    assert_eq!(multiplier(&lb, "slow"), 0.25);
}

#[test]
fn a_new_interval_reschedules_the_next_sweep() {
    let clock = ManualClock::new();
    let base = config(&clock);
    let lb = WeightedRoundRobin::builder()
        .health(base.clone())
        .build(IDS.map(|id| Backend::new(id, ())))
        .unwrap();
    // The configuration in force with a 10 s interval (a clone keeps the clock, and what was
    // measured): the next sweep is 10 s after the last (the start), not 1 s.
    lb.set_health_config(base.soft_health(SoftHealth {
        interval: Duration::from_secs(10),
        ..SoftHealth::default()
    }))
    .unwrap();
    serve(&lb, 400, 40);
    clock.advance(Duration::from_secs(2));
    serve(&lb, 4, 40);
    assert_eq!(
        multiplier(&lb, "slow"),
        1.0,
        "the old 1 s interval still ran"
    );
    clock.advance(Duration::from_secs(9));
    serve(&lb, 4, 40);
    assert_eq!(multiplier(&lb, "slow"), 0.25);
}
