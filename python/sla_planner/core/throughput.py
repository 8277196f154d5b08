"""Throughput-based planning from profiling data (pure: no I/O, no clock).

For a forecast of N requests in the next interval of T seconds with mean ISL and OSL tokens:

* prefill  = ceil((N*ISL + B)/T * min(1, cf_p) / thpt_prefill_per_gpu(ISL) / prefill_engine_num_gpu)
  where B is the prompt tokens already queued at prefill engines (0 when unknown): a pool sized
  only for new arrivals never drains a backlog built while it was too small.
* decode   = ceil((N + B/ISL)*OSL/T / best_decode_thpt_per_gpu(itl / cf_d, ISL + OSL/2) / decode_engine_num_gpu)
* agg      = ceil(prefill_share + decode_share): an aggregated engine time-shares both phases, so
  the engines needed are the sum of the fractions of an engine each phase keeps busy.

Every pool is at least ``min_endpoint``; the GPU budget is applied last (see :mod:`.budget`).
``cf_p`` is capped at 1: a TTFT above the model's is mostly queueing, which this formula cannot
see, while one below it means the engines really are faster than profiled.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from ..types import (
    BudgetAction,
    CorrectionStatus,
    ObservedTraffic,
    Pool,
    ThroughputReason,
    TrafficForecast,
    pools_for_mode,
)
from .budget import BudgetResult, fit_disagg_to_budget, fit_pool_to_budget
from .queueing import engines_for_itl, engines_for_ttft, service_moments

__all__ = [
    "PrefillPerf",
    "DecodePerf",
    "DecodePoint",
    "ThroughputSettings",
    "Correction",
    "PoolProposal",
    "ThroughputPlan",
    "prefill_correction",
    "decode_correction",
    "plan_throughput",
]

# A replica count that is an integer up to float noise (2.0000000000000004) is that integer.
_CEIL_SLACK = 1e-9

# Correction factors are clamped to this range: a ratio far outside it says the system is not in
# the steady state the profile describes (queues building or draining), not that the engines are
# 4x faster or slower, and acting on it would size pools from a transient.
CORRECTION_MIN = 0.25
CORRECTION_MAX = 4.0


class PrefillPerf(Protocol):
    """What the planner needs from a prefill performance model."""

    def ttft_ms(self, isl: float) -> float: ...

    def thpt_per_gpu(self, isl: float) -> float: ...


class DecodePoint(Protocol):
    """An operating point on the decode profile."""

    @property
    def thpt_per_gpu(self) -> float: ...

    @property
    def kv_usage(self) -> float: ...

    @property
    def itl_ms(self) -> float: ...

    @property
    def meets_target(self) -> bool: ...


class DecodePerf(Protocol):
    """What the planner needs from a decode performance model."""

    def best_throughput_per_gpu(self, itl_target_ms: float, context_length: float) -> DecodePoint: ...

    def itl_at_concurrency(self, concurrency_per_engine: float, context_length: float) -> float: ...


@dataclass(frozen=True)
class ThroughputSettings:
    """The configuration the throughput planner reads (a projection of PlannerConfig)."""

    mode: str = "disagg"
    min_endpoint: int = 1
    """Minimum engines of the prefill pool, and of every pool without a minimum of its own."""
    max_gpu_budget: int | None = 128
    """None: no budget (a negative max_gpu_budget in the config)."""
    decode_min_endpoint: int | None = None
    """Minimum engines of the decode (and aggregated) pool; None: ``min_endpoint``."""
    prefill_engine_num_gpu: int = 1
    decode_engine_num_gpu: int = 1
    itl_ms: float = 30.0
    correction: CorrectionStatus = CorrectionStatus.APPLIED
    ttft_ms: float = 2000.0
    ttft_attainment: float = 0.0
    """Queue-aware prefill sizing target (0 = off: the throughput formula alone)."""
    itl_attainment: float = 0.0
    """Batch-variance-aware decode sizing target (0 = off: the throughput formula alone)."""

    @classmethod
    def from_config(cls, cfg: Any) -> ThroughputSettings:
        """Project a PlannerConfig (or any object with the same attribute names)."""
        if cfg.no_correction:
            correction = CorrectionStatus.DISABLED
        elif cfg.enable_load_scaling:
            correction = CorrectionStatus.LOAD_SCALING_ON
        else:
            correction = CorrectionStatus.APPLIED
        return cls(
            mode=cfg.mode,
            min_endpoint=int(cfg.min_replicas("prefill"))
            if cfg.mode in ("disagg", "prefill")
            else int(cfg.min_endpoint),
            max_gpu_budget=cfg.gpu_budget(),
            decode_min_endpoint=int(cfg.min_replicas("decode")) if cfg.mode != "agg" else None,
            prefill_engine_num_gpu=cfg.prefill_engine_num_gpu,
            decode_engine_num_gpu=cfg.decode_engine_num_gpu,
            itl_ms=cfg.itl,
            correction=correction,
            ttft_ms=cfg.ttft,
            ttft_attainment=cfg.ttft_attainment_target,
            itl_attainment=cfg.itl_attainment_target,
        )

    def pools(self) -> tuple[Pool, ...]:
        """The pools this mode has."""
        return pools_for_mode(self.mode)

    def min_replicas(self, pool: Pool) -> int:
        """The minimum engine count of ``pool``."""
        if pool is not Pool.DECODE or self.decode_min_endpoint is None:
            return self.min_endpoint
        return self.decode_min_endpoint

    def max_engines(self, engine_num_gpu: int) -> int:
        """Most engines of ``engine_num_gpu`` GPUs the budget allows (a search bound)."""
        if self.max_gpu_budget is None:
            return 100_000
        return max(self.max_gpu_budget // engine_num_gpu, 1)


@dataclass(frozen=True)
class Correction:
    """A correction factor (observed / expected latency), or why there is none."""

    factor: float | None
    status: CorrectionStatus
    observed_ms: float | None = None
    expected_ms: float | None = None
    raw_factor: float | None = None
    """observed / expected before clamping to [CORRECTION_MIN, CORRECTION_MAX]."""


@dataclass(frozen=True)
class PoolProposal:
    """The replica count one pool needs before the budget, with the numbers behind it."""

    pool: Pool
    replicas: int | None
    reason: ThroughputReason
    raw_replicas: float | None = None
    demand_tokens_per_s: dict[str, float] = field(default_factory=dict)
    capacity_tokens_per_s_per_gpu: dict[str, float] = field(default_factory=dict)
    engine_num_gpu: int = 1
    itl_target_ms: float | None = None
    context_length: float | None = None
    decode_kv_usage: float | None = None
    decode_itl_ms: float | None = None
    queueing: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ThroughputPlan:
    """Replica targets per pool (None when holding), proposals, corrections and the budget step."""

    replicas: dict[Pool, int] | None
    proposals: dict[Pool, PoolProposal]
    corrections: dict[Pool, Correction]
    budget: BudgetResult | None
    forecast: TrafficForecast

    @property
    def reasons(self) -> list[str]:
        """Closed-set reasons, one per pool plus the budget action."""
        out = [f"{p.pool.value}:{p.reason.value}" for p in self.proposals.values()]
        if self.budget is not None:
            out.append(f"budget:{self.budget.action.value}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary; pools the mode lacks are None."""

        def plain(obj: Any) -> Any:
            if isinstance(obj, dict):
                return {(k.value if isinstance(k, Pool) else k): plain(v) for k, v in obj.items()}
            if isinstance(obj, (Pool, ThroughputReason, BudgetAction, CorrectionStatus)):
                return obj.value
            return obj

        def replicas_of(pool: Pool) -> int | None:
            return None if self.replicas is None else self.replicas.get(pool)

        return {
            "prefill_replicas": replicas_of(Pool.PREFILL),
            "decode_replicas": replicas_of(Pool.DECODE),
            "agg_replicas": replicas_of(Pool.AGG),
            "reasons": self.reasons,
            "forecast": asdict(self.forecast),
            "proposals": {p.value: plain(asdict(v)) for p, v in self.proposals.items()},
            "corrections": {p.value: plain(asdict(v)) for p, v in self.corrections.items()},
            "budget": None if self.budget is None else plain(asdict(self.budget)),
        }


