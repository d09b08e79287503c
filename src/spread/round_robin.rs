//! Plain round robin.
//!
//! Each pick takes the next eligible backend in id order. The cursor is a per-thread
//! `Sequence` stripe, so two threads picking at once do not bounce one cache line between
//! cores; within one thread the rotation is exact: over any window of k x n consecutive picks
//! from that thread, each of n eligible backends gets exactly k. That holds while at most 16
//! threads that have picked are alive at once (a thread that exits gives its stripe back, so
//! churning pools keep it); beyond 16, threads share stripes and the rotation is exact over
//! the picks of the threads sharing one, not per thread. The cursor lives outside the
//! snapshot, so it survives membership changes.
//!
//! Cost: O(1) per pick (one atomic add on the thread's stripe, one division); O(n) per update.
//! Choose it when backends are alike and requests are short and alike.

use crate::backend::Backend;
use crate::builder::Builder;
use crate::engine::core::{impl_balancer, Core};
use crate::engine::policy::Policy;
use crate::engine::sequence::Sequence;
use crate::engine::snapshot::{Snapshot, View};
use crate::error::Error;
use crate::request::Request;

/// Round robin over the eligible backends, in id order.
///
/// ```
/// use lbkit::{Backend, Balancer, Request, RoundRobin};
/// let lb = RoundRobin::new(["a", "b", "c"].map(|id| Backend::new(id, ())))?;
/// let ids: Vec<String> = (0..6).map(|_| lb.pick(&Request::new()).unwrap().id().to_owned()).collect();
/// assert_eq!(ids.iter().filter(|id| *id == "a").count(), 2);
/// # Ok::<(), lbkit::Error>(())
/// ```
pub struct RoundRobin<T> {
    core: Core<T, Rotation>,
}

impl<T: Send + Sync + 'static> RoundRobin<T> {
    /// A RoundRobin balancer over `backends` (the same as `RoundRobin::builder().build(backends)`).
    ///
    /// # Errors
    /// [`Error::EmptyId`], [`Error::DuplicateId`], [`Error::TooManyBackends`], and
    /// [`Error::InvalidConfig`] for a backend's `max_in_flight` of 0.
    pub fn new(backends: impl IntoIterator<Item = Backend<T>>) -> Result<Self, Error> {
        Builder::new(RoundRobinConfig).build(backends)
    }
}

impl RoundRobin<()> {
    /// A builder, for passive health ([`Builder::health`]); its `build` makes a `RoundRobin<T>` of
    /// any `T` (this is a function of `RoundRobin<()>` only so that `RoundRobin::builder()` needs no type
    /// annotation).
    pub fn builder() -> Builder<RoundRobinConfig> {
        Builder::new(RoundRobinConfig)
    }
}

impl Builder<RoundRobinConfig> {
    /// Builds the balancer over `backends`.
    ///
    /// # Errors
    /// As [`RoundRobin::new`], and [`Error::InvalidConfig`] for a health rule out of range.
    pub fn build<T: Send + Sync + 'static>(
        self,
        backends: impl IntoIterator<Item = Backend<T>>,
    ) -> Result<RoundRobin<T>, Error> {
        let policy = Rotation {
            cursor: Sequence::counter(0),
        };
        Ok(RoundRobin {
            core: self.core(policy, backends)?,
        })
    }
}

impl_balancer!(RoundRobin);

/// The configuration of [`RoundRobin`], the type parameter of [`RoundRobin::builder`]'s [`Builder`]:
/// none of its own.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct RoundRobinConfig;

pub(crate) struct Rotation {
    cursor: Sequence,
}

impl<T> Policy<T> for Rotation {
    type Table = ();
    const TABLE_USES_HEALTH: bool = false;

    fn build(&self, _: &View<'_, T>) -> Result<(), Error> {
        Ok(())
    }

    /// The next in turn; one not accepted is passed over for the next accepted one after it.
    #[inline]
    fn choose(
        &self,
        snap: &Snapshot<T, ()>,
        _: &Request<'_>,
        accept: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = snap.eligible.len();
        if n == 0 {
            return None;
        }
        let at = (self.cursor.next() % n as u64) as usize;
        let index = snap.eligible[at].index;
        if accept(index) {
            return Some(index);
        }
        (1..n)
            .map(|k| snap.eligible[(at + k) % n].index)
            .find(|&i| accept(i))
    }

    fn choose_n(
        &self,
        snap: &Snapshot<T, ()>,
        _: &Request<'_>,
        n: usize,
        accept: impl Fn(usize) -> bool,
        out: &mut Vec<usize>,
    ) {
        let len = snap.eligible.len();
        if len == 0 {
            return;
        }
        let start = (self.cursor.next() % len as u64) as usize;
        out.extend(
            (0..len)
                .map(|k| snap.eligible[(start + k) % len].index)
                .filter(|&i| accept(i))
                .take(n),
        );
    }
}
