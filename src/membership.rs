//! Shared machinery: the immutable snapshot of a backend set, the per-backend state carried
//! across rebuilds, and the [`Core`] that every policy wraps.
//!
//! # How one balancer is laid out
//!
//! * Each backend has one [`State`] (in-flight count, health), on its own cache line, shared
//!   by every [`Entry`] that has ever stood for that id. It outlives rebuilds: an update
//!   carries it over by id, and a pick keeps it alive after the backend was removed, so the
//!   pick's release always lands on the counter it incremented.
//! * An [`Entry`] is one backend as one update described it (id, weight, value) plus a
//!   pointer to its state. A [`Pick`] holds an `Arc<Entry>`.
//! * A [`Snapshot`] is everything a pick reads: the entries sorted by id, the eligible ones
//!   (health `Up`, weight > 0) with their weights, and the policy's precomputed table (a
//!   schedule, an alias table, a ring, ...). It is immutable and sits behind one
//!   [`ArcSwap`]: a pick loads it once, so it can never see half an update.
//! * Writers (`update`, `set_health`) take one mutex, build a whole new snapshot and swap it
//!   in. Picks never take that lock.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use ahash::AHashMap;
use arc_swap::{ArcSwap, Guard};
use parking_lot::Mutex;

use crate::{Backend, Error, Health, Pick, Request, Status};

/// The most backends one set may hold: tables index backends with `u32`.
pub const MAX_BACKENDS: usize = u32::MAX as usize;

/// What outlives rebuilds, per backend id. On a cache line of its own, so two threads that
/// pick different backends never contend.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct State {
    in_flight: AtomicUsize,
    health: AtomicU8,
}

