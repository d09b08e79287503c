//! The cost of sharing a balancer between threads (issue #18): for each policy, per pick +
//! drop,
//!
//! * `alone`: one thread on one balancer;
//! * `two-on-two`: two threads at once, each on its own identical balancer, so the
//!   hardware's own two-thread slowdown (shared caches, SMT, frequency) is in the time but
//!   no line is shared;
//! * `two-on-one`: two threads at once on one balancer.
//!
//! `two-on-one / two-on-two` is what sharing costs; the floor pair (`floor/separate`: two
//! threads each adding to its own counter, `floor/shared`: both adding to one) is the same
//! ratio for one atomic add, measured in the same run. The hashing policies pick by key, the
//! two threads walking different halves of 1,024 keys; the others pick without one. Every
//! timing is the slower thread's time over `iters` picks (`iter_custom`), so the per-pick
//! figure of a two-thread case is per pick of one thread.
//!
//! `maglev-disjoint` is the diagnosis: Maglev again, but each thread's keys land on its own
//! half of the backends, so the two threads never write the same backend's lines. If sharing
//! costs nothing there, the cost above is the backends' lines, not a line every pick writes.
//!
//! `cargo bench --bench contention`; ratios, not times, are the result (benches/README.md).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::{two_threads, Padded};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use lbkit::{
    Backend, Balancer, LeastConnections, Maglev, PowerOfTwoChoices, Preset, PresetRing, Request,
    RoundRobin,
};

const N: usize = 100;

fn backends(n: usize) -> Vec<Backend<u64>> {
    (0..n)
        .map(|i| Backend::new(format!("10.0.{}.{}:8080", i / 256, i % 256), i as u64))
        .collect()
}

type Make = fn() -> Box<dyn Balancer<u64>>;

/// The policies, and whether each picks by key.
fn policies() -> [(&'static str, Make, bool); 5] {
    [
        (
            "round-robin",
            || Box::new(RoundRobin::new(backends(N)).unwrap()),
            false,
        ),
        (
            "p2c",
            || Box::new(PowerOfTwoChoices::with_seed(backends(N), 1).unwrap()),
            false,
        ),
        (
            "least-connections",
            || Box::new(LeastConnections::new(backends(N)).unwrap()),
            false,
        ),
        (
            "maglev",
            || Box::new(Maglev::with_seed(backends(N), 1).unwrap()),
            true,
        ),
        (
            "nginx",
            || {
                Box::new(
                    PresetRing::builder(Preset::Nginx)
                        .build(backends(N))
                        .unwrap(),
                )
            },
            true,
        ),
    ]
}

/// `iters` picks + drops from `lb` by thread `t` (keys from its half when `keyed`).
fn picks(lb: &dyn Balancer<u64>, keys: &[String], keyed: bool, t: usize, iters: u64) {
    let half = &keys[t * keys.len() / 2..(t + 1) * keys.len() / 2];
    let mut i = 0;
    for _ in 0..iters {
        let request = if keyed {
            i = (i + 1) % half.len();
            Request::with_key(&half[i])
        } else {
            Request::new()
        };
        drop(black_box(lb.pick(&request)));
    }
}

fn contention(c: &mut Criterion) {
    let mut g = c.benchmark_group(format!("contention/{N}"));
    let shared = AtomicU64::new(0);
    let separate = [Padded(AtomicU64::new(0)), Padded(AtomicU64::new(0))];
    g.bench_function("floor/alone", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(separate[0].0.fetch_add(1, Ordering::Relaxed));
            }
            start.elapsed()
        })
    });
    g.bench_function("floor/separate", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |t, iters| {
                for _ in 0..iters {
                    black_box(separate[t].0.fetch_add(1, Ordering::Relaxed));
                }
            })
        })
    });
    g.bench_function("floor/shared", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |_, iters| {
                for _ in 0..iters {
                    black_box(shared.fetch_add(1, Ordering::Relaxed));
                }
            })
        })
    });
    let keys: Vec<String> = (0..1024).map(|i| format!("user-{i}")).collect();
    for (name, make, keyed) in policies() {
        let one = make();
        let two = [make(), make()];
        let keys = &keys;
        g.bench_function(BenchmarkId::new(name, "alone"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                picks(&*one, keys, keyed, 0, iters);
                start.elapsed()
            })
        });
        g.bench_function(BenchmarkId::new(name, "two-on-two"), |b| {
            b.iter_custom(|iters| {
                two_threads(iters, |t, iters| picks(&*two[t], keys, keyed, t, iters))
            })
        });
        g.bench_function(BenchmarkId::new(name, "two-on-one"), |b| {
            b.iter_custom(|iters| {
                two_threads(iters, |t, iters| picks(&*one, keys, keyed, t, iters))
            })
        });
    }
    // Where the sharing cost is: Maglev with each thread's keys landing on its own half of
    // the backends (even or odd index), so the threads never write the same backend's lines.
    let one = Maglev::with_seed(backends(N), 1).unwrap();
    let two = [
        Maglev::with_seed(backends(N), 1).unwrap(),
        Maglev::with_seed(backends(N), 1).unwrap(),
    ];
    let mut halves: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for i in 0.. {
        if halves.iter().all(|h| h.len() == 512) {
            break;
        }
        let key = format!("user-{i}");
        let index = *one.pick(&Request::with_key(&key)).unwrap().value() as usize;
        if halves[index % 2].len() < 512 {
            halves[index % 2].push(key);
        }
    }
    let run = |lb: &dyn Balancer<u64>, keys: &[String], iters: u64| {
        for i in 0..iters as usize {
            drop(black_box(
                lb.pick(&Request::with_key(&keys[i % keys.len()])),
            ));
        }
    };
    g.bench_function("maglev-disjoint/two-on-two", |b| {
        b.iter_custom(|iters| two_threads(iters, |t, iters| run(&two[t], &halves[t], iters)))
    });
    g.bench_function("maglev-disjoint/two-on-one", |b| {
        b.iter_custom(|iters| two_threads(iters, |t, iters| run(&one, &halves[t], iters)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = contention
}
criterion_main!(benches);
