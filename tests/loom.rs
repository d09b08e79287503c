//! Model checking of lbkit's lock-free protocol with [loom], which runs each model under every
//! interleaving of its threads (up to a preemption bound) and every value the C11 memory
//! model lets each atomic load return.
//!
//! ```text
//! RUSTFLAGS="--cfg lbkit_loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=3 \
//!     cargo test --release --test loom
//! ```
//!
//! # The crate's own code, not a copy
//!
//! Under `--cfg lbkit_loom` the engine takes its synchronisation from `src/engine/sync.rs`,
//! which then hands it loom's atomics and mutex instead of std's, arc-swap's and
//! parking_lot's (in a normal build that module is plain re-exports). So the models below
//! drive the real balancers through the public API (`RoundRobin`: `pick`, `update`,
//! `status`, `Pick::failure`), and what loom checks is the crate's own code with the crate's
//! own orderings:
//!
//! * `State` (src/engine/state.rs): in-flight `acquire` / `release`, health,
//!   `report_failure`, `eject`, `revive`, and `Feedback`'s dirty flag (`take_dirty`);
//! * `Core` (src/engine/core.rs): `load` (and the refresh a dirty flag triggers), `update`
//!   with its carry-over by id, retired map and revival, `status`; `Pick` (src/engine/pick.rs)
//!   counting and releasing;
//! * `Sequence` (src/engine/sequence.rs): `mine`'s compare-exchange and `next`.
//!
//! The models are an integration test over the public API rather than in-crate tests because
//! the balancers are the real entry points (what a user calls is what is checked), and so
//! that the lib's own unit tests (std threads, which loom atomics reject outside a model)
//! never run under the loom cfg. What the models need beyond the public API is
//! `lbkit::loom_hooks` (`#[doc(hidden)]`, built only under `--cfg lbkit_loom`): a thread's
//! stripe number, and `Sequence` on its own.
//!
//! # What is still a stand-in
//!
//! * `arc_swap::ArcSwap` (its atomics are std's, which loom cannot see) is replaced by a small
//!   loom-aware `ArcSwap` in src/engine/sync.rs with the contract arc-swap documents and the
//!   engine relies on: a store publishes with Release, a load reads with Acquire, a loaded
//!   guard keeps its snapshot alive, and a replaced snapshot nobody holds is dropped by the
//!   store that replaced it. Each stored value carries a flag (a loom atomic, created and set
//!   before its publication, read by every load), so a publication that does not order the
//!   snapshot's construction before its readers fails the model, as do the loom atomics of a
//!   new backend's `State` read through it. arc-swap's own algorithm is not checked here (it
//!   has its own tests).
//! * `parking_lot::Mutex` (the writer lock) is `loom::sync::Mutex`.
//! * `std::sync::Arc` / `Weak` (entries, states, the retired map's `Weak::upgrade`) are
//!   std's: their counts run, but loom does not explore their interleavings (loom's `Arc` has
//!   no `Weak`).
//! * Thread-locals: a thread's `Sequence` stripe is set by the model
//!   (`loom_hooks::set_stripe`, default 0) instead of taken from the process-wide holder
//!   counts; `Core::due`'s per-thread sampling counter is never read, because the models use
//!   a `ManualClock` (cheap, so read on every pick).
//! * The policies' `choose` is RoundRobin's only; the others read the same snapshot and
//!   Relaxed counters (tests/stress.rs and tests/soak.rs run them with real threads).
//!
//! # What each model checks
//!
//! * [`snapshot_swap_carries_counters`]: `update` building a new snapshot that carries a
//!   surviving backend's state over by id, racing with a thread that picks twice: every pick
//!   comes from the old set or the new one, never newer then older, never from a snapshot
//!   not fully published; the held picks are counted on the carried and new states, and every
//!   count ends at 0 with no wrap-around.
//! * [`pick_held_across_remove_and_revive`] and [`release_races_with_revive`]: the retired
//!   map. A backend removed while a pick on it is held, then added back, gets its old state
//!   back (`Weak::upgrade`) and counts that pick, whether the pick is released before, during
//!   or after the revival.
//! * [`sequence_hands_out_each_value_once`]: two threads sharing a stripe (as threads beyond
//!   `STRIPES` do) and one on its own: `mine` fixes the first thread's stripe once, and every
//!   value is handed out exactly once, in order per thread.
//! * [`failure_reports_never_lose_an_ejection`]: `report_failure` (Relaxed count, Release
//!   dirty flag) racing with the refresh a pick triggers (`take_dirty`'s AcqRel swap, then
//!   Relaxed reads of the count): two failures in a row always eject the backend.
//!
//! * [`costed_acquires_race_under_a_cap`]: two picks of costs 2 and 3 racing for a backend
//!   capped at 4 work units (`Request::cost`): never both held, every unit given back.
//! * [`capped_acquire_races_release_and_update`]: `State::try_acquire`'s compare-exchange
//!   loop on a backend with a cap of 1, two pickers racing each other, their releases and an
//!   update that carries the count and stores the cap again: never two holders at once, and
//!   every count ends at 0.
//!
//! Not checked any more (the hand copy did, through its own bookkeeping): that the retired
//! map drops dead states at the next update. That runs under the writer lock, with no race
//! to explore, and the public API cannot observe it.
//!
//! # Checked to fail
//!
//! Each mutant below, planted in the crate one at a time, fails the run; reverted, it passes:
//!
//! * `Feedback::take_dirty`'s swap AcqRel -> Relaxed, or `State::report_failure`'s dirty
//!   store Release -> Relaxed: [`failure_reports_never_lose_an_ejection`] ("a" not ejected:
//!   the refresh took the flag and read a stale failure count).
//! * The stand-in's publication (the swap in `ArcSwap::swap`, or the load in
//!   `ArcSwap::load`) made Relaxed: [`snapshot_swap_carries_counters`],
//!   [`pick_held_across_remove_and_revive`] and [`release_races_with_revive`] (loom's
//!   "Causality violation": a pick reads what the update wrote before publishing, unordered).
//! * `Sequence::mine` fixing the first stripe with a plain store instead of the
//!   compare-exchange: [`sequence_hands_out_each_value_once`] (a value handed out twice).
//! * `State::acquire_below` checking the count and then `fetch_add`ing instead of the
//!   compare-exchange: [`capped_acquire_races_release_and_update`] ("two picks hold \"a\"
//!   under a cap of 1").
//!
//! Run time, once built: about 1.6 s in release at a preemption bound of 3 (the default
//! here, as in CI; `LOOM_MAX_PREEMPTIONS` overrides it) and 5.5 s at 4. The build under
//! `--cfg lbkit_loom` takes a few minutes; its own target directory keeps the main build's
//! artifacts valid.
#![cfg(lbkit_loom)]

