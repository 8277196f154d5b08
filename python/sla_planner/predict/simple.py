"""The two model-free predictors: ``constant`` (last value) and ``linear`` (least-squares line)."""

from __future__ import annotations

import numpy as np

from ..errors import PredictorError
from .base import BasePredictor

__all__ = ["ConstantPredictor", "LinearPredictor"]


class ConstantPredictor(BasePredictor):
    """Forecasts the last value. ``log1p`` is accepted and changes nothing (expm1(log1p(x)) = x)."""

    name = "constant"

    def __init__(self, *, log1p: bool = False) -> None:
        super().__init__(log1p=log1p, window_size=1, min_points=1)

    def _forecast(self) -> float:
        return self._last_value


class LinearPredictor(BasePredictor):
    """A robust line over the last ``window_size`` points, evaluated one step ahead.

    The line is Theil-Sen: the slope is the median of the slopes between every pair of points and
    the intercept the median of ``y - slope * x``. Least squares would read one step change of
    the traffic (a burst starting) as a steep trend and forecast several times the new level for
    a whole window; the median needs most pairs to agree before it calls anything a trend, and a
    real ramp still makes them agree. With fewer than 2 stored points the forecast is the last
    value. With ``log1p`` the line is fitted to ``log1p(x)`` (exponential growth becomes a line)
    and the forecast is ``expm1``'d.
    """

    name = "linear"

    def __init__(self, *, log1p: bool = False, window_size: int = 10) -> None:
        if window_size < 2:
            raise PredictorError(f"linear predictor: window_size must be >= 2, got {window_size}")
        super().__init__(log1p=log1p, window_size=window_size, min_points=2)
        self.window_size = int(window_size)

    def _forecast(self) -> float:
        return self._forecast_ahead(1)

    def _forecast_ahead(self, steps: int) -> float:
        y = self.to_fit_space(np.fromiter(self._window, dtype=np.float64))
        n = y.size
        x = np.arange(n, dtype=np.float64)
        i, j = np.triu_indices(n, k=1)
        slope = float(np.median((y[j] - y[i]) / (x[j] - x[i])))
        intercept = float(np.median(y - slope * x))
        return self.from_fit_space(intercept + slope * (n - 1 + steps))
