//! The engine table: FPM messages in, per-engine state and global counters out.
//!
//! No clock: every call that needs time takes the caller's `now_s`.

use std::collections::HashMap;

use crate::engine::{Engine, HistoryEntry};
use crate::fpm::{self, FpmError, FpmSample, QUEUED_FIELDS, SCHEDULED_FIELDS};
use crate::hash::FastBuildHasher;
use crate::ArgumentError;

/// Largest accepted `history_len`.
pub const MAX_HISTORY_LEN: usize = 100_000;
/// Largest accepted `max_engines`.
pub const MAX_ENGINES_LIMIT: usize = 1 << 20;

/// Table-wide counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableCounters {
    /// Payloads offered.
    pub received: u64,
    /// Payloads that decoded and validated.
    pub decoded: u64,
    /// Payloads rejected for any reason except the version.
    pub malformed: u64,
    /// Payloads rejected because `version` is not 1.
    pub wrong_version: u64,
    /// Accepted idle heartbeats.
    pub heartbeats: u64,
    /// Missing messages detected from `counter_id`.
    pub counter_gaps: u64,
    /// Missing messages detected from transport sequence numbers.
    pub seq_gaps: u64,
    /// Accepted messages that did not advance `counter_id` or the sequence.
    pub out_of_order: u64,
    /// Decoded messages dropped because the table already holds `max_engines` engines.
    pub dropped_capacity: u64,
}

impl TableCounters {
    /// `counter_gaps + seq_gaps` (saturating).
    pub fn gaps(&self) -> u64 {
        self.counter_gaps.saturating_add(self.seq_gaps)
    }
}

/// Struct-of-arrays view of every known engine, in registration order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub worker_id: Vec<String>,
    pub dp_rank: Vec<i64>,
    pub counter_id: Vec<i64>,
    pub wall_time: Vec<f64>,
    pub last_seen_s: Vec<f64>,
    pub stale: Vec<bool>,
    pub received: Vec<i64>,
    pub heartbeats: Vec<i64>,
    pub gaps: Vec<i64>,
    pub out_of_order: Vec<i64>,
    /// One column per `SCHEDULED_FIELDS` entry, in table order.
    pub scheduled: Vec<Column>,
    /// One column per `QUEUED_FIELDS` entry, in table order.
    pub queued: Vec<Column>,
}

/// A typed column of a nested FPM field.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Int(Vec<i64>),
    Float(Vec<f64>),
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn stats_columns<const NC: usize, const NV: usize>(
    specs: &[fpm::FieldSpec],
    rows: &mut dyn Iterator<Item = &fpm::RequestStats<NC, NV>>,
) -> Vec<Column> {
    let mut cols: Vec<Column> = specs
        .iter()
        .map(|s| match s.kind {
            fpm::FieldKind::Count => Column::Int(Vec::new()),
            fpm::FieldKind::Variance => Column::Float(Vec::new()),
        })
        .collect();
    for stats in rows {
        for (spec, col) in specs.iter().zip(cols.iter_mut()) {
            match col {
                Column::Int(v) => v.push(stats.counts.get(spec.slot).copied().unwrap_or(0)),
                Column::Float(v) => v.push(stats.variances.get(spec.slot).copied().unwrap_or(0.0)),
            }
        }
    }
    cols
}

/// Per-engine state keyed by `(worker_id, dp_rank)`, bounded in engines and history.
#[derive(Debug, Clone)]
pub struct EngineTable {
    history_len: usize,
    stale_after_s: f64,
    max_engines: usize,
    engines: Vec<Engine>,
    index: HashMap<Box<str>, Vec<(i64, usize)>, FastBuildHasher>,
    last_hit: Option<usize>,
    counters: TableCounters,
}

