//! Weighted sampling in O(1): Walker's alias method, built with Vose's algorithm in exact
//! integer arithmetic. Shared by [`Random`](crate::Random) and
//! [`PowerOfTwoChoices`](crate::PowerOfTwoChoices).
//!
//! Each of the n slots holds a threshold and an alias. A draw takes one uniform 64-bit value,
//! maps it to a slot with a multiply-shift, and uses the low half of that product as the coin:
//! below the threshold it is the slot itself, otherwise its alias. Probabilities are exact to
//! within 2^-64. Build is O(n).

use crate::engine::sequence::uniform;
use crate::engine::snapshot::Eligible;

/// An alias table over the eligible backends (positions in `Snapshot::eligible`).
#[derive(Debug, Default)]
pub(crate) struct AliasTable {
    /// `(threshold, alias)`: stay on the slot if the coin is below `threshold`.
    slots: Box<[(u64, u32)]>,
    /// True when every weight is equal: then the slot alone decides.
    uniform: bool,
}

impl AliasTable {
    pub(crate) fn new(eligible: &[Eligible]) -> Self {
        let n = eligible.len();
        let uniform = eligible.windows(2).all(|w| w[0].weight == w[1].weight);
        if n == 0 || uniform {
            return AliasTable {
                slots: Box::default(),
                uniform: true,
            };
        }
        let total: u128 = eligible.iter().map(|e| u128::from(e.weight)).sum();
        // Slot i must carry mass w_i * n / total; compare in units of 1/total.
        let mut mass: Vec<u128> = eligible
            .iter()
            .map(|e| u128::from(e.weight) * n as u128)
            .collect();
        let mut slots = vec![(u64::MAX, 0u32); n];
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| mass[i] < total);
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            // mass[s] < total, so the threshold fits in 64 bits.
            slots[s] = (((mass[s] << 64) / total) as u64, l as u32);
            mass[l] -= total - mass[s];
            if mass[l] < total {
                large.pop();
                small.push(l);
            }
        }
        // Whatever is left is full up to rounding: it always keeps its own slot.
        for i in small.into_iter().chain(large) {
            slots[i] = (u64::MAX, i as u32);
        }
        AliasTable {
            slots: slots.into(),
            uniform: false,
        }
    }

    /// A position in `0..n` drawn with probability proportional to weight, from one uniform
    /// 64-bit value. `n` must be the length the table was built for, and above 0.
    #[inline]
    pub(crate) fn sample(&self, random: u64, n: usize) -> usize {
        let (slot, coin) = uniform(random, n);
        if self.uniform {
            return slot;
        }
        let (threshold, alias) = self.slots[slot];
        if coin < threshold {
            slot
        } else {
            alias as usize
        }
    }
}

/// Draws one position of `eligible` with probability proportional to weight among those
/// for which `taken` is false; `None` if every position is taken (or there is none). If
/// `taken` reads values that change meanwhile (a count under a cap), the draw is only
/// approximately weighted, and returns a position that `taken` reported left when asked.
///
/// It first tries the alias table a few times, rejecting taken positions (exact: rejection
/// sampling yields the conditional distribution). If that keeps failing because the taken
/// ones carry most of the weight, it draws exactly by a linear walk over the weight left.
#[inline]
pub(crate) fn draw_where(
    table: &AliasTable,
    eligible: &[Eligible],
    mut random: impl FnMut() -> u64,
    taken: impl Fn(usize) -> bool,
) -> Option<usize> {
    const TRIES: usize = 4;
    if eligible.is_empty() {
        return None;
    }
    for _ in 0..TRIES {
        let p = table.sample(random(), eligible.len());
        if !taken(p) {
            return Some(p);
        }
    }
    draw_left(eligible, random, taken)
}

/// The exact linear draw of [`draw_where`], once rejection kept failing.
#[cold]
fn draw_left(
    eligible: &[Eligible],
    mut random: impl FnMut() -> u64,
    taken: impl Fn(usize) -> bool,
) -> Option<usize> {
    let left = |(p, _): &(usize, &Eligible)| !taken(*p);
    let remaining: u64 = eligible
        .iter()
        .enumerate()
        .filter(left)
        .map(|(_, e)| e.weight)
        .sum();
    if remaining == 0 {
        return None;
    }
    // Eligible weights are above 0, so `r < remaining` lands on a position left, if `taken`
    // gives the same answers as for the sum. A test that reads live counts (room under a
    // cap) may not: then the last position left is taken, or none if none is left now.
    let mut r = ((u128::from(random()) * u128::from(remaining)) >> 64) as u64;
    let mut last = None;
    for (p, e) in eligible.iter().enumerate().filter(left) {
        if r < e.weight {
            return Some(p);
        }
        r -= e.weight;
        last = Some(p);
    }
    last
}

