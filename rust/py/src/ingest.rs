//! `FpmIngestor`: the engine table behind a batch API (GIL released while decoding).

use std::sync::{Arc, Mutex, MutexGuard};

use numpy::{PyArray1, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PySlice, PyString};
use sla_planner_core::engine::HistoryEntry;
use sla_planner_core::fpm::{FieldKind, QUEUED_FIELDS, SCHEDULED_FIELDS};
use sla_planner_core::table::{
    Column, ColumnData, EngineTable, SnapshotColumn, MAX_ENGINES_LIMIT, MAX_HISTORY_LEN,
};

use crate::errors::{argument, int_in, is_int, type_name, NativeError, NativeResult};

fn check_now(now_s: f64) -> NativeResult<()> {
    if now_s.is_finite() {
        Ok(())
    } else {
        Err(argument(format!("now_s must be finite, got {now_s}")))
    }
}

/// Transport sequence numbers: None, or one int in [0, 2**64) per payload.
fn extract_seqs(seqs: Option<&Bound<'_, PyAny>>, n: usize) -> NativeResult<Option<Vec<u64>>> {
    let Some(seqs) = seqs else { return Ok(None) };
    if seqs.is_none() {
        return Ok(None);
    }
    let items = seqs.try_iter().map_err(|_| {
        argument(format!(
            "seqs must be a sequence of ints, got {}",
            type_name(seqs)
        ))
    })?;
    let mut out = Vec::with_capacity(n);
    for (i, item) in items.enumerate() {
        let item = item.map_err(|e| argument(format!("seqs could not be read: {e}")))?;
        let v = item.extract::<u64>().map_err(|_| {
            argument(format!(
                "seqs[{i}] must be an int in [0, 2**64), got {item}"
            ))
        })?;
        out.push(v);
    }
    if out.len() != n {
        return Err(argument(format!(
            "seqs has {} entries but there are {n} payloads",
            out.len()
        )));
    }
    Ok(Some(out))
}

/// `np.ascontiguousarray(obj, dtype=int64)` after checking `obj` is a 1-D integer array.
fn int_offsets<'py>(
    py: Python<'py>,
    obj: &Bound<'py, PyAny>,
) -> NativeResult<Bound<'py, PyArray1<i64>>> {
    let np = py.import("numpy")?;
    let arr = np.call_method1("asarray", (obj,))?;
    let kind: String = arr.getattr("dtype")?.getattr("kind")?.extract()?;
    let ndim: usize = arr.getattr("ndim")?.extract()?;
    if !(kind == "i" || kind == "u") || ndim != 1 {
        return Err(argument(format!(
            "offsets must be a 1-D integer array, got dtype kind {kind:?} with {ndim} dimensions"
        )));
    }
    let arr = np.call_method1("ascontiguousarray", (arr, np.getattr("int64")?))?;
    Ok(arr.cast_into::<PyArray1<i64>>().map_err(PyErr::from)?)
}

/// The engine table shared by `FpmIngestor` and the native receive loop (`FpmReceiver`).
pub type SharedTable = Arc<Mutex<EngineTable>>;

/// Lock the table; a panic in another holder cannot leave it half-updated in a way that
/// matters here (every update is a few field writes), so a poisoned lock is taken over.
pub fn lock(table: &SharedTable) -> MutexGuard<'_, EngineTable> {
    table.lock().unwrap_or_else(|e| e.into_inner())
}

/// An engine key given from Python: `worker_id` must be a str and `dp_rank` an int (else
/// KernelError); None when no engine can have it (an int beyond int64, a str that is not
/// UTF-8), which callers treat as unknown.
fn engine_key(
    worker_id: &Bound<'_, PyAny>,
    dp_rank: &Bound<'_, PyAny>,
) -> NativeResult<Option<(String, i64)>> {
    let wid = worker_id.cast::<PyString>().map_err(|_| {
        argument(format!(
            "worker_id must be a str, got {}",
            type_name(worker_id)
        ))
    })?;
    if !is_int(dp_rank) {
        return Err(argument(format!(
            "dp_rank must be an int, got {}",
            type_name(dp_rank)
        )));
    }
    let (Ok(w), Ok(r)) = (wid.to_str(), dp_rank.extract::<i64>()) else {
        return Ok(None);
    };
    Ok(Some((w.to_string(), r)))
}

