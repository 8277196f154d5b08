"""Plain numpy reference of the Kalman filter bank (the oracle for sla_planner._cy.kalman).

Each of the N series is an independent local-linear-trend filter:

    state x = [level, trend],  F = [[1, 1], [0, 1]],  H = [1, 0]
    Q = diag(q_level, q_trend),  R = r

Observation rules, per series:

* A non-finite observation (NaN, +/-inf) is skipped: that series does not change.
* With ``log1p`` the filter runs on ``log1p(max(y, 0))`` and forecasts map back with ``expm1``.
* The first accepted observation initialises the series: level = y, trend = 0,
  P = diag(r, r).
* Each later one predicts (x = F x, P = F P F' + Q) then corrects with gain K = P H' / S,
  S = P[0, 0] + r. When S is 0 (exact prediction, r = 0) the predicted state is kept.
* If a correction overflows (level, trend or P not finite), the series restarts from that
  observation as if it were the first.
* ``count`` is the number of accepted observations.

``predict()`` gives the one-step-ahead forecast ``level + trend`` per series in the input
space, clamped to >= 0 (NaN for a series with no accepted observation yet).

Arithmetic (operation order, one division per correction, libm ``log1p`` / ``expm1`` through
:mod:`math`) matches the compiled kernel exactly, so results are bit-identical. Input
validation lives here only; the compiled kernel calls these helpers for anything it does not
accept on its fast path.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from ..errors import KernelError
from .interp_ref import as_array, as_real

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

__all__ = [
    "KalmanBankRef",
    "check_params",
    "check_index",
    "as_observations",
    "as_observation",
]

_CLS = "KalmanBank"


# ---------------------------------------------------------------------------------------------
# validation (one source of truth for the rules and the messages)


def check_params(
    n: object, q_level: object, q_trend: object, r: object, log1p: object
) -> tuple[int, float, float, float, bool]:
    """Validated constructor arguments: ``n`` an integer >= 0; noises finite, >= 0, not all 0."""
    try:
        n_int = operator.index(n)  # type: ignore[arg-type]
    except TypeError:
        raise KernelError(f"{_CLS}: n must be an integer, got {type(n).__name__}") from None
    if n_int < 0:
        raise KernelError(f"{_CLS}: n must be >= 0, got {n_int}")
    noises = []
    for name, value in (("q_level", q_level), ("q_trend", q_trend), ("r", r)):
        v = as_real(_CLS, name, value)
        if not (math.isfinite(v) and v >= 0.0):
            raise KernelError(f"{_CLS}: {name} must be finite and >= 0, got {v!r}")
        noises.append(v)
    if noises == [0.0, 0.0, 0.0]:
        raise KernelError(f"{_CLS}: q_level, q_trend and r cannot all be 0")
    return n_int, noises[0], noises[1], noises[2], bool(log1p)


def check_index(func: str, i: object, n: int) -> int:
    """Validated series index: an integer in ``[0, n)``."""
    try:
        k = operator.index(i)  # type: ignore[arg-type]
    except TypeError:
        raise KernelError(f"{func}: i must be an integer, got {type(i).__name__}") from None
    if not 0 <= k < n:
        raise KernelError(f"{func}: i must be in [0, {n}), got {k}")
    return k


def as_observations(values: object, n: int) -> F64:
    """One observation per series as a float64 array of shape ``(n,)``."""
    func = f"{_CLS}.update"
    arr = as_array(func, "values", values)
    if arr.shape != (n,):
        raise KernelError(f"{func}: values must have shape ({n},), got {arr.shape}")
    return arr


def as_observation(value: object) -> float:
    """One observation as a float (any real number; non-finite ones are skipped later)."""
    return as_real(f"{_CLS}.update_one", "value", value)


# ---------------------------------------------------------------------------------------------
# the filter bank


class KalmanBankRef:
    """N independent local-linear-trend Kalman filters, numpy reference."""

    def __init__(
        self, n: int, q_level: float, q_trend: float, r: float, log1p: bool = False
    ) -> None:
        self._n, self._q_level, self._q_trend, self._r, self._log1p = check_params(
            n, q_level, q_trend, r, log1p
        )
        self._level = np.zeros(self._n)
        self._trend = np.zeros(self._n)
        self._p00 = np.zeros(self._n)  # covariance P = [[p00, p01], [p01, p11]]
        self._p01 = np.zeros(self._n)
        self._p11 = np.zeros(self._n)
        self._count = np.zeros(self._n, dtype=np.int64)

    # parameters (read-only)
    @property
    def n(self) -> int:
        """Number of series."""
        return self._n

    @property
    def q_level(self) -> float:
        """Process noise variance of the level."""
        return self._q_level

    @property
    def q_trend(self) -> float:
        """Process noise variance of the trend."""
        return self._q_trend

    @property
    def r(self) -> float:
        """Observation noise variance."""
        return self._r

    @property
    def log1p(self) -> bool:
        """Whether the filters run on log1p(max(y, 0))."""
        return self._log1p

    # state (read-only views)
    @property
    def level(self) -> F64:
        """Filtered level per series (log1p space when ``log1p``)."""
        return _readonly(self._level)

    @property
    def trend(self) -> F64:
        """Filtered trend per series (per update)."""
        return _readonly(self._trend)

    @property
    def p00(self) -> F64:
        """Level variance per series."""
        return _readonly(self._p00)

    @property
    def p01(self) -> F64:
        """Level-trend covariance per series."""
        return _readonly(self._p01)

    @property
    def p11(self) -> F64:
        """Trend variance per series."""
        return _readonly(self._p11)

    @property
    def count(self) -> I64:
        """Accepted observations per series."""
        return _readonly(self._count)

    def update(self, values: npt.ArrayLike) -> None:
        """Fold one observation per series into the bank (non-finite values skip their series)."""
        y = as_observations(values, self._n)
        self._fold(np.flatnonzero(np.isfinite(y)), y)

    def update_one(self, i: int, value: float) -> None:
        """Fold one observation into series ``i`` (a non-finite value is skipped)."""
        k = check_index(f"{_CLS}.update_one", i, self._n)
        v = as_observation(value)
        if math.isfinite(v):
            y = np.zeros(self._n)
            y[k] = v
            self._fold(np.array([k]), y)

    def predict(self) -> F64:
        """One-step-ahead forecast per series, in the input space, never negative."""
        return self._forecast(np.arange(self._n))

    def predict_one(self, i: int) -> float:
        """One-step-ahead forecast of series ``i`` (NaN before its first observation)."""
        k = check_index(f"{_CLS}.predict_one", i, self._n)
        return float(self._forecast(np.array([k]))[0])

    # -----------------------------------------------------------------------------------------

    def _fold(self, idx: npt.NDArray[np.intp], y_all: F64) -> None:
        """Update the series ``idx`` (all finite observations) with ``y_all[idx]``."""
        y = y_all[idx]
        if self._log1p:
            y = _elementwise(math.log1p, np.where(y > 0.0, y, 0.0))
        seen = self._count[idx] > 0
        first = idx[~seen]
        self._init(first, y[~seen])
        step, ys = idx[seen], y[seen]
        if step.size == 0:
            return
        ql, qt, r = self._q_level, self._q_trend, self._r
        with np.errstate(over="ignore", invalid="ignore"):
            # predict
            lv = self._level[step] + self._trend[step]
            tr = self._trend[step]
            p00 = self._p00[step] + 2 * self._p01[step] + self._p11[step] + ql
            p01 = self._p01[step] + self._p11[step]
            p11 = self._p11[step] + qt
            # correct (S = 0: nothing to correct, the prediction is exact)
            s = p00 + r
            corr = s > 0.0
            inv_s = np.divide(1.0, s, out=np.zeros_like(s), where=corr)
            k0 = p00 * inv_s
            k1 = p01 * inv_s
            innov = ys - lv
            level = np.where(corr, lv + k0 * innov, lv)
            trend = np.where(corr, tr + k1 * innov, tr)
            n00 = np.where(corr, (1 - k0) * p00, p00)
            n01 = np.where(corr, (1 - k0) * p01, p01)
            n11 = np.where(corr, p11 - k1 * p01, p11)
        ok = (
            np.isfinite(level)
            & np.isfinite(trend)
            & np.isfinite(n00)
            & np.isfinite(n01)
            & np.isfinite(n11)
        )
        keep = step[ok]
        self._level[keep], self._trend[keep] = level[ok], trend[ok]
        self._p00[keep], self._p01[keep], self._p11[keep] = n00[ok], n01[ok], n11[ok]
        self._count[keep] += 1
        self._init(step[~ok], ys[~ok])  # overflow: restart from this observation

    def _init(self, idx: npt.NDArray[np.intp], y: F64) -> None:
        self._level[idx] = y
        self._trend[idx] = 0.0
        self._p00[idx] = self._r
        self._p01[idx] = 0.0
        self._p11[idx] = self._r
        self._count[idx] += 1

    def _forecast(self, idx: npt.NDArray[np.intp]) -> F64:
        with np.errstate(over="ignore"):
            f = self._level[idx] + self._trend[idx]
        if self._log1p:
            f = _elementwise(_expm1, f)
        out = np.where(f <= 0.0, 0.0, f)
        out[self._count[idx] == 0] = np.nan
        return out


def _expm1(v: float) -> float:
    """libm expm1, returning +inf where :func:`math.expm1` raises on overflow."""
    try:
        return math.expm1(v)
    except OverflowError:
        return math.inf


def _elementwise(fn: Callable[[float], float], a: F64) -> F64:
    """Apply a scalar libm function (as the compiled kernel calls it) to each element."""
    return np.fromiter(map(fn, a.tolist()), dtype=np.float64, count=a.shape[0])


_A = TypeVar("_A", bound=np.ndarray)  # type: ignore[type-arg]


def _readonly(a: _A) -> _A:
    view = a.view()
    view.flags.writeable = False
    return view  # type: ignore[return-value]
