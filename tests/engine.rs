//! Promises of the engine that mutation testing (`scripts/mutants.sh`) found unguarded: each
//! test here fails on a mutant that survived every other suite, named in its doc comment.

use std::collections::BTreeMap;
use std::time::Duration;

use lbkit::{Backend, Balancer, Clock, HealthConfig, ManualClock, OutlierDetection, Request};
use lbkit::{RoundRobin, SlowStart, WeightedRoundRobin};

mod common;
use common::POLICIES;

fn backends(ids: &[&str]) -> Vec<Backend<()>> {
    ids.iter().map(|id| Backend::new(*id, ())).collect()
}

/// How many of `n` picks (dropped at once) went to each id.
fn counts(lb: &dyn Balancer<()>, n: usize) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let pick = lb.pick(&Request::new()).expect("an eligible backend");
        *out.entry(pick.id().to_owned()).or_default() += 1;
    }
    out
}

/// Fails `k` picks on `id`.
fn fail(lb: &dyn Balancer<()>, id: &str, k: usize) {
    for _ in 0..k {
        let pick = (0..10_000)
            .map(|_| lb.pick(&Request::new()).unwrap())
            .find(|p| p.id() == id)
            .unwrap_or_else(|| panic!("{id} is never picked"));
        pick.failure();
    }
}

fn ejected(lb: &dyn Balancer<()>) -> Vec<String> {
    lb.status()
        .into_iter()
        .filter(|s| s.is_ejected())
        .map(|s| s.id().to_owned())
        .collect()
}

/// A manual clock that says it is not cheap, so picks sample it (one in 16 per thread) as
/// they would the system clock.
#[derive(Debug, Clone, Default)]
struct SampledClock(ManualClock);

impl Clock for SampledClock {
    fn now(&self) -> Duration {
        self.0.now()
    }
}

/// Mutants of `Core::due` (`tick % 16` as `tick / 16` or `tick + 16`): the sample stopped
/// after a thread's first 16 picks, or never happened, so an ejection never ended.
#[test]
fn an_ejection_ends_on_a_sampled_clock_however_many_picks_came_before() {
    let clock = SampledClock::default();
    let lb = RoundRobin::builder()
        .health(
            HealthConfig::new()
                .clock(clock.clone())
                .outlier_detection(OutlierDetection::default()),
        )
        .build(backends(&["a", "b", "c"]))
        .unwrap();
    // Many picks first: the sample must not depend on how many this thread made.
    counts(&lb, 1000);
    fail(
        &lb,
        "a",
        OutlierDetection::default().consecutive_failures as usize,
    );
    assert_eq!(ejected(&lb), ["a"]);
    assert_eq!(counts(&lb, 300).get("a"), None);
    clock
        .0
        .advance(OutlierDetection::default().base_ejection_time);
    // Within 16 picks the clock is read and "a" is back; 64 leave room for the rotation.
    assert!(
        counts(&lb, 64).contains_key("a"),
        "the ejection never ended"
    );
    assert!(ejected(&lb).is_empty());
}

/// Mutant of `set_health_config` (`!Arc::ptr_eq` as `Arc::ptr_eq`): a configuration change
/// that keeps the clock must keep what the clock measured; a new clock restarts it.
#[test]
fn a_new_health_config_keeps_ejections_unless_its_clock_is_new() {
    let clock = ManualClock::new();
    let config = HealthConfig::new()
        .clock(clock.clone())
        .outlier_detection(OutlierDetection::default());
    let lb = RoundRobin::builder()
        .health(config.clone())
        .build(backends(&["a", "b", "c"]))
        .unwrap();
    fail(&lb, "a", 5);
    assert_eq!(ejected(&lb), ["a"]);
    // The same clock (the config's clone), a different threshold: "a" stays out.
    let stricter = config.clone().outlier_detection(OutlierDetection {
        consecutive_failures: 3,
        ..OutlierDetection::default()
    });
    lb.set_health_config(stricter).unwrap();
    assert_eq!(ejected(&lb), ["a"]);
    assert_eq!(counts(&lb, 30).get("a"), None);
    // A new clock: ejections measured on the old one are forgotten.
    lb.set_health_config(
        HealthConfig::new()
            .clock(ManualClock::new())
            .outlier_detection(OutlierDetection::default()),
    )
    .unwrap();
    assert!(ejected(&lb).is_empty());
    assert_eq!(counts(&lb, 30).get("a"), Some(&10));
}

