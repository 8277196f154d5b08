"""The decision core: one tick in, one decision out.

``PlannerCore.step(tick, tick_input)`` reads no clock and does no I/O: time arrives as
``tick_input.now_s``, observations as values, and the result is a :class:`Decision` that the live
and replay adapters apply (or only record, in advisory mode). The core's own state (forecasters,
last targets) changes only inside ``step``, deterministically, so a replay is repeatable.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..types import (
    DecisionReason,
    ThroughputReason,
    ObservedTraffic,
    Pool,
    TickKind,
    TrafficForecast,
)
from .load import EngineCapabilities, LoadSettings, LoadState, PoolLoadResult, load_step
from .throughput import DecodePerf, PrefillPerf, ThroughputSettings, plan_throughput

__all__ = [
    "ScheduledTick",
    "TickInput",
    "Decision",
    "Forecaster",
    "Policy",
    "PlannerCore",
    "StaticPolicy",
]


@dataclass(frozen=True)
class ScheduledTick:
    """A tick the adapter's scheduler fired: which loop, and the time it was due."""

    kind: TickKind
    due_s: float


@dataclass(frozen=True)
class TickInput:
    """What the adapter observed for this tick. ``None`` means unknown (a read failed)."""

    now_s: float
    traffic: ObservedTraffic | None
    current: dict[Pool, int] | None
    scaling_in_progress: bool = False
    """Any engine of the deployment still starting."""
    pools_in_progress: dict[Pool, bool] | None = None
    """Per pool, when the adapter knows it (load ticks hold only the pools that are scaling)."""
    backlog_prefill_tokens: float | None = None
    engines: Any = None
    ready: dict[Pool, int] | None = None
    """Engines per pool that are serving (None when the adapter does not know)."""


@dataclass(frozen=True)
class Decision:
    """Replica targets per pool (None = hold) with the reason and the numbers behind it."""

    at_s: float
    tick: TickKind
    targets: dict[Pool, int] | None
    reason: DecisionReason
    pool_reasons: dict[Pool, str] = field(default_factory=dict)
    forecast: TrafficForecast | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    drain: dict[Pool, tuple[str, ...]] = field(default_factory=dict)
    """Per pool being shrunk, the engines (worker ids, first to go first) chosen to leave."""

    def to_record(self) -> dict[str, Any]:
        """JSON-safe record for decision logs."""
        return {
            "at_s": self.at_s,
            "tick": self.tick.value,
            "reason": self.reason.value,
            "targets": None if self.targets is None else {p.value: n for p, n in self.targets.items()},
            "pool_reasons": {p.value: r for p, r in self.pool_reasons.items()},
            "forecast": None
            if self.forecast is None
            else {
                "num_req": self.forecast.num_req,
                "isl": self.forecast.isl,
                "osl": self.forecast.osl,
                "interval_s": self.forecast.interval_s,
                "backlog_prefill_tokens": self.forecast.backlog_prefill_tokens,
            },
            "detail": self.detail,
            "drain": {p.value: list(ids) for p, ids in self.drain.items()},
        }


class Forecaster(Protocol):
    """Request count / ISL / OSL forecasting (see sla_planner.predict.LoadPredictors)."""

    def observe(self, num_req: float, isl: float | None, osl: float | None) -> None: ...

    def forecast(self) -> Any: ...


class Policy(Protocol):
    """What replay (and live) drive: a schedule of ticks and a decision per tick."""

    name: str

    def intervals(self) -> dict[TickKind, float]: ...

    def step(self, tick: ScheduledTick, tick_input: TickInput) -> Decision: ...


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _direction(current: dict[Pool, int] | None, targets: dict[Pool, int]) -> DecisionReason:
    if current is None:
        return DecisionReason.SCALE_UP
    ups = any(targets[p] > current.get(p, 0) for p in targets)
    downs = any(targets[p] < current.get(p, 0) for p in targets)
    if ups and downs:
        return DecisionReason.REBALANCE
    if ups:
        return DecisionReason.SCALE_UP
    if downs:
        return DecisionReason.SCALE_DOWN
    return DecisionReason.NO_CHANGE


