//! sla-planner core: hot paths with no Python dependency.
//!
//! Everything here is plain Rust so it can be tested with `cargo test` and reused
//! outside the Python binding crate (`rust/py`).

/// Version of the FPM wire schema this crate understands.
pub const FPM_SCHEMA_VERSION: i64 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_version_is_one() {
        assert_eq!(FPM_SCHEMA_VERSION, 1);
    }
}
