//! Model-based property tests: random sequences of pick / pick_n / drop / update /
//! set_health, driven against every policy and against a naive reference model, with the
//! invariants of the foundation issue checked after every step.
//!
//! The model knows which ids exist (with weight, health and value), and which picks the
//! test holds. From that it predicts, exactly:
//! * which backends are eligible (health `Up`, weight above 0), so every pick must be one of
//!   them, `pick` must return `None` iff there is none, and `pick_n(k)` must return
//!   min(k, eligible) distinct ones;
//! * `status()`: the model's ids in id order, with the model's weight and health, and as
//!   in-flight count the number of picks the test holds on that id. That includes picks
//!   taken before the id was removed and added back while they were still held: the core
//!   keeps the removed backend's counter alive (its `retired` map) and revives it. Then the
//!   removed ids on which picks are still held, in id order, with the weight and health they
//!   had when removed;
//! * the result of `update` and `set_health`, including the exact error, and that a failed
//!   call changes nothing.
//!
//! On top, each policy's exact property (see [`common::Oracle`]) is checked on the sequence
//! of its "primary choices" (each `pick`, and the first backend of each non-empty `pick_n`,
//! which is the one `pick` would have chosen), within runs where the state the policy
//! decides on did not change. Finally every case is replayed on a twin built with the same
//! seed whose updates get their backend lists in reverse order: both must produce the same
//! trace (seeded determinism, and independence from the order of the list).
//!
//! Cost: 1024 cases by default (`PROPTEST_CASES` overrides), each up to 80 operations on
//! every entry of the registry (`common::POLICIES`: each policy, the presets and the bounded
//! variants, 16 entries as of this writing), twice: about 50 s in debug on the shared 2-core
//! dev machine.

mod common;

use std::collections::BTreeMap;

use common::{lighter, Oracle, Policy, POLICIES};
use lbkit::{Backend, Error, Health, Pick, Request};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// The id alphabet: small, so ids stay, go and come back.
const IDS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
/// Ids `set_health` may name beyond [`IDS`]: never in any set.
const UNKNOWN: [&str; 2] = ["zz", ""];
/// Cases when `PROPTEST_CASES` is not set.
const DEFAULT_CASES: u32 = 1024;

#[derive(Debug, Clone, Copy)]
enum Invalid {
    /// Adds a second backend with an id already in the list.
    Duplicate,
    /// Adds a backend with an empty id.
    Empty,
}

#[derive(Debug, Clone)]
enum Op {
    /// `pick`; the pick is held if `hold`, else dropped at once.
    Pick { key: Option<u64>, hold: bool },
    /// `pick_n(k)`, held or dropped at once.
    PickN {
        k: usize,
        key: Option<u64>,
        hold: bool,
    },
    /// Drops the held pick at `index % held` (nothing if none is held).
    Drop { index: usize },
    /// `update` with `(id index, weight)` pairs (ids distinct), maybe made invalid.
    Update {
        set: Vec<(usize, u32)>,
        invalid: Option<(Invalid, usize)>,
    },
    /// `set_health` of `IDS[id]`, or of an unknown id for `id >= IDS.len()`.
    SetHealth { id: usize, health: Health },
}

fn weight() -> impl Strategy<Value = u32> {
    prop_oneof![1 => Just(0u32), 5 => 1..=4u32]
}

/// Distinct ids in random order with random weights.
fn set() -> impl Strategy<Value = Vec<(usize, u32)>> {
    prop::collection::vec((0..IDS.len(), weight()), 0..=8).prop_map(|mut v| {
        let mut seen = [false; IDS.len()];
        v.retain(|&(id, _)| !std::mem::replace(&mut seen[id], true));
        v
    })
}

fn health() -> impl Strategy<Value = Health> {
    prop_oneof![Just(Health::Up), Just(Health::Down), Just(Health::Draining)]
}

fn key() -> impl Strategy<Value = Option<u64>> {
    prop::option::of(any::<u64>())
}

