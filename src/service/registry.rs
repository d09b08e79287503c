//! The registry of inner services by backend id, shared by every handle of a
//! [`Balance`](super::Balance): [`Membership`] changes it (and the balancer's backend set
//! with it), [`Discovery`] feeds it from a tower [`Discover`] stream, each handle reads it
//! to keep its own clones current, and tasks wait on it for the next change.

use std::collections::hash_map::Entry;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use ahash::AHashMap;
use parking_lot::{Mutex, MutexGuard};
use pin_project_lite::pin_project;
use tower::discover::{Change, Discover};
use tower::BoxError;

use crate::{Backend, Balancer, Health};

/// One registered service.
struct Registered<S> {
    weight: u32,
    /// Tells a replaced service (an insert under an existing id) from the one a handle holds.
    generation: u64,
    /// Set when a handle found this service broken (its `poll_ready` failed) and set the
    /// backend down; a new service under the id sets it up again.
    broken: bool,
    service: S,
}

struct Registry<S> {
    services: BTreeMap<Arc<str>, Registered<S>>,
    next_generation: u64,
}

struct Shared<B: ?Sized, S> {
    registry: Mutex<Registry<S>>,
    /// The version, and the tasks waiting for it to change.
    changes: Arc<Changes>,
    /// How many backends are registered (broken ones included): the size of the balancer's
    /// set. Written under the registry lock.
    backends: AtomicUsize,
    balancer: Arc<B>,
}

/// One membership change, with the backend's id already made.
enum Edit<S> {
    Insert {
        id: Arc<str>,
        weight: u32,
        service: S,
    },
    Remove(Arc<str>),
}

impl<S> Edit<S> {
    fn from_change<K: fmt::Display>(change: Change<K, S>) -> Self {
        match change {
            Change::Insert(key, service) => Edit::Insert {
                id: key.to_string().into(),
                weight: 1,
                service,
            },
            Change::Remove(key) => Edit::Remove(key.to_string().into()),
        }
    }
}

/// The set of inner services of a [`Balance`](super::Balance) and of all its clones, by
/// backend id. A cheap, cloneable handle: keep one wherever membership changes come from.
///
/// Every change updates the balancer's backend set in the same step (a whole-set
/// [`Balancer::update`], so O(backends) per change; [`apply`](Membership::apply) takes a
/// batch for one update). In case of error nothing changes.
pub struct Membership<B: ?Sized, S> {
    shared: Arc<Shared<B, S>>,
}