def _usable(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) and v > 0.0 for v in values)


def _ratio(observed: float, expected: float, skip: CorrectionStatus) -> Correction:
    if skip is not CorrectionStatus.APPLIED:
        return Correction(None, skip, observed, expected)
    if not _usable(expected):
        return Correction(None, CorrectionStatus.NON_POSITIVE, observed, expected)
    factor = observed / expected
    if not _usable(factor):
        return Correction(None, CorrectionStatus.NON_POSITIVE, observed, expected)
    clamped = min(max(factor, CORRECTION_MIN), CORRECTION_MAX)
    return Correction(clamped, CorrectionStatus.APPLIED, observed, expected, raw_factor=factor)


def prefill_correction(
    observed: ObservedTraffic, model: PrefillPerf, settings: ThroughputSettings
) -> Correction:
    """cf_p = observed TTFT / the model's TTFT at the observed ISL."""
    if settings.correction is not CorrectionStatus.APPLIED:
        return Correction(None, settings.correction)
    if not _usable(observed.ttft_ms, observed.isl):
        return Correction(None, CorrectionStatus.MISSING_INPUT, observed.ttft_ms)
    assert observed.ttft_ms is not None and observed.isl is not None
    return _ratio(observed.ttft_ms, model.ttft_ms(observed.isl), CorrectionStatus.APPLIED)


