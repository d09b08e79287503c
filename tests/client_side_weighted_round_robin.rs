//! Client-side weighted round robin (gRFC A58) through the balancer, on a manual clock: A58's
//! `UpdateWeight` / `GetWeight` rules (blackout, expiration, a backend ready again, zero
//! utilisation, the round-robin fallback, the update period) and grpc-go's
//! `balancer/weightedroundrobin/balancer_test.go` scenarios, whose `checkWeights` wants each
//! backend's count of 100 picks within 2 of `100 x w / sum(w)`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use lbkit::{Backend, Balancer, ClientSideWeightedRoundRobin, Error, Health, HealthConfig};
use lbkit::{LoadReport, ManualClock, Request, SlowStart};

const SECOND: Duration = Duration::from_secs(1);

/// grpc-go's test configuration (`perCallConfig` / `oobConfig`): no blackout, weights expire
/// after a minute, no error penalty; the update period is A58's floor, 100 ms.
fn grpc_go(clock: &ManualClock, ids: &[&str]) -> ClientSideWeightedRoundRobin<()> {
    ClientSideWeightedRoundRobin::builder()
        .blackout_period(Duration::ZERO)
        .weight_expiration_period(Duration::from_secs(60))
        .weight_update_period(Duration::from_millis(100))
        .error_utilization_penalty(0.0)
        .health(HealthConfig::new().clock(clock.clone()))
        .build(ids.iter().map(|id| Backend::new(*id, ())))
        .unwrap()
}

/// A58's defaults on `clock`.
fn defaults(clock: &ManualClock, ids: &[&str]) -> ClientSideWeightedRoundRobin<()> {
    ClientSideWeightedRoundRobin::builder()
        .health(HealthConfig::new().clock(clock.clone()))
        .build(ids.iter().map(|id| Backend::new(*id, ())))
        .unwrap()
}

fn report(qps: f64, utilization: f64) -> LoadReport {
    LoadReport::new().qps(qps).cpu_utilization(utilization)
}

