//! Consistent hashing: lbkit's hashing policies and the peer crates side by side, on the same
//! backends and the same keys, in one run.
//!
//! Workload (as in the project's anchors): N backends named as socket addresses, a cycle of
//! 4096 string keys `user:%08d`, ring peers at 160 points per backend, Maglev at M = 65537.
//! lbkit is measured as `pick` + drop of the `Pick` (accounting included, through the public
//! `Balancer` API); the peers as their bare lookup.
//!
//! Groups:
//! * `lookup/N` for N = 10, 100, 1000: every policy and peer, with two floors: a `fetch_add`,
//!   and a bare binary search over the same points as lbkit's `HashRing` (computed from its
//!   documented derivation with the public `mix` and `id_hash`), which the ring's radix index
//!   replaces. The `rendezvous_hash` peer has no single-winner lookup: its
//!   `calc_candidates` scores every node and sorts them all (O(n log n) per key), where
//!   lbkit's `Rendezvous` takes the best in one O(n) pass; the row measures that call as the
//!   crate offers it.
//! * `bounded/1000`: bounded loads when every backend holds one pick, so a candidate is never
//!   idle and each pick sums the in-flight counts (O(n)); beside it the same ring unbounded,
//!   over the same load.
//! * `rebuild/100`: building the table over 100 backends (Maglev also with weights 1 to 4).
//!
//! Read ratios within a group: `cargo bench --bench hashing`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use lbkit::hash::{id_hash, key_hash, mix};
use lbkit::{Backend, Balancer, HashRing, JumpHash, Maglev, PresetRing, Rendezvous, Request};
use maglev::ConsistentHasher;

const KEYS: usize = 4096;

fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("user:{i:08}")).collect()
}

fn addrs(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("10.0.{}.{}:8080", i / 256, i % 256))
        .collect()
}

fn backends(n: usize) -> Vec<Backend<usize>> {
    addrs(n)
        .into_iter()
        .enumerate()
        .map(|(i, a)| Backend::new(a, i))
        .collect()
}

/// A `hashring` virtual node: the crate has no weights or replicas, so 160 nodes per backend.
#[derive(Hash, PartialEq, Eq, Clone, Debug)]
struct VirtualNode {
    addr: String,
    replica: u32,
}

fn lbkit_lookup(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    lb: &dyn Balancer<usize>,
    keys: &[String],
) {
    let mut i = 0;
    g.bench_function(BenchmarkId::new("lbkit", name), |b| {
        b.iter(|| {
            i = (i + 1) & (KEYS - 1);
            drop(black_box(lb.pick(&Request::with_key(&keys[i]))));
        })
    });
}

fn peer_lookup<R>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    keys: &[String],
    mut lookup: impl FnMut(&str) -> R,
) {
    let mut i = 0;
    g.bench_function(BenchmarkId::new("peer", name), |b| {
        b.iter(|| {
            i = (i + 1) & (KEYS - 1);
            black_box(lookup(&keys[i]))
        })
    });
}

