//! `--metrics ADDR`: the balancer's metrics (lbkit's `metrics` feature) on a Prometheus scrape
//! endpoint, `http://ADDR/metrics`.
//!
//! lbkit records through the `metrics` facade and never installs a recorder itself: the
//! application chooses one. Here it is `metrics-exporter-prometheus`, which keeps the values
//! in memory and renders them in the Prometheus text format for each scrape. Included by
//! `main.rs` (with the `metrics` feature only) and by `tests/proxy_metrics.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::sync::watch;

use crate::service::Lb;

/// Installs the process's metrics recorder: a Prometheus exporter whose HTTP listener serves
/// the text format on `addr` (on every path but `/health`; `/metrics` by convention).
///
/// Call it inside a tokio runtime: the listener is bound now (so a bad or busy address is
/// an error here) and served by a task spawned on that runtime. A process has one recorder:
/// a second call is an error.
pub fn install(addr: SocketAddr) -> Result<(), String> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))
}

/// Every `every`, records `lb`'s counters and gauges (`Balancer::export_metrics`); returns when
/// `shutdown` turns true or its sender is dropped.
///
/// Picks record them too, but only when a pick comes: without this, an idle proxy's scrapes
/// would show the in-flight gauges and outcome counters of its last busy second (connections
/// that ended since are left out) for as long as it stays idle.
pub async fn export_every(lb: Lb, every: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        lb.export_metrics();
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}
