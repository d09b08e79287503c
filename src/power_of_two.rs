//! Power of two choices (P2C).
//!
//! Each pick draws two distinct eligible backends, each with probability proportional to its
//! weight, and takes the one with fewer requests in flight per unit of weight (compared exactly
//! in integers). One random choice leaves the busiest backend about ln n / ln ln n over the
//! mean; two choices cut that to ln ln n / ln 2 + O(1) (Mitzenmacher; Azar et al.), at O(1)
//! cost and without the herding of a full scan when many clients read stale counts.
//!
//! The draws use the alias table shared with [`Random`](crate::Random); the second draw
//! rejects the first backend and, if the first carries most of the weight, falls back to an
//! exact linear draw. Seeded by [`PowerOfTwoChoices::with_seed`].
//!
//! Cost: O(1) per pick (two random values, two alias lookups, two counter loads); O(n) per
//! update. Choose it as the default request balancer, and over least connections beyond a few
//! hundred backends. This is the policy Envoy, Finagle, linkerd and tower use by default.

use crate::alias::{draw_distinct, draw_where, AliasTable};
use crate::least_connections::lighter;
use crate::membership::{impl_balancer, Core, Eligible, Policy, Snapshot, View};
use crate::sequence::{splitmix64, Sequence, GAMMA};
use crate::state::LatencyTracking;
use crate::{Backend, Error, Pick, Request};

/// Power of two choices over weighted candidates.
///
/// ```
/// use lbkit::{Backend, Balancer, PowerOfTwoChoices, Request};
/// let lb = PowerOfTwoChoices::with_seed([Backend::new("a", ()), Backend::new("b", ())], 1)?;
/// let held = lb.pick(&Request::new()).unwrap();
/// // With two backends both are always candidates: the idle one wins.
/// assert_ne!(lb.pick(&Request::new()).unwrap().id(), held.id());
/// # Ok::<(), lbkit::Error>(())
/// ```
pub struct PowerOfTwoChoices<T> {
    core: Core<T, TwoChoices<InFlightPerWeight>>,
}

impl<T: Send + Sync + 'static> PowerOfTwoChoices<T> {
    /// A P2C balancer seeded from the clock and the process.
    ///
    /// # Errors
    /// [`Error::EmptyId`], [`Error::DuplicateId`], [`Error::TooManyBackends`].
    pub fn new(backends: impl IntoIterator<Item = Backend<T>>) -> Result<Self, Error> {
        Self::with_seed(backends, crate::entropy_seed())
    }

    /// A P2C balancer whose choices replay exactly for a given seed.
    ///
    /// # Errors
    /// As [`PowerOfTwoChoices::new`].
    pub fn with_seed(
        backends: impl IntoIterator<Item = Backend<T>>,
        seed: u64,
    ) -> Result<Self, Error> {
        Ok(PowerOfTwoChoices {
            core: Core::new(TwoChoices::new(seed, InFlightPerWeight), backends)?,
        })
    }
}

impl_balancer!(PowerOfTwoChoices);

/// How two candidates are compared: the lighter one wins.
pub(crate) trait Load: Send + Sync + 'static {
    /// Whether `a` is strictly lighter than `b`.
    fn lighter(&self, a: &Eligible, b: &Eligible) -> bool;

    /// Whether reports must keep a latency estimate for this comparison.
    fn latency_tracking(&self) -> Option<LatencyTracking> {
        None
    }
}

/// Requests in flight per unit of weight, compared exactly in integers.
pub(crate) struct InFlightPerWeight;

impl Load for InFlightPerWeight {
    #[inline]
    fn lighter(&self, a: &Eligible, b: &Eligible) -> bool {
        lighter(a.state.in_flight(), a.weight, b.state.in_flight(), b.weight)
    }
}

/// The power-of-two-choices loop, over any way of comparing load.
pub(crate) struct TwoChoices<L> {
    rng: Sequence,
    load: L,
}

impl<L: Load> TwoChoices<L> {
    pub(crate) fn new(seed: u64, load: L) -> Self {
        TwoChoices {
            rng: Sequence::random(seed),
            load,
        }
    }

    /// Positions (in `eligible`) of the two candidates, the first the lighter one.
    #[inline]
    fn candidates<T>(&self, snap: &Snapshot<T, AliasTable>) -> Option<(usize, Option<usize>)> {
        let n = snap.eligible.len();
        match n {
            0 => return None,
            1 => return Some((0, None)),
            _ => {}
        }
        // One atomic step per pick: the second value is the first one re-mixed (SplitMix64's
        // output function is a bijection, so it is uniform too). Re-draws after a collision
        // take fresh values.
        let first = self.rng.next_random();
        let a = snap.table.sample(first, n);
        let mut second = Some(splitmix64(first ^ GAMMA));
        let b = draw_where(
            &snap.table,
            &snap.eligible,
            || second.take().unwrap_or_else(|| self.rng.next_random()),
            |p| p == a,
        );
        if self.load.lighter(&snap.eligible[b], &snap.eligible[a]) {
            Some((b, Some(a)))
        } else {
            Some((a, Some(b)))
        }
    }
}

impl<T, L: Load> Policy<T> for TwoChoices<L> {
    type Table = AliasTable;
    const TABLE_USES_HEALTH: bool = true;

    fn build(&self, view: &View<'_, T>) -> Result<AliasTable, Error> {
        Ok(AliasTable::new(view.eligible))
    }

    fn latency_tracking(&self) -> Option<LatencyTracking> {
        self.load.latency_tracking()
    }

    #[inline]
    fn choose(&self, snap: &Snapshot<T, AliasTable>, _: &Request<'_>) -> Option<usize> {
        let (winner, _) = self.candidates(snap)?;
        Some(snap.eligible[winner].index)
    }

    /// The winner, then the loser, then the others in weighted random order.
    fn choose_n(
        &self,
        snap: &Snapshot<T, AliasTable>,
        _: &Request<'_>,
        n: usize,
        out: &mut Vec<Pick<T>>,
    ) {
        let Some((winner, loser)) = self.candidates(snap) else {
            return;
        };
        let mut chosen: Vec<usize> = std::iter::once(winner).chain(loser).take(n).collect();
        draw_distinct(
            &snap.table,
            &snap.eligible,
            || self.rng.next_random(),
            n,
            &mut chosen,
        );
        out.extend(
            chosen
                .into_iter()
                .map(|p| snap.pick(snap.eligible[p].index)),
        );
    }
}
