//! Arbitrary operation sequences against every policy, with arbitrary health rules.
//!
//! The input chooses a policy of the registry every test suite shares (tests/common/mod.rs:
//! every policy, preset and bounded variant), or one of the builders with fuzzed parameters
//! (load factor, Maglev table size, ring points), a seed, a health configuration (outlier detection, panic threshold, slow start, on a
//! `ManualClock`), an initial set, then up to 256 operations: `update` with arbitrary ids and
//! weights, `set_health`, `pick`, `pick_n`, dropping a held pick, reporting success (with a
//! latency) or failure, advancing the clock, replacing the health configuration.
//!
//! Invariants checked after every operation, against a model the target keeps:
//! * nothing panics (libFuzzer reports a panic as a crash);
//! * every backend's in-flight count equals the picks the target holds on that id (held
//!   picks of removed backends count again if the id comes back while they are held);
//! * `status()` lists exactly the model's ids (sorted), weights and health;
//! * a pick or a `pick_n` member is eligible: up, weight above 0, not ejected; in panic mode
//!   (fewer than the threshold's share of the backends that could serve are healthy), any
//!   backend of weight above 0 that is not draining; `pick` gives `None` only when nothing is
//!   eligible; `pick_n` gives `min(n, eligible)` distinct backends;
//! * every error is typed as the model predicts, and leaves `status()` unchanged.
#![no_main]

use std::collections::BTreeMap;
use std::time::Duration;

use arbitrary::{Result, Unstructured};
use lbkit::{
    Backend, Balancer, Error, HashRing, Health, HealthConfig, Maglev, ManualClock,
    OutlierDetection, Pick, Preset, PresetRing, Rendezvous, Request, SlowStart,
};
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/common/mod.rs"]
mod common;
use common::POLICIES;

/// Ids are mostly from a small alphabet, so that updates overlap and `set_health` hits.
const IDS: [&str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];

fn id(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(match u.int_in_range(0..=15u8)? {
        0 => String::new(),
        1 => u.arbitrary::<String>()?.chars().take(64).collect(),
        n => IDS[usize::from(n) % IDS.len()].to_owned(),
    })
}

fn weight(u: &mut Unstructured<'_>) -> Result<u32> {
    Ok(match u.int_in_range(0..=7u8)? {
        0 => 0,
        1 => u32::MAX,
        2 => u.arbitrary()?,
        n => u32::from(n - 2),
    })
}

fn float(u: &mut Unstructured<'_>) -> Result<f64> {
    Ok(match u.int_in_range(0..=7u8)? {
        0 => f64::NAN,
        1 => f64::INFINITY,
        2 => -1.0,
        3 => u.arbitrary()?,
        n => f64::from(n - 4) * 0.5 + f64::from(u.arbitrary::<u8>()?) / 256.0,
    })
}

fn duration(u: &mut Unstructured<'_>) -> Result<Duration> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => Duration::ZERO,
        1 => Duration::MAX,
        _ => Duration::from_millis(u.int_in_range(1..=1000)?),
    })
}

fn set(u: &mut Unstructured<'_>) -> Result<Vec<(String, u32)>> {
    let n = u.int_in_range(0..=10u8)?;
    (0..n).map(|_| Ok((id(u)?, weight(u)?))).collect()
}

fn backends(set: &[(String, u32)]) -> Vec<Backend<u32>> {
    set.iter()
        .enumerate()
        .map(|(i, (id, w))| Backend::new(id.as_str(), i as u32).with_weight(*w))
        .collect()
}

fn health(u: &mut Unstructured<'_>) -> Result<Health> {
    Ok(*u.choose(&[Health::Up, Health::Down, Health::Draining])?)
}

fn percent(x: f64) -> bool {
    (0.0..=100.0).contains(&x)
}

