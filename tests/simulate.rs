//! The simulation core of `examples/simulate` (its modules but the program and the charts),
//! included as the example includes it, on a small scenario so the suite stays fast in debug
//! builds.

#[path = "../examples/simulate/config.rs"]
mod config;
#[path = "../examples/simulate/engine.rs"]
mod engine;
#[path = "../examples/simulate/fleet.rs"]
mod fleet;
#[path = "../examples/common/policies.rs"]
mod policies;
#[path = "../examples/simulate/report.rs"]
mod report;
#[path = "../examples/simulate/tiers.rs"]
mod tiers;
#[path = "../examples/simulate/workload.rs"]
mod workload;

use std::collections::HashSet;

use config::Config;
use policies::Options;
use report::Outcome;
use workload::Workload;

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
    run_some(config, |_| true)
}

/// Runs the policies whose name `wanted` accepts, in table order.
fn run_some(config: &Config, wanted: impl Fn(&str) -> bool) -> Vec<Outcome> {
    let workload = Workload::new(config);
    policies::table::<usize>()
        .into_iter()
        .filter(|p| wanted(p.name))
        .map(|p| {
            let build = |backends, clock, health| {
                let options = Options {
                    seed: Some(config.seed),
                    bound: None,
                    clock: Some(clock),
                    health,
                    // As the program does: the intermittent scenario's "before" has no
                    // Peak EWMA failure penalty.
                    failure_penalty: (config.intermittent && !config.statistical)
                        .then_some(std::time::Duration::ZERO),
                    // And its "after" weighs failures as load for least connections and P2C.
                    failure_load: (config.intermittent && config.statistical)
                        .then_some(std::time::Duration::from_secs(1)),
                    ..Options::default()
                };
                (p.build)(backends, options)
            };
            engine::run(config, &workload, p.name, &build).expect("the policy builds")
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
    let table = report::table(&outcomes);
    let lines: Vec<&str> = table.lines().collect();
    let names: Vec<&str> = policies::table::<usize>().iter().map(|p| p.name).collect();
    assert_eq!(lines.len(), 2 + names.len(), "{table}");
    assert!(lines[0].starts_with("policy") && lines[0].contains("p99.9"));
    assert!(lines[0].contains("moved on fail") && lines[0].contains("moved on join"));
    assert!(!lines[0].contains("failed"), "{table}");
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
            o.latencies.len() + o.dropped + o.failed,
            config.requests,
            "{}",
            o.policy
        );
        assert_eq!(o.dropped, 0, "{}: there was always a backend up", o.policy);
        // Announced, the failure costs only the requests the backend held: each is retried
        // once, elsewhere, and none runs out of tries.
        assert_eq!((o.failed, o.timeouts), (0, 0), "{}", o.policy);
        assert_eq!(o.errors, o.retried, "{}", o.policy);
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
        Config {
            attempts: 0,
            ..small()
        },
        Config {
            timeout: Some(std::time::Duration::ZERO),
            ..small()
        },
        Config {
            pareto_alpha: 0.0,
            ..small()
        },
        Config {
            pareto_cap: 0.5,
            ..small()
        },
    ];
    for config in bad {
        assert!(config.check().is_err(), "{config:?}");
    }
}

/// The policies the passive-health tests compare: the load-aware ones and weighted round
/// robin (load-blind, but with the capacity weights of the scenario).
fn compared(name: &str) -> bool {
    [
        "weighted-round-robin",
        "least-connections",
        "p2c",
        "peak-ewma",
    ]
    .contains(&name)
}

#[test]
fn passive_health_ejects_a_silently_failed_backend() {
    let config = small();
    let before = run_some(&config.passive(false), compared);
    let after = run_some(&config.passive(true), compared);
    for (b, a) in before.iter().zip(&after) {
        for o in [b, a] {
            assert_eq!(o.in_flight_after, 0, "{}", o.policy);
            assert_eq!(
                o.latencies.len() + o.dropped + o.failed,
                config.requests,
                "{}",
                o.policy
            );
            // Unannounced, there is no membership change to measure at the failure.
            let changes: Vec<&str> = o.moves.iter().map(|m| m.change).collect();
            assert_eq!(changes, ["join"], "{}", o.policy);
        }
        // With the health rules, the failed backend is ejected after 5 failures in a row (a
        // few more may be in flight when it is), for longer than the run lasts.
        assert!(a.errors <= 20, "{}: {} errors", a.policy, a.errors);
        assert!(a.failed <= b.failed, "{}", a.policy);
        if b.policy == "peak-ewma" {
            // Without them, Peak EWMA's failure penalty alone keeps it off: each failure
            // costs it 5 s in the estimate, so it is tried again only as that decays.
            assert!(b.errors <= 100, "{}: {} errors", b.policy, b.errors);
            continue;
        }
        // The others, without rules, keep giving it its share of picks until the end:
        // hundreds of errors.
        assert!(b.errors > 200, "{}: {} errors", b.policy, b.errors);
        assert!(
            a.errors + a.timeouts < b.errors + b.timeouts,
            "{}: {a:?} {b:?}",
            a.policy
        );
    }
    // Least connections without health is a black hole: the failed backend answers at once,
    // so it always has the fewest in flight and takes most picks.
    let lc = before
        .iter()
        .find(|o| o.policy == "least-connections")
        .unwrap();
    let p2c = before.iter().find(|o| o.policy == "p2c").unwrap();
    assert!(
        lc.errors > 2 * p2c.errors,
        "{} vs {}",
        lc.errors,
        p2c.errors
    );
    // The same seed replays the same run, health rules included.
    assert_eq!(after, run_some(&config.passive(true), compared));
}

