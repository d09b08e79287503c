//! The pure arithmetic of subsetting (issue #14): which backends one client of a large fleet
//! talks to, and how much of each. Nothing here knows about balancers or snapshots; the
//! subsetting stage that applies it when a set is built comes next.
//!
//! # Deterministic aperture (Finagle)
//!
//! From Twitter's Finagle (`finagle-core/.../loadbalancer/aperture/`: `ProcessCoordinate`,
//! `Ring`, `DeterministicAperture`; `Ring` and `DeterministicAperture` as of the commit before
//! a5004ecc8, July 2022, which folded them into the weighted aperture). Two rings are laid
//! over the same unit circle:
//!
//! * the **peer ring**: the `peer_count` clients of one fleet, client `i` owning the slice
//!   `[i / peer_count, (i + 1) / peer_count)` ([`Coordinate`], Finagle's
//!   `ProcessCoordinate.FromInstanceId`);
//! * the **server ring**: the `n` servers, server `j` (in ring order) owning
//!   `[j / n, (j + 1) / n)` ([`Ring`]).
//!
//! A client takes the window that starts at its own offset and is `k` peer slices wide, with
//! `k = ceil(a x peer_count / n)` and `a = min(min_aperture, n)` the logical aperture
//! ([`aperture_width`], Finagle's `dApertureWidth`): the smallest whole number of peer slices
//! that covers at least `a` servers' worth of the ring. Because every client's window is a
//! whole number `k` of peer slices, the `peer_count` windows tile the circle exactly `k` times,
//! so **every server is covered exactly `k` times in total**, whatever `n`, `peer_count` and
//! the rotation: the fleet-wide load is equal by construction. A server at the edge of a
//! window is partly covered; a client weighs it by the covered fraction ([`Ring::weight`]).
//!
//! The default minimum aperture is 12 ([`DEFAULT_MIN_APERTURE`], Finagle's
//! `MinDeterministicAperture`, chosen there so that a window rarely holds no healthy server
//! and power-of-two-choices has room to respect the edge weights).
//!
//! ## Exact arithmetic instead of `Double`
//!
//! Finagle computes every position in `Double`. Here every position and length is an exact
//! fraction of one turn over a common integer denominator ([`Window`]; coverage is a
//! [`Fraction`]), computed in `u128` without overflow for every input accepted. Consequences:
//!
//! * No precision edge cases. Finagle's history has several: `Ring.range` precision
//!   (090453dc6, 2018; 8903c0fda, 2019), a range of 0 when rounding made the window wrap the
//!   whole ring (6dd765729, CSL-9607, 2020), the `Ring.weight` wrap-around (c4dc4fdc5, 2021).
//!   The ported `RingTest` vectors hold exactly rather than within `1e-4`.
//! * `aperture_width` is the exact ceiling. Finagle's `ceil(a x (1.0 / n) / (1.0 / peers))`
//!   rounds *up one peer slice too many* when `a x peers / n` is a whole number that `Double`
//!   lands just above (382 of the 89,401 pairs of 1 to 299 clients and servers at aperture
//!   12; for example 20 clients and 20 servers: Finagle 13 slices, exact 12). Both widths keep
//!   the fleet equal; ours is the intended, smaller one.
//! * Floating point is used only where a caller asks for it ([`Fraction::to_f64`]).
//!
//! ## Integer coverage
//!
//! [`aperture_subset`] turns coverage into parts of [`COVERAGE_SCALE`] = 2^16 (65,536 = fully
//! covered), rounded to nearest (halves up), and never 0 for a covered server (a sliver below
//! half a part counts as 1 part, so a server in the window always stays reachable). The
//! absolute error is at most one part in 65,536 per server. The wiring that multiplies these
//! into effective weights must budget 16 more bits.
//!
//! ## Where we differ from Finagle, on purpose
//!
//! * `peer_index` must be below `peer_count` (Finagle accepts any `instanceId >= 0` and wraps
//!   it with `% 1.0`); issue #14 asks for a typed error instead.
//! * The optional rotation (`peer_offset`, in 2^-32 turns) is the `peerOffset` that Finagle
//!   had until 9e6734b21 (August 2018: an `Int` over `Int.MaxValue`); Finagle replaced it with
//!   a per-peer-group seed for the server ordering. A rotation common to one client fleet
//!   keeps the fleet property and decorrelates fleets of the same size.
//! * Servers are placed on the ring in the order of their pinned id hashes (ties by position
//!   in the input), so every client agrees without coordination and the input order does not
//!   matter. Finagle sorts by a seeded MurmurHash3 of IP then port (`Address.hashOrdering`).
//!
//! # Rendezvous subsetting (gRFC A68)
//!
//! gRPC's `random_subsetting`: every server gets a score from a per-client salt and its
//! identity; the client keeps the `subset_size` best ([`rendezvous_subset`]). As scores of the
//! other servers do not change, adding or removing one server changes at most one member of
//! any subset. A68 (draft of 2024) concatenates the address with a random 32-byte salt and
//! sorts by MurmurHash3; grpc-java's implementation hashes the address with XXH64 seeded by a
//! random `long` and keeps the smallest. **We follow neither hash**: our score is
//! `mix(salt, id_hash)` ([`mix`] over the pinned
//! [`id_hash`](crate::placement::id_hash)), highest first, so the crate keeps one pinned
//! placement hash. Byte compatibility with gRPC clients would be meaningless anyway: their salt
//! is random per process. The properties A68 states (uniform in expectation, at most one change
//! per server added or removed) hold the same.
//!
//! # Cost
//!
//! Both run on update only. Deterministic aperture: O(n log n) to order the ring (one sort of
//! `(hash, position)` pairs), then O(window). Rendezvous: O(n) scores and a selection, then
//! O(k log k) to order the subset. For 10,000 servers, about 160 us and 40 us in a release
//! build on a shared 2-core development machine (a timing loop, not yet a criterion
//! benchmark; issue #14 asks for under 5 ms).

use std::cmp::Reverse;

use crate::engine::core::MAX_BACKENDS;
use crate::error::Error;
use crate::placement::mix;

/// Finagle's default minimum aperture (`MinDeterministicAperture`): a client covers at least
/// this many servers (or all, if there are fewer).
pub(crate) const DEFAULT_MIN_APERTURE: usize = 12;

/// Full coverage in the integer weights of [`aperture_subset`]: 2^16 parts.
pub(crate) const COVERAGE_SCALE: u32 = 1 << 16;

/// The most clients a peer ring may hold: positions carry 32 bits of peer index and 32 bits of
/// rotation in one `u64` denominator.
pub(crate) const MAX_PEERS: usize = u32::MAX as usize;

