//! Steering through `lbkit::service`: tower's own `Retry` over a `Balance` whose requests
//! carry an `Attempts` record avoids the backends already tried, for every policy of the
//! registry; sticky sessions (`HttpSteer`'s cookie and header) are kept while the backend can
//! serve and given up when it cannot; every `Ok` response names its backend (`Served`); and
//! the accounting of every pick returns to zero.

mod common;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::header::HeaderName;
use lbkit::hash::key_hash;
use lbkit::service::{Attempts, Balance, BalanceLayer, HttpSteer, MarkServed, NoSteer};
use lbkit::service::{Served, Steer, Unavailable};
use lbkit::{Balancer, HashRing, Health, RoundRobin};
use tower::retry::{Policy, Retry};
use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};

// ---------------------------------------------------------------------------------------
// Requests of our own type, steered by our own `Steer`.

#[derive(Clone)]
struct Query {
    key: String,
    attempts: Attempts,
}

impl Query {
    fn new(key: impl Into<String>) -> Self {
        Query {
            key: key.into(),
            attempts: Attempts::new(),
        }
    }
}

#[derive(Debug)]
struct Reply {
    from: &'static str,
    marked: Option<Arc<str>>,
}

#[derive(Clone)]
struct QuerySteer;

impl Steer<Query> for QuerySteer {
    fn attempts<'r>(&self, query: &'r Query) -> Option<&'r Attempts> {
        Some(&query.attempts)
    }
}

impl MarkServed<Reply> for QuerySteer {
    fn mark(&self, reply: &mut Reply, backend: &Arc<str>) {
        reply.marked = Some(Arc::clone(backend));
    }
}

fn keyed(query: &Query) -> Option<u64> {
    Some(key_hash(query.key.as_bytes()))
}

/// Retries an error up to `left` more times, each on a clone of the request (which shares
/// its `Attempts`).
#[derive(Clone)]
struct RetryErrors {
    left: usize,
}

impl<Req: Clone, Res, E> Policy<Req, Res, E> for RetryErrors {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut Req, result: &mut Result<Res, E>) -> Option<Ready<()>> {
        if result.is_ok() || self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(ready(()))
    }

    fn clone_request(&mut self, request: &Req) -> Option<Req> {
        Some(request.clone())
    }
}

/// An inner service named `name` that fails every request when `failing`, and counts calls.
fn backend(
    name: &'static str,
    failing: bool,
    calls: Arc<AtomicUsize>,
) -> impl Service<Query, Response = Reply, Error = BoxError, Future = Ready<Result<Reply, BoxError>>>
       + Clone {
    service_fn(move |_: Query| {
        calls.fetch_add(1, Ordering::SeqCst);
        ready(if failing {
            Err::<Reply, BoxError>(format!("{name} failed").into())
        } else {
            Ok(Reply {
                from: name,
                marked: None,
            })
        })
    })
}

const NAMES: [&str; 3] = ["a", "b", "c"];

type Dyn = Arc<dyn Balancer<()>>;

/// A balance of every registry policy over backends a, b, c, of which `a` fails every
/// request; the call counts of each.
fn balance_with_a_failing<St: Steer<Query> + MarkServed<Reply> + Clone>(
    lb: Dyn,
    steer: St,
) -> (
    impl Service<Query, Response = Reply, Error = BoxError> + Clone,
    Vec<Arc<AtomicUsize>>,
) {
    let calls: Vec<Arc<AtomicUsize>> = NAMES.iter().map(|_| Arc::default()).collect();
    let balance = Balance::new(lb, keyed as fn(&Query) -> Option<u64>).steer(steer);
    for (i, name) in NAMES.into_iter().enumerate() {
        let service = backend(name, name == "a", Arc::clone(&calls[i]));
        balance.membership().insert(name, service).unwrap();
    }
    (balance, calls)
}

