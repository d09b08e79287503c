//! Subsetting: which backends one client of a large fleet talks to.
//!
//! With 2,000 clients and 2,000 backends, a full mesh is 4 million connections, and each
//! backend's signals (in flight, latency, failures) are spread too thin over the clients to act
//! on. Subsetting gives each client a small, stable subset, balanced across the fleet. It is a
//! stage applied whenever a set is built (at construction, [`Balancer::update`], and
//! [`Balancer::set_subset`]), before the policy builds its table, so it composes with every
//! policy: the policy sees only the subset, and a pick costs what a pick over a set of the
//! subset's size costs.
//!
//! * [`Subset::Aperture`], **deterministic aperture** (Twitter's Finagle): clients and
//!   servers are laid on two rings over the same circle; client `peer_index` of `peer_count`
//!   takes a window from its own offset wide enough to cover at least `min_aperture` servers
//!   (12 by default, Finagle's), a whole number of client slices wide, so that summed over the
//!   fleet every server is covered the same number of times. A server at a window's edge is
//!   partly covered: its effective weight is scaled by the covered fraction (as slow start
//!   scales it), so the client's load on it is proportional to its coverage, under every
//!   policy that uses weights. [`RoundRobin`](crate::RoundRobin), [`JumpHash`](crate::JumpHash)
//!   and [`First`](crate::First) ignore weights, so they give an edge server a full share
//!   and the fleet's load on servers is uneven (7 clients over 20 servers under
//!   `RoundRobin`: the busiest server got 1.2x the picks of the idlest): use [`WeightedRoundRobin`](crate::WeightedRoundRobin) with an
//!   aperture. (A hashing policy places keys by the configured weights of the subset's
//!   backends; coverage scales only its bounded-load capacity, as slow start does.) Servers are
//!   placed on the ring by their pinned [`crate::hash::id_hash`], never by list
//!   order, so every client agrees without coordination. Positions are exact fractions (no
//!   floating point), which also fixes a rounding of Finagle's that sometimes takes one slice
//!   too many.
//! * [`Subset::Rendezvous`], **rendezvous subsetting** (gRPC's `random_subsetting`, gRFC
//!   A68): the `subset_size` backends with the highest score `mix(salt, id_hash(id))`; the
//!   salt is the client's (random per process by default, [`RendezvousSubset::salt`] fixes
//!   it). Adding or removing one backend changes at most one member of any client's subset.
//!   A68 hashes with MurmurHash3 and grpc-java with XXH64; lbkit keeps its one pinned hash
//!   (with a random salt per process, byte agreement with gRPC would mean nothing).
//!
//! **Health.** The subset is chosen from the whole set whatever the backends' health, so that
//! a backend going down does not reshuffle every client's subset. When none of the subset's
//! backends can take a pick (each is `Down`, draining, of weight 0 or ejected), the client
//! falls back to the whole set until one of them can again: a subset never turns a healthy
//! fleet into an outage. [`Balancer::status`] then lists every backend.
//!
//! **What the balancer shows.** [`Balancer::status`] and [`Balancer::backends`] list the
//! backends of the subset (the ones to pre-connect to), and
//! [`Status::coverage`](crate::Status::coverage) says how much of each the client covers.
//! Backends outside the subset are still known: [`Balancer::set_health`] accepts their ids,
//! and their health and what reports taught about them are kept for when they enter it.
//!
//! **Cost.** On update only: O(n log n) for the aperture (sorting the id hashes), O(n) for
//! rendezvous. Nothing on the pick path.
//!
//! ```
//! use lbkit::{Aperture, Backend, Balancer, PowerOfTwoChoices, Subset};
//!
//! let backends: Vec<Backend<()>> =
//!     (0..100).map(|i| Backend::new(format!("10.0.0.{i}:80"), ())).collect();
//! // Client 7 of a fleet of 50 clients.
//! let lb = PowerOfTwoChoices::builder()
//!     .subset(Subset::Aperture(Aperture::new(7, 50)))
//!     .build(backends)?;
//! let subset = lb.status();
//! assert!(subset.len() >= 12 && subset.len() < 100);
//! let covered: f64 = subset.iter().map(|s| s.coverage()).sum();
//! // A window of 6 client slices (6/50 of the ring): 12 servers' worth of 100.
//! assert!((covered - 12.0).abs() < 1e-3);
//! // The fleet grew: a new coordinate is an update like any other.
//! lb.set_subset(Subset::Aperture(Aperture::new(7, 100)))?;
//! # Ok::<(), lbkit::Error>(())
//! ```
//!
//! [`Balancer::update`]: crate::Balancer::update
//! [`Balancer::set_subset`]: crate::Balancer::set_subset
//! [`Balancer::status`]: crate::Balancer::status
//! [`Balancer::backends`]: crate::Balancer::backends
//! [`Balancer::set_health`]: crate::Balancer::set_health

