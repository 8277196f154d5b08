"""Value types shared across the planner: pools, forecasts, and the closed sets of reasons."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "Pool",
    "pools_for_mode",
    "ThroughputReason",
    "BudgetAction",
    "CorrectionStatus",
    "TrafficForecast",
    "ObservedTraffic",
    "TickKind",
    "DecisionReason",
]


class Pool(str, Enum):
    """An engine pool the planner sizes."""

    PREFILL = "prefill"
    DECODE = "decode"
    AGG = "agg"


_POOLS_BY_MODE: dict[str, tuple[Pool, ...]] = {
    "disagg": (Pool.PREFILL, Pool.DECODE),
    "prefill": (Pool.PREFILL,),
    "decode": (Pool.DECODE,),
    "agg": (Pool.AGG,),
}


def pools_for_mode(mode: str) -> tuple[Pool, ...]:
    """The pools a deployment mode has (disagg: prefill and decode; agg: one aggregated pool)."""
    try:
        return _POOLS_BY_MODE[mode]
    except KeyError:
        raise ValueError(f"mode {mode!r}: expected one of {sorted(_POOLS_BY_MODE)}") from None


class ThroughputReason(str, Enum):
    """Why a throughput-based proposal for one pool is what it is."""

    SIZED_FROM_FORECAST = "sized_from_forecast"
    MIN_ENDPOINT_FLOOR = "min_endpoint_floor"
    IDLE_FORECAST = "idle_forecast"
    ITL_TARGET_UNREACHABLE = "itl_target_unreachable"
    UNKNOWN_TRAFFIC = "unknown_traffic"
    SCALE_DOWN_HELD_SLA_VIOLATED = "scale_down_held_sla_violated"
    SIZED_FOR_TTFT_QUEUEING = "sized_for_ttft_queueing"
    SIZED_FOR_ITL_VARIANCE = "sized_for_itl_variance"
    SCALE_DOWN_HELD_STABILIZATION = "scale_down_held_stabilization"
    SCALE_DOWN_HELD_STARTING = "scale_down_held_starting"


class BudgetAction(str, Enum):
    """What the GPU budget did to the proposals."""

    WITHIN_BUDGET = "within_budget"
    SCALED_DOWN_TO_BUDGET = "scaled_down_to_budget"


class CorrectionStatus(str, Enum):
    """Whether a correction factor was applied, and if not, why."""

    APPLIED = "applied"
    FROM_ENGINE_METRICS = "from_engine_metrics"
    """Measured forward-pass durations over the profile's for the same work (no queueing in it)."""
    DISABLED = "disabled"
    LOAD_SCALING_ON = "load_scaling_on"
    MISSING_INPUT = "missing_input"
    NON_POSITIVE = "non_positive"


def _finite_non_negative(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value >= 0.0


@dataclass(frozen=True)
class TrafficForecast:
    """Expected traffic in the next interval: request count, mean ISL and OSL (tokens), plus the
    prefill backlog already waiting (prompt tokens queued, from engine metrics)."""

    num_req: float
    isl: float
    osl: float
    interval_s: float
    backlog_prefill_tokens: float = 0.0
    """Prompt tokens already queued at prefill engines, to be cleared within the interval too."""
    isl_buckets: tuple[tuple[float, float], ...] | None = None
    """Shape of the ISL distribution: (bucket upper bound, request count) from the last window."""
    backlog_clear_s: float | None = None
    """Seconds over which the backlog is to be cleared (None: the interval)."""


    def backlog_window_s(self) -> float:
        """The time the backlog is spread over when sizing."""
        if self.backlog_clear_s is not None and math.isfinite(self.backlog_clear_s):
            return max(self.backlog_clear_s, self.interval_s)
        return self.interval_s

    def is_trustworthy(self) -> bool:
        """All numbers finite and non-negative, interval positive."""
        return (
            _finite_non_negative(self.num_req)
            and _finite_non_negative(self.isl)
            and _finite_non_negative(self.osl)
            and _finite_non_negative(self.backlog_prefill_tokens)
            and math.isfinite(self.interval_s)
            and self.interval_s > 0.0
        )


@dataclass(frozen=True)
class ObservedTraffic:
    """What the frontend reported over the last interval; None means unknown."""

    num_req: float | None = None
    isl: float | None = None
    osl: float | None = None
    ttft_ms: float | None = None
    itl_ms: float | None = None
    request_duration_s: float | None = None
    isl_buckets: tuple[tuple[float, float], ...] | None = None
    """ISL histogram of the window: (upper bound, requests in the bucket), +inf last."""
    ttft_buckets: tuple[tuple[float, float], ...] | None = None
    """TTFT histogram of the window: (upper bound in seconds, first tokens in the bucket)."""

    def ttft_share_within(self, target_s: float) -> float | None:
        """Share of the window's first tokens within ``target_s`` (linear within the bucket that
        holds the target); None without a histogram or observations."""
        if not self.ttft_buckets:
            return None
        total = sum(c for _, c in self.ttft_buckets)
        if total <= 0:
            return None
        below = 0.0
        lower = 0.0
        for upper, count in self.ttft_buckets:
            if upper <= target_s:
                below += count
            elif lower < target_s:
                if math.isfinite(upper) and upper > lower:
                    below += count * (target_s - lower) / (upper - lower)
                break
            else:
                break
            lower = upper
        return below / total


class TickKind(str, Enum):
    """Which of the planner's loops a tick belongs to."""

    THROUGHPUT = "throughput"
    LOAD = "load"


class DecisionReason(str, Enum):
    """Why a tick's decision is what it is (the closed set shared by logs, metrics and reports)."""

    SCALE_UP = "scale_up"
    SCALE_DOWN = "scale_down"
    REBALANCE = "rebalance"
    NO_CHANGE = "no_change"
    UNKNOWN_TRAFFIC = "unknown_traffic"
    UNKNOWN_WORKERS = "unknown_workers"
    SCALING_IN_PROGRESS = "scaling_in_progress"
    NO_FPM_DATA = "no_fpm_data"
    INSUFFICIENT_DATA = "insufficient_data"
    WORKER_COUNT_MISMATCH = "worker_count_mismatch"
    SCALE_DOWN_CAPPED_BY_THROUGHPUT = "scale_down_capped_by_throughput"
    SCALE_DOWN_REFUSED_CONSOLIDATION = "scale_down_refused_consolidation"
    SCALE_DOWN_HELD_STABILIZATION = "scale_down_held_stabilization"
    """A pool could shrink, but the capacity was wanted within the stabilisation window."""
    AWAITING_THROUGHPUT_FLOOR = "awaiting_throughput_floor"
    """Load loop before the first throughput plan: no scale-down until the floor is known."""
    CAPPED_BY_BUDGET = "capped_by_budget"
    """The GPU budget (the last word) kept a pool below what the loops asked for."""
