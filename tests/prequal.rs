//! Prequal through the public API, on a `ManualClock`: the hot-cold lexicographic rule on live
//! loads and latency estimates (a fast cold backend over a lighter hot one, load per unit of
//! weight, an idle backend over a faster queued one), a slow backend starved and an overloaded one skipped, steering and caps honoured,
//! bad configuration as typed errors, replay by seed, and `pick_n` agreeing with `pick`.

use std::collections::BTreeMap;
use std::time::Duration;

use lbkit::{Backend, Balancer, Error, HealthConfig, ManualClock, Pick, Prequal, Request};
use proptest::prelude::*;

fn backends(ids: &[&str]) -> Vec<Backend<()>> {
    ids.iter().map(|id| Backend::new(*id, ())).collect()
}

/// A seeded Prequal on `clock` with `probes` candidates per pick and quantile `q`. Its
/// default latency is 1 ns, so that a backend's first report sets its estimate to exactly
/// the latency reported (a report above the estimate replaces it at once: the peak).
fn prequal(clock: &ManualClock, probes: usize, q: f64, set: Vec<Backend<()>>) -> Prequal<()> {
    Prequal::builder()
        .probes(probes)
        .quantile(q)
        .default_latency(Duration::from_nanos(1))
        .seed(5)
        .health(HealthConfig::new().clock(clock.clone()))
        .build(set)
        .unwrap()
}

/// Teaches `lb` a latency for `id`: one pick steered there, reported at `latency`.
fn observe(lb: &Prequal<()>, id: &str, latency: Duration) {
    let pick = lb.pick(&Request::new().prefer(id)).unwrap();
    assert_eq!(pick.id(), id);
    pick.success(latency);
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `n` picks held at once on `id` (steered there).
fn hold(lb: &Prequal<()>, id: &str, n: usize) -> Vec<Pick<()>> {
    (0..n)
        .map(|_| {
            let pick = lb.pick(&Request::new().prefer(id)).unwrap();
            assert_eq!(pick.id(), id);
            pick
        })
        .collect()
}

/// How many of `n` picks (dropped at once, without a report) went to each id.
fn counts(lb: &Prequal<()>, n: usize) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let pick = lb.pick(&Request::new()).expect("an eligible backend");
        *out.entry(pick.id().to_owned()).or_default() += 1;
    }
    out
}

/// The HCL rule on live values. Three backends and 4 probes: every pick sees all three, and
/// at quantile 0.5 the threshold is the median load (rank floor(0.5 x 2) = 1).
#[test]
fn the_fastest_cold_backend_wins_over_a_faster_hot_one_and_a_lighter_slower_one() {
    let clock = ManualClock::new();
    let lb = prequal(&clock, 4, 0.5, backends(&["fast", "light", "loaded"]));
    observe(&lb, "fast", ms(2));
    observe(&lb, "light", ms(50));
    observe(&lb, "loaded", ms(1));
    // In flight 2, 0, 5: the median is 2, so "loaded" (the fastest) is hot; of the cold
    // ones "fast" is faster than "light", which has fewer in flight.
    let _fast = hold(&lb, "fast", 2);
    let loaded = hold(&lb, "loaded", 5);
    assert_eq!(counts(&lb, 50), [("fast".to_owned(), 50)].into());
    // "fast" at 6: above the median (5), hot; "loaded" at 5 is cold again and the fastest.
    let _more = hold(&lb, "fast", 4);
    assert_eq!(counts(&lb, 50), [("loaded".to_owned(), 50)].into());
    // "loaded" back to 0 and "light" at 3: median 3, "fast" hot; "loaded" cold, fastest.
    drop(loaded);
    let _light = hold(&lb, "light", 3);
    assert_eq!(counts(&lb, 50), [("loaded".to_owned(), 50)].into());
}

