//! Priority levels, degraded backends and locality weights (issue #13), through the public
//! API: every row of Envoy's published tables (`priority.rst`, `degraded.rst`,
//! `panic_threshold.rst`, `locality_weight.rst`) as traffic shares, for every policy of the
//! registry (request-spreading policies without a key, hashing policies with distinct keys),
//! and the properties the registry promises across levels.
//!
//! Where a row of Envoy's documentation contradicts Envoy's code, the code is followed and
//! the row says so (the arithmetic itself is tested exactly in `src/engine/priority.rs`).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Oracle, Policy, POLICIES};
use lbkit::{Backend, Balancer, Health, HealthConfig, Request, Topology};
use proptest::prelude::*;

/// One priority level by counts: healthy, degraded and down backends, in that order of ids.
#[derive(Debug, Clone, Copy)]
struct Level {
    healthy: usize,
    degraded: usize,
    down: usize,
}

fn level(healthy: usize, degraded: usize, down: usize) -> Level {
    Level {
        healthy,
        degraded,
        down,
    }
}

/// `healthy` of 100 backends up, the rest down.
fn percent(healthy: usize) -> Level {
    level(healthy, 0, 100 - healthy)
}

/// The backends of `levels`: level `l`'s are `p{l}-h..`, `p{l}-d..` (degraded), `p{l}-x..`
/// (down), priority `l`.
fn backends(levels: &[Level]) -> Vec<Backend<u32>> {
    let mut out = Vec::new();
    for (l, lv) in levels.iter().enumerate() {
        let kinds = [
            ('h', lv.healthy, Health::Up),
            ('d', lv.degraded, Health::Degraded),
            ('x', lv.down, Health::Down),
        ];
        for (kind, count, health) in kinds {
            for i in 0..count {
                let id = format!("p{l}-{kind}{i:03}");
                out.push(
                    Backend::new(id, out.len() as u32)
                        .with_priority(l as u32)
                        .with_health(health),
                );
            }
        }
    }
    out
}

/// The level and kind (`h`, `d`, `x`) of an id made by [`backends`].
fn kind_of(id: &str) -> (usize, char) {
    let (level, rest) = id[1..].split_once('-').unwrap();
    (level.parse().unwrap(), rest.chars().next().unwrap())
}

/// How many picks, and the tolerance in percentage points: request-spreading policies draw
/// levels from a Weyl sequence (close to exact), hashing policies from distinct keys.
fn picks_and_tolerance(policy: &Policy) -> (usize, f64) {
    if policy.hashing {
        (20_000, 1.5)
    } else if matches!(
        policy.oracle,
        Oracle::RoundRobin | Oracle::WeightedRoundRobin | Oracle::LeastConnections | Oracle::First
    ) {
        (10_000, 0.35)
    } else {
        // The level is drawn as exactly, the backend inside it at random.
        (10_000, 1.5)
    }
}

/// Picks `n` times (distinct keys for a hashing policy), dropping each pick, and counts the
/// picks by id.
fn count(lb: &dyn Balancer<u32>, policy: &Policy, n: usize) -> BTreeMap<String, usize> {
    let mut by_id = BTreeMap::new();
    for i in 0..n {
        let key = format!("key-{i}");
        let request = if policy.hashing {
            Request::with_key(&key)
        } else {
            Request::new()
        };
        let pick = lb.pick(&request).expect("a pick");
        *by_id.entry(pick.id().to_owned()).or_default() += 1;
    }
    by_id
}

/// The percentage of picks per (level, kind).
fn shares(by_id: &BTreeMap<String, usize>) -> BTreeMap<(usize, char), f64> {
    let total: usize = by_id.values().sum();
    let mut out = BTreeMap::new();
    for (id, n) in by_id {
        *out.entry(kind_of(id)).or_default() += 100.0 * *n as f64 / total as f64;
    }
    out
}

/// Builds `levels` with `config` for every policy and checks each (level, kind)'s share
/// against `expected` (absent: 0).
#[track_caller]
fn check_shares(
    row: &str,
    levels: &[Level],
    config: &HealthConfig,
    expected: &[((usize, char), f64)],
) {
    for policy in POLICIES {
        let lb = (policy.new)(backends(levels), 7).unwrap();
        lb.set_health_config(config.clone()).unwrap();
        let (n, tolerance) = picks_and_tolerance(policy);
        let mut got = shares(&count(&*lb, policy, n));
        let mut expected = expected.to_vec();
        if policy.name == "First" || policy.name.starts_with("Prequal") {
            // First sends a group's traffic to its first backend in list order, Prequal to
            // the candidate with the lowest latency estimate (on the system clock that
            // `set_health_config` installs, each dropped pick teaches it the microseconds it
            // was held, so it favours the backends it happened to measure): only the
            // shares of the levels and kinds are their business, not the split inside a
            // level in panic between its healthy and down backends.
            let merge = |(l, k): (usize, char)| (l, if k == 'x' { 'h' } else { k });
            got = got.into_iter().fold(BTreeMap::new(), |mut m, (k, v)| {
                *m.entry(merge(k)).or_default() += v;
                m
            });
            expected = expected.iter().fold(Vec::new(), |mut v, &(k, s)| {
                match v
                    .iter_mut()
                    .find(|e: &&mut ((usize, char), f64)| e.0 == merge(k))
                {
                    Some(e) => e.1 += s,
                    None => v.push((merge(k), s)),
                }
                v
            });
        }
        let keys: BTreeSet<(usize, char)> = got
            .keys()
            .copied()
            .chain(expected.iter().map(|e| e.0))
            .collect();
        for key in keys {
            let want = expected.iter().find(|e| e.0 == key).map_or(0.0, |e| e.1);
            let have = got.get(&key).copied().unwrap_or(0.0);
            // A share of 0 is exact: a backend of a level or kind with no load is never picked.
            let tolerance = if want == 0.0 { 0.0 } else { tolerance };
            assert!(
                (have - want).abs() <= tolerance,
                "{}: {row}: {key:?} got {have:.2}%, want {want}% (all: {got:?})",
                policy.name
            );
        }
    }
}

fn default_config() -> HealthConfig {
    HealthConfig::new()
}

fn panic_config() -> HealthConfig {
    HealthConfig::new().panic_threshold(0.5)
}

// ---- Envoy `priority.rst`.

/// P1 100% healthy; P0 at 100/72/71/50/25/0% healthy sends 100/100/99/70/35/0% to P0.
#[test]
fn priority_table_p1_healthy() {
    for (p0, to_p0) in [
        (100, 100.0),
        (72, 100.0),
        (71, 99.0),
        (50, 70.0),
        (25, 35.0),
        (0, 0.0),
    ] {
        let levels = [percent(p0), percent(100)];
        for config in [default_config(), panic_config()] {
            check_shares(
                &format!("P0 {p0}%"),
                &levels,
                &config,
                &[((0, 'h'), to_p0), ((1, 'h'), 100.0 - to_p0)],
            );
        }
    }
}

/// Both levels failing.
#[test]
fn priority_table_two_levels() {
    let rows = [
        ((100, 100), (100.0, 0.0)),
        ((72, 72), (100.0, 0.0)),
        ((71, 71), (99.0, 1.0)),
        ((50, 50), (70.0, 30.0)),
        ((25, 100), (35.0, 65.0)),
        ((25, 25), (50.0, 50.0)),
    ];
    for ((p0, p1), (to_p0, to_p1)) in rows {
        check_shares(
            &format!("P0 {p0}% P1 {p1}%"),
            &[percent(p0), percent(p1)],
            &default_config(),
            &[((0, 'h'), to_p0), ((1, 'h'), to_p1)],
        );
    }
}

