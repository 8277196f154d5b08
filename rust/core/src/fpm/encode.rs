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
    if v >= 0 {
        put_uint(out, v as u64);
    } else if v >= -32 {
        out.push(v as i8 as u8);
    } else {
        out.push(0xd3);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// An unsigned integer in its smallest msgpack form (the full u64 range).
fn put_uint(out: &mut Vec<u8>, u: u64) {
    {
        if u <= 0x7f {
            out.push(u as u8);
        } else if u <= 0xff {
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
    put_uint(out, s.counter_id);
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

// ------------------------------------------------------------------------------ batch encoding

/// Rows bigger than 2**63 - 1 do not fit the wire's int64 counts; as f64 this bound is exact.
const I64_LIMIT_F64: f64 = 9_223_372_036_854_775_808.0;

/// A batch of FPM records as columns, one entry (or matrix row) per record. Count and sum
/// statistics arrive as float64 holding non-negative integral values; [`plan_rows`]
/// checks that before encoding them as msgpack ints.
#[derive(Debug, Clone, Copy)]
pub struct FpmColumns<'a> {
    worker_ids: &'a [&'a str],
    dp_rank: &'a [i64],
    counter_id: &'a [i64],
    wall_time: &'a [f64],
    scheduled: &'a [f64],
    queued: &'a [f64],
}

/// Columns of the `scheduled` matrix (`SCHEDULED_FIELDS` order).
pub const SCHEDULED_COLUMNS: usize = SCHEDULED_FIELDS.len();
/// Columns of the `queued` matrix (`QUEUED_FIELDS` order).
pub const QUEUED_COLUMNS: usize = QUEUED_FIELDS.len();

impl<'a> FpmColumns<'a> {
    /// Check the column lengths: n worker ids, n dp ranks, counters and wall times, and
    /// row-major `scheduled` (n x 7) and `queued` (n x 6) matrices.
    pub fn new(
        worker_ids: &'a [&'a str],
        dp_rank: &'a [i64],
        counter_id: &'a [i64],
        wall_time: &'a [f64],
        scheduled: &'a [f64],
        queued: &'a [f64],
    ) -> Result<Self, crate::ArgumentError> {
        let n = worker_ids.len();
        let same = |name: &str, len: usize, per_row: usize| {
            if len == n * per_row {
                Ok(())
            } else if per_row == 1 {
                Err(crate::ArgumentError(format!(
                    "{name} has {len} entries but worker_ids has {n}"
                )))
            } else {
                Err(crate::ArgumentError(format!(
                    "{name} has {len} values but must hold {n} rows x {per_row} columns"
                )))
            }
        };
        same("dp_rank", dp_rank.len(), 1)?;
        same("counter_id", counter_id.len(), 1)?;
        same("wall_time", wall_time.len(), 1)?;
        same("scheduled", scheduled.len(), SCHEDULED_COLUMNS)?;
        same("queued", queued.len(), QUEUED_COLUMNS)?;
        Ok(FpmColumns {
            worker_ids,
            dp_rank,
            counter_id,
            wall_time,
            scheduled,
            queued,
        })
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.worker_ids.len()
    }

    /// True when the batch holds no records.
    pub fn is_empty(&self) -> bool {
        self.worker_ids.is_empty()
    }
}

/// The column a batch error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowColumn {
    /// `worker_ids[row]`.
    WorkerId,
    /// `dp_rank[row]`.
    DpRank,
    /// `counter_id[row]`.
    CounterId,
    /// `wall_time[row]`.
    WallTime,
    /// `scheduled[row, column]`.
    Scheduled(usize),
    /// `queued[row, column]`.
    Queued(usize),
}

