//! `FpmIngestor`: the engine table behind a batch API (GIL released while decoding).

use numpy::{PyArray1, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PySlice};
use sla_planner_core::engine::HistoryEntry;
use sla_planner_core::fpm::{FieldKind, QUEUED_FIELDS, SCHEDULED_FIELDS};
use sla_planner_core::table::{Column, EngineTable};

use crate::errors::{argument, lift, NativeResult};

fn check_now(now_s: f64) -> NativeResult<()> {
    if now_s.is_finite() {
        Ok(())
    } else {
        Err(argument(format!("now_s must be finite, got {now_s}")))
    }
}

fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_string())
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
) -> PyResult<NativeResult<Bound<'py, PyArray1<i64>>>> {
    let np = py.import("numpy")?;
    let arr = np.call_method1("asarray", (obj,))?;
    let kind: String = arr.getattr("dtype")?.getattr("kind")?.extract()?;
    let ndim: usize = arr.getattr("ndim")?.extract()?;
    if !(kind == "i" || kind == "u") || ndim != 1 {
        return Ok(Err(argument(format!(
            "offsets must be a 1-D integer array, got dtype kind {kind:?} with {ndim} dimensions"
        ))));
    }
    let arr = np.call_method1("ascontiguousarray", (arr, np.getattr("int64")?))?;
    Ok(Ok(arr.cast_into::<PyArray1<i64>>()?))
}

/// Engine table fed by FPM payloads: latest sample, bounded history and counters per engine.
#[pyclass(module = "sla_planner._native")]
pub struct FpmIngestor {
    table: EngineTable,
}

fn columns<'py>(
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
        PyArray1::from_vec(py, col_i(&|e| e.sample.counter_id)),
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
    #[pyo3(signature = (history_len = 10, stale_after_s = 30.0, max_engines = 4096))]
    fn new(
        py: Python<'_>,
        history_len: i64,
        stale_after_s: f64,
        max_engines: i64,
    ) -> PyResult<Self> {
        let r = (|| -> NativeResult<Self> {
            let history_len = usize::try_from(history_len)
                .map_err(|_| argument(format!("history_len must be >= 0, got {history_len}")))?;
            let max_engines = usize::try_from(max_engines)
                .map_err(|_| argument(format!("max_engines must be >= 1, got {max_engines}")))?;
            Ok(FpmIngestor {
                table: EngineTable::new(history_len, stale_after_s, max_engines)?,
            })
        })();
        lift(py, r)
    }

    /// Decode and apply payloads received at `now_s`; returns how many were accepted.
    #[pyo3(signature = (payloads, now_s, seqs = None))]
    fn ingest(
        &mut self,
        py: Python<'_>,
        payloads: &Bound<'_, PyAny>,
        now_s: f64,
        seqs: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        lift(py, check_now(now_s))?;
        let items = payloads.try_iter().map_err(|_| {
            crate::errors::to_pyerr(
                py,
                argument(format!(
                    "payloads must be a sequence of bytes, got {}",
                    type_name(payloads)
                )),
            )
        })?;
        let mut held: Vec<Bound<'_, PyBytes>> = Vec::new();
        for (i, item) in items.enumerate() {
            let item = item?;
            match item.cast_into::<PyBytes>() {
                Ok(b) => held.push(b),
                Err(e) => {
                    let msg = format!(
                        "payloads[{i}] must be bytes, got {}",
                        type_name(e.into_inner().as_any())
                    );
                    return Err(crate::errors::to_pyerr(py, argument(msg)));
                }
            }
        }
        let seqs = lift(py, extract_seqs(seqs, held.len()))?;
        let slices: Vec<&[u8]> = held.iter().map(|b| b.as_bytes()).collect();
        let table = &mut self.table;
        Ok(py.detach(|| {
            let mut accepted = 0usize;
            for (i, p) in slices.iter().enumerate() {
                let seq = seqs.as_ref().and_then(|s| s.get(i).copied());
                accepted += usize::from(table.ingest(p, now_s, seq));
            }
            accepted
        }))
    }

    /// Like `ingest`, for payloads packed in one buffer: payload i is `buf[offsets[i]:offsets[i+1]]`.
    #[pyo3(signature = (buf, offsets, now_s, seqs = None))]
    fn ingest_buffer(
        &mut self,
        py: Python<'_>,
        buf: &Bound<'_, PyAny>,
        offsets: &Bound<'_, PyAny>,
        now_s: f64,
        seqs: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        lift(py, check_now(now_s))?;
        let buf = buf.cast::<PyBytes>().map_err(|_| {
            crate::errors::to_pyerr(
                py,
                argument(format!("buf must be bytes, got {}", type_name(buf))),
            )
        })?;
        let offsets = lift(py, int_offsets(py, offsets)?)?;
        let offsets = offsets.readonly();
        let offs = offsets
            .as_slice()
            .map_err(|e| crate::errors::to_pyerr(py, argument(e.to_string())))?;
        let data = buf.as_bytes();
        lift(py, check_offsets(offs, data.len()))?;
        let n = offs.len() - 1;
        let seqs = lift(py, extract_seqs(seqs, n))?;
        let table = &mut self.table;
        Ok(py.detach(|| {
            let mut accepted = 0usize;
            for i in 0..n {
                let (a, b) = (offs[i] as usize, offs[i + 1] as usize);
                let seq = seqs.as_ref().and_then(|s| s.get(i).copied());
                accepted += usize::from(table.ingest(&data[a..b], now_s, seq));
            }
            accepted
        }))
    }

    /// Struct of arrays, one row per known engine in registration order; `with_ids=False`
    /// leaves out the `worker_id` strings (use `worker_index`).
    #[pyo3(signature = (now_s, *, with_ids = true))]
    fn snapshot<'py>(
        &self,
        py: Python<'py>,
        now_s: f64,
        with_ids: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        lift(py, check_now(now_s))?;
        let table = &self.table;
        let s = py.detach(|| table.snapshot_with(now_s, with_ids));
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
        columns(
            py,
            &d,
            "scheduled_",
            SCHEDULED_FIELDS.iter().map(|f| f.name),
            s.scheduled,
        )?;
        columns(
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
        worker_id: &str,
        dp_rank: i64,
    ) -> PyResult<Bound<'py, PyDict>> {
        match self.table.history(worker_id, dp_rank) {
            Some(entries) => history_columns(py, &entries),
            None => Err(pyo3::exceptions::PyKeyError::new_err(format!(
                "unknown engine (worker_id={worker_id:?}, dp_rank={dp_rank})"
            ))),
        }
    }

    /// Table-wide counters.
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = self.table.counters();
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
        d.set_item("engines", self.table.len())?;
        Ok(d)
    }

    /// Forget an engine; returns whether it was known.
    fn remove(&mut self, worker_id: &str, dp_rank: i64) -> bool {
        self.table.remove(worker_id, dp_rank)
    }

    /// Approximate bytes held by the table.
    fn memory_bytes(&self) -> usize {
        self.table.memory_bytes()
    }

    fn __len__(&self) -> usize {
        self.table.len()
    }

    /// Forward passes kept per engine.
    #[getter]
    fn history_len(&self) -> usize {
        self.table.history_len()
    }

    /// Seconds of silence after which an engine is stale.
    #[getter]
    fn stale_after_s(&self) -> f64 {
        self.table.stale_after_s()
    }

    /// Most engines the table holds.
    #[getter]
    fn max_engines(&self) -> usize {
        self.table.max_engines()
    }
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
