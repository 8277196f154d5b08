//! `encode_fpm` / `decode_fpm`: FPM records as nested Python dicts; `encode_fpm_rows`: a batch
//! of records given as columns, encoded into one buffer with offsets.

use numpy::{PyArray1, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString};
use sla_planner_core::fpm::{
    self, FieldKind, FieldSpec, FpmColumns, FpmError, FpmRef, FpmSample, RequestStats, RowColumn,
    RowError, RowRule, MAX_WORKER_ID_BYTES, QUEUED_COLUMNS, QUEUED_FIELDS, SCHEDULED_COLUMNS,
    SCHEDULED_FIELDS,
};
use sla_planner_core::FPM_SCHEMA_VERSION;

use crate::errors::{argument, lift, NativeError, NativeResult};

const ROOT_KEYS: [&str; 7] = [
    "version",
    "worker_id",
    "dp_rank",
    "counter_id",
    "wall_time",
    "scheduled_requests",
    "queued_requests",
];

fn stats_dict<'py, const NC: usize, const NV: usize>(
    py: Python<'py>,
    specs: &[FieldSpec],
    stats: &RequestStats<NC, NV>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for spec in specs {
        match spec.kind {
            FieldKind::Count => {
                d.set_item(spec.name, stats.counts.get(spec.slot).copied().unwrap_or(0))?
            }
            FieldKind::Variance => d.set_item(
                spec.name,
                stats.variances.get(spec.slot).copied().unwrap_or(0.0),
            )?,
        }
    }
    Ok(d)
}

/// A decoded record as the nested dict of the schema.
pub fn record_dict<'py>(py: Python<'py>, rec: &FpmRef<'_>) -> PyResult<Bound<'py, PyDict>> {
    let s = &rec.sample;
    let d = PyDict::new(py);
    d.set_item("version", FPM_SCHEMA_VERSION)?;
    d.set_item("worker_id", rec.worker_id)?;
    d.set_item("dp_rank", s.dp_rank)?;
    d.set_item("counter_id", s.counter_id)?;
    d.set_item("wall_time", s.wall_time)?;
    d.set_item(
        "scheduled_requests",
        stats_dict(py, &SCHEDULED_FIELDS, &s.scheduled)?,
    )?;
    d.set_item(
        "queued_requests",
        stats_dict(py, &QUEUED_FIELDS, &s.queued)?,
    )?;
    Ok(d)
}

fn record_error(kind: &'static str, field: &str, message: String) -> NativeError {
    NativeError::FpmRecord {
        kind,
        field: field.to_string(),
        message,
    }
}

fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_string())
}

fn is_int(v: &Bound<'_, PyAny>) -> bool {
    v.is_instance_of::<PyInt>() && !v.is_instance_of::<PyBool>()
}

fn get_int(v: &Bound<'_, PyAny>, field: &'static str) -> NativeResult<i64> {
    if !is_int(v) {
        return Err(FpmError::WrongType {
            field,
            expected: "int",
        }
        .into());
    }
    match v.extract::<i64>() {
        Ok(x) if x < 0 => Err(FpmError::Negative { field }.into()),
        Ok(x) => Ok(x),
        Err(_) => {
            if v.lt(0).unwrap_or(false) {
                Err(FpmError::Negative { field }.into())
            } else {
                Err(FpmError::OutOfRange { field }.into())
            }
        }
    }
}

fn get_float(v: &Bound<'_, PyAny>, field: &'static str) -> NativeResult<f64> {
    if !(is_int(v) || v.is_instance_of::<PyFloat>()) {
        return Err(FpmError::WrongType {
            field,
            expected: "float or int",
        }
        .into());
    }
    let x = v
        .extract::<f64>()
        .map_err(|_| FpmError::OutOfRange { field })?;
    if !x.is_finite() {
        Err(FpmError::NonFinite { field }.into())
    } else if x < 0.0 {
        Err(FpmError::Negative { field }.into())
    } else {
        Ok(x)
    }
}

