//! sla-planner core: hot paths with no Python dependency.
//!
//! - [`fpm`]: ForwardPassMetrics msgpack codec (strict, allocation-light, never panics);
//! - [`table`]: the engine table fed by FPM messages (latest sample, bounded history, counters);
//! - [`regression`]: time-bucketed sliding-window least squares for iteration-time models;
//! - [`zmtp`], [`receiver`]: the FPM receive loop (ZMTP SUB connections into the table);
//!   [`publisher`]: a loopback load generator for it.
//!
//! Everything here is plain Rust so it can be tested with `cargo test` and reused outside the
//! Python binding crate (`rust/py`). Nothing reads a clock (callers pass `now_s`) except the
//! receive loop, which stamps messages with the wall clock as they arrive.

pub mod engine;
pub mod fpm;
mod hash;
pub mod publisher;
pub mod receiver;
pub mod regression;
pub mod table;
pub mod zmtp;

use std::fmt;

/// Version of the FPM wire schema this crate understands.
pub const FPM_SCHEMA_VERSION: i64 = 1;

/// A constructor or call argument is out of its allowed range; the message names it and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgumentError(pub String);

impl fmt::Display for ArgumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ArgumentError {}
