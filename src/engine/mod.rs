//! The shared engine every policy runs on: membership snapshots, in-flight accounting,
//! passive health, and the random and rotating sequences. A policy supplies only how it
//! chooses ([`policy::Policy`]); everything else is here, written once.
//!
//! # How one balancer is laid out
//!
//! * Each backend has one [`State`](state::State) (in-flight count, health, what reports
//!   taught), on its own cache line, shared by every [`Entry`](entry::Entry) that has stood
//!   for that id. It outlives rebuilds: an update carries it over by id, and a pick keeps it
//!   alive after the backend was removed, so the pick's release always lands on the counter
//!   it incremented. Its atomics are private to `state.rs`, behind intention-named methods.
//! * An [`Entry`](entry::Entry) is one backend as one update described it (id, weight,
//!   value) plus a pointer to its state. A [`Pick`](crate::Pick) holds an `Arc<Entry>`.
//! * A [`Snapshot`](snapshot::Snapshot) is everything a pick reads: the entries sorted by id,
//!   the eligible ones with their effective weights, and the policy's precomputed table (a
//!   schedule, an alias table, a ring, ...). It is immutable and sits behind one `ArcSwap`:
//!   a pick loads it once, so it can never see half an update.
//! * Writers (`update`, `set_health`, health configuration, and the rebuilds that apply
//!   passive health, [`rules`]) take one mutex in the [`Core`](core::Core), build a whole new
//!   snapshot and swap it in. Picks never wait for that lock: a pick that finds a rebuild due
//!   only tries it.
//! * [`subset`] is the pure arithmetic of subsetting (Finagle's deterministic aperture, gRFC
//!   A68's rendezvous subsetting): which backends one client of a fleet keeps, and how much
//!   of each. It uses only the pinned placement hash.
//! * [`priority`] is the pure arithmetic of priority tiers (Envoy's priority load, degraded
//!   hosts, per-level panic) and of locality weights inside a tier; [`tiers`] builds it into
//!   the snapshot, as groups a pick chooses among before its policy chooses a backend.
//! * [`zone`] is the pure arithmetic of zone-aware routing (Envoy's local share and residual
//!   capacity) and of load-aware zone weights.
//!
//! Imports run one way: `core` uses `snapshot`, `policy`, `rules`, `pick`, `entry` and
//! `state`; nothing here imports a policy. Atomics, the writer lock and the snapshot pointer
//! come from [`sync`] (plain re-exports, or loom's under `--cfg lbkit_loom`).

pub(crate) mod alias;
pub(crate) mod core;
pub(crate) mod entry;
pub(crate) mod load;
pub(crate) mod orca;
pub(crate) mod pick;
pub(crate) mod policy;
pub(crate) mod priority;
pub(crate) mod rules;
pub(crate) mod sequence;
pub(crate) mod snapshot;
pub(crate) mod soft;
pub(crate) mod state;
pub(crate) mod subset;
pub(crate) mod sync;
pub(crate) mod tiers;
// `tiers` uses the zone-aware routing and the load-aware weights; `choose_zone` (tiers draws
// from the routing's points instead) is tested here as the reference walk.
#[allow(dead_code)]
pub(crate) mod zone;
