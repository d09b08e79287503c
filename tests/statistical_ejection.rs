//! Success-rate and failure-percentage ejection (gRFC A50), through the public API with a
//! `ManualClock`: the vectors of grpc-go's and Envoy's own tests (see each test), the cap,
//! the multiplier, the enforcement draw, the sweep that only a pick runs, and bad input.
//!
//! Reports are steered to a backend with `Request::prefer`, and each interval ends with the
//! clock moved past it and one pick, which runs the sweep.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use lbkit::{
    Backend, Balancer, Clock, Error, FailurePercentageEjection, HealthConfig, ManualClock,
};
use lbkit::{OutlierDetection, Request, RoundRobin, SuccessRateEjection};

const INTERVAL: Duration = Duration::from_secs(10);

/// Statistical rules only (no consecutive-failure rule, as in gRPC), capped at this share.
fn rules(max_ejection_percent: f64) -> OutlierDetection {
    OutlierDetection {
        consecutive_failures: u32::MAX,
        max_ejection_percent,
        interval: INTERVAL,
        ..OutlierDetection::default()
    }
}

fn balancer(n: usize, clock: &ManualClock, rules: OutlierDetection) -> RoundRobin<()> {
    RoundRobin::builder()
        .health(
            HealthConfig::new()
                .clock(clock.clone())
                .outlier_detection(rules),
        )
        .build((0..n).map(|i| Backend::new(format!("h{i}"), ())))
        .unwrap()
}

/// Reports `ok` successes and `failed` failures on backend `id`.
fn report(lb: &dyn Balancer<()>, id: &str, ok: usize, failed: usize) {
    for k in 0..ok + failed {
        let pick = lb.pick(&Request::new().prefer(id)).unwrap();
        assert_eq!(pick.id(), id, "prefer reaches the backend");
        if k < ok {
            pick.success(Duration::from_millis(1));
        } else {
            pick.failure();
        }
    }
}

/// Ends the interval: the clock moves past it and one pick runs the sweep.
fn end_interval(lb: &dyn Balancer<()>, clock: &ManualClock) {
    clock.advance(INTERVAL);
    drop(lb.pick(&Request::new()));
}

fn ejected(lb: &dyn Balancer<()>) -> BTreeSet<String> {
    lb.status()
        .iter()
        .filter(|s| s.is_ejected())
        .map(|s| s.id().to_owned())
        .collect()
}