/// Three levels. The doc row 25/25/20% -> 36/36/28% rounds each share to nearest; Envoy's
/// code gives the 2 points of rounding to P0: 37/35/28.
#[test]
fn priority_table_three_levels() {
    let rows = [
        ((100, 100, 100), [100.0, 0.0, 0.0]),
        ((72, 72, 100), [100.0, 0.0, 0.0]),
        ((71, 71, 100), [99.0, 1.0, 0.0]),
        ((50, 50, 100), [70.0, 30.0, 0.0]),
        ((25, 100, 100), [35.0, 65.0, 0.0]),
        ((25, 25, 100), [35.0, 35.0, 30.0]),
        ((25, 25, 20), [37.0, 35.0, 28.0]),
    ];
    for ((p0, p1, p2), to) in rows {
        check_shares(
            &format!("{p0}/{p1}/{p2}%"),
            &[percent(p0), percent(p1), percent(p2)],
            &default_config(),
            &[((0, 'h'), to[0]), ((1, 'h'), to[1]), ((2, 'h'), to[2])],
        );
    }
}

// ---- Envoy `degraded.rst`: one level, healthy / degraded / unhealthy.

#[test]
fn degraded_table() {
    let rows = [
        ((100, 0, 0), (100.0, 0.0)),
        ((71, 0, 29), (100.0, 0.0)),
        ((71, 29, 0), (99.0, 1.0)),
        ((25, 65, 10), (35.0, 65.0)),
    ];
    for ((h, d, x), (to_h, to_d)) in rows {
        check_shares(
            &format!("{h}/{d}/{x}"),
            &[level(h, d, x)],
            &default_config(),
            &[((0, 'h'), to_h), ((0, 'd'), to_d)],
        );
    }
}

/// A degraded backend serves only once healthy capacity everywhere falls short: a healthy
/// backup level comes before the primary level's degraded backends.
#[test]
fn degraded_backends_wait_for_lower_levels() {
    check_shares(
        "P0 50 healthy 50 degraded, P1 healthy",
        &[level(50, 50, 0), percent(100)],
        &default_config(),
        &[((0, 'h'), 70.0), ((1, 'h'), 30.0)],
    );
    check_shares(
        "P0 50 healthy 50 degraded, P1 down",
        &[level(50, 50, 0), percent(0)],
        &default_config(),
        &[((0, 'h'), 70.0), ((0, 'd'), 30.0)],
    );
}

// ---- Envoy `panic_threshold.rst`, at 50%.

/// P1 healthy: the normalized total is 100 and nothing panics; down backends get nothing.
#[test]
fn panic_table_p1_healthy() {
    for (p0, to_p0) in [(72, 100.0), (71, 99.0), (50, 70.0), (25, 35.0), (0, 0.0)] {
        check_shares(
            &format!("P0 {p0}%"),
            &[percent(p0), percent(100)],
            &panic_config(),
            &[((0, 'h'), to_p0), ((1, 'h'), 100.0 - to_p0)],
        );
    }
}

/// Both failing. A level in panic serves from all its backends that could serve, down ones
/// included, in proportion to their number (every backend here has weight 1).
/// `(P0, P1) -> shares of (P0 healthy, P0 down, P1 healthy, P1 down)`. Doc rows 50/60 and
/// 25/100 (50/50, 25/75) contradict the code (70/30, 35/65); doc row 5/65 (7/93) too (8/92).
#[test]
fn panic_table_two_levels() {
    let rows = [
        ((72, 72), [100.0, 0.0, 0.0, 0.0]),
        ((71, 71), [99.0, 0.0, 1.0, 0.0]),
        ((50, 60), [70.0, 0.0, 30.0, 0.0]),
        ((25, 100), [35.0, 0.0, 65.0, 0.0]),
        // Both in panic, in total panic: 50/50 by host count, each over all 100 backends.
        ((25, 25), [12.5, 37.5, 12.5, 37.5]),
        // P0 in panic takes 8 over all its backends; P1 not in panic takes 92 on its healthy.
        ((5, 65), [0.4, 7.6, 92.0, 0.0]),
    ];
    for ((p0, p1), s) in rows {
        check_shares(
            &format!("P0 {p0}% P1 {p1}%"),
            &[percent(p0), percent(p1)],
            &panic_config(),
            &[
                ((0, 'h'), s[0]),
                ((0, 'x'), s[1]),
                ((1, 'h'), s[2]),
                ((1, 'x'), s[3]),
            ],
        );
    }
}

/// Draining backends never serve, even in panic; down ones do. P0: 1 healthy of 10 (and one
/// draining, excluded), health 14, in panic; P1 half healthy, health 70, not in panic.
#[test]
fn panic_never_serves_draining() {
    for policy in POLICIES {
        let mut set = backends(&[level(1, 0, 9), percent(50)]);
        set.push(
            Backend::new("p0-z", 999)
                .with_priority(0)
                .with_health(Health::Draining),
        );
        let lb = (policy.new)(set, 7).unwrap();
        lb.set_health_config(panic_config()).unwrap();
        let (n, tolerance) = picks_and_tolerance(policy);
        let got = count(&*lb, policy, n);
        assert!(!got.contains_key("p0-z"), "{}: {got:?}", policy.name);
        let s = shares(&got);
        let p0 = s.get(&(0, 'h')).unwrap_or(&0.0) + s.get(&(0, 'x')).unwrap_or(&0.0);
        // 14 x 100 / 84 = 16 and 70 x 100 / 84 = 83; the rounding point to P0: 17.
        assert!((p0 - 17.0).abs() <= tolerance, "{}: P0 {p0}", policy.name);
        assert_eq!(
            s.get(&(1, 'x')),
            None,
            "{}: P1 is not in panic",
            policy.name
        );
        if policy.oracle != Oracle::First {
            assert!(
                s.get(&(0, 'x')).is_some_and(|&x| x > 0.0),
                "{}",
                policy.name
            );
        }
    }
}

// ---- Envoy `locality_weight.rst`: X weight 1, Y weight 2, Y fully available.

#[test]
fn locality_weight_table() {
    for (x_available, to_x) in [
        (100, 33.33),
        (70, 32.89),
        (69, 32.43),
        (50, 25.93),
        (25, 14.89),
        (0, 0.0),
    ] {
        for policy in POLICIES {
            let mut set = Vec::new();
            for i in 0..100 {
                let health = if i < x_available {
                    Health::Up
                } else {
                    Health::Down
                };
                set.push(
                    Backend::new(format!("x{i:03}"), i)
                        .with_locality("X")
                        .with_health(health),
                );
                set.push(Backend::new(format!("y{i:03}"), 100 + i).with_locality("Y"));
            }
            let lb = (policy.new)(set, 7).unwrap();
            lb.set_topology(Topology::locality_weights([("X", 1), ("Y", 2)]))
                .unwrap();
            let (n, tolerance) = picks_and_tolerance(policy);
            let got = count(&*lb, policy, n);
            let x: usize = got
                .iter()
                .filter(|(id, _)| id.starts_with('x'))
                .map(|(_, n)| n)
                .sum();
            let share = 100.0 * x as f64 / n as f64;
            let tolerance = if to_x == 0.0 { 0.0 } else { tolerance };
            assert!(
                (share - to_x).abs() <= tolerance + 0.05,
                "{}: X at {x_available}%: {share:.2}%, want {to_x}%",
                policy.name
            );
            // Never a down backend: X is not in panic (no threshold).
            let down = got
                .keys()
                .any(|id| id.starts_with('x') && id[1..].parse::<u32>().unwrap() >= x_available);
            assert!(!down, "{}: a down backend picked", policy.name);
        }
    }
}

