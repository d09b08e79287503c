//! The simulation core of `examples/simulate`, included as the example includes it, on a
//! small scenario so the suite stays fast in debug builds.

#[path = "../examples/common/policies.rs"]
mod policies;
#[path = "../examples/simulate/sim.rs"]
mod sim;

use std::collections::HashSet;

use policies::Options;
use sim::{Config, Outcome, Workload};

fn small() -> Config {
    Config {
        seed: 11,
        requests: 20_000,
        backends: 6,
        slow_backends: 1,
        keys: 2_000,
        cache: 100,
        probe_keys: 500,
        samples: 40,
        ..Config::default()
    }
}

fn run_all(config: &Config) -> Vec<Outcome> {
    let workload = Workload::new(config);
    policies::table::<usize>()
        .into_iter()
        .map(|p| {
            let build = |backends, clock| {
                let options = Options {
                    seed: Some(config.seed),
                    bound: None,
                    clock: Some(clock),
                };
                (p.build)(backends, options)
            };
            sim::run(config, &workload, p.name, &build).expect("the policy builds")
        })
        .collect()
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let config = small();
    assert_eq!(
        Workload::new(&config).arrivals,
        Workload::new(&config).arrivals
    );
    let first = run_all(&config);
    assert_eq!(first, run_all(&config));
    let other = run_all(&Config { seed: 12, ..config });
    for (a, b) in first.iter().zip(&other) {
        assert_ne!(a.latencies, b.latencies, "{}: seed had no effect", a.policy);
    }
}

#[test]
fn the_table_has_a_row_per_policy() {
    let outcomes = run_all(&small());
    let table = sim::table(&outcomes);
    let lines: Vec<&str> = table.lines().collect();
    let names: Vec<&str> = policies::table::<usize>().iter().map(|p| p.name).collect();
    assert_eq!(lines.len(), 2 + names.len(), "{table}");
    assert!(lines[0].starts_with("policy") && lines[0].contains("p99.9"));
    assert!(lines[0].contains("moved on fail") && lines[0].contains("moved on join"));
    for (line, name) in lines[2..].iter().zip(&names) {
        assert_eq!(line.split_whitespace().next(), Some(*name), "{table}");
    }
}

#[test]
fn every_request_is_accounted_for_and_in_flight_returns_to_zero() {
    let config = small();
    for o in run_all(&config) {
        assert_eq!(o.in_flight_after, 0, "{}", o.policy);
        assert_eq!(
            o.latencies.len() + o.dropped,
            config.requests,
            "{}",
            o.policy
        );
        assert_eq!(o.dropped, 0, "{}: there was always a backend up", o.policy);
        assert!(o.latencies.windows(2).all(|w| w[0] <= w[1]));
        assert!(o.quantile(0.5) <= o.quantile(0.99) && o.quantile(0.99) <= o.quantile(0.999));
        assert_eq!(o.load.len(), config.samples, "{}", o.policy);
        assert!(
            o.max_in_flight >= 1 && o.mean_in_flight > 0.0,
            "{}",
            o.policy
        );
    }
}

#[test]
fn membership_changes_are_measured_against_their_minimum() {
    let config = small();
    let (failing, _) = config.victims();
    for o in run_all(&config) {
        let changes: Vec<&str> = o.moves.iter().map(|m| m.change).collect();
        assert_eq!(changes, ["fail", "join"], "{}", o.policy);
        // Every key that was on the failed backend had to move: no policy can beat that.
        let fail = &o.moves[0];
        assert!(fail.moved >= fail.minimum, "{}: {fail:?}", o.policy);
        // All weights are capacity weights (3 per normal backend): the joiner's fair share.
        let join = &o.moves[1];
        // Eligible after the join: the starting set less the failed backend (3) plus the
        // joiner (3), so the same total as at the start.
        let total = 3 * (config.backends - config.slow_backends) + config.slow_backends;
        let share = 3.0 / total as f64;
        assert!(
            (join.minimum - share).abs() < 1e-9,
            "{}: {join:?}",
            o.policy
        );
        // The failed backend holds nothing at the end, the joiner appears in the samples.
        let (_, last) = o.load.last().unwrap();
        assert_eq!(last.len(), config.backends + 1);
        assert_eq!(o.backend_ids.len(), config.backends + 1);
        let after_fail = o
            .load
            .iter()
            .filter(|(t, _)| *t > Workload::new(&config).span.mul_f64(0.3));
        assert!(after_fail.clone().count() > 0);
        for (_, row) in after_fail {
            assert_eq!(row[failing], 0, "{}", o.policy);
        }
    }
}