/// Mutant of `set_health_config` (`new_clock || outlier_detection.is_none()` as `&&`):
/// switching outlier detection off, on the same clock, ends its ejections at once.
#[test]
fn switching_outlier_detection_off_ends_its_ejections() {
    let clock = ManualClock::new();
    let config = HealthConfig::new()
        .clock(clock.clone())
        .outlier_detection(OutlierDetection::default());
    let lb = RoundRobin::builder()
        .health(config.clone())
        .build(backends(&["a", "b", "c"]))
        .unwrap();
    fail(&lb, "a", 5);
    assert_eq!(ejected(&lb), ["a"]);
    // The same clock, no outlier detection.
    lb.set_health_config(config.without_outlier_detection())
        .unwrap();
    assert!(ejected(&lb).is_empty());
    assert_eq!(counts(&lb, 30).get("a"), Some(&10));
}

/// Mutant of `set_health_config` (`new_clock || slow_start.is_none()` as `&&`): switching
/// slow start off, on the same clock, gives a ramping backend its full weight at once.
#[test]
fn switching_slow_start_off_ends_the_ramp() {
    let clock = ManualClock::new();
    let config = HealthConfig::new()
        .clock(clock.clone())
        .slow_start(SlowStart::new(Duration::from_secs(60)));
    let lb = WeightedRoundRobin::builder()
        .health(config.clone())
        .build(backends(&["a", "b"]))
        .unwrap();
    clock.advance(Duration::from_secs(120));
    // "c" joins and ramps: a small share at the start of its window.
    let mut set = backends(&["a", "b"]);
    set.push(Backend::new("c", ()));
    lb.update(set).unwrap();
    let ramping = counts(&lb, 3000).get("c").copied().unwrap_or(0);
    assert!(ramping < 500, "c should ramp: {ramping} of 3000");
    lb.set_health_config(config.clone().without_slow_start())
        .unwrap();
    assert_eq!(counts(&lb, 3000).get("c"), Some(&1000));
    // The ramp ended; switching slow start back on does not resume it (only backends that
    // join or return from ejection from now on ramp).
    lb.set_health_config(config).unwrap();
    assert_eq!(counts(&lb, 3000).get("c"), Some(&1000));
}

/// Mutant of `Core::backends` (replaced by an empty list): every policy lists its members,
/// in id order, with their weights and values.
#[test]
fn backends_lists_every_member_with_its_weight_and_value() {
    for policy in POLICIES {
        let set: Vec<Backend<u32>> = [("c", 3), ("a", 1), ("b", 0)]
            .map(|(id, w)| Backend::new(id, w * 10).with_weight(w))
            .into();
        let lb = (policy.new)(set, 1).unwrap();
        let listed: Vec<(String, u32, u32)> = lb
            .backends()
            .iter()
            .map(|m| (m.id().to_owned(), m.weight(), *m.value()))
            .collect();
        assert_eq!(
            listed,
            [
                ("a".to_owned(), 1, 10),
                ("b".to_owned(), 0, 0),
                ("c".to_owned(), 3, 30)
            ],
            "{}",
            policy.name
        );
    }
}

