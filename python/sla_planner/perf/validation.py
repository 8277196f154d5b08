"""Validation of profiling arrays: the rules every prefill and decode profile must satisfy.

Both readers (NPZ and JSON) and the model constructors funnel through
:func:`validate_prefill_arrays` and :func:`validate_decode_arrays`. Every failure is a
:class:`~sla_planner.errors.ProfileDataError` whose message starts with the source (a file path,
or ``<arrays>`` for in-memory data) and names the array and the first bad index and value.

Rules
-----
Prefill (``prefill_isl`` tokens, ``prefill_ttft`` ms, ``prefill_thpt_per_gpu`` tokens/s/GPU):
numeric 1-D arrays of one length, at least 2 points, all finite, ISL in [1, 1e9] tokens, TTFT in
[1e-3, 1e9] ms, throughput in [1e-3, 1e9] tokens/s/GPU, no ISL value twice. The points are
returned sorted by ISL.

Decode (``x_kv_usage`` 0..1, ``y_context_length`` tokens, ``z_itl`` ms, ``z_thpt_per_gpu``
tokens/s/GPU): numeric 1-D arrays of one length, at least 3 points that are not collinear in the
(kv usage, log context) plane the decode model triangulates in, all finite, kv usage in [0, 1],
context in [1, 1e9] tokens, ITL in [1e-3, 1e9] ms, throughput in [1e-3, 1e9] tokens/s/GPU (0 only
at a sample holding no KV token, ``x_kv_usage * max_kv_tokens < 1``), no (kv usage, context)
point twice. ``max_kv_tokens`` is one integer in [1, 2**53] (a scalar, a 0-d array or a
1-element array), and at least one sample holds one KV token.

Every array holds at most :data:`MAX_PROFILE_POINTS` values.

The ranges are what ``plan`` can use: a loaded sample with no throughput (a failed measurement)
gives the decode search an operating point that serves nothing, and the bounds
keep every product of a profile value with a config value (each at most 1e15) finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ProfileDataError

F64 = npt.NDArray[np.float64]

__all__ = [
    "PREFILL_KEYS",
    "DECODE_KEYS",
    "DECODE_ARRAY_KEYS",
    "PrefillData",
    "DecodeData",
    "validate_prefill_arrays",
    "validate_decode_arrays",
    "points_collinear",
    "MAX_PROFILE_POINTS",
]

PREFILL_KEYS: tuple[str, ...] = ("prefill_isl", "prefill_ttft", "prefill_thpt_per_gpu")
DECODE_ARRAY_KEYS: tuple[str, ...] = ("x_kv_usage", "y_context_length", "z_itl", "z_thpt_per_gpu")
DECODE_KEYS: tuple[str, ...] = DECODE_ARRAY_KEYS + ("max_kv_tokens",)

# Smallest ratio of the two singular values of the normalised decode points that still counts
# as a 2-D point cloud (below it the points lie on a line and no triangulation exists).
_COLLINEAR_RATIO = 1e-9
# Largest max_kv_tokens the float arithmetic of the models represents exactly.
_MAX_KV_TOKENS_LIMIT = 2**53
#: Most values one profile array may hold (the readers check it before reading the data).
MAX_PROFILE_POINTS = 1 << 20
# Plausible ranges (see the module docstring): tokens, milliseconds, tokens/s/GPU.
_TOKENS = (1.0, 1e9)
_MS = (1e-3, 1e9)
_THROUGHPUT = (1e-3, 1e9)


@dataclass(frozen=True)
class PrefillData:
    """Validated prefill samples, sorted by ISL (read-only float64 arrays)."""

    isl: F64
    ttft_ms: F64
    thpt_per_gpu: F64
    source: str


@dataclass(frozen=True)
class DecodeData:
    """Validated scattered decode samples (read-only float64 arrays, input order kept)."""

    kv_usage: F64
    context_length: F64
    itl_ms: F64
    thpt_per_gpu: F64
    max_kv_tokens: int
    source: str


def _fail(source: str, name: str, problem: str) -> ProfileDataError:
    return ProfileDataError(f"{source}: array '{name}': {problem}")


def _frozen(a: F64) -> F64:
    out = np.ascontiguousarray(a, dtype=np.float64)
    if out is a:
        out = out.copy()
    out.setflags(write=False)
    return out


def _as_float_1d(value: Any, source: str, name: str) -> F64:
    """A numeric 1-D float64 array from an ndarray or a JSON list, or a naming error."""
    if isinstance(value, np.ndarray):
        kind = value.dtype.kind
        if kind == "O":
            raise _fail(source, name, "is an object array; only numeric arrays are accepted")
        if kind not in "iuf":
            raise _fail(source, name, f"must be numeric (int or float), got dtype {value.dtype}")
        if value.ndim != 1:
            raise _fail(source, name, f"must be 1-D, got shape {value.shape}")
        return value.astype(np.float64)
    if not isinstance(value, (list, tuple)):
        raise _fail(source, name, f"must be a list of numbers, got {type(value).__name__}")
    for idx, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            if isinstance(item, (list, tuple)):
                raise _fail(source, name, f"must be 1-D; index {idx} is a nested list")
            raise _fail(source, name, f"index {idx}: expected a number, got {item!r}")
    try:
        return np.asarray(value, dtype=np.float64)
    except OverflowError as exc:  # integers beyond float64 range
        raise _fail(source, name, f"value out of float64 range ({exc})") from None


def _check_lengths(arrays: dict[str, F64], source: str) -> int:
    lengths = {name: int(a.shape[0]) for name, a in arrays.items()}
    for name, count in lengths.items():
        if count > MAX_PROFILE_POINTS:
            raise _fail(source, name, f"{count:,} values; at most {MAX_PROFILE_POINTS:,}")
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"'{n}'={m}" for n, m in lengths.items())
        raise ProfileDataError(f"{source}: arrays must have equal lengths, got {detail}")
    return next(iter(lengths.values()))


def _check_finite(arrays: dict[str, F64], source: str) -> None:
    for name, a in arrays.items():
        bad = np.flatnonzero(~np.isfinite(a))
        if bad.size:
            i = int(bad[0])
            raise _fail(source, name, f"index {i}: value {a[i]} is not finite")


def _check_rule(
    a: F64, source: str, name: str, ok: Callable[[F64], npt.NDArray[np.bool_]], rule: str
) -> None:
    bad = np.flatnonzero(~ok(a))
    if bad.size:
        i = int(bad[0])
        raise _fail(source, name, f"index {i}: value {a[i]:g} violates rule {rule}")


def _check_range(a: F64, source: str, name: str, bounds: tuple[float, float]) -> None:
    low, high = bounds
    _check_rule(a, source, name, lambda v: (v >= low) & (v <= high), f"in [{low:g}, {high:g}]")


def _require_keys(mapping: dict[str, Any], keys: Sequence[str], source: str) -> None:
    missing = [k for k in keys if k not in mapping]
    if missing:
        present = ", ".join(sorted(mapping)) or "none"
        names = ", ".join(f"'{k}'" for k in missing)
        raise ProfileDataError(f"{source}: missing array(s) {names} (present: {present})")


def validate_prefill_arrays(arrays: dict[str, Any], source: str) -> PrefillData:
    """Check the prefill arrays in ``arrays`` (keys :data:`PREFILL_KEYS`); return them sorted."""
    _require_keys(arrays, PREFILL_KEYS, source)
    data = {k: _as_float_1d(arrays[k], source, k) for k in PREFILL_KEYS}
    n = _check_lengths(data, source)
    if n < 2:
        raise _fail(source, "prefill_isl", f"needs at least 2 points, got {n}")
    _check_finite(data, source)
    _check_range(data["prefill_isl"], source, "prefill_isl", _TOKENS)
    _check_range(data["prefill_ttft"], source, "prefill_ttft", _MS)
    _check_range(data["prefill_thpt_per_gpu"], source, "prefill_thpt_per_gpu", _THROUGHPUT)
    isl = data["prefill_isl"]
    order = np.argsort(isl, kind="stable")
    isl_sorted = isl[order]
    dup = np.flatnonzero(np.diff(isl_sorted) == 0.0)
    if dup.size:
        k = int(dup[0])
        first, second = sorted((int(order[k]), int(order[k + 1])))
        raise _fail(
            source,
            "prefill_isl",
            f"duplicate value {isl_sorted[k]:g} at indices {first} and {second}",
        )
    return PrefillData(
        isl=_frozen(isl_sorted),
        ttft_ms=_frozen(data["prefill_ttft"][order]),
        thpt_per_gpu=_frozen(data["prefill_thpt_per_gpu"][order]),
        source=source,
    )


def _max_kv_tokens(value: Any, source: str) -> int:
    name = "max_kv_tokens"
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "O":
            raise _fail(source, name, "is an object array; only numeric arrays are accepted")
        if value.dtype.kind not in "iuf":
            raise _fail(source, name, f"must be numeric, got dtype {value.dtype}")
        if value.size != 1:
            raise _fail(source, name, f"must be one value, got shape {value.shape}")
        scalar: Any = value.reshape(()).item()
    elif isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise _fail(source, name, f"must be one value, got a list of {len(value)}")
        scalar = value[0]
    else:
        scalar = value
    if isinstance(scalar, bool) or not isinstance(scalar, (int, float)):
        raise _fail(source, name, f"must be an integer > 0, got {scalar!r}")
    if isinstance(scalar, float):
        if not math.isfinite(scalar) or scalar != math.floor(scalar):
            raise _fail(source, name, f"must be an integer > 0, got {scalar!r}")
        scalar = int(scalar)
    if scalar <= 0:
        raise _fail(source, name, f"must be an integer > 0, got {scalar}")
    if scalar > _MAX_KV_TOKENS_LIMIT:
        raise _fail(source, name, f"must be at most 2**53 (exact in float64), got {scalar}")
    return int(scalar)


def points_collinear(u: F64, v: F64) -> bool:
    """True when the points (u, v) lie on one line (scale-invariant; fewer than 3 points count)."""
    if u.shape[0] < 3:
        return True
    u_span = float(u.max() - u.min())
    v_span = float(v.max() - v.min())
    if u_span == 0.0 or v_span == 0.0:
        return True
    pts = np.column_stack(((u - u.mean()) / u_span, (v - v.mean()) / v_span))
    sv = np.linalg.svd(pts, compute_uv=False)
    return bool(sv[1] <= _COLLINEAR_RATIO * sv[0])


def _check_not_collinear(x: F64, y: F64, source: str) -> None:
    # The decode model triangulates in (kv usage, log context); check in that plane.
    if points_collinear(x, np.log(y)):
        raise ProfileDataError(
            f"{source}: arrays 'x_kv_usage' and 'y_context_length': the decode samples lie on "
            "one line in the (kv usage, log context) plane; a 2-D interpolation needs at least "
            "3 non-collinear points"
        )


def _check_unique_points(x: F64, y: F64, source: str) -> None:
    order = np.lexsort((y, x))
    same = np.flatnonzero((np.diff(x[order]) == 0.0) & (np.diff(y[order]) == 0.0))
    if same.size:
        k = int(same[0])
        first, second = sorted((int(order[k]), int(order[k + 1])))
        raise ProfileDataError(
            f"{source}: arrays 'x_kv_usage' and 'y_context_length': duplicate point "
            f"({x[first]:g}, {y[first]:g}) at indices {first} and {second}"
        )


def validate_decode_arrays(arrays: dict[str, Any], source: str) -> DecodeData:
    """Check the decode arrays in ``arrays`` (keys :data:`DECODE_KEYS`); return them frozen."""
    _require_keys(arrays, DECODE_KEYS, source)
    data = {k: _as_float_1d(arrays[k], source, k) for k in DECODE_ARRAY_KEYS}
    n = _check_lengths(data, source)
    if n < 3:
        raise _fail(source, "x_kv_usage", f"needs at least 3 points, got {n}")
    _check_finite(data, source)
    x, y = data["x_kv_usage"], data["y_context_length"]
    _check_rule(x, source, "x_kv_usage", lambda a: (a >= 0) & (a <= 1), "in [0, 1]")
    _check_range(y, source, "y_context_length", _TOKENS)
    _check_range(data["z_itl"], source, "z_itl", _MS)
    _check_unique_points(x, y, source)
    _check_not_collinear(x, y, source)
    max_kv_tokens = _max_kv_tokens(arrays["max_kv_tokens"], source)
    loaded = x * max_kv_tokens >= 1.0
    if not loaded.any():
        raise _fail(
            source,
            "x_kv_usage",
            f"no sample holds one KV token (max {float(x.max()):g} x max_kv_tokens "
            f"{max_kv_tokens} < 1); throughput per KV token cannot be modelled",
        )
    thpt = data["z_thpt_per_gpu"]
    idle_ok = ~loaded & (thpt == 0.0)  # an empty cache serves nothing: zero is allowed there
    bad = np.flatnonzero(~idle_ok & ((thpt < _THROUGHPUT[0]) | (thpt > _THROUGHPUT[1])))
    if bad.size:
        i = int(bad[0])
        where = "a sample holding KV tokens" if loaded[i] else "a sample holding no KV token"
        raise _fail(
            source,
            "z_thpt_per_gpu",
            f"index {i}: value {thpt[i]:g} violates rule in [{_THROUGHPUT[0]:g}, "
            f"{_THROUGHPUT[1]:g}] ({where}; only an empty cache may have 0)",
        )
    return DecodeData(
        kv_usage=_frozen(x),
        context_length=_frozen(y),
        itl_ms=_frozen(data["z_itl"]),
        thpt_per_gpu=_frozen(data["z_thpt_per_gpu"]),
        max_kv_tokens=max_kv_tokens,
        source=source,
    )
