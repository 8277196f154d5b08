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
from .calibration import EngineSpeed
from .constrain import constrain
from .drain import choose_drain
from .headroom import ForecastErrors, IslMix
from .load import EngineCapabilities, LoadState, PoolLoadResult, load_step
from .settings import CoreSettings
from .throughput import DecodePerf, PrefillPerf, plan_throughput
from .timing import Stabilizer, StartupTracker

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
    """sla-planner's own policy: throughput-based sizing from forecasts and profiling data, and
    load-based scaling from engine metrics, made time- and drain-aware and fitted to the budget.

    Built from one frozen :class:`~sla_planner.core.settings.CoreSettings` (or a PlannerConfig,
    projected once). Every tick ends the same way: stabilisation (a pool shrinks only when every
    recommendation of the last window allows it), start-up holds, then the constraints (minimums,
    GPU budget: the last word), then the idlest engines are named for the pools that shrink.
    """

    name = "planner"

    def __init__(
        self,
        settings: Any,
        forecaster: Forecaster | None,
        prefill_model: PrefillPerf | None,
        decode_model: DecodePerf | None,
        capabilities: EngineCapabilities | None = None,
    ) -> None:
        self.settings: CoreSettings = (
            settings if isinstance(settings, CoreSettings) else CoreSettings.from_config(settings)
        )
        s = self.settings
        self.forecaster = forecaster
        self.prefill_model = prefill_model
        self.decode_model = decode_model
        self.capabilities = capabilities or EngineCapabilities()
        self.load_state = LoadState()
        self.startup = StartupTracker()
        self.stabilizer = Stabilizer()
        self.forecast_errors = ForecastErrors(s.headroom_quantile)
        self.engine_speed = EngineSpeed()
        if s.enable_throughput and forecaster is None:
            raise ValueError("throughput-based scaling needs a forecaster")
        self.last_targets: dict[Pool, int] | None = None
        """The latest throughput recommendation per pool: the floor of the load loop."""
        self.last_load_targets: dict[Pool, int] | None = None
        self._isl_buckets: tuple[tuple[float, float], ...] | None = None
        self._isl_mix = IslMix()

    # -- schedule -------------------------------------------------------------------------------

    def intervals(self) -> dict[TickKind, float]:
        """Tick schedule: each enabled loop and its interval in seconds."""
        return self.settings.intervals()

    def startup_s(self) -> float:
        """The engine start-up time the core plans with: learned when known, else configured."""
        learned = self.startup.longest_s()
        return learned if learned is not None else self.settings.startup_s

    def window_s(self) -> float:
        """The scale-down stabilisation window now in force."""
        return self.settings.window_s(self.startup.longest_s())

    def step(self, tick: ScheduledTick, tick_input: TickInput) -> Decision:
        """Decide one tick."""
        if tick_input.current is not None:
            self.startup.observe(tick_input.now_s, tick_input.current, tick_input.ready)
        if self.settings.mode != "agg":
            self.engine_speed.observe(
                tick_input.engines,
                {Pool.PREFILL: 0, Pool.DECODE: 1},
                self.prefill_model,
                self.decode_model,
            )
        if tick.kind is TickKind.THROUGHPUT and self.settings.enable_throughput:
            return self._throughput_tick(tick_input)
        if tick.kind is TickKind.LOAD and self.settings.enable_load:
            return self._load_tick(tick_input)
        raise ValueError(f"PlannerCore: no {tick.kind.value} loop is configured")

    # -- the common ending of a tick ------------------------------------------------------------

    def _finish(
        self,
        inp: TickInput,
        kind: TickKind,
        wanted: dict[Pool, int],
        recommended: dict[Pool, int],
        pool_reasons: dict[Pool, str],
        detail: dict[str, Any],
        forecast: TrafficForecast | None = None,
        quiet_reason: DecisionReason = DecisionReason.NO_CHANGE,
        steady: dict[Pool, int] | None = None,
    ) -> Decision:
        """Stabilise, hold during start-up, constrain, choose drains; the tick's decision.

        ``wanted``: what the loop asks for per pool; ``recommended``: what it records as its
        recommendation (the size it would accept after the tolerance band); ``steady``: the part
        of it that is not for clearing a backlog (remembered over the long window).
        """
        assert inp.current is not None
        now = inp.now_s
        base_window = self.window_s()
        long_window = self.stabilizer.window_s(now, base_window)
        targets: dict[Pool, int] = {}
        for pool, want in wanted.items():
            cur = int(inp.current.get(pool, 0))
            if pool not in recommended:
                targets[pool] = cur  # no opinion this tick: only the constraints move it
                continue
            rec = recommended[pool]
            self.stabilizer.record(
                now, pool, rec, (steady or {}).get(pool, rec), max(long_window, base_window)
            )
            if want >= cur:
                targets[pool] = want
                continue
            floor = self.stabilizer.floor(now, pool, base_window, long_window)
            held = min(cur, max(want, int(min(floor, cur))))
            if held > want:
                pool_reasons[pool] = DecisionReason.SCALE_DOWN_HELD_STABILIZATION.value
            targets[pool] = held
        in_progress = inp.pools_in_progress or {}
        for pool in targets:
            cur = int(inp.current.get(pool, 0))
            if targets[pool] < cur and (in_progress.get(pool, False) or inp.scaling_in_progress and not in_progress):
                # engines still starting: more may be added, none removed until they are ready
                targets[pool] = cur
                pool_reasons[pool] = ThroughputReason.SCALE_DOWN_HELD_STARTING.value
        fitted = constrain(targets, self.settings.limits, inp.current)
        if fitted.targets != targets:
            for pool, n in fitted.targets.items():
                if n < targets[pool]:
                    pool_reasons[pool] = DecisionReason.CAPPED_BY_BUDGET.value
        targets = fitted.targets
        for pool, n in targets.items():
            cur = int(inp.current.get(pool, 0))
            if n != cur:
                self.stabilizer.note_change(now, pool, cur, n, long_window, self.startup_s())
        detail = dict(
            detail,
            startup_s=self.startup_s(),
            stabilization_window_s=base_window,
            stabilization_long_window_s=long_window,
            constraints=list(fitted.rules),
            gpus=fitted.gpus,
        )
        drain: dict[Pool, tuple[str, ...]] = {}
        for pool, n in targets.items():
            cur = int(inp.current.get(pool, 0))
            if n < cur:
                chosen = choose_drain(inp.engines, pool, cur - n)
                if chosen:
                    drain[pool] = chosen
        if drain:
            detail["drain"] = {p.value: list(ids) for p, ids in drain.items()}
        if all(targets[p] == int(inp.current.get(p, 0)) for p in targets):
            reason = quiet_reason
            if any(r == DecisionReason.SCALE_DOWN_HELD_STABILIZATION.value for r in pool_reasons.values()):
                reason = DecisionReason.SCALE_DOWN_HELD_STABILIZATION
            return Decision(now, kind, None, reason, pool_reasons, forecast, detail)
        reason = _direction(inp.current, targets)
        if "max_gpu_budget" in fitted.rules and reason is not DecisionReason.SCALE_UP:
            reason = DecisionReason.CAPPED_BY_BUDGET if reason is DecisionReason.NO_CHANGE else reason
        return Decision(now, kind, targets, reason, pool_reasons, forecast, detail, drain)

    # -- load loop ------------------------------------------------------------------------------

    def _load_tick(self, inp: TickInput) -> Decision:
        if inp.current is None:
            return Decision(inp.now_s, TickKind.LOAD, None, DecisionReason.UNKNOWN_WORKERS)
        s = self.settings
        assert s.load is not None
        floor = self.last_targets if s.enable_throughput else None
        results = load_step(
            self.load_state,
            inp.engines,
            inp.current,
            inp.pools_in_progress if inp.pools_in_progress is not None else inp.scaling_in_progress,
            inp.now_s,
            s.load,
            self.capabilities,
            floor,
        )
        pool_reasons = {p: r.reason.value for p, r in results.items()}
        detail: dict[str, Any] = {
            "pools": {
                p.value: {"target": r.target, "reason": r.reason.value, **r.detail}
                for p, r in results.items()
            },
            "floor": None if floor is None else {p.value: n for p, n in floor.items()},
        }
        wanted: dict[Pool, int] = {}
        recommended: dict[Pool, int] = {}
        awaiting_floor = s.enable_throughput and self.last_targets is None
        for pool, r in results.items():
            cur = int(inp.current.get(pool, 0))
            if r.target is None:
                wanted[pool] = cur
                continue
            target = r.target
            if awaiting_floor and target < cur:
                # restarted: the throughput loop has not yet said what the floor is
                target = cur
                pool_reasons[pool] = DecisionReason.AWAITING_THROUGHPUT_FLOOR.value
            wanted[pool] = target
            opinion = self._load_opinion(r, cur, target)
            if opinion is not None:
                recommended[pool] = opinion
        quiet = _summarise(results)
        if awaiting_floor and any(
            r == DecisionReason.AWAITING_THROUGHPUT_FLOOR.value for r in pool_reasons.values()
        ):
            quiet = DecisionReason.AWAITING_THROUGHPUT_FLOOR
        # pools without an opinion this tick record nothing (they neither hold nor free
        # capacity); only the constraints can move them
        decision = self._finish(
            inp, TickKind.LOAD, wanted, recommended, pool_reasons, detail, quiet_reason=quiet
        )
        if decision.targets is not None:
            reason = decision.reason
            if reason is DecisionReason.SCALE_DOWN and any(
                r.reason is DecisionReason.SCALE_DOWN_CAPPED_BY_THROUGHPUT for r in results.values()
            ):
                reason = DecisionReason.SCALE_DOWN_CAPPED_BY_THROUGHPUT
            decision = dataclasses.replace(decision, reason=reason)
            self.last_load_targets = decision.targets
        return decision

    def _load_opinion(self, result: PoolLoadResult, current: int, target: int) -> int | None:
        """What a load result says about the pool's size, for the stabilisation record.

        Over the SLA: one more engine. With the throughput loop on, nothing else: sizing is the
        plan's job and the load loop answers bursts above it (its "near" and "under" readings
        are single forward passes of a few engines, too noisy to pin a pool's size on). Without
        it, near the SLA: the current size; under it: the load loop's own step down.
        """
        band = result.detail.get("band")
        if band == "over":
            return target
        if self.settings.enable_throughput:
            return None
        if band == "near":
            return current
        if band == "below":
            return target
        return None

    # -- throughput loop ------------------------------------------------------------------------

    def _forecast(
        self, interval_s: float, backlog: float | None, traffic: ObservedTraffic | None = None
    ) -> TrafficForecast:
        assert self.forecaster is not None
        s = self.settings
        f = self.forecaster.forecast()
        isl = f.isl if _finite(f.isl) and f.isl > 0 else s.default_isl
        osl = f.osl if _finite(f.osl) and f.osl > 0 else s.default_osl
        use_backlog = s.include_backlog and _finite(backlog) and (backlog or 0) > 0
        if traffic is not None and traffic.isl_buckets:
            self._isl_buckets = self._isl_mix.add(traffic.isl_buckets)
        return TrafficForecast(
            f.num_req,
            isl,
            osl,
            interval_s,
            float(backlog) if use_backlog and backlog is not None else 0.0,
            self._isl_buckets,
        )

    def _calibrate(self, traffic: ObservedTraffic) -> None:
        """Give the engine-speed calibration the window's ISL mix (prefill passes are judged
        against the profile's cost for it)."""
        if self.prefill_model is not None and traffic.num_req and self.settings.mode != "agg":
            self.engine_speed.set_isl_mix(
                traffic,
                self.prefill_model,
                self.settings.limits.gpus_per_engine.get(Pool.PREFILL, 1),
            )

    def _project_backlog(self, forecast: TrafficForecast, inp: TickInput) -> TrafficForecast:
        """The prompt backlog as it will be when engines asked for now are ready, spread over
        the stabilisation window (engines added for it stay at least that long).

        The engines serving now keep working for the start-up time: if they outpace demand the
        backlog shrinks (often to nothing), if not it grows by the shortfall. Clearing a backlog
        within one interval instead would add engines that arrive after it is gone.
        """
        backlog = forecast.backlog_prefill_tokens
        if backlog <= 0.0 or self.prefill_model is None:
            return forecast
        pool = Pool.AGG if self.settings.mode == "agg" else Pool.PREFILL
        serving = (inp.ready or inp.current or {}).get(pool)
        if serving is None:
            return forecast
        gpus = self.settings.limits.gpus_per_engine.get(pool, 1)
        capacity = serving * gpus * self.prefill_model.thpt_per_gpu(forecast.isl)
        demand = forecast.num_req * forecast.isl / forecast.interval_s
        projected = max(backlog + (demand - capacity) * self.startup_s(), 0.0)
        return dataclasses.replace(
            forecast, backlog_prefill_tokens=projected, backlog_clear_s=self.window_s()
        )

    def _throughput_tick(self, inp: TickInput) -> Decision:
        s = self.settings
        interval = s.throughput_interval_s
        traffic = inp.traffic
        if traffic is None or not _finite(traffic.num_req) or (traffic.num_req or 0) < 0:
            return Decision(inp.now_s, TickKind.THROUGHPUT, None, DecisionReason.UNKNOWN_TRAFFIC)
        # A window with requests has means; an idle window's means are unknown (0/0), not zero.
        observed = float(traffic.num_req or 0.0)
        has_requests = observed > 0
        assert self.forecaster is not None
        self.forecast_errors.observe(observed)
        self.forecaster.observe(
            observed,
            traffic.isl if has_requests and _finite(traffic.isl) else None,
            traffic.osl if has_requests and _finite(traffic.osl) else None,
        )
        point = self._forecast(interval, inp.backlog_prefill_tokens, traffic)
        self.forecast_errors.remember(point.num_req)
        # Time-aware: engines asked for now serve from now + start-up, so plan for the busiest of
        # the intervals until then and the one after (a trend model sees a ramp coming).
        horizon = max(1, math.ceil((self.startup_s() + interval) / interval))
        ahead = getattr(self.forecaster, "forecast_ahead", None)
        busiest = max(point.num_req, float(ahead(horizon)) if ahead is not None else 0.0)
        planned = self.forecast_errors.upper(busiest)
        if s.forecast_at_least_observed and observed > busiest + 2.0 * math.sqrt(max(busiest, 1.0)):
            # Scale up as fast as load rises: a trend model lags a step, so a count above the
            # forecast by more than its Poisson noise (two standard deviations) is planned for as
            # it is. Within the noise it is the noise the queueing models already allow for.
            planned = max(planned, observed)
        self._calibrate(traffic)
        forecast = dataclasses.replace(point, num_req=planned)
        forecast = self._project_backlog(forecast, inp)
        if inp.current is None:
            return Decision(
                inp.now_s, TickKind.THROUGHPUT, None, DecisionReason.UNKNOWN_WORKERS, forecast=forecast
            )
        current_decode = inp.current.get(Pool.DECODE) or inp.current.get(Pool.AGG)
        speed = {
            pool: self.engine_speed.factor(pool)
            for pool in (Pool.PREFILL, Pool.DECODE)
            if self.engine_speed.samples.get(pool)
        }

        def plan_for(f: TrafficForecast) -> Any:
            return plan_throughput(
                f, s.throughput, self.prefill_model, self.decode_model, traffic, current_decode, speed
            )

        plan = plan_for(forecast)
        detail = plan.to_dict()
        detail["forecast_point_num_req"] = point.num_req
        detail["forecast_horizon_num_req"] = busiest
        detail["forecast_planned_num_req"] = planned
        detail["observed_ttft_within_sla"] = traffic.ttft_share_within(s.ttft_ms / 1e3)
        detail["engine_speed"] = {p.value: f for p, f in speed.items()}
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
        # the size a pool may shrink to must carry the forecast with the tolerance band to spare
        tol = s.tolerance
        relaxed = plan
        if tol > 0.0 and planned > 0.0:
            relaxed = plan_for(
                dataclasses.replace(
                    forecast,
                    num_req=planned / (1.0 - tol),
                    backlog_prefill_tokens=forecast.backlog_prefill_tokens / (1.0 - tol),
                )
            )
        steady_plan = plan
        if forecast.backlog_prefill_tokens > 0.0:
            steady_plan = plan_for(dataclasses.replace(forecast, backlog_prefill_tokens=0.0))
        wanted: dict[Pool, int] = {}
        recommended: dict[Pool, int] = {}
        steady: dict[Pool, int] = {}
        for pool, n in plan.replicas.items():
            cur = int(inp.current.get(pool, 0))
            steady[pool] = (steady_plan.replicas or plan.replicas)[pool]
            if n >= cur:
                wanted[pool] = recommended[pool] = n
            else:
                down = (relaxed.replicas or plan.replicas)[pool]
                wanted[pool] = recommended[pool] = min(cur, max(n, down))
        wanted = self._hold_scale_down_while_violating(wanted, inp, traffic, forecast, pool_reasons)
        self.last_targets = dict(recommended)
        if s.enable_load:
            # Both loops on: this plan is the floor the load loop respects; capacity the load
            # loop added above it goes only through the stabilisation window.
            pass
        return self._finish(
            inp, TickKind.THROUGHPUT, wanted, recommended, pool_reasons, detail, forecast,
            steady=steady,
        )

    def _hold_scale_down_while_violating(
        self,
        targets: dict[Pool, int],
        inp: TickInput,
        traffic: ObservedTraffic,
        forecast: TrafficForecast,
        pool_reasons: dict[Pool, str],
    ) -> dict[Pool, int]:
        """Never shrink a pool whose observed latency is over its SLA while it is still behind.

        "Behind" is a prompt backlog the serving engines need more than half the TTFT target to
        clear: once the queue is gone, a window's high latency is history (a burst already
        absorbed), not a sign that the pool is too small now.
        """
        s = self.settings
        assert inp.current is not None
        ttft_over = _finite(traffic.ttft_ms) and (traffic.ttft_ms or 0.0) > s.ttft_ms
        itl_over = _finite(traffic.itl_ms) and (traffic.itl_ms or 0.0) > s.itl_ms
        if (ttft_over or itl_over) and not self._behind(inp, forecast):
            ttft_over = itl_over = False
        violating = {
            Pool.PREFILL: ttft_over,
            Pool.DECODE: itl_over,
            Pool.AGG: ttft_over or itl_over,
        }
        for pool, target in targets.items():
            now = inp.current.get(pool)
            if now is not None and target < now and violating[pool]:
                targets[pool] = now
                pool_reasons[pool] = ThroughputReason.SCALE_DOWN_HELD_SLA_VIOLATED.value
        return targets

    def _behind(self, inp: TickInput, forecast: TrafficForecast) -> bool:
        """The serving prefill engines need more than half the TTFT target to clear the queue."""
        backlog = inp.backlog_prefill_tokens
        if backlog is None or not _finite(backlog) or self.prefill_model is None:
            return True  # unknown: assume behind (hold)
        pool = Pool.AGG if self.settings.mode == "agg" else Pool.PREFILL
        serving = (inp.ready or inp.current or {}).get(pool, 0)
        gpus = self.settings.limits.gpus_per_engine.get(pool, 1)
        capacity = serving * gpus * self.prefill_model.thpt_per_gpu(forecast.isl)
        if capacity <= 0.0:
            return True
        return backlog / capacity > 0.5 * self.settings.ttft_ms / 1e3


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