fn op() -> impl Strategy<Value = Op> {
    let invalid = prop::option::weighted(
        0.25,
        (
            prop_oneof![Just(Invalid::Duplicate), Just(Invalid::Empty)],
            any::<usize>(),
        ),
    );
    prop_oneof![
        6 => (key(), any::<bool>()).prop_map(|(key, hold)| Op::Pick { key, hold }),
        2 => (0..=7usize, key(), any::<bool>()).prop_map(|(k, key, hold)| Op::PickN { k, key, hold }),
        3 => any::<usize>().prop_map(|index| Op::Drop { index }),
        2 => (set(), invalid).prop_map(|(set, invalid)| Op::Update { set, invalid }),
        2 => (0..IDS.len() + UNKNOWN.len(), health()).prop_map(|(id, health)| Op::SetHealth { id, health }),
    ]
}

#[derive(Debug, Clone)]
struct Member {
    weight: u32,
    health: Health,
    value: u32,
}

/// The reference model: the set, and the ids of the picks the test holds.
#[derive(Debug, Default)]
struct Model {
    members: BTreeMap<String, Member>,
    /// Removed backends, as they were when removed: listed by `status()` while picks on them
    /// are held.
    removed: BTreeMap<String, Member>,
    held: Vec<String>,
}

impl Model {
    fn in_flight(&self, id: &str) -> usize {
        self.held.iter().filter(|h| *h == id).count()
    }

    /// `(id, weight, in_flight)` of the eligible backends, in id order.
    fn eligible(&self) -> Vec<(String, u32, usize)> {
        self.members
            .iter()
            .filter(|(_, m)| m.health == Health::Up && m.weight > 0)
            .map(|(id, m)| (id.clone(), m.weight, self.in_flight(id)))
            .collect()
    }

    fn status(&self) -> Vec<(String, u32, usize, Health)> {
        let removed = self.removed.iter().filter(|(id, _)| self.in_flight(id) > 0);
        self.members
            .iter()
            .chain(removed)
            .map(|(id, m)| (id.clone(), m.weight, self.in_flight(id), m.health))
            .collect()
    }
}

/// Consecutive primary choices made while the state the policy decides on stayed the same.
#[derive(Default)]
struct Run {
    signature: Vec<(String, u32, usize)>,
    choices: Vec<String>,
}

/// What a policy's choice depends on, beyond its cursor or random stream.
fn signature(oracle: Oracle, eligible: &[(String, u32, usize)]) -> Vec<(String, u32, usize)> {
    eligible
        .iter()
        .map(|(id, w, n)| match oracle {
            Oracle::RoundRobin => (id.clone(), 0, 0),
            Oracle::WeightedRoundRobin => (id.clone(), *w, 0),
            _ => (id.clone(), *w, *n),
        })
        .collect()
}

