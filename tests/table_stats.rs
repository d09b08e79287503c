//! `Status::table_share`: the ring points, Maglev slots or continuum points each backend owns
//! in a hashing policy's current table, through the public API only.
//!
//! The expected counts come from each table's documented recipe, worked out by hand here
//! (ring: `max(1, round(p x w / u))`; ketama: `4 x floor(w / W x 40 x n)`; nginx: `160 x w`;
//! Envoy `ring_hash`: `scale x w / W`), never from the code under test. Backends are listed
//! out of id order, so a count filed under a list position instead of a member index (the
//! snapshot's id order) shows. For the Maglev tables, whose slot a key hash selects with a
//! formula the docs give, every slot is visited once through `pick`, so the counts are also
//! checked against the picks themselves.

use std::collections::BTreeMap;

use lbkit::{
    Backend, Balancer, First, HashRing, Health, JumpHash, LeastConnections, Maglev, PeakEwma,
    PowerOfTwoChoices, Preset, PresetRing, Random, Rendezvous, Request, RoundRobin,
    WeightedRoundRobin,
};

/// `(id, weight)` backends, in the order given.
fn set(backends: &[(&str, u32)]) -> Vec<Backend<()>> {
    backends
        .iter()
        .map(|&(id, w)| Backend::new(id, ()).with_weight(w))
        .collect()
}

/// Each backend's `table_share`, by id.
fn shares<T>(lb: &dyn Balancer<T>) -> BTreeMap<String, Option<u64>> {
    lb.status()
        .iter()
        .map(|s| (s.id().to_owned(), s.table_share()))
        .collect()
}

/// Each backend's `table_share`, by id, every one of them present.
fn counts<T>(lb: &dyn Balancer<T>) -> BTreeMap<String, u64> {
    shares(lb)
        .into_iter()
        .map(|(id, share)| {
            let share = share.unwrap_or_else(|| panic!("{id}: no table share"));
            (id, share)
        })
        .collect()
}

/// `(id, count)` pairs as the map `counts` returns.
fn expect(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|&(id, c)| (id.to_owned(), c)).collect()
}

/// The backend each of the `m` slots of a Maglev table sends its keys to, counted by id:
/// slot `s` is reached by the hash `hash(s)` (the first probe, every backend eligible).
fn picks_per_slot<T>(
    lb: &dyn Balancer<T>,
    m: u64,
    hash: impl Fn(u64) -> u64,
) -> BTreeMap<String, u64> {
    let mut seen = BTreeMap::new();
    for slot in 0..m {
        let pick = lb.pick(&Request::with_hash(hash(slot))).unwrap();
        *seen.entry(pick.id().to_owned()).or_insert(0) += 1;
    }
    seen
}

/// lbkit's Maglev looks slot `floor(h x M / 2^64)` up first: `ceil(s x 2^64 / M)` is the
/// smallest hash of slot `s`.
fn lbkit_maglev_hash(m: u64) -> impl Fn(u64) -> u64 {
    move |s| ((u128::from(s) << 64).div_ceil(u128::from(m))) as u64
}

#[test]
fn ring_shares_are_the_documented_point_counts() {
    // Lightest weight 1: 160 x w points.
    let lb = HashRing::new(set(&[("c", 1), ("a", 3), ("b", 2)])).unwrap();
    let got = counts(&lb);
    assert_eq!(got, expect(&[("a", 480), ("b", 320), ("c", 160)]));
    assert_eq!(got.values().sum::<u64>(), 960);

    // A unit of 2 (the lightest): round(5 x w / 2), halves up; weight 0 has no point.
    let lb = HashRing::builder()
        .points_per_weight(5)
        .build(set(&[("d", 4), ("z", 0), ("b", 3), ("a", 2), ("c", 5)]))
        .unwrap();
    assert_eq!(
        counts(&lb),
        expect(&[("a", 5), ("b", 8), ("c", 13), ("d", 10), ("z", 0)])
    );

    // Past max_points: 1 + floor(w x (M - k) / W) = 1 + floor(w x 97 / 10).
    let lb = HashRing::builder()
        .max_points(100)
        .build(set(&[("w6", 6), ("w0", 0), ("w3", 3), ("w1", 1)]))
        .unwrap();
    let got = counts(&lb);
    assert_eq!(
        got,
        expect(&[("w0", 0), ("w1", 10), ("w3", 30), ("w6", 59)])
    );
    assert!(got.values().sum::<u64>() <= 100);
}

