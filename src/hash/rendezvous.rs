//! Rendezvous hashing, also called highest random weight (Thaler and Ravishankar, *Using
//! Name-Based Mappings to Increase Hit Rates*, IEEE/ACM ToN 1998); weighted by the
//! "logarithmic method" of Schindelhauer and Schomaker, *Weighted Distributed Hash Tables*
//! (SPAA 2005).
//!
//! # Algorithm
//!
//! Every (key, backend) pair gets a pseudo-random score; the key goes to the backend with the
//! highest. A backend that joins takes exactly the keys it now wins; one that leaves gives
//! exactly its own keys to their second choices: **exact minimal disruption**, with shares
//! exactly proportional to weight in expectation (no virtual nodes, no table). The order of
//! preference of a key is simply its backends by descending score, so `pick_n` is the top
//! `n`, and walking on past ineligible or (with bounded loads) full backends takes the next
//! one.
//!
//! Weighted score: with `u` the score mapped into (0, 1), `-w / ln(u)`: the winner is then
//! backend `i` with probability `w_i / W` (the scores are an exponential race), exactly but
//! for the rounding of `u` to 53 bits.
//!
//! # Speed: weight classes
//!
//! For backends of equal weight, `-w / ln(u)` grows with `u`, so the backend with the highest
//! raw 64-bit score wins among them. The table therefore groups backends by weight: a lookup
//! takes the raw maximum within each class (a tight loop of one [`mix`](crate::hash::mix)
//! per backend, no floating point), then compares the class winners by weighted score, one
//! logarithm per class. With all weights equal there is one class and no logarithm at all.
//!
//! # Exact derivation
//!
//! * With `g = id_hash(id)` ([`id_hash`](crate::hash::id_hash)) and key hash `h`
//!   ([`key_hash`](crate::hash::key_hash) of the key's bytes, or the caller's), the raw score
//!   is `s = mix(h, g)` ([`mix`](crate::hash::mix)).
//! * Backends of weight 0 take no part. Within one weight class, the highest `s` wins, ties
//!   to the smaller id (byte-wise).
//! * Across classes, class winners compare by `w / L(s)` (double precision), the higher
//!   wins; equal values go to the higher `s`, then the smaller id. `L(s)` is a pinned
//!   `-ln(u)` for `u = x / 2^64`, `x = s | 1`, truncated to the 53 leading significant bits
//!   of `x`, computed with IEEE-754 double operations that are correctly rounded everywhere
//!   (`+ - * /`, exact conversions), never the platform's `ln`:
//!   1. `k` = number of leading zero bits of `x`; `t = (x << k) >> 11` (53 bits, top bit
//!      set); `m = t x 2^-53` (exact, in [0.5, 1)); `e = k`.
//!   2. If `m < 0.7071067811865476`: `m = m x 2`, `e = e + 1` (now `u = m x 2^-e`).
//!   3. `r = (m - 1) / (m + 1)`, `q = r x r`; `p = 1/23`, then for `d = 21, 19, ..., 3, 1`:
//!      `p = p x q + 1/d` (each `1/d` the correctly rounded double); `ln_m = 2 x r x p`
//!      (computed as `(2 x r) x p`).
//!   4. `L = e x 0.6931471805599453 - ln_m`.
//!
//!   Each step is evaluated in exactly this order, without fused multiply-add (Rust never
//!   contracts `a * b + c`). `L` is within a few units in the last place of `-ln(u)` for
//!   that truncated `u` (tested against the platform's `ln` to 1e-14, relative), and always
//!   above 0. Golden tests pin its bits.
//!
//! # Cost
//!
//! * **Pick**: O(n): one [`mix`](crate::hash::mix) and compare per backend, plus `L` once
//!   per weight class (`cargo bench --bench hashing`, groups `lookup/100` and `lookup/1000`:
//!   the `lbkit/rendezvous` time over the backend count; figures in `benches/README.md`). When the
//!   best backend is ineligible, or with bounded loads full, a second pass skips the ones
//!   that cannot be taken. `pick_n` repeats the pass once per result: O(n x k).
//! * **Update**: O(n log n) (grouping by weight). **Memory**: 12 bytes per backend.
//!
//! # When to choose it
//!
//! When exact minimal disruption and exact weighted shares matter more than O(1) lookups:
//! up to a few thousand backends, replica placement (`pick_n` = top n), caches behind a set
//! that changes often. Beyond that, prefer [`Maglev`](crate::Maglev) or
//! [`HashRing`](crate::HashRing).

