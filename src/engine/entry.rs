//! One backend as one update described it: the unit a [`Pick`](crate::Pick) holds.

use std::sync::Arc;

use crate::engine::state::State;

/// One backend as the latest update described it.
pub(crate) struct Entry<T> {
    pub(crate) id: Arc<str>,
    pub(crate) weight: u32,
    /// The cap on picks held at once, 0 for none (stored into the state once the snapshot
    /// carrying this entry is built).
    pub(crate) max_in_flight: u32,
    pub(crate) value: T,
    pub(crate) state: Arc<State>,
    /// Where the backend stood in the list the latest update was given (only
    /// [`JumpHash`](crate::JumpHash), which numbers buckets in input order, reads it).
    pub(crate) position: usize,
    /// The priority level (0 is the highest).
    pub(crate) priority: u32,
    /// The locality, if the backend named one.
    pub(crate) locality: Option<Arc<str>>,
}
