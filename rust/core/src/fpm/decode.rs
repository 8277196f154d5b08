//! Hand-written msgpack decoder for FPM schema version 1.
//!
//! Strict: every required field has one accepted msgpack type family, unknown keys are skipped
//! (their values are still checked to be well-formed msgpack), and every failure is an
//! [`FpmError`]. All reads are bounds-checked; nothing here can panic on any input.
//!
//! [`decode`] first tries `canonical` (straight-line decoding of the layout publishers write) and
//! falls back to the general decoder below for anything else, so results never depend on the path.

mod canonical;

use super::{
    FieldKind, FieldSpec, FpmError, FpmRef, FpmSample, RequestStats, QUEUED_FIELDS,
    SCHEDULED_FIELDS,
};
use crate::FPM_SCHEMA_VERSION;

/// Largest accepted payload in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 65_536;
/// Longest accepted `worker_id` in bytes.
pub const MAX_WORKER_ID_BYTES: usize = 256;
/// Most entries accepted in the root map and the two statistics maps.
pub const MAX_MAP_ENTRIES: usize = 64;
/// Deepest container nesting accepted (the root map is level 1).
pub const MAX_DEPTH: usize = 16;

/// A msgpack integer or float, widened (`Int` holds negative values, `UInt` the rest).
#[derive(Clone, Copy)]
enum Number {
    Int(i64),
    UInt(u64),
    Float(f64),
}

/// Byte equality for short keys without a `memcmp` call (keys are <= ~32 bytes).
#[inline(always)]
fn key_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        let x = u64::from_le_bytes([x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]]);
        let y = u64::from_le_bytes([y[0], y[1], y[2], y[3], y[4], y[5], y[6], y[7]]);
        if x != y {
            return false;
        }
    }
    ca.remainder()
        .iter()
        .zip(cb.remainder())
        .all(|(x, y)| x == y)
}