#[test]
fn attempts_that_time_out_are_retried_until_the_tries_run_out() {
    // Every attempt takes 10 ms on average, the client waits 2 ms: most time out.
    let config = Config {
        timeout: Some(std::time::Duration::from_millis(2)),
        attempts: 2,
        fail: false,
        slowdown: None,
        cache: 0,
        ..small()
    };
    for o in run_some(&config, compared) {
        assert_eq!(o.in_flight_after, 0, "{}", o.policy);
        assert_eq!(o.errors, 0, "{}", o.policy);
        assert!(o.timeouts > config.requests / 2, "{}: {o:?}", o.policy);
        // Each request is tried at most twice: one retry per first timeout.
        assert_eq!(o.timeouts, o.retried + o.failed, "{}", o.policy);
        assert!(o.retried <= config.requests, "{}", o.policy);
        assert_eq!(
            o.latencies.len() + o.dropped + o.failed,
            config.requests,
            "{}",
            o.policy
        );
        // A request that succeeded did so on some try within the timeout.
        assert!(
            o.latencies
                .iter()
                .all(|&l| l <= 2 * config.timeout.unwrap()),
            "{}",
            o.policy
        );
    }
}

#[test]
fn the_health_table_pairs_each_policy_before_and_after() {
    let config = Config {
        requests: 5_000,
        ..small()
    };
    let before = run_some(&config.passive(false), |n| n == "p2c" || n == "ring");
    let after = run_some(&config.passive(true), |n| n == "p2c" || n == "ring");
    let pairs: Vec<(Outcome, Outcome)> = before.into_iter().zip(after).collect();
    let (failing, _) = config.victims();
    let failed_at = Workload::new(&config).span.mul_f64(0.3);
    let fresh = run_some(
        &Config {
            avoid_tried: false,
            ..config.passive(false)
        },
        |n| n == "p2c" || n == "ring",
    );
    // A main table gets the failure columns when some request timed out or failed: the
    // ring's keys on the failed backend do, when retries are fresh picks.
    assert!(fresh.iter().any(|o| o.failed > 0));
    let main = report::table(&fresh);
    assert!(
        main.lines()
            .next()
            .unwrap()
            .ends_with("errors timeouts   failed"),
        "{main}"
    );
    let table = report::health_table(&pairs, &fresh, Some((failing, failed_at)));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    let ejected = format!("{} ejected", fleet::backend_id(failing));
    for column in [
        "p99 ms",
        "p99.9 ms",
        "errors",
        "timeouts",
        "failed requests",
        &ejected,
        report::FRESH_COLUMN,
    ] {
        assert!(lines[0].contains(column), "{table}");
    }
    for (((line, (b, a)), name), f) in lines[2..]
        .iter()
        .zip(&pairs)
        .zip(["p2c", "ring"])
        .zip(&fresh)
    {
        assert!(line.ends_with(&format!(" {}", f.failed)), "{table}");
        assert_eq!(line.split_whitespace().next(), Some(name), "{table}");
        let errors = format!("{} -> {}", b.errors, a.errors);
        let failed = format!("{} -> {}", b.failed, a.failed);
        assert!(line.contains(&errors) && line.contains(&failed), "{table}");
        // Without health rules nothing is ever ejected; with them, the failed backend is
        // ejected from soon after it fails (5 errors) to the end of the run, never before.
        assert!(b.ejected.iter().all(|e| e.is_empty()), "{}", b.policy);
        let share = a.ejected_share(failing, failed_at);
        assert!(share > 0.8, "{}: {share}", a.policy);
        assert!(line.contains(&format!("{:.0}% ", share * 100.0)), "{table}");
        let whole_run = a.ejected_share(failing, std::time::Duration::ZERO);
        assert!(whole_run < share * 0.8, "{}: {whole_run} {share}", a.policy);
    }
}