use crate::backend::Backend;
use crate::builder::{Builder, LoadBounded, Seedable};
use crate::engine::core::{impl_balancer, Core};
use crate::error::Error;
use crate::hash::walk::{Hashed, Node, Placement, Preference};
use crate::placement::splitmix64;

/// Weighted rendezvous (highest random weight) hashing: exact minimal disruption.
///
/// See the [module docs](crate::hash::rendezvous) for the exact placement.
///
/// ```
/// use lbkit::{Backend, Balancer, Rendezvous, Request};
/// let lb = Rendezvous::new([
///     Backend::new("a", ()),
///     Backend::new("b", ()).with_weight(2),
///     Backend::new("c", ()),
/// ])?;
/// let top2 = lb.pick_n(&Request::with_key("user-42"), 2);
/// assert_ne!(top2[0].id(), top2[1].id());
/// # Ok::<(), lbkit::Error>(())
/// ```
pub struct Rendezvous<T> {
    core: Core<T, Hashed<HighestRandomWeight>>,
}

impl<T: Send + Sync + 'static> Rendezvous<T> {
    /// Rendezvous hashing over `backends`, no load bound (the same as
    /// `Rendezvous::builder().build(backends)`).
    ///
    /// # Errors
    /// [`Error::EmptyId`], [`Error::DuplicateId`], [`Error::TooManyBackends`], and
    /// [`Error::InvalidConfig`] for a backend's `max_in_flight` of 0.
    pub fn new(backends: impl IntoIterator<Item = Backend<T>>) -> Result<Self, Error> {
        Builder::new(RendezvousConfig).build(backends)
    }

    /// As [`Rendezvous::new`], with the random spread of requests without a key seeded: the
    /// shortcut for `Rendezvous::builder().seed(seed).build(backends)`.
    ///
    /// # Errors
    /// As [`Rendezvous::new`].
    pub fn with_seed(
        backends: impl IntoIterator<Item = Backend<T>>,
        seed: u64,
    ) -> Result<Self, Error> {
        Builder::new(RendezvousConfig).seed(seed).build(backends)
    }
}

impl Rendezvous<()> {
    /// A builder to set a load factor, a seed or passive health; its `build` makes a
    /// `Rendezvous<T>` of any `T` (an associated function of `Rendezvous<()>` only so that
    /// `Rendezvous::builder()` needs no type annotation).
    ///
    /// ```
    /// use lbkit::{Backend, Rendezvous};
    /// let lb = Rendezvous::builder().load_factor(1.25).seed(7).build([Backend::new("a", ())])?;
    /// # let _ = lb;
    /// assert!(Rendezvous::builder().load_factor(0.5).build(Vec::<Backend<()>>::new()).is_err());
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    pub fn builder() -> Builder<RendezvousConfig> {
        Builder::new(RendezvousConfig)
    }
}

impl_balancer!(Rendezvous);

/// The configuration of [`Rendezvous`], the type parameter of [`Rendezvous::builder`]'s
/// [`Builder`]: none beyond the shared `load_factor`, `seed` and `health`.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct RendezvousConfig;

impl Seedable for RendezvousConfig {}
impl LoadBounded for RendezvousConfig {}

impl Builder<RendezvousConfig> {
    /// Builds the balancer over `backends`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `load_factor` (below 1, NaN, infinite) or a health rule,
    /// and those of [`Rendezvous::new`].
    pub fn build<T: Send + Sync + 'static>(
        self,
        backends: impl IntoIterator<Item = Backend<T>>,
    ) -> Result<Rendezvous<T>, Error> {
        let policy = self.hashed(HighestRandomWeight)?;
        Ok(Rendezvous {
            core: self.core(policy, backends)?,
        })
    }
}

pub(crate) struct HighestRandomWeight;

impl Placement for HighestRandomWeight {
    type Table = Classes;

    fn build(&self, members: &[Node]) -> Result<Classes, Error> {
        let mut order: Vec<usize> = (0..members.len())
            .filter(|&i| members[i].weight > 0)
            .collect();
        // By weight, then by index (id order) within a class.
        order.sort_by_key(|&i| (members[i].weight, i));
        let mut classes: Vec<Class> = Vec::new();
        for (at, &i) in order.iter().enumerate() {
            match classes.last_mut() {
                Some(c) if c.weight == members[i].weight => c.end += 1,
                _ => classes.push(Class {
                    weight: members[i].weight,
                    end: at + 1,
                }),
            }
        }
        Ok(Classes {
            // mix(h, g) = splitmix64(h ^ salt) with salt = g.rotate_left(32) ^ GOLDEN.
            salts: order
                .iter()
                .map(|&i| members[i].id_hash.rotate_left(32) ^ MIX_CONSTANT)
                .collect(),
            // Node indices fit in u32: a set holds at most MAX_BACKENDS = u32::MAX.
            owners: order.iter().map(|&i| i as u32).collect(),
            classes: classes.into(),
        })
    }
}

