//! Subsetting through the public API (`Builder::subset`, `Balancer::set_subset`): the fleet
//! property, order independence, typed errors, accounting across subset changes, health of
//! backends outside the subset, the fallback to the whole set, and every registry policy
//! picking only inside its subset.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::POLICIES;
use lbkit::{
    Aperture, Backend, Balancer, Error, Health, PowerOfTwoChoices, RendezvousSubset, Request,
    RoundRobin, Subset, WeightedRoundRobin,
};
use proptest::prelude::*;

fn servers(n: usize) -> Vec<Backend<()>> {
    (0..n)
        .map(|i| Backend::new(format!("10.1.{}.{}:443", i / 250, i % 250), ()))
        .collect()
}

fn subset_of(lb: &dyn Balancer<()>) -> BTreeMap<String, f64> {
    lb.status()
        .iter()
        .map(|s| (s.id().to_owned(), s.coverage()))
        .collect()
}

fn aperture(clients: usize, i: usize) -> Subset {
    Subset::Aperture(Aperture::new(i, clients))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Summed over every client of the fleet, every server is covered the same (within 1%,
    /// the rounding of coverage to 2^-16), and each client covers at least the minimum
    /// aperture (or every server).
    #[test]
    fn every_server_carries_the_same_coverage_across_the_fleet(
        clients in 1usize..40,
        count in 1usize..60,
        min in 1usize..16,
    ) {
        let mut total: BTreeMap<String, f64> = BTreeMap::new();
        for i in 0..clients {
            let lb = RoundRobin::builder()
                .subset(Subset::Aperture(Aperture::new(i, clients).min_aperture(min)))
                .build(servers(count))
                .unwrap();
            let subset = subset_of(&lb);
            let covered: f64 = subset.values().sum();
            prop_assert!(covered + 1e-3 >= min.min(count) as f64, "{covered}");
            for (id, c) in subset {
                *total.entry(id).or_default() += c;
            }
        }
        prop_assert_eq!(total.len(), count);
        let max = total.values().cloned().fold(0.0, f64::max);
        let least = total.values().cloned().fold(f64::MAX, f64::min);
        prop_assert!(max <= least * 1.01 + 1e-3, "{} .. {}", least, max);
    }

    /// Two processes given the same coordinate and the same backends in any order choose the
    /// same subset with the same coverage.
    #[test]
    fn the_subset_does_not_depend_on_the_order_of_the_list(
        count in 1usize..80,
        clients in 1usize..30,
        seed in any::<u64>(),
    ) {
        let i = (seed % clients as u64) as usize;
        let mut shuffled = servers(count);
        let mut x = seed;
        for k in (1..shuffled.len()).rev() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(k, (x >> 33) as usize % (k + 1));
        }
        for subset in [
            aperture(clients, i),
            Subset::Rendezvous(RendezvousSubset::new(7).salt(seed)),
        ] {
            let a = RoundRobin::builder().subset(subset).build(servers(count)).unwrap();
            let b = RoundRobin::builder().subset(subset).build(shuffled.clone()).unwrap();
            prop_assert_eq!(subset_of(&a), subset_of(&b));
        }
    }

    /// gRFC A68: exactly `subset_size` members (or all), and one server added or removed
    /// changes at most one member.
    #[test]
    fn rendezvous_subsets_have_their_size_and_move_by_one(
        count in 1usize..60,
        size in 1usize..20,
        salt in any::<u64>(),
        removed in any::<prop::sample::Index>(),
    ) {
        let subset = Subset::Rendezvous(RendezvousSubset::new(size).salt(salt));
        let lb = RoundRobin::builder().subset(subset).build(servers(count)).unwrap();
        let before: BTreeSet<String> = subset_of(&lb).into_keys().collect();
        prop_assert_eq!(before.len(), size.min(count));
        let mut fewer = servers(count);
        fewer.remove(removed.index(count));
        lb.update(fewer).unwrap();
        let after: BTreeSet<String> = subset_of(&lb).into_keys().collect();
        prop_assert!(before.difference(&after).count() <= 1);
        lb.update(servers(count + 1)).unwrap();
        let grown: BTreeSet<String> = subset_of(&lb).into_keys().collect();
        prop_assert!(before.symmetric_difference(&grown).count() <= 2);
    }
}

