//! Why a request could not be sent anywhere.

use std::fmt;

/// Why a [`Balance`](super::Balance) could not send a request anywhere. It reaches the caller
/// boxed in a [`tower::BoxError`]; `downcast_ref::<Unavailable>()` tells it from the inner
/// services' errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unavailable {
    /// No backend is eligible: the set is empty, or every backend is down, draining,
    /// ejected or of weight 0.
    NoEligibleBackend,
    /// Backends are eligible, but none of their inner services was polled ready (the
    /// picture changed between `poll_ready` and `call`).
    NoReadyBackend,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unavailable::NoEligibleBackend => "no eligible backend",
            Unavailable::NoReadyBackend => "no eligible backend is ready",
        })
    }
}

impl std::error::Error for Unavailable {}