/// Runs `ops` on `policy` against the model, checking every step; returns the trace.
fn run(
    policy: &Policy,
    seed: u64,
    initial: &[(usize, u32)],
    ops: &[Op],
    reverse_lists: bool,
) -> Result<Vec<String>, TestCaseError> {
    let name = policy.name;
    let mut model = Model::default();
    let mut generation = 0u32;
    let value = |generation: u32, id: usize| generation * 8 + id as u32;
    let mut list: Vec<Backend<u32>> = initial
        .iter()
        .map(|&(id, w)| Backend::new(IDS[id], value(0, id)).with_weight(w))
        .collect();
    for &(id, w) in initial {
        model.members.insert(
            IDS[id].to_owned(),
            Member {
                weight: w,
                health: Health::Up,
                value: value(0, id),
            },
        );
    }
    if reverse_lists {
        list.reverse();
    }
    let lb = (policy.new)(list, seed).map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
    let mut held: Vec<Pick<u32>> = Vec::new();
    let mut trace = Vec::new();
    let mut run = Run::default();

    for (step, op) in ops.iter().enumerate() {
        let before = common::summary(&*lb);
        let eligible = model.eligible();
        let ctx = format!("{name}, step {step}, {op:?}, model {model:?}");
        match op {
            Op::Pick { key, hold } => {
                let request = key.map_or_else(Request::new, Request::with_hash);
                let pick = lb.pick(&request);
                prop_assert_eq!(pick.is_none(), eligible.is_empty(), "{}", ctx);
                let picks: Vec<Pick<u32>> = pick.into_iter().collect();
                check_picks(&model, &eligible, &picks, &ctx)?;
                check_oracle(policy.oracle, &eligible, &picks, &mut run, &ctx)?;
                trace.push(format!("pick {:?}", ids(&picks)));
                keep(&mut model, &mut held, picks, *hold);
            }
            Op::PickN { k, key, hold } => {
                let request = key.map_or_else(Request::new, Request::with_hash);
                let picks = lb.pick_n(&request, *k);
                prop_assert_eq!(picks.len(), (*k).min(eligible.len()), "{}", ctx);
                check_picks(&model, &eligible, &picks, &ctx)?;
                check_oracle(policy.oracle, &eligible, &picks, &mut run, &ctx)?;
                trace.push(format!("pick_n {:?}", ids(&picks)));
                keep(&mut model, &mut held, picks, *hold);
            }
            Op::Drop { index } => {
                if !held.is_empty() {
                    let i = index % held.len();
                    drop(held.swap_remove(i));
                    model.held.swap_remove(i);
                }
            }
            Op::Update { set, invalid } => {
                generation += 1;
                let mut pairs: Vec<(&str, u32, u32)> = set
                    .iter()
                    .map(|&(id, w)| (IDS[id], w, value(generation, id)))
                    .collect();
                match invalid {
                    Some((Invalid::Duplicate, at)) => {
                        let (id, w) = set.get(at % set.len().max(1)).copied().unwrap_or((0, 1));
                        if set.is_empty() {
                            pairs.push((IDS[id], w, 0));
                        }
                        pairs.insert(at % (pairs.len() + 1), (IDS[id], w + 1, 1));
                    }
                    Some((Invalid::Empty, at)) => {
                        pairs.insert(at % (pairs.len() + 1), ("", 1, 2));
                    }
                    None => {}
                }
                // The model's verdict: empty ids first, then the smallest duplicated id.
                let mut sorted: Vec<&str> = pairs.iter().map(|p| p.0).collect();
                sorted.sort_unstable();
                let expected = if sorted.contains(&"") {
                    Err(Error::EmptyId)
                } else if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
                    Err(Error::DuplicateId(w[0].to_owned()))
                } else {
                    Ok(())
                };
                let mut list: Vec<Backend<u32>> = pairs
                    .iter()
                    .map(|&(id, w, v)| Backend::new(id, v).with_weight(w))
                    .collect();
                if reverse_lists {
                    list.reverse();
                }
                let got = lb.update(list);
                prop_assert_eq!(&got, &expected, "{}", ctx);
                if got.is_ok() {
                    let old = std::mem::take(&mut model.members);
                    for (id, m) in &old {
                        if !pairs.iter().any(|p| p.0 == id) {
                            model.removed.insert(id.clone(), m.clone());
                        }
                    }
                    for &(id, weight, value) in &pairs {
                        model.removed.remove(id);
                        // A backend that stays keeps its health; a new one (also one added
                        // back while picks on it are held) starts Up.
                        let health = old.get(id).map_or(Health::Up, |m| m.health);
                        model.members.insert(
                            id.to_owned(),
                            Member {
                                weight,
                                health,
                                value,
                            },
                        );
                    }
                } else {
                    prop_assert_eq!(common::summary(&*lb), before.clone(), "{}", ctx);
                }
                trace.push(format!("update {got:?}"));
            }
            Op::SetHealth { id, health } => {
                let id = IDS
                    .get(*id)
                    .copied()
                    .unwrap_or_else(|| UNKNOWN[id - IDS.len()]);
                let got = lb.set_health(id, *health);
                match model.members.get_mut(id) {
                    Some(m) => {
                        prop_assert_eq!(&got, &Ok(()), "{}", ctx);
                        m.health = *health;
                    }
                    None => {
                        prop_assert_eq!(&got, &Err(Error::UnknownId(id.to_owned())), "{}", ctx);
                        prop_assert_eq!(common::summary(&*lb), before.clone(), "{}", ctx);
                    }
                }
                trace.push(format!("set_health {got:?}"));
            }
        }
        let status = common::summary(&*lb);
        prop_assert_eq!(&status, &model.status(), "{} (after the step)", ctx);
        trace.push(format!("{status:?}"));
    }

    drop(held);
    model.held.clear();
    let status = common::summary(&*lb);
    prop_assert!(
        status.iter().all(|s| s.2 == 0),
        "{name}: counts left after dropping every pick: {status:?}"
    );
    prop_assert_eq!(status, model.status());
    Ok(trace)
}

