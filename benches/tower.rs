//! The cost per request of lbkit's tower middleware against tower's own balancer, over the
//! same always-ready mock services.
//!
//! One iteration is one request as a tower caller makes it: `poll_ready` (ready), `call`,
//! and one poll of the response future (ready at once), which completes it and reports the
//! outcome. The mock service answers with `std::future::ready`, so the time is the
//! middleware's.
//!
//! Group `overhead/N` (N backends):
//! * `direct`: the mock alone, no balancer (the floor);
//! * `tower-p2c`: `tower::balance::p2c::Balance` over the mocks wrapped in `PendingRequests`
//!   (P2C on in-flight counts, tower's usual setup);
//! * `lbkit-p2c`: `lbkit::service::Balance` over `PowerOfTwoChoices` (the same algorithm,
//!   plus weights, health and a latency report per request);
//! * `lbkit-round-robin`, `lbkit-ring-keyed`: other policies through the same middleware;
//!   the ring request is keyed (one key hash per request).
//!
//! `cargo bench --bench tower --features tower`; read the ratio `lbkit-p2c / tower-p2c`.

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use lbkit::service::{Balance, NoKey};
use lbkit::{Balancer, HashRing, PowerOfTwoChoices, RoundRobin};
use tower::balance::p2c;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PendingRequestsDiscover};
use tower::Service;

/// An always-ready service answering at once.
#[derive(Clone)]
struct Mock(u64);

impl Service<u64> for Mock {
    type Response = u64;
    type Error = Infallible;
    type Future = Ready<Result<u64, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: u64) -> Self::Future {
        ready(Ok(request ^ self.0))
    }
}

struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

/// One request: poll_ready, call, one poll of the response.
fn request<S: Service<u64>>(service: &mut S, cx: &mut Context<'_>, n: u64) {
    match service.poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("the mocks are always ready"),
    }
    let response = pin!(service.call(n));
    match response.poll(cx) {
        Poll::Ready(Ok(r)) => {
            black_box(r);
        }
        _ => panic!("the mocks answer at once"),
    }
}

fn bench_one<S: Service<u64>>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    n: usize,
    mut service: S,
) {
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    // Warm: discovery applied, every inner service polled ready.
    request(&mut service, &mut cx, 0);
    let mut i = 0u64;
    group.bench_function(BenchmarkId::new(name, n), |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            request(&mut service, &mut cx, i);
        })
    });
}

fn lbkit_balance<B: Balancer<()>, F>(lb: B, key: F, n: usize) -> Balance<B, Mock, F> {
    let balance = Balance::new(Arc::new(lb), key);
    for i in 0..n {
        let id = format!("10.0.0.{i}:80");
        balance.membership().insert(id, Mock(i as u64)).unwrap();
    }
    balance
}

fn keyed(request: &u64) -> Option<u64> {
    Some(lbkit::hash::key_hash(&request.to_le_bytes()))
}

fn overhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("overhead");
    for n in [10, 100] {
        bench_one(&mut group, "direct", n, Mock(1));
        let list = ServiceList::new((0..n).map(|i| Mock(i as u64)));
        let tower_p2c = p2c::Balance::new(PendingRequestsDiscover::new(
            list,
            CompleteOnResponse::default(),
        ));
        bench_one(&mut group, "tower-p2c", n, tower_p2c);
        let p2c = PowerOfTwoChoices::with_seed(Vec::new(), 1).unwrap();
        bench_one(&mut group, "lbkit-p2c", n, lbkit_balance(p2c, NoKey, n));
        let rr = RoundRobin::new(Vec::new()).unwrap();
        bench_one(
            &mut group,
            "lbkit-round-robin",
            n,
            lbkit_balance(rr, NoKey, n),
        );
        let ring = HashRing::builder().build(Vec::new()).unwrap();
        let keyed = keyed as fn(&u64) -> Option<u64>;
        bench_one(
            &mut group,
            "lbkit-ring-keyed",
            n,
            lbkit_balance(ring, keyed, n),
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = overhead
}
criterion_main!(benches);
