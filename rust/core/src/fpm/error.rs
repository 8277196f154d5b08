//! Typed errors for FPM decoding and validation.

use std::fmt;

/// Why an FPM payload was rejected. Every decoder failure is one of these; the decoder never
/// panics. `field` values are dotted schema paths such as `scheduled_requests.sum_prefill_tokens`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FpmError {
    /// The payload ended in the middle of a value (includes the empty payload).
    Truncated,
    /// Byte 0xc1, which msgpack never uses, at the given offset.
    InvalidMarker { offset: usize },
    /// The root map was complete but this many bytes followed it.
    TrailingBytes { count: usize },
    /// A size limit was exceeded (`what` names it: payload, worker_id, map entries).
    TooLarge { what: &'static str, limit: usize },
    /// Containers nested deeper than the decoder allows.
    TooDeep { limit: usize },
    /// A field (or the payload, or a map key) has the wrong msgpack type.
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    /// A required field is absent.
    MissingField { field: &'static str },
    /// A field appears twice in the same map.
    DuplicateField { field: &'static str },
    /// `version` is not the schema version this decoder understands.
    BadVersion(i64),
    /// A count, sum, variance or time is negative.
    Negative { field: &'static str },
    /// A float field is NaN or infinite.
    NonFinite { field: &'static str },
    /// An integer field does not fit its type (signed 64-bit; `counter_id`: unsigned 64-bit).
    OutOfRange { field: &'static str },
    /// A msgpack string (field, key or skipped value) is not valid UTF-8.
    InvalidUtf8 { field: &'static str },
    /// A msgpack timestamp extension (type -1) has an invalid length or nanosecond value.
    InvalidTimestamp,
}

impl FpmError {
    /// Stable short name of the error kind (the `kind` attribute of the Python exception).
    pub fn kind(&self) -> &'static str {
        match self {
            FpmError::Truncated => "truncated",
            FpmError::InvalidMarker { .. } => "invalid_marker",
            FpmError::TrailingBytes { .. } => "trailing_bytes",
            FpmError::TooLarge { .. } => "too_large",
            FpmError::TooDeep { .. } => "too_deep",
            FpmError::WrongType { .. } => "wrong_type",
            FpmError::MissingField { .. } => "missing_field",
            FpmError::DuplicateField { .. } => "duplicate_field",
            FpmError::BadVersion(_) => "bad_version",
            FpmError::Negative { .. } => "negative",
            FpmError::NonFinite { .. } => "non_finite",
            FpmError::OutOfRange { .. } => "out_of_range",
            FpmError::InvalidUtf8 { .. } => "invalid_utf8",
            FpmError::InvalidTimestamp => "invalid_timestamp",
        }
    }

    /// The schema path the error is about, when there is one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            FpmError::WrongType { field, .. }
            | FpmError::MissingField { field }
            | FpmError::DuplicateField { field }
            | FpmError::Negative { field }
            | FpmError::NonFinite { field }
            | FpmError::OutOfRange { field }
            | FpmError::InvalidUtf8 { field } => Some(field),
            FpmError::TooLarge { what, .. } => Some(what),
            FpmError::BadVersion(_) => Some("version"),
            _ => None,
        }
    }
}

impl fmt::Display for FpmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FpmError::Truncated => write!(f, "FPM payload truncated"),
            FpmError::InvalidMarker { offset } => {
                write!(
                    f,
                    "FPM payload has invalid msgpack marker 0xc1 at byte {offset}"
                )
            }
            FpmError::TrailingBytes { count } => {
                write!(
                    f,
                    "FPM payload has {count} trailing bytes after the root map"
                )
            }
            FpmError::TooLarge { what, limit } => {
                write!(f, "FPM {what} exceeds the limit of {limit}")
            }
            FpmError::TooDeep { limit } => {
                write!(f, "FPM payload nests containers deeper than {limit} levels")
            }
            FpmError::WrongType { field, expected } => {
                write!(
                    f,
                    "FPM field {field} has the wrong type: expected {expected}"
                )
            }
            FpmError::MissingField { field } => write!(f, "FPM field {field} is missing"),
            FpmError::DuplicateField { field } => write!(f, "FPM field {field} appears twice"),
            FpmError::BadVersion(v) => {
                write!(
                    f,
                    "FPM version {v} is not supported (expected {})",
                    crate::FPM_SCHEMA_VERSION
                )
            }
            FpmError::Negative { field } => write!(f, "FPM field {field} must be >= 0"),
            FpmError::NonFinite { field } => write!(f, "FPM field {field} must be finite"),
            FpmError::OutOfRange { field } => {
                if *field == "counter_id" {
                    write!(
                        f,
                        "FPM field {field} does not fit an unsigned 64-bit integer"
                    )
                } else {
                    write!(f, "FPM field {field} does not fit a signed 64-bit integer")
                }
            }
            FpmError::InvalidUtf8 { field } => write!(f, "FPM string {field} is not valid UTF-8"),
            FpmError::InvalidTimestamp => write!(f, "FPM payload has an invalid msgpack timestamp"),
        }
    }
}

impl std::error::Error for FpmError {}