/// Draining and weight-0 backends are excluded, so they are out of their locality's host
/// count as well (Envoy's `effectiveLocalityWeight`: all hosts less excluded ones): X with 2
/// up and 2 draining is fully available, and shares evenly with Y (2 up). Counting the
/// draining ones gave X 140 x 2 / 4 = 70 against Y's 100 (41%).
#[test]
fn excluded_backends_leave_their_locality_weight_alone() {
    for weight_zero in [false, true] {
        for policy in POLICIES {
            let mut set = Vec::new();
            for i in 0..4u32 {
                let mut x = Backend::new(format!("x{i}"), i).with_locality("X");
                if i >= 2 {
                    x = if weight_zero {
                        x.with_weight(0)
                    } else {
                        x.with_health(Health::Draining)
                    };
                }
                set.push(x);
            }
            set.push(Backend::new("y0", 10).with_locality("Y"));
            set.push(Backend::new("y1", 11).with_locality("Y"));
            let lb = (policy.new)(set, 7).unwrap();
            lb.set_topology(Topology::locality_weights([("X", 1), ("Y", 1)]))
                .unwrap();
            let (n, tolerance) = picks_and_tolerance(policy);
            let got = count(&*lb, policy, n);
            let x: usize = got
                .iter()
                .filter(|(id, _)| id.starts_with('x'))
                .map(|(_, n)| n)
                .sum();
            let share = 100.0 * x as f64 / n as f64;
            assert!(
                (share - 50.0).abs() <= tolerance + 0.05,
                "{} (weight 0: {weight_zero}): X got {share:.2}%, want 50%",
                policy.name
            );
            assert!(
                !got.contains_key("x2") && !got.contains_key("x3"),
                "{}: an excluded backend picked",
                policy.name
            );
        }
    }
}

// ---- Properties over the registry.

/// One backend of a generated set: its level, health and weight.
#[derive(Debug, Clone)]
struct Node {
    level: u32,
    health: Health,
    weight: u32,
}

fn node() -> impl Strategy<Value = Node> {
    (
        0u32..3,
        prop_oneof![
            4 => Just(Health::Up),
            2 => Just(Health::Down),
            2 => Just(Health::Degraded),
            1 => Just(Health::Draining)
        ],
        prop_oneof![4 => 1u32..4, 1 => Just(0u32)],
    )
        .prop_map(|(level, health, weight)| Node {
            level: level * 5, // gaps between priorities do not matter
            health,
            weight,
        })
}

/// The (level, class) shares of the docs' pseudo-code (`crate::docs::tiers`), computed here
/// from scratch: for each level present, highest first, its healthy and degraded loads and
/// whether it is in panic.
fn model(nodes: &[Node], factor: u64, threshold_ppm: u64) -> Vec<(u32, u64, u64, bool)> {
    let mut levels: Vec<u32> = nodes.iter().map(|n| n.level).collect();
    levels.sort_unstable();
    levels.dedup();
    let counts: Vec<(u64, u64, u64, u64)> = levels
        .iter()
        .map(|&l| {
            let of = nodes.iter().filter(|n| n.level == l);
            let (mut total, mut healthy, mut degraded, mut excluded) = (0, 0, 0, 0);
            for n in of {
                total += 1;
                match n.health {
                    _ if n.weight == 0 => excluded += 1,
                    Health::Draining => excluded += 1,
                    Health::Up => healthy += 1,
                    Health::Degraded => degraded += 1,
                    _ => {}
                }
            }
            (total, healthy, degraded, excluded)
        })
        .collect();
    let share =
        |part: u64, whole: u64| (factor * part).checked_div(whole).map_or(0, |s| s.min(100));
    let health: Vec<u64> = counts.iter().map(|c| share(c.1, c.0 - c.3)).collect();
    let dhealth: Vec<u64> = counts.iter().map(|c| share(c.2, c.0 - c.3)).collect();
    let normalized = (health.iter().sum::<u64>() + dhealth.iter().sum::<u64>()).min(100);
    let n = levels.len();
    let (mut hl, mut dl) = (vec![0u64; n], vec![0u64; n]);
    #[allow(clippy::manual_checked_ops)] // two loops over one remainder read better so
    if normalized > 0 {
        let mut remaining = 100;
        for i in 0..n {
            hl[i] = remaining.min(health[i] * 100 / normalized);
            remaining -= hl[i];
        }
        for i in 0..n {
            dl[i] = remaining.min(dhealth[i] * 100 / normalized);
            remaining -= dl[i];
        }
        if let Some(i) = health.iter().position(|&h| h > 0) {
            hl[i] += remaining;
        } else if let Some(i) = dhealth.iter().position(|&h| h > 0) {
            dl[i] += remaining;
        }
    }
    let panic: Vec<bool> = counts
        .iter()
        .map(|c| {
            let eligible = c.0 - c.3;
            normalized < 100
                && if eligible == 0 {
                    threshold_ppm > 0
                } else {
                    (c.1 + c.2) * 1_000_000 < threshold_ppm * eligible
                }
        })
        .collect();
    if !panic.is_empty() && panic.iter().all(|&p| p) {
        let hosts: u64 = counts.iter().map(|c| c.0).sum();
        dl = vec![0; n];
        let mut remaining = 100;
        for i in 0..n {
            hl[i] = 100 * counts[i].0 / hosts;
            remaining -= hl[i];
        }
        hl[0] += remaining;
    } else if normalized == 0 {
        hl[0] = 100;
    }
    (0..n)
        .map(|i| (levels[i], hl[i], dl[i], panic[i]))
        .collect()
}

/// Whether a backend may be picked under the model's loads: its level's class has load.
fn allowed(node: &Node, loads: &[(u32, u64, u64, bool)]) -> bool {
    let &(_, healthy, degraded, panic) = loads.iter().find(|l| l.0 == node.level).unwrap();
    let could = node.weight > 0 && node.health != Health::Draining;
    if panic {
        return could && healthy + degraded > 0;
    }
    could
        && match node.health {
            Health::Up => healthy > 0,
            Health::Degraded => degraded > 0,
            _ => false,
        }
}

