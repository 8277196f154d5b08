"""Pure-Python reference of the native FPM codec (``sla_planner._native.encode_fpm`` /
``decode_fpm``), built on the ``msgpack`` package.

Same rules as the Rust decoder: ForwardPassMetrics schema version 1 is a msgpack map keyed by
field name; unknown keys are skipped, a missing or duplicated required key is an error, counts
are non-negative integers that fit int64, variances and ``wall_time`` are non-negative finite
floats (msgpack ints accepted). Errors are :class:`~sla_planner.errors.FpmDecodeError` with a
``kind`` (e.g. ``"missing_field"``) and a ``field`` (dotted schema path or ``None``).

For payloads that are well-formed msgpack, native and reference report the same ``kind`` and
``field``; for bytes that are not msgpack at all both raise ``FpmDecodeError`` but the kind may
differ (msgpack parses before this module validates; the native decoder streams).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import msgpack
import numpy as np
import numpy.typing as npt

from ..errors import FpmDecodeError, KernelError

__all__ = [
    "FPM_SCHEMA_VERSION",
    "MAX_PAYLOAD_BYTES",
    "MAX_WORKER_ID_BYTES",
    "MAX_MAP_ENTRIES",
    "MAX_DEPTH",
    "ROOT_KEYS",
    "SCHEDULED_FIELDS",
    "QUEUED_FIELDS",
    "encode_fpm",
    "encode_fpm_rows",
    "decode_fpm",
    "fpm_error",
]

FPM_SCHEMA_VERSION = 1
MAX_PAYLOAD_BYTES = 65_536
MAX_WORKER_ID_BYTES = 256
MAX_MAP_ENTRIES = 64
MAX_DEPTH = 16
_I64_MAX = 2**63 - 1
_U64_MAX = 2**64 - 1  # counter_id is unsigned 64-bit on the wire

ROOT_KEYS: tuple[str, ...] = (
    "version",
    "worker_id",
    "dp_rank",
    "counter_id",
    "wall_time",
    "scheduled_requests",
    "queued_requests",
)
# (name, is_count): counts are int, the rest (variances) float.
SCHEDULED_FIELDS: tuple[tuple[str, bool], ...] = (
    ("num_prefill_requests", True),
    ("sum_prefill_tokens", True),
    ("var_prefill_length", False),
    ("sum_prefill_kv_tokens", True),
    ("num_decode_requests", True),
    ("sum_decode_kv_tokens", True),
    ("var_decode_kv_tokens", False),
)
QUEUED_FIELDS: tuple[tuple[str, bool], ...] = (
    ("num_prefill_requests", True),
    ("sum_prefill_tokens", True),
    ("var_prefill_length", False),
    ("num_decode_requests", True),
    ("sum_decode_kv_tokens", True),
    ("var_decode_kv_tokens", False),
)
_NESTED = {"scheduled_requests": SCHEDULED_FIELDS, "queued_requests": QUEUED_FIELDS}

_UNPACK_OPTIONS: dict[str, Any] = {
    "raw": False,
    "strict_map_key": False,
    "max_str_len": MAX_PAYLOAD_BYTES,
    "max_bin_len": MAX_PAYLOAD_BYTES,
    "max_array_len": MAX_PAYLOAD_BYTES,
    "max_map_len": MAX_PAYLOAD_BYTES // 2,
    "max_ext_len": MAX_PAYLOAD_BYTES,
}


class _Map(list):  # type: ignore[type-arg]
    """A msgpack map as its (key, value) pairs in wire order (keeps duplicates visible)."""


def fpm_error(kind: str, field: str | None, message: str) -> FpmDecodeError:
    """An FpmDecodeError carrying ``kind`` and ``field`` like the native one."""
    return FpmDecodeError(message, kind=kind, field=field)


def _wrong_type(field: str, expected: str) -> FpmDecodeError:
    return fpm_error("wrong_type", field, f"FPM field {field} has the wrong type: expected {expected}")


def _parse(payload: bytes) -> Any:
    try:
        return msgpack.unpackb(payload, object_pairs_hook=_Map, **_UNPACK_OPTIONS)
    except msgpack.ExtraData as e:
        raise fpm_error("trailing_bytes", None, "FPM payload has trailing bytes after the root map") from e
    except UnicodeDecodeError as e:
        raise fpm_error("invalid_utf8", None, f"FPM payload has a string that is not UTF-8: {e}") from e
    except msgpack.StackError as e:
        raise fpm_error("too_deep", None, "FPM payload nests containers too deeply") from e
    except msgpack.FormatError as e:
        raise fpm_error("invalid_marker", None, "FPM payload has an invalid msgpack marker") from e
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as e:
        kind = "truncated" if "incomplete" in str(e) or isinstance(e, msgpack.OutOfData) else "malformed"
        raise fpm_error(kind, None, f"FPM payload is not valid msgpack: {e}") from e


def _check_depth(value: Any, level: int) -> None:
    """Mirror of the native skip: containers at ``level`` > MAX_DEPTH are rejected, in order."""
    if isinstance(value, list):
        if level > MAX_DEPTH:
            raise fpm_error("too_deep", None, f"FPM payload nests containers deeper than {MAX_DEPTH} levels")
        if type(value) is _Map:
            for k, v in value:
                _check_depth(k, level + 1)
                _check_depth(v, level + 1)
        else:
            for v in value:
                _check_depth(v, level + 1)


def _out_of_range(field: str) -> FpmDecodeError:
    width = "an unsigned" if field == "counter_id" else "a signed"
    return fpm_error("out_of_range", field, f"FPM field {field} does not fit {width} 64-bit integer")


def _wire_count(value: Any, field: str) -> int:
    if type(value) is not int:
        raise _wrong_type(field, "int")
    if value < 0:
        raise fpm_error("negative", field, f"FPM field {field} must be >= 0")
    if value > (_U64_MAX if field == "counter_id" else _I64_MAX):
        raise _out_of_range(field)
    return value


def _check_float(x: float, field: str) -> float:
    if not math.isfinite(x):
        raise fpm_error("non_finite", field, f"FPM field {field} must be finite")
    if x < 0.0:
        raise fpm_error("negative", field, f"FPM field {field} must be >= 0")
    return x


def _wire_float(value: Any, field: str) -> float:
    if type(value) is int:
        return _check_float(float(value), field)
    if type(value) is float:
        return _check_float(value, field)
    raise _wrong_type(field, "float or int")


def _map_pairs(value: Any, field: str) -> _Map:
    if type(value) is not _Map:
        raise _wrong_type(field, "map")
    if len(value) > MAX_MAP_ENTRIES:
        raise fpm_error("too_large", "map entries", f"FPM map entries exceeds the limit of {MAX_MAP_ENTRIES}")
    return value


def _decode_stats(value: Any, map_name: str, specs: tuple[tuple[str, bool], ...]) -> dict[str, int | float]:
    pairs = _map_pairs(value, map_name)
    known = dict(specs)
    out: dict[str, int | float] = {}
    for key, item in pairs:
        if type(key) is not str:
            raise _wrong_type(f"{map_name}.<key>", "str")
        if key not in known:
            _check_depth(item, 3)
            continue
        path = f"{map_name}.{key}"
        if key in out:
            raise fpm_error("duplicate_field", path, f"FPM field {path} appears twice")
        out[key] = _wire_count(item, path) if known[key] else _wire_float(item, path)
    for name, _ in specs:
        if name not in out:
            path = f"{map_name}.{name}"
            raise fpm_error("missing_field", path, f"FPM field {path} is missing")
    return {name: out[name] for name, _ in specs}


def decode_fpm(payload: bytes) -> dict[str, Any]:
    """Decode one FPM payload to the nested dict of the schema (raises FpmDecodeError)."""
    if not isinstance(payload, bytes):
        raise KernelError(f"payload must be bytes, got {type(payload).__name__}")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise fpm_error(
            "too_large", "payload bytes", f"FPM payload bytes exceeds the limit of {MAX_PAYLOAD_BYTES}"
        )
    pairs = _map_pairs(_parse(payload), "<payload>")
    out: dict[str, Any] = {}
    for key, value in pairs:
        if type(key) is not str:
            raise _wrong_type("<key>", "str")
        if key not in ROOT_KEYS:
            _check_depth(value, 2)
            continue
        if key in out:
            raise fpm_error("duplicate_field", key, f"FPM field {key} appears twice")
        if key == "version":
            if type(value) is not int:
                raise _wrong_type("version", "int")
            if value != FPM_SCHEMA_VERSION:
                raise fpm_error("bad_version", "version", f"FPM version {value} is not supported (expected 1)")
            out[key] = value
        elif key == "worker_id":
            if type(value) is not str:
                raise _wrong_type("worker_id", "str")
            if len(value.encode("utf-8")) > MAX_WORKER_ID_BYTES:
                raise fpm_error(
                    "too_large", "worker_id", f"FPM worker_id exceeds the limit of {MAX_WORKER_ID_BYTES}"
                )
            out[key] = value
        elif key in ("dp_rank", "counter_id"):
            out[key] = _wire_count(value, key)
        elif key == "wall_time":
            out[key] = _wire_float(value, key)
        else:
            out[key] = _decode_stats(value, key, _NESTED[key])
    for name in ROOT_KEYS:
        if name not in out:
            raise fpm_error("missing_field", name, f"FPM field {name} is missing")
    return {name: out[name] for name in ROOT_KEYS}


# ---------------------------------------------------------------------------------- encoding


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _record_int(record: dict[Any, Any], name: str, path: str) -> int:
    if name not in record:
        raise fpm_error("missing_field", path, f"FPM field {path} is missing")
    value = record[name]
    if not _is_int(value):
        raise _wrong_type(path, "int")
    if value < 0:
        raise fpm_error("negative", path, f"FPM field {path} must be >= 0")
    if value > (_U64_MAX if path == "counter_id" else _I64_MAX):
        raise _out_of_range(path)
    return int(value)


def _record_float(record: dict[Any, Any], name: str, path: str) -> float:
    if name not in record:
        raise fpm_error("missing_field", path, f"FPM field {path} is missing")
    value = record[name]
    if not (_is_int(value) or isinstance(value, float)):
        raise _wrong_type(path, "float or int")
    try:
        x = float(value)
    except OverflowError:
        raise fpm_error("out_of_range", path, f"FPM field {path} does not fit a float") from None
    return _check_float(x, path)


def _check_keys(record: dict[Any, Any], allowed: tuple[str, ...], prefix: str) -> None:
    for key in record:
        if not (isinstance(key, str) and key in allowed):
            field = f"{prefix}{key!r}"
            raise fpm_error("unknown_field", field, f"FPM record has unknown field {field}")


def _record_stats(
    record: dict[Any, Any], map_name: str, specs: tuple[tuple[str, bool], ...]
) -> dict[str, int | float]:
    if map_name not in record:
        raise fpm_error("missing_field", map_name, f"FPM field {map_name} is missing")
    stats = record[map_name]
    if not isinstance(stats, dict):
        raise _wrong_type(map_name, "dict")
    _check_keys(stats, tuple(name for name, _ in specs), f"{map_name}.")
    return {
        name: (
            _record_int(stats, name, f"{map_name}.{name}")
            if is_count
            else _record_float(stats, name, f"{map_name}.{name}")
        )
        for name, is_count in specs
    }


def encode_fpm(record: dict[str, Any]) -> bytes:
    """Encode an FPM record dict (the shape ``decode_fpm`` returns; ``version`` optional)."""
    if not isinstance(record, dict):
        raise _wrong_type("<payload>", "dict")
    _check_keys(record, ROOT_KEYS, "")
    if "version" in record:
        version = record["version"]
        if not _is_int(version):
            raise _wrong_type("version", "int")
        if version != FPM_SCHEMA_VERSION:
            raise fpm_error("bad_version", "version", f"FPM version {version} is not supported (expected 1)")
    if "worker_id" not in record:
        raise fpm_error("missing_field", "worker_id", "FPM field worker_id is missing")
    worker_id = record["worker_id"]
    if not isinstance(worker_id, str):
        raise _wrong_type("worker_id", "str")
    try:
        worker_bytes = worker_id.encode("utf-8")
    except UnicodeEncodeError:
        raise fpm_error("invalid_utf8", "worker_id", "FPM string worker_id is not valid UTF-8") from None
    if len(worker_bytes) > MAX_WORKER_ID_BYTES:
        raise fpm_error("too_large", "worker_id", f"FPM worker_id exceeds the limit of {MAX_WORKER_ID_BYTES}")
    canonical = {
        "version": FPM_SCHEMA_VERSION,
        "worker_id": str(worker_id),
        "dp_rank": _record_int(record, "dp_rank", "dp_rank"),
        "counter_id": _record_int(record, "counter_id", "counter_id"),
        "wall_time": _record_float(record, "wall_time", "wall_time"),
        "scheduled_requests": _record_stats(record, "scheduled_requests", SCHEDULED_FIELDS),
        "queued_requests": _record_stats(record, "queued_requests", QUEUED_FIELDS),
    }
    packed: bytes = msgpack.packb(canonical, use_bin_type=True)
    return packed


# ---------------------------------------------------------------------------- batch encoding

_I64_LIMIT = 2.0**63  # first float64 that no longer fits an int64 count


def _float_text(value: float) -> str:
    """``value`` the way the native error messages print it (Rust ``{:?}`` of an f64)."""
    if math.isnan(value):
        return "NaN"
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def _row_error(kind: str, row: int, cell: str, field: str, rule: str) -> FpmDecodeError:
    return fpm_error(kind, field, f"FPM row {row}: {cell} ({field}) {rule}")


def _batch_worker_ids(worker_ids: Any) -> list[str]:
    not_sequence = KernelError(f"worker_ids must be a sequence of str, got {type(worker_ids).__name__}")
    if isinstance(worker_ids, (str, bytes)):
        raise not_sequence
    try:
        n = len(worker_ids)
        items = iter(worker_ids)
    except TypeError:
        raise not_sequence from None
    out: list[str] = []
    for row, item in enumerate(items):
        cell = f"worker_ids[{row}]"
        if not isinstance(item, str):
            raise _row_error("wrong_type", row, cell, "worker_id", f"must be str, got {type(item).__name__}")
        try:
            size = len(item.encode("utf-8"))
        except UnicodeEncodeError:
            raise _row_error("invalid_utf8", row, cell, "worker_id", "is not valid UTF-8") from None
        if size > MAX_WORKER_ID_BYTES:
            rule = f"is {size} bytes, over the limit of {MAX_WORKER_ID_BYTES}"
            raise _row_error("too_large", row, cell, "worker_id", rule)
        out.append(item)
    if len(out) != n:
        raise KernelError(f"worker_ids yielded {len(out)} items but has length {n}")
    return out


def _batch_column(values: Any, name: str, dtype: type[np.generic], shape: tuple[int, ...]) -> np.ndarray:
    """``values`` as a contiguous ``dtype`` array of ``shape`` (the native conversion rules)."""
    try:
        arr = np.asarray(values)
    except Exception as e:  # noqa: BLE001 - any conversion failure is a bad argument
        raise KernelError(f"{name} must be array-like: {e}") from None
    if arr.size:
        if dtype is np.int64:
            ok = arr.dtype.kind in "iu" and np.can_cast(arr.dtype, np.int64, "safe")
            rule = "an integer array that fits int64"
        else:
            ok = arr.dtype.kind in "fiu"
            rule = "a real numeric array"
        if not ok:
            raise KernelError(f"{name} must be {rule}, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if arr.shape != shape:
        if len(shape) == 1:
            rule = f"{name} must be 1-D with len(worker_ids) = {shape[0]} entries"
        else:
            rule = f"{name} must have shape (len(worker_ids), {shape[1]}) = {shape}"
        raise KernelError(f"{rule}, got shape {arr.shape}")
    return arr


def _whole(value: float, row: int, cell: str, field: str) -> int:
    if not math.isfinite(value):
        raise _row_error("non_finite", row, cell, field, f"must be finite, got {_float_text(value)}")
    if value < 0.0:
        raise _row_error("negative", row, cell, field, f"must be >= 0, got {_float_text(value)}")
    if not value.is_integer():
        raise _row_error("not_integral", row, cell, field, f"must be a whole number, got {_float_text(value)}")
    if value >= _I64_LIMIT:
        rule = f"does not fit a signed 64-bit integer, got {_float_text(value)}"
        raise _row_error("out_of_range", row, cell, field, rule)
    return int(value)


def _non_negative(value: float, row: int, cell: str, field: str) -> float:
    if not math.isfinite(value):
        raise _row_error("non_finite", row, cell, field, f"must be finite, got {_float_text(value)}")
    if value < 0.0:
        raise _row_error("negative", row, cell, field, f"must be >= 0, got {_float_text(value)}")
    return value


def _row_stats(
    values: list[float], row: int, array: str, map_name: str, specs: tuple[tuple[str, bool], ...]
) -> dict[str, int | float]:
    out: dict[str, int | float] = {}
    for col, ((name, is_count), value) in enumerate(zip(specs, values)):
        cell, field = f"{array}[{row}, {col}]", f"{map_name}.{name}"
        out[name] = _whole(value, row, cell, field) if is_count else _non_negative(value, row, cell, field)
    return out


def _row_record(
    row: int, worker_id: str, dp_rank: int, counter_id: int, wall_time: float,
    scheduled: list[float], queued: list[float],
) -> dict[str, Any]:
    for name, value in (("dp_rank", dp_rank), ("counter_id", counter_id)):
        if value < 0:
            raise _row_error("negative", row, f"{name}[{row}]", name, f"must be >= 0, got {value}")
    return {
        "worker_id": worker_id,
        "dp_rank": dp_rank,
        "counter_id": counter_id,
        "wall_time": _non_negative(wall_time, row, f"wall_time[{row}]", "wall_time"),
        "scheduled_requests": _row_stats(scheduled, row, "scheduled", "scheduled_requests", SCHEDULED_FIELDS),
        "queued_requests": _row_stats(queued, row, "queued", "queued_requests", QUEUED_FIELDS),
    }


def encode_fpm_rows(
    worker_ids: Sequence[str] | npt.NDArray[Any],
    dp_rank: npt.ArrayLike,
    counter_id: npt.ArrayLike,
    wall_time: npt.ArrayLike,
    scheduled: npt.ArrayLike,
    queued: npt.ArrayLike,
) -> tuple[bytes, npt.NDArray[np.uint64]]:
    """Encode n records given as columns back to back; returns the buffer and n + 1 offsets.

    ``worker_ids`` is any sequence of str (a list, or a numpy object or unicode array).
    ``scheduled`` is (n, 7) and ``queued`` (n, 6) float64 in schema field order; count and sum
    columns must hold non-negative whole numbers (encoded as ints), variances non-negative
    finite floats. Bad shapes or dtypes raise KernelError; a bad value raises FpmDecodeError
    (``kind``, ``field``) naming the row and cell: worker ids are checked first, then rows in
    order. Each record is byte-identical to :func:`encode_fpm` of the same record.
    """
    ids = _batch_worker_ids(worker_ids)
    n = len(ids)
    dp = _batch_column(dp_rank, "dp_rank", np.int64, (n,)).tolist()
    ctr = _batch_column(counter_id, "counter_id", np.int64, (n,)).tolist()
    wall = _batch_column(wall_time, "wall_time", np.float64, (n,)).tolist()
    sched = _batch_column(scheduled, "scheduled", np.float64, (n, len(SCHEDULED_FIELDS))).tolist()
    queue = _batch_column(queued, "queued", np.float64, (n, len(QUEUED_FIELDS))).tolist()
    payloads = [
        encode_fpm(_row_record(row, ids[row], dp[row], ctr[row], wall[row], sched[row], queue[row]))
        for row in range(n)
    ]
    offsets = np.zeros(n + 1, dtype=np.uint64)
    offsets[1:] = np.cumsum([len(p) for p in payloads], dtype=np.uint64)
    return b"".join(payloads), offsets
