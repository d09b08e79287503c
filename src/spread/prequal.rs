//! Prequal: hot-cold lexicographic choice among several probed backends (Wydrowski,
//! Kleinberg, Rumble, "Load is not what you should balance: Introducing Prequal", NSDI 2024;
//! deployed on YouTube).
//!
//! # The paper's algorithm
//!
//! Prequal sends each request where it expects the lowest latency, not where the load is
//! lowest. Clients probe servers asynchronously, keep a small pool of recent probe answers
//! (each a server's requests in flight, RIF, and its estimated latency), reuse each answer a
//! limited number of times and age it out. A query is placed by the *hot-cold lexicographic*
//! (HCL) rule: a probed server is *hot* if its RIF is above the `Q_RIF` quantile of the RIF
//! distribution; among the *cold* ones the lowest estimated latency wins; if every probed
//! server is hot, the lowest RIF wins. RIF is the guard that keeps a server from being
//! flooded; latency decides among the servers not flooded.
//!
//! What the paper's parameters are, as far as lbkit's sources go: the paper's abstract (arXiv
//! 2312.10172; research.google's page for the NSDI'24 paper) confirms the two signals, RIF
//! and latency, and the asynchronous, reused probes. A third-party write-up of the paper
//! (a blog post implementing it in Go, "go-prequel") names the HCL rule and reports `Q_RIF`
//! in [0.6, 0.9]. The rule's details as given above (strictly above the quantile; every
//! probe hot: the lowest RIF), the paper's pool size, probing rate, reuse budget and probe
//! age limit could not be checked against the paper's own text while writing this module,
//! so no figure here is attributed to the paper; the defaults below are chosen on their own
//! grounds, given with them.
//!
//! # What lbkit does: free probes, read live
//!
//! A probe costs nothing here: lbkit already holds each backend's exact RIF from this
//! client (the picks held, [`Status::in_flight`](crate::Status::in_flight)) and a latency
//! estimate (the peak EWMA that [`PeakEwma`](crate::PeakEwma) keeps, fed by
//! [`Pick::success`](crate::Pick::success), with the same `decay`, `default_latency` and
//! `failure_penalty`). So each pick draws `probes` distinct candidates (`d`, 8 by default;
//! all of them when the set is smaller), each with probability proportional to its effective
//! weight as [`PowerOfTwoChoices`](crate::PowerOfTwoChoices) draws, reads their values live,
//! and applies HCL to them:
//!
//! * **Load per unit of weight.** RIF is compared as in flight / weight, exactly (in
//!   integers: a/w_a < b/w_b as a x w_b < b x w_a), so a backend of weight 2 is as loaded
//!   with 4 requests as one of weight 1 with 2. Latency is compared as it is: a request's
//!   latency does not depend on how many others the backend could take.
//! * **Hot.** A candidate is hot if its load is strictly above the `quantile` (`Q_RIF`,
//!   0.75 by default) of the candidates' loads, taken as the candidate at rank
//!   floor(q x (m - 1)) in ascending order of m candidates (the "lower" quantile: with
//!   m = 8 and q = 0.75, the 6th lightest, so up to two candidates are hot; with m = 2, the
//!   lighter one, so the heavier is hot whenever it is strictly heavier).
//! * **Cold first.** Among cold candidates the lowest latency estimate wins, ties to the
//!   lower load, then to the earlier drawn (so ties fall at random, by weight). Hot ones come
//!   only after every cold one, by load, then latency.
//!
//! **Known limit: stale estimates of idle backends.** The paper's probes return each
//! server's latency estimate for its current RIF, fresh. Here a backend's estimate is what
//! its last answers taught, decaying over `decay` (10 s): a backend that went idle keeps a
//! high estimate until it decays, and HCL, which ranks cold candidates by latency alone,
//! does not send it traffic meanwhile (PeakEwma's cost, latency x (in flight + 1), prefers
//! an idle backend at once). Under a real 80% load this wastes enough capacity to build a
//! backlog: in the simulator without caches Prequal's p50 is about 0.45-1.5 s where P2C's
//! is 7-8 ms (`examples/simulate/README.md`, the Pareto section). With the cache (a lighter
//! real load) it has the best p99.9 of the load-report table. Until the estimate accounts
//! for the candidate's current RIF, prefer PeakEwma or P2C for a fleet run near capacity.
//!
//! **Server-side RIF.** This client's count is exact but sees only its own requests; the
//! paper's probes return the server's RIF from every client. Where servers can tell it (a
//! response trailer, a stream of load reports), feed it as [`LoadReport::load`](crate::LoadReport::load) and set
//! [`Builder::load_signal`]: [`LoadSignal::Reported`] compares the reported RIF (this
//! client's count breaking ties), [`LoadSignal::Combined`] adds the two. A reported figure
//! stands until the next one, so it ages as the paper's probes do between refreshes, but is
//! never dropped: report often, or combine it with the live count.
//!
//! Latency estimates are compared as their log scores (ln latency plus a time offset shared
//! by every backend), so the choice reads no clock and computes no `exp` or `ln`.
//!
//! Latency first means concentration where load does not push back: with one request at a
//! time nothing is ever hot, so every pick goes to the fastest backend among its candidates,
//! and the backends measured fastest take most of the traffic (100 equal backends, 10,000
//! picks dropped at once on the system clock, each teaching the microseconds it was held:
//! 61 of them picked, the busiest 3% of picks, against 98 and 1.5% for PeakEwma). That is
//! the intent; the RIF guard spreads load as requests overlap. A backend left unobserved is
//! tried again once the others' fresher estimates stand above its own decayed one, about
//! ln(its estimate / theirs) x `decay` later, as with PeakEwma.
//!
//! # Where this differs from the paper, and why
//!
//! * **No pool, no reuse, no aging.** The paper probes because a server's load lives on the
//!   server and costs a round trip to learn; it reuses and ages answers to bound that cost and
//!   their staleness. Here every value is read at the moment of the pick, so nothing is
//!   stale and there is nothing to reuse or age out. The price is `d` probes per pick instead
//!   of an amortised fraction of one: 2d relaxed atomic loads (in flight and latency score) on
//!   d backends' first cache lines. The RIF seen is this client's own, not the server's
//!   total across clients (as with every load-aware policy of lbkit): run one balancer per
//!   process, and, where clients are many, consider that a backend's RIF here is only its
//!   share from this one.
//! * **The quantile of the candidates.** The threshold is a quantile of the loads of this
//!   pick's own candidates, not of a distribution estimated over earlier probes. The
//!   lightest candidate is therefore never above it, so the paper's last case, every
//!   candidate hot, cannot arise in a pick: there is always a cold candidate. The rule is
//!   written in full all the same (and tested by hand with all candidates hot) so that a
//!   threshold from elsewhere would need no new code.
//!
//! # Defaults
//!
//! * `probes` = 8 (between 2 and [`MAX_PROBES`] = 16): with 8 candidates a quantile of 0.75
//!   can pass over up to two of them for load, while a pick reads 8 lines
//!   instead of P2C's 2 (`cargo bench --bench pick`, group `report/100`, `prequal/*` beside
//!   `peak-ewma/*`). More probes find the fastest cold backend more often and cost more per
//!   pick; fewer make the quantile coarse (with 2 or 3, only the heaviest can be hot).
//! * `quantile` = 0.75, inside the range the write-up above reports.
//! * `decay` 10 s, `default_latency` 10 ms, `failure_penalty` 5 s: PeakEwma's, with the same
//!   meaning (see [`peak_ewma`](crate::spread::peak_ewma)): a backend not yet observed starts
//!   at the default latency; a failure counts as at least the penalty, so a backend failing
//!   fast does not look fastest; a dropped pick counts the time it was held. Choices
//!   therefore depend on the clock: a seed replays them exactly only on a
//!   [`ManualClock`](crate::ManualClock).
//!
//! Cost: per pick, one atomic step of the random sequence, `d` alias draws (re-drawn on a
//! collision, a linear walk if the drawn ones carry most of the weight), 2d relaxed loads, a
//! sort of at most 16 entries, and no allocation; like PeakEwma's, a pick notes the time it
//! starts (one clock read), so that a pick dropped or failed counts the time it was held;
//! per report, as PeakEwma (one clock read, two `exp`, one `ln`); O(n) per update. Choose it over
//! [`PeakEwma`](crate::PeakEwma) when latency should decide among backends that are not
//! overloaded, rather than being multiplied by load: PeakEwma trades a fast backend's
//! latency against its queue continuously, Prequal sends to the fastest until its queue is
//! among the longest of those probed.

