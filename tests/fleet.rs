//! The fleet simulator of `examples/fleet` (its model and table), included as the example
//! includes it, on a fleet of 200 clients x 200 servers: the properties issue #14 expects of
//! subsetting at fleet scale.
//!
//! Run it in release: `cargo test --release --test fleet` (about a second).

#[allow(dead_code)]
#[path = "../examples/fleet/report.rs"]
mod report;
#[allow(dead_code)] // the program uses parts the tests do not
#[path = "../examples/fleet/sim.rs"]
mod sim;

use std::sync::OnceLock;

use sim::{Churn, Config, Mode, Outcome};

/// 200 clients x 200 servers, aperture 12 and rendezvous subsets of 12.
///
/// 1,000 requests per client, so 1,000 picks per server on average: a server's count then
/// has a sampling noise of about 1/sqrt(1000) = 3% of the mean even when placement is fair,
/// so a max/mean above 1.2 over 200 servers (about 3 standard deviations of noise at most)
/// would be a real imbalance rather than chance. With 200 requests per client the noise alone
/// would put max/mean near 1.2 for any placement, and the assertion would say nothing.
fn small() -> Config {
    Config {
        clients: 200,
        servers: 200,
        requests: 1_000,
        seed: 7,
        ..Config::default()
    }
}

/// Each mode's outcome on [`small`], run once for every test.
fn outcomes() -> &'static [Outcome] {
    static RUNS: OnceLock<Vec<Outcome>> = OnceLock::new();
    RUNS.get_or_init(|| {
        let config = small();
        Mode::ALL
            .iter()
            .map(|&mode| sim::run(&config, mode).expect("the fleet builds"))
            .collect()
    })
}

fn outcome(mode: Mode) -> &'static Outcome {
    outcomes()
        .iter()
        .find(|o| o.mode == mode)
        .expect("every mode ran")
}

/// The aperture's width in peer slices, `ceil(a x clients / servers)` with `a = min(min_aperture,
/// servers)` (the crate's `aperture_width`, Finagle's `dApertureWidth`).
fn slices(config: &Config, servers: usize) -> usize {
    (config.min_aperture.min(servers) * config.clients).div_ceil(servers)
}

#[test]
fn aperture_connections_per_server_are_the_fair_share_not_every_client() {
    let config = small();
    let o = outcome(Mode::Aperture);
    // clients x aperture / servers: 12 here. The windows tile the ring exactly `slices`
    // times; with as many clients as servers each window covers exactly 12 whole servers.
    let fair = (config.clients * config.min_aperture) as f64 / config.servers as f64;
    for (server, (&held, &picked)) in o.in_subsets.iter().zip(&o.connections).enumerate() {
        assert!(
            (held as f64 - fair).abs() <= 1.0,
            "server {server}: in {held} subsets, fair share {fair}"
        );
        assert!(
            picked <= held,
            "server {server}: picked by a client outside its subset"
        );
        assert!(
            held * 10 <= config.clients,
            "server {server}: {held} clients"
        );
    }
    // Every client used every server of its subset (1,000 requests over 12 servers).
    assert_eq!(o.connections, o.in_subsets);
    // Without a subset, every client holds every server.
    let all = outcome(Mode::All);
    assert!(all.in_subsets.iter().all(|&c| c == config.clients));
}

#[test]
fn aperture_load_is_within_1_2_of_the_mean() {
    let o = outcome(Mode::Aperture);
    assert!(
        o.load_max() <= 1.2,
        "aperture load max/mean {:.3}",
        o.load_max()
    );
    assert!(o.load_p99() <= o.load_max());
}

#[test]
fn rendezvous_subsets_have_exactly_k_members() {
    let config = small();
    let o = outcome(Mode::Rendezvous);
    assert!(o.subset_sizes.iter().all(|&s| s == config.subset_size));
    assert_eq!(
        o.in_subsets.iter().sum::<usize>(),
        config.clients * config.subset_size
    );
    // The aperture's clients hold the same number here: 12 whole servers each.
    let a = outcome(Mode::Aperture);
    assert!(a.subset_sizes.iter().all(|&s| s == config.min_aperture));
}

