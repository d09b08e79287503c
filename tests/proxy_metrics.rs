//! `examples/proxy --metrics`, run in-process: the proxy with its Prometheus endpoint on a
//! loopback port, two echo backends and one that refuses every connection; the test scrapes
//! the endpoint over plain TCP and checks each number against what it counted itself.
//!
//! A process has one global metrics recorder, so everything that needs it is one test.

#[path = "../examples/proxy/demo.rs"]
#[allow(dead_code)] // shared with the example: this test uses `burst` only
mod demo;
#[path = "../examples/proxy/prometheus.rs"]
mod prometheus;
#[path = "../examples/proxy/service.rs"]
#[allow(dead_code)] // shared with the example: no health check here
mod service;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lbkit::{Backend, LeastConnections};
use service::{KeyBy, Lb, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// An echo server on a loopback port that counts the connections it accepted.
async fn counting_echo() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            // Relaxed: read after every connection through the proxy has ended.
            count.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if conn.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// A loopback address nothing listens on: bound by the OS, then closed.
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// `GET /metrics` over HTTP/1.0: the body of a 200 answer.
async fn scrape(addr: SocketAddr) -> String {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.lines().next().unwrap_or_default();
    assert!(status.contains(" 200 "), "{head}");
    body.to_owned()
}

/// One sample of the Prometheus text format: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// The samples of a Prometheus text-format page (`name{label="value",...} number`); comments
/// (`# HELP`, `# TYPE`) and blank lines skipped.
fn parse(page: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in page.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value of {line:?}"));
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').expect("labels end with `}`");
                (name, parse_labels(inner))
            }
        };
        samples.push((name.to_owned(), labels, value));
    }
    samples
}