use std::cmp::Ordering as Order;
use std::time::Duration;

use crate::backend::Backend;
use crate::builder::{Builder, Seedable};
use crate::engine::alias::{draw_distinct, draw_where, AliasTable};
use crate::engine::core::{impl_balancer, Core};
use crate::engine::policy::Policy;
use crate::engine::sequence::Sequence;
use crate::engine::snapshot::{Snapshot, View};
use crate::engine::state::LatencyTracking;
use crate::error::Error;
use crate::placement::{splitmix64, GAMMA};
use crate::report::LoadSignal;
use crate::request::Request;
use crate::spread::choice::{Load, Loads, Signal};

/// The most candidates a pick may probe ([`Builder::probes`]): the candidates live in a
/// fixed array on the stack, so a pick allocates nothing.
pub const MAX_PROBES: usize = 16;

/// Hot-cold lexicographic choice among `probes` weighted draws; report outcomes with
/// [`Pick::success`](crate::Pick::success).
///
/// ```
/// use std::time::Duration;
/// use lbkit::{Backend, Balancer, Prequal, Request};
/// let lb = Prequal::with_seed([Backend::new("fast", ()), Backend::new("slow", ())], 1)?;
/// for _ in 0..20 {
///     let pick = lb.pick(&Request::new()).unwrap();
///     let latency = if pick.id() == "slow" { 200 } else { 2 };
///     pick.success(Duration::from_millis(latency));
/// }
/// let fast = (0..100).filter(|_| lb.pick(&Request::new()).unwrap().id() == "fast").count();
/// assert!(fast > 90);
/// # Ok::<(), lbkit::Error>(())
/// ```
pub struct Prequal<T> {
    core: Core<T, HotCold>,
}

