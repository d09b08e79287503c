//! `examples/proxy`, run in-process against loopback echo backends: the proxy's service and
//! demo pieces are included here as the example includes them.

#[path = "../examples/proxy/demo.rs"]
mod demo;
#[path = "../examples/proxy/service.rs"]
mod service;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lbkit::{Backend, Balancer, Health, LeastConnections, Rendezvous, Request, RoundRobin};
use service::{KeyBy, Lb, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

async fn echo_backends(n: usize) -> Vec<(SocketAddr, JoinHandle<()>)> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(demo::echo_backend(Duration::ZERO).await.unwrap());
    }
    out
}

fn set(addrs: &[SocketAddr]) -> Vec<Backend<SocketAddr>> {
    addrs
        .iter()
        .map(|a| Backend::new(a.to_string(), *a))
        .collect()
}

/// A running proxy: its address, the proxy, and how to stop it (stop, then drain).
struct Running {
    addr: SocketAddr,
    proxy: Arc<Proxy>,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn start(lb: Lb) -> Running {
        Running::start_keyed(lb, KeyBy::Nothing).await
    }

    async fn start_keyed(lb: Lb, key_by: KeyBy) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = Proxy::new(lb, key_by);
        let (stop, stopped) = watch::channel(false);
        let server = tokio::spawn(Arc::clone(&proxy).serve(listener, stopped));
        Running {
            addr,
            proxy,
            stop,
            server,
        }
    }

    /// Stops accepting and waits until every open connection has finished.
    async fn drain(self) -> Arc<Proxy> {
        self.stop.send(true).unwrap();
        self.server.await.unwrap().unwrap();
        self.proxy
    }
}

fn connections(proxy: &Proxy, addr: &SocketAddr) -> usize {
    proxy
        .stats()
        .backends()
        .get(&addr.to_string())
        .map_or(0, |s| s.connections)
}

fn total_in_flight(lb: &dyn Balancer<SocketAddr>) -> usize {
    lb.status().iter().map(|s| s.in_flight()).sum()
}