/// `(id, qps, utilisation)` of each backend that reports.
type Loads<'a> = &'a [(&'a str, f64, f64)];

/// One report from each backend of `loads` that is in the set.
fn send(lb: &dyn Balancer<()>, loads: Loads<'_>) {
    let members = lb.backends();
    for &(id, qps, utilization) in loads {
        if members.iter().any(|m| m.id() == id) {
            lb.report_load(id, report(qps, utilization)).unwrap();
        }
    }
}

/// `seconds` seconds of reports from `loads`, one a second.
fn run(lb: &dyn Balancer<()>, clock: &ManualClock, loads: Loads<'_>, seconds: u32) {
    for _ in 0..seconds {
        send(lb, loads);
        clock.advance(SECOND);
    }
}

/// Picks per backend over `n` picks.
fn counts(lb: &dyn Balancer<()>, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let pick = lb.pick(&Request::new()).expect("a backend");
        *counts.entry(pick.id().to_owned()).or_insert(0) += 1;
    }
    counts
}

/// grpc-go's `checkWeights`: over 100 picks, each backend within 2 of `100 x w / sum`
/// (integer division).
fn check_weights(lb: &dyn Balancer<()>, want: &[(&str, usize)]) {
    let got = counts(lb, 100);
    let sum: usize = want.iter().map(|w| w.1).sum();
    for &(id, w) in want {
        let expected = 100 * w / sum;
        let n = got.get(id).copied().unwrap_or(0);
        assert!(
            n + 2 >= expected && n <= expected + 2,
            "{id}: {n} picks, want {expected} +/- 2 ({got:?})"
        );
    }
    assert_eq!(got.values().sum::<usize>(), 100, "{got:?}");
}

/// Every backend gets the same count of picks over a multiple of the set's size.
fn check_round_robin(lb: &dyn Balancer<()>, ids: &[&str]) {
    let got = counts(lb, 30 * ids.len());
    for id in ids {
        assert_eq!(got.get(*id).copied(), Some(30), "{got:?}");
    }
}

#[test]
fn grpc_go_two_addresses_reporting_per_call() {
    // TestBalancer_TwoAddresses_ReportingEnabledPerCall: srv1 (qps 10, utilization 1.0) and
    // srv2 (10, 0.1) report on every call: weights 10 and 100.
    let clock = ManualClock::new();
    let lb = grpc_go(&clock, &["srv1", "srv2"]);
    for _ in 0..10 {
        let pick = lb.pick(&Request::new()).unwrap();
        let r = match pick.id() {
            "srv1" => report(10.0, 1.0),
            _ => report(10.0, 0.1),
        };
        pick.report_load(r).unwrap();
        pick.success(Duration::from_millis(1));
    }
    clock.advance(Duration::from_millis(100));
    check_weights(&lb, &[("srv1", 1), ("srv2", 10)]);
}

#[test]
fn grpc_go_two_addresses_reporting_out_of_band() {
    // TestBalancer_TwoAddresses_ReportingEnabledOOB: the same weights from the backends'
    // own streams.
    let clock = ManualClock::new();
    let lb = grpc_go(&clock, &["srv1", "srv2"]);
    lb.report_load("srv1", report(10.0, 1.0)).unwrap();
    lb.report_load("srv2", report(10.0, 0.1)).unwrap();
    clock.advance(Duration::from_millis(100));
    check_weights(&lb, &[("srv1", 1), ("srv2", 10)]);
}

#[test]
fn grpc_go_addresses_changing() {
    // TestBalancer_AddressesChanging: srv1 10, srv2 100, srv3 20, srv4 200; the set goes
    // from three to four backends, then loses srv1 and srv3.
    let clock = ManualClock::new();
    let lb = grpc_go(&clock, &["srv1", "srv2", "srv3"]);
    let loads = [
        ("srv1", 10.0, 1.0),
        ("srv2", 10.0, 0.1),
        ("srv3", 20.0, 1.0),
        ("srv4", 20.0, 0.1),
    ];
    send(&lb, &loads);
    clock.advance(Duration::from_millis(100));
    check_weights(&lb, &[("srv1", 1), ("srv2", 10), ("srv3", 2)]);

    lb.update(
        ["srv1", "srv2", "srv3", "srv4"]
            .map(|id| Backend::new(id, ()))
            .to_vec(),
    )
    .unwrap();
    send(&lb, &loads);
    clock.advance(Duration::from_millis(100));
    check_weights(&lb, &[("srv1", 1), ("srv2", 10), ("srv3", 2), ("srv4", 20)]);

    lb.update(["srv2", "srv4"].map(|id| Backend::new(id, ())).to_vec())
        .unwrap();
    clock.advance(Duration::from_millis(100));
    check_weights(&lb, &[("srv2", 1), ("srv4", 2)]);
}

#[test]
fn grpc_go_error_penalty() {
    // TestBalancer_TwoAddresses_ErrorPenalty: srv2 answers 10 errors a second at 0.1
    // utilisation; with a penalty of 0.9 its weight is 10 / (0.1 + 10 / 10 x 0.9) = 10, the
    // same as srv1's.
    let clock = ManualClock::new();
    let lb = ClientSideWeightedRoundRobin::builder()
        .blackout_period(Duration::ZERO)
        .error_utilization_penalty(0.9)
        .health(HealthConfig::new().clock(clock.clone()))
        .build(["srv1", "srv2"].map(|id| Backend::new(id, ())))
        .unwrap();
    lb.report_load("srv1", report(10.0, 1.0)).unwrap();
    lb.report_load("srv2", report(10.0, 0.1).errors_per_second(10.0))
        .unwrap();
    clock.advance(SECOND);
    check_weights(&lb, &[("srv1", 1), ("srv2", 1)]);
    // Without the errors, srv2 is ten times srv1.
    lb.report_load("srv2", report(10.0, 0.1)).unwrap();
    clock.advance(SECOND);
    check_weights(&lb, &[("srv1", 1), ("srv2", 10)]);
}

#[test]
fn blackout_holds_weights_back_until_reports_ran_for_the_period() {
    // A58: a weight is used once the backend has reported for blackout_period (10 s).
    let clock = ManualClock::new();
    let ids = ["a", "b"];
    let lb = defaults(&clock, &ids);
    for _ in 0..9 {
        send(&lb, &[("a", 10.0, 1.0), ("b", 10.0, 0.25)]);
        clock.advance(SECOND);
        check_round_robin(&lb, &ids);
    }
    // 9 s of reports: still blacked out; at 10 s the weights 10 and 40 count.
    send(&lb, &[("a", 10.0, 1.0), ("b", 10.0, 0.25)]);
    clock.advance(SECOND);
    check_weights(&lb, &[("a", 1), ("b", 4)]);
}

#[test]
fn weights_expire_without_reports() {
    // A58: a weight not refreshed for weight_expiration_period (3 min) is dropped; with fewer
    // than two weights left, every backend gets the same share.
    let clock = ManualClock::new();
    let ids = ["a", "b"];
    let lb = grpc_go_defaults_but_expiration(&clock, &ids, Duration::from_secs(180));
    send(&lb, &[("a", 10.0, 1.0), ("b", 10.0, 0.25)]);
    clock.advance(SECOND);
    check_weights(&lb, &[("a", 1), ("b", 4)]);
    clock.advance(Duration::from_secs(178));
    check_weights(&lb, &[("a", 1), ("b", 4)]);
    clock.advance(SECOND);
    check_round_robin(&lb, &ids);
    // Reports that resume serve a new blackout when there is one (here none).
    send(&lb, &[("a", 10.0, 1.0), ("b", 10.0, 0.25)]);
    clock.advance(SECOND);
    check_weights(&lb, &[("a", 1), ("b", 4)]);
}

fn grpc_go_defaults_but_expiration(
    clock: &ManualClock,
    ids: &[&str],
    expiration: Duration,
) -> ClientSideWeightedRoundRobin<()> {
    ClientSideWeightedRoundRobin::builder()
        .blackout_period(Duration::ZERO)
        .weight_expiration_period(expiration)
        .health(HealthConfig::new().clock(clock.clone()))
        .build(ids.iter().map(|id| Backend::new(*id, ())))
        .unwrap()
}

#[test]
fn expired_weights_serve_a_new_blackout() {
    let clock = ManualClock::new();
    let lb = defaults(&clock, &["a", "b"]);
    let loads = [("a", 10.0, 1.0), ("b", 10.0, 0.25)];
    send(&lb, &loads);
    clock.advance(Duration::from_secs(10));
    send(&lb, &loads);
    clock.advance(SECOND);
    check_weights(&lb, &[("a", 1), ("b", 4)]);
    // Four minutes of silence, then reports again: blacked out for 10 s more.
    clock.advance(Duration::from_secs(240));
    send(&lb, &loads);
    clock.advance(Duration::from_secs(9));
    send(&lb, &loads);
    check_round_robin(&lb, &["a", "b"]);
    clock.advance(SECOND);
    send(&lb, &loads);
    clock.advance(SECOND);
    check_weights(&lb, &[("a", 1), ("b", 4)]);
}

#[test]
fn a_backend_up_again_serves_a_new_blackout_and_gets_the_mean() {
    // A58 OnSubchannelBecomesReady: non_empty_since = infinity; until its blackout is over
    // the backend's weight is unknown and it gets the mean of the known ones.
    let clock = ManualClock::new();
    let lb = defaults(&clock, &["a", "b", "c"]);
    // Weights 10, 100 and 20.
    let loads = [("a", 10.0, 1.0), ("b", 10.0, 0.1), ("c", 20.0, 1.0)];
    send(&lb, &loads);
    clock.advance(Duration::from_secs(10));
    send(&lb, &loads);
    clock.advance(SECOND);
    check_weights(&lb, &[("a", 10), ("b", 100), ("c", 20)]);
    lb.set_health("c", Health::Down).unwrap();
    lb.set_health("c", Health::Up).unwrap();
    send(&lb, &loads);
    clock.advance(SECOND);
    // c's weight is blacked out: it gets the mean of 10 and 100.
    check_weights(&lb, &[("a", 10), ("b", 100), ("c", 55)]);
    run(&lb, &clock, &loads, 10);
    check_weights(&lb, &[("a", 10), ("b", 100), ("c", 20)]);
}

#[test]
fn zero_utilization_or_qps_is_ignored() {
    // A58: only reports with non-zero utilisation and qps update the weight.
    let clock = ManualClock::new();
    let lb = grpc_go(&clock, &["a", "b"]);
    lb.report_load("a", report(10.0, 0.0)).unwrap();
    lb.report_load("b", report(0.0, 0.5)).unwrap();
    lb.report_load("b", LoadReport::new().utilization(0.5))
        .unwrap();
    clock.advance(SECOND);
    check_round_robin(&lb, &["a", "b"]);
    // Known weights stay when a zero report follows.
    send(&lb, &[("a", 10.0, 1.0), ("b", 10.0, 0.25)]);
    lb.report_load("b", report(10.0, 0.0)).unwrap();
    clock.advance(SECOND);
    check_weights(&lb, &[("a", 1), ("b", 4)]);
}

#[test]
fn application_utilization_wins_over_cpu() {
    // A58 (June 2023): application_utilization when set, else cpu_utilization.
    let clock = ManualClock::new();
    let lb = grpc_go(&clock, &["a", "b"]);
    lb.report_load("a", report(10.0, 0.1).utilization(1.0))
        .unwrap();
    lb.report_load("b", report(10.0, 0.1).utilization(0.0))
        .unwrap();
    clock.advance(SECOND);
    check_weights(&lb, &[("a", 1), ("b", 10)]);
}

#[test]
fn fewer_than_two_weights_is_round_robin() {
    let clock = ManualClock::new();
    let ids = ["a", "b", "c"];
    let lb = grpc_go(&clock, &ids);
    lb.report_load("a", report(100.0, 0.1)).unwrap();
    clock.advance(SECOND);
    check_round_robin(&lb, &ids);
    // A second weight: the third backend gets their mean.
    lb.report_load("b", report(10.0, 1.0)).unwrap();
    clock.advance(SECOND);
    check_weights(&lb, &[("a", 1000), ("b", 10), ("c", 505)]);
}

#[test]
fn weights_change_once_per_update_period() {
    let clock = ManualClock::new();
    let lb = ClientSideWeightedRoundRobin::builder()
        .blackout_period(Duration::ZERO)
        .weight_update_period(Duration::from_millis(500))
        .health(HealthConfig::new().clock(clock.clone()))
        .build(["a", "b"].map(|id| Backend::new(id, ())))
        .unwrap();
    send(&lb, &[("a", 10.0, 1.0), ("b", 10.0, 0.25)]);
    check_round_robin(&lb, &["a", "b"]);
    clock.advance(Duration::from_millis(499));
    check_round_robin(&lb, &["a", "b"]);
    clock.advance(Duration::from_millis(1));
    check_weights(&lb, &[("a", 1), ("b", 4)]);
    // A new report waits for the next period too.
    lb.report_load("a", report(40.0, 1.0)).unwrap();
    check_weights(&lb, &[("a", 1), ("b", 4)]);
    clock.advance(Duration::from_millis(500));
    check_weights(&lb, &[("a", 1), ("b", 1)]);
}

#[test]
fn configured_weights_do_not_count_but_zero_takes_a_backend_out() {
    let clock = ManualClock::new();
    let lb = ClientSideWeightedRoundRobin::builder()
        .blackout_period(Duration::ZERO)
        .health(HealthConfig::new().clock(clock.clone()))
        .build([
            Backend::new("a", ()).with_weight(9),
            Backend::new("b", ()),
            Backend::new("c", ()).with_weight(0),
        ])
        .unwrap();
    check_round_robin(&lb, &["a", "b"]);
    send(&lb, &[("a", 10.0, 1.0), ("b", 10.0, 0.5)]);
    lb.report_load("c", report(10.0, 0.01)).unwrap();
    clock.advance(SECOND);
    check_weights(&lb, &[("a", 1), ("b", 2)]);
}

#[test]
fn slow_start_ramps_the_reported_weight() {
    // A backend added under slow start gets its reported share times its ramp.
    let clock = ManualClock::new();
    let lb = ClientSideWeightedRoundRobin::builder()
        .blackout_period(Duration::ZERO)
        .health(
            HealthConfig::new()
                .clock(clock.clone())
                .slow_start(SlowStart::new(Duration::from_secs(100))),
        )
        .build(["a", "b"].map(|id| Backend::new(id, ())))
        .unwrap();
    let loads = [("a", 10.0, 0.5), ("b", 10.0, 0.5), ("c", 10.0, 0.5)];
    send(&lb, &loads);
    clock.advance(SECOND);
    check_round_robin(&lb, &["a", "b"]);
    lb.update(["a", "b", "c"].map(|id| Backend::new(id, ())).to_vec())
        .unwrap();
    send(&lb, &loads);
    clock.advance(SECOND);
    let early = counts(&lb, 3000)["c"];
    assert!(early < 300, "c got {early} of 3000 early in its ramp");
    run(&lb, &clock, &loads, 100);
    check_round_robin(&lb, &["a", "b", "c"]);
}

#[test]
fn an_ejection_that_ends_restarts_the_blackout() {
    use lbkit::OutlierDetection;
    let clock = ManualClock::new();
    let lb = ClientSideWeightedRoundRobin::builder()
        .health(
            HealthConfig::new()
                .clock(clock.clone())
                .outlier_detection(OutlierDetection {
                    consecutive_failures: 1,
                    max_ejection_percent: 100.0,
                    ..OutlierDetection::default()
                }),
        )
        .build(["a", "b", "c"].map(|id| Backend::new(id, ())))
        .unwrap();
    // Weights 10, 100 and 20.
    let loads = [("a", 10.0, 1.0), ("b", 10.0, 0.1), ("c", 20.0, 1.0)];
    run(&lb, &clock, &loads, 11);
    check_weights(&lb, &[("a", 10), ("b", 100), ("c", 20)]);
    // Eject c with one failure, and let the ejection (30 s by default) end.
    let pick = lb
        .pick(&Request::new().prefer("c"))
        .expect("c takes a preferred pick");
    assert_eq!(pick.id(), "c");
    pick.failure();
    drop(lb.pick(&Request::new()));
    assert!(lb.status().iter().any(|s| s.id() == "c" && s.is_ejected()));
    for _ in 0..31 {
        send(&lb, &loads);
        clock.advance(SECOND);
        drop(lb.pick(&Request::new()));
    }
    assert!(lb.status().iter().all(|s| !s.is_ejected()));
    send(&lb, &loads);
    clock.advance(SECOND);
    // Back, and blacked out: the mean of 10 and 100.
    check_weights(&lb, &[("a", 10), ("b", 100), ("c", 55)]);
}

#[test]
fn bad_reports_are_errors_and_change_nothing() {
    let clock = ManualClock::new();
    let lb = grpc_go(&clock, &["a", "b"]);
    send(&lb, &[("a", 10.0, 1.0), ("b", 10.0, 0.25)]);
    clock.advance(SECOND);
    check_weights(&lb, &[("a", 1), ("b", 4)]);
    let bad = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, -0.0001];
    for x in bad {
        let cases: [(&str, LoadReport); 4] = [
            ("qps", report(x, 0.5)),
            ("cpu_utilization", report(10.0, x)),
            ("utilization", report(10.0, 0.5).utilization(x)),
            ("errors_per_second", report(10.0, 0.5).errors_per_second(x)),
        ];
        for (field, r) in cases {
            for id in ["a", "b"] {
                let got = lb.report_load(id, r);
                assert!(
                    matches!(got, Err(Error::InvalidReport { field: f, .. }) if f == field),
                    "{field} = {x}: {got:?}"
                );
                let pick = lb.pick(&Request::new()).unwrap();
                let got = pick.report_load(r);
                assert!(
                    matches!(got, Err(Error::InvalidReport { field: f, .. }) if f == field),
                    "{field} = {x}: {got:?}"
                );
            }
        }
    }
    assert_eq!(
        lb.report_load("zz", report(10.0, 1.0)),
        Err(Error::UnknownId("zz".to_owned()))
    );
    clock.advance(SECOND);
    check_weights(&lb, &[("a", 1), ("b", 4)]);
}

