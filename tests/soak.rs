//! Soak test: every policy of the registry (tests/common/mod.rs), with passive health on, under several picking threads, a churning
//! updater and outcome reports, for a set time. Ignored by default; run it with
//!
//! ```text
//! LBKIT_SOAK_SECS=20 cargo test --release --test soak -- --ignored --nocapture
//! ```
//!
//! `LBKIT_SOAK_SECS` (default 10) is the whole run, shared evenly by the policies;
//! `LBKIT_SOAK_THREADS` (default 2) is the number of picking threads. CI runs it for 20 s;
//! a long run by hand is the same command with a larger number.
//!
//! What one policy's run does, for its share of the time:
//! * the picking threads pick (keyed and key-less requests) and `pick_n`, hold up to a few
//!   picks each, and finish them in random order by dropping them, reporting a success with
//!   a latency (a per-backend latency, so PeakEwma has something to learn), or a failure (a
//!   few backends fail half their requests, so outlier ejection keeps ejecting and returning
//!   them);
//! * the updater replaces the set with a random subset of 64 ids with random weights (0 to
//!   4), sets random health (on known and unknown ids), and advances the balancer's
//!   `ManualClock` (ejections end, slow starts ramp), timing every `update`.
//!
//! What is checked at the end of each run, with every thread joined:
//! * **exact accounting**: with every pick dropped, every backend's in-flight count is 0;
//!   before that, each count equals the picks the threads still held on that id;
//! * **consistent status**: `status()` lists exactly the ids and weights of the last set the
//!   updater gave, with the health it last set (the updater is the only writer, so it keeps an
//!   exact model);
//! * **no memory growth**: the test binary counts live heap bytes (a counting global
//!   allocator). The bytes live after the run, back on the starting set with every pick
//!   dropped, must be within [`GROWTH_BOUND`] of the bytes live before it; and the peak
//!   during the run is reported. A leaked snapshot, entry or state (a few hundred bytes
//!   each, one per update or more) over hundreds of thousands of updates would exceed the
//!   bound by orders of magnitude;
//! * **update latency stays bounded while picks run**: the slowest `update` must stay below
//!   `LBKIT_SOAK_MAX_UPDATE_MS` (default 1000 ms, generous on purpose for a shared machine:
//!   it catches a writer starved or blocked by picks, which would take unbounded time, not a
//!   slow machine). The figures (picks per second, updates, median and max update time) are
//!   printed.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{Policy, POLICIES};
use lbkit::{
    Backend, Balancer, Error, Health, HealthConfig, ManualClock, OutlierDetection, Pick, Request,
    SlowStart,
};

/// Counts live heap bytes of this test binary, delegating to the system allocator.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` with the same arguments, so it upholds
// `GlobalAlloc`'s contract exactly as `System` does; the counter is a side effect only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is (see above).
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            // Relaxed: a statistic; the joins before every reading order it.
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is (see above).
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            // Relaxed: as in `alloc`.
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is (see above).
        unsafe { System.dealloc(ptr, layout) };
        // Relaxed: as in `alloc`.
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is (see above).
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Relaxed: as in `alloc`.
            LIVE_BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_bytes() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// How far the live bytes after a run may be above those before it. Thread spawning and
/// joining, arc-swap's per-thread bookkeeping (kept for reuse by later threads) and the
/// allocations of `std`'s own runtime fit well within it.
const GROWTH_BOUND: isize = 256 * 1024;

/// Ids the updater draws its sets from.
const POOL: usize = 64;
/// Picks a picking thread holds at most.
const HOLD: usize = 8;

type Lb = Box<dyn Balancer<u32>>;

fn id(i: usize) -> String {
    format!("backend-{i:02}")
}

/// SplitMix64, the test's own random source.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The starting set, also restored at the end for the memory comparison.
fn starting_set() -> Vec<Backend<u32>> {
    (0..16).map(|i| Backend::new(id(i), i as u32)).collect()
}

/// How long updates took: count, maximum, and a histogram of power-of-two buckets.
#[derive(Default)]
struct UpdateTimes {
    count: u64,
    max: Duration,
    buckets: [u64; 32],
}

impl UpdateTimes {
    fn add(&mut self, took: Duration) {
        self.count += 1;
        self.max = self.max.max(took);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.buckets[(63 - nanos.leading_zeros() as usize).min(31)] += 1;
    }

    /// The upper end of the bucket holding the median.
    fn median(&self) -> Duration {
        let mut seen = 0;
        for (b, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen * 2 >= self.count && n > 0 {
                return Duration::from_nanos(1u64 << (b + 1).min(63));
            }
        }
        Duration::ZERO
    }
}

/// Figures of one policy's run.
struct Figures {
    picks: u64,
    updates: u64,
    median_update: Duration,
    max_update: Duration,
    peak_growth: isize,
    end_growth: isize,
}

