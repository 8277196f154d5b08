"""Headroom from forecast uncertainty: a predictive quantile of the request count (pure).

After each interval the forecast made for it is compared with what arrived, in log1p space
(errors of a rate are multiplicative). The planner then sizes for the ``quantile`` of the
forecast: the point forecast shifted by ``median + z_q * sigma`` of the recent errors, with sigma
from their median absolute deviation, so the everyday miss sets the headroom and a burst (an
error of 2 or 3 in log space, which the load loop answers) does not inflate it for the next half
hour. The shift is capped at doubling the forecast. Until enough errors are known, arrivals are
taken as Poisson around the forecast (``f + z_q * sqrt(f)``), which is also the least headroom
ever used: a count over an interval is at least that noisy.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

__all__ = ["ForecastErrors"]

_KEEP = 30
_MIN_ERRORS = 8
_MAX_SHIFT = math.log(2.0)


@dataclass
class ForecastErrors:
    """Recent one-interval forecast errors of the request count, and the quantile they give."""

    quantile: float
    errors: deque[float] = field(default_factory=lambda: deque(maxlen=_KEEP))
    pending: float | None = None
    """The forecast made for the interval now running (compared with its count next tick)."""

    def observe(self, actual: float) -> None:
        """The count that arrived in the interval the pending forecast was for."""
        if self.pending is not None and math.isfinite(actual) and actual >= 0.0:
            self.errors.append(math.log1p(actual) - math.log1p(self.pending))
        self.pending = None

    def remember(self, forecast: float) -> None:
        """The point forecast made for the next interval."""
        self.pending = forecast if math.isfinite(forecast) and forecast >= 0.0 else None

    def upper(self, forecast: float) -> float:
        """The ``quantile`` of the request count given the point forecast (>= the forecast)."""
        if self.quantile <= 0.0 or forecast <= 0.0:
            return forecast
        z = NormalDist().inv_cdf(self.quantile)
        poisson = forecast + z * math.sqrt(forecast)
        if len(self.errors) < _MIN_ERRORS:
            return max(poisson, forecast)
        errors = np.asarray(self.errors)
        center = float(np.median(errors))
        sigma = 1.4826 * float(np.median(np.abs(errors - center)))
        shift = min(max(center + z * sigma, 0.0), _MAX_SHIFT)
        empirical = math.expm1(math.log1p(forecast) + shift)
        return max(empirical, poisson, forecast)
