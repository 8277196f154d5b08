//! Engine table: registration, history ring, counters, gaps, staleness, removal, memory bound.

mod common;

use common::*;
use sla_planner_core::fpm;
use sla_planner_core::table::{Column, EngineTable};

fn payload(worker: &str, rank: i64, counter: u64, wall: f64) -> Vec<u8> {
    fpm::encode(&record(worker, rank, counter, wall))
}

#[test]
fn counts_accepted_malformed_and_wrong_version() {
    let mut t = EngineTable::new(4, 30.0, 16, f64::INFINITY).expect("valid");
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
    let mut t = EngineTable::new(3, 30.0, 16, f64::INFINITY).expect("valid");
    for c in 1..=5 {
        t.ingest(&payload("a", 0, c, 0.1), c as f64, None);
    }
    t.ingest(&payload("a", 0, 0, 0.0), 6.0, None);
    let h = t.history("a", 0).expect("known");
    let ids: Vec<u64> = h.iter().map(|e| e.sample.counter_id).collect();
    assert_eq!(ids, vec![3, 4, 5]);
    let e = t.get("a", 0).expect("known");
    assert_eq!(e.latest.wall_time, 0.0);
    assert_eq!(e.counters.heartbeats, 1);
    assert_eq!(t.counters().out_of_order, 0);
}

#[test]
fn counter_and_seq_gaps_and_out_of_order() {
    let mut t = EngineTable::new(4, 30.0, 16, f64::INFINITY).expect("valid");
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
    let mut t = EngineTable::new(2, 30.0, 16, f64::INFINITY).expect("valid");
    t.ingest(&payload("a", 0, 1, 0.1), 100.0, None);
    assert_eq!(t.snapshot(130.0).stale, vec![false]);
    assert_eq!(t.snapshot(130.000_001).stale, vec![true]);
}

#[test]
fn snapshot_columns_follow_registration_order() {
    let mut t = EngineTable::new(2, 30.0, 16, f64::INFINITY).expect("valid");
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
    let mut t = EngineTable::new(2, 30.0, 2, f64::INFINITY).expect("valid");
    assert!(t.ingest(&payload("a", 0, 1, 0.1), 1.0, None));
    assert!(t.ingest(&payload("a", 1, 1, 0.1), 1.0, None));
    assert!(!t.ingest(&payload("a", 2, 1, 0.1), 1.0, None));
    assert!(t.ingest(&payload("a", 1, 2, 0.1), 1.0, None));
    assert_eq!(t.counters().dropped_capacity, 1);
}

#[test]
fn memory_is_bounded_per_engine() {
    let mut t = EngineTable::new(10, 30.0, 1000, f64::INFINITY).expect("valid");
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
    assert!(EngineTable::new(2, 0.0, 1, f64::INFINITY).is_err());
    assert!(EngineTable::new(2, f64::NAN, 1, f64::INFINITY).is_err());
    assert!(EngineTable::new(2, 1.0, 0, f64::INFINITY).is_err());
    assert!(EngineTable::new(1_000_000, 1.0, 1, f64::INFINITY).is_err());
}

#[test]
fn counter_id_takes_the_full_u64_range_and_wraps_as_a_restart() {
    let mut t = EngineTable::new(4, 30.0, 16, f64::INFINITY).expect("valid");
    for (c, now) in [(u64::MAX - 2, 1.0), (u64::MAX, 2.0), (0, 3.0), (1, 4.0)] {
        assert!(t.ingest(&payload("a", 0, c, 0.1), now, None), "counter {c}");
    }
    let k = t.counters();
    // MAX-2 -> MAX is one missing message; the wrap to 0 is a restart, not a gap of 2**64
    assert_eq!((k.counter_gaps, k.out_of_order), (1, 1));
    let ids: Vec<u64> = t
        .history("a", 0)
        .expect("known")
        .iter()
        .map(|e| e.sample.counter_id)
        .collect();
    assert_eq!(ids, vec![u64::MAX - 2, u64::MAX, 0, 1]);
    let rec = record("a", 0, u64::MAX, 0.1);
    assert_eq!(fpm::decode(&fpm::encode(&rec)), Ok(rec));
}

#[test]
fn silent_engines_expire_and_are_counted() {
    let mut t = EngineTable::new(2, 10.0, 16, 40.0).expect("valid");
    t.ingest(&payload("old", 0, 1, 0.1), 0.0, None);
    t.ingest(&payload("new", 0, 1, 0.1), 35.0, None);
    assert_eq!(t.expire(40.0), 0, "40 s of silence is not more than 40 s");
    assert_eq!(t.expire(40.5), 1);
    assert!(t.get("old", 0).is_none() && t.get("new", 0).is_some());
    assert_eq!(t.counters().expired, 1);
    // ingest sweeps on its own once now_s has moved on
    t.ingest(&payload("new", 0, 2, 0.1), 70.0, None);
    assert_eq!((t.len(), t.counters().expired), (1, 1));
    t.ingest(&payload("other", 0, 1, 0.1), 200.0, None);
    assert_eq!((t.len(), t.counters().expired), (1, 2));
}

#[test]
fn a_full_table_evicts_the_stalest_stale_engines_never_live_ones() {
    let mut t = EngineTable::new(2, 10.0, 4, f64::INFINITY).expect("valid");
    for (w, now) in [("a", 3.0), ("b", 1.0), ("c", 2.0), ("d", 50.0)] {
        assert!(t.ingest(&payload(w, 0, 1, 0.1), now, None));
    }
    // at 55 s: a, b, c are stale (b the stalest), d is live; one is evicted (4 / 16 -> 1)
    assert!(t.ingest(&payload("e", 0, 1, 0.1), 55.0, None));
    assert!(t.get("b", 0).is_none());
    let names: Vec<String> = t
        .engines()
        .iter()
        .map(|e| e.worker_id.to_string())
        .collect();
    assert_eq!(names, ["a", "c", "d", "e"]);
    assert_eq!(t.counters().evicted, 1);
    // all live: a new engine is dropped, nobody is evicted
    for w in ["a", "c", "d", "e"] {
        t.ingest(&payload(w, 0, 2, 0.1), 56.0, None);
    }
    assert!(!t.ingest(&payload("f", 0, 1, 0.1), 57.0, None));
    assert_eq!(
        (t.counters().evicted, t.counters().dropped_capacity),
        (1, 1)
    );
}

#[test]
fn churning_identities_keep_memory_bounded() {
    let mut t = EngineTable::new(10, 30.0, 4096, 300.0).expect("valid");
    let mut peak = 0usize;
    // 100,000 identities, 50 new per second, each sending 3 passes over 2 s
    for id in 0..100_000u64 {
        let born = id as f64 / 50.0;
        for c in 0..3 {
            let now = born + c as f64;
            assert!(t.ingest(&payload(&format!("pod-{id}"), 0, c + 1, 0.1), now, None));
        }
        if id == 20_000 {
            peak = t.memory_bytes();
        }
        assert!(t.len() <= 4096);
    }
    let k = t.counters();
    assert_eq!(k.dropped_capacity, 0);
    assert_eq!(k.expired + k.evicted + t.len() as u64, 100_000);
    assert!(
        t.memory_bytes() <= peak + peak / 4,
        "{} vs {peak}",
        t.memory_bytes()
    );
    let now = 100_000.0 / 50.0;
    let live = t.snapshot(now).stale.iter().filter(|s| !**s).count();
    assert!((1_400..=1_600).contains(&live), "{live} live engines");
}
