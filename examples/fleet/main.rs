//! Subsetting at fleet scale (issue #14): `clients` lbkit balancers over the same `servers`
//! backends, with no subset, deterministic aperture and rendezvous subsetting in turn.
//!
//! ```text
//! cargo run --release --example fleet
//! cargo run --release --example fleet -- --help
//! ```
//!
//! Each client is one balancer (P2C by default) over every server, built with
//! `Subset::All`, `Subset::Aperture(Aperture::new(i, clients))` or
//! `Subset::Rendezvous(RendezvousSubset::new(k).salt(..))` with a salt per client. Each sends
//! Poisson traffic and holds every pick for an exponential service time in simulated time.
//! The program prints one row per mode (connections and load per server, subset size per
//! client, and the churn of three membership changes) and writes two SVG charts.
//!
//! `sim.rs` is the model and `report.rs` the table, both included and checked by
//! `tests/fleet.rs`; `charts.rs` draws; this file parses the flags and runs the modes.

mod charts;
mod report;
mod sim;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use sim::{Config, Mode, Policy};

const USAGE: &str = "\
usage: fleet [OPTIONS]

Simulates a fleet of clients, each an lbkit balancer over the same servers, without a subset,
with deterministic aperture and with rendezvous subsetting, and prints a table per mode and
writes SVG charts.

scenario (defaults in brackets):
  --clients N         clients, one balancer each [1000]
  --servers N         servers (backends) [1000]
  --requests N        requests each client sends [200]
  --seed N            seed of arrivals, service times, P2C and rendezvous salts [1]
  --policy P          round-robin, p2c or least-connections [p2c]
  --min-aperture N    the aperture's minimum servers per client [12]
  --subset-size N     rendezvous subset size [12: as many servers as the aperture covers
                      when clients and servers are equal in number]
  --interarrival MS   mean time between two requests of one client, Poisson [10]
  --service MS        mean time a request holds its pick, exponential [50]
output:
  --out DIR           folder for the charts [target/fleet]
  --no-charts         print the table only
  -h, --help          this text
";

struct Args {
    config: Config,
    out: PathBuf,
    charts: bool,
}

fn parse(args: Vec<String>) -> Result<Option<Args>, String> {
    let mut a = Args {
        config: Config::default(),
        out: PathBuf::from("target/fleet"),
        charts: true,
    };
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
            "--clients" => c.clients = num(&flag, value()?)?,
            "--servers" => c.servers = num(&flag, value()?)?,
            "--requests" => c.requests = num(&flag, value()?)?,
            "--seed" => c.seed = num(&flag, value()?)?,
            "--min-aperture" => c.min_aperture = num(&flag, value()?)?,
            "--subset-size" => c.subset_size = num(&flag, value()?)?,
            "--policy" => {
                let v = value()?;
                c.policy = Policy::parse(&v).ok_or_else(|| {
                    format!("unknown policy {v:?} (round-robin, p2c, least-connections)")
                })?;
            }
            "--interarrival" => {
                let ms: f64 = num(&flag, value()?)?;
                c.interarrival = Duration::try_from_secs_f64(ms / 1e3)
                    .map_err(|_| format!("bad value {ms} for {flag}"))?;
            }
            "--service" => {
                let ms: f64 = num(&flag, value()?)?;
                c.service = Duration::try_from_secs_f64(ms / 1e3)
                    .map_err(|_| format!("bad value {ms} for {flag}"))?;
            }
            "--out" => a.out = PathBuf::from(value()?),
            "--no-charts" => a.charts = false,
            _ => return Err(format!("unknown argument {flag:?} (see --help)")),
        }
    }
    a.config.check()?;
    if a.config.servers >= 10_000 {
        return Err("at most 9,999 servers (ids are s0000 to s9999)".into());
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
            eprintln!("fleet: {message}");
            return ExitCode::from(2);
        }
    };
    match fleet(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("fleet: {message}");
            ExitCode::FAILURE
        }
    }
}

fn fleet(args: &Args) -> Result<(), String> {
    let config = &args.config;
    let started = Instant::now();
    println!(
        "{} clients x {} servers, {} requests per client (Poisson, mean {} ms apart), each \
         pick held {} ms on average; {} per client; aperture: min_aperture {}, rendezvous: \
         subset_size {}; seed {}\n",
        report::thousands(config.clients),
        report::thousands(config.servers),
        report::thousands(config.requests),
        config.interarrival.as_secs_f64() * 1e3,
        config.service.as_secs_f64() * 1e3,
        config.policy.name(),
        config.min_aperture,
        config.subset_size,
        config.seed,
    );
    let mut outcomes = Vec::new();
    for mode in Mode::ALL {
        let t = Instant::now();
        eprint!("fleet: {} ...", mode.name());
        let outcome = sim::run(config, mode).map_err(|e| format!("{}: {e}", mode.name()))?;
        eprintln!(" {:.1} s", t.elapsed().as_secs_f64());
        if outcome.in_flight_after != 0 || outcome.no_pick != 0 {
            return Err(format!(
                "{}: {} picks still in flight after the run, {} requests without a pick",
                mode.name(),
                outcome.in_flight_after,
                outcome.no_pick
            ));
        }
        outcomes.push(outcome);
    }
    print!("{}", report::table(&outcomes));
    println!("\n{}", report::legend(config, &outcomes));
    if args.charts {
        std::fs::create_dir_all(&args.out)
            .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
        let draw = |file: &str, result: Result<(), Box<dyn std::error::Error>>| {
            result.map_err(|e| format!("cannot draw {file}: {e}"))
        };
        draw(
            "connections_per_server.svg",
            charts::connections(&args.out.join("connections_per_server.svg"), &outcomes),
        )?;
        draw(
            "load_per_server.svg",
            charts::load(&args.out.join("load_per_server.svg"), &outcomes),
        )?;
        println!("\ncharts: {}", args.out.display());
    }
    eprintln!("fleet: done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