#[test]
fn the_cache_hits_exactly_when_the_backend_served_the_key_recently() {
    // One backend with room for every key: every lookup but each key's first is a hit.
    let config = Config {
        backends: 1,
        slow_backends: 0,
        keys: 300,
        cache: 600,
        fail: false,
        join: false,
        slowdown: None,
        ..small()
    };
    let workload = Workload::new(&config);
    let distinct: HashSet<u32> = workload.arrivals.iter().map(|a| a.key).collect();
    for o in run_all(&config) {
        assert_eq!(o.cache_lookups, config.requests, "{}", o.policy);
        assert_eq!(
            o.cache_hits,
            config.requests - distinct.len(),
            "{}",
            o.policy
        );
        assert!(o.moves.is_empty());
    }
    // Without keys: no cache, no moves, every request still served.
    let config = Config { keys: 0, ..small() };
    for o in run_all(&config) {
        assert_eq!((o.cache_lookups, o.hit_rate()), (0, 0.0), "{}", o.policy);
        assert!(o.moves.is_empty());
        assert_eq!(o.latencies.len(), config.requests);
    }
}

#[test]
fn the_workload_matches_its_configuration() {
    let config = small();
    let w = Workload::new(&config);
    assert_eq!(w.arrivals.len(), config.requests);
    assert!(w.arrivals.windows(2).all(|p| p[0].at <= p[1].at));
    assert!(w.arrivals.iter().all(|a| (a.key as usize) < config.keys));
    // Offered load: workers / mean service time per backend (the slow one 3x slower) x load.
    let capacity = 8.0 / 0.010 * (config.backends - 1) as f64 + 8.0 / 0.030;
    let rate = config.requests as f64 / w.span.as_secs_f64();
    let expected = config.load * capacity;
    assert!(
        (rate / expected - 1.0).abs() < 0.03,
        "rate {rate} vs {expected}"
    );
    // Zipf: key 0 is the most popular, by about H(n)-normalised 1/rank^s.
    let hot = w.arrivals.iter().filter(|a| a.key == 0).count() as f64 / config.requests as f64;
    let norm: f64 = (1..=config.keys)
        .map(|r| (r as f64).powf(-config.zipf))
        .sum();
    assert!((hot * norm - 1.0).abs() < 0.1, "key 0 share {hot}");
}

#[test]
fn bad_configurations_are_refused() {
    assert_eq!(small().check(), Ok(()));
    assert_eq!(Config::default().check(), Ok(()));
    let bad = [
        Config {
            backends: 0,
            ..small()
        },
        Config {
            slow_backends: 7,
            ..small()
        },
        Config {
            workers: 0,
            ..small()
        },
        Config {
            load: 0.0,
            ..small()
        },
        Config {
            load: f64::NAN,
            ..small()
        },
        Config {
            slow_factor: -1.0,
            ..small()
        },
        Config {
            slowdown: Some(f64::INFINITY),
            ..small()
        },
        Config {
            zipf: -0.5,
            ..small()
        },
        Config {
            hit_time: std::time::Duration::ZERO,
            ..small()
        },
    ];
    for config in bad {
        assert!(config.check().is_err(), "{config:?}");
    }
}
