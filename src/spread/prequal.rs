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
//!   with 4 requests as one of weight 1 with 2.
//! * **Hot.** A candidate is hot if its load is strictly above the `quantile` (`Q_RIF`,
//!   0.75 by default) of the candidates' loads, taken as the candidate at rank
//!   floor(q x (m - 1)) in ascending order of m candidates (the "lower" quantile: with
//!   m = 8 and q = 0.75, the 6th lightest, so up to two candidates are hot; with m = 2, the
//!   lighter one, so the heavier is hot whenever it is strictly heavier).
//! * **Cold first, by the latency expected at their RIF.** Among cold candidates the lowest
//!   *expected* latency wins: the latency estimate x (RIF + 1) / weight, the cost
//!   [`PeakEwma`](crate::PeakEwma) compares, computed in floating point (below), so ties
//!   are expected latencies equal to the last bit; those go to the lower load, then to the
//!   earlier drawn (so ties fall at random, by weight). Values equal on paper may differ in
//!   the last bit and then fall either way. Hot ones come only after every cold one, by
//!   load, then expected latency.
//!
//! **Why the RIF enters the latency.** The paper's probes return each server's latency
//! estimate for its current RIF, fresh. Here a backend's estimate is what its last answers
//! taught, decaying over `decay` (10 s): a backend that went idle keeps the high estimate of
//! its busy time until it decays. Ranked by that estimate alone, cold candidates that had
//! been busy were passed over while the backends measured fastest queued, and under a real
//! 80% load the idle capacity wasted built a backlog: in the simulator without caches
//! (`--no-keys --no-fail --no-slowdown --no-join`) Prequal's p50 was 507 ms (p99.9 924 ms,
//! 731 requests on one backend) where P2C's is 7.3 ms, and 1.5 s in the Pareto table. Scaled
//! by RIF + 1, the estimate of a backend that queues rises with its queue and that of an
//! idle one does not, so an idle backend gets traffic once the others' queues cost more
//! than its stale estimate: in that run the p50 is 7.2 ms, p99 48.1 ms, p99.9 79.1 ms (P2C
//! 7.3 / 51.9 / 96.3, PeakEwma 7.6 / 49.0 / 80.9), 14 in flight at most on one backend. In
//! the default scenario Prequal has the lowest p99 and p99.9 of the request policies (41.5
//! and 72.7 ms, PeakEwma 42.5 and 77.9), and the lowest p99 and p99.9 of the load-report
//! table in both its scenarios. What it gave up: with the cache's lighter real load,
//! ranking by the estimate alone had concentrated on the fastest backends and had a lower
//! tail under drifting speeds (p99 32.7 ms and p99.9 63.6 ms, now 39.7 and 77.1; PeakEwma
//! 45.8 and 88.5) and with `--equal-weights` (p99.9 67.8 ms, now 88.7; PeakEwma 100), at
//! the price of the median (`examples/simulate/README.md`, "Load reports" and
//! "Heavy-tailed requests").
//!
//! The weight divides, as in PeakEwma's cost, rather than counting RIF per unit of weight
//! in units of the set's mean weight (which ranks idle backends by their estimate alone) or
//! leaving the weight out: over seeds 1 to 3 of the simulator's scenarios above (weights 3
//! and 1 for backends 1x and 3x slow) PeakEwma's form had the lowest p99.9 of the three,
//! the others' 6 to 11% and 10 to 27% above it. Only differences between candidates
//! matter, so scaling every weight changes no choice. RIF is the load signal's figure in
//! requests (see below); with [`Request::cost`](crate::Request::cost), the work held, as
//! for PeakEwma.
//!
//! **Server-side RIF.** This client's count is exact but sees only its own requests; the
//! paper's probes return the server's RIF from every client. Where servers can tell it (a
//! response trailer, a stream of load reports), feed it as
//! [`LoadReport::load`](crate::LoadReport::load) and set [`Builder::load_signal`]:
//! [`LoadSignal::Reported`] compares the reported RIF (this client's count breaking ties,
//! and adding a 2^-20th of a request per pick held to the RIF the expected latency scales
//! by), [`LoadSignal::Combined`] adds the two (a reported 1 as `per_unit` requests, in both
//! the hot/cold split and the expected latency). A reported figure
//! stands until the next one, so it ages as the paper's probes do between refreshes, but is
//! never dropped: report often, or combine it with the live count.
//!
//! Expected latencies are compared as logs: a backend's latency score (ln of its estimate
//! plus a time offset shared by every backend) plus ln(RIF + 1) minus ln(weight), so the
//! choice reads no clock and computes no `exp`. ln(weight) is computed once per rebuild, for
//! every eligible backend, with the alias table; ln(RIF + 1) comes from a table of the
//! integers below 64 built with the balancer (the same values as `f64::ln`), and `ln` itself
//! runs only for larger counts, or for a load signal, which is not a whole number of
//! requests. So a pick costs about what it did when it compared estimates alone (`cargo
//! bench --bench pick`, `pick/100/prequal` and `report/100/prequal/pick+drop`: 350-390 ns
//! either way on the machine of this change, shared; computing both `ln` on each of the 8
//! probes cost 60-90 ns more).
//!
//! Latency first means concentration where load does not push back: with one request at a
//! time nothing is ever hot or in flight, so every pick goes to the fastest backend (per
//! unit of weight) among its candidates, and the backends measured fastest take most of
//! the traffic (100 equal backends, 10,000 picks dropped at once on the system clock, each
//! teaching the microseconds it was held: 61 of them picked, the busiest 3% of picks,
//! against 98 and 1.5% for PeakEwma). That is the intent; as requests overlap, the RIF in
//! the expected latency and the hot guard spread load. A backend left unobserved is tried
//! again once the others' fresher estimates stand above its own decayed one, about ln(its
//! estimate / theirs) x `decay` later, as with PeakEwma.
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
//! * **The expected latency is the client's estimate scaled by RIF.** The paper's probes
//!   return the server's own latency estimate for its current RIF, made where the requests
//!   run. A client has one estimate per backend, learned at whatever RIF the backend had
//!   when it answered; the latency a request can expect now is taken as that estimate x
//!   (RIF + 1) / weight, PeakEwma's model (the wait grows with the queue, the weight says
//!   how fast it drains). That is cruder than the server's view, but it moves with the RIF
//!   at once, which is what keeps an idle backend with an old high estimate in use (see
//!   *Why the RIF enters the latency*).
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
//! collision, a linear walk if the drawn ones carry most of the weight), 2d relaxed loads,
//! 2d table lookups of logs (an `ln` instead for a count of 64 or more, or with a load
//! signal), a sort of at most 16 entries, and no allocation; like PeakEwma's, a pick notes
//! the time it starts (one clock read), so that a pick dropped or failed counts the time it
//! was held; per report, as PeakEwma (one clock read, two `exp`, one `ln`); O(n) per update
//! (an `ln` per eligible backend). Choose it over
//! [`PeakEwma`](crate::PeakEwma) for the lower tail that comparing 8 candidates instead of 2
//! buys, with a guard on load: both trade a backend's latency against its queue (the same
//! expected latency), but Prequal picks the best of 8 and never one whose load is among the
//! heaviest of them, so a fast backend is not flooded while its estimate lags.

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