#[test]
fn ring_shares_follow_updates() {
    let lb = HashRing::new(set(&[("c", 1), ("a", 3), ("b", 2)])).unwrap();
    // The lightest backend leaves: weight 2 is the new unit (160 x w / 2).
    lb.update(set(&[("a", 3), ("b", 2)])).unwrap();
    assert_eq!(counts(&lb), expect(&[("a", 240), ("b", 160)]));
    // With a fixed unit, the others keep their counts when one joins.
    let lb = HashRing::builder()
        .weight_unit(1)
        .build(set(&[("a", 3), ("b", 2)]))
        .unwrap();
    lb.update(set(&[("b", 2), ("a", 3), ("0", 1)])).unwrap();
    assert_eq!(counts(&lb), expect(&[("0", 160), ("a", 480), ("b", 320)]));
}

/// Maglev's documented bound: a backend of weight `w` owns between `q - 1` and
/// `q + k x w / W` slots, `q = M x w / W` its exact share, `k` backends of weight above 0.
fn assert_maglev_shares(got: &BTreeMap<String, u64>, weights: &[(&str, u32)], m: u64) {
    assert_eq!(got.values().sum::<u64>(), m, "{got:?}");
    let total: u32 = weights.iter().map(|w| w.1).sum();
    let k = weights.iter().filter(|w| w.1 > 0).count() as f64;
    for &(id, w) in weights {
        let share = f64::from(w) / f64::from(total);
        let q = m as f64 * share;
        let c = got[id] as f64;
        if w == 0 {
            assert_eq!(c, 0.0, "{id}: {got:?}");
        } else {
            assert!(
                c > q - 1.0 && c < q + k * share,
                "{id}: {c} against {q}: {got:?}"
            );
        }
    }
}

#[test]
fn maglev_shares_sum_to_the_table_and_follow_weight() {
    let m = 5003;
    let weights = [("d", 1), ("zero", 0), ("b", 3), ("a", 2), ("c", 4)];
    let lb = Maglev::builder()
        .table_size(m as u32)
        .build(set(&weights))
        .unwrap();
    let got = counts(&lb);
    assert_maglev_shares(&got, &weights, m);
    // Proportional to weight: at most a slot or two from M x w / W, so a backend of weight
    // 4 has within 1% of twice the slots of the one of weight 2.
    let ratio = got["c"] as f64 / got["a"] as f64;
    assert!((ratio - 2.0).abs() < 0.01, "{got:?}");
    // The keys themselves: every slot visited once lands on its owner.
    let mut picked = picks_per_slot(&lb, m, lbkit_maglev_hash(m));
    picked.entry("zero".to_owned()).or_insert(0);
    assert_eq!(picked, got);
}

#[test]
fn maglev_with_equal_weights_shares_to_within_one_slot() {
    let m = 65_537;
    let lb = Maglev::new((0..100).rev().map(|i| Backend::new(format!("b{i:03}"), ()))).unwrap();
    let got = counts(&lb);
    assert_eq!(got.len(), 100);
    assert_eq!(got.values().sum::<u64>(), m);
    assert!(got.values().all(|&c| c == 655 || c == 656), "{got:?}");
}

#[test]
fn maglev_shares_after_a_removal_still_fill_the_table() {
    let m = 1009;
    let lb = Maglev::builder()
        .table_size(m as u32)
        .build(set(&[("e", 1), ("b", 2), ("d", 1), ("a", 1), ("c", 3)]))
        .unwrap();
    assert_eq!(counts(&lb).values().sum::<u64>(), m);
    let rest = [("e", 1), ("d", 1), ("a", 1), ("c", 3)];
    lb.update(set(&rest)).unwrap();
    let got = counts(&lb);
    assert!(!got.contains_key("b"), "{got:?}");
    assert_maglev_shares(&got, &rest, m);
    assert_eq!(picks_per_slot(&lb, m, lbkit_maglev_hash(m)), got);
    // Every backend removed: an empty set, no status lines.
    lb.update(Vec::new()).unwrap();
    assert!(lb.status().is_empty());
    // Only weight 0: an empty table, all zeros.
    lb.update(set(&[("a", 0), ("b", 0)])).unwrap();
    assert_eq!(counts(&lb), expect(&[("a", 0), ("b", 0)]));
}

