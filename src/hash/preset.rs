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
//! Backend ids are the server names as the other program is configured with them:
//! `host:port` (nginx: the `server` directive's address as written; libmemcached: host and
//! port, a missing port meaning 11211). Weights are the programs' weights.
//!
//! Keys: `Request::with_key(bytes)` hashes the bytes as the program does (for nginx, the
//! value of the `hash` directive's expression, e.g. `$request_uri` with its leading `/`).
//! `Request::with_hash(h)` takes the low 32 bits of `h` as that hash, already computed.
//!
//! Cost: as [`HashRing`](crate::HashRing) (the same radix-indexed ring) plus the program's key
//! hash: CRC-32 for nginx (a few ns), MD5 for ketama (about 0.3 µs for a short key).

use crate::hash::compat::{ketama_key_hash, ketama_points, nginx_key_hash, nginx_points};
use crate::hash::ring::{Ring, RING_POINT_LIMIT};
use crate::hash::walk::{hashing_options, Hashed, Member, Options, Placement};
use crate::membership::{impl_balancer, Core};
use crate::{Backend, Error, Request};

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
    /// [`RING_POINT_LIMIT`] points. Updates fail the same way.
    pub fn nginx(backends: impl IntoIterator<Item = Backend<T>>) -> Result<Self, Error> {
        PresetRing::builder(Preset::Nginx).build(backends)
    }

    /// libmemcached's weighted ketama mapping over `host:port` backends.
    ///
    /// # Errors
    /// As [`PresetRing::nginx`].
    pub fn ketama(backends: impl IntoIterator<Item = Backend<T>>) -> Result<Self, Error> {
        PresetRing::builder(Preset::Ketama).build(backends)
    }
}

impl PresetRing<()> {
    /// A builder to add a load factor or a seed (an associated function of `PresetRing<()>`
    /// only so that it needs no type annotation; `build` makes any `PresetRing<T>`).
    pub fn builder(preset: Preset) -> PresetRingBuilder {
        PresetRingBuilder {
            preset,
            options: Options::default(),
        }
    }
}

impl_balancer!(PresetRing);

/// Configures a [`PresetRing`].
#[derive(Debug, Clone)]
#[must_use]
pub struct PresetRingBuilder {
    preset: Preset,
    options: Options,
}

hashing_options!(PresetRingBuilder);

impl PresetRingBuilder {
    /// Builds the ring over `backends`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `load_factor` (below 1, NaN, infinite), and those of
    /// [`PresetRing::nginx`].
    pub fn build<T: Send + Sync + 'static>(
        self,
        backends: impl IntoIterator<Item = Backend<T>>,
    ) -> Result<PresetRing<T>, Error> {
        let policy = self.options.policy(PresetPlacement {
            preset: self.preset,
        })?;
        Ok(PresetRing {
            core: Core::new(policy, backends)?,
        })
    }
}

pub(crate) struct PresetPlacement {
    preset: Preset,
}

impl Placement for PresetPlacement {
    type Table = Ring;

    fn build(&self, members: &[Member]) -> Result<Ring, Error> {
        let servers: Vec<(&str, u32)> = members.iter().map(|m| (&*m.id, m.weight)).collect();
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
            // At most 160 x n points in all: bounded by the set's size.
            Preset::Ketama => ketama_points(&servers),
        };
        // 32-bit points in the top half of the ring's 64-bit space keep their order.
        Ok(Ring::from_points(
            points
                .into_iter()
                .map(|(p, member)| (u64::from(p) << 32, member))
                .collect(),
        ))
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
