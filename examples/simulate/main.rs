//! Which policy should I use? A fleet simulator that answers it with numbers and charts.
//!
//! ```text
//! cargo run --release --example simulate
//! cargo run --release --example simulate -- --help
//! ```
//!
//! Runs the same seeded arrival sequence through every policy of the crate (each driven only
//! through the public `Balancer` trait, `Pick` guards held for each request's simulated
//! duration), prints one table row per policy, then a passive-health table (the same scenario
//! with the failure unannounced, before -> after the health rules), and writes SVG charts to a
//! folder named on the last line of output. `--reports` adds the load-report table: backends
//! report their load with every response, and the policies that use such reports (client-side
//! weighted round robin) meet stale weights and drifting speeds. `--pareto` adds the
//! heavy-tailed table: request sizes from a capped Pareto law, the load-aware policies told
//! every request costs 1, then told each one's size (`Request::cost`).
//!
//! The simulation is split by concern, each module saying what it models: `config.rs` (the
//! scenario: [`Config`]), `workload.rs` (arrivals and Zipf keys), `fleet.rs` (backends, their
//! caches, slowdown and failure), `engine.rs` (the event loop that drives a balancer through
//! the scenario), `report.rs` (what a run measured and its tables), `tiers.rs` (the two-zone,
//! two-tier scenario of `--tiers`, with its own callers and tables) and `charts.rs` (the SVG
//! charts). All but the charts are included and checked by `tests/simulate.rs`; this file
//! parses the flags and runs the policies.

#[path = "../common/policies.rs"]
mod policies;

mod charts;
mod config;
mod engine;
mod fleet;
mod report;
mod tiers;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use config::Config;
use fleet::backend_id;
use policies::Options;
use report::Outcome;
use workload::Workload;

const USAGE: &str = "\
usage: simulate [OPTIONS]

Simulates one client tier sending requests to a fleet through each policy in turn, with the
same arrivals for every policy, and prints a table and writes SVG charts.

scenario (defaults in brackets):
  --seed N            seed of arrivals, keys, service times and random policies [1]
  --requests N        requests per policy [1000000]
  --backends N        backends at the start [20]
  --slow N            how many of them are slow [3]
  --slow-factor X     how much slower they are [3]
  --workers N         requests one backend serves at once [8]
  --load X            offered load, fraction of the fleet's capacity [0.8]
  --keys N            distinct keys, Zipf-distributed [100000]
  --zipf S            Zipf exponent [0.99]
  --cache N           keys each backend's cache remembers [1000]
  --equal-weights     give every backend weight 1 [weights by starting capacity: 3 for a
                      normal backend, 1 for a slow one]
  --slowdown X        factor by which one backend slows half-way [4]
  --no-slowdown       no backend slows down
  --drift X           every backend's speed drifts up to X times slower and faster than its
                      own, along a seeded sinusoid [none; 2 in the load-report table]
  --drift-period S    mean period of the drift in seconds, each backend's drawn between
                      half and 1.5 times it [30]
  --no-fail           no backend fails (at 30%)
  --silent-failure    the failed backend is not set Down: it answers every request with an
                      error after 1 ms (reported with Pick::failure, retried)
  --timeout MS        the client gives up on an attempt after MS ms and retries [none; 1000
                      with --passive-health and in the passive-health table]
  --attempts N        tries per request before the client gives up on it [3]
  --fresh-retries     a retry is a fresh pick, not avoiding the backends already tried [it
                      avoids them: Request::avoid]
  --passive-health    --silent-failure --timeout 1000, and every balancer gets the health
                      rules: outlier detection (5 failures in a row, 30 s x ejections, at most
                      20% ejected), panic threshold 0.5, slow start over 10 s
  --no-join           no backend joins (at 70%)
  --no-keys           requests without keys (no cache, no keys-moved columns)
  --no-cache          no per-backend cache