class PlannerCore:
    """sla-planner's own policy: throughput-based scaling from forecasts and profiling data."""

    name = "planner"

    def __init__(
        self,
        cfg: Any,
        forecaster: Forecaster | None,
        prefill_model: PrefillPerf | None,
        decode_model: DecodePerf | None,
        capabilities: EngineCapabilities | None = None,
    ) -> None:
        self.cfg = cfg
        self.settings = ThroughputSettings.from_config(cfg)
        self.forecaster = forecaster
        self.prefill_model = prefill_model
        self.decode_model = decode_model
        self.capabilities = capabilities or EngineCapabilities()
        self.load_settings = LoadSettings.from_config(cfg)
        self.load_state = LoadState()
        if cfg.enable_throughput_scaling and forecaster is None:
            raise ValueError("throughput-based scaling needs a forecaster")
        self.last_targets: dict[Pool, int] | None = None
        self.last_load_targets: dict[Pool, int] | None = None
        self._isl_buckets: tuple[tuple[float, float], ...] | None = None

    def intervals(self) -> dict[TickKind, float]:
        """Tick schedule: each enabled loop and its interval in seconds."""
        out: dict[TickKind, float] = {}
        if self.cfg.enable_throughput_scaling:
            out[TickKind.THROUGHPUT] = float(self.cfg.throughput_adjustment_interval)
        if self.cfg.enable_load_scaling:
            out[TickKind.LOAD] = float(self.cfg.load_adjustment_interval)
        return out

    def step(self, tick: ScheduledTick, tick_input: TickInput) -> Decision:
        """Decide one tick."""
        if tick.kind is TickKind.THROUGHPUT and self.cfg.enable_throughput_scaling:
            return self._throughput_tick(tick_input)
        if tick.kind is TickKind.LOAD and self.cfg.enable_load_scaling:
            return self._load_tick(tick_input)
        raise ValueError(f"PlannerCore: no {tick.kind.value} loop is configured")

    def _load_tick(self, inp: TickInput) -> Decision:
        if inp.current is None:
            return Decision(inp.now_s, TickKind.LOAD, None, DecisionReason.UNKNOWN_WORKERS)
        floor = self.last_targets if self.cfg.enable_throughput_scaling else None
        results = load_step(
            self.load_state,
            inp.engines,
            inp.current,
            inp.pools_in_progress if inp.pools_in_progress is not None else inp.scaling_in_progress,
            inp.now_s,
            self.load_settings,
            self.capabilities,
            floor,
        )
        pool_reasons = {p: r.reason.value for p, r in results.items()}
        detail = {
            "pools": {
                p.value: {"target": r.target, "reason": r.reason.value, **r.detail}
                for p, r in results.items()
            },
            "floor": None if floor is None else {p.value: n for p, n in floor.items()},
        }
        targets = {
            p: (r.target if r.target is not None else int(inp.current.get(p, 0)))
            for p, r in results.items()
        }
        changed = any(targets[p] != inp.current.get(p, 0) for p in targets)
        if not changed:
            return Decision(
                inp.now_s, TickKind.LOAD, None, _summarise(results), pool_reasons, None, detail
            )
        reason = _direction(inp.current, targets)
        if reason is DecisionReason.SCALE_DOWN and any(
            r.reason is DecisionReason.SCALE_DOWN_CAPPED_BY_THROUGHPUT for r in results.values()
        ):
            reason = DecisionReason.SCALE_DOWN_CAPPED_BY_THROUGHPUT
        self.last_load_targets = targets
        return Decision(inp.now_s, TickKind.LOAD, targets, reason, pool_reasons, None, detail)

    def _forecast(
        self, interval_s: float, backlog: float | None, traffic: ObservedTraffic | None = None
    ) -> TrafficForecast:
        assert self.forecaster is not None
        f = self.forecaster.forecast()
        isl = f.isl if _finite(f.isl) and f.isl > 0 else float(self.cfg.isl)
        osl = f.osl if _finite(f.osl) and f.osl > 0 else float(self.cfg.osl)
        use_backlog = self.cfg.throughput_include_backlog and _finite(backlog) and (backlog or 0) > 0
        if traffic is not None and traffic.isl_buckets:
            self._isl_buckets = traffic.isl_buckets
        return TrafficForecast(
            f.num_req,
            isl,
            osl,
            interval_s,
            float(backlog) if use_backlog and backlog is not None else 0.0,
            self._isl_buckets,
        )

    def _throughput_tick(self, inp: TickInput) -> Decision:
        interval = float(self.cfg.throughput_adjustment_interval)
        traffic = inp.traffic
        if traffic is None or not _finite(traffic.num_req) or (traffic.num_req or 0) < 0:
            return Decision(inp.now_s, TickKind.THROUGHPUT, None, DecisionReason.UNKNOWN_TRAFFIC)
        # A window with requests has means; an idle window's means are unknown (0/0), not zero.
        has_requests = (traffic.num_req or 0) > 0
        assert self.forecaster is not None
        self.forecaster.observe(
            float(traffic.num_req or 0.0),
            traffic.isl if has_requests and _finite(traffic.isl) else None,
            traffic.osl if has_requests and _finite(traffic.osl) else None,
        )
        forecast = self._forecast(interval, inp.backlog_prefill_tokens, traffic)
        if self.cfg.forecast_at_least_observed and forecast.num_req < (traffic.num_req or 0.0):
            # Scale up as fast as load rises: a trend model lags a step; never plan below the
            # load just seen (scale-down still follows the forecast one interval later).
            forecast = dataclasses.replace(forecast, num_req=float(traffic.num_req or 0.0))
        if inp.current is None:
            return Decision(
                inp.now_s, TickKind.THROUGHPUT, None, DecisionReason.UNKNOWN_WORKERS, forecast=forecast
            )
        current_decode = inp.current.get(Pool.DECODE) or inp.current.get(Pool.AGG)
        plan = plan_throughput(
            forecast,
            self.settings,
            self.prefill_model,
            self.decode_model,
            traffic,
            current_decode,
        )
        detail = plan.to_dict()
        pool_reasons = {p: prop.reason.value for p, prop in plan.proposals.items()}
        if plan.replicas is None:
            return Decision(
                inp.now_s,
                TickKind.THROUGHPUT,
                None,
                DecisionReason.UNKNOWN_TRAFFIC,
                pool_reasons,
                forecast,
                detail,
            )
        targets = self._hold_scale_down_while_violating(
            dict(plan.replicas), inp.current, traffic, pool_reasons
        )
        if inp.scaling_in_progress:
            # Engines are still starting: more may be added, none removed until they are ready.
            targets = {p: max(n, inp.current.get(p, 0)) for p, n in targets.items()}
            if all(targets[p] == inp.current.get(p, 0) for p in targets):
                return Decision(
                    inp.now_s,
                    TickKind.THROUGHPUT,
                    None,
                    DecisionReason.SCALING_IN_PROGRESS,
                    pool_reasons,
                    forecast,
                    detail,
                )
        if self.cfg.enable_load_scaling:
            # Both loops on: the throughput plan is the floor the load loop respects; this tick
            # lifts pools up to it but leaves scale-down to the load loop.
            self.last_targets = dict(targets)
            targets = {p: max(n, inp.current.get(p, 0)) for p, n in targets.items()}
        else:
            self.last_targets = targets
        return Decision(
            inp.now_s,
            TickKind.THROUGHPUT,
            targets,
            _direction(inp.current, targets),
            pool_reasons,
            forecast,
            detail,
        )


    def _hold_scale_down_while_violating(
        self,
        targets: dict[Pool, int],
        current: dict[Pool, int],
        traffic: ObservedTraffic,
        pool_reasons: dict[Pool, str],
    ) -> dict[Pool, int]:
        """Never shrink a pool whose observed latency is over its SLA: it is not keeping up."""
        ttft_over = _finite(traffic.ttft_ms) and (traffic.ttft_ms or 0.0) > self.cfg.ttft
        itl_over = _finite(traffic.itl_ms) and (traffic.itl_ms or 0.0) > self.cfg.itl
        violating = {
            Pool.PREFILL: ttft_over,
            Pool.DECODE: itl_over,
            Pool.AGG: ttft_over or itl_over,
        }
        for pool, target in targets.items():
            now = current.get(pool)
            if now is not None and target < now and violating[pool]:
                targets[pool] = now
                pool_reasons[pool] = ThroughputReason.SCALE_DOWN_HELD_SLA_VIOLATED.value
        return targets


