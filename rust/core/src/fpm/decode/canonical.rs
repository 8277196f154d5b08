//! Fast path for payloads in the encoder's canonical layout.
//!
//! Publishers write the root map and both statistics maps as fixmaps with every key, in schema
//! order, as a fixstr. This module decodes exactly that layout with straight-line code: each key
//! is compared as raw bytes (header included) against a constant built from the field tables, so
//! no key lookup or UTF-8 check runs for it (a key equal to an ASCII name is valid UTF-8).
//!
//! [`decode_canonical`] returns `None` on any deviation — another map or string form, another key
//! order, an extra or missing key, or any value the strict decoder would reject — and the caller
//! then runs the general decoder on the whole payload, which produces the exact error (or accepts
//! the non-canonical layout). `Some` is returned only for payloads the general decoder accepts with
//! the same record, so the fast path changes speed, never results.

use super::super::{
    FieldKind, FpmRef, FpmSample, QueuedRequests, ScheduledRequests, QUEUED_FIELDS,
    SCHEDULED_FIELDS,
};
use super::{Number, MAX_PAYLOAD_BYTES, MAX_WORKER_ID_BYTES, ROOT_KEYS};
use crate::FPM_SCHEMA_VERSION;

/// `name` encoded as a msgpack fixstr (`L` = header byte + name bytes); checked at compile time.
const fn fixstr<const L: usize>(name: &str) -> [u8; L] {
    let bytes = name.as_bytes();
    assert!(bytes.len() < 32 && bytes.len() + 1 == L);
    let mut out = [0u8; L];
    out[0] = 0xa0 | bytes.len() as u8;
    let mut i = 0;
    while i < bytes.len() {
        out[i + 1] = bytes[i];
        i += 1;
    }
    out
}

/// Consume the fixstr key `$name` (a constant expression) or return `None` from the caller.
macro_rules! expect_key {
    ($cursor:expr, $name:expr) => {{
        const NAME: &str = $name;
        const KEY: [u8; NAME.len() + 1] = fixstr::<{ NAME.len() + 1 }>(NAME);
        $cursor.key(&KEY)?
    }};
}

/// Decode one statistics fixmap whose fields are `$table[$i]` for the listed `$i`, in order.
macro_rules! stats_map {
    ($cursor:expr, $ty:ty, $table:expr, [$($i:literal),+]) => {{
        const LEN: usize = $table.len();
        const _: () = assert!(LEN < 16 && [$($i),+].len() == LEN);
        if $cursor.byte()? != 0x80 | LEN as u8 {
            return None;
        }
        let mut out = <$ty>::default();
        $(
            expect_key!($cursor, $table[$i].name);
            match $table[$i].kind {
                FieldKind::Count => *out.counts.get_mut($table[$i].slot)? = $cursor.count()?,
                FieldKind::Variance => {
                    *out.variances.get_mut($table[$i].slot)? = $cursor.non_negative_float()?
                }
            }
        )+
        out
    }};
}

