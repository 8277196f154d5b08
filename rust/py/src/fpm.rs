//! `encode_fpm` / `decode_fpm`: FPM records as nested Python dicts; `encode_fpm_rows`: a batch
//! of records given as columns, encoded into one buffer with offsets.

use numpy::{PyArray1, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyList, PyString};
use sla_planner_core::fpm::{
    self, FieldKind, FieldSpec, FpmColumns, FpmError, FpmRef, FpmSample, RequestStats, RowColumn,
    RowError, RowRule, MAX_WORKER_ID_BYTES, QUEUED_COLUMNS, QUEUED_FIELDS, SCHEDULED_COLUMNS,
    SCHEDULED_FIELDS,
};
use sla_planner_core::FPM_SCHEMA_VERSION;

use crate::errors::{argument, is_int, type_name, NativeError, NativeResult};

const ROOT_KEYS: [&str; 7] = [
    "version",
    "worker_id",
    "dp_rank",
    "counter_id",
    "wall_time",
    "scheduled_requests",
    "queued_requests",
];

/// Dict templates of the decoded record: every key interned once, values None. A decode copies
/// them (`PyDict_Copy` keeps the key table and the cached hashes) and overwrites the values, so
/// no key string is built or hashed per call.
struct Templates {
    root: Py<PyDict>,
    scheduled: Py<PyDict>,
    queued: Py<PyDict>,
    root_keys: Vec<Py<PyString>>,
    scheduled_keys: Vec<Py<PyString>>,
    queued_keys: Vec<Py<PyString>>,
    version: Py<PyAny>,
}

static TEMPLATES: PyOnceLock<Templates> = PyOnceLock::new();

fn template(py: Python<'_>, names: &[&str]) -> PyResult<(Py<PyDict>, Vec<Py<PyString>>)> {
    let keys: Vec<Py<PyString>> = names
        .iter()
        .map(|n| PyString::intern(py, n).unbind())
        .collect();
    let d = PyDict::new(py);
    for k in &keys {
        d.set_item(k.bind(py), py.None())?;
    }
    Ok((d.unbind(), keys))
}

impl Templates {
    fn get(py: Python<'_>) -> PyResult<&Templates> {
        TEMPLATES.get_or_try_init(py, || {
            let (root, root_keys) = template(py, &ROOT_KEYS)?;
            let names = |specs: &[FieldSpec]| specs.iter().map(|f| f.name).collect::<Vec<_>>();
            let (scheduled, scheduled_keys) = template(py, &names(&SCHEDULED_FIELDS))?;
            let (queued, queued_keys) = template(py, &names(&QUEUED_FIELDS))?;
            Ok(Templates {
                root,
                scheduled,
                queued,
                root_keys,
                scheduled_keys,
                queued_keys,
                version: FPM_SCHEMA_VERSION.into_pyobject(py)?.into_any().unbind(),
            })
        })
    }
}

fn stats_dict<'py, const NC: usize, const NV: usize>(
    py: Python<'py>,
    template: &Py<PyDict>,
    keys: &[Py<PyString>],
    specs: &[FieldSpec],
    stats: &RequestStats<NC, NV>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = template.bind(py).copy()?;
    for (spec, key) in specs.iter().zip(keys) {
        let key = key.bind(py);
        match spec.kind {
            FieldKind::Count => {
                d.set_item(key, stats.counts.get(spec.slot).copied().unwrap_or(0))?
            }
            FieldKind::Variance => d.set_item(
                key,
                PyFloat::new(py, stats.variances.get(spec.slot).copied().unwrap_or(0.0)),
            )?,
        }
    }
    Ok(d)
}

/// A decoded record as the nested dict of the schema.
pub fn record_dict<'py>(py: Python<'py>, rec: &FpmRef<'_>) -> PyResult<Bound<'py, PyDict>> {
    let t = Templates::get(py)?;
    let s = &rec.sample;
    let d = t.root.bind(py).copy()?;
    let k = |i: usize| t.root_keys[i].bind(py);
    d.set_item(k(0), t.version.bind(py))?;
    d.set_item(k(1), PyString::new(py, rec.worker_id))?;
    d.set_item(k(2), s.dp_rank)?;
    d.set_item(k(3), s.counter_id)?;
    d.set_item(k(4), PyFloat::new(py, s.wall_time))?;
    let sched = stats_dict(
        py,
        &t.scheduled,
        &t.scheduled_keys,
        &SCHEDULED_FIELDS,
        &s.scheduled,
    )?;
    d.set_item(k(5), sched)?;
    let queued = stats_dict(py, &t.queued, &t.queued_keys, &QUEUED_FIELDS, &s.queued)?;
    d.set_item(k(6), queued)?;
    Ok(d)
}