/// The denominator of [`Coordinate`]'s `peer_offset`: a rotation of `peer_offset / 2^32` turns.
const OFFSET_STEPS: u64 = 1 << 32;

/// An exact fraction `numerator / denominator`, with `denominator > 0`. Equality is by value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fraction {
    numerator: u64,
    denominator: u64,
}

impl Fraction {
    /// `numerator / denominator`, or `None` for a denominator of 0.
    #[cfg_attr(not(test), allow(dead_code))] // the ported Finagle tests use it
    pub(crate) fn new(numerator: u64, denominator: u64) -> Option<Self> {
        (denominator > 0).then_some(Fraction {
            numerator,
            denominator,
        })
    }

    /// The numerator, over [`Fraction::denominator`].
    #[cfg_attr(not(test), allow(dead_code))] // the ported Finagle tests use it
    pub(crate) fn numerator(self) -> u64 {
        self.numerator
    }

    /// The denominator (above 0).
    #[cfg_attr(not(test), allow(dead_code))] // the ported Finagle tests use it
    pub(crate) fn denominator(self) -> u64 {
        self.denominator
    }

    /// The nearest `f64` (two correctly rounded conversions and one division).
    #[cfg_attr(not(test), allow(dead_code))] // the ported Finagle tests use it
    pub(crate) fn to_f64(self) -> f64 {
        self.numerator as f64 / self.denominator as f64
    }

    /// This fraction (at most 1) in parts of `scale`: rounded to nearest, halves up, and at
    /// least 1 part when the fraction is above 0. A fraction above 1 saturates at `scale`.
    pub(crate) fn parts(self, scale: u32) -> u32 {
        if self.numerator == 0 {
            return 0;
        }
        let (n, d) = (u128::from(self.numerator), u128::from(self.denominator));
        // round(n x scale / d), halves up: floor((2 n scale + d) / 2d). At most 2^64 x 2^33.
        let rounded = (2 * n * u128::from(scale) + d) / (2 * d);
        rounded.clamp(1, u128::from(scale)) as u32
    }
}

impl PartialEq for Fraction {
    fn eq(&self, other: &Self) -> bool {
        u128::from(self.numerator) * u128::from(other.denominator)
            == u128::from(other.numerator) * u128::from(self.denominator)
    }
}

impl Eq for Fraction {}

/// An arc `[start, start + length)` of the unit ring, in turns, both over one denominator
/// `turn`: Finagle's `(offset, width)` pair, exactly. `start < turn`, `length <= turn`; the
/// arc wraps past 1 when `start + length > turn`. Equality compares the representation: the
/// same arc over two denominators is two values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    start: u64,
    length: u64,
    turn: u64,
}

impl Window {
    /// The arc from `start / turn` (in `[0, 1)`) of `length / turn` turns (in `[0, 1]`).
    ///
    /// Errors: [`Error::InvalidConfig`] (`"window"`) for a `turn` of 0, `start >= turn`
    /// (Finagle's "offset must be between [0, 1.0)") or `length > turn` ("width must be
    /// between [0, 1.0]").
    #[cfg_attr(not(test), allow(dead_code))] // the ported Finagle tests use it
    pub(crate) fn new(start: u64, length: u64, turn: u64) -> Result<Self, Error> {
        if turn == 0 {
            return Err(Error::config(
                "window",
                "the denominator must be at least 1",
            ));
        }
        if start >= turn {
            return Err(Error::config(
                "window",
                format!("start {start}/{turn} is not in [0, 1)"),
            ));
        }
        if length > turn {
            return Err(Error::config(
                "window",
                format!("length {length}/{turn} is above one turn"),
            ));
        }
        Ok(Window {
            start,
            length,
            turn,
        })
    }

    /// Where the arc starts, in `[0, 1)` turns (Finagle's `offset`).
    pub(crate) fn start(&self) -> Fraction {
        Fraction {
            numerator: self.start,
            denominator: self.turn,
        }
    }

    /// How long the arc is, in `[0, 1]` turns (Finagle's `width`).
    #[cfg_attr(not(test), allow(dead_code))] // the ported Finagle tests use it
    pub(crate) fn length(&self) -> Fraction {
        Fraction {
            numerator: self.length,
            denominator: self.turn,
        }
    }
}

/// `size` indices laid uniformly around the unit ring: index `j` owns `[j / size,
/// (j + 1) / size)`. Finagle's `Ring`, without its random picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ring {
    size: u64,
}

impl Ring {
    /// A ring of `size` indices.
    ///
    /// Errors: [`Error::InvalidConfig`] (`"ring_size"`) for 0 (Finagle: "size must be > 0"),
    /// [`Error::TooManyBackends`] above [`MAX_BACKENDS`].
    pub(crate) fn new(size: usize) -> Result<Self, Error> {
        if size == 0 {
            return Err(Error::config(
                "ring_size",
                "a ring needs at least one index",
            ));
        }
        if size > MAX_BACKENDS {
            return Err(Error::TooManyBackends {
                count: size,
                max: MAX_BACKENDS,
            });
        }
        Ok(Ring { size: size as u64 })
    }

    /// The index that owns the point `at` (in `[0, 1)` turns): `floor(at x size)`. `None` for a
    /// point at or beyond one turn.
    pub(crate) fn index(&self, at: Fraction) -> Option<usize> {
        if at.numerator >= at.denominator {
            return None;
        }
        // floor(n x size / d) < size: below 2^64 x 2^22.
        let index = u128::from(at.numerator) * u128::from(self.size) / u128::from(at.denominator);
        Some(index as usize)
    }

    /// How many indices `window` covers by a positive fraction; 1 for a window of length 0
    /// (Finagle's `range`: "we interpret a width of 0 as picking one index").
    pub(crate) fn range(&self, window: Window) -> usize {
        if window.length == 0 {
            return 1;
        }
        let (size, turn) = (u128::from(self.size), u128::from(window.turn));
        // In units of 1/(turn x size) turns, index j owns [j turn, (j + 1) turn), and the
        // window, unwrapped, is [start size, end size) with end = start + length < 2 turn.
        let first = u128::from(window.start) * size / turn;
        let end = (u128::from(window.start) + u128::from(window.length)) * size;
        // The last index that holds a point before `end` (unwrapped, so it may pass `size`).
        let last = end.div_ceil(turn) - 1;
        (last - first + 1).min(size) as usize
    }

    /// The indices `window` covers, in ring order from the one that owns its start (Finagle's
    /// `indices`); [`Ring::range`] of them.
    pub(crate) fn indices(&self, window: Window) -> impl Iterator<Item = usize> {
        let size = self.size as usize;
        // A window starts below one turn (checked by `Window::new`), so `index` is `Some`.
        let first = self.index(window.start()).unwrap_or(0);
        (0..self.range(window)).map(move |k| (first + k) % size)
    }

