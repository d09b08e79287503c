//! Property tests of the hashing policies over random backend sets (1..200 backends, random
//! weights) and random keys: minimal disruption, moved fraction against weight share, order
//! and history independence, walking on past ineligible backends, `pick_n`, bounded loads.
//!
//! Case counts are kept small so the suite stays fast in debug builds; every case checks
//! thousands of keys.

use std::collections::HashSet;

use lbkit::{Backend, Balancer, HashRing, Health, JumpHash, Maglev, Pick, Rendezvous, Request};
use proptest::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Algo {
    Ring,
    /// The ring with a fixed weight unit (1): its scale never depends on the set.
    RingUnit,
    Maglev,
    Rendezvous,
    Jump,
}

const ALL: [Algo; 4] = [Algo::Ring, Algo::Maglev, Algo::Rendezvous, Algo::Jump];
/// Points per weight unit for the ring in these tests (fewer than the default: faster in
/// debug builds; disruption does not depend on it).
const RING_POINTS: u32 = 40;
/// A prime above 200 x 40 (fast to build in debug builds, fine balance for 200 backends).
const MAGLEV_SIZE: u32 = 10_007;

fn build(algo: Algo, set: Vec<Backend<u32>>, bound: Option<f64>) -> Box<dyn Balancer<u32>> {
    match (algo, bound) {
        (Algo::Ring, None) => Box::new(
            HashRing::builder()
                .points_per_weight(RING_POINTS)
                .seed(1)
                .build(set)
                .unwrap(),
        ),
        (Algo::RingUnit, None) => Box::new(
            HashRing::builder()
                .points_per_weight(RING_POINTS)
                .weight_unit(1)
                .seed(1)
                .build(set)
                .unwrap(),
        ),
        (Algo::RingUnit, Some(_)) => unreachable!("tested unbounded only"),
        (Algo::Ring, Some(c)) => Box::new(
            HashRing::builder()
                .points_per_weight(RING_POINTS)
                .load_factor(c)
                .seed(1)
                .build(set)
                .unwrap(),
        ),
        (Algo::Maglev, None) => Box::new(
            Maglev::builder()
                .table_size(MAGLEV_SIZE)
                .seed(1)
                .build(set)
                .unwrap(),
        ),
        (Algo::Maglev, Some(c)) => Box::new(
            Maglev::builder()
                .table_size(MAGLEV_SIZE)
                .load_factor(c)
                .seed(1)
                .build(set)
                .unwrap(),
        ),
        (Algo::Rendezvous, None) => Box::new(Rendezvous::builder().seed(1).build(set).unwrap()),
        (Algo::Rendezvous, Some(c)) => Box::new(
            Rendezvous::builder()
                .load_factor(c)
                .seed(1)
                .build(set)
                .unwrap(),
        ),
        (Algo::Jump, None) => Box::new(JumpHash::with_seed(set, 1).unwrap()),
        (Algo::Jump, Some(_)) => unreachable!("JumpHash has no bounded loads"),
    }
}

/// A backend set from weights; `salt` varies the ids (and so every hash) between cases.
fn backends(weights: &[u32], salt: u32) -> Vec<Backend<u32>> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Backend::new(format!("{salt:08x}-{i}"), i as u32).with_weight(w))
        .collect()
}

fn keys(seed: u64, n: usize) -> Vec<u64> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
        .collect()
}

/// The id each key maps to ("" if none).
fn map(lb: &dyn Balancer<u32>, keys: &[u64]) -> Vec<String> {
    keys.iter()
        .map(|&k| {
            lb.pick(&Request::with_hash(k))
                .map_or(String::new(), |p| p.id().to_owned())
        })
        .collect()
}

/// Weights 1..=5 mostly, some 0; 1..200 backends.
fn weights() -> impl Strategy<Value = Vec<u32>> {
    prop::collection::vec(prop_oneof![1 => Just(0u32), 9 => 1u32..=5], 1..200)
}

