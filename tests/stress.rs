//! Threaded stress test, for every policy: four threads pick, `pick_n`, hold and drop picks
//! while a fifth churns membership (`update` over overlapping sets, `set_health`) and a sixth
//! reads `status()`. A bounded number of iterations (about 5 s in debug for every entry of
//! the registry on the shared 2-core dev machine).
//!
//! Checked during the run:
//! * every pick comes from a set that was really given: its value encodes the update
//!   (generation) that created it and the id, and that set has that id with that weight, above
//!   0 (no garbage, no torn entry);
//! * the picks of one `pick_n` all come from one set (no half update), and are distinct;
//! * one thread never sees an older set after a newer one;
//! * after `update` returns, a pick from the updating thread comes from exactly that set and
//!   is eligible (the writer knows the health of every backend, as it is the only writer);
//! * `status()` is sorted by id, lists exactly the ids of one of the sets, with its weights,
//!   and no count is beyond what the threads can hold (an underflow would wrap to a huge
//!   number).
//!
//! Checked at the end, with every thread joined: the in-flight count of every backend equals
//! the picks still held on its id (many were taken before their backend was removed, and
//! some of those backends were added back since); after dropping them all, every count is 0.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use common::{Policy, POLICIES};
use lbkit::{Backend, Balancer, Error, Health, Pick, Request};

const IDS: [&str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];

/// The sets the churn thread cycles through: overlapping, with weight-0 backends, a
/// singleton, an empty set and a set with nothing eligible.
const SETS: [&[(usize, u32)]; 8] = [
    &[(0, 1), (1, 1), (2, 1), (3, 1)],
    &[(2, 2), (3, 1), (4, 1), (5, 3)],
    &[(0, 1), (2, 0), (4, 2), (6, 1), (7, 1)],
    &[(1, 1)],
    &[],
    &[
        (0, 4),
        (1, 3),
        (2, 2),
        (3, 1),
        (4, 1),
        (5, 1),
        (6, 1),
        (7, 1),
    ],
    &[(3, 1), (4, 1), (5, 1)],
    &[(0, 0), (1, 0)],
];

const PICKERS: usize = 4;
const ITERATIONS: usize = 50_000;
/// Picks one picker holds at most, beyond the long-held ones.
const MAX_HELD: usize = 16;
/// Every this many steps a picker keeps one pick to the end, so that the end sees picks
/// taken from many sets, most of them on backends removed since.
const KEEP_EVERY: usize = 1_000;
/// The largest `pick_n`.
const MAX_N: usize = 4;

/// The set of generation `g` (0 is the constructor's); a stride coprime with 8 so that
/// consecutive sets differ.
fn set_of(generation: u32) -> &'static [(usize, u32)] {
    SETS[(generation as usize * 3) % SETS.len()]
}

/// A pick's value: the generation that created the entry and the id's index.
fn value(generation: u32, id: usize) -> u32 {
    (generation << 4) | id as u32
}

fn backends(generation: u32) -> Vec<Backend<u32>> {
    set_of(generation)
        .iter()
        .map(|&(id, w)| Backend::new(IDS[id], value(generation, id)).with_weight(w))
        .collect()
}

/// Checks that a pick comes from a set that was given; returns its generation.
fn check_pick(name: &str, pick: &Pick<u32>) -> u32 {
    let (generation, id) = (**pick >> 4, (**pick & 15) as usize);
    assert_eq!(
        IDS.get(id),
        Some(&pick.id()),
        "{name}: garbage value {}",
        **pick
    );
    let weight = set_of(generation)
        .iter()
        .find(|&&(i, _)| i == id)
        .map(|&(_, w)| w);
    assert_eq!(
        weight,
        Some(pick.weight()),
        "{name}: {} not in the set of generation {generation}",
        pick.id()
    );
    assert!(pick.weight() > 0, "{name}: picked weight-0 {}", pick.id());
    generation
}

