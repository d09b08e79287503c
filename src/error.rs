//! The one error type of the crate.

use std::fmt;

/// Everything that can go wrong when building or updating a balancer.
///
/// Every fallible call returns `Result<_, Error>`; in case of error the balancer is left
/// exactly as it was. An empty backend set is *not* an error: [`Balancer::pick`] then
/// returns `None`.
///
/// [`Balancer::pick`]: crate::Balancer::pick
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A backend had an empty id. Ids are the identity of a backend and the input of every
    /// placement hash, so they must be non-empty.
    EmptyId,
    /// Two backends in one set shared this id.
    DuplicateId(String),
    /// `set_health` (or another by-id call) named an id that is not in the current set.
    UnknownId(String),
    /// The set has more backends than the policy can index.
    TooManyBackends {
        /// How many backends were given.
        count: usize,
        /// The most this policy accepts.
        max: usize,
    },
    /// A configuration value is out of its range (a load factor below 1 or NaN, a table size
    /// that is not prime, a zero count, a backend's
    /// [`max_in_flight`](crate::Backend::with_max_in_flight) of 0, ...).
    InvalidConfig {
        /// The parameter, as named in the builder (`"load_factor"`, `"table_size"`, ...).
        parameter: &'static str,
        /// What is wrong with it, in words.
        reason: String,
    },
    /// A [`LoadReport`](crate::LoadReport) field is out of its range (a utilisation that is
    /// negative or not finite); the report was not taken.
    InvalidReport {
        /// The field (`"utilization"`).
        field: &'static str,
        /// What is wrong with it, in words.
        reason: String,
    },
}

impl Error {
    pub(crate) fn config(parameter: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            parameter,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::EmptyId => f.write_str("backend id is empty"),
            Error::DuplicateId(id) => write!(f, "duplicate backend id {id:?}"),
            Error::UnknownId(id) => write!(f, "no backend with id {id:?}"),
            Error::TooManyBackends { count, max } => {
                write!(f, "{count} backends given, at most {max} supported")
            }
            Error::InvalidConfig { parameter, reason } => {
                write!(f, "invalid {parameter}: {reason}")
            }
            Error::InvalidReport { field, reason } => {
                write!(f, "invalid load report {field}: {reason}")
            }
        }
    }
}

impl std::error::Error for Error {}

/// Why [`Balancer::try_pick`](crate::Balancer::try_pick) found no backend.
///
/// The reasons are checked in this order, and the first that holds is returned: the set is
/// empty, then no backend is eligible, then every eligible backend is at its
/// [`max_in_flight`](crate::Backend::with_max_in_flight) cap.
///
/// ```
/// use lbkit::{Backend, Balancer, Health, NoPick, Request, RoundRobin};
/// let lb = RoundRobin::new(Vec::<Backend<()>>::new())?;
/// assert_eq!(lb.try_pick(&Request::new()).unwrap_err(), NoPick::Empty);
/// lb.update(vec![Backend::new("a", ()).with_health(Health::Down)])?;
/// assert_eq!(lb.try_pick(&Request::new()).unwrap_err(), NoPick::NoneEligible);
/// lb.update(vec![Backend::new("a", ()).with_health(Health::Up).with_max_in_flight(1)])?;
/// let held = lb.try_pick(&Request::new()).unwrap();
/// assert_eq!(lb.try_pick(&Request::new()).unwrap_err(), NoPick::AllAtCapacity);
/// # drop(held);
/// # Ok::<(), lbkit::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NoPick {
    /// The set has no backend.
    Empty,
    /// Backends exist, but none may get new picks: every one is down, draining, of weight 0
    /// or ejected (and no [`prefer`](crate::Request::prefer)ed backend could take it).
    NoneEligible,
    /// Eligible backends exist, but every one holds as many picks as its
    /// [`max_in_flight`](crate::Backend::with_max_in_flight) cap allows.
    AllAtCapacity,
}

impl fmt::Display for NoPick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NoPick::Empty => "no backend in the set",
            NoPick::NoneEligible => "no backend is eligible (down, draining, weight 0 or ejected)",
            NoPick::AllAtCapacity => "every eligible backend is at its max_in_flight cap",
        })
    }
}

impl std::error::Error for NoPick {}
