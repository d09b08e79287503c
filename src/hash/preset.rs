//! Rings and tables that send every key to the same server as another program does: nginx's
//! `hash $key consistent`, libmemcached's weighted ketama, Envoy's `RING_HASH` and `MAGLEV`,
//! and gRPC's `ring_hash`.
//!
//! The Envoy and gRPC presets hash keys with XXH64 (seed 0) into 64 bits, and
//! `Request::with_hash(h)` takes the program's 64-bit request hash as it is. When a key's
//! backend cannot take the request, the ring presets walk on along the ring (Envoy's retry
//! order) and the Maglev preset tries Envoy's retry hashes; Envoy itself rebuilds its ring or
//! table over the healthy hosts instead, so the agreement is exact while every backend is
//! eligible.
//!
//! Moving traffic from nginx to a Rust proxy, or putting a Rust service beside memcached
//! clients in C, PHP, Python or Java that use ketama, needs both sides to agree on every key
//! during the move, or every cache goes cold at once. A [`PresetRing`] reproduces the other
//! program's points and key hash byte for byte (see [`Preset`] for the exact recipes and the
//! versions they were checked against), and is otherwise an ordinary balancer: health, fallbacks
//! (`pick_n`), bounded loads and passive health work on top of it. The compatible mapping
//! holds whenever every backend is eligible and no load bound is configured; a backend that is
//! down moves its keys to the next distinct server on the ring, which is what nginx's retries
//! do too.
//!
//! Every backend of weight above 0 stays reachable. The programs give some servers no point on
//! the ring: ketama gives none to a server whose share of the weight is below 1 / (40 n), and
//! two ids the program hashes alike (`cache` and `cache:11211` for ketama, which drops the
//! default port; `h` and `h:` for nginx) share one set of points, which only one of them
//! keeps. Such backends are placed after the ring: a key walks the whole ring first (the
//! program's exact mapping, and its retry order), and only when every backend with points is
//! ineligible (down, draining, ejected, or full under bounded loads) goes on to them, starting
//! at a position chosen by the key hash. So the byte-exact mapping holds whenever the backends
//! with points are eligible, and a pick never returns `None` while an eligible backend exists.
//!
//! Backend ids are the server names as the other program is configured with them:
//! `host:port` (nginx: the `server` directive's address as written; libmemcached: host and
//! port, a missing port meaning 11211). Weights are the programs' weights.
//!
//! Keys: `Request::with_key(bytes)` hashes the bytes as the program does (for nginx, the
//! value of the `hash` directive's expression, e.g. `$request_uri` with its leading `/`).
//! `Request::with_hash(h)` takes the low 32 bits of `h` as that hash, already computed.
//!
//! Cost: as [`HashRing`](crate::HashRing) (the same radix-indexed ring) plus the program's key
//! hash: CRC-32 for nginx, MD5 for ketama, which makes a ketama pick several times dearer
//! than an nginx one for short keys (`cargo bench --bench hashing`, groups `lookup/N`:
//! `lbkit/nginx-preset` and `lbkit/ketama-preset`; figures in `benches/README.md`).

use crate::backend::Backend;
use crate::builder::{Builder, LoadBounded, Seedable};
use crate::engine::core::{impl_balancer, Core};
use crate::error::Error;
use crate::hash::compat::{ketama_key_hash, ketama_points, nginx_key_hash, nginx_points};
use crate::hash::envoy::{
    maglev_table, request_hash, ring_hash_points, ENVOY_MAGLEV_MAX_TABLE_SIZE,
    ENVOY_MAGLEV_TABLE_SIZE, ENVOY_MAX_RING_SIZE, GRPC_RING_SIZE_CAP, RING_HASH_MIN_RING_SIZE,
};
use crate::hash::is_prime;
use crate::hash::points::{Ring, RING_POINT_LIMIT};
use crate::hash::walk::{count_owners, Hashed, Node, Placement, Preference};
use crate::request::Request;

