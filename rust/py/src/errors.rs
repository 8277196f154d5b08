//! The one way native errors become Python exceptions: the project's own classes from
//! `sla_planner.errors`, with `kind` and `field` attributes on `FpmDecodeError`.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use sla_planner_core::fpm::FpmError;
use sla_planner_core::ArgumentError;

static FPM_DECODE_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static KERNEL_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// Everything the binding can fail with, before it becomes a Python exception.
#[derive(Debug)]
pub enum NativeError {
    /// An FPM payload or record was rejected.
    Fpm(FpmError),
    /// An FPM record built in Python broke a rule the wire decoder cannot express.
    FpmRecord {
        kind: &'static str,
        field: String,
        message: String,
    },
    /// A kernel argument has the wrong shape, type or range.
    Argument(String),
}

impl From<FpmError> for NativeError {
    fn from(e: FpmError) -> Self {
        NativeError::Fpm(e)
    }
}

impl From<ArgumentError> for NativeError {
    fn from(e: ArgumentError) -> Self {
        NativeError::Argument(e.0)
    }
}

/// Shorthand for a `KernelError` with `message`.
pub fn argument(message: impl Into<String>) -> NativeError {
    NativeError::Argument(message.into())
}

fn fpm_exception(py: Python<'_>, kind: &str, field: Option<&str>, message: String) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let cls = FPM_DECODE_ERROR.import(py, "sla_planner.errors", "FpmDecodeError")?;
        let exc = cls.call1((message.clone(),))?;
        exc.setattr("kind", kind)?;
        exc.setattr("field", field)?;
        Ok(PyErr::from_value(exc))
    };
    build().unwrap_or_else(|e| e)
}

/// Convert a native error to the matching `sla_planner.errors` exception.
pub fn to_pyerr(py: Python<'_>, err: NativeError) -> PyErr {
    match err {
        NativeError::Fpm(e) => fpm_exception(py, e.kind(), e.field(), e.to_string()),
        NativeError::FpmRecord {
            kind,
            field,
            message,
        } => fpm_exception(py, kind, Some(&field), message),
        NativeError::Argument(message) => {
            let build = || -> PyResult<PyErr> {
                let cls = KERNEL_ERROR.import(py, "sla_planner.errors", "KernelError")?;
                Ok(PyErr::from_value(cls.call1((message.clone(),))?))
            };
            build().unwrap_or_else(|e| e)
        }
    }
}

/// Result alias used by the binding's internals; `lift` turns it into a `PyResult`.
pub type NativeResult<T> = Result<T, NativeError>;

/// Map a `NativeResult` into a `PyResult` (the single conversion point).
pub fn lift<T>(py: Python<'_>, r: NativeResult<T>) -> PyResult<T> {
    r.map_err(|e| to_pyerr(py, e))
}
