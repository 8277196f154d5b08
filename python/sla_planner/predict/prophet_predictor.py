"""``prophet``: Facebook Prophet over a sliding window (optional dependency, imported lazily).

Prophet needs timestamps; point ``i`` (counting every stored point since the first non-zero one)
is given ``PROPHET_EPOCH + i * interval_s``, so a point keeps its timestamp as the window slides
and seasonal phases stay put. Each forecast refits the model on the last ``window_size`` points
(Prophet has no incremental update) and is cached until the next data point. Fit failures fall
back to the last value with ``last_error`` set; cmdstanpy's and prophet's logging and warnings
are muted during the fit.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..errors import PredictorError
from .base import BasePredictor

__all__ = ["ProphetPredictor", "PROPHET_EPOCH", "load_prophet"]

PROPHET_EPOCH = "2000-01-01 00:00:00"
_NOISY_LOGGERS = ("cmdstanpy", "prophet")


def load_prophet() -> Any:
    """The ``prophet.Prophet`` class; PredictorError with the install hint when it is missing."""
    try:
        from prophet import Prophet
    except ImportError as exc:
        raise PredictorError(
            "prophet predictor: the 'prophet' package is not installed "
            f"({exc}); install it with: pip install 'sla-planner[prophet]'"
        ) from exc
    return Prophet


@contextmanager
def _muted_logs() -> Iterator[None]:
    loggers = [logging.getLogger(n) for n in _NOISY_LOGGERS]
    saved = [lg.disabled for lg in loggers]
    for lg in loggers:
        lg.disabled = True
    try:
        yield
    finally:
        for lg, was in zip(loggers, saved):
            lg.disabled = was


class ProphetPredictor(BasePredictor):
    """Prophet fitted on the last ``window_size`` points spaced ``interval_s`` apart."""

    name = "prophet"

    def __init__(
        self,
        *,
        log1p: bool = False,
        window_size: int = 300,
        interval_s: float = 60.0,
        min_points: int = 5,
    ) -> None:
        if window_size < 5:
            raise PredictorError(f"prophet predictor: window_size must be >= 5, got {window_size}")
        if min_points < 5:
            raise PredictorError(f"prophet predictor: min_points must be >= 5, got {min_points}")
        if not (math.isfinite(interval_s) and interval_s > 0.0):
            raise PredictorError(
                f"prophet predictor: interval_s must be finite and > 0, got {interval_s}"
            )
        self._prophet_cls = load_prophet()
        super().__init__(log1p=log1p, window_size=window_size, min_points=min_points)
        self.window_size = int(window_size)
        self.interval_s = float(interval_s)
        self.last_error: str | None = None
        self._cache: tuple[int, float] | None = None

    def _forecast(self) -> float:
        if self._cache is not None and self._cache[0] == self._num_points:
            return self._cache[1]
        forecast = self._fit_and_forecast()
        self._cache = (self._num_points, forecast)
        return forecast

    def _fit_and_forecast(self) -> float:
        import pandas as pd

        y = self.to_fit_space(np.fromiter(self._window, dtype=np.float64))
        first_index = self._num_points - y.size
        step = pd.Timedelta(seconds=self.interval_s)
        ds = pd.Timestamp(PROPHET_EPOCH) + step * np.arange(first_index, self._num_points + 1)
        try:
            with _muted_logs(), np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # prophet's own pandas deprecation notices
                model = self._prophet_cls()
                model.fit(pd.DataFrame({"ds": ds[:-1], "y": y}))
                yhat = float(model.predict(pd.DataFrame({"ds": ds[-1:]}))["yhat"].iloc[0])
        except Exception as exc:  # Stan, pandas and numpy failures all mean "no forecast"
            self.last_error = f"{type(exc).__name__}: {exc}"
            return self._last_value
        forecast = self.from_fit_space(yhat)
        if not math.isfinite(forecast):
            self.last_error = "non-finite forecast from prophet"
            return self._last_value
        self.last_error = None
        return forecast
