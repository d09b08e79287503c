//! Model-based test: random sequences of picks (held), `pick_n`, releases, health changes
//! and updates, against a naive model of the documented behaviour: each key's preference
//! order computed from scratch (ring: every point, sorted; rendezvous: every weighted score,
//! sorted; Maglev: the table populated naively, then its documented probe sequence), then the first eligible backend with room under bounded loads (in-flight counts
//! kept by the model, also for removed backends), else the first eligible. Every pick must
//! be exactly the model's.

use std::collections::HashMap;

#[path = "common/maglev_reference.rs"]
mod maglev_reference;

use lbkit::hash::{id_hash, mix};
use lbkit::{Backend, Balancer, HashRing, Health, Maglev, Pick, Rendezvous, Request};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Pick(u64),
    PickN(u64, usize),
    Release(prop::sample::Index),
    Health(prop::sample::Index, u8),
    Update(Vec<u32>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u64..40).prop_map(Op::Pick),
        2 => ((0u64..40), 1usize..4).prop_map(|(k, n)| Op::PickN(k, n)),
        3 => any::<prop::sample::Index>().prop_map(Op::Release),
        1 => (any::<prop::sample::Index>(), 0u8..3).prop_map(|(i, h)| Op::Health(i, h)),
        1 => prop::collection::vec(0u32..4, 1..12).prop_map(Op::Update),
    ]
}

/// The backends of an update: `weights[i]` for id `m{i}`.
fn set(weights: &[u32]) -> Vec<Backend<()>> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Backend::new(format!("m{i}"), ()).with_weight(w))
        .collect()
}

#[derive(Clone, Copy)]
enum Kind {
    Ring,
    Rendezvous,
    Maglev,
}

const POINTS: u64 = 5;
/// A prime above the largest set of these tests (11 backends).
const MAGLEV_SIZE: u64 = 13;

/// The key's preference order over the members of weight > 0, from scratch.
fn preference(kind: Kind, members: &[(String, u32)], key: u64) -> Vec<String> {
    let mut sorted: Vec<(String, u32)> = members.to_vec();
    sorted.sort();
    match kind {
        Kind::Ring => {
            // The ring's documented count: round(POINTS x w / w_min), halves up.
            let lightest = sorted
                .iter()
                .map(|(_, w)| u64::from(*w))
                .filter(|&w| w > 0)
                .min();
            let mut points: Vec<(u64, usize)> = Vec::new();
            for (i, (id, w)) in sorted.iter().enumerate() {
                let count = lightest.map_or(0, |l| (2 * POINTS * u64::from(*w) + l) / (2 * l));
                for j in 0..count {
                    points.push((mix(id_hash(id), j), i));
                }
            }
            points.sort();
            if points.is_empty() {
                return Vec::new();
            }
            let start = points.partition_point(|&(p, _)| p < key);
            let mut order: Vec<String> = Vec::new();
            for k in 0..points.len() {
                let owner = &sorted[points[(start + k) % points.len()].1].0;
                if !order.contains(owner) {
                    order.push(owner.clone());
                }
            }
            order
        }
        Kind::Maglev => {
            // Probes 0..8 of the table, then every member in id order from a start.
            let table = maglev_reference::table(&sorted, MAGLEV_SIZE);
            if table.is_empty() {
                return Vec::new();
            }
            let scale = |x: u64, n: usize| ((u128::from(x) * n as u128) >> 64) as usize;
            let mut order: Vec<usize> = (0..8u64)
                .map(|a| {
                    let k = if a == 0 { key } else { mix(key, a) };
                    table[scale(k, table.len())]
                })
                .collect();
            let start = scale(mix(key, 8), sorted.len());
            order.extend((start..sorted.len()).chain(0..start));
            let mut ids: Vec<String> = Vec::new();
            for i in order {
                if !ids.contains(&sorted[i].0) {
                    ids.push(sorted[i].0.clone());
                }
            }
            ids
        }
        Kind::Rendezvous => {
            let mut scored: Vec<(f64, u64, usize)> = sorted
                .iter()
                .enumerate()
                .filter(|(_, (_, w))| *w > 0)
                .map(|(i, (id, w))| {
                    let s = mix(key, id_hash(id));
                    (f64::from(*w) / neg_ln(s), s, i)
                })
                .collect();
            // Higher value, then higher score, then smaller id.
            scored.sort_by(|a, b| {
                b.0.partial_cmp(&a.0)
                    .unwrap()
                    .then(b.1.cmp(&a.1))
                    .then(a.2.cmp(&b.2))
            });
            scored
                .iter()
                .map(|&(_, _, i)| sorted[i].0.clone())
                .collect()
        }
    }
}

