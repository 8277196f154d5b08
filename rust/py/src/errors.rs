//! The one way native errors become Python exceptions: the project's own classes from
//! `sla_planner.errors`. `NativeError` converts into `PyErr` (`From`), so binding functions
//! return `Result<T, NativeError>` or use `?` on it; no call site maps errors by hand.

use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};
use sla_planner_core::fpm::{FpmError, RowError};
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
    /// A kernel argument has the wrong shape, type or range (`KernelError`).
    Argument(String),
    /// A lookup of something the table does not hold (`KeyError`).
    Unknown(String),
    /// A Python error raised while reading an argument, passed through unchanged.
    Python(PyErr),
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

impl From<RowError> for NativeError {
    fn from(e: RowError) -> Self {
        NativeError::FpmRecord {
            kind: e.kind(),
            field: e.field().to_string(),
            message: e.to_string(),
        }
    }
}

impl From<numpy::NotContiguousError> for NativeError {
    fn from(e: numpy::NotContiguousError) -> Self {
        NativeError::Argument(e.to_string())
    }
}

impl From<PyErr> for NativeError {
    fn from(e: PyErr) -> Self {
        NativeError::Python(e)
    }
}

/// Shorthand for a `KernelError` with `message`.
pub fn argument(message: impl Into<String>) -> NativeError {
    NativeError::Argument(message.into())
}

/// `FpmDecodeError(message, kind=..., field=...)`: the attributes are set by its constructor.
fn fpm_exception(py: Python<'_>, kind: &str, field: Option<&str>, message: String) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let cls = FPM_DECODE_ERROR.import(py, "sla_planner.errors", "FpmDecodeError")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("kind", kind)?;
        kwargs.set_item("field", field)?;
        Ok(PyErr::from_value(cls.call((message,), Some(&kwargs))?))
    };
    build().unwrap_or_else(|e| e)
}

impl From<NativeError> for PyErr {
    fn from(err: NativeError) -> PyErr {
        Python::attach(|py| match err {
            NativeError::Fpm(e) => fpm_exception(py, e.kind(), e.field(), e.to_string()),
            NativeError::FpmRecord {
                kind,
                field,
                message,
            } => fpm_exception(py, kind, Some(&field), message),
            NativeError::Argument(message) => {
                let build = || -> PyResult<PyErr> {
                    let cls = KERNEL_ERROR.import(py, "sla_planner.errors", "KernelError")?;
                    Ok(PyErr::from_value(cls.call1((message,))?))
                };
                build().unwrap_or_else(|e| e)
            }
            NativeError::Unknown(message) => PyKeyError::new_err(message),
            NativeError::Python(e) => e,
        })
    }
}

/// Result alias of the binding's functions (converted to a Python exception by PyO3).
pub type NativeResult<T> = Result<T, NativeError>;

/// `v` as an integer in `[lo, hi]`, else a KernelError naming `name` and the value as Python
/// prints it (any size of int, no OverflowError).
pub fn int_in(v: &Bound<'_, PyAny>, name: &str, lo: i64, hi: i64) -> NativeResult<i64> {
    if !is_int(v) {
        return Err(argument(format!(
            "{name} must be an int, got {}",
            type_name(v)
        )));
    }
    match v.extract::<i64>() {
        Ok(x) if (lo..=hi).contains(&x) => Ok(x),
        _ => {
            let shown = v.str().map(|s| s.to_string()).unwrap_or_default();
            let rule = if v.lt(lo).unwrap_or(false) {
                format!(">= {lo}")
            } else {
                format!("<= {hi}")
            };
            Err(argument(format!("{name} must be {rule}, got {shown}")))
        }
    }
}

/// A Python int that is not a bool.
pub fn is_int(v: &Bound<'_, PyAny>) -> bool {
    v.is_instance_of::<pyo3::types::PyInt>() && !v.is_instance_of::<pyo3::types::PyBool>()
}

/// The name of `v`'s type.
pub fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_string())
}