/// A manual clock that counts its reads and says it is cheap (read on every pick while a
/// change is due).
#[derive(Debug, Clone, Default)]
struct CountingClock {
    time: ManualClock,
    reads: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Clock for CountingClock {
    fn now(&self) -> Duration {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.time.now()
    }

    fn is_cheap(&self) -> bool {
        true
    }
}

fn weighted(ws: &[(&str, u32)]) -> Vec<Backend<()>> {
    ws.iter()
        .map(|&(id, w)| Backend::new(id, ()).with_weight(w))
        .collect()
}

/// Mutants of `effective_weight` (`weight * SLOW_START_SCALE` as `+`, at full weight and
/// during the ramp): slow start scales every weight alike, so shares stay proportional to
/// weight, before, during and after a ramp.
#[test]
fn slow_start_keeps_shares_proportional_to_weight() {
    let clock = ManualClock::new();
    let config = HealthConfig::new()
        .clock(clock.clone())
        .slow_start(SlowStart::new(Duration::from_secs(60)));
    let lb = WeightedRoundRobin::builder()
        .health(config)
        .build(weighted(&[("a", 1), ("b", 3)]))
        .unwrap();
    // The initial set does not ramp: 1 : 3.
    let c = counts(&lb, 4000);
    assert_eq!((c["a"], c["b"]), (1000, 3000));
    // Two backends join together and ramp alike: 1 : 3 between them at every point.
    clock.advance(Duration::from_secs(600));
    lb.update(weighted(&[("a", 1), ("b", 3), ("c", 1), ("d", 3)]))
        .unwrap();
    for _ in 0..3 {
        clock.advance(Duration::from_secs(15));
        let c = counts(&lb, 8000);
        let (c_, d_) = (c["c"] as f64, c["d"] as f64);
        assert!((d_ / c_ - 3.0).abs() < 0.1, "c {c_}, d {d_}");
        assert!((c["b"] as i64 - 3 * c["a"] as i64).abs() <= 8, "{c:?}");
    }
}

/// Mutant of `effective_weight` (the step `window / 32` as `window % 32`, a rebuild on
/// every pick): a ramp re-weighs in 32 steps (`SlowStart` docs), not on every pick.
#[test]
fn a_ramp_rebuilds_in_32_steps_not_on_every_pick() {
    let clock = CountingClock::default();
    let window = Duration::from_secs(32);
    let lb = RoundRobin::builder()
        .health(
            HealthConfig::new()
                .clock(clock.clone())
                .slow_start(SlowStart::new(window)),
        )
        .build(backends(&["a", "b"]))
        .unwrap();
    lb.update(backends(&["a", "b", "c"])).unwrap();
    let before = clock.reads.load(std::sync::atomic::Ordering::Relaxed);
    // 3,200 picks over the window: each reads the (cheap) clock once to see whether a step
    // is due; 32 steps (and the end) add one read each.
    for _ in 0..3200 {
        clock.time.advance(window / 3200);
        drop(lb.pick(&Request::new()));
    }
    let reads = clock.reads.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!(
        reads <= 3200 + 40,
        "{reads} clock reads: a rebuild on every pick?"
    );
}

/// Mutant of `Feedback::reconfigure` (skipped): a new failure threshold applies to the
/// reports that follow.
#[test]
fn a_new_failure_threshold_applies_at_once() {
    let clock = ManualClock::new();
    let config = HealthConfig::new()
        .clock(clock.clone())
        .outlier_detection(OutlierDetection::default());
    let lb = RoundRobin::builder()
        .health(config.clone())
        .build(backends(&["a", "b", "c"]))
        .unwrap();
    lb.set_health_config(config.outlier_detection(OutlierDetection {
        consecutive_failures: 2,
        ..OutlierDetection::default()
    }))
    .unwrap();
    fail(&lb, "a", 2);
    drop(lb.pick(&Request::new()));
    assert_eq!(ejected(&lb), ["a"]);
}

/// Mutant of `State::returned_at` (a constant): an ejection right after a return lasts
/// twice the base time, and the multiplier drops by one per base time served since.
#[test]
fn a_second_ejection_soon_after_a_return_lasts_twice_as_long() {
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(1000));
    let rules = OutlierDetection::default();
    let base = rules.base_ejection_time;
    let lb = RoundRobin::builder()
        .health(
            HealthConfig::new()
                .clock(clock.clone())
                .outlier_detection(rules),
        )
        .build(backends(&["a", "b", "c"]))
        .unwrap();
    let k = rules.consecutive_failures as usize;
    fail(&lb, "a", k);
    assert_eq!(ejected(&lb), ["a"]);
    clock.advance(base);
    drop(lb.pick(&Request::new()));
    assert!(ejected(&lb).is_empty());
    // At once again: 2 x base.
    fail(&lb, "a", k);
    assert_eq!(ejected(&lb), ["a"]);
    clock.advance(base);
    drop(lb.pick(&Request::new()));
    assert_eq!(ejected(&lb), ["a"], "the second ejection lasts 2 x base");
    clock.advance(base);
    drop(lb.pick(&Request::new()));
    assert!(ejected(&lb).is_empty());
}