#[tokio::test]
async fn retries_avoid_the_backends_already_tried_for_every_policy() {
    for policy in common::POLICIES {
        let lb: Dyn = Arc::from((policy.new_unit)(Vec::new(), 7).unwrap());
        let (balance, calls) = balance_with_a_failing(Arc::clone(&lb), QuerySteer);
        let mut client = Retry::new(RetryErrors { left: 2 }, balance);
        for i in 0..60 {
            let query = Query::new(format!("user-{i}"));
            let attempts = query.attempts.clone();
            let reply = client
                .ready()
                .await
                .unwrap()
                .call(query)
                .await
                .unwrap_or_else(|e| panic!("{}: user-{i} failed: {e}", policy.name));
            let tried = attempts.tried();
            // One attempt, or a failure on `a` and then another backend: never `a` twice.
            let distinct: BTreeSet<&str> = tried.iter().map(|id| &**id).collect();
            assert_eq!(distinct.len(), tried.len(), "{}: {tried:?}", policy.name);
            assert!(tried.len() <= 2, "{}: {tried:?}", policy.name);
            assert_eq!(
                tried.len() == 2,
                &*tried[0] == "a",
                "{}: {tried:?}",
                policy.name
            );
            assert_eq!(&**tried.last().unwrap(), reply.from, "{}", policy.name);
            assert_eq!(reply.marked.as_deref(), Some(reply.from), "{}", policy.name);
        }
        let served: usize = calls.iter().map(|c| c.load(Ordering::SeqCst)).sum();
        assert!(served >= 60, "{}", policy.name);
        assert!(
            lb.status().iter().all(|s| s.in_flight() == 0),
            "{}: picks left held",
            policy.name
        );
    }
}

#[tokio::test]
async fn without_an_attempts_record_a_hashing_retry_returns_to_the_failed_backend() {
    // The contrast that shows the test above can fail: a key whose home is `a` is retried
    // on `a` each time, and fails all three tries.
    let lb: Dyn = Arc::new(HashRing::new(Vec::new()).unwrap());
    let (balance, calls) = balance_with_a_failing(Arc::clone(&lb), NoSteer);
    let mut client = Retry::new(RetryErrors { left: 2 }, balance);
    let home_a = (0..1000)
        .map(|i| format!("user-{i}"))
        .find(|key| {
            let home = lb.pick(&lbkit::Request::with_hash(key_hash(key.as_bytes())));
            home.is_some_and(|p| p.id() == "a")
        })
        .expect("some key lives on a");
    let result = client.ready().await.unwrap().call(Query::new(home_a)).await;
    assert!(result.is_err());
    assert_eq!(calls[0].load(Ordering::SeqCst), 3, "all three tries on a");
}

#[tokio::test]
async fn when_every_backend_was_tried_the_next_attempt_goes_to_one_anyway() {
    let calls = Arc::new(AtomicUsize::new(0));
    let lb = Arc::new(RoundRobin::new(Vec::new()).unwrap());
    let balance =
        Balance::new(Arc::clone(&lb), keyed as fn(&Query) -> Option<u64>).steer(QuerySteer);
    for name in ["a", "b"] {
        balance
            .membership()
            .insert(name, backend(name, true, Arc::clone(&calls)))
            .unwrap();
    }
    let mut client = Retry::new(RetryErrors { left: 3 }, balance);
    let query = Query::new("k");
    let attempts = query.attempts.clone();
    assert!(client.ready().await.unwrap().call(query).await.is_err());
    let tried = attempts.tried();
    assert_eq!(tried.len(), 4);
    // The first two attempts are on distinct backends; then the list gives way.
    assert_ne!(tried[0], tried[1]);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert!(lb.status().iter().all(|s| s.in_flight() == 0));
}