#[test]
fn retries_that_avoid_tried_backends_rescue_the_hashing_policies() {
    // A silently failed backend, no health rules. Retried as fresh picks, each key of a
    // hashing policy that lives on the failed backend goes back there and fails all its
    // tries; avoiding the backends already tried sends the retry to the key's next backend.
    let config = small().passive(false);
    let hashing = |n: &str| ["ring", "maglev", "rendezvous"].contains(&n);
    let fresh = run_some(
        &Config {
            avoid_tried: false,
            ..config.clone()
        },
        hashing,
    );
    let avoiding = run_some(&config, hashing);
    let load_aware = run_some(&config, |n| n == "p2c" || n == "peak-ewma");
    let worst_load_aware = load_aware.iter().map(|o| o.failed).max().unwrap();
    for (f, a) in fresh.iter().zip(&avoiding) {
        assert_eq!(a.in_flight_after, 0, "{}", a.policy);
        assert!(
            f.failed > 100,
            "{}: {} failed with fresh retries",
            f.policy,
            f.failed
        );
        assert!(
            a.failed * 10 < f.failed,
            "{}: {} failed avoiding, {} fresh",
            a.policy,
            a.failed,
            f.failed
        );
        assert!(
            a.failed <= worst_load_aware.max(10),
            "{}: {} failed, the load-aware policies {worst_load_aware}",
            a.policy,
            a.failed
        );
    }
}

#[test]
fn statistical_rules_catch_an_intermittent_failure_that_runs_of_five_miss() {
    // b-flaky fails 10% of what it serves, b-rejecting turns away 20% fast: 5 failures in a
    // row are rare, the success-rate rule sees both.
    // Long enough for several 10 s sweeps after the onset.
    let config = Config {
        requests: 250_000,
        backends: 8,
        flaky_share: 0.1,
        reject_share: 0.2,
        ..small()
    };
    let wanted = |n: &str| n == "weighted-round-robin" || n == "random" || n == "least-connections";
    let before = run_some(&config.intermittent(false), wanted);
    let after = run_some(&config.intermittent(true), wanted);
    let (flaky, _) = config.intermittent_victims();
    let from = Workload::new(&config).span.mul_f64(0.3);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!((b.in_flight_after, a.in_flight_after), (0, 0));
        assert!(b.errors > 0, "{}: the failures happen", b.policy);
        if a.policy == "least-connections" {
            // With its failure penalty, the fast-failing backend stops looking idle before
            // any ejection: far fewer errors than the ejection rules alone give.
            assert!(
                a.errors * 10 < b.errors,
                "{}: {} errors before, {} after",
                a.policy,
                b.errors,
                a.errors
            );
            continue;
        }
        assert!(
            a.errors * 2 < b.errors,
            "{}: {} errors before, {} after",
            a.policy,
            b.errors,
            a.errors
        );
        assert!(
            a.ejected_share(flaky, from) > b.ejected_share(flaky, from),
            "{}",
            a.policy
        );
    }
}

#[test]
fn soft_health_sheds_a_slow_backend_without_ejecting_it() {
    // b-slow turns 4x slower half-way; weighted round robin keeps its share unless something
    // cuts it: with the ejection rules alone its attempts time out and it is ejected, again
    // and again; with soft health its weight falls instead, and it is never ejected.
    let config = Config {
        requests: 200_000,
        backends: 8,
        ..small()
    };
    let wanted = |n: &str| n == "weighted-round-robin";
    let before = run_some(&config.slow_backend(false), wanted);
    let after = run_some(&config.slow_backend(true), wanted);
    let (_, slow) = config.victims();
    let from = Workload::new(&config).span.mul_f64(0.5);
    let table = report::soft_table(
        &before
            .iter()
            .cloned()
            .zip(after.iter().cloned())
            .collect::<Vec<_>>(),
        slow,
        from,
    );
    let (b, a) = (&before[0], &after[0]);
    assert_eq!((b.in_flight_after, a.in_flight_after), (0, 0));
    assert!(
        b.timeouts > 0,
        "the slowdown hurts without soft health:\n{table}"
    );
    assert!(b.ejected_share(slow, from) > 0.0, "{table}");
    assert_eq!(a.ejected_share(slow, from), 0.0, "{table}");
    assert!(a.timeouts * 10 <= b.timeouts, "{table}");
    assert!(a.quantile(0.999) < b.quantile(0.999), "{table}");
}