/// The configuration of [`Prequal`], the type parameter of [`Prequal::builder`]'s
/// [`Builder`]: candidates per pick ([`Builder::probes`]), the hot quantile
/// ([`Builder::quantile`]), and the latency estimate's decay, starting value and failure
/// penalty, as [`PeakEwma`](crate::PeakEwma)'s.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct PrequalConfig {
    probes: usize,
    quantile: f64,
    decay: Duration,
    default_latency: Duration,
    failure_penalty: Duration,
    load_signal: LoadSignal,
}

impl Default for PrequalConfig {
    fn default() -> Self {
        PrequalConfig {
            probes: 8,
            quantile: 0.75,
            decay: Duration::from_secs(10),
            default_latency: Duration::from_millis(10),
            failure_penalty: Duration::from_secs(5),
            load_signal: LoadSignal::InFlight,
        }
    }
}

impl Seedable for PrequalConfig {}

impl<T: Send + Sync + 'static> Prequal<T> {
    /// A Prequal balancer with the default parameters, seeded from the clock and process
    /// (the same as `Prequal::builder().build(backends)`).
    ///
    /// # Errors
    /// [`Error::EmptyId`], [`Error::DuplicateId`], [`Error::TooManyBackends`], and
    /// [`Error::InvalidConfig`] for a backend's `max_in_flight` of 0.
    pub fn new(backends: impl IntoIterator<Item = Backend<T>>) -> Result<Self, Error> {
        Builder::new(PrequalConfig::default()).build(backends)
    }

    /// A Prequal balancer whose candidate draws replay exactly for a given seed: the
    /// shortcut for `Prequal::builder().seed(seed).build(backends)`.
    ///
    /// # Errors
    /// As [`Prequal::new`].
    pub fn with_seed(
        backends: impl IntoIterator<Item = Backend<T>>,
        seed: u64,
    ) -> Result<Self, Error> {
        Builder::new(PrequalConfig::default())
            .seed(seed)
            .build(backends)
    }
}

