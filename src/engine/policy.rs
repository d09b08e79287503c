//! The one trait a policy implements: how it chooses. Everything else is the engine's.

use crate::engine::orca::WeightConfig;
use crate::engine::snapshot::{Snapshot, View};
use crate::engine::state::LatencyTracking;
use crate::error::Error;
use crate::request::Request;

/// How one algorithm chooses. Everything else (membership, accounting, health, errors) is the
/// [`Core`](crate::engine::core::Core)'s.
pub(crate) trait Policy<T>: Send + Sync + 'static {
    /// What the policy precomputes from a backend set.
    type Table: Send + Sync + 'static;
    /// Whether the table depends on which backends are eligible and their effective weights.
    /// If not, a health change keeps the old table (hashing policies walk past ineligible
    /// backends instead, so that a backend going down moves only its own keys).
    const TABLE_USES_HEALTH: bool;

    /// Precomputes the table. An error here rejects the whole update.
    fn build(&self, view: &View<'_, T>) -> Result<Self::Table, Error>;

    /// The index (into `snap.members`) of the backend for this request among the eligible
    /// members for which `accept` is true, or `None` when there is none. `accept` is a pure
    /// test during one call (it may be asked about a member more than once); the plain pick
    /// passes `|_| true`, which static dispatch makes free. Members not accepted are skipped
    /// in the policy's own way (the next in turn, a new draw, the next in the key's order).
    fn choose(
        &self,
        snap: &Snapshot<T, Self::Table>,
        request: &Request<'_>,
        accept: impl Fn(usize) -> bool,
    ) -> Option<usize>;

    /// Pushes the indices of up to `n` distinct eligible members for which `accept` is true,
    /// in preference order, the first being the one `choose` would return.
    fn choose_n(
        &self,
        snap: &Snapshot<T, Self::Table>,
        request: &Request<'_>,
        n: usize,
        accept: impl Fn(usize) -> bool,
        out: &mut Vec<usize>,
    );

    /// For each member index `0..members` (into the snapshot's members), the entries it owns
    /// in `table`: ring points, Maglev slots or continuum points, for
    /// [`Status::table_share`](crate::Status::table_share). `None` (the default) for
    /// policies whose table has no entries per member (every request-spreading policy, jump
    /// hash, rendezvous). May cost O(table): called by `status()` only, never on a pick.
    fn table_shares(&self, table: &Self::Table, members: usize) -> Option<Vec<u64>> {
        let _ = (table, members);
        None
    }

    /// The draw that chooses this request's priority level and locality (see
    /// [`crate::engine::tiers`]), or `None` for the core's own sequence, and the request to
    /// choose with inside them. A hashing policy derives the draw from the key, so that a
    /// key keeps its level while the split stands, and hands back the request with the key's
    /// hash in it, so that the key is hashed once.
    #[inline]
    fn tier_draw<'r>(&self, request: &Request<'r>) -> (Option<u64>, Request<'r>) {
        (None, *request)
    }

    /// Whether reports should maintain a peak-EWMA latency estimate, and its parameters.
    fn latency_tracking(&self) -> Option<LatencyTracking> {
        None
    }

    /// Whether load reports give backends weights (client-side weighted round robin), and
    /// how.
    fn report_weights(&self) -> Option<WeightConfig> {
        None
    }

    /// Whether reported failures weigh on load as requests in flight, and the time constant
    /// with which they fade (see [`State::failure_load`](crate::engine::state::State::failure_load)).
    fn failure_load(&self) -> Option<std::time::Duration> {
        None
    }
}
