//! The tower adapter (`lbkit::service`, feature `tower`), driven by hand: two `Balance`
//! handles (the first fed by a discovery stream of `Change`s, the second its clone), inner
//! services whose readiness (ready, pending, broken) and responses (success, a response the
//! classifier calls a failure, an error) the input decides, direct `Membership` edits,
//! `set_health`, and a `ManualClock` for outlier ejection. Every future is polled with a
//! counting waker built here (`std::task::Wake`); nothing runs on a runtime, so a run replays
//! exactly (every randomised policy is seeded).
//!
//! Checked, from the `lbkit::service` docs:
//! * tower's contract: an inner service is called only after its own `poll_ready` returned
//!   `Ready(Ok)` since its last call (the mock panics otherwise), and each handle's clones are
//!   polled only by that handle;
//! * `poll_ready` is `Pending` exactly while this handle has no usable service, or while some
//!   eligible backend (by `status()` and the panic threshold) has a usable service here and
//!   none of those is ready; it fails only with an error of the discovery stream or a change
//!   the balancer rejects (an empty id), and then none of that batch is applied;
//! * a `call` right after `Ready(Ok)` goes to an eligible backend whose service here is
//!   ready, if there is one; otherwise it fails with `Unavailable::NoEligibleBackend` when
//!   nothing is eligible, else `NoReadyBackend`; a later call still goes only to an eligible,
//!   ready service;
//! * every backend's in-flight count equals the response futures held on it; dropping or
//!   completing them gives every slot back;
//! * after a handle's `poll_ready`, it holds no service that was removed or replaced; a
//!   service whose `poll_ready` failed sets its backend `Down` (the first handle to find it;
//!   a health the operator sets since stands), and a new service under the id brings it back
//!   up;
//! * wakers do not pile up: a task's wakers held anywhere are at most one per pending inner
//!   service, one for the membership and one for the discovery stream; a task waiting on an
//!   empty set is woken by a membership change;
//! * when everything is dropped, every inner service is dropped and nothing is in flight.
#![no_main]

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use arbitrary::{Result, Unstructured};
use lbkit::service::{Balance, Outcome, ResponseFuture, Unavailable};
use lbkit::{Balancer, Health, HealthConfig, ManualClock, OutlierDetection};
use libfuzzer_sys::fuzz_target;
use tower::discover::Change;
use tower::Service;

#[path = "../../tests/common/mod.rs"]
mod common;
use common::POLICIES;

const IDS: [&str; 5] = ["a", "b", "c", "d", "e"];

/// What an id's services do when polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Readiness {
    Ready,
    Pending,
    Broken,
}

/// One mock service value: the registered one or a handle's clone.
#[derive(Debug)]
struct Instance {
    id: String,
    generation: usize,
    /// The handle whose clone this is (`None` for the registered value).
    handle: Option<usize>,
    ready: bool,
    broken: bool,
    alive: bool,
    waker: Option<Waker>,
}

/// A response the target completes by hand.
#[derive(Default)]
struct Reply {
    outcome: Option<std::result::Result<u32, &'static str>>,
    waker: Option<Waker>,
}

#[derive(Default)]
struct World {
    readiness: BTreeMap<String, Readiness>,
    instances: Vec<Instance>,
    /// The handle being polled or called (`usize::MAX` outside).
    current: usize,
    /// The instance the last `call` went to.
    called: Option<usize>,
    /// Instances found broken by the last `poll_ready`.
    broke: Vec<usize>,
    /// The reply of the last `call`, for the target to complete.
    reply: Option<Arc<Mutex<Reply>>>,
}

type Shared = Arc<Mutex<World>>;

struct Mock {
    world: Shared,
    me: usize,
}

impl Mock {
    fn new(world: &Shared, id: &str, generation: usize) -> Mock {
        let mut w = world.lock().unwrap();
        w.instances.push(Instance {
            id: id.to_owned(),
            generation,
            handle: None,
            ready: false,
            broken: false,
            alive: true,
            waker: None,
        });
        Mock {
            world: Arc::clone(world),
            me: w.instances.len() - 1,
        }
    }
}

