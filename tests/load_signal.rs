//! A load of the caller's own (`LoadReport::load`) compared by least connections and P2C
//! (`LoadSignal`): exactly, per unit of weight, instead of or added to requests in flight.

use std::collections::BTreeMap;
use std::time::Duration;

use lbkit::{Backend, Balancer, Error, LeastConnections, LoadReport, LoadSignal, Pick};
use lbkit::{PowerOfTwoChoices, Request};
use proptest::prelude::*;

fn least_connections(signal: LoadSignal, weights: &[u32]) -> LeastConnections<()> {
    LeastConnections::builder()
        .load_signal(signal)
        .build(
            weights
                .iter()
                .enumerate()
                .map(|(i, &w)| Backend::new(format!("b{i}"), ()).with_weight(w)),
        )
        .unwrap()
}

fn report(lb: &dyn Balancer<()>, id: &str, load: f64) {
    lb.report_load(id, LoadReport::new().load(load)).unwrap();
}

#[test]
fn reported_load_decides_and_in_flight_breaks_ties() {
    let lb = least_connections(LoadSignal::Reported, &[1, 1, 1]);
    report(&lb, "b0", 3.0);
    report(&lb, "b1", 1.0);
    report(&lb, "b2", 2.0);
    // b1 is lightest by its report, whatever this client holds there.
    let held: Vec<Pick<()>> = (0..50).map(|_| lb.pick(&Request::new()).unwrap()).collect();
    assert!(held.iter().all(|p| p.id() == "b1"));
    // Equal reports: the counts decide, and picks alternate.
    report(&lb, "b0", 1.0);
    report(&lb, "b2", 1.0);
    let more: Vec<Pick<()>> = (0..10).map(|_| lb.pick(&Request::new()).unwrap()).collect();
    let on = |id| more.iter().filter(|p| p.id() == id).count();
    assert_eq!((on("b0"), on("b1"), on("b2")), (5, 0, 5));
}

#[test]
fn combined_counts_a_reported_unit_as_per_unit_requests() {
    // b0 reports 2 (= 6 requests at 3 per unit); b1 holds 5 picks of this client's.
    let lb = least_connections(LoadSignal::Combined { per_unit: 3.0 }, &[1, 1]);
    let held: Vec<Pick<()>> = (0..5)
        .map(|_| lb.pick(&Request::new().prefer("b1")).unwrap())
        .collect();
    report(&lb, "b0", 2.0);
    assert_eq!(lb.pick(&Request::new()).unwrap().id(), "b1"); // 5 + 0 < 0 + 6
    let sixth = lb.pick(&Request::new().prefer("b1")).unwrap();
    // 6 against 6: a tie, taken in turns; one more on b1 tips it.
    let seventh = lb.pick(&Request::new().prefer("b1")).unwrap();
    assert_eq!(lb.pick(&Request::new()).unwrap().id(), "b0");
    drop((held, sixth, seventh));
}

#[test]
fn p2c_combined_avoids_a_backend_that_reports_a_long_queue() {
    let lb = PowerOfTwoChoices::builder()
        .load_signal(LoadSignal::Combined { per_unit: 1.0 })
        .seed(3)
        .build((0..2).map(|i| Backend::new(format!("b{i}"), ())))
        .unwrap();
    // In band, with the answer of a pick.
    let pick = lb.pick(&Request::new().prefer("b0")).unwrap();
    pick.report_load(LoadReport::new().load(40.0)).unwrap();
    pick.success(Duration::from_millis(1));
    let held: Vec<Pick<()>> = (0..39).map(|_| lb.pick(&Request::new()).unwrap()).collect();
    assert!(held.iter().all(|p| p.id() == "b1"), "b1 until it holds 40");
    // The report stands until the next one: b0 reporting an empty queue wins again.
    report(&lb, "b0", 0.0);
    assert_eq!(lb.pick(&Request::new()).unwrap().id(), "b0");
}

#[test]
fn the_default_ignores_reported_loads() {
    let lb = least_connections(LoadSignal::InFlight, &[1, 1]);
    report(&lb, "b0", 1e9);
    let a = lb.pick(&Request::new()).unwrap();
    let b = lb.pick(&Request::new()).unwrap();
    assert_ne!(a.id(), b.id());
}

#[test]
fn bad_figures_and_factors_are_typed_errors() {
    let lb = least_connections(LoadSignal::Reported, &[1, 1]);
    report(&lb, "b0", 5.0);
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0] {
        let got = lb.report_load("b1", LoadReport::new().load(bad));
        assert!(
            matches!(got, Err(Error::InvalidReport { field: "load", .. })),
            "{bad}: {got:?}"
        );
    }
    // Nothing changed: b1 (no report, 0) still wins over b0 (5).
    assert_eq!(lb.pick(&Request::new()).unwrap().id(), "b1");
    for per_unit in [
        0.0,
        -1.0,
        f64::NAN,
        f64::INFINITY,
        (1u64 << 20) as f64 * 1.5,
    ] {
        let signal = LoadSignal::Combined { per_unit };
        let lc = LeastConnections::builder()
            .load_signal(signal)
            .build([Backend::new("a", ())]);
        assert!(
            matches!(
                lc,
                Err(Error::InvalidConfig {
                    parameter: "load_signal",
                    ..
                })
            ),
            "{per_unit}"
        );
        let p2c = PowerOfTwoChoices::builder()
            .load_signal(signal)
            .build([Backend::new("a", ())]);
        assert!(
            matches!(
                p2c,
                Err(Error::InvalidConfig {
                    parameter: "load_signal",
                    ..
                })
            ),
            "{per_unit}"
        );
    }
    // Huge figures saturate rather than wrap: the most loaded stays the most loaded.
    report(&lb, "b0", f64::MAX);
    report(&lb, "b1", 1e300);
    assert!(lb.pick(&Request::new()).is_some());
}

proptest! {
    /// Least connections under a combined signal picks, one pick after another, a backend of
    /// least (held + per_unit x reported) / weight, to the 1/1024th of a request the figure
    /// is kept in.
    #[test]
    fn least_connections_picks_the_least_combined_load(
        weights in proptest::collection::vec(1u32..5, 2..6),
        reports in proptest::collection::vec(0u32..64, 6),
        per_unit in 1u32..8,
        picks in 1usize..40,
    ) {
        let lb = least_connections(LoadSignal::Combined { per_unit: f64::from(per_unit) }, &weights);
        // Reports in quarters: exact in the 1/1024ths kept.
        for (i, r) in reports.iter().take(weights.len()).enumerate() {
            report(&lb, &format!("b{i}"), f64::from(*r) / 4.0);
        }
        let mut held: BTreeMap<String, u64> = BTreeMap::new();
        let mut guards = Vec::new();
        for _ in 0..picks {
            let pick = lb.pick(&Request::new()).unwrap();
            // Loads in quarters of a request: 4 x held + per_unit x report (in quarters).
            let load = |i: usize| {
                let id = format!("b{i}");
                4 * held.get(&id).copied().unwrap_or(0)
                    + u64::from(per_unit) * u64::from(reports[i])
            };
            let chosen: usize = pick.id()[1..].parse().unwrap();
            for i in 0..weights.len() {
                // load(chosen) / w(chosen) <= load(i) / w(i)
                prop_assert!(
                    u128::from(load(chosen)) * u128::from(weights[i])
                        <= u128::from(load(i)) * u128::from(weights[chosen]),
                    "picked b{} but b{} is lighter", chosen, i
                );
            }
            *held.entry(pick.id().to_owned()).or_insert(0) += 1;
            guards.push(pick);
        }
    }
}
