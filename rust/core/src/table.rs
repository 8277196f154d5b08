//! The engine table: FPM messages in, per-engine state and global counters out.
//!
//! No clock: every call that needs time takes the caller's `now_s`.

use crate::engine::{Engine, HistoryEntry};
use crate::fpm::{self, FpmError, FpmSample, QUEUED_FIELDS, SCHEDULED_FIELDS};
use crate::ArgumentError;

mod index;

use index::{key_hash, EngineIndex, WorkerIds};

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
    /// Decoded messages dropped because the table was full of engines that are not stale.
    pub dropped_capacity: u64,
    /// Engines removed after `expire_after_s` of silence.
    pub expired: u64,
    /// Stale engines removed (stalest first) to make room for new ones at `max_engines`.
    pub evicted: u64,
    /// Engines registered since the table was made (lets a caller spot new engines).
    pub registered: u64,
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
    /// Empty when the snapshot was taken without ids (`snapshot_with(_, false)`).
    pub worker_id: Vec<String>,
    /// Interned worker index: equal for all dp ranks of one worker, distinct across workers.
    pub worker_index: Vec<i64>,
    pub dp_rank: Vec<i64>,
    pub counter_id: Vec<u64>,
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

/// One column a selective snapshot can hold (see [`EngineTable::snapshot_columns`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotColumn {
    WorkerIndex,
    DpRank,
    CounterId,
    WallTime,
    LastSeen,
    Stale,
    Active,
    Received,
    Heartbeats,
    Gaps,
    OutOfOrder,
    /// `scheduled_<SCHEDULED_FIELDS[i].name>`.
    Scheduled(usize),
    /// `queued_<QUEUED_FIELDS[i].name>`.
    Queued(usize),
}

/// The values of one selected column.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnData {
    I64(Vec<i64>),
    U64(Vec<u64>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
}

/// The numbers a load tick reads of one engine, kept beside the engine records so the tick's
/// passes over 80k engines read 72 bytes per engine instead of the whole record.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HotRow {
    pub last_seen_s: f64,
    pub wall_time: f64,
    pub worker_index: u32,
    /// Scheduled prefill tokens, decode requests, decode KV tokens.
    pub scheduled: [i64; 3],
    /// Queued prefill tokens, decode requests, decode KV tokens.
    pub queued: [i64; 3],
}

impl HotRow {
    fn of(e: &Engine) -> Self {
        use fpm::{queued as q, scheduled as sc};
        let s = &e.latest.scheduled.counts;
        let qc = &e.latest.queued.counts;
        let at = |c: &[i64], i: usize| c.get(i).copied().unwrap_or(0);
        HotRow {
            last_seen_s: e.last_seen_s,
            wall_time: e.latest.wall_time,
            worker_index: e.worker_index,
            scheduled: [
                at(s, sc::SUM_PREFILL_TOKENS),
                at(s, sc::NUM_DECODE_REQUESTS),
                at(s, sc::SUM_DECODE_KV_TOKENS),
            ],
            queued: [
                at(qc, q::SUM_PREFILL_TOKENS),
                at(qc, q::NUM_DECODE_REQUESTS),
                at(qc, q::SUM_DECODE_KV_TOKENS),
            ],
        }
    }
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

/// Columns of one nested FPM stats map, filled row by row.
struct StatsColumns<const NC: usize, const NV: usize> {
    counts: [Vec<i64>; NC],
    variances: [Vec<f64>; NV],
}

impl<const NC: usize, const NV: usize> StatsColumns<NC, NV> {
    fn with_capacity(n: usize) -> Self {
        StatsColumns {
            counts: std::array::from_fn(|_| Vec::with_capacity(n)),
            variances: std::array::from_fn(|_| Vec::with_capacity(n)),
        }
    }

    #[inline]
    fn push(&mut self, stats: &fpm::RequestStats<NC, NV>) {
        for (col, &v) in self.counts.iter_mut().zip(stats.counts.iter()) {
            col.push(v);
        }
        for (col, &v) in self.variances.iter_mut().zip(stats.variances.iter()) {
            col.push(v);
        }
    }

