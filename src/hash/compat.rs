//! Point sets that reproduce other programs' consistent-hashing rings byte for byte.
//!
//! * [`nginx_points`]: nginx's `hash $key consistent` (module `ngx_http_upstream_hash`), as
//!   in nginx 1.x up to at least 1.27: for each server, `weight x 160` points; the server name
//!   `host:port` is split at its last `:` when what follows is all digits; point j is
//!   `crc32(host, "\0", port, prev)` where `prev` is point j-1 as 4 little-endian bytes (0 for
//!   the first); the key hash is `crc32(key)`. Equal points from different servers keep the
//!   one of the lower member index (nginx leaves that to its unstable sort: such a collision
//!   is the one case where the mapping can differ, about once per 2^32 / points^2).
//! * [`ketama_points`]: libmemcached's weighted ketama (`MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED`),
//!   as in libmemcached 1.0 and 1.1: server i of weight w_i among n servers of total weight W
//!   gets `4 x floor(w_i / W x 40 x n)` points, computed in single precision exactly as the C
//!   code does; each group of four points is the MD5 digest of `"host-k"` (port 11211) or
//!   `"host:port-k"` (any other port), k = 0, 1, ..., read as four little-endian 32-bit words;
//!   the key hash is the first four bytes of MD5(key), little-endian.
//!
//! Both look a key up as the first point at or after its hash, wrapping to the first point;
//! [`PresetRing`](crate::PresetRing) does that on the crate's radix-indexed ring. The tests
//! here replay the recorded vectors against the bare point sets with a plain binary search,
//! independently of the ring.

use crate::hash::crc32::{crc32, Crc32};
use crate::hash::md5::md5;

/// One point: (position on the 32-bit ring, member index).
pub(crate) type Point = (u32, u32);

/// One point of a 64-bit ring: (position, member index).
pub(crate) type Point64 = (u64, u32);

/// nginx's `hash ... consistent` key hash: CRC-32 (IEEE) of the key bytes.
pub(crate) fn nginx_key_hash(key: &[u8]) -> u32 {
    crc32(key)
}

/// libmemcached ketama's key hash: the first four bytes of MD5(key), little-endian.
pub(crate) fn ketama_key_hash(key: &[u8]) -> u32 {
    let d = md5(key);
    u32::from_le_bytes([d[0], d[1], d[2], d[3]])
}

/// nginx's split of a server name: host, and the port if the name ends in `:digits`.
fn nginx_host_port(name: &str) -> (&str, &str) {
    match name.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => (host, port),
        _ => (name, ""),
    }
}

/// The sorted points of nginx's ring over `(name, weight)` servers, member index = position
/// in `servers`.
pub(crate) fn nginx_points(servers: &[(&str, u32)]) -> Vec<Point> {
    let mut points = Vec::new();
    for (index, &(name, weight)) in servers.iter().enumerate() {
        let (host, port) = nginx_host_port(name);
        let base = Crc32::new()
            .update(host.as_bytes())
            .update(b"\0")
            .update(port.as_bytes());
        let mut prev = 0u32;
        for _ in 0..u64::from(weight) * 160 {
            prev = base.update(&prev.to_le_bytes()).finish();
            points.push((prev, index as u32));
        }
    }
    sorted_unique(points)
}

/// libmemcached's default port: names on it are hashed without `:port`.
pub const MEMCACHED_DEFAULT_PORT: u16 = 11211;

