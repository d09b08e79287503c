//! Model checking of lbkit's lock-free protocol with [loom], which runs each model under every
//! interleaving of its threads (up to a preemption bound) and every value the C++11 memory
//! model lets each atomic load return.
//!
//! ```text
//! RUSTFLAGS="--cfg lbkit_loom" CARGO_TARGET_DIR=target/loom cargo test --release --test loom
//! ```
//!
//! # Why a model, not the crate itself
//!
//! loom only sees atomics and locks it provides itself. The crate's pick path goes through
//! `arc_swap::ArcSwap` (not loom-aware: its debt lists use std atomics) and its writer lock is
//! `parking_lot::Mutex`; swapping all of that for loom types under a cfg would change the very
//! code under test. So each model below re-implements one piece of the protocol in a few lines,
//! with **the same atomic operations and the same orderings** as the crate, and a comment
//! naming the crate code each step mirrors. A change to an ordering in the crate must be made
//! here too; the comments make the pairs easy to find.
//!
//! # What is covered
//!
//! * [`snapshot_swap_carries_counters`]: `Core::update` building a new snapshot that carries
//!   surviving backends' states over by id and publishing it, while a picker loads the
//!   snapshot, counts a pick in flight (`State::acquire`) and releases it (`Pick::drop`).
//!   Checked: a picker never reads a snapshot not fully written (loom's `UnsafeCell` flags the
//!   data race otherwise), never picks a backend absent from the snapshot it loaded, and every
//!   count ends at 0 with no wrap-around on the way.
//! * [`pick_held_across_remove_and_revive`] and [`release_races_with_revive`]: the retired map
//!   of `Core::update`. A backend removed while a pick on it is held, then added back, must get
//!   its old state back (`Weak::upgrade`) and count that pick, whether the pick is released
//!   before, during or after the revival; a state nobody holds must not be revived.
//! * [`sequence_hands_out_each_value_once`]: `Sequence::mine` (the compare-exchange that fixes
//!   the first thread's stripe) and `Sequence::next`, with two threads sharing a stripe (as
//!   threads beyond `STRIPES` do) and one on its own: every value is handed out exactly once.
//! * [`failure_reports_never_lose_an_ejection`]: `State::report_failure` (Relaxed count,
//!   `tripped_at`, Release `dirty`) against `Core::refresh` (`take_dirty`'s AcqRel swap, then
//!   Relaxed reads, ejection, `clear_failures`): after both, the backend is ejected or the
//!   dirty flag is still set for the next pick to act on.
//!
//! # What is not covered
//!
//! * arc-swap's own algorithm. The models stand for `ArcSwap` with what it documents and
//!   tests itself: `store` publishes the new snapshot with (at least) Release, `load` reads
//!   it with (at least) Acquire, and a loaded snapshot stays alive (with the references its
//!   entries hold) until the guard is dropped. The model publishes through an index with
//!   Release/Acquire and keeps a replaced snapshot's references until every guard of it is gone.
//! * `std::sync::Arc`/`Weak` internals: the models mirror their counting with loom atomics
//!   (`fetch_add` Relaxed, `fetch_sub` Release plus an Acquire fence on the last, `upgrade` a
//!   compare-exchange that increments a non-zero count with Acquire), as std implements them.
//! * The policies' own reads (`choose`): they read the immutable snapshot and Relaxed counters,
//!   whose atomicity loom cannot improve on; tests/stress.rs and tests/soak.rs run them.
//! * Thread-local stripe numbering and the sampled clock check in `Core::due` (thread-locals
//!   are outside loom's model); the stripe of each thread is a parameter of the model instead.
//!
//! Run time: about 1 s in release at a preemption bound of 3 (the default here, as in CI;
//! `LOOM_MAX_PREEMPTIONS` overrides it) and 4 s at 4, once built; building the test and its
//! dependencies under `--cfg lbkit_loom` takes a few minutes (its own target directory keeps the
//! main build's artifacts valid).
//!
//! Each model was checked to fail when the crate's protocol is broken: publishing the
//! snapshot with Relaxed (loom reports the unsynchronised read of the snapshot), making the
//! failure flag Relaxed on both sides ("took the flag, missed the count"), never reviving a
//! retired state (the held pick is no longer counted), and fixing the first stripe with a
//! plain store instead of the compare-exchange (a value handed out twice).
#![cfg(lbkit_loom)]

