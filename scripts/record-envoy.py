#!/usr/bin/env python3
"""Record key->host mappings of Envoy ring_hash, gRPC ring_hash and Envoy Maglev, for lbkit's
Envoy/gRPC preset tests.

Unlike scripts/record-nginx.py and scripts/record-ketama.sh, which drive the real programs, this
script is an independent model of the three algorithms, written in Python from their published
descriptions (Envoy's ring_hash_lb.cc, maglev_lb.cc and thread_aware_lb_impl.cc; grpc-go's
balancer/ringhash; gRFC A42/A61/A76), not from lbkit's Rust code. Envoy and grpc-go are too big
to build in CI, so the model stands in for them; to show that it is faithful, it first checks
itself against every upstream test vector it can reproduce (Envoy's ring_hash_lb_test.cc and
maglev_lb_test.cc, grpc-go's picker_test.go) and exits non-zero, writing nothing, if any of
them differs.

What is modelled (and what is not):
  * Flat host weights only. Envoy's locality weighting, its MURMUR_HASH_2 option, retries and
    bounded load are out of scope (lbkit implements none of them).
  * A host's hash key is its id, an "ip:port" string, as Envoy's `address()->asString()` and
    grpc-go's `Addresses[0].Addr` give it (no hostname or `hash_key` metadata).
  * The request hash of a key is XXH64(key bytes, seed 0): Envoy's and gRPC's header/cookie
    hash policies for a single value, and gRFC A76's request_hash_header.

Output, one TSV per (model, server set), in the format of tests/data/compat:
  line 1  `# <model> (scripts/record-envoy.py): name=value ...` -- the parameters, as
          whitespace-separated `min_ring_size=N max_ring_size=N` or `table_size=N` tokens
          (the values actually in force, after gRPC's clamping), which tests parse;
  line 2  `# servers: id=weight ...` in the order the set lists them (deliberately not sorted);
  then    `key<TAB>host id` for the keys user:00000000 .. user:00019999.

Usage: scripts/record-envoy.py OUT_DIR        (needs the PyPI package `xxhash`)
       scripts/record-envoy.py --self-check   (only the upstream vectors)
"""
import bisect
import math
import os
import sys

try:
    import xxhash
except ImportError:
    raise SystemExit("record-envoy.py needs the Python package xxhash: pip install xxhash")

U64_MAX = (1 << 64) - 1


def xxh64(s, seed=0):
    """XXH64 of a string's UTF-8 bytes (Envoy HashUtil::xxHash64, grpc-go xxhash.Sum64String)."""
    return xxhash.xxh64_intdigest(s.encode(), seed)


def request_hash(key):
    """The request hash both proxies compute for a single header value or cookie: XXH64 seed 0."""
    return xxh64(key, 0)


def normalized_weights(weights):
    """Envoy normalizeHostWeights, flat case (thread_aware_lb_impl.cc): nw = (w * 1.0) / sum,
    in double. grpc-go: float64(w) / float64(sum). Both are the correctly rounded quotient of
    two integers below 2^53, which Python's int / int also is."""
    total = sum(weights)
    return [w / total for w in weights]


def by_id(servers):
    """Servers [(id, weight)] sorted byte-wise by id (the hash key)."""
    return sorted(servers, key=lambda s: s[0].encode())


# ---------------------------------------------------------------------------------------------
# Ring hash (Envoy ring_hash_lb.cc RingHashLoadBalancer::Ring::Ring; grpc-go ring.go newRing)
# ---------------------------------------------------------------------------------------------