/// Normalise a signed msgpack integer: non-negative values become `UInt`.
#[inline]
fn signed(v: i64) -> Number {
    if v < 0 {
        Number::Int(v)
    } else {
        Number::UInt(v as u64)
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    fn byte(&mut self) -> Result<u8, FpmError> {
        let b = *self.buf.get(self.pos).ok_or(FpmError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], FpmError> {
        let end = self.pos.checked_add(n).ok_or(FpmError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(FpmError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], FpmError> {
        let s = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    #[inline]
    fn be_len(&mut self, width: usize) -> Result<usize, FpmError> {
        Ok(match width {
            1 => usize::from(self.byte()?),
            2 => usize::from(u16::from_be_bytes(self.array()?)),
            _ => u32::from_be_bytes(self.array()?) as usize,
        })
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Read a map header; `field` names the value for a type error.
    #[inline]
    fn map_len(&mut self, field: &'static str) -> Result<usize, FpmError> {
        let m = self.byte()?;
        let n = match m {
            0x80..=0x8f => usize::from(m & 0x0f),
            0xde => self.be_len(2)?,
            0xdf => self.be_len(4)?,
            0xc1 => {
                return Err(FpmError::InvalidMarker {
                    offset: self.pos - 1,
                })
            }
            _ => {
                return Err(FpmError::WrongType {
                    field,
                    expected: "map",
                })
            }
        };
        if n > MAX_MAP_ENTRIES {
            return Err(FpmError::TooLarge {
                what: "map entries",
                limit: MAX_MAP_ENTRIES,
            });
        }
        Ok(n)
    }

    /// Read a string's raw bytes (no UTF-8 check); `field` names the value for a type error.
    #[inline]
    fn str_bytes(&mut self, field: &'static str) -> Result<&'a [u8], FpmError> {
        let m = self.byte()?;
        let n = match m {
            0xa0..=0xbf => usize::from(m & 0x1f),
            0xd9 => self.be_len(1)?,
            0xda => self.be_len(2)?,
            0xdb => self.be_len(4)?,
            0xc1 => {
                return Err(FpmError::InvalidMarker {
                    offset: self.pos - 1,
                })
            }
            _ => {
                return Err(FpmError::WrongType {
                    field,
                    expected: "str",
                })
            }
        };
        self.take(n)
    }

    /// Read an integer or float; `field` and `expected` name the value for a type error.
    #[inline(always)]
    fn number(&mut self, field: &'static str, expected: &'static str) -> Result<Number, FpmError> {
        let m = self.byte()?;
        Ok(match m {
            0x00..=0x7f => Number::UInt(u64::from(m)),
            0xe0..=0xff => Number::Int(i64::from(m as i8)),
            0xcc => Number::UInt(u64::from(self.byte()?)),
            0xcd => Number::UInt(u64::from(u16::from_be_bytes(self.array()?))),
            0xce => Number::UInt(u64::from(u32::from_be_bytes(self.array()?))),
            0xcf => Number::UInt(u64::from_be_bytes(self.array()?)),
            0xd0 => signed(i64::from(self.byte()? as i8)),
            0xd1 => signed(i64::from(i16::from_be_bytes(self.array()?))),
            0xd2 => signed(i64::from(i32::from_be_bytes(self.array()?))),
            0xd3 => signed(i64::from_be_bytes(self.array()?)),
            0xca => Number::Float(f64::from(f32::from_be_bytes(self.array()?))),
            0xcb => Number::Float(f64::from_be_bytes(self.array()?)),
            0xc1 => {
                return Err(FpmError::InvalidMarker {
                    offset: self.pos - 1,
                })
            }
            _ => return Err(FpmError::WrongType { field, expected }),
        })
    }

    /// A non-negative integer that fits i64.
    #[inline]
    fn count(&mut self, field: &'static str) -> Result<i64, FpmError> {
        match self.number(field, "int")? {
            Number::Int(_) => Err(FpmError::Negative { field }),
            Number::UInt(v) => i64::try_from(v).map_err(|_| FpmError::OutOfRange { field }),
            Number::Float(_) => Err(FpmError::WrongType {
                field,
                expected: "int",
            }),
        }
    }

    /// A non-negative integer in the full u64 range (`counter_id`).
    #[inline]
    fn unsigned(&mut self, field: &'static str) -> Result<u64, FpmError> {
        match self.number(field, "int")? {
            Number::Int(_) => Err(FpmError::Negative { field }),
            Number::UInt(v) => Ok(v),
            Number::Float(_) => Err(FpmError::WrongType {
                field,
                expected: "int",
            }),
        }
    }

    /// A non-negative finite float (msgpack integers accepted and converted).
    #[inline]
    fn non_negative_float(&mut self, field: &'static str) -> Result<f64, FpmError> {
        let v = match self.number(field, "float or int")? {
            Number::Int(v) => v as f64,
            Number::UInt(v) => v as f64,
            Number::Float(v) => v,
        };
        if !v.is_finite() {
            Err(FpmError::NonFinite { field })
        } else if v < 0.0 {
            Err(FpmError::Negative { field })
        } else {
            Ok(v)
        }
    }

    /// Skip one well-formed msgpack value of any type; containers count toward `MAX_DEPTH`.
    fn skip(&mut self, level: usize) -> Result<(), FpmError> {
        let m = self.byte()?;
        let (entries, per_entry) = match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => return Ok(()),
            0x80..=0x8f => (usize::from(m & 0x0f), 2),
            0x90..=0x9f => (usize::from(m & 0x0f), 1),
            0xa0..=0xbf => return self.skip_str(usize::from(m & 0x1f)),
            0xc1 => {
                return Err(FpmError::InvalidMarker {
                    offset: self.pos - 1,
                })
            }
            0xc4 => return self.skip_bytes(1),
            0xc5 => return self.skip_bytes(2),
            0xc6 => return self.skip_bytes(4),
            0xc7 => return self.skip_ext(1),
            0xc8 => return self.skip_ext(2),
            0xc9 => return self.skip_ext(4),
            0xca => return self.take(4).map(drop),
            0xcb => return self.take(8).map(drop),
            0xcc | 0xd0 => return self.take(1).map(drop),
            0xcd | 0xd1 => return self.take(2).map(drop),
            0xce | 0xd2 => return self.take(4).map(drop),
            0xcf | 0xd3 => return self.take(8).map(drop),
            0xd4 => return self.skip_ext_data(1),
            0xd5 => return self.skip_ext_data(2),
            0xd6 => return self.skip_ext_data(4),
            0xd7 => return self.skip_ext_data(8),
            0xd8 => return self.skip_ext_data(16),
            0xd9 => {
                let n = self.be_len(1)?;
                return self.skip_str(n);
            }
            0xda => {
                let n = self.be_len(2)?;
                return self.skip_str(n);
            }
            0xdb => {
                let n = self.be_len(4)?;
                return self.skip_str(n);
            }
            0xdc => (self.be_len(2)?, 1),
            0xdd => (self.be_len(4)?, 1),
            0xde => (self.be_len(2)?, 2),
            0xdf => (self.be_len(4)?, 2),
        };
        if level > MAX_DEPTH {
            return Err(FpmError::TooDeep { limit: MAX_DEPTH });
        }
        // Every element takes at least one byte: a count beyond the rest cannot complete.
        let elements = entries.checked_mul(per_entry).ok_or(FpmError::Truncated)?;
        if elements > self.remaining() {
            return Err(FpmError::Truncated);
        }
        for _ in 0..elements {
            self.skip(level + 1)?;
        }
        Ok(())
    }

    fn skip_str(&mut self, n: usize) -> Result<(), FpmError> {
        let s = self.take(n)?;
        std::str::from_utf8(s).map_err(|_| FpmError::InvalidUtf8 {
            field: "<skipped value>",
        })?;
        Ok(())
    }

    fn skip_bytes(&mut self, width: usize) -> Result<(), FpmError> {
        let n = self.be_len(width)?;
        self.take(n).map(drop)
    }

    fn skip_ext(&mut self, width: usize) -> Result<(), FpmError> {
        let n = self.be_len(width)?;
        self.skip_ext_data(n)
    }

    /// Type byte plus `n` data bytes; type -1 (timestamp) is validated like msgpack does.
    fn skip_ext_data(&mut self, n: usize) -> Result<(), FpmError> {
        let ext_type = self.byte()? as i8;
        let data = self.take(n)?;
        if ext_type == -1 {
            let nanos = match n {
                4 => 0,
                8 => u32::from_be_bytes([data[0], data[1], data[2], data[3]]) >> 2,
                12 => u32::from_be_bytes([data[0], data[1], data[2], data[3]]),
                _ => return Err(FpmError::InvalidTimestamp),
            };
            if nanos > 999_999_999 {
                return Err(FpmError::InvalidTimestamp);
            }
        }
        Ok(())
    }

    /// Read a map key of the map named `key_field`; returns its bytes (UTF-8 not yet checked).
    #[inline]
    fn key(&mut self, key_field: &'static str) -> Result<&'a [u8], FpmError> {
        self.str_bytes(key_field)
    }

    /// `err` if the rest of the root map (`entries` more key/value pairs) and nothing after it
    /// is well-formed msgpack, else the structural error: a payload that is not msgpack at all
    /// is malformed whatever its version says.
    fn well_formed_rest(&mut self, entries: usize, err: FpmError) -> FpmError {
        for _ in 0..entries {
            if let Err(e) = self.skip(2).and_then(|()| self.skip(2)) {
                return e;
            }
        }
        if self.remaining() > 0 {
            return FpmError::TrailingBytes {
                count: self.remaining(),
            };
        }
        err
    }

    /// Skip the value of an unknown key after checking the key is valid UTF-8.
    fn skip_unknown(
        &mut self,
        key: &[u8],
        key_field: &'static str,
        level: usize,
    ) -> Result<(), FpmError> {
        std::str::from_utf8(key).map_err(|_| FpmError::InvalidUtf8 { field: key_field })?;
        self.skip(level)
    }

    fn stats<const NC: usize, const NV: usize>(
        &mut self,
        specs: &[FieldSpec],
        map_field: &'static str,
        key_field: &'static str,
    ) -> Result<RequestStats<NC, NV>, FpmError> {
        let n = self.map_len(map_field)?;
        let mut out = RequestStats::<NC, NV>::default();
        let mut seen: u32 = 0;
        for entry in 0..n {
            let key = self.key(key_field)?;
            match find_key(specs.iter().map(|s| s.name), entry, key) {
                Some(i) => {
                    let spec = &specs[i];
                    if seen & (1 << i) != 0 {
                        return Err(FpmError::DuplicateField { field: spec.path });
                    }
                    seen |= 1 << i;
                    // `slot` comes from the const field tables; `get_mut` keeps this panic-free.
                    match spec.kind {
                        FieldKind::Count => {
                            let v = self.count(spec.path)?;
                            if let Some(dst) = out.counts.get_mut(spec.slot) {
                                *dst = v;
                            }
                        }
                        FieldKind::Variance => {
                            let v = self.non_negative_float(spec.path)?;
                            if let Some(dst) = out.variances.get_mut(spec.slot) {
                                *dst = v;
                            }
                        }
                    }
                }
                None => self.skip_unknown(key, key_field, 3)?,
            }
        }
        if let Some(spec) = specs.iter().enumerate().find(|(i, _)| seen & (1 << i) == 0) {
            return Err(FpmError::MissingField { field: spec.1.path });
        }
        Ok(out)
    }
}

/// Index of `key` among `names`. Publishers write keys in schema order, so the name at the
/// entry's own position is tried first; any order is still accepted.
#[inline]
fn find_key<'n>(
    mut names: impl Iterator<Item = &'n str> + Clone,
    entry: usize,
    key: &[u8],
) -> Option<usize> {
    if let Some(guess) = names.clone().nth(entry) {
        if key_eq(guess.as_bytes(), key) {
            return Some(entry);
        }
    }
    names.position(|name| key_eq(name.as_bytes(), key))
}

const ROOT_KEYS: [&str; 7] = [
    "version",
    "worker_id",
    "dp_rank",
    "counter_id",
    "wall_time",
    "scheduled_requests",
    "queued_requests",
];

/// Decode one FPM payload. The returned record borrows `worker_id` from `payload`.
#[inline]
pub fn decode(payload: &[u8]) -> Result<FpmRef<'_>, FpmError> {
    match canonical::decode_canonical(payload) {
        Some(rec) => Ok(rec),
        None => decode_general(payload),
    }
}

/// Decode any accepted layout (keys in any order, unknown keys, every msgpack size form) and
/// name the problem in every rejected payload.
#[inline(never)]
fn decode_general(payload: &[u8]) -> Result<FpmRef<'_>, FpmError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(FpmError::TooLarge {
            what: "payload bytes",
            limit: MAX_PAYLOAD_BYTES,
        });
    }
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    let n = r.map_len("<payload>")?;
    let mut seen: u32 = 0;
    let mut worker_id = "";
    let mut sample = FpmSample::default();
    for entry in 0..n {
        let key = r.key("<key>")?;
        let Some(i) = find_key(ROOT_KEYS.iter().copied(), entry, key) else {
            r.skip_unknown(key, "<key>", 2)?;
            continue;
        };
        let name = ROOT_KEYS[i];
        if seen & (1 << i) != 0 {
            return Err(FpmError::DuplicateField { field: name });
        }
        seen |= 1 << i;
        match i {
            0 => match r.number("version", "int")? {
                Number::UInt(v) if v == FPM_SCHEMA_VERSION as u64 => {}
                Number::UInt(v) => {
                    let v = i64::try_from(v).unwrap_or(i64::MAX);
                    return Err(r.well_formed_rest(n - entry - 1, FpmError::BadVersion(v)));
                }
                Number::Int(v) => {
                    return Err(r.well_formed_rest(n - entry - 1, FpmError::BadVersion(v)))
                }
                Number::Float(_) => {
                    return Err(FpmError::WrongType {
                        field: "version",
                        expected: "int",
                    })
                }
            },
            1 => {
                let raw = r.str_bytes("worker_id")?;
                if raw.len() > MAX_WORKER_ID_BYTES {
                    return Err(FpmError::TooLarge {
                        what: "worker_id",
                        limit: MAX_WORKER_ID_BYTES,
                    });
                }
                worker_id = std::str::from_utf8(raw)
                    .map_err(|_| FpmError::InvalidUtf8 { field: "worker_id" })?;
            }
            2 => sample.dp_rank = r.count("dp_rank")?,
            3 => sample.counter_id = r.unsigned("counter_id")?,
            4 => sample.wall_time = r.non_negative_float("wall_time")?,
            5 => {
                sample.scheduled = r.stats(
                    &SCHEDULED_FIELDS,
                    "scheduled_requests",
                    "scheduled_requests.<key>",
                )?
            }
            _ => {
                sample.queued =
                    r.stats(&QUEUED_FIELDS, "queued_requests", "queued_requests.<key>")?
            }
        }
    }
    if let Some((_, name)) = ROOT_KEYS
        .iter()
        .enumerate()
        .find(|(i, _)| seen & (1 << i) == 0)
    {
        return Err(FpmError::MissingField { field: name });
    }
    if r.remaining() > 0 {
        return Err(FpmError::TrailingBytes {
            count: r.remaining(),
        });
    }
    Ok(FpmRef { worker_id, sample })
}
