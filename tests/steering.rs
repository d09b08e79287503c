//! Per-request steering and hard capacity, for every policy of the registry
//! (`common::POLICIES`): `Request::avoid`, `Request::prefer`, `Backend::with_max_in_flight`
//! and the reasons of `Balancer::try_pick`.
//!
//! * [`steering_follows_the_model`]: random sets (ids, weights, health, caps, list order) and
//!   random picks, `pick_n`s, drops, updates and health changes, against a naive model that
//!   predicts, for each request: the error and its reason (`Empty`, then `NoneEligible`,
//!   then `AllAtCapacity`); when `prefer` must be honoured (exactly: in the set, not `Down`,
//!   not avoided, below its cap); that an avoided id is never returned while an eligible
//!   backend not avoided has room; that no pick takes a backend above its cap; that `pick_n`
//!   returns the backends not avoided first; and, exactly, what `First` returns (the first
//!   eligible backend with room in list order). For the hashing policies without bounded
//!   loads it also checks that avoided and full backends are walked past exactly like
//!   ineligible ones: the keyed pick equals the pick of a twin on which they are `Down`.
//! * [`caps_hold_under_threads`]: 8 threads pick with caps while another updates the set
//!   and changes health; a sampler checks that no backend ever holds more than its cap, and
//!   every count returns to 0.
//! * Bad input: a cap of 0 is a typed error at construction and update, and changes
//!   nothing; unknown ids in `avoid` and `prefer` are ignored.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use common::{Oracle, Policy, POLICIES};
use lbkit::{Backend, Balancer, Error, Health, NoPick, Pick, Request};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const IDS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

/// One backend of a generated set: id index, weight, health, cap.
type Spec = (usize, u32, Health, Option<u32>);

fn health() -> impl Strategy<Value = Health> {
    prop_oneof![4 => Just(Health::Up), 1 => Just(Health::Down), 1 => Just(Health::Draining)]
}

/// Distinct ids in random (list) order.
fn set() -> impl Strategy<Value = Vec<Spec>> {
    prop::collection::vec(
        (
            0..IDS.len(),
            prop_oneof![1 => Just(0u32), 5 => 1..=4u32],
            health(),
            prop::option::of(1..=3u32),
        ),
        0..=6,
    )
    .prop_map(|mut v| {
        let mut seen = [false; IDS.len()];
        v.retain(|s| !std::mem::replace(&mut seen[s.0], true));
        v
    })
}

#[derive(Debug, Clone)]
struct Steer {
    key: Option<u64>,
    /// A mask over `IDS`, plus whether an unknown id is listed too.
    avoid: u8,
    unknown_avoid: bool,
    /// An index into `IDS`, or `IDS.len()` for an unknown id.
    prefer: Option<usize>,
}

fn steer() -> impl Strategy<Value = Steer> {
    (
        prop::option::of(any::<u64>()),
        prop_oneof![2 => Just(0u8), 3 => any::<u8>()],
        any::<bool>(),
        prop::option::of(0..=IDS.len()),
    )
        .prop_map(|(key, avoid, unknown_avoid, prefer)| Steer {
            key,
            avoid: avoid & 0b11_1111,
            unknown_avoid,
            prefer,
        })
}

#[derive(Debug, Clone)]
enum Op {
    Pick { steer: Steer, hold: bool },
    PickN { steer: Steer, n: usize },
    Drop { index: usize },
    Update { set: Vec<Spec> },
    SetHealth { id: usize, health: Health },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (steer(), prop_oneof![1 => Just(false), 3 => Just(true)])
            .prop_map(|(steer, hold)| Op::Pick { steer, hold }),
        2 => (steer(), 0..=7usize).prop_map(|(steer, n)| Op::PickN { steer, n }),
        4 => any::<usize>().prop_map(|index| Op::Drop { index }),
        1 => set().prop_map(|set| Op::Update { set }),
        2 => (0..IDS.len(), health()).prop_map(|(id, health)| Op::SetHealth { id, health }),
    ]
}