/// Load is in flight per unit of weight, exactly.
#[test]
fn load_is_compared_per_unit_of_weight() {
    let clock = ManualClock::new();
    let set = vec![
        Backend::new("a", ()),
        Backend::new("b", ()).with_weight(4),
        Backend::new("c", ()),
    ];
    let lb = prequal(&clock, 4, 0.5, set);
    observe(&lb, "a", ms(1));
    observe(&lb, "b", ms(10));
    observe(&lb, "c", ms(20));
    // Per unit of weight: a 3, b 8 / 4 = 2, c 1. The median is b's 2: "a" (the fastest)
    // is hot, "b" the faster of the cold ones. By raw counts (3, 8, 1) "b" would be the
    // hot one and "a" would win.
    let _a = hold(&lb, "a", 3);
    let _b = hold(&lb, "b", 8);
    let _c = hold(&lb, "c", 1);
    assert_eq!(counts(&lb, 50), [("b".to_owned(), 50)].into());
}

/// With nothing in flight and equal estimates, the expected latency per unit of weight (as
/// PeakEwma's cost) prefers the heavier backends; ties among them fall to the first
/// candidate drawn, so they share by weight.
#[test]
fn at_equal_estimates_the_heavier_win_and_ties_follow_weights() {
    let set = vec![
        Backend::new("a", ()),
        Backend::new("b", ()).with_weight(3),
        Backend::new("c", ()).with_weight(3),
    ];
    let lb = Prequal::builder()
        .seed(11)
        .health(HealthConfig::new().clock(ManualClock::new()))
        .build(set)
        .unwrap();
    let got = counts(&lb, 4000);
    assert_eq!(got.get("a"), None, "{got:?}");
    let b = got["b"] as f64 / 4000.0;
    assert!((b - 0.5).abs() < 0.03, "{got:?}");
}

/// An idle backend whose estimate is stale (high from when it was busy) is not left idle
/// while a faster one queues: cold candidates are ranked by the latency expected at their
/// RIF, estimate x (in flight + 1), not by the estimate alone.
#[test]
fn an_idle_backend_with_a_stale_estimate_gets_picks_once_the_fast_one_queues() {
    let clock = ManualClock::new();
    // 4 probes see all four; at 0.75 the threshold is rank floor(0.75 x 3) = 2.
    let lb = prequal(&clock, 4, 0.75, backends(&["fast", "idle", "b", "c"]));
    observe(&lb, "fast", ms(1));
    observe(&lb, "idle", ms(2));
    observe(&lb, "b", ms(5));
    observe(&lb, "c", ms(5));
    // Nothing in flight: the fastest.
    assert_eq!(counts(&lb, 20), [("fast".to_owned(), 20)].into());
    // 3 in flight on fast, b and c, none on idle: the threshold is 3, nobody is hot.
    // Expected: fast 1 ms x 4, idle 2 ms x 1, b and c 5 ms x 4: idle wins, though its
    // estimate is twice fast's.
    let _held: Vec<_> = ["fast", "b", "c"]
        .iter()
        .map(|id| hold(&lb, id, 3))
        .collect();
    assert_eq!(counts(&lb, 50), [("idle".to_owned(), 50)].into());
}

/// A slow backend (reports of high latency) gets few picks, with requests overlapping so
/// that load plays too; a latency-blind policy would give it a quarter.
#[test]
fn a_slow_backend_gets_few_picks() {
    let clock = ManualClock::new();
    let lb = Prequal::builder()
        .seed(3)
        .health(HealthConfig::new().clock(clock.clone()))
        .build(backends(&["a", "b", "c", "slow"]))
        .unwrap();
    let latency = |id: &str| if id == "slow" { ms(200) } else { ms(5) };
    let mut window = std::collections::VecDeque::new();
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..2000 {
        let pick = lb.pick(&Request::new()).unwrap();
        if i >= 100 {
            *got.entry(pick.id().to_owned()).or_default() += 1;
        }
        window.push_back(pick);
        clock.advance(ms(1));
        // Six requests in flight at a time, oldest done first.
        if window.len() > 6 {
            let done = window.pop_front().unwrap();
            let l = latency(done.id());
            done.success(l);
        }
    }
    let slow = got.get("slow").copied().unwrap_or(0);
    assert!(slow * 50 <= 1900, "slow got {slow} of 1900: {got:?}");
    for id in ["a", "b", "c"] {
        assert!(got.get(id).copied().unwrap_or(0) > 300, "{got:?}");
    }
}