fn ids(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Runs one interval of `(successes, failures)` per backend h0, h1, ...; returns who is
/// ejected after the sweep.
fn interval(
    lb: &dyn Balancer<()>,
    clock: &ManualClock,
    counts: &[(usize, usize)],
) -> BTreeSet<String> {
    for (i, &(ok, failed)) in counts.iter().enumerate() {
        report(lb, &format!("h{i}"), ok, failed);
    }
    end_interval(lb, clock);
    ejected(lb)
}

fn failure_percentage(
    threshold: u32,
    minimum_hosts: u32,
    request_volume: u32,
) -> FailurePercentageEjection {
    FailurePercentageEjection {
        threshold,
        minimum_hosts,
        request_volume,
        ..FailurePercentageEjection::default()
    }
}

#[test]
fn grpc_go_failure_percentage_vectors() {
    // grpc-go balancer_test.go, TestEjectUnejectSuccessRate (whose cases configure failure
    // percentage): threshold 50, 3 hosts, volume 3, 5 calls per host per phase.
    let cases: [(&str, f64, u32, &[&str]); 3] = [
        ("three_upstreams_one_failure", 10.0, 100, &["h2"]),
        ("no_ejection_enforcement_percentage", 10.0, 0, &[]),
        // grpc-go ejects none at a cap of 0; lbkit, as grpc C++, always allows the first.
        ("max_ejection_percent_0", 0.0, 100, &["h2"]),
    ];
    for (name, cap, enforcement, expected) in cases {
        let clock = ManualClock::new();
        let fp = FailurePercentageEjection {
            enforcement_percentage: enforcement,
            ..failure_percentage(50, 3, 3)
        };
        let lb = balancer(
            3,
            &clock,
            OutlierDetection {
                failure_percentage: Some(fp),
                ..rules(cap)
            },
        );
        // Phase 1: everyone succeeds.
        assert!(
            interval(&lb, &clock, &[(5, 0), (5, 0), (5, 0)]).is_empty(),
            "{name}"
        );
        // Phase 2: h2 fails everything.
        assert_eq!(
            interval(&lb, &clock, &[(5, 0), (5, 0), (0, 5)]),
            ids(expected),
            "{name}"
        );
        // Phase 3: 1000 s later every ejection is over.
        clock.advance(Duration::from_secs(1000));
        drop(lb.pick(&Request::new()));
        assert!(ejected(&lb).is_empty(), "{name}");
    }
    // three_upstreams_no_failure
    let clock = ManualClock::new();
    let lb = balancer(
        3,
        &clock,
        OutlierDetection {
            failure_percentage: Some(failure_percentage(50, 3, 3)),
            ..rules(10.0)
        },
    );
    assert!(interval(&lb, &clock, &[(5, 0), (5, 0), (5, 0)]).is_empty());
    assert!(interval(&lb, &clock, &[(5, 0), (5, 0), (5, 0)]).is_empty());
}

fn success_rate(stdev_factor: u32, minimum_hosts: u32, request_volume: u32) -> SuccessRateEjection {
    SuccessRateEjection {
        stdev_factor,
        minimum_hosts,
        request_volume,
        ..SuccessRateEjection::default()
    }
}

#[test]
fn grpc_go_success_rate_vectors() {
    // grpc-go balancer_test.go, TestEjectFailureRate (which configures success rate): stdev
    // factor 500, 3 hosts, volume 3: rates 1, 1, 0 give a threshold of 0.431, h2 is ejected.
    // With the default factor 1900 the threshold is -0.229: nothing is.
    for (factor, expected) in [(500, ids(&["h2"])), (1900, ids(&[]))] {
        let clock = ManualClock::new();
        let lb = balancer(
            3,
            &clock,
            OutlierDetection {
                success_rate: Some(success_rate(factor, 3, 3)),
                ..rules(10.0)
            },
        );
        assert!(interval(&lb, &clock, &[(5, 0), (5, 0), (5, 0)]).is_empty());
        assert_eq!(
            interval(&lb, &clock, &[(5, 0), (5, 0), (0, 5)]),
            expected,
            "{factor}"
        );
    }
}

#[test]
fn envoy_success_rate_vector_and_the_ejection_timeline() {
    // Envoy outlier_detection_impl_test.cc, BasicFlowSuccessRateExternalOrigin: 5 hosts,
    // 200 calls each, h4 at 50%: mean 90%, stdev 20%, threshold 52%: h4 ejected.
    let clock = ManualClock::new();
    let lb = balancer(
        5,
        &clock,
        OutlierDetection {
            success_rate: Some(SuccessRateEjection::default()),
            ..rules(100.0)
        },
    );
    let counts = [(200, 0), (200, 0), (200, 0), (200, 0), (200, 200)];
    assert_eq!(interval(&lb, &clock, &counts), ids(&["h4"]));
    // Ejected at t = 10 s for 30 s (base x 1): still out at 39 s, back at 40 s.
    clock.advance(Duration::from_secs(29));
    drop(lb.pick(&Request::new()));
    assert_eq!(ejected(&lb), ids(&["h4"]));
    clock.advance(Duration::from_secs(1));
    drop(lb.pick(&Request::new()));
    assert!(ejected(&lb).is_empty());
    // Envoy's second phase: 25 successes each, h4 also 25 failures: below the volume of 100,
    // so nothing is judged.
    clock.set(Duration::from_secs(60));
    drop(lb.pick(&Request::new()));
    let counts = [(25, 0), (25, 0), (25, 0), (25, 0), (25, 25)];
    assert!(interval(&lb, &clock, &counts).is_empty());
}

#[test]
fn envoy_failure_percentage_vector_and_the_strict_threshold() {
    // Envoy BasicFlowFailurePercentageExternalOrigin: threshold 85, volume 50, 5 hosts: h3 at
    // 83.3% stays, h4 at 85.7% is ejected.
    let clock = ManualClock::new();
    let lb = balancer(
        5,
        &clock,
        OutlierDetection {
            failure_percentage: Some(FailurePercentageEjection::default()),
            ..rules(100.0)
        },
    );
    let counts = [(50, 0), (50, 0), (50, 0), (50, 250), (50, 300)];
    assert_eq!(interval(&lb, &clock, &counts), ids(&["h4"]));
    // Exactly 85%: Envoy ejects (>=), gRFC A50 and both gRPCs do not (>): lbkit follows A50.
    let clock = ManualClock::new();
    let lb = balancer(
        5,
        &clock,
        OutlierDetection {
            failure_percentage: Some(FailurePercentageEjection::default()),
            ..rules(100.0)
        },
    );
    let counts = [(100, 0), (100, 0), (100, 0), (100, 0), (15, 85)];
    assert!(interval(&lb, &clock, &counts).is_empty());
}

#[test]
fn derived_success_rate_vectors() {
    // Population mean and stdev over the hosts with volume; factor 1900.
    type Case<'a> = (&'a [(usize, usize)], &'a [&'a str]);
    let cases: [Case; 3] = [
        // rates 1, 1, 1, 1, 0: threshold 0.04.
        (&[(100, 0), (100, 0), (100, 0), (100, 0), (0, 100)], &["h4"]),
        // .95 .96 .97 .98 .50: threshold 0.518.
        (&[(95, 5), (96, 4), (97, 3), (98, 2), (50, 50)], &["h4"]),
        // Every rate equal: stdev 0, nothing strictly below the mean.
        (&[(90, 10), (90, 10), (90, 10), (90, 10), (90, 10)], &[]),
    ];
    for (counts, expected) in cases {
        let clock = ManualClock::new();
        let lb = balancer(
            5,
            &clock,
            OutlierDetection {
                success_rate: Some(SuccessRateEjection::default()),
                ..rules(100.0)
            },
        );
        assert_eq!(interval(&lb, &clock, counts), ids(expected), "{counts:?}");
    }
}

