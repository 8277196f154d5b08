//! FPM codec: round trips, strictness table, truncation at every offset, garbage never panics.

mod common;

use common::*;
use sla_planner_core::fpm::{self, FpmError, MAX_DEPTH, MAX_WORKER_ID_BYTES};

#[test]
fn round_trip_preserves_every_field() {
    let rec = record("prefill-worker-7f3a", 3, 123_456_789, 0.0375);
    let bytes = fpm::encode(&rec);
    assert_eq!(fpm::decode(&bytes), Ok(rec));
}

#[test]
fn round_trip_integer_width_boundaries() {
    for v in [
        0,
        127,
        128,
        255,
        256,
        65_535,
        65_536,
        4_294_967_295,
        4_294_967_296,
        i64::MAX,
    ] {
        let mut rec = record("w", v, v as u64, 1.0);
        rec.sample.scheduled.counts[1] = v;
        let bytes = fpm::encode(&rec);
        assert_eq!(fpm::decode(&bytes), Ok(rec), "value {v}");
    }
}

#[test]
fn round_trip_long_worker_ids() {
    for len in [0usize, 31, 32, 255, 256] {
        let id = "x".repeat(len);
        let rec = record(&id, 0, 1, 1.0);
        assert_eq!(fpm::decode(&fpm::encode(&rec)), Ok(rec), "len {len}");
    }
}

#[test]
fn realistic_payload_is_about_440_bytes() {
    let rec = record("vllm-decode-0-6f9c2d7b84-x2k9q", 0, 1_000_000, 0.0231);
    let n = fpm::encode(&rec).len();
    assert!((380..=480).contains(&n), "{n} bytes");
}

#[test]
fn truncation_at_every_offset_is_an_error() {
    let bytes = fpm::encode(&record("worker-a", 1, 99_999, 0.5));
    for cut in 0..bytes.len() {
        assert_eq!(
            fpm::decode(&bytes[..cut]),
            Err(FpmError::Truncated),
            "cut at {cut}"
        );
    }
}

#[test]
fn trailing_bytes_are_an_error() {
    let mut bytes = fpm::encode(&record("w", 0, 1, 1.0));
    bytes.push(0xc0);
    assert_eq!(
        fpm::decode(&bytes),
        Err(FpmError::TrailingBytes { count: 1 })
    );
}

#[test]
fn unknown_keys_of_every_type_are_skipped() {
    let ts8 = [0xd7, 0xff, 0, 0, 0, 0, 0, 0, 0, 1];
    let extras: Vec<(&str, &[u8])> = vec![
        ("nil", &[0xc0]),
        ("bool", &[0xc3]),
        ("neg", &[0xe5]),
        ("u64", &[0xcf, 1, 2, 3, 4, 5, 6, 7, 8]),
        ("f32", &[0xca, 0x7f, 0xc0, 0, 0]),
        ("bin", &[0xc4, 2, 0xff, 0xfe]),
        ("arr", &[0x92, 0x01, 0x91, 0xa1, b'a']),
        ("map", &[0x81, 0x01, 0x80]),
        ("ext", &[0xc7, 3, 0x05, 1, 2, 3]),
        ("ts", &ts8),
    ];
    let bytes = payload_with(&[0x01], &extras);
    let rec = fpm::decode(&bytes).expect("decodes");
    assert_eq!(rec.worker_id, "w0");
    assert_eq!(rec.sample.scheduled.counts, [2; 5]);
    assert_eq!(rec.sample.queued.variances, [1.0; 2]);
}

fn nested(depth: usize) -> Vec<u8> {
    let mut v = vec![0x91; depth];
    v.push(0x00);
    v
}

#[test]
fn nesting_just_inside_and_just_outside_the_limit() {
    // Unknown root values start at level 2, so MAX_DEPTH - 1 nested arrays fit.
    let inside = nested(MAX_DEPTH - 1);
    let outside = nested(MAX_DEPTH);
    assert!(fpm::decode(&payload_with(&[0x01], &[("deep", &inside)])).is_ok());
    assert_eq!(
        fpm::decode(&payload_with(&[0x01], &[("deep", &outside)])),
        Err(FpmError::TooDeep { limit: MAX_DEPTH })
    );
}

#[test]
fn worker_id_length_just_inside_and_just_outside_the_limit() {
    let ok = "w".repeat(MAX_WORKER_ID_BYTES);
    assert!(fpm::decode(&fpm::encode(&record(&ok, 0, 1, 1.0))).is_ok());
    let long = "w".repeat(MAX_WORKER_ID_BYTES + 1);
    assert_eq!(
        fpm::decode(&fpm::encode(&record(&long, 0, 1, 1.0))),
        Err(FpmError::TooLarge {
            what: "worker_id",
            limit: MAX_WORKER_ID_BYTES
        })
    );
}

