//! PyO3 binding: conversion, GIL release and error mapping only. The logic lives in
//! `sla-planner-core`.
use pyo3::prelude::*;

/// FPM schema version understood by the native module.
#[pyfunction]
fn fpm_schema_version() -> i64 {
    sla_planner_core::FPM_SCHEMA_VERSION
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(fpm_schema_version, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
