//! Batch FPM encoding: rows equal one-by-one encoding, errors name the first bad cell.

use sla_planner_core::fpm::{
    decode, encode, encode_rows, encode_rows_into, encoded_len, plan_rows, write_rows, FpmColumns,
    FpmSample, RowColumn, RowError, MAX_WORKER_ID_BYTES,
};

/// 2**63 as f64: the first float that no longer fits an int64 count.
const I64_LIMIT: f64 = 9_223_372_036_854_775_808.0;

type Edit = Box<dyn Fn(&mut Batch)>;

struct Batch {
    ids: Vec<&'static str>,
    dp_rank: Vec<i64>,
    counter_id: Vec<i64>,
    wall_time: Vec<f64>,
    scheduled: Vec<f64>,
    queued: Vec<f64>,
}

fn batch(n: usize) -> Batch {
    let names = ["prefill-0", "decode-1", "agg-2"];
    let mut b = Batch {
        ids: Vec::new(),
        dp_rank: Vec::new(),
        counter_id: Vec::new(),
        wall_time: Vec::new(),
        scheduled: Vec::new(),
        queued: Vec::new(),
    };
    for i in 0..n {
        let k = i as f64;
        b.ids.push(names[i % names.len()]);
        b.dp_rank.push((i % 2) as i64);
        b.counter_id.push(i as i64 * 1000);
        b.wall_time
            .push(if i % 4 == 3 { 0.0 } else { 0.01 + 1e-3 * k });
        b.scheduled
            .extend_from_slice(&[k, 300.0 * k, 12.5 * k, 70_000.0 + k, 5e9 + k, 1e12, 0.25]);
        b.queued
            .extend_from_slice(&[k % 3.0, 65_536.0 * k, 0.0, 128.0, 4e10, 1e6]);
    }
    b
}

fn columns(b: &Batch) -> FpmColumns<'_> {
    FpmColumns::new(
        &b.ids,
        &b.dp_rank,
        &b.counter_id,
        &b.wall_time,
        &b.scheduled,
        &b.queued,
    )
    .expect("consistent lengths")
}

#[test]
fn rows_equal_one_by_one_and_decode_back() {
    let b = batch(40);
    let (buf, offsets) = encode_rows(&columns(&b)).expect("valid batch");
    assert_eq!(offsets.len(), 41);
    assert_eq!(offsets[0], 0);
    assert_eq!(offsets[40] as usize, buf.len());
    for i in 0..40 {
        let part = &buf[offsets[i] as usize..offsets[i + 1] as usize];
        let rec = decode(part).expect("decodes");
        assert_eq!(rec.worker_id, b.ids[i]);
        assert_eq!(encode(&rec), part);
        assert_eq!(rec.sample.counter_id, b.counter_id[i] as u64);
        assert_eq!(rec.sample.scheduled.counts[4], 1_000_000_000_000);
        assert_eq!(rec.sample.queued.counts[3], 40_000_000_000);
    }
}

#[test]
fn empty_batch_has_one_offset() {
    let b = batch(0);
    let (buf, offsets) = encode_rows(&columns(&b)).expect("empty is valid");
    assert!(buf.is_empty());
    assert_eq!(offsets, vec![0]);
}

#[test]
fn appending_keeps_absolute_offsets() {
    let b = batch(3);
    let mut out = vec![1u8, 2, 3];
    let mut offsets = Vec::new();
    encode_rows_into(&columns(&b), &mut out, &mut offsets).expect("valid");
    assert_eq!(offsets[0], 3);
    assert_eq!(*offsets.last().expect("n + 1"), out.len() as u64);
}

#[test]
fn length_mismatch_names_the_column() {
    let b = batch(3);
    let err = FpmColumns::new(
        &b.ids,
        &b.dp_rank[..2],
        &b.counter_id,
        &b.wall_time,
        &b.scheduled,
        &b.queued,
    )
    .expect_err("short dp_rank");
    assert_eq!(err.0, "dp_rank has 2 entries but worker_ids has 3");
    let err = FpmColumns::new(
        &b.ids,
        &b.dp_rank,
        &b.counter_id,
        &b.wall_time,
        &b.scheduled,
        &b.queued[..17],
    )
    .expect_err("short queued");
    assert!(err.0.starts_with("queued has 17 values"), "{}", err.0);
}

fn first_error(edit: impl Fn(&mut Batch)) -> RowError {
    let mut b = batch(5);
    edit(&mut b);
    let mut out = vec![9u8];
    let mut offsets = vec![7u64];
    let err = encode_rows_into(&columns(&b), &mut out, &mut offsets).expect_err("invalid");
    assert_eq!((out, offsets), (vec![9u8], vec![7u64]), "left as it was");
    err
}

