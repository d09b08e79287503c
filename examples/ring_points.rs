//! The table of `HashRing`'s module docs: balance, memory and build time against points per
//! weight unit, for 100 backends of weight 1 named `10.0.<i/256>.<i%256>:8080`.
//!
//! `cargo run --release --example ring_points`
//!
//! * max/mean: the most keys any backend gets over the mean, for 1,000,000 keys whose 64-bit
//!   hashes come from a SplitMix64 stream of seed 1 (fixed, so this column is the same on
//!   every machine). Keys alone, with a perfect split of the hash space, would put the
//!   maximum about 2.5% over the mean.
//! * memory: what the ring's layout takes (its docs: 16 bytes per point, and an index of 4
//!   bytes per bucket, a quarter as many buckets as points rounded up to a power of two).
//! * build: the best of 5 builds, in this process, on this machine (varies with its load).

use std::time::{Duration, Instant};

use lbkit::{Backend, Balancer, HashRing, Request};

const BACKENDS: usize = 100;
const KEYS: usize = 1_000_000;

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn main() -> Result<(), lbkit::Error> {
    let set = || {
        (0..BACKENDS)
            .map(|i| Backend::new(format!("10.0.{}.{}:8080", i / 256, i % 256), i))
            .collect::<Vec<_>>()
    };
    println!("| points per weight | points | max/mean | memory | build |");
    println!("|---:|---:|---:|---:|---:|");
    for per_weight in [16u32, 40, 100, 160, 500, 1000, 2000, 5000] {
        let build = || {
            HashRing::builder()
                .points_per_weight(per_weight)
                .build(set())
        };
        let mut best = Duration::MAX;
        for _ in 0..5 {
            let start = Instant::now();
            let ring = build()?;
            best = best.min(start.elapsed());
            drop(ring);
        }
        let ring = build()?;
        let mut counts = vec![0u64; BACKENDS];
        let mut state = 1u64;
        for _ in 0..KEYS {
            let pick = ring
                .pick(&Request::with_hash(splitmix64(&mut state)))
                .unwrap();
            counts[*pick] += 1;
        }
        let max = *counts.iter().max().unwrap() as f64;
        let mean = KEYS as f64 / BACKENDS as f64;
        let points = BACKENDS * per_weight as usize;
        let buckets = (points.next_power_of_two() / 4).max(2);
        let bytes = points * 16 + (buckets + 1) * 4;
        let default = if per_weight == lbkit::hash::ring::DEFAULT_POINTS_PER_WEIGHT {
            " (default)"
        } else {
            ""
        };
        println!(
            "| {per_weight}{default} | {points} | {:.3} | {:.2} MB | {:.2} ms |",
            max / mean,
            bytes as f64 / 1e6,
            best.as_secs_f64() * 1e3,
        );
    }
    Ok(())
}
