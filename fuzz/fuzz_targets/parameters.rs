//! Hostile parameters and keys: every float and duration a builder or configuration takes, from
//! raw bits (NaN payloads, infinities, subnormals, negative zero, the extremes), Maglev table
//! sizes and ring point counts across their whole range, `PeakEwma` durations, the presets'
//! load factors, and arbitrary key bytes and key hashes. Health rules reach every policy
//! through the trait (`Balancer::set_health_config`).
//!
//! Checked: a configuration is accepted exactly when the documented rules say it is valid (the
//! target's own oracle), and rejected with `Error::InvalidConfig`; a hashing policy sends the
//! same key to the same backend every time while nothing changes; with bounded loads
//! (equal-weight or arbitrary weights), holding k picks of one key never puts more than
//! `ceil(c x k x w_i / W)` on backend i, with `c` as the crate quantises it
//! (`ceil(c x 2^32) / 2^32`); nothing panics.
#![no_main]

use std::time::Duration;

use arbitrary::{Result, Unstructured};
use lbkit::{
    Backend, Balancer, Error, FailurePercentageEjection, HashRing, HealthConfig, JumpHash, Maglev,
    ManualClock, OutlierDetection, PeakEwma, Preset, PresetRing, Rendezvous, Request, SlowStart,
    SoftHealth, SuccessRateEjection,
};
use libfuzzer_sys::fuzz_target;

fn float(u: &mut Unstructured<'_>) -> Result<f64> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => f64::from_bits(u.arbitrary()?),
        1 => *u.choose(&[
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            -0.0,
            f64::MIN_POSITIVE,
            f64::EPSILON,
            1.0,
            1.0 - f64::EPSILON,
            1.0 + f64::EPSILON,
            100.0,
            100.000_000_000_001,
            f64::MAX,
            f64::MIN,
            4_294_967_296.0,
        ])?,
        _ => f64::from(u.arbitrary::<u16>()?) / 1000.0,
    })
}

/// A count or percentage: the edges, around 100, or anything.
fn small(u: &mut Unstructured<'_>) -> Result<u32> {
    Ok(match u.int_in_range(0..=2u8)? {
        0 => *u.choose(&[0, 1, 99, 100, 101, u32::MAX])?,
        1 => u.int_in_range(0..=200)?,
        _ => u.arbitrary()?,
    })
}

fn duration(u: &mut Unstructured<'_>) -> Result<Duration> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => Duration::ZERO,
        1 => Duration::MAX,
        2 => Duration::new(u.arbitrary()?, u.int_in_range(0..=999_999_999)?),
        _ => Duration::from_nanos(u.int_in_range(1..=10_000_000_000)?),
    })
}