// One runtime thread: round robin's rotation is exact per picking thread (its cursor is
// striped by thread), so every pick comes from the same thread here.
#[tokio::test(flavor = "current_thread")]
async fn every_byte_echoes_and_round_robin_splits_evenly() {
    let backends = echo_backends(3).await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.0).collect();
    let lb: Lb = Arc::new(RoundRobin::new(set(&addrs)).unwrap());
    let running = Running::start(Arc::clone(&lb)).await;
    let burst = demo::burst(running.addr, 30, 6, 5, 3000).await;
    assert_eq!(burst.failed, 0);
    assert_eq!((burst.echoed, burst.bytes), (30, 30 * 5 * 3000));
    let proxy = running.drain().await;
    for a in &addrs {
        assert_eq!(connections(&proxy, a), 10, "{a}");
    }
    assert_eq!(total_in_flight(proxy.balancer().as_ref()), 0);
    assert_eq!(proxy.stats().unserved(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_connection_holds_its_pick_for_its_whole_life() {
    let backends = echo_backends(3).await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.0).collect();
    let lb: Lb = Arc::new(LeastConnections::new(set(&addrs)).unwrap());
    let running = Running::start(Arc::clone(&lb)).await;
    // Six connections kept open: least connections puts two on each backend.
    let mut open = Vec::new();
    for i in 0..6u8 {
        let mut conn = TcpStream::connect(running.addr).await.unwrap();
        conn.write_all(&[i; 100]).await.unwrap();
        let mut back = [0u8; 100];
        conn.read_exact(&mut back).await.unwrap();
        assert_eq!(back, [i; 100]);
        open.push(conn);
    }
    assert!(
        lb.status().iter().all(|s| s.in_flight() == 2),
        "{:?}",
        lb.status()
    );
    drop(open);
    let proxy = running.drain().await;
    assert_eq!(total_in_flight(lb.as_ref()), 0);
    for a in &addrs {
        let s = &proxy.stats().backends()[&a.to_string()];
        assert_eq!((s.connections, s.peak_in_flight), (2, 2), "{a}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backend_is_skipped_and_no_client_is_lost() {
    let mut backends = echo_backends(3).await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.0).collect();
    let lb: Lb = Arc::new(RoundRobin::new(set(&addrs)).unwrap());
    let running = Running::start(Arc::clone(&lb)).await;
    let first = demo::burst(running.addr, 12, 4, 3, 500).await;
    assert_eq!((first.echoed, first.failed), (12, 0));

    // Kill one backend while the proxy runs: its listener closes, connects are refused.
    let (dead, server) = backends.remove(1);
    server.abort();
    assert!(server.await.unwrap_err().is_cancelled());
    let before = connections(&running.proxy, &dead);

    let second = demo::burst(running.addr, 40, 4, 3, 500).await;
    assert_eq!((second.echoed, second.failed), (40, 0), "a client was lost");
    let proxy = running.drain().await;
    let stats = proxy.stats().backends();
    assert!(stats[&dead.to_string()].refused >= 1);
    assert_eq!(
        connections(&proxy, &dead),
        before,
        "no connection went to the dead backend"
    );
    let alive: usize = backends.iter().map(|(a, _)| connections(&proxy, a)).sum();
    assert_eq!(alive + before, 52);
    let status = lb.status();
    let dead_status = status.iter().find(|s| s.id() == dead.to_string()).unwrap();
    assert_eq!(dead_status.health(), Health::Down);
    assert_eq!(total_in_flight(lb.as_ref()), 0);
    assert_eq!(proxy.stats().unserved(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_check_brings_a_backend_back() {
    let backends = echo_backends(2).await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.0).collect();
    let lb: Lb = Arc::new(RoundRobin::new(set(&addrs)).unwrap());
    lb.set_health(&addrs[0].to_string(), Health::Down).unwrap();
    let (stop, stopped) = watch::channel(false);
    let checker = tokio::spawn(service::health_check(
        Arc::clone(&lb),
        Duration::from_millis(20),
        stopped,
    ));
    // Bounded wait for the checker's first rounds; the assertion is about state, not time.
    let mut up = false;
    for _ in 0..500 {
        if lb.status().iter().all(|s| s.health() == Health::Up) {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(true).unwrap();
    checker.await.unwrap();
    assert!(up, "{:?}", lb.status());
}

// Keyed by client IP with a request-spreading policy: the key is ignored, every byte is
// relayed. (With a hashing policy the key decides: the test after this one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_by_client_ip_still_relays_every_byte() {
    let backends = echo_backends(2).await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.0).collect();
    let lb: Lb = Arc::new(LeastConnections::new(set(&addrs)).unwrap());
    let running = Running::start_keyed(Arc::clone(&lb), KeyBy::ClientIp).await;
    let burst = demo::burst(running.addr, 10, 2, 2, 100).await;
    assert_eq!((burst.echoed, burst.failed), (10, 0));
    running.drain().await;
    assert_eq!(total_in_flight(lb.as_ref()), 0);
}

// Keyed by client IP with a hashing policy: every connection from 127.0.0.1 lands on the one
// backend the balancer gives that key (the address's octets), none on the others. Without the
// key, Rendezvous spreads connections at random over all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_by_client_ip_keeps_a_client_on_one_backend() {
    let backends = echo_backends(3).await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.0).collect();
    let lb: Lb = Arc::new(Rendezvous::with_seed(set(&addrs), 7).unwrap());
    let home = *lb.pick(&Request::with_key(&[127u8, 0, 0, 1])).unwrap();
    let running = Running::start_keyed(Arc::clone(&lb), KeyBy::ClientIp).await;
    let burst = demo::burst(running.addr, 24, 3, 2, 100).await;
    assert_eq!((burst.echoed, burst.failed), (24, 0));
    let proxy = running.drain().await;
    for a in &addrs {
        let want = if *a == home { 24 } else { 0 };
        assert_eq!(connections(&proxy, a), want, "{a} (home {home})");
    }
    assert_eq!(total_in_flight(lb.as_ref()), 0);
}

// With the proxy's own passive health (as `main.rs` builds it): each refused connection is a
// local-origin failure on its pick, and the first ejects the backend (it is set `Down` too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_ejects_the_backend_with_the_proxys_passive_health() {
    let backends = echo_backends(2).await;
    // Bound by the OS, then closed: every connection to it is refused.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut addrs: Vec<SocketAddr> = backends.iter().map(|b| b.0).collect();
    addrs.push(dead);
    let lb: Lb = Arc::new(
        LeastConnections::builder()
            .health(service::passive_health())
            .build(set(&addrs))
            .unwrap(),
    );
    let running = Running::start(Arc::clone(&lb)).await;
    let burst = demo::burst(running.addr, 20, 4, 2, 100).await;
    assert_eq!((burst.echoed, burst.failed), (20, 0), "a client was lost");
    let proxy = running.drain().await;
    let refused = proxy.stats().backends()[&dead.to_string()].refused;
    assert!(refused >= 1, "the dead backend was never tried");
    for status in lb.status() {
        let is_dead = status.id() == dead.to_string();
        assert_eq!(status.is_ejected(), is_dead, "{status:?}");
        assert_eq!(status.ejections(), u32::from(is_dead), "{status:?}");
        let local = if is_dead { refused as u64 } else { 0 };
        assert_eq!(status.failures_by_kind().local_origin, local, "{status:?}");
        assert_eq!(status.failures_by_kind().error, 0, "{status:?}");
    }
    assert_eq!(total_in_flight(lb.as_ref()), 0);
}
