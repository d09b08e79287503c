//! A tour of the request-spreading policies: 10,000 picks over the same weighted set, with
//! every pick held until the end, and the split each policy produces.
//!
//! `cargo run --release --example tour`

use lbkit::{Backend, Balancer, LeastConnections, PowerOfTwoChoices, Random, Request};
use lbkit::{RoundRobin, WeightedRoundRobin};

fn main() -> Result<(), lbkit::Error> {
    let set = || {
        [("a", 1), ("b", 1), ("c", 2), ("d", 4)]
            .map(|(id, w)| Backend::new(id, format!("{id}.internal:8080")).with_weight(w))
    };
    let policies: Vec<(&str, Box<dyn Balancer<String>>)> = vec![
        ("round-robin", Box::new(RoundRobin::new(set())?)),
        (
            "weighted-round-robin",
            Box::new(WeightedRoundRobin::new(set())?),
        ),
        ("random", Box::new(Random::with_seed(set(), 42)?)),
        ("least-connections", Box::new(LeastConnections::new(set())?)),
        ("p2c", Box::new(PowerOfTwoChoices::with_seed(set(), 42)?)),
    ];
    println!(
        "{:<22} {:>7} {:>7} {:>7} {:>7}   (weights 1 1 2 4)",
        "policy", "a", "b", "c", "d"
    );
    for (name, lb) in &policies {
        let held: Vec<_> = (0..10_000)
            .filter_map(|_| lb.pick(&Request::new()))
            .collect();
        let status = lb.status();
        let row: Vec<String> = status
            .iter()
            .map(|s| format!("{:>7}", s.in_flight()))
            .collect();
        println!("{name:<22} {}", row.join(" "));
        drop(held);
        assert!(lb.status().iter().all(|s| s.in_flight() == 0));
    }
    Ok(())
}