/// Forward-only reader over the unread tail of the payload; every read is checked.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    #[inline(always)]
    fn byte(&mut self) -> Option<u8> {
        let (&b, tail) = self.rest.split_first()?;
        self.rest = tail;
        Some(b)
    }

    #[inline(always)]
    fn chunk<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, tail) = self.rest.split_first_chunk::<N>()?;
        self.rest = tail;
        Some(*head)
    }

    #[inline(always)]
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    /// Consume `key` (header and bytes) if the payload continues with exactly it.
    #[inline(always)]
    fn key<const L: usize>(&mut self, key: &[u8; L]) -> Option<()> {
        let (head, tail) = self.rest.split_first_chunk::<L>()?;
        if head != key {
            return None;
        }
        self.rest = tail;
        Some(())
    }

    /// Any msgpack integer or float, widened exactly as the general decoder does.
    #[inline(always)]
    fn number(&mut self) -> Option<Number> {
        let m = self.byte()?;
        if m < 0x80 {
            return Some(Number::UInt(u64::from(m)));
        }
        Some(match m {
            0xcb => Number::Float(f64::from_be_bytes(self.chunk()?)),
            0xcc => Number::UInt(u64::from(self.byte()?)),
            0xcd => Number::UInt(u64::from(u16::from_be_bytes(self.chunk()?))),
            0xce => Number::UInt(u64::from(u32::from_be_bytes(self.chunk()?))),
            0xcf => Number::UInt(u64::from_be_bytes(self.chunk()?)),
            0xd0 => signed(i64::from(self.byte()? as i8)),
            0xd1 => signed(i64::from(i16::from_be_bytes(self.chunk()?))),
            0xd2 => signed(i64::from(i32::from_be_bytes(self.chunk()?))),
            0xd3 => signed(i64::from_be_bytes(self.chunk()?)),
            0xca => Number::Float(f64::from(f32::from_be_bytes(self.chunk()?))),
            0xe0..=0xff => Number::Int(i64::from(m as i8)),
            _ => return None,
        })
    }

    /// A non-negative integer that fits i64.
    #[inline(always)]
    fn count(&mut self) -> Option<i64> {
        match self.number()? {
            Number::UInt(v) => i64::try_from(v).ok(),
            Number::Int(_) | Number::Float(_) => None,
        }
    }

    /// A non-negative integer in the full u64 range.
    #[inline(always)]
    fn unsigned(&mut self) -> Option<u64> {
        match self.number()? {
            Number::UInt(v) => Some(v),
            Number::Int(_) | Number::Float(_) => None,
        }
    }

    /// A non-negative finite float (integers converted), as the general decoder accepts it.
    #[inline(always)]
    fn non_negative_float(&mut self) -> Option<f64> {
        let v = match self.number()? {
            Number::Int(v) => v as f64,
            Number::UInt(v) => v as f64,
            Number::Float(v) => v,
        };
        // Finite, so `>= 0.0` is "not negative"; `-0.0` passes, as in the general decoder.
        (v.is_finite() && v >= 0.0).then_some(v)
    }

    /// A UTF-8 string of at most `MAX_WORKER_ID_BYTES` bytes in any msgpack str form.
    #[inline(always)]
    fn worker_id(&mut self) -> Option<&'a str> {
        let m = self.byte()?;
        let n = match m {
            0xa0..=0xbf => usize::from(m & 0x1f),
            0xd9 => usize::from(self.byte()?),
            0xda => usize::from(u16::from_be_bytes(self.chunk()?)),
            0xdb => u32::from_be_bytes(self.chunk()?) as usize,
            _ => return None,
        };
        if n > MAX_WORKER_ID_BYTES {
            return None;
        }
        std::str::from_utf8(self.take(n)?).ok()
    }
}

/// Normalise a signed msgpack integer: non-negative values become `UInt`.
#[inline(always)]
fn signed(v: i64) -> Number {
    if v < 0 {
        Number::Int(v)
    } else {
        Number::UInt(v as u64)
    }
}

