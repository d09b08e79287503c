//! Maglev hashing (Eisenbud et al., *Maglev: A Fast and Reliable Software Network Load
//! Balancer*, NSDI 2016; Envoy's `MAGLEV`).
//!
//! # Algorithm
//!
//! A lookup table of prime size `M` (default [`DEFAULT_TABLE_SIZE`] = 65537, Envoy's) holds a
//! backend in every slot; a key goes to the backend in slot `h mod M`, one memory access.
//! Each backend has its own permutation of the slots, `(offset + j x skip) mod M`, and the
//! backends take turns claiming the next free slot of their permutation until the table is
//! full. Equal backends end up with `floor(M/n)` or `ceil(M/n)` slots each: near-perfect
//! balance. Removing or adding a backend changes mostly the slots it loses or gains, but not
//! only those: Maglev trades exact minimal disruption for balance and O(1) lookups. Measured
//! (tests/hashing_balance.rs, M = 65537, 1M keys): removing one of 100 equal backends moves
//! 1.58% of the keys where 1.01% (its own) is the least possible, adding one moves 1.57%
//! (0.99% to it); at 1000 backends, removing one moves 0.69% against 0.11%, adding one
//! 0.67% against 0.10%: about 0.56% of the keys move between backends that stayed.
//!
//! **Weights**: as in Envoy's weighted Maglev, heavier backends take more turns. Turns go in
//! order of each backend's next virtual finishing time `(taken + 1) / w`, ties to the
//! smaller id (the D'Hondt order), so a backend of weight `w` ends with between
//! `q - 1` and `q + k x w / W` slots, `q = M x w / W` being its exact share and `k` the
//! number of backends: within a slot or two of its share for a set much smaller than `M`.
//! With equal weights this is exactly the paper's round robin over the backends in id
//! order, and every backend gets `floor(M / k)` or `ceil(M / k)` slots. Backends of weight
//! 0 claim no slot.
//!
//! A key whose slot holds an ineligible backend (down, draining), or one at capacity with
//! bounded loads, walks on along a fixed sequence (below); `pick_n` takes the distinct
//! backends met along it.
//!
//! # Exact derivation
//!
//! * Backends are ordered by id (byte-wise); only those of weight above 0 take part.
//! * For the backend with id `id`, with `g = id_hash(id)` ([`id_hash`](crate::hash::id_hash)):
//!   `offset = mix(g, 0) mod M`, `skip = mix(g, 1) mod (M - 1) + 1`
//!   ([`mix`]); its `j`-th preferred slot is `(offset + j x skip) mod M`.
//! * Population: repeatedly, the backend with the smallest `(taken + 1) / w` (compared
//!   exactly as `(taken_a + 1) x w_b < (taken_b + 1) x w_a`; ties to the smaller id) takes
//!   its next preferred slot that is still free, until all `M` slots are taken.
//! * Lookup of key hash `h` ([`key_hash`](crate::hash::key_hash) of the key's bytes or the
//!   caller's hash): probe `a = 0, 1, ..., 7` looks at slot `floor(k_a x M / 2^64)` with
//!   `k_0 = h` and `k_a = mix(h, a)`; the first eligible backend wins. If none, the backends
//!   in id order from position `floor(mix(h, 8) x n / 2^64)` on, wrapping (`n` = number of
//!   backends, all weights), until an eligible one: every backend is reached.
//!
//! # Cost
//!
//! * **Pick**: O(1): one multiply-shift and one load from the table (256 KB at the default
//!   size, cache resident under load), more only when the slot's backend is ineligible.
//! * **Update**: O(M log M) expected slot probes (the free slots get rare at the end of the
//!   population; the last `sqrt(M) / 2` claims scan the free slots instead), plus
//!   `O(M log k)` for the turn order over `k` distinct weights (a heap of weight classes).
//!   At the default size and 100 backends, weights 1 to 4 cost about twice equal weights
//!   (`cargo bench --bench hashing`, group `rebuild/100`: `lbkit/maglev` and
//!   `lbkit/maglev-weighted`; figures in `benches/README.md`).
//! * **Memory**: `4 x M` bytes (256 KB at the default).
//!
//! # When to choose it
//!
//! When lookups must be O(1) and fast at any size and balance must be tight (under 1% of
//! table imbalance with `M > 100 x n`), and a little extra key movement on membership change
//! is acceptable (connection affinity in L4 balancers, caches that tolerate some misses).
//! Take a larger prime `M` for thousands of backends.

