"""A trace as arrays, its load per interval, and static deployments sized in hindsight.

``static:mean`` and ``static:peak`` are what the throughput formula (``plan_throughput``, with the
config's queue-aware settings and no correction factors) gives for the trace's mean load and for
its busiest intervals: the mean is the whole trace's request rate, mean ISL/OSL and ISL histogram
over one interval; the peak is, per pool, the largest count over every interval of the trace
sized on its own (so prefill and decode may peak in different intervals), fitted into the GPU
budget. Both use the profile
the policies plan with, as an operator sizing a deployment from its profile would.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt

from ..core.budget import fit_disagg_to_budget
from ..core.throughput import ThroughputSettings, plan_throughput
from ..errors import TraceFormatError
from ..sim.frontend import ISL_BUCKET_BOUNDS
from ..traces.mooncake import TraceRequest
from ..types import CorrectionStatus, Pool, TrafficForecast
from .matrix import TraceEntry

__all__ = ["Workload", "IntervalLoad", "resolve_trace_spec", "load_workload", "interval_loads", "static_sizes"]

F64 = npt.NDArray[np.float64]
_BUILTIN = "builtin:"


@dataclass(frozen=True)
class Workload:
    """Requests sorted by arrival: arrival time (s), ISL and OSL (tokens)."""

    arrival_s: F64
    isl: F64
    osl: F64

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    @property
    def span_s(self) -> float:
        """Seconds from the first arrival to the last."""
        if len(self) == 0:
            return 0.0
        return float(self.arrival_s[-1] - self.arrival_s[0])

    def requests(self) -> Iterator[TraceRequest]:
        """The requests as the replay reads them."""
        for i in range(len(self)):
            yield TraceRequest(float(self.arrival_s[i]), int(self.isl[i]), int(self.osl[i]), None, i + 1)


def resolve_trace_spec(spec: str) -> str:
    """``builtin:NAME`` -> the bundled trace file; anything else unchanged."""
    if not spec.startswith(_BUILTIN):
        return spec
    name = spec[len(_BUILTIN):]
    root = resources.files("sla_planner").joinpath("data", "traces")
    available = sorted(
        p.name.removesuffix(".jsonl.gz") for p in root.iterdir() if p.name.endswith(".jsonl.gz")
    )
    if name not in available:
        raise TraceFormatError(
            f"unknown built-in trace {spec!r}; available: "
            + ", ".join(_BUILTIN + n for n in available),
            path=spec,
        )
    return str(root.joinpath(name + ".jsonl.gz"))


@functools.lru_cache(maxsize=8)
def load_workload(entry: TraceEntry, seed: int) -> Workload:
    """Read (and transform) a trace entry once per process."""
    from ..traces.open import open_trace

    t: list[float] = []
    isl: list[int] = []
    osl: list[int] = []
    for req in open_trace(
        resolve_trace_spec(entry.spec),
        time_scale=entry.time_scale,
        rate_scale=entry.rate_scale,
        seed=seed,
        max_requests=entry.max_requests,
        max_duration_s=entry.max_duration_s,
    ):
        t.append(req.timestamp_s)
        isl.append(req.input_length)
        osl.append(req.output_length)
    if not t:
        raise TraceFormatError(f"trace {entry.name!r} ({entry.spec}) has no requests", path=entry.spec)
    return Workload(
        np.asarray(t, dtype=np.float64), np.asarray(isl, dtype=np.float64), np.asarray(osl, dtype=np.float64)
    )


@dataclass(frozen=True)
class IntervalLoad:
    """Arrivals of one interval: count, mean lengths and the ISL histogram the frontend reports."""

    index: int
    num_req: int
    isl: float
    osl: float
    isl_buckets: tuple[tuple[float, float], ...]


def _buckets(isl: F64) -> tuple[tuple[float, float], ...]:
    bounds = np.asarray(ISL_BUCKET_BOUNDS)
    counts = np.bincount(np.searchsorted(bounds, isl, side="left"), minlength=bounds.shape[0])
    return tuple((float(b), float(c)) for b, c in zip(bounds, counts))


def interval_loads(work: Workload, interval_s: float) -> list[IntervalLoad]:
    """Per interval ``[k I, (k+1) I)`` of simulated time with at least one arrival."""
    k = np.floor(work.arrival_s / interval_s).astype(np.int64)
    out = []
    for idx in np.unique(k):
        sel = k == idx
        out.append(
            IntervalLoad(
                int(idx),
                int(sel.sum()),
                float(work.isl[sel].mean()),
                float(work.osl[sel].mean()),
                _buckets(work.isl[sel]),
            )
        )
    return out


def _settings(cfg: Any) -> ThroughputSettings:
    return dataclasses.replace(ThroughputSettings.from_config(cfg), correction=CorrectionStatus.DISABLED)


def static_sizes(work: Workload, cfg: Any, models: Any, interval_s: float) -> dict[str, dict[Pool, int]]:
    """``{"mean": replicas, "peak": replicas}`` sized by ``plan_throughput`` in hindsight."""
    settings = _settings(cfg)
    span = max(work.span_s, interval_s)
    mean = TrafficForecast(
        len(work) * interval_s / span,
        float(work.isl.mean()),
        float(work.osl.mean()),
        interval_s,
        0.0,
        _buckets(work.isl),
    )
    plan = plan_throughput(mean, settings, models.prefill, models.decode)
    assert plan.replicas is not None
    peak: dict[Pool, int] = dict(plan.replicas)
    for load in interval_loads(work, interval_s):
        forecast = TrafficForecast(load.num_req, load.isl, load.osl, interval_s, 0.0, load.isl_buckets)
        sized = plan_throughput(forecast, settings, models.prefill, models.decode)
        assert sized.replicas is not None
        for pool, n in sized.replicas.items():
            peak[pool] = max(peak[pool], n)
    if settings.mode == "disagg" and settings.max_gpu_budget is not None:
        # each interval fits the budget; their per-pool maxima may not
        peak = dict(
            fit_disagg_to_budget(
                peak[Pool.PREFILL],
                peak[Pool.DECODE],
                settings.prefill_engine_num_gpu,
                settings.decode_engine_num_gpu,
                settings.min_replicas(Pool.PREFILL),
                settings.max_gpu_budget,
                decode_min=settings.min_replicas(Pool.DECODE),
            ).replicas
        )
    return {"mean": dict(plan.replicas), "peak": peak}
