"""The live adapter: the decision core on the wall clock, in asyncio.

Each loop the policy schedules (throughput, load) ticks at its interval; the first throughput
tick runs at once (the last window is already in Prometheus, so the load loop has its
throughput floor from the start). A tick observes concurrently (traffic from a
:class:`TrafficSource` on throughput ticks, the deployment from the
:class:`~sla_planner.connectors.base.Connector`), reads the FPM engine table, builds the core's
input with :func:`~sla_planner.ticks.build_tick_input` (the same function replay uses), asks the
policy, and turns a decision with targets into a :class:`~sla_planner.connectors.base.ScaleRequest`
(monotonic ``decision_id``, the engines to drain as worker ids and as instances) for
``Connector.apply`` — or, in advisory mode, records it as ``advisory`` and applies nothing.
Every tick's :class:`~sla_planner.ticks.TickRecord` (lag, phase timings, input errors, apply
result) goes to every :class:`~sla_planner.ticks.TickObserver`.

A failed read is unknown, never zero: the core holds and says why. Every awaited call has a
timeout, so a hung Prometheus or deployment API never blocks the loop or its shutdown. An
exception in one tick (a policy or observer bug) is logged and counted; the loop goes on.
:meth:`LiveAdapter.stop` (e.g. on SIGTERM) lets the current tick finish, then ``run`` returns.
"""

from __future__ import annotations

import asyncio
import logging
import math
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .connectors.base import ApplyResult, ApplyStatus, Connector, DeploymentState, ScaleRequest
from .core.planner import Decision, Policy, ScheduledTick
from .errors import ConnectorError, SignalError
from .ticks import TickObserver, TickRecord, build_tick_input
from .types import ObservedTraffic, Pool, TickKind

__all__ = [
    "TrafficSource",
    "EngineSource",
    "LiveOptions",
    "LoopStats",
    "LiveAdapter",
    "warm_up_from_history",
]

log = logging.getLogger(__name__)

_RECENT_TICKS = 1024


class TrafficSource(Protocol):
    """Frontend traffic over the last ``window_s`` seconds; raises SignalError when unknown."""

    async def window(self, window_s: float) -> ObservedTraffic: ...


class EngineSource(Protocol):
    """Latest forward passes (an FpmSubscriber: snapshot with ``role`` and ``endpoint`` columns).

    A source may also offer ``instances_of(worker_ids) -> {worker_id: instance}`` so drained
    engines reach the connector as deployment-side names (pods).
    """

    def snapshot(self, now_s: float | None = None) -> dict[str, Any]: ...