/// A small xorshift generator: the test's own choices, reproducible per thread.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Picks, holds and drops for [`ITERATIONS`] steps; returns the picks still held.
fn picker(name: &str, lb: &dyn Balancer<u32>, seed: u64) -> Vec<Pick<u32>> {
    let mut rng = Rng(seed);
    let mut held: Vec<Pick<u32>> = Vec::new();
    let mut kept: Vec<Pick<u32>> = Vec::new();
    let mut newest = 0;
    for step in 0..ITERATIONS {
        if step % KEEP_EVERY == 0 {
            if let Some(p) = lb.pick(&Request::new()) {
                let generation = check_pick(name, &p);
                assert!(generation >= newest, "{name}: went back to an older set");
                newest = generation;
                kept.push(p);
            }
        }
        let request = if step % 2 == 0 {
            Request::new()
        } else {
            Request::with_hash(rng.0)
        };
        match rng.next(4) {
            0 | 1 => {
                if let Some(p) = lb.pick(&request) {
                    let generation = check_pick(name, &p);
                    assert!(generation >= newest, "{name}: went back to an older set");
                    newest = generation;
                    held.push(p);
                }
            }
            2 => {
                let picks = lb.pick_n(&request, 1 + rng.next(MAX_N));
                let generations: Vec<u32> = picks.iter().map(|p| check_pick(name, p)).collect();
                if let Some(&g) = generations.first() {
                    assert!(
                        generations.iter().all(|&x| x == g),
                        "{name}: pick_n mixed sets {generations:?}"
                    );
                    assert!(g >= newest, "{name}: went back to an older set");
                    newest = g;
                }
                for (i, p) in picks.iter().enumerate() {
                    assert!(
                        picks[..i].iter().all(|q| q.id() != p.id()),
                        "{name}: pick_n repeated {}",
                        p.id()
                    );
                }
                held.extend(picks);
            }
            _ => {
                // Drop a few, at random positions.
                for _ in 0..=rng.next(3) {
                    if !held.is_empty() {
                        let i = rng.next(held.len());
                        drop(held.swap_remove(i));
                    }
                }
            }
        }
        while held.len() > MAX_HELD {
            let i = rng.next(held.len());
            drop(held.swap_remove(i));
        }
    }
    held.extend(kept);
    held
}

/// Updates and sets health until `done`; checks its own picks against what it just did.
/// Returns the last generation.
fn churner(name: &str, lb: &dyn Balancer<u32>, done: &AtomicBool) -> u32 {
    let mut rng = Rng(0x5eed);
    let mut health: BTreeMap<&str, Health> = set_of(0)
        .iter()
        .map(|&(i, _)| (IDS[i], Health::Up))
        .collect();
    let mut generation = 0;
    // Relaxed: the flag only ends the loop; the join orders everything else.
    while !done.load(Ordering::Relaxed) || generation < 8 {
        generation += 1;
        lb.update(backends(generation)).unwrap();
        health = set_of(generation)
            .iter()
            .map(|&(i, _)| (IDS[i], health.get(IDS[i]).copied().unwrap_or(Health::Up)))
            .collect();
        let check = |health: &BTreeMap<&str, Health>| {
            let eligible: Vec<&str> = set_of(generation)
                .iter()
                .filter(|&&(i, w)| w > 0 && health[IDS[i]] == Health::Up)
                .map(|&(i, _)| IDS[i])
                .collect();
            let picks = lb.pick_n(&Request::new(), MAX_N);
            assert_eq!(picks.len(), MAX_N.min(eligible.len()), "{name}");
            let pick = lb.pick(&Request::new());
            assert_eq!(pick.is_some(), !eligible.is_empty(), "{name}");
            for p in picks.iter().chain(&pick) {
                assert_eq!(
                    check_pick(name, p),
                    generation,
                    "{name}: a pick after update returned saw another set"
                );
                assert!(
                    eligible.contains(&p.id()),
                    "{name}: {} is not eligible",
                    p.id()
                );
            }
        };
        check(&health);
        for _ in 0..2 {
            let id = *[IDS.as_slice(), &["zz"]]
                .concat()
                .get(rng.next(IDS.len() + 1))
                .unwrap();
            // Mostly Up, so that the sets are not all down for long.
            let h = [Health::Up, Health::Up, Health::Down, Health::Draining][rng.next(4)];
            let got = lb.set_health(id, h);
            if let Some(current) = health.get_mut(id) {
                assert_eq!(got, Ok(()), "{name}");
                *current = h;
            } else {
                assert_eq!(got, Err(Error::UnknownId(id.to_owned())), "{name}");
            }
            check(&health);
        }
    }
    generation
}