use crate::backend::Backend;
use crate::builder::{Builder, LoadBounded, Seedable};
use crate::engine::core::{impl_balancer, Core};
use crate::engine::sequence::uniform;
use crate::error::Error;
use crate::hash::is_prime;
use crate::hash::walk::{count_owners, Hashed, Node, Placement, Preference};
use crate::placement::mix;

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Table size unless configured: Envoy's 65537, enough for about 650 backends at under 1%
/// imbalance.
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;

/// The largest table size accepted: 2^24 slots (64 MB).
pub const TABLE_SIZE_LIMIT: u32 = 1 << 24;

/// Maglev hashing: a prime-sized lookup table, O(1) per pick, weighted.
///
/// See the [module docs](crate::hash::maglev) for the exact placement.
///
/// ```
/// use lbkit::{Backend, Balancer, Health, Maglev, Request};
/// let lb = Maglev::new(["a", "b", "c"].map(|id| Backend::new(id, ())))?;
/// let home = lb.pick(&Request::with_key("user-42")).unwrap().id().to_owned();
/// lb.set_health(&home, Health::Down)?;
/// let other = lb.pick(&Request::with_key("user-42")).unwrap().id().to_owned();
/// assert_ne!(home, other); // walked on to the next preference
/// lb.set_health(&home, Health::Up)?;
/// assert_eq!(lb.pick(&Request::with_key("user-42")).unwrap().id(), home); // and back
/// # Ok::<(), lbkit::Error>(())
/// ```
pub struct Maglev<T> {
    core: Core<T, Hashed<MaglevPlacement>>,
}

impl<T: Send + Sync + 'static> Maglev<T> {
    /// A Maglev balancer with a table of [`DEFAULT_TABLE_SIZE`] slots, no load bound (the
    /// same as `Maglev::builder().build(backends)`).
    ///
    /// # Errors
    /// [`Error::EmptyId`], [`Error::DuplicateId`], [`Error::TooManyBackends`], and
    /// [`Error::InvalidConfig`] (`"table_size"`) if the set has more backends than the
    /// table has slots or for a backend's `max_in_flight` of 0. Updates fail the same way,
    /// and then change nothing.
    pub fn new(backends: impl IntoIterator<Item = Backend<T>>) -> Result<Self, Error> {
        Builder::new(MaglevConfig::default()).build(backends)
    }

    /// As [`Maglev::new`], with the random spread of requests without a key seeded: the
    /// shortcut for `Maglev::builder().seed(seed).build(backends)`.
    ///
    /// # Errors
    /// As [`Maglev::new`].
    pub fn with_seed(
        backends: impl IntoIterator<Item = Backend<T>>,
        seed: u64,
    ) -> Result<Self, Error> {
        Builder::new(MaglevConfig::default())
            .seed(seed)
            .build(backends)
    }
}

impl Maglev<()> {
    /// A builder to set the table size, a load factor, a seed or passive health; its `build`
    /// makes a `Maglev<T>` of any `T` (an associated function of `Maglev<()>` only so that
    /// `Maglev::builder()` needs no type annotation).
    ///
    /// ```
    /// use lbkit::{Backend, Error, Maglev};
    /// let lb = Maglev::builder()
    ///     .table_size(5003)
    ///     .load_factor(1.5)
    ///     .build([Backend::new("a", ()), Backend::new("b", ())])?;
    /// # let _ = lb;
    /// let not_prime = Maglev::builder().table_size(65536).build(Vec::<Backend<()>>::new());
    /// assert!(matches!(not_prime, Err(Error::InvalidConfig { parameter: "table_size", .. })));
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    pub fn builder() -> Builder<MaglevConfig> {
        Builder::new(MaglevConfig::default())
    }
}

impl_balancer!(Maglev);

/// The configuration of [`Maglev`], the type parameter of [`Maglev::builder`]'s [`Builder`]:
/// the table size ([`Builder::table_size`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MaglevConfig {
    table_size: u32,
}

impl Default for MaglevConfig {
    fn default() -> Self {
        MaglevConfig {
            table_size: DEFAULT_TABLE_SIZE,
        }
    }
}

impl Seedable for MaglevConfig {}
impl LoadBounded for MaglevConfig {}

impl Builder<MaglevConfig> {
    /// The table size `M`: a prime, at least the number of backends, at most
    /// [`TABLE_SIZE_LIMIT`]. Balance needs `M` well above the number of backends (the
    /// paper: `M > 100 x n` for under 1% imbalance).
    pub fn table_size(mut self, size: u32) -> Self {
        self.config.table_size = size;
        self
    }

