//! Regressions from the review of client-side WRR, the smooth schedule and `LoadSignal`
//! (ad122bc..eeb67cb): each test states a promise of the docs (or of gRFC A58) that the code
//! once failed to keep.

use std::collections::BTreeMap;
use std::time::Duration;

use lbkit::{Backend, Balancer, ClientSideWeightedRoundRobin, Health, HealthConfig};
use lbkit::{LeastConnections, LoadReport, LoadSignal, ManualClock, Request, SlowStart};
use lbkit::{PowerOfTwoChoices, WeightedRoundRobin};

const SECOND: Duration = Duration::from_secs(1);

fn counts(lb: &dyn Balancer<()>, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let pick = lb.pick(&Request::new()).expect("a backend");
        *counts.entry(pick.id().to_owned()).or_insert(0) += 1;
    }
    counts
}

/// A58 defaults on `clock`.
fn defaults(clock: &ManualClock, ids: &[&str]) -> ClientSideWeightedRoundRobin<()> {
    ClientSideWeightedRoundRobin::builder()
        .health(HealthConfig::new().clock(clock.clone()))
        .build(ids.iter().map(|id| Backend::new(*id, ())))
        .unwrap()
}

/// `(id, qps, utilisation)`: weights qps / utilisation.
const LOADS: [(&str, f64, f64); 3] = [("a", 10.0, 1.0), ("b", 10.0, 0.1), ("c", 20.0, 1.0)];

fn send(lb: &dyn Balancer<()>) {
    for (id, qps, u) in LOADS {
        lb.report_load(id, LoadReport::new().qps(qps).cpu_utilization(u))
            .unwrap();
    }
}

/// Over 1300 picks (a multiple of 10 + 100 + 20 and of 10 + 100 + 55), c's count.
fn c_share(lb: &dyn Balancer<()>) -> usize {
    counts(lb, 1300).get("c").copied().unwrap_or(0)
}

/// Weights 10, 100, 20 in use (past the 10 s blackout).
fn weighed(clock: &ManualClock, lb: &dyn Balancer<()>) {
    send(lb);
    clock.advance(Duration::from_secs(10));
    send(lb);
    clock.advance(SECOND);
    // c at 20 of 130: 200 of 1300.
    let c = c_share(lb);
    assert!((195..=205).contains(&c), "c got {c} of 1300");
}

// ---------------------------------------------------------------------------------------------
// Client-side WRR: the engine's rules are lost in the round-robin fallback.
// ---------------------------------------------------------------------------------------------

/// Module docs: "What the engine's rules leave of a backend's weight multiplies its reported
/// one: slow start ramps a new backend's share up from the mean ...". With fewer than two
/// known weights (`schedule_weights` gives every backend 1), `reported_weights` computes
/// `1 x effective / full`, which truncates to 0 and is raised to 1: the ramp (and soft
/// health, and a subset's coverage) vanish exactly while no weights are known, e.g. at start
/// or during the blackout. WeightedRoundRobin over the same set ramps c.
#[test]
fn slow_start_ramps_a_new_backend_in_the_round_robin_fallback() {
    let health = |clock: &ManualClock| {
        HealthConfig::new()
            .clock(clock.clone())
            .slow_start(SlowStart::new(Duration::from_secs(100)))
    };
    let ids = ["a", "b"].map(|id| Backend::new(id, ()));
    let all = || ["a", "b", "c"].map(|id| Backend::new(id, ())).to_vec();

    // The control: WeightedRoundRobin ramps c from 10 %.
    let clock = ManualClock::new();
    let wrr = WeightedRoundRobin::builder()
        .health(health(&clock))
        .build(ids.clone())
        .unwrap();
    wrr.update(all()).unwrap();
    clock.advance(SECOND);
    let wrr_c = counts(&wrr, 3000).get("c").copied().unwrap_or(0);
    assert!(wrr_c < 300, "WeightedRoundRobin: c got {wrr_c} of 3000");

    // Client-side WRR with no reports yet (round robin): c should ramp the same way.
    let clock = ManualClock::new();
    let lb = ClientSideWeightedRoundRobin::builder()
        .health(health(&clock))
        .build(ids)
        .unwrap();
    lb.update(all()).unwrap();
    clock.advance(SECOND);
    let c = counts(&lb, 3000).get("c").copied().unwrap_or(0);
    assert!(
        c < 300,
        "ClientSideWeightedRoundRobin: c got {c} of 3000 one second into a 100 s ramp"
    );
}