/// The most servers of weight above 0 a ketama ring accepts: libmemcached gives each about
/// 160 points, and a ring holds at most [`RING_POINT_LIMIT`] points (52,428 servers).
pub const KETAMA_SERVER_LIMIT: usize = (RING_POINT_LIMIT / 160) as usize;

/// Which program's mapping a [`PresetRing`] reproduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Preset {
    /// nginx `upstream { hash $key consistent; }` (module `ngx_http_upstream_hash`), as in
    /// nginx 1.x; checked against nginx 1.22.1. Each server gets `weight x 160` points; the
    /// name `host:port` is split at its last `:` if digits follow; point j is
    /// `crc32(host, "\0", port, prev)` with `prev` point j-1 as 4 little-endian bytes (0 for
    /// the first); the key hash is `crc32(key)`; a key goes to the first point at or after
    /// its hash, wrapping. Equal points of two servers resolve to the lower id (nginx leaves
    /// that to its unstable sort: the one case that can differ, with a chance of about
    /// points^2 / 2^33 per set).
    Nginx,
    /// libmemcached's weighted ketama (`MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED`), as in
    /// libmemcached 1.0 and 1.1; checked against libmemcached 1.1.4. Server i gets
    /// `4 x floor(w_i / W x 40 x n)` points (n servers of weight above 0, total weight W,
    /// computed in single precision as the C code does); each group of four is the MD5 of
    /// `"host-k"` (port 11211) or `"host:port-k"`, k = 0, 1, ..., read as four little-endian
    /// 32-bit words; the key hash is the first four bytes of MD5(key), little-endian. Servers
    /// of weight 0 get no points.
    Ketama,
    /// Envoy's `RING_HASH` load balancer with its default hash function (`XX_HASH`), as in
    /// Envoy 1.10 and later; checked against the expected values of Envoy's
    /// `ring_hash_lb_test.cc` and an independent model (`scripts/record-envoy.py`). Ring sizes
    /// `minimum_ring_size` (default 1024) and `maximum_ring_size` (default and largest
    /// 8,388,608) set on the builder. Normalised weights `nw = w / W`; with `m` the smallest,
    /// the scale is `min(ceil(m x min) / m, max)`; walking the backends in id order, a running
    /// target `t += scale x nw` against a running count of entries gives each backend its
    /// entries; entry `i` of backend `id` is at `XXH64("{id}_{i}", 0)`; a key goes to the first
    /// entry at or after its hash, wrapping. The id is Envoy's hash key for the host: its
    /// `ip:port` (no scheme), its hostname with `use_hostname_for_hashing`, or its `envoy.lb`
    /// `hash_key` metadata. Envoy distributes the fractional entries in its host set's order,
    /// lbkit in id order: the mapping is Envoy's exactly when every `scale x nw` is a whole
    /// number (equal weights and the default sizes, for instance) or Envoy's hosts are in id
    /// order. Equal entries of two ids resolve to the lower id (Envoy's sort leaves it open).
    EnvoyRingHash,
    /// gRPC's `ring_hash` (gRFC A42 and A76; grpc-go `balancer/ringhash`), as in gRPC 1.57
    /// and later: Envoy's ring (above) over the endpoints sorted by hash key, with gRPC's ring
    /// sizes: `minimum_ring_size` default 1024, `maximum_ring_size` default 4096, both then
    /// clamped to 4096 (`GRPC_RING_HASH_CAP`'s default). The id is the endpoint's hash key: its
    /// `hash_key` attribute, or its first address. The mapping is gRPC's exactly.
    GrpcRingHash,
    /// Envoy's `MAGLEV` load balancer, as in Envoy 1.27 and later (hosts sorted by hash key);
    /// checked against the expected tables of Envoy's `maglev_lb_test.cc` and an independent
    /// model. `table_size` (a prime, default 65537, at most 5,000,011) set on the builder.
    /// Backends in id order; backend `id` has `offset = XXH64(id, 0) mod M` and
    /// `skip = XXH64(id, 1) mod (M - 1) + 1`; in rounds 1, 2, ... each takes its next free
    /// slot unless `round x nw < target`, and each slot taken adds the largest `nw` to its
    /// target; the fill stops when the table is full, mid-round. A key goes to slot
    /// `hash mod M`. When that backend cannot take the request, the key tries
    /// `hash ^ (2^64 - a)` for `a = 1, 2, ..., 7` (Envoy's retry sequence), then every
    /// backend in id order from `hash mod n` on.
    EnvoyMaglev,
}