fn set_of(nodes: &[Node]) -> Vec<Backend<u32>> {
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            Backend::new(format!("n{i:02}"), i as u32)
                .with_priority(n.level)
                .with_weight(n.weight)
                .with_health(n.health)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A backend whose level (or class) has no load is never picked, by `pick` or `pick_n`,
    /// and a pick fails only when no backend may be picked.
    #[test]
    fn no_pick_outside_the_levels_with_load(
        nodes in proptest::collection::vec(node(), 1..12),
        factor in prop_oneof![Just(1.0f64), Just(1.4), Just(2.5)],
        threshold in prop_oneof![Just(None), Just(Some(0.5)), Just(Some(0.3))],
    ) {
        let loads = model(
            &nodes,
            (factor * 100.0).round() as u64,
            threshold.map_or(0, |t: f64| (t * 1e6).round() as u64),
        );
        for policy in POLICIES {
            let lb = (policy.new)(set_of(&nodes), 3).unwrap();
            let mut config = HealthConfig::new().overprovisioning_factor(factor);
            if let Some(t) = threshold {
                config = config.panic_threshold(t);
            }
            lb.set_health_config(config).unwrap();
            let any = nodes.iter().any(|n| allowed(n, &loads));
            for i in 0..40 {
                let key = format!("k{i}");
                let request = if i % 2 == 0 { Request::with_key(&key) } else { Request::new() };
                match lb.pick(&request) {
                    Some(pick) => {
                        let node = &nodes[pick.id()[1..].parse::<usize>().unwrap()];
                        prop_assert!(allowed(node, &loads), "{}: {} picked, {node:?}, loads {loads:?}", policy.name, pick.id());
                    }
                    None => prop_assert!(!any, "{}: no pick, loads {loads:?}", policy.name),
                }
                let picks = lb.pick_n(&request, 4);
                let ids: BTreeSet<&str> = picks.iter().map(|p| p.id()).collect();
                prop_assert_eq!(ids.len(), picks.len(), "{}: pick_n repeats", policy.name);
                for pick in &picks {
                    let node = &nodes[pick.id()[1..].parse::<usize>().unwrap()];
                    prop_assert!(allowed(node, &loads), "{}: pick_n {} {node:?}", policy.name, pick.id());
                }
            }
        }
    }

    /// Hashing policies: changing the health of one backend moves no key between backends of
    /// the other levels: a key that stays in its level and class keeps its backend, and the
    /// keys that change level or class are about the share of points the loads moved.
    #[test]
    fn a_health_change_moves_keys_only_with_the_split(
        nodes in proptest::collection::vec(node(), 2..12),
        changed in 0usize..12,
        to in prop_oneof![Just(Health::Up), Just(Health::Down), Just(Health::Degraded)],
    ) {
        let changed = changed % nodes.len();
        let mut after_nodes = nodes.clone();
        after_nodes[changed].health = to;
        let before_loads = model(&nodes, 140, 0);
        let after_loads = model(&after_nodes, 140, 0);
        // The points of 100 whose class changes: a key's point lands in the cumulative loads
        // (every level's healthy load in order, then every level's degraded load), so a point
        // changes class exactly when a boundary between classes moved across it: the measure
        // of the union of the spans each boundary moved over. (The total variation between
        // the two splits is less when boundaries shift together: 70/17/13 to 87/13/0 moves
        // 17 points of load but changes the class of 30 points.)
        let bounds = |loads: &[(u32, u64, u64, bool)]| -> Vec<u64> {
            let order = loads.iter().map(|l| l.1).chain(loads.iter().map(|l| l.2));
            order
                .scan(0u64, |sum, load| {
                    *sum += load;
                    Some(*sum)
                })
                .collect()
        };
        let mut spans: Vec<(u64, u64)> = bounds(&before_loads)
            .into_iter()
            .zip(bounds(&after_loads))
            .map(|(b, a)| (b.min(a), b.max(a)))
            .collect();
        spans.sort_unstable();
        let mut moved = 0u64;
        let mut covered = 0u64;
        for (from, to) in spans {
            let from = from.max(covered);
            if to > from {
                moved += to - from;
                covered = to;
            }
        }
        let class = |n: &Node| (n.level, n.health == Health::Degraded);
        for policy in POLICIES.iter().filter(|p| p.hashing) {
            let lb = (policy.new)(set_of(&nodes), 3).unwrap();
            let keys: Vec<String> = (0..600).map(|i| format!("key{i}")).collect();
            let place = |lb: &dyn Balancer<u32>| -> Vec<Option<usize>> {
                keys.iter()
                    .map(|k| lb.pick(&Request::with_key(k)).map(|p| p.id()[1..].parse().unwrap()))
                    .collect()
            };
            let before = place(&*lb);
            lb.set_health(&format!("n{changed:02}"), to).unwrap();
            let after = place(&*lb);
            let mut switched = 0;
            for (b, a) in before.iter().zip(&after) {
                let (Some(b), Some(a)) = (*b, *a) else { continue };
                if b == changed || a == changed {
                    continue;
                }
                if class(&nodes[b]) == class(&after_nodes[a]) && nodes[b].level != nodes[changed].level {
                    prop_assert_eq!(b, a, "{}: a key moved inside an unchanged level", policy.name);
                }
                if class(&nodes[b]) != class(&after_nodes[a]) {
                    switched += 1;
                }
            }
            let share = 100.0 * switched as f64 / keys.len() as f64;
            prop_assert!(
                share <= moved as f64 + 8.0,
                "{}: {share:.1}% of keys changed level or class, the split moved {moved} points",
                policy.name
            );
        }
    }
}

// ---- Zone-aware routing (Envoy `zone_aware.rst`), through the public API.

/// `per_zone[z]` healthy backends in zone `z{z}` (ids `z{z}-NN`).
fn zoned(per_zone: &[usize]) -> Vec<Backend<u32>> {
    let mut out = Vec::new();
    for (z, &n) in per_zone.iter().enumerate() {
        for i in 0..n {
            out.push(
                Backend::new(format!("z{z}-{i:02}"), out.len() as u32)
                    .with_locality(format!("z{z}")),
            );
        }
    }
    out
}

/// The share of picks per zone, in percent.
fn zone_shares(lb: &dyn Balancer<u32>, policy: &Policy, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; 4];
    for (id, count) in count(lb, policy, n) {
        let z: usize = id[1..2].parse().unwrap();
        out[z] += 100.0 * count as f64 / n as f64;
    }
    out
}

/// Checks the zone shares `got` against `want` (in percent): within `tolerance` points, and
/// exactly 0 where 0 is wanted. `what` names the case.
#[track_caller]
fn check_zones(got: &[f64], want: &[f64; 3], tolerance: f64, what: &str) {
    for z in 0..3 {
        let tolerance = if want[z] == 0.0 { 0.0 } else { tolerance };
        assert!(
            (got[z] - want[z]).abs() <= tolerance + 0.01,
            "{what}: {got:?}, want {want:?}"
        );
    }
}

