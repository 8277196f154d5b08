"""Pure-Python reference of the native sliding-window regression
(``sla_planner._native.SlidingRegression`` and ``estimate_many``).

Each time bucket keeps a count, the means and the co-moment matrix of ``(x_1, .., x_k, y)``
(Welford's update per sample, O(1)); a fit merges the buckets inside the window with Chan's
formula and solves the k x k normal equations of the centred data. Centred statistics keep
token-sized features (x ~ 1e6) from cancelling as raw sums of squares would. This module does
the same float operations in the same order as the Rust code, so both give the same numbers.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

from ..errors import KernelError

__all__ = [
    "SlidingRegression",
    "estimate_many",
    "MAX_FEATURES",
    "MAX_BUCKETS",
    "FEATURE_RTOL",
    "COLLINEAR_RTOL",
]

MAX_FEATURES = 2
MAX_BUCKETS = 1_000_000
FEATURE_RTOL = 1e-12
COLLINEAR_RTOL = 1e-10
_MAX_BUCKET_INDEX = 2.0**62
_EMPTY = -(2**63)


def _as_float(value: Any) -> float:
    """float() without str/bytes parsing (the native side only takes numbers)."""
    if isinstance(value, (str, bytes, bytearray)):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _bucket_index(t_s: float, bucket_s: float) -> int | None:
    q = t_s / bucket_s
    return math.floor(q) if abs(q) < _MAX_BUCKET_INDEX else None


class _Moments:
    __slots__ = ("n", "mean", "com")

    def __init__(self, d: int) -> None:
        self.n = 0
        self.mean = [0.0] * d
        self.com = [[0.0] * d for _ in range(d)]

    def add(self, z: list[float]) -> None:
        d = len(z)
        self.n += 1
        n = float(self.n)
        delta = [z[j] - self.mean[j] for j in range(d)]
        for j in range(d):
            self.mean[j] += delta[j] / n
        for a in range(d):
            for b in range(a, d):
                self.com[a][b] += delta[a] * (z[b] - self.mean[b])

    def merge(self, other: _Moments) -> None:
        if other.n == 0:
            return
        d = len(self.mean)
        if self.n == 0:
            self.n = other.n
            self.mean = list(other.mean)
            self.com = [list(row) for row in other.com]
            return
        na, nb = float(self.n), float(other.n)
        n = na + nb
        delta = [other.mean[j] - self.mean[j] for j in range(d)]
        f = na * nb / n
        for a in range(d):
            for b in range(a, d):
                self.com[a][b] = self.com[a][b] + other.com[a][b] + delta[a] * delta[b] * f
        for j in range(d):
            self.mean[j] += delta[j] * nb / n
        self.n += other.n


class SlidingRegression:
    """Time-bucketed sliding-window OLS with intercept over 1 or 2 features."""

    def __init__(self, n_features: int, window_s: float, bucket_s: float, min_observations: int = 5) -> None:
        n_features = operator.index(n_features)
        min_observations = operator.index(min_observations)
        window_s = float(window_s)
        bucket_s = float(bucket_s)
        if not 1 <= n_features <= MAX_FEATURES:
            raise KernelError(f"n_features must be 1 or 2, got {n_features}")
        if not (math.isfinite(window_s) and window_s > 0.0):
            raise KernelError(f"window_s must be finite and > 0, got {window_s}")
        if not (math.isfinite(bucket_s) and 0.0 < bucket_s <= window_s):
            raise KernelError(f"bucket_s must be finite, > 0 and <= window_s ({window_s}), got {bucket_s}")
        n_buckets = math.ceil(window_s / bucket_s)
        if n_buckets > MAX_BUCKETS:
            raise KernelError(f"window_s / bucket_s must be <= {MAX_BUCKETS} buckets, got {n_buckets}")
        if min_observations < 1:
            raise KernelError(f"min_observations must be >= 1, got {min_observations}")
        self._k = n_features
        self._window_s = window_s
        self._bucket_s = bucket_s
        self._min_obs = min_observations
        self._index = [_EMPTY] * n_buckets
        self._moments = [_Moments(n_features + 1) for _ in range(n_buckets)]
        self._last_rejection: str | None = None
        self._dropped_invalid = 0
        self._dropped_late = 0

    n_features = property(lambda self: self._k, doc="Number of features (1 or 2).")
    window_s = property(lambda self: self._window_s, doc="Window length in seconds.")
    bucket_s = property(lambda self: self._bucket_s, doc="Bucket length in seconds.")
    n_buckets = property(lambda self: len(self._index), doc="Number of buckets in the ring.")
    min_observations = property(lambda self: self._min_obs, doc="Samples needed for a fit.")
    last_rejection = property(
        lambda self: self._last_rejection,
        doc='Why the last fit returned None: "insufficient", "singular", "negative_slope" (else None).',
    )
    dropped_invalid = property(lambda self: self._dropped_invalid, doc="Samples dropped for NaN/inf or time range.")
    dropped_late = property(lambda self: self._dropped_late, doc="Samples whose bucket already left the ring.")

    def _add(self, t_s: float, xs: list[float], y: float) -> None:
        z = [*xs, y]
        if not (math.isfinite(t_s) and all(math.isfinite(v) for v in z)):
            self._dropped_invalid += 1
            return
        b = _bucket_index(t_s, self._bucket_s)
        if b is None:
            self._dropped_invalid += 1
            return
        slot = b % len(self._index)
        if self._index[slot] < b:
            self._index[slot] = b
            self._moments[slot] = _Moments(self._k + 1)
        elif self._index[slot] > b:
            self._dropped_late += 1
            return
        self._moments[slot].add(z)

    def add(self, t_s: float, x: Any, y: float) -> None:
        """Add one sample: ``x`` is a float (1 feature) or a sequence of ``n_features`` floats."""
        t, yv = _as_float(t_s), _as_float(y)
        try:
            xs = [_as_float(x)]
        except TypeError:
            try:
                xs = [_as_float(v) for v in x]
            except TypeError:
                raise KernelError(f"x must be a float or a sequence of {self._k} floats") from None
        if len(xs) != self._k:
            raise KernelError(f"x must have {self._k} values, got {len(xs)}")
        self._add(t, xs, yv)

    def add_many(self, t: Any, X: Any, y: Any) -> None:
        """Add samples: ``t`` (n,), ``X`` (n, n_features) or (n,) for one feature, ``y`` (n,)."""
        ta, xa, ya = _float_array(t, "t"), _float_array(X, "X"), _float_array(y, "y")
        rows, cols = _matrix_shape(xa, "X")
        if ta.ndim != 1 or ya.ndim != 1 or cols != self._k or ta.shape[0] != rows or ya.shape[0] != rows:
            raise KernelError(
                f"add_many needs t (n,), X (n, {self._k}) and y (n,); "
                f"got t {list(ta.shape)}, X {list(xa.shape)}, y {list(ya.shape)}"
            )
        x2 = xa.reshape(rows, cols).tolist()
        for ti, xi, yi in zip(ta.tolist(), x2, ya.tolist()):
            self._add(ti, xi, yi)

    def fit(self, now_s: float) -> tuple[np.ndarray, int] | None:
        """``(coefficients [intercept, b1, (b2)], sample count)`` over the window ending at
        ``now_s``, or None (see ``last_rejection``)."""
        now = _as_float(now_s)
        cur = _bucket_index(now, self._bucket_s) if math.isfinite(now) else None
        if cur is None:
            raise KernelError(f"now_s must be finite and within range, got {now}")
        nb = len(self._index)
        m = _Moments(self._k + 1)
        for idx in range(cur - nb + 1, cur + 1):
            slot = idx % nb
            if self._index[slot] == idx:
                m.merge(self._moments[slot])
        coef = self._solve(m)
        if isinstance(coef, str):
            self._last_rejection = coef
            return None
        self._last_rejection = None
        return np.array(coef, dtype=np.float64), m.n

    def _solve(self, m: _Moments) -> list[float] | str:
        if m.n < self._min_obs:
            return "insufficient"
        n = float(m.n)
        c, mean = m.com, m.mean

        def constant(j: int) -> bool:
            return c[j][j] <= FEATURE_RTOL * (c[j][j] + n * mean[j] * mean[j])

        if self._k == 1:
            if constant(0):
                return "singular"
            b1 = c[0][1] / c[0][0]
            coef = [mean[1] - b1 * mean[0], b1]
        else:
            if constant(0) or constant(1):
                return "singular"
            a, b, cc = c[0][0], c[0][1], c[1][1]
            det = a * cc - b * b
            if det <= COLLINEAR_RTOL * a * cc:
                return "singular"
            b1 = (cc * c[0][2] - b * c[1][2]) / det
            b2 = (a * c[1][2] - b * c[0][2]) / det
            coef = [mean[2] - b1 * mean[0] - b2 * mean[1], b1, b2]
        if not all(math.isfinite(v) for v in coef):
            return "singular"
        if any(v < 0.0 for v in coef[1:]):
            return "negative_slope"
        return coef


def _float_array(obj: Any, name: str) -> np.ndarray:
    try:
        return np.ascontiguousarray(obj, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise KernelError(f"{name} must be convertible to a float64 array: {e}") from None


def _matrix_shape(arr: np.ndarray, name: str) -> tuple[int, int]:
    if arr.ndim == 1:
        return arr.shape[0], 1
    if arr.ndim == 2:
        return arr.shape[0], arr.shape[1]
    raise KernelError(f"{name} must be 1-D or 2-D, got {arr.ndim} dimensions")


def estimate_many(coef: Any, X: Any) -> np.ndarray:
    """Predictions ``coef[0] + X @ coef[1:]`` for every row of X ((n, k), or (n,) when k == 1)."""
    c, xa = _float_array(coef, "coef"), _float_array(X, "X")
    rows, cols = _matrix_shape(xa, "X")
    if c.ndim != 1 or c.shape[0] != cols + 1:
        raise KernelError(
            f"estimate_many needs coef of shape ({cols + 1},) for X of shape {list(xa.shape)}; "
            f"got coef {list(c.shape)}"
        )
    x2 = xa.reshape(rows, cols)
    out = np.full(rows, c[0], dtype=np.float64)
    with np.errstate(all="ignore"):  # inf/nan propagate silently, as in the native kernel
        for j in range(cols):
            out += x2[:, j] * c[j + 1]
    return out