#[test]
fn volume_and_minimum_hosts_gate_the_rules() {
    let clock = ManualClock::new();
    let lb = balancer(
        5,
        &clock,
        OutlierDetection {
            success_rate: Some(SuccessRateEjection::default()),
            failure_percentage: Some(FailurePercentageEjection::default()),
            ..rules(100.0)
        },
    );
    // Only 4 hosts reach the volume: below minimum_hosts 5 for both rules, although h3
    // fails everything.
    let counts = [(200, 0), (200, 0), (200, 0), (0, 200), (10, 0)];
    assert!(interval(&lb, &clock, &counts).is_empty());
    // The same with the fifth host at volume: h3 goes (both rules flag it; it is ejected once).
    let counts = [(200, 0), (200, 0), (200, 0), (0, 200), (200, 0)];
    assert_eq!(interval(&lb, &clock, &counts), ids(&["h3"]));
    let h3 = lb.status().into_iter().find(|s| s.id() == "h3").unwrap();
    assert!(h3.is_ejected());
}

#[test]
fn the_cap_stops_ejections_and_counts_both_rules() {
    // 20 hosts, 3 that fail everything, cap 10%: the first ejection is allowed (0%), the
    // second (5% < 10%), not the third (10%). Candidates go in id order (byte-wise: h15 before
    // h3 before h9).
    let clock = ManualClock::new();
    let lb = balancer(
        20,
        &clock,
        OutlierDetection {
            success_rate: Some(SuccessRateEjection::default()),
            failure_percentage: Some(FailurePercentageEjection::default()),
            ..rules(10.0)
        },
    );
    let mut counts = vec![(100, 0); 20];
    for bad in [3, 9, 15] {
        counts[bad] = (0, 100);
    }
    assert_eq!(interval(&lb, &clock, &counts), ids(&["h15", "h3"]));
}