fn soak(policy: Policy, seed: u64, duration: Duration, pickers: usize) -> Figures {
    let name = policy.name;
    let clock = ManualClock::new();
    let health = HealthConfig::new()
        .clock(clock.clone())
        .outlier_detection(OutlierDetection {
            consecutive_failures: 3,
            base_ejection_time: Duration::from_millis(20),
            max_ejection_time: Duration::from_millis(200),
            max_ejection_percent: 30.0,
            // The statistical rules sweep concurrently with the pickers too.
            interval: Duration::from_millis(30),
            success_rate: Some(lbkit::SuccessRateEjection {
                request_volume: 10,
                minimum_hosts: 3,
                ..lbkit::SuccessRateEjection::default()
            }),
            failure_percentage: Some(lbkit::FailurePercentageEjection {
                threshold: 50,
                request_volume: 10,
                minimum_hosts: 3,
                ..lbkit::FailurePercentageEjection::default()
            }),
            ..OutlierDetection::default()
        })
        .panic_threshold(0.3)
        .slow_start(SlowStart::new(Duration::from_millis(50)))
        // Soft health re-weighs concurrently with the pickers too.
        .soft_health(lbkit::SoftHealth {
            interval: Duration::from_millis(20),
            request_volume: 5,
            ..lbkit::SoftHealth::default()
        });
    let lb: Lb = (policy.new)(starting_set(), seed).expect("a valid set");
    lb.set_health_config(health).expect("valid rules");
    let lb: Arc<Lb> = Arc::new(lb);
    // Warm up every path once on this thread (thread-locals, lazily built structures).
    for k in 0..100u32 {
        drop(lb.pick(&Request::with_hash(u64::from(k))));
        drop(lb.pick_n(&Request::new(), 3));
    }
    let before = live_bytes();
    let peak = Arc::new(AtomicIsize::new(before));
    let stop = Arc::new(AtomicBool::new(false));
    let picks = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(pickers + 2));

    let picking: Vec<_> = (0..pickers)
        .map(|t| {
            let (lb, stop, picks, start) = (lb.clone(), stop.clone(), picks.clone(), start.clone());
            thread::spawn(move || {
                let mut rng = Rng(t as u64 * 7919 + 1);
                let mut held: Vec<Pick<u32>> = Vec::with_capacity(HOLD + 4);
                let mut count = 0u64;
                start.wait();
                while !stop.load(Ordering::Relaxed) {
                    let key = rng.below(1000);
                    let request = match rng.below(3) {
                        0 => Request::new(),
                        1 => Request::with_hash(key),
                        _ => Request::with_key(&[0u8; 0]),
                    };
                    if rng.below(8) == 0 {
                        let n = rng.below(4) as usize;
                        let got = lb.pick_n(&request, n);
                        assert!(got.len() <= n, "{}", got.len());
                        count += got.len() as u64;
                        held.extend(got);
                    } else if let Some(p) = lb.pick(&request) {
                        count += 1;
                        held.push(p);
                    }
                    while held.len() > HOLD || (!held.is_empty() && rng.below(2) == 0) {
                        let p = held.swap_remove(rng.below(held.len() as u64) as usize);
                        let n: usize = p.id()[8..].parse().expect("id ends in its number");
                        match rng.below(4) {
                            0 => drop(p),
                            // Backends 0 to 3 fail half their requests.
                            _ if n < 4 && rng.below(2) == 0 => p.failure_of(
                                [
                                    lbkit::Failure::LocalOrigin,
                                    lbkit::Failure::Error,
                                    lbkit::Failure::Overloaded { retry_after: None },
                                ][rng.below(3) as usize],
                            ),
                            _ => p.success(Duration::from_micros(100 * (n as u64 + 1))),
                        }
                    }
                }
                picks.fetch_add(count, Ordering::Relaxed);
                held
            })
        })
        .collect();

    let updater = {
        let (lb, stop, start) = (lb.clone(), stop.clone(), start.clone());
        thread::spawn(move || {
            let mut rng = Rng(0xfeed);
            // Update times: a fixed-size histogram (power-of-two nanosecond buckets), so the
            // test's own memory does not grow with the run.
            let mut times = UpdateTimes::default();
            // The updater's exact model: id -> (weight, health) of the current set.
            let mut model: BTreeMap<String, (u32, Health)> = starting_set()
                .iter()
                .map(|b| (b.id().to_owned(), (b.weight(), Health::Up)))
                .collect();
            start.wait();
            let mut step = 0u64;
            while !stop.load(Ordering::Relaxed) {
                step += 1;
                clock.advance(Duration::from_millis(1));
                if step % 4 == 0 {
                    let size = 1 + rng.below(POOL as u64) as usize;
                    let mut set: Vec<Backend<u32>> = Vec::new();
                    for i in 0..POOL {
                        if rng.below(POOL as u64) < size as u64 {
                            let weight = rng.below(5) as u32;
                            set.push(Backend::new(id(i), i as u32).with_weight(weight));
                        }
                    }
                    // Input order must not matter: shuffle.
                    for i in (1..set.len()).rev() {
                        set.swap(i, rng.below(i as u64 + 1) as usize);
                    }
                    let next: BTreeMap<String, (u32, Health)> = set
                        .iter()
                        .map(|b| {
                            let health = model.get(b.id()).map_or(Health::Up, |m| m.1);
                            (b.id().to_owned(), (b.weight(), health))
                        })
                        .collect();
                    let began = Instant::now();
                    lb.update(set).expect("a valid set");
                    times.add(began.elapsed());
                    model = next;
                } else {
                    let i = rng.below(POOL as u64 + 4) as usize;
                    let health =
                        [Health::Up, Health::Down, Health::Draining][rng.below(3) as usize];
                    let name = id(i);
                    match lb.set_health(&name, health) {
                        Ok(()) => model.get_mut(&name).expect("known id").1 = health,
                        Err(Error::UnknownId(e)) => assert!(!model.contains_key(&e), "{e}"),
                        Err(e) => panic!("set_health: {e}"),
                    }
                }
                if step % 64 == 0 {
                    thread::sleep(Duration::from_micros(200));
                }
            }
            (times, model)
        })
    };

    start.wait();
    let began = Instant::now();
    while began.elapsed() < duration {
        thread::sleep(Duration::from_millis(20));
        peak.fetch_max(live_bytes(), Ordering::Relaxed);
    }
    stop.store(true, Ordering::Relaxed);
    let held: Vec<Vec<Pick<u32>>> = picking.into_iter().map(|h| h.join().unwrap()).collect();
    let (times, model) = updater.join().unwrap();
    let elapsed = began.elapsed();

    // Exact accounting with picks still held: each count is the picks held on that id.
    let mut holding: BTreeMap<String, usize> = BTreeMap::new();
    for p in held.iter().flatten() {
        *holding.entry(p.id().to_owned()).or_default() += 1;
    }
    let status = lb.status();
    for s in &status {
        let want = holding.get(s.id()).copied().unwrap_or(0);
        assert_eq!(s.in_flight(), want, "{name}: {} with picks held", s.id());
    }
    drop(held);
    // Consistent status: exactly the updater's model, every count back to 0.
    let status = lb.status();
    let got: BTreeMap<String, (u32, Health)> = status
        .iter()
        .map(|s| (s.id().to_owned(), (s.weight(), s.health())))
        .collect();
    assert_eq!(
        got, model,
        "{name}: status differs from the last set and health given"
    );
    assert!(
        status.iter().all(|s| s.in_flight() == 0),
        "{name}: in flight after every pick was dropped: {status:?}"
    );
    let (updates, median_update, max_update) = (times.count, times.median(), times.max);
    // Only what the balancer holds may count: the test's own data goes first.
    drop((times, model, got, status, holding));
    // Back on the starting set (health reset by a set with none of these ids in between),
    // every pick dropped: the live bytes must be back near where they were.
    lb.update(Vec::new()).unwrap();
    lb.update(starting_set()).unwrap();
    let after = live_bytes();
    let end_growth = after - before;
    let peak_growth = peak.load(Ordering::Relaxed) - before;

    let figures = Figures {
        picks: picks.load(Ordering::Relaxed),
        updates,
        median_update,
        max_update,
        peak_growth,
        end_growth,
    };
    println!(
        "{name:>20}: {:>6.1} s, {:>10.0} picks/s, {:>7} updates, update median <{:>8.1?} max \
         {:>8.1?}, live heap vs start: peak {:+} B, end {:+} B",
        elapsed.as_secs_f64(),
        figures.picks as f64 / elapsed.as_secs_f64(),
        figures.updates,
        figures.median_update,
        figures.max_update,
        figures.peak_growth,
        figures.end_growth,
    );
    figures
}

