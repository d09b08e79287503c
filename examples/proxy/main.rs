//! lbkit in a real service: a TCP (layer 4) load balancer on tokio.
//!
//! ```text
//! cargo run --release --example proxy
//! cargo run --release --example proxy -- --listen 127.0.0.1:8080 \
//!     --backend 127.0.0.1:9001 --backend 127.0.0.1:9002 --algo least-connections
//! ```
//!
//! With no arguments: starts three echo backends on loopback (deliberately unequal speeds),
//! listens on a loopback port, drives a burst of client connections through itself, checks
//! every byte came back, prints per-backend connection counts and in-flight peaks, and exits.
//!
//! With `--listen` and `--backend`s: a long-lived proxy. Each connection holds its `Pick` for
//! its whole life; a backend that refuses a connection is reported as a local-origin failure
//! (which ejects it: outlier detection) and set down, and the client retried on the next pick;
//! a health check brings it back. `--key-by client-ip` keeps each client on one
//! backend through a hashing policy. Ctrl-C stops accepting, drains open connections, exits.
//!
//! With `--metrics ADDR` (and lbkit's `metrics` feature): the balancer, named `proxy`, records
//! its counters, gauges and ejections, served for Prometheus at `http://ADDR/metrics`:
//!
//! ```text
//! cargo run --release --example proxy --features metrics -- --listen 127.0.0.1:8080 \
//!     --backend 127.0.0.1:9001 --backend 127.0.0.1:9002 --metrics 127.0.0.1:9100
//! curl -s http://127.0.0.1:9100/metrics | grep '^lbkit_'
//! ```
//!
//! `lbkit_picks_total{balancer="proxy",backend="127.0.0.1:9001"}` counts the connections sent
//! to a backend (refused ones included), `lbkit_failures_total{...,kind="local_origin"}` the
//! refused ones, `lbkit_ejections_total{...,reason="local_origin_failures"}` the ejections
//! they caused (one refusal ejects: see `service::passive_health`), `lbkit_successes_total`
//! the connections relayed to their end, `lbkit_in_flight` those open now. The demo takes
//! `--metrics` too, and then serves the endpoint after its report until Ctrl-C.

#[path = "../common/policies.rs"]
mod policies;