/// `a="x",b="y"` (values with `\"`, `\\` and `\n` escapes).
fn parse_labels(mut rest: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").expect("label=\"value\"");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next().expect("a closing quote");
            match c {
                '"' => break i,
                '\\' => match chars.next().expect("an escaped character").1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        labels.insert(key.to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    labels
}

/// The samples named `name` whose labels include every pair of `with`.
fn find(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> Vec<f64> {
    samples
        .iter()
        .filter(|(n, labels, _)| {
            n == name
                && with
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.2)
        .collect()
}

/// The one sample named `name` with the labels `with`.
fn one(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    let found = find(samples, name, with);
    assert_eq!(found.len(), 1, "one {name} {with:?}, found {found:?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrape_counts_what_the_backends_saw() {
    // The endpoint first (before the balancer, so its metrics' descriptions reach it), on a
    // port the OS just handed out.
    let metrics = closed_port();
    prometheus::install(metrics).unwrap();

    let (a, seen_a) = counting_echo().await;
    let (b, seen_b) = counting_echo().await;
    let dead = closed_port();
    let set = [a, dead, b]
        .iter()
        .map(|addr| Backend::new(addr.to_string(), *addr))
        .collect::<Vec<_>>();
    // As `examples/proxy` builds it for `--metrics`, with its default policy.
    let lb: Lb = Arc::new(
        LeastConnections::builder()
            .name("proxy")
            .metrics(Duration::from_secs(1))
            .health(service::passive_health())
            .build(set)
            .unwrap(),
    );

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listen = listener.local_addr().unwrap();
    let proxy = Proxy::new(Arc::clone(&lb), KeyBy::Nothing);
    let (stop, stopped) = watch::channel(false);
    let exporter = tokio::spawn(prometheus::export_every(
        Arc::clone(&lb),
        Duration::from_secs(1),
        stopped.clone(),
    ));
    let server = tokio::spawn(Arc::clone(&proxy).serve(listener, stopped));

    const CLIENTS: usize = 60;
    let burst = demo::burst(listen, CLIENTS, 6, 4, 512).await;
    assert_eq!((burst.echoed, burst.failed), (CLIENTS, 0));
    stop.send(true).unwrap();
    server.await.unwrap().unwrap();
    exporter.await.unwrap();
    // Every connection has ended: record what the balancer counted since the last export.
    lb.export_metrics();

    // What the test saw: connections accepted by each echo server, and connection attempts
    // the dead backend refused (the proxy counts its connect errors; lbkit plays no part).
    // Relaxed: the servers' counts, after every connection ended.
    let live = [
        (a, seen_a.load(Ordering::Relaxed)),
        (b, seen_b.load(Ordering::Relaxed)),
    ];
    let refused = proxy.stats().backends()[&dead.to_string()].refused;
    assert_eq!(live[0].1 + live[1].1, CLIENTS, "each client relayed once");
    // Least connections sends the first client that finds the others busy to the dead
    // backend (0 in flight): the burst of 6 at once makes sure it was tried.
    assert!(refused >= 1, "the dead backend was never tried");

    let page = scrape(metrics).await;
    // The recorder was installed before the balancer was built: the descriptions are there.
    assert!(page.contains("# TYPE lbkit_picks_total counter"), "{page}");
    assert!(page.contains("# HELP lbkit_picks_total"), "{page}");
    let samples = parse(&page);
    let proxy_label = ("balancer", "proxy");
    let dead_id = dead.to_string();
    let dead_labels = [proxy_label, ("backend", dead_id.as_str())];

    // The dead backend: every pick on it was a refused attempt, reported as a local-origin
    // failure, and nothing else.
    let picks = |labels: &[(&str, &str)]| one(&samples, "lbkit_picks_total", labels);
    let kind = |labels: &[(&str, &str)], kind: &'static str| {
        let mut with = labels.to_vec();
        with.push(("kind", kind));
        one(&samples, "lbkit_failures_total", &with)
    };
    assert_eq!(picks(&dead_labels), refused as f64);
    assert_eq!(kind(&dead_labels, "local_origin"), refused as f64);
    assert_eq!(kind(&dead_labels, "error"), 0.0);
    assert_eq!(kind(&dead_labels, "overloaded"), 0.0);
    assert_eq!(one(&samples, "lbkit_successes_total", &dead_labels), 0.0);
    assert_eq!(one(&samples, "lbkit_dropped_total", &dead_labels), 0.0);

    // Its ejection: `passive_health` counts local-origin failures apart, with a threshold of
    // 1, so the first refusal ejected it, for `local_origin_failures` (not
    // `consecutive_failures`: split off, refusals do not count toward that rule). Exactly
    // once: the first ejection lasts 10 s, longer than this test, and a refusal while ejected
    // ejects nothing more; so no return either.
    let mut ejection = dead_labels.to_vec();
    ejection.push(("reason", "local_origin_failures"));
    assert_eq!(one(&samples, "lbkit_ejections_total", &ejection), 1.0);
    assert_eq!(
        find(&samples, "lbkit_ejections_total", &[proxy_label]),
        [1.0],
        "no other ejection, of any backend or for any reason"
    );
    assert!(find(&samples, "lbkit_returns_total", &[proxy_label]).is_empty());
    assert_eq!(one(&samples, "lbkit_ejected", &dead_labels), 1.0);
    assert_eq!(one(&samples, "lbkit_eligible", &dead_labels), 0.0);

    // The live backends: one pick per connection the server accepted, each relayed to its
    // end and reported as a success; no failure, none dropped (every pick was reported).
    for (addr, accepted) in live {
        let id = addr.to_string();
        let labels = [proxy_label, ("backend", id.as_str())];
        assert_eq!(picks(&labels), accepted as f64, "{id}");
        assert_eq!(
            one(&samples, "lbkit_successes_total", &labels),
            accepted as f64,
            "{id}"
        );
        assert_eq!(one(&samples, "lbkit_dropped_total", &labels), 0.0, "{id}");
        for k in ["local_origin", "error", "overloaded"] {
            assert_eq!(kind(&labels, k), 0.0, "{id} {k}");
        }
        assert_eq!(one(&samples, "lbkit_ejected", &labels), 0.0, "{id}");
        assert_eq!(one(&samples, "lbkit_eligible", &labels), 1.0, "{id}");
    }

    // Across the balancer: every client's connection once, plus each refused attempt.
    let total: f64 = find(&samples, "lbkit_picks_total", &[proxy_label])
        .iter()
        .sum();
    assert_eq!(total, (CLIENTS + refused) as f64);
    let successes: f64 = find(&samples, "lbkit_successes_total", &[proxy_label])
        .iter()
        .sum();
    assert_eq!(successes, burst.echoed as f64);
    assert_eq!(
        find(&samples, "lbkit_in_flight", &[proxy_label]),
        [0.0, 0.0, 0.0],
        "nothing held after the drain"
    );
    assert_eq!(one(&samples, "lbkit_backends", &[proxy_label]), 3.0);
    assert_eq!(
        one(&samples, "lbkit_eligible_backends", &[proxy_label]),
        2.0
    );
    assert_eq!(one(&samples, "lbkit_panic", &[proxy_label]), 0.0);
}