/// The naive model: the set in list order, and the ids of the picks held.
#[derive(Debug, Default)]
struct Model {
    /// id -> (weight, health, cap, position in the list).
    members: BTreeMap<&'static str, (u32, Health, Option<u32>, usize)>,
    held: Vec<String>,
}

impl Model {
    fn in_flight(&self, id: &str) -> usize {
        self.held.iter().filter(|h| *h == id).count()
    }

    fn eligible(&self, id: &str) -> bool {
        let (w, h, _, _) = self.members[id];
        h == Health::Up && w > 0
    }

    fn room(&self, id: &str) -> bool {
        self.members[id]
            .2
            .map_or(true, |cap| self.in_flight(id) < cap as usize)
    }

    /// Eligible with room, in list order.
    fn available(&self) -> Vec<&'static str> {
        let mut ids: Vec<_> = self
            .members
            .iter()
            .filter(|(id, _)| self.eligible(id) && self.room(id))
            .map(|(id, m)| (m.3, *id))
            .collect();
        ids.sort_unstable();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    /// The member a request must get by its preference, if the rule honours it.
    fn honoured(&self, prefer: Option<&str>, avoid: &[&str]) -> Option<&'static str> {
        let (id, m) = self.members.get_key_value(prefer?)?;
        (m.1 != Health::Down && !avoid.contains(id) && self.room(id)).then_some(*id)
    }

    fn set(&mut self, set: &[Spec]) {
        self.members = set
            .iter()
            .enumerate()
            .map(|(pos, &(id, w, h, cap))| (IDS[id], (w, h, cap, pos)))
            .collect();
    }
}

fn backends(set: &[Spec]) -> Vec<Backend<u32>> {
    set.iter()
        .map(|&(id, w, h, cap)| {
            let b = Backend::new(IDS[id], id as u32)
                .with_weight(w)
                .with_health(h);
            match cap {
                Some(cap) => b.with_max_in_flight(cap),
                None => b,
            }
        })
        .collect()
}

/// The ids a steer avoids (known ones, then maybe an unknown one).
fn avoid_list(steer: &Steer) -> Vec<&'static str> {
    let mut ids: Vec<&'static str> = (0..IDS.len())
        .filter(|i| steer.avoid & (1 << i) != 0)
        .map(|i| IDS[i])
        .collect();
    if steer.unknown_avoid {
        ids.push("zz");
    }
    ids
}

fn prefer_id(steer: &Steer) -> Option<&'static str> {
    steer.prefer.map(|i| IDS.get(i).copied().unwrap_or("zz"))
}

/// A twin of `policy` with the same seed over `model`'s set without caps, on which the
/// backends in `walked_past` are `Down` as well: what a hashing policy must return when it
/// walks past them as past ineligible ones.
fn twin(
    policy: &Policy,
    seed: u64,
    model: &Model,
    walked_past: &[&str],
) -> Result<Box<dyn Balancer<u32>>, TestCaseError> {
    let mut list: Vec<(usize, Backend<u32>)> = model
        .members
        .iter()
        .map(|(id, &(w, h, _, pos))| {
            let h = if walked_past.contains(id) {
                Health::Down
            } else {
                h
            };
            (pos, Backend::new(*id, 0).with_weight(w).with_health(h))
        })
        .collect();
    list.sort_by_key(|(pos, _)| *pos);
    (policy.new)(list.into_iter().map(|(_, b)| b).collect(), seed)
        .map_err(|e| TestCaseError::fail(format!("twin: {e}")))
}