impl<B: ?Sized, S> Clone for Membership<B, S> {
    fn clone(&self) -> Self {
        Membership {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<B: Balancer<()> + ?Sized, S> Membership<B, S> {
    /// An empty registry feeding `balancer`.
    pub(super) fn new(balancer: Arc<B>) -> Self {
        Membership {
            shared: Arc::new(Shared {
                registry: Mutex::new(Registry {
                    services: BTreeMap::new(),
                    next_generation: 0,
                }),
                changes: Arc::default(),
                backends: AtomicUsize::new(0),
                balancer,
            }),
        }
    }

    /// Adds (or replaces) the backend `id` with weight 1, served by `service`.
    ///
    /// # Errors
    /// What [`Balancer::update`] rejects: an empty id, too many backends, the policy's own.
    pub fn insert(&self, id: impl Into<Arc<str>>, service: S) -> Result<(), crate::Error> {
        self.insert_weighted(id, 1, service)
    }

    /// Adds (or replaces) the backend `id` with this weight, served by `service`. A replaced
    /// backend keeps its in-flight count and health (a backend set down because its previous
    /// service broke comes back up).
    ///
    /// # Errors
    /// As [`insert`](Membership::insert).
    pub fn insert_weighted(
        &self,
        id: impl Into<Arc<str>>,
        weight: u32,
        service: S,
    ) -> Result<(), crate::Error> {
        self.edit(vec![Edit::Insert {
            id: id.into(),
            weight,
            service,
        }])
    }

    /// Removes the backend `id` (nothing happens if there is none). Requests in flight on it
    /// finish normally.
    ///
    /// # Errors
    /// What the policy's [`Balancer::update`] rejects for the smaller set.
    pub fn remove(&self, id: &str) -> Result<(), crate::Error> {
        self.edit(vec![Edit::Remove(id.into())])
    }

    /// Applies tower [`Change`]s in order, as one update of the balancer. The key's
    /// `Display` form is the backend id (a `SocketAddr` gives `"10.0.0.1:80"`); inserted
    /// backends have weight 1. A backend set down because its service broke comes back up
    /// when the batch inserts a new service under its id, before or after removing the broken
    /// one.
    ///
    /// # Errors
    /// As [`insert`](Membership::insert); then none of the changes is applied.
    pub fn apply<K: fmt::Display>(
        &self,
        changes: impl IntoIterator<Item = Change<K, S>>,
    ) -> Result<(), crate::Error> {
        self.edit(changes.into_iter().map(Edit::from_change).collect())
    }

    /// A future that applies every change of `discover` (any tower [`Discover`], that is any
    /// `TryStream` of [`Change`]s) as it comes, until the stream ends. Spawn it. Changes that
    /// arrive together are applied as one update.
    ///
    /// It resolves to `Ok(())` when the stream ends, or to the first error: the stream's, or
    /// a change the balancer rejects.
    pub fn discover<D>(&self, discover: D) -> Discovery<D, B, S>
    where
        D: Discover<Service = S>,
        D::Key: fmt::Display,
        D::Error: Into<BoxError>,
    {
        Discovery {
            discover,
            membership: self.clone(),
        }
    }

    /// The ids registered now, in order.
    pub fn ids(&self) -> Vec<Arc<str>> {
        self.shared
            .registry
            .lock()
            .services
            .keys()
            .cloned()
            .collect()
    }

    /// The balancer this membership feeds.
    pub fn balancer(&self) -> &Arc<B> {
        &self.shared.balancer
    }

    fn edit(&self, edits: Vec<Edit<S>>) -> Result<(), crate::Error> {
        if edits.is_empty() {
            return Ok(());
        }
        let mut registry = self.shared.registry.lock();
        // The new set's ids and weights first: if the balancer rejects it, nothing changes.
        let mut weights: BTreeMap<Arc<str>, u32> = registry
            .services
            .iter()
            .map(|(id, r)| (Arc::clone(id), r.weight))
            .collect();
        for edit in &edits {
            match edit {
                Edit::Insert { id, weight, .. } => {
                    weights.insert(Arc::clone(id), *weight);
                }
                Edit::Remove(id) => {
                    weights.remove(id);
                }
            }
        }
        let inserts = edits.iter().any(|e| matches!(e, Edit::Insert { .. }));
        if !inserts && weights.len() == registry.services.len() {
            // Only removals of ids that are not there: nothing to do.
            return Ok(());
        }
        let set = weights
            .into_iter()
            .map(|(id, weight)| Backend::new(id, ()).with_weight(weight))
            .collect();
        self.shared.balancer.update(set)?;
        // Ids whose broken service left the registry in this batch (replaced, or removed
        // before a new one came): the balancer kept their state, down, if the id stays.
        let mut broken_left: Vec<Arc<str>> = Vec::new();
        for edit in edits {
            match edit {
                Edit::Insert {
                    id,
                    weight,
                    service,
                } => {
                    let generation = registry.next_generation;
                    registry.next_generation += 1;
                    let replaced = registry.services.insert(
                        Arc::clone(&id),
                        Registered {
                            weight,
                            generation,
                            broken: false,
                            service,
                        },
                    );
                    if replaced.is_some_and(|r| r.broken) {
                        broken_left.push(id);
                    }
                }
                Edit::Remove(id) => {
                    if registry.services.remove(&id).is_some_and(|r| r.broken) {
                        broken_left.push(id);
                    }
                }
            }
        }
        for id in broken_left {
            // Registered at the end of the batch: by a service inserted after the broken one
            // left (none found broken since: that takes this lock), so the backend is up
            // again, whatever the order of the batch's changes. The id is in the set (the
            // balancer was just updated with it).
            if registry.services.contains_key(&id) {
                let _ = self.shared.balancer.set_health(&id, Health::Up);
            }
        }
        // Relaxed: a count to size a walk by; a call racing with this change may read the
        // old one, as it may pick from the old set.
        self.shared
            .backends
            .store(registry.services.len(), Ordering::Relaxed);
        let waiting = self.shared.changes.publish();
        drop(registry);
        // Outside the lock: a waker that polls the task at once finds the registry free.
        for waker in waiting {
            waker.wake();
        }
        Ok(())
    }
}

impl<B: Balancer<()> + ?Sized, S> Membership<B, S> {
    /// Whether the registry changed since version `seen` (a handle's cheap check before it
    /// [`read`](Membership::read)s it).
    pub(super) fn changed_since(&self, seen: u64) -> bool {
        self.shared.changes.version() != seen
    }

    /// How many backends are registered, broken ones included: after the first change, how
    /// many the balancer's set holds.
    pub(super) fn backend_count(&self) -> usize {
        // Relaxed: see `edit`.
        self.shared.backends.load(Ordering::Relaxed)
    }

    /// The registry as it is now, locked until the view is dropped.
    pub(super) fn read(&self) -> RegistryView<'_, S> {
        let registry = self.shared.registry.lock();
        // Exact under the lock: changes publish it while holding the lock.
        let version = self.shared.changes.version();
        RegistryView { registry, version }
    }

    /// A handle found the service `generation` of `id` broken: sets the backend down, once.
    /// The service stays unusable for every handle until a new one is inserted under `id`: the
    /// change is published like a membership change, so every other handle drops its clone at
    /// its next `poll_ready` (and a task waiting on one is woken to do so).
    pub(super) fn mark_broken(&self, id: &str, generation: u64) {
        let mut registry = self.shared.registry.lock();
        let Some(r) = registry.services.get_mut(id) else {
            return;
        };
        if r.generation != generation || r.broken {
            return;
        }
        r.broken = true;
        let _ = self.shared.balancer.set_health(id, Health::Down);
        let waiting = self.shared.changes.publish();
        drop(registry);
        // Outside the lock, as in `edit`.
        for waker in waiting {
            waker.wake();
        }
    }

    /// A new handle's place among the tasks that wait for a change.
    pub(super) fn waiter(&self) -> Waiter {
        Waiter {
            // Relaxed: a unique number is all that is asked of it.
            number: self
                .shared
                .changes
                .next_waiter
                .fetch_add(1, Ordering::Relaxed),
            changes: Arc::clone(&self.shared.changes),
            registered: false,
        }
    }
}

/// The registry's version, bumped by every change, and the wakers of the tasks waiting in
/// `poll_ready` for the next change: at most one per handle, by the handle's number, so that
/// registering, replacing and removing one is O(1) however many handles wait.
struct Changes {
    /// Bumped, under the registry lock, by every change.
    version: AtomicU64,
    waiting: Mutex<AHashMap<u64, Waker>>,
    next_waiter: AtomicU64,
}

impl Default for Changes {
    fn default() -> Self {
        Changes {
            version: AtomicU64::new(0),
            waiting: Mutex::new(AHashMap::new()),
            next_waiter: AtomicU64::new(0),
        }
    }
}

impl Changes {
    fn version(&self) -> u64 {
        // Relaxed: outside the registry lock it only says whether to look (a handle that
        // misses a bump sees it at its next poll); under it, or under `waiting`'s (see
        // `Waiter::wait_for_change`), the mutex orders it.
        self.version.load(Ordering::Relaxed)
    }

    /// Under the registry lock: bumps the version, and hands back the waiting wakers to wake.
    fn publish(&self) -> Vec<Waker> {
        // Relaxed: see `version`.
        self.version.fetch_add(1, Ordering::Relaxed);
        // Taken after the bump: a task registering after this sees the new version.
        let mut waiting = self.waiting.lock();
        waiting.drain().map(|(_, waker)| waker).collect()
    }
}

/// One [`Balance`](super::Balance) handle's place among the tasks waiting for a membership
/// change: it holds at most one waker there, replaced by the handle's next wait and removed
/// when the handle is dropped.
pub(super) struct Waiter {
    changes: Arc<Changes>,
    number: u64,
    /// Whether a waker was ever registered (so that dropping a handle that never waited
    /// takes no lock).
    registered: bool,
}

impl Waiter {
    /// Wakes `waker` at the next change, in place of this handle's earlier waker; at once if
    /// a change came after version `seen`.
    pub(super) fn wait_for_change(&mut self, waker: &Waker, seen: u64) {
        let mut waiting = self.changes.waiting.lock();
        // Exact under this lock: a change bumps the version before it takes the wakers
        // under this lock, so either it sees the waker registered here or this sees its
        // bump.
        if self.changes.version() != seen {
            drop(waiting);
            waker.wake_by_ref();
            return;
        }
        self.registered = true;
        match waiting.entry(self.number) {
            Entry::Occupied(mut mine) => {
                if !mine.get().will_wake(waker) {
                    mine.insert(waker.clone());
                }
            }
            Entry::Vacant(place) => {
                place.insert(waker.clone());
            }
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if self.registered {
            self.changes.waiting.lock().remove(&self.number);
        }
    }
}

/// The registry at one version, as a handle reads it to bring its clones up to date. Holds
/// the registry's lock: keep it briefly.
pub(super) struct RegistryView<'a, S> {
    registry: MutexGuard<'a, Registry<S>>,
    version: u64,
}

impl<S> RegistryView<'_, S> {
    /// The version this view shows.
    pub(super) fn version(&self) -> u64 {
        self.version
    }

    /// Whether `id` is still served by the service `generation`, not found broken.
    pub(super) fn is_usable(&self, id: &str, generation: u64) -> bool {
        self.registry
            .services
            .get(id)
            .is_some_and(|r| r.generation == generation && !r.broken)
    }

    /// Every usable service, in id order, with its generation.
    pub(super) fn usable(&self) -> impl Iterator<Item = (&Arc<str>, u64, &S)> + '_ {
        self.registry
            .services
            .iter()
            .filter(|(_, r)| !r.broken)
            .map(|(id, r)| (id, r.generation, &r.service))
    }
}

