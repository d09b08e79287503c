//! The public contract of the foundation issue, compiled and run exactly as written there.

use lbkit::{Backend, Balancer, Error, Health, Pick, Request};
use lbkit::{LeastConnections, PowerOfTwoChoices, Random, RoundRobin, WeightedRoundRobin};

fn contract() -> Result<(), Error> {
    let backends = vec![
        Backend::new("a", "10.0.0.1:80"),
        Backend::new("b", "10.0.0.2:80").with_weight(3),
    ];
    let lb: std::sync::Arc<dyn Balancer<&'static str>> =
        std::sync::Arc::new(LeastConnections::new(backends)?);
    let pick: Pick<&'static str> = lb.pick(&Request::new()).expect("some backend");
    let _id: &str = pick.id();
    let _addr: &&str = &pick; // Pick<T>: Deref<Target = T>
    drop(pick); // gives the in-flight slot back
    lb.update(vec![Backend::new("c", "10.0.0.3:80")])?; // replace the whole set, via &self
    lb.set_health("c", Health::Down)?; // Up, Down, Draining; unknown id -> Err
    let _two: Vec<Pick<&'static str>> = lb.pick_n(&Request::with_key("user-42".as_bytes()), 2);
    for s in lb.status() {
        let (_id, _w, _n, _h): (&str, u32, usize, Health) =
            (s.id(), s.weight(), s.in_flight(), s.health());
    }
    let _ = (
        RoundRobin::new(Vec::<Backend<u8>>::new())?,
        WeightedRoundRobin::<u8>::new([])?,
    );
    let _ = (
        Random::<u8>::with_seed([], 7)?,
        PowerOfTwoChoices::<u8>::with_seed([], 7)?,
    );
    let _ = Request::with_hash(0xfeed); // a caller-computed 64-bit key hash
    Ok(())
}

#[test]
fn the_contract_compiles_and_runs() {
    contract().unwrap();
}

#[test]
fn balancers_are_send_sync_and_object_safe() {
    fn assert_send_sync<B: Send + Sync>() {}
    assert_send_sync::<std::sync::Arc<dyn Balancer<String>>>();
    assert_send_sync::<Pick<String>>();
    assert_send_sync::<RoundRobin<String>>();
    assert_send_sync::<LeastConnections<String>>();
}