fn run(policy: &Policy, seed: u64, initial: &[Spec], ops: &[Op]) -> Result<(), TestCaseError> {
    let name = policy.name;
    let mut model = Model::default();
    model.set(initial);
    let lb = (policy.new)(backends(initial), seed)
        .map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
    let mut held: Vec<Pick<u32>> = Vec::new();
    // Exact twins only for hashing policies without bounded loads (bounded loads compute
    // capacities over the eligible set, which the twin's `Down` backends would change).
    let exact_walk = policy.hashing && !name.ends_with("+bound");

    for (step, op) in ops.iter().enumerate() {
        let ctx = format!("{name}, step {step}, {op:?}, model {model:?}");
        match op {
            Op::Pick { steer, hold } => {
                let avoid = avoid_list(steer);
                let prefer = prefer_id(steer);
                let mut request = steer.key.map_or_else(Request::new, Request::with_hash);
                request = request.avoid(&avoid);
                if let Some(p) = prefer {
                    request = request.prefer(p);
                }
                let got = lb.try_pick(&request);
                let honoured = model.honoured(prefer, &avoid);
                let available = model.available();
                let any_eligible = model.members.keys().any(|id| model.eligible(id));
                let pick = match (got, honoured) {
                    (Ok(p), Some(id)) => {
                        prop_assert_eq!(p.id(), id, "prefer not honoured: {}", ctx);
                        p
                    }
                    (Err(e), Some(_)) => {
                        return Err(TestCaseError::fail(format!("{e} though prefer: {ctx}")))
                    }
                    (Err(e), None) => {
                        let want = if model.members.is_empty() {
                            NoPick::Empty
                        } else if !any_eligible {
                            NoPick::NoneEligible
                        } else {
                            NoPick::AllAtCapacity
                        };
                        prop_assert_eq!(e, want, "{}", ctx);
                        prop_assert!(
                            available.is_empty(),
                            "{} though {:?}: {}",
                            e,
                            available,
                            ctx
                        );
                        continue;
                    }
                    (Ok(p), None) => {
                        prop_assert!(
                            available.contains(&p.id()),
                            "{} is not eligible with room: {}",
                            p.id(),
                            ctx
                        );
                        let free: Vec<&str> = available
                            .iter()
                            .copied()
                            .filter(|id| !avoid.contains(id))
                            .collect();
                        if !free.is_empty() {
                            prop_assert!(!avoid.contains(&p.id()), "avoided {}: {}", p.id(), ctx);
                        }
                        if policy.oracle == Oracle::First {
                            let want = if free.is_empty() {
                                available[0]
                            } else {
                                free[0]
                            };
                            prop_assert_eq!(p.id(), want, "First: {}", ctx);
                        }
                        if let (true, Some(key)) = (exact_walk, steer.key) {
                            // Walked past exactly like ineligible backends.
                            let mut past: Vec<&str> = model
                                .members
                                .keys()
                                .copied()
                                .filter(|id| !model.room(id))
                                .collect();
                            if !free.is_empty() {
                                past.extend(avoid.iter().copied());
                            }
                            let twin = twin(policy, seed, &model, &past)?;
                            let want = twin
                                .pick(&Request::with_hash(key))
                                .map(|p| p.id().to_owned());
                            prop_assert_eq!(Some(p.id().to_owned()), want, "walk: {}", ctx);
                        }
                        p
                    }
                };
                if let Some(cap) = model.members[pick.id()].2 {
                    prop_assert!(
                        model.in_flight(pick.id()) < cap as usize,
                        "{} taken at its cap: {}",
                        pick.id(),
                        ctx
                    );
                }
                if *hold {
                    model.held.push(pick.id().to_owned());
                    held.push(pick);
                }
            }
            Op::PickN { steer, n } => {
                let avoid = avoid_list(steer);
                let prefer = prefer_id(steer);
                let mut request = steer.key.map_or_else(Request::new, Request::with_hash);
                request = request.avoid(&avoid);
                if let Some(p) = prefer {
                    request = request.prefer(p);
                }
                let picks = lb.pick_n(&request, *n);
                let ids: Vec<&str> = picks.iter().map(|p| p.id()).collect();
                let honoured = model.honoured(prefer, &avoid);
                let mut candidates = model.available();
                if let Some(h) = honoured {
                    if !candidates.contains(&h) {
                        candidates.push(h);
                    }
                }
                prop_assert_eq!(ids.len(), (*n).min(candidates.len()), "{:?}: {}", ids, ctx);
                let mut distinct = ids.clone();
                distinct.sort_unstable();
                distinct.dedup();
                prop_assert_eq!(distinct.len(), ids.len(), "{:?} not distinct: {}", ids, ctx);
                let rest = match honoured {
                    Some(h) if *n > 0 => {
                        prop_assert_eq!(ids[0], h, "pick_n ignores prefer: {}", ctx);
                        &ids[1..]
                    }
                    _ => &ids[..],
                };
                for id in rest {
                    prop_assert!(candidates.contains(id), "{} not available: {}", id, ctx);
                }
                // Not avoided first, then avoided.
                if let Some(first_avoided) = rest.iter().position(|id| avoid.contains(id)) {
                    prop_assert!(
                        rest[first_avoided..].iter().all(|id| avoid.contains(id)),
                        "{:?}: avoided before not avoided: {}",
                        ids,
                        ctx
                    );
                    let free = candidates
                        .iter()
                        .filter(|id| !avoid.contains(id) && Some(**id) != honoured)
                        .count();
                    prop_assert_eq!(first_avoided, free, "{:?}: {}", ids, ctx);
                }
                if policy.oracle == Oracle::First && honoured.is_none() {
                    let mut want: Vec<&str> = candidates
                        .iter()
                        .copied()
                        .filter(|id| !avoid.contains(id))
                        .collect();
                    want.extend(candidates.iter().copied().filter(|id| avoid.contains(id)));
                    want.truncate(*n);
                    prop_assert_eq!(&ids, &want, "First: {}", ctx);
                }
                drop(picks);
            }
            Op::Drop { index } => {
                if !held.is_empty() {
                    let i = index % held.len();
                    drop(held.swap_remove(i));
                    model.held.swap_remove(i);
                }
            }
            Op::Update { set } => {
                lb.update(backends(set))
                    .map_err(|e| TestCaseError::fail(format!("{e}: {ctx}")))?;
                model.set(set);
            }
            Op::SetHealth { id, health } => {
                let id = IDS[*id];
                let result = lb.set_health(id, *health);
                match model.members.get_mut(id) {
                    Some(m) => {
                        prop_assert!(result.is_ok(), "{}", ctx);
                        m.1 = *health;
                    }
                    None => prop_assert!(result.is_err(), "{}", ctx),
                }
            }
        }
        for s in lb.status() {
            prop_assert_eq!(
                s.in_flight(),
                model.in_flight(s.id()),
                "{}: {}",
                s.id(),
                ctx
            );
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn steering_follows_the_model(
        seed in any::<u64>(),
        initial in set(),
        ops in prop::collection::vec(op(), 0..60),
    ) {
        for policy in POLICIES {
            run(policy, seed, &initial, &ops)?;
        }
    }
}

/// Caps per id, fixed for the threaded test so that a sampler knows each backend's cap.
fn thread_cap(id: usize) -> u32 {
    1 + (id % 3) as u32
}

#[test]
fn caps_hold_under_threads() {
    const PICKERS: usize = 8;
    let set = |mask: u32, round: u32| -> Vec<Backend<u32>> {
        (0..8usize)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| {
                Backend::new(format!("n{i}"), i as u32)
                    .with_weight(1 + (i as u32 + round) % 3)
                    .with_max_in_flight(thread_cap(i))
            })
            .collect()
    };
    for policy in POLICIES {
        let name = policy.name;
        let lb: Arc<dyn Balancer<u32>> = Arc::from((policy.new)(set(0xff, 0), 7).unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let start = Arc::new(Barrier::new(PICKERS + 2));
        let mut threads = Vec::new();
        for t in 0..PICKERS {
            let (lb, stop, start) = (Arc::clone(&lb), Arc::clone(&stop), Arc::clone(&start));
            threads.push(std::thread::spawn(move || {
                start.wait();
                let mut held: Vec<Pick<u32>> = Vec::new();
                let mut i = 0u64;
                let tried = ["n1", "n2"];
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let key = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ t as u64;
                    let request = match i % 4 {
                        0 => Request::new(),
                        1 => Request::with_hash(key),
                        2 => Request::with_hash(key).avoid(&tried),
                        _ => Request::new().prefer("n3"),
                    };
                    match lb.try_pick(&request) {
                        Ok(p) => held.push(p),
                        Err(NoPick::Empty) => panic!("{name}: the set is never empty"),
                        Err(_) => {}
                    }
                    if !held.is_empty() && (held.len() > 3 || i % 3 == 0) {
                        drop(held.swap_remove(i as usize % held.len()));
                    }
                    if i % 16 == 0 {
                        held.extend(lb.pick_n(&Request::with_hash(key).avoid(&tried), 3));
                        held.truncate(4);
                    }
                }
            }));
        }
        let writer = {
            let (lb, stop, start) = (Arc::clone(&lb), Arc::clone(&stop), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                let mut round = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    // Never empty: n0 always stays.
                    let mask = 1 | (round.wrapping_mul(0x2f) & 0xfe);
                    lb.update(set(mask, round)).unwrap();
                    let id = format!("n{}", round % 8);
                    let health = [Health::Up, Health::Down, Health::Draining][round as usize % 3];
                    let _ = lb.set_health(&id, health);
                    if round % 5 == 0 {
                        let _ = lb.set_health("n0", Health::Up);
                    }
                    std::thread::yield_now();
                }
            })
        };
        start.wait();
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(300);
        let mut samples = 0u64;
        while std::time::Instant::now() < deadline {
            for s in lb.status() {
                let i: usize = s.id()[1..].parse().unwrap();
                assert!(
                    s.in_flight() <= thread_cap(i) as usize,
                    "{name}: {} holds {} above its cap {}",
                    s.id(),
                    s.in_flight(),
                    thread_cap(i)
                );
            }
            samples += 1;
        }
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        writer.join().unwrap();
        lb.update(set(0xff, 0)).unwrap();
        for s in lb.status() {
            assert_eq!(s.in_flight(), 0, "{name}: {} not back to 0", s.id());
        }
        assert!(samples > 10, "{name}: only {samples} samples");
    }
}