#[test]
fn zone_aware_routing() {
    // (backends per zone, the caller's fleet share per zone, the caller's zone) -> shares.
    type Row<'a> = (&'a [usize], &'a [f64], usize, [f64; 3]);
    let rows: [Row<'_>; 5] = [
        // Backends spread like callers: all local.
        (
            &[10, 10, 10],
            &[1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0],
            0,
            [100.0, 0.0, 0.0],
        ),
        // The caller's zone has half the backends' share it has of callers: half stays
        // local; the rest goes to the zones with spare capacity in proportion to it.
        // Upstream 20/40/40%, local 40/30/30%: local share 20/40 = 50%; residuals 0, 10, 10.
        (&[5, 10, 10], &[0.4, 0.3, 0.3], 0, [50.0, 25.0, 25.0]),
        // From a zone with more backends than callers: all local.
        (&[5, 10, 10], &[0.4, 0.3, 0.3], 1, [0.0, 100.0, 0.0]),
        // Fewer than min_cluster_size (6) healthy backends: no zone routing, an even spread.
        (&[1, 2, 2], &[0.4, 0.3, 0.3], 0, [20.0, 40.0, 40.0]),
        // Callers in one zone only: no zone routing.
        (
            &[10, 10, 10],
            &[1.0, 0.0, 0.0],
            0,
            [100.0 / 3.0, 100.0 / 3.0, 100.0 / 3.0],
        ),
    ];
    for (per_zone, fleet, local, want) in rows {
        let routes = want.contains(&0.0);
        for policy in POLICIES {
            if policy.oracle == Oracle::First && !routes {
                // First sends a group's traffic to its first backend: without a split by
                // zone, that is one backend, not an even spread.
                continue;
            }
            let lb = (policy.new)(zoned(per_zone), 7).unwrap();
            let fleet = fleet.iter().enumerate().map(|(z, &s)| (format!("z{z}"), s));
            lb.set_topology(Topology::zone_aware(format!("z{local}"), fleet))
                .unwrap();
            let (n, mut tolerance) = picks_and_tolerance(policy);
            if policy.hashing && !routes {
                // Without a split by zone, a zone's share is its backends' shares of one
                // table, which for five backends varies by a few percent.
                tolerance = 5.0;
            }
            let got = zone_shares(&*lb, policy, n);
            check_zones(
                &got,
                &want,
                tolerance,
                &format!("{}: {per_zone:?} from z{local}", policy.name),
            );
        }
    }
}

/// The bad inputs of the topology and the factor: typed errors, and nothing changes.
#[test]
fn bad_topologies_and_factors_are_typed_errors() {
    use lbkit::Error;
    let param = |e: Error| match e {
        Error::InvalidConfig { parameter, .. } => parameter,
        other => panic!("{other:?}"),
    };
    for policy in POLICIES {
        let lb = (policy.new)(zoned(&[3, 3]), 7).unwrap();
        let before = common::summary(&*lb);
        for factor in [0.99, 0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = lb
                .set_health_config(HealthConfig::new().overprovisioning_factor(factor))
                .unwrap_err();
            assert_eq!(
                param(e),
                "overprovisioning_factor",
                "{}: {factor}",
                policy.name
            );
        }
        let bad = [
            (Topology::locality_weights([("", 1)]), "locality"),
            (
                Topology::locality_weights([("z0", 1), ("z0", 2)]),
                "locality",
            ),
            (Topology::zone_aware("", [("z0", 1.0)]), "locality"),
            (
                Topology::zone_aware("z0", [("z0", 0.5), ("", 0.5)]),
                "locality",
            ),
            (
                Topology::zone_aware("z0", [("z0", 0.5), ("z1", 0.4)]),
                "zone_shares",
            ),
            (
                Topology::zone_aware("z0", [("z0", 0.7), ("z1", 0.4)]),
                "zone_shares",
            ),
            (
                Topology::zone_aware("z0", [("z0", 1.5), ("z1", -0.5)]),
                "zone_shares",
            ),
            (
                Topology::zone_aware("z0", [("z0", f64::NAN)]),
                "zone_shares",
            ),
            (Topology::load_aware("", 8.0), "locality"),
            (Topology::load_aware("z0", 0.0), "capacity"),
            (Topology::load_aware("z0", -1.0), "capacity"),
            (Topology::load_aware("z0", f64::NAN), "capacity"),
            (Topology::load_aware("z0", f64::INFINITY), "capacity"),
            (
                Topology::load_aware("z0", 8.0).variance_threshold(1.01),
                "variance_threshold",
            ),
            (
                Topology::load_aware("z0", 8.0).variance_threshold(-0.1),
                "variance_threshold",
            ),
            (
                Topology::load_aware("z0", 8.0).variance_threshold(f64::NAN),
                "variance_threshold",
            ),
            (
                Topology::load_aware("z0", 8.0).remote_probe(1.0),
                "remote_probe",
            ),
            (
                Topology::load_aware("z0", 8.0).remote_probe(-0.01),
                "remote_probe",
            ),
            (
                Topology::load_aware("z0", 8.0).remote_probe(f64::NAN),
                "remote_probe",
            ),
            (
                Topology::load_aware("z0", 8.0).update_period(std::time::Duration::from_millis(99)),
                "update_period",
            ),
            (
                Topology::load_aware("z0", 8.0).smoothing(std::time::Duration::ZERO),
                "smoothing",
            ),
        ];
        for (topology, parameter) in bad {
            let e = lb.set_topology(topology.clone()).unwrap_err();
            assert_eq!(param(e), parameter, "{}: {topology:?}", policy.name);
            let built = (policy.new)(zoned(&[3, 3]), 7);
            assert!(built.is_ok());
        }
        // An empty locality name on a backend: the update is refused.
        let mut set = zoned(&[3, 3]);
        set.push(Backend::new("x", 99).with_locality(""));
        assert_eq!(
            param(lb.update(set).unwrap_err()),
            "locality",
            "{}",
            policy.name
        );
        assert_eq!(
            common::summary(&*lb),
            before,
            "{}: state changed",
            policy.name
        );
    }
    // At build: the builder's topology and health are checked too.
    let e = lbkit::RoundRobin::builder()
        .topology(Topology::zone_aware("z0", [("z0", 0.2)]))
        .build(zoned(&[3, 3]))
        .unwrap_err();
    assert_eq!(param(e), "zone_shares");
    let e = lbkit::RoundRobin::builder()
        .health(HealthConfig::new().overprovisioning_factor(0.5))
        .build(zoned(&[3, 3]))
        .unwrap_err();
    assert_eq!(param(e), "overprovisioning_factor");
}

/// Status names each backend's level and locality, and its effective weight says whether
/// its level and class have a share now.
#[test]
fn status_shows_levels_localities_and_shares() {
    // P0: 2 healthy, 1 degraded (health 93, degraded health 46); P1: 2 healthy. P1's healthy
    // backends take the 7 points P0's healthy ones lack, before P0's degraded one.
    let mut set = backends(&[level(2, 1, 0), level(2, 0, 0)]);
    set[0] = set[0].clone().with_locality("zone-a");
    let lb = lbkit::RoundRobin::new(set).unwrap();
    let status = lb.status();
    let line = |id: &str| status.iter().find(|s| s.id() == id).unwrap();
    assert_eq!(line("p0-h000").locality(), Some("zone-a"));
    assert_eq!(line("p0-h001").locality(), None);
    assert_eq!(line("p1-h000").priority(), 1);
    assert_eq!(line("p0-d000").health(), Health::Degraded);
    assert_eq!(line("p0-d000").effective_weight(), 0.0);
    assert!(line("p1-h000").effective_weight() > 0.0);
    let got = count(&lb, &common::policy("RoundRobin"), 1000);
    assert_eq!(got.get("p0-d000"), None);
    assert_eq!(got["p1-h000"] + got["p1-h001"], 70);
    // A removed backend's line keeps its level while its picks are held.
    let held = lb.pick_n(&Request::new(), 5);
    // pick_n goes on across levels with a share (P0's healthy, P1's), never to the degraded.
    let mut ids: Vec<&str> = held.iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["p0-h000", "p0-h001", "p1-h000", "p1-h001"]);
    let dr = "p1-h000";
    let keep: Vec<_> = lb
        .backends()
        .into_iter()
        .filter(|m| m.id() != dr)
        .map(|m| {
            let b = Backend::new(m.id(), *m.value());
            b.with_priority(u32::from(m.id().starts_with("p1")))
        })
        .collect();
    lb.update(keep).unwrap();
    let status = lb.status();
    let gone = status.iter().find(|s| s.id() == dr).unwrap();
    assert!(gone.is_removed());
    assert_eq!(gone.priority(), 1);
}