#[test]
fn the_multiplier_grows_with_each_ejection_and_decays_by_interval() {
    let clock = ManualClock::new();
    let lb = balancer(
        3,
        &clock,
        OutlierDetection {
            failure_percentage: Some(failure_percentage(50, 3, 3)),
            ..rules(100.0)
        },
    );
    let bad = [(5, 0), (5, 0), (0, 5)];
    // t = 10: ejected for 30 s.
    assert_eq!(interval(&lb, &clock, &bad), ids(&["h2"]));
    clock.set(Duration::from_secs(40));
    drop(lb.pick(&Request::new()));
    assert!(ejected(&lb).is_empty());
    // Fails again in the interval ending at 50: second ejection, 60 s.
    clock.set(Duration::from_secs(40));
    assert_eq!(interval(&lb, &clock, &bad), ids(&["h2"]));
    clock.set(Duration::from_secs(109));
    drop(lb.pick(&Request::new()));
    assert_eq!(ejected(&lb), ids(&["h2"]), "60 s this time");
    clock.set(Duration::from_secs(110));
    drop(lb.pick(&Request::new()));
    assert!(ejected(&lb).is_empty());
    // Two good intervals (the multiplier 2 -> 0), then a failure: 30 s again.
    let good = [(5, 0), (5, 0), (5, 0)];
    assert!(interval(&lb, &clock, &good).is_empty());
    assert!(interval(&lb, &clock, &good).is_empty());
    assert!(interval(&lb, &clock, &good).is_empty());
    assert_eq!(interval(&lb, &clock, &bad), ids(&["h2"]));
    let out_at = clock.now();
    clock.set(out_at + Duration::from_secs(30));
    drop(lb.pick(&Request::new()));
    assert!(
        ejected(&lb).is_empty(),
        "the multiplier decayed back to 0: 30 s"
    );
}

#[test]
fn enforcement_draws_are_replayable_and_near_their_percentage() {
    // 200 balancers, each with one outlier of its own id; enforcement 50%: about half are
    // ejected, and the same run ejects the same ones.
    let run = || -> Vec<bool> {
        (0..200)
            .map(|k| {
                let clock = ManualClock::new();
                let lb = RoundRobin::builder()
                    .health(HealthConfig::new().clock(clock.clone()).outlier_detection(
                        OutlierDetection {
                            failure_percentage: Some(FailurePercentageEjection {
                                enforcement_percentage: 50,
                                ..failure_percentage(50, 3, 3)
                            }),
                            ..rules(100.0)
                        },
                    ))
                    .build(["a", "b", &format!("bad-{k}")].map(|id| Backend::new(id, ())))
                    .unwrap();
                report(&lb, "a", 5, 0);
                report(&lb, "b", 5, 0);
                report(&lb, &format!("bad-{k}"), 0, 5);
                end_interval(&lb, &clock);
                !ejected(&lb).is_empty()
            })
            .collect()
    };
    let first = run();
    let ejections = first.iter().filter(|&&e| e).count();
    assert!((70..=130).contains(&ejections), "{ejections} of 200");
    assert_eq!(first, run());
}

#[test]
fn reports_before_the_rules_and_picks_without_reports_do_not_count() {
    let clock = ManualClock::new();
    let lb = balancer(3, &clock, rules(100.0));
    // No statistical rule yet: these failures are not counted for them.
    report(&lb, "h2", 0, 50);
    lb.set_health_config(HealthConfig::new().clock(clock.clone()).outlier_detection(
        OutlierDetection {
            failure_percentage: Some(failure_percentage(50, 3, 3)),
            ..rules(100.0)
        },
    ))
    .unwrap();
    // Picks dropped without a report count for nothing either.
    for _ in 0..20 {
        drop(lb.pick(&Request::new().prefer("h2")));
    }
    // Had any of those counted, h2 would be far above the threshold.
    assert!(interval(&lb, &clock, &[(5, 0), (5, 0), (5, 0)]).is_empty());
    assert_eq!(
        interval(&lb, &clock, &[(5, 0), (5, 0), (0, 5)]),
        ids(&["h2"])
    );
}

