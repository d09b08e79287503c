//! lbkit as a tower middleware in an HTTP client: a hyper client balancing over three HTTP
//! servers on loopback, with the `x-user` header as the hash key.
//!
//! ```text
//! cargo run --example tower_http --features tower
//! ```
//!
//! Starts three servers on `127.0.0.1:0` (each answers with its name), builds a
//! [`lbkit::service::Balance`] over one pooled hyper client per server, routed by a bounded-load
//! [`HashRing`] keyed by the header, and shows:
//!
//! * **affinity**: every user's requests land on the same server;
//! * **failover**: one server is stopped; the first request that fails on it (connection
//!   refused) is reported as a failure, outlier detection ejects the server at once, and the
//!   retry (and every later request of its users) goes to the next server on the ring, while
//!   the other users stay where they were.
//!
//! The balancer only chooses a backend id: each backend's inner service (`Upstream`) aims the
//! shared client at its own server by setting the scheme and authority of the request's URI,
//! which the caller writes as a path only.
//!
//! `Request` here is http's (re-exported by hyper). lbkit has a `Request` too (what a balancer
//! is asked to place); where both are needed, import lbkit's renamed:
//! `use lbkit::Request as LbRequest;`.
//!
//! The logic is in [`run`], which `tests/tower_http.rs` runs too.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::http::uri::{Authority, PathAndQuery, Scheme};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use lbkit::hash::key_hash;
use lbkit::service::{Balance, Outcome};
use lbkit::{HashRing, HealthConfig, OutlierDetection};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tower::{BoxError, Service, ServiceExt};

/// The header whose value keys each request.
const KEY_HEADER: &str = "x-user";

/// An HTTP server on loopback that answers every request with its name. Aborting the handle
/// stops it, open connections included (they live in the task's `JoinSet`).
async fn server(name: &'static str) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            connections.spawn(async move {
                let reply = hyper::service::service_fn(move |_req: Request<Incoming>| async move {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(name))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), reply)
                    .await;
            });
        }
    });
    Ok((addr, task))
}

/// The inner service of one backend: a pooled hyper client that sends every request to
/// this backend's address. Cheap to clone (the pool is shared).
#[derive(Clone)]
struct Upstream {
    client: Client<HttpConnector, Full<Bytes>>,
    authority: Authority,
}

impl Service<Request<Full<Bytes>>> for Upstream {
    type Response = Response<Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = hyper_util::client::legacy::ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.client.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Full<Bytes>>) -> Self::Future {
        // The caller's path and query stay; scheme and authority become this backend's (and
        // hyper sets the Host header from them).
        let mut uri = std::mem::take(request.uri_mut()).into_parts();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(self.authority.clone());
        if uri.path_and_query.is_none() {
            uri.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        *request.uri_mut() = Uri::from_parts(uri).expect("scheme, authority and path are set");
        self.client.request(request)
    }
}

/// The request's key: the pinned placement hash of its `x-user` header.
fn user_key(request: &Request<Full<Bytes>>) -> Option<u64> {
    request
        .headers()
        .get(KEY_HEADER)
        .map(|v| key_hash(v.as_bytes()))
}

/// A 5xx answer counts as a failure of the backend; anything else as a success.
fn server_errors(response: &Response<Incoming>) -> Outcome {
    if response.status().is_server_error() {
        Outcome::Failure
    } else {
        Outcome::Success
    }
}

/// What [`run`] observed.
#[derive(Debug)]
pub struct Report {
    /// The server each user's requests reached, twice per user, before the stop.
    pub before: BTreeMap<String, [String; 2]>,
    /// The server that was stopped.
    pub stopped: String,
    /// The server each user's request reached after the stop (after one retry if needed).
    pub after: BTreeMap<String, String>,
    /// Requests that failed after the stop (and were retried).
    pub failed: usize,
}

/// Starts three servers, balances `users` users over them, stops the server of the first
/// user, and sends one more request per user.
pub async fn run(users: usize) -> Result<Report, BoxError> {
    let mut servers = BTreeMap::new();
    for name in ["server-a", "server-b", "server-c"] {
        servers.insert(name, server(name).await?);
    }

    // Bounded loads (c = 1.25) keep a hot user from overloading one server; one failure
    // ejects a server (connection refused is not a slow server).
    let ring = HashRing::builder()
        .load_factor(1.25)
        .health(HealthConfig::new().outlier_detection(OutlierDetection {
            consecutive_failures: 1,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_percent: 50.0,
            ..OutlierDetection::default()
        }))
        .build(Vec::new())?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let mut balance = Balance::new(Arc::new(ring), user_key).classify(server_errors);
    for (name, (addr, _)) in &servers {
        let upstream = Upstream {
            client: client.clone(),
            authority: addr.to_string().parse()?,
        };
        balance.membership().insert(*name, upstream)?;
    }

    let mut before = BTreeMap::new();
    for u in 0..users {
        let user = format!("user-{u:03}");
        let first = get(&mut balance, &user).await?;
        let second = get(&mut balance, &user).await?;
        before.insert(user, [first, second]);
    }

    // Stop the first user's server.
    let stopped = before["user-000"][0].clone();
    let (_, task) = servers
        .remove(stopped.as_str())
        .ok_or("unknown server name")?;
    task.abort();
    let _ = task.await;

    let mut after = BTreeMap::new();
    let mut failed = 0;
    for user in before.keys() {
        let server = match get(&mut balance, user).await {
            Ok(server) => server,
            Err(_) => {
                // Reported as a failure: the server is ejected, the retry goes elsewhere.
                failed += 1;
                get(&mut balance, user).await?
            }
        };
        after.insert(user.clone(), server);
    }
    for (_, (_, task)) in servers {
        task.abort();
    }
    Ok(Report {
        before,
        stopped,
        after,
        failed,
    })
}

/// One GET keyed by `user`; the name of the server that answered.
async fn get<S>(balance: &mut S, user: &str) -> Result<String, BoxError>
where
    S: Service<Request<Full<Bytes>>, Response = Response<Incoming>, Error = BoxError>,
{
    let request = Request::get("/")
        .header(KEY_HEADER, user)
        .body(Full::new(Bytes::new()))?;
    let response = balance.ready().await?.call(request).await?;
    if response.status() != StatusCode::OK {
        return Err(format!("status {}", response.status()).into());
    }
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let report = run(12).await?;
    println!("affinity: each user's two requests, before any failure");
    for (user, [first, second]) in &report.before {
        let same = if first == second { "same" } else { "MOVED" };
        println!("  {user}  {first}  {second}  {same}");
    }
    println!(
        "\nstopped {}; one request per user after the stop",
        report.stopped
    );
    for (user, server) in &report.after {
        let was = &report.before[user][0];
        let note = if was == server {
            "stayed"
        } else {
            "failed over"
        };
        println!("  {user}  {was} -> {server}  {note}");
    }
    println!(
        "\n{} request(s) failed on the stopped server and were retried",
        report.failed
    );
    Ok(())
}