impl Prequal<()> {
    /// A builder, for the candidates per pick, the hot quantile, the latency estimate's
    /// parameters, a seed and passive health; its `build` makes a `Prequal<T>` of any `T`
    /// (this is a function of `Prequal<()>` only so that `Prequal::builder()` needs no type
    /// annotation).
    ///
    /// ```
    /// use std::time::Duration;
    /// use lbkit::{Backend, Error, Prequal};
    /// let lb = Prequal::builder()
    ///     .probes(4)
    ///     .quantile(0.6)
    ///     .default_latency(Duration::from_millis(2))
    ///     .seed(7)
    ///     .build([Backend::new("a", ()), Backend::new("b", ())])?;
    /// # let _ = lb;
    /// let bad = Prequal::builder().quantile(1.0).build(Vec::<Backend<()>>::new());
    /// assert!(matches!(bad, Err(Error::InvalidConfig { parameter: "quantile", .. })));
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    pub fn builder() -> Builder<PrequalConfig> {
        Builder::new(PrequalConfig::default())
    }
}

impl Builder<PrequalConfig> {
    /// How many distinct candidates a pick draws and compares (default 8; from 2 to
    /// [`MAX_PROBES`]; all eligible backends when there are fewer).
    pub fn probes(mut self, probes: usize) -> Self {
        self.config.probes = probes;
        self
    }

    /// The quantile of the candidates' loads above which a candidate is hot (`Q_RIF`,
    /// default 0.75; strictly between 0 and 1).
    pub fn quantile(mut self, quantile: f64) -> Self {
        self.config.quantile = quantile;
        self
    }

    /// The time constant of the latency estimate's decay (default 10 s, as PeakEwma's).
    pub fn decay(mut self, decay: Duration) -> Self {
        self.config.decay = decay;
        self
    }

    /// The least latency a failure counts as (default 5 s, as PeakEwma's; zero counts only
    /// the time the pick was held).
    pub fn failure_penalty(mut self, penalty: Duration) -> Self {
        self.config.failure_penalty = penalty;
        self
    }

    /// The latency estimate of a backend not yet observed (default 10 ms).
    pub fn default_latency(mut self, latency: Duration) -> Self {
        self.config.default_latency = latency;
        self
    }

    /// What a candidate's RIF is: this client's requests in flight (the default), the
    /// figure the backends report ([`LoadSignal::Reported`]: the server-side RIF the paper's
    /// probes return, fed with [`LoadReport::load`](crate::LoadReport::load) from response
    /// trailers or a stream), or both added ([`LoadSignal::Combined`]).
    ///
    /// ```
    /// use lbkit::{Backend, Balancer, LoadReport, LoadSignal, Prequal, Request};
    /// let lb = Prequal::builder()
    ///     .probes(2)
    ///     .load_signal(LoadSignal::Reported)
    ///     .seed(1)
    ///     .build([Backend::new("a", ()), Backend::new("b", ())])?;
    /// // "a" says 30 requests are in flight there (from every client): hot.
    /// lb.report_load("a", LoadReport::new().load(30.0))?;
    /// lb.report_load("b", LoadReport::new().load(2.0))?;
    /// for _ in 0..10 {
    ///     assert_eq!(lb.pick(&Request::new()).unwrap().id(), "b");
    /// }
    /// # Ok::<(), lbkit::Error>(())
    /// ```
    pub fn load_signal(mut self, signal: LoadSignal) -> Self {
        self.config.load_signal = signal;
        self
    }