impl Preset {
    /// Whether the preset is an Envoy or gRPC `ring_hash` ring.
    fn is_ring_hash(self) -> bool {
        matches!(self, Preset::EnvoyRingHash | Preset::GrpcRingHash)
    }

    /// Whether keys hash with XXH64 into a 64-bit space (Envoy and gRPC), not into 32 bits.
    fn is_xds(self) -> bool {
        matches!(
            self,
            Preset::EnvoyRingHash | Preset::GrpcRingHash | Preset::EnvoyMaglev
        )
    }
}

/// A consistent-hashing ring with another program's exact mapping; see [`Preset`].
///
/// ```
/// use lbkit::{Backend, Balancer, PresetRing, Request};
/// let nginx = PresetRing::nginx([
///     Backend::new("127.0.0.1:18100", ()),
///     Backend::new("127.0.0.1:18101", ()),
///     Backend::new("127.0.0.1:18102", ()),
/// ])?;
/// // The server nginx 1.22.1 chose for `GET /user:00000000` (tests/data/compat/nginx-three.tsv).
/// assert_eq!(nginx.pick(&Request::with_key("/user:00000000")).unwrap().id(), "127.0.0.1:18100");
/// # Ok::<(), lbkit::Error>(())
/// ```
pub struct PresetRing<T> {
    core: Core<T, Hashed<PresetPlacement>>,
}

impl<T: Send + Sync + 'static> PresetRing<T> {
    /// nginx's `hash $key consistent` mapping over `host:port` backends.
    ///
    /// # Errors
    /// [`Error::EmptyId`], [`Error::DuplicateId`], [`Error::TooManyBackends`], and
    /// [`Error::InvalidConfig`] (`"weight"`) if the weights make more than
    /// [`RING_POINT_LIMIT`] points or for a backend's `max_in_flight` of 0. Updates fail the
    /// same way.
    pub fn nginx(backends: impl IntoIterator<Item = Backend<T>>) -> Result<Self, Error> {
        PresetRing::builder(Preset::Nginx).build(backends)
    }

    /// libmemcached's weighted ketama mapping over `host:port` backends.
    ///
    /// # Errors
    /// [`Error::EmptyId`], [`Error::DuplicateId`], and [`Error::TooManyBackends`] beyond
    /// [`MAX_BACKENDS`](crate::MAX_BACKENDS) backends or beyond [`KETAMA_SERVER_LIMIT`]
    /// backends of weight above 0 (their points would pass [`RING_POINT_LIMIT`]), and
    /// [`Error::InvalidConfig`] for a backend's `max_in_flight` of 0. Updates fail the same
    /// way.
    pub fn ketama(backends: impl IntoIterator<Item = Backend<T>>) -> Result<Self, Error> {
        PresetRing::builder(Preset::Ketama).build(backends)
    }

    /// Envoy's `RING_HASH` mapping (default ring sizes) over backends named by their Envoy
    /// hash key (`ip:port`); see [`Preset::EnvoyRingHash`].
    ///
    /// # Errors
    /// [`Error::EmptyId`], [`Error::DuplicateId`], [`Error::TooManyBackends`], and
    /// [`Error::InvalidConfig`] for a backend's `max_in_flight` of 0. Updates fail the same
    /// way.
    pub fn envoy_ring_hash(backends: impl IntoIterator<Item = Backend<T>>) -> Result<Self, Error> {
        PresetRing::builder(Preset::EnvoyRingHash).build(backends)
    }

    /// gRPC's `ring_hash` mapping (default ring sizes) over endpoints named by their hash key
    /// (their first address); see [`Preset::GrpcRingHash`].
    ///
    /// # Errors
    /// As [`envoy_ring_hash`](PresetRing::envoy_ring_hash).
    pub fn grpc_ring_hash(backends: impl IntoIterator<Item = Backend<T>>) -> Result<Self, Error> {
        PresetRing::builder(Preset::GrpcRingHash).build(backends)
    }

    /// Envoy's `MAGLEV` mapping (table size 65537) over backends named by their Envoy hash
    /// key (`ip:port`); see [`Preset::EnvoyMaglev`].
    ///
    /// # Errors
    /// As [`envoy_ring_hash`](PresetRing::envoy_ring_hash).
    pub fn envoy_maglev(backends: impl IntoIterator<Item = Backend<T>>) -> Result<Self, Error> {
        PresetRing::builder(Preset::EnvoyMaglev).build(backends)
    }
}