/// Removing one server.
///
/// * Without a subset: every client closes exactly its one pair.
/// * Rendezvous (gRFC A68): a client that held the removed server swaps it for exactly one
///   other, the others change nothing: exactly 2 pairs per client that held it, so at most
///   2 x clients in all, about 2 x clients x k / servers (24 pairs here) in expectation.
/// * Aperture: a client's subset is a contiguous run of servers in ring order, from
///   `floor(i M / N)` to `ceil((i + k) M / N)` (exclusive) for client `i` of `N`, `M` servers,
///   `k` peer slices. With `M - 1` servers (`k'` slices) and the survivors renumbered (each
///   at most one rank lower), the run's start moves by at most one server; its end by at most
///   `max(ceil(1 + k / N), ceil((k' - k)(M - 1) / N) + 1)` servers; and the removed server
///   leaves. So at most `2 + max(..)` pairs per client change: 4 here (200 x 200, k = 12,
///   k' = 13), that is at most a third of the pairs, whatever server is removed.
#[test]
fn churn_of_one_server_removed_is_bounded() {
    let config = small();
    let (n, m) = (config.clients, config.servers);

    let all = outcome(Mode::All).removed.1;
    assert_eq!((all.closed, all.opened), (n, 0));

    let (removed, rendezvous) = outcome(Mode::Rendezvous).removed;
    let holders = outcome(Mode::Rendezvous).in_subsets[removed];
    assert_eq!(
        rendezvous,
        Churn {
            before: n * config.subset_size,
            closed: holders,
            opened: holders,
            worst_client: if holders > 0 { 2 } else { 0 },
        }
    );

    let aperture = outcome(Mode::Aperture).removed.1;
    let (k, k2) = (slices(&config, m), slices(&config, m - 1));
    let end = (1 + k.div_ceil(n)).max(((k2 - k) * (m - 1)).div_ceil(n) + 1);
    let bound = 2 + end;
    assert_eq!(bound, 4);
    assert!(
        aperture.worst_client <= bound,
        "a client changed {} pairs, bound {bound}",
        aperture.worst_client
    );
    assert!(aperture.changed() <= n * bound);
    // The removed server's pairs had to close.
    assert!(aperture.closed >= outcome(Mode::Aperture).in_subsets[removed]);
}

/// A restart changes only the restarted clients' pairs (at most all of theirs, closed and
/// opened), and without a subset none.
#[test]
fn churn_of_restarts_is_the_restarted_clients_own() {
    let k = small().subset_size;
    for mode in [Mode::Aperture, Mode::Rendezvous] {
        let o = outcome(mode);
        let (restarts, churn) = o.restarted;
        assert_eq!(restarts, 20);
        assert!(churn.worst_client <= 2 * k, "{mode:?}: {churn:?}");
        assert!(churn.changed() <= restarts * 2 * k, "{mode:?}: {churn:?}");
        assert!(churn.changed() > 0, "{mode:?}: a restart moved nothing");
    }
    assert_eq!(outcome(Mode::All).restarted.1.changed(), 0);
}

#[test]
fn every_request_is_served_and_in_flight_returns_to_zero() {
    let config = small();
    for o in outcomes() {
        assert_eq!(o.in_flight_after, 0, "{:?}", o.mode);
        assert_eq!(o.no_pick, 0, "{:?}", o.mode);
        assert_eq!(
            o.load.iter().sum::<u64>(),
            (config.clients * config.requests) as u64,
            "{:?}",
            o.mode
        );
    }
}

/// A seed replays the same run: the same loads and churn.
#[test]
fn a_seed_replays_the_same_fleet() {
    let config = Config {
        clients: 50,
        servers: 40,
        requests: 50,
        ..small()
    };
    for mode in Mode::ALL {
        let (a, b) = (
            sim::run(&config, mode).unwrap(),
            sim::run(&config, mode).unwrap(),
        );
        assert_eq!(a.load, b.load);
        assert_eq!(a.connections, b.connections);
        assert_eq!(a.removed, b.removed);
        assert_eq!(a.restarted, b.restarted);
    }
}

#[test]
fn the_table_has_a_row_per_mode() {
    let table = report::table(outcomes());
    assert_eq!(table.lines().count(), 2 + Mode::ALL.len());
    for mode in Mode::ALL {
        assert!(table.contains(mode.name()));
    }
}

/// Counts that do not divide: 200 clients, 170 servers, a window of `k = ceil(12 x 200 / 170)`
/// = 15 peer slices. Client `i`'s window `[i/N, (i + k)/N)` touches server `j`'s arc
/// `[j/M, (j + 1)/M)` when the window's start falls in an interval of `k/N + 1/M` turns, which
/// holds `k + N/M` = 16.2 peer starts: so every server is in 16 or 17 subsets (above
/// `clients x aperture / servers` = 14.1, since edge servers are partly covered), and the
/// load, which follows coverage, stays within 1.2 of the mean.
#[test]
fn aperture_with_counts_that_do_not_divide() {
    let config = Config {
        servers: 170,
        ..small()
    };
    let o = sim::run(&config, Mode::Aperture).unwrap();
    let k = slices(&config, config.servers);
    assert_eq!(k, 15);
    let starts = k as f64 + config.clients as f64 / config.servers as f64;
    for (server, &held) in o.in_subsets.iter().enumerate() {
        assert!(
            held as f64 >= starts.floor() && held as f64 <= starts.ceil(),
            "server {server}: in {held} subsets, expected {starts:.1} rounded"
        );
    }
    assert!(o.load_max() <= 1.2, "load max/mean {:.3}", o.load_max());
    assert_eq!(o.in_flight_after, 0);
}
