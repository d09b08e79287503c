//! The rings and tables of Envoy and proxyless gRPC, entry for entry.
//!
//! * [`ring_hash_points`]: Envoy's `RING_HASH` (hash function `XX_HASH`, the default) and
//!   gRPC's `ring_hash` (gRFC A42, A76; grpc-go `balancer/ringhash/ring.go`). The hosts of
//!   weight above 0 get normalised weights `nw = w / W` (in double precision); with `m` the
//!   smallest of them, the ring's scale is `min(ceil(m x min_ring_size) / m, max_ring_size)`;
//!   walking the hosts in order, a running target `t += scale x nw` and a running count
//!   decide each host's entries (entries are added while the count is below the target), so
//!   the fractional parts carry from one host to the next. Entry `i` of host `key` (counting
//!   from 0 for each host) is at `XXH64("{key}_{i}", seed 0)`. A hash goes to the first entry
//!   at or after it, wrapping.
//! * [`maglev_table`]: Envoy's weighted Maglev (`maglev_lb.cc`). Hosts sorted by key; host
//!   `key` has `offset = XXH64(key, 0) mod M` and `skip = XXH64(key, 1) mod (M - 1) + 1`; in
//!   rounds 1, 2, ..., a host takes its next free slot of its permutation unless
//!   `round x nw < target`, and each slot it takes adds the largest `nw` to its target; the
//!   fill stops as soon as the table is full, mid-round. A hash `h` goes to slot `h mod M`.
//!
//! Both take the hosts in the order given: lbkit gives them in id order (byte-wise), which
//! is gRPC's order for the ring and Envoy's for Maglev. Envoy's ring takes its host set's
//! order instead, which matters only when some host's `scale x nw` is fractional (then which
//! hosts get the extra entries depends on the order).

use xxhash_rust::xxh64::xxh64;

use crate::hash::compat::Point64;

/// Envoy's default `minimum_ring_size`, also gRPC's.
pub const RING_HASH_MIN_RING_SIZE: u64 = 1024;

/// Envoy's default and largest `maximum_ring_size`: 8M entries.
pub const ENVOY_MAX_RING_SIZE: u64 = 1024 * 1024 * 8;

/// gRPC's default `max_ring_size`, and the cap it clamps both ring sizes to
/// (`GRPC_RING_HASH_CAP`, gRFC A42).
pub const GRPC_RING_SIZE_CAP: u64 = 4096;

/// Envoy's default Maglev `table_size`.
pub const ENVOY_MAGLEV_TABLE_SIZE: u64 = 65_537;

/// The largest Maglev `table_size` Envoy accepts.
pub const ENVOY_MAGLEV_MAX_TABLE_SIZE: u64 = 5_000_011;

/// The request hash Envoy and gRPC compute for one header (or cookie) value:
/// `XXH64(value, seed 0)`.
pub(crate) fn request_hash(value: &[u8]) -> u64 {
    xxh64(value, 0)
}

/// Normalised weights `w / W` of `(key, weight)` hosts, in double precision as Envoy and
/// grpc-go compute them, hosts of weight 0 left out; with the indices of the hosts kept.
fn normalised(hosts: &[(&str, u32)]) -> Vec<(u32, f64)> {
    let total: u64 = hosts.iter().map(|h| u64::from(h.1)).sum();
    hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| h.1 > 0)
        .map(|(i, h)| (i as u32, f64::from(h.1) * 1.0 / total as f64))
        .collect()
}

/// The entries of the `ring_hash` ring over `(key, weight)` hosts (index = position in
/// `hosts`), unsorted, for ring sizes `min <= max`.
pub(crate) fn ring_hash_points(hosts: &[(&str, u32)], min: u64, max: u64) -> Vec<Point64> {
    let weights = normalised(hosts);
    if weights.is_empty() {
        return Vec::new();
    }
    let smallest = weights.iter().fold(1.0f64, |m, w| m.min(w.1));
    let scale = ((smallest * min as f64).ceil() / smallest).min(max as f64);
    let mut points = Vec::with_capacity(scale.ceil() as usize + 1);
    let mut entry = String::new();
    // Two rounded operations each, as in the C++ and Go code (no fused multiply-add).
    let (mut current, mut target) = (0.0f64, 0.0f64);
    for (index, nw) in weights {
        let key = hosts[index as usize].0;
        target += scale * nw;
        let mut i = 0u64;
        while current < target {
            entry.clear();
            entry.push_str(key);
            entry.push('_');
            push_decimal(&mut entry, i);
            points.push((xxh64(entry.as_bytes(), 0), index));
            i += 1;
            current += 1.0;
        }
    }
    points
}

