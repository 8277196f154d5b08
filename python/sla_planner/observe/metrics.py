"""The planner's own Prometheus metrics, updated from every tick's record.

:class:`PlannerMetrics` is a :class:`~sla_planner.ticks.TickObserver` writing into a
``prometheus_client`` registry of its own (or one the caller injects, so tests read samples
directly). Names are ``dynamo_planner_*``: the original planner's names and types where it has
them, Prometheus conventions (base units, ``_total`` counters) for the rest. The original names
that break the conventions (``*_ms``, ``gpu_hours``) are exported beside a conventional twin
while ``legacy_names`` is on (the default), for dashboards built on the original.

Per-engine gauges are bounded: per pool only the top-K engines (see
:mod:`sla_planner.observe.engine_stats`) have series, and a series goes when its engine leaves
the top-K or the table.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from ..connectors.base import ApplyStatus
from ..core.load import EngineView
from ..ticks import TickRecord
from ..types import Pool, TickKind, pools_for_mode
from .engine_stats import (
    UNKNOWN_ROLE,
    EngineStats,
    TopKCache,
    engine_label,
    engine_stats,
    engine_stats_reference,
)
from .metric_families import LEGACY_NAMES, LOOP_STATES, POOL_STATES, PREFIX, REASONS, MetricFamilies
from .record_view import GpuMeter

__all__ = [
    "PREFIX",
    "INPUT_KINDS",
    "LEGACY_NAMES",
    "LOOP_STATES",
    "POOL_STATES",
    "MetricsSettings",
    "PlannerMetrics",
]

INPUT_KINDS = ("prometheus", "fpm", "connector")
"""Input failure kinds, as adapters name them in ``TickRecord.input_errors``."""


@dataclass(frozen=True)
class MetricsSettings:
    """What the metrics read from PlannerConfig."""

    pools: tuple[Pool, ...]
    intervals_s: dict[TickKind, float]
    """Enabled loops and their intervals (the traffic window of their ticks)."""
    ttft_ms: float
    itl_ms: float
    gpus_per_engine: dict[Pool, int]
    top_engines: int = 10
    legacy_names: bool = True

    @classmethod
    def from_config(cls, cfg: Any) -> MetricsSettings:
        """Project a PlannerConfig."""
        intervals: dict[TickKind, float] = {}
        if cfg.enable_throughput_scaling:
            intervals[TickKind.THROUGHPUT] = float(cfg.throughput_adjustment_interval)
        if cfg.enable_load_scaling:
            intervals[TickKind.LOAD] = float(cfg.load_adjustment_interval)
        pools = pools_for_mode(cfg.mode)
        return cls(
            pools=pools,
            intervals_s=intervals,
            ttft_ms=float(cfg.ttft),
            itl_ms=float(cfg.itl),
            gpus_per_engine={p: int(cfg.engine_num_gpu(p.value)) for p in pools},
            top_engines=int(getattr(cfg, "metrics_top_engines", 10)),
            legacy_names=bool(getattr(cfg, "metrics_legacy_names", True)),
        )


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


class PlannerMetrics:
    """Planner metrics in ``registry`` (a new one by default), updated by :meth:`on_tick`."""

    def __init__(
        self,
        settings: MetricsSettings,
        registry: CollectorRegistry | None = None,
        *,
        reference: bool = False,
    ) -> None:
        """``reference`` computes engine statistics with the plain-Python loop (tests, benches)."""
        self.settings = settings
        self._reference = reference
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._pool_names = tuple(p.value for p in settings.pools)
        self._gpu = GpuMeter(settings.gpus_per_engine)
        self._top_cache = TopKCache()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.f = MetricFamilies(self.registry, settings.legacy_names)
        self._initialise()

    def _c(self, metric: Any, *labels: str) -> Any:
        """The labelled child of ``metric`` (memoised: ``labels()`` costs microseconds a call)."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # -- setup --------------------------------------------------------------------------------------

    def _initialise(self) -> None:
        """Series that exist from the start: zero counters (so rate() works), targets, disabled loops."""
        s = self.settings
        self.f.sla_ttft_seconds.set(s.ttft_ms / 1e3)
        self.f.sla_itl_seconds.set(s.itl_ms / 1e3)
        for kind, enum in (
            (TickKind.LOAD, self.f.load_scaling_decision),
            (TickKind.THROUGHPUT, self.f.throughput_scaling_decision),
        ):
            if kind not in s.intervals_s:
                enum.state("disabled")
        for kind in s.intervals_s:
            self.f.ticks.labels(kind.value)
            for reason in REASONS:
                self.f.decisions.labels(kind.value, reason)
        for input_kind in INPUT_KINDS:
            self.f.input_failures.labels(input_kind)
        for status in ApplyStatus:
            self.f.applies.labels(status.value)
        for pool in self._pool_names:
            self.f.correction_factor.labels(pool).set(math.nan)
        for role in (*self._pool_names, UNKNOWN_ROLE):
            self.f.engines_tracked.labels(role)
            self.f.engines_stale.labels(role)
        if self.f.gpu_hours is not None:
            self.f.gpu_hours.set(0.0)

    # -- TickObserver ---------------------------------------------------------------------------

    def on_tick(self, record: TickRecord) -> None:
        """Update every metric from one tick's record."""
        kind = record.tick.kind
        loop = kind.value
        now_s = float(record.tick_input.now_s)
        decision = record.decision
        self._c(self.f.ticks, loop).inc()
        self._c(self.f.last_tick_timestamp_seconds, loop).set(now_s)
        self._c(self.f.tick_lag_seconds, loop).set(record.lag_s)
        for phase, seconds in record.timings_s.items():
            self._c(self.f.tick_duration_seconds, phase).observe(seconds)
        for input_kind in record.input_errors:
            self._c(self.f.input_failures, input_kind).inc()
        self._c(self.f.decisions, loop, decision.reason.value).inc()
        if record.apply is not None:
            self._c(self.f.applies, record.apply.status.value).inc()
        (self.f.load_scaling_decision if kind is TickKind.LOAD else self.f.throughput_scaling_decision).state(
            decision.reason.value
        )
        for pool, reason in decision.pool_reasons.items():
            state = reason if reason in POOL_STATES else "other"
            self._c(self.f.pool_scaling_decision, loop, pool.value).state(state)
        self._deployment(record, now_s)
        self._traffic(record, kind)
        if decision.targets is not None:
            self._targets(decision.targets)
        detail = decision.detail
        if kind is TickKind.THROUGHPUT and detail:
            self._throughput_detail(detail)
        elif kind is TickKind.LOAD and detail:
            self._load_detail(detail)
        view = record.tick_input.engines
        if isinstance(view, EngineView):
            self._engines(view, record.snapshot)

    def close(self) -> None:
        """Nothing to release (the registry stays readable)."""

    # -- parts ------------------------------------------------------------------------------------

    def _deployment(self, record: TickRecord, now_s: float) -> None:
        deployment = record.deployment
        added = self._gpu.update(now_s, deployment)
        if added > 0:
            self.f.gpu_seconds.inc(added)
        if self.f.gpu_hours is not None:
            self.f.gpu_hours.set(self._gpu.gpu_seconds / 3600.0)
        if deployment is None:
            return
        pool_gpus = self._gpu.pool_gpus(deployment)
        for pool, state in deployment.pools.items():
            name = pool.value
            self._c(self.f.replicas, name).set(state.replicas)
            self._c(self.f.ready_replicas, name).set(state.ready)
            self._c(self.f.gpus, name).set(pool_gpus[pool])
            if pool is Pool.PREFILL:
                self.f.num_prefill_replicas.set(state.ready)
            else:
                self.f.num_decode_replicas.set(state.ready)

    def _traffic(self, record: TickRecord, kind: TickKind) -> None:
        traffic = record.tick_input.traffic
        if traffic is not None:
            window_s = self.settings.intervals_s.get(kind)
            if _finite(traffic.num_req) and window_s:
                self.f.observed_requests_per_second.set(float(traffic.num_req) / window_s)  # type: ignore[arg-type]
            pairs: list[tuple[Gauge | None, float | None, float]] = [
                (self.f.observed_ttft_ms, traffic.ttft_ms, 1.0),
                (self.f.observed_ttft_seconds, traffic.ttft_ms, 1e-3),
                (self.f.observed_itl_ms, traffic.itl_ms, 1.0),
                (self.f.observed_itl_seconds, traffic.itl_ms, 1e-3),
                (self.f.observed_request_duration_seconds, traffic.request_duration_s, 1.0),
                (self.f.observed_input_sequence_tokens, traffic.isl, 1.0),
                (self.f.observed_output_sequence_tokens, traffic.osl, 1.0),
            ]
            for metric, value, scale in pairs:
                if metric is not None and _finite(value):
                    metric.set(float(value) * scale)  # type: ignore[arg-type]
        forecast = record.decision.forecast
        if forecast is not None:
            if _finite(forecast.num_req) and forecast.interval_s > 0:
                self.f.predicted_requests_per_second.set(forecast.num_req / forecast.interval_s)
            if _finite(forecast.isl):
                self.f.predicted_input_sequence_tokens.set(forecast.isl)
            if _finite(forecast.osl):
                self.f.predicted_output_sequence_tokens.set(forecast.osl)

    def _targets(self, targets: Mapping[Pool, int]) -> None:
        for pool, n in targets.items():
            self._c(self.f.recommended_replicas, pool.value).set(n)
            if pool is Pool.PREFILL:
                self.f.predicted_num_prefill_replicas.set(n)
            else:
                self.f.predicted_num_decode_replicas.set(n)

    def _throughput_detail(self, detail: Mapping[str, Any]) -> None:
        for pool in self._pool_names:
            planned = detail.get(f"{pool}_replicas")
            if isinstance(planned, int | float):
                self._c(self.f.planned_replicas, pool).set(planned)
        corrections = detail.get("corrections")
        if isinstance(corrections, Mapping):
            for pool, corr in corrections.items():
                factor = corr.get("factor") if isinstance(corr, Mapping) else None
                self._c(self.f.correction_factor, str(pool)).set(
                    float(factor) if isinstance(factor, int | float) else math.nan
                )
        forecast = detail.get("forecast")
        proposals = detail.get("proposals")
        if not isinstance(forecast, Mapping) or not isinstance(proposals, Mapping):
            return
        per_request = {"prefill": forecast.get("isl"), "decode": forecast.get("osl")}
        gauges = {"prefill": self.f.engine_prefill_capacity, "decode": self.f.engine_decode_capacity}
        for proposal in proposals.values():
            if not isinstance(proposal, Mapping):
                continue
            capacity = proposal.get("capacity_tokens_per_s_per_gpu")
            gpus = proposal.get("engine_num_gpu") or 1
            if not isinstance(capacity, Mapping):
                continue
            for phase, tokens_per_gpu in capacity.items():
                tokens = per_request.get(phase)
                if (
                    phase in gauges
                    and isinstance(tokens_per_gpu, int | float)
                    and isinstance(tokens, int | float)
                    and tokens > 0
                ):
                    gauges[phase].set(float(tokens_per_gpu) * float(gpus) / float(tokens))

    def _load_detail(self, detail: Mapping[str, Any]) -> None:
        pools = detail.get("pools")
        if not isinstance(pools, Mapping):
            return
        for pool, d in pools.items():
            if not isinstance(d, Mapping):
                continue
            est, sla = d.get("estimate_max"), d.get("sla")
            if not isinstance(est, int | float) or not isinstance(sla, int | float) or sla <= 0:
                continue
            self._c(self.f.estimated_sla_ratio, pool).set(float(est) / float(sla))
            if pool == Pool.PREFILL.value:
                self._c(self.f.estimated_ttft_seconds, pool).set(float(est) / 1e3)
                if self.f.estimated_ttft_ms is not None:
                    self.f.estimated_ttft_ms.set(float(est))
            elif pool == Pool.DECODE.value:
                self._c(self.f.estimated_itl_seconds, pool).set(float(est) / 1e3)
                if self.f.estimated_itl_ms is not None:
                    self.f.estimated_itl_ms.set(float(est))

    def _engines(self, view: EngineView, snapshot: Mapping[str, Any] | None) -> None:
        k = self.settings.top_engines
        stats: EngineStats = (
            engine_stats_reference(view, self._pool_names, k)
            if self._reference
            else engine_stats(view, self._pool_names, k, self._top_cache)
        )
        for pool, ps in stats.pools.items():
            self._c(self.f.engines_tracked, pool).set(ps.tracked)
            self._c(self.f.engines_stale, pool).set(ps.stale)
            self._c(self.f.pool_queued_prefill_tokens, pool).set(ps.queued_prefill_tokens)
            self._c(self.f.pool_queued_decode_kv_tokens, pool).set(ps.queued_decode_kv_tokens)
            self._c(self.f.pool_inflight_decode_kv_tokens, pool).set(ps.inflight_decode_kv_tokens)
        self._c(self.f.engines_tracked, UNKNOWN_ROLE).set(stats.unknown_tracked)
        self._c(self.f.engines_stale, UNKNOWN_ROLE).set(stats.unknown_stale)
        if snapshot is None or "worker_id" not in snapshot or "dp_rank" not in snapshot:
            return  # no ids: per-engine series stay as they were
        self._engine_series(view, snapshot, stats)

    def _engine_series(self, view: EngineView, snapshot: Mapping[str, Any], stats: EngineStats) -> None:
        q_prefill, q_kv, s_kv = view.q_prefill_tokens, view.q_decode_kv, view.s_decode_kv
        rows = []
        for pool, ps in stats.pools.items():
            for row in ps.top_rows.tolist():
                worker_id, dp_rank = engine_label(snapshot, row)
                rows.append(
                    ((pool, worker_id, dp_rank), (float(q_prefill[row]), float(q_kv[row]), float(s_kv[row])))
                )
        self.f.engine_series.set_rows(rows)

    # -- exposition -------------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return bytes(generate_latest(self.registry))

    def write_exposition(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`exposition` to ``path`` atomically (temporary file, then rename)."""
        target = Path(path)
        data = self.exposition()
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target
