//! The fleet simulator's table: one Markdown row per mode.

use crate::sim::{Churn, Config, Outcome};

/// `1234567` as `1,234,567`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    out
}

fn churn(c: &Churn) -> String {
    format!(
        "{} ({:.2}%; <= {} a client)",
        thousands(c.changed()),
        c.share() * 100.0,
        c.worst_client
    )
}

/// The table: per server connections and load, per client subset size, and churn.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut out = String::from(
        "| mode | in subsets per server: mean | max | picked by per server: mean | max | \
         load max/mean | load p99/mean | subset size: mean | min | max | \
         churn: 1 server removed | 1 server added | 10% of clients restart |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for o in outcomes {
        let sizes = &o.subset_sizes;
        out.push_str(&format!(
            "| {} | {:.1} | {} | {:.1} | {} | {:.3} | {:.3} | {:.1} | {} | {} | {} | {} | {} |\n",
            o.mode.name(),
            o.in_subsets_mean(),
            thousands(o.in_subsets.iter().copied().max().unwrap_or(0)),
            o.connections_mean(),
            thousands(o.connections.iter().copied().max().unwrap_or(0)),
            o.load_max(),
            o.load_p99(),
            o.subset_mean(),
            sizes.iter().min().unwrap_or(&0),
            sizes.iter().max().unwrap_or(&0),
            churn(&o.removed.1),
            churn(&o.added),
            churn(&o.restarted.1),
        ));
    }
    out
}

/// What the churn columns count, for the line under the table.
pub fn legend(config: &Config, outcomes: &[Outcome]) -> String {
    let (removed, restarts) = outcomes
        .first()
        .map_or((0, 0), |o| (o.removed.0, o.restarted.0));
    format!(
        "in subsets: clients whose subset (status()) holds the server, the connections of \
         clients that pre-connect to their subset; picked by: distinct clients that picked \
         it at least once\n\
         churn: client-server pairs (in some client's subset, from status()) closed + opened, \
         their share of the pairs before, and the most one client changed; removed {}, \
         added {}, {} clients restarted (aperture: those clients took one another's peer \
         indices; rendezvous: new salts; all: the same full set)",
        crate::sim::server_id(removed),
        crate::sim::server_id(config.servers),
        thousands(restarts),
    )
}