    /// The columns in `specs` order.
    fn into_columns(mut self, specs: &[fpm::FieldSpec]) -> Vec<Column> {
        specs
            .iter()
            .map(|spec| match spec.kind {
                fpm::FieldKind::Count => Column::Int(
                    self.counts
                        .get_mut(spec.slot)
                        .map(std::mem::take)
                        .unwrap_or_default(),
                ),
                fpm::FieldKind::Variance => Column::Float(
                    self.variances
                        .get_mut(spec.slot)
                        .map(std::mem::take)
                        .unwrap_or_default(),
                ),
            })
            .collect()
    }
}

/// Share of `max_engines` evicted at once when the table is full (at least one engine), so the
/// O(n) eviction pass is paid once per many admissions.
const EVICT_BATCH_DIVISOR: usize = 16;
/// Expired engines are swept when `now_s` has moved `expire_after_s / SWEEPS_PER_EXPIRY` past the
/// last sweep (and whenever the table is full).
const SWEEPS_PER_EXPIRY: f64 = 8.0;

/// Per-engine state keyed by `(worker_id, dp_rank)`, bounded in engines and history.
///
/// Lifecycle: an engine silent for more than `stale_after_s` is stale (still listed, inactive);
/// silent for more than `expire_after_s` it is removed (`expired`). When a new engine arrives at
/// `max_engines`, expired engines are swept, then the stalest stale engines are evicted
/// (`evicted`, oldest `last_seen_s` first, ties in registration order, up to
/// `max(1, max_engines / 16)` at once). When no engine is stale the message is dropped
/// (`dropped_capacity`): live engines are never pushed out by new ones.
#[derive(Debug, Clone)]
pub struct EngineTable {
    history_len: usize,
    stale_after_s: f64,
    expire_after_s: f64,
    next_sweep_s: f64,
    max_engines: usize,
    engines: Vec<Engine>,
    hot: Vec<HotRow>,
    index: EngineIndex,
    workers: WorkerIds,
    last_hit: Option<usize>,
    counters: TableCounters,
}

impl EngineTable {
    /// A table keeping `history_len` forward passes per engine, calling an engine stale after
    /// `stale_after_s` seconds of silence and removing it after `expire_after_s` (`f64::INFINITY`:
    /// never), holding at most `max_engines` engines.
    pub fn new(
        history_len: usize,
        stale_after_s: f64,
        max_engines: usize,
        expire_after_s: f64,
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
        if expire_after_s.is_nan() || expire_after_s < stale_after_s {
            return Err(ArgumentError(format!(
                "expire_after_s must be >= stale_after_s ({stale_after_s}) or inf, got {expire_after_s}"
            )));
        }
        Ok(EngineTable {
            history_len,
            stale_after_s,
            expire_after_s,
            next_sweep_s: f64::NEG_INFINITY,
            max_engines,
            engines: Vec::new(),
            hot: Vec::new(),
            index: EngineIndex::default(),
            workers: WorkerIds::default(),
            last_hit: None,
            counters: TableCounters::default(),
        })
    }

    /// Decode and apply one payload received at `now_s`; returns whether it was accepted.
    /// Rejections are counted (`malformed`, `wrong_version`, `dropped_capacity`), never raised.
    #[inline]
    pub fn ingest(&mut self, payload: &[u8], now_s: f64, seq: Option<u64>) -> bool {
        self.counters.received += 1;
        if now_s >= self.next_sweep_s {
            self.sweep(now_s);
        }
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

    /// Remove engines silent for more than `expire_after_s` at `now_s`; returns how many.
    pub fn expire(&mut self, now_s: f64) -> usize {
        self.sweep(now_s)
    }

    fn sweep(&mut self, now_s: f64) -> usize {
        self.next_sweep_s = now_s + self.expire_after_s / SWEEPS_PER_EXPIRY;
        let limit = self.expire_after_s;
        let n = self.remove_where(|e| now_s - e.last_seen_s > limit);
        self.counters.expired += n as u64;
        n
    }

    /// At capacity: sweep expired engines, then evict the stalest stale ones; returns whether
    /// there is room now.
    fn make_room(&mut self, now_s: f64) -> bool {
        if self.sweep(now_s) > 0 {
            return true;
        }
        let stale_after_s = self.stale_after_s;
        let mut stale: Vec<(f64, usize)> = self
            .engines
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_stale(now_s, stale_after_s))
            .map(|(i, e)| (e.last_seen_s, i))
            .collect();
        if stale.is_empty() {
            return false;
        }
        let k = (self.max_engines / EVICT_BATCH_DIVISOR).clamp(1, stale.len());
        if k < stale.len() {
            stale.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        }
        let mut doomed = vec![false; self.engines.len()];
        for &(_, i) in stale.iter().take(k) {
            if let Some(d) = doomed.get_mut(i) {
                *d = true;
            }
        }
        let mut pos = 0usize;
        let n = self.remove_where(|_| {
            let gone = doomed.get(pos).copied().unwrap_or(false);
            pos += 1;
            gone
        });
        self.counters.evicted += n as u64;
        n > 0
    }