def decode_correction(
    observed: ObservedTraffic,
    model: DecodePerf,
    settings: ThroughputSettings,
    decode_replicas: int | None,
    interval_s: float,
) -> Correction:
    """cf_d = observed ITL / the model's ITL at the observed per-engine concurrency and context.

    Concurrency per engine = requests * mean request duration / interval / decode replicas
    (Little's law); context = ISL + OSL / 2.
    """
    if settings.correction is not CorrectionStatus.APPLIED:
        return Correction(None, settings.correction)
    if not _usable(
        observed.itl_ms,
        observed.num_req,
        observed.request_duration_s,
        observed.isl,
        interval_s,
    ) or not decode_replicas or decode_replicas <= 0 or observed.osl is None or not (
        math.isfinite(observed.osl) and observed.osl >= 0.0
    ):
        return Correction(None, CorrectionStatus.MISSING_INPUT, observed.itl_ms)
    assert observed.itl_ms is not None and observed.num_req is not None
    assert observed.request_duration_s is not None and observed.isl is not None
    concurrency = observed.num_req * observed.request_duration_s / interval_s / decode_replicas
    context = observed.isl + observed.osl / 2.0
    expected = model.itl_at_concurrency(concurrency, context)
    return _ratio(observed.itl_ms, expected, CorrectionStatus.APPLIED)


def _prefill_factor(cf: Correction) -> float:
    """How much longer prefill takes than profiled: an observed-TTFT factor is capped at 1 (its
    excess is mostly queueing), an engine-metrics factor is taken as measured."""
    if cf.factor is None:
        return 1.0
    if cf.status is CorrectionStatus.FROM_ENGINE_METRICS:
        return cf.factor
    return min(1.0, cf.factor)


def _replicas(raw: float, min_endpoint: int, idle: bool) -> tuple[int, ThroughputReason]:
    if idle:
        return min_endpoint, ThroughputReason.IDLE_FORECAST
    needed = max(0, math.ceil(raw - _CEIL_SLACK))
    if needed < min_endpoint:
        return min_endpoint, ThroughputReason.MIN_ENDPOINT_FLOOR
    return needed, ThroughputReason.SIZED_FROM_FORECAST


def _prefill_share(
    forecast: TrafficForecast, model: PrefillPerf, cf: Correction
) -> tuple[float, float, float]:
    """(demand tokens/s after correction, capacity tokens/s/GPU, demand before correction).

    Demand is the forecast's prompt tokens plus the queued backlog, both over the interval.
    """
    demand = (
        forecast.num_req * forecast.isl / forecast.interval_s
        + forecast.backlog_prefill_tokens / forecast.backlog_window_s()
    )
    factor = _prefill_factor(cf)
    return demand * factor, model.thpt_per_gpu(forecast.isl), demand


