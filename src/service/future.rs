//! The response future: the inner service's, holding the backend's pick until it completes.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower::BoxError;

use super::{Classify, MarkServed, NoSteer, Outcome, Unavailable};
use crate::{Clock, Failure, Pick};

/// A request in flight: the pick, and when it started.
struct Outstanding {
    pick: Pick<()>,
    start: Duration,
    clock: Arc<dyn Clock>,
}

pin_project! {
    /// The response of a [`Balance`](super::Balance): the inner service's response future,
    /// holding the backend's [`Pick`] until it completes. On completion the pick reports
    /// [`Pick::success`] with the latency, or [`Pick::failure`] (an `Err`, or a response the
    /// [`Classify`] calls a failure). Dropping it before it completes releases the pick
    /// without a report. An `Ok` response is marked by the balance's [`Steer`] (with the
    /// backend's id) before it is classified.
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<Fut, C, St = NoSteer> {
        #[pin]
        inner: Option<Fut>,
        pick: Option<Outstanding>,
        classify: C,
        steer: Option<St>,
        unavailable: Option<Unavailable>,
    }
}

impl<Fut, C, St> ResponseFuture<Fut, C, St> {
    /// The inner service's `response`, started at `start` on `clock`, holding `pick`.
    pub(super) fn new(
        response: Fut,
        pick: Pick<()>,
        start: Duration,
        clock: Arc<dyn Clock>,
        classify: C,
        steer: St,
    ) -> Self {
        ResponseFuture {
            inner: Some(response),
            pick: Some(Outstanding { pick, start, clock }),
            classify,
            steer: Some(steer),
            unavailable: None,
        }
    }

    /// A future that fails at once with `why`.
    pub(super) fn unavailable(why: Unavailable, classify: C) -> Self {
        ResponseFuture {
            inner: None,
            pick: None,
            classify,
            steer: None,
            unavailable: Some(why),
        }
    }
}

impl<Fut, C, St, T, E> Future for ResponseFuture<Fut, C, St>
where
    Fut: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T>,
    St: MarkServed<T>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return match this.unavailable.take() {
                Some(why) => Poll::Ready(Err(why.into())),
                // Polled after completion.
                None => Poll::Pending,
            };
        };
        let result = match inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(result) => result,
        };
        this.inner.set(None);
        let mut result = result;
        if let Some(Outstanding { pick, start, clock }) = this.pick.take() {
            if let (Ok(response), Some(steer)) = (result.as_mut(), this.steer.as_ref()) {
                steer.mark(response, pick.shared_id());
            }
            match result.as_ref().map(|r| this.classify.classify(r)) {
                Ok(Outcome::Success) => pick.success(clock.now().saturating_sub(start)),
                Ok(Outcome::Failure) => pick.failure(),
                Ok(Outcome::Overloaded(retry_after)) => {
                    pick.failure_of(Failure::Overloaded { retry_after })
                }
                Err(_) => pick.failure_of(Failure::LocalOrigin),
            }
        }
        Poll::Ready(result.map_err(Into::into))
    }
}

impl<Fut, C, St> fmt::Debug for ResponseFuture<Fut, C, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("backend", &self.pick.as_ref().map(|o| o.pick.id()))
            .field("unavailable", &self.unavailable)
            .finish_non_exhaustive()
    }
}
