//! The pick path of the request policies: pick + drop (accounting included), against the
//! `fetch_add` floor measured in the same group.
//!
//! Groups:
//! * `pick/N`: one thread, N backends, all idle (least connections can stop at the first idle
//!   backend it meets).
//! * `pick_loaded/N`: one thread, every backend holding 1..=7 picks, so least connections
//!   must scan everything and P2C compares real loads.
//! * `pick_2threads/100`: two threads picking at once on one shared balancer; the time is per
//!   pick per thread. The floors here are one `fetch_add` per thread on a shared counter (what
//!   one shared cursor would cost) and on counters on separate cache lines.
//!
//! * `report/100`: pick + outcome report (which releases the pick). Peak EWMA's report feeds
//!   its latency estimate (one clock read); round robin's with outlier detection on resets
//!   the failure run. Beside them, the same policies' plain pick + drop, and `floor/clock`:
//!   one read of `MonotonicClock` (the clock passive health and Peak EWMA use by default).
//!   `round-robin+statistical`: the same with success-rate and failure-percentage ejection
//!   on, whose reports are also counted per backend. `weighted-round-robin+soft`: weighted
//!   round robin with soft health on (each success and its latency counted) beside it plain.
//!   `client-side-wrr`: client-side weighted round robin with every backend's reported weight
//!   known, pick + drop beside weighted round robin's, and pick + in-band load report +
//!   success (issue #16's target: its pick within 1.5x of weighted round robin's).
//!   `prequal/*`: Prequal (same estimate as Peak EWMA, 8 candidates per pick) beside Peak
//!   EWMA, and `p2c/pick+drop` beside both (`prequal` is in the `pick/N` groups too).
//!
//! * `steering/100`: per-request steering and caps beside the plain pick of the same policy,
//!   for round robin and a hashing policy (`HashRing`, keyed requests): `plain`, `avoid2` (a
//!   2-id avoid list, ids in the set), `prefer` (an id in the set, up), `capped` (every
//!   backend with a `max_in_flight` it never reaches, so every pick takes the capped path).
//!
//! * `sweep/1000`: the statistical ejection rules' sweep over 1000 backends, each with
//!   enough reports: a pick that finds it due (the clock moved one interval), which runs the
//!   sweep and rebuilds; beside it a pick after a health change, which only rebuilds; and
//!   soft health's sweep the same way (P2C, whose rebuild is O(n) whatever the weights);
//!   client-side weighted round robin's refresh every update period (every backend's reported
//!   weight read, the schedule rebuilt) beside weighted round robin's rebuild.
//!
//! `least-connections+failure_penalty` and `p2c+failure_penalty` in the pick groups: the
//! policies with failures weighing as load, no failure reported (the option's cost to a pick).
//!
//! * `subset`: a pick through a subset (client 0 of 100 over 1000 backends, aperture 12: 20
//!   backends)
//!   beside a pick over a set of the subset's size, for P2C and a hash ring; and
//!   `set_subset` over 10,000 backends (choosing the subset and rebuilding the snapshot of
//!   it), deterministic aperture and rendezvous.
//!
//! * `metrics/100` (with the `metrics` feature): round robin and P2C plain and with
//!   `Builder::metrics` and no recorder installed, pick + drop and pick + success.
//!
//! * `tiers/100`: 100 backends flat beside the same 100 in two priority levels (P0 of 60 at
//!   half health, so P1 takes 30%) and three localities weighted 1/1/1, for round robin,
//!   P2C, least connections and a hash ring (keyed requests): what choosing a level and a
//!   locality adds to a pick (issue #13's target: under 1.3x).
//!
//! Read ratios, not absolute times: `cargo bench --bench pick`, then compare each policy's
//! estimate with `floor/fetch_add` of the same group.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod common;