/// Decode `payload` if it has the canonical layout and is valid; `None` means "use the general
/// decoder" (it may still be valid in another layout, or it is invalid).
#[inline]
pub(super) fn decode_canonical(payload: &[u8]) -> Option<FpmRef<'_>> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return None;
    }
    let mut c = Cursor { rest: payload };
    if c.byte()? != 0x80 | ROOT_KEYS.len() as u8 {
        return None;
    }
    expect_key!(c, ROOT_KEYS[0]);
    if !matches!(c.number()?, Number::UInt(v) if v == FPM_SCHEMA_VERSION as u64) {
        return None;
    }
    expect_key!(c, ROOT_KEYS[1]);
    let worker_id = c.worker_id()?;
    expect_key!(c, ROOT_KEYS[2]);
    let dp_rank = c.count()?;
    expect_key!(c, ROOT_KEYS[3]);
    let counter_id = c.unsigned()?;
    expect_key!(c, ROOT_KEYS[4]);
    let wall_time = c.non_negative_float()?;
    expect_key!(c, ROOT_KEYS[5]);
    let scheduled = stats_map!(
        c,
        ScheduledRequests,
        SCHEDULED_FIELDS,
        [0, 1, 2, 3, 4, 5, 6]
    );
    expect_key!(c, ROOT_KEYS[6]);
    let queued = stats_map!(c, QueuedRequests, QUEUED_FIELDS, [0, 1, 2, 3, 4, 5]);
    if !c.rest.is_empty() {
        return None;
    }
    Some(FpmRef {
        worker_id,
        sample: FpmSample {
            dp_rank,
            counter_id,
            wall_time,
            scheduled,
            queued,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::decode_general;
    use super::*;
    use crate::fpm::encode;

    fn record(worker_id: &str, big: i64, wall_time: f64) -> FpmRef<'_> {
        FpmRef {
            worker_id,
            sample: FpmSample {
                dp_rank: 3,
                counter_id: big as u64,
                wall_time,
                scheduled: ScheduledRequests {
                    counts: [1, 512, big, 48, 200],
                    variances: [1234.5, 0.0],
                },
                queued: QueuedRequests {
                    counts: [0, 3000, 127, 128],
                    variances: [2.5e6, -0.0],
                },
            },
        }
    }

    /// The fast path may only answer for payloads the general decoder accepts identically.
    fn assert_agrees(payload: &[u8], what: &str) {
        if let Some(fast) = decode_canonical(payload) {
            assert_eq!(decode_general(payload), Ok(fast), "{what}");
        }
    }

    #[test]
    fn canonical_encodings_take_the_fast_path() {
        let long_id = "w".repeat(MAX_WORKER_ID_BYTES);
        let cases: [(&str, FpmRef<'_>); 5] = [
            (
                "short id",
                record("vllm-decode-0-6f9c2d7b84-x2k9q", 70_000, 0.0123),
            ),
            ("empty id", record("", 0, 0.0)),
            ("fixstr limit id", record(&long_id[..31], 255, 1.0)),
            ("str8 id", record(&long_id[..32], 65_536, 2.0)),
            ("str16 id at limit", record(&long_id, i64::MAX, 3.0)),
        ];
        for (what, rec) in cases {
            let payload = encode(&rec);
            assert_eq!(decode_canonical(&payload), Some(rec), "{what}");
            assert_eq!(decode_general(&payload), Ok(rec), "{what}");
        }
    }

    #[test]
    fn worker_id_one_byte_over_the_limit_falls_back() {
        let id = "w".repeat(MAX_WORKER_ID_BYTES + 1);
        let payload = encode(&record(&id, 1, 1.0));
        assert_eq!(decode_canonical(&payload), None);
    }

    #[test]
    fn every_single_byte_mutation_agrees_with_the_general_decoder() {
        let payload = encode(&record("worker-a", 70_000, 0.5));
        let mut mutated = payload.clone();
        for i in 0..payload.len() {
            for b in [0x00, 0x01, 0x7f, 0x80, 0xa0, 0xc1, 0xcb, 0xcf, 0xd3, 0xff] {
                mutated[i] = b;
                assert_agrees(&mutated, &format!("byte {i} = {b:#04x}"));
            }
            mutated[i] = payload[i] ^ 0x20;
            assert_agrees(&mutated, &format!("byte {i} case-flipped"));
            mutated[i] = payload[i];
        }
    }

    #[test]
    fn truncated_and_extended_payloads_fall_back() {
        let payload = encode(&record("worker-a", 1, 0.5));
        for cut in 0..payload.len() {
            assert_eq!(decode_canonical(&payload[..cut]), None, "cut at {cut}");
        }
        let mut longer = payload.clone();
        longer.push(0xc0);
        assert_eq!(decode_canonical(&longer), None);
    }

    #[test]
    fn rejected_values_fall_back() {
        let negative_float = record("w", 1, -1.0);
        let nan = record("w", 1, f64::NAN);
        let negative_count = FpmRef {
            sample: FpmSample {
                dp_rank: -1,
                ..record("w", 1, 1.0).sample
            },
            ..record("w", 1, 1.0)
        };
        for (what, rec) in [
            ("negative wall_time", negative_float),
            ("NaN wall_time", nan),
            ("negative dp_rank", negative_count),
        ] {
            let payload = encode(&rec);
            assert_eq!(decode_canonical(&payload), None, "{what}");
            assert!(decode_general(&payload).is_err(), "{what}");
        }
    }
}
