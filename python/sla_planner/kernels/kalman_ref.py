"""Plain numpy reference of the Kalman filter bank (the oracle for sla_planner._cy.kalman).

Each of the N series is an independent local-linear-trend filter:

    state x = [level, trend],  F = [[1, 1], [0, 1]],  H = [1, 0]
    Q = diag(q_level, q_trend),  R = r

``update(values)`` takes one observation per series. A series' first finite observation
initialises it (level = y, trend = 0, P = diag(r, r)); each later one runs predict
(x = F x, P = F P F' + Q) then correct. A NaN observation skips that series (no change).
``predict()`` returns the one-step-ahead forecast ``level + trend`` (NaN for a series with no
observation yet). With ``log1p`` the filter runs on ``log1p(max(y, 0))`` and forecasts are
mapped back with ``expm1``; forecasts are never negative.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ..errors import KernelError

F64 = npt.NDArray[np.float64]

__all__ = ["KalmanBankRef"]


def _check_params(n: int, q_level: float, q_trend: float, r: float) -> None:
    if n < 0:
        raise KernelError(f"KalmanBank: n must be >= 0, got {n}")
    for name, v in (("q_level", q_level), ("q_trend", q_trend), ("r", r)):
        if not np.isfinite(v) or v < 0:
            raise KernelError(f"KalmanBank: {name} must be finite and >= 0, got {v}")
    if r == 0 and q_level == 0 and q_trend == 0:
        raise KernelError("KalmanBank: q_level, q_trend and r cannot all be zero")


class KalmanBankRef:
    """N independent local-linear-trend Kalman filters, numpy reference."""

    def __init__(
        self, n: int, q_level: float, q_trend: float, r: float, log1p: bool = False
    ) -> None:
        _check_params(n, q_level, q_trend, r)
        self.n = int(n)
        self.q_level = float(q_level)
        self.q_trend = float(q_trend)
        self.r = float(r)
        self.log1p = bool(log1p)
        self.level = np.zeros(self.n)
        self.trend = np.zeros(self.n)
        # covariance entries P = [[p00, p01], [p01, p11]]
        self.p00 = np.zeros(self.n)
        self.p01 = np.zeros(self.n)
        self.p11 = np.zeros(self.n)
        self.count = np.zeros(self.n, dtype=np.int64)

    def update(self, values: F64) -> None:
        """Fold one observation per series into the bank (NaN skips that series)."""
        y_all = np.asarray(values, dtype=np.float64)
        if y_all.shape != (self.n,):
            raise KernelError(f"KalmanBank.update: expected shape ({self.n},), got {y_all.shape}")
        for k in range(self.n):
            y = float(y_all[k])
            if y != y:
                continue
            if self.log1p:
                y = float(np.log1p(max(y, 0.0)))
            if not np.isfinite(y):
                continue
            if self.count[k] == 0:
                self.level[k], self.trend[k] = y, 0.0
                self.p00[k], self.p01[k], self.p11[k] = self.r, 0.0, self.r
                self.count[k] = 1
                continue
            # predict
            lv = self.level[k] + self.trend[k]
            tr = self.trend[k]
            p00 = self.p00[k] + 2 * self.p01[k] + self.p11[k] + self.q_level
            p01 = self.p01[k] + self.p11[k]
            p11 = self.p11[k] + self.q_trend
            # correct
            s = p00 + self.r
            if s <= 0.0:
                self.level[k], self.trend[k] = lv, tr
                self.count[k] += 1
                continue
            k0 = p00 / s
            k1 = p01 / s
            innov = y - lv
            self.level[k] = lv + k0 * innov
            self.trend[k] = tr + k1 * innov
            self.p00[k] = (1 - k0) * p00
            self.p01[k] = (1 - k0) * p01
            self.p11[k] = p11 - k1 * p01
            self.count[k] += 1

    def predict(self) -> F64:
        """One-step-ahead forecast per series, in the input space, never negative."""
        out = np.full(self.n, np.nan)
        seen = self.count > 0
        f = self.level[seen] + self.trend[seen]
        if self.log1p:
            f = np.expm1(f)
        out[seen] = np.maximum(f, 0.0)
        return out
