//! The pure arithmetic of client-side weighted round robin driven by backend load reports
//! (gRFC A58, `weighted_round_robin`; issue #16): what weight one backend's reports give it,
//! when that weight may be used, and the integer weights a round of the schedule gets.
//! Nothing here knows about balancers, snapshots or clocks; like [`zone`](super::zone) and
//! [`priority`](super::priority), the wiring (reports attached to picks, the refresh on the
//! sampled clock check, the schedule in the snapshot) comes next. Times are clock
//! nanoseconds (`u64`), as everywhere in the engine.
//!
//! # Sources
//!
//! * gRFC A58, `A58-client-side-weighted-round-robin-lb-policy.md` in `grpc/proposal`
//!   (last updated by "A58 update: Prefer application_utilization to cpu_utilization",
//!   June 2023): the configuration and its defaults, the pseudo-code `UpdateWeight`,
//!   `OnSubchannelBecomesReady` and `GetWeight`, and the scheduler's rule for zero weights.
//! * grpc-go, `balancer/weightedroundrobin/balancer.go` (`endpointWeight.OnLoadReport`,
//!   `endpointWeight.weight`, `bb.ParseConfig`) and `scheduler.go` (`picker.newScheduler`);
//!   the numbers of our tests come from its `balancer_test.go` and `metrics_test.go`.
//!
//! # One backend's weight
//!
//! ```text
//! on_report(qps, eps, utilization, now):               (A58 UpdateWeight)
//!     ignored when a field is negative, NaN or infinite  (ours; A58 does not say)
//!     ignored when qps = 0 or utilization = 0            (A58: "non-zero utilization and QPS")
//!     weight = qps / (utilization + eps / qps x error_utilization_penalty)
//!     ignored when weight = 0 (underflow)                (A58: new_weight == 0 => return)
//!     non_empty_since = unset  if now - last_updated >= weight_expiration_period  (see below)
//!     non_empty_since = now if unset;  last_updated = now
//!
//! on_ready():  non_empty_since = unset                   (A58 OnSubchannelBecomesReady)
//!
//! weight(now):                                           (A58 GetWeight)
//!     0 if no report was ever taken                      (grpc-go: lastUpdated is zero)
//!     0 if now - last_updated >= weight_expiration_period
//!     0 if blackout_period > 0 and (non_empty_since unset or now - non_empty_since < blackout)
//!     else the weight
//! ```
//!
//! A58's `GetWeight` itself unsets `non_empty_since` when it finds the weight expired, so
//! that reports that resume after the gap serve a new blackout. Here the first report after
//! the gap does it, and `weight` only reads: the outcome is A58's whenever a lookup falls in
//! the gap (the schedule looks every `weight_update_period`, far shorter than any gap that
//! expires a weight), and it does not depend on when lookups happen, so a report and the
//! writer's lookup never write the same field.
//!
//! A weight of 0 means "unknown": the scheduler gives that backend the mean of the known
//! weights. A weight too large for `f64` (a tiny utilisation under a huge qps) is kept as
//! `f64::MAX`; differences of times saturate at 0 if `now` is earlier than a stored time.
//!
//! ORCA reports two utilisations; A58 and grpc-go use `application_utilization` when it is
//! set (above 0) and `cpu_utilization` otherwise. lbkit's report carries one figure, so that
//! choice is the caller's; [`orca_utilization`] makes it as grpc-go does.
//!
//! # The schedule's weights
//!
//! [`schedule_weights`] turns every backend's `weight(now)` into integers for an integer
//! weighted round robin (A58's "Subchannels that are included with a zero weight are still
//! picked but with the average weight. When less than two subchannels have load info, all
//! subchannels will get the same weight"; grpc-go `newScheduler`):
//!
//! ```text
//! usable  = the weights that are finite and above 0
//! fewer than 2 usable:  every backend gets 1 (round robin)
//! else, max = the largest usable weight, scale = 65535 / max:
//!     usable weight w  ->  clamp(round(w x scale), 1, 65535)
//!     any other        ->  clamp(round(mean of the usable weights x scale), 1, 65535)
//! ```
//!
//! The largest weight becomes exactly [`MAX_SCHEDULE_WEIGHT`] (65,535 = `u16::MAX`, below
//! 2^16, grpc-go's `maxWeight`), so the sum of a round stays below `n x 2^16` and fits a
//! `u64` for any backend count. Every weight's share of the largest is kept to within
//! 1 / 65,535 (1.5e-5): rounding moves it by at most half of that, and the floor of 1 (a
//! weight below 1 / 131,070 of the largest) by at most all of it. The floor differs from
//! grpc-go, where such a weight rounds to 0 and the backend is never picked (lbkit reads
//! weight 0 as "no new picks"). gRPC C++ (`StaticStrideScheduler::Make`) goes further than
//! A58 and grpc-go: it floors known weights at 1% of the mean (at least 1) and caps them at
//! 10 times the mean; we follow A58 and grpc-go, with only the floor of 1.
//!
//! Cost: `on_report` and `weight` are a few float operations; `schedule_weights` is two
//! passes over the backends, once per `weight_update_period`, not per pick.

use crate::Error;

/// One second in clock nanoseconds.
const SECOND: u64 = 1_000_000_000;

/// A58's default `blackout_period`: 10 s.
pub(crate) const DEFAULT_BLACKOUT_PERIOD: u64 = 10 * SECOND;
/// A58's default `weight_expiration_period`: 3 min.
pub(crate) const DEFAULT_WEIGHT_EXPIRATION_PERIOD: u64 = 180 * SECOND;
/// A58's default `weight_update_period`: 1 s.
pub(crate) const DEFAULT_WEIGHT_UPDATE_PERIOD: u64 = SECOND;
/// A58's floor on `weight_update_period`: shorter periods are raised to 100 ms.
pub(crate) const MIN_WEIGHT_UPDATE_PERIOD: u64 = SECOND / 10;
/// A58's default `error_utilization_penalty`.
pub(crate) const DEFAULT_ERROR_UTILIZATION_PENALTY: f64 = 1.0;