impl PresetRing<()> {
    /// A builder for `preset`, to add a load factor, a seed or passive health (an associated
    /// function of `PresetRing<()>` only so that it needs no type annotation; `build` makes
    /// any `PresetRing<T>`). The preset is not a knob with a default: it is the mapping.
    ///
    /// ```
    /// use lbkit::{Backend, Preset, PresetRing};
    /// let lb = PresetRing::builder(Preset::Ketama)
    ///     .load_factor(1.25)
    ///     .seed(7)
    ///     .build([Backend::new("10.0.0.1:11211", ()), Backend::new("10.0.0.2:11211", ())])?;
    /// # let _ = lb;
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    pub fn builder(preset: Preset) -> Builder<PresetRingConfig> {
        Builder::new(PresetRingConfig {
            preset,
            minimum_ring_size: None,
            maximum_ring_size: None,
            table_size: None,
        })
    }
}

impl_balancer!(PresetRing);

/// The configuration of [`PresetRing`], the type parameter of [`PresetRing::builder`]'s
/// [`Builder`]: the [`Preset`] it reproduces, and the sizes of the Envoy and gRPC presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PresetRingConfig {
    preset: Preset,
    minimum_ring_size: Option<u64>,
    maximum_ring_size: Option<u64>,
    table_size: Option<u64>,
}

impl Seedable for PresetRingConfig {}
impl LoadBounded for PresetRingConfig {}

impl Builder<PresetRingConfig> {
    /// The `minimum_ring_size` of [`Preset::EnvoyRingHash`] and [`Preset::GrpcRingHash`]
    /// (default 1024; at least 1, at most the maximum).
    pub fn minimum_ring_size(mut self, entries: u64) -> Self {
        self.config.minimum_ring_size = Some(entries);
        self
    }

    /// The `maximum_ring_size` of [`Preset::EnvoyRingHash`] (default and largest 8,388,608)
    /// and [`Preset::GrpcRingHash`] (default 4096, largest 8,388,608, then clamped to 4096
    /// as gRPC does).
    pub fn maximum_ring_size(mut self, entries: u64) -> Self {
        self.config.maximum_ring_size = Some(entries);
        self
    }

    /// The `table_size` of [`Preset::EnvoyMaglev`]: a prime, default 65537, at most
    /// 5,000,011.
    pub fn table_size(mut self, slots: u64) -> Self {
        self.config.table_size = Some(slots);
        self
    }

    /// Builds the ring over `backends`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `load_factor` (below 1, NaN, infinite) or a health
    /// rule; for `minimum_ring_size` / `maximum_ring_size` set on a preset other than the
    /// `ring_hash` ones, a minimum of 0, a maximum above 8,388,608 or below the minimum; for
    /// `table_size` set on a preset other than [`Preset::EnvoyMaglev`], not a prime, or above
    /// 5,000,011; and those of [`PresetRing::nginx`].
    pub fn build<T: Send + Sync + 'static>(
        self,
        backends: impl IntoIterator<Item = Backend<T>>,
    ) -> Result<PresetRing<T>, Error> {
        let placement = PresetPlacement::new(&self.config)?;
        let policy = self.hashed(placement)?;
        Ok(PresetRing {
            core: self.core(policy, backends)?,
        })
    }
}

pub(crate) struct PresetPlacement {
    preset: Preset,
    /// Ring sizes of the `ring_hash` presets, resolved and checked.
    ring_size: (u64, u64),
    /// Table size of the Maglev preset, checked.
    table_size: u64,
}

