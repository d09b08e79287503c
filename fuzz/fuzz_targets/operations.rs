//! Arbitrary operation sequences against every policy, checked against a model of the
//! documented rules that the target keeps itself (it never asks the crate who is eligible).
//!
//! The input chooses a policy of the registry every test suite shares (tests/common/mod.rs:
//! every policy, preset and bounded variant), or one of the builders with fuzzed parameters
//! (load factor, Maglev table size, ring points), a seed, health rules (outlier detection,
//! panic threshold, slow start, on a `ManualClock`), an initial set, then up to 256
//! operations: `update` with arbitrary ids, weights and health, `set_health`, `pick`,
//! `pick_n`, dropping a held pick, reporting success (with a latency) or failure, advancing
//! the clock, bursts of failures, `set_health_config` with other rules (on the same clock,
//! or on a new one), and load reports with any `f64` (typed errors for bad values and unknown
//! ids, and no change `status()` shows).
//!
//! # The model
//!
//! Per backend id: weight, health, failures in a row, whether and until when it is ejected,
//! its ejection multiplier, when it last returned from an ejection, and when a slow-start ramp
//! began; the clock; the rules in force. Each rule restated from the docs (`lbkit::health`,
//! `lbkit::docs::passive_health`, `OutlierDetection`, `SlowStart`, `Balancer`, `lbkit::hash`
//! "Bounded loads"), not from the code:
//! * a failure adds one to the run, a success resets it, a drop does neither; a report on a
//!   pick whose id is no longer in the set changes nothing the model keeps;
//! * with outlier detection, a backend whose run reaches `consecutive_failures` is ejected for
//!   `base_ejection_time x n`, capped at `max_ejection_time`, where n is its previous
//!   multiplier lowered by one for every whole `base_ejection_time` since it last returned,
//!   plus one; the ejection starts the run afresh; it returns when the time is up (the run
//!   afresh again, the return time remembered for the decay, a ramp started under slow start);
//! * never more ejected at once than `max_ejection_percent` of the set, rounded down (at
//!   least one): the cap is computed exactly, in integers, from the bits of the percentage;
//!   a backend held back by the cap is ejected as soon as there is room; when more could go
//!   than there is room for, which ones is not documented, so the target checks how many,
//!   and that they are among those that could, and then follows the crate's choice;
//! * outlier detection switched off, or a new clock (`HealthConfig::clock` called again),
//!   forgets every ejection and multiplier; a new clock, or slow start switched off, ends
//!   every ramp; the same clock (a clone of the configuration in force) keeps them;
//! * a backend that joins by `update` (also an id that comes back) is new: `Up` unless given
//!   a health, no run, never ejected, ramping under slow start; one that stays keeps its
//!   health unless given one;
//! * eligible: `Up`, weight above 0, not ejected; with a panic threshold, when fewer than 5
//!   in 7 of the backends that could serve (weight above 0, not draining) are healthy
//!   (health below 100 at the default overprovisioning factor) and fewer than that share of
//!   them are, every one that could serve;
//! * bounded loads: no pick goes to a backend whose in-flight count is at or above
//!   `ceil(c x (total + 1) x w_i / W)`, `c` quantised to `ceil(c x 2^32) / 2^32`, checked
//!   exactly in integers while no backend is ramping (under a ramp the weights are the
//!   crate's own rounding of the formula, so only eligibility is checked); for the later picks
//!   of a `pick_n`, only when some backend not yet chosen had room (the documented exception).
//!
//! Checked after every operation and at every pick:
//! * nothing panics (libFuzzer reports a panic as a crash);
//! * a pick, and every `pick_n` member, is in the model's eligible set; `pick` gives `None`
//!   only when that set is empty; `pick_n` gives `min(n, eligible)` distinct backends;
//! * `status()` agrees with the model, as a second, independent check: the ids in order,
//!   weights, health, `is_ejected`, and in-flight counts equal to the picks the target holds
//!   on each id (held picks of removed backends count again if the id comes back while they
//!   are held);
//! * every error is typed as the documented rules predict (the target's own check of each
//!   value), and leaves `status()` unchanged.
//!
//! Not modelled: which eligible backend a policy chooses (random, hashed, or in turn: the
//! policy suites in tests/ check those), latency estimates, and slow-start weights beyond
//! "ramping or not"; sets that would make a ring of more than 2^16 points are skipped (their
//! builds take seconds; fuzz_targets/parameters.rs covers ring sizes). Time moves only by
//! `ManualClock::advance`, by at most an hour a step,
//! and every randomised policy is seeded, so a run replays exactly.
#![no_main]

use std::collections::BTreeMap;
use std::time::Duration;

use arbitrary::{Result, Unstructured};
use lbkit::{
    Backend, Balancer, Error, Failure, HashRing, Health, HealthConfig, Maglev, ManualClock,
    OutlierDetection, Pick, Preset, PresetRing, Rendezvous, Request, SlowStart, SoftHealth,
};
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/common/mod.rs"]
mod common;
use common::POLICIES;