fn unknown_engine(worker_id: &Bound<'_, PyAny>, dp_rank: &Bound<'_, PyAny>) -> NativeError {
    let w = worker_id.repr().map(|r| r.to_string()).unwrap_or_default();
    NativeError::Unknown(format!("unknown engine (worker_id={w}, dp_rank={dp_rank})"))
}

/// Engine table fed by FPM payloads: latest sample, bounded history and counters per engine.
#[pyclass(module = "sla_planner._native")]
pub struct FpmIngestor {
    pub(crate) table: SharedTable,
}

fn stats_columns<'py>(
    py: Python<'py>,
    d: &Bound<'py, PyDict>,
    prefix: &str,
    names: impl Iterator<Item = &'static str>,
    cols: Vec<Column>,
) -> PyResult<()> {
    for (name, col) in names.zip(cols) {
        let key = format!("{prefix}{name}");
        match col {
            Column::Int(v) => d.set_item(key, PyArray1::from_vec(py, v))?,
            Column::Float(v) => d.set_item(key, PyArray1::from_vec(py, v))?,
        }
    }
    Ok(())
}

fn history_columns<'py>(py: Python<'py>, entries: &[HistoryEntry]) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let col_f = |f: &dyn Fn(&HistoryEntry) -> f64| entries.iter().map(f).collect::<Vec<f64>>();
    let col_i = |f: &dyn Fn(&HistoryEntry) -> i64| entries.iter().map(f).collect::<Vec<i64>>();
    d.set_item(
        "received_s",
        PyArray1::from_vec(py, col_f(&|e| e.received_s)),
    )?;
    d.set_item(
        "counter_id",
        PyArray1::from_vec(
            py,
            entries
                .iter()
                .map(|e| e.sample.counter_id)
                .collect::<Vec<u64>>(),
        ),
    )?;
    d.set_item(
        "wall_time",
        PyArray1::from_vec(py, col_f(&|e| e.sample.wall_time)),
    )?;
    for spec in SCHEDULED_FIELDS.iter() {
        let key = format!("scheduled_{}", spec.name);
        match spec.kind {
            FieldKind::Count => d.set_item(
                key,
                PyArray1::from_vec(
                    py,
                    col_i(&|e| {
                        e.sample
                            .scheduled
                            .counts
                            .get(spec.slot)
                            .copied()
                            .unwrap_or(0)
                    }),
                ),
            )?,
            FieldKind::Variance => d.set_item(
                key,
                PyArray1::from_vec(py, col_f(&|e| e.sample.scheduled.get_f64(spec))),
            )?,
        }
    }
    for spec in QUEUED_FIELDS.iter() {
        let key = format!("queued_{}", spec.name);
        match spec.kind {
            FieldKind::Count => d.set_item(
                key,
                PyArray1::from_vec(
                    py,
                    col_i(&|e| e.sample.queued.counts.get(spec.slot).copied().unwrap_or(0)),
                ),
            )?,
            FieldKind::Variance => d.set_item(
                key,
                PyArray1::from_vec(py, col_f(&|e| e.sample.queued.get_f64(spec))),
            )?,
        }
    }
    Ok(d)
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[pymethods]
impl FpmIngestor {
    #[new]
    #[pyo3(
        signature = (history_len = None, stale_after_s = 30.0, max_engines = None, expire_after_s = 300.0),
        text_signature = "(history_len=10, stale_after_s=30.0, max_engines=4096, expire_after_s=300.0)"
    )]
    fn new(
        history_len: Option<&Bound<'_, PyAny>>,
        stale_after_s: f64,
        max_engines: Option<&Bound<'_, PyAny>>,
        expire_after_s: f64,
    ) -> NativeResult<Self> {
        let history_len = match history_len {
            Some(v) => int_in(v, "history_len", 0, MAX_HISTORY_LEN as i64)? as usize,
            None => 10,
        };
        let max_engines = match max_engines {
            Some(v) => int_in(v, "max_engines", 1, MAX_ENGINES_LIMIT as i64)? as usize,
            None => 4096,
        };
        let table = EngineTable::new(history_len, stale_after_s, max_engines, expire_after_s)?;
        Ok(FpmIngestor {
            table: Arc::new(Mutex::new(table)),
        })
    }

    /// Decode and apply payloads received at `now_s`; returns how many were accepted.
    #[pyo3(signature = (payloads, now_s, seqs = None))]
    fn ingest(
        &self,
        py: Python<'_>,
        payloads: &Bound<'_, PyAny>,
        now_s: f64,
        seqs: Option<&Bound<'_, PyAny>>,
    ) -> NativeResult<usize> {
        check_now(now_s)?;
        let items = payloads.try_iter().map_err(|_| {
            argument(format!(
                "payloads must be a sequence of bytes, got {}",
                type_name(payloads)
            ))
        })?;
        let mut held: Vec<Bound<'_, PyBytes>> = Vec::new();
        for (i, item) in items.enumerate() {
            match item?.cast_into::<PyBytes>() {
                Ok(b) => held.push(b),
                Err(e) => {
                    return Err(argument(format!(
                        "payloads[{i}] must be bytes, got {}",
                        type_name(e.into_inner().as_any())
                    )))
                }
            }
        }
        let seqs = extract_seqs(seqs, held.len())?;
        let slices: Vec<&[u8]> = held.iter().map(|b| b.as_bytes()).collect();
        let table = &self.table;
        Ok(py.detach(|| {
            let mut t = lock(table);
            let mut accepted = 0usize;
            for (i, p) in slices.iter().enumerate() {
                let seq = seqs.as_ref().and_then(|s| s.get(i).copied());
                accepted += usize::from(t.ingest(p, now_s, seq));
            }
            accepted
        }))
    }

    /// Like `ingest`, for payloads packed in one buffer: payload i is `buf[offsets[i]:offsets[i+1]]`.
    #[pyo3(signature = (buf, offsets, now_s, seqs = None))]
    fn ingest_buffer(
        &self,
        py: Python<'_>,
        buf: &Bound<'_, PyAny>,
        offsets: &Bound<'_, PyAny>,
        now_s: f64,
        seqs: Option<&Bound<'_, PyAny>>,
    ) -> NativeResult<usize> {
        check_now(now_s)?;
        let buf = buf
            .cast::<PyBytes>()
            .map_err(|_| argument(format!("buf must be bytes, got {}", type_name(buf))))?;
        let offsets = int_offsets(py, offsets)?;
        let offsets = offsets.readonly();
        let offs = offsets.as_slice()?;
        let data = buf.as_bytes();
        check_offsets(offs, data.len())?;
        let n = offs.len() - 1;
        let seqs = extract_seqs(seqs, n)?;
        let table = &self.table;
        Ok(py.detach(|| {
            let mut t = lock(table);
            let mut accepted = 0usize;
            for i in 0..n {
                let (a, b) = (offs[i] as usize, offs[i + 1] as usize);
                let seq = seqs.as_ref().and_then(|s| s.get(i).copied());
                accepted += usize::from(t.ingest(&data[a..b], now_s, seq));
            }
            accepted
        }))
    }

    /// Struct of arrays, one row per known engine in registration order; `with_ids=False`
    /// leaves out the `worker_id` strings (use `worker_index`).
    #[pyo3(signature = (now_s, *, with_ids = true, columns = None))]
    fn snapshot<'py>(
        &self,
        py: Python<'py>,
        now_s: f64,
        with_ids: bool,
        columns: Option<Vec<String>>,
    ) -> NativeResult<Bound<'py, PyDict>> {
        check_now(now_s)?;
        let table = &self.table;
        if let Some(names) = columns {
            let wanted = names
                .iter()
                .map(|n| snapshot_column(n))
                .collect::<NativeResult<Vec<_>>>()?;
            let data = py.detach(|| lock(table).snapshot_columns(now_s, &wanted));
            let d = PyDict::new(py);
            for (name, col) in names.iter().zip(data) {
                match col {
                    ColumnData::I64(v) => d.set_item(name, PyArray1::from_vec(py, v))?,
                    ColumnData::U64(v) => d.set_item(name, PyArray1::from_vec(py, v))?,
                    ColumnData::F64(v) => d.set_item(name, PyArray1::from_vec(py, v))?,
                    ColumnData::Bool(v) => d.set_item(name, PyArray1::from_vec(py, v))?,
                }
            }
            return Ok(d);
        }
        let s = py.detach(|| lock(table).snapshot_with(now_s, with_ids));
        let d = PyDict::new(py);
        if with_ids {
            let ids = PyList::new(py, &s.worker_id)?;
            let np = py.import("numpy")?;
            d.set_item(
                "worker_id",
                numpy_object_array(&np, &ids, s.worker_id.len())?,
            )?;
        }
        d.set_item("worker_index", PyArray1::from_vec(py, s.worker_index))?;
        d.set_item("dp_rank", PyArray1::from_vec(py, s.dp_rank))?;
        d.set_item("counter_id", PyArray1::from_vec(py, s.counter_id))?;
        d.set_item("wall_time", PyArray1::from_vec(py, s.wall_time))?;
        d.set_item("last_seen_s", PyArray1::from_vec(py, s.last_seen_s))?;
        let active: Vec<bool> = s.stale.iter().map(|x| !x).collect();
        d.set_item("stale", PyArray1::from_vec(py, s.stale))?;
        d.set_item("active", PyArray1::from_vec(py, active))?;
        d.set_item("received", PyArray1::from_vec(py, s.received))?;
        d.set_item("heartbeats", PyArray1::from_vec(py, s.heartbeats))?;
        d.set_item("gaps", PyArray1::from_vec(py, s.gaps))?;
        d.set_item("out_of_order", PyArray1::from_vec(py, s.out_of_order))?;
        stats_columns(
            py,
            &d,
            "scheduled_",
            SCHEDULED_FIELDS.iter().map(|f| f.name),
            s.scheduled,
        )?;
        stats_columns(
            py,
            &d,
            "queued_",
            QUEUED_FIELDS.iter().map(|f| f.name),
            s.queued,
        )?;
        Ok(d)
    }

    /// Stored forward passes of one engine, oldest first (KeyError when unknown).
    fn history<'py>(
        &self,
        py: Python<'py>,
        worker_id: &Bound<'py, PyAny>,
        dp_rank: &Bound<'py, PyAny>,
    ) -> NativeResult<Bound<'py, PyDict>> {
        let entries =
            engine_key(worker_id, dp_rank)?.and_then(|(w, r)| lock(&self.table).history(&w, r));
        match entries {
            Some(entries) => Ok(history_columns(py, &entries)?),
            None => Err(unknown_engine(worker_id, dp_rank)),
        }
    }

    /// Table-wide counters.
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (c, engines) = {
            let t = lock(&self.table);
            (*t.counters(), t.len())
        };
        let d = PyDict::new(py);
        d.set_item("received", clamp(c.received))?;
        d.set_item("decoded", clamp(c.decoded))?;
        d.set_item("malformed", clamp(c.malformed))?;
        d.set_item("wrong_version", clamp(c.wrong_version))?;
        d.set_item("heartbeats", clamp(c.heartbeats))?;
        d.set_item("gaps", clamp(c.gaps()))?;
        d.set_item("counter_gaps", clamp(c.counter_gaps))?;
        d.set_item("seq_gaps", clamp(c.seq_gaps))?;
        d.set_item("out_of_order", clamp(c.out_of_order))?;
        d.set_item("dropped_capacity", clamp(c.dropped_capacity))?;
        d.set_item("expired", clamp(c.expired))?;
        d.set_item("evicted", clamp(c.evicted))?;
        d.set_item("engines", engines)?;
        Ok(d)
    }

    /// Forget an engine; returns whether it was known.
    fn remove(
        &self,
        worker_id: &Bound<'_, PyAny>,
        dp_rank: &Bound<'_, PyAny>,
    ) -> NativeResult<bool> {
        Ok(engine_key(worker_id, dp_rank)?.is_some_and(|(w, r)| lock(&self.table).remove(&w, r)))
    }

    /// Remove engines silent for more than `expire_after_s` at `now_s`; returns how many.
    fn expire(&self, now_s: f64) -> NativeResult<usize> {
        check_now(now_s)?;
        Ok(lock(&self.table).expire(now_s))
    }

    /// Feed the latest forward pass of every engine that is active at `now_s`, was seen after
    /// `since_s`, is not a heartbeat and whose `worker_index` is set in `workers` (a bool
    /// mask indexed by worker_index) into `regression`, in registration order: `t =
    /// last_seen_s`, `y = wall_time`, `x` chosen by `features` ("prefill": scheduled prefill
    /// tokens; "decode": scheduled decode requests and KV tokens; "agg": scheduled prefill
    /// tokens and decode KV tokens). Returns how many samples were added.
    #[pyo3(signature = (regression, now_s, since_s, workers, features, fallback = None))]
    #[allow(clippy::too_many_arguments)]
    fn feed_regression(
        &self,
        py: Python<'_>,
        regression: &Bound<'_, crate::regression::SlidingRegression>,
        now_s: f64,
        since_s: f64,
        workers: &Bound<'_, PyAny>,
        features: &str,
        fallback: Option<&Bound<'_, crate::regression::SlidingRegression>>,
    ) -> NativeResult<usize> {
        check_now(now_s)?;
        let features = crate::regression::Features::parse(features)?;
        let np = py.import("numpy")?;
        let mask = np
            .call_method1("ascontiguousarray", (workers, np.getattr("bool_")?))
            .map_err(|e| argument(format!("workers must be a bool array: {e}")))?
            .cast_into::<PyArray1<bool>>()
            .map_err(|_| argument("workers must be a 1-D bool array"))?;
        let mask = mask.readonly();
        let mask = mask.as_slice()?;
        let mut reg = regression.try_borrow_mut().map_err(PyErr::from)?;
        let mut fb = match fallback {
            Some(f) => Some(f.try_borrow_mut().map_err(|_| {
                argument("fallback must be a different SlidingRegression from regression")
            })?),
            None => None,
        };
        let check = |k: usize, want: usize, what: &str, name: &str| {
            if k == want {
                Ok(())
            } else {
                Err(argument(format!(
                    "{what}: features {name:?} need a regression of {want} features, got {k}"
                )))
            }
        };
        check(
            reg.inner.n_features(),
            features.n_features(),
            "regression",
            features.name(),
        )?;
        if let Some(f) = fb.as_ref() {
            check(f.inner.n_features(), 1, "fallback", "decode_kv")?;
        }
        let reg = &mut reg.inner;
        let mut fb = fb.as_mut().map(|f| &mut f.inner);
        let kv = crate::regression::Features::DecodeKv;
        let table = &self.table;
        Ok(py.detach(|| {
            let t = lock(table);
            let stale_after_s = t.stale_after_s();
            let mut added = 0usize;
            for h in t.hot_rows() {
                let stale = now_s - h.last_seen_s > stale_after_s;
                let fresh = h.last_seen_s > since_s
                    && h.wall_time > 0.0
                    && !stale
                    && mask.get(h.worker_index as usize).copied().unwrap_or(false);
                if fresh {
                    reg.add(h.last_seen_s, &features.of_hot(h), h.wall_time);
                    if let Some(f) = fb.as_deref_mut() {
                        f.add(h.last_seen_s, &kv.of_hot(h), h.wall_time);
                    }
                    added += 1;
                }
            }
            added
        }))
    }

    /// Approximate bytes held by the table.
    fn memory_bytes(&self) -> usize {
        lock(&self.table).memory_bytes()
    }

    fn __len__(&self) -> usize {
        lock(&self.table).len()
    }

    /// Forward passes kept per engine.
    #[getter]
    fn history_len(&self) -> usize {
        lock(&self.table).history_len()
    }

    /// Seconds of silence after which an engine is stale.
    #[getter]
    fn stale_after_s(&self) -> f64 {
        lock(&self.table).stale_after_s()
    }

    /// Seconds of silence after which an engine is removed.
    #[getter]
    fn expire_after_s(&self) -> f64 {
        lock(&self.table).expire_after_s()
    }

    /// Most engines the table holds.
    #[getter]
    fn max_engines(&self) -> usize {
        lock(&self.table).max_engines()
    }
}