#[test]
fn extreme_figures_keep_every_backend_in_turn() {
    // Huge and tiny figures give finite weights, and nothing panics: a's weight overflows to
    // the largest finite one; b's underflows to 0, which A58 ignores, so b's weight is unknown
    // and b gets the mean of the known ones (half of a's); c, a millionth of a millionth of
    // a's, keeps the least share: one entry per period. The integers 65,535 : 32,768 : 1 sum
    // past SCHEDULE_LIMIT, so the period is scaled to 65,536 entries: 43,690 : 21,845 : 1.
    let clock = ManualClock::new();
    let lb = grpc_go(&clock, &["a", "b", "c"]);
    lb.report_load("a", report(f64::MAX, f64::MIN_POSITIVE))
        .unwrap();
    lb.report_load("b", report(f64::MIN_POSITIVE, f64::MAX))
        .unwrap();
    lb.report_load("c", report(1.0, 1.0)).unwrap();
    clock.advance(SECOND);
    assert_eq!(lbkit::SCHEDULE_LIMIT, 65_536);
    let got = counts(&lb, 3 * 65_536);
    assert_eq!(
        (got["a"], got["b"], got["c"]),
        (3 * 43_690, 3 * 21_845, 3),
        "{got:?}"
    );
}

#[test]
fn a_report_after_the_backend_left_weighs_nothing() {
    let clock = ManualClock::new();
    let lb = grpc_go(&clock, &["a", "b", "c"]);
    let pick = lb.pick(&Request::new().prefer("c")).unwrap();
    lb.update(["a", "b"].map(|id| Backend::new(id, ())).to_vec())
        .unwrap();
    pick.report_load(report(1000.0, 0.01)).unwrap();
    drop(pick);
    send(&lb, &[("a", 10.0, 1.0), ("b", 10.0, 0.5)]);
    clock.advance(SECOND);
    check_weights(&lb, &[("a", 1), ("b", 2)]);
}

#[test]
fn reports_from_many_threads_give_the_weights() {
    // Reports race from four threads on two backends; every interleaving leaves weights some
    // report gave, and here every report gives the same.
    let clock = ManualClock::new();
    let lb = std::sync::Arc::new(grpc_go(&clock, &["a", "b"]));
    std::thread::scope(|s| {
        for _ in 0..4 {
            let lb = &lb;
            s.spawn(move || {
                for _ in 0..2000 {
                    let pick = lb.pick(&Request::new()).unwrap();
                    let r = match pick.id() {
                        "a" => report(10.0, 1.0),
                        _ => report(10.0, 0.25),
                    };
                    pick.report_load(r).unwrap();
                }
            });
        }
    });
    clock.advance(SECOND);
    check_weights(&*lb, &[("a", 1), ("b", 4)]);
    assert!(lb.status().iter().all(|s| s.in_flight() == 0));
}