    /// The fraction of index `index`'s own arc that `window` covers, in `[0, 1]` (Finagle's
    /// `weight`). `None` for an index beyond the ring.
    pub(crate) fn weight(&self, index: usize, window: Window) -> Option<Fraction> {
        let index = index as u64;
        if index >= self.size {
            return None;
        }
        let (size, turn) = (u128::from(self.size), u128::from(window.turn));
        // Units of 1/(turn x size) turns: the index owns [index turn, (index + 1) turn), the
        // window [start size, end size), wrapped once past `turn x size` at most. Every value
        // is below 2^65 x 2^22.
        let own = (u128::from(index) * turn, (u128::from(index) + 1) * turn);
        let start = u128::from(window.start) * size;
        let end = (u128::from(window.start) + u128::from(window.length)) * size;
        let circle = turn * size;
        let covered = if end <= circle {
            overlap(own, (start, end))
        } else {
            // [start, circle) and [0, end - circle): disjoint, as length <= turn.
            overlap(own, (start, circle)) + overlap(own, (0, end - circle))
        };
        // covered <= turn (the index's own length), so it fits the u64 numerator.
        Some(Fraction {
            numerator: covered as u64,
            denominator: window.turn,
        })
    }
}

/// The length of the intersection of two half-open intervals (0 if they do not meet).
fn overlap(a: (u128, u128), b: (u128, u128)) -> u128 {
    a.1.min(b.1).saturating_sub(a.0.max(b.0))
}

/// A client's place on the peer ring: Finagle's `ProcessCoordinate.FromInstanceId`, with the
/// optional rotation it had before 2018 (`peerOffset`).
///
/// Positions are over the denominator `peer_count x 2^32`: the offset is `peer_index /
/// peer_count + peer_offset / 2^32` (modulo one turn), the unit width `1 / peer_count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Coordinate {
    peer_index: u64,
    peer_count: u64,
    peer_offset: u32,
}

impl Coordinate {
    /// Client `peer_index` of `peer_count`, the whole peer ring rotated by `peer_offset / 2^32`
    /// turns (0: Finagle's current coordinate; every client of one fleet must use the same).
    ///
    /// Errors: [`Error::InvalidConfig`] for a `peer_count` of 0 or above [`MAX_PEERS`]
    /// (`"peer_count"`), and for `peer_index >= peer_count` (`"peer_index"`).
    pub(crate) fn new(
        peer_index: usize,
        peer_count: usize,
        peer_offset: u32,
    ) -> Result<Self, Error> {
        check_peer_count(peer_count)?;
        if peer_index >= peer_count {
            return Err(Error::config(
                "peer_index",
                format!("{peer_index} is not below peer_count {peer_count}"),
            ));
        }
        Ok(Coordinate {
            peer_index: peer_index as u64,
            peer_count: peer_count as u64,
            peer_offset,
        })
    }

    /// The common denominator of this coordinate's positions: `peer_count x 2^32 < 2^64`.
    fn turn(&self) -> u64 {
        self.peer_count * OFFSET_STEPS
    }

    /// This client's offset on the ring, in `[0, 1)` turns (Finagle's `Coord.offset`).
    pub(crate) fn offset(&self) -> Fraction {
        let turn = u128::from(self.turn());
        let start = (u128::from(self.peer_index) * u128::from(OFFSET_STEPS)
            + u128::from(self.peer_offset) * u128::from(self.peer_count))
            % turn;
        Fraction {
            numerator: start as u64,
            denominator: self.turn(),
        }
    }

    /// This client's own slice of the peer ring: its offset and the unit width `1 /
    /// peer_count` (Finagle's `Coord.offset` and `Coord.unitWidth`).
    #[cfg_attr(not(test), allow(dead_code))] // the ported Finagle tests use it
    pub(crate) fn slice(&self) -> Window {
        self.window(1)
    }

    /// The window of `slices` peer slices from this client's offset (`slices <= peer_count`).
    fn window(&self, slices: u64) -> Window {
        Window {
            start: self.offset().numerator,
            length: slices * OFFSET_STEPS,
            turn: self.turn(),
        }
    }

    /// The window this client covers on a ring of `server_count` servers: its offset and the
    /// width [`aperture_width`] gives (Finagle's `coord.offset` and `apertureWidth`).
    ///
    /// Errors: as [`aperture_width`].
    pub(crate) fn aperture(
        &self,
        server_count: usize,
        min_aperture: usize,
    ) -> Result<Window, Error> {
        let width = aperture_width(server_count, self.peer_count as usize, min_aperture)?;
        Ok(self.window(width.numerator))
    }

    /// [`aperture_subset`] at this coordinate (which may carry a rotation).
    ///
    /// Errors: as [`aperture_subset`], but for the coordinate's own, checked at construction.
    pub(crate) fn subset(
        &self,
        server_hashes: &[u64],
        min_aperture: usize,
    ) -> Result<Vec<(usize, u32)>, Error> {
        let n = server_hashes.len();
        let window = self.aperture(n, min_aperture)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let ring = Ring::new(n)?;
        // Ring order: by pinned hash; equal hashes (the same id twice, or a 64-bit collision)
        // by position, the one place where the input order can matter.
        let mut order: Vec<(u64, usize)> = server_hashes
            .iter()
            .enumerate()
            .map(|(position, &hash)| (hash, position))
            .collect();
        order.sort_unstable();
        // Every index `indices` yields is below the ring size, so `weight` is never `None`.
        Ok(ring
            .indices(window)
            .filter_map(|index| {
                let coverage = ring.weight(index, window)?;
                Some((order[index].1, coverage.parts(COVERAGE_SCALE)))
            })
            .collect())
    }
}

fn check_peer_count(peer_count: usize) -> Result<(), Error> {
    if peer_count == 0 {
        return Err(Error::config("peer_count", "must be at least 1"));
    }
    if peer_count > MAX_PEERS {
        return Err(Error::config(
            "peer_count",
            format!("{peer_count} is above the most supported, {MAX_PEERS}"),
        ));
    }
    Ok(())
}

fn check_min_aperture(min_aperture: usize) -> Result<(), Error> {
    if min_aperture == 0 {
        return Err(Error::config("min_aperture", "must be at least 1"));
    }
    Ok(())
}

