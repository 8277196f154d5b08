//! msgpack encoder for FPM schema version 1 (canonical key order, smallest integer forms,
//! float64 floats). Used by tests, benchmarks and the mock engine.

use super::{FieldKind, FieldSpec, FpmRef, RequestStats, QUEUED_FIELDS, SCHEDULED_FIELDS};
use crate::FPM_SCHEMA_VERSION;

fn put_str(out: &mut Vec<u8>, s: &str) {
    let n = s.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= 0xff {
        out.push(0xd9);
        out.push(n as u8);
    } else if n <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(s.as_bytes());
}

fn put_int(out: &mut Vec<u8>, v: i64) {
    if (0..=0x7f).contains(&v) {
        out.push(v as u8);
    } else if (-32..0).contains(&v) {
        out.push(v as i8 as u8);
    } else if v > 0 {
        let u = v as u64;
        if u <= 0xff {
            out.push(0xcc);
            out.push(u as u8);
        } else if u <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(u as u16).to_be_bytes());
        } else if u <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(u as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&u.to_be_bytes());
        }
    } else {
        out.push(0xd3);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

fn put_f64(out: &mut Vec<u8>, v: f64) {
    out.push(0xcb);
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_stats<const NC: usize, const NV: usize>(
    out: &mut Vec<u8>,
    specs: &[FieldSpec],
    stats: &RequestStats<NC, NV>,
) {
    out.push(0x80 | specs.len() as u8);
    for spec in specs {
        put_str(out, spec.name);
        match spec.kind {
            FieldKind::Count => put_int(out, stats.counts.get(spec.slot).copied().unwrap_or(0)),
            FieldKind::Variance => {
                put_f64(out, stats.variances.get(spec.slot).copied().unwrap_or(0.0))
            }
        }
    }
}

/// Append the msgpack encoding of `fpm` to `out`. The record is written as given; callers that
/// build records from untrusted input validate them first (the decoder's rules).
pub fn encode_into(fpm: &FpmRef<'_>, out: &mut Vec<u8>) {
    let s = &fpm.sample;
    out.push(0x87);
    put_str(out, "version");
    put_int(out, FPM_SCHEMA_VERSION);
    put_str(out, "worker_id");
    put_str(out, fpm.worker_id);
    put_str(out, "dp_rank");
    put_int(out, s.dp_rank);
    put_str(out, "counter_id");
    put_int(out, s.counter_id);
    put_str(out, "wall_time");
    put_f64(out, s.wall_time);
    put_str(out, "scheduled_requests");
    put_stats(out, &SCHEDULED_FIELDS, &s.scheduled);
    put_str(out, "queued_requests");
    put_stats(out, &QUEUED_FIELDS, &s.queued);
}

/// The msgpack encoding of `fpm` as a new buffer.
pub fn encode(fpm: &FpmRef<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(400 + fpm.worker_id.len());
    encode_into(fpm, &mut out);
    out
}
