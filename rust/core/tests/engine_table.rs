//! Engine table: registration, history ring, counters, gaps, staleness, removal, memory bound.

mod common;

use common::*;
use sla_planner_core::fpm;
use sla_planner_core::table::{Column, EngineTable};

fn payload(worker: &str, rank: i64, counter: i64, wall: f64) -> Vec<u8> {
    fpm::encode(&record(worker, rank, counter, wall))
}

#[test]
fn counts_accepted_malformed_and_wrong_version() {
    let mut t = EngineTable::new(4, 30.0, 16).expect("valid");
    assert!(t.ingest(&payload("a", 0, 1, 0.1), 10.0, None));
    assert!(!t.ingest(&[0x80], 10.0, None));
    assert!(!t.ingest(&payload_with(&[0x02], &[]), 10.0, None));
    let c = t.counters();
    assert_eq!(
        (c.received, c.decoded, c.malformed, c.wrong_version),
        (3, 1, 1, 1)
    );
    assert_eq!(t.len(), 1);
}

#[test]
fn history_ring_keeps_the_newest_in_order_and_skips_heartbeats() {
    let mut t = EngineTable::new(3, 30.0, 16).expect("valid");
    for c in 1..=5 {
        t.ingest(&payload("a", 0, c, 0.1), c as f64, None);
    }
    t.ingest(&payload("a", 0, 0, 0.0), 6.0, None);
    let h = t.history("a", 0).expect("known");
    let ids: Vec<i64> = h.iter().map(|e| e.sample.counter_id).collect();
    assert_eq!(ids, vec![3, 4, 5]);
    let e = t.get("a", 0).expect("known");
    assert_eq!(e.latest.wall_time, 0.0);
    assert_eq!(e.counters.heartbeats, 1);
    assert_eq!(t.counters().out_of_order, 0);
}

#[test]
fn counter_and_seq_gaps_and_out_of_order() {
    let mut t = EngineTable::new(4, 30.0, 16).expect("valid");
    t.ingest(&payload("a", 0, 1, 0.1), 1.0, Some(10));
    t.ingest(&payload("a", 0, 4, 0.1), 2.0, Some(11));
    t.ingest(&payload("a", 0, 5, 0.1), 3.0, Some(15));
    t.ingest(&payload("a", 0, 5, 0.1), 4.0, Some(16));
    let c = t.counters();
    assert_eq!(
        (c.counter_gaps, c.seq_gaps, c.gaps(), c.out_of_order),
        (2, 3, 5, 1)
    );
}

#[test]
fn staleness_boundary_is_strict() {
    let mut t = EngineTable::new(2, 30.0, 16).expect("valid");
    t.ingest(&payload("a", 0, 1, 0.1), 100.0, None);
    assert_eq!(t.snapshot(130.0).stale, vec![false]);
    assert_eq!(t.snapshot(130.000_001).stale, vec![true]);
}

#[test]
fn snapshot_columns_follow_registration_order() {
    let mut t = EngineTable::new(2, 30.0, 16).expect("valid");
    t.ingest(&payload("b", 1, 1, 0.1), 1.0, None);
    t.ingest(&payload("a", 0, 1, 0.2), 2.0, None);
    t.ingest(&payload("b", 0, 1, 0.3), 3.0, None);
    let s = t.snapshot(3.0);
    assert_eq!(s.worker_id, vec!["b", "a", "b"]);
    assert_eq!(s.dp_rank, vec![1, 0, 0]);
    assert_eq!(s.wall_time, vec![0.1, 0.2, 0.3]);
    assert_eq!(s.scheduled[1], Column::Int(vec![4096; 3]));
    assert_eq!(s.queued[5], Column::Float(vec![1.5; 3]));
    assert!(t.remove("a", 0));
    assert!(!t.remove("a", 0));
    t.ingest(&payload("b", 0, 2, 0.4), 4.0, None);
    let s = t.snapshot(4.0);
    assert_eq!(s.dp_rank, vec![1, 0]);
    assert_eq!(s.wall_time, vec![0.1, 0.4]);
}

#[test]
fn capacity_limit_drops_new_engines_only() {
    let mut t = EngineTable::new(2, 30.0, 2).expect("valid");
    assert!(t.ingest(&payload("a", 0, 1, 0.1), 1.0, None));
    assert!(t.ingest(&payload("a", 1, 1, 0.1), 1.0, None));
    assert!(!t.ingest(&payload("a", 2, 1, 0.1), 1.0, None));
    assert!(t.ingest(&payload("a", 1, 2, 0.1), 1.0, None));
    assert_eq!(t.counters().dropped_capacity, 1);
}

#[test]
fn memory_is_bounded_per_engine() {
    let mut t = EngineTable::new(10, 30.0, 1000).expect("valid");
    for i in 0..200 {
        for c in 0..50 {
            t.ingest(&payload(&format!("w{i}"), 0, c, 0.1), 1.0, None);
        }
    }
    let per_engine = t.memory_bytes() / t.len();
    assert!(per_engine < 3000, "{per_engine} bytes per engine");
}

#[test]
fn rejects_bad_arguments() {
    assert!(EngineTable::new(2, 0.0, 1).is_err());
    assert!(EngineTable::new(2, f64::NAN, 1).is_err());
    assert!(EngineTable::new(2, 1.0, 0).is_err());
    assert!(EngineTable::new(1_000_000, 1.0, 1).is_err());
}
