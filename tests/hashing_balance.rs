//! Balance of the hashing policies, their disruption when a backend goes or comes (exactly
//! minimal for HashRing, Rendezvous and JumpHash), and Maglev's documented extra disruption.
//!
//! The targets are for 100 equal backends and 1,000,000 random keys: max/mean
//! <= 1.04 for Maglev (M = 65537), Rendezvous and JumpHash, <= 1.35 for HashRing at 160
//! points per weight unit and <= 1.12 at 1000; weighted shares within 5% (Maglev,
//! Rendezvous) or 15% (HashRing at 160 points) of the weight share.
//!
//! The `#[ignore]`d tests check exactly that, with 1M keys (run them in release:
//! `cargo test --release --test hashing_balance -- --ignored --nocapture`; they print the
//! measured numbers). The default tests run the same checks with 200,000 keys, fast enough
//! for debug builds, and widen each threshold by the extra noise of fewer keys: the counts
//! of n keys over b equal backends have a relative standard deviation of sqrt(b / n), 2.2%
//! at 200k keys against 1.0% at 1M, and the max of 100 lies about 3.5 deviations over the
//! mean, so the thresholds grow by 3.5 x (2.24% - 1.0%) = 4.3%.

use lbkit::{Backend, Balancer, HashRing, JumpHash, Maglev, Rendezvous, Request};

const FULL: usize = 1_000_000;
const FAST: usize = 200_000;