fn ids(picks: &[Pick<u32>]) -> Vec<String> {
    picks.iter().map(|p| p.id().to_owned()).collect()
}

fn keep(model: &mut Model, held: &mut Vec<Pick<u32>>, picks: Vec<Pick<u32>>, hold: bool) {
    if hold {
        model.held.extend(picks.iter().map(|p| p.id().to_owned()));
        held.extend(picks);
    }
}

/// Every pick is of a backend eligible before the call, distinct, and carries that
/// backend's current weight and value.
fn check_picks(
    model: &Model,
    eligible: &[(String, u32, usize)],
    picks: &[Pick<u32>],
    ctx: &str,
) -> Result<(), TestCaseError> {
    for (i, p) in picks.iter().enumerate() {
        prop_assert!(
            eligible.iter().any(|e| e.0 == p.id()),
            "{}: picked {} which is not eligible",
            ctx,
            p.id()
        );
        let m = &model.members[p.id()];
        prop_assert_eq!(
            (p.weight(), *p.value(), **p),
            (m.weight, m.value, m.value),
            "{}",
            ctx
        );
        prop_assert!(
            picks[..i].iter().all(|q| q.id() != p.id()),
            "{}: {} twice in {:?}",
            ctx,
            p.id(),
            ids(picks)
        );
    }
    Ok(())
}