impl RowColumn {
    /// The schema path of the field the column holds, e.g. `queued_requests.sum_prefill_tokens`.
    pub fn path(&self) -> &'static str {
        match self {
            RowColumn::WorkerId => "worker_id",
            RowColumn::DpRank => "dp_rank",
            RowColumn::CounterId => "counter_id",
            RowColumn::WallTime => "wall_time",
            RowColumn::Scheduled(c) => SCHEDULED_FIELDS
                .get(*c)
                .map_or("scheduled_requests", |f| f.path),
            RowColumn::Queued(c) => QUEUED_FIELDS.get(*c).map_or("queued_requests", |f| f.path),
        }
    }

    /// The cell as the caller indexes it, e.g. `scheduled[12, 1]`.
    pub fn cell(&self, row: usize) -> String {
        match self {
            RowColumn::WorkerId => format!("worker_ids[{row}]"),
            RowColumn::DpRank => format!("dp_rank[{row}]"),
            RowColumn::CounterId => format!("counter_id[{row}]"),
            RowColumn::WallTime => format!("wall_time[{row}]"),
            RowColumn::Scheduled(c) => format!("scheduled[{row}, {c}]"),
            RowColumn::Queued(c) => format!("queued[{row}, {c}]"),
        }
    }
}

/// The rule a batch row broke.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RowRule {
    /// The worker id is longer than `MAX_WORKER_ID_BYTES`; holds its length in bytes.
    TooLong(usize),
    /// A float value is below zero.
    Negative(f64),
    /// An integer value (dp_rank, counter_id) is below zero.
    NegativeInt(i64),
    /// A float value is NaN or infinite.
    NonFinite(f64),
    /// A count or sum has a fractional part.
    NotIntegral(f64),
    /// A count or sum does not fit a signed 64-bit integer.
    OutOfRange(f64),
}

/// Why a batch could not be encoded: the first offending cell, rows in order and, within a
/// row, worker id, dp_rank, counter_id, wall_time, scheduled columns, queued columns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowError {
    /// Index of the record in the batch.
    pub row: usize,
    /// The offending column.
    pub column: RowColumn,
    /// The rule it broke, with the value.
    pub rule: RowRule,
}

impl RowError {
    /// Stable short name of the rule (the `kind` of the Python exception).
    pub fn kind(&self) -> &'static str {
        match self.rule {
            RowRule::TooLong(_) => "too_large",
            RowRule::Negative(_) | RowRule::NegativeInt(_) => "negative",
            RowRule::NonFinite(_) => "non_finite",
            RowRule::NotIntegral(_) => "not_integral",
            RowRule::OutOfRange(_) => "out_of_range",
        }
    }

    /// Schema path of the field (the `field` of the Python exception).
    pub fn field(&self) -> &'static str {
        self.column.path()
    }
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cell = self.column.cell(self.row);
        let path = self.column.path();
        write!(f, "FPM row {}: {cell} ({path}) ", self.row)?;
        match self.rule {
            RowRule::TooLong(len) => write!(
                f,
                "is {len} bytes, over the limit of {}",
                super::MAX_WORKER_ID_BYTES
            ),
            RowRule::Negative(v) => write!(f, "must be >= 0, got {v:?}"),
            RowRule::NegativeInt(v) => write!(f, "must be >= 0, got {v}"),
            RowRule::NonFinite(v) => write!(f, "must be finite, got {v:?}"),
            RowRule::NotIntegral(v) => write!(f, "must be a whole number, got {v:?}"),
            RowRule::OutOfRange(v) => {
                write!(f, "does not fit a signed 64-bit integer, got {v:?}")
            }
        }
    }
}

impl std::error::Error for RowError {}

fn row_error(row: usize, column: RowColumn, rule: RowRule) -> RowError {
    RowError { row, column, rule }
}

/// A count or sum column value as the integer it holds.
#[inline]
fn whole(v: f64, row: usize, column: RowColumn) -> Result<i64, RowError> {
    if !v.is_finite() {
        Err(row_error(row, column, RowRule::NonFinite(v)))
    } else if v < 0.0 {
        Err(row_error(row, column, RowRule::Negative(v)))
    } else if v.trunc() != v {
        Err(row_error(row, column, RowRule::NotIntegral(v)))
    } else if v >= I64_LIMIT_F64 {
        Err(row_error(row, column, RowRule::OutOfRange(v)))
    } else {
        Ok(v as i64)
    }
}