/// A snapshot column by its name (the keys of a full snapshot, `worker_id` excepted).
fn snapshot_column(name: &str) -> NativeResult<SnapshotColumn> {
    use SnapshotColumn as C;
    let fixed = match name {
        "worker_index" => Some(C::WorkerIndex),
        "dp_rank" => Some(C::DpRank),
        "counter_id" => Some(C::CounterId),
        "wall_time" => Some(C::WallTime),
        "last_seen_s" => Some(C::LastSeen),
        "stale" => Some(C::Stale),
        "active" => Some(C::Active),
        "received" => Some(C::Received),
        "heartbeats" => Some(C::Heartbeats),
        "gaps" => Some(C::Gaps),
        "out_of_order" => Some(C::OutOfOrder),
        _ => None,
    };
    let nested = || {
        if let Some(f) = name.strip_prefix("scheduled_") {
            SCHEDULED_FIELDS
                .iter()
                .position(|s| s.name == f)
                .map(C::Scheduled)
        } else if let Some(f) = name.strip_prefix("queued_") {
            QUEUED_FIELDS
                .iter()
                .position(|s| s.name == f)
                .map(C::Queued)
        } else {
            None
        }
    };
    fixed.or_else(nested).ok_or_else(|| {
        argument(format!(
            "columns: unknown snapshot column {name:?} (worker_id needs with_ids and no columns)"
        ))
    })
}

fn check_offsets(offs: &[i64], len: usize) -> NativeResult<()> {
    let Some(&first) = offs.first() else {
        return Err(argument("offsets must have n + 1 >= 1 entries, got 0"));
    };
    if first < 0 {
        return Err(argument(format!("offsets[0] must be >= 0, got {first}")));
    }
    for (i, w) in offs.windows(2).enumerate() {
        if w[1] < w[0] {
            return Err(argument(format!(
                "offsets must be non-decreasing: offsets[{}] = {} < offsets[{i}] = {}",
                i + 1,
                w[1],
                w[0]
            )));
        }
    }
    let last = offs[offs.len() - 1];
    if last as u64 > len as u64 {
        return Err(argument(format!(
            "offsets[-1] = {last} is beyond the buffer of {len} bytes"
        )));
    }
    Ok(())
}

/// A 1-D numpy object array holding `items` (str), so boolean masks apply to it.
fn numpy_object_array<'py>(
    np: &Bound<'py, PyModule>,
    items: &Bound<'py, PyList>,
    n: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let arr = np.call_method1("empty", (n, "object"))?;
    arr.set_item(PySlice::full(np.py()), items)?;
    Ok(arr)
}
