//! The policies the example programs know, by name: one table shared by `examples/route.rs`
//! and `examples/simulate`. A new policy joins both programs with one line in [`table`].
//!
//! Included with `#[path = "..."] mod policies;` by each program (and by their tests), so it is
//! plain code, not a library module.
#![allow(dead_code)] // each including program uses a different part of this file

use lbkit::{Backend, Balancer, Error};
use lbkit::{LeastConnections, PowerOfTwoChoices, Random, RoundRobin, WeightedRoundRobin};

/// How a program asks for a policy beyond its backends.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Options {
    /// Seed for every random choice of the policy; `None` seeds from entropy.
    pub seed: Option<u64>,
    /// Bounded-load factor `c` for hashing policies that support it; `None` leaves it off.
    pub bound: Option<f64>,
}

/// A boxed balancer, or the library's reason for refusing the backends or options.
pub type Built<T> = Result<Box<dyn Balancer<T>>, Error>;

/// One row of the table.
pub struct Policy<T> {
    /// The name users type (`--algo NAME`) and the simulator prints.
    pub name: &'static str,
    /// Whether the policy places requests by key (consistent hashing). The simulator sends keyed
    /// requests to every policy; only these use the key.
    pub hashing: bool,
    /// Whether the policy accepts [`Options::bound`]. Asking another policy for a bound is a
    /// usage error in the programs, never silently ignored.
    pub bounded: bool,
    /// Builds the policy over `backends`. Never called with `bound: Some(_)` unless `bounded`.
    pub build: fn(Vec<Backend<T>>, Options) -> Built<T>,
}

/// Every policy, in the order the programs list them.
///
/// To add a policy, add one entry. The hashing policies (checked against the `hashing`
/// branch's builders in a trial merge) go at the end, each as:
///
/// ```text
/// Policy {
///     name: "ring", // "maglev", "rendezvous": the same with Maglev / Rendezvous
///     hashing: true,
///     bounded: true,
///     build: |b, o| {
///         let mut builder = HashRing::builder();
///         if let Some(c) = o.bound {
///             builder = builder.load_factor(c);
///         }
///         if let Some(seed) = o.seed {
///             builder = builder.seed(seed);
///         }
///         Ok(Box::new(builder.build(b)?))
///     },
/// },
/// Policy {
///     name: "jump",
///     hashing: true,
///     bounded: false,
///     build: |b, o| match o.seed {
///         Some(seed) => Ok(Box::new(JumpHash::with_seed(b, seed)?)),
///         None => Ok(Box::new(JumpHash::new(b)?)),
///     },
/// },
/// ```
///
/// `route` then accepts the names and `--bound`, `proxy` accepts `--key-by client-ip` with
/// them, and `simulate` runs each (plus a `NAME+bound C` row for each `bounded` one).
pub fn table<T: Send + Sync + 'static>() -> Vec<Policy<T>> {
    vec![
        Policy {
            name: "round-robin",
            hashing: false,
            bounded: false,
            build: |b, _| Ok(Box::new(RoundRobin::new(b)?)),
        },
        Policy {
            name: "weighted-round-robin",
            hashing: false,
            bounded: false,
            build: |b, _| Ok(Box::new(WeightedRoundRobin::new(b)?)),
        },
        Policy {
            name: "random",
            hashing: false,
            bounded: false,
            build: |b, o| match o.seed {
                Some(seed) => Ok(Box::new(Random::with_seed(b, seed)?)),
                None => Ok(Box::new(Random::new(b)?)),
            },
        },
        Policy {
            name: "least-connections",
            hashing: false,
            bounded: false,
            build: |b, _| Ok(Box::new(LeastConnections::new(b)?)),
        },
        Policy {
            name: "p2c",
            hashing: false,
            bounded: false,
            build: |b, o| match o.seed {
                Some(seed) => Ok(Box::new(PowerOfTwoChoices::with_seed(b, seed)?)),
                None => Ok(Box::new(PowerOfTwoChoices::new(b)?)),
            },
        },
    ]
}

/// The row named `name`, if there is one.
pub fn find<T: Send + Sync + 'static>(name: &str) -> Option<Policy<T>> {
    table().into_iter().find(|p| p.name == name)
}