/// A variance or time column value, checked.
#[inline]
fn non_negative(v: f64, row: usize, column: RowColumn) -> Result<f64, RowError> {
    if !v.is_finite() {
        Err(row_error(row, column, RowRule::NonFinite(v)))
    } else if v < 0.0 {
        Err(row_error(row, column, RowRule::Negative(v)))
    } else {
        Ok(v)
    }
}

fn stats_from_row<const NC: usize, const NV: usize>(
    specs: &[FieldSpec],
    values: &[f64],
    row: usize,
    column: fn(usize) -> RowColumn,
) -> Result<RequestStats<NC, NV>, RowError> {
    let mut out = RequestStats::<NC, NV>::default();
    for (c, (spec, &v)) in specs.iter().zip(values).enumerate() {
        match spec.kind {
            FieldKind::Count => {
                let x = whole(v, row, column(c))?;
                if let Some(dst) = out.counts.get_mut(spec.slot) {
                    *dst = x;
                }
            }
            FieldKind::Variance => {
                let x = non_negative(v, row, column(c))?;
                if let Some(dst) = out.variances.get_mut(spec.slot) {
                    *dst = x;
                }
            }
        }
    }
    Ok(out)
}

/// Record `row` of the batch, validated (the batch error names the first bad cell).
fn record_at<'a>(cols: &FpmColumns<'a>, row: usize) -> Result<FpmRef<'a>, RowError> {
    let count = |v: i64, column: RowColumn| {
        if v < 0 {
            Err(row_error(row, column, RowRule::NegativeInt(v)))
        } else {
            Ok(v)
        }
    };
    let sched = &cols.scheduled[row * SCHEDULED_COLUMNS..(row + 1) * SCHEDULED_COLUMNS];
    let queued = &cols.queued[row * QUEUED_COLUMNS..(row + 1) * QUEUED_COLUMNS];
    let sample = super::FpmSample {
        dp_rank: count(cols.dp_rank[row], RowColumn::DpRank)?,
        counter_id: count(cols.counter_id[row], RowColumn::CounterId)? as u64,
        wall_time: non_negative(cols.wall_time[row], row, RowColumn::WallTime)?,
        scheduled: stats_from_row(&SCHEDULED_FIELDS, sched, row, RowColumn::Scheduled)?,
        queued: stats_from_row(&QUEUED_FIELDS, queued, row, RowColumn::Queued)?,
    };
    Ok(FpmRef {
        worker_id: cols.worker_ids[row],
        sample,
    })
}

/// Bytes `put_str` writes for a string of `n` bytes.
fn str_len(n: usize) -> usize {
    n + if n < 32 {
        1
    } else if n <= 0xff {
        2
    } else if n <= 0xffff {
        3
    } else {
        5
    }
}

/// Bytes `put_int` writes for `v`.
fn int_len(v: i64) -> usize {
    if v >= 0 {
        uint_len(v as u64)
    } else if v >= -32 {
        1
    } else {
        9
    }
}