/// Statistical tolerance on the moved fraction: 4.5 binomial standard deviations over the
/// keys, plus the spread of the new backend's own share (ring: about 1/sqrt(points)).
fn tolerance(algo: Algo, share: f64, keys: usize, weight: u32) -> f64 {
    let binomial = 4.5 * (share * (1.0 - share) / keys as f64).sqrt() + 1.0 / keys as f64;
    let placement = match algo {
        Algo::Ring | Algo::RingUnit => 5.0 * share / f64::from(RING_POINTS * weight).sqrt(),
        Algo::Maglev => 2.0 / f64::from(MAGLEV_SIZE),
        _ => 0.0,
    };
    binomial + placement
}

const KEYS: usize = 2000;

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Adding one backend moves only keys that now map to it (HashRing while its scale holds,
    /// HashRing with a fixed weight unit, Rendezvous), and about its weight share of them.
    #[test]
    fn adding_moves_only_keys_to_the_new_backend(
        ws in weights(), salt in any::<u32>(), w_new in 1u32..=5, seed in any::<u64>()
    ) {
        prop_assume!(ws.iter().any(|&w| w > 0));
        let keys = keys(seed, KEYS);
        let mut grown = backends(&ws, salt);
        let new_id = format!("{salt:08x}-new");
        grown.push(Backend::new(new_id.clone(), 999).with_weight(w_new));
        let total: u32 = ws.iter().sum::<u32>() + w_new;
        let share = f64::from(w_new) / f64::from(total);
        // The default ring keeps its scale while the lightest weight stays (module docs).
        let lightest = ws.iter().copied().filter(|&w| w > 0).min();
        let scale_holds = lightest.is_some_and(|l| l <= w_new);
        for algo in [Algo::Ring, Algo::RingUnit, Algo::Rendezvous] {
            if algo == Algo::Ring && !scale_holds {
                continue;
            }
            let before = map(&*build(algo, backends(&ws, salt), None), &keys);
            let after = map(&*build(algo, grown.clone(), None), &keys);
            let mut moved = 0;
            for (b, a) in before.iter().zip(&after) {
                if a != b {
                    prop_assert_eq!(a, &new_id, "{:?}: a key moved between old backends", algo);
                    moved += 1;
                }
            }
            let fraction = moved as f64 / KEYS as f64;
            let tol = tolerance(algo, share, KEYS, w_new);
            prop_assert!((fraction - share).abs() <= tol,
                "{:?}: moved {} of keys, share {} (tolerance {})", algo, fraction, share, tol);
        }
    }

    /// Removing one backend moves only its keys (HashRing while its scale holds, HashRing with
    /// a fixed weight unit, Rendezvous); JumpHash likewise
    /// when the last bucket is removed and every bucket is eligible (keys that walked past
    /// an ineligible bucket may move when the bucket count changes: documented).
    #[test]
    fn removing_moves_only_the_removed_backends_keys(
        ws in weights(), salt in any::<u32>(), pick in any::<prop::sample::Index>(), seed in any::<u64>()
    ) {
        prop_assume!(ws.len() >= 2);
        let keys = keys(seed, KEYS);
        let full = backends(&ws, salt);
        let r = pick.index(ws.len());
        let removed_id = full[r].id().to_owned();
        // The lightest weight above 0: the default ring's scale (its module docs, "Ring size").
        let lightest = |ws: &mut dyn Iterator<Item = u32>| ws.filter(|&w| w > 0).min();
        let scale_holds = lightest(&mut ws.iter().copied())
            == lightest(&mut ws.iter().enumerate().filter(|&(i, _)| i != r).map(|(_, &w)| w));
        for algo in [Algo::Ring, Algo::RingUnit, Algo::Rendezvous, Algo::Jump] {
            if algo == Algo::Ring && !scale_holds {
                continue;
            }
            let r = if algo == Algo::Jump { ws.len() - 1 } else { r };
            let removed_id = if algo == Algo::Jump { full[r].id().to_owned() } else { removed_id.clone() };
            let full: Vec<Backend<u32>> = if algo == Algo::Jump {
                full.iter().map(|b| b.clone().with_weight(b.weight().max(1))).collect()
            } else {
                full.clone()
            };
            let mut shrunk = full.clone();
            shrunk.remove(r);
            prop_assume!(shrunk.iter().any(|b| b.weight() > 0));
            let before = map(&*build(algo, full.clone(), None), &keys);
            let after = map(&*build(algo, shrunk, None), &keys);
            for (b, a) in before.iter().zip(&after) {
                if *b != removed_id {
                    prop_assert_eq!(a, b, "{:?}: a key of a remaining backend moved", algo);
                } else {
                    prop_assert_ne!(a, b);
                }
            }
        }
    }

    /// The mapping depends on the set of (id, weight) only: not on the order of the list, nor
    /// on the history of updates and health changes (all but JumpHash).
    #[test]
    fn order_and_history_do_not_matter(
        ws in weights(), salt in any::<u32>(), perm_seed in any::<u64>(), seed in any::<u64>(),
        down in any::<prop::sample::Index>()
    ) {
        let keys = keys(seed, 500);
        let set = backends(&ws, salt);
        let mut shuffled = set.clone();
        // Fisher-Yates with a seeded sequence.
        let order = self::keys(perm_seed, shuffled.len());
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, (order[i] % (i as u64 + 1)) as usize);
        }
        for algo in [Algo::Ring, Algo::Maglev, Algo::Rendezvous] {
            let fresh = map(&*build(algo, set.clone(), None), &keys);
            prop_assert_eq!(&map(&*build(algo, shuffled.clone(), None), &keys), &fresh, "{:?}", algo);
            // Another set first, then an update to this one, a health change and its undoing.
            let lb = build(algo, backends(&[1, 2, 3], salt ^ 1), None);
            lb.update(shuffled.clone()).unwrap();
            let id = set[down.index(set.len())].id().to_owned();
            lb.set_health(&id, Health::Down).unwrap();
            lb.set_health(&id, Health::Up).unwrap();
            prop_assert_eq!(&map(&*lb, &keys), &fresh, "{:?} after updates", algo);
        }
    }

    /// A backend going down moves only its own keys, to their next preferences, and they
    /// come back when it is up again.
    #[test]
    fn down_moves_only_its_keys_and_up_brings_them_back(
        ws in weights(), salt in any::<u32>(), which in any::<prop::sample::Index>(),
        seed in any::<u64>(), draining in any::<bool>()
    ) {
        let keys = keys(seed, 1000);
        let set = backends(&ws, salt);
        let id = set[which.index(set.len())].id().to_owned();
        for algo in ALL {
            let lb = build(algo, set.clone(), None);
            let before = map(&*lb, &keys);
            lb.set_health(&id, if draining { Health::Draining } else { Health::Down }).unwrap();
            let during = map(&*lb, &keys);
            for (b, d) in before.iter().zip(&during) {
                prop_assert_ne!(d, &id);
                if *b != id {
                    prop_assert_eq!(d, b, "{:?}", algo);
                }
            }
            lb.set_health(&id, Health::Up).unwrap();
            prop_assert_eq!(&map(&*lb, &keys), &before, "{:?}", algo);
        }
    }

    /// `pick_n`: distinct, eligible, as many as asked or eligible, the first is `pick`'s.
    #[test]
    fn pick_n_is_distinct_eligible_and_starts_with_pick(
        ws in weights(), salt in any::<u32>(), seed in any::<u64>(), n in 0usize..12,
        downs in prop::collection::vec(any::<prop::sample::Index>(), 0..5)
    ) {
        let keys = keys(seed, 200);
        let set = backends(&ws, salt);
        let down: HashSet<String> = downs.iter().map(|d| set[d.index(set.len())].id().to_owned()).collect();
        let eligible = set.iter().filter(|b| b.weight() > 0 && !down.contains(b.id())).count();
        for algo in ALL {
            let lb = build(algo, set.clone(), None);
            for id in &down {
                lb.set_health(id, Health::Down).unwrap();
            }
            for &k in &keys {
                let request = Request::with_hash(k);
                let single = lb.pick(&request).map(|p| p.id().to_owned());
                let picks = lb.pick_n(&request, n);
                prop_assert_eq!(picks.len(), n.min(eligible), "{:?}", algo);
                let ids: HashSet<&str> = picks.iter().map(|p| p.id()).collect();
                prop_assert_eq!(ids.len(), picks.len(), "{:?}: duplicates", algo);
                for p in &picks {
                    prop_assert!(p.weight() > 0 && !down.contains(p.id()));
                }
                if n > 0 {
                    prop_assert_eq!(picks.first().map(|p| p.id().to_owned()), single);
                }
            }
        }
    }

    /// Bounded loads: with picks held (and some released), every pick goes to a backend
    /// below ceil(c x (total + 1) x w / W); in `pick_n`, each pick does, counting the earlier
    /// ones, unless no backend not yet chosen has room.
    #[test]
    fn bounded_loads_hold_after_every_pick(
        ws in weights(), salt in any::<u32>(), seed in any::<u64>(),
        factor in prop::sample::select(vec![(1u64, 1u64), (5, 4), (3, 2), (2, 1)]),
        hot in 1u64..8
    ) {
        prop_assume!(ws.iter().any(|&w| w > 0));
        let (num, den) = factor;
        let c = num as f64 / den as f64;
        let set = backends(&ws, salt);
        // A skewed key stream: `hot` hot keys take 3/4 of the requests.
        let stream = keys(seed, 400);
        for algo in [Algo::Ring, Algo::Maglev, Algo::Rendezvous] {
            let lb = build(algo, set.clone(), Some(c));
            let mut held: Vec<Pick<u32>> = Vec::new();
            for (i, &r) in stream.iter().enumerate() {
                let key = if r % 4 != 0 { r % hot } else { r };
                let load = load_of(&*lb);
                if i % 7 == 3 {
                    // pick_n of 3, each checked against the load plus the earlier ones
                    let picks = lb.pick_n(&Request::with_hash(key), 3);
                    let mut load = load;
                    for p in &picks {
                        let room = |id: &str| load.has_room(id, num, den);
                        let anyone = load.eligible().any(|id| room(id) && !picks_before(&picks, p).contains(&id));
                        prop_assert!(room(p.id()) || !anyone, "{:?}: pick_n broke the bound", algo);
                        load.add(p.id());
                    }
                    held.extend(picks);
                } else {
                    let p = lb.pick(&Request::with_hash(key)).unwrap();
                    prop_assert!(load.has_room(p.id(), num, den),
                        "{:?}: {} had no room at c = {}", algo, p.id(), c);
                    held.push(p);
                }
                if r % 5 == 0 && !held.is_empty() {
                    drop(held.swap_remove((r as usize / 5) % held.len()));
                }
            }
        }
    }
}