/// The pinned -ln(u) of the rendezvous docs.
fn neg_ln(s: u64) -> f64 {
    let x = s | 1;
    let k = x.leading_zeros();
    let mut m = ((x << k) >> 11) as f64 / 9_007_199_254_740_992.0;
    let mut e = f64::from(k);
    if m < std::f64::consts::FRAC_1_SQRT_2 {
        m *= 2.0;
        e += 1.0;
    }
    let r = (m - 1.0) / (m + 1.0);
    let q = r * r;
    let mut p = 1.0 / 23.0;
    for d in [21.0, 19.0, 17.0, 15.0, 13.0, 11.0, 9.0, 7.0, 5.0, 3.0, 1.0] {
        p = p * q + 1.0 / d;
    }
    e * std::f64::consts::LN_2 - (2.0 * r) * p
}

/// Keys are drawn from a small range (so they repeat and loads build up), then mixed (the
/// ring and Maglev expect well-mixed 64-bit hashes).
fn spread(key: u64) -> u64 {
    mix(key, 0x6b65_7973)
}

struct Model {
    kind: Kind,
    /// (id, weight) of the current set.
    members: Vec<(String, u32)>,
    health: HashMap<String, Health>,
    in_flight: HashMap<String, u64>,
    /// The load factor as num / den, if bounded.
    bound: Option<(u64, u64)>,
}

impl Model {
    fn eligible(&self, id: &str) -> bool {
        self.members.iter().any(|(m, w)| m == id && *w > 0) && self.health[id] == Health::Up
    }

    /// The model's choice for `key`, given the picks in `chosen` excluded.
    fn choose(&self, key: u64, chosen: &[String]) -> Option<String> {
        let order: Vec<String> = preference(self.kind, &self.members, key)
            .into_iter()
            .filter(|id| self.eligible(id) && !chosen.contains(id))
            .collect();
        let Some((num, den)) = self.bound else {
            return order.first().cloned();
        };
        let eligible: Vec<&(String, u32)> = self
            .members
            .iter()
            .filter(|(id, _)| self.eligible(id))
            .collect();
        let total: u64 = eligible.iter().map(|(id, _)| self.in_flight[id]).sum();
        let weight_sum: u64 = eligible.iter().map(|(_, w)| u64::from(*w)).sum();
        let room = |id: &String| {
            let w = self.members.iter().find(|(m, _)| m == id).unwrap().1;
            // count < ceil(q) exactly when count < q, for an integer count.
            u128::from(self.in_flight[id]) * u128::from(den) * u128::from(weight_sum)
                < u128::from(num) * u128::from(total + 1) * u128::from(w)
        };
        order.iter().find(|id| room(id)).or(order.first()).cloned()
    }

    fn update(&mut self, weights: &[u32]) {
        self.members = set(weights)
            .iter()
            .map(|b| (b.id().to_owned(), b.weight()))
            .collect();
        let members = &self.members;
        // Backends that stay keep their health; new ones (and returning ones) start Up.
        self.health
            .retain(|id, _| members.iter().any(|(m, _)| m == id));
        for (id, _) in members {
            self.health.entry(id.clone()).or_insert(Health::Up);
            self.in_flight.entry(id.clone()).or_insert(0);
        }
    }
}