use common::{two_threads, Padded};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use lbkit::Prequal;
use lbkit::{Aperture, RendezvousSubset, Subset};
use lbkit::{Backend, Balancer, LeastConnections, Pick, PowerOfTwoChoices, Random, Request};
use lbkit::{ClientSideWeightedRoundRobin, LoadReport};
use lbkit::{FailurePercentageEjection, Health, ManualClock, SoftHealth, SuccessRateEjection};
use lbkit::{HashRing, HealthConfig, OutlierDetection, PeakEwma, RoundRobin, WeightedRoundRobin};

type Make = fn(Vec<Backend<u64>>) -> Box<dyn Balancer<u64>>;

fn policies() -> Vec<(&'static str, Make)> {
    vec![
        ("round-robin", |b| Box::new(RoundRobin::new(b).unwrap())),
        ("weighted-round-robin", |b| {
            Box::new(WeightedRoundRobin::new(b).unwrap())
        }),
        ("random", |b| Box::new(Random::with_seed(b, 1).unwrap())),
        ("least-connections", |b| {
            Box::new(LeastConnections::new(b).unwrap())
        }),
        ("p2c", |b| {
            Box::new(PowerOfTwoChoices::with_seed(b, 1).unwrap())
        }),
        // Eight weighted draws and their loads and latency scores read per pick (the default).
        ("prequal", |b| Box::new(Prequal::with_seed(b, 1).unwrap())),
        // Failures as load, with no failure reported: what the option costs a pick.
        ("least-connections+failure_penalty", |b| {
            Box::new(
                LeastConnections::builder()
                    .failure_penalty(Duration::from_secs(1))
                    .build(b)
                    .unwrap(),
            )
        }),
        ("p2c+failure_penalty", |b| {
            Box::new(
                PowerOfTwoChoices::builder()
                    .seed(1)
                    .failure_penalty(Duration::from_secs(1))
                    .build(b)
                    .unwrap(),
            )
        }),
    ]
}

/// `n` backends named like socket addresses, weights 1..=4 (so weighted policies do work).
fn backends(n: usize) -> Vec<Backend<u64>> {
    (0..n)
        .map(|i| {
            Backend::new(format!("10.0.{}.{}:8080", i / 256, i % 256), i as u64)
                .with_weight(1 + (i % 4) as u32)
        })
        .collect()
}

/// Holds exactly `k % 7 + 1` picks on the k-th backend of `lb` (chosen by id among all
/// eligible ones, so every policy ends with the same load on every backend).
fn load(lb: &dyn Balancer<u64>, n: usize) -> Vec<Pick<u64>> {
    let mut held = Vec::new();
    for (k, status) in lb.status().iter().enumerate() {
        for _ in 0..k % 7 + 1 {
            let pick = lb
                .pick_n(&Request::new(), n)
                .into_iter()
                .find(|p| p.id() == status.id())
                .expect("every backend is eligible");
            held.push(pick);
        }
    }
    assert!(lb.status().iter().all(|s| s.in_flight() >= 1));
    held
}

fn floor(c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let counter = AtomicU64::new(0);
    c.bench_function("floor/fetch_add", |b| {
        b.iter(|| black_box(counter.fetch_add(1, Ordering::Relaxed)))
    });
}

fn single_thread(c: &mut Criterion) {
    for n in [10, 100, 1000] {
        for (group, loaded) in [("pick", false), ("pick_loaded", true)] {
            let mut g = c.benchmark_group(format!("{group}/{n}"));
            floor(&mut g);
            for (name, make) in policies() {
                let lb = make(backends(n));
                let _held = if loaded { load(&*lb, n) } else { Vec::new() };
                let req = Request::new();
                g.bench_function(BenchmarkId::from_parameter(name), |b| {
                    b.iter(|| drop(black_box(lb.pick(&req))))
                });
            }
            g.finish();
        }
    }
}