#[tokio::test]
async fn an_attempt_that_finds_no_backend_records_nothing() {
    let calls = Arc::new(AtomicUsize::new(0));
    let lb = Arc::new(RoundRobin::new(Vec::new()).unwrap());
    let mut balance =
        Balance::new(Arc::clone(&lb), keyed as fn(&Query) -> Option<u64>).steer(QuerySteer);
    balance
        .membership()
        .insert("a", backend("a", false, Arc::clone(&calls)))
        .unwrap();
    lb.set_health("a", Health::Down).unwrap();
    let query = Query::new("k");
    let attempts = query.attempts.clone();
    let error = balance
        .ready()
        .await
        .unwrap()
        .call(query)
        .await
        .unwrap_err();
    assert_eq!(
        error.downcast_ref::<Unavailable>(),
        Some(&Unavailable::NoEligibleBackend)
    );
    assert!(attempts.is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------------------------
// http requests, steered by `HttpSteer`.

type HttpRequest = http::Request<String>;
type HttpResponse = http::Response<&'static str>;

fn http_backend(
    name: &'static str,
) -> impl Service<HttpRequest, Response = HttpResponse, Error = Infallible> + Clone {
    service_fn(move |_: HttpRequest| ready(Ok::<_, Infallible>(http::Response::new(name))))
}

fn http_balance(
    lb: Arc<RoundRobin<()>>,
    steer: HttpSteer,
) -> impl Service<HttpRequest, Response = HttpResponse, Error = BoxError> + Clone {
    let balance = Balance::new(lb, lbkit::service::NoKey).steer(steer);
    for name in NAMES {
        balance
            .membership()
            .insert(name, http_backend(name))
            .unwrap();
    }
    balance
}

fn with_cookie(cookie: &str) -> HttpRequest {
    http::Request::get("/")
        .header("cookie", cookie)
        .body(String::new())
        .unwrap()
}

async fn served<S>(client: &mut S, request: HttpRequest) -> &'static str
where
    S: Service<HttpRequest, Response = HttpResponse, Error = BoxError>,
{
    let response = client.ready().await.unwrap().call(request).await.unwrap();
    let body = *response.body();
    // Every response names the backend that served it.
    assert_eq!(
        response.extensions().get::<Served>(),
        Some(&Served::new(body))
    );
    body
}

#[tokio::test]
async fn a_sticky_cookie_keeps_the_session_while_its_backend_can_serve() {
    let lb = Arc::new(RoundRobin::new(Vec::new()).unwrap());
    let mut client = http_balance(Arc::clone(&lb), HttpSteer::new().sticky_cookie("lb"));
    for _ in 0..6 {
        assert_eq!(served(&mut client, with_cookie("x=1; lb=b")).await, "b");
    }
    // Draining keeps its sessions (gRFC A55).
    lb.set_health("b", Health::Draining).unwrap();
    assert_eq!(served(&mut client, with_cookie("lb=b")).await, "b");
    // Down does not: the session moves, and the response says where.
    lb.set_health("b", Health::Down).unwrap();
    let moved = served(&mut client, with_cookie("lb=b")).await;
    assert_ne!(moved, "b");
    // An unknown id, or no cookie, is routed as if none were given: round robin over a, c.
    let mut seen = BTreeSet::new();
    for request in [
        with_cookie("lb=zzz"),
        with_cookie("other=b"),
        with_cookie("lb=zzz"),
    ] {
        seen.insert(served(&mut client, request).await);
    }
    assert_eq!(seen, BTreeSet::from(["a", "c"]));
    assert!(lb.status().iter().all(|s| s.in_flight() == 0));
}

#[tokio::test]
async fn a_sticky_header_is_read_and_the_attempts_record_wins_over_it() {
    let lb = Arc::new(RoundRobin::new(Vec::new()).unwrap());
    let steer = HttpSteer::new().sticky_header(HeaderName::from_static("x-backend"));
    let mut client = http_balance(Arc::clone(&lb), steer);
    let request = || {
        http::Request::get("/")
            .header("x-backend", "c")
            .body(String::new())
            .unwrap()
    };
    for _ in 0..4 {
        assert_eq!(served(&mut client, request()).await, "c");
    }
    // A retry of a request already sent to c avoids c, sticky or not.
    let attempts = Attempts::new();
    let mut first = request();
    first.extensions_mut().insert(attempts.clone());
    assert_eq!(served(&mut client, first).await, "c");
    let mut retry = request();
    retry.extensions_mut().insert(attempts.clone());
    assert_ne!(served(&mut client, retry).await, "c");
    assert_eq!(attempts.len(), 2);
}

#[tokio::test]
async fn the_layer_steers_too() {
    let lb = Arc::new(RoundRobin::new(Vec::new()).unwrap());
    let discover = tower::discover::ServiceList::new(vec![http_backend("only")]);
    let mut client = ServiceBuilder::new()
        .layer(BalanceLayer::new(lb, lbkit::service::NoKey).steer(HttpSteer::new()))
        .service(discover);
    let response = client
        .ready()
        .await
        .unwrap()
        .call(with_cookie(""))
        .await
        .unwrap();
    // ServiceList keys are their positions.
    assert_eq!(response.extensions().get::<Served>().unwrap().id(), "0");
}
