//! Fleet consistency of the hashing policies.
//!
//! 1. Reference implementations written from the module docs' "Exact derivation" sections
//!    alone (naive: sort, binary search, scan) must agree with the balancers on many keys:
//!    the docs are precise enough to reproduce a mapping.
//! 2. Golden tables pin exact key -> id outputs for one fixed set per policy. If one of these
//!    changes, two versions of lbkit in one fleet would disagree: never update them without
//!    a major version.

#[path = "common/maglev_reference.rs"]
mod maglev_reference;

use lbkit::hash::{id_hash, key_hash, mix};
use lbkit::{jump_hash, Backend, Balancer, HashRing, JumpHash, Maglev, Rendezvous, Request};

/// Ten backends, weights 1..=5 and one 0, given out of id order on purpose.
fn set() -> Vec<Backend<()>> {
    [
        ("10.0.0.7:8080", 1),
        ("10.0.0.1:8080", 1),
        ("10.0.0.3:8080", 2),
        ("10.0.0.2:8080", 3),
        ("10.0.0.9:8080", 0),
        ("10.0.0.4:8080", 1),
        ("10.0.0.5:8080", 5),
        ("10.0.0.10:8080", 1),
        ("10.0.0.6:8080", 2),
        ("10.0.0.8:8080", 4),
    ]
    .into_iter()
    .map(|(id, w)| Backend::new(id, ()).with_weight(w))
    .collect()
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user:{i:08}")).collect()
}

fn map(lb: &dyn Balancer<()>, keys: &[String]) -> Vec<String> {
    keys.iter()
        .map(|k| {
            lb.pick(&Request::with_key(k))
                .map_or(String::new(), |p| p.id().to_owned())
        })
        .collect()
}

/// (id, weight) sorted by id, as every order-independent derivation starts.
fn sorted(set: &[Backend<()>]) -> Vec<(String, u32)> {
    let mut v: Vec<(String, u32)> = set
        .iter()
        .map(|b| (b.id().to_owned(), b.weight()))
        .collect();
    v.sort();
    v
}

// ---- reference implementations, from the docs ----

/// The ring as the docs define it: every point, sorted, owner by index in id order.
fn reference_ring(set: &[Backend<()>], per_weight: u64) -> impl Fn(&str) -> String {
    let members = sorted(set);
    let mut points: Vec<(u64, usize)> = Vec::new();
    for (i, (id, w)) in members.iter().enumerate() {
        for j in 0..u64::from(*w) * per_weight {
            points.push((mix(id_hash(id), j), i));
        }
    }
    points.sort();
    move |key| {
        let h = key_hash(key.as_bytes());
        let at = points.partition_point(|&(p, _)| p < h) % points.len();
        members[points[at].1].0.clone()
    }
}

fn reference_maglev_table(set: &[Backend<()>], m: u64) -> Vec<usize> {
    maglev_reference::table(&sorted(set), m)
}

fn reference_maglev(table: &[usize], set: &[Backend<()>], key: &str) -> String {
    let h = key_hash(key.as_bytes());
    let slot = ((u128::from(h) * table.len() as u128) >> 64) as usize;
    sorted(set)[table[slot]].0.clone()
}

/// The pinned -ln(u), step by step as the rendezvous docs write it (with the docs' decimal
/// literals, on purpose, rather than std's constants).
#[allow(clippy::approx_constant)]
fn reference_neg_ln(s: u64) -> f64 {
    let x = s | 1;
    let k = x.leading_zeros();
    let t = (x << k) >> 11;
    let mut m = t as f64 * (1.0 / 9_007_199_254_740_992.0);
    let mut e = f64::from(k);
    if m < 0.707_106_781_186_547_6 {
        m *= 2.0;
        e += 1.0;
    }
    let r = (m - 1.0) / (m + 1.0);
    let q = r * r;
    let mut p = 1.0 / 23.0;
    let mut d = 21.0;
    while d >= 1.0 {
        p = p * q + 1.0 / d;
        d -= 2.0;
    }
    let ln_m = (2.0 * r) * p;
    let ln2 = 0.693_147_180_559_945_3;
    e * ln2 - ln_m
}

fn reference_rendezvous(set: &[Backend<()>], key: &str) -> String {
    let members = sorted(set);
    let h = key_hash(key.as_bytes());
    // best (weighted value, raw score, index): higher value, then higher score, then smaller id
    let mut best: Option<(f64, u64, usize)> = None;
    for (i, (id, w)) in members.iter().enumerate() {
        if *w == 0 {
            continue;
        }
        let s = mix(h, id_hash(id));
        let v = f64::from(*w) / reference_neg_ln(s);
        let better = match best {
            None => true,
            Some((bv, bs, _)) => v > bv || (v == bv && s > bs),
        };
        if better {
            best = Some((v, s, i));
        }
    }
    members[best.unwrap().2].0.clone()
}

fn reference_jump(set: &[Backend<()>], key: &str) -> String {
    // No member is ineligible here except weight 0: probe as the docs say.
    let h = key_hash(key.as_bytes());
    let n = set.len() as u32;
    for a in 0..8u64 {
        let k = if a == 0 { h } else { mix(h, a) };
        let b = &set[jump_hash(k, n) as usize];
        if b.weight() > 0 {
            return b.id().to_owned();
        }
    }
    let s = jump_hash(mix(h, 8), n) as usize;
    (s..set.len())
        .chain(0..s)
        .map(|i| &set[i])
        .find(|b| b.weight() > 0)
        .unwrap()
        .id()
        .to_owned()
}