mod demo;
#[cfg(feature = "metrics")]
mod prometheus;
mod service;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use lbkit::Backend;
use service::{KeyBy, Lb, Proxy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const USAGE: &str = "\
usage: proxy [--listen ADDR --backend ADDR [--backend ADDR ...]] [--algo NAME]
             [--key-by client-ip] [--seed N] [--connections N] [--metrics ADDR]

Without --listen: a self-contained demo on loopback (three echo backends of unequal speed, a
burst of --connections client connections [200] through the proxy), then a report.
With --listen and --backend: a long-lived proxy; Ctrl-C drains and exits.

  --metrics ADDR      serve the balancer's metrics for Prometheus at http://ADDR/metrics
                      (needs lbkit's `metrics` feature: --features metrics); the demo then
                      serves them after its report until Ctrl-C

  --algo NAME         the policy [least-connections]; one of: ";

struct Args {
    listen: Option<SocketAddr>,
    backends: Vec<SocketAddr>,
    algo: String,
    key_by: KeyBy,
    seed: Option<u64>,
    connections: usize,
    metrics: Option<SocketAddr>,
}

fn parse(args: Vec<String>) -> Result<Option<Args>, String> {
    let mut a = Args {
        listen: None,
        backends: Vec::new(),
        algo: "least-connections".into(),
        key_by: KeyBy::Nothing,
        seed: None,
        connections: 200,
        metrics: None,
    };
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let addr = |v: String| {
            v.parse::<SocketAddr>()
                .map_err(|_| format!("bad address {v:?} (like 127.0.0.1:8080)"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--listen" => a.listen = Some(addr(value()?)?),
            "--backend" => a.backends.push(addr(value()?)?),
            "--algo" => a.algo = value()?,
            "--key-by" => {
                a.key_by = match value()?.as_str() {
                    "client-ip" => KeyBy::ClientIp,
                    "none" => KeyBy::Nothing,
                    other => return Err(format!("bad --key-by {other:?} (client-ip or none)")),
                }
            }
            "--seed" => {
                let v = value()?;
                a.seed = Some(v.parse().map_err(|_| format!("bad --seed {v:?}"))?);
            }
            "--connections" => {
                let v = value()?;
                a.connections = v.parse().map_err(|_| format!("bad --connections {v:?}"))?;
            }
            "--metrics" => {
                let v = addr(value()?)?;
                if cfg!(not(feature = "metrics")) {
                    return Err("--metrics needs lbkit's `metrics` feature \
                        (cargo run --example proxy --features metrics -- ...)"
                        .into());
                }
                a.metrics = Some(v);
            }
            _ => return Err(format!("unknown argument {flag:?} (see --help)")),
        }
    }
    if a.listen.is_some() == a.backends.is_empty() {
        return Err("--listen and --backend go together (or neither, for the demo)".into());
    }
    Ok(Some(a))
}

fn build(args: &Args, backends: &[SocketAddr]) -> Result<Lb, String> {
    let table = policies::table::<SocketAddr>();
    let known = || table.iter().map(|p| p.name).collect::<Vec<_>>().join(", ");
    let policy = table
        .iter()
        .find(|p| p.name == args.algo)
        .ok_or_else(|| format!("unknown --algo {:?} (known: {})", args.algo, known()))?;
    if args.key_by == KeyBy::ClientIp && !policy.hashing {
        return Err(format!(
            "--key-by client-ip needs a hashing policy; {} does not hash keys",
            policy.name
        ));
    }
    let set = backends
        .iter()
        .map(|addr| Backend::new(addr.to_string(), *addr))
        .collect();
    let options = policies::Options {
        seed: args.seed,
        health: Some(service::passive_health()),
        name: Some("proxy".into()),
        metrics: args.metrics.map(|_| METRICS_INTERVAL),
        ..policies::Options::default()
    };
    let lb = (policy.build)(set, options).map_err(|e| e.to_string())?;
    Ok(Arc::from(lb))
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1).collect()) {
        Ok(Some(args)) => args,
        Ok(None) => {
            let names: Vec<&str> = policies::table::<SocketAddr>()
                .iter()
                .map(|p| p.name)
                .collect();
            println!("{USAGE}{}", names.join(", "));
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("proxy: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match args.listen {
        Some(listen) => runtime.block_on(long_lived(&args, listen)),
        None => runtime.block_on(demo(&args)),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("proxy: {message}");
            ExitCode::from(2)
        }
    }
}

/// How often the balancer records its metrics, and the exporting task too (with `--metrics`).
const METRICS_INTERVAL: Duration = Duration::from_secs(1);

/// With `--metrics`, installs the Prometheus recorder and its HTTP listener. Called before the
/// balancer is built, so that lbkit's descriptions of its metrics (the `# HELP` lines) reach
/// this recorder: lbkit gives them to the recorder installed when `Builder::metrics` is called.
#[cfg(feature = "metrics")]
fn install_metrics(args: &Args) -> Result<(), String> {
    if let Some(addr) = args.metrics {
        prometheus::install(addr)?;
        eprintln!("proxy: metrics on http://{addr}/metrics");
    }
    Ok(())
}

/// Without the `metrics` feature, `parse` refused `--metrics`: nothing to install.
#[cfg(not(feature = "metrics"))]
fn install_metrics(_: &Args) -> Result<(), String> {
    Ok(())
}

/// With `--metrics`, a task that records `lb`'s metrics every [`METRICS_INTERVAL`] until
/// `shutdown`, so an idle proxy's gauges stay fresh.
#[cfg(feature = "metrics")]
fn export_metrics(args: &Args, lb: &Lb, shutdown: watch::Receiver<bool>) -> Option<JoinHandle<()>> {
    args.metrics?;
    Some(tokio::spawn(prometheus::export_every(
        Arc::clone(lb),
        METRICS_INTERVAL,
        shutdown,
    )))
}

/// Without the `metrics` feature, `parse` refused `--metrics`: no task.
#[cfg(not(feature = "metrics"))]
fn export_metrics(_: &Args, _: &Lb, _: watch::Receiver<bool>) -> Option<JoinHandle<()>> {
    None
}

fn report(proxy: &Proxy, delays: &[(SocketAddr, Duration)]) {
    let stats = proxy.stats().backends();
    println!(
        "{:<22} {:>10} {:>12} {:>15} {:>8}",
        "backend", "echo delay", "connections", "peak in flight", "refused"
    );
    for status in proxy.balancer().status() {
        let s = stats.get(status.id()).cloned().unwrap_or_default();
        let delay = delays
            .iter()
            .find(|(a, _)| a.to_string() == status.id())
            .map_or("-".to_string(), |(_, d)| format!("{} ms", d.as_millis()));
        println!(
            "{:<22} {:>10} {:>12} {:>15} {:>8}",
            status.id(),
            delay,
            s.connections,
            s.peak_in_flight,
            s.refused
        );
    }
}

/// The demo: three loopback echo backends, a burst through the proxy, a report.
async fn demo(args: &Args) -> Result<bool, String> {
    let io = |e: std::io::Error| e.to_string();
    let mut delays = Vec::new();
    for ms in [1, 4, 16] {
        let delay = Duration::from_millis(ms);
        let (addr, _server) = demo::echo_backend(delay).await.map_err(io)?;
        delays.push((addr, delay));
    }
    let addrs: Vec<SocketAddr> = delays.iter().map(|(a, _)| *a).collect();
    install_metrics(args)?;
    let lb = build(args, &addrs)?;
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(io)?;
    let listen = listener.local_addr().map_err(io)?;
    println!(
        "proxy on {listen}: {} over {} loopback echo backends; {} client connections, 16 at once, \
         8 round trips of 1 KiB each",
        args.algo,
        addrs.len(),
        args.connections
    );
    let proxy = Proxy::new(Arc::clone(&lb), args.key_by);
    let (stop, stopped) = watch::channel(false);
    // The metrics outlive the burst (served until Ctrl-C): a channel of their own.
    let (stop_metrics, metrics_stopped) = watch::channel(false);
    let exporter = export_metrics(args, &lb, metrics_stopped);
    let server = tokio::spawn(Arc::clone(&proxy).serve(listener, stopped));
    let burst = demo::burst(listen, args.connections, 16, 8, 1024).await;
    let _ = stop.send(true);
    server.await.map_err(|e| e.to_string())?.map_err(io)?;
    report(&proxy, &delays);
    let in_flight: usize = proxy
        .balancer()
        .status()
        .iter()
        .map(|s| s.in_flight())
        .sum();
    println!(
        "{} connections echoed every byte ({} bytes checked), {} failed, {} found no backend; \
         in flight after drain: {}",
        burst.echoed,
        burst.bytes,
        burst.failed,
        proxy.stats().unserved(),
        in_flight
    );
    if let Some(exporter) = exporter {
        eprintln!("proxy: serving the metrics until Ctrl-C");
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop_metrics.send(true);
        let _ = exporter.await;
    }
    Ok(burst.failed == 0 && in_flight == 0)
}

/// A long-lived proxy until Ctrl-C.
async fn long_lived(args: &Args, listen: SocketAddr) -> Result<bool, String> {
    install_metrics(args)?;
    let lb = build(args, &args.backends)?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    eprintln!(
        "proxy: listening on {listen}, {} over {} backends; Ctrl-C drains and exits",
        args.algo,
        args.backends.len()
    );
    let proxy = Proxy::new(Arc::clone(&lb), args.key_by);
    let (stop, stopped) = watch::channel(false);
    let exporter = export_metrics(args, &lb, stopped.clone());
    let checker = tokio::spawn(service::health_check(
        lb,
        Duration::from_secs(1),
        stopped.clone(),
    ));
    let server = tokio::spawn(Arc::clone(&proxy).serve(listener, stopped));
    let _ = tokio::signal::ctrl_c().await;
    eprintln!("proxy: draining open connections");
    let _ = stop.send(true);
    let served = server.await.map_err(|e| e.to_string())?;
    let _ = checker.await;
    if let Some(exporter) = exporter {
        let _ = exporter.await;
    }
    served.map_err(|e| e.to_string())?;
    report(&proxy, &[]);
    eprintln!(
        "proxy: {} connections found no backend",
        proxy.stats().unserved()
    );
    Ok(true)
}