impl PresetPlacement {
    /// The placement `config` describes, its sizes checked and resolved as the program does.
    fn new(config: &PresetRingConfig) -> Result<Self, Error> {
        let preset = config.preset;
        if !preset.is_ring_hash() {
            for (set, name) in [
                (config.minimum_ring_size, "minimum_ring_size"),
                (config.maximum_ring_size, "maximum_ring_size"),
            ] {
                if set.is_some() {
                    return Err(Error::config(
                        name,
                        format!("applies to the ring_hash presets only, not {preset:?}"),
                    ));
                }
            }
        }
        if preset != Preset::EnvoyMaglev && config.table_size.is_some() {
            return Err(Error::config(
                "table_size",
                format!("applies to Preset::EnvoyMaglev only, not {preset:?}"),
            ));
        }
        let default_max = if preset == Preset::GrpcRingHash {
            GRPC_RING_SIZE_CAP
        } else {
            ENVOY_MAX_RING_SIZE
        };
        let min = config.minimum_ring_size.unwrap_or(RING_HASH_MIN_RING_SIZE);
        let max = config.maximum_ring_size.unwrap_or(default_max);
        if min == 0 {
            return Err(Error::config("minimum_ring_size", "must be at least 1"));
        }
        if max > ENVOY_MAX_RING_SIZE {
            return Err(Error::config(
                "maximum_ring_size",
                format!("{max} is above the limit of {ENVOY_MAX_RING_SIZE}"),
            ));
        }
        if min > max {
            return Err(Error::config(
                "minimum_ring_size",
                format!("{min} is above the maximum_ring_size {max}"),
            ));
        }
        // gRPC clamps both sizes to its cap once they are checked.
        let ring_size = if preset == Preset::GrpcRingHash {
            (min.min(GRPC_RING_SIZE_CAP), max.min(GRPC_RING_SIZE_CAP))
        } else {
            (min, max)
        };
        let table_size = config.table_size.unwrap_or(ENVOY_MAGLEV_TABLE_SIZE);
        if table_size > ENVOY_MAGLEV_MAX_TABLE_SIZE {
            return Err(Error::config(
                "table_size",
                format!("{table_size} is above the limit of {ENVOY_MAGLEV_MAX_TABLE_SIZE}"),
            ));
        }
        // At most 5,000,011: a u32.
        if !is_prime(table_size as u32) {
            return Err(Error::config(
                "table_size",
                format!("{table_size} is not a prime"),
            ));
        }
        Ok(PresetPlacement {
            preset,
            ring_size,
            table_size,
        })
    }
}

/// The program's ring or table, and the backends it gave no place, walked after it.
pub(crate) enum PresetTable {
    /// A ring of points (nginx, ketama, `ring_hash`).
    Ring {
        ring: Ring,
        /// Members of weight above 0 without a point on the ring, in id order.
        unplaced: Box<[u32]>,
    },
    /// Envoy's Maglev table: slot -> member index.
    Slots {
        slots: Box<[u32]>,
        /// The number of members (every weight), for the last resort walk.
        members: u32,
    },
}

/// How many of Envoy's Maglev retry hashes a key tries before it walks every member.
const MAGLEV_TRIES: u64 = 8;

impl Preference for PresetTable {
    #[inline]
    fn first(&self, key: u64, mut accept: impl FnMut(usize) -> bool) -> Option<usize> {
        match self {
            PresetTable::Ring { ring, unplaced } => {
                if let Some(found) = ring.first(key, &mut accept) {
                    return Some(found);
                }
                let n = unplaced.len();
                if n == 0 {
                    return None;
                }
                // The key's 32-bit hash (in the top half) picks where to start among them.
                let start = (key >> 32) as usize % n;
                (0..n)
                    .map(|k| unplaced[(start + k) % n] as usize)
                    .find(|&i| accept(i))
            }
            PresetTable::Slots { slots, members } => {
                if slots.is_empty() {
                    return None;
                }
                let size = slots.len() as u64;
                // Envoy's retry sequence: attempt a hashes `key ^ (2^64 - a)`.
                let tried = (0..MAGLEV_TRIES)
                    .map(|a| slots[((key ^ 0u64.wrapping_sub(a)) % size) as usize] as usize)
                    .find(|&i| accept(i));
                if tried.is_some() {
                    return tried;
                }
                let n = u64::from(*members);
                let start = key % n;
                (0..n)
                    .map(|k| ((start + k) % n) as usize)
                    .find(|&i| accept(i))
            }
        }
    }

