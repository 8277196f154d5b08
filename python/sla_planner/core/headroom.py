"""Headroom from forecast uncertainty: a predictive quantile of the request rate (pure).

After each interval the forecast made for it is compared with what arrived, in log1p space
(errors of a rate are multiplicative). Part of every miss is not forecast error at all: a count
over an interval of a Poisson stream varies by about ``sqrt(count)`` around its rate, and the
queueing models that size the pools already plan for that arrival noise. So the headroom covers
only the rest, the uncertainty of the *rate*: the errors' spread (``sigma``, from their median
absolute deviation, so one burst, an error of 2 or 3 in log space that the load loop answers,
does not inflate it) with the Poisson part taken out (``sigma_rate^2 = sigma^2 - 1/f``). The
planner sizes for ``median + z_q * sigma_rate`` above the point forecast, capped at doubling it;
with fewer than ``MIN_ERRORS`` errors it plans for the point forecast.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

__all__ = ["ForecastErrors", "IslMix", "MIN_ERRORS", "ISL_WINDOWS"]

_KEEP = 30
MIN_ERRORS = 8
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
        if self.quantile <= 0.0 or forecast <= 0.0 or len(self.errors) < MIN_ERRORS:
            return forecast
        z = NormalDist().inv_cdf(self.quantile)
        errors = np.asarray(self.errors)
        center = float(np.median(errors))
        sigma = 1.4826 * float(np.median(np.abs(errors - center)))
        rate_sigma = math.sqrt(max(sigma * sigma - 1.0 / forecast, 0.0))
        shift = min(max(center + z * rate_sigma, 0.0), _MAX_SHIFT)
        return max(math.expm1(math.log1p(forecast) + shift), forecast)


ISL_WINDOWS = 5


@dataclass
class IslMix:
    """The ISL histogram the prefill sizing uses: the last ``ISL_WINDOWS`` windows together.

    One minute of a heavy-tailed workload holds a handful of long prompts or none, and the
    queueing model's answer swings with them; the shape of the mix changes far more slowly than
    that. Windows with other bucket bounds start the mix afresh.
    """

    windows: deque[tuple[tuple[float, float], ...]] = field(
        default_factory=lambda: deque(maxlen=ISL_WINDOWS)
    )

    def add(self, buckets: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        """Add one window's buckets; the summed histogram of the recent windows."""
        bounds = tuple(b for b, _ in buckets)
        if self.windows and tuple(b for b, _ in self.windows[-1]) != bounds:
            self.windows.clear()
        self.windows.append(buckets)
        totals = [0.0] * len(bounds)
        for window in self.windows:
            for i, (_, count) in enumerate(window):
                totals[i] += count
        return tuple(zip(bounds, totals))