/// The two-zone scenario on a small run: 20 primary backends (10 per zone), 20 callers.
/// The request policies of the load-report table (`--reports`), with client-side weighted
/// round robin's blackout `blackout` (the small scenario lasts about 6 s of simulated time,
/// under A58's 10 s default).
fn run_reports(config: &Config, blackout: std::time::Duration) -> Vec<Outcome> {
    let workload = Workload::new(config);
    [
        "weighted-round-robin",
        "client-side-weighted-round-robin",
        "p2c",
        "peak-ewma",
    ]
    .into_iter()
    .map(|name| {
        let policy = policies::find::<usize>(name).expect("a registered policy");
        let build = |backends, clock, health| {
            let options = Options {
                seed: Some(config.seed),
                clock: Some(clock),
                health,
                blackout_period: Some(blackout),
                ..Options::default()
            };
            (policy.build)(backends, options)
        };
        engine::run(config, &workload, name, &build).expect("the policy builds")
    })
    .collect()
}

#[test]
fn the_load_report_scenarios_replay_for_a_seed() {
    let blackout = std::time::Duration::from_secs(1);
    for config in [small().reports_slowdown(), small().reports_drift()] {
        let first = run_reports(&config, blackout);
        assert_eq!(first, run_reports(&config, blackout), "{config:?}");
        for o in &first {
            assert_eq!(o.in_flight_after, 0, "{}", o.policy);
            assert_eq!(o.latencies.len(), config.requests, "{}", o.policy);
            assert!(!o.latencies_second_half.is_empty(), "{}", o.policy);
        }
        let table = report::reports_table(&first, None);
        assert_eq!(table.lines().count(), 2 + first.len(), "{table}");
    }
}

#[test]
fn client_side_weights_follow_the_reports_away_from_a_slowed_backend() {
    // One backend turns 4x slower half-way and keeps its configured weight, 3 of 16 here.
    // Weighted round robin keeps sending it that share; client-side weighted round robin
    // reads from its reports that it now serves a quarter as much per unit of utilisation.
    // Three times the small run, so that about 9 s follow the slowdown.
    let config = Config {
        requests: 60_000,
        ..small().reports_slowdown()
    };
    let (_, slowed) = config.victims();
    let outcomes = run_reports(&config, std::time::Duration::from_secs(1));
    let share = |o: &Outcome| {
        let total: usize = o.picks_after_slowdown.iter().sum();
        o.picks_after_slowdown[slowed] as f64 / total as f64
    };
    let (wrr, cswrr) = (&outcomes[0], &outcomes[1]);
    assert_eq!(cswrr.policy, "client-side-weighted-round-robin");
    let capacity = config.capacity_share_after_slowdown(slowed);
    assert!((share(wrr) - 3.0 / 16.0).abs() < 0.01, "{}", share(wrr));
    assert!(
        share(cswrr) < share(wrr) / 2.0 && share(cswrr) < capacity * 2.0,
        "client-side {:.3}, configured {:.3}, capacity {capacity:.3}",
        share(cswrr),
        share(wrr)
    );
    // And the tail after the slowdown follows: WRR's queue on the slowed backend grows for
    // the rest of the run.
    assert!(
        cswrr.quantile_second_half(0.99) * 4 < wrr.quantile_second_half(0.99),
        "{:?} {:?}",
        cswrr.quantile_second_half(0.99),
        wrr.quantile_second_half(0.99)
    );
}

#[test]
fn a_backend_reports_its_busy_share_and_answers_over_the_last_second() {
    use std::time::Duration;
    let config = Config {
        workers: 4,
        keys: 0,
        ..small()
    };
    let mut server = fleet::Server::new(&config, 1.0);
    let arrival = workload::Arrival {
        at: Duration::ZERO,
        key: 0,
        work: 1.0,
    };
    // One worker of four busy from 0.5 s to 2.55 s, one answer at 2.55 s. The window is the
    // buckets of 100 ms from 1.6 s: 0.95 s, one worker busy all of it.
    server.start(&arrival, &config, Duration::from_millis(500));
    assert!(server.release_worker(Duration::from_millis(2550)).is_none());
    let load = server.load(Duration::from_millis(2550), false);
    assert!((load.utilisation - 0.25).abs() < 1e-9, "{load:?}");
    assert!((load.qps - 1.0 / 0.95).abs() < 1e-9, "{load:?}");
    assert_eq!(load.errors_per_second, 0.0);
    // An error answered at once counts as an answer and an error (the window now from 1.7 s:
    // 0.9 s).
    server.answered_error(Duration::from_millis(2600));
    let load = server.load(Duration::from_millis(2600), false);
    assert!((load.qps - 2.0 / 0.9).abs() < 1e-9, "{load:?}");
    assert!(
        (load.errors_per_second - 1.0 / 0.9).abs() < 1e-9,
        "{load:?}"
    );
    // Two seconds later, nothing in the window.
    let idle = server.load(Duration::from_millis(4600), false);
    assert_eq!((idle.utilisation, idle.qps), (0.0, 0.0));
}

