"""The three predictors the planner runs side by side (request count, mean ISL, mean OSL)."""

from __future__ import annotations

from dataclasses import dataclass

from ..types import TrafficForecast
from .base import LoadPredictor

__all__ = ["Forecast", "LoadPredictors"]


@dataclass(frozen=True)
class Forecast:
    """Forecast for the next interval: request count and mean ISL / OSL (tokens)."""

    num_req: float
    isl: float
    osl: float

    def to_traffic(self, interval_s: float) -> TrafficForecast:
        """As the planner's TrafficForecast over an interval of ``interval_s`` seconds."""
        return TrafficForecast(
            num_req=self.num_req, isl=self.isl, osl=self.osl, interval_s=interval_s
        )


@dataclass
class LoadPredictors:
    """One predictor per traffic series, fed and queried together."""

    num_req: LoadPredictor
    isl: LoadPredictor
    osl: LoadPredictor

    @property
    def ready(self) -> bool:
        """All three predictors have enough data for their model's forecast."""
        return self.num_req.ready and self.isl.ready and self.osl.ready

    def observe(self, num_req: float, isl: float | None, osl: float | None) -> None:
        """Feed one interval: request count, mean ISL and mean OSL (tokens).

        A mean that is unknown (None: an idle window has no requests to average) leaves its
        predictor untouched rather than teaching it a zero-length request.
        """
        self.num_req.add_data_point(num_req)
        if isl is not None:
            self.isl.add_data_point(isl)
        if osl is not None:
            self.osl.add_data_point(osl)

    def mark_warmed(self) -> None:
        """The history so far is a warm-up (see BasePredictor.mark_warmed)."""
        for predictor in (self.num_req, self.isl, self.osl):
            mark = getattr(predictor, "mark_warmed", None)
            if mark is not None:
                mark()

    def forecast_ahead(self, steps: int) -> float:
        """The request count forecast for the interval ``steps`` ahead (1 = the next)."""
        ahead = getattr(self.num_req, "predict_ahead", None)
        return float(ahead(steps)) if ahead is not None else self.num_req.predict_next()

    def forecast(self) -> Forecast:
        """Each predictor's forecast for the next interval."""
        return Forecast(
            num_req=self.num_req.predict_next(),
            isl=self.isl.predict_next(),
            osl=self.osl.predict_next(),
        )