    /// The ring points (nginx, ketama, `ring_hash`) or Maglev slots each member owns, as
    /// the program built them: a backend the program gave no point (walked after the ring)
    /// owns 0, and of two ids nginx or ketama hash alike only the one that kept the points
    /// counts them.
    fn shares(&self, members: usize) -> Option<Vec<u64>> {
        match self {
            PresetTable::Ring { ring, .. } => ring.shares(members),
            PresetTable::Slots { slots, .. } => Some(count_owners(slots.iter().copied(), members)),
        }
    }
}

impl Placement for PresetPlacement {
    type Table = PresetTable;

    fn build(&self, nodes: &[Node]) -> Result<PresetTable, Error> {
        let servers: Vec<(&str, u32)> = nodes.iter().map(|m| (&*m.id, m.weight)).collect();
        let points: Vec<(u64, u32)> = match self.preset {
            Preset::Nginx => {
                let total: u128 = servers.iter().map(|s| u128::from(s.1) * 160).sum();
                if total > u128::from(RING_POINT_LIMIT) {
                    return Err(Error::config(
                        "weight",
                        format!(
                            "the weights make {total} nginx points, more than the limit of \
                             {RING_POINT_LIMIT}"
                        ),
                    ));
                }
                widen(nginx_points(&servers))
            }
            // About 160 points per server of weight above 0, whatever the weights: the
            // set's size is the budget.
            Preset::Ketama => {
                let live = servers.iter().filter(|s| s.1 > 0).count();
                if live as u64 * 160 > RING_POINT_LIMIT {
                    return Err(Error::TooManyBackends {
                        count: servers.len(),
                        max: KETAMA_SERVER_LIMIT,
                    });
                }
                widen(ketama_points(&servers))
            }
            // At most `maximum_ring_size` (8M) entries, plus one for rounding.
            Preset::EnvoyRingHash | Preset::GrpcRingHash => {
                let (min, max) = self.ring_size;
                ring_hash_points(&servers, min, max)
            }
            Preset::EnvoyMaglev => {
                return Ok(PresetTable::Slots {
                    slots: maglev_table(&servers, self.table_size).into(),
                    members: nodes.len() as u32,
                });
            }
        };
        // Backends of weight above 0 that the program gave no point (or whose points another
        // id took): reached after the ring, so that none is ever unreachable.
        let ring = Ring::from_points(points);
        let mut placed = vec![false; nodes.len()];
        for owner in ring.owners() {
            placed[owner as usize] = true;
        }
        let unplaced = (0..nodes.len())
            .filter(|&i| !placed[i] && nodes[i].weight > 0)
            .map(|i| i as u32)
            .collect();
        Ok(PresetTable::Ring { ring, unplaced })
    }

    #[inline]
    fn key_hash(&self, request: &Request<'_>) -> Option<u64> {
        if self.preset.is_xds() {
            return match request.key() {
                Some(bytes) => Some(request_hash(bytes)),
                None => request.key_hash(),
            };
        }
        let hash = match request.key() {
            Some(bytes) => match self.preset {
                Preset::Nginx => nginx_key_hash(bytes),
                _ => ketama_key_hash(bytes),
            },
            None => request.key_hash()? as u32,
        };
        Some(u64::from(hash) << 32)
    }
}

/// 32-bit points in the top half of the ring's 64-bit space, which keeps their order.
fn widen(points: Vec<(u32, u32)>) -> Vec<(u64, u32)> {
    points
        .into_iter()
        .map(|(p, member)| (u64::from(p) << 32, member))
        .collect()
}