use lbkit::loom_hooks::{set_stripe, Sequence};
use lbkit::{Backend, Balancer, Health, HealthConfig, ManualClock, OutlierDetection, Request};
use lbkit::{Pick, RoundRobin};
use loom::sync::Arc;
use loom::thread;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// A round robin over `ids` on a manual clock (see the header: no thread-local sampling).
fn round_robin(ids: &[&'static str], health: HealthConfig) -> RoundRobin<&'static str> {
    RoundRobin::builder()
        .health(health.clock(ManualClock::new()))
        .build(backends(ids))
        .expect("a valid set")
}

fn backends(ids: &[&'static str]) -> Vec<Backend<&'static str>> {
    ids.iter().map(|id| Backend::new(*id, *id)).collect()
}

/// The current set: (id, in flight, health).
fn status(lb: &RoundRobin<&'static str>) -> Vec<(String, usize, Health)> {
    lb.status()
        .iter()
        .map(|s| (s.id().to_owned(), s.in_flight(), s.health()))
        .collect()
}

/// How many of `held` are on `id`.
fn held_on(held: &[&Pick<&'static str>], id: &str) -> usize {
    held.iter().filter(|p| p.id() == id).count()
}

#[test]
fn snapshot_swap_carries_counters() {
    model(|| {
        let lb = Arc::new(round_robin(&["a", "b"], HealthConfig::new()));
        let picker = {
            let lb = lb.clone();
            thread::spawn(move || {
                let first = lb.pick(&Request::new()).expect("never empty");
                let second = lb.pick(&Request::new()).expect("never empty");
                (first, second)
            })
        };
        lb.update(backends(&["b", "c"])).unwrap();
        let (first, second) = picker.join().unwrap();
        // The cursor hands out 0 then 1: the first and second member of the set each pick
        // loaded. Old set (a, b), new set (b, c); a pick never loads an older set than the
        // pick before it.
        let got = (first.id(), second.id());
        assert!(
            matches!(got, ("a", "b") | ("a", "c") | ("b", "c")),
            "{got:?}"
        );
        assert_eq!(*first, first.id(), "a pick's value is its backend's");
        // "b" was carried over (one state, counting a pick made on either set); "c" counts
        // its pick; "a", removed, is no longer listed.
        let held = [&first, &second];
        for (id, in_flight, health) in status(&lb) {
            assert_eq!(in_flight, held_on(&held, &id), "{id}");
            assert_eq!(health, Health::Up);
        }
        drop((first, second));
        assert!(status(&lb).iter().all(|s| s.1 == 0), "{:?}", status(&lb));
        // A pick that starts after the update returned sees the new set only.
        let after = lb.pick(&Request::new()).expect("never empty");
        assert!(matches!(after.id(), "b" | "c"));
    });
}

#[test]
fn pick_held_across_remove_and_revive() {
    model(|| {
        let lb = Arc::new(round_robin(&["a", "b"], HealthConfig::new()));
        let picker = {
            let lb = lb.clone();
            thread::spawn(move || lb.pick(&Request::new()).expect("never empty"))
        };
        lb.update(backends(&["b"])).unwrap();
        lb.update(backends(&["a", "b"])).unwrap();
        let held = picker.join().unwrap();
        // Picked before the removal or after the revival: "a", counted on its one state.
        // Picked in between: "b".
        let want: Vec<(String, usize, Health)> = ["a", "b"]
            .iter()
            .map(|id| (id.to_string(), held_on(&[&held], id), Health::Up))
            .collect();
        assert_eq!(status(&lb), want);
        drop(held);
        assert!(status(&lb).iter().all(|s| s.1 == 0), "{:?}", status(&lb));
    });
}

#[test]
fn release_races_with_revive() {
    model(|| {
        let lb = Arc::new(round_robin(&["a"], HealthConfig::new()));
        let picker = {
            let lb = lb.clone();
            thread::spawn(move || {
                if let Some(p) = lb.pick(&Request::new()) {
                    drop(p);
                }
            })
        };
        lb.update(Vec::new()).unwrap();
        lb.update(backends(&["a"])).unwrap();
        picker.join().unwrap();
        // Revived or fresh, the state of "a" counts nothing (a release on the revived state
        // never wraps it) and is up.
        assert_eq!(status(&lb), [("a".to_owned(), 0, Health::Up)]);
        let again = lb.pick(&Request::new()).expect("a is up");
        assert_eq!(status(&lb)[0].1, 1);
        drop(again);
        assert_eq!(status(&lb)[0].1, 0);
    });
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
                thread::spawn(move || {
                    set_stripe(stripe);
                    [seq.next(), seq.next()]
                })
            })
            .collect();
        let got: Vec<[u64; 2]> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        // The stripe of the first thread to draw counts as the sequence's stripe 0 and starts
        // at 100; the other is stripe 1 (starts at 101) if it is process-wide stripe 1, else
        // 15 (starts at 115). Each stripe hands out consecutive values, each exactly once.
        let mut shared: Vec<u64> = got[0].iter().chain(&got[1]).copied().collect();
        shared.sort_unstable();
        let shared_first = shared == [100, 101, 102, 103] && got[2] == [115, 116];
        let own_first = shared == [101, 102, 103, 104] && got[2] == [100, 101];
        assert!(shared_first || own_first, "{got:?}");
        // Each thread's own calls are in order.
        assert!(got.iter().all(|pair| pair[0] < pair[1]), "{got:?}");
    });
}

#[test]
fn failure_reports_never_lose_an_ejection() {
    model(|| {
        let rules = OutlierDetection {
            consecutive_failures: 2,
            ..OutlierDetection::default()
        };
        let lb = Arc::new(round_robin(
            &["a"],
            HealthConfig::new().outlier_detection(rules),
        ));
        let reporter = {
            let lb = lb.clone();
            thread::spawn(move || {
                for _ in 0..2 {
                    lb.pick(&Request::new()).expect("not ejected yet").failure();
                }
            })
        };
        // A pick racing with the reports: if it finds the dirty flag set, it refreshes
        // (`take_dirty`, then the rules read the failure count). On a thread of its own:
        // loom's bounded search does not reorder the reports before a pick of the thread
        // that spawned the reporter.
        let picker = {
            let lb = lb.clone();
            thread::spawn(move || drop(lb.pick(&Request::new())))
        };
        reporter.join().unwrap();
        picker.join().unwrap();
        // Two failures in a row eject "a", whatever the interleaving: a refresh that took the
        // flag saw the count that raised it (Release in `report_failure`, AcqRel in
        // `take_dirty`), or the flag is still set and this status (`Core::load`) applies it.
        // With either side Relaxed, loom finds the refresh that takes the flag and misses the
        // count: the flag is gone and the ejection lost.
        let status = lb.status();
        assert!(status[0].is_ejected(), "{status:?}");
    });
}

/// Two picks of costs 2 and 3 race for a backend capped at 4 work units (only one fits at a
/// time) while their releases race the other's acquire: the work held never passes the cap,
/// and every unit comes back.
#[test]
fn costed_acquires_race_under_a_cap() {
    model(|| {
        let lb = Arc::new(
            RoundRobin::builder()
                .health(HealthConfig::new().clock(ManualClock::new()))
                .build(capped(4, false))
                .expect("a valid set"),
        );
        let work = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let pickers: Vec<_> = [2u32, 3]
            .into_iter()
            .enumerate()
            .map(|(stripe, cost)| {
                let (lb, work) = (lb.clone(), work.clone());
                thread::spawn(move || {
                    set_stripe(stripe);
                    let Some(p) = lb.pick(&Request::new().cost(cost)) else {
                        return;
                    };
                    let cost = cost as usize;
                    let before = work.fetch_add(cost, loom::sync::atomic::Ordering::SeqCst);
                    assert!(
                        before + cost <= 4,
                        "{} units held under a cap of 4",
                        before + cost
                    );
                    work.fetch_sub(cost, loom::sync::atomic::Ordering::SeqCst);
                    drop(p);
                })
            })
            .collect();
        for p in pickers {
            p.join().unwrap();
        }
        assert!(status(&lb).iter().all(|s| s.1 == 0), "{:?}", status(&lb));
        let two = lb.pick(&Request::new().cost(2)).expect("room for 2");
        assert!(
            lb.pick(&Request::new().cost(3)).is_none(),
            "3 more would pass 4"
        );
        drop(two);
    });
}

/// A round robin over `("a", cap)` and, if given, an uncapped "b".
fn capped(cap: u32, with_b: bool) -> Vec<Backend<&'static str>> {
    let mut set = vec![Backend::new("a", "a").with_max_in_flight(cap)];
    if with_b {
        set.push(Backend::new("b", "b"));
    }
    set
}