// ---------------------------------------------------------------------------------------------
// Client-side WRR: a backend up again (A58 OnSubchannelBecomesReady).
// ---------------------------------------------------------------------------------------------

/// `Core::set_health` rebuilds the schedule *before* it calls `report_weight_ready`, so the
/// snapshot published for the backend that just came up still uses its old weight; the
/// blackout only shows one `weight_update_period` later. A58 (and grpc-go's
/// `updateSubConnState`) reset `non_empty_since` and then regenerate the picker. Module
/// docs: "Reports that resume after such a gap serve a new blackout, as does a backend that
/// comes back: set up after Health::Down".
#[test]
fn set_health_up_blacks_out_the_weight_at_once() {
    let clock = ManualClock::new();
    let lb = defaults(&clock, &["a", "b", "c"]);
    weighed(&clock, &lb);
    lb.set_health("c", Health::Down).unwrap();
    lb.set_health("c", Health::Up).unwrap();
    // c is in a new blackout: unknown, so it gets the mean of 10 and 100 (55 of 165: 1300
    // picks is not a multiple of 165, so allow the rounding).
    let c = c_share(&lb);
    assert!(
        (420..=445).contains(&c),
        "c got {c} of 1300 right after coming up; its old weight gives 200, the mean 433"
    );
}

/// The same promise through `update`: a backend given `Health::Up` by
/// `Backend::with_health` after it was `Down` is "set up after Health::Down", but
/// `update_locked` only sets the health and never calls `report_weight_ready`: its old run
/// of reports goes on and it never serves a new blackout.
#[test]
fn update_with_health_up_after_down_restarts_the_blackout() {
    let clock = ManualClock::new();
    let lb = defaults(&clock, &["a", "b", "c"]);
    weighed(&clock, &lb);
    let set = |c: Health| {
        vec![
            Backend::new("a", ()),
            Backend::new("b", ()),
            Backend::new("c", ()).with_health(c),
        ]
    };
    lb.update(set(Health::Down)).unwrap();
    lb.update(set(Health::Up)).unwrap();
    assert_eq!(lb.status()[2].health(), Health::Up);
    // Reports go on; one update period later c must still be blacked out (10 s).
    send(&lb);
    clock.advance(SECOND);
    let c = c_share(&lb);
    assert!(
        (420..=445).contains(&c),
        "c got {c} of 1300 one second after coming up; its old weight gives 200, the mean 433"
    );
}

// ---------------------------------------------------------------------------------------------
// LoadSignal.
// ---------------------------------------------------------------------------------------------

/// `LoadReport::load`: "kept up to 2^40". Under `LoadSignal::Reported` the factor is 2^36
/// (in 2^-16) on loads in 1/1024ths, so `Loads::of` saturates at u64::MAX for any load of
/// 2^34 (1.7e10) or more: 2^35 and 2^39 compare equal and least connections alternates
/// between them (and in-flight counts no longer break ties). A KV cache or queue measured
/// in bytes reaches 2^34 easily.
#[test]
fn reported_loads_below_the_cap_keep_their_order() {
    let lb = LeastConnections::builder()
        .load_signal(LoadSignal::Reported)
        .build([Backend::new("light", ()), Backend::new("heavy", ())])
        .unwrap();
    lb.report_load("light", LoadReport::new().load((1u64 << 35) as f64))
        .unwrap();
    lb.report_load("heavy", LoadReport::new().load((1u64 << 39) as f64))
        .unwrap();
    let got = counts(&lb, 10);
    assert_eq!(got.get("light"), Some(&10), "{got:?}");
}