    /// Remove every engine for which `gone` is true (called once per engine, in order), keep
    /// the others in registration order, rebuild the index; returns how many were removed.
    fn remove_where(&mut self, mut gone: impl FnMut(&Engine) -> bool) -> usize {
        let before = self.engines.len();
        let workers = &mut self.workers;
        let mut kept = Vec::with_capacity(before);
        self.engines.retain(|e| {
            let keep = !gone(e);
            if !keep {
                workers.release(&e.worker_id, e.worker_index);
            }
            kept.push(keep);
            keep
        });
        let mut k = kept.iter();
        self.hot.retain(|_| k.next().copied().unwrap_or(false));
        let n = before - self.engines.len();
        if n > 0 {
            self.rebuild_index();
        }
        n
    }

    fn rebuild_index(&mut self) {
        self.index.clear();
        for (pos, e) in self.engines.iter().enumerate() {
            self.index.insert(key_hash(&e.worker_id, e.dp_rank), pos);
        }
        self.last_hit = None;
    }

    /// Apply an already decoded message; returns false when the table is full.
    #[inline]
    pub fn apply(
        &mut self,
        worker_id: &str,
        sample: &FpmSample,
        now_s: f64,
        seq: Option<u64>,
    ) -> bool {
        let Some(i) = self.slot_for(worker_id, sample.dp_rank, now_s) else {
            self.counters.dropped_capacity += 1;
            return false;
        };
        let Some(engine) = self.engines.get_mut(i) else {
            return false;
        };
        let e = engine.update(sample, now_s, seq);
        if let Some(h) = self.hot.get_mut(i) {
            *h = HotRow::of(engine);
        }
        let k = &mut self.counters;
        k.heartbeats += u64::from(e.heartbeat);
        k.counter_gaps = k.counter_gaps.saturating_add(e.counter_gap);
        k.seq_gaps = k.seq_gaps.saturating_add(e.seq_gap);
        k.out_of_order += u64::from(e.out_of_order);
        true
    }

    /// Index of the engine, registering it when new and there is room. Consecutive messages
    /// from one engine skip the hash.
    #[inline]
    fn slot_for(&mut self, worker_id: &str, dp_rank: i64, now_s: f64) -> Option<usize> {
        if let Some(i) = self.last_hit {
            if let Some(e) = self.engines.get(i) {
                if e.dp_rank == dp_rank && &*e.worker_id == worker_id {
                    return Some(i);
                }
            }
        }
        let h = key_hash(worker_id, dp_rank);
        let i = match self.find_hashed(h, worker_id, dp_rank) {
            Some(i) => i,
            None => {
                if self.engines.len() >= self.max_engines && !self.make_room(now_s) {
                    return None;
                }
                let i = self.engines.len();
                self.counters.registered += 1;
                let w = self.workers.acquire(worker_id);
                let engine = Engine::new(worker_id, w, dp_rank, self.history_len);
                self.hot.push(HotRow::of(&engine));
                self.engines.push(engine);
                self.index.insert(h, i);
                i
            }
        };
        self.last_hit = Some(i);
        Some(i)
    }

    #[inline]
    fn find_hashed(&self, h: u64, worker_id: &str, dp_rank: i64) -> Option<usize> {
        let es = &self.engines;
        self.index.find(h, |i| {
            es.get(i)
                .is_some_and(|e| e.dp_rank == dp_rank && &*e.worker_id == worker_id)
        })
    }

    fn find(&self, worker_id: &str, dp_rank: i64) -> Option<usize> {
        self.find_hashed(key_hash(worker_id, dp_rank), worker_id, dp_rank)
    }

    /// The engine `(worker_id, dp_rank)`, if known.
    pub fn get(&self, worker_id: &str, dp_rank: i64) -> Option<&Engine> {
        self.find(worker_id, dp_rank)
            .and_then(|i| self.engines.get(i))
    }

    /// Forget an engine; returns whether it was known. Later engines keep their order (O(n)).
    pub fn remove(&mut self, worker_id: &str, dp_rank: i64) -> bool {
        let Some(i) = self.find(worker_id, dp_rank) else {
            return false;
        };
        let gone = self.engines.remove(i);
        self.hot.remove(i);
        self.workers.release(&gone.worker_id, gone.worker_index);
        self.rebuild_index();
        true
    }