fn picks_before<'a>(picks: &'a [Pick<u32>], p: &Pick<u32>) -> Vec<&'a str> {
    picks
        .iter()
        .take_while(|q| !std::ptr::eq(*q, p))
        .map(|q| q.id())
        .collect()
}

/// In-flight counts and weights of the eligible backends, from `status`.
struct LoadView {
    rows: Vec<(String, u64, u64)>,
}

fn load_of(lb: &dyn Balancer<u32>) -> LoadView {
    LoadView {
        rows: lb
            .status()
            .into_iter()
            .filter(|s| s.is_eligible())
            .map(|s| {
                (
                    s.id().to_owned(),
                    s.in_flight() as u64,
                    u64::from(s.weight()),
                )
            })
            .collect(),
    }
}

impl LoadView {
    fn eligible(&self) -> impl Iterator<Item = &str> {
        self.rows.iter().map(|(id, _, _)| id.as_str())
    }

    /// in_flight < ceil(num/den x (total + 1) x w / W), exactly, in integers.
    fn has_room(&self, id: &str, num: u64, den: u64) -> bool {
        let total: u64 = self.rows.iter().map(|r| r.1).sum();
        let weight_sum: u64 = self.rows.iter().map(|r| r.2).sum();
        let (_, in_flight, w) = self.rows.iter().find(|r| r.0 == id).unwrap();
        let capacity = (u128::from(num) * u128::from(total + 1) * u128::from(*w))
            .div_ceil(u128::from(den) * u128::from(weight_sum));
        u128::from(*in_flight) < capacity
    }

    fn add(&mut self, id: &str) {
        self.rows.iter_mut().find(|r| r.0 == id).unwrap().1 += 1;
    }
}
