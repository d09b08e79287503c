//! What a run measured, and the text tables the program prints from it: [`Outcome`] (one
//! policy's latencies, errors, load samples and keys moved), [`table`] (one row per policy),
//! [`health_table`] (the passive-health comparison, before -> after per policy) and the
//! tables of the other scenarios.

use std::time::Duration;

use crate::fleet::backend_id;

/// How many probe keys one membership change moved.
#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    /// What happened: `"fail"` or `"join"`.
    pub change: &'static str,
    /// Fraction of probe keys routed to another backend after the change than before.
    pub moved: f64,
    /// The least fraction that had to move: the failed backend's keys, or the joining
    /// backend's fair share.
    pub minimum: f64,
}

/// What one policy did with the workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The policy's name.
    pub policy: String,
    /// Latency (arrival to completion, retries included) of every request that succeeded,
    /// sorted.
    pub latencies: Vec<Duration>,
    /// The same, of the requests that arrived in the second half of the run (from the
    /// slowdown on, when there is one), sorted.
    pub latencies_second_half: Vec<Duration>,
    /// Requests that found no eligible backend.
    pub dropped: usize,
    /// Attempts retried because they failed (an error, a timeout, or a backend set `Down`
    /// under them).
    pub retried: usize,
    /// Attempts that ended in an error (reported with
    /// [`Pick::failure`](lbkit::Pick::failure)).
    pub errors: usize,
    /// Attempts the client gave up on after
    /// [`Config::timeout`](crate::config::Config::timeout) (reported as failures).
    pub timeouts: usize,
    /// Requests that failed on every one of their
    /// [`Config::attempts`](crate::config::Config::attempts) tries.
    pub failed: usize,
    /// Cache lookups that hit, and all lookups.
    pub cache_hits: usize,
    /// All cache lookups (0 with the cache off).
    pub cache_lookups: usize,
    /// The most requests ever in flight on one backend.
    pub max_in_flight: usize,
    /// Attempts that waited in a backend's queue (no worker was free when they arrived).
    pub waited: usize,
    /// Picks of each backend (by index) from the slowdown on; all 0 without a slowdown.
    pub picks_after_slowdown: Vec<usize>,
    /// In-flight requests per eligible backend, averaged over the samples.
    pub mean_in_flight: f64,
    /// The most work (sum of sizes, `workload::size`) ever held on one backend, measured by
    /// the simulation, not read from the balancer.
    pub max_work: u64,
    /// Work held per backend up, averaged over the samples.
    pub mean_work: f64,
    /// One entry per membership change, in order.
    pub moves: Vec<Move>,
    /// Ids of every backend that took part, in index order.
    pub backend_ids: Vec<String>,
    /// `(time, in-flight per backend)` samples read from `Balancer::status`.
    pub load: Vec<(Duration, Vec<usize>)>,
    /// The backends ejected by passive health at each of those samples.
    pub ejected: Vec<Vec<usize>>,
    /// Total in flight reported by `Balancer::status` after the last request completed.
    pub in_flight_after: usize,
}

impl Outcome {
    /// The latency at quantile `q` (0..=1); zero if nothing completed.
    pub fn quantile(&self, q: f64) -> Duration {
        quantile(&self.latencies, q)
    }

    /// The latency at quantile `q` of the requests that arrived in the second half of the run.
    pub fn quantile_second_half(&self, q: f64) -> Duration {
        quantile(&self.latencies_second_half, q)
    }

    /// The share of the samples from `from` on in which `backend` was ejected.
    pub fn ejected_share(&self, backend: usize, from: Duration) -> f64 {
        let mut samples = 0;
        let mut ejected = 0;
        for ((at, _), e) in self.load.iter().zip(&self.ejected) {
            if *at >= from {
                samples += 1;
                ejected += usize::from(e.contains(&backend));
            }
        }
        ejected as f64 / samples.max(1) as f64
    }

    /// Cache hit rate (0 with the cache off).
    pub fn hit_rate(&self) -> f64 {
        if self.cache_lookups == 0 {
            0.0
        } else {
            self.cache_hits as f64 / self.cache_lookups as f64
        }
    }
}

/// The value at quantile `q` (0..=1) of `sorted`; zero if it is empty.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[i - 1]
}

fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.1}")
    }
}