/// The constant of [`mix`](crate::hash::mix): `mix(a, b) = splitmix64(a ^ b.rotl(32) ^ C)`.
const MIX_CONSTANT: u64 = 0x9e37_79b9_7f4a_7c15;

/// The backends of weight above 0, grouped by weight.
pub(crate) struct Classes {
    /// Per backend, `id_hash.rotate_left(32) ^ MIX_CONSTANT`, so that the raw score is
    /// `splitmix64(key ^ salt)` = `mix(key, id_hash)`.
    salts: Box<[u64]>,
    /// Per backend, its member index.
    owners: Box<[u32]>,
    /// Weight classes, in increasing weight: each ends at `end` in `salts` / `owners`.
    classes: Box<[Class]>,
}

struct Class {
    weight: u32,
    end: usize,
}

/// A class winner: raw score and member index.
#[derive(Clone, Copy)]
struct Winner {
    score: u64,
    member: usize,
}

impl Classes {
    /// The highest raw score among the members of `salts[range]` that `accept` takes.
    #[inline]
    fn class_best(
        &self,
        key: u64,
        from: usize,
        to: usize,
        accept: &mut impl FnMut(usize) -> bool,
    ) -> Option<Winner> {
        let mut best: Option<Winner> = None;
        for (salt, &owner) in self.salts[from..to].iter().zip(&self.owners[from..to]) {
            let score = splitmix64(key ^ salt);
            // Strictly higher: on equal scores the earlier (smaller id) stays.
            if best.map_or(true, |b| score > b.score) && accept(owner as usize) {
                best = Some(Winner {
                    score,
                    member: owner as usize,
                });
            }
        }
        best
    }

    /// The highest raw score of the whole class, with no test: the tight loop.
    #[inline]
    fn class_max(&self, key: u64, from: usize, to: usize) -> Winner {
        let mut best_score = 0u64;
        let mut best_at = from;
        for (at, salt) in self.salts[from..to].iter().enumerate() {
            let score = splitmix64(key ^ salt);
            if score > best_score {
                best_score = score;
                best_at = from + at;
            }
        }
        // If every score is 0, the first (smallest id) wins, as in `class_best`.
        Winner {
            score: best_score,
            member: self.owners[best_at] as usize,
        }
    }

    /// The winner across classes, given each class's winner.
    fn best(&self, mut winner_of: impl FnMut(usize, usize) -> Option<Winner>) -> Option<usize> {
        let mut from = 0;
        let mut best: Option<(f64, Winner)> = None;
        let single = self.classes.len() == 1;
        for class in self.classes.iter() {
            let winner = winner_of(from, class.end);
            from = class.end;
            let Some(w) = winner else { continue };
            if single {
                return Some(w.member);
            }
            let weighted = f64::from(class.weight) / neg_ln_unit(w.score);
            let better = match best {
                None => true,
                Some((value, b)) => {
                    weighted > value
                        || (weighted == value
                            && (w.score > b.score || (w.score == b.score && w.member < b.member)))
                }
            };
            if better {
                best = Some((weighted, w));
            }
        }
        best.map(|(_, w)| w.member)
    }
}

impl Preference for Classes {
    #[inline]
    fn first(&self, key: u64, mut accept: impl FnMut(usize) -> bool) -> Option<usize> {
        // Fast path: the unconditional winner, usually eligible.
        let top = self.best(|from, to| Some(self.class_max(key, from, to)))?;
        if accept(top) {
            return Some(top);
        }
        self.best(|from, to| self.class_best(key, from, to, &mut accept))
    }
}

