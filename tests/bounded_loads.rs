//! Bounded loads, exactly at the boundary, for every `+bound` variant of the registry
//! (tests/common/mod.rs).
//!
//! The documented rule (`hash` module docs, `Builder::load_factor`): with load factor `c`, a
//! pick never goes to a backend whose in-flight count is at or above
//! `capacity = ceil(c x (total + 1) x w / W)` (`total`: picks held on eligible backends,
//! earlier picks of the same `pick_n` included; `W`: the sum of the eligible weights); it
//! goes to the first backend, in the key's order of preference, that is below it, and to the
//! first eligible one if none is. The order of preference is the unbounded twin's (the same
//! registry entry without `+bound`): its `pick_n` over every backend lists it.
//!
//! Every pick is checked against that rule, so a capacity one pick too tight (a backend at
//! `capacity - 1` turned away) and one pick too loose (a backend at `capacity` accepted)
//! both fail; the test also counts how often each side of the boundary was actually met, and
//! requires both many times, so that it cannot pass by never getting there.

mod common;

use common::{bounded_with_twins, Policy, REGISTRY_LOAD_FACTOR};
use lbkit::{Backend, Pick, Request};

/// Weights with a sum of 10: with c = 5/4 the capacity is ceil((total + 1) x w / 8), an
/// integer quotient (where `<` and `<=` differ) every few picks.
const WEIGHTS: [u32; 6] = [1, 2, 1, 3, 1, 2];

fn set(weights: &[u32]) -> Vec<Backend<u32>> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Backend::new(format!("b{i}"), i as u32).with_weight(w))
        .collect()
}

/// SplitMix64: the test's own deterministic random stream.
struct Stream(u64);

