//! Shared machinery: the immutable snapshot of a backend set and the [`Core`] that every
//! policy wraps.
//!
//! # How one balancer is laid out
//!
//! * Each backend has one [`State`] (in-flight count, health, what reports taught), on its own
//!   cache line, shared by every [`Entry`] that has stood for that id. It outlives rebuilds:
//!   an update carries it over by id, and a pick keeps it alive after the backend was removed,
//!   so the pick's release always lands on the counter it incremented.
//! * An [`Entry`] is one backend as one update described it (id, weight, value) plus a
//!   pointer to its state. A [`Pick`] holds an `Arc<Entry>`.
//! * A [`Snapshot`] is everything a pick reads: the entries sorted by id, the eligible ones
//!   with their effective weights, and the policy's precomputed table (a schedule, an alias
//!   table, a ring, ...). It is immutable and sits behind one [`ArcSwap`]: a pick loads it
//!   once, so it can never see half an update.
//! * Writers (`update`, `set_health`, health configuration, and the rebuilds that apply
//!   passive health) take one mutex, build a whole new snapshot and swap it in. Picks never
//!   wait for that lock: a pick that finds a rebuild due only tries it.

use std::cell::Cell;
use std::sync::{Arc, Weak};

use ahash::AHashMap;
use arc_swap::{ArcSwap, Guard};
use parking_lot::Mutex;

use crate::health::{apply_outlier_rules, effective_weight, HealthConfig};
use crate::state::{Feedback, LatencyTracking, State, FULL_WEIGHT};
use crate::{Backend, Error, Health, Pick, Request, Status};

/// The most backends one set may hold: 2^22 (4,194,304). The bound makes every sum of
/// effective weights fit in a `u64` (weights below 2^32, times 1000 under slow start, times
/// 2^22 backends stays below 2^64), and every index fit in a `u32`.
pub const MAX_BACKENDS: usize = 1 << 22;

/// "No time-based change due": the value of [`Snapshot::refresh_at`].
pub(crate) const NEVER: u64 = u64::MAX;

/// One backend as the latest update described it.
pub(crate) struct Entry<T> {
    pub(crate) id: Arc<str>,
    pub(crate) weight: u32,
    pub(crate) value: T,
    pub(crate) state: Arc<State>,
    /// Where the backend stood in the list the latest update was given (only
    /// [`JumpHash`](crate::JumpHash), which numbers buckets in input order, reads it).
    pub(crate) position: usize,
}

/// An eligible backend, laid out for scanning: its index in [`Snapshot::members`], its
/// effective weight (the weight, scaled and ramped while slow start is configured) and its
/// state.
pub(crate) struct Eligible {
    pub(crate) index: usize,
    pub(crate) weight: u64,
    pub(crate) state: Arc<State>,
}

/// Everything a pick reads, immutable once built.
pub(crate) struct Snapshot<T, X> {
    /// Every backend of the set, sorted by id (so nothing depends on input order).
    pub(crate) members: Box<[Arc<Entry<T>>]>,
    /// `states[i]` is `members[i].state`, laid out apart so that a pick reaches the state
    /// without waiting for the entry.
    states: Box<[Arc<State>]>,
    /// The members that may get new picks, in id order.
    pub(crate) eligible: Box<[Eligible]>,
    /// `is_eligible[i]` says whether `members[i]` is in `eligible`.
    pub(crate) is_eligible: Box<[bool]>,
    /// `weights[i]` is the effective weight of `members[i]` if eligible (as in `eligible`),
    /// else 0: bounded loads compare capacities in these units.
    pub(crate) weights: Box<[u64]>,
    /// The policy's precomputed table.
    pub(crate) table: Arc<X>,
    /// Clock nanoseconds at which a time-based rule changes eligibility or weights.
    refresh_at: u64,
}

impl<T, X> Snapshot<T, X> {
    /// A pick of `members[index]`.
    #[inline]
    pub(crate) fn pick(&self, index: usize) -> Pick<T> {
        Pick::new(&self.members[index], &self.states[index])
    }