#[test]
fn ketama_gives_160_points_per_server_of_equal_weight() {
    // 4 x floor(1 / n x 40 x n) = 160 each, for n = 3 and n = 5.
    let lb = PresetRing::ketama(set(&[
        ("10.0.0.3:11211", 1),
        ("10.0.0.1:11211", 1),
        ("10.0.0.2:11211", 1),
    ]))
    .unwrap();
    let got = counts(&lb);
    assert!(got.values().all(|&c| c == 160), "{got:?}");
    assert_eq!(got.values().sum::<u64>(), 480);
    let lb = PresetRing::ketama(
        (0..5)
            .rev()
            .map(|i| Backend::new(format!("cache{i}:11211"), ())),
    )
    .unwrap();
    assert!(counts(&lb).values().all(|&c| c == 160));
}

#[test]
fn ketama_weighted_and_aliased_points() {
    // n = 3, W = 6: 4 x floor(w / 6 x 120) = 80, 160, 240; weight 0 gets none (and does
    // not count in n).
    let lb = PresetRing::ketama(set(&[
        ("c:11211", 3),
        ("z:11211", 0),
        ("a:11211", 1),
        ("b:11211", 2),
    ]))
    .unwrap();
    assert_eq!(
        counts(&lb),
        expect(&[
            ("a:11211", 80),
            ("b:11211", 160),
            ("c:11211", 240),
            ("z:11211", 0)
        ])
    );
    // `cache` and `cache:11211` hash alike ("cache-k"): one set of 160 points, kept by the
    // lower id; the other owns none.
    let lb = PresetRing::ketama(set(&[("other", 1), ("cache:11211", 1), ("cache", 1)])).unwrap();
    assert_eq!(
        counts(&lb),
        expect(&[("cache", 160), ("cache:11211", 0), ("other", 160)])
    );
}

#[test]
fn nginx_gives_160_points_per_weight() {
    let lb = PresetRing::nginx(set(&[
        ("127.0.0.1:18102", 3),
        ("127.0.0.1:18100", 1),
        ("127.0.0.1:18101", 2),
    ]))
    .unwrap();
    let got = counts(&lb);
    assert_eq!(
        got,
        expect(&[
            ("127.0.0.1:18100", 160),
            ("127.0.0.1:18101", 320),
            ("127.0.0.1:18102", 480),
        ])
    );
}

#[test]
fn ring_hash_presets_give_their_scale_in_entries() {
    // Four equal hosts: nw = 1/4, scale = ceil(1/4 x 1024) / (1/4) = 1024, 256 entries each.
    let hosts = || {
        set(&[
            ("10.0.0.4:80", 1),
            ("10.0.0.2:80", 1),
            ("10.0.0.3:80", 1),
            ("10.0.0.1:80", 1),
        ])
    };
    for lb in [
        PresetRing::envoy_ring_hash(hosts()).unwrap(),
        PresetRing::grpc_ring_hash(hosts()).unwrap(),
    ] {
        let got = counts(&lb);
        assert!(got.values().all(|&c| c == 256), "{got:?}");
    }
    // Weights 1 and 3: nw = 1/4 and 3/4, scale 1024 again: 256 and 768.
    let lb = PresetRing::envoy_ring_hash(set(&[("b:80", 3), ("a:80", 1)])).unwrap();
    assert_eq!(counts(&lb), expect(&[("a:80", 256), ("b:80", 768)]));
}