/// The results as a text table: a header, a rule, and one row per outcome. Errors, timeouts
/// and failed requests get columns when some request timed out or failed.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut changes: Vec<&'static str> = Vec::new();
    for o in outcomes {
        for m in &o.moves {
            if !changes.contains(&m.change) {
                changes.push(m.change);
            }
        }
    }
    let name_width = outcomes
        .iter()
        .map(|o| o.policy.len())
        .max()
        .unwrap_or(0)
        .max("policy".len());
    let mut header = format!(
        "{:<name_width$} {:>8} {:>8} {:>8} {:>13} {:>6}",
        "policy", "p50 ms", "p99 ms", "p99.9 ms", "in-flight max", "mean",
    );
    header.push_str(&format!(" {:>10}", "cache hits"));
    for c in &changes {
        header.push_str(&format!(" {:>16}", format!("moved on {c} (min)")));
    }
    header.push_str(&format!(" {:>8}", "retried"));
    // Failures beyond the announced one's retries: show what they cost.
    let failures = outcomes.iter().any(|o| o.timeouts > 0 || o.failed > 0);
    if failures {
        header.push_str(&format!(
            " {:>8} {:>8} {:>8}",
            "errors", "timeouts", "failed"
        ));
    }
    let mut out = header.clone();
    out.push('\n');
    out.push_str(&"-".repeat(header.len()));
    out.push('\n');
    for o in outcomes {
        let mut row = format!(
            "{:<name_width$} {:>8} {:>8} {:>8} {:>13} {:>6.1} {:>9.1}%",
            o.policy,
            millis(o.quantile(0.5)),
            millis(o.quantile(0.99)),
            millis(o.quantile(0.999)),
            o.max_in_flight,
            o.mean_in_flight,
            o.hit_rate() * 100.0,
        );
        for c in &changes {
            let cell = match o.moves.iter().find(|m| m.change == *c) {
                Some(m) => format!("{:.1}% ({:.1}%)", m.moved * 100.0, m.minimum * 100.0),
                None => "-".to_string(),
            };
            row.push_str(&format!(" {:>16}", cell));
        }
        row.push_str(&format!(" {:>8}", o.retried));
        if failures {
            row.push_str(&format!(
                " {:>8} {:>8} {:>8}",
                o.errors, o.timeouts, o.failed
            ));
        }
        out.push_str(&row);
        out.push('\n');
    }
    out
}

/// The header of the health table's last column: failed requests of the before-run when
/// retries are fresh picks (not avoiding the backends already tried).
pub const FRESH_COLUMN: &str = "failed, fresh retries";

/// The passive-health comparison as a text table: one row per policy, each cell
/// `before -> after` from the same scenario run without and then with the health rules. With
/// `failed` (the failed backend and when it failed), a column: the share of the time from
/// then on that it was ejected, with the health rules. With `fresh` (the before-run again,
/// its retries fresh picks; one per pair), a last column: its failed requests.
pub fn health_table(
    pairs: &[(Outcome, Outcome)],
    fresh: &[Outcome],
    failed: Option<(usize, Duration)>,
) -> String {
    let name_width = pairs
        .iter()
        .map(|(o, _)| o.policy.len())
        .max()
        .unwrap_or(0)
        .max("policy".len());
    let columns = [
        "p99 ms",
        "p99.9 ms",
        "errors",
        "timeouts",
        "failed requests",
    ];
    let mut header = format!("{:<name_width$}", "policy");
    for c in columns {
        header.push_str(&format!(" {c:>17}"));
    }
    if let Some((backend, _)) = failed {
        header.push_str(&format!(
            " {:>11}",
            format!("{} ejected", backend_id(backend))
        ));
    }
    if !fresh.is_empty() {
        header.push_str(&format!(" {:>22}", FRESH_COLUMN));
    }
    let mut out = header.clone();
    out.push('\n');
    out.push_str(&"-".repeat(header.len()));
    out.push('\n');
    for (i, (before, after)) in pairs.iter().enumerate() {
        let cells = [
            (millis(before.quantile(0.99)), millis(after.quantile(0.99))),
            (
                millis(before.quantile(0.999)),
                millis(after.quantile(0.999)),
            ),
            (before.errors.to_string(), after.errors.to_string()),
            (before.timeouts.to_string(), after.timeouts.to_string()),
            (before.failed.to_string(), after.failed.to_string()),
        ];
        let mut row = format!("{:<name_width$}", before.policy);
        for (b, a) in cells {
            row.push_str(&format!(" {:>17}", format!("{b} -> {a}")));
        }
        if let Some((backend, from)) = failed {
            let share = after.ejected_share(backend, from) * 100.0;
            row.push_str(&format!(" {share:>10.0}%"));
        }
        if let Some(fresh) = fresh.get(i) {
            row.push_str(&format!(" {:>22}", fresh.failed));
        }
        out.push_str(&row);
        out.push('\n');
    }
    out
}

