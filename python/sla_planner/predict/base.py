"""The load-predictor interface and the rules every predictor shares.

Rules (implemented once, in :class:`BasePredictor`):

* Input: a non-finite value (NaN, +-inf) counts as 0; a negative value counts as 0 too (traffic
  numbers are counts and token lengths, so a negative one is a measurement artefact).
* Leading zeros are skipped: until the first non-zero value arrives there is "no traffic yet" and
  nothing is stored. Zeros after that are ordinary data points. After a warm-up
  (:meth:`BasePredictor.mark_warmed`) the same holds for the first live values: a deployment
  that has not received traffic yet says nothing about demand, so zeros before the first live
  non-zero value leave the warmed-up history (and its forecast) as they are.
* ``ready`` says whether the predictor has enough stored points to forecast
  (``num_points >= min_points``). Until then ``predict_next()`` returns the last value observed
  (0.0 when nothing was observed), which is also the fallback whenever a model fails.
* A forecast is never negative and always finite.
* ``log1p=True`` asks the model to fit ``log1p(x)`` and map its forecast back with ``expm1``;
  each model applies it where it fits (see :meth:`BasePredictor.to_fit_space`).
"""

from __future__ import annotations

import math
import numbers
from collections import deque
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ..errors import PredictorError

__all__ = ["LoadPredictor", "BasePredictor", "sanitize_value"]

F64 = npt.NDArray[np.float64]


@runtime_checkable
class LoadPredictor(Protocol):
    """Forecasts the next value of one traffic series (request count, mean ISL or mean OSL)."""

    @property
    def name(self) -> str:
        """The predictor's name in PlannerConfig (``constant``, ``linear``, ...)."""
        ...

    @property
    def ready(self) -> bool:
        """Enough data to forecast; before that ``predict_next()`` returns the last value."""
        ...

    def add_data_point(self, value: float) -> None:
        """Append one observation (one interval's value)."""
        ...

    def predict_next(self) -> float:
        """Forecast for the next interval: finite and >= 0."""
        ...

    def get_last_value(self) -> float:
        """The last value observed after sanitising (0.0 when none)."""
        ...


def sanitize_value(value: float) -> float:
    """Map one observation onto the series: non-finite or negative -> 0.0.

    Raises PredictorError for something that is not a real number (str, bool, None).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise PredictorError(
            f"load predictor: data point must be a real number, got {type(value).__name__} "
            f"{value!r}"
        )
    v = float(value)
    if not math.isfinite(v) or v < 0.0:
        return 0.0
    return v


class BasePredictor:
    """Common rules for every load predictor; subclasses implement ``_forecast``.

    ``window_size`` bounds the stored history (None keeps everything); ``min_points`` is the
    number of stored points needed before the model's forecast is used.
    """

    name: ClassVar[str] = "base"

    def __init__(self, *, log1p: bool = False, window_size: int | None = None,
                 min_points: int = 1) -> None:
        if window_size is not None and window_size < 1:
            raise PredictorError(
                f"{self.name} predictor: window size must be >= 1, got {window_size}"
            )
        if min_points < 1:
            raise PredictorError(
                f"{self.name} predictor: min_points must be >= 1, got {min_points}"
            )
        self.log1p = bool(log1p)
        self.min_points = int(min_points)
        self._window: deque[float] = deque(maxlen=window_size)
        self._num_points = 0
        self._last_value = 0.0
        self._awaiting_live = False

    def mark_warmed(self) -> None:
        """History so far came from a warm-up: skip live zeros until live traffic shows up."""
        self._awaiting_live = self._num_points > 0

    @property
    def num_points(self) -> int:
        """Data points taken since the first non-zero value (leading zeros excluded); the
        stored window may hold fewer."""
        return self._num_points

    @property
    def ready(self) -> bool:
        """Enough stored points for the model's forecast to be used."""
        return self._num_points >= self.min_points

    def history(self) -> tuple[float, ...]:
        """The stored window, oldest first, in input space."""
        return tuple(self._window)

    def add_data_point(self, value: float) -> None:
        """Append one observation, applying the shared input rules."""
        v = sanitize_value(value)
        if v == 0.0 and self._awaiting_live:
            return  # warmed up, no live traffic yet: keep the warmed level
        self._awaiting_live = False
        self._last_value = v
        if self._num_points == 0 and v == 0.0:
            return  # no traffic yet
        self._num_points += 1
        self._window.append(v)
        self._observe(v)

    def get_last_value(self) -> float:
        """The last value observed after sanitising (0.0 when none)."""
        return self._last_value

    def predict_next(self) -> float:
        """The model's forecast once ready, else the last value; finite and >= 0."""
        if not self.ready:
            return self._last_value
        forecast = self._forecast()
        if not math.isfinite(forecast):
            return self._last_value
        return max(forecast, 0.0)

    def predict_ahead(self, steps: int) -> float:
        """Forecast for the interval ``steps`` ahead (1 = the next): the model's own multi-step
        forecast where it has one (:meth:`_forecast_ahead`), else the next interval's; finite and
        >= 0, the last value until ready."""
        if steps <= 1 or not self.ready:
            return self.predict_next()
        forecast = self._forecast_ahead(steps)
        if not math.isfinite(forecast):
            return self.predict_next()
        return max(forecast, 0.0)

    def _forecast_ahead(self, steps: int) -> float:
        """Multi-step forecast in input space; models without one repeat the next step's."""
        return self._forecast()

    def to_fit_space(self, values: F64) -> F64:
        """Values as the model fits them: ``log1p`` when enabled, else unchanged."""
        return np.log1p(values) if self.log1p else values

    def from_fit_space(self, value: float) -> float:
        """A forecast mapped back to input space (``expm1`` with log1p; inf on overflow)."""
        if not self.log1p:
            return value
        try:
            return math.expm1(value)
        except OverflowError:
            return math.inf

    def _observe(self, value: float) -> None:
        """Hook for models that update state per point (value already sanitised and stored)."""

    def _forecast(self) -> float:
        """The model's one-step-ahead forecast in input space (called only when ready)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(log1p={self.log1p}, num_points={self._num_points}, "
            f"last_value={self._last_value})"
        )