fn record_error(kind: &'static str, field: &str, message: String) -> NativeError {
    NativeError::FpmRecord {
        kind,
        field: field.to_string(),
        message,
    }
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

/// A non-negative int in the full u64 range (`counter_id`).
fn get_u64(v: &Bound<'_, PyAny>, field: &'static str) -> NativeResult<u64> {
    if !is_int(v) {
        return Err(FpmError::WrongType {
            field,
            expected: "int",
        }
        .into());
    }
    match v.extract::<u64>() {
        Ok(x) => Ok(x),
        Err(_) if v.lt(0).unwrap_or(false) => Err(FpmError::Negative { field }.into()),
        Err(_) => Err(FpmError::OutOfRange { field }.into()),
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
        counter_id: get_u64(&required(d, "counter_id", "counter_id")?, "counter_id")?,
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
) -> NativeResult<Bound<'py, PyBytes>> {
    let bytes = encode_dict(record)?;
    Ok(PyBytes::new(py, &bytes))
}

/// Decode one FPM payload to the nested dict of the schema (raises FpmDecodeError).
#[pyfunction]
pub fn decode_fpm<'py>(
    py: Python<'py>,
    payload: &Bound<'py, PyAny>,
) -> NativeResult<Bound<'py, PyDict>> {
    let bytes = payload
        .cast::<PyBytes>()
        .map_err(|_| argument(format!("payload must be bytes, got {}", type_name(payload))))?;
    let rec = fpm::decode(bytes.as_bytes())?;
    Ok(record_dict(py, &rec)?)
}

// ------------------------------------------------------------------------------ batch encoding

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
            return Err(RowError {
                row,
                column: RowColumn::WorkerId,
                rule: RowRule::TooLong(len),
            }
            .into());
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
) -> NativeResult<Column<'py, T>> {
    let np = py.import("numpy")?;
    let arr = np
        .call_method1("asarray", (obj,))
        .map_err(|e| argument(format!("{name} must be array-like: {e}")))?;
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
        return Err(argument(format!("{name} must be {rule}, got dtype {dt}")));
    }
    let arr = np.call_method1("ascontiguousarray", (arr, dtype))?;
    let shape: Vec<usize> = arr.getattr("shape")?.extract()?;
    let flat = arr
        .call_method1("reshape", (-1,))?
        .cast_into::<PyArray1<T>>()
        .map_err(PyErr::from)?;
    Ok((flat, shape))
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
) -> NativeResult<(Bound<'py, PyBytes>, Bound<'py, PyArray1<u64>>)> {
    let ids = worker_id_strings(worker_ids)?;
    let n = ids.len();
    let (dp, dp_shape) = column_array::<i64>(py, dp_rank, "dp_rank", "int64")?;
    let (ctr, ctr_shape) = column_array::<i64>(py, counter_id, "counter_id", "int64")?;
    let (wall, wall_shape) = column_array::<f64>(py, wall_time, "wall_time", "float64")?;
    let (sched, sched_shape) = column_array::<f64>(py, scheduled, "scheduled", "float64")?;
    let (queue, queue_shape) = column_array::<f64>(py, queued, "queued", "float64")?;
    check_shape("dp_rank", &dp_shape, &[n])?;
    check_shape("counter_id", &ctr_shape, &[n])?;
    check_shape("wall_time", &wall_shape, &[n])?;
    check_shape("scheduled", &sched_shape, &[n, SCHEDULED_COLUMNS])?;
    check_shape("queued", &queue_shape, &[n, QUEUED_COLUMNS])?;
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
    let cols = FpmColumns::new(
        &strs,
        dp.as_slice()?,
        ctr.as_slice()?,
        wall.as_slice()?,
        sched.as_slice()?,
        queue.as_slice()?,
    )?;
    // validate and size first, then encode straight into the bytes object (one output buffer)
    let offsets = py.detach(|| fpm::plan_rows(&cols))?;
    let total = offsets.last().map_or(0, |&e| e as usize);
    let bytes = PyBytes::new_with(py, total, |buf| {
        let written = py.detach(|| fpm::write_rows(&cols, &offsets, buf));
        written.map_err(|e| PyErr::from(NativeError::from(e)))
    })?;
    Ok((bytes, PyArray1::from_vec(py, offsets)))
}