    /// Builds the balancer over `backends`.
    ///
    /// # Errors
    /// As [`Prequal::new`], and [`Error::InvalidConfig`] for `probes` below 2 or above
    /// [`MAX_PROBES`], a `quantile` not strictly between 0 and 1 (NaN included), a zero
    /// `decay` or `default_latency`, a [`LoadSignal::Combined`] factor out of range, or a
    /// health rule out of range.
    pub fn build<T: Send + Sync + 'static>(
        self,
        backends: impl IntoIterator<Item = Backend<T>>,
    ) -> Result<Prequal<T>, Error> {
        let PrequalConfig {
            probes,
            quantile,
            decay,
            default_latency,
            failure_penalty,
            load_signal,
        } = self.config;
        if !(2..=MAX_PROBES).contains(&probes) {
            return Err(Error::config(
                "probes",
                format!("must be from 2 to {MAX_PROBES}, got {probes}"),
            ));
        }
        // Written so that NaN fails too.
        if !(quantile > 0.0 && quantile < 1.0) {
            return Err(Error::config(
                "quantile",
                format!("must be strictly between 0 and 1, got {quantile}"),
            ));
        }
        let policy = HotCold {
            rng: Sequence::random(self.seed_or_entropy()),
            probes,
            quantile,
            signal: Signal::new(None, load_signal)?,
            tracking: LatencyTracking::new(decay, default_latency, failure_penalty)?,
        };
        Ok(Prequal {
            core: self.core(policy, backends)?,
        })
    }
}

impl_balancer!(Prequal);

/// One candidate as a pick sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Probe {
    /// Its position in the snapshot's eligible backends.
    position: usize,
    /// Requests in flight (or the load signal's figure, in its units).
    load: u128,
    /// Effective weight (above 0).
    weight: u64,
    /// Latency log score: lower is faster (see [`State::latency_score`]).
    ///
    /// [`State::latency_score`]: crate::engine::state::State::latency_score
    score: f64,
    /// Whether its load is above the threshold.
    hot: bool,
}

impl Probe {
    const EMPTY: Probe = Probe {
        position: 0,
        load: 0,
        weight: 1,
        score: 0.0,
        hot: false,
    };
}

/// `a` against `b` by load per unit of weight, exactly.
#[inline]
fn by_load(a: &Probe, b: &Probe) -> Order {
    if a.load.lighter(a.weight, b.load, b.weight) {
        Order::Less
    } else if b.load.lighter(b.weight, a.load, a.weight) {
        Order::Greater
    } else {
        Order::Equal
    }
}

/// The HCL preference: cold before hot; among cold, lower latency, then lower load; among
/// hot, lower load, then lower latency. `Less` means `a` is preferred.
#[inline]
fn preference(a: &Probe, b: &Probe) -> Order {
    a.hot.cmp(&b.hot).then_with(|| {
        let latency = a.score.total_cmp(&b.score);
        if a.hot {
            by_load(a, b).then(latency)
        } else {
            latency.then_with(|| by_load(a, b))
        }
    })
}

/// The probe at the `quantile` of `probes`' loads per unit of weight: the "lower"
/// quantile, the probe at rank floor(q x (m - 1)) in ascending load of m probes (m above 0).
/// A probe is hot if strictly heavier than it, so the lightest probe never is.
fn threshold(probes: &[Probe], quantile: f64) -> Probe {
    let m = probes.len();
    let mut sorted = [Probe::EMPTY; MAX_PROBES];
    sorted[..m].copy_from_slice(probes);
    // At most 16 entries: an insertion sort, no allocation.
    sorted[..m].sort_unstable_by(by_load);
    // q in (0, 1) and m <= 16: the product is exact enough that the floor is the rank.
    let rank = ((quantile * m.saturating_sub(1) as f64) as usize).min(m.saturating_sub(1));
    sorted[rank]
}