/// Mutants of `State::reset_latency` (skipped, or `+ now / decay` as `-`): a new clock
/// restarts every latency estimate at the default, as of the new clock's now.
#[test]
fn a_new_clock_restarts_peak_ewma_estimates() {
    let old = ManualClock::new();
    let lb = lbkit::PeakEwma::builder()
        .seed(7)
        .health(HealthConfig::new().clock(old.clone()))
        .build(backends(&["a", "b", "c"]))
        .unwrap();
    // "a" is slow: 10 s per request, against 10 ms (the default) for the others. `pick_n`
    // gives every backend once.
    for _ in 0..5 {
        for p in lb.pick_n(&Request::new(), 3) {
            if p.id() == "a" {
                p.success(Duration::from_secs(10));
            } else {
                p.success(Duration::from_millis(10));
            }
        }
    }
    assert!(counts(&lb, 3000).get("a").copied().unwrap_or(0) < 100);
    // A new clock, already far along: every estimate restarts at the default latency.
    let new = ManualClock::new();
    new.advance(Duration::from_secs(500));
    lb.set_health_config(HealthConfig::new().clock(new.clone()))
        .unwrap();
    // A backend joining now starts at the default too: all four cost the same.
    lb.update(backends(&["a", "b", "c", "d"])).unwrap();
    let c = counts(&lb, 4000);
    for id in ["a", "b", "c", "d"] {
        let n = c.get(id).copied().unwrap_or(0);
        assert!((700..=1300).contains(&n), "{id} got {n} of 4000: {c:?}");
    }
}

/// Mutants of `State::now_ns` (a constant 0 or 1): a pick dropped without a report counts
/// the time it was held, from the pick, not from the clock's epoch; tests whose clock
/// stays near 0 cannot tell the two apart.
#[test]
fn a_dropped_pick_counts_the_time_it_was_held_late_in_the_clock() {
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(100_000));
    let lb = lbkit::PeakEwma::builder()
        .seed(3)
        .health(HealthConfig::new().clock(clock.clone()))
        .build(backends(&["a", "b"]))
        .unwrap();
    // Held 1 ms on "a" and 1 s on "b", then dropped without a report.
    let mut picks = lb.pick_n(&Request::new(), 2);
    picks.sort_by(|x, y| x.id().cmp(y.id()));
    let b = picks.pop().unwrap();
    let a = picks.pop().unwrap();
    clock.advance(Duration::from_millis(1));
    drop(a);
    clock.advance(Duration::from_millis(999));
    drop(b);
    // "a" looks 1000x cheaper: it takes nearly every pick.
    let c = counts(&lb, 1000);
    assert!(c.get("a").copied().unwrap_or(0) > 900, "{c:?}");
}