fn two_threads_at_once(c: &mut Criterion) {
    let n = 100;
    let mut g = c.benchmark_group(format!("pick_2threads/{n}"));
    let shared = AtomicU64::new(0);
    g.bench_function("floor/fetch_add_shared_line", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |_, iters| {
                for _ in 0..iters {
                    black_box(shared.fetch_add(1, Ordering::Relaxed));
                }
            })
        })
    });
    let separate = [Padded(AtomicU64::new(0)), Padded(AtomicU64::new(0))];
    g.bench_function("floor/fetch_add", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |t, iters| {
                for _ in 0..iters {
                    black_box(separate[t].0.fetch_add(1, Ordering::Relaxed));
                }
            })
        })
    });
    for (name, make) in policies() {
        let lb: Arc<dyn Balancer<u64>> = make(backends(n)).into();
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                two_threads(iters, |_, iters| {
                    let req = Request::new();
                    for _ in 0..iters {
                        drop(black_box(lb.pick(&req)));
                    }
                })
            })
        });
    }
    g.finish();
}

fn reports(c: &mut Criterion) {
    let n = 100;
    let mut g = c.benchmark_group(format!("report/{n}"));
    floor(&mut g);
    let clock = lbkit::MonotonicClock::default();
    g.bench_function("floor/clock", |b| {
        b.iter(|| black_box(lbkit::Clock::now(&clock)))
    });
    let req = Request::new();
    let latency = Duration::from_micros(900);
    let ewma = PeakEwma::with_seed(backends(n), 1).unwrap();
    g.bench_function("peak-ewma/pick+drop", |b| {
        b.iter(|| drop(black_box(ewma.pick(&req))))
    });
    g.bench_function("peak-ewma/pick+success", |b| {
        b.iter(|| black_box(ewma.pick(&req)).unwrap().success(latency))
    });
    // Prequal keeps the same estimate as Peak EWMA, and probes 8 candidates (its default)
    // where Peak EWMA and P2C draw 2: the three side by side.
    let prequal = Prequal::with_seed(backends(n), 1).unwrap();
    g.bench_function("prequal/pick+drop", |b| {
        b.iter(|| drop(black_box(prequal.pick(&req))))
    });
    g.bench_function("prequal/pick+success", |b| {
        b.iter(|| black_box(prequal.pick(&req)).unwrap().success(latency))
    });
    let p2c = PowerOfTwoChoices::with_seed(backends(n), 1).unwrap();
    g.bench_function("p2c/pick+drop", |b| {
        b.iter(|| drop(black_box(p2c.pick(&req))))
    });
    let plain = RoundRobin::new(backends(n)).unwrap();
    g.bench_function("round-robin/pick+drop", |b| {
        b.iter(|| drop(black_box(plain.pick(&req))))
    });
    let ejecting = RoundRobin::builder()
        .health(HealthConfig::new().outlier_detection(OutlierDetection::default()))
        .build(backends(n))
        .unwrap();
    g.bench_function("round-robin+outlier/pick+success", |b| {
        b.iter(|| black_box(ejecting.pick(&req)).unwrap().success(latency))
    });
    // The statistical rules count every report: one relaxed add more per report.
    let statistical = RoundRobin::builder()
        .health(HealthConfig::new().outlier_detection(OutlierDetection {
            success_rate: Some(SuccessRateEjection::default()),
            failure_percentage: Some(FailurePercentageEjection::default()),
            ..OutlierDetection::default()
        }))
        .build(backends(n))
        .unwrap();
    g.bench_function("round-robin+statistical/pick+success", |b| {
        b.iter(|| black_box(statistical.pick(&req)).unwrap().success(latency))
    });
    // Soft health counts each success and its latency: two relaxed adds more per report.
    let weighted = WeightedRoundRobin::new(backends(n)).unwrap();
    g.bench_function("weighted-round-robin/pick+success", |b| {
        b.iter(|| black_box(weighted.pick(&req)).unwrap().success(latency))
    });
    let soft = WeightedRoundRobin::builder()
        .health(HealthConfig::new().soft_health(SoftHealth::default()))
        .build(backends(n))
        .unwrap();
    g.bench_function("weighted-round-robin+soft/pick+success", |b| {
        b.iter(|| black_box(soft.pick(&req)).unwrap().success(latency))
    });
    // Client-side weighted round robin with every backend's weight known (a schedule of
    // reported weights), beside weighted round robin's pick: the pick alone, and the pick
    // with an in-band load report (qps and utilisation) before its success.
    g.bench_function("weighted-round-robin/pick+drop", |b| {
        b.iter(|| drop(black_box(weighted.pick(&req))))
    });
    // On the default clock (a monotonic clock: the refresh's clock check reads it on one
    // pick in 16 per thread), as a service runs it.
    let reported = client_side_wrr(n, lbkit::MonotonicClock::default(), || {
        std::thread::sleep(Duration::from_millis(150))
    });
    g.bench_function("client-side-wrr/pick+drop", |b| {
        b.iter(|| drop(black_box(reported.pick(&req))))
    });
    let load = LoadReport::new().qps(100.0).cpu_utilization(0.5);
    g.bench_function("client-side-wrr/pick+report+success", |b| {
        b.iter(|| {
            let pick = black_box(reported.pick(&req)).unwrap();
            pick.report_load(load).unwrap();
            pick.success(latency)
        })
    });
    g.finish();
}