/// Bytes `put_uint` writes for `u`.
fn uint_len(u: u64) -> usize {
    match u {
        0..=0x7f => 1,
        0x80..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

const F64_LEN: usize = 9;

fn stats_len<const NC: usize, const NV: usize>(
    specs: &[FieldSpec],
    stats: &RequestStats<NC, NV>,
) -> usize {
    let fields: usize = specs
        .iter()
        .map(|spec| {
            str_len(spec.name.len())
                + match spec.kind {
                    FieldKind::Count => int_len(stats.counts.get(spec.slot).copied().unwrap_or(0)),
                    FieldKind::Variance => F64_LEN,
                }
        })
        .sum();
    1 + fields
}

/// Bytes [`encode_into`] appends for `fpm`.
pub fn encoded_len(fpm: &FpmRef<'_>) -> usize {
    let s = &fpm.sample;
    1 + str_len("version".len())
        + int_len(FPM_SCHEMA_VERSION)
        + str_len("worker_id".len())
        + str_len(fpm.worker_id.len())
        + str_len("dp_rank".len())
        + int_len(s.dp_rank)
        + str_len("counter_id".len())
        + uint_len(s.counter_id)
        + str_len("wall_time".len())
        + F64_LEN
        + str_len("scheduled_requests".len())
        + stats_len(&SCHEDULED_FIELDS, &s.scheduled)
        + str_len("queued_requests".len())
        + stats_len(&QUEUED_FIELDS, &s.queued)
}

/// Validate every row of `cols` and return the n + 1 offsets of its encoding, starting at 0
/// (record i will be `buf[offsets[i]..offsets[i + 1]]`). Worker ids are checked first (in row
/// order), then the numeric columns row by row; the error names the first bad cell.
pub fn plan_rows(cols: &FpmColumns<'_>) -> Result<Vec<u64>, RowError> {
    for (row, wid) in cols.worker_ids.iter().enumerate() {
        if wid.len() > super::MAX_WORKER_ID_BYTES {
            return Err(row_error(
                row,
                RowColumn::WorkerId,
                RowRule::TooLong(wid.len()),
            ));
        }
    }
    let mut offsets = Vec::with_capacity(cols.len() + 1);
    let mut end = 0u64;
    offsets.push(end);
    for row in 0..cols.len() {
        end += encoded_len(&record_at(cols, row)?) as u64;
        offsets.push(end);
    }
    Ok(offsets)
}

/// Write the encoding planned by [`plan_rows`] into `out`, which must be exactly
/// `offsets[n]` bytes long. Each record is byte-identical to [`encode`] of the same record.
pub fn write_rows(
    cols: &FpmColumns<'_>,
    offsets: &[u64],
    out: &mut [u8],
) -> Result<(), crate::ArgumentError> {
    let mismatch = || {
        crate::ArgumentError(format!(
            "write_rows needs the {} + 1 offsets from plan_rows and a buffer of offsets[n] bytes",
            cols.len()
        ))
    };
    if offsets.len() != cols.len() + 1 || offsets.last().map(|&e| e as usize) != Some(out.len()) {
        return Err(mismatch());
    }
    let mut scratch = Vec::with_capacity(512);
    for row in 0..cols.len() {
        let rec = record_at(cols, row).map_err(|e| {
            crate::ArgumentError(format!("{e} (the batch changed after plan_rows)"))
        })?;
        scratch.clear();
        encode_into(&rec, &mut scratch);
        let (a, b) = (offsets[row] as usize, offsets[row + 1] as usize);
        match out.get_mut(a..b) {
            Some(dst) if dst.len() == scratch.len() => dst.copy_from_slice(&scratch),
            _ => return Err(mismatch()),
        }
    }
    Ok(())
}

/// Append the n records of `cols` to `out`, back to back, and push n + 1 offsets into `offsets`
/// (record i is `out[offsets[i]..offsets[i + 1]]`; offsets are absolute in `out`). Validation
/// as in [`plan_rows`]; on error `out` and `offsets` are left as they were.
pub fn encode_rows_into(
    cols: &FpmColumns<'_>,
    out: &mut Vec<u8>,
    offsets: &mut Vec<u64>,
) -> Result<(), RowError> {
    let plan = plan_rows(cols)?;
    let base = out.len() as u64;
    out.reserve(plan.last().map_or(0, |&e| e as usize));
    for row in 0..cols.len() {
        // validated by plan_rows: the record cannot fail here
        encode_into(&record_at(cols, row)?, out);
    }
    offsets.extend(plan.iter().map(|&o| base + o));
    Ok(())
}

/// The n records of `cols` in one buffer, with n + 1 offsets starting at 0.
pub fn encode_rows(cols: &FpmColumns<'_>) -> Result<(Vec<u8>, Vec<u64>), RowError> {
    let mut out = Vec::new();
    let mut offsets = Vec::new();
    encode_rows_into(cols, &mut out, &mut offsets)?;
    Ok((out, offsets))
}