#[test]
fn a_client_covers_about_its_aperture_and_edge_servers_get_their_share() {
    // Client 3 of 7 over 20 servers, aperture 12: a window of ceil(12 x 7 / 20) = 5 slices,
    // 5/7 of the ring = 14.29 servers' worth, partly covered at the edges.
    let lb = WeightedRoundRobin::builder()
        .subset(aperture(7, 3))
        .build(servers(20))
        .unwrap();
    let subset = subset_of(&lb);
    let covered: f64 = subset.values().sum();
    assert!((covered - 100.0 / 7.0).abs() < 1e-3, "{covered}");
    assert!(subset.len() >= 15 && subset.len() <= 16, "{subset:?}");
    assert!(
        subset.values().any(|&c| c < 1.0),
        "edge servers: {subset:?}"
    );
    // Picks follow coverage: over many picks, each server's share is its coverage's share.
    let n = 100_000;
    let mut picks: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..n {
        *picks
            .entry(lb.pick(&Request::new()).unwrap().id().to_owned())
            .or_default() += 1;
    }
    for (id, c) in &subset {
        let share = picks.get(id).copied().unwrap_or(0) as f64 / n as f64;
        assert!(
            (share - c / covered).abs() < 0.002,
            "{id}: {share} for coverage {c}"
        );
    }
}

#[test]
fn bad_subsets_are_typed_errors_and_change_nothing() {
    let lb = RoundRobin::builder()
        .subset(aperture(4, 1))
        .build(servers(30))
        .unwrap();
    let before = subset_of(&lb);
    let bad = [
        (Subset::Aperture(Aperture::new(0, 0)), "peer_count"),
        (Subset::Aperture(Aperture::new(4, 4)), "peer_index"),
        (
            Subset::Aperture(Aperture::new(0, 4).min_aperture(0)),
            "min_aperture",
        ),
        (
            Subset::Rendezvous(RendezvousSubset::new(0).salt(1)),
            "subset_size",
        ),
    ];
    for (subset, parameter) in bad {
        match lb.set_subset(subset) {
            Err(Error::InvalidConfig { parameter: p, .. }) => assert_eq!(p, parameter),
            other => panic!("{subset:?}: {other:?}"),
        }
        assert_eq!(subset_of(&lb), before, "{subset:?} changed the subset");
        let built = RoundRobin::builder().subset(subset).build(servers(3));
        assert!(
            matches!(built, Err(Error::InvalidConfig { .. })),
            "{subset:?}"
        );
    }
}

#[test]
fn a_new_coordinate_carries_the_picks_in_flight() {
    let lb = PowerOfTwoChoices::builder()
        .seed(1)
        .subset(aperture(10, 0))
        .build(servers(100))
        .unwrap();
    let held: Vec<_> = (0..50).map(|_| lb.pick(&Request::new()).unwrap()).collect();
    let held_ids: BTreeSet<String> = held.iter().map(|p| p.id().to_owned()).collect();
    // The fleet shrank: client 0 of 5 now. Its old subset overlaps the new one.
    lb.set_subset(aperture(5, 0)).unwrap();
    let in_flight: usize = lb.status().iter().map(|s| s.in_flight()).sum();
    let kept: usize = held
        .iter()
        .filter(|p| subset_of(&lb).contains_key(p.id()))
        .count();
    assert_eq!(
        in_flight, kept,
        "the picks on backends still in the subset count"
    );
    // Move to a subset far away, and back: the held picks are counted again.
    lb.set_subset(aperture(5, 2)).unwrap();
    lb.set_subset(aperture(10, 0)).unwrap();
    let in_flight: usize = lb.status().iter().map(|s| s.in_flight()).sum();
    assert_eq!(in_flight, 50, "{held_ids:?}");
    drop(held);
    assert!(lb.status().iter().all(|s| s.in_flight() == 0));
}