#[test]
fn no_sweep_runs_without_a_pick_and_a_late_one_covers_the_whole_time() {
    let clock = ManualClock::new();
    let lb = balancer(
        3,
        &clock,
        OutlierDetection {
            failure_percentage: Some(failure_percentage(50, 3, 3)),
            ..rules(100.0)
        },
    );
    report(&lb, "h0", 5, 0);
    report(&lb, "h1", 5, 0);
    report(&lb, "h2", 0, 5);
    // Five intervals pass with no pick: the first pick (or status read) after them runs one
    // sweep over everything reported since the last, and h2 is out for the base time from
    // then (not from when the first interval ended).
    clock.advance(INTERVAL * 5);
    drop(lb.pick(&Request::new()));
    assert_eq!(ejected(&lb), ids(&["h2"]));
    clock.advance(Duration::from_secs(29));
    assert_eq!(ejected(&lb), ids(&["h2"]));
    clock.advance(Duration::from_secs(1));
    assert!(ejected(&lb).is_empty());
}

#[test]
fn bad_statistical_settings_are_typed_errors_and_change_nothing() {
    let clock = ManualClock::new();
    let good = OutlierDetection {
        failure_percentage: Some(failure_percentage(50, 3, 3)),
        ..rules(100.0)
    };
    let lb = balancer(3, &clock, good);
    let bad = [
        (
            OutlierDetection {
                interval: Duration::ZERO,
                ..good
            },
            "interval",
        ),
        (
            OutlierDetection {
                failure_percentage: Some(failure_percentage(101, 3, 3)),
                ..good
            },
            "failure_percentage.threshold",
        ),
        (
            OutlierDetection {
                failure_percentage: Some(FailurePercentageEjection {
                    enforcement_percentage: 101,
                    ..failure_percentage(50, 3, 3)
                }),
                ..good
            },
            "failure_percentage.enforcement_percentage",
        ),
        (
            OutlierDetection {
                success_rate: Some(SuccessRateEjection {
                    stdev_factor: 0,
                    ..SuccessRateEjection::default()
                }),
                ..good
            },
            "success_rate.stdev_factor",
        ),
        (
            OutlierDetection {
                success_rate: Some(SuccessRateEjection {
                    enforcement_percentage: u32::MAX,
                    ..SuccessRateEjection::default()
                }),
                ..good
            },
            "success_rate.enforcement_percentage",
        ),
        (
            OutlierDetection {
                max_ejection_percent: f64::NAN,
                ..good
            },
            "max_ejection_percent",
        ),
    ];
    for (rules, name) in bad {
        let config = HealthConfig::new()
            .clock(clock.clone())
            .outlier_detection(rules);
        match lb.set_health_config(config.clone()) {
            Err(Error::InvalidConfig { parameter, .. }) => assert_eq!(parameter, name),
            other => panic!("{name}: {other:?}"),
        }
        match RoundRobin::builder()
            .health(config)
            .build([Backend::new("a", ())])
        {
            Err(Error::InvalidConfig { parameter, .. }) => assert_eq!(parameter, name),
            other => panic!("{name}: {:?}", other.map(|_| ())),
        }
    }
    // The balancer kept its rules: the failing backend is still ejected by them.
    assert_eq!(
        interval(&lb, &clock, &[(5, 0), (5, 0), (0, 5)]),
        ids(&["h2"])
    );
}

#[test]
fn every_policy_ejects_by_success_rate() {
    for policy in common::POLICIES {
        let clock = ManualClock::new();
        let lb = (policy.new_unit)(
            (0..5).map(|i| Backend::new(format!("h{i}"), ())).collect(),
            3,
        )
        .unwrap();
        lb.set_health_config(HealthConfig::new().clock(clock.clone()).outlier_detection(
            OutlierDetection {
                success_rate: Some(SuccessRateEjection::default()),
                ..rules(100.0)
            },
        ))
        .unwrap();
        let counts = [(200, 0), (200, 0), (200, 0), (200, 0), (200, 200)];
        assert_eq!(
            interval(&*lb, &clock, &counts),
            ids(&["h4"]),
            "{}",
            policy.name
        );
        assert!(
            (0..200).all(|_| lb.pick(&Request::new()).unwrap().id() != "h4"),
            "{}",
            policy.name
        );
        assert!(lb.status().iter().all(|s| s.in_flight() == 0));
    }
}

