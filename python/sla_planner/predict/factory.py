"""Build predictors by name, or the planner's three from its configuration."""

from __future__ import annotations

from typing import Protocol

from ..errors import PredictorError
from .arima import ArimaPredictor
from .base import LoadPredictor
from .bundle import LoadPredictors
from .kalman import KalmanPredictor
from .simple import ConstantPredictor, LinearPredictor

__all__ = ["PREDICTOR_NAMES", "PredictorSettings", "make_predictor", "predictors_from_config"]

PREDICTOR_NAMES: tuple[str, ...] = ("constant", "linear", "kalman", "arima", "prophet")


class PredictorSettings(Protocol):
    """The PlannerConfig fields the predictors read (duck-typed; any object with them works)."""

    @property
    def load_predictor(self) -> str: ...
    @property
    def load_predictor_log1p(self) -> bool: ...
    @property
    def linear_window_size(self) -> int: ...
    @property
    def prophet_window_size(self) -> int: ...
    @property
    def kalman_q_level(self) -> float: ...
    @property
    def kalman_q_trend(self) -> float: ...
    @property
    def kalman_r(self) -> float: ...
    @property
    def kalman_min_points(self) -> int: ...
    @property
    def throughput_adjustment_interval(self) -> float: ...
    @property
    def load_predictor_warmup_trace(self) -> str | None: ...


def make_predictor(
    name: str,
    *,
    log1p: bool,
    linear_window_size: int = 10,
    prophet_window_size: int = 300,
    kalman_q_level: float = 0.1,
    kalman_q_trend: float = 0.01,
    kalman_r: float = 1.0,
    kalman_min_points: int = 10,
    interval_s: float = 60.0,
) -> LoadPredictor:
    """A fresh predictor called ``name`` (one of PREDICTOR_NAMES); PredictorError otherwise."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key == "constant":
        return ConstantPredictor(log1p=log1p)
    if key == "linear":
        return LinearPredictor(log1p=log1p, window_size=linear_window_size)
    if key == "kalman":
        return KalmanPredictor(
            log1p=log1p,
            q_level=kalman_q_level,
            q_trend=kalman_q_trend,
            r=kalman_r,
            min_points=kalman_min_points,
        )
    if key == "arima":
        return ArimaPredictor(log1p=log1p)
    if key == "prophet":
        from .prophet_predictor import ProphetPredictor

        return ProphetPredictor(log1p=log1p, window_size=prophet_window_size, interval_s=interval_s)
    raise PredictorError(
        f"load_predictor: unknown predictor {name!r}; allowed: {', '.join(PREDICTOR_NAMES)}"
    )


def predictors_from_config(cfg: PredictorSettings) -> LoadPredictors:
    """The three predictors ``cfg`` asks for, warmed up from its trace when one is set.

    The warm-up is strict: a malformed trace line is a TraceFormatError naming file and line,
    so a bad warm-up trace stops the planner at startup rather than skewing its forecasts.
    """
    interval_s = float(cfg.throughput_adjustment_interval)

    def build() -> LoadPredictor:
        return make_predictor(
            cfg.load_predictor,
            log1p=cfg.load_predictor_log1p,
            linear_window_size=cfg.linear_window_size,
            prophet_window_size=cfg.prophet_window_size,
            kalman_q_level=cfg.kalman_q_level,
            kalman_q_trend=cfg.kalman_q_trend,
            kalman_r=cfg.kalman_r,
            kalman_min_points=cfg.kalman_min_points,
            interval_s=interval_s,
        )

    predictors = LoadPredictors(num_req=build(), isl=build(), osl=build())
    if cfg.load_predictor_warmup_trace:
        from .warmup import warm_up

        warm_up(predictors, cfg.load_predictor_warmup_trace, interval_s)
    return predictors