/// The same saturation with P2C and `Combined` at its largest `per_unit` (2^20, accepted):
/// 2^34 x 1024 x 2^20 overflows u64, so the lighter backend no longer wins.
#[test]
fn combined_loads_below_the_cap_keep_their_order() {
    let lb = PowerOfTwoChoices::builder()
        .load_signal(LoadSignal::Combined {
            per_unit: (1u64 << 20) as f64,
        })
        .seed(7)
        .build([Backend::new("light", ()), Backend::new("heavy", ())])
        .unwrap();
    lb.report_load("light", LoadReport::new().load((1u64 << 35) as f64))
        .unwrap();
    lb.report_load("heavy", LoadReport::new().load((1u64 << 39) as f64))
        .unwrap();
    let got = counts(&lb, 20);
    assert_eq!(got.get("light"), Some(&20), "{got:?}");
}

/// `LoadReport::load`: "It stands until the next report for the backend". A new clock
/// (`set_health_config` with another `clock`) calls `forget_report`, which now also zeroes
/// the reported load, which carries no time: least connections then sees every backend idle.
#[test]
fn a_new_clock_keeps_reported_loads() {
    let lb = LeastConnections::builder()
        .load_signal(LoadSignal::Reported)
        .build([Backend::new("busy", ()), Backend::new("idle", ())])
        .unwrap();
    lb.report_load("busy", LoadReport::new().load(5.0)).unwrap();
    lb.report_load("idle", LoadReport::new().load(1.0)).unwrap();
    assert_eq!(counts(&lb, 4).get("idle"), Some(&4));
    lb.set_health_config(HealthConfig::new().clock(ManualClock::new()))
        .unwrap();
    let got = counts(&lb, 4);
    assert_eq!(got.get("idle"), Some(&4), "{got:?}");
}

/// An ejection can also end because outlier detection is switched off
/// (`set_health_config` without it calls `forget_ejections`): the backend is back in the
/// schedule, but `forget_ejections` (unlike `end_ejection`) never calls
/// `report_weight_ready`, so it keeps its old weight with no new blackout. Module docs: "as
/// does a backend that comes back: set up after Health::Down, an ejection that ends, ...".
#[test]
fn an_ejection_ended_by_switching_outlier_detection_off_restarts_the_blackout() {
    use lbkit::OutlierDetection;
    let clock = ManualClock::new();
    // One clock (one `Arc`) for both configurations: `HealthConfig::clock` wraps a new one
    // each call, and a new clock forgets every report.
    let without = HealthConfig::new().clock(clock.clone());
    let lb = ClientSideWeightedRoundRobin::builder()
        .health(without.clone().outlier_detection(OutlierDetection {
            consecutive_failures: 1,
            max_ejection_percent: 100.0,
            ..OutlierDetection::default()
        }))
        .build(["a", "b", "c"].map(|id| Backend::new(id, ())))
        .unwrap();
    weighed(&clock, &lb);
    let pick = lb.pick(&Request::new().prefer("c")).unwrap();
    assert_eq!(pick.id(), "c");
    pick.failure();
    drop(lb.pick(&Request::new()));
    assert!(lb.status().iter().any(|s| s.id() == "c" && s.is_ejected()));
    send(&lb);
    clock.advance(SECOND);
    // Outlier detection off, same clock: c comes back.
    lb.set_health_config(without).unwrap();
    assert!(lb.status().iter().all(|s| !s.is_ejected()));
    send(&lb);
    clock.advance(SECOND);
    let c = c_share(&lb);
    assert!(
        (420..=445).contains(&c),
        "c got {c} of 1300 one second after its ejection ended; old weight 200, mean 433"
    );
}

/// `LoadSignal::Combined { per_unit }` accepts any `per_unit` "finite, above 0", but
/// `LoadSignal::factor` keeps it in 1/65536ths and raises anything below to 1/65536: a
/// `per_unit` of 1e-6 counts as 1.5e-5, 15 times as much. Here "reported" (load 1e5, worth
/// 0.1 request at 1e-6 per unit) should beat "held" (one request in flight).
#[test]
fn a_small_per_unit_is_not_rounded_up() {
    let lb = LeastConnections::builder()
        .load_signal(LoadSignal::Combined { per_unit: 1e-6 })
        .build([Backend::new("held", ()), Backend::new("reported", ())])
        .unwrap();
    let _held = lb.pick(&Request::new().prefer("held")).unwrap();
    lb.report_load("reported", LoadReport::new().load(1e5))
        .unwrap();
    let got = counts(&lb, 4);
    assert_eq!(got.get("reported"), Some(&4), "{got:?}");
}