/// Ids are mostly from a small alphabet, so that updates overlap and `set_health` hits.
const IDS: [&str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];

/// The kinds of failure a report can be: two counted by the default classes, one not.
const KINDS: [Failure; 3] = [
    Failure::LocalOrigin,
    Failure::Error,
    Failure::Overloaded { retry_after: None },
];

/// Whether the default `FailureClasses` count this kind (documented: all but overloads).
fn counted(kind: Failure) -> bool {
    !matches!(kind, Failure::Overloaded { .. })
}
fn id(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(match u.int_in_range(0..=15u8)? {
        0 => String::new(),
        1 => u.arbitrary::<String>()?.chars().take(64).collect(),
        n => IDS[usize::from(n) % IDS.len()].to_owned(),
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

/// A rule's duration: zero, the largest, or up to a second.
fn duration(u: &mut Unstructured<'_>) -> Result<Duration> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => Duration::ZERO,
        1 => Duration::MAX,
        _ => Duration::from_millis(u.int_in_range(1..=1000)?),
    })
}

/// A step of the clock: up to a second, or up to an hour (never near the clock's 584-year
/// saturation, where the documented rules say nothing).
fn step(u: &mut Unstructured<'_>) -> Result<Duration> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => Duration::ZERO,
        1 => Duration::from_secs(u.int_in_range(1..=3600)?),
        _ => Duration::from_millis(u.int_in_range(1..=1000)?),
    })
}

fn health(u: &mut Unstructured<'_>) -> Result<Health> {
    Ok(*u.choose(&[Health::Up, Health::Down, Health::Draining])?)
}

/// A backend set: id, weight, and the health given with it (`Backend::with_health`), if any.
type Set = Vec<(String, u32, Option<Health>)>;

fn set(u: &mut Unstructured<'_>) -> Result<Set> {
    let n = u.int_in_range(0..=10u8)?;
    (0..n)
        .map(|_| {
            // One byte for most backends: the id, the weight, whether a health is given.
            let b: u8 = u.arbitrary()?;
            let id = match b & 15 {
                0 => String::new(),
                1 => u.arbitrary::<String>()?.chars().take(64).collect(),
                n => IDS[usize::from(n) % IDS.len()].to_owned(),
            };
            let weight = match (b >> 4) & 7 {
                0 => 0,
                1 => u32::MAX,
                2 => u.arbitrary()?,
                n => u32::from(n - 2),
            };
            let given = if b >> 7 == 1 { Some(health(u)?) } else { None };
            Ok((id, weight, given))
        })
        .collect()
}

fn backends(set: &Set) -> Vec<Backend<u32>> {
    set.iter()
        .enumerate()
        .map(|(i, (id, w, given))| {
            let b = Backend::new(id.as_str(), i as u32).with_weight(*w);
            match given {
                Some(h) => b.with_health(*h),
                None => b,
            }
        })
        .collect()
}

fn percent(x: f64) -> bool {
    (0.0..=100.0).contains(&x)
}

/// The rules in force, as the model sees them.
#[derive(Debug, Clone, Copy, Default)]
struct Rules {
    detection: Option<OutlierDetection>,
    panic: Option<f64>,
    slow_start: Option<SlowStart>,
    soft: Option<SoftHealth>,
}

/// Percentages of the set that make the cap's rounding matter for small sets.
const PERCENTS: [f64; 16] = [
    50.0, 10.0, 15.0, 20.0, 25.0, 30.0, 34.0, 40.0, 60.0, 75.0, 100.0, 0.0, 5.0, 12.5, 33.4, 66.7,
];