fn lookups(c: &mut Criterion) {
    let keys = keys();
    for n in [10, 100, 1000] {
        let mut g = c.benchmark_group(format!("lookup/{n}"));
        let counter = AtomicU64::new(0);
        g.bench_function("floor/fetch_add", |b| {
            b.iter(|| black_box(counter.fetch_add(1, Ordering::Relaxed)))
        });

        lbkit_lookup(&mut g, "ring", &HashRing::new(backends(n)).unwrap(), &keys);
        lbkit_lookup(&mut g, "maglev", &Maglev::new(backends(n)).unwrap(), &keys);
        lbkit_lookup(
            &mut g,
            "rendezvous",
            &Rendezvous::new(backends(n)).unwrap(),
            &keys,
        );
        lbkit_lookup(&mut g, "jump", &JumpHash::new(backends(n)).unwrap(), &keys);
        lbkit_lookup(
            &mut g,
            "nginx-preset",
            &PresetRing::nginx(backends(n)).unwrap(),
            &keys,
        );
        lbkit_lookup(
            &mut g,
            "ketama-preset",
            &PresetRing::ketama(backends(n)).unwrap(),
            &keys,
        );
        lbkit_lookup(
            &mut g,
            "envoy-ring-hash-preset",
            &PresetRing::envoy_ring_hash(backends(n)).unwrap(),
            &keys,
        );
        lbkit_lookup(
            &mut g,
            "grpc-ring-hash-preset",
            &PresetRing::grpc_ring_hash(backends(n)).unwrap(),
            &keys,
        );
        lbkit_lookup(
            &mut g,
            "envoy-maglev-preset",
            &PresetRing::envoy_maglev(backends(n)).unwrap(),
            &keys,
        );
        let bounded = HashRing::builder()
            .load_factor(1.25)
            .build(backends(n))
            .unwrap();
        lbkit_lookup(&mut g, "ring+bound", &bounded, &keys);

        // The ring's own points, as its docs derive them, and a binary search for the
        // successor of the key's hash: what the radix index replaces.
        let mut points: Vec<u64> = addrs(n)
            .iter()
            .flat_map(|a| {
                let h = id_hash(a);
                (0..160).map(move |j| mix(h, j))
            })
            .collect();
        points.sort_unstable();
        let mut i = 0;
        g.bench_function(BenchmarkId::new("floor", "binary-search"), |b| {
            b.iter(|| {
                i = (i + 1) & (KEYS - 1);
                let at = points.partition_point(|&p| p < key_hash(keys[i].as_bytes()));
                black_box(points[at % points.len()])
            })
        });

        let addrs = addrs(n);
        let buckets: Vec<pingora_ketama::Bucket> = addrs
            .iter()
            .map(|a| pingora_ketama::Bucket::new(a.parse::<SocketAddr>().unwrap(), 1))
            .collect();
        let ketama = pingora_ketama::Continuum::new(&buckets);
        peer_lookup(&mut g, "pingora-ketama", &keys, |k| {
            ketama.node(k.as_bytes())
        });

        let mut ring = hashring::HashRing::new();
        ring.batch_add(
            addrs
                .iter()
                .flat_map(|a| {
                    (0..160).map(move |replica| VirtualNode {
                        addr: a.clone(),
                        replica,
                    })
                })
                .collect(),
        );
        peer_lookup(&mut g, "hashring", &keys, |k| {
            ring.get(&k).map(|v| v.replica)
        });

        let table = maglev::Maglev::with_capacity(addrs.clone(), 65537);
        peer_lookup(&mut g, "maglev", &keys, |k| table.get(&k).map(String::len));

        let jump = jumphash::JumpHasher::new();
        peer_lookup(&mut g, "jumphash", &keys, |k| {
            &addrs[jump.slot(&k, n as u32) as usize]
        });

        let mut nodes = rendezvous_hash::RendezvousNodes::default();
        for a in &addrs {
            nodes.insert(rendezvous_hash::IdNode::new(a.clone()));
        }
        peer_lookup(&mut g, "rendezvous_hash", &keys, |k| {
            nodes.calc_candidates(&k).next().map(|node| node.len())
        });
        g.finish();
    }
}

fn bounded(c: &mut Criterion) {
    let keys = keys();
    let n = 1000;
    let mut g = c.benchmark_group(format!("bounded/{n}"));
    // One pick held on every backend (`pick_n` returns distinct backends).
    let load = |lb: &dyn Balancer<usize>| lb.pick_n(&Request::new(), n);
    let plain = HashRing::new(backends(n)).unwrap();
    let held_plain = load(&plain);
    assert_eq!(held_plain.len(), n);
    lbkit_lookup(&mut g, "ring", &plain, &keys);
    let bounded = HashRing::builder()
        .load_factor(1.25)
        .build(backends(n))
        .unwrap();
    let held_bounded = load(&bounded);
    assert_eq!(held_bounded.len(), n);
    lbkit_lookup(&mut g, "ring+bound", &bounded, &keys);
    g.finish();
}

fn rebuilds(c: &mut Criterion) {
    let n = 100;
    let mut g = c.benchmark_group(format!("rebuild/{n}"));
    g.bench_function(BenchmarkId::new("lbkit", "ring"), |b| {
        b.iter(|| black_box(HashRing::new(backends(n)).unwrap()))
    });
    g.bench_function(BenchmarkId::new("lbkit", "nginx-preset"), |b| {
        b.iter(|| black_box(PresetRing::nginx(backends(n)).unwrap()))
    });
    g.bench_function(BenchmarkId::new("lbkit", "maglev"), |b| {
        b.iter(|| black_box(Maglev::new(backends(n)).unwrap()))
    });
    let weighted = || {
        backends(n)
            .into_iter()
            .map(|b| {
                let w = 1 + (*b.value() % 4) as u32;
                b.with_weight(w)
            })
            .collect::<Vec<_>>()
    };
    g.bench_function(BenchmarkId::new("lbkit", "maglev-weighted"), |b| {
        b.iter(|| black_box(Maglev::new(weighted()).unwrap()))
    });
    let addrs = addrs(n);
    g.bench_function(BenchmarkId::new("peer", "pingora-ketama"), |b| {
        b.iter(|| {
            let buckets: Vec<pingora_ketama::Bucket> = addrs
                .iter()
                .map(|a| pingora_ketama::Bucket::new(a.parse::<SocketAddr>().unwrap(), 1))
                .collect();
            black_box(pingora_ketama::Continuum::new(&buckets))
        })
    });
    g.bench_function(BenchmarkId::new("peer", "maglev"), |b| {
        b.iter(|| black_box(maglev::Maglev::with_capacity(addrs.clone(), 65537)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    targets = lookups, bounded, rebuilds
}
criterion_main!(benches);