/// Reject keys that are not in `allowed` (`prefix` names the map in the error).
fn check_keys(d: &Bound<'_, PyDict>, allowed: &[&str], prefix: &str) -> NativeResult<()> {
    for key in d.keys() {
        let known = key
            .cast::<PyString>()
            .ok()
            .and_then(|k| k.to_str().ok().map(|k| allowed.contains(&k)))
            .unwrap_or(false);
        if !known {
            let shown = key.repr().map(|r| r.to_string()).unwrap_or_default();
            let field = format!("{prefix}{shown}");
            return Err(record_error(
                "unknown_field",
                &field,
                format!("FPM record has unknown field {field}"),
            ));
        }
    }
    Ok(())
}

fn required<'py>(
    d: &Bound<'py, PyDict>,
    name: &str,
    path: &'static str,
) -> NativeResult<Bound<'py, PyAny>> {
    d.get_item(name)
        .ok()
        .flatten()
        .ok_or(NativeError::Fpm(FpmError::MissingField { field: path }))
}

fn stats_from<const NC: usize, const NV: usize>(
    v: &Bound<'_, PyAny>,
    specs: &[FieldSpec],
    map_field: &'static str,
) -> NativeResult<RequestStats<NC, NV>> {
    let d = v.cast::<PyDict>().map_err(|_| FpmError::WrongType {
        field: map_field,
        expected: "dict",
    })?;
    let names: Vec<&str> = specs.iter().map(|s| s.name).collect();
    check_keys(d, &names, &format!("{map_field}."))?;
    let mut out = RequestStats::<NC, NV>::default();
    for spec in specs {
        let item = required(d, spec.name, spec.path)?;
        match spec.kind {
            FieldKind::Count => {
                let x = get_int(&item, spec.path)?;
                if let Some(dst) = out.counts.get_mut(spec.slot) {
                    *dst = x;
                }
            }
            FieldKind::Variance => {
                let x = get_float(&item, spec.path)?;
                if let Some(dst) = out.variances.get_mut(spec.slot) {
                    *dst = x;
                }
            }
        }
    }
    Ok(out)
}

/// Encode a record dict (the shape `decode_fpm` returns; `version` optional) after validating it.
fn encode_dict(obj: &Bound<'_, PyAny>) -> NativeResult<Vec<u8>> {
    let d = obj.cast::<PyDict>().map_err(|_| FpmError::WrongType {
        field: "<payload>",
        expected: "dict",
    })?;
    check_keys(d, &ROOT_KEYS, "")?;
    if let Some(v) = d.get_item("version").ok().flatten() {
        if !is_int(&v) {
            return Err(FpmError::WrongType {
                field: "version",
                expected: "int",
            }
            .into());
        }
        let version = v.extract::<i64>().unwrap_or(i64::MAX);
        if version != FPM_SCHEMA_VERSION {
            return Err(FpmError::BadVersion(version).into());
        }
    }
    let wid = required(d, "worker_id", "worker_id")?;
    let wid = wid.cast::<PyString>().map_err(|_| FpmError::WrongType {
        field: "worker_id",
        expected: "str",
    })?;
    let worker_id = wid
        .to_str()
        .map_err(|_| FpmError::InvalidUtf8 { field: "worker_id" })?;
    if worker_id.len() > MAX_WORKER_ID_BYTES {
        return Err(FpmError::TooLarge {
            what: "worker_id",
            limit: MAX_WORKER_ID_BYTES,
        }
        .into());
    }
    let sample = FpmSample {
        dp_rank: get_int(&required(d, "dp_rank", "dp_rank")?, "dp_rank")?,
        counter_id: get_int(&required(d, "counter_id", "counter_id")?, "counter_id")?,
        wall_time: get_float(&required(d, "wall_time", "wall_time")?, "wall_time")?,
        scheduled: stats_from(
            &required(d, "scheduled_requests", "scheduled_requests")?,
            &SCHEDULED_FIELDS,
            "scheduled_requests",
        )?,
        queued: stats_from(
            &required(d, "queued_requests", "queued_requests")?,
            &QUEUED_FIELDS,
            "queued_requests",
        )?,
    };
    let rec = FpmRef { worker_id, sample };
    rec.validate()?;
    Ok(fpm::encode(&rec))
}

/// Encode an FPM record dict to msgpack bytes (raises FpmDecodeError when the record is invalid).
#[pyfunction]
pub fn encode_fpm<'py>(
    py: Python<'py>,
    record: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let bytes = lift(py, encode_dict(record))?;
    Ok(PyBytes::new(py, &bytes))
}

