//! Where the engine takes its synchronisation from.
//!
//! In every normal build these are plain re-exports of `std`'s atomics, arc-swap's `ArcSwap`
//! and parking_lot's `Mutex`: no wrapper, no indirection, the same code as importing them
//! directly.
//!
//! Under `--cfg lbkit_loom` (tests/loom.rs) the engine runs on [loom]'s model-checked
//! versions instead, so that the models check the crate's own atomics protocol (`State`,
//! `Feedback`, `Sequence`, `Core`'s snapshot swap and retired map), not a copy of it:
//!
//! * the atomics and `fence` are loom's, with the crate's own orderings;
//! * the writer lock is `loom::sync::Mutex`, behind parking_lot's `lock` / `try_lock` shape;
//! * `ArcSwap` (whose own atomics loom cannot see) is a stand-in with the contract arc-swap
//!   documents and the engine relies on: a store publishes with Release, a load reads with
//!   Acquire, and a loaded guard keeps its value alive (see [`loom_model::ArcSwap`]);
//! * a thread's stripe number (a thread-local, process-wide in `Sequence`) is set by the
//!   model ([`loom_model::set_stripe`]).
//!
//! `std::sync::Arc` / `Weak` stay std's in both builds: their counts are std's (trusted, not
//! model-checked), and loom's `Arc` has no `Weak`.

#[cfg(not(lbkit_loom))]
pub(crate) use arc_swap::{ArcSwap, Guard};
#[cfg(not(lbkit_loom))]
pub(crate) use parking_lot::Mutex;
#[cfg(not(lbkit_loom))]
pub(crate) use std::sync::atomic::Ordering;
#[cfg(not(lbkit_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize};

#[cfg(lbkit_loom)]
pub(crate) use loom::sync::atomic::Ordering;
#[cfg(lbkit_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize};
#[cfg(lbkit_loom)]
pub(crate) use loom_model::{stripe, ArcSwap, Guard, Mutex};

/// The loom stand-ins, and the hooks tests/loom.rs reaches through `lbkit::loom_hooks`.
#[cfg(lbkit_loom)]
pub(crate) mod loom_model {
    use std::cell::Cell;
    use std::ops::Deref;
    use std::sync::Arc;

    use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A stand-in for `arc_swap::ArcSwap<T>` that loom can see, with the contract the engine
    /// relies on: [`store`](ArcSwap::store) and [`swap`](ArcSwap::swap) publish the new value
    /// with Release, [`load`](ArcSwap::load) reads it with Acquire, and a loaded [`Guard`]
    /// keeps its value alive after it was replaced; a replaced value nobody holds is dropped
    /// by the store that replaced it (as arc-swap does once it has paid its readers' debts).
    ///
    /// The current value is an index into `values`, published through a loom atomic. Each
    /// value comes with a `written` flag, set (Relaxed) before the value is published and
    /// checked (Relaxed) by every load after it read the index: it stands for the snapshot's
    /// memory, so a publication that does not order the value's construction before its
    /// readers is reported ("loaded a value before its store was visible"). `values` itself
    /// is bookkeeping under a std mutex, invisible to loom: it synchronises nothing, so it
    /// hides no missing ordering (loom runs one thread at a time and never switches inside
    /// it, so it never blocks).
    pub(crate) struct ArcSwap<T> {
        current: AtomicUsize,
        values: std::sync::Mutex<Vec<Published<T>>>,
    }

    struct Published<T> {
        /// `None` once replaced (the guards still hold it).
        value: Option<Arc<T>>,
        written: Arc<AtomicBool>,
    }

    /// What [`ArcSwap::load`] returns: a strong reference to the value loaded.
    pub(crate) struct Guard<T>(T);

    impl<T> Deref for Guard<T> {
        type Target = T;

        fn deref(&self) -> &T {
            &self.0
        }
    }

