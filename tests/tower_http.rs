//! `examples/tower_http.rs`, run in-process: three loopback HTTP servers behind a hyper client
//! balanced by `lbkit::service::Balance` over a bounded-load ring keyed by a header.

#[allow(dead_code)] // the example's `main`
#[path = "../examples/tower_http.rs"]
mod example;

#[tokio::test]
async fn affinity_and_failover_over_real_http() {
    let report = example::run(30).await.unwrap();
    // Affinity: both requests of every user reached the same server.
    for (user, [first, second]) in &report.before {
        assert_eq!(first, second, "{user} moved without a failure");
    }
    let stopped = &report.stopped;
    let theirs: Vec<_> = report
        .before
        .iter()
        .filter(|(_, [first, _])| first == stopped)
        .map(|(user, _)| user)
        .collect();
    assert!(!theirs.is_empty());
    // Failover: the first request to the stopped server failed and ejected it; its users
    // went elsewhere, every other user stayed.
    assert_eq!(report.failed, 1);
    for (user, server) in &report.after {
        let was = &report.before[user][0];
        if was == stopped {
            assert_ne!(server, stopped, "{user} still sent to the stopped server");
        } else {
            assert_eq!(server, was, "{user} moved though its server is up");
        }
    }
    // All three servers served someone before the stop.
    let used: std::collections::BTreeSet<_> = report.before.values().map(|[f, _]| f).collect();
    assert_eq!(used.len(), 3);
}