impl Stream {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// How often each side of the boundary was met.
#[derive(Default, Debug)]
struct Boundary {
    /// A backend at exactly `capacity - 1` took the pick.
    accepted_one_below: u32,
    /// A backend at exactly `capacity` was passed by.
    passed_at: u32,
}

/// The documented choice for one pick: `loads[i]` is backend `bi`'s in-flight count, `extra`
/// the picks this `pick_n` already made (held, so in `total`), `order` the key's preference
/// (ids' indices) without the backends this `pick_n` already chose.
fn expected(loads: &[u64], extra: u64, order: &[usize], boundary: &mut Boundary) -> usize {
    let (num, den) = REGISTRY_LOAD_FACTOR;
    let total: u64 = loads.iter().sum::<u64>() + extra;
    let weight_sum: u64 = WEIGHTS.iter().map(|&w| u64::from(w)).sum();
    let capacity = |i: usize| {
        (u128::from(num) * u128::from(total + 1) * u128::from(WEIGHTS[i]))
            .div_ceil(u128::from(den) * u128::from(weight_sum))
    };
    for &i in order {
        let (load, cap) = (u128::from(loads[i]), capacity(i));
        if load < cap {
            if load + 1 == cap {
                boundary.accepted_one_below += 1;
            }
            return i;
        }
        if load == cap {
            boundary.passed_at += 1;
        }
    }
    order[0]
}

fn index(pick: &Pick<u32>) -> usize {
    *pick.value() as usize
}

/// Random picks (held), `pick_n`s and releases over a few hot keys, each pick checked against
/// the documented rule.
fn run(bounded: Policy, twin: Policy, seed: u64) -> Boundary {
    let name = bounded.name;
    let lb = (bounded.new)(set(&WEIGHTS), seed).unwrap();
    let reference = (twin.new)(set(&WEIGHTS), seed).unwrap();
    let mut stream = Stream(seed);
    let mut held: Vec<Pick<u32>> = Vec::new();
    let mut boundary = Boundary::default();
    for step in 0..1500 {
        let loads: Vec<u64> = {
            let mut loads = vec![0; WEIGHTS.len()];
            for p in &held {
                loads[index(p)] += 1;
            }
            loads
        };
        // The counts the balancer sees are the test's.
        let seen: Vec<u64> = lb.status().iter().map(|s| s.in_flight() as u64).collect();
        assert_eq!(seen, loads, "{name}, step {step}");
        let roll = stream.below(10);
        if roll < 3 && !held.is_empty() {
            let i = stream.below(held.len());
            drop(held.swap_remove(i));
            continue;
        }
        // Few keys, so that loads build up on their first choices.
        let request = Request::with_hash(stream.below(6) as u64 * 0x0123_4567_89ab_cdef);
        let order: Vec<usize> = reference
            .pick_n(&request, WEIGHTS.len())
            .iter()
            .map(index)
            .collect();
        assert_eq!(order.len(), WEIGHTS.len(), "{name}: the twin's order");
        if roll < 8 {
            let want = expected(&loads, 0, &order, &mut boundary);
            let got = lb.pick(&request).unwrap();
            assert_eq!(
                index(&got),
                want,
                "{name}, step {step}: loads {loads:?}, order {order:?}"
            );
            held.push(got);
        } else {
            let n = 2 + stream.below(3);
            let mut left = order.clone();
            let mut want = Vec::new();
            for made in 0..n as u64 {
                let next = expected(&loads, made, &left, &mut boundary);
                left.retain(|&i| i != next);
                want.push(next);
            }
            let got = lb.pick_n(&request, n);
            let got_ids: Vec<usize> = got.iter().map(index).collect();
            assert_eq!(
                got_ids, want,
                "{name}, step {step}: pick_n({n}), loads {loads:?}, order {order:?}"
            );
            held.extend(got);
        }
    }
    boundary
}

/// Every bounded variant, both sides of the capacity, at the boundary.
#[test]
fn every_bounded_variant_fills_each_backend_exactly_to_its_capacity() {
    let variants = bounded_with_twins();
    assert!(
        variants.len() >= 4,
        "the registry's bounded variants: {variants:?}"
    );
    for (bounded, twin) in variants {
        let mut met = Boundary::default();
        for seed in 1..=4 {
            let b = run(bounded, twin, seed);
            met.accepted_one_below += b.accepted_one_below;
            met.passed_at += b.passed_at;
        }
        assert!(
            met.accepted_one_below >= 100 && met.passed_at >= 100,
            "{}: the boundary was not reached often enough: {met:?}",
            bounded.name
        );
    }
}

/// The boundary in its plainest form, for every bounded variant: one hot key, picks held.
/// With nothing else held, a backend of weight `w` holding `k` picks (all of them) has room
/// exactly while `k < ceil(5/4 x (k + 1) x w / W)`: the key's first choice takes picks until
/// then, and not one more, before the next one gets any. The sets make the boundary land on
/// an integer quotient for some backends (weights 2 of 5: `5/4 x 2 x 2 / 5 = 1` at the
/// second pick, full) and deep for others (weight 5 of 8: full at the fifth pick).
#[test]
fn a_hot_key_stays_home_exactly_until_its_first_choice_is_full() {
    let (num, den) = REGISTRY_LOAD_FACTOR;
    for weights in [&WEIGHTS[..], &[2, 2, 1], &[5, 1, 1, 1]] {
        let weight_sum: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        for (bounded, twin) in bounded_with_twins() {
            for key in 0..30u64 {
                let request = Request::with_hash(key.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let lb = (bounded.new)(set(weights), 1).unwrap();
                let home = index(&(twin.new)(set(weights), 1).unwrap().pick(&request).unwrap());
                let w = u64::from(weights[home]);
                // The documented number of picks home takes: the first k with no room.
                let fill = (0..)
                    .find(|&k: &u64| k * den * weight_sum >= num * (k + 1) * w)
                    .unwrap();
                let held: Vec<Pick<u32>> = (0..=fill).map(|_| lb.pick(&request).unwrap()).collect();
                let at_home = held.iter().take_while(|p| index(p) == home).count() as u64;
                assert_eq!(
                    at_home, fill,
                    "{}: weights {weights:?}, key {key}: home b{home} took {at_home} picks, \
                     its capacity allows {fill}",
                    bounded.name
                );
            }
        }
    }
}

/// With localities, `pick_n` chooses in one group after another; only its first choice may
/// count a spill (`Status::spills`), however many groups it asks.
#[test]
fn a_tiered_pick_n_counts_at_most_one_spill() {
    use lbkit::{Balancer, HashRing, Topology};
    let set: Vec<Backend<()>> = ["x0", "x1", "y0", "y1"]
        .iter()
        .map(|id| Backend::new(*id, ()).with_locality(&id[..1]))
        .collect();
    let ring = HashRing::builder()
        .seed(7)
        .load_factor(1.25)
        .topology(Topology::locality_weights([("x", 1), ("y", 1)]))
        .build(set)
        .unwrap();
    let key = "k1";
    let ids: Vec<String> = ring
        .pick_n(&Request::with_key(key), 4)
        .iter()
        .map(|p| p.id().to_owned())
        .collect();
    let home_x = ids.iter().find(|i| i.starts_with('x')).unwrap().clone();
    let home_y = ids.iter().find(|i| i.starts_with('y')).unwrap().clone();
    // Both homes well above their capacity.
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(ring.pick(&Request::new().prefer(&home_x)).unwrap());
        held.push(ring.pick(&Request::new().prefer(&home_y)).unwrap());
    }
    let spills = |r: &HashRing<()>| -> u64 { r.status().iter().map(|s| s.spills()).sum() };
    let before = spills(&ring);
    assert_eq!(ring.pick_n(&Request::with_key(key), 4).len(), 4);
    let counted = spills(&ring) - before;
    assert!(counted <= 1, "one pick_n counted {counted} spills");
}
