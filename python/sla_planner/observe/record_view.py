"""What observers read off a :class:`~sla_planner.ticks.TickRecord`: GPUs held, the report's tick
row, and the JSON-safe decision record (decision log lines, snapshots, the dashboard's API)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..connectors.base import DeploymentState
from ..ticks import TickRecord
from ..types import ObservedTraffic, Pool

__all__ = ["GpuMeter", "json_safe", "json_line", "tick_row", "decision_record", "observed_fields"]


def json_safe(obj: Any) -> Any:
    """``obj`` as strict JSON values: NaN/inf -> None, enums -> values, numpy -> Python."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, bool | int | str) or obj is None:
        return obj
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return json_safe(float(obj))
    if isinstance(obj, np.ndarray):
        return [json_safe(v) for v in obj.tolist()]
    if isinstance(obj, Mapping):
        return {str(json_safe(k)): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    value = getattr(obj, "value", None)
    if isinstance(value, str | int | float):
        return json_safe(value)
    return str(obj)


def _plain(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    value = getattr(obj, "value", None)
    if isinstance(value, str | int | float):
        return value
    return str(obj)


def json_line(obj: Any) -> str:
    """Strict one-line JSON of ``obj`` (NaN/inf as null), keys sorted."""
    try:
        return json.dumps(obj, sort_keys=True, allow_nan=False, default=_plain)
    except ValueError:  # a NaN or inf somewhere: the slow, exact path
        return json.dumps(json_safe(obj), sort_keys=True, allow_nan=False)


class GpuMeter:
    """GPUs the deployment asks for, and their time integral (GPU-seconds).

    An engine costs GPU time from the moment it is requested, so the integral counts replicas
    (starting engines included). Between two ticks the count read at the first one holds; a tick
    whose deployment read failed keeps the last known count.
    """

    def __init__(self, gpus_per_engine: Mapping[Pool, int]) -> None:
        self.gpus_per_engine = dict(gpus_per_engine)
        self.gpus: float | None = None
        self.gpu_seconds = 0.0
        self._last_s: float | None = None

    def pool_gpus(self, deployment: DeploymentState) -> dict[Pool, int]:
        """GPUs per pool: replicas x GPUs per engine (the deployment's figure, else the config's)."""
        out = {}
        for pool, state in deployment.pools.items():
            per_engine = state.gpus_per_engine or self.gpus_per_engine.get(pool, 1)
            out[pool] = int(state.replicas) * int(per_engine)
        return out

    def update(self, now_s: float, deployment: DeploymentState | None) -> float:
        """Advance to ``now_s``; returns the GPU-seconds added since the last update."""
        added = 0.0
        if self._last_s is not None and self.gpus is not None and now_s > self._last_s:
            added = self.gpus * (now_s - self._last_s)
            self.gpu_seconds += added
        if self._last_s is None or now_s > self._last_s:
            self._last_s = now_s
        if deployment is not None:
            self.gpus = float(sum(self.pool_gpus(deployment).values()))
        return added


def observed_fields(traffic: ObservedTraffic | None) -> dict[str, float | None] | None:
    """The report's ``observed`` object for a traffic window (None when unknown)."""
    if traffic is None:
        return None
    return {
        "num_req": traffic.num_req,
        "isl": traffic.isl,
        "osl": traffic.osl,
        "ttft_ms": traffic.ttft_ms,
        "itl_ms": traffic.itl_ms,
        "request_duration_s": traffic.request_duration_s,
    }


def _pools(counts: Mapping[Pool, int] | None) -> dict[str, int] | None:
    return None if counts is None else {p.value: int(n) for p, n in counts.items()}


def tick_row(record: TickRecord, gpus: float | None, gpu_hours: float) -> dict[str, Any]:
    """One tick in the report record's shape (see :mod:`sla_planner.observe.report_record`)."""
    decision = record.decision
    deployment = record.deployment
    forecast = decision.forecast
    return {
        "t_s": float(record.tick_input.now_s),
        "kind": record.tick.kind.value,
        "reason": decision.reason.value,
        "replicas": _pools(deployment.current()) if deployment is not None else None,
        "ready": _pools(deployment.ready()) if deployment is not None else None,
        "targets": _pools(decision.targets),
        "observed": observed_fields(record.tick_input.traffic),
        "forecast": None
        if forecast is None
        else {"num_req": forecast.num_req, "isl": forecast.isl, "osl": forecast.osl},
        "gpus": gpus,
        "gpu_hours": gpu_hours,
    }


def decision_record(record: TickRecord, seq: int | None = None) -> dict[str, Any]:
    """Everything a tick saw, decided and did (snapshot lines, ``/decisions``; encode with
    :func:`json_line`); ``seq`` numbers the ticks of one observer."""
    decision = record.decision
    deployment = record.deployment
    apply = record.apply
    body: dict[str, Any] = decision.to_record()
    body.update(
        {
            "t_s": float(record.tick_input.now_s),
            "due_s": float(record.tick.due_s),
            "observed": observed_fields(record.tick_input.traffic),
            "replicas": _pools(deployment.current()) if deployment is not None else None,
            "ready": _pools(deployment.ready()) if deployment is not None else None,
            "apply": None
            if apply is None
            else {"status": apply.status.value, "detail": apply.detail, "decision_id": apply.decision_id},
            "lag_s": record.lag_s,
            "timings_s": dict(record.timings_s),
            "input_errors": dict(record.input_errors),
        }
    )
    if seq is not None:
        body["seq"] = seq
    return body