/// A backend holding many picks gets none while the others are cold, even as the fastest.
#[test]
fn an_overloaded_backend_gets_nothing_while_others_are_cold() {
    let clock = ManualClock::new();
    let lb = prequal(&clock, 8, 0.75, backends(&["a", "b", "busy", "d"]));
    observe(&lb, "busy", ms(1));
    for id in ["a", "b", "d"] {
        observe(&lb, id, ms(10));
    }
    // Nothing held: the fastest takes everything.
    assert_eq!(counts(&lb, 20), [("busy".to_owned(), 20)].into());
    let _held = hold(&lb, "busy", 20);
    let got = counts(&lb, 1000);
    assert_eq!(got.get("busy"), None, "{got:?}");
    assert_eq!(got.len(), 3, "the others share: {got:?}");
}

/// `accept`: avoided backends and backends at their cap are skipped.
#[test]
fn steering_and_caps_are_honoured() {
    let clock = ManualClock::new();
    let set = vec![
        Backend::new("fast", ()).with_max_in_flight(2),
        Backend::new("mid", ()),
        Backend::new("slow", ()),
    ];
    let lb = prequal(&clock, 2, 0.75, set);
    observe(&lb, "fast", ms(1));
    observe(&lb, "mid", ms(5));
    observe(&lb, "slow", ms(50));
    let avoid = ["fast"];
    for _ in 0..50 {
        let pick = lb.pick(&Request::new().avoid(&avoid)).unwrap();
        assert_ne!(pick.id(), "fast");
    }
    let _full = hold(&lb, "fast", 2);
    let got = counts(&lb, 200);
    assert_eq!(got.get("fast"), None, "{got:?}");
    assert!(got.contains_key("mid"), "{got:?}");
}

#[test]
fn bad_configuration_is_a_typed_error() {
    let parameter = |r: Result<Prequal<()>, Error>| match r {
        Err(Error::InvalidConfig { parameter, .. }) => parameter,
        Err(e) => panic!("{e}"),
        Ok(_) => "none",
    };
    for probes in [0, 1, 17, usize::MAX] {
        let r = Prequal::builder().probes(probes).build(backends(&["a"]));
        assert_eq!(parameter(r), "probes", "{probes}");
    }
    for q in [0.0, 1.0, -0.5, 1.5, f64::NAN, f64::INFINITY, -0.0] {
        let r = Prequal::builder().quantile(q).build(backends(&["a"]));
        assert_eq!(parameter(r), "quantile", "{q}");
    }
    let r = Prequal::builder()
        .decay(Duration::ZERO)
        .build(backends(&["a"]));
    assert_eq!(parameter(r), "decay");
    let r = Prequal::builder()
        .default_latency(Duration::ZERO)
        .build(backends(&["a"]));
    assert_eq!(parameter(r), "default_latency");
    // The edges that are allowed.
    for (probes, q) in [(2, 1e-9), (16, 0.999_999), (8, 0.5)] {
        let r = Prequal::builder()
            .probes(probes)
            .quantile(q)
            .build(backends(&["a", "b"]));
        assert_eq!(parameter(r), "none", "{probes} {q}");
    }
}