_SUMMARY_ORDER = (
    DecisionReason.WORKER_COUNT_MISMATCH,
    DecisionReason.SCALING_IN_PROGRESS,
    DecisionReason.NO_FPM_DATA,
    DecisionReason.INSUFFICIENT_DATA,
    DecisionReason.SCALE_DOWN_REFUSED_CONSOLIDATION,
    DecisionReason.SCALE_DOWN_CAPPED_BY_THROUGHPUT,
    DecisionReason.NO_CHANGE,
)


def _summarise(results: dict[Pool, PoolLoadResult]) -> DecisionReason:
    """The most informative pool reason of a tick that changes nothing."""
    reasons = {r.reason for r in results.values()}
    for reason in _SUMMARY_ORDER:
        if reason in reasons:
            return reason
    return DecisionReason.NO_CHANGE


class StaticPolicy:
    """A fixed deployment (``static:P,D`` or ``static:N`` for one pool): the baseline to beat."""

    def __init__(self, targets: dict[Pool, int], interval_s: float = 60.0) -> None:
        if any(n < 0 for n in targets.values()):
            raise ValueError(f"static policy replica counts must be >= 0, got {targets}")
        self.targets = dict(targets)
        self.interval_s = interval_s
        self.name = "static:" + ",".join(str(n) for n in targets.values())

    def intervals(self) -> dict[TickKind, float]:
        """One throughput-loop tick per interval (records traffic; never changes anything)."""
        return {TickKind.THROUGHPUT: self.interval_s}

    def step(self, tick: ScheduledTick, tick_input: TickInput) -> Decision:
        """Always the fixed targets."""
        reason = _direction(tick_input.current, self.targets)
        return Decision(tick_input.now_s, tick.kind, dict(self.targets), reason)