/// The width of a client's window, in turns, over the denominator `peer_count`: `k /
/// peer_count` with `k = ceil(a x peer_count / server_count)` and `a = min(min_aperture,
/// server_count)` (Finagle's `dApertureWidth`, exact; `k <= peer_count`, so at most one turn).
/// The window covers at least `a` servers' worth of the ring; 0 when there is no server.
///
/// Errors: [`Error::InvalidConfig`] for a `peer_count` of 0 or above [`MAX_PEERS`]
/// (`"peer_count"`), a `min_aperture` of 0 (`"min_aperture"`); [`Error::TooManyBackends`]
/// for more than [`MAX_BACKENDS`] servers.
pub(crate) fn aperture_width(
    server_count: usize,
    peer_count: usize,
    min_aperture: usize,
) -> Result<Fraction, Error> {
    check_peer_count(peer_count)?;
    check_min_aperture(min_aperture)?;
    if server_count > MAX_BACKENDS {
        return Err(Error::TooManyBackends {
            count: server_count,
            max: MAX_BACKENDS,
        });
    }
    let slices = if server_count == 0 {
        0
    } else {
        let logical = min_aperture.min(server_count) as u128;
        // logical <= server_count, so this is at most peer_count.
        (logical * peer_count as u128).div_ceil(server_count as u128) as u64
    };
    Ok(Fraction {
        numerator: slices,
        denominator: peer_count as u64,
    })
}

/// The servers client `peer_index` of `peer_count` covers by deterministic aperture, and how
/// much of each: `(position in server_hashes, coverage in parts of COVERAGE_SCALE)`, in ring
/// order from the server that owns the client's offset.
///
/// `server_hashes` are the servers' pinned id hashes ([`id_hash`](crate::placement::id_hash));
/// the ring orders servers by them, so any order of the same servers gives the same servers
/// with the same coverage. Coverage is in `1..=COVERAGE_SCALE` (see the module docs for the
/// rounding). No server: an empty subset.
///
/// Errors: [`Error::InvalidConfig`] for a `peer_count` of 0 or above [`MAX_PEERS`],
/// `peer_index >= peer_count`, a `min_aperture` of 0; [`Error::TooManyBackends`] for more than
/// [`MAX_BACKENDS`] servers.
#[cfg_attr(not(test), allow(dead_code))] // the ported Finagle tests use it
pub(crate) fn aperture_subset(
    peer_index: usize,
    peer_count: usize,
    server_hashes: &[u64],
    min_aperture: usize,
) -> Result<Vec<(usize, u32)>, Error> {
    Coordinate::new(peer_index, peer_count, 0)?.subset(server_hashes, min_aperture)
}

