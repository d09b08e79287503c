//! Per-backend counters and the richer status (issue #17): picks, successes, failures by
//! kind, dropped and spills, exact under threads for every policy of the registry; removed
//! backends listed until they drain; the latency estimate where one is kept.

mod common;

use std::collections::BTreeMap;
use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use common::POLICIES;
use lbkit::{
    Backend, Balancer, Failure, FailureCounts, HashRing, Health, LeastConnections, PeakEwma, Pick,
    Request, RoundRobin,
};

/// What one thread did to one backend.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    picks: u64,
    successes: u64,
    failures: [u64; 3],
    dropped: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.picks += other.picks;
        self.successes += other.successes;
        for (a, b) in self.failures.iter_mut().zip(other.failures) {
            *a += b;
        }
        self.dropped += other.dropped;
    }
}

/// SplitMix64: the test's own random stream, so a failure replays.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Ends `pick` in one of five ways, chosen by `roll`, counting it in `tally`.
fn end(pick: Pick<u32>, roll: u64, tally: &mut BTreeMap<String, Tally>) {
    let t = tally.entry(pick.id().to_owned()).or_default();
    match roll % 5 {
        0 => {
            t.successes += 1;
            pick.success(Duration::from_micros(roll % 1000));
        }
        1 => {
            t.failures[0] += 1;
            pick.failure_of(Failure::LocalOrigin);
        }
        2 => {
            t.failures[1] += 1;
            pick.failure();
        }
        3 => {
            t.failures[2] += 1;
            pick.failure_of(Failure::Overloaded { retry_after: None });
        }
        _ => {
            t.dropped += 1;
            drop(pick);
        }
    }
}

const THREADS: usize = 4;
const ROUNDS: u64 = 4_000;
const IDS: [&str; 5] = ["a", "b", "c", "d", "e"];

fn backends(round: u64) -> Vec<Backend<u32>> {
    IDS.iter()
        .enumerate()
        .map(|(i, id)| Backend::new(*id, i as u32).with_weight(1 + (i as u32 + round as u32) % 3))
        .collect()
}

/// Threads pick (`pick` and `pick_n`), hold some, and end every pick one of five ways while
/// another thread changes weights and health (the ids stay, so their counters do): the
/// counters of every backend equal what the threads did, exactly.
#[test]
fn counters_are_exact_under_threads_for_every_policy() {
    for policy in POLICIES {
        let name = policy.name;
        let lb = (policy.new)(backends(0), 11).unwrap();
        let lb = &*lb;
        let start = Barrier::new(THREADS + 1);
        let tallies: Vec<BTreeMap<String, Tally>> = thread::scope(|s| {
            let workers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let start = &start;
                    s.spawn(move || {
                        let mut rng = 0x5eed + t as u64;
                        let mut tally = BTreeMap::<String, Tally>::new();
                        let mut held: Vec<Pick<u32>> = Vec::new();
                        start.wait();
                        for _ in 0..ROUNDS {
                            let roll = next(&mut rng);
                            let request = Request::with_hash(roll >> 8);
                            let picks = if roll % 7 == 0 {
                                lb.pick_n(&request, 2)
                            } else {
                                lb.pick(&request).into_iter().collect()
                            };
                            for pick in picks {
                                tally.entry(pick.id().to_owned()).or_default().picks += 1;
                                if roll % 3 == 0 && held.len() < 16 {
                                    held.push(pick);
                                } else {
                                    end(pick, next(&mut rng), &mut tally);
                                }
                            }
                            if roll % 5 == 0 {
                                if let Some(pick) = held.pop() {
                                    end(pick, next(&mut rng), &mut tally);
                                }
                            }
                        }
                        for pick in held {
                            end(pick, next(&mut rng), &mut tally);
                        }
                        tally
                    })
                })
                .collect();
            let churn = s.spawn(|| {
                start.wait();
                for round in 1..200u64 {
                    lb.update(backends(round)).unwrap();
                    let id = IDS[round as usize % IDS.len()];
                    let health = [Health::Up, Health::Draining, Health::Down][round as usize % 3];
                    lb.set_health(id, health).unwrap();
                    thread::yield_now();
                }
                for id in IDS {
                    lb.set_health(id, Health::Up).unwrap();
                }
            });
            let tallies = workers.into_iter().map(|w| w.join().unwrap()).collect();
            churn.join().unwrap();
            tallies
        });
        let mut want = BTreeMap::<String, Tally>::new();
        for tally in &tallies {
            for (id, t) in tally {
                want.entry(id.clone()).or_default().add(t);
            }
        }
        let total: u64 = want.values().map(|t| t.picks).sum();
        assert!(total >= ROUNDS, "{name}: only {total} picks");
        for s in lb.status() {
            let w = want.get(s.id()).copied().unwrap_or_default();
            let got = Tally {
                picks: s.picks(),
                successes: s.successes(),
                failures: {
                    let f = s.failures_by_kind();
                    [f.local_origin, f.error, f.overloaded]
                },
                dropped: s.dropped(),
            };
            assert_eq!(got, w, "{name}: {}", s.id());
            assert_eq!(s.in_flight(), 0, "{name}: {}", s.id());
            assert_eq!(
                s.picks(),
                s.successes() + s.failures() + s.dropped(),
                "{name}: {}",
                s.id()
            );
        }
    }
}