#[test]
fn health_of_backends_outside_the_subset_is_kept() {
    let lb = RoundRobin::builder()
        .subset(Subset::Rendezvous(RendezvousSubset::new(3).salt(9)))
        .build(servers(20))
        .unwrap();
    let inside: BTreeSet<String> = subset_of(&lb).into_keys().collect();
    let outside = servers(20)
        .into_iter()
        .map(|b| b.id().to_owned())
        .find(|id| !inside.contains(id))
        .unwrap();
    // Discovery marks a backend down that this client does not use: accepted and kept.
    lb.set_health(&outside, Health::Down).unwrap();
    assert!(matches!(
        lb.set_health("nobody", Health::Down),
        Err(Error::UnknownId(_))
    ));
    // A salt that puts it in the subset: it arrives down.
    let salt = (0..10_000u64)
        .find(|&salt| {
            let probe = RoundRobin::builder()
                .subset(Subset::Rendezvous(RendezvousSubset::new(3).salt(salt)))
                .build(servers(20))
                .unwrap();
            subset_of(&probe).contains_key(&outside)
        })
        .unwrap();
    lb.set_subset(Subset::Rendezvous(RendezvousSubset::new(3).salt(salt)))
        .unwrap();
    let status = lb.status();
    let it = status.iter().find(|s| s.id() == outside).unwrap();
    assert_eq!(it.health(), Health::Down);
    for _ in 0..20 {
        assert_ne!(lb.pick(&Request::new()).unwrap().id(), outside);
    }
}

#[test]
fn a_subset_that_cannot_serve_falls_back_to_the_whole_set() {
    let lb = RoundRobin::builder()
        .subset(Subset::Rendezvous(RendezvousSubset::new(2).salt(3)))
        .build(servers(10))
        .unwrap();
    let inside: Vec<String> = subset_of(&lb).into_keys().collect();
    assert_eq!(inside.len(), 2);
    lb.set_health(&inside[0], Health::Down).unwrap();
    assert_eq!(lb.status().len(), 2, "one of the subset still serves");
    lb.set_health(&inside[1], Health::Draining).unwrap();
    // None of the subset can take a pick: every backend is used.
    assert_eq!(lb.status().len(), 10);
    let pick = lb.pick(&Request::new()).unwrap();
    assert!(!inside.contains(&pick.id().to_owned()));
    drop(pick);
    // One comes back: the subset again.
    lb.set_health(&inside[0], Health::Up).unwrap();
    assert_eq!(lb.status().len(), 2);
    assert_eq!(lb.pick(&Request::new()).unwrap().id(), inside[0]);
}

/// Summed over the fleet, a policy that uses weights loads every server alike: an edge
/// server's effective weight is its covered fraction (7 clients over 20 servers, 140,000 picks
/// each). `RoundRobin`, which ignores weights, spreads 46,082 to 55,420 here (the subsetting
/// docs say so).
#[test]
fn a_weighted_policy_loads_the_fleet_evenly_through_apertures() {
    let mut picks: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..7 {
        let lb = WeightedRoundRobin::builder()
            .subset(Subset::Aperture(Aperture::new(i, 7)))
            .build(servers(20))
            .unwrap();
        for _ in 0..140_000 {
            *picks
                .entry(lb.pick(&Request::new()).unwrap().id().to_owned())
                .or_default() += 1;
        }
    }
    assert_eq!(picks.len(), 20);
    let (least, most) = (
        *picks.values().min().unwrap(),
        *picks.values().max().unwrap(),
    );
    assert!(
        ((most - least) as f64) < 0.01 * most as f64,
        "from {least} to {most} picks: {picks:?}"
    );
}