#[test]
fn ring_follows_its_documented_derivation() {
    let keys = keys(3000);
    for per_weight in [1, 7, 160] {
        let lb = HashRing::builder()
            .points_per_weight(per_weight)
            .build(set())
            .unwrap();
        let reference = reference_ring(&set(), u64::from(per_weight));
        let want: Vec<String> = keys.iter().map(|k| reference(k)).collect();
        assert_eq!(map(&lb, &keys), want, "points per weight {per_weight}");
    }
}

#[test]
fn maglev_follows_its_documented_derivation() {
    let keys = keys(3000);
    for m in [11u32, 101, 5003] {
        let lb = Maglev::builder().table_size(m).build(set()).unwrap();
        let table = reference_maglev_table(&set(), u64::from(m));
        let want: Vec<String> = keys
            .iter()
            .map(|k| reference_maglev(&table, &set(), k))
            .collect();
        assert_eq!(map(&lb, &keys), want, "table size {m}");
    }
    // Equal weights take the round-robin path of the population: same definition.
    let equal: Vec<Backend<()>> = set().into_iter().map(|b| b.with_weight(2)).collect();
    let lb = Maglev::builder()
        .table_size(1009)
        .build(equal.clone())
        .unwrap();
    let table = reference_maglev_table(&equal, 1009);
    let want: Vec<String> = keys
        .iter()
        .map(|k| reference_maglev(&table, &equal, k))
        .collect();
    assert_eq!(map(&lb, &keys), want);
}

#[test]
fn rendezvous_follows_its_documented_derivation() {
    let keys = keys(3000);
    let lb = Rendezvous::new(set()).unwrap();
    let want: Vec<String> = keys
        .iter()
        .map(|k| reference_rendezvous(&set(), k))
        .collect();
    assert_eq!(map(&lb, &keys), want);
}

#[test]
fn jump_follows_its_documented_derivation() {
    let keys = keys(3000);
    let lb = JumpHash::new(set()).unwrap();
    let want: Vec<String> = keys.iter().map(|k| reference_jump(&set(), k)).collect();
    assert_eq!(map(&lb, &keys), want);
}

// ---- golden outputs ----

/// The first 12 keys as ids, and a fingerprint of 20,000 keys' ids (the pinned key hash of
/// the ids joined by newlines), so that moving even one key in 20,000 fails.
fn golden_of(lb: &dyn Balancer<()>) -> (Vec<String>, u64) {
    let all = map(lb, &keys(20_000));
    (all[..12].to_vec(), key_hash(all.join("\n").as_bytes()))
}

fn check(lb: &dyn Balancer<()>, golden: ([&str; 12], u64)) {
    let (first, fingerprint) = golden_of(lb);
    assert_eq!(
        (first, format!("{fingerprint:016x}")),
        (
            golden.0.map(String::from).to_vec(),
            format!("{:016x}", golden.1)
        )
    );
}

#[test]
fn golden_ring() {
    check(&HashRing::new(set()).unwrap(), GOLDEN_RING);
}

#[test]
fn golden_maglev() {
    check(&Maglev::new(set()).unwrap(), GOLDEN_MAGLEV);
}

#[test]
fn golden_rendezvous() {
    check(&Rendezvous::new(set()).unwrap(), GOLDEN_RENDEZVOUS);
}

#[test]
fn golden_jump() {
    check(&JumpHash::new(set()).unwrap(), GOLDEN_JUMP);
}

const GOLDEN_RING: ([&str; 12], u64) = (
    [
        "10.0.0.6:8080",
        "10.0.0.2:8080",
        "10.0.0.4:8080",
        "10.0.0.2:8080",
        "10.0.0.8:8080",
        "10.0.0.3:8080",
        "10.0.0.5:8080",
        "10.0.0.8:8080",
        "10.0.0.7:8080",
        "10.0.0.7:8080",
        "10.0.0.3:8080",
        "10.0.0.8:8080",
    ],
    0xd1f7_292c_f14b_a1b7,
);
const GOLDEN_MAGLEV: ([&str; 12], u64) = (
    [
        "10.0.0.7:8080",
        "10.0.0.6:8080",
        "10.0.0.5:8080",
        "10.0.0.2:8080",
        "10.0.0.8:8080",
        "10.0.0.5:8080",
        "10.0.0.5:8080",
        "10.0.0.6:8080",
        "10.0.0.5:8080",
        "10.0.0.2:8080",
        "10.0.0.2:8080",
        "10.0.0.4:8080",
    ],
    0x31c3_3063_774f_c81f,
);
const GOLDEN_RENDEZVOUS: ([&str; 12], u64) = (
    [
        "10.0.0.2:8080",
        "10.0.0.8:8080",
        "10.0.0.2:8080",
        "10.0.0.2:8080",
        "10.0.0.3:8080",
        "10.0.0.5:8080",
        "10.0.0.7:8080",
        "10.0.0.2:8080",
        "10.0.0.2:8080",
        "10.0.0.2:8080",
        "10.0.0.5:8080",
        "10.0.0.6:8080",
    ],
    0x26af_80aa_2f80_c1b6,
);
const GOLDEN_JUMP: ([&str; 12], u64) = (
    [
        "10.0.0.10:8080",
        "10.0.0.1:8080",
        "10.0.0.5:8080",
        "10.0.0.2:8080",
        "10.0.0.10:8080",
        "10.0.0.6:8080",
        "10.0.0.5:8080",
        "10.0.0.6:8080",
        "10.0.0.1:8080",
        "10.0.0.3:8080",
        "10.0.0.7:8080",
        "10.0.0.3:8080",
    ],
    0xdf05_a98e_4ce8_3a21,
);