/// The largest integer weight [`schedule_weights`] gives: `u16::MAX`, grpc-go's `maxWeight`.
pub(crate) const MAX_SCHEDULE_WEIGHT: u32 = 65_535;

/// The parameters of A58's `WeightedRoundRobinLbConfig` that the arithmetic uses, in clock
/// nanoseconds. The out-of-band reporting fields are the caller's business (lbkit does no
/// I/O).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WeightConfig {
    /// How long a backend must report continuously before its weight is used (0: at once).
    blackout_period: u64,
    /// How long without a report before the weight is dropped.
    weight_expiration_period: u64,
    /// How often the schedule's weights are recomputed; at least 100 ms.
    weight_update_period: u64,
    /// How much an error rate (`eps / qps`) adds to the utilisation; finite and at least 0.
    error_utilization_penalty: f64,
}

impl Default for WeightConfig {
    /// A58's defaults: blackout 10 s, expiration 3 min, update every 1 s, penalty 1.0.
    fn default() -> Self {
        WeightConfig {
            blackout_period: DEFAULT_BLACKOUT_PERIOD,
            weight_expiration_period: DEFAULT_WEIGHT_EXPIRATION_PERIOD,
            weight_update_period: DEFAULT_WEIGHT_UPDATE_PERIOD,
            error_utilization_penalty: DEFAULT_ERROR_UTILIZATION_PENALTY,
        }
    }
}

impl WeightConfig {
    /// A configuration with these periods (nanoseconds) and penalty. A `weight_update_period`
    /// below 100 ms is raised to 100 ms, as A58 says.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for `error_utilization_penalty` if it is negative (A58: "the
    /// configuration is rejected") or not finite (ours: NaN would poison every weight).
    pub(crate) fn new(
        blackout_period: u64,
        weight_expiration_period: u64,
        weight_update_period: u64,
        error_utilization_penalty: f64,
    ) -> Result<Self, Error> {
        if !(error_utilization_penalty.is_finite() && error_utilization_penalty >= 0.0) {
            return Err(Error::config(
                "error_utilization_penalty",
                format!("{error_utilization_penalty} is not finite and at least 0"),
            ));
        }
        Ok(WeightConfig {
            blackout_period,
            weight_expiration_period,
            weight_update_period: weight_update_period.max(MIN_WEIGHT_UPDATE_PERIOD),
            error_utilization_penalty,
        })
    }

    /// How often the schedule's weights are recomputed, in nanoseconds (at least 100 ms).
    pub(crate) fn weight_update_period(&self) -> u64 {
        self.weight_update_period
    }
}

/// The one utilisation of an ORCA report as A58 (since June 2023) and grpc-go's
/// `OnLoadReport` choose it: `application_utilization` if it is set (above 0), else
/// `cpu_utilization`. grpc-go tests `== 0`; a negative or NaN application figure falls back
/// here, and a bad CPU figure is then refused by [`BackendWeight::on_report`].
pub(crate) fn orca_utilization(application: f64, cpu: f64) -> f64 {
    if application > 0.0 {
        application
    } else {
        cpu
    }
}

/// The weight one report gives, or `None` if A58 (or our bad-input rule) ignores it.
fn weight_of(qps: f64, eps: f64, utilization: f64, penalty: f64) -> Option<f64> {
    let finite = qps.is_finite() && eps.is_finite() && utilization.is_finite();
    // `<=` and `<` are false for NaN, which `finite` already refused.
    if !finite || qps <= 0.0 || utilization <= 0.0 || eps < 0.0 {
        return None;
    }
    // A58: "eps is only used when error_utilization_penalty is set to non-zero". Skipping
    // the term also keeps 0 x inf (a huge eps / tiny qps) from making NaN.
    let error_term = if penalty > 0.0 && penalty.is_finite() {
        eps / qps * penalty
    } else {
        0.0
    };
    // qps > 0 and finite over a denominator > 0 (perhaps infinite): a weight in [0, inf].
    let weight = qps / (utilization + error_term);
    if weight > 0.0 {
        Some(weight.min(f64::MAX))
    } else {
        None
    }
}

/// One backend's reported weight and the two times A58 tracks with it (`non_empty_since`,
/// `last_updated`), `None` where A58 writes `infy` or grpc-go the zero time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct BackendWeight {
    /// `qps / (utilization + eps / qps x penalty)` of the last report taken; 0 before any.
    weight: f64,
    /// When the current run of reports began; unset before the first report, after
    /// [`on_ready`](Self::on_ready) and once the weight expired.
    non_empty_since: Option<u64>,
    /// When the last report was taken.
    last_updated: Option<u64>,
}

impl BackendWeight {
    /// A backend that has not reported yet: its weight is 0 (unknown).
    pub(crate) fn new() -> Self {
        BackendWeight::default()
    }

    /// The three fields as words for atomics: the weight's bits, and each time plus one (0
    /// for unset; a time of `u64::MAX` is kept as `u64::MAX - 1`, a nanosecond apart).
    pub(crate) fn to_bits(self) -> [u64; 3] {
        let time = |t: Option<u64>| t.map_or(0, |t| t.saturating_add(1));
        [
            self.weight.to_bits(),
            time(self.non_empty_since),
            time(self.last_updated),
        ]
    }

    /// The fields [`to_bits`](Self::to_bits) packed.
    pub(crate) fn from_bits([weight, since, updated]: [u64; 3]) -> Self {
        let time = |t: u64| t.checked_sub(1);
        BackendWeight {
            weight: f64::from_bits(weight),
            non_empty_since: time(since),
            last_updated: time(updated),
        }
    }