/// The policy's exact property, on this call's picks and the run of primary choices.
fn check_oracle(
    oracle: Oracle,
    eligible: &[(String, u32, usize)],
    picks: &[Pick<u32>],
    run: &mut Run,
    ctx: &str,
) -> Result<(), TestCaseError> {
    let Some(first) = picks.first() else {
        return Ok(());
    };
    let sig = signature(oracle, eligible);
    if run.signature != sig {
        *run = Run {
            signature: sig,
            choices: Vec::new(),
        };
    }
    run.choices.push(first.id().to_owned());
    let n = eligible.len();
    let position = |id: &str| eligible.iter().position(|e| e.0 == id).expect("eligible");
    let load = |id: &str| {
        let e = &eligible[position(id)];
        (e.2, e.1)
    };
    match oracle {
        // First depends on list order, which this model does not keep: tests/steering.rs
        // checks it exactly.
        Oracle::None | Oracle::PeakEwma | Oracle::Unweighted | Oracle::First => {}
        Oracle::RoundRobin => {
            // Each primary choice is the next eligible backend in id order after the
            // previous one, and pick_n continues in that order.
            if let [.., prev, _] = &run.choices[..] {
                prop_assert_eq!(
                    position(first.id()),
                    (position(prev) + 1) % n,
                    "{}: round robin jumped from {} to {}",
                    ctx,
                    prev,
                    first.id()
                );
            }
            let start = position(first.id());
            for (j, p) in picks.iter().enumerate() {
                prop_assert_eq!(&eligible[(start + j) % n].0, p.id(), "{}", ctx);
            }
        }
        Oracle::WeightedRoundRobin => {
            // Every window of one period of primary choices gives each its reduced weight.
            let divisor = eligible
                .iter()
                .fold(0, |g, e| common::gcd(g, u64::from(e.1)));
            let period: u64 = eligible.iter().map(|e| u64::from(e.1) / divisor).sum();
            let period = period as usize;
            if run.choices.len() >= period {
                let window = &run.choices[run.choices.len() - period..];
                for (id, w, _) in eligible {
                    let got = window.iter().filter(|c| *c == id).count() as u64;
                    prop_assert_eq!(
                        got,
                        u64::from(*w) / divisor,
                        "{}: {} got {} in window {:?}",
                        ctx,
                        id,
                        got,
                        window
                    );
                }
                run.choices.remove(0);
            }
            // Smooth: no burst beyond the bound of `weighted_round_robin_never_bursts`.
            let streak = run
                .choices
                .iter()
                .rev()
                .take_while(|c| *c == first.id())
                .count();
            let w = u64::from(load(first.id()).1) / divisor;
            if n >= 2 {
                let bound = w.div_ceil(period as u64 - w) + 1;
                prop_assert!(
                    streak as u64 <= bound,
                    "{}: {} picked {} times in a row",
                    ctx,
                    first.id(),
                    streak
                );
            }
        }
        Oracle::LeastConnections => {
            // The pick has minimal in_flight / weight; pick_n returns the k lightest, in
            // order of load.
            for w in picks.windows(2) {
                let (a, b) = (load(w[0].id()), load(w[1].id()));
                prop_assert!(!lighter(b.0, b.1, a.0, a.1), "{}: pick_n out of order", ctx);
            }
            let last = load(picks[picks.len() - 1].id());
            for (id, w, c) in eligible {
                if !picks.iter().any(|p| p.id() == id) {
                    prop_assert!(
                        !lighter(*c, *w, last.0, last.1),
                        "{}: {} is lighter than picked {:?}",
                        ctx,
                        id,
                        ids(picks)
                    );
                }
            }
            // Ties take turns: over n consecutive choices with the same loads, every
            // backend of minimal load is chosen at least once.
            if run.choices.len() >= n {
                let window = &run.choices[run.choices.len() - n..];
                let min = load(first.id());
                for (id, w, c) in eligible {
                    if !lighter(min.0, min.1, *c, *w) {
                        prop_assert!(
                            window.contains(id),
                            "{}: tied {} not chosen in {:?}",
                            ctx,
                            id,
                            window
                        );
                    }
                }
                run.choices.remove(0);
            }
        }
        Oracle::PowerOfTwoChoices => {
            // The winner of two distinct candidates: some other eligible backend is at least
            // as loaded. pick_n starts with the winner, then the loser.
            let (c, w) = load(first.id());
            if n >= 2 {
                prop_assert!(
                    eligible
                        .iter()
                        .any(|e| e.0 != first.id() && !lighter(e.2, e.1, c, w)),
                    "{}: {} is strictly the heaviest",
                    ctx,
                    first.id()
                );
            }
            if let [a, b, ..] = picks {
                let (a, b) = (load(a.id()), load(b.id()));
                prop_assert!(!lighter(b.0, b.1, a.0, a.1), "{}: loser before winner", ctx);
            }
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn every_policy_follows_the_model(
        seed in any::<u64>(),
        initial in set(),
        ops in prop::collection::vec(op(), 0..80),
    ) {
        for policy in POLICIES {
            let trace = run(policy, seed, &initial, &ops, false)?;
            // Jump hash numbers its buckets in input order, and First fills backends in
            // input order, by design: their twins keep it.
            let order_matters = matches!(policy.oracle, Oracle::Unweighted | Oracle::First);
            let twin = run(policy, seed, &initial, &ops, !order_matters)?;
            prop_assert_eq!(trace, twin, "{}: same seed, same calls, other trace", policy.name);
        }
    }
}

/// The round-robin cursor survives an update (here one that keeps the set): the rotation
/// continues where it was instead of restarting at the first backend.
#[test]
fn round_robin_cursor_survives_updates() {
    let set = || ["a", "b", "c"].map(|id| Backend::new(id, 0u32)).to_vec();
    for policy in POLICIES.iter().filter(|p| p.oracle == Oracle::RoundRobin) {
        let lb = (policy.new)(set(), 1).unwrap();
        let first = lb.pick(&Request::new()).unwrap().id().to_owned();
        lb.update(set()).unwrap();
        let second = lb.pick(&Request::new()).unwrap().id().to_owned();
        assert_ne!(first, second, "{}: the cursor restarted", policy.name);
    }
}

/// Smooth weighted round robin interleaves heavy and light backends in steady state, not only
/// in the first period: a backend of weight w (of W in all, weights divided by their gcd) is
/// never picked more than ceil(w / (W - w)) + 1 times in a row, across period boundaries
/// too. That is not a theorem for every weight vector, so the test covers a small domain
/// exhaustively: every vector of 2 to 5 backends with weights 1 to 4. nginx's smooth weighted
/// round robin meets the bound on all of them (and on 6 backends too, which the model test
/// generates). Regression: the schedule used to put every backend's first pick of a period
/// at the same phase, so the light ones bunched together and weights 5, 1, 1 gave
/// `a a a a a b c` over and over, the very burst "smooth" promises to avoid.
#[test]
fn weighted_round_robin_never_bursts() {
    for policy in POLICIES
        .iter()
        .filter(|p| p.oracle == Oracle::WeightedRoundRobin)
    {
        for n in 2..=5u32 {
            for code in 0..4u32.pow(n) {
                let weights: Vec<u32> = (0..n).map(|i| 1 + code / 4u32.pow(i) % 4).collect();
                let divisor = weights.iter().fold(0, |g, &w| common::gcd(g, u64::from(w)));
                let reduced: Vec<u64> = weights.iter().map(|&w| u64::from(w) / divisor).collect();
                let total: u64 = reduced.iter().sum();
                let set = weights
                    .iter()
                    .enumerate()
                    .map(|(i, &w)| Backend::new(IDS[i], 0u32).with_weight(w))
                    .collect();
                let lb = (policy.new)(set, 0).unwrap();
                let picks: Vec<usize> = (0..3 * total)
                    .map(|_| {
                        let p = lb.pick(&Request::new()).unwrap();
                        IDS.iter().position(|id| *id == p.id()).unwrap()
                    })
                    .collect();
                let mut streak = 0;
                for (k, &p) in picks.iter().enumerate() {
                    streak = if k > 0 && picks[k - 1] == p {
                        streak + 1
                    } else {
                        1
                    };
                    let w = reduced[p];
                    assert!(
                        streak <= w.div_ceil(total - w) + 1,
                        "{}: weights {weights:?}: {streak} x {} in a row in {picks:?}",
                        policy.name,
                        IDS[p]
                    );
                }
            }
        }
    }
}

/// "Reproducible from a seed" must not depend on which thread replays: the same seed and the
/// same calls give the same picks in a new thread as in the test's own. Regression: each
/// thread drew from the random stream of its process-wide stripe number (the order in which
/// threads first picked from any balancer), so a seeded run replayed only in the same
/// thread of the same process, and a seeded test could change with the test harness's
/// scheduling.
#[test]
fn seeded_policies_replay_in_any_thread() {
    fn run(policy: &Policy) -> Vec<String> {
        let set = (0..10)
            .map(|i| Backend::new(format!("b{i}"), 0u32).with_weight(1 + i % 3))
            .collect();
        let lb = (policy.new)(set, 7).unwrap();
        let mut held = Vec::new();
        let mut ids = Vec::new();
        for i in 0..40 {
            let picks = lb.pick_n(&Request::new(), 1 + i % 3);
            ids.extend(picks.iter().map(|p| p.id().to_owned()));
            held.extend(picks.into_iter().take(1));
        }
        ids
    }
    for policy in POLICIES {
        let here = run(policy);
        // Two new threads, one after the other: each has a stripe of its own.
        for _ in 0..2 {
            let there = std::thread::spawn(move || run(policy)).join().unwrap();
            assert_eq!(here, there, "{}: another thread, other picks", policy.name);
        }
    }
}