impl Clone for Mock {
    fn clone(&self) -> Self {
        let mut w = self.world.lock().unwrap();
        let (id, generation) = (
            w.instances[self.me].id.clone(),
            w.instances[self.me].generation,
        );
        let current = w.current;
        assert!(
            current != usize::MAX,
            "a service cloned outside a handle's poll_ready"
        );
        w.instances.push(Instance {
            id,
            generation,
            handle: Some(current),
            ready: false,
            broken: false,
            alive: true,
            waker: None,
        });
        Mock {
            world: Arc::clone(&self.world),
            me: w.instances.len() - 1,
        }
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let mut w = self.world.lock().unwrap();
        let waker = w.instances[self.me].waker.take();
        w.instances[self.me].alive = false;
        drop(w);
        drop(waker);
    }
}

struct MockResponse(Arc<Mutex<Reply>>);

impl Future for MockResponse {
    type Output = std::result::Result<u32, &'static str>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut reply = self.0.lock().unwrap();
        match reply.outcome.take() {
            Some(outcome) => Poll::Ready(outcome),
            None => {
                reply.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Service<u64> for Mock {
    type Response = u32;
    type Error = &'static str;
    type Future = MockResponse;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), &'static str>> {
        let mut w = self.world.lock().unwrap();
        let current = w.current;
        let readiness = w.readiness[&w.instances[self.me].id];
        let me = &mut w.instances[self.me];
        assert_eq!(
            me.handle,
            Some(current),
            "{me:?} polled by handle {current}"
        );
        assert!(!me.broken, "{me:?} polled again after it failed");
        let old = me.waker.take();
        let result = match readiness {
            Readiness::Ready => {
                me.ready = true;
                Poll::Ready(Ok(()))
            }
            Readiness::Pending => {
                me.waker = Some(cx.waker().clone());
                Poll::Pending
            }
            Readiness::Broken => {
                me.broken = true;
                w.broke.push(self.me);
                Poll::Ready(Err("broken"))
            }
        };
        drop(w);
        drop(old);
        result
    }

    fn call(&mut self, _: u64) -> MockResponse {
        let mut w = self.world.lock().unwrap();
        let current = w.current;
        let me = &mut w.instances[self.me];
        assert_eq!(
            me.handle,
            Some(current),
            "{me:?} called by handle {current}"
        );
        assert!(
            me.ready,
            "{me:?} called without poll_ready giving Ready since its last call"
        );
        me.ready = false;
        w.called = Some(self.me);
        let reply = Arc::new(Mutex::new(Reply::default()));
        w.reply = Some(Arc::clone(&reply));
        MockResponse(reply)
    }
}

/// The discovery stream, fed by the target.
#[derive(Default)]
struct FeedState {
    queue: VecDeque<std::result::Result<Change<String, Mock>, &'static str>>,
    closed: bool,
    waker: Option<Waker>,
}

struct Feed(Arc<Mutex<FeedState>>);

impl futures_core::Stream for Feed {
    type Item = std::result::Result<Change<String, Mock>, &'static str>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut feed = self.0.lock().unwrap();
        if let Some(item) = feed.queue.pop_front() {
            return Poll::Ready(Some(item));
        }
        if feed.closed {
            return Poll::Ready(None);
        }
        feed.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A task: counts its wakes; its `Arc`'s strong count tells how many wakers of it are alive.
#[derive(Default)]
struct Task {
    wakes: AtomicUsize,
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
}

fn key(request: &u64) -> Option<u64> {
    (request & 1 == 0).then_some(*request)
}

fn classify(response: &u32) -> Outcome {
    if *response >= 500 {
        Outcome::Failure
    } else {
        Outcome::Success
    }
}

type KeyFn = fn(&u64) -> Option<u64>;
type ClassifyFn = fn(&u32) -> Outcome;
type Lb = dyn Balancer<()>;
type Handle = Balance<Lb, Mock, KeyFn, ClassifyFn>;
type Response = ResponseFuture<MockResponse, ClassifyFn>;

/// What the target knows of the registry: id -> (generation, found broken).
type Registry = BTreeMap<String, (usize, bool)>;

/// The backends requests may go to now: eligible by `status()`, or past the panic threshold
/// every member that could serve. `status()` also lists removed backends that still hold
/// picks: they are not members. One priority level: panic is considered only while fewer
/// than 5 in 7 of the members that could serve are healthy (the default overprovisioning
/// factor), then when fewer than the threshold's share are.
fn eligible(lb: &Lb, panic: Option<f64>) -> Vec<String> {
    let status = lb.status();
    let could = |s: &lbkit::Status| {
        s.weight() > 0 && s.health() != Health::Draining && !s.is_removed() && s.coverage() > 0.0
    };
    let n_could = status.iter().filter(|s| could(s)).count() as u128;
    let n_healthy = status.iter().filter(|s| s.is_eligible()).count() as u128;
    let panic = panic.is_some_and(|share| {
        let threshold = (share * 1_000_000.0).round() as u128;
        140 * n_healthy < 100 * n_could && n_healthy * 1_000_000 < threshold * n_could
    });
    status
        .iter()
        .filter(|s| if panic { could(s) } else { s.is_eligible() })
        .map(|s| s.id().to_owned())
        .collect()
}

/// The instances handle `h` can call or wait on: alive, its own, not found broken.
fn usable(w: &World, h: usize) -> Vec<&Instance> {
    w.instances
        .iter()
        .filter(|i| i.alive && i.handle == Some(h) && !i.broken)
        .collect()
}

/// A response future held by the target: the backend it went to, and its reply cell.
struct Held {
    future: Response,
    id: String,
    reply: Arc<Mutex<Reply>>,
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let world: Shared = Arc::default();
    world.lock().unwrap().current = usize::MAX;
    for id in IDS {
        world
            .lock()
            .unwrap()
            .readiness
            .insert(id.to_owned(), Readiness::Ready);
    }
    world
        .lock()
        .unwrap()
        .readiness
        .insert(String::new(), Readiness::Ready);
    let clock = ManualClock::new();
    let policy = POLICIES[u.choose_index(POLICIES.len())?];
    let lb: Arc<Lb> = Arc::from(
        (policy.new_unit)(Vec::new(), u64::from(u.arbitrary::<u8>()?)).expect("an empty set"),
    );
    let mut config = HealthConfig::new().clock(clock.clone());
    if u.arbitrary()? {
        config = config.outlier_detection(OutlierDetection {
            consecutive_failures: u.int_in_range(1..=3)?,
            base_ejection_time: Duration::from_secs(1),
            max_ejection_time: Duration::from_secs(10),
            max_ejection_percent: *u.choose(&[50.0, 100.0, 20.0])?,
            ..OutlierDetection::default()
        });
    }
    let panic = if u.arbitrary()? {
        Some(*u.choose(&[0.5, 1.0])?)
    } else {
        None
    };
    if let Some(share) = panic {
        config = config.panic_threshold(share);
    }
    lb.set_health_config(config).expect("valid rules");
    let feed = Arc::new(Mutex::new(FeedState::default()));
    let first: Handle = Balance::new(Arc::clone(&lb), key as KeyFn)
        .classify(classify as ClassifyFn)
        .with_clock(clock.clone())
        .discover(Feed(Arc::clone(&feed)));
    let second = first.clone();
    let mut handles = [first, second];
    let tasks = [Arc::new(Task::default()), Arc::new(Task::default())];
    let wakers: [Waker; 2] = [
        Waker::from(Arc::clone(&tasks[0])),
        Waker::from(Arc::clone(&tasks[1])),
    ];
    let responses_task = Arc::new(Task::default());
    let responses_waker = Waker::from(Arc::clone(&responses_task));
    let mut registry = Registry::new();
    let mut generation = 0;
    // The discovery stream is live (not ended in error or closed and drained).
    let mut discovering = true;
    // Per handle: its last poll_ready was Ready(Ok), with no call since.
    let mut may_call = [false; 2];
    // Per handle: waiting on an empty set since this many wakes.
    let mut waiting_empty: [Option<usize>; 2] = [None; 2];
    let mut held: Vec<Held> = Vec::new();
    for _ in 0..u.int_in_range(0..=200u8)? {
        if u.is_empty() {
            break;
        }
        match u.int_in_range(0..=11u8)? {
            0 | 1 => {
                // A discovery change, applied at the first handle's next poll_ready.
                let id = if u.ratio(1, 16)? {
                    String::new()
                } else {
                    u.choose(&IDS)?.to_string()
                };
                let change = if u.arbitrary()? {
                    generation += 1;
                    Ok(Change::Insert(
                        id.clone(),
                        Mock::new(&world, &id, generation),
                    ))
                } else {
                    Ok(Change::Remove(id))
                };
                let mut f = feed.lock().unwrap();
                f.queue.push_back(change);
                let waker = f.waker.take();
                drop(f);
                if let Some(w) = waker {
                    w.wake();
                }
            }
            2 => {
                let mut f = feed.lock().unwrap();
                if u.arbitrary()? {
                    f.queue.push_back(Err("discovery failed"));
                } else {
                    f.closed = true;
                }
            }
            3 => {
                // A direct membership edit.
                let id = if u.ratio(1, 16)? {
                    String::new()
                } else {
                    u.choose(&IDS)?.to_string()
                };
                let membership = handles[0].membership().clone();
                let insert: bool = u.arbitrary()?;
                let result = if insert {
                    generation += 1;
                    membership.insert(id.clone(), Mock::new(&world, &id, generation))
                } else {
                    membership.remove(&id)
                };
                let changed = match (&result, insert) {
                    (Err(e), _) => {
                        assert!(id.is_empty(), "{id:?}: {e:?}");
                        assert_eq!(*e, lbkit::Error::EmptyId);
                        false
                    }
                    (Ok(()), true) => {
                        assert!(!id.is_empty());
                        let was_broken = registry.get(&id).is_some_and(|r| r.1);
                        registry.insert(id.clone(), (generation, false));
                        if was_broken {
                            let status = lb.status();
                            let s = status.iter().find(|s| s.id() == id).expect("inserted");
                            assert_eq!(s.health(), Health::Up, "a new service under a broken id");
                        }
                        true
                    }
                    (Ok(()), false) => registry.remove(&id).is_some(),
                };
                if changed {
                    for h in 0..2 {
                        if let Some(wakes) = waiting_empty[h].take() {
                            assert!(
                                tasks[h].wakes.load(Ordering::SeqCst) > wakes,
                                "handle {h} not woken by a membership change"
                            );
                        }
                    }
                }
            }
            4 => {
                let id = u.choose(&IDS)?.to_string();
                let readiness =
                    *u.choose(&[Readiness::Ready, Readiness::Pending, Readiness::Broken])?;
                let mut w = world.lock().unwrap();
                w.readiness.insert(id.clone(), readiness);
                // A service that becomes ready wakes the task that waits on it.
                let wakers: Vec<Waker> = if readiness == Readiness::Ready {
                    w.instances
                        .iter_mut()
                        .filter(|i| i.id == id)
                        .filter_map(|i| i.waker.take())
                        .collect()
                } else {
                    Vec::new()
                };
                drop(w);
                wakers.into_iter().for_each(Waker::wake);
            }
            5 | 6 => {
                let h = u.choose_index(2)?;
                let call_now = u.arbitrary::<bool>()?;
                // What the discovery stream will hand over (first handle only).
                let (error_expected, batch) = if h == 0 && discovering {
                    let f = feed.lock().unwrap();
                    let end = f.queue.iter().position(|c| c.is_err());
                    let batch: Vec<(String, Option<usize>)> = f
                        .queue
                        .iter()
                        .take(end.unwrap_or(f.queue.len()))
                        .map(|c| match c {
                            Ok(Change::Insert(id, mock)) => (
                                id.clone(),
                                Some(world.lock().unwrap().instances[mock.me].generation),
                            ),
                            Ok(Change::Remove(id)) => (id.clone(), None),
                            Err(_) => unreachable!(),
                        })
                        .collect();
                    // Applied as one update: rejected if the resulting set has an empty id.
                    let mut ids: Vec<&str> = registry.keys().map(String::as_str).collect();
                    for (id, g) in &batch {
                        ids.retain(|i| i != id);
                        if g.is_some() {
                            ids.push(id);
                        }
                    }
                    let rejected = ids.contains(&"");
                    let ends = end.is_some() || f.closed;
                    (rejected || end.is_some(), Some((batch, rejected, ends)))
                } else {
                    (false, None)
                };
                world.lock().unwrap().current = h;
                world.lock().unwrap().broke.clear();
                let result = handles[h].poll_ready(&mut Context::from_waker(&wakers[h]));
                world.lock().unwrap().current = usize::MAX;
                if let Some((batch, rejected, ends)) = batch {
                    if !rejected {
                        for (id, g) in batch {
                            match g {
                                Some(g) => {
                                    registry.insert(id, (g, false));
                                }
                                None => {
                                    registry.remove(&id);
                                }
                            }
                        }
                    }
                    if ends || rejected {
                        discovering = false;
                    }
                }
                match &result {
                    Poll::Ready(Err(e)) => assert!(error_expected, "poll_ready failed: {e}"),
                    _ => assert!(
                        !error_expected,
                        "poll_ready did not report the discovery error: {result:?}"
                    ),
                }
                let w = world.lock().unwrap();
                for &i in &w.broke {
                    let inst = &w.instances[i];
                    if let Some(r) = registry.get_mut(&inst.id) {
                        // The first handle to find a service broken sets its backend down
                        // ("once": a health set since, by the operator, stands).
                        if r.0 == inst.generation && !r.1 {
                            r.1 = true;
                            let status = lb.status();
                            let s = status
                                .iter()
                                .find(|s| s.id() == inst.id)
                                .expect("registered");
                            assert_eq!(s.health(), Health::Down, "a broken service's backend");
                        }
                    }
                }
                // (An error returns before the services are synchronised: tower treats the
                // balance as failed then.)
                let synced = !matches!(result, Poll::Ready(Err(_)));
                for i in w
                    .instances
                    .iter()
                    .filter(|i| synced && i.alive && i.handle == Some(h))
                {
                    assert_eq!(
                        registry.get(&i.id).map(|r| r.0),
                        Some(i.generation),
                        "handle {h} holds {i:?}, not registered"
                    );
                }
                let eligible = eligible(&*lb, panic);
                let mine = usable(&w, h);
                let here: Vec<&&Instance> =
                    mine.iter().filter(|i| eligible.contains(&i.id)).collect();
                let any_ready = here.iter().any(|i| i.ready);
                let pending_expected = mine.is_empty() || (!here.is_empty() && !any_ready);
                if let Poll::Ready(Ok(())) | Poll::Pending = result {
                    assert_eq!(
                        result.is_pending(),
                        pending_expected,
                        "poll_ready {result:?}: eligible {eligible:?}, here {mine:?}"
                    );
                }
                drop(w);
                may_call[h] = matches!(result, Poll::Ready(Ok(())));
                waiting_empty[h] = (result.is_pending() && mine_is_empty(&world, h))
                    .then(|| tasks[h].wakes.load(Ordering::SeqCst));
                if call_now && may_call[h] {
                    call(&world, &lb, panic, &mut handles[h], h, u, &mut held, true)?;
                    may_call[h] = false;
                }
            }
            7 => {
                let h = u.choose_index(2)?;
                if may_call[h] {
                    call(&world, &lb, panic, &mut handles[h], h, u, &mut held, false)?;
                    may_call[h] = false;
                }
            }
            8 => {
                if !held.is_empty() {
                    let i = u.choose_index(held.len())?;
                    let outcome = *u.choose(&[Ok(200), Ok(500), Err("failed")])?;
                    let waker = {
                        let mut r = held[i].reply.lock().unwrap();
                        r.outcome = Some(outcome);
                        r.waker.take()
                    };
                    if let Some(w) = waker {
                        w.wake();
                    }
                    let polled = Pin::new(&mut held[i].future)
                        .poll(&mut Context::from_waker(&responses_waker));
                    let Poll::Ready(result) = polled else {
                        panic!("a completed response is still pending");
                    };
                    assert_eq!(
                        result.is_ok(),
                        outcome.is_ok(),
                        "{result:?} for {outcome:?}"
                    );
                    held.swap_remove(i);
                }
            }
            9 => {
                if !held.is_empty() {
                    let i = u.choose_index(held.len())?;
                    held.swap_remove(i);
                }
            }
            10 => {
                let id = u.choose(&IDS)?;
                let health = *u.choose(&[Health::Up, Health::Down, Health::Draining])?;
                let result = lb.set_health(id, health);
                assert_eq!(
                    result.is_ok(),
                    registry.contains_key(*id),
                    "set_health({id:?}): {result:?}"
                );
                // Health changes wake no task: a later poll_ready sees them.
            }
            _ => clock.advance(Duration::from_millis(u.int_in_range(0..=2000)?)),
        }
        // Accounting: each backend's in-flight count is the responses held on it.
        let mut on: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &held {
            *on.entry(&r.id).or_default() += 1;
        }
        for s in lb.status() {
            assert_eq!(
                s.in_flight(),
                on.get(s.id()).copied().unwrap_or(0),
                "in flight on {:?}",
                s.id()
            );
        }
        // Wakers: at most one per pending inner service, the membership's and the stream's.
        let w = world.lock().unwrap();
        for h in 0..2 {
            let stored = w
                .instances
                .iter()
                .filter(|i| i.waker.as_ref().is_some_and(|k| k.will_wake(&wakers[h])))
                .count();
            let live = Arc::strong_count(&tasks[h]) - 2;
            assert!(
                live <= stored + 2,
                "handle {h}: {live} wakers alive, {stored} held by pending services"
            );
        }
        drop(w);
    }
    drop(held);
    assert!(
        lb.status().iter().all(|s| s.in_flight() == 0),
        "in flight after every response was dropped"
    );
    drop(handles);
    drop(feed);
    let w = world.lock().unwrap();
    let alive: Vec<&Instance> = w.instances.iter().filter(|i| i.alive).collect();
    assert!(
        alive.is_empty(),
        "services alive after everything was dropped: {alive:?}"
    );
    Ok(())
}

fn mine_is_empty(world: &Shared, h: usize) -> bool {
    usable(&world.lock().unwrap(), h).is_empty()
}

/// One call on handle `h`; `strict`: right after its `poll_ready` gave `Ready(Ok)`.
#[allow(clippy::too_many_arguments)]
fn call(
    world: &Shared,
    lb: &Arc<Lb>,
    panic: Option<f64>,
    handle: &mut Handle,
    h: usize,
    u: &mut Unstructured<'_>,
    held: &mut Vec<Held>,
    strict: bool,
) -> Result<()> {
    let eligible = eligible(&**lb, panic);
    let ready_here: Vec<String> = {
        let w = world.lock().unwrap();
        usable(&w, h)
            .iter()
            .filter(|i| i.ready && eligible.contains(&i.id))
            .map(|i| i.id.clone())
            .collect()
    };
    let request: u64 = u.arbitrary()?;
    {
        let mut w = world.lock().unwrap();
        w.current = h;
        w.called = None;
    }
    let mut future = handle.call(request);
    let called = {
        let mut w = world.lock().unwrap();
        w.current = usize::MAX;
        w.called.take().map(|i| w.instances[i].id.clone())
    };
    let called = match called {
        Some(id) => {
            assert!(
                eligible.contains(&id),
                "called {id:?}, eligible {eligible:?}"
            );
            id
        }
        None => {
            if strict {
                assert!(
                    ready_here.is_empty(),
                    "no call, yet ready here: {ready_here:?}"
                );
            }
            // An unavailable response fails at once, with the documented reason.
            let polled = Pin::new(&mut future).poll(&mut Context::from_waker(Waker::noop()));
            let Poll::Ready(Err(e)) = polled else {
                panic!("an uncalled request did not fail at once");
            };
            let why = *e.downcast_ref::<Unavailable>().expect("an Unavailable");
            let want = if eligible.is_empty() {
                Unavailable::NoEligibleBackend
            } else {
                Unavailable::NoReadyBackend
            };
            assert_eq!(why, want, "eligible {eligible:?}");
            return Ok(());
        }
    };
    let reply = world
        .lock()
        .unwrap()
        .reply
        .take()
        .expect("the call made a reply");
    held.push(Held {
        future,
        id: called,
        reply,
    });
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = run(&mut u);
});