#[test]
fn drift_is_seeded_and_bounded() {
    use std::time::Duration;
    let config = small().reports_drift();
    let factor = config.drift.unwrap();
    let a = fleet::Drift::of(&config, 0).unwrap();
    assert_eq!(Some(a), fleet::Drift::of(&config, 0));
    assert_ne!(Some(a), fleet::Drift::of(&config, 1));
    assert!(fleet::Drift::of(&small(), 0).is_none());
    let at: Vec<f64> = (0..600)
        .map(|s| a.at(Duration::from_millis(100 * s)))
        .collect();
    assert!(at
        .iter()
        .all(|&x| x >= 1.0 / factor - 1e-9 && x <= factor + 1e-9));
    // Over 60 s, at least one period of at most 45 s: it reaches near both ends.
    assert!(at.iter().any(|&x| x > factor * 0.95) && at.iter().any(|&x| x < 1.05 / factor));
}

fn small_tiers(requests: usize) -> tiers::Tiers {
    let t = tiers::Tiers::default();
    tiers::Tiers {
        config: Config {
            seed: 5,
            requests,
            ..t.config
        },
        ..t
    }
}

/// One phase of `tiers` with `down` down, under `routing`, with P2C.
fn zone_run(t: &tiers::Tiers, routing: tiers::Routing, down: &[usize]) -> tiers::Measured {
    let phase = tiers::Phase {
        label: "run".into(),
        down: down.to_vec(),
        degraded: Vec::new(),
    };
    let mut measured = tiers::run(t, &t.workload(), "p2c", routing, &[phase]).expect("runs");
    assert_eq!(measured[0].failed, 0);
    measured.remove(0)
}

/// `tiers` under `routing` with `policy`, nothing down, cut into two halves by arrival: what
/// the second half measured, once load-aware routing has had a few update periods to sample
/// (its first second routes as if every zone were idle, and its first sample is taken raw).
fn settled_run(t: &tiers::Tiers, policy: &str, routing: tiers::Routing) -> tiers::Measured {
    let phases: Vec<tiers::Phase> = ["warm-up", "settled"]
        .into_iter()
        .map(|label| tiers::Phase {
            label: label.into(),
            down: Vec::new(),
            degraded: Vec::new(),
        })
        .collect();
    let mut measured = tiers::run(t, &t.workload(), policy, routing, &phases).expect("runs");
    assert!(measured.iter().all(|m| m.failed == 0));
    measured.remove(1)
}

#[test]
fn zone_aware_routing_keeps_traffic_local_while_loads_stay_even() {
    use tiers::Routing::{Flat, LocalOnly, ZoneAware};
    // The bound on the busiest primary backend's picks over the mean: 40,000 requests give
    // each of 20 backends about 2,000 picks, whose noise under P2C is a few percent (flat
    // routing measures 1.02 to 1.04 here); an uneven split that a routing failed to correct
    // would put the busier zone at its callers' share over its backends' share, 0.7 / 0.5 =
    // 1.4 with callers 70/30 (the "local only" routing shows it), far above the bound.
    const EVEN: f64 = 1.10;
    let even = small_tiers(40_000);
    let uneven = tiers::Tiers {
        share_a: 0.7,
        ..even.clone()
    };
    let mut rows = Vec::new();
    for (t, down, local_zone_share) in [
        // Callers split as the backends are: all of it stays local.
        (&even, Vec::new(), 1.0),
        // 70% of the callers in zone a, half the backends: zone a keeps 0.5 / 0.7 of its
        // traffic local and spills the rest to b, whose callers stay local.
        (&uneven, Vec::new(), 0.5 / 0.7),
        // 4 of zone a's 10 backends down: a has 6 of the 16 healthy, 37.5% for 50% of the
        // callers, so it keeps 0.375 / 0.5 local.
        (&even, even.zone_a_short(), 0.375 / 0.5),
    ] {
        let flat = zone_run(t, Flat, &down);
        let aware = zone_run(t, ZoneAware, &down);
        let local = zone_run(t, LocalOnly, &down);
        let expected_cross = t.share_a * (1.0 - local_zone_share);
        assert!(
            (0.45..0.55).contains(&flat.cross_share()),
            "flat routing crosses zones half the time: {}",
            flat.cross_share()
        );
        assert!(
            (aware.cross_share() - expected_cross).abs() < 0.02,
            "zone-aware crossed {} of the picks, expected {expected_cross}",
            aware.cross_share()
        );
        assert!(aware.cross_share() < flat.cross_share() / 2.0);
        assert!(
            flat.max_over_mean() <= EVEN && aware.max_over_mean() <= EVEN,
            "load max/mean: flat {}, zone-aware {}",
            flat.max_over_mean(),
            aware.max_over_mean()
        );
        // Staying local, the fewer picks crossing zones, shows in the median.
        assert!(aware.quantile(0.5) <= flat.quantile(0.5));
        assert_eq!(local.cross_share(), 0.0);
        if local_zone_share < 1.0 {
            // Staying local regardless overloads the short zone.
            assert!(
                local.max_over_mean() > 1.3,
                "local only: load max/mean {}",
                local.max_over_mean()
            );
        }
        for (routing, measured) in [(Flat, flat), (LocalOnly, local), (ZoneAware, aware)] {
            rows.push(tiers::ZoneRow {
                fleet: format!("{:.0}% in a", t.share_a * 100.0),
                routing,
                policy: "p2c".into(),
                measured,
            });
        }
    }
    let table = tiers::zone_table(&rows);
    assert_eq!(table.lines().count(), 2 + 9, "{table}");
    assert!(table
        .lines()
        .nth(2)
        .is_some_and(|l| l.contains("| flat | p2c |")));
}

