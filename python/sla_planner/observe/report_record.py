"""Validate a report record (the plain dict a replay or live run produces) into typed columns.

Missing keys and ``None`` values mean "unknown" and become NaN or empty series; values of the
wrong type raise :class:`~sla_planner.errors.ReportDataError` naming the key path and the rule.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ReportDataError

__all__ = [
    "OBSERVED_FIELDS",
    "FORECAST_FIELDS",
    "EngineSamples",
    "ReportRecord",
    "RequestSample",
    "ScaleEventRow",
    "TickSeries",
    "parse_record",
]

FloatArray = npt.NDArray[np.float64]

OBSERVED_FIELDS: tuple[str, ...] = (
    "num_req",
    "isl",
    "osl",
    "ttft_ms",
    "itl_ms",
    "request_duration_s",
)
FORECAST_FIELDS: tuple[str, ...] = ("num_req", "isl", "osl")
_SCALE_ACTIONS = ("add", "remove")


@dataclass(frozen=True)
class TickSeries:
    """One entry per planner tick, time-ordered; NaN where a value was unknown."""

    t_s: FloatArray
    kind: list[str]
    reason: list[str]
    replicas: dict[str, FloatArray]
    ready: dict[str, FloatArray]
    targets: list[dict[str, float] | None]
    observed: dict[str, FloatArray]
    forecast: dict[str, FloatArray]
    gpus: FloatArray
    gpu_hours: FloatArray

    def __len__(self) -> int:
        return int(self.t_s.size)


@dataclass(frozen=True)
class EngineSamples:
    """Per-engine samples as parallel columns (one row per engine per tick)."""

    t_s: FloatArray
    worker_id: list[str]
    pool: list[str]
    queued_prefill_tokens: FloatArray
    queued_requests: FloatArray
    running_requests: FloatArray
    kv_usage: FloatArray

    def __len__(self) -> int:
        return int(self.t_s.size)


@dataclass(frozen=True)
class RequestSample:
    """Downsampled per-request points: finish time (s), TTFT and ITL (ms)."""

    finish_s: FloatArray
    ttft_ms: FloatArray
    itl_ms: FloatArray


@dataclass(frozen=True)
class ScaleEventRow:
    """One engine added or removed."""

    t_s: float
    pool: str
    action: str
    worker_id: str
    ready_at_s: float
    failed_requests: int | None


@dataclass(frozen=True)
class ReportRecord:
    """A validated report record."""

    title: str
    generated_by: str
    summary: dict[str, Any]
    sla_ttft_ms: float
    sla_itl_ms: float
    pools: list[str]
    ticks: TickSeries
    engines: EngineSamples
    requests: RequestSample
    scale_events: list[ScaleEventRow] = field(default_factory=list)


def _describe(value: object) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def _opt_float(value: object, where: str) -> float:
    """A finite or NaN float; ``None`` becomes NaN; bools and non-numbers are errors."""
    if value is None:
        return math.nan
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise ReportDataError(f"{where}: expected a number or null, got {_describe(value)}")
    return float(value)


def _req_float(value: object, where: str) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)
    if not ok or not math.isfinite(float(value)):  # type: ignore[arg-type]
        raise ReportDataError(f"{where}: required, must be a finite number, got {_describe(value)}")
    return float(value)  # type: ignore[arg-type]


def _opt_str(value: object, where: str, default: str) -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise ReportDataError(f"{where}: expected a string or null, got {_describe(value)}")
    return value


def _req_str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ReportDataError(f"{where}: required, must be a string, got {_describe(value)}")
    return value


def _opt_mapping(value: object, where: str) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ReportDataError(f"{where}: expected an object or null, got {_describe(value)}")
    return value


def _opt_list(value: object, where: str) -> Sequence[Any] | npt.NDArray[Any]:
    """A list (or tuple / 1-D array); ``None`` is the empty list."""
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise ReportDataError(f"{where}: expected a 1-D list, got a {value.ndim}-D array")
        return value
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ReportDataError(f"{where}: expected a list or null, got {_describe(value)}")
    return value


def _float_column(
    values: Sequence[Any] | npt.NDArray[Any], where: Callable[[int], str]
) -> FloatArray:
    """A float64 column; ``None`` -> NaN. Checks element by element only when numpy cannot."""
    if len(values) == 0:
        return np.empty(0, dtype=np.float64)
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError):
        arr = np.asarray([None])  # ragged input: fall through to the per-element check
    if arr.ndim == 1 and arr.size == len(values) and arr.dtype.kind in "fiu":
        return arr.astype(np.float64)
    return np.array([_opt_float(v, where(i)) for i, v in enumerate(values)], dtype=np.float64)


def _pool_counts(value: object, where: str, pools: list[str]) -> dict[str, float]:
    mapping = _opt_mapping(value, where)
    if mapping is None:
        return {}
    out: dict[str, float] = {}
    for pool, count in mapping.items():
        pool_name = _req_str(pool, f"{where} (key)")
        out[pool_name] = _opt_float(count, f"{where}.{pool_name}")
        if pool_name not in pools:
            pools.append(pool_name)
    return out


def _fields(value: object, where: str, names: tuple[str, ...]) -> dict[str, float]:
    mapping = _opt_mapping(value, where)
    if mapping is None:
        return {name: math.nan for name in names}
    return {name: _opt_float(mapping.get(name), f"{where}.{name}") for name in names}


def _parse_ticks(raw: object, pools: list[str]) -> TickSeries:
    items = _opt_list(raw, "ticks")
    t_s: list[float] = []
    kinds: list[str] = []
    reasons: list[str] = []
    replicas: list[dict[str, float]] = []
    ready: list[dict[str, float]] = []
    targets: list[dict[str, float] | None] = []
    observed: list[dict[str, float]] = []
    forecast: list[dict[str, float]] = []
    gpus: list[float] = []
    gpu_hours: list[float] = []
    for i, tick in enumerate(items):
        where = f"ticks[{i}]"
        if not isinstance(tick, Mapping):
            raise ReportDataError(f"{where}: expected an object, got {_describe(tick)}")
        t = _req_float(tick.get("t_s"), f"{where}.t_s")
        if t_s and t < t_s[-1]:
            raise ReportDataError(
                f"{where}.t_s: ticks must be time-ordered, got {t} after {t_s[-1]} (ticks[{i - 1}])"
            )
        t_s.append(t)
        kinds.append(_opt_str(tick.get("kind"), f"{where}.kind", "unknown"))
        reasons.append(_opt_str(tick.get("reason"), f"{where}.reason", "(none)"))
        replicas.append(_pool_counts(tick.get("replicas"), f"{where}.replicas", pools))
        ready.append(_pool_counts(tick.get("ready"), f"{where}.ready", pools))
        raw_targets = tick.get("targets")
        targets.append(
            None if raw_targets is None else _pool_counts(raw_targets, f"{where}.targets", pools)
        )
        observed.append(_fields(tick.get("observed"), f"{where}.observed", OBSERVED_FIELDS))
        forecast.append(_fields(tick.get("forecast"), f"{where}.forecast", FORECAST_FIELDS))
        gpus.append(_opt_float(tick.get("gpus"), f"{where}.gpus"))
        gpu_hours.append(_opt_float(tick.get("gpu_hours"), f"{where}.gpu_hours"))

    def per_pool(rows: list[dict[str, float]]) -> dict[str, FloatArray]:
        return {p: np.array([r.get(p, math.nan) for r in rows], dtype=np.float64) for p in pools}

    def per_field(rows: list[dict[str, float]], names: tuple[str, ...]) -> dict[str, FloatArray]:
        return {n: np.array([r[n] for r in rows], dtype=np.float64) for n in names}

    return TickSeries(
        t_s=np.array(t_s, dtype=np.float64),
        kind=kinds,
        reason=reasons,
        replicas=per_pool(replicas),
        ready=per_pool(ready),
        targets=targets,
        observed=per_field(observed, OBSERVED_FIELDS),
        forecast=per_field(forecast, FORECAST_FIELDS),
        gpus=np.array(gpus, dtype=np.float64),
        gpu_hours=np.array(gpu_hours, dtype=np.float64),
    )


def _parse_engines(raw: object) -> EngineSamples:
    items = _opt_list(raw, "engines")
    for i, sample in enumerate(items):
        if not isinstance(sample, Mapping):
            raise ReportDataError(f"engines[{i}]: expected an object, got {_describe(sample)}")

    def column(name: str) -> FloatArray:
        return _float_column([s.get(name) for s in items], lambda i: f"engines[{i}].{name}")

    t_s = column("t_s")
    bad = np.flatnonzero(~np.isfinite(t_s))
    if bad.size:
        i = int(bad[0])
        raise ReportDataError(
            f"engines[{i}].t_s: required, must be a finite number, got {items[i].get('t_s')!r}"
        )
    return EngineSamples(
        t_s=t_s,
        worker_id=[
            _req_str(s.get("worker_id"), f"engines[{i}].worker_id") for i, s in enumerate(items)
        ],
        pool=[_req_str(s.get("pool"), f"engines[{i}].pool") for i, s in enumerate(items)],
        queued_prefill_tokens=column("queued_prefill_tokens"),
        queued_requests=column("queued_requests"),
        running_requests=column("running_requests"),
        kv_usage=column("kv_usage"),
    )


def _request_column(mapping: Mapping[str, Any], name: str) -> FloatArray:
    values = _opt_list(mapping.get(name), f"requests_sample.{name}")
    return _float_column(values, lambda i: f"requests_sample.{name}[{i}]")


def _parse_requests(raw: object) -> RequestSample:
    mapping = _opt_mapping(raw, "requests_sample") or {}
    cols = {name: _request_column(mapping, name) for name in ("finish_s", "ttft_ms", "itl_ms")}
    n_finish = cols["finish_s"].size
    for name in ("ttft_ms", "itl_ms"):
        if cols[name].size not in (0, n_finish):
            raise ReportDataError(
                f"requests_sample.{name}: has {cols[name].size} values but finish_s has "
                f"{n_finish}; the arrays must be parallel"
            )
    empty = np.full(n_finish, math.nan)
    return RequestSample(
        finish_s=cols["finish_s"],
        ttft_ms=cols["ttft_ms"] if cols["ttft_ms"].size else empty,
        itl_ms=cols["itl_ms"] if cols["itl_ms"].size else empty,
    )


def _parse_events(raw: object, pools: list[str]) -> list[ScaleEventRow]:
    out: list[ScaleEventRow] = []
    for i, event in enumerate(_opt_list(raw, "scale_events")):
        where = f"scale_events[{i}]"
        if not isinstance(event, Mapping):
            raise ReportDataError(f"{where}: expected an object, got {_describe(event)}")
        action = event.get("action")
        if action not in _SCALE_ACTIONS:
            raise ReportDataError(
                f"{where}.action: must be 'add' or 'remove', got {_describe(action)}"
            )
        pool = _req_str(event.get("pool"), f"{where}.pool")
        if pool not in pools:
            pools.append(pool)
        failed = _opt_float(event.get("failed_requests"), f"{where}.failed_requests")
        out.append(
            ScaleEventRow(
                t_s=_req_float(event.get("t_s"), f"{where}.t_s"),
                pool=pool,
                action=str(action),
                worker_id=_opt_str(event.get("worker_id"), f"{where}.worker_id", "(unknown)"),
                ready_at_s=_opt_float(event.get("ready_at_s"), f"{where}.ready_at_s"),
                failed_requests=None if math.isnan(failed) else int(failed),
            )
        )
    return out


def parse_record(record: Mapping[str, Any]) -> ReportRecord:
    """Validate ``record`` and return typed columns; raises ReportDataError naming the bad key."""
    if not isinstance(record, Mapping):
        raise ReportDataError(f"record: expected an object (dict), got {_describe(record)}")
    summary = _opt_mapping(record.get("summary"), "summary") or {}
    for key in summary:
        _req_str(key, "summary (key)")
    sla = _opt_mapping(record.get("sla"), "sla") or {}
    pools: list[str] = []
    for i, pool in enumerate(_opt_list(record.get("pools"), "pools")):
        if _req_str(pool, f"pools[{i}]") not in pools:
            pools.append(pool)
    ticks = _parse_ticks(record.get("ticks"), pools)
    engines = _parse_engines(record.get("engines"))
    for pool in engines.pool:
        if pool not in pools:
            pools.append(pool)
    events = _parse_events(record.get("scale_events"), pools)
    # Pools first seen after the ticks were parsed still need (all-NaN) tick columns.
    for pool in pools:
        ticks.replicas.setdefault(pool, np.full(len(ticks), math.nan))
        ticks.ready.setdefault(pool, np.full(len(ticks), math.nan))
    return ReportRecord(
        title=_opt_str(record.get("title"), "title", "sla-planner report"),
        generated_by=_opt_str(record.get("generated_by"), "generated_by", "sla-planner"),
        summary=dict(summary),
        sla_ttft_ms=_opt_float(sla.get("ttft_ms"), "sla.ttft_ms"),
        sla_itl_ms=_opt_float(sla.get("itl_ms"), "sla.itl_ms"),
        pools=pools,
        ticks=ticks,
        engines=engines,
        requests=_parse_requests(record.get("requests_sample")),
        scale_events=events,
    )