struct Case {
    name: &'static str,
    payload: Vec<u8>,
    want: FpmError,
}

fn replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let i = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern present");
    let mut out = bytes[..i].to_vec();
    out.extend_from_slice(to);
    out.extend_from_slice(&bytes[i + from.len()..]);
    out
}

#[test]
fn strictness_table() {
    let good = payload_with(&[0x01], &[]);
    let wall = {
        let mut v = vec![0xcb];
        v.extend_from_slice(&0.02f64.to_be_bytes());
        v
    };
    let key = |k: &str| {
        let mut v = Vec::new();
        s(&mut v, k);
        v
    };
    let cases = vec![
        Case {
            name: "empty",
            payload: vec![],
            want: FpmError::Truncated,
        },
        Case {
            name: "not a map",
            payload: vec![0x92, 0x01, 0x02],
            want: FpmError::WrongType {
                field: "<payload>",
                expected: "map",
            },
        },
        Case {
            name: "c1 marker",
            payload: vec![0xc1],
            want: FpmError::InvalidMarker { offset: 0 },
        },
        Case {
            name: "version 2",
            payload: payload_with(&[0x02], &[]),
            want: FpmError::BadVersion(2),
        },
        Case {
            name: "version -1",
            payload: payload_with(&[0xff], &[]),
            want: FpmError::BadVersion(-1),
        },
        Case {
            name: "version float",
            payload: payload_with(&[0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0], &[]),
            want: FpmError::WrongType {
                field: "version",
                expected: "int",
            },
        },
        Case {
            name: "duplicate root key",
            payload: payload_with(&[0x01], &[("dp_rank", &[0x00])]),
            want: FpmError::DuplicateField { field: "dp_rank" },
        },
        Case {
            name: "missing worker_id",
            payload: replace(&good, &key("worker_id"), &key("worker_ix")),
            want: FpmError::MissingField { field: "worker_id" },
        },
        Case {
            name: "negative wall_time",
            payload: replace(&good, &wall, &{
                let mut v = vec![0xcb];
                v.extend_from_slice(&(-1.0f64).to_be_bytes());
                v
            }),
            want: FpmError::Negative { field: "wall_time" },
        },
        Case {
            name: "nan wall_time",
            payload: replace(&good, &wall, &{
                let mut v = vec![0xcb];
                v.extend_from_slice(&f64::NAN.to_be_bytes());
                v
            }),
            want: FpmError::NonFinite { field: "wall_time" },
        },
        Case {
            name: "negative dp_rank",
            payload: replace(
                &good,
                &[&key("dp_rank")[..], &[0x00]].concat(),
                &[&key("dp_rank")[..], &[0xff]].concat(),
            ),
            want: FpmError::Negative { field: "dp_rank" },
        },
        Case {
            name: "float counter_id",
            payload: replace(
                &good,
                &[&key("counter_id")[..], &[0x05]].concat(),
                &[&key("counter_id")[..], &[0xca, 0, 0, 0, 0]].concat(),
            ),
            want: FpmError::WrongType {
                field: "counter_id",
                expected: "int",
            },
        },
        Case {
            name: "u64 beyond i64 in a count",
            payload: replace(
                &good,
                &[&key("dp_rank")[..], &[0x00]].concat(),
                &[&key("dp_rank")[..], &[0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0]].concat(),
            ),
            want: FpmError::OutOfRange { field: "dp_rank" },
        },
        Case {
            name: "negative counter_id",
            payload: replace(
                &good,
                &[&key("counter_id")[..], &[0x05]].concat(),
                &[&key("counter_id")[..], &[0xd3, 0xff, 0, 0, 0, 0, 0, 0, 0]].concat(),
            ),
            want: FpmError::Negative {
                field: "counter_id",
            },
        },
        Case {
            name: "worker_id not str",
            payload: replace(
                &good,
                &[&key("worker_id")[..], &key("w0")[..]].concat(),
                &[&key("worker_id")[..], &[0x00]].concat(),
            ),
            want: FpmError::WrongType {
                field: "worker_id",
                expected: "str",
            },
        },
        Case {
            name: "worker_id bad utf8",
            payload: replace(&good, &key("w0"), &[0xa2, 0xc3, 0x28]),
            want: FpmError::InvalidUtf8 { field: "worker_id" },
        },
        Case {
            name: "non-str key",
            payload: payload_with(&[0x01], &[])
                .iter()
                .take(1)
                .copied()
                .chain([0x01, 0x01])
                .collect(),
            want: FpmError::WrongType {
                field: "<key>",
                expected: "str",
            },
        },
        Case {
            name: "scheduled not a map",
            payload: replace(
                &good,
                &[&key("scheduled_requests")[..], &[0x87]].concat(),
                &[&key("scheduled_requests")[..], &[0x90], &[0x86]].concat(),
            ),
            want: FpmError::WrongType {
                field: "scheduled_requests",
                expected: "map",
            },
        },
        Case {
            name: "nested missing",
            payload: {
                let mut p = Vec::new();
                p.extend_from_slice(&good);
                let i = p
                    .windows(20)
                    .position(|w| w == &key("sum_decode_kv_tokens")[..20])
                    .expect("k");
                p[i + 1] = b'x';
                p
            },
            want: FpmError::MissingField {
                field: "scheduled_requests.sum_decode_kv_tokens",
            },
        },
        Case {
            name: "nested negative variance",
            payload: replace(
                &good,
                &[&key("var_prefill_length")[..], &[0x01]].concat(),
                &[
                    &key("var_prefill_length")[..],
                    &[0xcb],
                    &(-0.5f64).to_be_bytes(),
                ]
                .concat(),
            ),
            want: FpmError::Negative {
                field: "scheduled_requests.var_prefill_length",
            },
        },
        Case {
            name: "bad timestamp ext",
            payload: payload_with(&[0x01], &[("ts", &[0xd4, 0xff, 0x00])]),
            want: FpmError::InvalidTimestamp,
        },
        Case {
            name: "bad utf8 unknown key",
            payload: replace(
                &payload_with(&[0x01], &[("zz", &[0x00])]),
                &key("zz"),
                &[0xa2, 0xff, b'z'],
            ),
            want: FpmError::InvalidUtf8 { field: "<key>" },
        },
        Case {
            name: "oversized payload",
            payload: vec![0u8; fpm::MAX_PAYLOAD_BYTES + 1],
            want: FpmError::TooLarge {
                what: "payload bytes",
                limit: fpm::MAX_PAYLOAD_BYTES,
            },
        },
        Case {
            name: "map too large",
            payload: vec![0xde, 0x00, 0x41],
            want: FpmError::TooLarge {
                what: "map entries",
                limit: fpm::MAX_MAP_ENTRIES,
            },
        },
    ];
    for c in cases {
        assert_eq!(fpm::decode(&c.payload), Err(c.want), "case {}", c.name);
    }
}