    /// Builds the balancer over `backends`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `table_size` (not a prime, above [`TABLE_SIZE_LIMIT`],
    /// or below the number of backends), `load_factor` (below 1, NaN, infinite) or a health
    /// rule, and those of [`Maglev::new`].
    pub fn build<T: Send + Sync + 'static>(
        self,
        backends: impl IntoIterator<Item = Backend<T>>,
    ) -> Result<Maglev<T>, Error> {
        let size = self.config.table_size;
        if size > TABLE_SIZE_LIMIT {
            return Err(Error::config(
                "table_size",
                format!("{size} is above the limit of {TABLE_SIZE_LIMIT}"),
            ));
        }
        if !is_prime(size) {
            return Err(Error::config(
                "table_size",
                format!("{size} is not a prime"),
            ));
        }
        let policy = self.hashed(MaglevPlacement { size })?;
        Ok(Maglev {
            core: self.core(policy, backends)?,
        })
    }
}

/// Trial division: `n <= 2^24`, so at most 2048 odd divisors.
pub(crate) struct MaglevPlacement {
    size: u32,
}

impl Placement for MaglevPlacement {
    type Table = Table;

    fn build(&self, members: &[Node]) -> Result<Table, Error> {
        if members.len() > self.size as usize {
            return Err(Error::config(
                "table_size",
                format!("{} slots cannot hold {} backends", self.size, members.len()),
            ));
        }
        Ok(Table::new(members, self.size))
    }
}

/// The lookup table: slot -> member index.
pub(crate) struct Table {
    /// Empty when no member has a weight above 0.
    slots: Box<[u32]>,
    /// Number of members (all weights), for the last-resort walk.
    members: usize,
}

/// One backend while the table fills.
struct Filler {
    index: u32,
    /// Its next preferred slot, and its step.
    next: u64,
    skip: u64,
    /// `skip`'s inverse modulo the table size, once needed (0: not yet).
    inverse: u64,
}

/// The table being filled.
///
/// Claims probe each backend's permutation for a free slot, which gets slow at the end
/// (`M / F` probes per claim with `F` slots free: most of the `M ln M` probes of the whole
/// population). So once `F` drops to `sqrt(M) / 2`, a claim instead looks at every free
/// slot `s` and computes how far along the permutation it lies,
/// `((s - next) mod M) x skip^-1 mod M`, and takes the nearest: the same slot the probes
/// would reach (every slot before it along the permutation is taken, and taken slots stay
/// taken), at the cost of `F` multiplications instead of `M / F` probes.
struct Fill {
    slots: Vec<u32>,
    /// A bit per slot, set when taken (8 KB at the default size: the probes hit L1).
    taken: Vec<u64>,
    size: u64,
    /// Slots still free.
    free_count: usize,
    /// From `free_count <= scan_below` on, the free slots, and claims scan them.
    scan_below: usize,
    free: Vec<u32>,
}

impl Fill {
    fn new(size: u32) -> Fill {
        Fill {
            slots: vec![0; size as usize],
            taken: vec![0; (size as usize).div_ceil(64)],
            size: u64::from(size),
            free_count: size as usize,
            // Only speed depends on this threshold, never the table.
            scan_below: ((f64::from(size).sqrt() / 2.0) as usize).max(1),
            free: Vec::new(),
        }
    }

    /// Gives `f` the next free slot of its permutation.
    #[inline]
    fn claim(&mut self, f: &mut Filler) {
        let slot = if self.free_count > self.scan_below {
            self.probe(f)
        } else {
            self.scan(f)
        };
        self.slots[slot] = f.index;
        self.free_count -= 1;
    }

    #[inline]
    fn probe(&mut self, f: &mut Filler) -> usize {
        loop {
            let slot = f.next as usize;
            f.next += f.skip;
            if f.next >= self.size {
                f.next -= self.size;
            }
            let (word, bit) = (slot / 64, 1u64 << (slot % 64));
            if self.taken[word] & bit == 0 {
                self.taken[word] |= bit;
                return slot;
            }
        }
    }