#[test]
#[ignore = "long: run with --ignored (CI sets LBKIT_SOAK_SECS)"]
fn soak_every_policy() {
    let total = Duration::from_secs(env("LBKIT_SOAK_SECS", 10));
    let pickers = env("LBKIT_SOAK_THREADS", 2).max(1) as usize;
    let max_update = Duration::from_millis(env("LBKIT_SOAK_MAX_UPDATE_MS", 1000));
    let each = (total / POLICIES.len() as u32).max(Duration::from_millis(500));
    println!(
        "soak: {} policies x {each:?}, {pickers} picking threads + 1 updater",
        POLICIES.len()
    );
    let (mut picks, mut updates, mut worst) = (0u64, 0u64, Duration::ZERO);
    let mut failures = Vec::new();
    for (seed, &policy) in POLICIES.iter().enumerate() {
        let name = policy.name;
        let f = soak(policy, seed as u64 + 1, each, pickers);
        picks += f.picks;
        updates += f.updates;
        worst = worst.max(f.max_update);
        if f.end_growth > GROWTH_BOUND {
            failures.push(format!(
                "{name}: {} B more live heap after the run",
                f.end_growth
            ));
        }
        if f.max_update > max_update {
            failures.push(format!("{name}: an update took {:?}", f.max_update));
        }
        assert!(f.updates > 0, "{name}: the updater never ran");
    }
    println!("soak: {picks} picks, {updates} updates in all; slowest update {worst:?}");
    assert!(failures.is_empty(), "{failures:#?}");
}