#[test]
fn envoy_maglev_preset_shares_its_slots() {
    let m = 5003;
    let lb = PresetRing::builder(Preset::EnvoyMaglev)
        .table_size(m)
        .build(set(&[
            ("10.0.0.4:80", 1),
            ("10.0.0.2:80", 1),
            ("10.0.0.3:80", 1),
            ("10.0.0.1:80", 1),
        ]))
        .unwrap();
    let got = counts(&lb);
    assert_eq!(got.values().sum::<u64>(), m);
    // Equal weights take a slot a round each, the fill stopping mid-round.
    assert!(got.values().all(|&c| c == 1250 || c == 1251), "{got:?}");
    // Slot `h mod M`: hash `s` reaches slot `s`.
    assert_eq!(picks_per_slot(&lb, m, |s| s), got);
}

/// A backend going down (or coming back) leaves the table: its shares, the down backend's
/// included, stay as they were.
#[test]
fn health_changes_leave_the_shares() {
    let weights = [("c", 1), ("a", 3), ("b", 2)];
    let balancers: Vec<(&str, Box<dyn Balancer<()>>)> = vec![
        ("ring", Box::new(HashRing::new(set(&weights)).unwrap())),
        (
            "maglev",
            Box::new(
                Maglev::builder()
                    .table_size(1009)
                    .build(set(&weights))
                    .unwrap(),
            ),
        ),
        (
            "ketama",
            Box::new(PresetRing::ketama(set(&weights)).unwrap()),
        ),
        ("nginx", Box::new(PresetRing::nginx(set(&weights)).unwrap())),
        (
            "envoy-maglev",
            Box::new(
                PresetRing::builder(Preset::EnvoyMaglev)
                    .table_size(1009)
                    .build(set(&weights))
                    .unwrap(),
            ),
        ),
    ];
    for (name, lb) in &balancers {
        let before = counts(lb.as_ref());
        assert!(before["a"] > 0, "{name}: {before:?}");
        lb.set_health("a", Health::Down).unwrap();
        assert!(!lb
            .status()
            .iter()
            .find(|s| s.id() == "a")
            .unwrap()
            .is_eligible());
        // Keys still move: "a" gets no pick.
        for h in 0..200u64 {
            let key = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            assert_ne!(
                lb.pick(&Request::with_hash(key)).unwrap().id(),
                "a",
                "{name}"
            );
        }
        assert_eq!(counts(lb.as_ref()), before, "{name}: down");
        lb.set_health("b", Health::Draining).unwrap();
        assert_eq!(counts(lb.as_ref()), before, "{name}: draining");
        lb.set_health("a", Health::Up).unwrap();
        lb.set_health("b", Health::Up).unwrap();
        assert_eq!(counts(lb.as_ref()), before, "{name}: up");
    }
}

#[test]
fn policies_without_a_table_have_no_share() {
    let backends = || set(&[("b", 2), ("a", 1), ("c", 3)]);
    let balancers: Vec<(&str, Box<dyn Balancer<()>>)> = vec![
        (
            "round robin",
            Box::new(RoundRobin::new(backends()).unwrap()),
        ),
        (
            "weighted round robin",
            Box::new(WeightedRoundRobin::new(backends()).unwrap()),
        ),
        (
            "least connections",
            Box::new(LeastConnections::new(backends()).unwrap()),
        ),
        (
            "two choices",
            Box::new(PowerOfTwoChoices::new(backends()).unwrap()),
        ),
        ("peak ewma", Box::new(PeakEwma::new(backends()).unwrap())),
        ("random", Box::new(Random::new(backends()).unwrap())),
        ("first", Box::new(First::new(backends()).unwrap())),
        ("jump", Box::new(JumpHash::new(backends()).unwrap())),
        ("rendezvous", Box::new(Rendezvous::new(backends()).unwrap())),
    ];
    for (name, lb) in &balancers {
        let status = lb.status();
        assert_eq!(status.len(), 3, "{name}");
        assert!(status.iter().all(|s| s.table_share().is_none()), "{name}");
    }
    // And the hashing tables do have one, through the same trait object.
    let ring: Box<dyn Balancer<()>> = Box::new(HashRing::new(backends()).unwrap());
    assert!(ring.status().iter().all(|s| s.table_share().is_some()));
}