/// An empty set, and a set emptied by an update, under every kind of topology: no pick, no
/// panic (a regression: the group table was built for a set with no level).
#[test]
fn empty_sets_under_a_topology() {
    for topology in [
        Topology::locality_weights([("a", 1)]),
        Topology::zone_aware("a", [("a", 1.0)]),
    ] {
        for policy in POLICIES {
            let lb = (policy.new)(Vec::new(), 1).unwrap();
            lb.set_topology(topology.clone()).unwrap();
            assert!(lb.pick(&Request::new()).is_none(), "{}", policy.name);
            assert!(lb.pick_n(&Request::with_key("k"), 3).is_empty());
            lb.update(backends(&[level(2, 0, 0)])).unwrap();
            assert!(lb.pick(&Request::new()).is_some(), "{}", policy.name);
            lb.update(Vec::new()).unwrap();
            assert_eq!(
                lb.try_pick(&Request::new()).unwrap_err(),
                lbkit::NoPick::Empty
            );
        }
    }
}

/// `Status::table_share` counts entries in the tables picks use: each group's own, so a
/// level's backends share its whole table and a level without load owns nothing.
#[test]
fn table_shares_are_the_groups() {
    let lb = lbkit::Maglev::builder()
        .table_size(1031)
        .build(backends(&[level(3, 0, 0), level(2, 0, 0)]))
        .unwrap();
    let status = lb.status();
    let share = |prefix: &str| -> u64 {
        status
            .iter()
            .filter(|s| s.id().starts_with(prefix))
            .map(|s| s.table_share().unwrap())
            .sum()
    };
    assert_eq!(share("p0"), 1031);
    assert_eq!(share("p1"), 0);
    // With one level fully down, P1 takes everything from its own table, unchanged.
    for id in ["p0-h000", "p0-h001", "p0-h002"] {
        lb.set_health(id, Health::Down).unwrap();
    }
    let got = count(&lb, &common::policy("Maglev"), 300);
    assert!(got.keys().all(|id| id.starts_with("p1")), "{got:?}");
    assert_eq!(
        lb.status()
            .iter()
            .filter(|s| s.id().starts_with("p1"))
            .map(|s| s.table_share().unwrap())
            .sum::<u64>(),
        1031
    );
}

// ---- Load-aware locality routing (Envoy `load_aware_locality.rst`), with utilisation
// measured from the picks held.

/// `policy` over [`zoned`] backends, on a `ManualClock` (returned), with `topology`.
fn on_clock(
    policy: &Policy,
    per_zone: &[usize],
    topology: Topology,
) -> (lbkit::ManualClock, Box<dyn Balancer<u32>>) {
    let clock = lbkit::ManualClock::new();
    let lb = (policy.new)(zoned(per_zone), 7).unwrap();
    lb.set_health_config(HealthConfig::new().clock(clock.clone()))
        .unwrap();
    lb.set_topology(topology).unwrap();
    (clock, lb)
}

/// Holds `held[z]` picks on every backend of zone `z` (ids from [`zoned`]), preferring each.
fn hold(lb: &dyn Balancer<u32>, per_zone: &[usize], held: &[usize]) -> Vec<lbkit::Pick<u32>> {
    let mut picks = Vec::new();
    for (z, (&n, &h)) in per_zone.iter().zip(held).enumerate() {
        for i in 0..n {
            let id = format!("z{z}-{i:02}");
            for _ in 0..h {
                let pick = lb.pick(&Request::new().prefer(&id)).expect("a pick");
                assert_eq!(pick.id(), id);
                picks.push(pick);
            }
        }
    }
    picks
}

/// For every policy: three zones of ten backends, the caller in z0, load-aware with
/// `capacity` and the clock `clock`; `steps` are the picks held per backend of each zone at
/// each sample (one per second), and `want` the zone shares after the last.
#[track_caller]
fn check_load_aware(capacity: f64, steps: &[[usize; 3]], want: [f64; 3]) {
    let per_zone = [10, 10, 10];
    for policy in POLICIES {
        let (clock, lb) = on_clock(policy, &per_zone, Topology::load_aware("z0", capacity));
        for held in steps {
            let picks = hold(&*lb, &per_zone, held);
            clock.advance(std::time::Duration::from_secs(1));
            // The first pick after the period samples the picks held now.
            drop(lb.pick(&Request::new().prefer("z0-00")));
            drop(picks);
        }
        let picks = hold(&*lb, &per_zone, &steps.last().copied().unwrap_or([0; 3]));
        let (n, tolerance) = picks_and_tolerance(policy);
        let got = zone_shares(&*lb, policy, n);
        drop(picks);
        check_zones(
            &got,
            &want,
            tolerance,
            &format!("{}: {steps:?}", policy.name),
        );
    }
}

/// Envoy's worked example: A (local) at 0.7, B at 0.3, C at 0.4, ten hosts each. The remote
/// average is 0.35; 0.7 > 0.45, so the zones share by headroom 3 : 7 : 6, "A ~19%, B ~44%,
/// C ~37%" (exactly 18.75, 43.75, 37.5).
#[test]
fn load_aware_worked_example() {
    check_load_aware(10.0, &[[7, 3, 4]], [18.75, 43.75, 37.5]);
}

/// "If load rebalances and all localities converge to ~0.45, local is within threshold and
/// the policy snaps to 100% local (minus the 3% remote probe)", the probe split by host
/// count. Before any sample, every zone counts as idle: the same.
#[test]
fn load_aware_stays_local_while_even() {
    check_load_aware(20.0, &[[9, 9, 9]], [97.0, 1.5, 1.5]);
    check_load_aware(20.0, &[], [97.0, 1.5, 1.5]);
    // The local zone less loaded than the others, by any gap: local (one-sided).
    check_load_aware(20.0, &[[0, 20, 20]], [97.0, 1.5, 1.5]);
}

/// Smoothing: the first sample counts as it is, later ones with weight 1 - exp(-1/5) =
/// 0.1813. z0 jumps from 0.45 to full while the others stay at 0.45: the next sample
/// smooths it to 0.5497, still within 0.1 of them (local); the one after to 0.6313, above
/// (headroom 3.687 : 5.5 : 5.5). So traffic spills well before z0 is saturated, and not at
/// the first busy sample.
#[test]
fn load_aware_smooths_and_spills_before_saturation() {
    check_load_aware(20.0, &[[9, 9, 9], [20, 9, 9]], [97.0, 1.5, 1.5]);
    let z0 = 3.687 / (3.687 + 11.0) * 100.0;
    let other = (100.0 - z0) / 2.0;
    check_load_aware(
        20.0,
        &[[9, 9, 9], [20, 9, 9], [20, 9, 9]],
        [z0, other, other],
    );
}

/// Reports `utilisation[z]` for every backend of zone `z` (ids from [`zoned`]).
fn report(lb: &dyn Balancer<u32>, per_zone: &[usize], utilisation: &[f64]) {
    for (z, (&n, &u)) in per_zone.iter().zip(utilisation).enumerate() {
        for i in 0..n {
            let id = format!("z{z}-{i:02}");
            lb.report_load(&id, lbkit::LoadReport::new().utilization(u))
                .unwrap();
        }
    }
}