/// Mutant of `observe_latency_at` (the decayed cost `score - now / decay` as `/`): an
/// estimate decays with time at any point of the clock, so a slow backend comes back.
#[test]
fn a_slow_backends_estimate_decays_late_in_the_clock() {
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(100_000));
    let lb = lbkit::PeakEwma::builder()
        .seed(5)
        .health(HealthConfig::new().clock(clock.clone()))
        .build(backends(&["a", "b"]))
        .unwrap();
    for p in lb.pick_n(&Request::new(), 2) {
        let latency = if p.id() == "a" { 1000 } else { 10 };
        p.success(Duration::from_millis(latency));
    }
    assert!(counts(&lb, 1000).get("a").copied().unwrap_or(0) < 100);
    // Ten decay times later "a" is at 1 s x e^-10 = 45 us; "b" observes 10 ms again.
    clock.advance(Duration::from_secs(100));
    for p in lb.pick_n(&Request::new(), 2) {
        if p.id() == "b" {
            p.success(Duration::from_millis(10));
        }
    }
    let c = counts(&lb, 1000);
    assert!(c.get("a").copied().unwrap_or(0) > 900, "{c:?}");
}

/// Holds `k` picks on `id` (of a two-backend set: `pick_n` gives both, the other is dropped
/// at once, with the clock standing still, so its estimate does not move).
fn hold(lb: &dyn Balancer<()>, id: &str, k: usize) -> Vec<lbkit::Pick<()>> {
    (0..k)
        .map(|_| {
            lb.pick_n(&Request::new(), 2)
                .into_iter()
                .find(|p| p.id() == id)
                .unwrap()
        })
        .collect()
}

/// Mutants of `observe_latency_at` (the peak test `>=` as `<`, the weight
/// `exp(-(now - stamp) / decay)` with `-` deleted or as `+`, `/` as `%` or `*`, the blend
/// `decayed x w + rtt x (1 - w)` with `+` as `-`): an observation below the decayed estimate
/// moves it toward the observation by `1 - exp(-elapsed / decay)`, exactly; measured by the
/// load at which P2C, comparing `estimate x (in flight + 1)`, switches backends.
#[test]
fn an_observation_below_the_estimate_blends_by_the_time_elapsed() {
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(100_000));
    let lb = lbkit::PeakEwma::builder()
        .seed(9)
        .health(HealthConfig::new().clock(clock.clone()))
        .build(backends(&["a", "b"]))
        .unwrap();
    for p in lb.pick_n(&Request::new(), 2) {
        p.success(Duration::from_millis(10));
    }
    let mut held = lb.pick_n(&Request::new(), 2);
    held.sort_by(|x, y| x.id().cmp(y.id()));
    let (on_b_then, on_a_then) = (held.pop().unwrap(), held.pop().unwrap());
    // ln 4 decay times later (w = 1/4) both estimates have decayed to 2.5 ms. "b" observes
    // 2.5 ms (its estimate stays 2.5 ms); "a" observes 1 ms: 2.5 x 1/4 + 1 x 3/4 = 1.375 ms.
    // Both stamps are now; nothing else moves while the clock stands still.
    clock.advance(PEAK_EWMA_DECAY.mul_f64(4f64.ln()));
    on_b_then.success(Duration::from_micros(2500));
    on_a_then.success(Duration::from_millis(1));
    // With 9 picks held on "a" (x 10), a pick goes to "a" once "b" holds n with
    // 1.375 x 10 < 2.5 x (n + 1): from n = 5 on.
    let _on_a = hold(&lb, "a", 9);
    let mut on_b = Vec::new();
    let mut switch = None;
    for n in 0..40 {
        let probe = lb.pick(&Request::new()).unwrap();
        if probe.id() == "a" {
            switch = Some(n);
            break;
        }
        drop(probe);
        on_b.extend(hold(&lb, "b", 1));
    }
    assert_eq!(switch, Some(5));
}

/// PeakEwma's default decay time.
const PEAK_EWMA_DECAY: Duration = Duration::from_secs(10);
