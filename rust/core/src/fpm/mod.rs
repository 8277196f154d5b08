//! ForwardPassMetrics (FPM) schema version 1: record types, field tables, codec.
//!
//! The nested request statistics are stored as two fixed arrays (integer counts/sums and float
//! variances) described by a field table, so decoding, encoding and struct-of-arrays export all
//! walk the same table.

mod decode;
mod encode;
mod error;

pub use decode::{decode, MAX_DEPTH, MAX_MAP_ENTRIES, MAX_PAYLOAD_BYTES, MAX_WORKER_ID_BYTES};
pub use encode::{
    encode, encode_into, encode_rows, encode_rows_into, encoded_len, plan_rows, write_rows,
    FpmColumns, RowColumn, RowError, RowRule, QUEUED_COLUMNS, SCHEDULED_COLUMNS,
};
pub use error::FpmError;

/// Whether a nested statistic is an integer count/sum or a float variance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Non-negative integer (counts, token sums).
    Count,
    /// Non-negative finite float (variances); msgpack integers are accepted.
    Variance,
}

/// One field of a nested statistics map.
#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    /// Key in the msgpack map.
    pub name: &'static str,
    /// Dotted path used in errors, e.g. `queued_requests.sum_prefill_tokens`.
    pub path: &'static str,
    /// Integer or float.
    pub kind: FieldKind,
    /// Index into `counts` (Count) or `variances` (Variance).
    pub slot: usize,
}

const fn count(name: &'static str, path: &'static str, slot: usize) -> FieldSpec {
    FieldSpec {
        name,
        path,
        kind: FieldKind::Count,
        slot,
    }
}

const fn variance(name: &'static str, path: &'static str, slot: usize) -> FieldSpec {
    FieldSpec {
        name,
        path,
        kind: FieldKind::Variance,
        slot,
    }
}

/// Fields of `scheduled_requests`, in schema order.
pub const SCHEDULED_FIELDS: [FieldSpec; 7] = [
    count(
        "num_prefill_requests",
        "scheduled_requests.num_prefill_requests",
        0,
    ),
    count(
        "sum_prefill_tokens",
        "scheduled_requests.sum_prefill_tokens",
        1,
    ),
    variance(
        "var_prefill_length",
        "scheduled_requests.var_prefill_length",
        0,
    ),
    count(
        "sum_prefill_kv_tokens",
        "scheduled_requests.sum_prefill_kv_tokens",
        2,
    ),
    count(
        "num_decode_requests",
        "scheduled_requests.num_decode_requests",
        3,
    ),
    count(
        "sum_decode_kv_tokens",
        "scheduled_requests.sum_decode_kv_tokens",
        4,
    ),
    variance(
        "var_decode_kv_tokens",
        "scheduled_requests.var_decode_kv_tokens",
        1,
    ),
];

/// Fields of `queued_requests`, in schema order.
pub const QUEUED_FIELDS: [FieldSpec; 6] = [
    count(
        "num_prefill_requests",
        "queued_requests.num_prefill_requests",
        0,
    ),
    count(
        "sum_prefill_tokens",
        "queued_requests.sum_prefill_tokens",
        1,
    ),
    variance(
        "var_prefill_length",
        "queued_requests.var_prefill_length",
        0,
    ),
    count(
        "num_decode_requests",
        "queued_requests.num_decode_requests",
        2,
    ),
    count(
        "sum_decode_kv_tokens",
        "queued_requests.sum_decode_kv_tokens",
        3,
    ),
    variance(
        "var_decode_kv_tokens",
        "queued_requests.var_decode_kv_tokens",
        1,
    ),
];

/// Request statistics of one map: `NC` integer fields and `NV` float fields.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestStats<const NC: usize, const NV: usize> {
    /// Integer fields, indexed by `FieldSpec::slot`.
    pub counts: [i64; NC],
    /// Float fields, indexed by `FieldSpec::slot`.
    pub variances: [f64; NV],
}

impl<const NC: usize, const NV: usize> Default for RequestStats<NC, NV> {
    fn default() -> Self {
        RequestStats {
            counts: [0; NC],
            variances: [0.0; NV],
        }
    }
}