/// The sorted points of libmemcached's weighted ketama continuum over `(host:port, weight)`
/// servers (a name without a port means port 11211), member index = position in `servers`.
/// Servers of weight 0 get no points and do not count as live.
pub(crate) fn ketama_points(servers: &[(&str, u32)]) -> Vec<Point> {
    let live = servers.iter().filter(|s| s.1 > 0).count();
    let total: u64 = servers.iter().map(|s| u64::from(s.1)).sum();
    let mut points = Vec::new();
    for (index, &(name, weight)) in servers.iter().enumerate() {
        if weight == 0 {
            continue;
        }
        // libmemcached 1.x, update_continuum():
        //   float pct = (float)weight / (float)total_weight;
        //   pointer_per_server = (uint32_t)((floor((float)(pct * 160 / 4 * (float)live
        //                        + 0.0000000001))) * 4);
        // Every step below is one IEEE operation in the same precision as the C code.
        let pct = weight as f32 / total as f32;
        let x = pct * 160.0f32 / 4.0f32 * live as f32;
        let x = (f64::from(x) + 0.000_000_000_1) as f32;
        let groups = f64::from(x).floor() as u64;
        let (host, port) = match name.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().unwrap_or(MEMCACHED_DEFAULT_PORT)),
            None => (name, MEMCACHED_DEFAULT_PORT),
        };
        for k in 0..groups {
            let label = if port == MEMCACHED_DEFAULT_PORT {
                format!("{host}-{k}")
            } else {
                format!("{host}:{port}-{k}")
            };
            let d = md5(label.as_bytes());
            for word in d.chunks_exact(4) {
                let value = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
                points.push((value, index as u32));
            }
        }
    }
    sorted_unique(points)
}

/// Sorts by position, then member; keeps the first point of each position.
fn sorted_unique(mut points: Vec<Point>) -> Vec<Point> {
    points.sort_unstable();
    points.dedup_by_key(|p| p.0);
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index (into `points`) of the first point at or after `hash`, wrapping to 0.
    fn first_at_or_after(points: &[Point], hash: u32) -> usize {
        let i = points.partition_point(|p| p.0 < hash);
        if i == points.len() {
            0
        } else {
            i
        }
    }

    /// The recorded vectors (tests/data/compat, from the real programs) replayed against the
    /// bare point sets, walking past dead servers as nginx does.
    fn replay(
        file: &str,
        points: fn(&[(&str, u32)]) -> Vec<Point>,
        key_hash: fn(&[u8]) -> u32,
    ) -> usize {
        let path = format!("{}/tests/data/compat/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        let servers_line = text
            .lines()
            .nth(1)
            .unwrap()
            .strip_prefix("# servers: ")
            .unwrap();
        let specs: Vec<(String, u32, bool)> = servers_line
            .split(' ')
            .map(|s| {
                let alive = !s.ends_with("(dead)");
                let s = s.trim_end_matches("(dead)");
                let (name, w) = s.rsplit_once('=').unwrap();
                (name.to_owned(), w.parse().unwrap(), alive)
            })
            .collect();
        let servers: Vec<(&str, u32)> = specs.iter().map(|(n, w, _)| (n.as_str(), *w)).collect();
        let points = points(&servers);
        let mut checked = 0;
        for line in text.lines().skip(2) {
            let (key, want) = line.split_once('\t').unwrap();
            let key = if file.starts_with("nginx") {
                format!("/{key}")
            } else {
                key.to_owned()
            };
            let mut i = first_at_or_after(&points, key_hash(key.as_bytes()));
            while !specs[points[i].1 as usize].2 {
                i = (i + 1) % points.len();
            }
            assert_eq!(servers[points[i].1 as usize].0, want, "{file}: key {key:?}");
            checked += 1;
        }
        checked
    }

    #[test]
    fn nginx_vectors_match() {
        let mut n = 0;
        for set in [
            "one",
            "three",
            "ten-weighted",
            "fifty-weighted",
            "ten-two-dead",
        ] {
            n += replay(&format!("nginx-{set}.tsv"), nginx_points, nginx_key_hash);
        }
        assert_eq!(n, 25_000);
    }

    #[test]
    fn ketama_vectors_match() {
        let mut n = 0;
        for set in ["one", "three", "ten-weighted", "fifty-weighted"] {
            n += replay(&format!("ketama-{set}.tsv"), ketama_points, ketama_key_hash);
        }
        assert_eq!(n, 20_000);
    }
}