/// Client-side weighted round robin over `n` backends on `clock`, each backend's weight known
/// (qps 100 at utilisation 0.2 to 0.8) once `wait` has run (it must let the 100 ms update
/// period pass), with no blackout.
fn client_side_wrr<C: lbkit::Clock>(
    n: usize,
    clock: C,
    wait: impl FnOnce(),
) -> ClientSideWeightedRoundRobin<u64> {
    let lb = ClientSideWeightedRoundRobin::builder()
        .blackout_period(Duration::ZERO)
        .weight_update_period(Duration::from_millis(100))
        .health(HealthConfig::new().clock(clock))
        .build(backends(n))
        .unwrap();
    for (i, status) in lb.status().iter().enumerate() {
        let load = LoadReport::new()
            .qps(100.0)
            .cpu_utilization(0.2 + 0.6 * (i % 7) as f64 / 6.0);
        lb.report_load(status.id(), load).unwrap();
    }
    wait();
    // Past the sampled clock check, and a check that the weights hold: the backend at
    // utilisation 0.2 gets four times the picks of the one at 0.8.
    for _ in 0..100 * n {
        drop(lb.pick(&Request::new()));
    }
    let status = lb.status();
    let (light, heavy) = (status[0].picks(), status[6].picks());
    assert!(
        light > 3 * heavy,
        "{light} {heavy}: the reported weights do not hold"
    );
    lb
}