    /// Takes one report at `now` (A58's `UpdateWeight`). Returns whether it was taken: a
    /// report with `qps` or `utilization` 0 is ignored (A58), as is one with a negative, NaN
    /// or infinite field (ours), and one whose weight underflows to 0; an ignored report
    /// changes nothing.
    pub(crate) fn on_report(
        &mut self,
        qps: f64,
        eps: f64,
        utilization: f64,
        now: u64,
        config: &WeightConfig,
    ) -> bool {
        let Some(weight) = weight_of(qps, eps, utilization, config.error_utilization_penalty)
        else {
            return false;
        };
        if self.expired(now, config) {
            // The last weight expired: this report starts a new run (A58's `GetWeight`
            // unsets `non_empty_since` when it finds the weight expired; here the report
            // that ends the gap does it, so that the rule does not depend on a lookup).
            self.non_empty_since = None;
        }
        if self.non_empty_since.is_none() {
            self.non_empty_since = Some(now);
        }
        self.last_updated = Some(now);
        self.weight = weight;
        true
    }

    /// The backend became ready again (returned to the set, or healthy again): its blackout
    /// starts over with its next report (A58's `OnSubchannelBecomesReady`). Like A58, and
    /// unlike grpc-go, the last weight and its time are kept, so with no blackout the backend
    /// keeps its weight until it expires.
    pub(crate) fn on_ready(&mut self) {
        self.non_empty_since = None;
    }

    /// Whether the last report is `weight_expiration_period` old or older at `now` (or there
    /// is none).
    fn expired(&self, now: u64, config: &WeightConfig) -> bool {
        self.last_updated.map_or(true, |last| {
            now.saturating_sub(last) >= config.weight_expiration_period
        })
    }

    /// The weight to schedule at `now` (A58's `GetWeight`), 0 meaning unknown: no report yet,
    /// the last one `weight_expiration_period` old or older, or reports for less than
    /// `blackout_period`. Otherwise finite and above 0.
    pub(crate) fn weight(&self, now: u64, config: &WeightConfig) -> f64 {
        if self.last_updated.is_none() || self.expired(now, config) {
            return 0.0;
        }
        if config.blackout_period > 0 {
            match self.non_empty_since {
                Some(since) if now.saturating_sub(since) >= config.blackout_period => {}
                _ => return 0.0,
            }
        }
        self.weight
    }
}

/// The integer weights of one schedule, and whether it is plain round robin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScheduleWeights {
    /// One weight per input weight, in its order, each in `1..=MAX_SCHEDULE_WEIGHT`.
    pub(crate) weights: Vec<u32>,
    /// Fewer than two backends had a usable weight: all weights are 1 (grpc-go counts these
    /// updates in its `grpc.lb.wrr.rr_fallback` metric).
    pub(crate) round_robin: bool,
}

