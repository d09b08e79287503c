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