/// The `subset_size` servers with the highest salted rendezvous score `mix(salt,
/// server_hashes[i])` (or all of them, if fewer), as positions in `server_hashes`, best first
/// (gRFC A68 random subsetting; see the module docs for its hash and ours).
///
/// `server_hashes` are the servers' pinned id hashes. Distinct hashes have distinct scores
/// (`mix` is a bijection of its second argument for a fixed first), so the subset depends on
/// the set of hashes only, never on their order; equal hashes tie by position.
///
/// Errors: [`Error::InvalidConfig`] (`"subset_size"`) for a `subset_size` of 0;
/// [`Error::TooManyBackends`] for more than [`MAX_BACKENDS`] servers.
pub(crate) fn rendezvous_subset(
    salt: u64,
    server_hashes: &[u64],
    subset_size: usize,
) -> Result<Vec<usize>, Error> {
    if subset_size == 0 {
        return Err(Error::config("subset_size", "must be at least 1"));
    }
    if server_hashes.len() > MAX_BACKENDS {
        return Err(Error::TooManyBackends {
            count: server_hashes.len(),
            max: MAX_BACKENDS,
        });
    }
    // Best first: the highest score, then the lowest position.
    let mut scored: Vec<(Reverse<u64>, usize)> = server_hashes
        .iter()
        .enumerate()
        .map(|(position, &hash)| (Reverse(mix(salt, hash)), position))
        .collect();
    if subset_size < scored.len() {
        scored.select_nth_unstable(subset_size - 1);
        scored.truncate(subset_size);
    }
    scored.sort_unstable();
    Ok(scored.into_iter().map(|(_, position)| position).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::{id_hash, splitmix64};
    use proptest::prelude::*;

    /// The arc `[start / turn, (start + length) / turn)`.
    fn window(start: u64, length: u64, turn: u64) -> Window {
        Window::new(start, length, turn).unwrap()
    }

    fn ring(size: usize) -> Ring {
        Ring::new(size).unwrap()
    }

    fn fraction(numerator: u64, denominator: u64) -> Fraction {
        Fraction::new(numerator, denominator).unwrap()
    }

    fn indices(ring: Ring, w: Window) -> Vec<usize> {
        ring.indices(w).collect()
    }

    /// The weight of `index`, which must be on the ring.
    fn weight(ring: Ring, index: usize, w: Window) -> Fraction {
        ring.weight(index, w).unwrap()
    }

    fn parameter(result: Result<impl std::fmt::Debug, Error>) -> &'static str {
        match result {
            Err(Error::InvalidConfig { parameter, .. }) => parameter,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    /// `n` distinct well-spread hashes (SplitMix64 is a bijection), from a seed.
    fn hashes(n: usize, seed: u64) -> Vec<u64> {
        (0..n as u64)
            .map(|i| splitmix64(seed.wrapping_add(i)))
            .collect()
    }

    // ---- Finagle RingTest (finagle-core/src/test/.../aperture/RingTest.scala, as of the
    // parent of a5004ecc8). Finagle's doubles become exact fractions; its `assertApproxEqual`
    // (1e-4) becomes equality.

    /// RingTest "Ring.range has a valid size": 65 clients, min aperture 12, 1 to 20 servers,
    /// every client (Finagle draws them; here all of them).
    #[test]
    fn finagle_ring_range_has_a_valid_size() {
        let (clients, min_aperture) = (65, 12);
        for servers in 1..=20 {
            for client in 0..clients {
                let w = Coordinate::new(client, clients, 0)
                    .unwrap()
                    .aperture(servers, min_aperture)
                    .unwrap();
                let r = ring(servers);
                let range = r.range(w);
                assert_eq!(
                    indices(r, w).len(),
                    range,
                    "client {client}, servers {servers}"
                );
                assert!(range >= servers.min(min_aperture));
                assert!(range <= servers);
            }
        }
    }

    /// RingTest "Ring.range has a valid size with tricky values" (CSL-9607): client 6 of 65,
    /// width 0.9230769230769231 (= 12/13 = 60/65), 13 servers.
    #[test]
    fn finagle_ring_range_tricky_values() {
        let coordinate = Coordinate::new(6, 65, 0).unwrap();
        let w = coordinate.aperture(13, 12).unwrap();
        assert_eq!(w.length(), fraction(12, 13));
        assert_eq!(w.start(), fraction(6, 65));
        let r = ring(13);
        let range = r.range(w);
        assert_eq!(indices(r, w).len(), range);
        assert!((12..=13).contains(&range));
        // Exactly: every server is touched (1 is partly covered at the start, 0 at the end).
        assert_eq!(range, 13);
        assert_eq!(weight(r, 1, w), fraction(4, 5));
        assert_eq!(weight(r, 0, w), fraction(1, 5));
    }

    /// RingTest "pick2: no range": `pick2(3/4, 0)` on 10 indices is index 7, the index that
    /// owns the offset; and a window of width 0 has one index.
    #[test]
    fn finagle_pick2_no_range() {
        let r = ring(10);
        assert_eq!(r.index(fraction(3, 4)), Some(7));
        assert_eq!(indices(r, window(3, 0, 4)), vec![7]);
    }

    /// RingTest "range boundary cases".
    #[test]
    fn finagle_range_boundary_cases() {
        // A ring of one index: any width covers it.
        let r0 = ring(1);
        for start in [0, 1, 5_000, 9_999] {
            assert_eq!(r0.range(window(start, 0, 10_000)), 1);
            assert_eq!(r0.range(window(start, 5_000, 10_000)), 1);
            assert_eq!(r0.range(window(start, 10_000, 10_000)), 1);
        }
        // Finagle draws the size in 2..10_002 and the offsets at random; here a spread of
        // sizes, and offsets at an index's start (Finagle's 0.000001 could straddle two
        // indices of a 10,001 ring with probability 1%; its seed happened not to).
        const TURN: u64 = 1 << 62;
        for size in [2, 3, 7, 10, 1250, 4422, 10_001] {
            let r1 = ring(size);
            for k in [0, 1, size as u64 / 2, size as u64 - 1] {
                // k / size of a turn, rounded up onto the TURN grid: inside index k.
                let start = (u128::from(k) * u128::from(TURN)).div_ceil(size as u128) as u64;
                assert_eq!(r1.range(window(start, 0, TURN)), 1);
                // Double.MinPositiveValue: the smallest positive length on this grid.
                assert_eq!(r1.range(window(start, 1, TURN)), 1);
                assert_eq!(r1.range(window(start, TURN / 1_000_000, TURN)), 1);
                assert_eq!(
                    r1.range(window(start, TURN / 1_000_000 * 999_999, TURN)),
                    size
                );
                assert_eq!(r1.range(window(start, TURN - 1, TURN)), size);
                assert_eq!(r1.range(window(start, TURN, TURN)), size);
            }
        }
        // forAll (size, id): range(id / size, 1.0) == size (the offset taken modulo one turn).
        for size in 1..=40u64 {
            for id in 1..=80u64 {
                let w = window(id % size, size, size);
                assert_eq!(ring(size as usize).range(w), size as usize);
            }
        }
    }

    /// RingTest "range projects pick2": the indices a window covers on 10 indices.
    #[test]
    fn finagle_range_projects_pick2() {
        let r = ring(10);
        // Aligned with ring units: offset .1, width .3.
        assert_eq!(indices(r, window(10, 30, 100)), vec![1, 2, 3]);
        // Misaligned at the end: .1, .35.
        assert_eq!(indices(r, window(10, 35, 100)), vec![1, 2, 3, 4]);
        // Misaligned at the start: .35, .15.
        assert_eq!(indices(r, window(35, 15, 100)), vec![3, 4]);
        // Misaligned at both: .25, .2.
        assert_eq!(indices(r, window(25, 20, 100)), vec![2, 3, 4]);
    }

    /// RingTest "pick2: wraps around and respects weights": offset 3/4, width 1/2 on 10
    /// indices covers 7, 8, 9, 0, 1, 2, with 7 and 2 half covered ("index 2 and 7 should get
    /// ~50% of picks relative to the other indices").
    #[test]
    fn finagle_wraps_around_and_respects_weights() {
        let (r, w) = (ring(10), window(3, 2, 4));
        assert_eq!(r.range(w), 6);
        assert_eq!(indices(r, w), vec![7, 8, 9, 0, 1, 2]);
        for i in [7, 2] {
            assert_eq!(weight(r, i, w), fraction(1, 2));
        }
        for i in [8, 9, 0, 1] {
            assert_eq!(weight(r, i, w), fraction(1, 1));
        }
        for i in 3..=6 {
            assert_eq!(weight(r, i, w), fraction(0, 1));
        }
    }

    /// RingTest "Handles full-width windows when offset + width results in an overlap"
    /// (reported at nvartolomei.com/weighted-deterministic-aperture): 4 indices, offset 1/8,
    /// width 1.
    #[test]
    fn finagle_full_width_window_with_overlap() {
        let r = ring(4);
        let w = window(1, 8, 8);
        for i in 0..4 {
            assert_eq!(weight(r, i, w), fraction(1, 1));
        }
    }

    /// RingTest "weight".
    #[test]
    fn finagle_weight() {
        let r = ring(10);
        assert_eq!(r.range(window(1, 1, 4)), 3);
        assert_eq!(indices(r, window(1, 1, 4)), vec![2, 3, 4]);
        // Wrap around.
        assert_eq!(r.range(window(3, 2, 4)), 6);
        assert_eq!(indices(r, window(3, 2, 4)), vec![7, 8, 9, 0, 1, 2]);
        // Walk the indices.
        for i in 0..10 {
            assert_eq!(r.range(window(i, 1, 10)), 1);
            assert_eq!(indices(r, window(i, 1, 10)), vec![i as usize]);
        }
        let one = fraction(1, 1);
        assert_eq!(weight(r, 5, window(5, 1, 10)), one);
        assert_eq!(weight(r, 5, window(5, 10, 10)), one);
        // Wrap-around: [0.0, 0.1) within [0.75, 1.25).
        assert_eq!(weight(r, 0, window(3, 2, 4)), one);
        assert_eq!(weight(r, 0, window(0, 1, 1)), one);
        // Wrap-around with full width: zero offset and index 9; offset 0.5 and index 9;
        // zero offset and index 0.
        assert_eq!(weight(r, 9, window(0, 1, 1)), one);
        assert_eq!(weight(r, 9, window(5, 10, 10)), one);
        assert_eq!(weight(r, 0, window(0, 10, 10)), one);
        // Full overlap without offset, and with offset.
        assert_eq!(weight(r, 0, window(0, 1, 10)), one);
        assert_eq!(weight(r, 1, window(1, 1, 10)), one);
    }

    /// RingTest "Weight should be 0 if offset > unitWidth and we don't overlap the ring
    /// boundary": index 0 of 10, width 0.1, offsets 0.10 to 0.89 (all of them).
    #[test]
    fn finagle_weight_zero_away_from_the_index() {
        let r = ring(10);
        for n in 10..=89 {
            assert_eq!(
                weight(r, 0, window(n, 10, 100)),
                fraction(0, 1),
                "offset {n}/100"
            );
        }
    }

    /// RingTest "Partial weights without overlapping the ring boundary": index 0 of 10, width
    /// 0.1, offsets 0.000 to 0.099: the weight is (0.1 - offset) / 0.1.
    #[test]
    fn finagle_partial_weights() {
        let r = ring(10);
        for n in 0..=99 {
            assert_eq!(weight(r, 0, window(n, 100, 1000)), fraction(100 - n, 100));
        }
    }

    /// RingTest "Weight should be 0 if width is 0": every index, offsets 0.00 to 0.99
    /// (Finagle also tries 1.00, which is not a point of the ring here: `Window::new`
    /// rejects it).
    #[test]
    fn finagle_weight_zero_for_width_zero() {
        let r = ring(10);
        for n in 0..100 {
            for i in 0..10 {
                assert_eq!(weight(r, i, window(n, 0, 100)), fraction(0, 1));
            }
        }
        assert_eq!(parameter(Window::new(100, 0, 100)), "window");
    }

    /// RingTest "weight throws exceptions when appropriate": an index beyond the ring, a width
    /// of 1.5. (A width of -0.5 cannot be written: lengths are unsigned.)
    #[test]
    fn finagle_weight_rejects_bad_input() {
        let r = ring(10);
        assert_eq!(r.weight(10, window(0, 1, 2)), None);
        assert_eq!(parameter(Window::new(0, 3, 2)), "window");
        assert_eq!(parameter(Ring::new(0)), "ring_size");
    }

    // ---- Finagle ProcessCoordinateTest (HEAD of twitter/finagle). Its "update coordinate"
    // and "apply returns the most current value" test the process-global `Event`; a
    // coordinate here is a plain value, so there is nothing of theirs to port.

    /// ProcessCoordinateTest "setCoordinate": (0, 0) is refused; instances 1 and 2 of 10
    /// differ.
    #[test]
    fn finagle_set_coordinate() {
        assert_eq!(parameter(Coordinate::new(0, 0, 0)), "peer_count");
        let a = Coordinate::new(1, 10, 0).unwrap();
        let b = Coordinate::new(2, 10, 0).unwrap();
        assert_ne!(a, b);
        assert_ne!(a.offset(), b.offset());
        assert_eq!(a.offset(), fraction(1, 10));
        assert_eq!(b.slice().length(), fraction(1, 10));
    }

    /// ProcessCoordinateTest "setCoordinate range", first half: the only client of one has
    /// unit width 1.
    #[test]
    fn finagle_set_coordinate_single_instance() {
        let only = Coordinate::new(0, 1, 0).unwrap();
        assert_eq!(only.slice().length(), fraction(1, 1));
        assert_eq!(only.offset(), fraction(0, 1));
    }

    proptest! {
        /// ProcessCoordinateTest "setCoordinate range", second half: for any count in
        /// 1..=Int.MaxValue and id below it, the offset is in [0, 1) and the unit width in
        /// (0, 1], and exactly id / count and 1 / count. With a rotation, still in [0, 1).
        #[test]
        fn finagle_set_coordinate_range(
            count in 1usize..=i32::MAX as usize,
            id_seed in any::<u64>(),
            peer_offset in any::<u32>(),
        ) {
            let id = (id_seed % count as u64) as usize;
            let c = Coordinate::new(id, count, 0).unwrap();
            prop_assert_eq!(c.offset(), fraction(id as u64, count as u64));
            prop_assert_eq!(c.slice().length(), fraction(1, count as u64));
            let rotated = Coordinate::new(id, count, peer_offset).unwrap().offset();
            prop_assert!(rotated.numerator() < rotated.denominator());
        }
    }

    // ---- Finagle ApertureTest (parent of a5004ecc8): the deterministic aperture's expected
    // subsets.

    /// ApertureTest "useDeterministicOrdering, clients evenly divide servers": instance 0 of 12,
    /// 24 servers, aperture 12: servers 0 to 11, whole.
    #[test]
    fn finagle_clients_evenly_divide_servers() {
        let w = Coordinate::new(0, 12, 0).unwrap().aperture(24, 12).unwrap();
        let r = ring(24);
        assert_eq!(indices(r, w), (0..12).collect::<Vec<_>>());
        for i in 0..12 {
            assert_eq!(weight(r, i, w), fraction(1, 1));
        }
    }

    /// ApertureTest "useDeterministicOrdering, clients unevenly divide servers": instance 1 of
    /// 4, 18 servers: 3 slices (width 3/4) from 1/4, so servers 4 to 17, with 4 half covered.
    #[test]
    fn finagle_clients_unevenly_divide_servers() {
        assert_eq!(aperture_width(18, 4, 12).unwrap(), fraction(3, 4));
        let w = Coordinate::new(1, 4, 0).unwrap().aperture(18, 12).unwrap();
        let r = ring(18);
        assert_eq!(indices(r, w), (4..=17).collect::<Vec<_>>());
        assert_eq!(weight(r, 4, w), fraction(1, 2));
        for i in 5..=17 {
            assert_eq!(weight(r, i, w), fraction(1, 1));
        }
    }

    /// ApertureTest "daperture toggle": instance 0 of 150 over 150 servers keeps the minimum
    /// aperture 12 (12 servers), not 150.
    #[test]
    fn finagle_daperture_toggle() {
        assert_eq!(
            aperture_width(150, 150, DEFAULT_MIN_APERTURE).unwrap(),
            fraction(12, 150)
        );
        let w = Coordinate::new(0, 150, 0)
            .unwrap()
            .aperture(150, 12)
            .unwrap();
        assert_eq!(ring(150).range(w), 12);
    }

    /// ApertureTest "d-aperture with equally loaded nodes doesn't unduly bias due to rounding
    /// errors": instance 0 of 1 over 3 servers: the logical aperture is min(12, 3) = 3, the
    /// window the whole ring, every server whole.
    #[test]
    fn finagle_single_client_takes_every_server() {
        assert_eq!(aperture_width(3, 1, 12).unwrap(), fraction(1, 1));
        let subset = aperture_subset(0, 1, &hashes(3, 5), 12).unwrap();
        assert_eq!(subset.len(), 3);
        assert!(subset.iter().all(|&(_, parts)| parts == COVERAGE_SCALE));
    }

    /// Where exact arithmetic and Finagle's `Double` differ: 20 clients over 20 servers at
    /// aperture 12. `ceil(12 x (1.0 / 20) / (1.0 / 20))` is 13 in `Double`; exactly, 12.
    #[test]
    fn aperture_width_is_the_exact_ceiling() {
        assert_eq!(aperture_width(20, 20, 12).unwrap().numerator(), 12);
        let finagle = (12.0 * (1.0 / 20.0) / (1.0 / 20.0_f64)).ceil();
        assert_eq!(finagle, 13.0);
        // And the usual cases: 4 clients, 18 servers: ceil(48 / 18) = 3.
        assert_eq!(aperture_width(18, 4, 12).unwrap().numerator(), 3);
        // No server: no width.
        assert_eq!(aperture_width(0, 4, 12).unwrap().numerator(), 0);
        // A minimum beyond the servers: the whole ring.
        assert_eq!(aperture_width(5, 7, 12).unwrap(), fraction(1, 1));
    }

    // ---- Our own.

    #[test]
    fn bad_input_is_a_typed_error() {
        let h = hashes(10, 1);
        assert_eq!(parameter(aperture_subset(0, 0, &h, 12)), "peer_count");
        assert_eq!(parameter(aperture_subset(3, 3, &h, 12)), "peer_index");
        assert_eq!(parameter(aperture_subset(7, 3, &h, 12)), "peer_index");
        assert_eq!(parameter(aperture_subset(0, 3, &h, 0)), "min_aperture");
        assert_eq!(
            parameter(aperture_subset(0, MAX_PEERS + 1, &h, 12)),
            "peer_count"
        );
        assert_eq!(parameter(aperture_width(10, 0, 12)), "peer_count");
        assert_eq!(parameter(aperture_width(10, 3, 0)), "min_aperture");
        assert_eq!(parameter(rendezvous_subset(1, &h, 0)), "subset_size");
        // Checked with no server too: the configuration is wrong whatever the set.
        assert_eq!(parameter(aperture_subset(0, 3, &[], 0)), "min_aperture");
        assert_eq!(parameter(rendezvous_subset(1, &[], 0)), "subset_size");
        assert_eq!(
            aperture_width(MAX_BACKENDS + 1, 3, 12).unwrap_err(),
            Error::TooManyBackends {
                count: MAX_BACKENDS + 1,
                max: MAX_BACKENDS
            }
        );
    }

    #[test]
    fn no_server_is_an_empty_subset() {
        assert_eq!(aperture_subset(1, 3, &[], 12).unwrap(), vec![]);
        assert_eq!(rendezvous_subset(1, &[], 5).unwrap(), Vec::<usize>::new());
    }

    #[test]
    fn coverage_parts_round_and_never_vanish() {
        assert_eq!(fraction(0, 7).parts(COVERAGE_SCALE), 0);
        assert_eq!(fraction(1, 1).parts(COVERAGE_SCALE), COVERAGE_SCALE);
        assert_eq!(fraction(1, 2).parts(COVERAGE_SCALE), COVERAGE_SCALE / 2);
        // A sliver is one part, never 0.
        assert_eq!(fraction(1, u64::MAX).parts(COVERAGE_SCALE), 1);
        // Halves round up: 1/3 of 2^16 is 21845.33, 2/3 is 43690.67.
        assert_eq!(fraction(1, 3).parts(COVERAGE_SCALE), 21_845);
        assert_eq!(fraction(2, 3).parts(COVERAGE_SCALE), 43_691);
        assert_eq!(fraction(1, 131_072).parts(COVERAGE_SCALE), 1);
        assert_eq!(fraction(3, 131_072).parts(COVERAGE_SCALE), 2);
        // Above one saturates.
        assert_eq!(fraction(3, 2).parts(COVERAGE_SCALE), COVERAGE_SCALE);
        assert_eq!(fraction(1, 4).to_f64(), 0.25);
        assert_eq!(fraction(2, 8), fraction(1, 4));
    }

    #[test]
    fn a_rotation_moves_every_client_alike() {
        // Half a turn: client 0 of 4 starts where client 2 did.
        let rotated = Coordinate::new(0, 4, 1 << 31).unwrap();
        assert_eq!(rotated.offset(), Coordinate::new(2, 4, 0).unwrap().offset());
        // Past the end of the ring, it wraps: client 3 of 4 plus a half is at 1/4.
        let wrapped = Coordinate::new(3, 4, 1 << 31).unwrap();
        assert_eq!(wrapped.offset(), fraction(1, 4));
    }

    /// Pinned outputs: every client of a fleet, on every version, must agree. If these change,
    /// clients running two versions would choose overlapping, unequal subsets.
    #[test]
    fn subsets_are_pinned() {
        let ids: Vec<String> = (0..10).map(|i| format!("10.0.0.{i}:80")).collect();
        let h: Vec<u64> = ids.iter().map(|id| id_hash(id)).collect();
        let aperture: Vec<(&str, u32)> = aperture_subset(1, 3, &h, 4)
            .unwrap()
            .into_iter()
            .map(|(p, parts)| (ids[p].as_str(), parts))
            .collect();
        let rendezvous: Vec<&str> = rendezvous_subset(0x5eed, &h, 3)
            .unwrap()
            .into_iter()
            .map(|p| ids[p].as_str())
            .collect();
        assert_eq!(aperture, GOLDEN_APERTURE);
        assert_eq!(rendezvous, GOLDEN_RENDEZVOUS);
    }

    /// Cross-checked with an independent computation in Python (the `xxhash` package's
    /// `xxh3_64_intdigest` with seed `ID_SEED`, `mix` transcribed, exact `fractions`).
    const GOLDEN_APERTURE: [(&str, u32); 7] = [
        ("10.0.0.3:80", 43_691),
        ("10.0.0.8:80", 65_536),
        ("10.0.0.0:80", 65_536),
        ("10.0.0.6:80", 65_536),
        ("10.0.0.7:80", 65_536),
        ("10.0.0.1:80", 65_536),
        ("10.0.0.4:80", 65_536),
    ];
    const GOLDEN_RENDEZVOUS: [&str; 3] = ["10.0.0.9:80", "10.0.0.5:80", "10.0.0.6:80"];

    /// 10,000 servers (the issue asks that building the subset be cheap; timings belong in a
    /// benchmark, this only exercises the size).
    #[test]
    fn ten_thousand_servers() {
        let h = hashes(10_000, 42);
        // 2,000 clients at aperture 12: ceil(12 x 2000 / 10000) = 3 slices of 1/2000, 15
        // servers' worth of the ring; every client starts on a server boundary (1/2000 is 5
        // servers), so 15 whole servers.
        let subset = aperture_subset(3, 2_000, &h, 12).unwrap();
        assert_eq!(subset.len(), 15);
        assert!(subset.iter().all(|&(_, parts)| parts == COVERAGE_SCALE));
        // 3,000 clients: ceil(3.6) = 4 slices of 1/3000, 13 1/3 servers' worth. Client 1
        // starts a third into server 3 and ends two thirds into server 16: 14 servers, the two
        // edges two thirds covered (43,690.67 parts, rounded up).
        let subset = aperture_subset(1, 3_000, &h, 12).unwrap();
        assert_eq!(subset.len(), 14);
        let parts: Vec<u32> = subset.iter().map(|&(_, parts)| parts).collect();
        assert_eq!(parts[0], 43_691);
        assert_eq!(parts[13], 43_691);
        assert!(parts[1..13].iter().all(|&p| p == COVERAGE_SCALE));
        let top = rendezvous_subset(9, &h, 20).unwrap();
        assert_eq!(top.len(), 20);
    }

    // ---- Properties.

    /// Distinct hashes, 0 to `max` of them.
    fn distinct_hashes(max: usize) -> impl Strategy<Value = Vec<u64>> {
        prop::collection::hash_set(any::<u64>(), 0..=max).prop_map(|s| {
            let mut v: Vec<u64> = s.into_iter().collect();
            v.sort_unstable();
            v
        })
    }

    /// Each client's subset as `(hash, parts)` pairs in ring order.
    fn aperture_by_hash(c: Coordinate, h: &[u64], min_aperture: usize) -> Vec<(u64, u32)> {
        c.subset(h, min_aperture)
            .unwrap()
            .into_iter()
            .map(|(p, parts)| (h[p], parts))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// The fleet property (issue #14): summed over all clients, every server's coverage is
        /// the same: exactly `k` whole servers in fractions, and within 1% in integer parts.
        #[test]
        fn every_server_gets_the_same_total_coverage(
            clients in 1usize..=256,
            servers in 1usize..=160,
            min_aperture in 1usize..=24,
            peer_offset in any::<u32>(),
            seed in any::<u64>(),
        ) {
            let h = hashes(servers, seed);
            let r = ring(servers);
            let slices = aperture_width(servers, clients, min_aperture).unwrap().numerator();
            // Exact: the numerators of each server's coverage, over the common turn.
            let mut exact = vec![0u128; servers];
            let mut parts = vec![0u64; servers];
            let mut turn = 0;
            for client in 0..clients {
                let c = Coordinate::new(client, clients, peer_offset).unwrap();
                let w = c.aperture(servers, min_aperture).unwrap();
                turn = w.turn;
                for index in r.indices(w) {
                    exact[index] += u128::from(weight(r, index, w).numerator());
                }
                // The integer subset: the same indices, mapped to positions.
                let subset = c.subset(&h, min_aperture).unwrap();
                prop_assert_eq!(subset.len(), r.range(w));
                prop_assert!(subset.len() >= servers.min(min_aperture));
                for (position, p) in subset {
                    prop_assert!((1..=COVERAGE_SCALE).contains(&p));
                    parts[position] += u64::from(p);
                }
            }
            for &covered in &exact {
                prop_assert_eq!(covered, u128::from(slices) * u128::from(turn));
            }
            let (min, max) = (*parts.iter().min().unwrap(), *parts.iter().max().unwrap());
            prop_assert!(
                (max - min) as f64 <= 0.01 * max as f64,
                "parts per server range from {} to {}", min, max
            );
        }

        /// Order independence: the same servers in any order give the same subset, in the same
        /// ring order, with the same coverage (deterministic aperture), and the same subset in
        /// the same preference order (rendezvous).
        #[test]
        fn input_order_does_not_matter(
            (h, shuffled) in distinct_hashes(120)
                .prop_flat_map(|h| (Just(h.clone()), Just(h).prop_shuffle())),
            clients in 1usize..=40,
            client_seed in any::<usize>(),
            min_aperture in 1usize..=16,
            salt in any::<u64>(),
            subset_size in 1usize..=30,
        ) {
            let c = Coordinate::new(client_seed % clients, clients, 0).unwrap();
            prop_assert_eq!(
                aperture_by_hash(c, &h, min_aperture),
                aperture_by_hash(c, &shuffled, min_aperture)
            );
            let top = |v: &[u64]| -> Vec<u64> {
                rendezvous_subset(salt, v, subset_size).unwrap().into_iter().map(|p| v[p]).collect()
            };
            prop_assert_eq!(top(&h), top(&shuffled));
        }

        /// A68: every subset has exactly min(subset_size, n) members, distinct, best first;
        /// adding one server or removing one changes at most one member of the subset.
        #[test]
        fn rendezvous_subsets_are_stable(
            h in distinct_hashes(150),
            extra in any::<u64>(),
            remove_seed in any::<usize>(),
            salt in any::<u64>(),
            subset_size in 1usize..=40,
        ) {
            let top = |v: &[u64]| -> Vec<u64> {
                rendezvous_subset(salt, v, subset_size).unwrap().into_iter().map(|p| v[p]).collect()
            };
            let before = top(&h);
            prop_assert_eq!(before.len(), subset_size.min(h.len()));
            let mut seen = before.clone();
            seen.sort_unstable();
            seen.dedup();
            prop_assert_eq!(seen.len(), before.len());
            // Best first: the scores descend.
            let scores: Vec<u64> = before.iter().map(|&x| mix(salt, x)).collect();
            prop_assert!(scores.windows(2).all(|s| s[0] > s[1]));
            // Exactly the top: no server outside scores above the worst inside.
            if let Some(&worst) = scores.last() {
                let outside = h.iter().filter(|x| !before.contains(x));
                for &x in outside {
                    prop_assert!(mix(salt, x) < worst);
                }
            }

            let changed = |a: &[u64], b: &[u64]| a.iter().filter(|x| !b.contains(x)).count();
            if !h.contains(&extra) {
                let mut grown = h.clone();
                grown.push(extra);
                let after = top(&grown);
                prop_assert_eq!(after.len(), subset_size.min(grown.len()));
                prop_assert!(changed(&before, &after) <= 1);
                prop_assert!(changed(&after, &before) <= 1);
            }
            if !h.is_empty() {
                let mut shrunk = h.clone();
                shrunk.remove(remove_seed % h.len());
                let after = top(&shrunk);
                prop_assert_eq!(after.len(), subset_size.min(shrunk.len()));
                prop_assert!(changed(&before, &after) <= 1);
                prop_assert!(changed(&after, &before) <= 1);
            }
        }
    }
}