/// The schedule's integer weights from every backend's [`BackendWeight::weight`] (see the
/// module docs): a weight that is not finite and above 0 is unknown and gets the mean of the
/// known ones; fewer than two known weights give round robin. Never panics, for any input.
pub(crate) fn schedule_weights(weights: &[f64]) -> ScheduleWeights {
    let usable = |w: f64| w.is_finite() && w > 0.0;
    let mut count = 0usize;
    let mut max = 0.0f64;
    for &w in weights.iter().filter(|&&w| usable(w)) {
        count += 1;
        max = max.max(w);
    }
    if count < 2 {
        return ScheduleWeights {
            weights: vec![1; weights.len()],
            round_robin: true,
        };
    }
    // Summing the shares of the largest (each in (0, 1]) cannot overflow where summing the
    // weights could (two weights near f64::MAX).
    let share_sum: f64 = weights
        .iter()
        .filter(|&&w| usable(w))
        .map(|&w| w / max)
        .sum();
    let mean_share = share_sum / count as f64;
    let scale = f64::from(MAX_SCHEDULE_WEIGHT);
    // A share in [0, 1] times 65535, rounded and clamped: the cast cannot truncate.
    let to_integer = |share: f64| (share * scale).round().clamp(1.0, scale) as u32;
    let mean = to_integer(mean_share);
    ScheduleWeights {
        weights: weights
            .iter()
            .map(|&w| if usable(w) { to_integer(w / max) } else { mean })
            .collect(),
        round_robin: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = SECOND / 1000;
    const MINUTE: u64 = 60 * SECOND;

    /// A58's defaults with another blackout and expiration (penalty 1.0).
    fn config(blackout_period: u64, weight_expiration_period: u64) -> WeightConfig {
        WeightConfig::new(blackout_period, weight_expiration_period, SECOND, 1.0).unwrap()
    }

    /// grpc-go's `perCallConfig` / `oobConfig` (balancer_test.go): no blackout, weights
    /// expire after 60 s, no error penalty.
    fn grpc_go_test_config() -> WeightConfig {
        WeightConfig::new(0, MINUTE, 50 * MS, 0.0).unwrap()
    }

    /// A backend that took one report at `at`.
    fn reported(
        qps: f64,
        eps: f64,
        utilization: f64,
        at: u64,
        cfg: &WeightConfig,
    ) -> BackendWeight {
        let mut w = BackendWeight::new();
        assert!(w.on_report(qps, eps, utilization, at, cfg));
        w
    }

    #[test]
    fn defaults_are_a58s() {
        // A58's WeightedRoundRobinLbConfig comments; grpc-go bb.ParseConfig.
        let c = WeightConfig::default();
        assert_eq!(c.blackout_period, 10 * SECOND);
        assert_eq!(c.weight_expiration_period, 3 * MINUTE);
        assert_eq!(c.weight_update_period(), SECOND);
        assert_eq!(c.error_utilization_penalty, 1.0);
    }

    #[test]
    fn update_period_floor_and_penalty_range() {
        // A58: "Values less than 100ms are capped at 100ms"; grpc-go ParseConfig.
        let c = WeightConfig::new(0, MINUTE, 5 * MS, 0.0).unwrap();
        assert_eq!(c.weight_update_period(), 100 * MS);
        assert_eq!(
            WeightConfig::new(0, MINUTE, 0, 0.0)
                .unwrap()
                .weight_update_period(),
            100 * MS
        );
        assert_eq!(
            WeightConfig::new(0, MINUTE, 250 * MS, 0.0)
                .unwrap()
                .weight_update_period(),
            250 * MS
        );
        // A58: "Configuration is rejected if this value is negative"; NaN and inf too (ours).
        for bad in [-0.1, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let err = WeightConfig::new(0, MINUTE, SECOND, bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::InvalidConfig {
                        parameter: "error_utilization_penalty",
                        ..
                    }
                ),
                "{err:?}"
            );
        }
        assert!(WeightConfig::new(0, MINUTE, SECOND, 0.0).is_ok());
    }

    #[test]
    fn weights_of_grpc_gos_scenarios() {
        // grpc-go balancer_test.go, TestBalancer_AddressesChanging: "srv1: weight 10" (qps 10,
        // utilization 1.0), "srv2: weight 100" (10, 0.1), "srv3: weight 20" (20, 1.0),
        // "srv4: weight 200" (20, 0.1); penalty 0 (oobConfig).
        let cfg = grpc_go_test_config();
        for (qps, utilization, want) in [
            (10.0, 1.0, 10.0),
            (10.0, 0.1, 100.0),
            (20.0, 1.0, 20.0),
            (20.0, 0.1, 200.0),
        ] {
            let w = reported(qps, 0.0, utilization, 0, &cfg);
            let got = w.weight(SECOND, &cfg);
            assert!(
                (got - want).abs() < 1e-9,
                "qps {qps} util {utilization}: {got}"
            );
        }
    }

    #[test]
    fn error_penalty() {
        // grpc-go balancer_test.go, TestBalancer_TwoAddresses_ErrorPenalty: srv1 qps 10,
        // utilization 1.0, eps 0 => 10 before and after; srv2 qps 10, utilization 0.1,
        // eps 10 => 100 with penalty 0, 10.0 / 1.0 = 10 with penalty 0.9.
        let before = grpc_go_test_config();
        let after = WeightConfig::new(0, MINUTE, 50 * MS, 0.9).unwrap();
        for (cfg, srv1, srv2) in [(before, 10.0, 100.0), (after, 10.0, 10.0)] {
            let got1 = reported(10.0, 0.0, 1.0, 0, &cfg).weight(SECOND, &cfg);
            let got2 = reported(10.0, 10.0, 0.1, 0, &cfg).weight(SECOND, &cfg);
            assert!(
                (got1 - srv1).abs() < 1e-9 && (got2 - srv2).abs() < 1e-9,
                "{got1} {got2}"
            );
        }
        // A58's formula with its default penalty 1.0: 100 / (0.5 + 20 / 100 x 1.0) = 142.857...
        let cfg = config(0, MINUTE);
        let got = reported(100.0, 20.0, 0.5, 0, &cfg).weight(0, &cfg);
        assert!((got - 100.0 / 0.7).abs() < 1e-9, "{got}");
    }

    #[test]
    fn zero_utilization_or_qps_is_ignored() {
        // A58: last_updated "tracks the last time a report with non-zero utilization and QPS
        // was received"; grpc-go OnLoadReport: "Ignoring empty load report".
        let cfg = grpc_go_test_config();
        let mut w = BackendWeight::new();
        assert!(!w.on_report(10.0, 0.0, 0.0, 0, &cfg));
        assert!(!w.on_report(0.0, 0.0, 0.5, 0, &cfg));
        assert!(!w.on_report(0.0, 5.0, 0.0, 0, &cfg));
        assert_eq!(w, BackendWeight::new());
        assert_eq!(w.weight(SECOND, &cfg), 0.0);
        // An empty report after a real one keeps the weight and its times.
        assert!(w.on_report(10.0, 0.0, 1.0, SECOND, &cfg));
        let kept = w;
        assert!(!w.on_report(10.0, 0.0, 0.0, 2 * SECOND, &cfg));
        assert!(!w.on_report(0.0, 0.0, 1.0, 2 * SECOND, &cfg));
        assert_eq!(w, kept);
        assert_eq!(w.last_updated, Some(SECOND));
        assert_eq!(w.weight(2 * SECOND, &cfg), 10.0);
    }

    #[test]
    fn application_utilization_over_cpu() {
        // grpc-go balancer_test.go, TestBalancer_TwoAddresses_ReportingEnabledOOB: the cases
        // "application_utilization" (1.0 and 0.1), "cpu_utilization" (same figures as CPU) and
        // "application over cpu" (CPU 2.0 "ignored because ApplicationUtilization is set");
        // each gives srv1 : srv2 = 1 : 10.
        assert_eq!(orca_utilization(1.0, 0.0), 1.0);
        assert_eq!(orca_utilization(0.0, 0.1), 0.1);
        assert_eq!(orca_utilization(0.1, 2.0), 0.1);
        // Neither set: 0, which on_report ignores (grpc-go: utilization == 0 => ignored).
        assert_eq!(orca_utilization(0.0, 0.0), 0.0);
        // A bad application figure falls back; a bad CPU figure is refused by on_report.
        assert_eq!(orca_utilization(f64::NAN, 0.3), 0.3);
        assert_eq!(orca_utilization(-1.0, 0.3), 0.3);
        let cfg = grpc_go_test_config();
        let mut w = BackendWeight::new();
        assert!(!w.on_report(10.0, 0.0, orca_utilization(-1.0, f64::NAN), 0, &cfg));
    }

    #[test]
    fn metrics_test_weight_cases() {
        // grpc-go metrics_test.go, TestWRR_Metrics_SubConnWeight: weightVal 3, one case a
        // row (expiration, blackout, last_updated, non_empty_since, now) => weight.
        let t0 = 1_000 * SECOND;
        let cases = [
            // "no weight set"
            ("no weight set", SECOND, SECOND, None, None, t0, 0.0),
            // "weight expiration": updated at t0, expiration 2 s, now t0 + 100 s
            (
                "weight expiration",
                2 * SECOND,
                SECOND,
                Some(t0),
                None,
                t0 + 100 * SECOND,
                0.0,
            ),
            // "in blackout period": updated at t0, non_empty_since unset, blackout 10 s
            (
                "in blackout period",
                MINUTE,
                10 * SECOND,
                Some(t0),
                None,
                t0,
                0.0,
            ),
            // "normal weight": both at t0, blackout 1 s, expiration 1 min, now t0 + 10 s
            (
                "normal weight",
                MINUTE,
                SECOND,
                Some(t0),
                Some(t0),
                t0 + 10 * SECOND,
                3.0,
            ),
            // "weight expiration takes precdedence over blackout"
            (
                "expiration over blackout",
                SECOND,
                MINUTE,
                Some(t0),
                Some(t0),
                t0 + 10 * SECOND,
                0.0,
            ),
        ];
        for (name, expiration, blackout, last_updated, non_empty_since, now, want) in cases {
            let cfg = WeightConfig::new(blackout, expiration, SECOND, 0.0).unwrap();
            let w = BackendWeight {
                weight: 3.0,
                non_empty_since,
                last_updated,
            };
            assert_eq!(w.weight(now, &cfg), want, "{name}");
        }
    }

    #[test]
    fn blackout_period() {
        // grpc-go balancer_test.go, TestBalancer_TwoAddresses_BlackoutPeriod: blackout 1 s and
        // the default 10 s; weights 10 and 100 (qps 10, utilization 1.0 / 0.1) are 0 (so the
        // round robin 1 : 1) until start + blackout - 1 ns, and 1 : 10 from start + blackout.
        for blackout in [SECOND, DEFAULT_BLACKOUT_PERIOD] {
            let cfg = WeightConfig::new(blackout, MINUTE, 50 * MS, 0.0).unwrap();
            let start = 7 * SECOND;
            let srv1 = reported(10.0, 0.0, 1.0, start, &cfg);
            let srv2 = reported(10.0, 0.0, 0.1, start, &cfg);
            for now in [start, start + blackout - 1] {
                let weights = [srv1.weight(now, &cfg), srv2.weight(now, &cfg)];
                assert_eq!(weights, [0.0, 0.0]);
                assert_eq!(schedule_weights(&weights).weights, [1, 1]);
            }
            let weights = [
                srv1.weight(start + blackout, &cfg),
                srv2.weight(start + blackout, &cfg),
            ];
            assert_eq!(weights, [10.0, 100.0]);
            assert_eq!(schedule_weights(&weights).weights, [6554, 65535]);
        }
    }

    #[test]
    fn blackout_counts_from_the_first_report_of_a_run() {
        // A58 UpdateWeight: non_empty_since is set only if unset, last_updated every time.
        let cfg = config(10 * SECOND, 3 * MINUTE);
        let mut w = reported(10.0, 0.0, 1.0, 0, &cfg);
        assert!(w.on_report(30.0, 0.0, 1.0, 4 * SECOND, &cfg));
        assert!(w.on_report(20.0, 0.0, 1.0, 8 * SECOND, &cfg));
        assert_eq!(
            (w.non_empty_since, w.last_updated),
            (Some(0), Some(8 * SECOND))
        );
        assert_eq!(w.weight(10 * SECOND - 1, &cfg), 0.0);
        // The latest report's weight, once the run is 10 s old.
        assert_eq!(w.weight(10 * SECOND, &cfg), 20.0);
        // A58: "blackout_period_ > 0 &&": no blackout means the first report counts at once.
        let none = config(0, 3 * MINUTE);
        assert_eq!(reported(10.0, 0.0, 1.0, 0, &none).weight(0, &none), 10.0);
    }

    #[test]
    fn weight_expiration() {
        // grpc-go balancer_test.go, TestBalancer_TwoAddresses_WeightExpiration: expiration
        // 1 min (the test's weightExpirationPeriod), no blackout; 1 : 10 at start + 59 s,
        // 1 : 1 at start + 61 s.
        let cfg = grpc_go_test_config();
        let start = 3 * SECOND;
        let srv1 = reported(10.0, 0.0, 1.0, start, &cfg);
        let srv2 = reported(10.0, 0.0, 0.1, start, &cfg);
        let at = |now| [srv1.weight(now, &cfg), srv2.weight(now, &cfg)];
        assert_eq!(at(start + MINUTE - SECOND), [10.0, 100.0]);
        let weights = at(start + MINUTE + SECOND);
        assert_eq!(weights, [0.0, 0.0]);
        let schedule = schedule_weights(&weights);
        assert_eq!((schedule.weights, schedule.round_robin), (vec![1, 1], true));
        // A58 GetWeight: "now() - last_updated_ >= weight_expiration_period_": the boundary
        // itself is expired, one nanosecond before is not.
        let w = reported(10.0, 0.0, 1.0, 0, &cfg);
        assert_eq!(w.weight(MINUTE - 1, &cfg), 10.0);
        assert_eq!(w.weight(MINUTE, &cfg), 0.0);
    }

    #[test]
    fn expiry_resets_the_blackout_when_the_backend_returns() {
        // A58: once we stop using a stale value, "if we later start seeing fresh reports
        // again, the blackout_period applies"; GetWeight resets non_empty_since on expiry.
        let cfg = WeightConfig::default();
        let mut w = reported(10.0, 0.0, 1.0, 0, &cfg);
        assert_eq!(w.weight(10 * SECOND, &cfg), 10.0);
        // No report for 3 min: expired, and the run is over.
        assert_eq!(w.weight(3 * MINUTE + 10 * SECOND, &cfg), 0.0);
        // Reports resume at 4 min: the weight is blacked out for 10 s again.
        let back = 4 * MINUTE;
        assert_eq!(w.non_empty_since, Some(0));
        assert!(w.on_report(40.0, 0.0, 1.0, back, &cfg));
        assert_eq!(w.non_empty_since, Some(back));
        assert_eq!(w.weight(back + 10 * SECOND - 1, &cfg), 0.0);
        assert_eq!(w.weight(back + 10 * SECOND, &cfg), 40.0);
    }

    #[test]
    fn a_report_after_the_expiration_starts_a_new_run() {
        // A58 enforces expiry when the weight is looked up, so a report coming after the
        // expiration period with no lookup in between would continue the old run there; here
        // it starts a new one whether or not a lookup came between (see the module docs).
        let cfg = WeightConfig::default();
        let mut w = reported(10.0, 0.0, 1.0, 0, &cfg);
        assert!(w.on_report(20.0, 0.0, 1.0, 5 * MINUTE, &cfg));
        assert_eq!(w.non_empty_since, Some(5 * MINUTE));
        assert_eq!(w.weight(5 * MINUTE + 10 * SECOND - 1, &cfg), 0.0);
        assert_eq!(w.weight(5 * MINUTE + 10 * SECOND, &cfg), 20.0);
        // One nanosecond short of the expiration continues the run.
        let mut w = reported(10.0, 0.0, 1.0, 0, &cfg);
        assert!(w.on_report(20.0, 0.0, 1.0, 3 * MINUTE - 1, &cfg));
        assert_eq!(w.non_empty_since, Some(0));
        assert_eq!(w.weight(3 * MINUTE - 1, &cfg), 20.0);
    }

    #[test]
    fn ready_again_restarts_the_blackout() {
        // A58 OnSubchannelBecomesReady: non_empty_since = infy, nothing else.
        let cfg = WeightConfig::default();
        let mut w = reported(10.0, 0.0, 1.0, 0, &cfg);
        assert_eq!(w.weight(20 * SECOND, &cfg), 10.0);
        w.on_ready();
        // Blacked out until a report starts a new run, and for 10 s after it.
        assert_eq!(w.weight(21 * SECOND, &cfg), 0.0);
        assert!(w.on_report(15.0, 0.0, 1.0, 30 * SECOND, &cfg));
        assert_eq!(w.weight(40 * SECOND - 1, &cfg), 0.0);
        assert_eq!(w.weight(40 * SECOND, &cfg), 15.0);
        // With no blackout, A58 keeps the last weight until it expires (grpc-go clears
        // lastUpdated on READY and would give 0 until the next report).
        let none = config(0, 3 * MINUTE);
        let mut w = reported(10.0, 0.0, 1.0, 0, &none);
        w.on_ready();
        assert_eq!(w.weight(SECOND, &none), 10.0);
        assert_eq!(w.weight(3 * MINUTE, &none), 0.0);
    }

    #[test]
    fn time_going_backwards_saturates() {
        // A `now` earlier than the stored times (a reading of another thread's clock sample)
        // is 0 elapsed: not expired, and still blacked out.
        let cfg = WeightConfig::default();
        let w = reported(10.0, 0.0, 1.0, 20 * SECOND, &cfg);
        assert_eq!(w.weight(5 * SECOND, &cfg), 0.0);
        assert_eq!(w.non_empty_since, Some(20 * SECOND));
        let none = config(0, 3 * MINUTE);
        let w = reported(10.0, 0.0, 1.0, 20 * SECOND, &none);
        assert_eq!(w.weight(0, &none), 10.0);
        // An expiration of 0 expires every weight at once (A58 gives it no range).
        let zero = config(0, 0);
        let w = reported(10.0, 0.0, 1.0, 0, &zero);
        assert_eq!(w.weight(0, &zero), 0.0);
        // u64::MAX times never overflow.
        let w = reported(10.0, 0.0, 1.0, u64::MAX, &cfg);
        assert_eq!(w.weight(u64::MAX, &cfg), 0.0);
        assert_eq!(w.weight(0, &cfg), 0.0);
    }

    #[test]
    fn bad_reports_are_ignored() {
        let cfg = WeightConfig::default();
        let mut w = reported(10.0, 1.0, 0.5, 0, &cfg);
        let before = w;
        let bad = [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -1.0,
            -f64::MIN_POSITIVE,
        ];
        for b in bad {
            assert!(!w.on_report(b, 1.0, 0.5, SECOND, &cfg), "qps {b}");
            assert!(!w.on_report(10.0, b, 0.5, SECOND, &cfg), "eps {b}");
            assert!(!w.on_report(10.0, 1.0, b, SECOND, &cfg), "utilization {b}");
        }
        assert!(!w.on_report(10.0, 1.0, -0.0, SECOND, &cfg));
        assert_eq!(w, before);
        // -0.0 errors per second is 0.
        assert!(w.on_report(10.0, -0.0, 0.5, SECOND, &cfg));
        assert_eq!(w.weight, 20.0);
    }

    #[test]
    fn extreme_reports_stay_finite() {
        let cfg = WeightConfig::default();
        // qps / utilization overflows: kept as f64::MAX.
        let mut w = reported(f64::MAX, 0.0, f64::MIN_POSITIVE, 0, &cfg);
        assert_eq!(w.weight, f64::MAX);
        // eps / qps overflows: the denominator is infinite, the weight 0, the report ignored.
        assert!(!w.on_report(f64::MIN_POSITIVE, f64::MAX, 1.0, 0, &cfg));
        // With no penalty the same report counts, and the error term is skipped (no 0 x inf).
        let no_penalty = WeightConfig::new(0, MINUTE, SECOND, 0.0).unwrap();
        assert!(w.on_report(f64::MIN_POSITIVE, f64::MAX, 1.0, 0, &no_penalty));
        assert_eq!(w.weight, f64::MIN_POSITIVE);
        // A weight that underflows to 0 is ignored, as A58's new_weight == 0.
        assert!(!w.on_report(f64::MIN_POSITIVE, 0.0, f64::MAX, 0, &cfg));
        assert_eq!(w.weight, f64::MIN_POSITIVE);
    }

    #[test]
    fn round_robin_fallback() {
        // A58: "When less than two subchannels have load info, all subchannels will get the
        // same weight"; grpc-go newScheduler: numZero >= n-1 => rrScheduler, and
        // metrics_test.go TestWRR_Metrics_Scheduler_RR_Fallback (one backend; two, both 0).
        for weights in [
            &[][..],
            &[0.0],
            &[7.0],
            &[0.0, 0.0],
            &[0.0, 42.0],
            &[3.0, 0.0, 0.0],
        ] {
            let s = schedule_weights(weights);
            assert!(s.round_robin, "{weights:?}");
            assert_eq!(s.weights, vec![1; weights.len()], "{weights:?}");
        }
        // Unusable figures count as zero.
        let s = schedule_weights(&[f64::NAN, 5.0, -3.0, f64::INFINITY]);
        assert_eq!((s.weights, s.round_robin), (vec![1; 4], true));
        // Two known weights are enough.
        assert!(!schedule_weights(&[0.0, 1.0, 2.0]).round_robin);
    }

    #[test]
    fn grpc_go_ratios() {
        // grpc-go balancer_test.go: TestBalancer_TwoAddresses_ReportingEnabledPerCall (1 : 10)
        // and TestBalancer_AddressesChanging (1 : 10 : 2 and 1 : 10 : 2 : 20). Its checkWeights
        // allows +/- 2 of 100 RPCs a backend; the integer weights keep every share exactly
        // to within 1e-4.
        for (weights, ratio) in [
            (&[10.0, 100.0][..], &[1.0, 10.0][..]),
            (&[10.0, 100.0, 20.0], &[1.0, 10.0, 2.0]),
            (&[10.0, 100.0, 20.0, 200.0], &[1.0, 10.0, 2.0, 20.0]),
        ] {
            let s = schedule_weights(weights);
            assert!(!s.round_robin);
            let total: u32 = s.weights.iter().sum();
            let ratio_total: f64 = ratio.iter().sum();
            for (&got, &want) in s.weights.iter().zip(ratio) {
                let share = f64::from(got) / f64::from(total);
                assert!(
                    (share - want / ratio_total).abs() < 1e-4,
                    "{weights:?}: {:?}",
                    s.weights
                );
            }
        }
        // The exact integers: 10 and 100 scale to 65535 x 0.1 = 6553.5 => 6554 and 65535.
        assert_eq!(schedule_weights(&[10.0, 100.0]).weights, [6554, 65535]);
    }

    /// `picks` picks of a smooth weighted round robin (nginx's) over `weights`: a reference
    /// integer scheduler, only to count picks per backend.
    fn smooth_picks(weights: &[u32], picks: usize) -> Vec<usize> {
        let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
        let mut current = vec![0i64; weights.len()];
        let mut counts = vec![0usize; weights.len()];
        for _ in 0..picks {
            for (c, &w) in current.iter_mut().zip(weights) {
                *c += i64::from(w);
            }
            let best = (0..weights.len())
                .max_by_key(|&i| (current[i], usize::MAX - i))
                .unwrap();
            current[best] -= total;
            counts[best] += 1;
        }
        counts
    }

    #[test]
    fn picks_within_grpc_gos_tolerance() {
        // grpc-go balancer_test.go checkWeights: 100 RPCs (rrIterations), backend i expected
        // 100 x w_i / sum (integer division), within +/- 2. The scenarios of
        // TestBalancer_TwoAddresses_ReportingEnabledPerCall and TestBalancer_AddressesChanging,
        // from the reports to the picks.
        let cfg = grpc_go_test_config();
        let scenarios: [&[(f64, f64, usize)]; 3] = [
            &[(10.0, 1.0, 1), (10.0, 0.1, 10)],
            &[(10.0, 1.0, 1), (10.0, 0.1, 10), (20.0, 1.0, 2)],
            &[
                (10.0, 1.0, 1),
                (10.0, 0.1, 10),
                (20.0, 1.0, 2),
                (20.0, 0.1, 20),
            ],
        ];
        for scenario in scenarios {
            let weights: Vec<f64> = scenario
                .iter()
                .map(|&(qps, utilization, _)| {
                    reported(qps, 0.0, utilization, 0, &cfg).weight(SECOND, &cfg)
                })
                .collect();
            let counts = smooth_picks(&schedule_weights(&weights).weights, 100);
            let sum: usize = scenario.iter().map(|&(_, _, w)| w).sum();
            for (&(_, _, w), &got) in scenario.iter().zip(&counts) {
                let want = 100 * w / sum;
                assert!(
                    got + 2 >= want && got <= want + 2,
                    "{scenario:?}: {counts:?}"
                );
            }
        }
    }

    #[test]
    fn unknown_weights_get_the_mean() {
        // A58: "Subchannels that are included with a zero weight are still picked but with the
        // average weight"; grpc-go newScheduler: "Backends with weight = 0 use the mean" (of
        // the non-zero weights). Weights 10 and 100 (grpc-go's srv1 and srv2) and one unknown:
        // mean 55, so 6554 : 65535 : round(65535 x 0.55) = 36044.
        let s = schedule_weights(&[10.0, 100.0, 0.0]);
        assert_eq!(
            (s.weights, s.round_robin),
            (vec![6554, 65535, 36044], false)
        );
        // A backend in blackout among reporting ones: grpc-go's blackout test with a third,
        // fresh backend. Non-finite or negative figures are unknown too.
        let cfg = WeightConfig::default();
        let old1 = reported(10.0, 0.0, 1.0, 0, &cfg);
        let old2 = reported(10.0, 0.0, 0.1, 0, &cfg);
        let fresh = reported(30.0, 0.0, 0.1, 15 * SECOND, &cfg);
        let now = 20 * SECOND;
        let weights = [
            old1.weight(now, &cfg),
            old2.weight(now, &cfg),
            fresh.weight(now, &cfg),
        ];
        assert_eq!(weights, [10.0, 100.0, 0.0]);
        assert_eq!(schedule_weights(&weights).weights, [6554, 65535, 36044]);
        let s = schedule_weights(&[10.0, f64::NAN, 100.0, -1.0, f64::INFINITY]);
        assert_eq!(s.weights, [6554, 36044, 65535, 36044, 36044]);
    }

    #[test]
    fn tiny_weights_keep_a_share() {
        // grpc-go would round 1e-9 of the largest to 0 (never picked); lbkit reads weight 0
        // as "no new picks", so the floor is 1 (gRPC C++'s StaticStrideScheduler has one too).
        let s = schedule_weights(&[1e-9, 1.0]);
        assert_eq!(s.weights, [1, 65535]);
        // Weights near f64::MAX: no overflow in the mean.
        let s = schedule_weights(&[f64::MAX, f64::MAX, 0.0]);
        assert_eq!(s.weights, [65535, 65535, 65535]);
        let s = schedule_weights(&[f64::MIN_POSITIVE, f64::MAX]);
        assert_eq!(s.weights, [1, 65535]);
    }

    /// Any f64, weighted towards the troublesome ones.
    fn any_figure() -> impl Strategy<Value = f64> {
        prop_oneof![
            Just(0.0),
            Just(-0.0),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::MAX),
            Just(f64::MIN_POSITIVE),
            0.0..1e6f64,
            any::<f64>(),
        ]
    }

    /// A finite figure at least 0, from tiny to huge.
    fn finite_figure() -> impl Strategy<Value = f64> {
        prop_oneof![
            Just(0.0),
            Just(f64::MAX),
            Just(f64::MIN_POSITIVE),
            0.0..1.0f64,
            0.0..1e6f64,
            (0.0..f64::MAX),
        ]
    }

    fn any_config() -> impl Strategy<Value = WeightConfig> {
        (
            prop_oneof![Just(0u64), 0..60 * SECOND, any::<u64>()],
            prop_oneof![Just(0u64), 0..10 * MINUTE, any::<u64>()],
            prop_oneof![Just(0.0f64), Just(1.0), 0.0..10.0f64, 0.0..f64::MAX],
        )
            .prop_map(|(b, e, p)| WeightConfig::new(b, e, SECOND, p).unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Finite non-negative reports at any times: every weight is finite and at least 0,
        /// every report taken stores a finite weight above 0, and a lookup that is neither
        /// blacked out nor expired returns the last one taken.
        #[test]
        fn finite_reports_give_finite_weights(
            cfg in any_config(),
            steps in prop::collection::vec(
                (finite_figure(), finite_figure(), finite_figure(), 0..120 * SECOND, any::<bool>()),
                1..40),
        ) {
            let mut w = BackendWeight::new();
            let mut now = 0u64;
            let mut last_taken = None;
            for (qps, eps, utilization, dt, lookup) in steps {
                now = now.saturating_add(dt);
                if w.on_report(qps, eps, utilization, now, &cfg) {
                    prop_assert!(w.weight.is_finite() && w.weight > 0.0);
                    prop_assert!(qps > 0.0 && utilization > 0.0);
                    last_taken = Some(w.weight);
                }
                if lookup {
                    let got = w.weight(now, &cfg);
                    prop_assert!(got.is_finite() && got >= 0.0);
                    prop_assert!(got == 0.0 || Some(got) == last_taken);
                }
            }
        }

        /// Any figures, NaN, infinite and negative included: a report with such a field is
        /// not taken and changes nothing; no weight is ever NaN, infinite or negative.
        #[test]
        fn bad_figures_never_poison(
            cfg in any_config(),
            steps in prop::collection::vec(
                (any_figure(), any_figure(), any_figure(), any::<u64>()), 1..40),
        ) {
            let mut w = BackendWeight::new();
            for (qps, eps, utilization, now) in steps {
                let before = w;
                let taken = w.on_report(qps, eps, utilization, now, &cfg);
                let bad = [qps, eps, utilization].iter().any(|f| !f.is_finite() || *f < 0.0);
                if bad || !taken {
                    prop_assert!(!taken);
                    prop_assert_eq!(w, before);
                }
                let got = w.weight(now, &cfg);
                prop_assert!(got.is_finite() && got >= 0.0);
            }
        }

        /// Any input weights: one integer weight each, in 1..=65535; round robin exactly when
        /// fewer than two are usable; else the largest usable one is 65535, every usable one
        /// keeps its share of the largest to within 1 / 65535 (< 1e-4), and every unusable one
        /// gets the same weight, the mean's.
        #[test]
        fn schedule_weights_keep_ratios(
            weights in prop::collection::vec(prop_oneof![any_figure(), 0.0..1e3f64, 1e-6..1e-3f64], 0..20),
        ) {
            let s = schedule_weights(&weights);
            prop_assert_eq!(s.weights.len(), weights.len());
            prop_assert!(s.weights.iter().all(|&w| (1..=MAX_SCHEDULE_WEIGHT).contains(&w)));
            let usable: Vec<f64> = weights.iter().copied().filter(|w| w.is_finite() && *w > 0.0).collect();
            prop_assert_eq!(s.round_robin, usable.len() < 2);
            if s.round_robin {
                prop_assert!(s.weights.iter().all(|&w| w == 1));
            } else {
                let max = usable.iter().copied().fold(0.0, f64::max);
                prop_assert_eq!(s.weights.iter().copied().max(), Some(MAX_SCHEDULE_WEIGHT));
                let mean_share = usable.iter().map(|w| w / max).sum::<f64>() / usable.len() as f64;
                for (&w, &got) in weights.iter().zip(&s.weights) {
                    let share = if w.is_finite() && w > 0.0 { w / max } else { mean_share };
                    let kept = f64::from(got) / f64::from(MAX_SCHEDULE_WEIGHT);
                    prop_assert!((kept - share).abs() <= 1.0 / 65_535.0 + 1e-12, "{} -> {}", w, got);
                    prop_assert!((kept - share).abs() < 1e-4);
                }
            }
        }
    }
}