def _decode_point(
    forecast: TrafficForecast, model: DecodePerf, cf: Correction, settings: ThroughputSettings
) -> tuple[float, float, DecodePoint]:
    """The decode operating point for the (corrected) ITL target at the forecast's context.

    When the corrected target is below anything the profile reaches but the configured one is
    not, the configured target is used: sizing at the profile's lowest-ITL point (a batch of about
    one) would multiply the pool for a latency no engine count can deliver.
    """
    context = forecast.isl + forecast.osl / 2.0
    target = settings.itl_ms / cf.factor if cf.factor is not None else settings.itl_ms
    point = model.best_throughput_per_gpu(target, context)
    if not point.meets_target and cf.factor is not None and cf.factor > 1.0:
        fallback = model.best_throughput_per_gpu(settings.itl_ms, context)
        if fallback.meets_target:
            return settings.itl_ms, context, _Unreached(fallback)
    return target, context, point


@dataclass(frozen=True)
class _Unreached:
    """An operating point that meets the configured target but not the corrected one."""

    inner: Any
    meets_target: bool = False

    @property
    def thpt_per_gpu(self) -> float:
        return float(self.inner.thpt_per_gpu)

    @property
    def kv_usage(self) -> float:
        return float(self.inner.kv_usage)

    @property
    def itl_ms(self) -> float:
        return float(self.inner.itl_ms)


def _decode_demand(forecast: TrafficForecast) -> float:
    """Decode tokens/s: the forecast's requests plus those behind the prefill backlog (which
    reach decode within the interval once prefill drains them), each generating OSL tokens."""
    backlog_requests = forecast.backlog_prefill_tokens / forecast.isl if forecast.isl > 0 else 0.0
    return (
        forecast.num_req / forecast.interval_s + backlog_requests / forecast.backlog_window_s()
    ) * forecast.osl


def _propose_prefill(
    forecast: TrafficForecast, model: PrefillPerf, cf: Correction, settings: ThroughputSettings
) -> PoolProposal:
    demand, capacity, uncorrected = _prefill_share(forecast, model, cf)
    gpus = settings.prefill_engine_num_gpu
    raw = demand / capacity / gpus
    idle = forecast.num_req == 0 and forecast.backlog_prefill_tokens == 0
    replicas, reason = _replicas(raw, settings.min_replicas(Pool.PREFILL), idle)
    queueing: dict[str, Any] = {}
    if settings.ttft_attainment > 0.0 and not idle:
        queued, queueing = _queue_aware_prefill(forecast, model, cf, settings)
        if queued is not None and queued > replicas:
            replicas, reason = queued, ThroughputReason.SIZED_FOR_TTFT_QUEUEING
    return PoolProposal(
        Pool.PREFILL,
        replicas,
        reason,
        raw_replicas=raw,
        demand_tokens_per_s={"prefill": uncorrected, "prefill_corrected": demand},
        capacity_tokens_per_s_per_gpu={"prefill": capacity},
        engine_num_gpu=gpus,
        queueing=queueing,
    )


def _queue_aware_prefill(
    forecast: TrafficForecast, model: PrefillPerf, cf: Correction, settings: ThroughputSettings
) -> tuple[int | None, dict[str, Any]]:
    """Engines an M/G/c model of the pool needs for the TTFT attainment target (see queueing)."""
    factor = _prefill_factor(cf)
    moments = service_moments(
        lambda isl: model.ttft_ms(isl) / 1e3 * factor, forecast.isl, forecast.isl_buckets
    )
    lam = forecast.num_req / forecast.interval_s
    cap = settings.max_engines(settings.prefill_engine_num_gpu)
    engines = engines_for_ttft(
        lam, moments, settings.ttft_ms / 1e3, settings.ttft_attainment, cap
    )
    return engines, {
        "arrival_rate_per_s": lam,
        "service_mean_s": moments.mean_s,
        "service_scv": moments.scv,
        "from_isl_histogram": moments.from_histogram,
        "attainment_target": settings.ttft_attainment,
        "engines": engines,
    }