/// Degraded backends serve (after healthy ones), so a subset of only degraded backends
/// keeps its clients: the fallback is for a subset that cannot serve at all.
#[test]
fn a_degraded_subset_does_not_fall_back() {
    let lb = RoundRobin::builder()
        .subset(Subset::Rendezvous(RendezvousSubset::new(2).salt(3)))
        .build(servers(10))
        .unwrap();
    let inside: Vec<String> = subset_of(&lb).into_keys().collect();
    for id in &inside {
        lb.set_health(id, Health::Degraded).unwrap();
    }
    assert_eq!(lb.status().len(), 2);
    for _ in 0..10 {
        let pick = lb.pick(&Request::new()).unwrap();
        assert!(inside.contains(&pick.id().to_owned()), "{}", pick.id());
    }
}

#[test]
fn every_policy_picks_only_inside_its_subset() {
    for policy in POLICIES {
        let set: Vec<_> = (0..60)
            .map(|i| common::backend(&format!("s{i:02}"), 1 + i % 3, i))
            .collect();
        let lb = (policy.new)(set.clone(), 5).unwrap();
        assert_eq!(lb.status().len(), 60, "{}", policy.name);
        lb.set_subset(Subset::Aperture(Aperture::new(2, 10)))
            .unwrap();
        let inside: BTreeSet<String> = lb.status().iter().map(|s| s.id().to_owned()).collect();
        assert!(inside.len() < 60 && inside.len() >= 12, "{}", policy.name);
        let mut held = Vec::new();
        for k in 0..300u32 {
            let key = k.to_be_bytes();
            let pick = lb.pick(&Request::with_key(&key)).unwrap();
            assert!(inside.contains(pick.id()), "{}: {}", policy.name, pick.id());
            held.push(pick);
        }
        let n = lb.pick_n(&Request::new(), 5);
        let ids: BTreeSet<&str> = n.iter().map(|p| p.id()).collect();
        assert_eq!(ids.len(), n.len(), "{}: pick_n distinct", policy.name);
        assert!(ids.iter().all(|id| inside.contains(*id)), "{}", policy.name);
        drop(n);
        // An update keeps the subset rule; the picks held stay counted.
        lb.update(set[..50].to_vec()).unwrap();
        let in_flight: usize = lb.status().iter().map(|s| s.in_flight()).sum();
        let still: usize = held
            .iter()
            .filter(|p| lb.status().iter().any(|s| s.id() == p.id()))
            .count();
        assert_eq!(in_flight, still, "{}", policy.name);
        drop(held);
        assert!(
            lb.status().iter().all(|s| s.in_flight() == 0),
            "{}",
            policy.name
        );
        // Back to every backend.
        lb.set_subset(Subset::All).unwrap();
        assert_eq!(lb.status().len(), 50, "{}", policy.name);
    }
}

#[test]
fn a_subset_change_or_update_the_policy_rejects_changes_nothing() {
    // A Maglev table of 7 slots takes at most 7 backends: the subset of 3 fits, the whole set
    // of 20 does not.
    let lb = lbkit::Maglev::builder()
        .table_size(7)
        .subset(Subset::Rendezvous(RendezvousSubset::new(3).salt(1)))
        .build(servers(20))
        .unwrap();
    let before = subset_of(&lb);
    let held = lb.pick(&Request::with_hash(1)).unwrap();
    for subset in [
        Subset::All,
        Subset::Rendezvous(RendezvousSubset::new(10).salt(1)),
    ] {
        assert!(matches!(
            lb.set_subset(subset),
            Err(Error::InvalidConfig { .. })
        ));
        assert_eq!(subset_of(&lb), before, "{subset:?}");
    }
    // An update whose subset still fits is taken, whatever the whole set's size.
    lb.update(servers(30)).unwrap();
    assert_eq!(lb.status().len(), 3);
    // A subset of 8 (more than the table's 7 slots) is refused, and nothing changes.
    let now = subset_of(&lb);
    assert!(lb
        .set_subset(Subset::Rendezvous(RendezvousSubset::new(8).salt(1)))
        .is_err());
    assert_eq!(subset_of(&lb), now);
    drop(held);
    assert!(lb.status().iter().all(|s| s.in_flight() == 0));
}