    impl<T> ArcSwap<T> {
        pub(crate) fn new(value: Arc<T>) -> Self {
            let swap = ArcSwap {
                current: AtomicUsize::new(usize::MAX),
                values: std::sync::Mutex::new(Vec::new()),
            };
            let index = swap.push(value);
            // Relaxed: the swap itself is published to other threads by whatever shares it.
            swap.current.store(index, Ordering::Relaxed);
            swap
        }

        pub(crate) fn from_pointee(value: T) -> Self {
            Self::new(Arc::new(value))
        }

        /// Adds `value` and marks it written; returns its index, not yet published.
        fn push(&self, value: Arc<T>) -> usize {
            let written = Arc::new(AtomicBool::new(false));
            let index = {
                let mut values = self.values.lock().expect("loom stand-in bookkeeping");
                values.push(Published {
                    value: Some(value),
                    written: Arc::clone(&written),
                });
                values.len() - 1
            };
            // Relaxed: ordered before readers by the publishing swap (that is what is checked).
            written.store(true, Ordering::Relaxed);
            index
        }

        pub(crate) fn load(&self) -> Guard<Arc<T>> {
            loop {
                // Acquire: arc-swap's load; pairs with the Release of `swap`.
                let index = self.current.load(Ordering::Acquire);
                let (value, written) = {
                    let values = self.values.lock().expect("loom stand-in bookkeeping");
                    let published = &values[index];
                    (published.value.clone(), Arc::clone(&published.written))
                };
                assert!(
                    written.load(Ordering::Relaxed),
                    "loaded a value before its store was visible: the publication is not ordered"
                );
                if let Some(value) = value {
                    return Guard(value);
                }
                // Replaced and released since the index was read: read it again (loom does
                // not return a value seen before the yield when a newer one exists).
                loom::thread::yield_now();
            }
        }

        pub(crate) fn load_full(&self) -> Arc<T> {
            self.load().0
        }

        pub(crate) fn store(&self, value: Arc<T>) {
            drop(self.swap(value));
        }

        pub(crate) fn swap(&self, value: Arc<T>) -> Arc<T> {
            let index = self.push(value);
            // AcqRel: Release publishes the new value (arc-swap's store); Acquire orders the
            // release of the old one after its own publication.
            let old = self.current.swap(index, Ordering::AcqRel);
            let mut values = self.values.lock().expect("loom stand-in bookkeeping");
            values[old].value.take().expect("a value is replaced once")
        }
    }

    impl<T> std::fmt::Debug for ArcSwap<T> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("ArcSwap(loom stand-in)")
        }
    }

    /// `loom::sync::Mutex` with parking_lot's `lock` / `try_lock` shape.
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
            self.0
                .lock()
                .expect("no panics while the writer lock is held in a model")
        }

        pub(crate) fn try_lock(&self) -> Option<loom::sync::MutexGuard<'_, T>> {
            self.0.try_lock().ok()
        }
    }

    loom::thread_local! {
        static STRIPE: Cell<usize> = Cell::new(0);
    }

    /// The calling thread's stripe (`Sequence`'s thread-local numbering): 0 unless the model
    /// set it with [`set_stripe`].
    pub(crate) fn stripe() -> usize {
        STRIPE.with(Cell::get)
    }

    /// Hooks for tests/loom.rs, re-exported as `lbkit::loom_hooks` under `--cfg lbkit_loom`
    /// only (never part of the public API).
    pub mod hooks {
        /// Gives the calling loom thread this process-wide stripe number (see
        /// `engine::sequence`), as if `Sequence` had taken it on the thread's first pick.
        pub fn set_stripe(stripe: usize) {
            super::STRIPE.with(|s| s.set(stripe));
        }

        /// The crate's `Sequence` (`engine::sequence`), to model-check on its own.
        #[derive(Debug)]
        pub struct Sequence(crate::engine::sequence::Sequence);

        impl Sequence {
            /// `Sequence::counter(start)`.
            pub fn counter(start: u64) -> Self {
                Sequence(crate::engine::sequence::Sequence::counter(start))
            }

            /// `Sequence::next`: the calling thread's next counter value.
            pub fn next(&self) -> u64 {
                self.0.next()
            }
        }
    }
}
