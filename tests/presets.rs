//! The presets against mappings recorded from the real programs (tests/data/compat, made by
//! scripts/record-nginx.py with nginx 1.22.1 and scripts/record-ketama.sh with libmemcached
//! 1.1.4): every key of every recorded set through the public `Balancer` API, including
//! nginx's fallback when servers are dead (here: `Down`), and `pick_n`'s first equal to `pick`.

use lbkit::{Backend, Balancer, Health, Preset, PresetRing, Request};

struct Recorded {
    name: String,
    /// Line 1: the program (or model) and its settings, `name=value` tokens among them.
    header: String,
    servers: Vec<(String, u32, bool)>,
    keys: Vec<(String, String)>,
}

fn load(preset: &str) -> Vec<Recorded> {
    let dir = format!("{}/tests/data/compat", env!("CARGO_MANIFEST_DIR"));
    let mut sets: Vec<Recorded> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(preset) && name.ends_with(".tsv")
        })
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut lines = text.lines();
            let header = lines.next().unwrap().to_owned();
            let servers = lines
                .next()
                .unwrap()
                .strip_prefix("# servers: ")
                .unwrap()
                .split(' ')
                .map(|s| {
                    let alive = !s.ends_with("(dead)");
                    let (name, w) = s.trim_end_matches("(dead)").rsplit_once('=').unwrap();
                    (name.to_owned(), w.parse().unwrap(), alive)
                })
                .collect();
            let keys = lines
                .map(|l| {
                    let (k, v) = l.split_once('\t').unwrap();
                    (k.to_owned(), v.to_owned())
                })
                .collect();
            Recorded {
                name: path.file_name().unwrap().to_string_lossy().into_owned(),
                header,
                servers,
                keys,
            }
        })
        .collect();
    sets.sort_by(|a, b| a.name.cmp(&b.name));
    sets
}

/// Replays one program's recordings; returns (keys checked, sets).
fn replay(preset: Preset, file_prefix: &str, uri: bool) -> (usize, usize) {
    let sets = load(file_prefix);
    let mut checked = 0;
    for set in &sets {
        // The list order does not matter: give it reversed.
        let backends: Vec<Backend<()>> = set
            .servers
            .iter()
            .rev()
            .map(|(id, w, _)| Backend::new(id.as_str(), ()).with_weight(*w))
            .collect();
        let mut builder = PresetRing::builder(preset).seed(1);
        // The sizes the recording was made with (`min_ring_size=1024` and so on on line 1).
        for token in set.header.split([' ', ',', ':']) {
            let Some((name, value)) = token.split_once('=') else {
                continue;
            };
            let value = value.parse();
            builder = match (name, value) {
                ("min_ring_size", Ok(v)) => builder.minimum_ring_size(v),
                ("max_ring_size", Ok(v)) => builder.maximum_ring_size(v),
                ("table_size", Ok(v)) => builder.table_size(v),
                _ => builder,
            };
        }
        let lb = builder.build(backends).unwrap();
        for (id, _, alive) in &set.servers {
            if !alive {
                lb.set_health(id, Health::Down).unwrap();
            }
        }
        let mut mismatches = Vec::new();
        for (key, want) in &set.keys {
            let key = if uri { format!("/{key}") } else { key.clone() };
            let pick = lb.pick(&Request::with_key(&key)).unwrap();
            if pick.id() != want {
                mismatches.push((key.clone(), pick.id().to_owned(), want.clone()));
            }
            let n = lb.pick_n(&Request::with_key(&key), 3);
            assert_eq!(
                n[0].id(),
                pick.id(),
                "{}: pick_n starts with pick",
                set.name
            );
            checked += 1;
        }
        assert!(
            mismatches.is_empty(),
            "{}: {} of {} keys differ, e.g. {:?}",
            set.name,
            mismatches.len(),
            set.keys.len(),
            &mismatches[..mismatches.len().min(3)]
        );
        assert!(lb.status().iter().all(|s| s.in_flight() == 0));
    }
    (checked, sets.len())
}

#[test]
fn envoy_ring_hash_preset_matches_the_independent_model_with_zero_mismatches() {
    let (keys, sets) = replay(Preset::EnvoyRingHash, "envoy-ring-", false);
    assert!(sets >= 4 && keys >= 80_000, "{sets} sets, {keys} keys");
}

#[test]
fn grpc_ring_hash_preset_matches_the_independent_model_with_zero_mismatches() {
    let (keys, sets) = replay(Preset::GrpcRingHash, "grpc-ring-", false);
    assert!(sets >= 3 && keys >= 60_000, "{sets} sets, {keys} keys");
}

