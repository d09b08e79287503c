//! The Maglev table as lbkit's docs define it, written from the docs alone: the reference
//! that tests/hashing_golden.rs and tests/hashing_model.rs check the balancer against.
//! Included by each with `#[path = "common/maglev_reference.rs"] mod maglev_reference;`.

use lbkit::hash::{id_hash, mix};

/// The table over `sorted` (id, weight) members, size `m` (a prime): turns by smallest
/// (taken + 1) / w, ties to the smaller id (index); each takes its next free slot of
/// (offset + j x skip) mod m, with offset = mix(id_hash, 0) mod m and skip = mix(id_hash, 1)
/// mod (m - 1) + 1. Empty when no member has a weight above 0.
pub fn table(sorted: &[(String, u32)], m: u64) -> Vec<usize> {
    // (index, weight, offset, skip, taken, j)
    let mut turns: Vec<(usize, u64, u64, u64, u64, u64)> = sorted
        .iter()
        .enumerate()
        .filter(|(_, (_, w))| *w > 0)
        .map(|(i, (id, w))| {
            let g = id_hash(id);
            (
                i,
                u64::from(*w),
                mix(g, 0) % m,
                mix(g, 1) % (m - 1) + 1,
                0,
                0,
            )
        })
        .collect();
    let mut table = vec![usize::MAX; m as usize];
    if turns.is_empty() {
        return Vec::new();
    }
    for _ in 0..m {
        let mut best = 0;
        for t in 1..turns.len() {
            let (a, b) = (&turns[t], &turns[best]);
            if (a.4 + 1) * b.1 < (b.4 + 1) * a.1 {
                best = t;
            }
        }
        let t = &mut turns[best];
        loop {
            let slot = ((t.2 + t.5 * t.3) % m) as usize;
            t.5 += 1;
            if table[slot] == usize::MAX {
                table[slot] = t.0;
                t.4 += 1;
                break;
            }
        }
    }
    table
}
