//! What a completed response tells about its backend.

/// What a completed response tells about its backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The backend served the request: reported with its latency
    /// ([`Pick::success`](crate::Pick::success)).
    Success,
    /// The backend failed the request ([`Pick::failure`](crate::Pick::failure), an error
    /// answer): counts toward outlier ejection.
    Failure,
    /// The backend answered that it is overloaded (an HTTP 429), perhaps with a
    /// `Retry-After`: [`Failure::Overloaded`](crate::Failure::Overloaded), which outlier
    /// ejection does not count by default.
    Overloaded(Option<std::time::Duration>),
}

/// Tells successful responses from failed ones. An `Err` from the inner service is always a
/// failure, reported as [`Failure::LocalOrigin`](crate::Failure::LocalOrigin) (no answer came:
/// the connection failed, was reset, or timed out); this decides for the `Ok` responses.
///
/// Implemented for every `Fn(&Response) -> Outcome`, and by [`OkIsSuccess`] (the default).
pub trait Classify<Response> {
    /// The outcome of this response.
    fn classify(&self, response: &Response) -> Outcome;
}

impl<Response, F: Fn(&Response) -> Outcome> Classify<Response> for F {
    fn classify(&self, response: &Response) -> Outcome {
        self(response)
    }
}

/// Every `Ok` response is a success; only errors are failures. The default [`Classify`].
#[derive(Debug, Clone, Copy, Default)]
pub struct OkIsSuccess;

impl<Response> Classify<Response> for OkIsSuccess {
    fn classify(&self, _: &Response) -> Outcome {
        Outcome::Success
    }
}