/// `-ln(u)` for `u = (x | 1) / 2^64`, from correctly rounded IEEE-754 double operations only,
/// so that every platform computes the same bits (see the module docs, which spell out each
/// step). Always finite and above 0.
pub(crate) fn neg_ln_unit(x: u64) -> f64 {
    // The doubles nearest 1/sqrt(2) and ln 2: 0.7071067811865476 and 0.6931471805599453.
    use std::f64::consts::{FRAC_1_SQRT_2 as SQRT_HALF, LN_2};
    const TWO_POW_MINUS_53: f64 = 1.0 / 9_007_199_254_740_992.0;
    let x = x | 1;
    let k = x.leading_zeros();
    // 53 significant bits, the top one set: exact as a double.
    let top = (x << k) >> 11;
    let mut m = top as f64 * TWO_POW_MINUS_53;
    let mut e = f64::from(k);
    if m < SQRT_HALF {
        m *= 2.0;
        e += 1.0;
    }
    // ln(m) = 2 atanh(r) = 2 (r + r^3/3 + r^5/5 + ...), |r| < 0.1716, so r^24/25 < 2^-64.
    let r = (m - 1.0) / (m + 1.0);
    let q = r * r;
    let mut p = 1.0 / 23.0;
    for d in [21.0, 19.0, 17.0, 15.0, 13.0, 11.0, 9.0, 7.0, 5.0, 3.0, 1.0] {
        p = p * q + 1.0 / d;
    }
    let ln_m = (2.0 * r) * p;
    e * LN_2 - ln_m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::mix;

    /// The naive definition: every member scored, the highest weighted score wins.
    fn naive(members: &[Node], key: u64, accept: impl Fn(usize) -> bool) -> Option<usize> {
        let mut best: Option<(f64, u64, usize)> = None;
        for (i, m) in members.iter().enumerate() {
            if m.weight == 0 || !accept(i) {
                continue;
            }
            let s = mix(key, m.id_hash);
            let v = f64::from(m.weight) / neg_ln_unit(s);
            let better = match best {
                None => true,
                Some((bv, bs, bi)) => v > bv || (v == bv && (s > bs || (s == bs && i < bi))),
            };
            if better {
                best = Some((v, s, i));
            }
        }
        best.map(|(_, _, i)| i)
    }

    #[test]
    fn salted_score_is_mix() {
        for (key, id) in [(0u64, 0u64), (1, 2), (u64::MAX, 12_345), (0xfeed, u64::MAX)] {
            assert_eq!(
                splitmix64(key ^ (id.rotate_left(32) ^ MIX_CONSTANT)),
                mix(key, id)
            );
        }
    }

    #[test]
    fn classes_agree_with_the_naive_definition() {
        let weights = [3, 1, 0, 2, 1, 3, 5, 1, 2, 0, 7];
        let ms = Node::numbered(&weights);
        let table = HighestRandomWeight.build(&ms).unwrap();
        let mut key = 5u64;
        for _ in 0..5000 {
            key = splitmix64(key);
            assert_eq!(table.first(key, |_| true), naive(&ms, key, |_| true));
            let skip = (key % 11) as usize;
            assert_eq!(
                table.first(key, |i| i != skip && i != 3),
                naive(&ms, key, |i| i != skip && i != 3)
            );
        }
        assert_eq!(table.first(key, |_| false), None);
    }

    #[test]
    fn equal_weights_need_no_logarithm_and_agree_too() {
        let ms = Node::numbered(&[4; 30]);
        let table = HighestRandomWeight.build(&ms).unwrap();
        assert_eq!(table.classes.len(), 1);
        for key in 0..2000 {
            assert_eq!(table.first(key, |_| true), naive(&ms, key, |_| true));
        }
    }

    #[test]
    fn pinned_ln_is_accurate() {
        let mut x = 1u64;
        for _ in 0..100_000 {
            x = splitmix64(x);
            for v in [x, x >> 40, x >> 63, x | (1 << 63)] {
                // The 53 bits the function keeps, as an exact double.
                let k = (v | 1).leading_zeros();
                let top = ((v | 1) << k) >> 11;
                let u = top as f64 / 9_007_199_254_740_992.0 / 2f64.powi(k as i32);
                let got = neg_ln_unit(v);
                let want = -u.ln();
                assert!(got > 0.0 && got.is_finite());
                assert!(((got - want) / want).abs() < 1e-13, "{v}: {got} vs {want}");
            }
        }
        // The extremes.
        assert!((neg_ln_unit(0) - 64.0 * std::f64::consts::LN_2).abs() < 1e-12);
        assert!(neg_ln_unit(u64::MAX) > 0.0);
        assert!(neg_ln_unit(u64::MAX) < 1e-15);
    }

    /// Golden bits: the pinned logarithm must not change, on any platform.
    #[test]
    fn pinned_ln_is_pinned() {
        let got: Vec<u64> = [0u64, 1, 12_345, 1 << 40, 0x8000_0000_0000_0000, u64::MAX]
            .iter()
            .map(|&x| neg_ln_unit(x).to_bits())
            .collect();
        assert_eq!(got, GOLDEN_LN);
    }

    const GOLDEN_LN: [u64; 6] = [
        4_631_440_132_077_664_751,
        4_631_440_132_077_664_751,
        4_630_114_243_298_898_869,
        4_625_375_703_758_252_659,
        4_604_418_534_313_441_775,
        4_368_491_638_549_381_120,
    ];
}