def _propose_decode(
    forecast: TrafficForecast, model: DecodePerf, cf: Correction, settings: ThroughputSettings
) -> PoolProposal:
    target, context, point = _decode_point(forecast, model, cf, settings)
    demand = _decode_demand(forecast)
    gpus = settings.decode_engine_num_gpu
    raw = demand / point.thpt_per_gpu / gpus
    idle = forecast.num_req == 0 and forecast.backlog_prefill_tokens == 0
    replicas, reason = _replicas(raw, settings.min_replicas(Pool.DECODE), idle)
    queueing: dict[str, Any] = {}
    if settings.itl_attainment > 0.0 and not idle and point.meets_target:
        # Little: concurrent sequences = tokens/s x seconds per token, per engine and in total.
        itl_s = point.itl_ms / 1e3
        batch_limit = point.thpt_per_gpu * gpus * itl_s
        concurrency = demand * itl_s
        cap = settings.max_engines(gpus)
        engines = engines_for_itl(concurrency, batch_limit, settings.itl_attainment, replicas, cap)
        queueing = {
            "concurrency": concurrency,
            "batch_limit": batch_limit,
            "attainment_target": settings.itl_attainment,
            "engines": engines,
        }
        if engines is not None and engines > replicas:
            replicas, reason = engines, ThroughputReason.SIZED_FOR_ITL_VARIANCE
    if not point.meets_target and reason is ThroughputReason.SIZED_FROM_FORECAST:
        reason = ThroughputReason.ITL_TARGET_UNREACHABLE
    return PoolProposal(
        Pool.DECODE,
        replicas,
        reason,
        raw_replicas=raw,
        demand_tokens_per_s={"decode": demand},
        capacity_tokens_per_s_per_gpu={"decode": point.thpt_per_gpu},
        engine_num_gpu=gpus,
        itl_target_ms=target,
        context_length=context,
        decode_kv_usage=point.kv_usage,
        decode_itl_ms=point.itl_ms,
        queueing=queueing,
    )


def _propose_agg(
    forecast: TrafficForecast,
    prefill_model: PrefillPerf,
    decode_model: DecodePerf,
    cf_p: Correction,
    cf_d: Correction,
    settings: ThroughputSettings,
) -> PoolProposal:
    p_demand, p_capacity, p_uncorrected = _prefill_share(forecast, prefill_model, cf_p)
    target, context, point = _decode_point(forecast, decode_model, cf_d, settings)
    d_demand = _decode_demand(forecast)
    gpus = settings.decode_engine_num_gpu
    raw = p_demand / (p_capacity * gpus) + d_demand / (point.thpt_per_gpu * gpus)
    idle = forecast.num_req == 0 and forecast.backlog_prefill_tokens == 0
    replicas, reason = _replicas(raw, settings.min_replicas(Pool.AGG), idle)
    if not point.meets_target and reason is ThroughputReason.SIZED_FROM_FORECAST:
        reason = ThroughputReason.ITL_TARGET_UNREACHABLE
    return PoolProposal(
        Pool.AGG,
        replicas,
        reason,
        raw_replicas=raw,
        demand_tokens_per_s={
            "prefill": p_uncorrected,
            "prefill_corrected": p_demand,
            "decode": d_demand,
        },
        capacity_tokens_per_s_per_gpu={"prefill": p_capacity, "decode": point.thpt_per_gpu},
        engine_num_gpu=gpus,
        itl_target_ms=target,
        context_length=context,
        decode_kv_usage=point.kv_usage,
        decode_itl_ms=point.itl_ms,
    )