fn keys(n: usize) -> impl Iterator<Item = u64> {
    let mut x = 0x5eed_u64;
    (0..n).map(move |_| {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

fn set(weights: &[u32]) -> Vec<Backend<usize>> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Backend::new(format!("10.0.{}.{}:8080", i / 256, i % 256), i).with_weight(w))
        .collect()
}

/// Keys per backend, by the backend's value (its index).
fn counts(lb: &dyn Balancer<usize>, n_backends: usize, n_keys: usize) -> Vec<usize> {
    let mut counts = vec![0; n_backends];
    for k in keys(n_keys) {
        counts[*lb.pick(&Request::with_hash(k)).unwrap()] += 1;
    }
    counts
}

fn max_over_mean(counts: &[usize]) -> f64 {
    let mean = counts.iter().sum::<usize>() as f64 / counts.len() as f64;
    *counts.iter().max().unwrap() as f64 / mean
}

/// The extra allowance for fewer keys than 1M (see the module docs).
fn allowance(n_keys: usize, n_backends: usize) -> f64 {
    let sd = |n: usize| (n_backends as f64 / n as f64).sqrt();
    3.5 * (sd(n_keys) - sd(FULL))
}

fn equal_balance(n_keys: usize) {
    let equal = set(&[1; 100]);
    let slack = allowance(n_keys, 100);
    let cases: Vec<(&str, Box<dyn Balancer<usize>>, f64)> = vec![
        (
            "maglev 65537",
            Box::new(Maglev::new(equal.clone()).unwrap()),
            1.04,
        ),
        (
            "rendezvous",
            Box::new(Rendezvous::new(equal.clone()).unwrap()),
            1.04,
        ),
        (
            "jump",
            Box::new(JumpHash::new(equal.clone()).unwrap()),
            1.04,
        ),
        (
            "ring 160",
            Box::new(HashRing::new(equal.clone()).unwrap()),
            1.35,
        ),
        (
            "ring 1000",
            Box::new(
                HashRing::builder()
                    .points_per_weight(1000)
                    .build(equal.clone())
                    .unwrap(),
            ),
            1.12,
        ),
    ];
    for (name, lb, limit) in cases {
        let m = max_over_mean(&counts(&*lb, 100, n_keys));
        println!("{name}: max/mean {m:.4} over {n_keys} keys (limit {limit} + {slack:.3})");
        assert!(
            m <= limit + slack,
            "{name}: max/mean {m} > {limit} + {slack}"
        );
    }
}

/// 20 backends, weights 1..=5 cycling: the largest relative error of a backend's share.
fn weighted_shares(n_keys: usize) {
    let weights: Vec<u32> = (0..20).map(|i| i % 5 + 1).collect();
    let total: u32 = weights.iter().sum();
    let backends = set(&weights);
    // The smallest share (1/60) has the noisiest count: its relative sd is sqrt(60 / n).
    let slack = 4.0 * ((60.0 / n_keys as f64).sqrt() - (60.0 / FULL as f64).sqrt());
    let cases: Vec<(&str, Box<dyn Balancer<usize>>, f64)> = vec![
        (
            "maglev 65537",
            Box::new(Maglev::new(backends.clone()).unwrap()),
            0.05,
        ),
        (
            "rendezvous",
            Box::new(Rendezvous::new(backends.clone()).unwrap()),
            0.05,
        ),
        (
            "ring 160",
            Box::new(HashRing::new(backends.clone()).unwrap()),
            0.15,
        ),
    ];
    for (name, lb, limit) in cases {
        let counts = counts(&*lb, weights.len(), n_keys);
        let worst = counts
            .iter()
            .zip(&weights)
            .map(|(&c, &w)| {
                let expect = n_keys as f64 * f64::from(w) / f64::from(total);
                (c as f64 - expect).abs() / expect
            })
            .fold(0.0, f64::max);
        println!("{name}: worst relative share error {worst:.4} (limit {limit} + {slack:.3})");
        assert!(worst <= limit + slack, "{name}: share error {worst}");
    }
}

#[test]
fn balance_at_100_equal_backends() {
    equal_balance(FAST);
}

#[test]
#[ignore = "1M keys: run in release"]
fn balance_at_100_equal_backends_1m_keys() {
    equal_balance(FULL);
}

#[test]
fn weighted_shares_follow_weights() {
    weighted_shares(FAST);
}

#[test]
#[ignore = "1M keys: run in release"]
fn weighted_shares_follow_weights_1m_keys() {
    weighted_shares(FULL);
}

/// Maglev is not minimal-disruption: removing or adding one backend also moves some keys
/// between the others. Measured here against the optimum (the backend's own share) and
/// printed. The bound is the documented excess (`hash::maglev` module docs: about 0.56% of the
/// keys move between backends that stayed, at 100 and at 1000 backends) with a margin:
/// [`MAGLEV_EXTRA_LIMIT`] of all keys. A table rebuilt from scratch, with a permutation that
/// changes with the set, moves almost every key; a fill order that changes with the set
/// moves several percent: both fail.
fn maglev_disruption(n_backends: usize, n_keys: usize) {
    let full = set(&vec![1; n_backends]);
    let keys: Vec<u64> = keys(n_keys).collect();
    let map = |lb: &Maglev<usize>| -> Vec<usize> {
        keys.iter()
            .map(|&k| *lb.pick(&Request::with_hash(k)).unwrap())
            .collect()
    };
    let before = map(&Maglev::new(full.clone()).unwrap());
    // Remove the backend in the middle; add one new backend.
    let removed = n_backends / 2;
    let mut shrunk = full.clone();
    shrunk.remove(removed);
    let after_remove = map(&Maglev::new(shrunk).unwrap());
    let mut grown = full.clone();
    grown.push(Backend::new("10.9.9.9:8080", n_backends));
    let after_add = map(&Maglev::new(grown).unwrap());

    let moved = |a: &[usize], b: &[usize]| a.iter().zip(b).filter(|(x, y)| x != y).count();
    let own = before.iter().filter(|&&b| b == removed).count();
    let extra_remove = moved(&before, &after_remove) - own;
    let to_new = after_add.iter().filter(|&&b| b == n_backends).count();
    let extra_add = moved(&before, &after_add) - to_new;
    let pct = |x: usize| 100.0 * x as f64 / n_keys as f64;
    println!(
        "maglev {n_backends} backends: remove one moves {:.3}% (its own {:.3}%, extra {:.3}%); \
         add one moves {:.3}% (to it {:.3}%, extra {:.3}%)",
        pct(extra_remove + own),
        pct(own),
        pct(extra_remove),
        pct(extra_add + to_new),
        pct(to_new),
        pct(extra_add)
    );
    let limit = MAGLEV_EXTRA_LIMIT * n_keys as f64;
    assert!(
        extra_remove as f64 <= limit,
        "maglev {n_backends}: removing one moved {:.3}% of the keys beyond its own",
        pct(extra_remove)
    );
    assert!(
        extra_add as f64 <= limit,
        "maglev {n_backends}: adding one moved {:.3}% of the keys beyond those it took",
        pct(extra_add)
    );
    // The new backend takes about its share (1/(n+1)), not more, not a sliver.
    let share = n_keys as f64 / (n_backends + 1) as f64;
    assert!(
        (to_new as f64 - share).abs() <= 0.1 * share,
        "maglev {n_backends}: the new backend took {to_new} keys, its share is {share:.0}"
    );
}

/// Keys moving between backends that stayed, as a fraction of all keys, that Maglev's test
/// allows: the documented 0.56% with a margin (measured 0.555% to 0.58%).
const MAGLEV_EXTRA_LIMIT: f64 = 0.008;

#[test]
fn maglev_extra_disruption_is_bounded() {
    maglev_disruption(100, FAST);
}

#[test]
#[ignore = "1M keys: run in release"]
fn maglev_extra_disruption_1m_keys() {
    maglev_disruption(100, FULL);
    maglev_disruption(1000, FULL);
}

/// HashRing, Rendezvous and JumpHash are minimal-disruption, exactly: removing a backend
/// moves its keys and no other, adding one moves only the keys it takes (JumpHash: at the end
/// of the list, as documented). Checked key by key, so one key moved between two backends
/// that stayed fails.
fn minimal_disruption(n_keys: usize) {
    const N: usize = 100;
    let full = set(&[1; N]);
    let keys: Vec<u64> = keys(n_keys).collect();
    type Build = fn(Vec<Backend<usize>>) -> Box<dyn Balancer<usize>>;
    let cases: [(&str, Build, usize); 3] = [
        ("ring 160", |b| Box::new(HashRing::new(b).unwrap()), N / 2),
        (
            "rendezvous",
            |b| Box::new(Rendezvous::new(b).unwrap()),
            N / 2,
        ),
        ("jump", |b| Box::new(JumpHash::new(b).unwrap()), N - 1),
    ];
    for (name, build, removed) in cases {
        let map = |lb: Box<dyn Balancer<usize>>| -> Vec<usize> {
            keys.iter()
                .map(|&k| *lb.pick(&Request::with_hash(k)).unwrap())
                .collect()
        };
        let before = map(build(full.clone()));
        let mut shrunk = full.clone();
        shrunk.remove(removed);
        let after_remove = map(build(shrunk));
        let mut grown = full.clone();
        grown.push(Backend::new("10.9.9.9:8080", N));
        let after_add = map(build(grown));
        let stayed = |a: &[usize], b: &[usize], changed: usize| {
            a.iter()
                .zip(b)
                .filter(|&(x, y)| x != y && *x != changed && *y != changed)
                .count()
        };
        let own = before.iter().filter(|&&b| b == removed).count();
        let to_new = after_add.iter().filter(|&&b| b == N).count();
        println!("{name}: remove one moves its own {own} keys; add one moves {to_new} to it");
        assert_eq!(
            stayed(&before, &after_remove, removed),
            0,
            "{name}: removing one backend moved keys between the others"
        );
        assert_eq!(
            stayed(&before, &after_add, N),
            0,
            "{name}: adding one backend moved keys between the others"
        );
        // Both are about one backend's share, so that the above is not vacuous.
        let share = n_keys / N;
        assert!(
            own > share / 2 && to_new > share / 2,
            "{name}: {own}, {to_new}"
        );
    }
}

#[test]
fn ring_rendezvous_and_jump_move_only_the_changed_backends_keys() {
    minimal_disruption(FAST / 4);
}
