// Shared fixtures for the integration tests (included with `mod common;`).
#![allow(dead_code)]

use sla_planner_core::fpm::{FpmRef, FpmSample, QueuedRequests, ScheduledRequests};

pub fn sample(dp_rank: i64, counter_id: u64, wall_time: f64) -> FpmSample {
    FpmSample {
        dp_rank,
        counter_id,
        wall_time,
        scheduled: ScheduledRequests {
            counts: [3, 4096, 1024, 17, 70_000],
            variances: [12.5, 3.0e6],
        },
        queued: QueuedRequests {
            counts: [2, 8192, 5, 300_000],
            variances: [0.0, 1.5],
        },
    }
}

pub fn record(worker_id: &str, dp_rank: i64, counter_id: u64, wall_time: f64) -> FpmRef<'_> {
    FpmRef {
        worker_id,
        sample: sample(dp_rank, counter_id, wall_time),
    }
}

// Hand-rolled msgpack builders for malformed and unusual payloads.
pub fn s(out: &mut Vec<u8>, v: &str) {
    assert!(v.len() < 32);
    out.push(0xa0 | v.len() as u8);
    out.extend_from_slice(v.as_bytes());
}

pub fn stats_map(out: &mut Vec<u8>, keys: &[&str], skip: Option<&str>) {
    let n = keys.iter().filter(|k| Some(**k) != skip).count();
    out.push(0x80 | n as u8);
    for k in keys.iter().filter(|k| Some(**k) != skip) {
        s(out, k);
        out.push(if k.starts_with("var_") { 0x01 } else { 0x02 });
    }
}

pub const SCHED: [&str; 7] = [
    "num_prefill_requests",
    "sum_prefill_tokens",
    "var_prefill_length",
    "sum_prefill_kv_tokens",
    "num_decode_requests",
    "sum_decode_kv_tokens",
    "var_decode_kv_tokens",
];
pub const QUEUED: [&str; 6] = [
    "num_prefill_requests",
    "sum_prefill_tokens",
    "var_prefill_length",
    "num_decode_requests",
    "sum_decode_kv_tokens",
    "var_decode_kv_tokens",
];

/// A valid payload whose root map has `extra` unknown entries appended (raw key/value bytes).
pub fn payload_with(version: &[u8], extra: &[(&str, &[u8])]) -> Vec<u8> {
    let n = 7 + extra.len();
    let mut out = if n < 16 {
        vec![0x80 | n as u8]
    } else {
        vec![0xde, 0, n as u8]
    };
    s(&mut out, "version");
    out.extend_from_slice(version);
    s(&mut out, "worker_id");
    s(&mut out, "w0");
    s(&mut out, "dp_rank");
    out.push(0x00);
    s(&mut out, "counter_id");
    out.push(0x05);
    s(&mut out, "wall_time");
    out.push(0xcb);
    out.extend_from_slice(&0.02f64.to_be_bytes());
    s(&mut out, "scheduled_requests");
    stats_map(&mut out, &SCHED, None);
    s(&mut out, "queued_requests");
    stats_map(&mut out, &QUEUED, None);
    for (k, v) in extra {
        s(&mut out, k);
        out.extend_from_slice(v);
    }
    out
}