fn is_prime(n: u32) -> bool {
    n >= 2 && (2..n).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

fn expect_config<T: std::fmt::Debug>(got: std::result::Result<T, Error>, valid: bool) -> Option<T> {
    match got {
        Ok(v) => {
            assert!(valid, "accepted an invalid configuration");
            Some(v)
        }
        Err(e) => {
            assert!(!valid, "rejected a valid configuration: {e}");
            assert!(matches!(e, Error::InvalidConfig { .. }), "{e:?}");
            None
        }
    }
}

/// A health configuration from hostile values, and whether the documented rules accept it.
fn health(u: &mut Unstructured<'_>, clock: &ManualClock) -> Result<(HealthConfig, bool)> {
    let pct = |x: f64| (0.0..=100.0).contains(&x);
    let mut config = HealthConfig::new().clock(clock.clone());
    let mut valid = true;
    if u.arbitrary()? {
        let o = OutlierDetection {
            consecutive_failures: u.arbitrary()?,
            base_ejection_time: duration(u)?,
            max_ejection_time: duration(u)?,
            max_ejection_percent: float(u)?,
            interval: duration(u)?,
            success_rate: if u.arbitrary()? {
                Some(SuccessRateEjection {
                    stdev_factor: small(u)?,
                    enforcement_percentage: small(u)?,
                    minimum_hosts: small(u)?,
                    request_volume: small(u)?,
                })
            } else {
                None
            },
            failure_percentage: if u.arbitrary()? {
                Some(FailurePercentageEjection {
                    threshold: small(u)?,
                    enforcement_percentage: small(u)?,
                    minimum_hosts: small(u)?,
                    request_volume: small(u)?,
                })
            } else {
                None
            },
            counted: lbkit::FailureClasses {
                local_origin: u.arbitrary()?,
                error: u.arbitrary()?,
                overloaded: u.arbitrary()?,
            },
            consecutive_local_origin_failures: if u.arbitrary()? {
                Some(small(u)?)
            } else {
                None
            },
        };
        let statistical = o.success_rate.is_some() || o.failure_percentage.is_some();
        valid &= o.consecutive_failures >= 1
            && !o.base_ejection_time.is_zero()
            && o.max_ejection_time >= o.base_ejection_time
            && pct(o.max_ejection_percent)
            && (!statistical || !o.interval.is_zero())
            && o.success_rate.map_or(true, |r| {
                r.stdev_factor > 0 && r.enforcement_percentage <= 100
            })
            && o.failure_percentage.map_or(true, |r| {
                r.threshold <= 100 && r.enforcement_percentage <= 100
            })
            && o.consecutive_local_origin_failures != Some(0);
        config = config.outlier_detection(o);
    }
    if u.arbitrary()? {
        let share = float(u)?;
        valid &= (0.0..=1.0).contains(&share);
        config = config.panic_threshold(share);
    }
    if u.arbitrary()? {
        let factor = float(u)?;
        valid &= factor.is_finite() && factor >= 1.0;
        config = config.overprovisioning_factor(factor);
    }
    if u.arbitrary()? {
        let s = SlowStart {
            window: duration(u)?,
            aggression: float(u)?,
            min_weight_percent: float(u)?,
        };
        valid &= !s.window.is_zero()
            && s.aggression.is_finite()
            && s.aggression > 0.0
            && pct(s.min_weight_percent);
        config = config.slow_start(s);
    }
    if u.arbitrary()? {
        let s = SoftHealth {
            interval: duration(u)?,
            request_volume: small(u)?,
            minimum_hosts: small(u)?,
            floor: float(u)?,
            latency_tolerance: float(u)?,
            failure_tolerance: float(u)?,
        };
        valid &= !s.interval.is_zero()
            && s.request_volume >= 1
            && s.minimum_hosts >= 1
            && s.floor > 0.0
            && s.floor <= 1.0
            && s.latency_tolerance.is_finite()
            && s.latency_tolerance >= 1.0
            && (0.0..=1.0).contains(&s.failure_tolerance);
        config = config.soft_health(s);
    }
    Ok((config, valid))
}

/// Hold `k` picks of one key and check the bounded-loads cap after each.
fn hot_key(lb: &dyn Balancer<u32>, key: &Request<'_>, fixed: u64, weights: &[u32], k: usize) {
    let total_weight: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    let mut held = Vec::with_capacity(k);
    for picks in 1..=k as u128 {
        held.push(lb.pick(key).expect("every backend is up"));
        for s in lb.status() {
            let w = u128::from(weights[*s.id()[1..].parse::<usize>().as_ref().unwrap()]);
            // ceil(fixed x picks x w / (W x 2^32)); fixed < 2^64, picks < 2^8, w < 2^32:
            // the product fits in 128 bits.
            let cap = (u128::from(fixed) * picks * w).div_ceil(total_weight << 32);
            assert!(
                s.in_flight() as u128 <= cap,
                "{} holds {} of {picks} (cap {cap})",
                s.id(),
                s.in_flight()
            );
        }
    }
}

/// `lb` with these health rules (through the trait), if they are valid; checks that they are
/// accepted exactly when `valid`.
fn with_health<B: Balancer<u32> + 'static>(
    lb: B,
    health: HealthConfig,
    valid: bool,
) -> Option<Box<dyn Balancer<u32>>> {
    let lb: Box<dyn Balancer<u32>> = Box::new(lb);
    expect_config(lb.set_health_config(health), valid)?;
    Some(lb)
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let clock = ManualClock::new();
    let n = u.int_in_range(1..=12usize)?;
    let equal = u.arbitrary::<bool>()?;
    let weights: Vec<u32> = (0..n)
        .map(|_| {
            if equal {
                Ok(1)
            } else {
                u.int_in_range(1..=1000u32)
            }
        })
        .collect::<Result<_>>()?;
    let set = || -> Vec<Backend<u32>> {
        (0..n)
            .map(|i| Backend::new(format!("b{i}"), i as u32).with_weight(weights[i]))
            .collect()
    };
    let (health, health_ok) = health(u, &clock)?;
    let c = float(u)?;
    let c_ok = c.is_finite() && c >= 1.0;
    let fixed = if c_ok {
        (c * 4_294_967_296.0).ceil() as u64
    } else {
        0
    };
    let seed = u.arbitrary()?;
    let policy = u.int_in_range(0..=6u8)?;
    // PeakEwma (3) and JumpHash (4, 5) have no load factor; the others were given `c`.
    let bounded = policy <= 2 || policy == 6;
    let lb: Box<dyn Balancer<u32>> = match policy {
        0 => {
            // Any point count of at least 1: the ring scales its size to the weights' ratios
            // and shares out at most `RING_POINT_LIMIT` points (hash::ring, "Ring size"), so
            // every set is taken.
            let points: u32 = u.arbitrary()?;
            let lightest = weights
                .iter()
                .copied()
                .filter(|&w| w > 0)
                .min()
                .unwrap_or(1);
            let total: u64 = weights
                .iter()
                .filter(|&&w| w > 0)
                .map(|&w| {
                    let (p, w, m) = (u128::from(points), u128::from(w), u128::from(lightest));
                    u64::try_from((2 * p * w + m) / (2 * m)).unwrap_or(u64::MAX)
                })
                .fold(0u64, u64::saturating_add);
            let valid = c_ok && points >= 1;
            if valid && total > 1 << 18 {
                return Ok(()); // valid but slow to build: not this target's subject
            }
            let b = HashRing::builder()
                .seed(seed)
                .points_per_weight(points)
                .load_factor(c);
            let Some(lb) = expect_config(b.build(set()), valid) else {
                return Ok(());
            };
            match with_health(lb, health, health_ok) {
                Some(lb) => lb,
                None => return Ok(()),
            }
        }
        1 => {
            let size: u32 = u.arbitrary()?;
            let valid = c_ok && size <= 1 << 24 && is_prime(size) && size as usize >= n;
            if valid && size > 1 << 17 {
                return Ok(()); // valid but slow to build
            }
            let b = Maglev::builder().seed(seed).table_size(size).load_factor(c);
            let Some(lb) = expect_config(b.build(set()), valid) else {
                return Ok(());
            };
            match with_health(lb, health, health_ok) {
                Some(lb) => lb,
                None => return Ok(()),
            }
        }
        2 => {
            let b = Rendezvous::builder().seed(seed).load_factor(c);
            let Some(lb) = expect_config(b.build(set()), c_ok) else {
                return Ok(());
            };
            match with_health(lb, health, health_ok) {
                Some(lb) => lb,
                None => return Ok(()),
            }
        }
        3 => {
            let decay = duration(u)?;
            let default_latency = duration(u)?;
            let valid = !decay.is_zero() && !default_latency.is_zero();
            let b = PeakEwma::builder()
                .decay(decay)
                .default_latency(default_latency)
                .seed(seed);
            let Some(lb) = expect_config(b.build(set()), valid) else {
                return Ok(());
            };
            let lb = match with_health(lb, health, health_ok) {
                Some(lb) => lb,
                None => return Ok(()),
            };
            // Hostile latencies and clock jumps: still a pick every time, counts exact.
            for _ in 0..u.int_in_range(0..=32u8)? {
                let p = lb.pick(&Request::new()).expect("a backend is eligible");
                match u.int_in_range(0..=2u8)? {
                    0 => p.success(duration(u)?),
                    1 => {
                        let retry_after = Some(duration(u)?);
                        p.failure_of(*u.choose(&[
                            lbkit::Failure::LocalOrigin,
                            lbkit::Failure::Error,
                            lbkit::Failure::Overloaded { retry_after },
                        ])?)
                    }
                    _ => clock.advance(duration(u)?),
                }
                // Picks end up eligible again once ejections can end: jump far ahead.
                if lb.status().iter().all(|s| !s.is_eligible()) {
                    clock.advance(Duration::MAX);
                }
            }
            assert!(lb.status().iter().all(|s| s.in_flight() == 0));
            return Ok(());
        }
        6 => {
            let preset = if u.arbitrary()? {
                Preset::Nginx
            } else {
                Preset::Ketama
            };
            let b = PresetRing::builder(preset).seed(seed).load_factor(c);
            let Some(lb) = expect_config(b.build(set()), c_ok) else {
                return Ok(());
            };
            match with_health(lb, health, health_ok) {
                Some(lb) => lb,
                None => return Ok(()),
            }
        }
        _ => {
            let lb = JumpHash::with_seed(set(), seed).unwrap();
            match with_health(lb, health, health_ok) {
                Some(lb) => lb,
                None => return Ok(()),
            }
        }
    };
    // Arbitrary keys: the same key goes to the same backend while nothing changes.
    for _ in 0..u.int_in_range(0..=8u8)? {
        let bytes: Vec<u8> = u.arbitrary()?;
        let hash: u64 = u.arbitrary()?;
        for request in [Request::with_key(&bytes), Request::with_hash(hash)] {
            let first = lb
                .pick(&request)
                .expect("every backend is up")
                .id()
                .to_owned();
            let again = lb
                .pick(&request)
                .expect("every backend is up")
                .id()
                .to_owned();
            assert_eq!(first, again, "one key, two backends");
        }
    }
    // A hot key held many times: with a load factor, no backend above its cap.
    if bounded {
        let bytes: Vec<u8> = u.arbitrary()?;
        let k = u.int_in_range(1..=200usize)?;
        hot_key(&*lb, &Request::with_key(&bytes), fixed, &weights, k);
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = run(&mut u);
});