/// Draws rules (possibly invalid), and whether they are valid by the documented rules (the
/// target's own oracle, not the crate's check). Each rule is either valid and cheap to draw
/// (a byte or two, so that short inputs reach ejections), or drawn value by value, invalid
/// ones included.
fn rules(u: &mut Unstructured<'_>) -> Result<(Rules, bool)> {
    let mut r = Rules::default();
    let mut valid = true;
    match u.int_in_range(0..=3u8)? {
        0 => {
            let b: u8 = u.arbitrary()?;
            let base = Duration::from_millis([1, 10, 100, 1000][usize::from(b >> 6)]);
            r.detection = Some(OutlierDetection {
                consecutive_failures: u32::from(b & 3).max(1),
                base_ejection_time: base,
                max_ejection_time: base * [1, 3, 10, 300][usize::from(u.arbitrary::<u8>()? & 3)],
                max_ejection_percent: PERCENTS[usize::from((b >> 2) & 15)],
                ..OutlierDetection::default()
            });
        }
        1 => {
            let o = OutlierDetection {
                consecutive_failures: u.int_in_range(0..=5)?,
                base_ejection_time: duration(u)?,
                max_ejection_time: duration(u)?,
                max_ejection_percent: float(u)? * 50.0,
                ..OutlierDetection::default()
            };
            valid &= o.consecutive_failures >= 1
                && !o.base_ejection_time.is_zero()
                && o.max_ejection_time >= o.base_ejection_time
                && percent(o.max_ejection_percent);
            r.detection = Some(o);
        }
        _ => {}
    }
    match u.int_in_range(0..=3u8)? {
        0 => {}
        1 => {
            let share = float(u)?;
            valid &= (0.0..=1.0).contains(&share);
            r.panic = Some(share);
        }
        2 => r.panic = Some(0.5),
        _ => r.panic = Some(1.0),
    }
    match u.int_in_range(0..=3u8)? {
        0 => {}
        1 => {
            let ramp = SlowStart {
                window: duration(u)?,
                aggression: float(u)?,
                min_weight_percent: float(u)? * 50.0,
            };
            valid &= !ramp.window.is_zero()
                && ramp.aggression.is_finite()
                && ramp.aggression > 0.0
                && percent(ramp.min_weight_percent);
            r.slow_start = Some(ramp);
        }
        2 => r.slow_start = Some(SlowStart::new(Duration::from_millis(100))),
        _ => r.slow_start = Some(SlowStart::new(Duration::from_secs(1))),
    }
    // Soft health changes weights only, never who is eligible: the model's eligibility is
    // unchanged by it, and the accounting must hold through its sweeps.
    match u.int_in_range(0..=2u8)? {
        0 => {}
        1 => {
            let soft = SoftHealth {
                interval: duration(u)?,
                request_volume: u.int_in_range(0..=3)?,
                minimum_hosts: u.int_in_range(0..=3)?,
                floor: float(u)?,
                latency_tolerance: float(u)? * 2.0,
                failure_tolerance: float(u)? / 2.0,
            };
            valid &= !soft.interval.is_zero()
                && soft.request_volume >= 1
                && soft.minimum_hosts >= 1
                && soft.floor > 0.0
                && soft.floor <= 1.0
                && soft.latency_tolerance.is_finite()
                && soft.latency_tolerance >= 1.0
                && (0.0..=1.0).contains(&soft.failure_tolerance);
            r.soft = Some(soft);
        }
        _ => {
            r.soft = Some(SoftHealth {
                interval: Duration::from_millis(100),
                request_volume: 2,
                minimum_hosts: 2,
                ..SoftHealth::default()
            })
        }
    }
    Ok((r, valid))
}

/// Sets `rules` on `config` (which keeps its clock).
fn apply(mut config: HealthConfig, rules: &Rules) -> HealthConfig {
    if let Some(o) = rules.detection {
        config = config.outlier_detection(o);
    }
    if let Some(share) = rules.panic {
        config = config.panic_threshold(share);
    }
    if let Some(s) = rules.slow_start {
        config = config.slow_start(s);
    }
    if let Some(s) = rules.soft {
        config = config.soft_health(s);
    }
    config
}

type Lb = Box<dyn Balancer<u32>>;

/// What limits a policy's sets beyond the ids: nginx's ring point budget (160 points per
/// weight unit, at most `RING_POINT_LIMIT`), Maglev's table. A `HashRing` (its points per
/// weight unit given) takes any set of ten: its size scales to the weights' ratios.
#[derive(Debug, Clone, Copy)]
enum Limit {
    None,
    HashRing(u32),
    NginxPoints,
    MaglevTable(u32),
}

impl Limit {
    fn fits(self, set: &Set) -> bool {
        match self {
            Limit::None | Limit::HashRing(_) => true,
            Limit::NginxPoints => {
                let total: u128 = set.iter().map(|(_, w, _)| u128::from(*w) * 160).sum();
                total <= 1 << 23
            }
            Limit::MaglevTable(size) => set.len() <= size as usize,
        }
    }

    /// Whether the set makes a ring of more than 2^16 points (up to 2^23: seconds per build
    /// in this build, which would drown the search): valid, but not this target's subject
    /// (fuzz_targets/parameters.rs takes ring sizes). Counted as hash::ring, "Ring size",
    /// documents: `round(p x w / w_min)` each; nginx: 160 x w each.
    fn slow(self, set: &Set) -> bool {
        let weights = || {
            set.iter()
                .map(|(_, w, _)| u128::from(*w))
                .filter(|&w| w > 0)
        };
        let points: u128 = match self {
            Limit::HashRing(p) => {
                let lightest = weights().min().unwrap_or(1);
                let p = u128::from(p);
                weights()
                    .map(|w| (2 * p * w + lightest) / (2 * lightest))
                    .sum()
            }
            Limit::NginxPoints => weights().map(|w| w * 160).sum::<u128>().min(1 << 23),
            Limit::None | Limit::MaglevTable(_) => 0,
        };
        points > 1 << 16
    }
}