#[test]
fn the_dr_tier_takes_nothing_until_the_primary_falls_below_72_percent_healthy() {
    // 25 primary backends, so that 18 healthy is exactly 72%; 8,000 requests a phase.
    let t = tiers::Tiers {
        primary: 25,
        backup: 25,
        ..small_tiers(64_000)
    };
    let phases: Vec<tiers::Phase> = [0, 5, 7, 8, 10, 15, 20, 25]
        .into_iter()
        .map(|down| tiers::Phase {
            label: format!("{down} down"),
            down: (0..down).collect(),
            degraded: Vec::new(),
        })
        .collect();
    let measured =
        tiers::run(&t, &t.workload(), "p2c", tiers::Routing::ZoneAware, &phases).expect("runs");
    let healthy: Vec<usize> = measured.iter().map(|m| m.healthy).collect();
    assert_eq!(healthy, [25, 20, 18, 17, 15, 10, 5, 0]);
    // Envoy's table with the factor 1.4: P0 keeps min(100, 140 x healthy / total) percent.
    let envoy: Vec<f64> = measured.iter().map(|m| m.envoy_dr_share(25)).collect();
    assert_eq!(envoy, [0.0, 0.0, 0.0, 0.05, 0.16, 0.44, 0.72, 1.0]);
    for (m, expected) in measured.iter().zip(&envoy) {
        assert_eq!(m.failed, 0, "{}", m.label);
        if m.healthy * 100 >= 72 * 25 {
            assert_eq!(m.dr, 0, "{}: the DR tier took picks", m.label);
        }
        assert!(
            (m.dr_share() - expected).abs() < 0.01,
            "{}: DR share {} against Envoy's {expected}",
            m.label,
            m.dr_share()
        );
    }
    for w in measured.windows(2) {
        assert!(
            w[1].dr_share() > w[0].dr_share() || w[1].envoy_dr_share(25) == 0.0,
            "the DR share fell or stalled from {} to {}",
            w[0].label,
            w[1].label
        );
    }
}

#[test]
fn degraded_backends_serve_nothing_while_the_dr_tier_has_room() {
    let t = small_tiers(21_000);
    let phases = t.failover_phases();
    let degraded = phases
        .iter()
        .position(|p| !p.degraded.is_empty())
        .expect("a degraded phase");
    let measured = tiers::run(
        &t,
        &t.workload(),
        "ring",
        tiers::Routing::ZoneAware,
        &phases,
    )
    .expect("runs");
    let m = &measured[degraded];
    assert_eq!((m.healthy, m.degraded_backends), (8, 4));
    // P0: 56% to its healthy backends, its degraded share (28) never reached: the DR tier's
    // healthy 100 comes first.
    assert_eq!(m.degraded, 0);
    assert!((m.dr_share() - 0.44).abs() < 0.02, "{}", m.dr_share());
    let report = tiers::failover_table(&t, &[("ring".into(), measured)]);
    assert_eq!(report.lines().count(), 2 + phases.len(), "{report}");
}