/// A health configuration (possibly invalid), its panic threshold if any, and whether it is
/// valid by the documented rules (the target's own oracle, not the crate's check).
fn health_config(
    u: &mut Unstructured<'_>,
    clock: &ManualClock,
) -> Result<(HealthConfig, Option<f64>, bool)> {
    let mut config = HealthConfig::new().clock(clock.clone());
    let mut valid = true;
    if u.arbitrary()? {
        let rules = OutlierDetection {
            consecutive_failures: u.int_in_range(0..=5)?,
            base_ejection_time: duration(u)?,
            max_ejection_time: duration(u)?,
            max_ejection_percent: float(u)? * 50.0,
        };
        valid &= rules.consecutive_failures >= 1
            && !rules.base_ejection_time.is_zero()
            && rules.max_ejection_time >= rules.base_ejection_time
            && percent(rules.max_ejection_percent);
        config = config.outlier_detection(rules);
    }
    let mut panic = None;
    if u.arbitrary()? {
        let share = float(u)?;
        valid &= (0.0..=1.0).contains(&share);
        config = config.panic_threshold(share);
        panic = Some(share);
    }
    if u.arbitrary()? {
        let ramp = SlowStart {
            window: duration(u)?,
            aggression: float(u)?,
            min_weight_percent: float(u)? * 50.0,
        };
        valid &= !ramp.window.is_zero()
            && ramp.aggression.is_finite()
            && ramp.aggression > 0.0
            && percent(ramp.min_weight_percent);
        config = config.slow_start(ramp);
    }
    Ok((config, panic, valid))
}

type Lb = Box<dyn Balancer<u32>>;

/// What limits a policy's sets beyond the ids: the ring's point budget, Maglev's table.
#[derive(Debug, Clone, Copy)]
enum Limit {
    None,
    RingPoints(u64),
    MaglevTable(u32),
}

impl Limit {
    fn fits(self, set: &[(String, u32)]) -> bool {
        match self {
            Limit::None => true,
            Limit::RingPoints(per_weight) => {
                let total: u128 = set
                    .iter()
                    .map(|(_, w)| u128::from(*w) * u128::from(per_weight))
                    .sum();
                total <= 1 << 23
            }
            Limit::MaglevTable(size) => set.len() <= size as usize,
        }
    }
}