impl State {
    #[inline]
    pub(crate) fn acquire(&self) {
        // Relaxed: the count is a statistic read by later picks; no other memory is published
        // through it, and the atomic RMW alone makes every increment count exactly once.
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn release(&self) {
        // Relaxed: as in `acquire`; each release pairs with exactly one acquire of the same
        // counter (the pick holds the Arc), so the count never goes below zero.
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn in_flight(&self) -> usize {
        // Relaxed: a load-balancing decision needs a recent value, not a synchronised one.
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn health(&self) -> Health {
        // Relaxed: health is only written under the writer lock, and the snapshot swap
        // (release/acquire inside ArcSwap) orders it for picks; status reads are advisory.
        Health::from_u8(self.health.load(Ordering::Relaxed))
    }

    fn set_health(&self, health: Health) {
        // Relaxed: see `health`.
        self.health.store(health.to_u8(), Ordering::Relaxed);
    }
}

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

/// An eligible backend, laid out for scanning: its index in [`Snapshot::members`], its weight
/// and its state.
pub(crate) struct Eligible {
    pub(crate) index: usize,
    pub(crate) weight: u32,
    pub(crate) state: Arc<State>,
}

/// Everything a pick reads, immutable once built.
pub(crate) struct Snapshot<T, X> {
    /// Every backend of the set, sorted by id (so nothing depends on input order).
    pub(crate) members: Box<[Arc<Entry<T>>]>,
    /// The members that may get new picks, in id order.
    pub(crate) eligible: Box<[Eligible]>,
    /// `is_eligible[i]` says whether `members[i]` is in `eligible`.
    pub(crate) is_eligible: Box<[bool]>,
    /// The policy's precomputed table.
    pub(crate) table: Arc<X>,
}

impl<T, X> Snapshot<T, X> {
    /// A pick of `members[index]`.
    #[inline]
    pub(crate) fn pick(&self, index: usize) -> Pick<T> {
        Pick::new(&self.members[index])
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
    /// Whether the table depends on which backends are eligible. If not, a health change
    /// keeps the old table (hashing policies walk past ineligible backends instead, so that a
    /// backend going down moves only its own keys).
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
}

/// The shared body of every balancer: one policy, one snapshot pointer, one writer lock.
pub(crate) struct Core<T, P: Policy<T>> {
    pub(crate) policy: P,
    current: ArcSwap<Snapshot<T, P::Table>>,
    /// Held by writers only. Keeps the states of removed backends that still have picks
    /// held, so that a backend removed and added back before they drop keeps counting them.
    retired: Mutex<AHashMap<Arc<str>, Weak<State>>>,
}

impl<T, P: Policy<T>> Core<T, P> {
    /// A core over `backends`; see [`Core::update`] for the errors.
    pub(crate) fn new(
        policy: P,
        backends: impl IntoIterator<Item = Backend<T>>,
    ) -> Result<Self, Error> {
        let backends = sorted_and_checked(backends.into_iter().collect())?;
        let members: Vec<Arc<Entry<T>>> = backends
            .into_iter()
            .map(|(position, b)| entry(b, position, Arc::default()))
            .collect();
        let healths = vec![Health::Up; members.len()];
        let snapshot = build(&policy, members.into(), &healths, None)?;
        Ok(Core {
            policy,
            current: ArcSwap::from_pointee(snapshot),
            retired: Mutex::new(AHashMap::new()),
        })
    }

    /// The current snapshot.
    #[allow(dead_code)] // used by the hashing policies, which land next
    #[inline]
    pub(crate) fn load(&self) -> Guard<Arc<Snapshot<T, P::Table>>> {
        self.current.load()
    }

    #[inline]
    pub(crate) fn pick(&self, request: &Request<'_>) -> Option<Pick<T>> {
        let snap = self.current.load();
        let index = self.policy.choose(&snap, request)?;
        Some(snap.pick(index))
    }

    pub(crate) fn pick_n(&self, request: &Request<'_>, n: usize) -> Vec<Pick<T>> {
        let snap = self.current.load();
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
        let mut retired = self.retired.lock();
        let current = self.current.load_full();
        let mut healths = Vec::with_capacity(backends.len());
        let mut revived = Vec::new();
        let members: Vec<Arc<Entry<T>>> = backends
            .into_iter()
            .map(|(position, b)| {
                let state = if let Some(i) = current.find(&b.id) {
                    Arc::clone(&current.members[i].state)
                } else if let Some(state) = retired.get(&b.id).and_then(Weak::upgrade) {
                    // Picks are still held from before its removal: keep counting them,
                    // but as a newly added backend it starts `Up`.
                    revived.push(Arc::clone(&state));
                    healths.push(Health::Up);
                    return entry(b, position, state);
                } else {
                    Arc::default()
                };
                healths.push(state.health());
                entry(b, position, state)
            })
            .collect();
        let snapshot = build(&self.policy, members.into(), &healths, None)?;
        // Past the last error: from here on, change things.
        for state in revived {
            state.set_health(Health::Up);
        }
        for old in current.members.iter() {
            if snapshot.find(&old.id).is_none() {
                retired.insert(Arc::clone(&old.id), Arc::downgrade(&old.state));
            }
        }
        retired.retain(|id, state| state.strong_count() > 0 && snapshot.find(id).is_none());
        self.current.store(Arc::new(snapshot));
        Ok(())
    }

    /// Sets one backend's health. Error: no backend has this id; then nothing changes.
    pub(crate) fn set_health(&self, id: &str, health: Health) -> Result<(), Error> {
        let _writer = self.retired.lock();
        let current = self.current.load_full();
        let index = current
            .find(id)
            .ok_or_else(|| Error::UnknownId(id.to_owned()))?;
        let state = &current.members[index].state;
        if state.health() == health {
            return Ok(());
        }
        let healths: Vec<Health> = current
            .members
            .iter()
            .enumerate()
            .map(|(i, e)| if i == index { health } else { e.state.health() })
            .collect();
        let snapshot = build(
            &self.policy,
            current.members.clone(),
            &healths,
            Some(&current.table),
        )?;
        state.set_health(health);
        self.current.store(Arc::new(snapshot));
        Ok(())
    }

    pub(crate) fn status(&self) -> Vec<Status> {
        self.current
            .load()
            .members
            .iter()
            .map(|e| Status {
                id: Arc::clone(&e.id),
                weight: e.weight,
                in_flight: e.state.in_flight(),
                health: e.state.health(),
            })
            .collect()
    }
}

fn entry<T>(backend: Backend<T>, position: usize, state: Arc<State>) -> Arc<Entry<T>> {
    Arc::new(Entry {
        id: backend.id,
        weight: backend.weight,
        value: backend.value,
        state,
        position,
    })
}

/// Sorts by id, remembering each backend's input position, and rejects empty ids, duplicate
/// ids and oversized sets.
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
    backends.sort_unstable_by(|(_, a), (_, b)| a.id.cmp(&b.id));
    if let Some(pair) = backends.windows(2).find(|w| w[0].1.id == w[1].1.id) {
        return Err(Error::DuplicateId(pair[0].1.id.to_string()));
    }
    Ok(backends)
}

/// Builds a snapshot; `previous` is the table to keep if only health changed and the policy's
/// table does not depend on it.
fn build<T, P: Policy<T>>(
    policy: &P,
    members: Box<[Arc<Entry<T>>]>,
    healths: &[Health],
    previous: Option<&Arc<P::Table>>,
) -> Result<Snapshot<T, P::Table>, Error> {
    let is_eligible: Box<[bool]> = members
        .iter()
        .zip(healths)
        .map(|(e, h)| *h == Health::Up && e.weight > 0)
        .collect();
    let eligible: Box<[Eligible]> = members
        .iter()
        .enumerate()
        .filter(|(i, _)| is_eligible[*i])
        .map(|(index, e)| Eligible {
            index,
            weight: e.weight,
            state: Arc::clone(&e.state),
        })
        .collect();
    let table = match previous {
        Some(table) if !P::TABLE_USES_HEALTH => Arc::clone(table),
        _ => Arc::new(policy.build(&View {
            members: &members,
            eligible: &eligible,
        })?),
    };
    Ok(Snapshot {
        members,
        eligible,
        is_eligible,
        table,
    })
}

/// Implements [`Balancer`](crate::Balancer) and `Debug` for a policy type with a `core`
/// field, by delegation. Every policy is the same five calls into its [`Core`].
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