    /// The load tick's numbers of every engine, in registration order (parallel to `engines`).
    pub fn hot_rows(&self) -> &[HotRow] {
        &self.hot
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

    /// Seconds of silence after which an engine is removed.
    pub fn expire_after_s(&self) -> f64 {
        self.expire_after_s
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

    /// Struct-of-arrays view of all engines at `now_s` (with the `worker_id` strings).
    pub fn snapshot(&self, now_s: f64) -> Snapshot {
        self.snapshot_with(now_s, true)
    }

    /// Struct-of-arrays view of all engines at `now_s`; `worker_id` stays empty unless
    /// `with_ids` (one string per engine is most of the cost at 100k engines).
    ///
    /// One pass over the engines, row by row: an engine is read once, not once per column
    /// (at 80k engines the per-column passes were ~10 ms of memory traffic).
    pub fn snapshot_with(&self, now_s: f64, with_ids: bool) -> Snapshot {
        let n = self.engines.len();
        let mut s = Snapshot {
            worker_id: Vec::with_capacity(if with_ids { n } else { 0 }),
            worker_index: Vec::with_capacity(n),
            dp_rank: Vec::with_capacity(n),
            counter_id: Vec::with_capacity(n),
            wall_time: Vec::with_capacity(n),
            last_seen_s: Vec::with_capacity(n),
            stale: Vec::with_capacity(n),
            received: Vec::with_capacity(n),
            heartbeats: Vec::with_capacity(n),
            gaps: Vec::with_capacity(n),
            out_of_order: Vec::with_capacity(n),
            scheduled: Vec::new(),
            queued: Vec::new(),
        };
        let mut scheduled = StatsColumns::with_capacity(n);
        let mut queued = StatsColumns::with_capacity(n);
        for e in &self.engines {
            if with_ids {
                s.worker_id.push(e.worker_id.to_string());
            }
            s.worker_index.push(i64::from(e.worker_index));
            s.dp_rank.push(e.dp_rank);
            s.counter_id.push(e.latest.counter_id);
            s.wall_time.push(e.latest.wall_time);
            s.last_seen_s.push(e.last_seen_s);
            s.stale.push(e.is_stale(now_s, self.stale_after_s));
            let c = &e.counters;
            s.received.push(clamp_i64(c.received));
            s.heartbeats.push(clamp_i64(c.heartbeats));
            s.gaps
                .push(clamp_i64(c.counter_gaps.saturating_add(c.seq_gaps)));
            s.out_of_order.push(clamp_i64(c.out_of_order));
            scheduled.push(&e.latest.scheduled);
            queued.push(&e.latest.queued);
        }
        s.scheduled = scheduled.into_columns(&SCHEDULED_FIELDS);
        s.queued = queued.into_columns(&QUEUED_FIELDS);
        s
    }

    /// Only the columns asked for, in that order, one pass over the engines: the load tick needs
    /// 10 of the 24 columns, and at 80k engines building the others costs as much as the rest of
    /// the tick.
    pub fn snapshot_columns(&self, now_s: f64, columns: &[SnapshotColumn]) -> Vec<ColumnData> {
        use SnapshotColumn as C;
        if let Some(out) = self.hot_columns(now_s, columns) {
            return out;
        }
        let n = self.engines.len();
        let stats_kind = |specs: &[fpm::FieldSpec], i: usize| {
            specs
                .get(i)
                .is_some_and(|s| s.kind == fpm::FieldKind::Count)
        };
        let mut out: Vec<ColumnData> = columns
            .iter()
            .map(|c| match c {
                C::CounterId => ColumnData::U64(Vec::with_capacity(n)),
                C::WallTime | C::LastSeen => ColumnData::F64(Vec::with_capacity(n)),
                C::Stale | C::Active => ColumnData::Bool(Vec::with_capacity(n)),
                C::Scheduled(i) if !stats_kind(&SCHEDULED_FIELDS, *i) => {
                    ColumnData::F64(Vec::with_capacity(n))
                }
                C::Queued(i) if !stats_kind(&QUEUED_FIELDS, *i) => {
                    ColumnData::F64(Vec::with_capacity(n))
                }
                _ => ColumnData::I64(Vec::with_capacity(n)),
            })
            .collect();
        for e in &self.engines {
            let stale = e.is_stale(now_s, self.stale_after_s);
            for (c, data) in columns.iter().zip(out.iter_mut()) {
                let stat =
                    |specs: &[fpm::FieldSpec], i: usize, f: &dyn Fn(&fpm::FieldSpec) -> f64| {
                        specs.get(i).map_or(0.0, f)
                    };
                match (c, data) {
                    (C::WorkerIndex, ColumnData::I64(v)) => v.push(i64::from(e.worker_index)),
                    (C::DpRank, ColumnData::I64(v)) => v.push(e.dp_rank),
                    (C::CounterId, ColumnData::U64(v)) => v.push(e.latest.counter_id),
                    (C::WallTime, ColumnData::F64(v)) => v.push(e.latest.wall_time),
                    (C::LastSeen, ColumnData::F64(v)) => v.push(e.last_seen_s),
                    (C::Stale, ColumnData::Bool(v)) => v.push(stale),
                    (C::Active, ColumnData::Bool(v)) => v.push(!stale),
                    (C::Received, ColumnData::I64(v)) => v.push(clamp_i64(e.counters.received)),
                    (C::Heartbeats, ColumnData::I64(v)) => v.push(clamp_i64(e.counters.heartbeats)),
                    (C::Gaps, ColumnData::I64(v)) => v.push(clamp_i64(
                        e.counters.counter_gaps.saturating_add(e.counters.seq_gaps),
                    )),
                    (C::OutOfOrder, ColumnData::I64(v)) => {
                        v.push(clamp_i64(e.counters.out_of_order))
                    }
                    (C::Scheduled(i), ColumnData::I64(v)) => v.push(
                        SCHEDULED_FIELDS
                            .get(*i)
                            .and_then(|s| e.latest.scheduled.counts.get(s.slot))
                            .copied()
                            .unwrap_or(0),
                    ),
                    (C::Scheduled(i), ColumnData::F64(v)) => {
                        v.push(stat(&SCHEDULED_FIELDS, *i, &|s| {
                            e.latest.scheduled.get_f64(s)
                        }))
                    }
                    (C::Queued(i), ColumnData::I64(v)) => v.push(
                        QUEUED_FIELDS
                            .get(*i)
                            .and_then(|s| e.latest.queued.counts.get(s.slot))
                            .copied()
                            .unwrap_or(0),
                    ),
                    (C::Queued(i), ColumnData::F64(v)) => {
                        v.push(stat(&QUEUED_FIELDS, *i, &|s| e.latest.queued.get_f64(s)))
                    }
                    _ => {}
                }
            }
        }
        out
    }

    /// [`Self::snapshot_columns`] from the hot rows alone, when every column is in them.
    fn hot_columns(&self, now_s: f64, columns: &[SnapshotColumn]) -> Option<Vec<ColumnData>> {
        use fpm::{queued as q, scheduled as sc};
        use SnapshotColumn as C;
        // (kind, index into the row) per column: 0 last_seen, 1 wall, 2 worker, 3 active,
        // 4 stale, 10.. scheduled hot slot, 20.. queued hot slot
        let sched_slot = |i: usize| {
            let slot = SCHEDULED_FIELDS.get(i)?.slot;
            let hot = [
                sc::SUM_PREFILL_TOKENS,
                sc::NUM_DECODE_REQUESTS,
                sc::SUM_DECODE_KV_TOKENS,
            ];
            (SCHEDULED_FIELDS.get(i)?.kind == fpm::FieldKind::Count)
                .then(|| hot.iter().position(|&h| h == slot))
                .flatten()
        };
        let queued_slot = |i: usize| {
            let slot = QUEUED_FIELDS.get(i)?.slot;
            let hot = [
                q::SUM_PREFILL_TOKENS,
                q::NUM_DECODE_REQUESTS,
                q::SUM_DECODE_KV_TOKENS,
            ];
            (QUEUED_FIELDS.get(i)?.kind == fpm::FieldKind::Count)
                .then(|| hot.iter().position(|&h| h == slot))
                .flatten()
        };
        let plan: Vec<usize> = columns
            .iter()
            .map(|c| match c {
                C::LastSeen => Some(0),
                C::WallTime => Some(1),
                C::WorkerIndex => Some(2),
                C::Active => Some(3),
                C::Stale => Some(4),
                C::Scheduled(i) => sched_slot(*i).map(|j| 10 + j),
                C::Queued(i) => queued_slot(*i).map(|j| 20 + j),
                _ => None,
            })
            .collect::<Option<_>>()?;
        let n = self.hot.len();
        let limit = self.stale_after_s;
        Some(
            plan.iter()
                .map(|&k| {
                    let rows = self.hot.iter();
                    match k {
                        0 => ColumnData::F64(rows.map(|h| h.last_seen_s).collect()),
                        1 => ColumnData::F64(rows.map(|h| h.wall_time).collect()),
                        2 => ColumnData::I64(rows.map(|h| i64::from(h.worker_index)).collect()),
                        3 => ColumnData::Bool(
                            rows.map(|h| {
                                let stale = now_s - h.last_seen_s > limit;
                                !stale
                            })
                            .collect(),
                        ),
                        4 => {
                            ColumnData::Bool(rows.map(|h| now_s - h.last_seen_s > limit).collect())
                        }
                        10..=12 => ColumnData::I64(rows.map(|h| h.scheduled[k - 10]).collect()),
                        20..=22 => ColumnData::I64(rows.map(|h| h.queued[k - 20]).collect()),
                        _ => ColumnData::I64(Vec::with_capacity(n)),
                    }
                })
                .collect(),
        )
    }

    /// Approximate bytes held by the table: engines, names, histories, index and interned ids.
    pub fn memory_bytes(&self) -> usize {
        let engines: usize = self.engines.iter().map(Engine::memory_bytes).sum();
        let spare = (self.engines.capacity() - self.engines.len()) * std::mem::size_of::<Engine>();
        std::mem::size_of::<Self>()
            + engines
            + spare
            + self.hot.capacity() * std::mem::size_of::<HotRow>()
            + self.index.heap_bytes()
            + self.workers.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dp_rank: i64, counter_id: u64) -> FpmSample {
        FpmSample {
            dp_rank,
            counter_id,
            wall_time: 0.01,
            ..FpmSample::default()
        }
    }

    #[test]
    fn hot_rows_follow_the_engines_through_updates_evictions_and_removals() {
        let mut t = EngineTable::new(2, 5.0, 8, 50.0).expect("valid");
        for step in 0..200u64 {
            let w = format!("w{}", step % 13);
            let mut s = sample((step % 3) as i64, step);
            s.scheduled.counts = [1, step as i64, 2, 3, 4 + step as i64];
            s.queued.counts = [5, 6 + step as i64, 7, 8];
            t.apply(&w, &s, step as f64, None);
            if step % 17 == 0 {
                t.remove(&w, 0);
            }
            if step % 29 == 0 {
                t.expire(step as f64);
            }
            assert_eq!(t.hot_rows().len(), t.len());
            for (h, e) in t.hot_rows().iter().zip(t.engines()) {
                assert_eq!(*h, HotRow::of(e), "step {step}");
            }
        }
        assert!(t.counters().evicted > 0);
    }

    #[test]
    fn index_finds_every_engine_through_growth_and_removal() {
        let mut t = EngineTable::new(2, 30.0, 5_000, f64::INFINITY).expect("valid");
        for w in 0..1_000 {
            for r in 0..4 {
                assert!(t.apply(&format!("worker-{w}"), &sample(r, 1), 1.0, None));
            }
        }
        assert_eq!(t.len(), 4_000);
        assert!(t.remove("worker-10", 2));
        assert!(!t.remove("worker-10", 2));
        for w in 0..1_000 {
            for r in 0..4 {
                let found = t.get(&format!("worker-{w}"), r);
                assert_eq!(found.is_some(), !(w == 10 && r == 2), "worker-{w} rank {r}");
            }
        }
        // known engines are found again: no new registrations
        assert!(t.apply("worker-999", &sample(3, 2), 2.0, None));
        assert_eq!(t.len(), 3_999);
    }

    #[test]
    fn worker_index_is_shared_by_ranks_and_reused_lowest_first() {
        let mut t = EngineTable::new(2, 30.0, 64, f64::INFINITY).expect("valid");
        for (w, r) in [("a", 0), ("b", 0), ("a", 1), ("c", 0)] {
            t.apply(w, &sample(r, 1), 1.0, None);
        }
        assert_eq!(t.snapshot_with(1.0, false).worker_index, vec![0, 1, 0, 2]);
        assert!(t.remove("b", 0) && t.remove("a", 0));
        t.apply("d", &sample(0, 1), 1.0, None); // b's index 1 is free; a (index 0) still has rank 1
        let s = t.snapshot_with(1.0, true);
        assert_eq!(s.worker_id, vec!["a", "c", "d"]);
        assert_eq!(s.worker_index, vec![0, 2, 1]);
        assert!(t.snapshot_with(1.0, false).worker_id.is_empty());
    }
}