/// Decode one FPM payload to the nested dict of the schema (raises FpmDecodeError).
#[pyfunction]
pub fn decode_fpm<'py>(
    py: Python<'py>,
    payload: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let bytes = payload.cast::<PyBytes>().map_err(|_| {
        crate::errors::to_pyerr(
            py,
            argument(format!("payload must be bytes, got {}", type_name(payload))),
        )
    })?;
    let rec = lift(py, fpm::decode(bytes.as_bytes()).map_err(NativeError::from))?;
    record_dict(py, &rec)
}

// ------------------------------------------------------------------------------ batch encoding

fn row_record_error(e: RowError) -> NativeError {
    NativeError::FpmRecord {
        kind: e.kind(),
        field: e.field().to_string(),
        message: e.to_string(),
    }
}

/// The worker ids of a batch, held so their UTF-8 views stay valid while the GIL is released.
fn worker_id_strings<'py>(obj: &Bound<'py, PyAny>) -> NativeResult<Vec<Bound<'py, PyString>>> {
    let not_sequence = || {
        argument(format!(
            "worker_ids must be a sequence of str, got {}",
            type_name(obj)
        ))
    };
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
        return Err(not_sequence());
    }
    let n = obj.len().map_err(|_| not_sequence())?;
    let mut out = Vec::with_capacity(n);
    let mut push = |row: usize, item: Bound<'py, PyAny>| -> NativeResult<()> {
        let s = item.cast_into::<PyString>().map_err(|e| {
            let message = format!(
                "FPM row {row}: worker_ids[{row}] (worker_id) must be str, got {}",
                type_name(e.into_inner().as_any())
            );
            record_error("wrong_type", "worker_id", message)
        })?;
        let len = s
            .to_str()
            .map_err(|_| {
                let message =
                    format!("FPM row {row}: worker_ids[{row}] (worker_id) is not valid UTF-8");
                record_error("invalid_utf8", "worker_id", message)
            })?
            .len();
        if len > MAX_WORKER_ID_BYTES {
            return Err(row_record_error(RowError {
                row,
                column: RowColumn::WorkerId,
                rule: RowRule::TooLong(len),
            }));
        }
        out.push(s);
        Ok(())
    };
    if let Ok(list) = obj.cast::<PyList>() {
        for (row, item) in list.iter().enumerate() {
            push(row, item)?;
        }
    } else {
        let items = obj.try_iter().map_err(|_| not_sequence())?;
        for (row, item) in items.enumerate() {
            let item = item.map_err(|e| argument(format!("worker_ids could not be read: {e}")))?;
            push(row, item)?;
        }
    }
    if out.len() != n {
        return Err(argument(format!(
            "worker_ids yielded {} items but has length {n}",
            out.len()
        )));
    }
    Ok(out)
}

/// A flattened contiguous column and the shape it had.
type Column<'py, T> = (Bound<'py, PyArray1<T>>, Vec<usize>);

/// `obj` as a contiguous flat array of `dtype` ("int64" or "float64") with its original shape.
/// Integer columns take integer dtypes that cast safely to int64; float columns take any real
/// numeric dtype. An empty array of any dtype is accepted.
fn column_array<'py, T: numpy::Element>(
    py: Python<'py>,
    obj: &Bound<'py, PyAny>,
    name: &str,
    dtype: &str,
) -> PyResult<NativeResult<Column<'py, T>>> {
    let np = py.import("numpy")?;
    let arr = match np.call_method1("asarray", (obj,)) {
        Ok(a) => a,
        Err(e) => return Ok(Err(argument(format!("{name} must be array-like: {e}")))),
    };
    let dt = arr.getattr("dtype")?;
    let kind: String = dt.getattr("kind")?.extract()?;
    let size: usize = arr.getattr("size")?.extract()?;
    let ok = size == 0
        || if dtype == "int64" {
            (kind == "i" || kind == "u")
                && np
                    .call_method1("can_cast", (&dt, dtype, "safe"))?
                    .extract::<bool>()?
        } else {
            kind == "f" || kind == "i" || kind == "u"
        };
    if !ok {
        let rule = if dtype == "int64" {
            "an integer array that fits int64"
        } else {
            "a real numeric array"
        };
        return Ok(Err(argument(format!(
            "{name} must be {rule}, got dtype {dt}"
        ))));
    }
    let arr = np.call_method1("ascontiguousarray", (arr, dtype))?;
    let shape: Vec<usize> = arr.getattr("shape")?.extract()?;
    let flat = arr
        .call_method1("reshape", (-1,))?
        .cast_into::<PyArray1<T>>()?;
    Ok(Ok((flat, shape)))
}