use crate::engine::subset::{rendezvous_subset, Coordinate, COVERAGE_SCALE, DEFAULT_MIN_APERTURE};
use crate::error::Error;
use crate::placement::id_hash;

/// Which backends of the set this client uses (see the [module docs](crate::subset)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Subset {
    /// Every backend (the default).
    #[default]
    All,
    /// Deterministic aperture (Finagle).
    Aperture(Aperture),
    /// Rendezvous subsetting (gRFC A68).
    Rendezvous(RendezvousSubset),
}

/// Deterministic aperture: this client's place in its fleet, and the least number of servers
/// its window covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aperture {
    /// This client's index in its fleet, below `peer_count`.
    pub peer_index: usize,
    /// How many clients the fleet has (at least 1, at most 2^32 - 1).
    pub peer_count: usize,
    /// The fewest servers a window covers (default 12, Finagle's; at least 1). With fewer
    /// servers than this, every client covers them all.
    pub min_aperture: usize,
    /// A rotation of the whole client ring, in 2^-32 turns (default 0). Every client of one
    /// fleet must use the same; two fleets of the same size with different rotations load
    /// different servers first.
    pub peer_offset: u32,
}

impl Aperture {
    /// Client `peer_index` of `peer_count`, with the default minimum aperture (12).
    pub fn new(peer_index: usize, peer_count: usize) -> Self {
        Aperture {
            peer_index,
            peer_count,
            min_aperture: DEFAULT_MIN_APERTURE,
            peer_offset: 0,
        }
    }

    /// The same with another minimum aperture.
    #[must_use]
    pub fn min_aperture(mut self, servers: usize) -> Self {
        self.min_aperture = servers;
        self
    }
}

/// Rendezvous subsetting: how many backends, and this client's salt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RendezvousSubset {
    /// How many backends the subset has (all of them, if fewer; at least 1).
    pub subset_size: usize,
    /// This client's salt: clients with different salts get independent subsets.
    pub salt: u64,
}

impl RendezvousSubset {
    /// A subset of `subset_size` backends with a salt random to this process.
    pub fn new(subset_size: usize) -> Self {
        RendezvousSubset {
            subset_size,
            salt: crate::engine::sequence::entropy_seed(),
        }
    }

    /// The same with a fixed salt (tests, or a salt derived from the client's identity).
    #[must_use]
    pub fn salt(mut self, salt: u64) -> Self {
        self.salt = salt;
        self
    }
}

impl Subset {
    /// Checks every value; the error names the first one out of range.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        match self {
            Subset::All => Ok(()),
            Subset::Aperture(a) => {
                Coordinate::new(a.peer_index, a.peer_count, a.peer_offset)?;
                if a.min_aperture == 0 {
                    return Err(Error::config("min_aperture", "must be at least 1"));
                }
                Ok(())
            }
            Subset::Rendezvous(r) => rendezvous_subset(r.salt, &[], r.subset_size).map(|_| ()),
        }
    }

    /// The chosen backends of a set sorted by id, as `(index in ids, coverage in parts of
    /// 2^16)`, in index order; `None` for every backend at full coverage.
    pub(crate) fn select<'a>(
        &self,
        ids: impl ExactSizeIterator<Item = &'a str>,
    ) -> Result<Option<Vec<(usize, u32)>>, Error> {
        let hashes = || ids.map(id_hash).collect::<Vec<u64>>();
        let mut chosen = match self {
            Subset::All => return Ok(None),
            Subset::Aperture(a) => Coordinate::new(a.peer_index, a.peer_count, a.peer_offset)?
                .subset(&hashes(), a.min_aperture)?,
            Subset::Rendezvous(r) => rendezvous_subset(r.salt, &hashes(), r.subset_size)?
                .into_iter()
                .map(|i| (i, COVERAGE_SCALE))
                .collect(),
        };
        chosen.sort_unstable();
        Ok(Some(chosen))
    }
}