use std::collections::BTreeMap;

use loom::cell::UnsafeCell;
use loom::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use loom::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize};
use loom::sync::{Arc, Mutex, RwLock};
use loom::thread;

/// One backend's state (`state::State`), reduced to what the models need, with the strong
/// count of the `Arc<State>` that holds it made explicit (`refs`), so that `Weak::upgrade`
/// can be mirrored.
struct State {
    /// `State::in_flight`.
    in_flight: AtomicUsize,
    /// `State::health` (0 = Up, as `Health::to_u8`).
    health: AtomicU8,
    /// The strong count of the crate's `Arc<State>`: entries of snapshots and picks.
    refs: AtomicUsize,
}

impl State {
    fn new() -> Self {
        State {
            in_flight: AtomicUsize::new(0),
            health: AtomicU8::new(0),
            refs: AtomicUsize::new(1),
        }
    }

    /// `State::acquire`: `fetch_add(1, Relaxed)`.
    fn acquire(&self) {
        self.in_flight.fetch_add(1, Relaxed);
    }

    /// `State::release`: `fetch_sub(1, Relaxed)`; must never wrap.
    fn release(&self) {
        let before = self.in_flight.fetch_sub(1, Relaxed);
        assert!(before >= 1, "in-flight count wrapped below zero");
    }

    /// `Arc::clone`: Relaxed increment.
    fn retain(&self) {
        self.refs.fetch_add(1, Relaxed);
    }

    /// `Drop for Arc`: Release decrement, Acquire fence on the last.
    fn drop_ref(&self) {
        if self.refs.fetch_sub(1, Release) == 1 {
            fence(Acquire);
        }
    }

    /// `Weak::upgrade`: increment a non-zero count, Acquire on success.
    fn upgrade(&self) -> bool {
        let mut n = self.refs.load(Relaxed);
        loop {
            if n == 0 {
                return false;
            }
            match self.refs.compare_exchange_weak(n, n + 1, Acquire, Relaxed) {
                Ok(_) => return true,
                Err(seen) => n = seen,
            }
        }
    }

    /// `Weak::strong_count` (the retired map's `retain`).
    fn alive(&self) -> bool {
        self.refs.load(Relaxed) > 0
    }
}