#[test]
fn load_aware_routing_spills_a_zone_whose_callers_send_more_and_otherwise_stays_local() {
    use tiers::Routing::{LoadAware, LocalOnly, ZoneAware};
    // 80,000 requests: about 8 s of simulated time at 9,600 requests a second, so the settled
    // half (the last 4 s) comes after four update periods of 1 s.
    let even = small_tiers(80_000);
    let busy_a = tiers::Tiers {
        traffic_a: Some(0.7),
        ..even.clone()
    };
    // Callers and traffic both split 50/50: load-aware keeps it local as zone-aware does, but
    // for its probe of the other zone (3% of each caller's picks).
    for policy in ["p2c", "ring"] {
        let load = settled_run(&even, policy, LoadAware);
        assert!(
            (0.02..0.045).contains(&load.cross_share()),
            "{policy}, callers 50/50: load-aware crossed {} of the picks",
            load.cross_share()
        );
    }
    // Callers 50/50 by count, but zone a's send 70% of the requests: zone-aware routing,
    // told the callers' shares, keeps it all in a, whose backends run at 0.6 x 0.7 / 0.5 =
    // 84% of their capacity, b's at 36%. The ring (no bound) places keys unevenly inside a,
    // so a's busiest backends pass saturation and queue; load-aware routing sees its callers'
    // picks pile up there and sends part of a's traffic to b, more than its probe (a routing
    // that only probed would cross about 0.03).
    // Not claimed for P2C: it keeps a's backends even at 84%, their queues short, and each
    // caller's own picks in flight (a tenth of a backend's) under the 0.1 threshold, so it
    // crosses little more than the probe (4.6% in the README's run).
    let mut rows = Vec::new();
    for routing in tiers::Routing::ALL {
        rows.push(tiers::ZoneRow {
            fleet: "50/50, 70% of requests from a (settled half)".into(),
            routing,
            policy: "ring".into(),
            measured: settled_run(&busy_a, "ring", routing),
        });
    }
    let table = tiers::zone_table(&rows);
    let of = |routing| {
        &rows
            .iter()
            .find(|r| r.routing == routing)
            .expect("run")
            .measured
    };
    let (aware, load) = (of(ZoneAware), of(LoadAware));
    // The 70% reach zone a: staying local puts its backends at 0.7 / 0.5 = 1.4 x the mean
    // (more for the ring's busiest).
    assert!(of(LocalOnly).max_over_mean() > 1.3, "{table}");
    assert_eq!(aware.cross, 0, "{table}");
    assert!(load.cross_share() > 0.05, "{table}");
    // The tail: the probe alone takes zone-aware's p99 down by a third here (a load-aware
    // routing that never spilled measured 81 ms against 123), the spill by more than half.
    assert!(
        load.quantile(0.99).as_secs_f64() < 0.55 * aware.quantile(0.99).as_secs_f64(),
        "{table}"
    );
}

#[test]
fn load_aware_routing_on_reports_evens_a_zone_whose_callers_send_more_and_otherwise_stays_local() {
    use tiers::Routing::{LoadAware, LoadAwareReported, ZoneAware};
    // As above: 80,000 requests, about 8 s, the settled half after four update periods. The
    // first half is left out: the first sample is taken raw, and with a zone 0.84 busy and
    // the other 0.36 every caller of the busy zone sends 80% of its picks away at once (the
    // README's run shows it).
    let even = small_tiers(80_000);
    let busy_a = tiers::Tiers {
        traffic_a: Some(0.7),
        ..even.clone()
    };
    // Callers and traffic both 50/50: both zones report the same load, so it keeps to its
    // probe (3%; a noisy sample may spill a little now and then).
    for policy in ["p2c", "ring"] {
        let reported = settled_run(&even, policy, LoadAwareReported);
        assert!(
            (0.02..0.08).contains(&reported.cross_share()),
            "{policy}, callers 50/50: load-aware (reports) crossed {} of the picks",
            reported.cross_share()
        );
    }
    // Zone a's callers send 70% of the requests. Zone-aware, told the callers' count, keeps
    // it all in a (load max/mean 1.4 and more); load-aware on the callers' own picks sees a
    // tenth of a backend's load and hardly leaves its probe for P2C. The reports show every
    // caller a's backends at 0.84 and b's at 0.36, so a's callers spill: evening the load
    // exactly takes 0.2 of the picks across (a's callers sending 2 in 7 of theirs), less the
    // 0.1 of imbalance the threshold tolerates. A routing that only probed would cross 0.03,
    // one that ignored the reports would keep zone-aware's spread.
    for policy in ["p2c", "ring"] {
        let mut rows = Vec::new();
        for routing in [ZoneAware, LoadAware, LoadAwareReported] {
            rows.push(tiers::ZoneRow {
                fleet: "50/50, 70% of requests from a (settled half)".into(),
                routing,
                policy: policy.into(),
                measured: settled_run(&busy_a, policy, routing),
            });
        }
        let table = tiers::zone_table(&rows);
        let [aware, in_flight, reported] = [0, 1, 2].map(|i| &rows[i].measured);
        assert_eq!(aware.cross, 0, "{table}");
        assert!((0.12..0.28).contains(&reported.cross_share()), "{table}");
        assert!(
            reported.max_over_mean() < aware.max_over_mean() - 0.2,
            "{table}"
        );
        // Once settled, the spill costs no tail: the 1 ms to the other zone is lost in the
        // queueing (and the ring's busiest backends in a no longer queue).
        assert!(
            reported.quantile(0.99).as_secs_f64() < 1.1 * aware.quantile(0.99).as_secs_f64(),
            "{table}"
        );
        if policy == "p2c" {
            // P2C keeps a's backends even, so only the reports see that a is busier.
            assert!(in_flight.cross_share() < 0.06, "{table}");
            assert!(
                reported.cross_share() > 2.0 * in_flight.cross_share(),
                "{table}"
            );
            assert!(reported.max_over_mean() < 1.25, "{table}");
        }
    }
}

