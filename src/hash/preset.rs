//! Rings that send every key to the same server as another program does: nginx's
//! `hash $key consistent`, and libmemcached's weighted ketama.
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
use crate::hash::points::{Ring, RING_POINT_LIMIT};
use crate::hash::walk::{Hashed, Node, Placement, Preference};
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
        Builder::new(PresetRingConfig { preset })
    }
}

impl_balancer!(PresetRing);

/// The configuration of [`PresetRing`], the type parameter of [`PresetRing::builder`]'s
/// [`Builder`]: the [`Preset`] it reproduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PresetRingConfig {
    preset: Preset,
}

impl Seedable for PresetRingConfig {}
impl LoadBounded for PresetRingConfig {}

impl Builder<PresetRingConfig> {
    /// Builds the ring over `backends`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `load_factor` (below 1, NaN, infinite) or a health rule,
    /// and those of [`PresetRing::nginx`].
    pub fn build<T: Send + Sync + 'static>(
        self,
        backends: impl IntoIterator<Item = Backend<T>>,
    ) -> Result<PresetRing<T>, Error> {
        let policy = self.hashed(PresetPlacement {
            preset: self.config.preset,
        })?;
        Ok(PresetRing {
            core: Core::new(policy, backends, self.health)?,
        })
    }
}

pub(crate) struct PresetPlacement {
    preset: Preset,
}

/// The program's ring, and the backends it gave no point, walked after it.
pub(crate) struct PresetTable {
    ring: Ring,
    /// Members of weight above 0 without a point on the ring, in id order.
    unplaced: Box<[u32]>,
}

impl Preference for PresetTable {
    #[inline]
    fn first(&self, key: u64, mut accept: impl FnMut(usize) -> bool) -> Option<usize> {
        if let Some(found) = self.ring.first(key, &mut accept) {
            return Some(found);
        }
        let n = self.unplaced.len();
        if n == 0 {
            return None;
        }
        // The key's 32-bit hash (in the top half) picks where to start among them.
        let start = (key >> 32) as usize % n;
        (0..n)
            .map(|k| self.unplaced[(start + k) % n] as usize)
            .find(|&i| accept(i))
    }
}

impl Placement for PresetPlacement {
    type Table = PresetTable;

    fn build(&self, nodes: &[Node]) -> Result<PresetTable, Error> {
        let servers: Vec<(&str, u32)> = nodes.iter().map(|m| (&*m.id, m.weight)).collect();
        let points = match self.preset {
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
                nginx_points(&servers)
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
                ketama_points(&servers)
            }
        };
        // Backends of weight above 0 that the program gave no point (or whose points another
        // id took): reached after the ring, so that none is ever unreachable.
        let mut placed = vec![false; nodes.len()];
        for &(_, member) in &points {
            placed[member as usize] = true;
        }
        let unplaced = (0..nodes.len())
            .filter(|&i| !placed[i] && nodes[i].weight > 0)
            .map(|i| i as u32)
            .collect();
        // 32-bit points in the top half of the ring's 64-bit space keep their order.
        let ring = Ring::from_points(
            points
                .into_iter()
                .map(|(p, member)| (u64::from(p) << 32, member))
                .collect(),
        );
        Ok(PresetTable { ring, unplaced })
    }

    #[inline]
    fn key_hash(&self, request: &Request<'_>) -> Option<u64> {
        let hash = match request.key() {
            Some(bytes) => match self.preset {
                Preset::Nginx => nginx_key_hash(bytes),
                Preset::Ketama => ketama_key_hash(bytes),
            },
            None => request.key_hash()? as u32,
        };
        Some(u64::from(hash) << 32)
    }
}