impl<B: ?Sized, S> fmt::Debug for Membership<B, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Membership")
            .field(
                "ids",
                &self
                    .shared
                    .registry
                    .lock()
                    .services
                    .keys()
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

pin_project! {
    /// Applies a tower [`Discover`] stream to a [`Membership`]; see
    /// [`Membership::discover`].
    #[must_use = "futures do nothing unless polled: spawn it"]
    pub struct Discovery<D, B: ?Sized, S> {
        #[pin]
        discover: D,
        membership: Membership<B, S>,
    }
}

impl<D, B, S> Future for Discovery<D, B, S>
where
    D: Discover<Service = S>,
    D::Key: fmt::Display,
    D::Error: Into<BoxError>,
    B: Balancer<()> + ?Sized,
{
    type Output = Result<(), BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let mut batch = Vec::new();
        let end = loop {
            match this.discover.as_mut().poll_discover(cx) {
                Poll::Pending => break None,
                Poll::Ready(None) => break Some(Ok(())),
                Poll::Ready(Some(Err(e))) => break Some(Err(e.into())),
                Poll::Ready(Some(Ok(change))) => batch.push(Edit::from_change(change)),
            }
        };
        // Changes that came before an error or the end are applied all the same.
        if let Err(e) = this.membership.edit(batch) {
            return Poll::Ready(Err(e.into()));
        }
        match end {
            None => Poll::Pending,
            Some(result) => Poll::Ready(result),
        }
    }
}

impl<D, B: ?Sized, S> fmt::Debug for Discovery<D, B, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discovery")
            .field("membership", &self.membership)
            .finish_non_exhaustive()
    }
}
