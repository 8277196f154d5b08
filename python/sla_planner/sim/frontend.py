"""The frontend's view of traffic, as Prometheus would report it.

Cumulative counters and histogram ``_sum``/``_count`` pairs are updated as requests start, emit
their first token and finish; a window's traffic is the increase of each pair between two
snapshots, divided (``increase(X_sum[W]) / increase(X_count[W])``), exactly how the live planner
reads Prometheus. A window with no observations of a histogram reports that mean as unknown.

Observation points: ISL when a request starts; TTFT at its first token; ITL (one observation per
inter-token gap, summed), OSL and request duration when it completes. Failed requests count as
started but observe no latency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..types import ObservedTraffic
from . import _kernel as K

__all__ = ["FrontendCounters", "FrontendEmulator", "ISL_BUCKET_BOUNDS", "TTFT_BUCKET_BOUNDS_S"]

#: Upper bounds of the ISL histogram buckets (tokens), powers of two, then +inf.
ISL_BUCKET_BOUNDS: tuple[float, ...] = tuple(float(2**k) for k in range(6, 19)) + (float("inf"),)

#: Upper bounds of the TTFT histogram buckets (seconds), then +inf.
TTFT_BUCKET_BOUNDS_S: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 20.0, 30.0,
    60.0, 120.0, 300.0, float("inf"),
)


@dataclass(frozen=True)
class FrontendCounters:
    """One snapshot of the cumulative series."""

    requests_started: float = 0.0
    isl_sum: float = 0.0
    isl_count: float = 0.0
    ttft_sum_s: float = 0.0
    ttft_count: float = 0.0
    itl_sum_s: float = 0.0
    itl_count: float = 0.0
    osl_sum: float = 0.0
    osl_count: float = 0.0
    duration_sum_s: float = 0.0
    duration_count: float = 0.0
    isl_bucket_counts: tuple[float, ...] = ()
    """Requests per ISL bucket (non-cumulative; bounds in ISL_BUCKET_BOUNDS)."""
    ttft_bucket_counts: tuple[float, ...] = ()
    """First tokens per TTFT bucket (non-cumulative; bounds in TTFT_BUCKET_BOUNDS_S)."""


_SCALAR_FIELDS = tuple(
    f for f in FrontendCounters.__dataclass_fields__ if f not in ("isl_bucket_counts", "ttft_bucket_counts")
)


def _mean(d_sum: float, d_count: float) -> float | None:
    return d_sum / d_count if d_count > 0 else None


class FrontendEmulator:
    """Accumulates the frontend series from simulator records; windows them like Prometheus."""

    def __init__(self) -> None:
        self._c = np.zeros(11)
        self._bounds = np.asarray(ISL_BUCKET_BOUNDS)
        self._isl_buckets = np.zeros(len(ISL_BUCKET_BOUNDS))
        self._ttft_bounds = np.asarray(TTFT_BUCKET_BOUNDS_S)
        self._ttft_buckets = np.zeros(len(TTFT_BUCKET_BOUNDS_S))

    def on_arrivals(self, isl: npt.NDArray[np.int64]) -> None:
        """Requests started (offered load)."""
        self._c[0] += isl.shape[0]
        self._c[1] += float(isl.sum())
        self._c[2] += isl.shape[0]
        if isl.shape[0]:
            idx = np.searchsorted(self._bounds, isl, side="left")
            self._isl_buckets += np.bincount(idx, minlength=self._bounds.shape[0])

    def on_records(self, done: npt.NDArray[np.float64]) -> None:
        """First-token and completion records from the simulator (columns: _kernel.D_*)."""
        if done.shape[0] == 0:
            return
        status = done[:, K.D_STATUS]
        first = done[status == K.STATUS_FIRST_TOKEN]
        ttft = first[:, K.D_FIRST] - first[:, K.D_ARRIVAL]
        self._c[3] += float(ttft.sum())
        self._c[4] += first.shape[0]
        if first.shape[0]:
            idx = np.searchsorted(self._ttft_bounds, ttft, side="left")
            self._ttft_buckets += np.bincount(idx, minlength=self._ttft_bounds.shape[0])
        ok = done[status == K.STATUS_OK]
        gaps = np.maximum(ok[:, K.D_OSL] - 1.0, 0.0)
        self._c[5] += float((ok[:, K.D_DONE] - ok[:, K.D_FIRST]).sum())
        self._c[6] += float(gaps.sum())
        self._c[7] += float(ok[:, K.D_OSL].sum())
        self._c[8] += ok.shape[0]
        self._c[9] += float((ok[:, K.D_DONE] - ok[:, K.D_ARRIVAL]).sum())
        self._c[10] += ok.shape[0]

    def snapshot(self) -> FrontendCounters:
        """The cumulative series now."""
        values = dict(zip(_SCALAR_FIELDS, (float(x) for x in self._c)))
        return FrontendCounters(
            **values,
            isl_bucket_counts=tuple(float(x) for x in self._isl_buckets),
            ttft_bucket_counts=tuple(float(x) for x in self._ttft_buckets),
        )

    @staticmethod
    def window(before: FrontendCounters, after: FrontendCounters) -> ObservedTraffic:
        """Traffic over the window between two snapshots (means unknown when nothing observed)."""

        def inc(name: str) -> float:
            return getattr(after, name) - getattr(before, name)

        ttft = _mean(inc("ttft_sum_s"), inc("ttft_count"))
        itl = _mean(inc("itl_sum_s"), inc("itl_count"))
        return ObservedTraffic(
            num_req=inc("requests_started"),
            isl=_mean(inc("isl_sum"), inc("isl_count")),
            osl=_mean(inc("osl_sum"), inc("osl_count")),
            ttft_ms=None if ttft is None else ttft * 1e3,
            itl_ms=None if itl is None else itl * 1e3,
            request_duration_s=_mean(inc("duration_sum_s"), inc("duration_count")),
            isl_buckets=_bucket_window(
                before.isl_bucket_counts, after.isl_bucket_counts, ISL_BUCKET_BOUNDS
            ),
            ttft_buckets=_bucket_window(
                before.ttft_bucket_counts, after.ttft_bucket_counts, TTFT_BUCKET_BOUNDS_S
            ),
        )


def _bucket_window(
    before: tuple[float, ...], after: tuple[float, ...], bounds: tuple[float, ...]
) -> tuple[tuple[float, float], ...] | None:
    """(upper bound, count) per bucket over the window; None when nothing was observed."""
    if not after:
        return None
    prev = before if before else (0.0,) * len(after)
    counts = [a - b for a, b in zip(after, prev)]
    if sum(counts) <= 0:
        return None
    return tuple(zip(bounds, counts))