    fn scan(&mut self, f: &mut Filler) -> usize {
        if self.free.len() != self.free_count {
            // First scan: list the free slots once.
            self.free = (0..self.size as u32)
                .filter(|&s| self.taken[s as usize / 64] & (1 << (s % 64)) == 0)
                .collect();
        }
        if f.inverse == 0 {
            // The size is prime: skip^(M - 2) = skip^-1 (Fermat).
            f.inverse = power_mod(f.skip, self.size - 2, self.size);
        }
        let (mut nearest, mut distance) = (0, u64::MAX);
        for (at, &s) in self.free.iter().enumerate() {
            let mut diff = u64::from(s) + self.size - f.next;
            if diff >= self.size {
                diff -= self.size;
            }
            // Both below 2^24: the product fits.
            let d = diff * f.inverse % self.size;
            if d < distance {
                (nearest, distance) = (at, d);
            }
        }
        let slot = self.free.swap_remove(nearest) as u64;
        f.next = slot + f.skip;
        if f.next >= self.size {
            f.next -= self.size;
        }
        slot as usize
    }
}

/// `base^exp mod m`, for `m < 2^32`.
fn power_mod(mut base: u64, mut exp: u64, m: u64) -> u64 {
    let mut result = 1 % m;
    base %= m;
    while exp > 0 {
        if exp & 1 == 1 {
            result = result * base % m;
        }
        base = base * base % m;
        exp >>= 1;
    }
    result
}

/// The turns of one weight class: its members (positions in the fillers, in id order) take
/// their `round`-th turns one after the other, at virtual time `round / weight`.
struct Turn {
    round: u64,
    weight: u64,
    class: usize,
    /// Position, in the class, of the member whose turn is next.
    at: usize,
    /// That member's index (the tie-break between classes).
    member: u32,
}

/// The earliest virtual time first, then the smallest member index: merging the classes
/// gives every member's `k`-th turn at time `k / w` in (time, index) order, exactly the
/// order of the module docs. Reversed for `BinaryHeap`, a max-heap.
impl Ord for Turn {
    fn cmp(&self, other: &Self) -> Ordering {
        // round <= M <= 2^24 and weights < 2^32: the products fit in 64 bits.
        let mine = self.round * other.weight;
        let theirs = other.round * self.weight;
        theirs
            .cmp(&mine)
            .then_with(|| other.member.cmp(&self.member))
    }
}

impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Turn {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Turn {}

impl Table {
    fn new(members: &[Node], size: u32) -> Table {
        Table::populate(members, Fill::new(size))
    }

    fn populate(members: &[Node], mut fill: Fill) -> Table {
        let size = fill.size;
        let mut fillers: Vec<Filler> = Vec::new();
        // Weight classes: (weight, positions in `fillers`), each in id order.
        let mut classes: Vec<(u32, Vec<usize>)> = Vec::new();
        for (index, m) in members.iter().enumerate().filter(|(_, m)| m.weight > 0) {
            match classes.iter_mut().find(|(w, _)| *w == m.weight) {
                Some((_, class)) => class.push(fillers.len()),
                None => classes.push((m.weight, vec![fillers.len()])),
            }
            fillers.push(Filler {
                // index < members.len() <= size <= 2^24.
                index: index as u32,
                next: mix(m.id_hash, 0) % size,
                skip: mix(m.id_hash, 1) % (size - 1) + 1,
                inverse: 0,
            });
        }
        if fillers.is_empty() {
            return Table {
                slots: Box::default(),
                members: members.len(),
            };
        }
        if classes.len() == 1 {
            // One class: the turns are plain round robin in id order.
            'fill: loop {
                for f in fillers.iter_mut() {
                    fill.claim(f);
                    if fill.free_count == 0 {
                        break 'fill;
                    }
                }
            }
            return Table {
                slots: fill.slots.into(),
                members: members.len(),
            };
        }
        let mut turns: BinaryHeap<Turn> = classes
            .iter()
            .enumerate()
            .map(|(class, (weight, positions))| Turn {
                round: 1,
                weight: u64::from(*weight),
                class,
                at: 0,
                member: fillers[positions[0]].index,
            })
            .collect();
        while fill.free_count > 0 {
            // Re-sifted once when the guard drops (not at all with one class).
            let mut turn = turns.peek_mut().expect("at least one class takes turns");
            let positions = &classes[turn.class].1;
            fill.claim(&mut fillers[positions[turn.at]]);
            turn.at += 1;
            if turn.at == positions.len() {
                turn.at = 0;
                turn.round += 1;
            }
            turn.member = fillers[positions[turn.at]].index;
        }
        Table {
            slots: fill.slots.into(),
            members: members.len(),
        }
    }
}

/// Probes of the table before the last-resort walk.
const PROBES: u64 = 8;

