//! One handle's own clones of the registered inner services, and which are polled ready.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use ahash::AHashMap;
use tower::Service;

use super::Membership;
use crate::Balancer;

/// One handle's clone of a registered service.
struct Slot<S> {
    id: Arc<str>,
    service: S,
    /// The registry's generation of the service this is a clone of.
    generation: u64,
    /// Polled ready since its last call.
    ready: bool,
}

/// The inner services one [`Balance`](super::Balance) handle holds (its own clones of those
/// registered in the [`Membership`]), each marked ready from a successful `poll_ready` until
/// the `call` that spends it. Like tower's `ReadyCache`, keyed by backend id, but the
/// balancer chooses which one a request goes to.
pub(super) struct ReadyCache<S> {
    slots: Vec<Slot<S>>,
    /// Index into `slots` by backend id, of the usable ones (not found broken).
    by_id: AHashMap<Arc<str>, usize>,
    /// The indices of the usable services not polled ready since their last call.
    unready: Vec<usize>,
    /// How many usable services are ready.
    ready: usize,
    /// The registry version this reflects (`u64::MAX`: none yet).
    seen: u64,
}

impl<S> ReadyCache<S> {
    /// No services, reflecting no registry version yet.
    pub(super) fn new() -> Self {
        ReadyCache {
            slots: Vec::new(),
            by_id: AHashMap::new(),
            unready: Vec::new(),
            ready: 0,
            seen: u64::MAX,
        }
    }

    /// The registry version these services reflect.
    pub(super) fn seen(&self) -> u64 {
        self.seen
    }

    /// Brings the services up to the registry: drops removed, replaced or broken services,
    /// clones new ones. Free when nothing changed since the last sync.
    pub(super) fn sync<B>(&mut self, membership: &Membership<B, S>)
    where
        B: Balancer<()> + ?Sized,
        S: Clone,
    {
        if !membership.changed_since(self.seen) {
            return;
        }
        let registry = membership.read();
        self.seen = registry.version();
        let mut kept: AHashMap<Arc<str>, Slot<S>> = AHashMap::new();
        for slot in self.slots.drain(..) {
            if registry.is_usable(&slot.id, slot.generation) && self.by_id.contains_key(&slot.id) {
                kept.insert(Arc::clone(&slot.id), slot);
            }
        }
        self.by_id.clear();
        self.unready.clear();
        self.ready = 0;
        for (id, generation, service) in registry.usable() {
            let slot = kept.remove(id).unwrap_or_else(|| Slot {
                id: Arc::clone(id),
                service: service.clone(),
                generation,
                ready: false,
            });
            let index = self.slots.len();
            if slot.ready {
                self.ready += 1;
            } else {
                self.unready.push(index);
            }
            self.by_id.insert(Arc::clone(id), index);
            self.slots.push(slot);
        }
    }

    /// Polls every service not ready yet (registering the task's waker with each). One whose
    /// `poll_ready` fails is broken for good (tower's convention): never used again by this
    /// handle, and reported to `membership`, which sets its backend down for all.
    pub(super) fn poll_unready<B, Req>(
        &mut self,
        cx: &mut Context<'_>,
        membership: &Membership<B, S>,
    ) where
        B: Balancer<()> + ?Sized,
        S: Service<Req>,
    {
        let mut i = 0;
        while i < self.unready.len() {
            let slot = &mut self.slots[self.unready[i]];
            match slot.service.poll_ready(cx) {
                Poll::Pending => i += 1,
                Poll::Ready(Ok(())) => {
                    slot.ready = true;
                    self.ready += 1;
                    self.unready.swap_remove(i);
                }
                Poll::Ready(Err(_)) => {
                    // The slot itself goes at the next sync.
                    self.by_id.remove(&slot.id);
                    membership.mark_broken(&slot.id, slot.generation);
                    self.unready.swap_remove(i);
                }
            }
        }
    }

    /// Whether there are usable services and every one is ready.
    pub(super) fn all_ready(&self) -> bool {
        self.unready.is_empty() && self.ready > 0
    }

    /// Whether there is no usable service.
    pub(super) fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// How many services are usable.
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether the service of backend `id` is ready; `None` if this handle has no usable
    /// service for `id`.
    pub(super) fn is_ready(&self, id: &str) -> Option<bool> {
        self.by_id.get(id).map(|&i| self.slots[i].ready)
    }

    /// The index of the service of backend `id` if it is usable and polled ready.
    pub(super) fn ready_index(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied().filter(|&i| self.slots[i].ready)
    }

    /// Calls the ready service at `index` (from [`ready_index`](Self::ready_index)), which
    /// spends its readiness: the next `poll_unready` polls it again.
    pub(super) fn call<Req>(&mut self, index: usize, request: Req) -> S::Future
    where
        S: Service<Req>,
    {
        let slot = &mut self.slots[index];
        debug_assert!(slot.ready, "called a service not polled ready");
        slot.ready = false;
        self.ready -= 1;
        self.unready.push(index);
        slot.service.call(request)
    }
}

impl<S> fmt::Debug for ReadyCache<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<(&str, bool)> = self
            .by_id
            .iter()
            .map(|(id, &i)| (&**id, self.slots[i].ready))
            .collect();
        ids.sort_unstable();
        // As a list of (id, ready), in id order.
        fmt::Debug::fmt(&ids, f)
    }
}