impl EngineTable {
    /// A table keeping `history_len` forward passes per engine, calling an engine stale after
    /// `stale_after_s` seconds of silence, holding at most `max_engines` engines.
    pub fn new(
        history_len: usize,
        stale_after_s: f64,
        max_engines: usize,
    ) -> Result<Self, ArgumentError> {
        if history_len > MAX_HISTORY_LEN {
            return Err(ArgumentError(format!(
                "history_len must be <= {MAX_HISTORY_LEN}, got {history_len}"
            )));
        }
        if !(stale_after_s.is_finite() && stale_after_s > 0.0) {
            return Err(ArgumentError(format!(
                "stale_after_s must be finite and > 0, got {stale_after_s}"
            )));
        }
        if max_engines == 0 || max_engines > MAX_ENGINES_LIMIT {
            return Err(ArgumentError(format!(
                "max_engines must be in 1..={MAX_ENGINES_LIMIT}, got {max_engines}"
            )));
        }
        Ok(EngineTable {
            history_len,
            stale_after_s,
            max_engines,
            engines: Vec::new(),
            index: HashMap::default(),
            last_hit: None,
            counters: TableCounters::default(),
        })
    }

    /// Decode and apply one payload received at `now_s`; returns whether it was accepted.
    /// Rejections are counted (`malformed`, `wrong_version`, `dropped_capacity`), never raised.
    #[inline]
    pub fn ingest(&mut self, payload: &[u8], now_s: f64, seq: Option<u64>) -> bool {
        self.counters.received += 1;
        match fpm::decode(payload) {
            Ok(rec) => {
                self.counters.decoded += 1;
                self.apply(rec.worker_id, &rec.sample, now_s, seq)
            }
            Err(FpmError::BadVersion(_)) => {
                self.counters.wrong_version += 1;
                false
            }
            Err(_) => {
                self.counters.malformed += 1;
                false
            }
        }
    }

    /// Apply an already decoded message; returns false when the table is full.
    pub fn apply(
        &mut self,
        worker_id: &str,
        sample: &FpmSample,
        now_s: f64,
        seq: Option<u64>,
    ) -> bool {
        let Some(i) = self.slot_for(worker_id, sample.dp_rank) else {
            self.counters.dropped_capacity += 1;
            return false;
        };
        let Some(engine) = self.engines.get_mut(i) else {
            return false;
        };
        let e = engine.update(sample, now_s, seq);
        let k = &mut self.counters;
        k.heartbeats += u64::from(e.heartbeat);
        k.counter_gaps = k.counter_gaps.saturating_add(e.counter_gap);
        k.seq_gaps = k.seq_gaps.saturating_add(e.seq_gap);
        k.out_of_order += u64::from(e.out_of_order);
        true
    }

    /// Index of the engine, registering it when new and there is room.
    #[inline]
    fn slot_for(&mut self, worker_id: &str, dp_rank: i64) -> Option<usize> {
        if let Some(i) = self.last_hit {
            if let Some(e) = self.engines.get(i) {
                if e.dp_rank == dp_rank && &*e.worker_id == worker_id {
                    return Some(i);
                }
            }
        }
        let found = self.find(worker_id, dp_rank);
        let i = match found {
            Some(i) => i,
            None => {
                if self.engines.len() >= self.max_engines {
                    return None;
                }
                let i = self.engines.len();
                self.engines
                    .push(Engine::new(worker_id, dp_rank, self.history_len));
                self.index
                    .entry(worker_id.into())
                    .or_default()
                    .push((dp_rank, i));
                i
            }
        };
        self.last_hit = Some(i);
        Some(i)
    }

    fn find(&self, worker_id: &str, dp_rank: i64) -> Option<usize> {
        let ranks = self.index.get(worker_id)?;
        ranks.iter().find(|(r, _)| *r == dp_rank).map(|&(_, i)| i)
    }

    /// The engine `(worker_id, dp_rank)`, if known.
    pub fn get(&self, worker_id: &str, dp_rank: i64) -> Option<&Engine> {
        self.find(worker_id, dp_rank)
            .and_then(|i| self.engines.get(i))
    }