/// The same seed and calls on a manual clock give the same picks; another seed does not.
#[test]
fn the_same_seed_replays_the_same_picks() {
    let run = |seed: u64| -> Vec<String> {
        let clock = ManualClock::new();
        let set = (0..12).map(|i| Backend::new(format!("b{i}"), ()).with_weight(1 + i % 3));
        let lb = Prequal::builder()
            .seed(seed)
            .health(HealthConfig::new().clock(clock.clone()))
            .build(set)
            .unwrap();
        let mut held = Vec::new();
        let mut ids = Vec::new();
        for i in 0..300u64 {
            let pick = lb.pick(&Request::new()).unwrap();
            ids.push(pick.id().to_owned());
            held.push(pick);
            clock.advance(ms(1));
            if held.len() > 5 {
                let done = held.remove((i % 5) as usize);
                let l = ms(1 + (done.id().len() as u64 * 7 + i) % 20);
                done.success(l);
            }
        }
        ids
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// `pick_n` gives distinct members, as many as asked for and allowed, the first the
    /// one a twin (same seed, same calls) picks.
    #[test]
    fn pick_n_is_distinct_and_starts_with_pick(
        weights in prop::collection::vec(1u32..5, 1..24),
        held in prop::collection::vec((0usize..24, 0usize..4), 0..12),
        latencies in prop::collection::vec((0usize..24, 1u64..100), 0..12),
        probes in 2usize..=16,
        quantile in 0.01f64..0.99,
        n in 1usize..30,
        seed: u64,
    ) {
        let twin = || {
            let set = weights
                .iter()
                .enumerate()
                .map(|(i, &w)| Backend::new(format!("b{i}"), ()).with_weight(w));
            Prequal::builder()
                .probes(probes)
                .quantile(quantile)
                .seed(seed)
                .health(HealthConfig::new().clock(ManualClock::new()))
                .build(set)
                .unwrap()
        };
        let (a, b) = (twin(), twin());
        let len = weights.len();
        let mut keep = Vec::new();
        for lb in [&a, &b] {
            for &(i, l) in &latencies {
                observe(lb, &format!("b{}", i % len), ms(l));
            }
            for &(i, k) in &held {
                keep.extend(hold(lb, &format!("b{}", i % len), k));
            }
        }
        let many = a.pick_n(&Request::new(), n);
        let one = b.pick(&Request::new()).unwrap();
        prop_assert_eq!(many.len(), n.min(len));
        prop_assert_eq!(many[0].id(), one.id());
        let mut ids: Vec<&str> = many.iter().map(|p| p.id()).collect();
        ids.sort_unstable();
        ids.dedup();
        prop_assert_eq!(ids.len(), many.len());
    }
}

/// The expected latency scales a reported RIF as a number of requests, with either signal:
/// estimate x (RIF + 1). "a" reports 0 with a 100 ms estimate (100 ms expected), "b" 1 with
/// 1 ms (2 ms), "c" and "d" 1 with 100 ms (200 ms); nobody is hot (the threshold is rank 2
/// of 0, 1, 1, 1), so every pick goes to "b". (`Reported` once counted a reported 1 as 2^20
/// requests here, and "a" took every pick.)
#[test]
fn a_reported_rif_scales_the_estimate_as_requests() {
    use lbkit::{LoadReport, LoadSignal};
    for signal in [LoadSignal::Reported, LoadSignal::Combined { per_unit: 1.0 }] {
        let clock = ManualClock::new();
        let lb = Prequal::builder()
            .probes(4)
            .quantile(0.75)
            .default_latency(Duration::from_nanos(1))
            .load_signal(signal)
            .seed(5)
            .health(HealthConfig::new().clock(clock.clone()))
            .build(backends(&["a", "b", "c", "d"]))
            .unwrap();
        for (id, latency) in [("a", 100), ("b", 1), ("c", 100), ("d", 100)] {
            observe(&lb, id, ms(latency));
        }
        lb.report_load("a", LoadReport::new().load(0.0)).unwrap();
        for id in ["b", "c", "d"] {
            lb.report_load(id, LoadReport::new().load(1.0)).unwrap();
        }
        assert_eq!(counts(&lb, 20), [("b".to_owned(), 20)].into(), "{signal:?}");
    }
}
