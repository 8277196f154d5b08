"""Load predictors: constant, linear, kalman, arima, prophet; warm-up from traces.

Every predictor follows the rules of :class:`BasePredictor` (non-finite or negative input is 0,
leading zeros are skipped, forecasts are finite and never negative, the last value until the
model is ready). ``prophet`` is an optional dependency imported only when that predictor is built.
"""

from __future__ import annotations

from .arima import ArimaPredictor
from .base import BasePredictor, LoadPredictor, sanitize_value
from .bundle import Forecast, LoadPredictors
from .factory import PREDICTOR_NAMES, PredictorSettings, make_predictor, predictors_from_config
from .kalman import KalmanPredictor
from .simple import ConstantPredictor, LinearPredictor
from .warmup import TrafficBucket, warm_up, warmup_series

__all__ = [
    "LoadPredictor",
    "BasePredictor",
    "sanitize_value",
    "ConstantPredictor",
    "LinearPredictor",
    "KalmanPredictor",
    "ArimaPredictor",
    "Forecast",
    "LoadPredictors",
    "PREDICTOR_NAMES",
    "PredictorSettings",
    "make_predictor",
    "predictors_from_config",
    "TrafficBucket",
    "warmup_series",
    "warm_up",
]