/// Hot-cold lexicographic choice among `probes` weighted draws: of the candidates whose load
/// per unit of weight is not above the `quantile` of theirs, the one with the lowest
/// expected latency, its latency estimate x (requests in flight + 1) / weight; report
/// outcomes with [`Pick::success`](crate::Pick::success).
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
            logs: Logs::new(),
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
    /// The log of the latency a request sent to it now can expect ([`expected_latency`]):
    /// lower is faster.
    latency: f64,
    /// Whether its load is above the threshold.
    hot: bool,
}

impl Probe {
    const EMPTY: Probe = Probe {
        position: 0,
        load: 0,
        weight: 1,
        latency: 0.0,
        hot: false,
    };
}

/// Natural logarithms of the integers a pick takes the log of (requests in flight + 1; the
/// weights' logs come with the rebuild, in [`Table`]), read from a table below
/// [`Logs::TABLE`] instead of computed: the same values `f64::ln` gives, without its cost on
/// every probe of every pick.
struct Logs {
    table: [f64; Logs::TABLE],
}

impl Logs {
    /// Integers below this are looked up.
    const TABLE: usize = 64;

    fn new() -> Self {
        let mut table = [0.0; Logs::TABLE];
        for (k, ln) in table.iter_mut().enumerate().skip(1) {
            *ln = (k as f64).ln();
        }
        Logs { table }
    }

    /// ln `k` (k above 0).
    #[inline]
    fn of(&self, k: u64) -> f64 {
        if k < Logs::TABLE as u64 {
            self.table[k as usize]
        } else {
            (k as f64).ln()
        }
    }
}

/// The log of the latency a new request can expect on a backend whose latency score is
/// `score` ([`State::latency_score`]: ln of its estimate, plus a time offset shared by every
/// backend), given `ln_requests` = ln(requests in flight + 1) and `ln_weight` = ln(weight):
/// ln(estimate x (in flight + 1) / weight), [`PeakEwma`](crate::PeakEwma)'s cost, up to the
/// offset. Only differences between two backends' values mean anything, so scaling every
/// weight changes no choice.
///
/// [`State::latency_score`]: crate::engine::state::State::latency_score
#[inline]
fn expected_latency(score: f64, ln_requests: f64, ln_weight: f64) -> f64 {
    score + ln_requests - ln_weight
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
        let latency = a.latency.total_cmp(&b.latency);
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
    logs: Logs,
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
        snap: &Snapshot<T, Table>,
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
                let Some(p) = draw_where(&snap.table.alias, eligible, &mut random, |p| {
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
            let (load, ln_requests) = match &loads {
                None => {
                    let in_flight = e.state.in_flight() as u64;
                    (in_flight.into(), self.logs.of(in_flight.saturating_add(1)))
                }
                Some(loads) => {
                    // In requests: the signal's figure over what one request weighs in it.
                    let load = loads.of(&e.state);
                    (load, (load as f64 / self.signal.request as f64).ln_1p())
                }
            };
            *slot = Probe {
                position,
                load,
                weight: e.weight,
                latency: expected_latency(
                    e.state.latency_score(),
                    ln_requests,
                    snap.table.ln_weights[position],
                ),
                hot: false,
            };
        }
        let threshold = threshold(probes, self.quantile);
        let winner = hot_cold(probes, |p| by_load(p, &threshold) == Order::Greater)?;
        Some(Probes { list, len, winner })
    }
}