@dataclass(frozen=True)
class LiveOptions:
    """How the adapter runs (not what it decides: that is the policy's config)."""

    advisory: bool = False
    """no_operation: compute and record everything, never call ``Connector.apply``."""
    read_timeout_s: float = 10.0
    """Bound on ``Connector.read``."""
    apply_timeout_s: float = 30.0
    """Bound on ``Connector.apply`` (a timed-out apply is recorded as failed)."""
    traffic_timeout_s: float = 10.0
    """Bound on ``TrafficSource.window`` (the source's own retries end earlier)."""
    close_timeout_s: float = 5.0
    """Bound on each close call at shutdown."""
    throughput_first: bool = True
    """Run the first throughput tick at start instead of one interval later."""

    def __post_init__(self) -> None:
        for name in ("read_timeout_s", "apply_timeout_s", "traffic_timeout_s", "close_timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"LiveOptions.{name} must be finite and > 0, got {value!r}")

    @classmethod
    def for_intervals(cls, intervals: Iterable[float], *, advisory: bool, traffic_deadline_s: float | None) -> LiveOptions:
        """Timeouts that fit the ticks: deployment calls within 40 % of the shortest interval
        (1 to 30 s), traffic within the source's own deadline plus 1 s."""
        shortest = min(intervals, default=60.0)
        bound = min(max(0.4 * shortest, 1.0), 30.0)
        traffic = (traffic_deadline_s + 1.0) if traffic_deadline_s is not None else bound
        return cls(advisory=advisory, read_timeout_s=bound, apply_timeout_s=bound, traffic_timeout_s=traffic)


@dataclass
class LoopStats:
    """What the loop did: ticks, decisions by reason, applies by status, failures by kind, lag."""

    ticks: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    applies: dict[str, int] = field(default_factory=dict)
    input_errors: dict[str, int] = field(default_factory=dict)
    """Inputs that could not be read, by kind: ``prometheus``, ``connector``, ``fpm``."""
    tick_errors: int = 0
    """Ticks that raised (a policy bug); the loop went on."""
    observer_errors: int = 0
    skipped_ticks: int = 0
    """Ticks dropped because an earlier one overran by more than an interval."""
    max_lag_s: float = 0.0
    recent_tick_s: deque[float] = field(default_factory=lambda: deque(maxlen=_RECENT_TICKS))
    """Wall seconds of the most recent ticks (observe + decide + apply + observers)."""

    @staticmethod
    def _count(table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1

    def median_tick_s(self) -> float | None:
        """Median duration of the recent ticks (None before the first)."""
        return statistics.median(self.recent_tick_s) if self.recent_tick_s else None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class LiveAdapter:
    """Runs a policy against live signals and a connector (see the module docstring).

    ``traffic`` may be None when no loop needs it (load-based scaling only); ``engines`` may be
    None when no loop reads engine metrics. ``clock`` gives the wall time the core sees.
    The caller owns ``engines`` (start/stop the FPM subscriber); :meth:`aclose` closes the
    observers, the traffic source and the connector.
    """

    def __init__(
        self,
        policy: Policy,
        connector: Connector,
        *,
        traffic: TrafficSource | None = None,
        engines: EngineSource | None = None,
        observers: Sequence[TickObserver] = (),
        options: LiveOptions | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self.connector = connector
        self.traffic = traffic
        self.engines = engines
        self.observers = list(observers)
        self.options = options or LiveOptions()
        self.clock = clock
        self.stats = LoopStats()
        self.last_deployment: DeploymentState | None = None
        self.last_decision_id = 0
        self._stop_requested = threading.Event()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> DeploymentState | None:
        """Read the deployment first (replicas, readiness); continue the connector's decision
        ids when it reports ``detail["last_decision_id"]``. A failed read is logged, not fatal:
        ticks hold with ``unknown_workers`` until the connector answers."""
        self._started = True
        state = await self._read_deployment({})
        if state is None:
            log.warning("deployment not readable at start; ticks hold (unknown_workers) until it is")
            return None
        last = state.detail.get("last_decision_id")
        if isinstance(last, int) and not isinstance(last, bool) and last > self.last_decision_id:
            self.last_decision_id = last
        log.info(
            "deployment at start: %s",
            ", ".join(f"{p.value} {s.ready}/{s.replicas} ready" for p, s in state.pools.items()),
        )
        return state

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current tick (safe from any thread)."""
        self._stop_requested.set()
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # loop closed meanwhile
                pass

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop_requested.is_set()

    async def aclose(self) -> None:
        """Close observers, the traffic source and the connector, each within a timeout."""
        if self._closed:
            return
        self._closed = True
        for observer in self.observers:
            try:
                observer.close()
            except Exception as exc:  # noqa: BLE001 - closing the rest matters more
                log.error("closing observer %s failed: %s", type(observer).__name__, _describe(exc))
        closers: list[tuple[str, Any]] = [("traffic source", getattr(self.traffic, "close", None)),
                                          ("connector", getattr(self.connector, "close", None))]
        for what, close in closers:
            if close is None:
                continue
            try:
                result = close()
                if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                    await asyncio.wait_for(result, self.options.close_timeout_s)
            except Exception as exc:  # noqa: BLE001 - shutdown goes on
                log.error("closing the %s failed: %s", what, _describe(exc))

    # ------------------------------------------------------------------ one tick
    async def _read_traffic(self, window_s: float, errors: dict[str, str]) -> ObservedTraffic | None:
        assert self.traffic is not None
        timeout = self.options.traffic_timeout_s
        try:
            return await asyncio.wait_for(self.traffic.window(window_s), timeout)
        except SignalError as exc:
            errors["prometheus"] = str(exc)
        except TimeoutError:
            errors["prometheus"] = f"traffic source gave no answer within {timeout:g} s"
        except Exception as exc:  # noqa: BLE001 - any failure of a source is an unknown input
            errors["prometheus"] = _describe(exc)
        return None

    async def _read_deployment(self, errors: dict[str, str]) -> DeploymentState | None:
        timeout = self.options.read_timeout_s
        try:
            state = await asyncio.wait_for(self.connector.read(), timeout)
        except ConnectorError as exc:
            errors["connector"] = str(exc)
        except TimeoutError:
            errors["connector"] = f"{self.connector.name} connector: read gave no answer within {timeout:g} s"
        except Exception as exc:  # noqa: BLE001
            errors["connector"] = f"{self.connector.name} connector: {_describe(exc)}"
        else:
            if isinstance(state, DeploymentState):
                self.last_deployment = state
                return state
            errors["connector"] = f"{self.connector.name} connector: read returned {type(state).__name__}"
        return None

    def _snapshot(self, now_s: float, errors: dict[str, str]) -> dict[str, Any] | None:
        if self.engines is None:
            return None
        try:
            return self.engines.snapshot(now_s)
        except Exception as exc:  # noqa: BLE001
            errors["fpm"] = _describe(exc)
            return None

    def _drain_instances(self, drain: dict[Pool, tuple[str, ...]]) -> dict[Pool, tuple[str, ...]]:
        lookup = getattr(self.engines, "instances_of", None)
        if not drain or lookup is None:
            return {}
        try:
            known: dict[str, str] = lookup([w for ids in drain.values() for w in ids])
        except Exception as exc:  # noqa: BLE001 - drain names are a courtesy, not a reason to fail
            log.warning("resolving drained engines to instances failed: %s", _describe(exc))
            return {}
        out = {p: tuple(known[w] for w in ids if w in known) for p, ids in drain.items()}
        return {p: names for p, names in out.items() if names}

    async def _apply(self, decision: Decision) -> ApplyResult:
        assert decision.targets is not None
        self.last_decision_id += 1
        request = ScaleRequest(
            targets=dict(decision.targets),
            decision_id=self.last_decision_id,
            reason=decision.reason.value,
            drain=dict(decision.drain),
            drain_instances=self._drain_instances(decision.drain),
        )
        if self.options.advisory:
            return ApplyResult(ApplyStatus.ADVISORY, "no_operation: recorded, not applied", request.decision_id)
        timeout = self.options.apply_timeout_s
        try:
            result = await asyncio.wait_for(self.connector.apply(request), timeout)
        except TimeoutError:
            return ApplyResult(
                ApplyStatus.FAILED, f"apply gave no answer within {timeout:g} s (outcome unknown)", request.decision_id
            )
        except Exception as exc:  # noqa: BLE001 - a connector that raises still failed to apply
            return ApplyResult(ApplyStatus.FAILED, _describe(exc), request.decision_id)
        if not isinstance(result, ApplyResult):
            return ApplyResult(ApplyStatus.FAILED, f"apply returned {type(result).__name__}", request.decision_id)
        return result

    async def tick(self, kind: TickKind, due_s: float | None = None, lag_s: float = 0.0) -> TickRecord:
        """Observe, decide, apply and notify the observers once; the tick's record.

        Input failures become unknown inputs (never raise); a policy exception propagates
        (``run`` counts it and goes on).
        """
        t0 = time.perf_counter()
        now = self.clock()
        errors: dict[str, str] = {}
        interval = float(self.policy.intervals().get(kind, 0.0))

        async def no_traffic() -> None:
            return None

        wants_traffic = kind is TickKind.THROUGHPUT and self.traffic is not None
        traffic, deployment = await asyncio.gather(
            self._read_traffic(interval, errors) if wants_traffic else no_traffic(),
            self._read_deployment(errors),
        )
        snapshot = self._snapshot(now, errors)
        tick_input = build_tick_input(now, traffic, deployment, snapshot)
        t1 = time.perf_counter()
        scheduled = ScheduledTick(kind, now if due_s is None else due_s)
        decision = self.policy.step(scheduled, tick_input)
        t2 = time.perf_counter()
        applied = await self._apply(decision) if decision.targets is not None else None
        t3 = time.perf_counter()
        record = TickRecord(
            tick=scheduled,
            tick_input=tick_input,
            decision=decision,
            deployment=deployment,
            apply=applied,
            lag_s=lag_s,
            timings_s={"observe": t1 - t0, "decide": t2 - t1, "apply": t3 - t2},
            input_errors=errors,
        )
        self._account(record)
        for observer in self.observers:
            try:
                observer.on_tick(record)
            except Exception as exc:  # noqa: BLE001 - one observer must not stop the planner
                self.stats.observer_errors += 1
                log.error("observer %s failed: %s", type(observer).__name__, _describe(exc))
        self.stats.recent_tick_s.append(time.perf_counter() - t0)
        return record

    def _account(self, record: TickRecord) -> None:
        s = self.stats
        s.ticks += 1
        s.max_lag_s = max(s.max_lag_s, record.lag_s)
        LoopStats._count(s.reasons, record.decision.reason.value)
        for kind, message in record.input_errors.items():
            LoopStats._count(s.input_errors, kind)
            log.warning("%s tick: %s input unknown: %s", record.tick.kind.value, kind, message)
        decision = record.decision
        current = {p.value: n for p, n in (record.tick_input.current or {}).items()} or None
        if record.apply is None:
            log.info("%s tick: %s (replicas %s)", record.tick.kind.value, decision.reason.value, current)
            return
        LoopStats._count(s.applies, record.apply.status.value)
        level = logging.WARNING if record.apply.status is ApplyStatus.FAILED else logging.INFO
        targets = {p.value: n for p, n in (decision.targets or {}).items()}
        log.log(level, "%s tick: %s %s -> %s: decision %s %s%s", record.tick.kind.value, decision.reason.value,
                current, targets, record.apply.decision_id, record.apply.status.value,
                f" ({record.apply.detail})" if record.apply.detail else "")

    # ------------------------------------------------------------------ the loop
    async def _sleep_until(self, deadline_mono: float) -> None:
        assert self._wake is not None
        delay = deadline_mono - time.monotonic()
        if delay <= 0:
            return
        try:
            await asyncio.wait_for(self._wake.wait(), delay)
        except TimeoutError:
            pass

    async def run(self, duration_s: float | None = None) -> LoopStats:
        """Tick every loop at its interval until ``duration_s`` passes or :meth:`stop`."""
        intervals = self.policy.intervals()
        if not intervals:
            raise ValueError(f"policy {self.policy.name} schedules no ticks")
        for kind, interval in intervals.items():
            if not (math.isfinite(interval) and interval > 0):
                raise ValueError(f"policy {self.policy.name}: {kind.value} interval must be > 0, got {interval}")
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self._stop_requested.is_set():
            self._wake.set()
        if not self._started:
            await self.start()
        mono0, wall0 = time.monotonic(), self.clock()
        end = math.inf if duration_s is None else mono0 + duration_s
        due = {
            k: mono0 if (k is TickKind.THROUGHPUT and self.options.throughput_first) else mono0 + v
            for k, v in intervals.items()
        }
        while not self._stop_requested.is_set():
            kind = min(due, key=lambda k: (due[k], k is not TickKind.THROUGHPUT))
            if due[kind] > end:
                await self._sleep_until(end)
                break
            await self._sleep_until(due[kind])
            if self._stop_requested.is_set():
                break
            lag = max(time.monotonic() - due[kind], 0.0)
            try:
                await self.tick(kind, wall0 + (due[kind] - mono0), lag)
            except Exception as exc:  # noqa: BLE001 - a policy bug must not stop the planner
                self.stats.tick_errors += 1
                log.exception("%s tick failed: %s", kind.value, _describe(exc))
            interval = intervals[kind]
            due[kind] += interval
            behind = time.monotonic() - due[kind]
            if behind > 0:
                skipped = math.ceil(behind / interval)
                due[kind] += skipped * interval
                self.stats.skipped_ticks += skipped
                log.warning("%s ticks overran: skipped %d", kind.value, skipped)
        return self.stats


async def warm_up_from_history(
    forecaster: Any,
    history: Callable[[float, int, float], Any],
    window_s: float,
    windows: int,
    end_s: float,
    timeout_s: float,
) -> int:
    """Feed ``forecaster.observe`` the known windows of ``history(window_s, windows, end_s)``
    (a PrometheusTraffic.history); unknown windows are skipped. The number of windows fed;
    0 when the history cannot be read (logged: the predictors start cold, as without warm-up)."""
    try:
        points = await asyncio.wait_for(history(window_s, windows, end_s), timeout_s)
    except (SignalError, TimeoutError) as exc:
        log.warning("no warm-up from Prometheus history: %s", exc or "timed out")
        return 0
    fed = 0
    for point in points:
        traffic = point.traffic
        if traffic is None or traffic.num_req is None:
            continue
        busy = traffic.num_req > 0
        forecaster.observe(traffic.num_req, traffic.isl if busy else None, traffic.osl if busy else None)
        fed += 1
    log.info("load predictors warmed up from Prometheus: %d of %d past windows", fed, len(points))
    return fed
