//! Where the engine takes its synchronisation from: std's atomics, arc-swap's `ArcSwap` and
//! parking_lot's `Mutex`, re-exported as they are (no wrapper, no indirection), so that one
//! place decides what the engine runs on.

pub(crate) use arc_swap::{ArcSwap, Guard};
pub(crate) use parking_lot::Mutex;
pub(crate) use std::sync::atomic::Ordering;
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize};
