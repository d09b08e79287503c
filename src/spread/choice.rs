//! What the load-aware request policies share: comparing in-flight requests per unit of
//! weight exactly, and the power-of-two-choices loop over any way of comparing cost. Not a
//! policy itself: [`LeastConnections`](crate::LeastConnections) uses [`lighter`];
//! [`PowerOfTwoChoices`](crate::PowerOfTwoChoices) and [`PeakEwma`](crate::PeakEwma) are
//! [`TwoChoices`] with their own [`Cost`].

use crate::engine::alias::{draw_distinct, draw_where, AliasTable};
use crate::engine::policy::Policy;
use crate::engine::sequence::Sequence;
use crate::engine::snapshot::{Eligible, Snapshot, View};
use crate::engine::state::LatencyTracking;
use crate::error::Error;
use crate::placement::{splitmix64, GAMMA};
use crate::request::Request;

/// Whether `a` carries less load per unit of weight than `b`, exactly (a/w_a < b/w_b as
/// a x w_b < b x w_a, widened to 128 bits). Weights are above 0 for eligible backends.
#[inline]
pub(crate) fn lighter(
    a_in_flight: usize,
    a_weight: u64,
    b_in_flight: usize,
    b_weight: u64,
) -> bool {
    (a_in_flight as u128) * u128::from(b_weight) < (b_in_flight as u128) * u128::from(a_weight)
}

/// How two candidates are compared: the lighter (cheaper) one wins.
pub(crate) trait Cost: Send + Sync + 'static {
    /// Whether `a` is strictly lighter than `b`.
    fn lighter(&self, a: &Eligible, b: &Eligible) -> bool;

    /// Whether reports must keep a latency estimate for this comparison.
    fn latency_tracking(&self) -> Option<LatencyTracking> {
        None
    }
}

/// Requests in flight per unit of weight, compared exactly in integers.
pub(crate) struct InFlightPerWeight;

impl Cost for InFlightPerWeight {
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

impl<L: Cost> TwoChoices<L> {
    pub(crate) fn new(seed: u64, load: L) -> Self {
        TwoChoices {
            rng: Sequence::random(seed),
            load,
        }
    }

    /// Positions (in `eligible`) of the two candidates among those `accept` allows, the
    /// first the lighter one (the second `None` if only one is allowed).
    #[inline]
    fn candidates<T>(
        &self,
        snap: &Snapshot<T, AliasTable>,
        accept: impl Fn(usize) -> bool,
    ) -> Option<(usize, Option<usize>)> {
        let refused = |p: usize| !accept(snap.eligible[p].index);
        match snap.eligible.len() {
            0 => return None,
            // Nothing to draw or compare.
            1 => return (!refused(0)).then_some((0, None)),
            _ => {}
        }
        // One atomic step per pick: the second value is the first one re-mixed (SplitMix64's
        // output function is a bijection, so it is uniform too). Re-draws after a collision
        // or a refusal take fresh values.
        let mut first = None;
        let a = draw_where(
            &snap.table,
            &snap.eligible,
            || {
                let r = self.rng.next_random();
                first.get_or_insert(r);
                r
            },
            refused,
        )?;
        let mut second = first.map(|r| splitmix64(r ^ GAMMA));
        let b = draw_where(
            &snap.table,
            &snap.eligible,
            || second.take().unwrap_or_else(|| self.rng.next_random()),
            |p| p == a || refused(p),
        );
        match b {
            Some(b) if self.load.lighter(&snap.eligible[b], &snap.eligible[a]) => {
                Some((b, Some(a)))
            }
            b => Some((a, b)),
        }
    }
}

impl<T, L: Cost> Policy<T> for TwoChoices<L> {
    type Table = AliasTable;
    const TABLE_USES_HEALTH: bool = true;

    fn build(&self, view: &View<'_, T>) -> Result<AliasTable, Error> {
        Ok(AliasTable::new(view.eligible))
    }

    fn latency_tracking(&self) -> Option<LatencyTracking> {
        self.load.latency_tracking()
    }

    #[inline]
    fn choose(
        &self,
        snap: &Snapshot<T, AliasTable>,
        _: &Request<'_>,
        accept: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let (winner, _) = self.candidates(snap, accept)?;
        Some(snap.eligible[winner].index)
    }

    /// The winner, then the loser, then the others in weighted random order.
    fn choose_n(
        &self,
        snap: &Snapshot<T, AliasTable>,
        _: &Request<'_>,
        n: usize,
        accept: impl Fn(usize) -> bool,
        out: &mut Vec<usize>,
    ) {
        let Some((winner, loser)) = self.candidates(snap, &accept) else {
            return;
        };
        let mut chosen: Vec<usize> = std::iter::once(winner).chain(loser).take(n).collect();
        draw_distinct(
            &snap.table,
            &snap.eligible,
            || self.rng.next_random(),
            n,
            |p| !accept(snap.eligible[p].index),
            &mut chosen,
        );
        out.extend(chosen.into_iter().map(|p| snap.eligible[p].index));
    }
}
