//! Decode + ingest throughput of the core alone (no Python): `cargo run --release --example
//! ingest_throughput -p sla-planner-core`.

use std::time::Instant;

use sla_planner_core::fpm::{self, FpmRef, FpmSample, QueuedRequests, ScheduledRequests};
use sla_planner_core::table::EngineTable;

fn main() {
    const N: usize = 2_000;
    const ENGINES: usize = 64;
    let names: Vec<String> = (0..ENGINES / 8)
        .map(|w| format!("vllm-decode-{w}-6f9c2d7b84-x2k9q"))
        .collect();
    let payloads: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let e = i % ENGINES;
            let rec = FpmRef {
                worker_id: &names[e / 8],
                sample: FpmSample {
                    dp_rank: (e % 8) as i64,
                    counter_id: (i / ENGINES + 1) as u64,
                    wall_time: 0.0123,
                    scheduled: ScheduledRequests {
                        counts: [1, 512, 70_000, 48, 96_000],
                        variances: [1234.5, 2.5e6],
                    },
                    queued: QueuedRequests {
                        counts: [1, 3000, 0, 0],
                        variances: [0.0, 0.0],
                    },
                },
            };
            fpm::encode(&rec)
        })
        .collect();
    let bytes: usize = payloads.iter().map(Vec::len).sum();
    // Same records with the root map written as a map16: valid, but not the canonical layout, so
    // every message takes the general decoder (the cost for publishers with another layout).
    let general: Vec<Vec<u8>> = payloads
        .iter()
        .map(|p| [&[0xde, 0x00, 0x07], &p[1..]].concat())
        .collect();
    // Best of many short passes: robust to other load on a shared machine.
    let mut best_decode = f64::INFINITY;
    let mut best_general = f64::INFINITY;
    let mut best_ingest = f64::INFINITY;
    let mut table = EngineTable::new(10, 30.0, 4096, f64::INFINITY).expect("valid");
    for _ in 0..50 {
        let start = Instant::now();
        let mut ok = 0usize;
        for p in &payloads {
            ok += usize::from(fpm::decode(p).is_ok());
        }
        assert_eq!(ok, N);
        best_decode = best_decode.min(start.elapsed().as_secs_f64());
        let start = Instant::now();
        let mut ok = 0usize;
        for p in &general {
            ok += usize::from(fpm::decode(p).is_ok());
        }
        assert_eq!(ok, N);
        best_general = best_general.min(start.elapsed().as_secs_f64());
        let start = Instant::now();
        for p in &payloads {
            table.ingest(p, 1.0, None);
        }
        best_ingest = best_ingest.min(start.elapsed().as_secs_f64());
    }
    println!(
        "{N} msgs of {:.0} B avg, best of 50 passes: decode {:.1} ns/msg (non-canonical layout {:.1}), decode+ingest {:.1} ns/msg ({:.2} M msgs/s)",
        bytes as f64 / N as f64,
        best_decode / N as f64 * 1e9,
        best_general / N as f64 * 1e9,
        best_ingest / N as f64 * 1e9,
        N as f64 / best_ingest / 1e6
    );
}
