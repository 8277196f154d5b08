"""``arima``: statsmodels ARIMA with automatic order selection by AIC.

Order search: every (p, d, q) with p, q in 0..2 and d in 0..1 is fitted and the lowest AIC among
the fits that converged wins. The search runs on the first forecast and again every
``order_search_every`` new points; forecasts in between refit only the parameters of the cached
order, warm-started from the previous parameters (a few tens of milliseconds for 200 points).

Fit space: with ``log1p=True`` everything runs on ``log1p(x)``. Otherwise the raw series is
searched first; when its best order has neither AR nor MA terms (p == q == 0) the model is only a
constant or a random walk, which carries no information beyond the last value or the mean, so the
order is searched again on ``log1p(x)`` and that model is used (multiplicative noise, typical of
request counts, often shows structure there). ``fit_space`` and ``order`` tell what was used.

Every model has a constant. With d = 1 the model is ARMA(p, q) plus drift fitted to the first
differences, conditional on the first point (the usual "ARIMA with drift"); this is cheaper and
better behaved than statsmodels' diffuse-initialised d = 1 state space. Each fit runs on the
standardised series (zero mean, unit variance; this keeps the optimiser well-conditioned and
fast) and skips the parameter covariance, which a point forecast does not need. A series to fit
that is constant (e.g. the differences of an exact ramp) rules that candidate out. AIC values of
d = 0 and d = 1 candidates are compared as they are (d = 1 has one observation fewer), a standard
simplification for a grid this small. A candidate needs at least two points per parameter
(AR + MA + constant + variance), so short windows only try small models.

Failures never escape: any exception, non-convergence or non-finite forecast makes the
forecast the last value, ``last_error`` says why, and the next forecast searches the order
again. statsmodels' warnings are silenced inside the fits. A constant window needs no model:
its value is the forecast.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import PredictorError
from .base import F64, BasePredictor

__all__ = ["ArimaPredictor", "ARIMA_ORDERS"]

FitSpace = Literal["raw", "log1p"]
Order = tuple[int, int, int]

ARIMA_ORDERS: tuple[Order, ...] = tuple(
    (p, d, q) for p in range(3) for d in range(2) for q in range(3)
)


class _FitFailed(Exception):
    """A fit that produced no usable model (the message says why)."""


@functools.cache
def _blas_controller() -> Any:
    """threadpoolctl's controller over the BLAS libraries loaded so far (None without it).

    Built on first use, after statsmodels (and so scipy's own BLAS) has been imported.
    """
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence warnings and run BLAS single-threaded for the duration of the fits.

    ARIMA fits do thousands of tiny matrix operations; threaded BLAS only adds synchronisation,
    which on a busy or CPU-limited host made a search about ten times slower.
    """
    controller = _blas_controller()
    with ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        stack.enter_context(np.errstate(all="ignore"))
        warnings.simplefilter("ignore")
        if controller is not None:
            stack.enter_context(controller.limit(limits=1, user_api="blas"))
        yield


def _arima_class() -> Any:
    """statsmodels' ARIMA, imported on first use (importing statsmodels takes about a second).

    Call it outside :func:`_quiet`: statsmodels installs its own warning filters when first
    imported, and filters added inside ``catch_warnings`` would outrank the "ignore" there.
    """
    from statsmodels.tsa.arima.model import ARIMA

    return ARIMA


def _converged(result: Any) -> bool:
    retvals = getattr(result, "mle_retvals", None) or {}
    return bool(retvals.get("converged", True))


class ArimaPredictor(BasePredictor):
    """ARIMA(p, d, q) over the last ``window_size`` points; see the module docstring."""

    name = "arima"

    def __init__(
        self,
        *,
        log1p: bool = False,
        window_size: int = 200,
        min_points: int = 5,
        order_search_every: int = 20,
        max_iter: int = 50,
    ) -> None:
        if window_size < 5:
            raise PredictorError(f"arima predictor: window_size must be >= 5, got {window_size}")
        if min_points < 5:
            raise PredictorError(f"arima predictor: min_points must be >= 5, got {min_points}")
        if order_search_every < 1:
            raise PredictorError(
                f"arima predictor: order_search_every must be >= 1, got {order_search_every}"
            )
        if max_iter < 1:
            raise PredictorError(f"arima predictor: max_iter must be >= 1, got {max_iter}")
        super().__init__(log1p=log1p, window_size=window_size, min_points=min_points)
        self.window_size = int(window_size)
        self.order_search_every = int(order_search_every)
        self.max_iter = int(max_iter)
        self.order: Order | None = None
        self.fit_space: FitSpace | None = None
        self.last_error: str | None = None
        self._params: F64 | None = None
        self._points_at_search = 0
        self._cache: tuple[int, float] | None = None  # (num_points, forecast in input space)
        self._arima: Any = None

    def _forecast(self) -> float:
        if self._cache is not None and self._cache[0] == self._num_points:
            return self._cache[1]
        forecast = self._fit_and_forecast()
        self._cache = (self._num_points, forecast)
        return forecast

    def _fit_and_forecast(self) -> float:
        y = np.fromiter(self._window, dtype=np.float64)
        if float(np.ptp(y)) == 0.0:
            self.last_error = None
            return float(y[-1])
        self._arima = _arima_class()
        try:
            with _quiet():
                due = self._num_points - self._points_at_search >= self.order_search_every
                if self.order is None or due:
                    forecast = self._search(y)
                else:
                    forecast = self._refit(y)
        except Exception as exc:  # statsmodels/scipy raise many types (LinAlgError, ValueError..)
            self.last_error = _describe(exc)
            self.order, self.fit_space, self._params = None, None, None
            return self._last_value
        if not math.isfinite(forecast):
            self.last_error = (
                f"non-finite forecast from ARIMA{self.order} in {self.fit_space} space"
            )
            self.order, self.fit_space, self._params = None, None, None
            return self._last_value
        self.last_error = None
        return forecast

    def _search(self, y: F64) -> float:
        """Pick order and space (see module docstring); return the winning model's forecast."""
        self._points_at_search = self._num_points
        spaces: tuple[FitSpace, ...] = ("log1p",) if self.log1p else ("raw", "log1p")
        chosen: tuple[FitSpace, Order, _Fit] | None = None
        reasons: list[str] = []
        for space in spaces:
            try:
                order, fit = self._best_order(_to_space(y, space))
            except _FitFailed as exc:
                reasons.append(f"{space}: {exc}")
                continue
            if chosen is None or chosen[1][0] + chosen[1][2] == 0:
                chosen = (space, order, fit)
            if order[0] + order[2] > 0:
                break
        if chosen is None:
            raise _FitFailed("; ".join(reasons))
        self.fit_space, self.order, fit = chosen
        self._params = fit.params
        return _from_space(fit.forecast, self.fit_space)

    def _best_order(self, z: F64) -> tuple[Order, _Fit]:
        """The lowest-AIC order among those that converged on ``z``, and its fit."""
        best: tuple[Order, _Fit] | None = None
        last_failure = ""
        for order in ARIMA_ORDERS:
            p, d, q = order
            if z.size - d < 2 * (p + q + 2):
                continue  # too few points for this many parameters
            try:
                fit = self._fit(z, order, None)
            except Exception as exc:  # one candidate failing (LinAlgError, ...) rules out only it
                last_failure = _describe(exc)
                continue
            if best is None or fit.aic < best[1].aic:
                best = (order, fit)
        if best is None:
            raise _FitFailed(f"no ARIMA order could be fitted (last failure: {last_failure})")
        return best

    def _refit(self, y: F64) -> float:
        """Refit the cached order's parameters on the current window; its forecast."""
        assert self.order is not None and self.fit_space is not None
        fit = self._fit(_to_space(y, self.fit_space), self.order, self._params)
        self._params = fit.params
        return _from_space(fit.forecast, self.fit_space)

    def _fit(self, z: F64, order: Order, start_params: F64 | None) -> _Fit:
        """ARIMA(p, d, q) with a constant on ``z`` (d = 1: ARMA(p, q) + drift on its differences,
        conditional on the first point), fitted to the standardised series."""
        p, d, q = order
        x = np.diff(z) if d else z
        mean, scale = float(x.mean()), float(x.std())
        if not scale > 0.0:
            raise _FitFailed(f"ARIMA{order}: the series to fit is constant")
        result = self._arima((x - mean) / scale, order=(p, 0, q), trend="c").fit(
            start_params=start_params,
            cov_type="none",
            method_kwargs={"maxiter": self.max_iter},
        )
        if not _converged(result):
            raise _FitFailed(f"ARIMA{order} did not converge in {self.max_iter} iterations")
        # AIC of the unstandardised series: the log-likelihood loses n * log(scale)
        aic = float(result.aic) + 2.0 * x.size * math.log(scale)
        forecast = float(result.forecast(1)[0]) * scale + mean + (float(z[-1]) if d else 0.0)
        if not (math.isfinite(aic) and math.isfinite(forecast)):
            raise _FitFailed(f"ARIMA{order}: non-finite AIC or forecast")
        return _Fit(aic=aic, params=np.asarray(result.params, dtype=np.float64), forecast=forecast)


@dataclass(frozen=True)
class _Fit:
    """One fitted model: its AIC, parameters (warm start for refits) and forecast in fit space."""

    aic: float
    params: F64
    forecast: float


def _describe(exc: Exception) -> str:
    return str(exc) if isinstance(exc, _FitFailed) else f"{type(exc).__name__}: {exc}"


def _to_space(y: F64, space: FitSpace) -> F64:
    return np.log1p(y) if space == "log1p" else y


def _from_space(value: float, space: FitSpace) -> float:
    if space == "raw":
        return value
    try:
        return math.expm1(value)
    except OverflowError:
        return math.inf
