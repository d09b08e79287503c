//! First available (HAProxy's `balance first`).
//!
//! Each pick takes the first eligible backend, in the order the backends were given to the
//! latest `new` or `update`, that has room under its
//! [`max_in_flight`](crate::Backend::with_max_in_flight) cap. A backend without a cap always
//! has room, so the first eligible uncapped backend takes everything that reaches it: give
//! every backend a cap (or all but the last) for the policy to fill them in turn. The aim is
//! to keep as few backends busy as possible, so that the others can be stopped or scaled
//! down (HAProxy's documentation: "the purpose of this algorithm is to always use the
//! smallest number of servers possible").
//!
//! This is the one request-spreading policy whose choice depends on the order of the list
//! (as [`JumpHash`](crate::JumpHash) numbers its buckets in list order among the hashing
//! policies); every other policy orders backends by id. Weights other than 0 do not matter;
//! weight 0, health and ejection make a backend ineligible as for every policy.
//!
//! Cost: O(1) per pick when no backend has a cap and the request does not steer (the first
//! eligible backend, precomputed); otherwise O(k), k the backends passed over. O(n log n) per
//! update or health change (the eligible backends sorted by list position).
//! Choose it for batch or elastic fleets where idle backends are worth stopping, with caps
//! set to what each backend can take.

use crate::backend::Backend;
use crate::builder::Builder;
use crate::engine::core::{impl_balancer, Core};
use crate::engine::policy::Policy;
use crate::engine::snapshot::{Snapshot, View};
use crate::error::Error;
use crate::request::Request;

/// The first eligible backend with room, in the order the backends were given.
///
/// ```
/// use lbkit::{Backend, Balancer, First, Request};
/// let lb = First::new([
///     Backend::new("z", ()).with_max_in_flight(2),
///     Backend::new("a", ()).with_max_in_flight(2),
/// ])?;
/// let held: Vec<_> = (0..3).map(|_| lb.pick(&Request::new()).unwrap()).collect();
/// let ids: Vec<&str> = held.iter().map(|p| p.id()).collect();
/// assert_eq!(ids, ["z", "z", "a"]); // "z" was given first: it fills first
/// # Ok::<(), lbkit::Error>(())
/// ```
pub struct First<T> {
    core: Core<T, InListOrder>,
}

impl<T: Send + Sync + 'static> First<T> {
    /// A First balancer over `backends` (the same as `First::builder().build(backends)`).
    ///
    /// # Errors
    /// [`Error::EmptyId`], [`Error::DuplicateId`], [`Error::TooManyBackends`], and
    /// [`Error::InvalidConfig`] for a `max_in_flight` of 0.
    pub fn new(backends: impl IntoIterator<Item = Backend<T>>) -> Result<Self, Error> {
        Builder::new(FirstConfig).build(backends)
    }
}

impl First<()> {
    /// A builder, for passive health ([`Builder::health`]); its `build` makes a `First<T>`
    /// of any `T` (this is a function of `First<()>` only so that `First::builder()` needs
    /// no type annotation).
    pub fn builder() -> Builder<FirstConfig> {
        Builder::new(FirstConfig)
    }
}

impl Builder<FirstConfig> {
    /// Builds the balancer over `backends`.
    ///
    /// # Errors
    /// As [`First::new`], and [`Error::InvalidConfig`] for a health rule out of range.
    pub fn build<T: Send + Sync + 'static>(
        self,
        backends: impl IntoIterator<Item = Backend<T>>,
    ) -> Result<First<T>, Error> {
        Ok(First {
            core: self.core(InListOrder, backends)?,
        })
    }
}

impl_balancer!(First);

/// The configuration of [`First`], the type parameter of [`First::builder`]'s [`Builder`]:
/// none of its own.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct FirstConfig;

pub(crate) struct InListOrder;

impl<T> Policy<T> for InListOrder {
    /// The eligible members (indices into `Snapshot::members`) in list order.
    type Table = Box<[u32]>;
    const TABLE_USES_HEALTH: bool = true;

    fn build(&self, view: &View<'_, T>) -> Result<Box<[u32]>, Error> {
        let mut order: Vec<u32> = view
            .eligible
            .iter()
            // Indices fit in u32 (see `MAX_BACKENDS`).
            .map(|e| e.index as u32)
            .collect();
        order.sort_unstable_by_key(|&i| view.members[i as usize].position);
        Ok(order.into())
    }

    #[inline]
    fn choose(
        &self,
        snap: &Snapshot<T, Box<[u32]>>,
        _: &Request<'_>,
        accept: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        snap.table.iter().map(|&i| i as usize).find(|&i| accept(i))
    }

    fn choose_n(
        &self,
        snap: &Snapshot<T, Box<[u32]>>,
        _: &Request<'_>,
        n: usize,
        accept: impl Fn(usize) -> bool,
        out: &mut Vec<usize>,
    ) {
        out.extend(
            snap.table
                .iter()
                .map(|&i| i as usize)
                .filter(|&i| accept(i))
                .take(n),
        );
    }
}