#[test]
fn a_cap_of_zero_is_a_typed_error_and_changes_nothing() {
    for policy in POLICIES {
        let name = policy.name;
        let zero = vec![
            Backend::new("a", 0).with_max_in_flight(2),
            Backend::new("b", 1).with_max_in_flight(0),
        ];
        match (policy.new)(zero.clone(), 1) {
            Err(Error::InvalidConfig { parameter, .. }) => {
                assert_eq!(parameter, "max_in_flight", "{name}")
            }
            Err(e) => panic!("{name}: {e}"),
            Ok(_) => panic!("{name}: a cap of 0 accepted"),
        }
        let lb = (policy.new)(vec![Backend::new("a", 0).with_max_in_flight(1)], 1).unwrap();
        let held = lb.pick(&Request::new()).unwrap();
        let before = common::summary(&*lb);
        let err = lb.update(zero).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidConfig {
                    parameter: "max_in_flight",
                    ..
                }
            ),
            "{name}: {err}"
        );
        assert_eq!(common::summary(&*lb), before, "{name}");
        // The old cap still holds: "a" is full.
        assert_eq!(
            lb.try_pick(&Request::new()).unwrap_err(),
            NoPick::AllAtCapacity,
            "{name}"
        );
        drop(held);
        assert!(lb.pick(&Request::new()).is_some(), "{name}");
    }
}