fn is_prime(n: u32) -> bool {
    n >= 2 && (2..n).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

/// The set limit of a registry entry, by its documented configuration (tests/common/mod.rs
/// builds rings with 160 points per weight unit and Maglev with 1031 slots).
fn registry_limit(name: &str) -> Limit {
    if name.starts_with("HashRing") || name.starts_with("PresetRing::nginx") {
        Limit::RingPoints(160)
    } else if name.starts_with("Maglev") {
        Limit::MaglevTable(1031)
    } else {
        Limit::None
    }
}

/// Builds the chosen policy, then gives it the health rules through the trait. Also returns
/// whether the builder's own parameters are valid by the documented rules, and the policy's
/// set limit.
fn build(
    u: &mut Unstructured<'_>,
    initial: Vec<Backend<u32>>,
    health: HealthConfig,
) -> Result<(std::result::Result<Lb, Error>, bool, Limit)> {
    let seed: u64 = u.arbitrary()?;
    let factor = if u.arbitrary()? {
        Some(float(u)?)
    } else {
        None
    };
    let factor_ok = factor.map_or(true, |c| c.is_finite() && c >= 1.0);
    let choice = u.choose_index(POLICIES.len() + 4)?;
    let (lb, ok, limit): (std::result::Result<Lb, Error>, bool, Limit) =
        if let Some(policy) = POLICIES.get(choice) {
            ((policy.new)(initial, seed), true, registry_limit(policy.name))
        } else {
            match choice - POLICIES.len() {
                0 => {
                    let points = u.int_in_range(0..=200)?;
                    let mut b = HashRing::builder().seed(seed).points_per_weight(points);
                    if let Some(c) = factor {
                        b = b.load_factor(c);
                    }
                    let lb = b.build(initial).map(|lb| Box::new(lb) as Lb);
                    (lb, factor_ok && points >= 1, Limit::RingPoints(points.into()))
                }
                1 => {
                    let size = *u.choose(&[0u32, 2, 3, 7, 13, 1031, 4])?;
                    let mut b = Maglev::builder().seed(seed).table_size(size);
                    if let Some(c) = factor {
                        b = b.load_factor(c);
                    }
                    let lb = b.build(initial).map(|lb| Box::new(lb) as Lb);
                    (lb, factor_ok && is_prime(size), Limit::MaglevTable(size))
                }
                2 => {
                    let mut b = Rendezvous::builder().seed(seed);
                    if let Some(c) = factor {
                        b = b.load_factor(c);
                    }
                    let lb = b.build(initial).map(|lb| Box::new(lb) as Lb);
                    (lb, factor_ok, Limit::None)
                }
                _ => {
                    let nginx: bool = u.arbitrary()?;
                    let preset = if nginx { Preset::Nginx } else { Preset::Ketama };
                    let mut b = PresetRing::builder(preset).seed(seed);
                    if let Some(c) = factor {
                        b = b.load_factor(c);
                    }
                    let lb = b.build(initial).map(|lb| Box::new(lb) as Lb);
                    let limit = if nginx {
                        Limit::RingPoints(160)
                    } else {
                        Limit::None
                    };
                    (lb, factor_ok, limit)
                }
            }
        };
    let lb = lb.and_then(|lb| lb.set_health_config(health).map(|()| lb));
    Ok((lb, ok, limit))
}

/// The model: id -> (weight, health) of the current set.
type Model = BTreeMap<String, (u32, Health)>;

/// The error `update` must give for this set, by the documented rules, or `None` if only the
/// policy's own table may reject it.
fn expected_update_error(set: &[(String, u32)]) -> Option<Error> {
    if set.iter().any(|(id, _)| id.is_empty()) {
        return Some(Error::EmptyId);
    }
    let mut ids: Vec<&str> = set.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    ids.windows(2)
        .find(|w| w[0] == w[1])
        .map(|w| Error::DuplicateId(w[0].to_owned()))
}

fn check(lb: &dyn Balancer<u32>, model: &Model, held: &[Pick<u32>]) {
    let status = lb.status();
    let got: Model = status
        .iter()
        .map(|s| (s.id().to_owned(), (s.weight(), s.health())))
        .collect();
    assert_eq!(&got, model, "status differs from the model");
    assert!(
        status.windows(2).all(|w| w[0].id() < w[1].id()),
        "status not sorted"
    );
    let mut holding: BTreeMap<&str, usize> = BTreeMap::new();
    for p in held {
        *holding.entry(p.id()).or_default() += 1;
    }
    for s in &status {
        let want = holding.get(s.id()).copied().unwrap_or(0);
        assert_eq!(s.in_flight(), want, "in flight on {:?}", s.id());
    }
}

fn summary(lb: &dyn Balancer<u32>) -> Vec<(String, u32, usize, Health, bool)> {
    lb.status()
        .iter()
        .map(|s| {
            let id = s.id().to_owned();
            (id, s.weight(), s.in_flight(), s.health(), s.is_ejected())
        })
        .collect()
}

/// The ids eligible now, by the documented rules: up, weight above 0 and not ejected; or,
/// when fewer than `panic_threshold` of those that could serve (weight above 0, not
/// draining) are healthy, every one that could serve.
fn eligible(lb: &dyn Balancer<u32>, panic_threshold: Option<f64>) -> Vec<String> {
    let status = lb.status();
    let could = |s: &lbkit::Status| s.weight() > 0 && s.health() != Health::Draining;
    let n_could = status.iter().filter(|s| could(s)).count();
    let n_healthy = status.iter().filter(|s| s.is_eligible()).count();
    let panic = panic_threshold.is_some_and(|share| (n_healthy as f64) < share * n_could as f64);
    status
        .iter()
        .filter(|s| if panic { could(s) } else { s.is_eligible() })
        .map(|s| s.id().to_owned())
        .collect()
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let clock = ManualClock::new();
    let (rules, panic, health_ok) = health_config(u, &clock)?;
    let initial = set(u)?;
    let (lb, builder_ok, limit) = build(u, backends(&initial), rules)?;
    // The documented order of checks: builder parameters, ids, the policy's table, health.
    let expected = if !builder_ok {
        Some(None)
    } else if let Some(e) = expected_update_error(&initial) {
        Some(Some(e))
    } else if !limit.fits(&initial) || !health_ok {
        Some(None)
    } else {
        None
    };
    let lb = match (lb, expected) {
        (Ok(lb), None) => lb,
        (Err(e), Some(Some(want))) => {
            assert_eq!(e, want);
            return Ok(());
        }
        (Err(e), Some(None)) => {
            assert!(matches!(e, Error::InvalidConfig { .. }), "{e:?}");
            return Ok(());
        }
        (got, want) => panic!("construction gave {:?}, expected {want:?}", got.err()),
    };
    let mut model: Model = initial
        .iter()
        .map(|(id, w)| (id.clone(), (*w, Health::Up)))
        .collect();
    let mut held: Vec<Pick<u32>> = Vec::new();
    check(&*lb, &model, &held);
    for _ in 0..u.int_in_range(0..=255u16)? {
        if u.is_empty() {
            break;
        }
        match u.int_in_range(0..=9u8)? {
            0 => {
                let next = set(u)?;
                let before = summary(&*lb);
                match lb.update(backends(&next)) {
                    Ok(()) => {
                        assert!(expected_update_error(&next).is_none(), "{next:?} accepted");
                        assert!(limit.fits(&next), "{next:?} accepted over {limit:?}");
                        model = next
                            .iter()
                            .map(|(id, w)| {
                                let h = model.get(id).map_or(Health::Up, |m| m.1);
                                (id.clone(), (*w, h))
                            })
                            .collect();
                    }
                    Err(e) => {
                        match expected_update_error(&next) {
                            Some(want) => assert_eq!(e, want),
                            // The policy's own limits (Maglev table, ring points).
                            None => {
                                assert!(matches!(e, Error::InvalidConfig { .. }), "{e:?}");
                                assert!(!limit.fits(&next), "{next:?} rejected: {e:?}");
                            }
                        }
                        assert_eq!(summary(&*lb), before, "a failed update changed the status");
                    }
                }
            }
            1 => {
                let id = id(u)?;
                let h = health(u)?;
                let before = summary(&*lb);
                match lb.set_health(&id, h) {
                    Ok(()) => {
                        model
                            .get_mut(&id)
                            .expect("set_health of an unknown id succeeded")
                            .1 = h
                    }
                    Err(e) => {
                        assert_eq!(e, Error::UnknownId(id.clone()));
                        assert!(!model.contains_key(&id));
                        assert_eq!(
                            summary(&*lb),
                            before,
                            "a failed set_health changed the status"
                        );
                    }
                }
            }
            2 | 3 => {
                let key: Vec<u8> = u.arbitrary()?;
                let request = match u.int_in_range(0..=2u8)? {
                    0 => Request::new(),
                    1 => Request::with_key(&key),
                    _ => Request::with_hash(u.arbitrary()?),
                };
                let got = lb.pick(&request);
                let eligible = eligible(&*lb, panic);
                if let Some(p) = got {
                    let ok = eligible.iter().any(|e| e == p.id());
                    assert!(ok, "picked {:?}: {:?}", p.id(), lb.status());
                    held.push(p);
                } else {
                    assert!(
                        eligible.is_empty(),
                        "no pick, yet eligible: {:?}",
                        lb.status()
                    );
                }
            }
            4 => {
                let n = usize::from(u.int_in_range(0..=12u8)?);
                let got = lb.pick_n(&Request::with_hash(u.arbitrary()?), n);
                assert!(got.len() <= n);
                let mut ids: Vec<&str> = got.iter().map(|p| p.id()).collect();
                ids.sort_unstable();
                ids.dedup();
                assert_eq!(ids.len(), got.len(), "pick_n repeated a backend");
                let eligible = eligible(&*lb, panic);
                for p in &got {
                    assert!(
                        eligible.iter().any(|e| e == p.id()),
                        "pick_n gave {:?}",
                        p.id()
                    );
                }
                assert_eq!(
                    got.len(),
                    n.min(eligible.len()),
                    "pick_n gave too few: {:?}",
                    lb.status()
                );
                held.extend(got);
            }
            5 | 6 => {
                if !held.is_empty() {
                    let i = u.choose_index(held.len())?;
                    let p = held.swap_remove(i);
                    match u.int_in_range(0..=2u8)? {
                        0 => drop(p),
                        1 => p.success(duration(u)?),
                        _ => p.failure(),
                    }
                }
            }
            7 => clock.advance(duration(u)?),
            8 => {
                // Failures in a burst, to reach ejection thresholds quickly.
                for _ in 0..u.int_in_range(0..=8u8)? {
                    if let Some(p) = lb.pick(&Request::new()) {
                        p.failure();
                    }
                }
            }
            _ => held.clear(),
        }
        check(&*lb, &model, &held);
    }
    drop(held);
    assert!(
        lb.status().iter().all(|s| s.in_flight() == 0),
        "in flight after all dropped"
    );
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = run(&mut u);
});
