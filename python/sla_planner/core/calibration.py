"""Online calibration of the prefill queueing model from what the frontend observed (pure).

The model (:mod:`.queueing`) assumes Poisson arrivals into one shared queue. Real traffic comes in
batches and the pool is per-engine queues behind a router, so waits are longer than the model
says. The planner therefore learns the arrival SCV that makes the model agree with the
frontend, from the last ``WINDOWS`` windows together (one window's few hundred requests say little
about a tail of a few percent; ten do):

* with TTFT histograms: the SCV at which the model's share of first tokens within the TTFT target
  (for each window's engines serving, rate and ISL mix; requests too long to meet the target
  never do) matches the observed share, weighted by requests;
* without: the SCV that explains the mean wait (mean TTFT minus the model's mean service),
  :func:`~.queueing.implied_arrival_scv`, the median over the windows. The mean is dominated by
  the longest waits and reads higher: it is the fallback.

Windows with too little queueing to say anything (Erlang C under 2%), a pool overloaded, or a
backlog at either end of the window (its waits are the backlog's, not burstiness) are skipped. The estimate starts at Poisson and stays within
``[MIN_SCV, MAX_SCV]``. Engines slower than the profile show up the same way (their longer service
reads as more waiting), which errs on the side of more engines.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from statistics import median
from typing import Any

from ..types import ObservedTraffic
from .queueing import ServiceMoments, erlang_c, implied_arrival_scv, service_moments

__all__ = ["ArrivalBurstiness", "MIN_SCV", "MAX_SCV", "WINDOWS"]

MIN_SCV = 1.0
MAX_SCV = 30.0
WINDOWS = 10
_MIN_REQUESTS = 30
_MIN_WAIT_PROBABILITY = 0.02


@dataclass(frozen=True)
class _Window:
    moments: ServiceMoments
    engines: int
    lam: float
    requests: float
    share: float | None
    implied_from_mean: float | None


@dataclass
class ArrivalBurstiness:
    """The arrival SCV the prefill model uses, learned from the frontend's recent windows."""

    ttft_target_s: float
    scv: float = 1.0
    windows: deque[_Window] = field(default_factory=lambda: deque(maxlen=WINDOWS))
    last: dict[str, Any] | None = None

    def observe(
        self,
        traffic: ObservedTraffic,
        interval_s: float,
        engines: int | None,
        ttft_s_at: Any,
        backlog: bool = False,
    ) -> None:
        """One window: its requests, TTFT and ISL mix, with ``engines`` serving prefill;
        ``backlog`` when a prompt backlog was present at either end of the window."""
        if (
            backlog
            or engines is None
            or engines <= 0
            or traffic.num_req is None
            or traffic.num_req < _MIN_REQUESTS
            or traffic.ttft_ms is None
            or not math.isfinite(traffic.ttft_ms)
            or traffic.isl is None
            or not math.isfinite(traffic.isl)
        ):
            return
        moments = service_moments(ttft_s_at, traffic.isl, traffic.isl_buckets)
        lam = traffic.num_req / interval_s
        load = lam * moments.mean_s
        if load >= engines or erlang_c(engines, load) < _MIN_WAIT_PROBABILITY:
            return
        wait_s = traffic.ttft_ms / 1e3 - moments.mean_s
        self.windows.append(
            _Window(
                moments,
                engines,
                lam,
                float(traffic.num_req),
                traffic.ttft_share_within(self.ttft_target_s),
                implied_arrival_scv(engines, lam, moments.mean_s, moments.scv, wait_s),
            )
        )
        self.scv, self.last = self._solve()

    def _solve(self) -> tuple[float, dict[str, Any]]:
        with_share = [w for w in self.windows if w.share is not None]
        if with_share:
            scv = _scv_for_shares(with_share, self.ttft_target_s)
            return scv, {"source": "ttft_share", "windows": len(with_share)}
        implied = [w.implied_from_mean for w in self.windows if w.implied_from_mean is not None]
        if not implied:
            return self.scv, {"source": "none", "windows": 0}
        scv = min(max(median(implied), MIN_SCV), MAX_SCV)
        return scv, {"source": "mean_ttft", "windows": len(implied)}


def _share_all(w: _Window, target_s: float, scv: float) -> float:
    """The model's share of all of a window's requests with TTFT within the target."""
    feasible = w.moments.attainment(w.engines, w.lam, target_s, scv)
    if feasible is None:
        return 0.0
    mix = w.moments.mix or ((w.moments.mean_s, 1.0),)
    return feasible * sum(weight for s, weight in mix if s < target_s)


def _gap(windows: list[_Window], target_s: float, scv: float) -> float:
    """Model minus observed share within the target, weighted by requests (falls as scv grows)."""
    total = sum(w.requests for w in windows)
    return sum(
        w.requests * (_share_all(w, target_s, scv) - (w.share or 0.0)) for w in windows
    ) / total


def _scv_for_shares(windows: list[_Window], target_s: float) -> float:
    """The arrival SCV at which the model's shares match the observed ones (bisection in log
    space; an end of the range when even it cannot match)."""
    if _gap(windows, target_s, MIN_SCV) <= 0.0:
        return MIN_SCV
    if _gap(windows, target_s, MAX_SCV) >= 0.0:
        return MAX_SCV
    lo, hi = math.log(MIN_SCV), math.log(MAX_SCV)
    for _ in range(30):
        mid = (lo + hi) / 2.0
        if _gap(windows, target_s, math.exp(mid)) > 0.0:
            lo = mid
        else:
            hi = mid
    return math.exp((lo + hi) / 2.0)