/// What Prequal precomputes from the eligible backends: the alias table it draws candidates
/// from, and ln of each one's effective weight (fixed until the next rebuild, so a pick
/// reads it instead of computing it: slow start, soft health and subsets scale weights by
/// 1000, past any small table).
pub(crate) struct Table {
    alias: AliasTable,
    /// `ln_weights[p]` = ln(`eligible[p].weight`).
    ln_weights: Box<[f64]>,
}

impl<T> Policy<T> for HotCold {
    type Table = Table;
    const TABLE_USES_HEALTH: bool = true;

    fn build(&self, view: &View<'_, T>) -> Result<Table, Error> {
        Ok(Table {
            alias: AliasTable::new(view.eligible),
            ln_weights: view
                .eligible
                .iter()
                .map(|e| (e.weight as f64).ln())
                .collect(),
        })
    }

    fn latency_tracking(&self) -> Option<LatencyTracking> {
        Some(self.tracking)
    }

    #[inline]
    fn choose(
        &self,
        snap: &Snapshot<T, Table>,
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
        snap: &Snapshot<T, Table>,
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
            &snap.table.alias,
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
            latency: expected_latency(score, (load as f64).ln_1p(), (weight as f64).ln()),
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
        // the probe with 9 is hot. The fastest (score 1.0) is hot: the cold one expected
        // fastest wins (score 2.0 + ln 2), though a lighter (load 0) cold one is slower (5.0).
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
    #[test]
    fn an_idle_backend_beats_a_busy_faster_one_once_its_queue_costs_more() {
        // Loads 4, 0, 4, 4: at q = 0.75 over 4 the threshold is rank 2 (load 4), so none is
        // hot. Probe 0 has the lowest estimate (score 0) but 4 in flight: 5 x its estimate
        // expected. Probe 1 is idle with an estimate 3 times higher, left from when it was
        // busy: 3 x expected, so it wins (ranked by estimates alone, probe 0 would).
        let stale = |ratio: f64| {
            [
                probe(0, 4, 1, 0.0),
                probe(1, 0, 1, ratio.ln()),
                probe(2, 4, 1, 1.0),
                probe(3, 4, 1, 1.0),
            ]
        };
        let mut probes = stale(3.0);
        assert_eq!(winner(&mut probes, 0.75), 1);
        assert!(probes.iter().all(|p| !p.hot));
        // An estimate 6 times higher is worse than the busy one's queue: the busy one wins.
        assert_eq!(winner(&mut stale(6.0), 0.75), 0);
        // Per unit of weight: at weight 2, 4 in flight expect (4 + 1) / 2 = 2.5 estimates,
        // under the idle one's 3 (and 4 / 2 = 2 per unit is the lightest: not hot).
        let mut probes = stale(3.0);
        probes[0] = probe(0, 4, 2, 0.0);
        assert_eq!(winner(&mut probes, 0.75), 0);
    }

    #[test]
    fn the_expected_latency_orders_as_peak_ewma_cost_and_ignores_the_weights_scale() {
        // PeakEwma's comparison: exp(s_a - s_b) x (in_a + 1) x w_b < (in_b + 1) x w_a.
        let peak = |a: (f64, u64, u64), b: (f64, u64, u64)| {
            (a.0 - b.0).exp() * (a.1 as f64 + 1.0) * (b.2 as f64) < (b.1 as f64 + 1.0) * a.2 as f64
        };
        let logs = Logs::new();
        let key = |(score, load, weight): (f64, u64, u64), scale: u64| {
            expected_latency(score, logs.of(load + 1), ((weight * scale) as f64).ln())
        };
        let mut seed = 1u64;
        let mut next = |m: u64| {
            seed = splitmix64(seed.wrapping_add(GAMMA));
            seed % m
        };
        for _ in 0..10_000 {
            // Loads and weights on both sides of the table's edge.
            let mut draw = || (next(4000) as f64 / 1000.0, next(100), 1 + next(90));
            let (a, b) = (draw(), draw());
            let lighter = key(a, 1) < key(b, 1);
            // Up to rounding: skip near-ties.
            if (key(a, 1) - key(b, 1)).abs() > 1e-9 {
                assert_eq!(lighter, peak(a, b), "{a:?} {b:?}");
                assert_eq!(lighter, key(a, 1000) < key(b, 1000), "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn the_table_of_logs_is_ln() {
        let logs = Logs::new();
        for k in 1..200u64 {
            assert_eq!(logs.of(k).to_bits(), (k as f64).ln().to_bits(), "{k}");
        }
        assert_eq!(logs.of(u64::MAX), (u64::MAX as f64).ln());
    }
}