impl<const NC: usize, const NV: usize> RequestStats<NC, NV> {
    /// Value of `spec` as f64 (counts converted).
    pub fn get_f64(&self, spec: &FieldSpec) -> f64 {
        match spec.kind {
            FieldKind::Count => self.counts.get(spec.slot).map_or(0.0, |&v| v as f64),
            FieldKind::Variance => self.variances.get(spec.slot).copied().unwrap_or(0.0),
        }
    }
}

/// `scheduled_requests`: what the engine ran in this forward pass.
pub type ScheduledRequests = RequestStats<5, 2>;
/// `queued_requests`: what was waiting when the pass ran.
pub type QueuedRequests = RequestStats<4, 2>;

/// Named slots of `ScheduledRequests::counts`.
pub mod scheduled {
    pub const NUM_PREFILL_REQUESTS: usize = 0;
    pub const SUM_PREFILL_TOKENS: usize = 1;
    pub const SUM_PREFILL_KV_TOKENS: usize = 2;
    pub const NUM_DECODE_REQUESTS: usize = 3;
    pub const SUM_DECODE_KV_TOKENS: usize = 4;
    pub const VAR_PREFILL_LENGTH: usize = 0;
    pub const VAR_DECODE_KV_TOKENS: usize = 1;
}

/// Named slots of `QueuedRequests::counts`.
pub mod queued {
    pub const NUM_PREFILL_REQUESTS: usize = 0;
    pub const SUM_PREFILL_TOKENS: usize = 1;
    pub const NUM_DECODE_REQUESTS: usize = 2;
    pub const SUM_DECODE_KV_TOKENS: usize = 3;
    pub const VAR_PREFILL_LENGTH: usize = 0;
    pub const VAR_DECODE_KV_TOKENS: usize = 1;
}

/// The numeric part of an FPM message (everything except `worker_id`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FpmSample {
    /// Data-parallel rank of the engine (>= 0).
    pub dp_rank: i64,
    /// Per-engine monotonic message counter (unsigned 64-bit, as Dynamo publishes it).
    pub counter_id: u64,
    /// Forward-pass wall time in seconds; 0.0 marks an idle heartbeat.
    pub wall_time: f64,
    /// What ran in this pass.
    pub scheduled: ScheduledRequests,
    /// What was queued.
    pub queued: QueuedRequests,
}

impl FpmSample {
    /// True for an idle heartbeat (`wall_time == 0.0`).
    pub fn is_heartbeat(&self) -> bool {
        self.wall_time == 0.0
    }
}

/// A decoded FPM message; `worker_id` borrows from the payload (no allocation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FpmRef<'a> {
    /// Worker (pod/process) identifier.
    pub worker_id: &'a str,
    /// Numeric fields.
    pub sample: FpmSample,
}

impl FpmRef<'_> {
    /// Check the record against the decoder's rules (so an encoded record always decodes).
    pub fn validate(&self) -> Result<(), FpmError> {
        if self.worker_id.len() > MAX_WORKER_ID_BYTES {
            return Err(FpmError::TooLarge {
                what: "worker_id",
                limit: MAX_WORKER_ID_BYTES,
            });
        }
        let s = &self.sample;
        check_count("dp_rank", s.dp_rank)?;
        check_float("wall_time", s.wall_time)?;
        check_stats(&SCHEDULED_FIELDS, &s.scheduled)?;
        check_stats(&QUEUED_FIELDS, &s.queued)
    }
}

fn check_count(field: &'static str, v: i64) -> Result<(), FpmError> {
    if v < 0 {
        Err(FpmError::Negative { field })
    } else {
        Ok(())
    }
}

fn check_float(field: &'static str, v: f64) -> Result<(), FpmError> {
    if !v.is_finite() {
        Err(FpmError::NonFinite { field })
    } else if v < 0.0 {
        Err(FpmError::Negative { field })
    } else {
        Ok(())
    }
}

fn check_stats<const NC: usize, const NV: usize>(
    specs: &[FieldSpec],
    stats: &RequestStats<NC, NV>,
) -> Result<(), FpmError> {
    for spec in specs {
        match spec.kind {
            FieldKind::Count => {
                check_count(spec.path, stats.counts.get(spec.slot).copied().unwrap_or(0))?
            }
            FieldKind::Variance => check_float(
                spec.path,
                stats.variances.get(spec.slot).copied().unwrap_or(0.0),
            )?,
        }
    }
    Ok(())
}