/// The paper's HCL rule over `probes`, hot as `hot` says: the position in `probes` of the
/// cold probe with the lowest latency (ties: lower load, then the earlier), or, if every
/// probe is hot, of the one with the lowest load (ties: lower latency, then the earlier).
/// `None` for no probes.
fn hot_cold(probes: &mut [Probe], hot: impl Fn(&Probe) -> bool) -> Option<usize> {
    for p in probes.iter_mut() {
        p.hot = hot(p);
    }
    best(probes)
}

/// The position of the preferred probe (by [`preference`]; the earliest of equals).
#[inline]
fn best(probes: &[Probe]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, p) in probes.iter().enumerate() {
        match best {
            Some(b) if preference(p, &probes[b]) != Order::Less => {}
            _ => best = Some(i),
        }
    }
    best
}

/// Prequal's choice, over an alias table of the eligible backends.
pub(crate) struct HotCold {
    rng: Sequence,
    probes: usize,
    quantile: f64,
    /// What a candidate's RIF is made of (see [`Builder::load_signal`]).
    signal: Signal,
    tracking: LatencyTracking,
}

/// The candidates of one pick, hot ones marked.
struct Probes {
    list: [Probe; MAX_PROBES],
    len: usize,
    /// The position in `list` of the one HCL prefers.
    winner: usize,
}

impl HotCold {
    /// Draws up to `probes` distinct candidates among those `accept` allows, weighted, reads
    /// their loads and latencies, marks the hot ones and finds HCL's choice; `None` if
    /// `accept` allows none.
    #[inline]
    fn probe<T>(
        &self,
        snap: &Snapshot<T, AliasTable>,
        accept: impl Fn(usize) -> bool,
    ) -> Option<Probes> {
        let eligible = &snap.eligible;
        let refused = |p: usize| !accept(eligible[p].index);
        let mut positions = [0usize; MAX_PROBES];
        let mut len = 0;
        if eligible.len() == 1 {
            // Nothing to draw or compare.
            if refused(0) {
                return None;
            }
            len = 1;
        } else {
            // One atomic step per pick: the candidates' values are a SplitMix64 stream
            // seeded by it. Re-draws after a collision or a refusal continue the stream.
            let mut seed = None;
            let mut step = 0u64;
            let mut random = || {
                let base = *seed.get_or_insert_with(|| self.rng.next_random());
                step = step.wrapping_add(1);
                splitmix64(base.wrapping_add(step.wrapping_mul(GAMMA)))
            };
            let want = self.probes.min(eligible.len());
            while len < want {
                let drawn = &positions[..len];
                let Some(p) = draw_where(&snap.table, eligible, &mut random, |p| {
                    refused(p) || drawn.contains(&p)
                }) else {
                    break;
                };
                positions[len] = p;
                len += 1;
            }
            if len == 0 {
                return None;
            }
        }
        let mut list = [Probe::EMPTY; MAX_PROBES];
        let probes = &mut list[..len];
        let loads = (!self.signal.is_plain()).then(|| Loads::new(&self.signal));
        for (slot, &position) in probes.iter_mut().zip(&positions[..len]) {
            let e = &eligible[position];
            *slot = Probe {
                position,
                load: match &loads {
                    None => e.state.in_flight() as u128,
                    Some(loads) => loads.of(&e.state),
                },
                weight: e.weight,
                score: e.state.latency_score(),
                hot: false,
            };
        }
        let threshold = threshold(probes, self.quantile);
        let winner = hot_cold(probes, |p| by_load(p, &threshold) == Order::Greater)?;
        Some(Probes { list, len, winner })
    }
}

impl<T> Policy<T> for HotCold {
    type Table = AliasTable;
    const TABLE_USES_HEALTH: bool = true;

