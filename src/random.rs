//! Weighted random.
//!
//! Each pick draws a backend with probability proportional to its weight, in O(1): one
//! random 64-bit value and one alias-table lookup ([Walker's alias method], built exactly in
//! integers when the set changes, O(n)). The random source is SplitMix64 on a per-thread
//! stripe, seeded by [`Random::with_seed`]: the same seed and the same calls from one thread
//! replay the same picks, in whichever thread they are replayed.
//!
//! Choose it when a stateless, contention-free spread is enough, or as the fallback of
//! policies that need randomness.
//!
//! [Walker's alias method]: https://en.wikipedia.org/wiki/Alias_method

use crate::alias::{draw_distinct, AliasTable};
use crate::membership::{impl_balancer, Core, Policy, Snapshot, View};
use crate::sequence::Sequence;
use crate::{Backend, Error, Pick, Request};

/// Weighted random choice, O(1) per pick, reproducible from a seed.
///
/// ```
/// use lbkit::{Backend, Balancer, Random, Request};
/// let lb = Random::with_seed([Backend::new("a", ()), Backend::new("b", ()).with_weight(0)], 7)?;
/// assert_eq!(lb.pick(&Request::new()).unwrap().id(), "a");
/// # Ok::<(), lbkit::Error>(())
/// ```
pub struct Random<T> {
    core: Core<T, WeightedDraw>,
}

impl<T: Send + Sync + 'static> Random<T> {
    /// A weighted random balancer seeded from the clock and the process.
    ///
    /// # Errors
    /// [`Error::EmptyId`], [`Error::DuplicateId`], [`Error::TooManyBackends`].
    pub fn new(backends: impl IntoIterator<Item = Backend<T>>) -> Result<Self, Error> {
        Self::with_seed(backends, crate::entropy_seed())
    }

    /// A weighted random balancer whose choices replay exactly for a given seed.
    ///
    /// # Errors
    /// As [`Random::new`].
    pub fn with_seed(
        backends: impl IntoIterator<Item = Backend<T>>,
        seed: u64,
    ) -> Result<Self, Error> {
        Ok(Random {
            core: Core::new(
                WeightedDraw {
                    rng: Sequence::random(seed),
                },
                backends,
            )?,
        })
    }
}

impl_balancer!(Random);

pub(crate) struct WeightedDraw {
    rng: Sequence,
}

impl<T> Policy<T> for WeightedDraw {
    type Table = AliasTable;
    const TABLE_USES_HEALTH: bool = true;

    fn build(&self, view: &View<'_, T>) -> Result<AliasTable, Error> {
        Ok(AliasTable::new(view.eligible))
    }

    #[inline]
    fn choose(&self, snap: &Snapshot<T, AliasTable>, _: &Request<'_>) -> Option<usize> {
        let n = snap.eligible.len();
        if n == 0 {
            return None;
        }
        Some(snap.eligible[snap.table.sample(self.rng.next_random(), n)].index)
    }

    fn choose_n(
        &self,
        snap: &Snapshot<T, AliasTable>,
        _: &Request<'_>,
        n: usize,
        out: &mut Vec<Pick<T>>,
    ) {
        let mut chosen = Vec::with_capacity(n.min(snap.eligible.len()));
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
