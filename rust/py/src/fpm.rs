//! `encode_fpm` / `decode_fpm`: FPM records as nested Python dicts.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyString};
use sla_planner_core::fpm::{
    self, FieldKind, FieldSpec, FpmError, FpmRef, FpmSample, RequestStats, MAX_WORKER_ID_BYTES,
    QUEUED_FIELDS, SCHEDULED_FIELDS,
};
use sla_planner_core::FPM_SCHEMA_VERSION;

use crate::errors::{lift, NativeError, NativeResult};

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
            crate::errors::argument(format!("payload must be bytes, got {}", type_name(payload))),
        )
    })?;
    let rec = lift(py, fpm::decode(bytes.as_bytes()).map_err(NativeError::from))?;
    record_dict(py, &rec)
}