    /// The index of the member with this id.
    pub(crate) fn find(&self, id: &str) -> Option<usize> {
        self.members.binary_search_by(|e| (*e.id).cmp(id)).ok()
    }
}

/// The members and eligibility a policy builds its table from.
pub(crate) struct View<'a, T> {
    pub(crate) members: &'a [Arc<Entry<T>>],
    pub(crate) eligible: &'a [Eligible],
}

/// How one algorithm chooses. Everything else (membership, accounting, health, errors) is the
/// [`Core`]'s.
pub(crate) trait Policy<T>: Send + Sync + 'static {
    /// What the policy precomputes from a backend set.
    type Table: Send + Sync + 'static;
    /// Whether the table depends on which backends are eligible and their effective weights.
    /// If not, a health change keeps the old table (hashing policies walk past ineligible
    /// backends instead, so that a backend going down moves only its own keys).
    const TABLE_USES_HEALTH: bool;

    /// Precomputes the table. An error here rejects the whole update.
    fn build(&self, view: &View<'_, T>) -> Result<Self::Table, Error>;

    /// The index (into `snap.members`) of the backend for this request, or `None` when no
    /// backend is eligible. Must return an eligible member.
    fn choose(&self, snap: &Snapshot<T, Self::Table>, request: &Request<'_>) -> Option<usize>;

    /// Pushes picks of up to `n` distinct eligible backends, in preference order, the first
    /// being the one `choose` would return.
    fn choose_n(
        &self,
        snap: &Snapshot<T, Self::Table>,
        request: &Request<'_>,
        n: usize,
        out: &mut Vec<Pick<T>>,
    );

    /// Whether reports should maintain a peak-EWMA latency estimate, and its parameters.
    fn latency_tracking(&self) -> Option<LatencyTracking> {
        None
    }
}

/// What the writer lock guards.
struct Writer {
    /// The states of removed backends that still have picks held, so that a backend removed
    /// and added back before they drop keeps counting them.
    retired: AHashMap<Arc<str>, Weak<State>>,
    config: HealthConfig,
}

/// The shared body of every balancer: one policy, one snapshot pointer, one writer lock.
pub(crate) struct Core<T, P: Policy<T>> {
    pub(crate) policy: P,
    current: ArcSwap<Snapshot<T, P::Table>>,
    feedback: Arc<Feedback>,
    writer: Mutex<Writer>,
}

impl<T, P: Policy<T>> Core<T, P> {
    /// A core over `backends`; see [`Core::update`] for the errors.
    pub(crate) fn new(
        policy: P,
        backends: impl IntoIterator<Item = Backend<T>>,
    ) -> Result<Self, Error> {
        let config = HealthConfig::new();
        let feedback = Arc::new(Feedback::new(
            Arc::clone(&config.clock),
            policy.latency_tracking(),
        ));
        let now = feedback.now_ns();
        let backends = sorted_and_checked(backends.into_iter().collect())?;
        let members: Vec<Arc<Entry<T>>> = backends
            .into_iter()
            .map(|(position, b)| entry(b, position, Arc::new(State::new(&feedback, now, false))))
            .collect();
        let snapshot = build(&policy, members.into(), None, &config, now)?;
        Ok(Core {
            policy,
            current: ArcSwap::from_pointee(snapshot),
            feedback,
            writer: Mutex::new(Writer {
                retired: AHashMap::new(),
                config,
            }),
        })
    }

    /// The current snapshot, rebuilt first if a report or the clock made it stale.
    #[inline]
    pub(crate) fn load(&self) -> Guard<Arc<Snapshot<T, P::Table>>> {
        let snap = self.current.load();
        if self.feedback.is_dirty() || self.due(snap.refresh_at) {
            drop(snap);
            self.refresh();
            return self.current.load();
        }
        snap
    }

    /// Whether the time-based change due at `refresh_at` has come. Reads the clock on every
    /// call for a cheap clock, else on one call in 16 per thread.
    #[inline]
    fn due(&self, refresh_at: u64) -> bool {
        if refresh_at == NEVER {
            return false;
        }
        thread_local! {
            static TICK: Cell<u32> = const { Cell::new(0) };
        }
        if !self.feedback.clock_is_cheap() {
            let tick = TICK.with(|t| {
                t.set(t.get().wrapping_add(1));
                t.get()
            });
            if tick % 16 != 0 {
                return false;
            }
        }
        self.feedback.now_ns() >= refresh_at
    }

    /// Applies reports and time: ejections, returns, ramps, the panic threshold. Skipped if
    /// another writer holds the lock (it will publish a fresh snapshot anyway).
    #[cold]
    fn refresh(&self) {
        let Some(writer) = self.writer.try_lock() else {
            return;
        };
        self.feedback.take_dirty();
        let current = self.current.load_full();
        let now = self.feedback.now_ns();
        apply_outlier_rules(&current.members, &writer.config, now);
        // Same members: only a policy table can fail, and it did not for this set before.
        if let Ok(snapshot) = build(
            &self.policy,
            current.members.clone(),
            Some(&current.table),
            &writer.config,
            now,
        ) {
            self.current.store(Arc::new(snapshot));
        }
    }

    #[inline]
    pub(crate) fn pick(&self, request: &Request<'_>) -> Option<Pick<T>> {
        let snap = self.load();
        let index = self.policy.choose(&snap, request)?;
        Some(snap.pick(index))
    }

    pub(crate) fn pick_n(&self, request: &Request<'_>, n: usize) -> Vec<Pick<T>> {
        let snap = self.load();
        let mut out = Vec::with_capacity(n.min(snap.eligible.len()));
        if n > 0 {
            self.policy.choose_n(&snap, request, n, &mut out);
        }
        out
    }

    /// Replaces the whole set. Errors: an empty id, a duplicate id, more than
    /// [`MAX_BACKENDS`] backends, or whatever the policy's table rejects; then nothing
    /// changes.
    pub(crate) fn update(&self, backends: Vec<Backend<T>>) -> Result<(), Error> {
        let backends = sorted_and_checked(backends)?;
        let mut writer = self.writer.lock();
        let current = self.current.load_full();
        let now = self.feedback.now_ns();
        let ramp = writer.config.slow_start.is_some();
        let mut revived = Vec::new();
        let members: Vec<Arc<Entry<T>>> = backends
            .into_iter()
            .map(|(position, b)| {
                let state = if let Some(i) = current.find(&b.id) {
                    Arc::clone(&current.members[i].state)
                } else if let Some(state) = writer.retired.get(&b.id).and_then(Weak::upgrade) {
                    // Picks are still held from before its removal: keep counting them.
                    revived.push(Arc::clone(&state));
                    state
                } else {
                    Arc::new(State::new(&self.feedback, now, ramp))
                };
                entry(b, position, state)
            })
            .collect();
        // A revived backend joins afresh: `Up`, not ejected, ramping. Its old settings are
        // restored if the build fails, so that nothing changes on error.
        let saved: Vec<_> = revived
            .iter()
            .map(|s| (s.health(), s.ejected_until()))
            .collect();
        for state in &revived {
            state.set_health(Health::Up);
            state
                .ejected_until
                .store(0, std::sync::atomic::Ordering::Relaxed);
        }
        let snapshot = match build(&self.policy, members.into(), None, &writer.config, now) {
            Ok(snapshot) => snapshot,
            Err(e) => {
                for (state, (health, until)) in revived.iter().zip(saved) {
                    state.set_health(health);
                    state
                        .ejected_until
                        .store(until, std::sync::atomic::Ordering::Relaxed);
                }
                return Err(e);
            }
        };
        if ramp {
            for state in &revived {
                state
                    .ramp_start
                    .store(now, std::sync::atomic::Ordering::Relaxed);
            }
        }
        for old in current.members.iter() {
            if snapshot.find(&old.id).is_none() {
                writer
                    .retired
                    .insert(Arc::clone(&old.id), Arc::downgrade(&old.state));
            }
        }
        writer
            .retired
            .retain(|id, state| state.strong_count() > 0 && snapshot.find(id).is_none());
        self.current.store(Arc::new(snapshot));
        Ok(())
    }

    /// Sets one backend's health. Error: no backend has this id; then nothing changes.
    pub(crate) fn set_health(&self, id: &str, health: Health) -> Result<(), Error> {
        let writer = self.writer.lock();
        let current = self.current.load_full();
        let index = current
            .find(id)
            .ok_or_else(|| Error::UnknownId(id.to_owned()))?;
        let state = &current.members[index].state;
        let before = state.health();
        if before == health {
            return Ok(());
        }
        state.set_health(health);
        let now = self.feedback.now_ns();
        match build(
            &self.policy,
            current.members.clone(),
            Some(&current.table),
            &writer.config,
            now,
        ) {
            Ok(snapshot) => {
                self.current.store(Arc::new(snapshot));
                Ok(())
            }
            Err(e) => {
                state.set_health(before);
                Err(e)
            }
        }
    }

    /// Replaces the health configuration. A new clock restarts everything measured in time
    /// (ejections, ramps, latency estimates); a rule switched off ends what it started.
    /// Error: a value out of range (see [`HealthConfig`]); then nothing changes.
    pub(crate) fn set_health_config(&self, config: HealthConfig) -> Result<(), Error> {
        config.validate()?;
        let mut writer = self.writer.lock();
        let new_clock = !Arc::ptr_eq(&writer.config.clock, &config.clock);
        self.feedback.reconfigure(
            Arc::clone(&config.clock),
            config.outlier_detection.map(|o| o.consecutive_failures),
        );
        let now = self.feedback.now_ns();
        let current = self.current.load_full();
        for e in current.members.iter() {
            let s = &e.state;
            if new_clock || config.outlier_detection.is_none() {
                s.ejected_until
                    .store(0, std::sync::atomic::Ordering::Relaxed);
                s.ejections.store(0, std::sync::atomic::Ordering::Relaxed);
                s.returned_at.store(0, std::sync::atomic::Ordering::Relaxed);
            }
            if new_clock || config.slow_start.is_none() {
                s.ramp_start
                    .store(FULL_WEIGHT, std::sync::atomic::Ordering::Relaxed);
            }
            if new_clock {
                s.reset_latency(now);
            }
        }
        writer.config = config;
        apply_outlier_rules(&current.members, &writer.config, now);
        let snapshot = build(
            &self.policy,
            current.members.clone(),
            None,
            &writer.config,
            now,
        )?;
        self.current.store(Arc::new(snapshot));
        Ok(())
    }

    pub(crate) fn status(&self) -> Vec<Status> {
        self.load()
            .members
            .iter()
            .map(|e| Status {
                id: Arc::clone(&e.id),
                weight: e.weight,
                in_flight: e.state.in_flight(),
                health: e.state.health(),
                ejected: e.state.ejected_until() != 0,
            })
            .collect()
    }
}

fn entry<T>(backend: Backend<T>, position: usize, state: Arc<State>) -> Arc<Entry<T>> {
    Arc::new(Entry {
        id: backend.id,
        weight: backend.weight,
        position,
        value: backend.value,
        state,
    })
}

/// Sorts by id, remembering each backend's position in the caller's list, and rejects empty
/// ids, duplicate ids and oversized sets.
fn sorted_and_checked<T>(backends: Vec<Backend<T>>) -> Result<Vec<(usize, Backend<T>)>, Error> {
    if backends.len() > MAX_BACKENDS {
        return Err(Error::TooManyBackends {
            count: backends.len(),
            max: MAX_BACKENDS,
        });
    }
    if backends.iter().any(|b| b.id.is_empty()) {
        return Err(Error::EmptyId);
    }
    let mut backends: Vec<(usize, Backend<T>)> = backends.into_iter().enumerate().collect();
    backends.sort_unstable_by(|a, b| a.1.id.cmp(&b.1.id));
    if let Some(pair) = backends.windows(2).find(|w| w[0].1.id == w[1].1.id) {
        return Err(Error::DuplicateId(pair[0].1.id.to_string()));
    }
    Ok(backends)
}

/// Builds a snapshot at clock time `now`: who is eligible (health, ejection, the panic
/// threshold) and with what effective weight (slow start). `previous` is the table to keep if
/// the policy's table does not depend on those.
fn build<T, P: Policy<T>>(
    policy: &P,
    members: Box<[Arc<Entry<T>>]>,
    previous: Option<&Arc<P::Table>>,
    config: &HealthConfig,
    now: u64,
) -> Result<Snapshot<T, P::Table>, Error> {
    let mut refresh_at = NEVER;
    // Could serve at all (the operator's view) and healthy (could, and up and not ejected).
    let could: Vec<bool> = members
        .iter()
        .map(|e| e.weight > 0 && e.state.health() != Health::Draining)
        .collect();
    let healthy: Vec<bool> = members
        .iter()
        .zip(&could)
        .map(|(e, &could)| {
            let until = e.state.ejected_until();
            if until != 0 {
                refresh_at = refresh_at.min(until);
            }
            could && e.state.health() == Health::Up && until == 0
        })
        .collect();
    let panic = config.panic_threshold.is_some_and(|share| {
        let could = could.iter().filter(|&&c| c).count();
        let healthy = healthy.iter().filter(|&&h| h).count();
        (healthy as f64) < share * could as f64
    });
    let is_eligible: Box<[bool]> = if panic { could.into() } else { healthy.into() };
    let eligible: Box<[Eligible]> = members
        .iter()
        .enumerate()
        .filter(|(i, _)| is_eligible[*i])
        .map(|(index, e)| Eligible {
            index,
            weight: effective_weight(e, config, now, &mut refresh_at),
            state: Arc::clone(&e.state),
        })
        .collect();
    let mut weights = vec![0u64; members.len()].into_boxed_slice();
    for e in eligible.iter() {
        weights[e.index] = e.weight;
    }
    let table = match previous {
        Some(table) if !P::TABLE_USES_HEALTH => Arc::clone(table),
        _ => Arc::new(policy.build(&View {
            members: &members,
            eligible: &eligible,
        })?),
    };
    let states = members.iter().map(|e| Arc::clone(&e.state)).collect();
    Ok(Snapshot {
        members,
        states,
        eligible,
        is_eligible,
        weights,
        table,
        refresh_at,
    })
}

/// Implements [`Balancer`](crate::Balancer), `Debug` and the health-configuration methods for
/// a policy type with a `core` field, by delegation. Every policy is the same calls into its
/// [`Core`].
macro_rules! impl_balancer {
    ($ty:ident) => {
        impl<T: Send + Sync + 'static> $crate::Balancer<T> for $ty<T> {
            #[inline]
            fn pick(&self, request: &$crate::Request<'_>) -> Option<$crate::Pick<T>> {
                self.core.pick(request)
            }

            fn pick_n(&self, request: &$crate::Request<'_>, n: usize) -> Vec<$crate::Pick<T>> {
                self.core.pick_n(request, n)
            }

            fn update(&self, backends: Vec<$crate::Backend<T>>) -> Result<(), $crate::Error> {
                self.core.update(backends)
            }

            fn set_health(&self, id: &str, health: $crate::Health) -> Result<(), $crate::Error> {
                self.core.set_health(id, health)
            }

            fn status(&self) -> Vec<$crate::Status> {
                self.core.status()
            }
        }

        impl<T: Send + Sync + 'static> $ty<T> {
            /// This balancer with passive health rules (outlier ejection, panic threshold,
            /// slow start); see [`HealthConfig`](crate::HealthConfig).
            ///
            /// # Errors
            /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) naming the first value
            /// out of range.
            pub fn with_health(self, config: $crate::HealthConfig) -> Result<Self, $crate::Error> {
                self.core.set_health_config(config)?;
                Ok(self)
            }

            /// Replaces the passive health rules while the balancer serves. A new clock
            /// restarts everything measured in time (ejections, ramps, latency estimates).
            ///
            /// # Errors
            /// As [`with_health`](Self::with_health); on error nothing changes.
            pub fn set_health_config(
                &self,
                config: $crate::HealthConfig,
            ) -> Result<(), $crate::Error> {
                self.core.set_health_config(config)
            }
        }

        impl<T: Send + Sync + 'static> std::fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("backends", &self.core.status())
                    .finish()
            }
        }
    };
}
pub(crate) use impl_balancer;
