//! PyO3 binding `sla_planner._native`: conversion, GIL release and error mapping only. The
//! logic lives in `sla-planner-core`; errors become `sla_planner.errors` classes in `errors.rs`.

mod errors;
mod fpm;
mod ingest;
mod receive;
mod regression;

use pyo3::prelude::*;

/// FPM schema version understood by the native module.
#[pyfunction]
fn fpm_schema_version() -> i64 {
    sla_planner_core::FPM_SCHEMA_VERSION
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(fpm_schema_version, m)?)?;
    m.add_function(wrap_pyfunction!(fpm::encode_fpm, m)?)?;
    m.add_function(wrap_pyfunction!(fpm::decode_fpm, m)?)?;
    m.add_function(wrap_pyfunction!(fpm::encode_fpm_rows, m)?)?;
    m.add_function(wrap_pyfunction!(regression::estimate_many, m)?)?;
    m.add_class::<ingest::FpmIngestor>()?;
    m.add_class::<regression::SlidingRegression>()?;
    m.add_class::<receive::FpmReceiver>()?;
    m.add_class::<receive::BenchPublisher>()?;
    m.add(
        "MAX_PAYLOAD_BYTES",
        sla_planner_core::fpm::MAX_PAYLOAD_BYTES,
    )?;
    m.add(
        "MAX_WORKER_ID_BYTES",
        sla_planner_core::fpm::MAX_WORKER_ID_BYTES,
    )?;
    m.add("MAX_MAP_ENTRIES", sla_planner_core::fpm::MAX_MAP_ENTRIES)?;
    m.add("MAX_DEPTH", sla_planner_core::fpm::MAX_DEPTH)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