/// `policy` over the heavy-tailed scenario of `config` (`--pareto`), every request costing 1
/// or, with `costs`, its size.
fn run_pareto(config: &Config, policy: &str, costs: bool) -> Outcome {
    let scenario = config.pareto_sizes(costs);
    // The same requests either way: the workload does not depend on `costs`.
    let workload = Workload::new(&config.pareto_sizes(false));
    let p = policies::find::<usize>(policy).expect("a registered policy");
    let build = |backends, clock, health| {
        let options = Options {
            seed: Some(config.seed),
            clock: Some(clock),
            health,
            ..Options::default()
        };
        (p.build)(backends, options)
    };
    engine::run(&scenario, &workload, policy, &build).expect("the policy builds")
}

#[test]
fn pareto_sizes_are_capped_seeded_and_of_mean_one() {
    let config = Config {
        requests: 200_000,
        ..small().pareto_sizes(false)
    };
    let workload = Workload::new(&config);
    assert_eq!(workload.arrivals, Workload::new(&config).arrivals);
    let pareto = workload::Pareto::new(config.pareto_alpha, config.pareto_cap);
    let (smallest, largest) = pareto.range();
    let works: Vec<f64> = workload.arrivals.iter().map(|a| a.work).collect();
    assert!(works.iter().all(|&w| w >= smallest && w <= largest));
    let mean = works.iter().sum::<f64>() / works.len() as f64;
    assert!((mean - 1.0).abs() < 0.05, "mean {mean}");
    // Heavy-tailed: the largest draws are hundreds of times the mean, and a handful reach
    // the cap (shape 1.5, cap 1000: a share of 1000^-1.5, about 6 of 200,000).
    let capped = works.iter().filter(|&&w| w == largest).count();
    assert!((1..=20).contains(&capped), "{capped} draws at the cap");
    // Sizes in units of 100 us: the minimum 1 / 2.94 of 10 ms, the cap 1000 times it.
    assert_eq!(workload::size(smallest, config.miss_time), 34);
    assert_eq!(workload::size(largest, config.miss_time), 34_051);
    assert_eq!(workload::size(0.0, config.miss_time), 1);
    assert_eq!(workload::size(1e12, config.miss_time), lbkit::MAX_COST);
    // The default workload still draws exponential service times.
    let exponential = Workload::new(&small());
    assert!(exponential.arrivals.iter().all(|a| a.work > 0.0));
    assert_ne!(exponential.arrivals[0].work, workload.arrivals[0].work);
}

#[test]
fn the_heavy_tailed_runs_replay_for_a_seed_and_give_all_work_back() {
    let config = small();
    let biggest = Workload::new(&config.pareto_sizes(false))
        .arrivals
        .iter()
        .map(|a| u64::from(workload::size(a.work, config.miss_time)))
        .max()
        .unwrap_or(0);
    for costs in [false, true] {
        for policy in ["least-connections", "p2c", "peak-ewma", "prequal"] {
            let first = run_pareto(&config, policy, costs);
            assert_eq!(first, run_pareto(&config, policy, costs), "{policy}");
            assert_eq!(first.in_flight_after, 0, "{policy}");
            assert_eq!(first.latencies.len(), config.requests, "{policy}");
            assert!(
                first.max_work >= biggest,
                "{policy}: the biggest request was held"
            );
            assert!(first.mean_work > 0.0, "{policy}");
        }
    }
    let counted = run_pareto(&config, "p2c", false);
    let costed = run_pareto(&config, "p2c", true);
    assert_ne!(
        counted.latencies, costed.latencies,
        "the cost changed no pick"
    );
    let table = report::pareto_table(&[(8, counted, costed)]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[2].contains("count") && lines[3].contains("cost"),
        "{table}"
    );
}

#[test]
fn least_connections_told_the_sizes_holds_less_work_and_a_shorter_tail_on_one_worker() {
    // One worker per backend: the work queued on a backend is the wait a new request finds
    // there, so balancing work, not requests, is the right choice. (With 8 workers it is
    // not: one huge request holds one worker of eight, but its backend looks full; see the
    // README.)
    let config = Config {
        workers: 1,
        ..small()
    };
    let counted = run_pareto(&config, "least-connections", false);
    let costed = run_pareto(&config, "least-connections", true);
    assert!(
        costed.max_work < counted.max_work,
        "max work: cost {} against count {}",
        costed.max_work,
        counted.max_work
    );
    assert!(
        costed.quantile(0.999) < counted.quantile(0.999),
        "p99.9: cost {:?} against count {:?}",
        costed.quantile(0.999),
        counted.quantile(0.999)
    );
}
