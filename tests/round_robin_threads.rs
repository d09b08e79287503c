//! Round robin is exact per thread while at most 16 picking threads are alive, also when
//! threads come and go (the reliability issue, finding 9). One test in its own binary, so
//! that no other test's threads take cursor stripes meanwhile.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread;

use lbkit::{Backend, Balancer, Request, RoundRobin};

/// A long-lived thread picks; fifteen short-lived threads pick once and exit; a new thread
/// then picks alongside the first, turn about. The first thread must still see `a b a b ...`
/// (it used to share a cursor with the newcomer, threads being numbered process-wide and never
/// reused, and saw `a a a ...`).
#[test]
fn round_robin_stays_exact_per_thread_when_threads_come_and_go() {
    let lb = Arc::new(RoundRobin::new([Backend::new("a", ()), Backend::new("b", ())]).unwrap());
    let pick = |lb: &RoundRobin<()>| lb.pick(&Request::new()).unwrap().id().to_owned();
    let mut mine = vec![pick(&lb)];
    for _ in 0..15 {
        let lb = Arc::clone(&lb);
        thread::spawn(move || drop(lb.pick(&Request::new())))
            .join()
            .unwrap();
    }
    let (go, turn) = mpsc::channel::<()>();
    let (done, took) = mpsc::channel::<()>();
    let other = Arc::clone(&lb);
    let newcomer = thread::spawn(move || {
        for () in turn {
            drop(other.pick(&Request::new()));
            done.send(()).unwrap();
        }
    });
    for _ in 0..11 {
        go.send(()).unwrap();
        took.recv().unwrap();
        mine.push(pick(&lb));
    }
    drop(go);
    newcomer.join().unwrap();
    for pair in mine.windows(2) {
        assert_ne!(pair[0], pair[1], "this thread's picks: {mine:?}");
    }
}
