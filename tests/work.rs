//! Work-weighted accounting (`Request::cost`): a pick holds its cost and gives back exactly
//! that, for every policy of the registry; caps bound the work held; the load-aware policies
//! and bounded loads balance work.

mod common;

use std::collections::BTreeMap;

use common::{backend, POLICIES};
use lbkit::{Backend, Balancer, HashRing, LeastConnections, NoPick, Pick, PowerOfTwoChoices};
use lbkit::{Request, MAX_COST};
use proptest::prelude::*;

/// Work held per backend, as `status()` says.
fn held(lb: &dyn Balancer<u32>) -> BTreeMap<String, usize> {
    lb.status()
        .iter()
        .map(|s| (s.id().to_owned(), s.in_flight()))
        .collect()
}

#[derive(Debug, Clone)]
enum Op {
    /// Pick with this cost (and a key, for the hashing policies).
    Pick { cost: u32, key: u8 },
    /// Drop the held pick at this position (modulo how many are held).
    Drop(usize),
    /// pick_n of this many with this cost.
    PickN { n: usize, cost: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (prop_oneof![Just(1u32), 1u32..20, Just(0), Just(u32::MAX)], any::<u8>())
            .prop_map(|(cost, key)| Op::Pick { cost, key }),
        3 => any::<usize>().prop_map(Op::Drop),
        1 => (1usize..4, 1u32..10).prop_map(|(n, cost)| Op::PickN { n, cost }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Every policy: the work `status()` shows on each backend is the sum of the costs of the
    /// picks held there (0 counting as 1, above `MAX_COST` as `MAX_COST`), never above a cap,
    /// and all of it comes back when the picks drop.
    #[test]
    fn work_held_is_the_sum_of_the_costs_held(
        caps in proptest::collection::vec(prop_oneof![Just(0u32), 5u32..40], 4),
        ops in proptest::collection::vec(op(), 1..60),
        seed in any::<u64>(),
    ) {
        for policy in POLICIES {
            let backends: Vec<Backend<u32>> = caps
                .iter()
                .enumerate()
                .map(|(i, &cap)| {
                    let b = backend(&format!("b{i}"), 1 + i as u32 % 2, i as u32);
                    if cap > 0 { b.with_max_in_flight(cap) } else { b }
                })
                .collect();
            let lb = (policy.new)(backends, seed).unwrap();
            let mut picks: Vec<(Pick<u32>, u32)> = Vec::new();
            for op in &ops {
                match *op {
                    Op::Pick { cost, key } => {
                        let keyed = [key];
                        let request = Request::with_key(&keyed).cost(cost);
                        let want = cost.clamp(1, MAX_COST);
                        prop_assert_eq!(request.work(), want);
                        match lb.try_pick(&request) {
                            Ok(pick) => picks.push((pick, want)),
                            Err(NoPick::AllAtCapacity) => {
                                // Only when no backend has room for this cost.
                                let now = held(&*lb);
                                for (i, &cap) in caps.iter().enumerate() {
                                    let h = now[&format!("b{i}")] as u64;
                                    prop_assert!(
                                        cap != 0 && h + u64::from(want) > u64::from(cap),
                                        "{}: b{} had room for {}", policy.name, i, want
                                    );
                                }
                            }
                            Err(other) => prop_assert!(false, "{}: {:?}", policy.name, other),
                        }
                    }
                    Op::Drop(at) => {
                        if !picks.is_empty() {
                            let at = at % picks.len();
                            drop(picks.swap_remove(at));
                        }
                    }
                    Op::PickN { n, cost } => {
                        for pick in lb.pick_n(&Request::new().cost(cost), n) {
                            picks.push((pick, cost));
                        }
                    }
                }
                let mut want: BTreeMap<String, usize> =
                    (0..caps.len()).map(|i| (format!("b{i}"), 0)).collect();
                for (pick, cost) in &picks {
                    *want.get_mut(pick.id()).unwrap() += *cost as usize;
                }
                prop_assert_eq!(held(&*lb), want, "{}", policy.name);
                for (i, &cap) in caps.iter().enumerate() {
                    let h = held(&*lb)[&format!("b{i}")];
                    prop_assert!(cap == 0 || h <= cap as usize, "{}: b{} over its cap", policy.name, i);
                }
            }
            drop(picks);
            prop_assert!(held(&*lb).values().all(|&h| h == 0), "{}", policy.name);
        }
    }
}

#[test]
fn least_connections_balances_work_not_requests() {
    let lb = LeastConnections::new((0..2).map(|i| backend(&format!("b{i}"), 1, i))).unwrap();
    let big = lb.pick(&Request::new().cost(50)).unwrap();
    let small: Vec<Pick<u32>> = (0..50).map(|_| lb.pick(&Request::new()).unwrap()).collect();
    assert!(small.iter().all(|p| p.id() != big.id()));
    // 50 against 50: the next two alternate.
    let a = lb.pick(&Request::new()).unwrap();
    let b = lb.pick(&Request::new()).unwrap();
    assert_ne!(a.id(), b.id());
}

#[test]
fn p2c_compares_work() {
    let lb =
        PowerOfTwoChoices::with_seed((0..2).map(|i| backend(&format!("b{i}"), 1, i)), 7).unwrap();
    let big = lb.pick(&Request::new().prefer("b0").cost(1000)).unwrap();
    for _ in 0..100 {
        assert_eq!(lb.pick(&Request::new()).unwrap().id(), "b1");
    }
    drop(big);
}

#[test]
fn a_cost_above_the_cap_never_fits() {
    let lb = LeastConnections::new([backend("a", 1, 0).with_max_in_flight(10)]).unwrap();
    assert_eq!(
        lb.try_pick(&Request::new().cost(11)).err(),
        Some(NoPick::AllAtCapacity)
    );
    let four = lb.pick(&Request::new().cost(4)).unwrap();
    let six = lb.pick(&Request::new().cost(6)).unwrap();
    assert!(lb.pick(&Request::new()).is_none());
    drop(four);
    let more: Vec<Pick<u32>> = (0..4).map(|_| lb.pick(&Request::new()).unwrap()).collect();
    assert!(lb.pick(&Request::new()).is_none());
    drop((six, more));
    assert_eq!(held(&lb)["a"], 0);
}

#[test]
fn bounded_loads_bound_work() {
    // Two equal backends, load factor 1.25: a key's home takes a request while its work
    // held plus the request's stays within ceil(1.25 x (total + cost) / 2).
    let lb = HashRing::builder()
        .load_factor(1.25)
        .seed(1)
        .build((0..2).map(|i| backend(&format!("b{i}"), 1, i)))
        .unwrap();
    let key = b"k";
    let home = lb.pick(&Request::with_key(key)).unwrap().id().to_owned();
    let other = if home == "b0" { "b1" } else { "b0" };
    // A request of cost 8 on an idle set: capacity ceil(1.25 x 8 / 2) = 5 < 8, so neither
    // backend has room and it goes home anyway.
    let first = lb.pick(&Request::with_key(key).cost(8)).unwrap();
    assert_eq!(first.id(), home);
    // Home holds 8: another 2 would make 10 > ceil(1.25 x 10 / 2) = 7; the other has room.
    let second = lb.pick(&Request::with_key(key).cost(2)).unwrap();
    assert_eq!(second.id(), other);
    drop((first, second));
}

#[test]
fn costs_from_many_threads_balance_to_zero() {
    let lb = std::sync::Arc::new(
        LeastConnections::new((0..4).map(|i| backend(&format!("b{i}"), 1, i))).unwrap(),
    );
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let lb = &lb;
            s.spawn(move || {
                let mut held = Vec::new();
                for i in 0..5_000u32 {
                    held.push(lb.pick(&Request::new().cost(1 + (i * 7 + t) % 13)).unwrap());
                    if held.len() > 16 {
                        drop(held.swap_remove((i as usize * 31) % held.len()));
                    }
                }
            });
        }
    });
    assert!(held(&*lb).values().all(|&h| h == 0), "{:?}", held(&*lb));
}