class Ring:
    def __init__(self, hosts, min_ring_size, max_ring_size):
        """hosts: [(hash key, weight)] in the order whose running sums decide which host gets a
        fractional entry. Builds the sorted ring of (hash, host index)."""
        nws = normalized_weights([w for _, w in hosts])
        # min_normalized_weight starts at 1.0 (thread_aware_lb_impl.cc), so min(...) below.
        min_nw = min([1.0] + nws)
        # scale = min(ceil(min_nw * min_ring_size) / min_nw, max_ring_size), all in double.
        self.scale = min(math.ceil(min_nw * float(min_ring_size)) / min_nw, float(max_ring_size))
        entries = []
        self.counts = []
        current = 0.0  # entries made so far, as a double, across all hosts
        target = 0.0   # running sum of scale * nw, across all hosts
        for index, ((key, _), nw) in enumerate(zip(hosts, nws)):
            target += self.scale * nw  # two separately rounded double operations, no FMA
            i = 0  # the per-host entry index restarts at 0 for every host
            while current < target:
                entries.append((xxh64(f"{key}_{i}"), index))
                i += 1
                current += 1.0
            self.counts.append(i)
        # Envoy std::sort / grpc-go sort.Slice by hash, neither stable: the order of equal
        # hashes is unspecified upstream, so recordings must not contain any (checked there).
        entries.sort(key=lambda e: e[0])
        self.hashes = [h for h, _ in entries]
        self.hosts = [i for _, i in entries]

    def pick(self, h):
        """The first entry whose hash is >= h, wrapping to entry 0 past the last (Envoy's
        ketama-style binary search in chooseHost, grpc-go's sort.Search: the same index)."""
        i = bisect.bisect_left(self.hashes, h)
        return self.hosts[i if i < len(self.hashes) else 0]


ENVOY_MIN_RING = 1024            # ring_hash_lb.h defaults
ENVOY_MAX_RING = 1024 * 1024 * 8


def envoy_ring(servers, min_ring_size=ENVOY_MIN_RING, max_ring_size=ENVOY_MAX_RING):
    """Envoy ring_hash over servers [(id, weight)]; returns (ring, hosts in ring order).

    Host order: the hosts sorted byte-wise by id, the order lbkit uses. Envoy itself walks its
    host set in host-set (EDS/locality) order; the order only matters when some scale * nw is
    fractional (it decides which hosts get the extra entries), so a recording with fractional
    shares is Envoy's mapping for a host set listed in id order."""
    if not 1 <= min_ring_size <= max_ring_size <= ENVOY_MAX_RING:
        raise ValueError("ring hash: bad minimum/maximum_ring_size")
    hosts = by_id(servers)
    return Ring(hosts, min_ring_size, max_ring_size), hosts


GRPC_DEFAULT_MIN_RING = 1024     # grpc-go balancer/ringhash/config.go, gRFC A42
GRPC_DEFAULT_MAX_RING = 4096
GRPC_RING_HASH_CAP = 4096        # GRPC_RING_HASH_CAP environment variable, default 4096


def grpc_ring_sizes(min_ring_size=GRPC_DEFAULT_MIN_RING, max_ring_size=GRPC_DEFAULT_MAX_RING,
                    cap=GRPC_RING_HASH_CAP):
    """grpc-go parseConfig: reject min > max or either above 8M, then clamp both to the cap."""
    if min_ring_size > ENVOY_MAX_RING or max_ring_size > ENVOY_MAX_RING or min_ring_size > max_ring_size:
        raise ValueError("ring_hash: bad ring sizes")
    return min(min_ring_size, cap), min(max_ring_size, cap)


def grpc_ring(servers, min_ring_size=GRPC_DEFAULT_MIN_RING, max_ring_size=GRPC_DEFAULT_MAX_RING):
    """gRPC ring_hash: as Envoy's, but grpc-go sorts the endpoints by hash key (Go byte-wise
    string order) before the running sums, and clamps the sizes. Returns (ring, hosts)."""
    lo, hi = grpc_ring_sizes(min_ring_size, max_ring_size)
    hosts = by_id(servers)
    return Ring(hosts, lo, hi), hosts


# ---------------------------------------------------------------------------------------------
# Maglev (Envoy maglev_lb.cc: OriginalMaglevTable/CompactMaglevTable::constructMaglevTableInternal)
# ---------------------------------------------------------------------------------------------

ENVOY_MAGLEV_TABLE_SIZE = 65537  # maglev_lb.h default; must be prime