fn is_prime(n: u32) -> bool {
    n >= 2 && (2..n).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

/// The set limit of a registry entry, by its documented configuration (tests/common/mod.rs
/// builds Maglev with 1031 slots); a HashRing takes any set of ten (its size scales down).
fn registry_limit(name: &str) -> Limit {
    if name.starts_with("PresetRing::nginx") {
        Limit::NginxPoints
    } else if name.starts_with("HashRing") {
        Limit::HashRing(160)
    } else if name.starts_with("Maglev") {
        Limit::MaglevTable(1031)
    } else {
        Limit::None
    }
}

/// A built policy: the balancer (or its error), whether the builder's own parameters are
/// valid by the documented rules, its set limit, and its load factor if bounded.
type Built = (std::result::Result<Lb, Error>, bool, Limit, Option<f64>);

/// Builds the chosen policy over `set`, then gives it the health rules through the trait.
/// `None` if the set would make a ring too large to build quickly (see [`Limit::slow`]).
fn build(u: &mut Unstructured<'_>, set: &Set, health: HealthConfig) -> Result<Option<Built>> {
    let initial = backends(set);
    // A byte of seed: which seed matters little, the bytes matter to short inputs.
    let seed = u64::from(u.arbitrary::<u8>()?);
    let factor = if u.arbitrary()? {
        Some(float(u)?)
    } else {
        None
    };
    let factor_ok = factor.map_or(true, |c| c.is_finite() && c >= 1.0);
    let choice = u.choose_index(POLICIES.len() + 4)?;
    let (lb, ok, limit, bound): Built = if let Some(policy) = POLICIES.get(choice) {
        // The registry's bounded variants use c = 1.25.
        let bound = policy.name.ends_with("+bound").then_some(1.25);
        if registry_limit(policy.name).slow(set) {
            return Ok(None);
        }
        (
            (policy.new)(initial, seed),
            true,
            registry_limit(policy.name),
            bound,
        )
    } else {
        match choice - POLICIES.len() {
            0 => {
                let points = u.int_in_range(0..=200)?;
                if Limit::HashRing(points).slow(set) {
                    return Ok(None);
                }
                let mut b = HashRing::builder().seed(seed).points_per_weight(points);
                if let Some(c) = factor {
                    b = b.load_factor(c);
                }
                let lb = b.build(initial).map(|lb| Box::new(lb) as Lb);
                (
                    lb,
                    factor_ok && points >= 1,
                    Limit::HashRing(points),
                    factor,
                )
            }
            1 => {
                let size = *u.choose(&[0u32, 2, 3, 7, 13, 1031, 4])?;
                let mut b = Maglev::builder().seed(seed).table_size(size);
                if let Some(c) = factor {
                    b = b.load_factor(c);
                }
                let lb = b.build(initial).map(|lb| Box::new(lb) as Lb);
                (
                    lb,
                    factor_ok && is_prime(size),
                    Limit::MaglevTable(size),
                    factor,
                )
            }
            2 => {
                let mut b = Rendezvous::builder().seed(seed);
                if let Some(c) = factor {
                    b = b.load_factor(c);
                }
                let lb = b.build(initial).map(|lb| Box::new(lb) as Lb);
                (lb, factor_ok, Limit::None, factor)
            }
            _ => {
                let nginx: bool = u.arbitrary()?;
                if nginx && Limit::NginxPoints.slow(set) {
                    return Ok(None);
                }
                let preset = if nginx { Preset::Nginx } else { Preset::Ketama };
                let mut b = PresetRing::builder(preset).seed(seed);
                if let Some(c) = factor {
                    b = b.load_factor(c);
                }
                let lb = b.build(initial).map(|lb| Box::new(lb) as Lb);
                let limit = if nginx {
                    Limit::NginxPoints
                } else {
                    Limit::None
                };
                (lb, factor_ok, limit, factor)
            }
        }
    };
    let lb = lb.and_then(|lb| lb.set_health_config(health).map(|()| lb));
    Ok(Some((lb, ok, limit, bound)))
}

/// The error `update` must give for this set, by the documented rules, or `None` if only the
/// policy's own table may reject it.
fn expected_update_error(set: &Set) -> Option<Error> {
    if set.iter().any(|(id, _, _)| id.is_empty()) {
        return Some(Error::EmptyId);
    }
    let mut ids: Vec<&str> = set.iter().map(|(id, _, _)| id.as_str()).collect();
    ids.sort_unstable();
    ids.windows(2)
        .find(|w| w[0] == w[1])
        .map(|w| Error::DuplicateId(w[0].to_owned()))
}

/// Nanoseconds, as the model counts time (wide enough that nothing saturates).
fn ns(d: Duration) -> u128 {
    d.as_nanos()
}

/// The ejection cap for `len` backends at `percent` percent: the largest k with
/// k <= len x percent / 100, at least 1. Exact: `percent` is a finite f64 in [0, 100], that is
/// m x 2^e with integers m and e, and k <= len x m x 2^e / 100 is decided in integers.
fn ejection_cap(len: usize, percent: f64) -> usize {
    let bits = percent.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i32;
    let fraction = u128::from(bits & ((1 << 52) - 1));
    let (mantissa, e) = if exponent == 0 {
        (fraction, -1074)
    } else {
        (fraction | 1 << 52, exponent - 1075)
    };
    let numerator = len as u128 * mantissa; // len x percent = numerator x 2^e
    let floor = if e >= 0 {
        (numerator << e) / 100 // percent <= 100, so e is small here
    } else if -e >= 120 {
        0 // numerator < 2^57: below 100 x 2^120 / 2^57 the share is under one backend
    } else {
        numerator / (100u128 << -e)
    };
    (floor as usize).max(1)
}

/// What the model keeps per backend id.
#[derive(Debug, Clone)]
struct Node {
    weight: u32,
    health: Health,
    /// Failures in a row.
    failures: u32,
    /// The end of the current ejection.
    ejected_until: Option<u128>,
    /// The ejection multiplier: n of the last ejection.
    multiplier: u32,
    /// When it last returned from an ejection.
    returned_at: Option<u128>,
    /// When a slow-start ramp began (or may have begun), if one did.
    ramp_from: Option<u128>,
}

impl Node {
    fn new(weight: u32, health: Health, ramp_from: Option<u128>) -> Self {
        Node {
            weight,
            health,
            failures: 0,
            ejected_until: None,
            multiplier: 0,
            returned_at: None,
            ramp_from,
        }
    }

    fn could_serve(&self) -> bool {
        self.weight > 0 && self.health != Health::Draining
    }

    fn healthy(&self) -> bool {
        self.could_serve() && self.health == Health::Up && self.ejected_until.is_none()
    }
}

/// The model of one balancer.
struct Model {
    now: u128,
    rules: Rules,
    nodes: BTreeMap<String, Node>,
    /// The load factor, for bounded variants.
    bound: Option<f64>,
}

impl Model {
    /// Applies what the clock and the reports made due: returns, then ejections within the
    /// cap. When more backends could be ejected than there is room for, which ones is not
    /// documented: the crate's choice is read from `status()` and checked for its number and
    /// candidates, then followed.
    fn settle(&mut self, lb: &dyn Balancer<u32>) {
        let now = self.now;
        let ramp = self.rules.slow_start.is_some();
        for node in self.nodes.values_mut() {
            if node.ejected_until.is_some_and(|until| until <= now) {
                node.returned_at = node.ejected_until.take();
                node.failures = 0;
                if ramp {
                    node.ramp_from = Some(now);
                }
            }
        }
        let Some(rules) = self.rules.detection else {
            return;
        };
        let cap = ejection_cap(self.nodes.len(), rules.max_ejection_percent);
        let ejected = self
            .nodes
            .values()
            .filter(|n| n.ejected_until.is_some())
            .count();
        let room = cap.saturating_sub(ejected);
        let candidates: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.ejected_until.is_none() && n.failures >= rules.consecutive_failures)
            .map(|(id, _)| id.clone())
            .collect();
        let chosen = if candidates.len() <= room {
            candidates
        } else {
            let now_ejected: Vec<String> = lb
                .status()
                .iter()
                .filter(|s| s.is_ejected())
                .map(|s| s.id().to_owned())
                .filter(|id| {
                    self.nodes
                        .get(id)
                        .is_some_and(|n| n.ejected_until.is_none())
                })
                .collect();
            assert_eq!(
                now_ejected.len(),
                room,
                "cap {cap}, {ejected} ejected, room for {room} of {candidates:?}, crate ejected {now_ejected:?}"
            );
            for id in &now_ejected {
                assert!(candidates.contains(id), "{id:?} ejected, not a candidate");
            }
            now_ejected
        };
        let base = ns(rules.base_ejection_time);
        let max = ns(rules.max_ejection_time);
        for id in chosen {
            let node = self.nodes.get_mut(&id).expect("a candidate is a member");
            let served = now - node.returned_at.unwrap_or(0);
            let decay = u32::try_from(served / base).unwrap_or(u32::MAX);
            let n = node.multiplier.saturating_sub(decay).saturating_add(1);
            node.multiplier = n;
            node.ejected_until = Some(now + (base * u128::from(n)).min(max));
            node.failures = 0;
        }
    }

    fn eligible(&self) -> Vec<&str> {
        // One priority level, no degraded backend: panic is considered only while the
        // level's health, min(100, 140 x healthy / could) at the default overprovisioning
        // factor (draining backends and those of weight 0 are excluded), is below 100, and
        // then when the healthy share of those that could serve is below the threshold (in
        // parts per million).
        let total = self.nodes.values().filter(|n| n.could_serve()).count() as u128;
        let healthy = self.nodes.values().filter(|n| n.healthy()).count() as u128;
        let panic = self.rules.panic.is_some_and(|share| {
            let threshold = (share * 1_000_000.0).round() as u128;
            140 * healthy < 100 * total && healthy * 1_000_000 < threshold * total
        });
        self.nodes
            .iter()
            .filter(|(_, n)| if panic { n.could_serve() } else { n.healthy() })
            .map(|(id, _)| id.as_str())
            .collect()
    }

    /// Whether some eligible backend may be ramping: then the weights bounded loads use are
    /// the crate's rounding of the ramp, and the capacity is not checked exactly.
    fn ramping(&self, eligible: &[&str]) -> bool {
        let Some(s) = self.rules.slow_start else {
            return false;
        };
        eligible.iter().any(|id| {
            self.nodes[*id]
                .ramp_from
                .is_some_and(|from| self.now < from.saturating_add(ns(s.window)))
        })
    }

    /// Whether `id` has room under bounded loads for a request of `cost`, with `in_flight` the
    /// work held per id (a `pick_n`'s earlier picks included).
    fn has_room(
        &self,
        id: &str,
        eligible: &[&str],
        in_flight: &BTreeMap<String, usize>,
        cost: u32,
    ) -> bool {
        let Some(c) = self.bound else {
            return true;
        };
        // c as documented: ceil(c x 2^32) / 2^32 (saturating for huge factors).
        let c = (c * 4_294_967_296.0).ceil() as u64;
        let held = |id: &str| in_flight.get(id).copied().unwrap_or(0) as u128;
        let total: u128 = eligible.iter().map(|e| held(e)).sum();
        let w_total: u128 = eligible
            .iter()
            .map(|e| u128::from(self.nodes[*e].weight))
            .sum();
        let w = u128::from(self.nodes[id].weight);
        // Room when (held + cost - 1) x W x 2^32 < ceil(c x 2^32) x (total + cost) x w: the
        // work held plus the request's at most ceil(c x (total + cost) x w / W).
        let cost = u128::from(cost);
        (held(id) + cost - 1) * w_total * (1 << 32) < u128::from(c) * (total + cost) * w
    }
}