    fn build(&self, view: &View<'_, T>) -> Result<AliasTable, Error> {
        Ok(AliasTable::new(view.eligible))
    }

    fn latency_tracking(&self) -> Option<LatencyTracking> {
        Some(self.tracking)
    }

    #[inline]
    fn choose(
        &self,
        snap: &Snapshot<T, AliasTable>,
        _: &Request<'_>,
        accept: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let probes = self.probe(snap, accept)?;
        Some(snap.eligible[probes.list[probes.winner].position].index)
    }

    /// The candidates in HCL order (cold by latency, then hot by load), then the others in
    /// weighted random order.
    fn choose_n(
        &self,
        snap: &Snapshot<T, AliasTable>,
        _: &Request<'_>,
        n: usize,
        accept: impl Fn(usize) -> bool,
        out: &mut Vec<usize>,
    ) {
        let Some(mut probes) = self.probe(snap, &accept) else {
            return;
        };
        let probes_winner = probes.list[probes.winner];
        let candidates = &mut probes.list[..probes.len];
        // Stable: equals keep the order they were drawn in, so the first is the winner.
        candidates.sort_by(preference);
        debug_assert_eq!(candidates[0], probes_winner);
        let mut chosen: Vec<usize> = candidates.iter().map(|p| p.position).take(n).collect();
        draw_distinct(
            &snap.table,
            &snap.eligible,
            || self.rng.next_random(),
            n,
            |p| !accept(snap.eligible[p].index),
            &mut chosen,
        );
        out.extend(chosen.into_iter().map(|p| snap.eligible[p].index));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe at `position` with `load` in flight, `weight` and latency score `score`.
    fn probe(position: usize, load: u64, weight: u64, score: f64) -> Probe {
        Probe {
            position,
            load: load.into(),
            weight,
            score,
            hot: false,
        }
    }

    /// The policy's rule: hot above the quantile of the probes themselves.
    fn winner(probes: &mut [Probe], quantile: f64) -> usize {
        let t = threshold(probes, quantile);
        let i = hot_cold(probes, |p| by_load(p, &t) == Order::Greater).unwrap();
        probes[i].position
    }

    fn mark_hot(probes: &mut [Probe], quantile: f64) {
        winner(probes, quantile);
    }

    #[test]
    fn a_cold_fast_probe_beats_a_lighter_hot_one_and_a_cold_slow_one() {
        // Loads 0, 1, 9, 1: at q = 0.75 over 4 the threshold is rank 2 (load 1), so only
        // the probe with 9 is hot. The fastest (score 1.0) is hot: the fastest cold one wins,
        // though a lighter (load 0) cold one is slower.
        let mut probes = [
            probe(10, 0, 1, 5.0),
            probe(11, 1, 1, 2.0),
            probe(12, 9, 1, 1.0),
            probe(13, 1, 1, 3.0),
        ];
        assert_eq!(winner(&mut probes, 0.75), 11);
        assert_eq!(
            probes.map(|p| p.hot),
            [false, false, true, false],
            "only the heaviest is hot"
        );
    }

    #[test]
    fn the_quantile_is_the_lower_one_of_the_candidates() {
        let loads = [5, 1, 4, 2, 3, 0, 7, 6];
        let hot = |q: f64| {
            let mut probes: Vec<Probe> = loads
                .iter()
                .enumerate()
                .map(|(i, &l)| probe(i, l, 1, 0.0))
                .collect();
            mark_hot(&mut probes, q);
            probes
                .iter()
                .filter(|p| p.hot)
                .map(|p| p.load)
                .collect::<Vec<_>>()
        };
        // Rank floor(q x 7): 0.75 -> 5 (load 5): 6 and 7 hot.
        assert_eq!(hot(0.75), [7, 6]);
        // 0.5 -> 3 (load 3).
        assert_eq!(hot(0.5), [5, 4, 7, 6]);
        // 0.01 -> 0 (load 0): all but the lightest.
        assert_eq!(hot(0.01).len(), 7);
        // 0.99 -> 6 (load 6): only the heaviest.
        assert_eq!(hot(0.99), [7]);
        // Two candidates: the heavier is hot at any quantile, if strictly heavier.
        for q in [0.1, 0.5, 0.9] {
            let mut two = [probe(0, 3, 1, 0.0), probe(1, 2, 1, 0.0)];
            mark_hot(&mut two, q);
            assert_eq!(two.map(|p| p.hot), [true, false], "{q}");
            let mut tied = [probe(0, 2, 1, 0.0), probe(1, 2, 1, 0.0)];
            mark_hot(&mut tied, q);
            assert_eq!(tied.map(|p| p.hot), [false, false], "{q}");
        }
    }

    #[test]
    fn all_hot_takes_the_lowest_load_whatever_the_latency() {
        let mut probes = [
            probe(0, 5, 1, 1.0),
            probe(1, 3, 1, 9.0),
            probe(2, 4, 1, 0.5),
        ];
        let i = hot_cold(&mut probes, |_| true).unwrap();
        assert_eq!(probes[i].position, 1);
        // Equal loads: the lower latency.
        let mut probes = [probe(0, 3, 1, 4.0), probe(1, 3, 1, 2.0)];
        let i = hot_cold(&mut probes, |_| true).unwrap();
        assert_eq!(probes[i].position, 1);
        // One cold probe wins over every hot one, however slow or loaded: the hot predicate
        // decides, not the loads (here, by hand, the light fast one is the hot one).
        let mut probes = [probe(0, 1, 1, 1.0), probe(1, 9, 1, 99.0)];
        let i = hot_cold(&mut probes, |p| p.load < 5).unwrap();
        assert_eq!(probes[i].position, 1);
        let i = hot_cold(&mut probes, |p| p.load > 5).unwrap();
        assert_eq!(probes[i].position, 0);
        assert_eq!(hot_cold(&mut [], |_| true), None);
    }

    #[test]
    fn load_is_per_unit_of_weight() {
        // 8 in flight at weight 4 (2 per unit) is lighter than 3 at weight 1.
        let mut probes = [probe(0, 3, 1, 1.0), probe(1, 8, 4, 2.0)];
        assert_eq!(winner(&mut probes, 0.5), 1, "the weight-1 probe is hot");
        // And as heavy as 2 at weight 1: neither is hot, the faster wins.
        let mut probes = [probe(0, 2, 1, 1.0), probe(1, 8, 4, 2.0)];
        assert_eq!(winner(&mut probes, 0.5), 0);
        // All hot by hand: the lighter per unit of weight, not the fewer in flight.
        let mut probes = [probe(0, 3, 1, 1.0), probe(1, 8, 4, 2.0)];
        let i = hot_cold(&mut probes, |_| true).unwrap();
        assert_eq!(probes[i].position, 1);
        // Exact at the extremes of u32 weights.
        let big = u64::from(u32::MAX);
        let mut probes = [probe(0, 1, big - 1, 1.0), probe(1, 1, big, 2.0)];
        let i = hot_cold(&mut probes, |_| true).unwrap();
        assert_eq!(probes[i].position, 1);
    }

    #[test]
    fn ties_go_to_the_earlier_drawn_and_the_order_agrees_with_best() {
        let mut probes = [
            probe(7, 1, 1, 2.0),
            probe(3, 1, 1, 2.0),
            probe(5, 0, 1, 2.0),
            probe(9, 0, 1, 2.0),
        ];
        // Equal latency: the lower load, then the earlier drawn.
        assert_eq!(winner(&mut probes, 0.5), 5);
        let mut sorted = probes;
        sorted.sort_by(preference);
        assert_eq!(sorted.map(|p| p.position), [5, 9, 7, 3]);
    }
}