class Maglev:
    def __init__(self, servers, table_size=ENVOY_MAGLEV_TABLE_SIZE):
        """servers [(id, weight)]. Hosts are sorted byte-wise by hash key (Envoy since #28055,
        2023; ids are distinct here, so the pointer tie-break never applies)."""
        m = table_size
        if m < 2 or any(m % d == 0 for d in range(2, math.isqrt(m) + 1)):
            raise ValueError("The table size of maglev must be prime number")
        self.hosts = by_id(servers)
        nws = normalized_weights([w for _, w in self.hosts])
        max_nw = max(nws)
        self.counts = [0] * len(self.hosts)
        if len(self.hosts) == 1:  # DegenerateMaglevTable: the one host for every hash
            self.table = [0] * m
            self.counts = [1]
            return
        # Per host: the permutation (offset, skip) of the Maglev paper, from the hash key.
        state = []
        for (key, _), nw in zip(self.hosts, nws):
            state.append({
                "offset": xxh64(key, 0) % m,
                "skip": xxh64(key, 1) % (m - 1) + 1,
                "nw": nw,
                "target_weight": 0.0,
            })
        for s in state:
            s["cur"] = s["offset"]  # (offset + skip * next) % m, kept incrementally
        table = [None] * m
        filled = 0
        iteration = 1
        while filled < m:
            for index, s in enumerate(state):
                if filled >= m:  # the table can fill mid-round: later hosts miss that round
                    break
                # Weighted Maglev: a host takes a slot this round only if its share so far is
                # due, i.e. unless iteration * nw < target_weight; each slot raises its target
                # by max_nw, so a host of the largest weight takes a slot every round.
                if iteration * s["nw"] < s["target_weight"]:
                    continue
                s["target_weight"] += max_nw
                c = s["cur"]
                while table[c] is not None:  # next unclaimed slot in this host's permutation
                    c += s["skip"]
                    if c >= m:
                        c -= m
                table[c] = index
                self.counts[index] += 1
                filled += 1
                s["cur"] = c + s["skip"]
                if s["cur"] >= m:
                    s["cur"] -= m
            iteration += 1
        self.table = table

    def pick(self, h):
        """Host index for request hash h: table[h % M]."""
        return self.table[h % len(self.table)]


# ---------------------------------------------------------------------------------------------
# Self-check against the upstream test vectors (envoy-spec notes sections 1.12, 2.3 and 3.8).
# ---------------------------------------------------------------------------------------------

