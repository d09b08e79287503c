//! The public surface of the hashing policies: constructors and builders, typed errors that
//! change nothing, empty and ineligible sets, requests without a key, JumpHash's order.

use std::sync::Arc;

use lbkit::{
    jump_hash, Backend, Balancer, Error, HashRing, Health, JumpHash, Maglev, Rendezvous, Request,
};

fn abc() -> Vec<Backend<u8>> {
    vec![
        Backend::new("a", 0),
        Backend::new("b", 1),
        Backend::new("c", 2),
    ]
}

fn all(backends: Vec<Backend<u8>>) -> Vec<(&'static str, Arc<dyn Balancer<u8>>)> {
    vec![
        ("ring", Arc::new(HashRing::new(backends.clone()).unwrap())),
        ("maglev", Arc::new(Maglev::new(backends.clone()).unwrap())),
        (
            "rendezvous",
            Arc::new(Rendezvous::new(backends.clone()).unwrap()),
        ),
        ("jump", Arc::new(JumpHash::new(backends).unwrap())),
    ]
}

fn parameter(err: Error) -> &'static str {
    match err {
        Error::InvalidConfig { parameter, .. } => parameter,
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn invalid_load_factors_are_typed_errors() {
    for c in [0.0, 0.99, -2.0, f64::NAN, f64::INFINITY] {
        let ring = HashRing::builder().load_factor(c).build(abc());
        let maglev = Maglev::builder().load_factor(c).build(abc());
        let rendezvous = Rendezvous::builder().load_factor(c).build(abc());
        assert_eq!(parameter(ring.err().unwrap()), "load_factor");
        assert_eq!(parameter(maglev.err().unwrap()), "load_factor");
        assert_eq!(parameter(rendezvous.err().unwrap()), "load_factor");
    }
    assert!(HashRing::builder().load_factor(1.0).build(abc()).is_ok());
    assert!(Rendezvous::builder().load_factor(1e9).build(abc()).is_ok());
}

#[test]
fn maglev_table_size_is_checked_at_construction_and_update() {
    for bad in [0, 1, 4, 65_536, 65_535, (1 << 24) + 43] {
        let err = Maglev::builder()
            .table_size(bad)
            .build(abc())
            .err()
            .unwrap();
        assert_eq!(parameter(err), "table_size", "{bad}");
    }
    // 2 slots cannot hold 3 backends, weight 0 or not.
    let err = Maglev::builder().table_size(2).build(abc()).err().unwrap();
    assert_eq!(parameter(err), "table_size");
    let lb = Maglev::builder().table_size(3).build(abc()).unwrap();
    let keys: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
    let before: Vec<String> = keys
        .iter()
        .map(|k| lb.pick(&Request::with_key(k)).unwrap().id().to_owned())
        .collect();
    let mut four = abc();
    four.push(Backend::new("d", 3).with_weight(0));
    assert_eq!(parameter(lb.update(four).unwrap_err()), "table_size");
    // Nothing changed.
    assert_eq!(lb.status().len(), 3);
    let after: Vec<String> = keys
        .iter()
        .map(|k| lb.pick(&Request::with_key(k)).unwrap().id().to_owned())
        .collect();
    assert_eq!(before, after);
}

#[test]
fn ring_points_are_checked() {
    let err = HashRing::builder()
        .points_per_weight(0)
        .build(abc())
        .err()
        .unwrap();
    assert_eq!(parameter(err), "points_per_weight");
    let err = HashRing::builder()
        .max_points(0)
        .build(abc())
        .err()
        .unwrap();
    assert_eq!(parameter(err), "max_points");
    let err = HashRing::builder()
        .weight_unit(0)
        .build(abc())
        .err()
        .unwrap();
    assert_eq!(parameter(err), "weight_unit");
    // Fewer points than backends is refused, by an update too, which changes nothing.
    let lb = HashRing::builder().max_points(3).build(abc()).unwrap();
    let four = vec![
        Backend::new("a", 0u8),
        Backend::new("b", 0),
        Backend::new("c", 0),
        Backend::new("d", 0),
    ];
    assert_eq!(parameter(lb.update(four).unwrap_err()), "max_points");
    assert_eq!(lb.status().len(), 3);
    // A heavy weight no longer blows a point budget: only ratios count.
    let heavy = vec![Backend::new("a", 0u8).with_weight(1 << 20)];
    assert!(HashRing::new(heavy.clone()).is_ok());
    assert!(lb.update(heavy).is_ok());
    assert_eq!(lb.status().len(), 1);
}

#[test]
fn empty_and_ineligible_sets_pick_nothing() {
    for (name, lb) in all(Vec::new()) {
        assert!(lb.pick(&Request::with_key("k")).is_none(), "{name}");
        assert!(lb.pick(&Request::new()).is_none(), "{name}");
        assert!(lb.pick_n(&Request::with_key("k"), 3).is_empty(), "{name}");
    }
    let zero: Vec<Backend<u8>> = abc().into_iter().map(|b| b.with_weight(0)).collect();
    for (name, lb) in all(zero) {
        assert!(lb.pick(&Request::with_key("k")).is_none(), "{name}");
    }
    for (name, lb) in all(abc()) {
        for id in ["a", "b", "c"] {
            lb.set_health(id, Health::Down).unwrap();
        }
        assert!(lb.pick(&Request::with_key("k")).is_none(), "{name}");
        assert!(lb.pick_n(&Request::new(), 2).is_empty(), "{name}");
        lb.set_health("b", Health::Up).unwrap();
        for i in 0..50 {
            let key = format!("k{i}");
            assert_eq!(
                lb.pick(&Request::with_key(&key)).unwrap().id(),
                "b",
                "{name}"
            );
        }
    }
}

#[test]
fn weight_zero_is_never_picked() {
    let mut set = abc();
    set[1] = Backend::new("b", 1).with_weight(0);
    for (name, lb) in all(set) {
        for i in 0..500 {
            let key = format!("k{i}");
            assert_ne!(
                lb.pick(&Request::with_key(&key)).unwrap().id(),
                "b",
                "{name}"
            );
            assert_eq!(lb.pick_n(&Request::with_key(&key), 3).len(), 2, "{name}");
        }
    }
}

#[test]
fn requests_without_a_key_spread_and_replay_with_a_seed() {
    let many: Vec<Backend<u8>> = (0..10).map(|i| Backend::new(format!("n{i}"), i)).collect();
    let run = |seed: u64| -> Vec<String> {
        let lb = Rendezvous::builder()
            .seed(seed)
            .build(many.clone())
            .unwrap();
        (0..400)
            .map(|_| lb.pick(&Request::new()).unwrap().id().to_owned())
            .collect()
    };
    let a = run(7);
    assert_eq!(a, run(7));
    assert_ne!(a, run(8));
    for i in 0..10 {
        let n = a.iter().filter(|id| **id == format!("n{i}")).count();
        assert!((15..=70).contains(&n), "n{i} got {n} of 400");
    }
    // The other builders take a seed too, and spread over every backend.
    let lbs: Vec<Box<dyn Balancer<u8>>> = vec![
        Box::new(HashRing::builder().seed(1).build(many.clone()).unwrap()),
        Box::new(Maglev::builder().seed(1).build(many.clone()).unwrap()),
        Box::new(JumpHash::with_seed(many.clone(), 1).unwrap()),
    ];
    for lb in lbs {
        let seen: std::collections::HashSet<String> = (0..400)
            .map(|_| lb.pick(&Request::new()).unwrap().id().to_owned())
            .collect();
        assert_eq!(seen.len(), 10);
    }
}

#[test]
fn same_key_same_backend_and_bytes_equal_their_hash() {
    for (name, lb) in all(abc()) {
        for i in 0..100 {
            let key = format!("user-{i}");
            let by_bytes = lb.pick(&Request::with_key(&key)).unwrap().id().to_owned();
            let by_hash = Request::with_hash(lbkit::hash::key_hash(key.as_bytes()));
            assert_eq!(lb.pick(&by_hash).unwrap().id(), by_bytes, "{name}");
            assert_eq!(lb.pick(&Request::with_key(&key)).unwrap().id(), by_bytes);
        }
    }
}

#[test]
fn jump_buckets_are_the_backends_in_the_order_given() {
    let shards: Vec<Backend<u32>> = ["z", "m", "a", "q", "b"]
        .iter()
        .enumerate()
        .map(|(i, id)| Backend::new(*id, i as u32))
        .collect();
    let lb = JumpHash::new(shards.clone()).unwrap();
    for k in 0..1000u64 {
        let pick = lb.pick(&Request::with_hash(k)).unwrap();
        assert_eq!(*pick, jump_hash(k, 5));
    }
    // Another order, another mapping (the one order-dependent policy).
    let mut reversed = shards;
    reversed.reverse();
    lb.update(reversed).unwrap();
    for k in 0..1000u64 {
        let pick = lb.pick(&Request::with_hash(k)).unwrap();
        assert_eq!(
            pick.id(),
            ["b", "q", "a", "m", "z"][jump_hash(k, 5) as usize]
        );
    }
}

#[test]
fn picks_are_counted_and_released() {
    for (name, lb) in all(abc()) {
        let picks = lb.pick_n(&Request::with_key("k"), 3);
        assert_eq!(
            lb.status().iter().map(|s| s.in_flight()).sum::<usize>(),
            3,
            "{name}"
        );
        drop(picks);
        assert_eq!(
            lb.status().iter().map(|s| s.in_flight()).sum::<usize>(),
            0,
            "{name}"
        );
    }
}

#[test]
fn bounded_loads_spread_one_hot_key() {
    let many: Vec<Backend<u8>> = (0..8).map(|i| Backend::new(format!("n{i}"), i)).collect();
    let lbs: Vec<Box<dyn Balancer<u8>>> = vec![
        Box::new(
            HashRing::builder()
                .load_factor(1.25)
                .build(many.clone())
                .unwrap(),
        ),
        Box::new(
            Maglev::builder()
                .load_factor(1.25)
                .build(many.clone())
                .unwrap(),
        ),
        Box::new(
            Rendezvous::builder()
                .load_factor(1.25)
                .build(many.clone())
                .unwrap(),
        ),
    ];
    for lb in lbs {
        // 80 held picks of one key: capacity ceil(1.25 x (total + 1) / 8) caps every backend.
        let held: Vec<_> = (0..80)
            .map(|_| lb.pick(&Request::with_key("hot")).unwrap())
            .collect();
        let max = lb.status().iter().map(|s| s.in_flight()).max().unwrap();
        assert!(max <= 13, "max {max}"); // ceil(1.25 x 80 / 8) = 13
        drop(held);
        // Unloaded, the key goes home again.
        let home = lb.pick(&Request::with_key("hot")).unwrap().id().to_owned();
        assert_eq!(lb.pick(&Request::with_key("hot")).unwrap().id(), home);
    }
}

#[test]
fn balancers_are_send_sync_and_shareable() {
    fn assert_send_sync<B: Send + Sync>() {}
    assert_send_sync::<HashRing<String>>();
    assert_send_sync::<Maglev<String>>();
    assert_send_sync::<Rendezvous<String>>();
    assert_send_sync::<JumpHash<String>>();
    let lb: Arc<dyn Balancer<u8>> = Arc::new(Rendezvous::new(abc()).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let lb = Arc::clone(&lb);
            std::thread::spawn(move || {
                for i in 0..500 {
                    let key = format!("{t}-{i}");
                    let _ = lb.pick_n(&Request::with_key(&key), 2);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(lb.status().iter().map(|s| s.in_flight()).sum::<usize>(), 0);
}

/// Threads pick (held for a while), `pick_n` and release, under bounded loads, while another
/// thread replaces the set and flips health. Every pick is of a backend that was in the set
/// at some moment during the pick (the writer announces each generation before its update and
/// after it, so a pick made between "generation `lo` done" and "generation `hi` begun" must be
/// of a member of one of the sets `lo..=hi`), and carries that backend's value. At the end the
/// picks still held are counted exactly by `status`, also across a removal and re-addition
/// of a backend that holds some, and once everything is dropped every count is back to 0.
#[test]
fn stress_picks_against_updates_with_bounded_loads() {
    use std::collections::{HashMap, VecDeque};
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};

    // Backend `n{i}` (value i) is in generation g's set unless (i + g) % 5 == 0.
    let member = |i: u32, generation: u32| (i + generation) % 5 != 0;
    let set = move |generation: u32| -> Vec<Backend<u32>> {
        (0..12)
            .filter(|&i| member(i, generation))
            .map(|i| Backend::new(format!("n{i}"), i).with_weight(1 + (i + generation) % 3))
            .collect()
    };
    let all =
        || -> Vec<Backend<u32>> { (0..12).map(|i| Backend::new(format!("n{i}"), i)).collect() };
    let lbs: Vec<Arc<dyn Balancer<u32>>> = vec![
        Arc::new(
            HashRing::builder()
                .load_factor(1.25)
                .seed(3)
                .build(set(0))
                .unwrap(),
        ),
        Arc::new(
            Maglev::builder()
                .table_size(1009)
                .load_factor(1.25)
                .build(set(0))
                .unwrap(),
        ),
        Arc::new(
            Rendezvous::builder()
                .load_factor(1.1)
                .build(set(0))
                .unwrap(),
        ),
    ];
    for lb in lbs {
        let stop = Arc::new(AtomicBool::new(false));
        // SeqCst on both: a reader that sees `done = g` also sees generation g's snapshot
        // (the update returned before the store), and a reader whose pick saw generation g's
        // snapshot then sees `begun >= g` (the store came before the update).
        let begun = Arc::new(AtomicU32::new(0));
        let done = Arc::new(AtomicU32::new(0));
        let writer = {
            let (lb, stop, begun, done) = (
                Arc::clone(&lb),
                Arc::clone(&stop),
                Arc::clone(&begun),
                Arc::clone(&done),
            );
            std::thread::spawn(move || {
                let mut generation = 0;
                while !stop.load(SeqCst) {
                    generation += 1;
                    begun.store(generation, SeqCst);
                    lb.update(set(generation)).unwrap();
                    done.store(generation, SeqCst);
                    let id = format!("n{}", generation % 12);
                    let _ = lb.set_health(&id, Health::Down);
                    std::thread::yield_now();
                    let _ = lb.set_health(&id, Health::Up);
                }
            })
        };
        let readers: Vec<_> = (0..3)
            .map(|t| {
                let (lb, begun, done) = (Arc::clone(&lb), Arc::clone(&begun), Arc::clone(&done));
                std::thread::spawn(move || {
                    let mut held = VecDeque::new();
                    // At least 3000 picks, and on until 20 updates have gone by.
                    for i in 0u64.. {
                        let lo = done.load(SeqCst);
                        if i >= 3000 && lo >= 20 {
                            break;
                        }
                        let key = (i * 7 + t) % 50;
                        let picks = if i % 5 == 0 {
                            lb.pick_n(&Request::with_hash(key), 3)
                        } else {
                            lb.pick(&Request::with_hash(key)).into_iter().collect()
                        };
                        let hi = begun.load(SeqCst);
                        let ids: std::collections::HashSet<&str> =
                            picks.iter().map(|p| p.id()).collect();
                        assert_eq!(ids.len(), picks.len());
                        for p in &picks {
                            let value = *p.value();
                            assert_eq!(p.id(), format!("n{value}"), "a pick's id and value");
                            assert!(
                                (lo..=hi).any(|g| member(value, g)),
                                "{} was in none of the sets of generations {lo}..={hi}",
                                p.id()
                            );
                        }
                        held.extend(picks);
                        while held.len() > 40 {
                            held.pop_front();
                        }
                    }
                    held
                })
            })
            .collect();
        let held: Vec<_> = readers
            .into_iter()
            .flat_map(|r| r.join().unwrap())
            .collect();
        stop.store(true, SeqCst);
        writer.join().unwrap();
        let mut counts: HashMap<String, usize> = HashMap::new();
        for p in &held {
            *counts.entry(p.id().to_owned()).or_default() += 1;
        }
        // Every backend back in the set: each counts exactly the picks held on it, also
        // those taken before it was removed by one of the updates.
        let exact = |lb: &dyn Balancer<u32>| {
            for s in lb.status() {
                let want = counts.get(s.id()).copied().unwrap_or(0);
                assert_eq!(s.in_flight(), want, "{}", s.id());
            }
        };
        lb.update(all()).unwrap();
        exact(&*lb);
        // Remove the busiest and add it back while its picks are held: they still count.
        let (busiest, n) = counts.iter().max_by_key(|(_, &n)| n).unwrap();
        assert!(*n > 0);
        lb.update(all().into_iter().filter(|b| b.id() != busiest).collect())
            .unwrap();
        lb.update(all()).unwrap();
        exact(&*lb);
        drop(held);
        assert!(lb.status().iter().all(|s| s.in_flight() == 0));
    }
}