#[test]
fn envoy_maglev_preset_matches_the_independent_model_with_zero_mismatches() {
    let (keys, sets) = replay(Preset::EnvoyMaglev, "envoy-maglev-", false);
    assert!(sets >= 4 && keys >= 80_000, "{sets} sets, {keys} keys");
}

/// Envoy's test hosts `tcp://127.0.0.1:P` hash as `127.0.0.1:P`.
fn envoy_hosts(ports: std::ops::Range<u32>, weights: &[u32]) -> Vec<Backend<()>> {
    ports
        .zip(weights.iter().cycle())
        .map(|(p, &w)| Backend::new(format!("127.0.0.1:{p}"), ()).with_weight(w))
        .collect()
}

#[test]
fn envoy_test_vectors_through_the_public_api() {
    // ring_hash_lb_test.cc, Basic: six hosts, minimum_ring_size 12; the caller's hash is
    // Envoy's 64-bit request hash.
    let ring = PresetRing::builder(Preset::EnvoyRingHash)
        .minimum_ring_size(12)
        .build(envoy_hosts(90..96, &[1]))
        .unwrap();
    for (hash, port) in [
        (0, 94),
        (u64::MAX, 94),
        (3551244743356806947, 95),
        (3551244743356806948, 93),
        (16117243373044804880, 90),
    ] {
        let pick = ring.pick(&Request::with_hash(hash)).unwrap();
        assert_eq!(pick.id(), format!("127.0.0.1:{port}"), "{hash}");
    }
    // Envoy's retry with a host predicate takes the next entry of the ring: so does a
    // backend that is down here.
    ring.set_health("127.0.0.1:94", Health::Down).unwrap();
    assert_eq!(
        ring.pick(&Request::with_hash(0)).unwrap().id(),
        "127.0.0.1:92"
    );

    // maglev_lb_test.cc, Basic: table size 7.
    let maglev = PresetRing::builder(Preset::EnvoyMaglev)
        .table_size(7)
        .build(envoy_hosts(90..96, &[1]))
        .unwrap();
    let table: Vec<String> = (0..7)
        .map(|h| maglev.pick(&Request::with_hash(h)).unwrap().id().to_owned())
        .collect();
    let expected: Vec<String> = [92, 94, 90, 91, 95, 90, 93]
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    assert_eq!(table, expected);
    // Envoy's retry: hash 10 (slot 3, :91) rejected goes to `10 ^ !0`'s slot, :90.
    maglev.set_health("127.0.0.1:91", Health::Down).unwrap();
    assert_eq!(
        maglev.pick(&Request::with_hash(10)).unwrap().id(),
        "127.0.0.1:90"
    );

    // Weighted: 1 and 2 over 17 slots.
    let weighted = PresetRing::builder(Preset::EnvoyMaglev)
        .table_size(17)
        .build(envoy_hosts(90..92, &[1, 2]))
        .unwrap();
    let heavy: Vec<u64> = (0..17)
        .filter(|&h| weighted.pick(&Request::with_hash(h)).unwrap().id() == "127.0.0.1:91")
        .collect();
    assert_eq!(heavy, [0, 3, 5, 6, 8, 9, 10, 11, 12, 14, 16]);
}

#[test]
fn a_grpc_key_of_an_endpoints_first_entry_goes_to_that_endpoint() {
    // grpc-go's end-to-end tests route the key "<hash key>_0" to its endpoint: the key's
    // XXH64 is that endpoint's first ring entry.
    let ids: Vec<String> = (0..40)
        .map(|i| format!("10.9.{}.{}:443", i / 8, i % 8))
        .collect();
    let lb = PresetRing::grpc_ring_hash(
        ids.iter()
            .enumerate()
            .map(|(i, id)| Backend::new(id.as_str(), ()).with_weight(1 + i as u32 % 3)),
    )
    .unwrap();
    for id in &ids {
        let key = format!("{id}_0");
        assert_eq!(lb.pick(&Request::with_key(&key)).unwrap().id(), id);
    }
}