def self_check():
    """Returns the list of failed checks (empty: all passed); prints one line per check."""
    failed = []

    def check(name, got, want):
        ok = got == want
        print(f"{'ok  ' if ok else 'FAIL'} {name}" + ("" if ok else f": got {got!r}, want {want!r}"),
              file=sys.stderr)
        if not ok:
            failed.append(name)

    def local(*ports, weights=None):
        """Envoy's test hosts tcp://127.0.0.1:P hash as "127.0.0.1:P"; weight 1 unless given."""
        return [(f"127.0.0.1:{p}", w) for p, w in zip(ports, weights or [1] * len(ports))]

    def picks(ring_or_table, hosts, hashes, upstream_hosts):
        """Index into the upstream test's hosts_ of the host picked for each hash."""
        ids = [h for h, _ in hosts]
        return [upstream_hosts.index(ids[ring_or_table.pick(h)]) for h in hashes]

    # --- Envoy ring_hash_lb_test.cc ---
    # Basic: hosts :90..:95, weight 1, minimum_ring_size 12.
    servers = local(*range(90, 96))
    ids = [s for s, _ in servers]
    ring, hosts = envoy_ring(servers, 12)
    check("envoy ring Basic: 12 entries, 2 per host", (len(ring.hashes), ring.counts), (12, [2] * 6))
    check("envoy ring Basic: entries (hash, host)",
          [(h, hosts[i][0][9:]) for h, i in zip(ring.hashes, ring.hosts)],
          [(833437586790550860, ":94"), (928266305478181108, ":92"), (1033482794131418490, ":90"),
           (3551244743356806947, ":95"), (3851675632748031481, ":93"), (5583722120771150861, ":91"),
           (6311230543546372928, ":91"), (7700377290971790572, ":93"), (13144177310400110813, ":95"),
           (13444792449719432967, ":92"), (15516499411664133160, ":94"), (16117243373044804889, ":90")])
    check("envoy ring Basic: picks",
          picks(ring, hosts, [0, U64_MAX, 3551244743356806947, 3551244743356806948,
                              16117243373044804880], ids),
          [4, 4, 5, 3, 0])

    # BasicWithHostname / BasicWithMetadataHashKey: hash keys "90".."95", minimum 12.
    servers = [(str(p), 1) for p in range(90, 96)]
    ids = [s for s, _ in servers]
    ring, hosts = envoy_ring(servers, 12)
    check("envoy ring BasicWithHostname: entries",
          [(h, hosts[i][0]) for h, i in zip(ring.hashes, ring.hosts)],
          [(1975508444536362413, "95"), (2376063919839173711, "95"), (2386806903309390596, "93"),
           (6749904478991551885, "94"), (6803900775736438537, "93"), (7225015537174310577, "92"),
           (8787465352164086522, "90"), (11282020843382717940, "92"), (13723418369486627818, "91"),
           (13776502110861797421, "90"), (14338313586354474791, "91"), (15364271037087512980, "94")])
    check("envoy ring BasicWithHostname: picks",
          picks(ring, hosts, [0, U64_MAX, 7225015537174310577, 6803900775736438537], ids),
          [5, 5, 2, 3])

    # UnevenHosts: 2 hosts, minimum 3 -> scale 4, 2 entries each.
    for ports, want_entries, want_pick in [
        ((80, 81), [(5454692015285649509, ":80"), (7859399908942313493, ":81"),
                    (13838424394637650569, ":80"), (16064866803292627174, ":81")], ":80"),
        ((81, 82), [(7859399908942313493, ":81"), (8241336090459785962, ":82"),
                    (12882406409176325258, ":82"), (16064866803292627174, ":81")], ":81"),
    ]:
        ring, hosts = envoy_ring(local(*ports), 3)
        check(f"envoy ring UnevenHosts {ports}: ring size, entries, hash 0",
              (math.ceil(ring.scale), [(h, hosts[i][0][9:]) for h, i in zip(ring.hashes, ring.hosts)],
               hosts[ring.pick(0)][0][9:]),
              (4, want_entries, want_pick))

    # HostWeightedTinyRing: :90 w1, :91 w2, :92 w3, min = max = 6.
    servers = local(90, 91, 92, weights=[1, 2, 3])
    ids = [s for s, _ in servers]
    ring, hosts = envoy_ring(servers, 6, 6)
    tiny = {928266305478181108: 2, 4443673547860492590: 2, 5583722120771150861: 1,
            6311230543546372928: 1, 13444792449719432967: 2, 16117243373044804889: 0}
    check("envoy ring HostWeightedTinyRing: size 6, entries 1/2/3, picks",
          (len(ring.hashes), ring.counts, picks(ring, hosts, list(tiny), ids)),
          (6, [1, 2, 3], list(tiny.values())))

    # HostWeightedLargeRing: weights 1/2/3, minimum 6144; hashes i * (MAX / 6000), i < 6000.
    ring, hosts = envoy_ring(servers, 6144)
    counts = [0, 0, 0]
    for i in range(6000):
        counts[ids.index(hosts[ring.pick(i * (U64_MAX // 6000))][0])] += 1
    check("envoy ring HostWeightedLargeRing: entries 1024/2048/3072, picks 987/1932/3081",
          (ring.counts, counts), ([1024, 2048, 3072], [987, 1932, 3081]))

    # LargeFractionalScale: 2 hosts, min = max = 1023 -> 512 / 511 entries;
    # hashes i * (MAX / 1023), i < 1023.
    servers = local(90, 91)
    ids = [s for s, _ in servers]
    ring, hosts = envoy_ring(servers, 1023, 1023)
    counts = [0, 0]
    for i in range(1023):
        counts[ids.index(hosts[ring.pick(i * (U64_MAX // 1023))][0])] += 1
    check("envoy ring LargeFractionalScale: entries 512/511, picks 526/497",
          (ring.counts, counts), ([512, 511], [526, 497]))

    # --- Envoy maglev_lb_test.cc (expected_assignments[i] = hosts_ index for hash i) ---
    servers = local(*range(90, 96))
    table = Maglev(servers, 7)
    ids = [s for s, _ in servers]
    check("envoy maglev Basic: table, min/max entries 1/2",
          (picks(table, table.hosts, range(7), ids), min(table.counts), max(table.counts)),
          ([2, 4, 0, 1, 5, 0, 3], 1, 2))
    check("envoy maglev BasicStability: host order does not matter",
          picks(Maglev(servers[::-1], 7), by_id(servers), range(7), ids), [2, 4, 0, 1, 5, 0, 3])
    servers = [(str(p), 1) for p in range(90, 96)]
    table = Maglev(servers, 7)
    check("envoy maglev BasicWithHostName: table",
          picks(table, table.hosts, range(7), [s for s, _ in servers]), [2, 5, 0, 3, 4, 1, 0])
    servers = local(90, 91, weights=[1, 2])
    table = Maglev(servers, 17)
    check("envoy maglev Weighted: table, entries 6/11",
          (picks(table, table.hosts, range(17), [s for s, _ in servers]), table.counts),
          ([1, 0, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 0, 1], [6, 11]))
    table = Maglev(local(90, weights=[7]), 17)
    check("envoy maglev WeightedSingleHost: one host everywhere, 1 entry",
          (set(table.table), table.counts), ({0}, [1]))

    # --- grpc-go balancer/ringhash/picker_test.go TestPickerRequestHashKey (gRFC A76) ---
    # request_hash_header values are joined with "," and hashed with XXH64 seed 0; the picker
    # runs on a synthetic 3-entry ring at MaxUint64/3 * i.
    check("grpc A76 request hash: \"\", \"some-value\", \"value1,value2\"",
          [request_hash(v) for v in ["", "some-value", ",".join(["value1", "value2"])]],
          [17241709254077376921, 1094076000777946959, 7597366331508923242])
    synthetic = Ring([], 1, 1)
    synthetic.hashes, synthetic.hosts = [U64_MAX // 3 * i for i in range(3)], [0, 1, 2]
    check("grpc A76 picks on the synthetic ring: entries 0, 1, 2",
          [synthetic.pick(request_hash(v)) for v in ["", "some-value", "value1,value2"]], [0, 1, 2])
    # gRPC sizes: defaults 1024/4096, both clamped to the 4096 cap.
    check("grpc ring sizes: defaults, clamping",
          [grpc_ring_sizes(), grpc_ring_sizes(8192, 8192), grpc_ring_sizes(10, 20)],
          [(1024, 4096), (4096, 4096), (10, 20)])
    return failed


# ---------------------------------------------------------------------------------------------
# The recorded server sets and files.
# ---------------------------------------------------------------------------------------------

def server_sets():
    """name -> [(id, weight)], listed in an order that is not the byte-wise id order (so that
    a test replaying them shows the order given does not matter). Ids mix :80 and :8080, the
    same address on two ports, and numbers whose byte order differs from numeric order
    ("10.2.2.10:80" < "10.2.2.1:80" < "10.2.2.1:8080" < "10.2.2.2:80")."""
    three = [("10.2.0.3:8080", 1), ("10.2.0.1:80", 1), ("10.2.0.2:80", 1)]
    ten = [(f"10.2.1.{1 + 3 * i}:{8080 if i % 3 == 2 else 80}", 1 + (3 * i) % 5) for i in range(10)]
    fifty = [(f"10.2.2.{1 + (13 * i) % 40}:{80 if i < 40 else 8080}", 1 + (7 * i) % 5)
             for i in range(50)]
    small = [(f"10.2.3.{o}:{p}", w) for o, p, w in
             [(5, 80, 3), (12, 8080, 1), (3, 80, 4), (40, 80, 1), (7, 8080, 5), (21, 80, 2), (9, 80, 6)]]
    # Total weight above 4096 with lightest weight 1: gRPC's scale ceil(1024 / W) * W = W is
    # then above the 4096 cap, so the cap binds and the shares are fractional.
    capped = [(f"10.2.4.{o}:80", w) for o, w in
              [(8, 700), (2, 1), (30, 1300), (4, 2), (15, 900), (6, 1200), (11, 500)]]
    return {"three": three, "ten-weighted": ten, "fifty-weighted": fifty, "small": small,
            "capped": capped}


# (file name, model, set, parameters)
RECORDINGS = [
    ("envoy-ring-three", "envoy ring_hash", "three", {"min_ring_size": 1024, "max_ring_size": ENVOY_MAX_RING}),
    ("envoy-ring-ten-weighted", "envoy ring_hash", "ten-weighted", {"min_ring_size": 1024, "max_ring_size": ENVOY_MAX_RING}),
    ("envoy-ring-fifty-weighted", "envoy ring_hash", "fifty-weighted", {"min_ring_size": 1024, "max_ring_size": ENVOY_MAX_RING}),
    ("envoy-ring-small", "envoy ring_hash", "small", {"min_ring_size": 1000, "max_ring_size": 1000}),
    ("grpc-ring-three", "grpc ring_hash", "three", {"min_ring_size": 1024, "max_ring_size": 4096}),
    ("grpc-ring-ten-weighted", "grpc ring_hash", "ten-weighted", {"min_ring_size": 1024, "max_ring_size": 4096}),
    ("grpc-ring-fifty-weighted", "grpc ring_hash", "fifty-weighted", {"min_ring_size": 1024, "max_ring_size": 4096}),
    ("grpc-ring-capped", "grpc ring_hash", "capped", {"min_ring_size": 1024, "max_ring_size": 4096}),
    ("envoy-maglev-three", "envoy maglev", "three", {"table_size": 65537}),
    ("envoy-maglev-ten-weighted", "envoy maglev", "ten-weighted", {"table_size": 65537}),
    ("envoy-maglev-fifty-weighted", "envoy maglev", "fifty-weighted", {"table_size": 65537}),
    ("envoy-maglev-small", "envoy maglev", "small", {"table_size": 251}),
]

KEYS = [f"user:{i:08d}" for i in range(20000)]


def record(out_dir):
    sets = server_sets()
    for name, model, set_name, params in RECORDINGS:
        servers = sets[set_name]
        if model == "envoy maglev":
            lb = Maglev(servers, params["table_size"])
            hosts, counts = lb.hosts, lb.counts
            detail = f"maglev entries per host {min(counts)}..{max(counts)}"
        else:
            build = envoy_ring if model == "envoy ring_hash" else grpc_ring
            lb, hosts = build(servers, params["min_ring_size"], params["max_ring_size"])
            counts = lb.counts
            if len(set(lb.hashes)) != len(lb.hashes):  # tie order is unspecified upstream
                raise SystemExit(f"{name}: two ring entries share a hash; choose other ids")
            # grpc-go's e2e tests' identity: XXH64(key + "_0") is the key's own first entry.
            for key, _ in hosts:
                if hosts[lb.pick(xxh64(f"{key}_0"))][0] != key:
                    raise SystemExit(f"{name}: XXH64({key}_0) does not pick {key}")
            detail = (f"ring entries {len(lb.hashes)}, per host {min(counts)}..{max(counts)}, "
                      f"scale {lb.scale!r}")
        tokens = " ".join(f"{k}={v}" for k, v in params.items())
        path = os.path.join(out_dir, f"{name}.tsv")
        with open(path, "w") as f:
            f.write(f"# {model} model (scripts/record-envoy.py): {tokens} | hash XXH64 seed 0, "
                    f"request hash XXH64(key, 0), hosts sorted by id byte-wise | {detail}\n")
            f.write("# servers: " + " ".join(f"{s}={w}" for s, w in servers) + "\n")
            for key in KEYS:
                f.write(f"{key}\t{hosts[lb.pick(request_hash(key))][0]}\n")
        print(f"{name}: {len(KEYS)} keys, {detail}", file=sys.stderr)


def main():
    args = sys.argv[1:]
    if len(args) != 1:
        raise SystemExit(__doc__)
    failed = self_check()
    if failed:
        raise SystemExit(f"record-envoy.py: {len(failed)} upstream vector(s) differ; nothing recorded")
    print("record-envoy.py: every upstream vector reproduced", file=sys.stderr)
    if args[0] == "--self-check":
        return
    os.makedirs(args[0], exist_ok=True)
    record(args[0])


if __name__ == "__main__":
    main()
