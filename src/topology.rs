//! Where backends are and how localities share a priority level's traffic.
//!
//! A backend may name its locality ([`Backend::with_locality`](crate::Backend::with_locality):
//! a zone, a rack, a data centre). Without a [`Topology`], localities are only reported, and
//! a priority level is balanced as a whole. With one, the level's traffic is first split
//! between its localities, then the policy chooses inside the locality:
//!
//! * [`Topology::locality_weights`]: Envoy's locality-weighted load balancing
//!   (`locality_weight.rst`). Each locality gets a share in proportion to
//!   `weight x min(100, factor x available / total)`, where `available` counts its healthy
//!   backends (its degraded ones, for the level's degraded share) and `factor` is the
//!   [overprovisioning factor](crate::HealthConfig::overprovisioning_factor). So a locality
//!   that loses backends keeps its share until fewer than 1 in 1.4 of them are left, then
//!   sheds traffic to the others in proportion.
//!
//! Why a value of its own, set on the balancer, rather than a field of every backend: a
//! locality's weight belongs to the locality, not to one of its backends (Envoy carries it
//! on `LocalityLbEndpoints`, not on each endpoint), so giving it per backend would let two
//! backends of one locality disagree. Keeping it apart also lets an operator reweigh zones
//! (drain one for maintenance, say) with one call,
//! [`Balancer::set_topology`](crate::Balancer::set_topology), without resending the set.
//!
//! The full rules, with the tables they reproduce, are in [`crate::docs::tiers`].

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::Error;

/// How the localities of a priority level share its traffic (see the [module
/// docs](crate::topology)). The default, [`Topology::new`], does not split by locality.
///
/// ```
/// use lbkit::{Backend, Balancer, RoundRobin, Topology};
/// let lb = RoundRobin::builder()
///     .topology(Topology::locality_weights([("us-east-1a", 1), ("us-east-1b", 2)]))
///     .build([
///         Backend::new("a", ()).with_locality("us-east-1a"),
///         Backend::new("b", ()).with_locality("us-east-1b"),
///     ])?;
/// // b's locality has twice a's weight: two picks in three go to b.
/// # let _ = lb;
/// # Ok::<(), lbkit::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    pub(crate) weights: Option<BTreeMap<Arc<str>, u32>>,
    /// A locality listed twice, reported when the topology is given to a balancer.
    twice: Option<Arc<str>>,
}

impl Topology {
    /// No split by locality: each priority level is balanced as a whole (the default).
    pub fn new() -> Self {
        Topology::default()
    }

    /// Envoy's locality-weighted load balancing: inside a priority level, each locality takes
    /// a share of the level's traffic in proportion to its weight times its availability
    /// (see the [module docs](crate::topology)), then the policy chooses inside it.
    ///
    /// A locality not listed, and the backends that name no locality, have weight 0: they get
    /// no traffic while a listed locality of their level can take it (as in Envoy, where a
    /// locality without a weight gets none). If no locality of a level has an effective
    /// weight above 0, the level is balanced as a whole.
    ///
    /// Errors, when the topology is given to a balancer:
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) with parameter `"locality"` for
    /// an empty name or one listed twice; then nothing changes.
    pub fn locality_weights<N: Into<Arc<str>>>(
        weights: impl IntoIterator<Item = (N, u32)>,
    ) -> Self {
        let mut map = BTreeMap::new();
        let mut twice = None;
        for (name, weight) in weights {
            let name: Arc<str> = name.into();
            if map.insert(Arc::clone(&name), weight).is_some() {
                twice = Some(name);
            }
        }
        Topology {
            weights: Some(map),
            twice,
        }
    }

    /// Whether the levels are split by locality.
    pub(crate) fn splits(&self) -> bool {
        self.weights.is_some()
    }

    /// The weight of locality `name` (0 for one not listed or no locality).
    pub(crate) fn weight(&self, name: Option<&str>) -> u32 {
        match (&self.weights, name) {
            (Some(weights), Some(name)) => weights.get(name).copied().unwrap_or(0),
            _ => 0,
        }
    }

    /// Checks the names.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if let Some(name) = &self.twice {
            return Err(Error::config(
                "locality",
                format!("locality {name:?} is listed twice"),
            ));
        }
        let weights = self.weights.iter().flat_map(|w| w.keys());
        if weights.into_iter().any(|name| name.is_empty()) {
            return Err(Error::config("locality", "a locality name is empty"));
        }
        Ok(())
    }
}