impl Preference for Table {
    #[inline]
    fn first(&self, key: u64, mut accept: impl FnMut(usize) -> bool) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        for attempt in 0..PROBES {
            let k = if attempt == 0 { key } else { mix(key, attempt) };
            let member = self.slots[uniform(k, self.slots.len()).0] as usize;
            if accept(member) {
                return Some(member);
            }
        }
        let start = uniform(mix(key, PROBES), self.members).0;
        (start..self.members).chain(0..start).find(|&m| accept(m))
    }

    /// The slots each member owns, in one pass over the table (all zeros when no member
    /// has a weight above 0 and the table is empty).
    fn shares(&self, members: usize) -> Option<Vec<u64>> {
        Some(count_owners(self.slots.iter().copied(), members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot_counts(table: &Table, n: usize) -> Vec<usize> {
        let mut counts = vec![0; n];
        for &s in table.slots.iter() {
            counts[s as usize] += 1;
        }
        counts
    }

    #[test]
    fn power_mod_inverts() {
        for m in [3u64, 11, 5003, 65_537, 16_777_213] {
            for x in [1, 2, m - 1, m / 2 + 1] {
                assert_eq!(x * power_mod(x, m - 2, m) % m, 1);
            }
        }
    }

    /// The end-phase scan gives exactly the slots that probing would.
    #[test]
    fn scanning_claims_what_probing_would() {
        for size in [11u32, 101, 1009, 5003] {
            for weights in [vec![1; 7], vec![1, 2, 3, 1, 5], vec![0, 4, 4, 1]] {
                let ms = Node::numbered(&weights);
                let mut probing = Fill::new(size);
                probing.scan_below = 0;
                let probed = Table::populate(&ms, probing);
                assert_eq!(Table::new(&ms, size).slots, probed.slots, "size {size}");
            }
        }
    }

    #[test]
    fn primes() {
        let small: Vec<u32> = (0..30).filter(|&n| is_prime(n)).collect();
        assert_eq!(small, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert!(is_prime(65_537));
        assert!(is_prime(5003));
        assert!(!is_prime(65_536));
        assert!(is_prime(65_539));
        assert!(!is_prime(65_541)); // 3 x 21847
        assert!(is_prime(16_777_213)); // largest prime below 2^24
        assert!(!is_prime(16_777_215));
    }

    #[test]
    fn equal_weights_share_slots_to_within_one() {
        let table = Table::new(&Node::numbered(&[1; 100]), 65_537);
        let counts = slot_counts(&table, 100);
        assert!(counts.iter().all(|&c| c == 655 || c == 656), "{counts:?}");
        assert_eq!(counts.iter().sum::<usize>(), 65_537);
        let shares = table.shares(100).unwrap();
        assert!(shares.iter().zip(&counts).all(|(&s, &c)| s == c as u64));
    }

    #[test]
    fn an_empty_table_shares_nothing() {
        let table = Table::new(&Node::numbered(&[0, 0, 0]), 7);
        assert_eq!(table.shares(3), Some(vec![0, 0, 0]));
    }

    #[test]
    fn weighted_shares_are_within_the_documented_bounds() {
        for (size, weights) in [
            (65_537, vec![1, 2, 3, 0, 10, 7]),
            (101, vec![1, 1, 1, 1, 1, 1, 1, 1, 50]),
            (1009, vec![3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]),
        ] {
            let table = Table::new(&Node::numbered(&weights), size);
            let counts = slot_counts(&table, weights.len());
            let total = f64::from(weights.iter().sum::<u32>());
            let k = weights.iter().filter(|&&w| w > 0).count() as f64;
            for (&c, &w) in counts.iter().zip(&weights) {
                if w == 0 {
                    assert_eq!(c, 0);
                    continue;
                }
                let share = f64::from(w) / total;
                let q = f64::from(size) * share;
                assert!(
                    c as f64 > q - 1.0 && (c as f64) < q + k * share,
                    "{counts:?}"
                );
            }
        }
    }

    #[test]
    fn too_small_a_table_is_an_error() {
        let placement = MaglevPlacement { size: 3 };
        assert!(placement.build(&Node::numbered(&[1, 1, 1])).is_ok());
        assert!(matches!(
            placement.build(&Node::numbered(&[1, 1, 1, 0])),
            Err(Error::InvalidConfig {
                parameter: "table_size",
                ..
            })
        ));
    }

    #[test]
    fn walk_reaches_every_member() {
        let table = Table::new(&Node::numbered(&[1, 0, 1, 1, 0]), 7);
        for key in 0..20 {
            let mut seen = [false; 5];
            assert_eq!(
                table.first(key, |m| {
                    seen[m] = true;
                    false
                }),
                None
            );
            assert!(seen.iter().all(|&s| s));
        }
    }
}
