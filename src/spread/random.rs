//! Weighted random.
//!
//! Each pick draws a backend with probability proportional to its weight, in O(1): one
//! random 64-bit value and one alias-table lookup ([Walker's alias method], built exactly in
//! integers when the set changes, O(n)). The random source is SplitMix64 on a per-thread
//! stripe, seeded by [`Builder::seed`] (or [`Random::with_seed`]): the same seed and the same calls from one thread
//! replay the same picks, in whichever thread they are replayed.
//!
//! Choose it when a stateless, contention-free spread is enough, or as the fallback of
//! policies that need randomness.
//!
//! [Walker's alias method]: https://en.wikipedia.org/wiki/Alias_method

use crate::backend::Backend;
use crate::builder::{Builder, Seedable};
use crate::engine::alias::{draw_distinct, draw_where, AliasTable};
use crate::engine::core::{impl_balancer, Core};
use crate::engine::policy::Policy;
use crate::engine::sequence::Sequence;
use crate::engine::snapshot::{Snapshot, View};
use crate::error::Error;
use crate::request::Request;

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
    /// A Random balancer seeded from the clock and the process (the same as
    /// `Random::builder().build(backends)`).
    ///
    /// # Errors
    /// [`Error::EmptyId`], [`Error::DuplicateId`], [`Error::TooManyBackends`], and
    /// [`Error::InvalidConfig`] for a backend's `max_in_flight` of 0.
    pub fn new(backends: impl IntoIterator<Item = Backend<T>>) -> Result<Self, Error> {
        Builder::new(RandomConfig::default()).build(backends)
    }

    /// A Random balancer whose choices replay exactly for a given seed: the shortcut for
    /// `Random::builder().seed(seed).build(backends)`.
    ///
    /// # Errors
    /// As [`Random::new`].
    pub fn with_seed(
        backends: impl IntoIterator<Item = Backend<T>>,
        seed: u64,
    ) -> Result<Self, Error> {
        Builder::new(RandomConfig::default())
            .seed(seed)
            .build(backends)
    }
}

impl Random<()> {
    /// A builder, for a seed ([`Builder::seed`]) and passive health ([`Builder::health`]);
    /// its `build` makes a `Random<T>` of any `T` (this is a function of `Random<()>` only so that
    /// `Random::builder()` needs no type annotation).
    pub fn builder() -> Builder<RandomConfig> {
        Builder::new(RandomConfig::default())
    }
}

impl Builder<RandomConfig> {
    /// Builds the balancer over `backends`.
    ///
    /// # Errors
    /// As [`Random::new`], and [`Error::InvalidConfig`] for a health rule out of range.
    pub fn build<T: Send + Sync + 'static>(
        self,
        backends: impl IntoIterator<Item = Backend<T>>,
    ) -> Result<Random<T>, Error> {
        let policy = WeightedDraw {
            rng: Sequence::random(self.seed_or_entropy()),
        };
        Ok(Random {
            core: self.core(policy, backends)?,
        })
    }
}

impl_balancer!(Random);

/// The configuration of [`Random`], the type parameter of [`Random::builder`]'s [`Builder`]:
/// none of its own.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct RandomConfig;

impl Seedable for RandomConfig {}

pub(crate) struct WeightedDraw {
    rng: Sequence,
}

impl<T> Policy<T> for WeightedDraw {
    type Table = AliasTable;
    const TABLE_USES_HEALTH: bool = true;

    fn build(&self, view: &View<'_, T>) -> Result<AliasTable, Error> {
        Ok(AliasTable::new(view.eligible))
    }

    /// A weighted draw; one not accepted is drawn again (a few times, then an exact
    /// weighted draw among the accepted ones).
    #[inline]
    fn choose(
        &self,
        snap: &Snapshot<T, AliasTable>,
        _: &Request<'_>,
        accept: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let p = draw_where(
            &snap.table,
            &snap.eligible,
            || self.rng.next_random(),
            |p| !accept(snap.eligible[p].index),
        )?;
        Some(snap.eligible[p].index)
    }

    fn choose_n(
        &self,
        snap: &Snapshot<T, AliasTable>,
        _: &Request<'_>,
        n: usize,
        accept: impl Fn(usize) -> bool,
        out: &mut Vec<usize>,
    ) {
        let mut chosen = Vec::with_capacity(n.min(snap.eligible.len()));
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