#[test]
fn a_new_interval_counts_from_the_last_sweep_as_grpc_go_restarts_its_timer() {
    // grpc-go TestDurationOfInterval: an 8 s interval, then 5 s later a 9 s one: the next
    // sweep comes 9 s after the last (at 9 s), not 9 s after the change.
    let clock = ManualClock::new();
    let rules = |interval: u64| OutlierDetection {
        interval: Duration::from_secs(interval),
        failure_percentage: Some(failure_percentage(50, 3, 3)),
        ..rules(100.0)
    };
    let config = HealthConfig::new().clock(clock.clone());
    let lb = RoundRobin::builder()
        .health(config.clone().outlier_detection(rules(8)))
        .build((0..3).map(|i| Backend::new(format!("h{i}"), ())))
        .unwrap();
    report(&lb, "h0", 5, 0);
    report(&lb, "h1", 5, 0);
    report(&lb, "h2", 0, 5);
    clock.set(Duration::from_secs(5));
    // The same clock (a clone of the configuration): the sweeps go on, rescheduled.
    lb.set_health_config(config.outlier_detection(rules(9)))
        .unwrap();
    clock.set(Duration::from_millis(8_999));
    assert!(ejected(&lb).is_empty(), "no sweep before 9 s");
    clock.set(Duration::from_secs(9));
    assert_eq!(ejected(&lb), ids(&["h2"]), "the sweep at 9 s");
}

#[test]
fn the_cap_counts_ejections_of_earlier_sweeps() {
    // 10 hosts, cap 10%: h3 is ejected at the first sweep (the first is always allowed); at
    // the next, h3 still out (10% ejected), h7 failing everything is not.
    let clock = ManualClock::new();
    let lb = balancer(
        10,
        &clock,
        OutlierDetection {
            failure_percentage: Some(failure_percentage(50, 5, 5)),
            ..rules(10.0)
        },
    );
    let mut counts = vec![(10, 0); 10];
    counts[3] = (0, 10);
    assert_eq!(interval(&lb, &clock, &counts), ids(&["h3"]));
    let mut counts = vec![(10, 0); 10];
    counts[3] = (0, 0);
    counts[7] = (0, 10);
    assert_eq!(interval(&lb, &clock, &counts), ids(&["h3"]));
}

#[test]
fn a_late_sweep_decays_the_multiplier_by_every_interval_it_covers() {
    let clock = ManualClock::new();
    let lb = balancer(
        3,
        &clock,
        OutlierDetection {
            failure_percentage: Some(failure_percentage(50, 3, 3)),
            ..rules(100.0)
        },
    );
    let bad = [(5, 0), (5, 0), (0, 5)];
    let at = |clock: &ManualClock, secs: u64| {
        clock.set(Duration::from_secs(secs));
        drop(lb.pick(&Request::new()));
    };
    // Ejected twice: 30 s from 10 s, then 60 s from 50 s (the multiplier is 2).
    assert_eq!(interval(&lb, &clock, &bad), ids(&["h2"]));
    at(&clock, 40);
    assert_eq!(interval(&lb, &clock, &bad), ids(&["h2"]));
    at(&clock, 110);
    assert!(ejected(&lb).is_empty());
    // No pick for 30 s: the one at 140 runs one sweep over three intervals, and the
    // multiplier falls by three (to 0), so the next ejection lasts 30 s again.
    at(&clock, 140);
    assert_eq!(interval(&lb, &clock, &bad), ids(&["h2"]));
    at(&clock, 150 + 29);
    assert_eq!(ejected(&lb), ids(&["h2"]));
    at(&clock, 150 + 30);
    assert!(
        ejected(&lb).is_empty(),
        "30 s: the late sweep decayed the multiplier fully"
    );
}
