//! What a caller tells the balancer about one request.

use crate::hash::key_hash;

/// The request being routed: optionally, the key that decides its placement.
///
/// Request-spreading policies (round robin, least connections, P2C, ...) ignore the key.
/// Hashing policies map it to a backend, so that the same key goes to the same backend while
/// the set allows; a request without a key is spread at random by them.
///
/// The key is either bytes, hashed with the crate's pinned placement hash
/// ([`hash::key_hash`](crate::hash::key_hash)), or a 64-bit hash the caller computed itself.
///
/// ```
/// use lbkit::Request;
/// let by_bytes = Request::with_key("user-42");
/// let by_hash = Request::with_hash(0xfeed);
/// assert_eq!(by_bytes.key_hash(), Some(lbkit::hash::key_hash(b"user-42")));
/// assert_eq!(by_hash.key_hash(), Some(0xfeed));
/// assert_eq!(Request::new().key_hash(), None);
/// ```
///
/// # Steering
///
/// A request can also steer the choice, for every policy:
///
/// * [`avoid`](Request::avoid): ids not to return while another backend can take the
///   request (a retry avoiding the backends already tried).
/// * [`prefer`](Request::prefer): an id to return if it can still serve (a sticky session).
///
/// # Work
///
/// A request can say how much work it is ([`cost`](Request::cost), 1 by default): its pick
/// holds that many units, so least connections, the two-choice policies and bounded loads
/// balance outstanding work rather than requests.
///
/// `Request` is `Copy` and 64 bytes on 64-bit targets (the key, two borrowed slices and the
/// cost).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    key: Key<'a>,
    /// Ids not to return while another eligible backend with room exists; empty for none.
    avoid: &'a [&'a str],
    /// The id to return if it can serve; empty for none (ids are never empty).
    prefer: &'a str,
    /// Units of work the pick holds, in `1..=MAX_COST`.
    cost: u32,
    /// Whether choosing counts a bounded-loads spill; `false` for the groups after the first
    /// that a tiered `pick_n` asks, for the tower `Balance`'s second look at a request whose
    /// first pick counted it already, and for its looks at the eligible backends, which route
    /// nothing.
    count_spills: bool,
}

/// The most work one request may hold: 2^20 units (see [`Request::cost`]).
pub const MAX_COST: u32 = 1 << 20;

impl Default for Request<'_> {
    fn default() -> Self {
        Request::new()
    }
}

#[derive(Debug, Clone, Copy, Default)]
enum Key<'a> {
    #[default]
    None,
    Bytes(&'a [u8]),
    Hash(u64),
    /// The hash a hashing policy's placement already computed from the key (so that a pick
    /// that chose a priority level from it does not hash the key again). Only ever made
    /// inside the crate, by [`Request::placed`], and read by that same policy.
    Placed(u64),
}

impl<'a> Request<'a> {
    /// A request with no key.
    pub fn new() -> Self {
        Request {
            key: Key::None,
            avoid: &[],
            prefer: "",
            cost: 1,
            count_spills: true,
        }
    }

    /// A request keyed by bytes (a user id, a session, a URL, a cache key).
    pub fn with_key<K: AsRef<[u8]> + ?Sized>(key: &'a K) -> Self {
        Request {
            key: Key::Bytes(key.as_ref()),
            ..Request::new()
        }
    }

    /// A request keyed by a 64-bit hash the caller already computed.
    ///
    /// Use this when the key is not bytes at hand, or to share one hash between several
    /// balancers. The hash is used as it is: give a well-mixed value.
    pub fn with_hash(hash: u64) -> Self {
        Request {
            key: Key::Hash(hash),
            ..Request::new()
        }
    }

