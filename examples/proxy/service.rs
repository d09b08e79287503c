//! The proxy itself: a layer-4 (TCP) load balancer over an `Arc<dyn Balancer<SocketAddr>>`.
//!
//! Kept apart from `main.rs` so that `tests/proxy.rs` runs it in-process. Each accepted
//! connection picks a backend and holds that [`Pick`](lbkit::Pick) for the connection's whole
//! life, so least connections and P2C see open connections as load. A backend that refuses the
//! connection is reported on its pick as a local-origin failure (no answer came) and set
//! `Down`, and the client is retried on the next pick, before any of its bytes were forwarded;
//! [`health_check`] sets it `Up` again once it accepts connections. With the proxy's
//! [`passive_health`], that refusal also ejects the backend: `Down` says "refusing now" and
//! ends as soon as a probe connects, the ejection keeps a backend that keeps refusing out for
//! longer each time, and both show in the balancer's status and metrics.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lbkit::{Balancer, Failure, Health, HealthConfig, OutlierDetection, Request};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The balancer a proxy shares among its connections.
pub type Lb = Arc<dyn Balancer<SocketAddr>>;

/// What one backend saw through the proxy.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BackendStats {
    /// Client connections relayed to it.
    pub connections: usize,
    /// The most connections open on it at once (read from `Balancer::status` at each pick).
    pub peak_in_flight: usize,
    /// Connection attempts it refused.
    pub refused: usize,
}

/// Counters of one proxy, by backend id.
#[derive(Debug, Default)]
pub struct Stats {
    backends: Mutex<BTreeMap<String, BackendStats>>,
    unserved: AtomicUsize,
}

impl Stats {
    /// Per-backend counters, in id order.
    pub fn backends(&self) -> BTreeMap<String, BackendStats> {
        self.backends.lock().expect("stats lock").clone()
    }

    /// Client connections closed because no backend could take them.
    pub fn unserved(&self) -> usize {
        // Relaxed: a statistic, read after the connections finished.
        self.unserved.load(Ordering::Relaxed)
    }

    fn with(&self, id: &str, f: impl FnOnce(&mut BackendStats)) {
        let mut map = self.backends.lock().expect("stats lock");
        f(map.entry(id.to_string()).or_default());
    }
}

/// How connections are keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyBy {
    /// No key: request-spreading policies.
    Nothing,
    /// The client's IP address (its octets): a hashing policy keeps each client on one backend.
    ClientIp,
}

/// A TCP load balancer.
pub struct Proxy {
    lb: Lb,
    key_by: KeyBy,
    stats: Stats,
}

impl Proxy {
    /// A proxy over `lb`.
    pub fn new(lb: Lb, key_by: KeyBy) -> Arc<Self> {
        Arc::new(Proxy {
            lb,
            key_by,
            stats: Stats::default(),
        })
    }

    /// The balancer.
    pub fn balancer(&self) -> &Lb {
        &self.lb
    }

    /// The counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Accepts connections from `listener` and relays each to a backend until `shutdown`
    /// turns true (or its sender is dropped); then stops accepting and waits for the open
    /// connections to finish (drain).
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) -> io::Result<()> {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (client, peer) = match accepted {
                        Ok(accepted) => accepted,
                        // A client that went away between SYN and accept, or a full fd table:
                        // that connection is lost, the proxy goes on.
                        Err(_) => continue,
                    };
                    let proxy = Arc::clone(&self);
                    connections.spawn(async move { proxy.relay(client, peer).await });
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listener);
        while connections.join_next().await.is_some() {}
        Ok(())
    }

    /// Relays one client connection, trying backends until one accepts it.
    async fn relay(&self, mut client: TcpStream, peer: SocketAddr) {
        let ip = match peer.ip() {
            IpAddr::V4(ip) => ip.octets().to_vec(),
            IpAddr::V6(ip) => ip.octets().to_vec(),
        };
        let request = match self.key_by {
            KeyBy::Nothing => Request::new(),
            KeyBy::ClientIp => Request::with_key(&ip),
        };
        // Each refusal takes one backend out, so the set bounds the attempts.
        let attempts = self.lb.status().len();
        for _ in 0..attempts {
            let Some(pick) = self.lb.pick(&request) else {
                break;
            };
            let started = Instant::now();
            match TcpStream::connect(*pick).await {
                Ok(mut upstream) => {
                    let in_flight = self
                        .lb
                        .status()
                        .iter()
                        .find(|s| s.id() == pick.id())
                        .map_or(0, |s| s.in_flight());
                    self.stats.with(pick.id(), |s| {
                        s.connections += 1;
                        s.peak_in_flight = s.peak_in_flight.max(in_flight);
                    });
                    // The connection's outcome is reported, which releases the pick: its
                    // lifetime as the latency (peak EWMA favours backends whose connections
                    // finish sooner), or a failure if either side broke it.
                    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                        Ok(_) => pick.success(started.elapsed()),
                        Err(_) => pick.failure(),
                    }
                    return;
                }
                Err(_) => {
                    self.stats.with(pick.id(), |s| s.refused += 1);
                    let id = pick.id().to_owned();
                    // No answer came: a local-origin failure, which outlier detection counts
                    // apart from answered errors (see `passive_health`). Reported first, so
                    // the ejection it may cause is applied before the retry's pick.
                    pick.failure_of(Failure::LocalOrigin);
                    // Another connection may have removed it meanwhile: nothing to do then.
                    let _ = self.lb.set_health(&id, Health::Down);
                }
            }
        }
        // Relaxed: a statistic.
        self.stats.unserved.fetch_add(1, Ordering::Relaxed);
    }
}

/// The passive health the proxy runs with: outlier detection that ejects a backend on its
/// first refused connection.
///
/// Refusals are counted apart from answered failures
/// ([`OutlierDetection::consecutive_local_origin_failures`], Envoy's split of local-origin
/// errors), with a threshold of 1 because the proxy sets a refusing backend `Down` at once: it
/// gets no more connections to refuse, so a higher threshold would only be reached by
/// connections already on their way to it. A connection broken after it was relayed is an
/// answered failure and needs the default 5 in a row. The first ejection lasts 10 s, each
/// further one 10 s more (up to 300 s), so a backend that accepts the health check's probe but
/// refuses real connections stays out longer each time; one back from a restart waits out its
/// ejection after the health check sets it `Up`. Every refusing backend may be ejected (the
/// cap, `max_ejection_percent`, would only keep ejections of backends already `Down` from
/// being counted).
pub fn passive_health() -> HealthConfig {
    HealthConfig::new().outlier_detection(OutlierDetection {
        consecutive_local_origin_failures: Some(1),
        base_ejection_time: Duration::from_secs(10),
        max_ejection_percent: 100.0,
        ..OutlierDetection::default()
    })
}

/// Every `every`, tries to connect to each `Down` backend and sets it `Up` when it accepts;
/// returns when `shutdown` turns true or its sender is dropped. Expects each backend's id to
/// be its socket address, as `main.rs` and the tests name them.
pub async fn health_check(lb: Lb, every: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
        // Backend ids are their addresses (`127.0.0.1:9001`), so the status is all it needs.
        for status in lb.status() {
            if status.health() != Health::Down {
                continue;
            }
            let Ok(addr) = status.id().parse::<SocketAddr>() else {
                continue;
            };
            let probe = tokio::time::timeout(every, TcpStream::connect(addr)).await;
            if matches!(probe, Ok(Ok(_))) {
                let _ = lb.set_health(status.id(), Health::Up);
            }
        }
    }
}