def _fit_plan_to_budget(proposals: dict[Pool, PoolProposal], settings: ThroughputSettings) -> BudgetResult:
    """The budget step of a plan (no budget: every proposal as it is)."""
    replicas = {p: prop.replicas for p, prop in proposals.items()}
    assert all(n is not None for n in replicas.values())
    wanted: dict[Pool, int] = {p: int(n) for p, n in replicas.items() if n is not None}
    if settings.max_gpu_budget is None:
        used = sum(_engine_gpus(p, settings) * n for p, n in wanted.items())
        return BudgetResult(wanted, BudgetAction.WITHIN_BUDGET, used, used, None)
    if settings.mode == "disagg":
        return fit_disagg_to_budget(
            wanted[Pool.PREFILL],
            wanted[Pool.DECODE],
            settings.prefill_engine_num_gpu,
            settings.decode_engine_num_gpu,
            settings.min_replicas(Pool.PREFILL),
            settings.max_gpu_budget,
            decode_min=settings.min_replicas(Pool.DECODE),
        )
    ((pool, n),) = wanted.items()
    return fit_pool_to_budget(
        pool, n, _engine_gpus(pool, settings), settings.min_replicas(pool), settings.max_gpu_budget
    )


def _engine_gpus(pool: Pool, settings: ThroughputSettings) -> int:
    return settings.prefill_engine_num_gpu if pool is Pool.PREFILL else settings.decode_engine_num_gpu


def plan_throughput(
    forecast: TrafficForecast,
    settings: ThroughputSettings,
    prefill_model: PrefillPerf | None,
    decode_model: DecodePerf | None,
    observed: ObservedTraffic | None = None,
    current_decode_replicas: int | None = None,
    engine_speed: dict[Pool, float] | None = None,
) -> ThroughputPlan:
    """Size every pool of the mode for the forecast, then apply the GPU budget.

    An untrustworthy forecast (non-finite or negative numbers) holds: ``replicas`` is None and every
    pool's reason is ``unknown_traffic``. Missing models for a pool the mode needs is a ValueError.
    ``engine_speed`` (per pool: measured over profiled forward-pass duration, from engine metrics)
    replaces that pool's latency-based correction factor.
    """
    pools = settings.pools()
    needs_prefill = Pool.PREFILL in pools or Pool.AGG in pools
    needs_decode = Pool.DECODE in pools or Pool.AGG in pools
    if needs_prefill and prefill_model is None:
        raise ValueError(f"mode {settings.mode!r} needs a prefill performance model")
    if needs_decode and decode_model is None:
        raise ValueError(f"mode {settings.mode!r} needs a decode performance model")

    if not forecast.is_trustworthy():
        hold = {p: PoolProposal(p, None, ThroughputReason.UNKNOWN_TRAFFIC) for p in pools}
        return ThroughputPlan(None, hold, {}, None, forecast)

    obs = observed or ObservedTraffic()
    corrections: dict[Pool, Correction] = {}
    if needs_prefill:
        assert prefill_model is not None
        corrections[Pool.PREFILL] = prefill_correction(obs, prefill_model, settings)
    if needs_decode:
        assert decode_model is not None
        corrections[Pool.DECODE] = decode_correction(
            obs, decode_model, settings, current_decode_replicas, forecast.interval_s
        )
    for pool, factor in (engine_speed or {}).items():
        # measured engine speed replaces the latency-based factor (which holds queueing)
        if pool in corrections and math.isfinite(factor) and factor > 0:
            corrections[pool] = Correction(factor, CorrectionStatus.FROM_ENGINE_METRICS)

    proposals: dict[Pool, PoolProposal] = {}
    if Pool.PREFILL in pools:
        assert prefill_model is not None
        proposals[Pool.PREFILL] = _propose_prefill(
            forecast, prefill_model, corrections[Pool.PREFILL], settings
        )
    if Pool.DECODE in pools:
        assert decode_model is not None
        proposals[Pool.DECODE] = _propose_decode(
            forecast, decode_model, corrections[Pool.DECODE], settings
        )
    if Pool.AGG in pools:
        assert prefill_model is not None and decode_model is not None
        proposals[Pool.AGG] = _propose_agg(
            forecast,
            prefill_model,
            decode_model,
            corrections[Pool.PREFILL],
            corrections[Pool.DECODE],
            settings,
        )

    budget = _fit_plan_to_budget(proposals, settings)
    return ThroughputPlan(dict(budget.replicas), proposals, corrections, budget, forecast)