/// The statistical rules' sweep over 1000 backends: a pick that finds it due runs it and
/// rebuilds the snapshot; beside it, a pick that only rebuilds (a health change made the
/// snapshot stale), so that the difference is the sweep.
fn sweep(c: &mut Criterion) {
    let n = 1000;
    let mut g = c.benchmark_group(format!("sweep/{n}"));
    let clock = ManualClock::new();
    let interval = Duration::from_secs(10);
    // Every backend qualifies for both rules with one report an interval.
    let rules = OutlierDetection {
        success_rate: Some(SuccessRateEjection {
            request_volume: 1,
            ..SuccessRateEjection::default()
        }),
        failure_percentage: Some(FailurePercentageEjection {
            request_volume: 1,
            ..FailurePercentageEjection::default()
        }),
        interval,
        ..OutlierDetection::default()
    };
    let lb = RoundRobin::builder()
        .health(
            HealthConfig::new()
                .clock(clock.clone())
                .outlier_detection(rules),
        )
        .build(backends(n))
        .unwrap();
    let req = Request::new();
    g.bench_function("round-robin/pick+sweep+rebuild", |b| {
        b.iter_batched(
            // Not timed: one report on every backend (round robin visits each once).
            || {
                for _ in 0..n {
                    lb.pick(&req).unwrap().success(Duration::from_micros(500));
                }
            },
            |()| {
                clock.advance(interval);
                drop(black_box(lb.pick(&req)))
            },
            criterion::BatchSize::PerIteration,
        )
    });
    let plain = RoundRobin::new(backends(n)).unwrap();
    let mut up = false;
    g.bench_function("round-robin/set_health+rebuild", |b| {
        b.iter(|| {
            up = !up;
            let health = if up { Health::Up } else { Health::Draining };
            plain.set_health("10.0.0.0:8080", health).unwrap();
            drop(black_box(plain.pick(&req)))
        })
    });
    // Soft health's sweep: every backend judged (20 successes each an interval, one in
    // twenty slower), then the snapshot rebuilt. P2C, whose rebuild (an alias table) is O(n)
    // whatever the weights, beside its rebuild alone, so that the difference is the sweep.
    let soft_clock = ManualClock::new();
    let soft = PowerOfTwoChoices::builder()
        .seed(1)
        .health(
            HealthConfig::new()
                .clock(soft_clock.clone())
                .soft_health(SoftHealth::default()),
        )
        .build(backends(n))
        .unwrap();
    g.bench_function("p2c/pick+soft-sweep+rebuild", |b| {
        b.iter_batched(
            || {
                for status in soft.status() {
                    for i in 0..20 {
                        let ms = if i == 0 && status.weight() == 4 {
                            40
                        } else {
                            10
                        };
                        let pick = soft.pick(&Request::new().prefer(status.id())).unwrap();
                        pick.success(Duration::from_millis(ms));
                    }
                }
            },
            |()| {
                soft_clock.advance(Duration::from_secs(1));
                drop(black_box(soft.pick(&req)))
            },
            criterion::BatchSize::PerIteration,
        )
    });
    // Client-side weighted round robin's refresh: the pick that finds the update period
    // over reads every backend's reported weight and rebuilds the schedule (up to
    // SCHEDULE_LIMIT entries); beside it weighted round robin's rebuild after a health
    // change, whose schedule has the weights' small period.
    let clock = ManualClock::new();
    let reported = client_side_wrr(n, clock.clone(), || {
        clock.advance(Duration::from_millis(100))
    });
    g.bench_function("client-side-wrr/pick+reweigh+rebuild", |b| {
        b.iter(|| {
            clock.advance(Duration::from_millis(100));
            drop(black_box(reported.pick(&req)))
        })
    });
    let weighted = WeightedRoundRobin::new(backends(n)).unwrap();
    g.bench_function("weighted-round-robin/set_health+rebuild", |b| {
        b.iter(|| {
            up = !up;
            let health = if up { Health::Up } else { Health::Draining };
            weighted.set_health("10.0.0.0:8080", health).unwrap();
            drop(black_box(weighted.pick(&req)))
        })
    });
    let p2c = PowerOfTwoChoices::with_seed(backends(n), 1).unwrap();
    g.bench_function("p2c/set_health+rebuild", |b| {
        b.iter(|| {
            up = !up;
            let health = if up { Health::Up } else { Health::Draining };
            p2c.set_health("10.0.0.0:8080", health).unwrap();
            drop(black_box(p2c.pick(&req)))
        })
    });
    g.finish();
}

/// Pick + drop of `request(i)`, `i` counting the iterations.
fn steered<'a>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    label: &str,
    lb: &dyn Balancer<u64>,
    request: impl Fn(usize) -> Request<'a>,
) {
    let mut i = 0usize;
    g.bench_function(label, |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            drop(black_box(lb.pick(&request(i))))
        })
    });
}