    /// Forget an engine; returns whether it was known. Later engines keep their order.
    pub fn remove(&mut self, worker_id: &str, dp_rank: i64) -> bool {
        let Some(i) = self.find(worker_id, dp_rank) else {
            return false;
        };
        self.engines.remove(i);
        if let Some(ranks) = self.index.get_mut(worker_id) {
            ranks.retain(|(r, _)| *r != dp_rank);
            if ranks.is_empty() {
                self.index.remove(worker_id);
            }
        }
        for ranks in self.index.values_mut() {
            for (_, j) in ranks.iter_mut() {
                if *j > i {
                    *j -= 1;
                }
            }
        }
        self.last_hit = None;
        true
    }

    /// Known engines in registration order.
    pub fn engines(&self) -> &[Engine] {
        &self.engines
    }

    /// Number of known engines.
    pub fn len(&self) -> usize {
        self.engines.len()
    }

    /// True when no engine is known.
    pub fn is_empty(&self) -> bool {
        self.engines.is_empty()
    }

    /// Table-wide counters.
    pub fn counters(&self) -> &TableCounters {
        &self.counters
    }

    /// Seconds of silence after which an engine is stale.
    pub fn stale_after_s(&self) -> f64 {
        self.stale_after_s
    }

    /// Forward passes kept per engine.
    pub fn history_len(&self) -> usize {
        self.history_len
    }

    /// Most engines the table holds.
    pub fn max_engines(&self) -> usize {
        self.max_engines
    }

    /// Stored forward passes of one engine, oldest first (None when the engine is unknown).
    pub fn history(&self, worker_id: &str, dp_rank: i64) -> Option<Vec<HistoryEntry>> {
        self.get(worker_id, dp_rank)
            .map(|e| e.history().iter().copied().collect())
    }

    /// Struct-of-arrays view of all engines at `now_s`.
    pub fn snapshot(&self, now_s: f64) -> Snapshot {
        let es = &self.engines;
        Snapshot {
            worker_id: es.iter().map(|e| e.worker_id.to_string()).collect(),
            dp_rank: es.iter().map(|e| e.dp_rank).collect(),
            counter_id: es.iter().map(|e| e.latest.counter_id).collect(),
            wall_time: es.iter().map(|e| e.latest.wall_time).collect(),
            last_seen_s: es.iter().map(|e| e.last_seen_s).collect(),
            stale: es
                .iter()
                .map(|e| e.is_stale(now_s, self.stale_after_s))
                .collect(),
            received: es.iter().map(|e| clamp_i64(e.counters.received)).collect(),
            heartbeats: es
                .iter()
                .map(|e| clamp_i64(e.counters.heartbeats))
                .collect(),
            gaps: es
                .iter()
                .map(|e| clamp_i64(e.counters.counter_gaps.saturating_add(e.counters.seq_gaps)))
                .collect(),
            out_of_order: es
                .iter()
                .map(|e| clamp_i64(e.counters.out_of_order))
                .collect(),
            scheduled: stats_columns(
                &SCHEDULED_FIELDS,
                &mut es.iter().map(|e| &e.latest.scheduled),
            ),
            queued: stats_columns(&QUEUED_FIELDS, &mut es.iter().map(|e| &e.latest.queued)),
        }
    }

    /// Approximate bytes held by the table: engines, names, histories and the index.
    pub fn memory_bytes(&self) -> usize {
        let engines: usize = self.engines.iter().map(Engine::memory_bytes).sum();
        let spare = (self.engines.capacity() - self.engines.len()) * std::mem::size_of::<Engine>();
        let index: usize = self
            .index
            .iter()
            .map(|(k, v)| k.len() + v.capacity() * std::mem::size_of::<(i64, usize)>())
            .sum::<usize>()
            + self.index.capacity()
                * (std::mem::size_of::<Box<str>>() + std::mem::size_of::<Vec<(i64, usize)>>() + 1);
        std::mem::size_of::<Self>() + engines + spare + index
    }
}