    /// The same request, avoiding the backends with these ids: none of them is returned while
    /// an eligible backend not in the list has room for it. For a retry, pass the ids already
    /// tried.
    ///
    /// * Request-spreading policies choose among the others in their own way (round robin
    ///   takes the next in turn, random and the two-choice policies draw again, least
    ///   connections leaves them out of its scan).
    /// * Hashing policies walk past an avoided backend as past an ineligible one, for this
    ///   request only: the key takes its next preference, and no other key moves.
    /// * When every eligible backend with room is in the list, the list is ignored and the
    ///   request goes where it would have gone without it (as Envoy's `previous_hosts` retry
    ///   predicate gives up after its attempts): a retry is better sent again than dropped.
    /// * [`pick_n`](crate::Balancer::pick_n) returns the backends not in the list first, in
    ///   the policy's order, and those in the list only after all of them.
    /// * Ids not in the set are ignored. `avoid` wins over [`prefer`](Request::prefer).
    ///
    /// Cost: nothing is allocated. Each id (up to 8; a longer list compares the rest as
    /// strings) is hashed once per pick, and each candidate the policy considers is
    /// compared with those hashes (the candidates' own are precomputed with the set), its id
    /// only when a hash matches. `cargo bench --bench pick -- steering` measures it.
    ///
    /// ```
    /// use lbkit::{Backend, Balancer, Request, RoundRobin};
    /// let lb = RoundRobin::new(["a", "b", "c"].map(|id| Backend::new(id, ())))?;
    /// let tried = ["a", "b"];
    /// for _ in 0..10 {
    ///     assert_eq!(lb.pick(&Request::new().avoid(&tried)).unwrap().id(), "c");
    /// }
    /// // Everything avoided: the list is ignored rather than the request dropped.
    /// assert!(lb.pick(&Request::new().avoid(&["a", "b", "c"])).is_some());
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    #[must_use]
    pub fn avoid(mut self, ids: &'a [&'a str]) -> Self {
        self.avoid = ids;
        self
    }

    /// The same request, preferring the backend with this id: it is returned, whatever the
    /// policy would choose, if it is in the set, below its
    /// [`max_in_flight`](crate::Backend::with_max_in_flight) cap, not in the
    /// [`avoid`](Request::avoid) list, and either `Up` and not ejected, or being drained
    /// ([`Health::Draining`](crate::Health::Draining) or weight 0: sessions stay on a
    /// draining backend until they end, as gRPC's stateful session affinity, gRFC A55, keeps
    /// them). A backend that is `Down` or ejected is not returned: the policy then chooses as
    /// if no preference were given, and the caller learns the new backend from the pick (to
    /// update its sticky cookie, say). An id not in the set is simply not honoured.
    ///
    /// Cost: one binary search over the set by id, then the pick itself.
    ///
    /// ```
    /// use lbkit::{Backend, Balancer, Health, Request, RoundRobin};
    /// let lb = RoundRobin::new(["a", "b", "c"].map(|id| Backend::new(id, ())))?;
    /// let sticky = Request::new().prefer("b");
    /// assert_eq!(lb.pick(&sticky).unwrap().id(), "b");
    /// lb.set_health("b", Health::Draining)?; // still serves its sessions
    /// assert_eq!(lb.pick(&sticky).unwrap().id(), "b");
    /// lb.set_health("b", Health::Down)?; // gone: another backend takes the session
    /// assert_ne!(lb.pick(&sticky).unwrap().id(), "b");
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    #[must_use]
    pub fn prefer(mut self, id: &'a str) -> Self {
        self.prefer = id;
        self
    }

    /// The same request, holding `cost` units of work while its pick is held (1 by default;
    /// 0 counts as 1 and above [`MAX_COST`] as `MAX_COST`: every request holds some work,
    /// and no sum of them can overflow a backend's count).
    ///
    /// Requests differ in size by orders of magnitude (a prompt of ten tokens or of ten
    /// thousand, a batch of one or of a million rows); counting each as one makes a backend
    /// with a few huge requests look idle. With costs, the load every load-aware policy sees
    /// is the work its picks hold: [`LeastConnections`](crate::LeastConnections),
    /// [`PowerOfTwoChoices`](crate::PowerOfTwoChoices) and [`PeakEwma`](crate::PeakEwma)
    /// compare outstanding work per unit of weight, bounded loads bound it, a
    /// [`max_in_flight`](crate::Backend::with_max_in_flight) cap caps it (a request whose cost
    /// does not fit under the cap is not given that backend), and
    /// [`Status::in_flight`](crate::Status::in_flight) reports it. The accounting stays exact:
    /// the pick adds its cost and gives back exactly that, in the same atomic word.
    ///
    /// **When to give costs.** Work held is the right load where a backend's requests share
    /// one resource in proportion to their size: one worker, a GPU batching tokens, a disk. Where
    /// a backend serves many requests at once on separate workers, a huge request occupies one
    /// worker only, but counts as many small ones, so the load-aware policies starve a backend
    /// whose other workers are free: in `cargo run --release --example simulate -- --pareto`
    /// (Pareto-sized requests, 80% load), costs cut least connections' p99 from 127 to 95 ms
    /// with one worker per backend and raise it from 79 to 401 ms with eight. There, count
    /// requests (no cost), or let backends report what is queued beyond their free workers
    /// ([`LoadReport::load`](crate::LoadReport::load) with
    /// [`LoadSignal::Reported`](crate::LoadSignal::Reported), for the policies that take a
    /// load signal: least connections, P2C and Prequal): only a backend knows which of its
    /// workers are free.
    ///
    /// ```
    /// use lbkit::{Backend, Balancer, LeastConnections, Request};
    /// let lb = LeastConnections::new([Backend::new("a", ()), Backend::new("b", ())])?;
    /// let big = lb.pick(&Request::new().cost(100)).unwrap();
    /// // The other backend takes the next 100 small requests.
    /// let small: Vec<_> = (0..100).map(|_| lb.pick(&Request::new()).unwrap()).collect();
    /// assert!(small.iter().all(|p| p.id() != big.id()));
    /// assert_eq!(lb.status().iter().map(|s| s.in_flight()).sum::<usize>(), 200);
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    #[must_use]
    pub fn cost(mut self, cost: u32) -> Self {
        self.cost = cost.clamp(1, MAX_COST);
        self
    }

    /// The units of work the request's pick holds (see [`cost`](Request::cost)).
    pub fn work(&self) -> u32 {
        self.cost
    }

    /// The ids given to [`avoid`](Request::avoid) (empty if none).
    pub fn avoided(&self) -> &'a [&'a str] {
        self.avoid
    }

    /// The id given to [`prefer`](Request::prefer), if any.
    pub fn preferred(&self) -> Option<&'a str> {
        (!self.prefer.is_empty()).then_some(self.prefer)
    }

    /// Whether the request steers the choice (an avoid list or a preference).
    #[inline]
    pub(crate) fn is_steered(&self) -> bool {
        !self.avoid.is_empty() || !self.prefer.is_empty()
    }

    /// The key's bytes, if the request was keyed by bytes.
    pub fn key(&self) -> Option<&'a [u8]> {
        match self.key {
            Key::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The 64-bit placement hash of the key: the caller's hash, or the pinned hash of the
    /// key's bytes. `None` for a request without a key.
    pub fn key_hash(&self) -> Option<u64> {
        match self.key {
            Key::None => None,
            Key::Bytes(b) => Some(key_hash(b)),
            Key::Hash(h) | Key::Placed(h) => Some(h),
        }
    }

    /// The same request, its key replaced by `hash`, the placement hash a hashing policy
    /// computed from it ([`Request::placement_hash`] gives it back).
    #[inline]
    pub(crate) fn placed(&self, hash: u64) -> Self {
        Request {
            key: Key::Placed(hash),
            ..*self
        }
    }

    /// The same request, whose choice counts no bounded-loads spill (see `count_spills`).
    pub(crate) fn without_spill_count(self) -> Self {
        Request {
            count_spills: false,
            ..self
        }
    }

    /// Whether choosing for this request counts a bounded-loads spill.
    #[inline]
    pub(crate) fn counts_spills(&self) -> bool {
        self.count_spills
    }

    /// The placement hash given to [`Request::placed`], if this request came from it.
    #[inline]
    pub(crate) fn placement_hash(&self) -> Option<u64> {
        match self.key {
            Key::Placed(h) => Some(h),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The steering fields must keep `Request` a small `Copy` value.
    #[test]
    fn request_stays_small() {
        assert!(std::mem::size_of::<Request<'_>>() <= 8 * std::mem::size_of::<usize>());
    }
}
