//! The receive loop against the loopback publisher: every message lands in the table, engines
//! are learned with their endpoint, a publisher that is not up yet is picked up on reconnect.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use sla_planner_core::fpm;
use sla_planner_core::publisher::BenchPublisher;
use sla_planner_core::receiver::{Receiver, ReceiverOptions};
use sla_planner_core::table::EngineTable;

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn messages_from_many_publishers_reach_the_table() {
    let table = Arc::new(Mutex::new(
        EngineTable::new(4, 30.0, 4096, f64::INFINITY).expect("valid"),
    ));
    let publishers = BenchPublisher::bind(8).expect("bind");
    let endpoints = publishers.endpoints().expect("ports");
    // one engine rank per endpoint (as engines publish: a port per dp rank)
    let payloads: Vec<Vec<Vec<u8>>> = (0..8)
        .map(|p| vec![fpm::encode(&record(&format!("pod-{p}"), 0, 1, 0.01))])
        .collect();
    let mut receiver =
        Receiver::start(Arc::clone(&table), ReceiverOptions::default()).expect("start");
    // the first half connects before the publishers serve, the rest after (reconnects)
    for e in &endpoints[..4] {
        receiver.connect(e).expect("valid endpoint");
    }
    let handles = publishers.start(payloads, 5_000).expect("serve");
    for e in &endpoints[4..] {
        receiver.connect(e).expect("valid endpoint");
    }
    wait_for("every message", || {
        table.lock().expect("lock").counters().received == 40_000
    });
    {
        let t = table.lock().expect("lock");
        assert_eq!((t.counters().decoded, t.len()), (40_000, 8));
        assert_eq!(t.counters().seq_gaps, 0);
        let stats = receiver.stats();
        assert_eq!(stats.learned.len(), 8);
        for e in &endpoints {
            assert_eq!(stats.endpoints[e].received, 5_000, "{e}");
            assert!(stats.endpoints[e].connected, "{e}");
        }
        for (endpoint, worker, rank) in &stats.learned {
            let p = endpoints.iter().position(|e| e == endpoint).expect("known");
            assert_eq!((worker, *rank), (&format!("pod-{p}"), 0));
        }
    }
    receiver.stop();
    let sent: usize = handles
        .into_iter()
        .map(|h| h.join().expect("thread").expect("io"))
        .sum();
    assert_eq!(sent, 40_000);
}

#[test]
fn bad_endpoints_are_refused_and_counted() {
    let table = Arc::new(Mutex::new(
        EngineTable::new(4, 30.0, 16, f64::INFINITY).expect("valid"),
    ));
    let receiver = Receiver::start(table, ReceiverOptions::default()).expect("start");
    assert!(receiver.connect("ipc:///tmp/x").is_err());
    assert!(receiver.connect("tcp://*:5").is_err());
    assert_eq!(receiver.stats().connect_errors, 2);
}