#[test]
fn every_backend_stays_reachable_when_the_ring_gives_it_no_entry() {
    // ring_hash_lb_test.cc, SmallFractionalScale: four hosts on a ring of two entries; two
    // get none, and Envoy sends them nothing. Here they are walked after the ring.
    let lb = PresetRing::builder(Preset::EnvoyRingHash)
        .minimum_ring_size(2)
        .maximum_ring_size(2)
        .build(envoy_hosts(90..94, &[1]))
        .unwrap();
    let served: std::collections::BTreeSet<String> = (0..1000u64)
        .map(|k| {
            lb.pick(&Request::with_hash(k.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
                .unwrap()
                .id()
                .to_owned()
        })
        .collect();
    assert_eq!(served.len(), 2);
    for id in ["127.0.0.1:90", "127.0.0.1:92"] {
        lb.set_health(id, Health::Down).unwrap();
    }
    let rest: std::collections::BTreeSet<String> = (0..1000u64)
        .map(|k| {
            lb.pick(&Request::with_hash(k.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
                .unwrap()
                .id()
                .to_owned()
        })
        .collect();
    assert_eq!(
        rest,
        ["127.0.0.1:91", "127.0.0.1:93"].map(String::from).into()
    );
}

#[test]
fn envoy_and_grpc_sizes_are_checked() {
    let hosts = || envoy_hosts(90..93, &[1]);
    let refused =
        |builder: lbkit::Builder<lbkit::hash::preset::PresetRingConfig>, name: &str| match builder
            .build(hosts())
        {
            Err(lbkit::Error::InvalidConfig { parameter, .. }) => assert_eq!(parameter, name),
            other => panic!("{name}: {other:?}"),
        };
    let ring = || PresetRing::builder(Preset::EnvoyRingHash);
    refused(ring().minimum_ring_size(0), "minimum_ring_size");
    refused(ring().maximum_ring_size(8_388_609), "maximum_ring_size");
    refused(
        ring().minimum_ring_size(100).maximum_ring_size(99),
        "minimum_ring_size",
    );
    refused(ring().table_size(7), "table_size");
    let maglev = || PresetRing::builder(Preset::EnvoyMaglev);
    refused(maglev().table_size(65_536), "table_size");
    refused(maglev().table_size(5_000_077), "table_size");
    refused(maglev().minimum_ring_size(10), "minimum_ring_size");
    refused(
        PresetRing::builder(Preset::Nginx).maximum_ring_size(10),
        "maximum_ring_size",
    );
    // gRPC checks against 8M, then clamps to its cap of 4096: a minimum of 8000 builds the
    // same ring as 4096.
    let ids = |lb: &PresetRing<()>| -> Vec<String> {
        (0..2000u64)
            .map(|k| {
                lb.pick(&Request::with_hash(k << 50))
                    .unwrap()
                    .id()
                    .to_owned()
            })
            .collect()
    };
    let big = PresetRing::builder(Preset::GrpcRingHash)
        .minimum_ring_size(8000)
        .maximum_ring_size(8000)
        .build(hosts())
        .unwrap();
    let capped = PresetRing::builder(Preset::GrpcRingHash)
        .minimum_ring_size(4096)
        .maximum_ring_size(4096)
        .build(hosts())
        .unwrap();
    assert_eq!(ids(&big), ids(&capped));
    // Envoy's largest table size is a prime, and accepted.
    assert!(PresetRing::builder(Preset::EnvoyMaglev)
        .table_size(5_000_011)
        .build(hosts())
        .is_ok());
}

#[test]
fn nginx_preset_matches_real_nginx_with_zero_mismatches() {
    let (keys, sets) = replay(Preset::Nginx, "nginx-", true);
    assert_eq!((keys, sets), (25_000, 5));
}

#[test]
fn ketama_preset_matches_real_libmemcached_with_zero_mismatches() {
    let (keys, sets) = replay(Preset::Ketama, "ketama-", false);
    assert_eq!((keys, sets), (20_000, 4));
}

#[test]
fn caller_hash_is_the_programs_32_bit_hash() {
    let lb = PresetRing::nginx([
        Backend::new("127.0.0.1:1", ()),
        Backend::new("127.0.0.1:2", ()),
        Backend::new("127.0.0.1:3", ()),
    ])
    .unwrap();
    for key in ["/a", "/b", "/user:42", "/"] {
        let crc = crc32(key.as_bytes());
        let by_key = lb.pick(&Request::with_key(key)).unwrap().id().to_owned();
        let by_hash = lb
            .pick(&Request::with_hash(u64::from(crc) | 0xdead_0000_0000_0000))
            .unwrap()
            .id()
            .to_owned();
        assert_eq!(by_key, by_hash, "{key}");
    }
}

#[test]
fn presets_are_ordinary_balancers() {
    let lb = PresetRing::builder(Preset::Ketama)
        .load_factor(1.25)
        .seed(3)
        .build((0..10).map(|i| Backend::new(format!("cache-{i}:11211"), i)))
        .unwrap();
    // Bounded loads: a hot key spills once its server is full.
    let held: Vec<_> = (0..100)
        .map(|_| lb.pick(&Request::with_key("hot")).unwrap())
        .collect();
    let max = lb.status().iter().map(|s| s.in_flight()).max().unwrap();
    assert!(max <= 13, "ceil(1.25 x 100 / 10) = 13, got {max}");
    drop(held);
    // Unkeyed requests spread, weights 0 get nothing, bad input is refused.
    assert!(lb.pick(&Request::new()).is_some());
    assert!(PresetRing::nginx([Backend::new("", ())]).is_err());
    assert!(PresetRing::nginx([Backend::new("h:1", ()).with_weight(u32::MAX)]).is_err());
    assert!(PresetRing::builder(Preset::Nginx)
        .load_factor(0.5)
        .build(Vec::<Backend<()>>::new())
        .is_err());
}

/// CRC-32 (IEEE), bitwise: an independent reference for the test above.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Every backend of weight above 0 is reachable: ketama gives a server whose share is below
/// 1 / (40 n) no point (weights 100:1 with two servers), and the program's mapping must not
/// leave it unreachable when the heavy one is down, full, or fetched as a fallback.
#[test]
fn a_ketama_server_without_points_is_still_reachable() {
    let lb = PresetRing::ketama([
        Backend::new("10.0.0.1:11211", 0u32).with_weight(100),
        Backend::new("10.0.0.2:11211", 1u32).with_weight(1),
    ])
    .unwrap();
    // Both up: the byte-exact mapping (the light one has no point, so it gets nothing).
    for k in 0..100u32 {
        let key = format!("key-{k}");
        assert_eq!(
            lb.pick(&Request::with_key(&key)).unwrap().id(),
            "10.0.0.1:11211"
        );
    }
    assert_eq!(
        lb.pick_n(&Request::with_key("k"), 2).len(),
        2,
        "both, as fallbacks"
    );
    lb.set_health("10.0.0.1:11211", Health::Down).unwrap();
    for k in 0..100u32 {
        let key = format!("key-{k}");
        let p = lb.pick(&Request::with_key(&key));
        assert_eq!(
            p.map(|p| p.id().to_owned()).as_deref(),
            Some("10.0.0.2:11211")
        );
    }
}

/// Two ids the program hashes alike share one set of points (ketama drops the default port;
/// nginx reads `h:` as host `h` with an empty port): the one without points stays reachable.
#[test]
fn ids_the_program_hashes_alike_stay_reachable() {
    for (preset, ids) in [
        (Preset::Ketama, ["cache", "cache:11211"]),
        (Preset::Nginx, ["h", "h:"]),
    ] {
        let lb = PresetRing::builder(preset)
            .build(ids.map(|id| Backend::new(id, ())))
            .unwrap();
        let owner = lb.pick(&Request::with_key("k")).unwrap().id().to_owned();
        assert_eq!(lb.pick_n(&Request::with_key("k"), 2).len(), 2, "{preset:?}");
        lb.set_health(&owner, Health::Down).unwrap();
        let other = lb.pick(&Request::with_key("k")).map(|p| p.id().to_owned());
        assert!(other.is_some_and(|id| id != owner), "{preset:?}");
        // Bounded loads spread a hot key to the other one instead of overfilling the owner:
        // at most ceil(1.25 x 20 / 2) = 13 of 20 held picks on either.
        let bounded = PresetRing::builder(preset)
            .load_factor(1.25)
            .build(ids.map(|id| Backend::new(id, ())))
            .unwrap();
        let held: Vec<_> = (0..20)
            .map(|_| bounded.pick(&Request::with_key("hot")).unwrap())
            .collect();
        let on_owner = held.iter().filter(|p| p.id() == owner).count();
        assert!(on_owner <= 13, "{preset:?}: {on_owner} of 20 on {owner}");
    }
}

/// `RING_POINT_LIMIT` holds for ketama too: libmemcached gives every server about 160
/// points, so a set beyond `KETAMA_SERVER_LIMIT` servers is a typed error (it used to build
/// 9 million points in 3 s and 150 MB at 56,000 servers), and an update to it changes nothing.
#[test]
fn ketama_respects_the_ring_point_limit() {
    use lbkit::hash::preset::KETAMA_SERVER_LIMIT;
    use lbkit::Error;
    let set = |n: usize| -> Vec<Backend<()>> {
        (0..n)
            .map(|i| {
                Backend::new(
                    format!("10.{}.{}.{}:11211", i >> 16, (i >> 8) & 255, i & 255),
                    (),
                )
            })
            .collect()
    };
    let too_many = KETAMA_SERVER_LIMIT + 1;
    let err = PresetRing::ketama(set(too_many)).unwrap_err();
    assert!(
        matches!(err, Error::TooManyBackends { count, max } if count == too_many && max == KETAMA_SERVER_LIMIT),
        "{err:?}"
    );
    let lb = PresetRing::ketama(set(3)).unwrap();
    assert!(lb.update(set(too_many)).is_err());
    assert_eq!(lb.status().len(), 3);
}
