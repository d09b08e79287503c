//! Per-request steering through the middleware: retries that avoid the backends already
//! tried, sticky sessions, and the id of the backend that served a response.

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

/// What a [`Balance`](super::Balance) reads from a request to steer its pick. Both methods
/// have a default that reads nothing, so an implementation states only what its requests
/// carry.
///
/// * [`attempts`](Steer::attempts): the request's [`Attempts`], shared with its retries. The
///   balance avoids every backend recorded there
///   ([`Request::avoid`](crate::Request::avoid): while another backend can serve), then
///   records the backend it sends this attempt to.
/// * [`sticky`](Steer::sticky): the id of the backend the request's session sticks to (a
///   cookie's value, say). The balance prefers it
///   ([`Request::prefer`](crate::Request::prefer): while it can serve, and not avoided).
///
/// Its sibling [`MarkServed`] writes on each `Ok` response the id of the backend that served
/// it, so that the caller can set its sticky cookie or log it. A balance's steering type
/// implements both ([`Balance::steer`](super::Balance::steer)).
///
/// [`NoSteer`] (the default) reads and writes nothing. With the `http` cargo feature,
/// `HttpSteer` does all three for `http` requests and responses. For
/// requests of your own type, implement them:
///
/// ```
/// use std::sync::Arc;
/// use lbkit::service::{Attempts, MarkServed, Steer};
///
/// struct Query {
///     session: Option<String>,
///     attempts: Attempts,
/// }
///
/// struct Reply {
///     text: String,
///     served_by: Option<Arc<str>>,
/// }
///
/// #[derive(Clone)]
/// struct QuerySteer;
///
/// impl Steer<Query> for QuerySteer {
///     fn attempts<'r>(&self, query: &'r Query) -> Option<&'r Attempts> {
///         Some(&query.attempts)
///     }
///     fn sticky<'r>(&self, query: &'r Query) -> Option<&'r str> {
///         query.session.as_deref()
///     }
/// }
///
/// impl MarkServed<Reply> for QuerySteer {
///     fn mark(&self, reply: &mut Reply, backend: &Arc<str>) {
///         reply.served_by = Some(Arc::clone(backend));
///     }
/// }
/// # let _ = |r: Reply| r.text;
/// ```
pub trait Steer<Req> {
    /// The record of this request's attempts, if it carries one. A retry must carry the same
    /// record (a clone of an [`Attempts`] shares it), made before the first attempt.
    fn attempts<'r>(&self, request: &'r Req) -> Option<&'r Attempts> {
        let _ = request;
        None
    }

    /// The id of the backend this request would rather go to, if any. An id not in the set
    /// is not honoured; neither is one that cannot serve or has already been tried.
    fn sticky<'r>(&self, request: &'r Req) -> Option<&'r str> {
        let _ = request;
        None
    }
}

/// Marks a response with the id of the backend that served it: the response side of a
/// balance's steering (see [`Steer`]).
pub trait MarkServed<Res> {
    /// Marks an `Ok` response with its backend's id. Called before the response is
    /// classified and returned; never for an `Err`.
    fn mark(&self, response: &mut Res, backend: &Arc<str>);
}

/// No steering: no retry record, no sticky session, responses unmarked. The default
/// [`Steer`] of a [`Balance`](super::Balance); it costs nothing per request.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSteer;

impl<Req> Steer<Req> for NoSteer {}

impl<Res> MarkServed<Res> for NoSteer {
    #[inline]
    fn mark(&self, _: &mut Res, _: &Arc<str>) {}
}

/// The backends a request has been sent to, in order: the record its retries share, so that
/// each retry avoids the backends already tried.
///
/// A cheap handle: clones share one record. Put one in the request before the first attempt
/// (before a retry layer clones the request), and let the clone each retry gets carry the
/// same handle; the [`Balance`](super::Balance) reads it (through [`Steer::attempts`]) to
/// build the retry's [avoid list](crate::Request::avoid), and appends the backend each
/// attempt is sent to. An attempt that finds no backend to send to appends nothing.
///
/// When every backend that can serve has been tried, the next attempt goes to one of them
/// anyway (the avoid list gives way rather than drop the request).
///
/// ```
/// use lbkit::service::Attempts;
/// let attempts = Attempts::new();
/// let shared = attempts.clone();
/// assert!(shared.is_empty());
/// assert_eq!(attempts.last(), None);
/// ```
#[derive(Clone, Default)]
pub struct Attempts {
    tried: Arc<Mutex<Vec<Arc<str>>>>,
}

impl Attempts {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// The ids of the backends the attempts were sent to, in order (an id repeats if an
    /// attempt had to go back to a backend already tried).
    pub fn tried(&self) -> Vec<Arc<str>> {
        self.tried.lock().clone()
    }

    /// The backend of the latest attempt.
    pub fn last(&self) -> Option<Arc<str>> {
        self.tried.lock().last().cloned()
    }

    /// How many attempts were sent.
    pub fn len(&self) -> usize {
        self.tried.lock().len()
    }

    /// Whether no attempt was sent yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `route` with the ids tried so far (the lock held, so that concurrent attempts
    /// of one request each see the other's backend), and records the backend it returns.
    pub(super) fn route<T>(&self, route: impl FnOnce(&[&str]) -> (T, Option<Arc<str>>)) -> T {
        let mut tried = self.tried.lock();
        let (result, sent_to) = {
            let ids: Vec<&str> = tried.iter().map(|id| &**id).collect();
            route(&ids)
        };
        if let Some(id) = sent_to {
            tried.push(id);
        }
        result
    }
}

impl fmt::Debug for Attempts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Attempts")
            .field(&*self.tried.lock())
            .finish()
    }
}

/// The id of the backend that served a response: what `HttpSteer` puts in
/// the extensions of every `Ok` response, for the caller to set its sticky cookie or log it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Served(Arc<str>);

impl Served {
    /// The record of `backend` serving a response.
    pub fn new(backend: impl Into<Arc<str>>) -> Self {
        Served(backend.into())
    }

    /// The backend's id.
    pub fn id(&self) -> &str {
        &self.0
    }
}