/// The report from the issue: 32 sessions open, 4 of them on a backend that is then
/// removed. The visible total stays 32 until those 4 end, the removed backend listed last
/// and marked, with its counters; it leaves the list when its last pick drops.
#[test]
fn a_removed_backend_stays_visible_until_it_drains() {
    let set =
        |ids: &[&str]| -> Vec<Backend<()>> { ids.iter().map(|id| Backend::new(*id, ())).collect() };
    let lb = LeastConnections::new(set(&["a", "b", "c", "d", "e", "f", "g", "h"])).unwrap();
    let sessions: Vec<Pick<()>> = (0..32).filter_map(|_| lb.pick(&Request::new())).collect();
    assert_eq!(sessions.len(), 32);
    let total =
        |lb: &LeastConnections<()>| lb.status().iter().map(|s| s.in_flight()).sum::<usize>();
    assert_eq!(total(&lb), 32);
    lb.update(set(&["a", "b", "c", "d", "e", "f", "g"]))
        .unwrap();
    assert_eq!(
        total(&lb),
        32,
        "the removed backend's 4 sessions still count"
    );
    let status = lb.status();
    let last = status.last().unwrap();
    assert_eq!(
        (last.id(), last.is_removed(), last.in_flight()),
        ("h", true, 4)
    );
    assert_eq!((last.picks(), last.effective_weight()), (4, 0.0));
    assert!(!last.is_eligible());
    assert_eq!(status.iter().filter(|s| s.is_removed()).count(), 1);
    let (on_h, others): (Vec<_>, Vec<_>) = sessions.into_iter().partition(|p| p.id() == "h");
    let mut on_h = on_h.into_iter();
    on_h.next().unwrap().success(Duration::from_millis(1));
    let last = lb.status().pop().unwrap();
    assert_eq!((last.id(), last.in_flight(), last.successes()), ("h", 3, 1));
    drop(on_h);
    assert!(lb.status().iter().all(|s| !s.is_removed()), "drained");
    assert_eq!(total(&lb), 28);
    drop(others);
    assert_eq!(total(&lb), 0);
}

/// A backend that leaves a subset while picks on it are held is listed after the members with
/// coverage 0, until they drop.
#[test]
fn a_backend_outside_the_subset_is_listed_while_picks_on_it_are_held() {
    use lbkit::subset::{RendezvousSubset, Subset};
    let ids: Vec<String> = (0..20).map(|i| format!("s{i:02}")).collect();
    let lb = RoundRobin::builder()
        .build(ids.iter().map(|id| Backend::new(id.as_str(), ())))
        .unwrap();
    let held: Vec<Pick<()>> = (0..20).filter_map(|_| lb.pick(&Request::new())).collect();
    assert_eq!(held.len(), 20, "one on each");
    lb.set_subset(Subset::Rendezvous(RendezvousSubset::new(5).salt(7)))
        .unwrap();
    let status = lb.status();
    let members: Vec<_> = status.iter().filter(|s| s.coverage() > 0.0).collect();
    let outside: Vec<_> = status.iter().filter(|s| s.coverage() == 0.0).collect();
    assert_eq!((members.len(), outside.len()), (5, 15));
    assert!(outside
        .iter()
        .all(|s| s.in_flight() == 1 && !s.is_removed() && !s.is_eligible()));
    let first_outside = status.iter().position(|s| s.coverage() == 0.0).unwrap();
    assert_eq!(first_outside, 5, "members first");
    drop(held);
    assert_eq!(lb.status().len(), 5);
}

/// Bounded loads: once the key's home is at its capacity, every further pick of that key goes
/// on, and counts one spill on the home (and none anywhere else).
#[test]
fn spills_count_the_picks_that_went_past_a_full_home() {
    let lb = HashRing::builder()
        .load_factor(1.25)
        .build((0..4).map(|i| Backend::new(format!("n{i}"), ())))
        .unwrap();
    let request = Request::with_key("hot");
    let mut held = Vec::new();
    for _ in 0..40 {
        held.push(lb.pick(&request).unwrap());
    }
    let home = held[0].id().to_owned();
    let at_home = held.iter().filter(|p| p.id() == home).count() as u64;
    assert!(at_home < 40, "the bound sent some elsewhere");
    for s in lb.status() {
        let want = if s.id() == home { 40 - at_home } else { 0 };
        assert_eq!(s.spills(), want, "{}", s.id());
    }
    // Without a bound: no spill.
    let plain = HashRing::new((0..4).map(|i| Backend::new(format!("n{i}"), ()))).unwrap();
    let held: Vec<_> = (0..40).map(|_| plain.pick(&request).unwrap()).collect();
    assert!(held.iter().all(|p| p.id() == home));
    assert!(plain.status().iter().all(|s| s.spills() == 0));
}

/// The peak-EWMA estimate is in the status (and only there): it follows a slow backend up.
#[test]
fn peak_ewma_status_shows_its_latency_estimate() {
    use lbkit::{HealthConfig, ManualClock};
    let clock = ManualClock::new();
    let lb = PeakEwma::builder()
        .health(HealthConfig::new().clock(clock.clone()))
        .build([Backend::new("a", ()), Backend::new("b", ())])
        .unwrap();
    for _ in 0..10 {
        let pick = lb.pick(&Request::new().prefer("a")).unwrap();
        assert_eq!(pick.id(), "a");
        pick.success(Duration::from_millis(250));
    }
    let status = lb.status();
    let a = status[0].latency().unwrap();
    let b = status[1].latency().unwrap();
    assert!(a >= Duration::from_millis(200), "{a:?}");
    assert!(a <= Duration::from_millis(250), "{a:?}");
    assert!(b < a, "{b:?} (the default) below {a:?}");
    // It decays with time, as the pick sees it.
    clock.advance(Duration::from_secs(30));
    assert!(lb.status()[0].latency().unwrap() < a);
    let rr = RoundRobin::new([Backend::new("a", ())]).unwrap();
    assert_eq!(rr.status()[0].latency(), None);
    assert_eq!(rr.status()[0].failures_by_kind(), FailureCounts::default());
}