fn shape_text(shape: &[usize]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn check_shape(name: &str, shape: &[usize], want: &[usize]) -> NativeResult<()> {
    if shape == want {
        return Ok(());
    }
    let rule = match want {
        [n] => format!("{name} must be 1-D with len(worker_ids) = {n} entries"),
        [n, k] => format!("{name} must have shape (len(worker_ids), {k}) = ({n}, {k})"),
        _ => format!("{name} must have shape {}", shape_text(want)),
    };
    Err(argument(format!("{rule}, got shape {}", shape_text(shape))))
}

/// Encode n FPM records given as columns into one buffer; returns it with n + 1 offsets (what
/// `FpmIngestor.ingest_buffer` takes). Bad shapes raise KernelError; a bad value raises
/// FpmDecodeError naming the row and column. The GIL is released while encoding.
#[pyfunction]
pub fn encode_fpm_rows<'py>(
    py: Python<'py>,
    worker_ids: &Bound<'py, PyAny>,
    dp_rank: &Bound<'py, PyAny>,
    counter_id: &Bound<'py, PyAny>,
    wall_time: &Bound<'py, PyAny>,
    scheduled: &Bound<'py, PyAny>,
    queued: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyArray1<u64>>)> {
    let ids = lift(py, worker_id_strings(worker_ids))?;
    let n = ids.len();
    let (dp, dp_shape) = lift(py, column_array::<i64>(py, dp_rank, "dp_rank", "int64")?)?;
    let (ctr, ctr_shape) = lift(
        py,
        column_array::<i64>(py, counter_id, "counter_id", "int64")?,
    )?;
    let (wall, wall_shape) = lift(
        py,
        column_array::<f64>(py, wall_time, "wall_time", "float64")?,
    )?;
    let (sched, sched_shape) = lift(
        py,
        column_array::<f64>(py, scheduled, "scheduled", "float64")?,
    )?;
    let (queue, queue_shape) = lift(py, column_array::<f64>(py, queued, "queued", "float64")?)?;
    lift(py, check_shape("dp_rank", &dp_shape, &[n]))?;
    lift(py, check_shape("counter_id", &ctr_shape, &[n]))?;
    lift(py, check_shape("wall_time", &wall_shape, &[n]))?;
    lift(
        py,
        check_shape("scheduled", &sched_shape, &[n, SCHEDULED_COLUMNS]),
    )?;
    lift(
        py,
        check_shape("queued", &queue_shape, &[n, QUEUED_COLUMNS]),
    )?;
    let mut strs: Vec<&str> = Vec::with_capacity(n);
    for s in &ids {
        // checked in worker_id_strings; the error path is unreachable but stays an error
        strs.push(s.to_str()?);
    }
    let (dp, ctr, wall, sched, queue) = (
        dp.readonly(),
        ctr.readonly(),
        wall.readonly(),
        sched.readonly(),
        queue.readonly(),
    );
    let to_err =
        |e: numpy::NotContiguousError| crate::errors::to_pyerr(py, argument(e.to_string()));
    let cols = lift(
        py,
        FpmColumns::new(
            &strs,
            dp.as_slice().map_err(to_err)?,
            ctr.as_slice().map_err(to_err)?,
            wall.as_slice().map_err(to_err)?,
            sched.as_slice().map_err(to_err)?,
            queue.as_slice().map_err(to_err)?,
        )
        .map_err(NativeError::from),
    )?;
    // validate and size first, then encode straight into the bytes object (one output buffer)
    let planned = py.detach(|| fpm::plan_rows(&cols));
    let offsets = lift(py, planned.map_err(row_record_error))?;
    let total = offsets.last().map_or(0, |&e| e as usize);
    let bytes = PyBytes::new_with(py, total, |buf| {
        let written = py.detach(|| fpm::write_rows(&cols, &offsets, buf));
        lift(py, written.map_err(NativeError::from))
    })?;
    Ok((bytes, PyArray1::from_vec(py, offsets)))
}