/// With reported utilisation: Envoy's worked example again (A 0.7, B 0.3, C 0.4), then all
/// at 0.45 (97% local). Reports above 1 count as fully busy.
#[test]
fn load_aware_reported_worked_example() {
    let per_zone = [10, 10, 10];
    let rows: [(&[f64], [f64; 3]); 3] = [
        (&[0.7, 0.3, 0.4], [18.75, 43.75, 37.5]),
        (&[0.45, 0.45, 0.45], [97.0, 1.5, 1.5]),
        // 3.0 counts as 1: no headroom in z0, the rest by headroom 0.5 : 0.5.
        (&[3.0, 0.5, 0.5], [0.0, 50.0, 50.0]),
    ];
    for (utilisation, want) in rows {
        for policy in POLICIES {
            let (clock, lb) = on_clock(policy, &per_zone, Topology::load_aware_reported("z0"));
            report(&*lb, &per_zone, utilisation);
            clock.advance(std::time::Duration::from_secs(1));
            let (n, tolerance) = picks_and_tolerance(policy);
            let got = zone_shares(&*lb, policy, n);
            check_zones(
                &got,
                &want,
                tolerance,
                &format!("{}: {utilisation:?}", policy.name),
            );
        }
    }
}

/// Reports older than the expiration do not count: half of z0 reported 1.0 long ago, the
/// other half 0.45 now, like z1 and z2: z0's average is 0.45 (97% local), not 0.725 (which
/// would spill). With expiration 0, the old reports count and z0 spills.
#[test]
fn load_aware_reported_expires_old_reports() {
    let per_zone = [10, 10, 10];
    for (expiration, spills) in [(180, false), (0, true)] {
        for policy in POLICIES {
            let (clock, lb) = on_clock(
                policy,
                &per_zone,
                Topology::load_aware_reported("z0")
                    .expiration(std::time::Duration::from_secs(expiration)),
            );
            for i in 0..5 {
                let id = format!("z0-{i:02}");
                lb.report_load(&id, lbkit::LoadReport::new().utilization(1.0))
                    .unwrap();
            }
            // No sample yet reaches back: the first sample comes after these 200 s.
            clock.advance(std::time::Duration::from_secs(200));
            for z in 0..3 {
                for i in 0..10 {
                    if z == 0 && i < 5 {
                        continue;
                    }
                    let id = format!("z{z}-{i:02}");
                    lb.report_load(&id, lbkit::LoadReport::new().utilization(0.45))
                        .unwrap();
                }
            }
            let (n, tolerance) = picks_and_tolerance(policy);
            let got = zone_shares(&*lb, policy, n);
            // z0 at 0.725 against 0.45: headroom 2.75 : 5.5 : 5.5.
            let want = if spills {
                [20.0, 40.0, 40.0]
            } else {
                [97.0, 1.5, 1.5]
            };
            check_zones(
                &got,
                &want,
                tolerance,
                &format!("{}: expiration {expiration}", policy.name),
            );
        }
    }
}

/// Bad reports: typed errors, and nothing changes (the shares stay as the good reports
/// made them).
#[test]
fn bad_load_reports_are_typed_errors() {
    use lbkit::{Error, LoadReport};
    let per_zone = [10, 10, 10];
    for policy in POLICIES {
        let (clock, lb) = on_clock(policy, &per_zone, Topology::load_aware_reported("z0"));
        report(&*lb, &per_zone, &[0.7, 0.3, 0.4]);
        let before = common::summary(&*lb);
        for bad in [-0.1, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let e = lb
                .report_load("z0-00", LoadReport::new().utilization(bad))
                .unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::InvalidReport {
                        field: "utilization",
                        ..
                    }
                ),
                "{}: {bad}: {e:?}",
                policy.name
            );
        }
        assert_eq!(
            lb.report_load("nope", LoadReport::new().utilization(0.5)),
            Err(Error::UnknownId("nope".into())),
            "{}",
            policy.name
        );
        // An empty report is taken and changes nothing.
        lb.report_load("z0-00", LoadReport::new()).unwrap();
        assert_eq!(common::summary(&*lb), before, "{}", policy.name);
        clock.advance(std::time::Duration::from_secs(1));
        let (n, tolerance) = picks_and_tolerance(policy);
        let got = zone_shares(&*lb, policy, n);
        let want = [18.75, 43.75, 37.5];
        check_zones(&got, &want, tolerance, policy.name);
    }
}

/// Under load-aware routing a hashing policy's keys move with the split: the localities lie
/// end to end, and exactly the keys between each boundary's old and new place change zone
/// (inside a zone, a key keeps its backend). Shares 18.75 / 43.75 / 37.5 (boundaries 18.75,
/// 62.5) become 27.78 / 27.78 / 44.44 (27.78, 55.56): 9.03 + 6.94 = 15.97% of the keys move.
#[test]
fn load_aware_split_moves_the_keys_between_the_boundaries() {
    let per_zone = [10, 10, 10];
    let keys: Vec<String> = (0..20_000).map(|i| format!("key-{i}")).collect();
    let place = |lb: &dyn Balancer<u32>| -> Vec<String> {
        keys.iter()
            .map(|k| lb.pick(&Request::with_key(k)).unwrap().id().to_owned())
            .collect()
    };
    for policy in POLICIES.iter().filter(|p| p.hashing) {
        // A time constant of 1 ms: each sample replaces the last.
        let smoothing = std::time::Duration::from_millis(1);
        let topology = Topology::load_aware_reported("z0").smoothing(smoothing);
        let (clock, lb) = on_clock(policy, &per_zone, topology);
        report(&*lb, &per_zone, &[0.7, 0.3, 0.4]);
        clock.advance(std::time::Duration::from_secs(1));
        let before = place(&*lb);
        report(&*lb, &per_zone, &[0.5, 0.5, 0.2]);
        clock.advance(std::time::Duration::from_secs(1));
        let after = place(&*lb);
        let zone = |id: &str| id[1..2].to_owned();
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        let changed_zone = before
            .iter()
            .zip(&after)
            .filter(|(a, b)| zone(a) != zone(b))
            .count();
        let percent = 100.0 * moved as f64 / keys.len() as f64;
        assert!(
            (percent - 15.97).abs() < 1.0,
            "{}: {percent:.2}% of the keys moved",
            policy.name
        );
        assert_eq!(
            moved, changed_zone,
            "{}: keys moved inside a zone",
            policy.name
        );
    }
}

/// Review: a new clock restarts what is measured in time, but the reports' times stay on the
/// old clock. Reports given at 1000 s on clock A, then a new clock B that starts at 0 and
/// runs 200 s (past the 3-minute expiration): the reports are 200 s old and must not count
/// (no fresh report anywhere: every zone idle, all traffic local). They do: `now - at`
/// saturates at 0 on the new clock, so they look fresh until B passes 1000 s + 180 s.
#[test]
fn load_aware_reported_reports_of_an_old_clock_do_not_stay_fresh() {
    let per_zone = [4, 4];
    let a = lbkit::ManualClock::new();
    a.advance(std::time::Duration::from_secs(1000));
    let lb = lbkit::RoundRobin::builder()
        .health(HealthConfig::new().clock(a.clone()))
        .topology(Topology::load_aware_reported("z0").remote_probe(0.0))
        .build(zoned(&per_zone))
        .unwrap();
    report(&lb, &per_zone, &[0.9, 0.2]);
    let b = lbkit::ManualClock::new();
    lb.set_health_config(HealthConfig::new().clock(b.clone()))
        .unwrap();
    b.advance(std::time::Duration::from_secs(200));
    let to_z1 = (0..900)
        .filter(|_| lb.pick(&Request::new()).unwrap().id().starts_with("z1"))
        .count();
    assert_eq!(to_z1, 0, "reports of the old clock still count");
}