/// Reads `status()` until `done`, checking each against the sets.
fn reader(name: &str, lb: &dyn Balancer<u32>, done: &AtomicBool) -> usize {
    let bound = PICKERS * (MAX_HELD + MAX_N + ITERATIONS / KEEP_EVERY + 1) + MAX_N + 1;
    let mut reads = 0;
    // Relaxed: as in `churner`.
    while !done.load(Ordering::Relaxed) || reads < 100 {
        let status = lb.status();
        // Removed backends with picks held come last, each at least one pick.
        let members = status.iter().take_while(|s| !s.is_removed()).count();
        assert!(
            status[members..]
                .iter()
                .all(|s| s.is_removed() && s.in_flight() > 0),
            "{name}: {status:?}"
        );
        let status = &status[..members];
        let ids: Vec<(usize, u32)> = status
            .iter()
            .map(|s| (IDS.iter().position(|i| *i == s.id()).unwrap(), s.weight()))
            .collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        assert_eq!(ids, sorted, "{name}: status not in id order");
        assert!(
            SETS.iter().any(|s| {
                let mut s = s.to_vec();
                s.sort_unstable();
                s == ids
            }),
            "{name}: status is no set that was given: {status:?}"
        );
        assert!(
            status.iter().all(|s| s.in_flight() <= bound),
            "{name}: impossible count in {status:?}"
        );
        reads += 1;
    }
    reads
}

fn stress(policy: &Policy) {
    let name = policy.name;
    let lb: Arc<dyn Balancer<u32>> = Arc::from((policy.new)(backends(0), 42).unwrap());
    let done = AtomicBool::new(false);
    let start = Barrier::new(PICKERS + 2);
    let (held, last, reads) = thread::scope(|s| {
        let pickers: Vec<_> = (0..PICKERS)
            .map(|t| {
                let (lb, start) = (&lb, &start);
                s.spawn(move || {
                    start.wait();
                    picker(name, &**lb, 0x9e37_79b9 + t as u64)
                })
            })
            .collect();
        let churn = s.spawn(|| {
            start.wait();
            churner(name, &*lb, &done)
        });
        let reader = s.spawn(|| {
            start.wait();
            reader(name, &*lb, &done)
        });
        let held: Vec<Pick<u32>> = pickers
            .into_iter()
            .flat_map(|p| p.join().unwrap())
            .collect();
        // Relaxed: the joins below order everything the threads did.
        done.store(true, Ordering::Relaxed);
        (held, churn.join().unwrap(), reader.join().unwrap())
    });
    assert!(
        last >= 8 && reads >= 100,
        "{name}: {last} updates, {reads} reads"
    );

    // Quiet now: each backend counts exactly the picks still held on its id, the members
    // first, then the removed backends that picks are held on.
    let status = common::summary(&*lb);
    let ids: Vec<&str> = set_of(last).iter().map(|&(i, _)| IDS[i]).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    let mut removed: Vec<&str> = held
        .iter()
        .map(|p| p.id())
        .filter(|id| !sorted.contains(id))
        .collect();
    removed.sort_unstable();
    removed.dedup();
    assert_eq!(
        status.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        [&sorted[..], &removed[..]].concat(),
        "{name}"
    );
    for (id, _, in_flight, _) in &status {
        let holding = held.iter().filter(|p| p.id() == id).count();
        assert_eq!(
            *in_flight, holding,
            "{name}: {id} counts {in_flight}, {holding} held"
        );
    }
    let on_removed = held.iter().filter(|p| !sorted.contains(&p.id())).count();
    eprintln!(
        "{name}: {last} updates, {reads} status reads, {} picks held at the end, {on_removed} on removed backends",
        held.len()
    );
    drop(held);
    let status = common::summary(&*lb);
    assert!(
        status.iter().all(|s| s.2 == 0),
        "{name}: counts left after every pick was dropped ({on_removed} were on removed backends): {status:?}"
    );
}

#[test]
fn every_policy_survives_concurrent_picks_and_churn() {
    for policy in POLICIES {
        stress(policy);
    }
}