#[test]
fn value_errors_name_row_and_column() {
    let cases: Vec<(Edit, usize, RowColumn, &str)> = vec![
        (
            Box::new(|b| b.dp_rank[2] = -1),
            2,
            RowColumn::DpRank,
            "negative",
        ),
        (
            Box::new(|b| b.counter_id[4] = -7),
            4,
            RowColumn::CounterId,
            "negative",
        ),
        (
            Box::new(|b| b.wall_time[1] = f64::NAN),
            1,
            RowColumn::WallTime,
            "non_finite",
        ),
        (
            Box::new(|b| b.wall_time[1] = -1e-9),
            1,
            RowColumn::WallTime,
            "negative",
        ),
        (
            Box::new(|b| b.scheduled[3 * 7 + 1] = 2.5),
            3,
            RowColumn::Scheduled(1),
            "not_integral",
        ),
        (
            Box::new(|b| b.scheduled[3 * 7 + 2] = -0.5),
            3,
            RowColumn::Scheduled(2),
            "negative",
        ),
        (
            Box::new(|b| b.scheduled[7 + 4] = f64::INFINITY),
            1,
            RowColumn::Scheduled(4),
            "non_finite",
        ),
        (
            Box::new(|b| b.queued[6 + 4] = I64_LIMIT),
            1,
            RowColumn::Queued(4),
            "out_of_range",
        ),
        (
            Box::new(|b| b.queued[6 + 5] = f64::NEG_INFINITY),
            1,
            RowColumn::Queued(5),
            "non_finite",
        ),
        (
            Box::new(|b| b.ids[3] = leaked_long_id()),
            3,
            RowColumn::WorkerId,
            "too_large",
        ),
    ];
    for (edit, row, column, kind) in cases {
        let err = first_error(edit);
        assert_eq!(
            (err.row, err.column, err.kind()),
            (row, column, kind),
            "{err}"
        );
        assert!(
            err.to_string().starts_with(&format!("FPM row {row}: ")),
            "{err}"
        );
    }
}

fn leaked_long_id() -> &'static str {
    Box::leak("w".repeat(MAX_WORKER_ID_BYTES + 1).into_boxed_str())
}

#[test]
fn boundaries_just_inside_are_accepted() {
    let mut b = batch(2);
    b.ids[0] = Box::leak("w".repeat(MAX_WORKER_ID_BYTES).into_boxed_str());
    b.scheduled[1] = 9_223_372_036_854_774_784.0; // largest f64 below 2**63
    b.scheduled[2] = 0.0;
    b.queued[0] = -0.0;
    let (buf, offsets) = encode_rows(&columns(&b)).expect("inside the limits");
    let rec = decode(&buf[..offsets[1] as usize]).expect("decodes");
    assert_eq!(rec.sample.scheduled.counts[1], 9_223_372_036_854_774_784);
    assert_eq!(rec.sample.queued.counts[0], 0);
}

#[test]
fn first_bad_cell_wins_in_row_order() {
    let err = first_error(|b| {
        b.queued[6 * 2] = -1.0;
        b.scheduled[7 * 2 + 6] = f64::NAN;
        b.dp_rank[4] = -1;
    });
    assert_eq!((err.row, err.column), (2, RowColumn::Scheduled(6)));
    let err = first_error(|b| {
        b.dp_rank[0] = -1;
        b.ids[4] = leaked_long_id();
    });
    assert_eq!(
        (err.row, err.column),
        (4, RowColumn::WorkerId),
        "worker ids first"
    );
}

#[test]
fn heartbeat_rows_encode_as_zero_wall_time() {
    let b = batch(4);
    let (buf, offsets) = encode_rows(&columns(&b)).expect("valid");
    let rec = decode(&buf[offsets[3] as usize..offsets[4] as usize]).expect("decodes");
    let expected = FpmSample {
        dp_rank: 1,
        counter_id: 3000,
        wall_time: 0.0,
        ..rec.sample
    };
    assert_eq!(rec.sample, expected);
    assert!(rec.sample.is_heartbeat());
}

#[test]
fn encoded_len_matches_the_encoder_at_every_width_boundary() {
    let ints = [
        i64::MIN,
        -33,
        -32,
        -1,
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
    ];
    let ids: Vec<String> = [0usize, 31, 32, 255, 256]
        .iter()
        .map(|&n| "w".repeat(n))
        .collect();
    for wid in &ids {
        for &v in &ints {
            let mut sample = FpmSample {
                dp_rank: v,
                counter_id: v as u64,
                wall_time: 0.5,
                ..FpmSample::default()
            };
            sample.scheduled.counts = [v; 5];
            sample.queued.counts = [v; 4];
            let rec = sla_planner_core::fpm::FpmRef {
                worker_id: wid,
                sample,
            };
            assert_eq!(
                encoded_len(&rec),
                encode(&rec).len(),
                "v={v} id={}",
                wid.len()
            );
        }
    }
}

#[test]
fn plan_and_write_equal_encode_rows() {
    let b = batch(25);
    let cols = columns(&b);
    let (buf, offsets) = encode_rows(&cols).expect("valid");
    let plan = plan_rows(&cols).expect("valid");
    assert_eq!(plan, offsets);
    let mut out = vec![0u8; buf.len()];
    write_rows(&cols, &plan, &mut out).expect("planned");
    assert_eq!(out, buf);
}

#[test]
fn write_rows_rejects_a_buffer_of_the_wrong_size() {
    let b = batch(3);
    let cols = columns(&b);
    let plan = plan_rows(&cols).expect("valid");
    let total = *plan.last().expect("n + 1") as usize;
    for len in [total - 1, total + 1] {
        let mut out = vec![0u8; len];
        let err = write_rows(&cols, &plan, &mut out).expect_err("wrong size");
        assert!(err.0.contains("plan_rows"), "{}", err.0);
    }
    let mut out = vec![0u8; total];
    let err = write_rows(&cols, &plan[..3], &mut out).expect_err("short offsets");
    assert!(err.0.contains("3 + 1 offsets"), "{}", err.0);
}
