"""``kalman``: a local-linear-trend Kalman filter (a bank of one from sla_planner.kernels)."""

from __future__ import annotations

import numpy as np

from ..errors import KernelError, PredictorError
from ..kernels import KalmanBank
from .base import BasePredictor

__all__ = ["KalmanPredictor"]


class KalmanPredictor(BasePredictor):
    """Level + trend filter; its forecast is used after ``min_points`` stored observations.

    ``q_level`` / ``q_trend`` are the process noise of level and trend, ``r`` the measurement
    noise, all in the space the filter runs in. With ``log1p`` the bank itself filters
    ``log1p(x)`` and maps forecasts back, so this class does not transform values.
    """

    name = "kalman"

    def __init__(
        self,
        *,
        log1p: bool = False,
        q_level: float = 0.1,
        q_trend: float = 0.01,
        r: float = 1.0,
        min_points: int = 10,
    ) -> None:
        super().__init__(log1p=log1p, window_size=1, min_points=min_points)
        try:
            self._bank = KalmanBank(1, float(q_level), float(q_trend), float(r), log1p=self.log1p)
        except KernelError as exc:
            raise PredictorError(f"kalman predictor: {exc}") from exc
        self._obs = np.zeros(1, dtype=np.float64)

    def _observe(self, value: float) -> None:
        self._obs[0] = value
        self._bank.update(self._obs)

    def _forecast(self) -> float:
        return float(self._bank.predict()[0])