#[test]
fn capped_acquire_races_release_and_update() {
    model(|| {
        let lb = Arc::new(
            RoundRobin::builder()
                .health(HealthConfig::new().clock(ManualClock::new()))
                .build(capped(1, false))
                .expect("a valid set"),
        );
        // Holders of "a" at once, counted around each pick's lifetime: above 1 only if two
        // acquires both took the one slot.
        let holders = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let pickers: Vec<_> = (0..2)
            .map(|stripe| {
                let (lb, holders) = (lb.clone(), holders.clone());
                thread::spawn(move || {
                    set_stripe(stripe);
                    let Some(p) = lb.pick(&Request::new().avoid(&["b"])) else {
                        return;
                    };
                    if p.id() == "a" {
                        let before = holders.fetch_add(1, loom::sync::atomic::Ordering::SeqCst);
                        assert_eq!(before, 0, "two picks hold \"a\" under a cap of 1");
                        holders.fetch_sub(1, loom::sync::atomic::Ordering::SeqCst);
                    }
                    drop(p);
                })
            })
            .collect();
        // The update carries "a"'s count and stores its cap again, racing the acquires.
        lb.update(capped(1, true)).unwrap();
        for p in pickers {
            p.join().unwrap();
        }
        assert!(status(&lb).iter().all(|s| s.1 == 0), "{:?}", status(&lb));
        // The cap still holds after everything: one pick on "a", then it is full.
        let held = lb.pick(&Request::new().avoid(&["b"])).expect("a has room");
        assert_eq!(held.id(), "a");
        let next = lb.pick(&Request::new().avoid(&["b"])).expect("b takes it");
        assert_eq!(next.id(), "b", "a is full: the avoid list gives way");
    });
}