#[test]
fn a_cap_changes_by_update_and_the_count_carries() {
    for policy in POLICIES {
        let name = policy.name;
        let lb = (policy.new)(vec![Backend::new("a", 0).with_max_in_flight(2)], 1).unwrap();
        let held: Vec<_> = (0..2).map(|_| lb.pick(&Request::new()).unwrap()).collect();
        assert!(lb.pick(&Request::new()).is_none(), "{name}");
        lb.update(vec![Backend::new("a", 0).with_max_in_flight(3)])
            .unwrap();
        let third = lb.pick(&Request::new()).expect("room under the raised cap");
        assert!(lb.pick(&Request::new()).is_none(), "{name}");
        // Lowered below what is held: nothing is revoked, nothing new is taken.
        lb.update(vec![Backend::new("a", 0).with_max_in_flight(1)])
            .unwrap();
        assert_eq!(lb.status()[0].in_flight(), 3, "{name}");
        drop(held);
        assert!(lb.pick(&Request::new()).is_none(), "{name}: 1 held, cap 1");
        drop(third);
        assert!(lb.pick(&Request::new()).is_some(), "{name}");
        // The cap removed.
        lb.update(vec![Backend::new("a", 0)]).unwrap();
        let many: Vec<_> = (0..10).map(|_| lb.pick(&Request::new()).unwrap()).collect();
        assert_eq!(many.len(), 10, "{name}");
    }
}