#[test]
fn integer_encoded_variances_and_wall_time_are_accepted() {
    let good = payload_with(&[0x01], &[]);
    let rec = fpm::decode(&good).expect("valid");
    assert_eq!(rec.sample.scheduled.variances, [1.0, 1.0]);
}

#[test]
fn validate_rejects_what_decode_rejects() {
    let mut rec = record("w", 0, 1, 1.0);
    rec.sample.queued.counts[2] = -1;
    assert_eq!(
        rec.validate(),
        Err(FpmError::Negative {
            field: "queued_requests.num_decode_requests"
        })
    );
    let mut rec = record("w", 0, 1, 1.0);
    rec.sample.scheduled.variances[1] = f64::INFINITY;
    assert_eq!(
        rec.validate(),
        Err(FpmError::NonFinite {
            field: "scheduled_requests.var_decode_kv_tokens"
        })
    );
}

/// xorshift64*: deterministic pseudo-random bytes without a dependency.
fn rng(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn random_garbage_and_mutations_never_panic() {
    let base = fpm::encode(&record("worker-fuzz", 2, 77, 0.25));
    let mut st = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..20_000 {
        let len = (rng(&mut st) % 96) as usize;
        let garbage: Vec<u8> = (0..len).map(|_| rng(&mut st) as u8).collect();
        let _ = fpm::decode(&garbage);
        let mut m = base.clone();
        for _ in 0..(1 + rng(&mut st) % 4) {
            let i = (rng(&mut st) as usize) % m.len();
            m[i] = rng(&mut st) as u8;
        }
        let _ = fpm::decode(&m);
    }
}

#[test]
fn a_bad_version_is_reported_only_for_well_formed_msgpack() {
    let good = payload_with(&[0x02], &[]);
    assert_eq!(fpm::decode(&good), Err(FpmError::BadVersion(2)));
    let mut broken = good.clone();
    broken.truncate(good.len() - 1);
    assert_eq!(fpm::decode(&broken), Err(FpmError::Truncated));
    let mut longer = good;
    longer.push(0xc0);
    assert_eq!(
        fpm::decode(&longer),
        Err(FpmError::TrailingBytes { count: 1 })
    );
}