/// When a load-aware split changes, the keys a hashing policy moves are those between each
/// boundary's old and new place: at most the sum of how far the boundaries moved. With
/// three zones the moves overlap: Envoy's worked example (18.75 / 43.75 / 37.5%) snapping to
/// local (97 / 1.5 / 1.5%) moves boundaries 0.1875 -> 0.97 and 0.625 -> 0.985, a sum of
/// 114% of the keys; the keys that move are those in [0.1875, 0.985), 79.75%.
#[test]
fn load_aware_keys_moved_are_those_between_old_and_new_boundaries() {
    let per_zone = [10, 10, 10];
    let clock = lbkit::ManualClock::new();
    let lb = lbkit::Maglev::builder()
        .health(HealthConfig::new().clock(clock.clone()))
        .topology(Topology::load_aware_reported("z0").smoothing(std::time::Duration::from_nanos(1)))
        .build(zoned(&per_zone))
        .unwrap();
    let zone_of = |lb: &dyn Balancer<u32>| -> Vec<u8> {
        (0..20_000)
            .map(|i| {
                let key = format!("key-{i}");
                lb.pick(&Request::with_key(&key)).unwrap().id().as_bytes()[1]
            })
            .collect()
    };
    report(&lb, &per_zone, &[0.7, 0.3, 0.4]);
    clock.advance(std::time::Duration::from_secs(1));
    let before = zone_of(&lb);
    report(&lb, &per_zone, &[0.45, 0.45, 0.45]);
    clock.advance(std::time::Duration::from_secs(1));
    let after = zone_of(&lb);
    let moved =
        before.iter().zip(&after).filter(|(a, b)| a != b).count() as f64 / before.len() as f64;
    let boundaries_moved = (0.97 - 0.1875) + (0.985 - 0.625);
    let between = 0.985 - 0.1875;
    assert!(
        (moved - between).abs() < 0.02 && moved < boundaries_moved,
        "moved {moved}, between the boundaries {between}, boundaries moved {boundaries_moved}"
    );
}

/// Review: a new remote probe (or variance threshold) does not change what is measured, yet
/// `set_topology` forgets the smoothed utilisation when any load-aware parameter differs:
/// until the next sample every zone counts as idle, and a hot local zone that was spilling
/// 8 in 9 picks takes (almost) everything again for a whole period.
#[test]
fn load_aware_new_probe_keeps_the_samples() {
    let per_zone = [4, 4];
    let clock = lbkit::ManualClock::new();
    let lb = lbkit::RoundRobin::builder()
        .health(HealthConfig::new().clock(clock.clone()))
        .topology(Topology::load_aware_reported("z0").remote_probe(0.0))
        .build(zoned(&per_zone))
        .unwrap();
    report(&lb, &per_zone, &[0.9, 0.2]);
    clock.advance(std::time::Duration::from_secs(1));
    let to_z1 = |lb: &lbkit::RoundRobin<u32>| {
        (0..900)
            .filter(|_| lb.pick(&Request::new()).unwrap().id().starts_with("z1"))
            .count()
    };
    assert!((790..=810).contains(&to_z1(&lb)), "spills 8 in 9 to z1");
    lb.set_topology(Topology::load_aware_reported("z0").remote_probe(0.05))
        .unwrap();
    let got = to_z1(&lb);
    assert!(
        (790..=810).contains(&got),
        "after a new probe: {got} of 900 to z1"
    );
}

/// Review: a backend re-added while a pick on it is held "joins afresh, as a new one would"
/// (CHANGELOG), but it keeps its old load report. z0-00 alone reported 0.9 (z1 0.2); it is
/// removed while a pick is held, then added back: as a new backend it has no report, so z0
/// is idle and everything stays local. Re-added after its picks are dropped it does; while
/// one is held its old report makes z0 spill to z1.
#[test]
fn load_aware_reported_revived_backend_has_no_old_report() {
    let per_zone = [4, 4];
    for hold in [false, true] {
        let clock = lbkit::ManualClock::new();
        let lb = lbkit::RoundRobin::builder()
            .health(HealthConfig::new().clock(clock.clone()))
            .topology(Topology::load_aware_reported("z0").remote_probe(0.0))
            .build(zoned(&per_zone))
            .unwrap();
        lb.report_load("z0-00", lbkit::LoadReport::new().utilization(0.9))
            .unwrap();
        for i in 0..4 {
            lb.report_load(
                &format!("z1-{i:02}"),
                lbkit::LoadReport::new().utilization(0.2),
            )
            .unwrap();
        }
        let held = hold.then(|| {
            (0..8)
                .map(|_| lb.pick(&Request::new()).unwrap())
                .find(|p| p.id() == "z0-00")
                .unwrap()
        });
        let all = zoned(&per_zone);
        lb.update(all.iter().filter(|b| b.id() != "z0-00").cloned().collect())
            .unwrap();
        lb.update(all).unwrap();
        clock.advance(std::time::Duration::from_secs(1));
        let to_z1 = (0..900)
            .filter(|_| lb.pick(&Request::new()).unwrap().id().starts_with("z1"))
            .count();
        assert_eq!(to_z1, 0, "pick held: {hold}");
        drop(held);
    }
}

/// In total panic the load follows host counts, draining backends included (Envoy's
/// arithmetic), but a draining backend never serves: a level of draining backends hands its
/// picks on, and `SharesChanged` says where they go, not where the arithmetic put them.
#[test]
fn shares_changed_follows_picks_past_a_level_that_cannot_serve() {
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<lbkit::Event>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let lb = lbkit::RoundRobin::builder()
        .health(HealthConfig::new().panic_threshold(0.5))
        .observer(move |e: &lbkit::Event| sink.lock().unwrap().push(e.clone()))
        .build([
            Backend::new("p0-a", 0u32),
            Backend::new("p0-b", 1),
            Backend::new("p1-a", 2)
                .with_priority(1)
                .with_health(Health::Draining),
            Backend::new("p1-b", 3)
                .with_priority(1)
                .with_health(Health::Draining),
        ])
        .unwrap();
    lb.set_health("p0-a", Health::Down).unwrap();
    lb.set_health("p0-b", Health::Down).unwrap();
    for _ in 0..100 {
        let pick = lb.pick(&Request::new()).unwrap();
        assert!(pick.id().starts_with("p0-"), "{}", pick.id());
    }
    let told = || -> Vec<Vec<(u32, f64)>> {
        seen.lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                lbkit::Event::SharesChanged { shares } => {
                    Some(shares.iter().map(|s| (s.priority, s.share)).collect())
                }
                _ => None,
            })
            .collect()
    };
    // P0 took every pick all along (first by health, then as P1's fallback in total
    // panic): no change to tell. Before, an event gave P1 half.
    assert_eq!(told(), Vec::<Vec<(u32, f64)>>::new());
    // P1 can serve again: it is fully available and takes the traffic.
    lb.set_health("p1-a", Health::Up).unwrap();
    assert_eq!(lb.pick(&Request::new()).unwrap().id(), "p1-a");
    assert_eq!(told(), [vec![(1, 1.0)]]);
}