#[test]
fn unknown_ids_are_ignored() {
    for policy in POLICIES {
        let name = policy.name;
        let lb = (policy.new)(vec![Backend::new("a", 0), Backend::new("b", 1)], 1).unwrap();
        let request = Request::with_hash(42);
        let plain = lb.pick(&request).unwrap().id().to_owned();
        let twin = (policy.new)(vec![Backend::new("a", 0), Backend::new("b", 1)], 1).unwrap();
        let unknown = ["zz", "yy"];
        let steered = twin
            .pick(&request.avoid(&unknown).prefer("zz"))
            .unwrap()
            .id()
            .to_owned();
        assert_eq!(steered, plain, "{name}: unknown ids changed the pick");
        assert_eq!(twin.pick_n(&request.avoid(&unknown), 5).len(), 2, "{name}");
        assert!(twin.pick(&Request::new().prefer("")).is_some(), "{name}");
    }
}

#[test]
fn every_eligible_avoided_falls_back_and_prefer_loses_to_avoid() {
    for policy in POLICIES {
        let name = policy.name;
        let lb = (policy.new)(
            vec![
                Backend::new("a", 0),
                Backend::new("b", 1),
                Backend::new("c", 2).with_health(Health::Down),
            ],
            1,
        )
        .unwrap();
        let all = ["a", "b"];
        for key in 0..20u64 {
            let p = lb.pick(&Request::with_hash(key).avoid(&all));
            assert!(p.is_some(), "{name}: everything avoided must fall back");
            let p = lb
                .pick(&Request::with_hash(key).avoid(&["a"]).prefer("a"))
                .unwrap();
            assert_eq!(p.id(), "b", "{name}: avoid wins over prefer");
        }
        // Down is never preferred; draining and weight 0 are.
        for key in 0..20u64 {
            let p = lb.pick(&Request::with_hash(key).prefer("c")).unwrap();
            assert_ne!(p.id(), "c", "{name}");
        }
        lb.set_health("c", Health::Draining).unwrap();
        assert_eq!(
            lb.pick(&Request::new().prefer("c")).unwrap().id(),
            "c",
            "{name}"
        );
        lb.update(vec![
            Backend::new("a", 0).with_weight(0),
            Backend::new("b", 1),
        ])
        .unwrap();
        assert_eq!(
            lb.pick(&Request::new().prefer("a")).unwrap().id(),
            "a",
            "{name}"
        );
        // Only a draining backend: prefer still reaches it; nothing else does.
        lb.update(vec![Backend::new("a", 0).with_health(Health::Draining)])
            .unwrap();
        assert_eq!(
            lb.pick(&Request::new().prefer("a")).unwrap().id(),
            "a",
            "{name}"
        );
        assert_eq!(
            lb.try_pick(&Request::new()).unwrap_err(),
            NoPick::NoneEligible,
            "{name}"
        );
    }
}