/// Appends `n` in decimal, without allocating.
fn push_decimal(s: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        s.push(char::from(d));
    }
}

/// Envoy's weighted Maglev table of size `m` (prime) over `(key, weight)` hosts in key order
/// (index = position in `hosts`): slot -> host index. Empty if no host has weight above 0.
pub(crate) fn maglev_table(hosts: &[(&str, u32)], m: u64) -> Vec<u32> {
    struct Turn {
        index: u32,
        nw: f64,
        target: f64,
        next: u64,
        skip: u64,
    }
    let weights = normalised(hosts);
    if weights.is_empty() {
        return Vec::new();
    }
    let largest = weights.iter().fold(0.0f64, |m, w| m.max(w.1));
    let mut turns: Vec<Turn> = weights
        .into_iter()
        .map(|(index, nw)| {
            let key = hosts[index as usize].0.as_bytes();
            Turn {
                index,
                nw,
                target: 0.0,
                next: xxh64(key, 0) % m,
                skip: xxh64(key, 1) % (m - 1) + 1,
            }
        })
        .collect();
    const FREE: u32 = u32::MAX;
    let mut table = vec![FREE; m as usize];
    let mut filled = 0u64;
    let mut round = 0u32;
    while filled < m {
        round += 1;
        for turn in &mut turns {
            if filled == m {
                break;
            }
            if f64::from(round) * turn.nw < turn.target {
                continue;
            }
            turn.target += largest;
            let mut slot = turn.next;
            while table[slot as usize] != FREE {
                slot += turn.skip;
                if slot >= m {
                    slot -= m;
                }
            }
            table[slot as usize] = turn.index;
            filled += 1;
            turn.next = slot + turn.skip;
            if turn.next >= m {
                turn.next -= m;
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    //! The expected values of Envoy's own tests (`ring_hash_lb_test.cc`, `maglev_lb_test.cc`),
    //! whose hosts `tcp://127.0.0.1:P` hash as `127.0.0.1:P`.
    use super::*;

    fn lookup(points: &[Point64], hash: u64) -> u32 {
        let mut sorted = points.to_vec();
        sorted.sort_unstable();
        let at = sorted.partition_point(|p| p.0 < hash);
        sorted[if at == sorted.len() { 0 } else { at }].1
    }

    fn local(ports: impl IntoIterator<Item = u32>) -> Vec<String> {
        ports
            .into_iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    #[test]
    fn envoy_basic_ring() {
        let ids = local(90..96);
        let hosts: Vec<(&str, u32)> = ids.iter().map(|id| (id.as_str(), 1)).collect();
        let mut points = ring_hash_points(&hosts, 12, ENVOY_MAX_RING_SIZE);
        points.sort_unstable();
        let expected: [(u64, u32); 12] = [
            (833437586790550860, 4),
            (928266305478181108, 2),
            (1033482794131418490, 0),
            (3551244743356806947, 5),
            (3851675632748031481, 3),
            (5583722120771150861, 1),
            (6311230543546372928, 1),
            (7700377290971790572, 3),
            (13144177310400110813, 5),
            (13444792449719432967, 2),
            (15516499411664133160, 4),
            (16117243373044804889, 0),
        ];
        assert_eq!(points, expected);
        for (hash, host) in [
            (0, 4),
            (u64::MAX, 4),
            (3551244743356806947, 5),
            (3551244743356806948, 3),
            (16117243373044804880, 0),
        ] {
            assert_eq!(lookup(&points, hash), host, "{hash}");
        }
    }

    #[test]
    fn envoy_uneven_hosts_and_tiny_weighted_ring() {
        let ids = local([80, 81]);
        let hosts: Vec<(&str, u32)> = ids.iter().map(|id| (id.as_str(), 1)).collect();
        let points = ring_hash_points(&hosts, 3, ENVOY_MAX_RING_SIZE);
        assert_eq!(points.len(), 4);
        assert_eq!(lookup(&points, 0), 0);

        let ids = local([90, 91, 92]);
        let hosts: Vec<(&str, u32)> = ids
            .iter()
            .zip([1, 2, 3])
            .map(|(id, w)| (id.as_str(), w))
            .collect();
        let points = ring_hash_points(&hosts, 6, 6);
        assert_eq!(points.len(), 6);
        for (hash, host) in [
            (928266305478181108, 2),
            (4443673547860492590, 2),
            (5583722120771150861, 1),
            (6311230543546372928, 1),
            (13444792449719432967, 2),
            (16117243373044804889, 0),
        ] {
            assert_eq!(lookup(&points, hash), host, "{hash}");
        }
    }

    #[test]
    fn envoy_large_rings_count_exactly() {
        let ids = local([90, 91, 92]);
        let hosts: Vec<(&str, u32)> = ids
            .iter()
            .zip([1, 2, 3])
            .map(|(id, w)| (id.as_str(), w))
            .collect();
        let points = ring_hash_points(&hosts, 6144, ENVOY_MAX_RING_SIZE);
        assert_eq!(points.len(), 6144);
        let mut counts = [0; 3];
        for i in 0..6000u64 {
            counts[lookup(&points, i * (u64::MAX / 6000)) as usize] += 1;
        }
        assert_eq!(counts, [987, 1932, 3081]);

        // A fractional scale: 512 and 511 entries.
        let ids = local([90, 91]);
        let hosts: Vec<(&str, u32)> = ids.iter().map(|id| (id.as_str(), 1)).collect();
        let points = ring_hash_points(&hosts, 1023, 1023);
        assert_eq!(points.iter().filter(|p| p.1 == 0).count(), 512);
        assert_eq!(points.len(), 1023);
        let mut counts = [0; 2];
        for i in 0..1023u64 {
            counts[lookup(&points, i * (u64::MAX / 1023)) as usize] += 1;
        }
        assert_eq!(counts, [526, 497]);
    }

    #[test]
    fn envoy_hostname_keys() {
        let ids: Vec<String> = (90..96).map(|p| p.to_string()).collect();
        let hosts: Vec<(&str, u32)> = ids.iter().map(|id| (id.as_str(), 1)).collect();
        let points = ring_hash_points(&hosts, 12, ENVOY_MAX_RING_SIZE);
        for (hash, host) in [
            (0, 5),
            (u64::MAX, 5),
            (7225015537174310577, 2),
            (6803900775736438537, 3),
        ] {
            assert_eq!(lookup(&points, hash), host, "{hash}");
        }
    }

    #[test]
    fn envoy_maglev_tables() {
        let ids = local(90..96);
        let hosts: Vec<(&str, u32)> = ids.iter().map(|id| (id.as_str(), 1)).collect();
        assert_eq!(maglev_table(&hosts, 7), [2, 4, 0, 1, 5, 0, 3]);

        let ids: Vec<String> = (90..96).map(|p| p.to_string()).collect();
        let hosts: Vec<(&str, u32)> = ids.iter().map(|id| (id.as_str(), 1)).collect();
        assert_eq!(maglev_table(&hosts, 7), [2, 5, 0, 3, 4, 1, 0]);

        let ids = local([90, 91]);
        let hosts = [(ids[0].as_str(), 1), (ids[1].as_str(), 2)];
        assert_eq!(
            maglev_table(&hosts, 17),
            [1, 0, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 0, 1]
        );
        assert_eq!(maglev_table(&hosts[..1], 17), [0; 17]);
    }

    #[test]
    fn grpc_request_header_hashes() {
        assert_eq!(request_hash(b""), 17241709254077376921);
        assert_eq!(request_hash(b"some-value"), 1094076000777946959);
        assert_eq!(request_hash(b"value1,value2"), 7597366331508923242);
    }

    #[test]
    fn decimals() {
        for n in [0, 7, 10, 99, 1234567, u64::MAX] {
            let mut s = String::from("x_");
            push_decimal(&mut s, n);
            assert_eq!(s, format!("x_{n}"));
        }
    }
}
