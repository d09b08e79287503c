//! The `tracing` feature: ejections, returns and panic mode as [`tracing`](https://docs.rs/tracing)
//! events, under the target `lbkit`, with the balancer's name
//! ([`Builder::name`](crate::Builder::name)) and the backend's id as fields.
//!
//! Ejections and panic mode are `WARN` (traffic moved because something is wrong); returns,
//! the end of panic mode and applied updates are `INFO`; slow starts that end, soft-health
//! weights and subset changes are `DEBUG`. With the feature on, every balancer finds its
//! events (one pass over the set per writer-side change, never on the pick path).

use std::sync::Arc;

use crate::observe::Event;

/// Emits `event` of the balancer named `balancer`.
pub(crate) fn event(balancer: &Arc<str>, event: &Event) {
    let balancer: &str = balancer;
    match event {
        Event::Ejected { id, why, until } => tracing::warn!(
            target: "lbkit",
            balancer,
            backend = &**id,
            reason = ?why,
            until_ms = until.as_millis() as u64,
            "backend ejected"
        ),
        Event::Returned { id } => {
            tracing::info!(target: "lbkit", balancer, backend = &**id, "backend returned")
        }
        Event::PanicEntered { healthy, could } => tracing::warn!(
            target: "lbkit",
            balancer,
            healthy,
            could,
            "panic mode entered: every backend that could serve is eligible"
        ),
        Event::PanicLeft { healthy, could } => {
            tracing::info!(target: "lbkit", balancer, healthy, could, "panic mode left")
        }
        Event::Updated {
            added,
            removed,
            kept,
        } => tracing::info!(target: "lbkit", balancer, added, removed, kept, "backends updated"),
        Event::SlowStartDone { id } => {
            tracing::debug!(target: "lbkit", balancer, backend = &**id, "slow start done")
        }
        Event::SoftWeight { id, multiplier } => tracing::debug!(
            target: "lbkit",
            balancer,
            backend = &**id,
            multiplier,
            "soft-health weight"
        ),
        Event::SubsetChanged { members } => {
            tracing::debug!(target: "lbkit", balancer, members, "subset changed")
        }
        Event::SharesChanged { shares } => {
            let shares = format!("{shares:?}");
            tracing::debug!(target: "lbkit", balancer, shares, "traffic shares changed")
        }
    }
}