/// `membership::Snapshot`: members sorted by id, each with its state. `guards` stands for the
/// arc-swap guards on it: a replaced snapshot gives its references up only once no guard is
/// left (the write lock waits for them); `released` says that happened.
struct Snapshot {
    members: Vec<(&'static str, Arc<State>)>,
    guards: RwLock<bool>,
}

impl Snapshot {
    fn find(&self, id: &str) -> Option<&Arc<State>> {
        self.members.iter().find(|m| m.0 == id).map(|m| &m.1)
    }
}

/// Most snapshots a model publishes.
const SLOTS: usize = 4;

/// `Core`: the `ArcSwap<Snapshot>` (an index into write-once slots, published with Release,
/// read with Acquire), the writer lock and the retired map.
struct Core {
    slots: Vec<UnsafeCell<Option<std::sync::Arc<Snapshot>>>>,
    current: AtomicUsize,
    writer: Mutex<BTreeMap<&'static str, Arc<State>>>,
}

/// `Pick`: holds a reference to the state it counted on.
struct Pick {
    id: &'static str,
    state: Arc<State>,
}

impl Drop for Pick {
    /// `Pick::drop`: `State::release`, then the `Arc<Entry>` (and so the state) is dropped.
    fn drop(&mut self) {
        self.state.release();
        self.state.drop_ref();
    }
}

impl Core {
    fn new(ids: &[&'static str]) -> Self {
        let members = ids.iter().map(|id| (*id, Arc::new(State::new()))).collect();
        let slots: Vec<_> = (0..SLOTS).map(|_| UnsafeCell::new(None)).collect();
        slots[0].with_mut(|s| {
            // SAFETY: no other thread exists yet.
            unsafe {
                *s = Some(std::sync::Arc::new(Snapshot {
                    members,
                    guards: RwLock::new(false),
                }))
            }
        });
        Core {
            slots,
            current: AtomicUsize::new(0),
            writer: Mutex::new(BTreeMap::new()),
        }
    }

    fn slot(&self, i: usize) -> std::sync::Arc<Snapshot> {
        self.slots[i].with(|s| {
            // SAFETY: slot i was written once, before `current` was set to i with Release;
            // the caller read i with Acquire. loom checks that this read is ordered after
            // that write (it reports a data race otherwise).
            unsafe { (*s).clone().expect("published slot") }
        })
    }

    /// `Core::pick` / `Core::load`: load the snapshot (`ArcSwap::load`, Acquire), choose by id
    /// (`prefer` if present, else the first member), count it (`Snapshot::pick` ->
    /// `Pick::new` -> `State::acquire`, then `Arc::clone` of the entry).
    fn pick(&self, prefer: &str) -> Option<Pick> {
        loop {
            let snap = self.slot(self.current.load(Acquire));
            let released = snap.guards.read().unwrap();
            if *released {
                // arc-swap never hands out a snapshot that was already given up: the
                // model's stand-in is to load again (the writer published before releasing).
                continue;
            }
            let (id, state) = snap
                .members
                .iter()
                .find(|m| m.0 == prefer)
                .or_else(|| snap.members.first())?;
            state.acquire();
            state.retain();
            return Some(Pick {
                id,
                state: state.clone(),
            });
        }
    }

    /// `Core::update`, under the writer lock: carry states over by id (`current.find`), else
    /// revive a retired one (`Weak::upgrade`, then set `Up`), else a fresh state; retire the
    /// removed ones (`Arc::downgrade`), drop dead ones from the retired map, publish
    /// (`ArcSwap::store`), and let the old snapshot go once no guard holds it.
    fn update(&self, ids: &[&'static str]) {
        let mut retired = self.writer.lock().unwrap();
        let at = self.current.load(Relaxed); // only writers store, under this lock
        let current = self.slot(at);
        let mut members = Vec::new();
        for &id in ids {
            let state = if let Some(s) = current.find(id) {
                s.retain();
                s.clone()
            } else if let Some(s) = retired.get(id).filter(|s| s.upgrade()) {
                // `state.set_health(Health::Up)`: Relaxed, published by the store below.
                s.health.store(0, Relaxed);
                s.clone()
            } else {
                Arc::new(State::new())
            };
            members.push((id, state));
        }
        for (id, s) in &current.members {
            if !ids.contains(id) {
                retired.insert(id, s.clone());
            }
        }
        retired.retain(|id, s| s.alive() && !ids.contains(id));
        let next = at + 1;
        self.slots[next].with_mut(|s| {
            // SAFETY: slot `next` is written only here, once, under the writer lock, before
            // `current` publishes it.
            unsafe {
                *s = Some(std::sync::Arc::new(Snapshot {
                    members,
                    guards: RwLock::new(false),
                }))
            }
        });
        // `ArcSwap::store`: at least Release.
        self.current.store(next, Release);
        drop(retired);
        // The old snapshot is dropped once its last guard is: its entries' references go.
        let mut released = current.guards.write().unwrap();
        *released = true;
        for (_, s) in &current.members {
            s.drop_ref();
        }
    }

    /// The current snapshot's members: (id, in flight, references).
    fn status(&self) -> Vec<(&'static str, usize, usize)> {
        let snap = self.slot(self.current.load(Acquire));
        snap.members
            .iter()
            .map(|(id, s)| (*id, s.in_flight.load(Relaxed), s.refs.load(Relaxed)))
            .collect()
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

#[test]
fn snapshot_swap_carries_counters() {
    model(|| {
        let core = Arc::new(Core::new(&["a", "b"]));
        let picker = {
            let core = core.clone();
            thread::spawn(move || {
                let first = core.pick("b").expect("never empty");
                let second = core.pick("c").expect("never empty");
                // "b" exists in both sets; "c" only in the second, else the first member.
                assert_eq!(first.id, "b");
                assert!(matches!(second.id, "a" | "c"), "{}", second.id);
                assert!(first.state.in_flight.load(Relaxed) >= 1);
                drop(first);
                second
            })
        };
        core.update(&["b", "c"]);
        let held = picker.join().unwrap();
        // "b" was carried over: one state, nothing in flight; "c" holds the pick if chosen.
        for (id, in_flight, refs) in core.status() {
            let want = usize::from(held.id == id);
            assert_eq!(in_flight, want, "{id}");
            assert_eq!(refs, 1 + want, "{id}: snapshot entry plus held pick");
        }
        drop(held);
        assert!(core.status().iter().all(|s| s.1 == 0));
    });
}

#[test]
fn pick_held_across_remove_and_revive() {
    model(|| {
        let core = Arc::new(Core::new(&["a", "b"]));
        let picker = {
            let core = core.clone();
            thread::spawn(move || core.pick("a").expect("never empty"))
        };
        core.update(&["b"]);
        core.update(&["a", "b"]);
        let held = picker.join().unwrap();
        let status = core.status();
        let a = status.iter().find(|s| s.0 == "a").unwrap();
        let b = status.iter().find(|s| s.0 == "b").unwrap();
        // Picked before the removal: "a" came back with its old state and counts the pick.
        // Picked in between: the pick went to "b".
        assert_eq!(a.1, usize::from(held.id == "a"));
        assert_eq!(b.1, usize::from(held.id == "b"));
        drop(held);
        assert!(core.status().iter().all(|s| s.1 == 0 && s.2 == 1));
    });
}

#[test]
fn release_races_with_revive() {
    model(|| {
        let core = Arc::new(Core::new(&["a"]));
        let picker = {
            let core = core.clone();
            thread::spawn(move || {
                if let Some(p) = core.pick("a") {
                    drop(p);
                }
            })
        };
        core.update(&[]);
        core.update(&["a"]);
        picker.join().unwrap();
        // Revived or fresh, the state of "a" counts nothing and is held only by the snapshot.
        assert_eq!(core.status(), [("a", 0, 1)]);
        // Nothing dead stays in the retired map beyond the next update.
        core.update(&["a"]);
        assert!(core.writer.lock().unwrap().is_empty());
    });
}

/// `sequence::Sequence` with two stripes: `first` (`NO_THREAD_YET` = `usize::MAX` until the
/// first thread's compare-exchange, Relaxed both ways) and one counter per stripe
/// (`fetch_add(1, Relaxed)` in `next`).
struct Sequence {
    stripes: [AtomicU64; 2],
    first: AtomicUsize,
}

impl Sequence {
    /// `Sequence::counter(start)`: stripe i starts at `start + i`.
    fn counter(start: u64) -> Self {
        Sequence {
            stripes: [AtomicU64::new(start), AtomicU64::new(start + 1)],
            first: AtomicUsize::new(usize::MAX),
        }
    }

    /// `Sequence::mine` for a thread whose process-wide stripe is `mine`.
    fn mine(&self, mine: usize) -> &AtomicU64 {
        let mut first = self.first.load(Relaxed);
        if first == usize::MAX {
            first = match self
                .first
                .compare_exchange(usize::MAX, mine, Relaxed, Relaxed)
            {
                Ok(_) => mine,
                Err(winner) => winner,
            };
        }
        &self.stripes[(mine + 2 - first) % 2]
    }

    /// `Sequence::next`.
    fn next(&self, mine: usize) -> u64 {
        self.mine(mine).fetch_add(1, Relaxed)
    }
}

#[test]
fn sequence_hands_out_each_value_once() {
    model(|| {
        let seq = Arc::new(Sequence::counter(100));
        // Threads 0 and 1 share process-wide stripe 1; thread 2 has stripe 0.
        let threads: Vec<_> = [1usize, 1, 0]
            .into_iter()
            .map(|stripe| {
                let seq = seq.clone();
                thread::spawn(move || [seq.next(stripe), seq.next(stripe)])
            })
            .collect();
        let got: Vec<[u64; 2]> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let first = seq.first.load(Relaxed);
        assert!(first <= 1, "first stripe fixed once");
        // The stripe the first thread drew from counts as stripe 0 and starts at 100; the
        // other starts at 101. Each stripe hands out consecutive values, each exactly once.
        let shared_start = if first == 1 { 100 } else { 101 };
        let own_start = 201 - shared_start;
        let mut shared: Vec<u64> = got[0].iter().chain(&got[1]).copied().collect();
        shared.sort_unstable();
        assert_eq!(
            shared,
            (shared_start..shared_start + 4).collect::<Vec<_>>(),
            "{got:?}"
        );
        assert_eq!(got[2], [own_start, own_start + 1], "{got:?}");
        // Each thread's own calls are in order.
        assert!(got.iter().all(|pair| pair[0] < pair[1]));
    });
}

/// `state::State`'s failure fields and `state::Feedback::dirty`.
struct Failures {
    consecutive: AtomicU32,
    tripped_at: AtomicU64,
    dirty: AtomicBool,
    ejected_until: AtomicU64,
}

const THRESHOLD: u32 = 2;

impl Failures {
    /// `State::report_failure` at clock time `now`.
    fn report(&self, now: u64) {
        let before = self
            .consecutive
            .fetch_update(Relaxed, Relaxed, |n| n.checked_add(1))
            .unwrap_or(u32::MAX);
        if before.saturating_add(1) >= THRESHOLD {
            if before.saturating_add(1) == THRESHOLD {
                self.tripped_at.store(now + 1, Relaxed);
            }
            self.dirty.store(true, Release);
        }
    }

    /// `Core::refresh` at clock time `now`: `take_dirty` (AcqRel swap), then
    /// `apply_outlier_rules` on this backend (Relaxed reads; eject, `clear_failures`).
    /// Returns whether it took the flag.
    fn refresh(&self, now: u64) -> bool {
        let took = self.dirty.swap(false, AcqRel);
        if self.ejected_until.load(Relaxed) == 0 && self.consecutive.load(Relaxed) >= THRESHOLD {
            let tripped = self
                .tripped_at
                .load(Relaxed)
                .checked_sub(1)
                .map_or(now, |at| at.min(now));
            self.ejected_until.store(tripped + 1000, Relaxed);
            self.consecutive.store(0, Relaxed);
            self.tripped_at.store(0, Relaxed);
        }
        took
    }
}

#[test]
fn failure_reports_never_lose_an_ejection() {
    model(|| {
        let f = Arc::new(Failures {
            consecutive: AtomicU32::new(0),
            tripped_at: AtomicU64::new(0),
            dirty: AtomicBool::new(false),
            ejected_until: AtomicU64::new(0),
        });
        let reporter = {
            let f = f.clone();
            thread::spawn(move || {
                f.report(10);
                f.report(20);
            })
        };
        // A pick that finds the flag set refreshes (here: once, whenever it runs).
        let took = f.refresh(15);
        // The ordering the crate relies on: a refresh that takes the flag sees the failure
        // count that raised it (Release in `report_failure`, AcqRel in `take_dirty`), so it
        // ejects. Made Relaxed, loom finds the refresh that takes the flag and misses the
        // count, losing the ejection.
        if took {
            assert_ne!(
                f.ejected_until.load(Relaxed),
                0,
                "took the flag, missed the count"
            );
        }
        reporter.join().unwrap();
        // With the threshold crossed, "ejected, or the flag still set for the next pick"
        // also holds, by the atomicity of the swap alone; it is not asserted here because
        // loom 0.7 can order a plain store between the read and the write of a concurrent
        // RMW (tokio-rs/loom#254, #389; fix pending in #391) and then reports a history
        // the hardware cannot produce. When the flag is still set, the next refresh
        // ejects from the report that crossed the threshold.
        if f.ejected_until.load(Relaxed) == 0 && f.dirty.load(Relaxed) {
            f.refresh(30);
            assert_eq!(f.ejected_until.load(Relaxed), 20 + 1000);
        }
    });
}