output:
  --policies A,B,..   only these policies [all]
  --bound C           also run each hashing policy with bounded loads, factor C [1.25];
                      `--bound off` to skip those rows
  --no-health-table   skip the passive-health table (by default printed after the main one:
                      the --silent-failure --timeout 1000 scenario for the request policies,
                      ring, maglev and jump (all with --policies), before -> after the health
                      rules)
  --intermittent      also print the intermittent-failure table: at 30% one backend starts
                      failing 30% of its responses and another rejects half its requests
                      in 1 ms, unannounced, no slowdown; the request policies with the
                      consecutive-failure rule alone (and Peak EWMA without its failure
                      penalty) -> with the statistical rules (and the penalties: Peak
                      EWMA 5 s, least connections and P2C 1 s)
  --reports           also print the load-report table: every response carries its
                      backend's load report (utilisation, qps, errors per second over
                      the last second); weighted round robin (configured weights),
                      client-side weighted round robin (weights from the reports, gRFC
                      A58 defaults: blackout 10 s, update 1 s; and again with a 1 s
                      blackout unless --blackout is given), p2c and peak-ewma (and
                      prequal, when the policy table has it), in two scenarios: one
                      backend slows down 4x at 50%, and every backend's speed drifts
                      (--drift, 2 by default); nothing fails or joins
  --pareto            also print the heavy-tailed table: request sizes follow a Pareto law
                      (shape --pareto-alpha, minimum 1, capped at --pareto-cap times it),
                      service time proportional to size, mean as the other tables'; no keys
                      (no cache), nothing fails, slows down or joins; least-connections, p2c,
                      peak-ewma and prequal (or --policies), each with every request costing
                      1 and again with Request::cost of its size (units of 100 us of a
                      normal backend's service time); on the --workers fleet, then with 1
                      worker per backend
  --pareto-alpha X    the Pareto shape [1.5]
  --pareto-cap X      the largest size as a multiple of the smallest [1000]
  --blackout S        client-side weighted round robin's blackout period in seconds [10,
                      gRFC A58's]
  --queued-utilisation
                      a backend's reported utilisation counts its queue too: busy
                      worker-time over the last second plus queued requests now, over
                      workers (above 1 when it queues) [busy worker-time alone]
  --soft-health       also print the soft-health table: no failure, one backend slows down
                      4x at 50% (unannounced), attempts time out after 1 s; policies with
                      the passive-health rules -> with soft health added (SoftHealth's
                      defaults)
  --tiers             instead of the tables above, the two-zone, two-tier scenario: 20
                      callers (each its own balancer) in zones a and b, 20 primary backends
                      (priority 0, 10 per zone) and 20 DR backends (priority 1, another
                      region), load 0.6 of the primary tier, 200000 requests per run (or
                      --requests); cross-zone share, latency and load spread flat / local
                      only / zone-aware / load-aware / load-aware (reports), then the
                      primary tier failing step by step (p2c and ring, or --policies)
  --cross-zone MS     with --tiers: extra latency of a request served in the other zone [1]
  --cross-region MS   with --tiers: extra latency of a request served by the DR tier [15]
  --flaky-share X     the share of responses the flaky backend fails [0.3]
  --reject-share X    the share of requests the rejecting backend turns away [0.5]
  --out DIR           folder for the charts [target/simulate]
  --no-charts         print the table only
  -h, --help          this text
";

struct Args {
    config: Config,
    policies: Option<Vec<String>>,
    bound: Option<f64>,
    out: PathBuf,
    charts: bool,
    health_table: bool,
    intermittent_table: bool,
    soft_table: bool,
    reports_table: bool,
    pareto_table: bool,
    /// `--blackout`: client-side weighted round robin's blackout period.
    blackout: Option<Duration>,
    /// `--tiers`, and its scenario (its requests set by `--requests` when given).
    tiers: Option<tiers::Tiers>,
    requests_set: bool,
}

/// The policies of the passive-health table (all of them with `--policies`), with the bounded
/// row of `ring`.
const HEALTH_TABLE: &[&str] = &[
    "round-robin",
    "weighted-round-robin",
    "random",
    "least-connections",
    "p2c",
    "peak-ewma",
    "ring",
    "maglev",
    "jump",
];

fn parse(args: Vec<String>) -> Result<Option<Args>, String> {
    let mut a = Args {
        config: Config::default(),
        policies: None,
        bound: Some(1.25),
        out: PathBuf::from("target/simulate"),
        charts: true,
        health_table: true,
        intermittent_table: false,
        soft_table: false,
        reports_table: false,
        pareto_table: false,
        blackout: None,
        tiers: None,
        requests_set: false,
    };
    let mut cross_zone = None;
    let mut cross_region = None;
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (flag, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        fn num<N: std::str::FromStr>(flag: &str, v: String) -> Result<N, String> {
            v.parse().map_err(|_| format!("bad value {v:?} for {flag}"))
        }
        let c = &mut a.config;
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--seed" => c.seed = num(&flag, value()?)?,
            "--requests" => {
                c.requests = num(&flag, value()?)?;
                a.requests_set = true;
            }
            "--backends" => c.backends = num(&flag, value()?)?,
            "--slow" => c.slow_backends = num(&flag, value()?)?,
            "--slow-factor" => c.slow_factor = num(&flag, value()?)?,
            "--workers" => c.workers = num(&flag, value()?)?,
            "--load" => c.load = num(&flag, value()?)?,
            "--keys" => c.keys = num(&flag, value()?)?,
            "--zipf" => c.zipf = num(&flag, value()?)?,
            "--cache" => c.cache = num(&flag, value()?)?,
            "--equal-weights" => c.capacity_weights = false,
            "--slowdown" => c.slowdown = Some(num(&flag, value()?)?),
            "--no-slowdown" => c.slowdown = None,
            "--drift" => c.drift = Some(num(&flag, value()?)?),
            "--drift-period" => {
                let s: f64 = num(&flag, value()?)?;
                if !(s.is_finite() && s > 0.0) {
                    return Err(format!("--drift-period must be above 0, got {s}"));
                }
                c.drift_period = Duration::from_secs_f64(s);
            }
            "--no-fail" => c.fail = false,
            "--no-join" => c.join = false,
            "--silent-failure" => c.silent_failure = true,
            "--fresh-retries" => c.avoid_tried = false,
            "--timeout" => {
                let ms: u64 = num(&flag, value()?)?;
                c.timeout = Some(Duration::from_millis(ms));
            }
            "--attempts" => c.attempts = num(&flag, value()?)?,
            "--flaky-share" => c.flaky_share = num(&flag, value()?)?,
            "--reject-share" => c.reject_share = num(&flag, value()?)?,
            "--passive-health" => *c = c.passive(true),
            "--no-health-table" => a.health_table = false,
            "--intermittent" => a.intermittent_table = true,
            "--soft-health" => a.soft_table = true,
            "--reports" => a.reports_table = true,
            "--pareto" => a.pareto_table = true,
            "--pareto-alpha" => c.pareto_alpha = num(&flag, value()?)?,
            "--pareto-cap" => c.pareto_cap = num(&flag, value()?)?,
            "--queued-utilisation" => c.queued_utilisation = true,
            "--blackout" => {
                let s: f64 = num(&flag, value()?)?;
                if !(s.is_finite() && s >= 0.0) {
                    return Err(format!("--blackout must be at least 0, got {s}"));
                }
                a.blackout = Some(Duration::from_secs_f64(s));
            }
            "--tiers" => a.tiers = Some(tiers::Tiers::default()),
            "--cross-zone" => {
                cross_zone = Some(Duration::from_millis(num(&flag, value()?)?));
            }
            "--cross-region" => {
                cross_region = Some(Duration::from_millis(num(&flag, value()?)?));
            }
            "--no-keys" => c.keys = 0,
            "--no-cache" => c.cache = 0,
            "--policies" => {
                a.policies = Some(value()?.split(',').map(str::to_string).collect());
            }
            "--bound" => {
                let v = value()?;
                a.bound = if v == "off" {
                    None
                } else {
                    let c: f64 = num(&flag, v)?;
                    if !(c.is_finite() && c >= 1.0) {
                        return Err(format!("--bound must be at least 1, got {c}"));
                    }
                    Some(c)
                };
            }
            "--out" => a.out = PathBuf::from(value()?),
            "--no-charts" => a.charts = false,
            _ => return Err(format!("unknown argument {flag:?} (see --help)")),
        }
    }
    a.config.check()?;
    if let Some(t) = &mut a.tiers {
        t.config.seed = a.config.seed;
        if a.requests_set {
            t.config.requests = a.config.requests;
        }
        t.cross_zone = cross_zone.unwrap_or(t.cross_zone);
        t.cross_region = cross_region.unwrap_or(t.cross_region);
        t.config.check()?;
    } else if cross_zone.is_some() || cross_region.is_some() {
        return Err("--cross-zone and --cross-region go with --tiers".into());
    }
    Ok(Some(a))
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1).collect()) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("simulate: {message}");
            return ExitCode::from(2);
        }
    };
    match simulate(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("simulate: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The rows to run: every policy of the table (or those asked for), and for each hashing
/// policy with bounded loads a second row with the bound on.
type Row = (
    String,
    fn(Vec<lbkit::Backend<usize>>, Options) -> policies::Built<usize>,
    Options,
);

fn rows(args: &Args) -> Result<Vec<Row>, String> {
    let table = policies::table::<usize>();
    if let Some(wanted) = &args.policies {
        for name in wanted {
            if !table.iter().any(|p| p.name == name) {
                let known: Vec<&str> = table.iter().map(|p| p.name).collect();
                return Err(format!(
                    "unknown policy {name:?} (known: {})",
                    known.join(", ")
                ));
            }
        }
    }
    let seed = Some(args.config.seed);
    let mut rows = Vec::new();
    for p in table {
        if args
            .policies
            .as_ref()
            .is_some_and(|w| !w.iter().any(|n| n == p.name))
        {
            continue;
        }
        let bounded = match (p.bounded, args.bound) {
            (true, Some(c)) => Some((
                format!("{}+bound {c}", p.name),
                p.build,
                Options {
                    seed,
                    bound: Some(c),
                    ..Options::default()
                },
            )),
            _ => None,
        };
        let options = Options {
            seed,
            blackout_period: args.blackout,
            ..Options::default()
        };
        rows.push((p.name.to_string(), p.build, options));
        rows.extend(bounded);
    }
    Ok(rows)
}

fn describe(config: &Config, workload: &Workload) -> String {
    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    let rate = config.requests as f64 / workload.span.as_secs_f64().max(1e-9);
    let (failing, slowing) = config.victims();
    let mut events = Vec::new();
    if config.fail {
        events.push(format!(
            "{} fails at {}{}",
            backend_id(failing),
            secs(workload.span.mul_f64(0.3)),
            if config.silent_failure {
                format!(
                    " silently (not set Down; errors after {} ms)",
                    config.error_time.as_millis()
                )
            } else {
                " (set Down)".to_string()
            }
        ));
    }
    if let Some(x) = config.slowdown {
        events.push(format!(
            "{} turns {x}x slower at {}",
            backend_id(slowing),
            secs(workload.span.mul_f64(0.5))
        ));
    }
    if let Some(x) = config.drift {
        events.push(format!(
            "every backend's speed drifts up to {x}x slower and faster (period {:.0} to {:.0} s)",
            config.drift_period.as_secs_f64() * 0.5,
            config.drift_period.as_secs_f64() * 1.5
        ));
    }
    if config.join {
        events.push(format!(
            "{} joins at {}",
            backend_id(config.backends),
            secs(workload.span.mul_f64(0.7))
        ));
    }
    let keys = if config.keys == 0 {
        "no keys".to_string()
    } else {
        format!(
            "{} keys, Zipf {}; cache of {} keys per backend (miss {} ms, hit {} ms mean)",
            config.keys,
            config.zipf,
            config.cache,
            config.miss_time.as_millis(),
            config.hit_time.as_millis()
        )
    };
    format!(
        "{} backends ({} of them {}x slow), {} workers each; {} requests at {:.0}/s \
         ({:.0}% of capacity) over {}\n{}\n{}\n{}",
        config.backends,
        config.slow_backends,
        config.slow_factor,
        config.workers,
        config.requests,
        rate,
        config.load * 100.0,
        secs(workload.span),
        if events.is_empty() {
            "no membership changes, no slowdown".to_string()
        } else {
            events.join("; ")
        },
        keys,
        client(config)
    )
}

/// The client's side of the scenario: timeouts, tries, health rules.
fn client(config: &Config) -> String {
    format!(
        "client: {} tries per request{}, {}; {}",
        config.attempts,
        if config.avoid_tried {
            " (retries avoid the backends already tried)"
        } else {
            " (retries are fresh picks)"
        },
        match config.timeout {
            Some(t) => format!("attempts time out after {} ms", t.as_millis()),
            None => "no timeout".to_string(),
        },
        health(config.health)
    )
}

fn health(on: bool) -> &'static str {
    if on {
        "passive health (5 failures in a row eject for 30 s x ejections, at most 20% \
         ejected; panic threshold 0.5; slow start over 10 s)"
    } else {
        "no passive health"
    }
}

/// Runs each row over `workload` under `config`, with a progress line per row on stderr that
/// names `pass` (which table the run is for) and the policy.
fn run_rows(
    pass: &str,
    config: &Config,
    workload: &Workload,
    rows: &[Row],
) -> Result<Vec<Outcome>, String> {
    let mut outcomes = Vec::new();
    for (i, (name, build, options)) in rows.iter().enumerate() {
        let t = Instant::now();
        eprint!(
            "simulate: {pass}, policy {}/{}: {name} ...",
            i + 1,
            rows.len()
        );
        let build = |backends, clock, health| {
            let options = Options {
                clock: Some(clock),
                health,
                // The intermittent table's "before": the consecutive-failure rule alone, so
                // Peak EWMA without its failure penalty too.
                failure_penalty: (config.intermittent && !config.statistical)
                    .then_some(Duration::ZERO),
                // And its "after": least connections and P2C weigh failures as load.
                failure_load: (config.intermittent && config.statistical)
                    .then_some(Duration::from_secs(1)),
                ..options.clone()
            };
            build(backends, options)
        };
        let outcome = engine::run(config, workload, name, &build).map_err(|e| e.to_string())?;
        eprintln!(" {:.1} s", t.elapsed().as_secs_f64());
        if outcome.in_flight_after != 0 {
            return Err(format!(
                "{name}: {} picks still counted in flight after the run",
                outcome.in_flight_after
            ));
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// The intermittent-failure table: the request policies, consecutive-failure rule alone ->
/// with the statistical rules (see `--intermittent`).
fn intermittent_table(args: &Args, config: &Config, workload: &Workload) -> Result<(), String> {
    let rows: Vec<Row> = rows(args)?
        .into_iter()
        .filter(|(name, ..)| {
            args.policies.is_some() || policies::find::<usize>(name).is_some_and(|p| !p.hashing)
        })
        .collect();
    let before = config.intermittent(false);
    let after = config.intermittent(true);
    let (flaky, rejecting) = config.intermittent_victims();
    println!(
        "\nintermittent failures: the same run, but at {:.1} s {} starts failing {:.0}% of its \
         responses and {} rejects {:.0}% of its requests after {} ms (unannounced); no slowdown\n\
         {}\n\
         before: 5 failures in a row eject (Peak EWMA without its failure penalty)\n\
         after: that, and success-rate and failure-percentage ejection (gRFC A50 defaults), \
         Peak EWMA's 5 s penalty, least connections' and P2C's 1 s failure penalty\n",
        workload.span.mul_f64(0.3).as_secs_f64(),
        backend_id(flaky),
        config.flaky_share * 100.0,
        backend_id(rejecting),
        config.reject_share * 100.0,
        config.error_time.as_millis(),
        client(&before).split(';').next().unwrap_or_default(),
    );
    let pairs = run_rows("intermittent before", &before, workload, &rows)?
        .into_iter()
        .zip(run_rows("intermittent after", &after, workload, &rows)?)
        .collect::<Vec<_>>();
    let failed = Some((flaky, workload.span.mul_f64(0.3)));
    print!("{}", report::health_table(&pairs, &[], failed));
    Ok(())
}

/// The policies of the soft-health table, with the bounded rings and Maglev: the policies
/// that use weights (with `--policies`, those named).
const SOFT_TABLE: &[&str] = &[
    "weighted-round-robin",
    "random",
    "least-connections",
    "p2c",
    "peak-ewma",
];

/// The soft-health table: a slow backend, the health rules alone -> with soft health (see
/// `--soft-health`).
fn soft_table(args: &Args, config: &Config, workload: &Workload) -> Result<(), String> {
    let rows: Vec<Row> = rows(args)?
        .into_iter()
        .filter(|(name, ..)| {
            args.policies.is_some()
                || SOFT_TABLE.contains(&name.as_str())
                || name.starts_with("ring+")
                || name.starts_with("maglev+")
        })
        .collect();
    let before = config.slow_backend(false);
    let after = config.slow_backend(true);
    let (_, slow) = config.victims();
    let from = workload.span.mul_f64(0.5);
    println!(
        "\nsoft health: the same run, but no backend fails and at {:.1} s {} turns {}x slower \
         (unannounced)\n{}\n\
         before: the passive-health rules (5 failures in a row eject, panic threshold, slow \
         start)\n\
         after: those and soft health (SoftHealth's defaults: 1 s interval, latency tolerance \
         1.5x the median, floor 0.05)\n",
        from.as_secs_f64(),
        backend_id(slow),
        before.slowdown.unwrap_or(4.0),
        client(&before).split(';').next().unwrap_or_default(),
    );
    let pairs = run_rows("soft health before", &before, workload, &rows)?
        .into_iter()
        .zip(run_rows("soft health after", &after, workload, &rows)?)
        .collect::<Vec<_>>();
    print!("{}", report::soft_table(&pairs, slow, from));
    Ok(())
}

/// The policies of the load-report table (with `--policies`, those named), those of them in
/// the policy table: a policy registered in `examples/common/policies.rs` under one of these
/// names joins the table with no other change (`prequal` does once it lands).
const REPORTS_TABLE: &[&str] = &[
    "weighted-round-robin",
    "client-side-weighted-round-robin",
    "p2c",
    "peak-ewma",
    "prequal",
];

/// The short blackout of the load-report table's second client-side weighted round robin
/// row.
const REPORTS_SHORT_BLACKOUT: Duration = Duration::from_secs(1);

/// The load-report table (see `--reports`): one backend slowing down, then every backend's
/// speed drifting, nobody changing a weight.
fn reports_table(args: &Args, config: &Config, workload: &Workload) -> Result<(), String> {
    let mut table: Vec<Row> = Vec::new();
    for row in rows(args)? {
        if !(args.policies.is_some() || REPORTS_TABLE.contains(&row.0.as_str())) {
            continue;
        }
        // Client-side weighted round robin a second time with a short blackout (unless
        // `--blackout` set one): the first 10 s of A58's default are plain round robin.
        let short =
            (row.0 == "client-side-weighted-round-robin" && args.blackout.is_none()).then(|| {
                let (name, build, options) = row.clone();
                let options = Options {
                    blackout_period: Some(REPORTS_SHORT_BLACKOUT),
                    ..options
                };
                let secs = REPORTS_SHORT_BLACKOUT.as_secs_f64();
                (format!("{name}+blackout {secs} s"), build, options)
            });
        table.push(row);
        table.extend(short);
    }
    let slowdown = config.reports_slowdown();
    let drift = config.reports_drift();
    let (_, slow) = slowdown.victims();
    println!(
        "\nload reports: every response carries its backend's load report (over its last \
         second: utilisation, busy worker-time / worker-time; answers per second; errors per \
         second), handed to the pick (Pick::report_load) before success or failure; \
         client-side weighted round robin weighs backends by them (gRFC A58 defaults: \
         blackout 10 s, weights refreshed every 1 s, expire after 3 min)\n\
         {}\n\
         \nslowdown: the same run, but at {:.1} s {} turns {}x slower (unannounced, its weight \
         unchanged); nothing fails or joins\n",
        client(&slowdown).split(';').next().unwrap_or_default(),
        workload.span.mul_f64(0.5).as_secs_f64(),
        backend_id(slow),
        slowdown.slowdown.unwrap_or(4.0),
    );
    let outcomes = run_rows("load reports, slowdown", &slowdown, workload, &table)?;
    let share = slowdown.capacity_share_after_slowdown(slow);
    print!("{}", report::reports_table(&outcomes, Some((slow, share))));
    println!(
        "\ndrift: the same run, but no slowdown and every backend's speed drifts up to {}x \
         slower and faster than its own, along a sinusoid of period {:.0} to {:.0} s \
         (seeded phase; weights unchanged); nothing fails or joins\n",
        drift.drift.unwrap_or(1.0),
        drift.drift_period.as_secs_f64() * 0.5,
        drift.drift_period.as_secs_f64() * 1.5,
    );
    let outcomes = run_rows("load reports, drift", &drift, workload, &table)?;
    print!("{}", report::reports_table(&outcomes, None));
    Ok(())
}

/// The policies of the heavy-tailed table (with `--policies`, those named): those that
/// compare load, so that a request's cost changes their choice.
const PARETO_TABLE: &[&str] = &["least-connections", "p2c", "peak-ewma", "prequal"];

/// The heavy-tailed table (see `--pareto`): Pareto request sizes, each policy told every
/// request costs 1, then told each request's size; on the fleet of the other tables, then
/// with one worker per backend (unless it has one already), where the work queued on a
/// backend is exactly the wait it gives a new request.
fn pareto_table(args: &Args, config: &Config) -> Result<(), String> {
    let rows: Vec<Row> = rows(args)?
        .into_iter()
        .filter(|(name, ..)| args.policies.is_some() || PARETO_TABLE.contains(&name.as_str()))
        .collect();
    let pareto = workload::Pareto::new(config.pareto_alpha, config.pareto_cap);
    let (smallest, largest) = pareto.range();
    let miss = config.miss_time.as_secs_f64() * 1e3;
    let unit = workload::COST_UNIT.as_secs_f64() * 1e3;
    println!(
        "\nheavy-tailed sizes: {} requests without keys (no cache) at {:.0}% of capacity; \
         sizes Pareto(shape {}, minimum 1) capped at {} times the minimum, service time \
         proportional to size: {:.1} ms to {:.0} ms on a normal backend, mean {} ms; nothing \
         fails, slows down or joins\n\
         count: every request costs 1; cost: Request::cost(size), size in units of {} ms of \
         a normal backend's service time ({} to {}); work: sizes held on one backend, \
         measured by the simulation; first with {} workers per backend, then with 1\n",
        config.requests,
        config.load * 100.0,
        config.pareto_alpha,
        config.pareto_cap,
        smallest * miss,
        largest * miss,
        miss,
        unit,
        workload::size(smallest, config.miss_time),
        workload::size(largest, config.miss_time),
        config.workers,
    );
    let mut fleets = vec![config.workers];
    if config.workers != 1 {
        fleets.push(1);
    }
    let mut measured = Vec::new();
    for workers in fleets {
        let fleet = Config {
            workers,
            ..config.clone()
        };
        let count = fleet.pareto_sizes(false);
        let cost = fleet.pareto_sizes(true);
        let workload = Workload::new(&count);
        let pass = format!("heavy-tailed, {workers} workers");
        let counted = run_rows(&format!("{pass}, count"), &count, &workload, &rows)?;
        let costed = run_rows(&format!("{pass}, cost"), &cost, &workload, &rows)?;
        measured.extend(
            counted
                .into_iter()
                .zip(costed)
                .map(|(count, cost)| (workers, count, cost)),
        );
    }
    print!("{}", report::pareto_table(&measured));
    Ok(())
}

/// The two-zone, two-tier scenario (`--tiers`): the zone-awareness table, then the
/// failover table, and their charts.
fn tiers_scenario(args: &Args, t: &tiers::Tiers) -> Result<(), String> {
    use tiers::{Routing, ZoneRow};
    let started = Instant::now();
    let policies: Vec<String> = match &args.policies {
        Some(p) => p.clone(),
        None => vec!["p2c".into(), "ring".into()],
    };
    for name in &policies {
        if policies::find::<usize>(name).is_none() {
            return Err(format!("unknown policy {name:?}"));
        }
    }
    let workload = t.workload();
    println!(
        "two zones, two tiers: {} callers (each its own balancer) in zones a and b; {} primary \
         backends (priority 0, half in each zone), {} DR backends (priority 1, region dr)\n\
         {} workers each, exponential service time of mean {} ms; {} requests per run at \
         {:.0}% of the primary tier's capacity, uniform keys, no cache\n\
         a request served in the other zone costs {} ms more, one served by the DR region {} \
         ms more\n",
        t.callers,
        t.primary,
        t.backup,
        t.config.workers,
        t.config.miss_time.as_millis(),
        t.config.requests,
        t.config.load * 100.0,
        t.cross_zone.as_secs_f64() * 1e3,
        t.cross_region.as_secs_f64() * 1e3,
    );
    let fleets: Vec<(String, tiers::Tiers, Vec<usize>)> = vec![
        ("callers 50/50".into(), t.clone(), Vec::new()),
        (
            "callers 70/30".into(),
            tiers::Tiers {
                share_a: 0.7,
                ..t.clone()
            },
            Vec::new(),
        ),
        (
            format!(
                "callers 50/50, {} of zone a's {} down",
                t.zone_a_short().len(),
                t.primary.div_ceil(2)
            ),
            t.clone(),
            t.zone_a_short(),
        ),
        (
            "callers 50/50, 70% of requests from a".into(),
            tiers::Tiers {
                traffic_a: Some(0.7),
                ..t.clone()
            },
            Vec::new(),
        ),
    ];
    let mut rows = Vec::new();
    for (label, fleet, down) in &fleets {
        for routing in Routing::ALL {
            for policy in &policies {
                let tick = Instant::now();
                eprint!("simulate: tiers, {label}, {}, {policy} ...", routing.name());
                let phase = tiers::Phase {
                    label: label.clone(),
                    down: down.clone(),
                    degraded: Vec::new(),
                };
                let mut measured = tiers::run(fleet, &workload, policy, routing, &[phase])?;
                eprintln!(" {:.1} s", tick.elapsed().as_secs_f64());
                rows.push(ZoneRow {
                    fleet: label.clone(),
                    routing,
                    policy: policy.clone(),
                    measured: measured.remove(0),
                });
            }
        }
    }
    println!("zone awareness:\n");
    print!("{}", tiers::zone_table(&rows));
    let phases = t.failover_phases();
    let mut runs = Vec::new();
    for policy in &policies {
        let tick = Instant::now();
        eprint!("simulate: tiers, failover, {policy} ...");
        let measured = tiers::run(t, &workload, policy, Routing::ZoneAware, &phases)?;
        eprintln!(" {:.1} s", tick.elapsed().as_secs_f64());
        runs.push((policy.clone(), measured));
    }
    println!(
        "\ngradual failover (callers 50/50, zone-aware; each phase a {}th of the run, the \
         primary backends down so far staying down):\n",
        phases.len()
    );
    print!("{}", tiers::failover_table(t, &runs));
    if args.charts {
        std::fs::create_dir_all(&args.out)
            .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
        let path = args.out.join("tiers_failover.svg");
        charts::tiers_failover(&path, t, &runs)
            .map_err(|e| format!("cannot draw tiers_failover.svg: {e}"))?;
        let path = args.out.join("tiers_zones.svg");
        charts::tiers_zones(&path, &rows)
            .map_err(|e| format!("cannot draw tiers_zones.svg: {e}"))?;
        println!("\ncharts: {}", args.out.display());
    }
    eprintln!("simulate: done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn simulate(args: &Args) -> Result<(), String> {
    if let Some(t) = &args.tiers {
        return tiers_scenario(args, t);
    }
    let rows = rows(args)?;
    let config = &args.config;
    let started = Instant::now();
    let workload = Workload::new(config);
    println!("{}\n", describe(config, &workload));
    let outcomes = run_rows("main table", config, &workload, &rows)?;
    print!("{}", report::table(&outcomes));
    if args.health_table && !config.silent_failure && !config.health {
        let rows: Vec<Row> = rows
            .into_iter()
            .filter(|(name, ..)| {
                args.policies.is_some()
                    || HEALTH_TABLE.contains(&name.as_str())
                    || name.starts_with("ring+")
            })
            .collect();
        let before = config.passive(false);
        let after = config.passive(true);
        let failure = if config.fail {
            format!(
                "but {} fails silently (not set Down; errors after {} ms)",
                backend_id(config.victims().0),
                config.error_time.as_millis()
            )
        } else {
            "with client timeouts".to_string()
        };
        let client = client(&before);
        let client = client.split(';').next().unwrap_or_default();
        println!(
            "\npassive health: the same run, {failure}\n{client}\nbefore: {}\nafter: {}\n",
            health(false),
            health(true),
        );
        let pairs = run_rows(
            "passive health before (no rules)",
            &before,
            &workload,
            &rows,
        )?
        .into_iter()
        .zip(run_rows(
            "passive health after (rules on)",
            &after,
            &workload,
            &rows,
        )?)
        .collect::<Vec<_>>();
        let failed = config
            .fail
            .then(|| (config.victims().0, workload.span.mul_f64(0.3)));
        // The before-run again with retries that do not avoid the backends already tried:
        // what steering the retries is worth.
        let fresh = if before.avoid_tried {
            let fresh = Config {
                avoid_tried: false,
                ..before.clone()
            };
            run_rows(
                "passive health before, fresh retries",
                &fresh,
                &workload,
                &rows,
            )?
        } else {
            Vec::new()
        };
        print!("{}", report::health_table(&pairs, &fresh, failed));
    }
    if args.intermittent_table && config.fail {
        intermittent_table(args, config, &workload)?;
    }
    if args.soft_table {
        soft_table(args, config, &workload)?;
    }
    if args.reports_table {
        reports_table(args, config, &workload)?;
    }
    if args.pareto_table {
        pareto_table(args, config)?;
    }
    if !args.charts {
        eprintln!("simulate: done in {:.1} s", started.elapsed().as_secs_f64());
        return Ok(());
    }
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let draw = |file: &str, result: Result<(), Box<dyn std::error::Error>>| {
        result.map_err(|e| format!("cannot draw {file}: {e}"))
    };
    draw(
        "latency_cdf.svg",
        charts::latency_cdf(&args.out.join("latency_cdf.svg"), &outcomes),
    )?;
    draw(
        "load_over_time.svg",
        charts::load_over_time(&args.out.join("load_over_time.svg"), config, &outcomes),
    )?;
    if outcomes.iter().any(|o| !o.moves.is_empty()) {
        draw(
            "keys_moved.svg",
            charts::keys_moved(&args.out.join("keys_moved.svg"), &outcomes),
        )?;
    }
    eprintln!("simulate: done in {:.1} s", started.elapsed().as_secs_f64());
    println!("\ncharts: {}", args.out.display());
    Ok(())
}