/// The soft-health table: per policy, p99, p99.9, timeouts and failed requests, and the share
/// of the time after `from` that `backend` was ejected, each before -> after.
pub fn soft_table(pairs: &[(Outcome, Outcome)], backend: usize, from: Duration) -> String {
    let name_width = pairs
        .iter()
        .map(|(o, _)| o.policy.len())
        .max()
        .unwrap_or(0)
        .max("policy".len());
    let ejected = format!("{} ejected", backend_id(backend));
    let columns = [
        "p99 ms",
        "p99.9 ms",
        "timeouts",
        "failed requests",
        &ejected,
    ];
    let mut header = format!("{:<name_width$}", "policy");
    for c in columns {
        header.push_str(&format!(" {c:>17}"));
    }
    let mut out = header.clone();
    out.push('\n');
    out.push_str(&"-".repeat(header.len()));
    out.push('\n');
    for (before, after) in pairs {
        let share = |o: &Outcome| format!("{:.0}%", o.ejected_share(backend, from) * 100.0);
        let cells = [
            (millis(before.quantile(0.99)), millis(after.quantile(0.99))),
            (
                millis(before.quantile(0.999)),
                millis(after.quantile(0.999)),
            ),
            (before.timeouts.to_string(), after.timeouts.to_string()),
            (before.failed.to_string(), after.failed.to_string()),
            (share(before), share(after)),
        ];
        let mut row = format!("{:<name_width$}", before.policy);
        for (b, a) in cells {
            row.push_str(&format!(" {:>17}", format!("{b} -> {a}")));
        }
        out.push_str(&row);
        out.push('\n');
    }
    out
}

/// The load-report table: per policy, latency p50 / p99 / p99.9, the most in flight on one
/// backend and the mean per backend, the share of attempts that waited in a queue, p99 and
/// p99.9 of the requests that arrived in the second half of the run, and with
/// `slowed` (the backend that slowed down, and its share of the capacity after) the share
/// of the picks it got from the slowdown on.
pub fn reports_table(outcomes: &[Outcome], slowed: Option<(usize, f64)>) -> String {
    let name_width = outcomes
        .iter()
        .map(|o| o.policy.len())
        .max()
        .unwrap_or(0)
        .max("policy".len());
    let mut header = format!(
        "{:<name_width$} {:>8} {:>8} {:>8} {:>13} {:>6} {:>7} {:>17} {:>19}",
        "policy",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "in-flight max",
        "mean",
        "queued",
        "2nd half: p99 ms",
        "2nd half: p99.9 ms",
    );
    let slowed_column = slowed.map(|(b, share)| {
        format!(
            "{} share after (capacity {:.1}%)",
            backend_id(b),
            share * 100.0
        )
    });
    if let Some(c) = &slowed_column {
        header.push_str(&format!(" {c:>29}"));
    }
    let mut out = header.clone();
    out.push('\n');
    out.push_str(&"-".repeat(header.len()));
    out.push('\n');
    for o in outcomes {
        let attempts = o.latencies.len() + o.retried + o.failed;
        let mut row = format!(
            "{:<name_width$} {:>8} {:>8} {:>8} {:>13} {:>6.1} {:>6.1}% {:>17} {:>19}",
            o.policy,
            millis(o.quantile(0.5)),
            millis(o.quantile(0.99)),
            millis(o.quantile(0.999)),
            o.max_in_flight,
            o.mean_in_flight,
            o.waited as f64 / attempts.max(1) as f64 * 100.0,
            millis(o.quantile_second_half(0.99)),
            millis(o.quantile_second_half(0.999)),
        );
        if let (Some((b, _)), Some(c)) = (slowed, &slowed_column) {
            let total: usize = o.picks_after_slowdown.iter().sum();
            let share =
                o.picks_after_slowdown.get(b).copied().unwrap_or(0) as f64 / total.max(1) as f64;
            row.push_str(&format!(
                " {:>w$.1}%",
                share * 100.0,
                w = c.len().max(29) - 1
            ));
        }
        out.push_str(&row);
        out.push('\n');
    }
    out
}

/// The heavy-tailed table: per fleet (workers per backend) and policy, a row with every
/// request costing 1 (`count`) and a row with each request's size as its cost (`cost`), from
/// the same requests: latency p50 / p99 / p99.9, the most work held on one backend and the
/// mean per backend (in the simulation's units, `workload::COST_UNIT`), and the most
/// requests in flight on one backend.
pub fn pareto_table(rows: &[(usize, Outcome, Outcome)]) -> String {
    let name_width = rows
        .iter()
        .map(|(_, o, _)| o.policy.len())
        .max()
        .unwrap_or(0)
        .max("policy".len());
    let header = format!(
        "{:>7} {:<name_width$} {:>9} {:>8} {:>8} {:>8} {:>9} {:>7} {:>13}",
        "workers",
        "policy",
        "balancing",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "work max",
        "mean",
        "in-flight max",
    );
    let mut out = header.clone();
    out.push('\n');
    out.push_str(&"-".repeat(header.len()));
    out.push('\n');
    for (workers, count, cost) in rows {
        for (o, balancing) in [(count, "count"), (cost, "cost")] {
            out.push_str(&format!(
                "{:>7} {:<name_width$} {:>9} {:>8} {:>8} {:>8} {:>9} {:>7.0} {:>13}\n",
                workers,
                o.policy,
                balancing,
                millis(o.quantile(0.5)),
                millis(o.quantile(0.99)),
                millis(o.quantile(0.999)),
                o.max_work,
                o.mean_work,
                o.max_in_flight,
            ));
        }
    }
    out
}