fn steering(c: &mut Criterion) {
    let n = 100;
    let mut g = c.benchmark_group(format!("steering/{n}"));
    let ids: Vec<String> = backends(n).iter().map(|b| b.id().to_owned()).collect();
    let avoid = [ids[3].as_str(), ids[60].as_str()];
    let prefer = ids[42].as_str();
    let capped = || {
        backends(n)
            .into_iter()
            .map(|b| b.with_max_in_flight(1_000))
            .collect::<Vec<_>>()
    };
    type Build = fn(Vec<Backend<u64>>) -> Box<dyn Balancer<u64>>;
    let makes: [(&str, Build, bool); 2] = [
        (
            "round-robin",
            |b| Box::new(RoundRobin::new(b).unwrap()),
            false,
        ),
        (
            "ring",
            |b| Box::new(HashRing::with_seed(b, 1).unwrap()),
            true,
        ),
    ];
    let keys: Vec<u64> = (0..1024u64)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5bd1_e995)
        .collect();
    for (name, make, keyed) in makes {
        let lb = make(backends(n));
        let lb_capped = make(capped());
        let key = |i: usize| keys[i % keys.len()];
        let base = |i: usize| {
            if keyed {
                Request::with_hash(key(i))
            } else {
                Request::new()
            }
        };
        steered(&mut g, &format!("{name}/plain"), &*lb, base);
        steered(&mut g, &format!("{name}/avoid2"), &*lb, |i| {
            base(i).avoid(&avoid)
        });
        steered(&mut g, &format!("{name}/prefer"), &*lb, |i| {
            base(i).prefer(prefer)
        });
        steered(&mut g, &format!("{name}/capped"), &*lb_capped, base);
    }
    g.finish();
}

/// Subsetting: a pick through a subset against a pick over a set of the subset's size, and
/// the cost of choosing a subset of 10,000 backends (`set_subset`, which also rebuilds the
/// snapshot of the subset).
fn subsets(c: &mut Criterion) {
    let mut g = c.benchmark_group("subset");
    floor(&mut g);
    let req = Request::new();
    // Client 0 of 100 over 1000 servers, aperture 12: a window of ceil(12 x 100 / 1000) = 2
    // client slices, 20 servers.
    let aperture = Subset::Aperture(Aperture::new(0, 100));
    let through = PowerOfTwoChoices::builder()
        .seed(1)
        .subset(aperture)
        .build(backends(1000))
        .unwrap();
    let size = through.status().len();
    let flat = PowerOfTwoChoices::with_seed(backends(size), 1).unwrap();
    g.bench_function(format!("p2c/{size}"), |b| {
        b.iter(|| drop(black_box(flat.pick(&req))))
    });
    g.bench_function(format!("p2c/aperture-{size}-of-1000"), |b| {
        b.iter(|| drop(black_box(through.pick(&req))))
    });
    let ring_through = HashRing::builder()
        .seed(1)
        .subset(aperture)
        .build(backends(1000))
        .unwrap();
    let ring_flat = HashRing::builder().seed(1).build(backends(size)).unwrap();
    let mut k = 0u64;
    g.bench_function(format!("ring/{size}"), |b| {
        b.iter(|| {
            k = k.wrapping_add(1);
            drop(black_box(ring_flat.pick(&Request::with_hash(k))))
        })
    });
    g.bench_function(format!("ring/aperture-{size}-of-1000"), |b| {
        b.iter(|| {
            k = k.wrapping_add(1);
            drop(black_box(ring_through.pick(&Request::with_hash(k))))
        })
    });
    let many = PowerOfTwoChoices::with_seed(backends(10_000), 1).unwrap();
    let mut i = 0;
    g.bench_function("set_subset/aperture/10000", |b| {
        b.iter(|| {
            i = (i + 1) % 100;
            many.set_subset(Subset::Aperture(Aperture::new(i, 100)))
                .unwrap()
        })
    });
    g.bench_function("set_subset/rendezvous/10000", |b| {
        b.iter(|| {
            i += 1;
            many.set_subset(Subset::Rendezvous(RendezvousSubset::new(12).salt(i as u64)))
                .unwrap()
        })
    });
    g.finish();
}