fn run(kind: Kind, bound: Option<(u64, u64)>, first: Vec<u32>, ops: Vec<Op>) {
    let lb: Box<dyn Balancer<()>> = match (kind, bound) {
        (Kind::Ring, b) => {
            let mut builder = HashRing::builder().points_per_weight(POINTS as u32);
            if let Some((num, den)) = b {
                builder = builder.load_factor(num as f64 / den as f64);
            }
            Box::new(builder.build(set(&first)).unwrap())
        }
        (Kind::Maglev, b) => {
            let mut builder = Maglev::builder().table_size(MAGLEV_SIZE as u32);
            if let Some((num, den)) = b {
                builder = builder.load_factor(num as f64 / den as f64);
            }
            Box::new(builder.build(set(&first)).unwrap())
        }
        (Kind::Rendezvous, b) => {
            let mut builder = Rendezvous::builder();
            if let Some((num, den)) = b {
                builder = builder.load_factor(num as f64 / den as f64);
            }
            Box::new(builder.build(set(&first)).unwrap())
        }
    };
    let mut model = Model {
        kind,
        members: Vec::new(),
        health: HashMap::new(),
        in_flight: HashMap::new(),
        bound,
    };
    model.update(&first);
    let mut held: Vec<Pick<()>> = Vec::new();
    for op in ops {
        match op {
            Op::Pick(key) => {
                let key = spread(key);
                let want = model.choose(key, &[]);
                let got = lb.pick(&Request::with_hash(key));
                assert_eq!(got.as_ref().map(|p| p.id().to_owned()), want);
                if let Some(p) = got {
                    *model.in_flight.get_mut(p.id()).unwrap() += 1;
                    held.push(p);
                }
            }
            Op::PickN(key, n) => {
                let key = spread(key);
                // Each result is the model's choice given the earlier ones (held, counted).
                let mut chosen: Vec<String> = Vec::new();
                let mut want = Vec::new();
                for _ in 0..n {
                    let Some(id) = model.choose(key, &chosen) else {
                        break;
                    };
                    *model.in_flight.get_mut(&id).unwrap() += 1;
                    chosen.push(id.clone());
                    want.push(id);
                }
                let got = lb.pick_n(&Request::with_hash(key), n);
                let got_ids: Vec<String> = got.iter().map(|p| p.id().to_owned()).collect();
                assert_eq!(got_ids, want);
                held.extend(got);
            }
            Op::Release(i) => {
                if !held.is_empty() {
                    let p = held.swap_remove(i.index(held.len()));
                    *model.in_flight.get_mut(p.id()).unwrap() -= 1;
                }
            }
            Op::Health(i, h) => {
                let id = model.members[i.index(model.members.len())].0.clone();
                let health = [Health::Up, Health::Down, Health::Draining][h as usize];
                lb.set_health(&id, health).unwrap();
                model.health.insert(id, health);
            }
            Op::Update(weights) => {
                lb.update(set(&weights)).unwrap();
                model.update(&weights);
            }
        }
        // The counts agree too.
        for s in lb.status() {
            assert_eq!(s.in_flight() as u64, model.in_flight[s.id()], "{}", s.id());
            let member = model.members.iter().any(|(id, _)| id == s.id());
            // A removed backend is listed while picks on it are held, and only then.
            assert_eq!(s.is_removed(), !member, "{}", s.id());
            if member {
                assert_eq!(s.health(), model.health[s.id()]);
            } else {
                assert!(s.in_flight() > 0, "{}", s.id());
            }
        }
        let listed = lb.status().iter().filter(|s| s.is_removed()).count();
        let held = model
            .in_flight
            .iter()
            .filter(|(id, n)| **n > 0 && !model.members.iter().any(|(m, _)| m == *id))
            .count();
        assert_eq!(listed, held, "removed backends with picks held");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn ring_matches_the_model(
        first in prop::collection::vec(0u32..4, 1..12),
        ops in prop::collection::vec(op(), 1..120),
        bound in prop::option::of(prop::sample::select(vec![(1u64, 1u64), (5, 4), (3, 2), (2, 1)]))
    ) {
        run(Kind::Ring, bound, first, ops);
    }

    #[test]
    fn rendezvous_matches_the_model(
        first in prop::collection::vec(0u32..4, 1..12),
        ops in prop::collection::vec(op(), 1..120),
        bound in prop::option::of(prop::sample::select(vec![(1u64, 1u64), (5, 4), (3, 2), (2, 1)]))
    ) {
        run(Kind::Rendezvous, bound, first, ops);
    }

    #[test]
    fn maglev_matches_the_model(
        first in prop::collection::vec(0u32..4, 1..12),
        ops in prop::collection::vec(op(), 1..120),
        bound in prop::option::of(prop::sample::select(vec![(1u64, 1u64), (5, 4), (3, 2), (2, 1)]))
    ) {
        run(Kind::Maglev, bound, first, ops);
    }
}