/// Work the target's picks hold, by id (their costs).
fn holding(held: &[Pick<u32>]) -> BTreeMap<String, usize> {
    let mut by_id = BTreeMap::new();
    for p in held {
        *by_id.entry(p.id().to_owned()).or_default() += p.cost() as usize;
    }
    by_id
}

/// `status()` against the model: ids in order, weights, health, ejections, in-flight counts;
/// after the members, the removed backends that still hold picks, by id, with those picks.
fn check(lb: &dyn Balancer<u32>, model: &Model, held: &[Pick<u32>]) {
    let all = lb.status();
    let in_flight = holding(held);
    let (status, removed): (Vec<_>, Vec<_>) = all.iter().partition(|s| !s.is_removed());
    let ids: Vec<&str> = status.iter().map(|s| s.id()).collect();
    let want: Vec<&str> = model.nodes.keys().map(String::as_str).collect();
    assert_eq!(ids, want, "status lists other ids than the model");
    let gone: Vec<(&str, usize)> = removed.iter().map(|s| (s.id(), s.in_flight())).collect();
    let want_gone: Vec<(&str, usize)> = in_flight
        .iter()
        .filter(|(id, _)| !model.nodes.contains_key(*id))
        .map(|(id, n)| (id.as_str(), *n))
        .collect();
    assert_eq!(
        gone, want_gone,
        "removed backends listed other than those holding picks"
    );
    let members = all.len() - removed.len();
    assert!(
        all[members..].iter().all(|s| s.is_removed()),
        "removed backends listed before a member"
    );
    for s in status {
        let node = &model.nodes[s.id()];
        let line = format!("{:?} at {} ns: {node:?}, {s:?}", s.id(), model.now);
        assert_eq!(s.weight(), node.weight, "weight of {line}");
        assert_eq!(s.health(), node.health, "health of {line}");
        assert_eq!(
            s.is_ejected(),
            node.ejected_until.is_some(),
            "ejection of {line}"
        );
        let want = in_flight.get(s.id()).copied().unwrap_or(0);
        assert_eq!(s.in_flight(), want, "in flight on {line}");
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

/// One pick, checked against the model (settled first, as every pick applies what is due).
fn pick(
    lb: &dyn Balancer<u32>,
    model: &mut Model,
    held: &mut Vec<Pick<u32>>,
    request: &Request<'_>,
) {
    model.settle(lb);
    let eligible = model.eligible();
    let in_flight = holding(held);
    let got = lb.pick(request);
    match got {
        Some(p) => {
            assert!(
                eligible.contains(&p.id()),
                "picked {:?}, eligible {eligible:?}",
                p.id()
            );
            // When no eligible backend has room for the request's cost (a costed request
            // can exceed every capacity on an idle set), bounded loads fall back to the key's
            // first eligible backend: only a pick that passed over room elsewhere is wrong.
            let any_room = eligible
                .iter()
                .any(|e| model.has_room(e, &eligible, &in_flight, request.work()));
            if !model.ramping(&eligible) && any_room {
                assert!(
                    model.has_room(p.id(), &eligible, &in_flight, request.work()),
                    "picked {:?} over its capacity: {in_flight:?} on {eligible:?}",
                    p.id()
                );
            }
            held.push(p);
        }
        None => assert!(eligible.is_empty(), "no pick, yet eligible: {eligible:?}"),
    }
}

/// Reports on a held pick: the model counts it if the id is in the set.
fn report(model: &mut Model, id: &str, failed: bool) {
    if let Some(node) = model.nodes.get_mut(id) {
        node.failures = if failed {
            node.failures.saturating_add(1)
        } else {
            0
        };
    }
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let clock = ManualClock::new();
    let (initial_rules, rules_ok) = rules(u)?;
    let mut config = apply(HealthConfig::new().clock(clock.clone()), &initial_rules);
    let initial = set(u)?;
    let Some((lb, builder_ok, limit, bound)) = build(u, &initial, config.clone())? else {
        return Ok(());
    };
    // The documented order of checks: builder parameters, ids, the policy's table, health.
    let expected = if !builder_ok {
        Some(None)
    } else if let Some(e) = expected_update_error(&initial) {
        Some(Some(e))
    } else if !limit.fits(&initial) || !rules_ok {
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
    let lb = &*lb;
    // The initial set does not ramp.
    let mut model = Model {
        now: 0,
        rules: initial_rules,
        nodes: initial
            .iter()
            .map(|(id, w, given)| (id.clone(), Node::new(*w, given.unwrap_or(Health::Up), None)))
            .collect(),
        bound,
    };
    let mut held: Vec<Pick<u32>> = Vec::new();
    model.settle(lb);
    check(lb, &model, &held);
    for _ in 0..u.int_in_range(0..=255u16)? {
        if u.is_empty() {
            break;
        }
        match u.int_in_range(0..=11u8)? {
            11 => {
                // A load report: any f64 (NaN, infinite, negative included) in each field, for
                // any id, out of band or on a pick held. The report is checked first (its
                // fields in order), then the id; either way nothing `status()` shows changes.
                let id = id(u)?;
                // Each field given or not (so that whole valid reports are common).
                let fields: [(&str, Option<f64>); 5] = [
                    ("utilization", u.arbitrary()?),
                    ("cpu_utilization", u.arbitrary()?),
                    ("qps", u.arbitrary()?),
                    ("errors_per_second", u.arbitrary()?),
                    ("load", u.arbitrary()?),
                ];
                let mut report = lbkit::LoadReport::new();
                for (field, value) in fields {
                    if let Some(v) = value {
                        report = match field {
                            "utilization" => report.utilization(v),
                            "cpu_utilization" => report.cpu_utilization(v),
                            "qps" => report.qps(v),
                            "errors_per_second" => report.errors_per_second(v),
                            _ => report.load(v),
                        };
                    }
                }
                let bad = fields
                    .iter()
                    .find(|(_, v)| v.is_some_and(|v| !(v.is_finite() && v >= 0.0)))
                    .map(|(field, _)| *field);
                let before = summary(lb);
                let in_band = !held.is_empty() && u.arbitrary()?;
                let got = if in_band {
                    let at = u.choose_index(held.len())?;
                    held[at].report_load(report)
                } else {
                    lb.report_load(&id, report)
                };
                match bad {
                    Some(bad) => assert!(
                        matches!(got, Err(Error::InvalidReport { field, .. }) if field == bad),
                        "{fields:?}: {got:?}"
                    ),
                    None if in_band || model.nodes.contains_key(&id) => assert_eq!(got, Ok(())),
                    None => assert_eq!(got, Err(Error::UnknownId(id.clone()))),
                }
                assert_eq!(summary(lb), before, "a load report changed the status");
            }
            0 => {
                let next = set(u)?;
                if limit.slow(&next) {
                    continue;
                }
                let before = summary(lb);
                match lb.update(backends(&next)) {
                    Ok(()) => {
                        assert!(expected_update_error(&next).is_none(), "{next:?} accepted");
                        assert!(limit.fits(&next), "{next:?} accepted over {limit:?}");
                        let ramp = model.rules.slow_start.map(|_| model.now);
                        model.nodes = next
                            .iter()
                            .map(|(id, w, given)| {
                                let node = match model.nodes.remove(id) {
                                    Some(kept) => Node {
                                        weight: *w,
                                        health: given.unwrap_or(kept.health),
                                        ..kept
                                    },
                                    None => Node::new(*w, given.unwrap_or(Health::Up), ramp),
                                };
                                (id.clone(), node)
                            })
                            .collect();
                    }
                    Err(e) => {
                        match expected_update_error(&next) {
                            Some(want) => assert_eq!(e, want),
                            // The policy's own limits (Maglev table, nginx's ring points).
                            None => {
                                assert!(matches!(e, Error::InvalidConfig { .. }), "{e:?}");
                                assert!(!limit.fits(&next), "{next:?} rejected: {e:?}");
                            }
                        }
                        assert_eq!(summary(lb), before, "a failed update changed the status");
                    }
                }
            }
            1 => {
                let id = id(u)?;
                let h = health(u)?;
                let before = summary(lb);
                match lb.set_health(&id, h) {
                    Ok(()) => {
                        model
                            .nodes
                            .get_mut(&id)
                            .expect("set_health of an unknown id succeeded")
                            .health = h
                    }
                    Err(e) => {
                        assert_eq!(e, Error::UnknownId(id.clone()));
                        assert!(!model.nodes.contains_key(&id));
                        assert_eq!(
                            summary(lb),
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
                // Mostly the default cost, sometimes more work (a pick holds its cost).
                let cost = match u.int_in_range(0..=3u8)? {
                    0 => u32::from(u.int_in_range(0..=9u8)?),
                    _ => 1,
                };
                let request = request.cost(cost);
                assert_eq!(request.work(), cost.max(1));
                pick(lb, &mut model, &mut held, &request);
            }
            4 => {
                let n = usize::from(u.int_in_range(0..=12u8)?);
                model.settle(lb);
                let eligible = model.eligible();
                let mut in_flight = holding(&held);
                let cost = u32::from(u.int_in_range(1..=3u8)?);
                let got = lb.pick_n(&Request::with_hash(u.arbitrary()?).cost(cost), n);
                assert_eq!(
                    got.len(),
                    n.min(eligible.len()),
                    "pick_n gave {} of {n}, eligible {eligible:?}",
                    got.len()
                );
                let ramping = model.ramping(&eligible);
                let mut chosen: Vec<&str> = Vec::new();
                for p in &got {
                    let id = p.id();
                    assert!(
                        eligible.contains(&id),
                        "pick_n gave {id:?}, eligible {eligible:?}"
                    );
                    assert!(!chosen.contains(&id), "pick_n repeated {id:?}");
                    if !ramping {
                        let some_room = eligible.iter().any(|e| {
                            !chosen.contains(e) && model.has_room(e, &eligible, &in_flight, cost)
                        });
                        assert!(
                            !some_room || model.has_room(id, &eligible, &in_flight, cost),
                            "pick_n gave {id:?} over its capacity while another had room: {in_flight:?} on {eligible:?}"
                        );
                    }
                    chosen.push(id);
                    assert_eq!(p.cost(), cost);
                    *in_flight.entry(id.to_owned()).or_default() += cost as usize;
                }
                held.extend(got);
            }
            5 | 6 => {
                if !held.is_empty() {
                    let i = u.choose_index(held.len())?;
                    let p = held.swap_remove(i);
                    match u.int_in_range(0..=2u8)? {
                        0 => drop(p),
                        1 => {
                            report(&mut model, p.id(), false);
                            p.success(duration(u)?);
                        }
                        _ => {
                            // Every kind of failure; an overload answer is not counted by
                            // the default classes, so the model sees a success.
                            let kind = *u.choose(&KINDS)?;
                            report(&mut model, p.id(), counted(kind));
                            p.failure_of(kind);
                        }
                    }
                }
            }
            7 => {
                let by = step(u)?;
                clock.advance(by);
                model.now += ns(by);
            }
            8 => {
                // Failures in a burst, to reach ejection thresholds quickly.
                for _ in 0..u.int_in_range(0..=8u8)? {
                    pick(lb, &mut model, &mut held, &Request::new());
                    if let Some(p) = held.pop() {
                        let kind = *u.choose(&KINDS)?;
                        report(&mut model, p.id(), counted(kind));
                        p.failure_of(kind);
                    }
                }
            }
            9 => {
                // New rules: on the same clock (a clone of the configuration in force, whose
                // rules can be set, not unset), or on a new one.
                let same_clock: bool = u.arbitrary()?;
                let (next, valid) = rules(u)?;
                let (candidate, merged) = if same_clock {
                    let merged = Rules {
                        detection: next.detection.or(model.rules.detection),
                        panic: next.panic.or(model.rules.panic),
                        slow_start: next.slow_start.or(model.rules.slow_start),
                        soft: next.soft.or(model.rules.soft),
                    };
                    (apply(config.clone(), &next), merged)
                } else {
                    (apply(HealthConfig::new().clock(clock.clone()), &next), next)
                };
                let before = summary(lb);
                match lb.set_health_config(candidate.clone()) {
                    Ok(()) => {
                        assert!(valid, "{next:?} accepted");
                        for node in model.nodes.values_mut() {
                            if !same_clock || merged.detection.is_none() {
                                node.ejected_until = None;
                                node.multiplier = 0;
                                node.returned_at = None;
                            }
                            if !same_clock || merged.slow_start.is_none() {
                                node.ramp_from = None;
                            }
                        }
                        model.rules = merged;
                        config = candidate;
                    }
                    Err(e) => {
                        assert!(!valid, "{next:?} rejected: {e:?}");
                        assert!(matches!(e, Error::InvalidConfig { .. }), "{e:?}");
                        assert_eq!(
                            summary(lb),
                            before,
                            "a failed set_health_config changed the status"
                        );
                    }
                }
            }
            _ => held.clear(),
        }
        model.settle(lb);
        check(lb, &model, &held);
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