/// The `metrics` feature's price on the pick path: the same policies plain and with
/// `Builder::metrics` (no recorder installed: the facade's no-op one), pick + drop and
/// pick + success. The exports themselves run once per interval (1 s here), so a run of
/// criterion's iterations includes a few.
#[cfg(feature = "metrics")]
fn telemetry(c: &mut Criterion) {
    let n = 100;
    let mut g = c.benchmark_group(format!("metrics/{n}"));
    floor(&mut g);
    let req = Request::new();
    let latency = Duration::from_micros(900);
    let plain = RoundRobin::new(backends(n)).unwrap();
    let measured = RoundRobin::builder()
        .metrics(Duration::from_secs(1))
        .build(backends(n))
        .unwrap();
    for (name, lb) in [("round-robin", &plain), ("round-robin+metrics", &measured)] {
        g.bench_function(format!("{name}/pick+drop"), |b| {
            b.iter(|| drop(black_box(lb.pick(&req))))
        });
        g.bench_function(format!("{name}/pick+success"), |b| {
            b.iter(|| black_box(lb.pick(&req)).unwrap().success(latency))
        });
    }
    let plain = PowerOfTwoChoices::with_seed(backends(n), 1).unwrap();
    let measured = PowerOfTwoChoices::builder()
        .seed(1)
        .metrics(Duration::from_secs(1))
        .build(backends(n))
        .unwrap();
    for (name, lb) in [("p2c", &plain), ("p2c+metrics", &measured)] {
        g.bench_function(format!("{name}/pick+drop"), |b| {
            b.iter(|| drop(black_box(lb.pick(&req))))
        });
    }
    g.finish();
}

#[cfg(not(feature = "metrics"))]
fn telemetry(_: &mut Criterion) {}

/// The 100 backends of `backends(100)` in two levels and three localities: P0 is the first
/// 60 (every second one down, so P0's health is 70 and P1 takes 30%), P1 the other 40; the
/// localities `z0`, `z1`, `z2` by index modulo 3.
fn tiered(n: usize) -> Vec<Backend<u64>> {
    backends(n)
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            let b = b
                .with_priority(u32::from(i >= n * 6 / 10))
                .with_locality(format!("z{}", i % 3));
            if i < n * 6 / 10 && i % 2 == 1 {
                b.with_health(Health::Down)
            } else {
                b
            }
        })
        .collect()
}

fn tiers(c: &mut Criterion) {
    let n = 100;
    let mut g = c.benchmark_group(format!("tiers/{n}"));
    floor(&mut g);
    let topology = || lbkit::Topology::locality_weights([("z0", 1), ("z1", 1), ("z2", 1)]);
    type Make = fn(Vec<Backend<u64>>, lbkit::Topology) -> Box<dyn Balancer<u64>>;
    let makes: [(&str, Make); 4] = [
        ("round-robin", |b, t| {
            Box::new(RoundRobin::builder().topology(t).build(b).unwrap())
        }),
        ("p2c", |b, t| {
            Box::new(
                PowerOfTwoChoices::builder()
                    .seed(1)
                    .topology(t)
                    .build(b)
                    .unwrap(),
            )
        }),
        ("least-connections", |b, t| {
            Box::new(LeastConnections::builder().topology(t).build(b).unwrap())
        }),
        ("hash-ring", |b, t| {
            Box::new(HashRing::builder().seed(1).topology(t).build(b).unwrap())
        }),
    ];
    let keys: Vec<String> = (0..1024).map(|i| format!("user-{i}")).collect();
    for (name, make) in makes {
        for (variant, set, t) in [
            ("flat", backends(n), lbkit::Topology::new()),
            ("tiers", tiered(n), topology()),
        ] {
            let lb = make(set, t);
            let hashing = name == "hash-ring";
            let mut i = 0usize;
            g.bench_function(BenchmarkId::new(name, variant), |b| {
                b.iter(|| {
                    i = (i + 1) & 1023;
                    let req = if hashing {
                        Request::with_key(&keys[i])
                    } else {
                        Request::new()
                    };
                    drop(black_box(lb.pick(&req)))
                })
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = single_thread, two_threads_at_once, reports, steering, sweep, subsets, telemetry,
        tiers
}
criterion_main!(benches);