/// Appends distinct positions to `chosen`, each drawn by [`draw_where`] among those not yet
/// chosen and not `excluded`, until it holds `n` (or every position left).
///
/// Cost: once most of the weight is taken, each draw is a linear walk, so O(n x k) for k
/// draws. Beyond a few draws, "taken" is a lookup in a mask rather than a scan of `chosen`:
/// the scan made each walk O(n x k) and `pick_n` of all of 1000 backends O(n^3) (about 1 s in
/// debug, 25 ms in release).
pub(crate) fn draw_distinct(
    table: &AliasTable,
    eligible: &[Eligible],
    mut random: impl FnMut() -> u64,
    n: usize,
    excluded: impl Fn(usize) -> bool,
    chosen: &mut Vec<usize>,
) {
    /// Up to this many draws, scanning `chosen` is cheaper than allocating a mask.
    const SCAN: usize = 16;
    let want = n.min(eligible.len());
    if want <= SCAN {
        while chosen.len() < want {
            let Some(p) = draw_where(table, eligible, &mut random, |p| {
                excluded(p) || chosen.contains(&p)
            }) else {
                return;
            };
            chosen.push(p);
        }
        return;
    }
    let mut taken = vec![false; eligible.len()];
    for &p in chosen.iter() {
        taken[p] = true;
    }
    while chosen.len() < want {
        let Some(p) = draw_where(table, eligible, &mut random, |p| taken[p] || excluded(p)) else {
            return;
        };
        taken[p] = true;
        chosen.push(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sequence::Sequence;
    use std::sync::Arc;

    fn eligible(weights: &[u32]) -> Vec<Eligible> {
        weights
            .iter()
            .enumerate()
            .map(|(index, &weight)| Eligible {
                index,
                weight: weight.into(),
                state: Arc::default(),
            })
            .collect()
    }

    #[test]
    fn frequencies_follow_weights() {
        let weights = [1, 2, 3, 10, 0, 4];
        let e = eligible(&weights);
        let table = AliasTable::new(&e);
        let rng = Sequence::random(1);
        let draws = 200_000;
        let mut counts = [0usize; 6];
        for _ in 0..draws {
            counts[table.sample(rng.next_random(), e.len())] += 1;
        }
        let total: u32 = weights.iter().sum();
        for (i, &w) in weights.iter().enumerate() {
            let expected = draws as f64 * f64::from(w) / f64::from(total);
            let sd = (expected * (1.0 - f64::from(w) / f64::from(total))).sqrt();
            assert!(
                (counts[i] as f64 - expected).abs() <= 5.0 * sd + 1.0,
                "slot {i}: {} vs {expected}",
                counts[i]
            );
        }
        assert_eq!(counts[4], 0, "weight 0 is never drawn");
    }

    /// The mask path of `draw_distinct` (more than 16 draws) draws exactly what the scan
    /// path draws from the same random stream, and a full draw is a permutation. With the
    /// scan only, the 2000-position draw below was O(n^3): about 10 s in debug.
    #[test]
    fn draw_distinct_is_the_same_with_a_mask_and_covers_everything() {
        let weights: Vec<u32> = (0..2000).map(|i| 1 + i % 7).collect();
        let e = eligible(&weights);
        let table = AliasTable::new(&e);
        for k in [17, 100, 400] {
            let (a, b) = (Sequence::random(9), Sequence::random(9));
            let mut by_mask = vec![3];
            draw_distinct(&table, &e, || a.next_random(), k, |_| false, &mut by_mask);
            let mut by_scan = vec![3];
            while by_scan.len() < k {
                let p =
                    draw_where(&table, &e, || b.next_random(), |p| by_scan.contains(&p)).unwrap();
                by_scan.push(p);
            }
            assert_eq!(by_mask, by_scan);
        }
        let rng = Sequence::random(1);
        let mut all = Vec::new();
        draw_distinct(
            &table,
            &e,
            || rng.next_random(),
            usize::MAX,
            |_| false,
            &mut all,
        );
        all.sort_unstable();
        assert_eq!(all, (0..2000).collect::<Vec<_>>());
    }

    #[test]
    fn extreme_weights_do_not_overflow() {
        let e = eligible(&[u32::MAX, 1, u32::MAX]);
        let table = AliasTable::new(&e);
        assert!((0..1000u64).all(|x| table.sample(x.wrapping_mul(0x9e37_79b9_7f4a_7c15), 3) < 3));
    }
}
