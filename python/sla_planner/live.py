"""The live adapter: the decision core on the wall clock.

Each loop (throughput, load) ticks at its interval. A tick gathers what the adapters observe
(traffic from a :class:`TrafficSource`, engines from an FPM subscriber, worker counts from the
:class:`Connector`), asks the policy, and applies its targets through the connector unless the
planner is advisory. A failed read is unknown, never zero: the core holds and says why. A
failure in one tick is logged and counted; the loop goes on.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .core.load import engine_view_from_snapshot
from .core.planner import Decision, Policy, ScheduledTick, TickInput
from .types import ObservedTraffic, Pool, TickKind

__all__ = ["Connector", "TrafficSource", "EngineSource", "LiveLoop", "LoopStats"]

log = logging.getLogger(__name__)


class Connector(Protocol):
    """Reads and sets the deployment's replica counts."""

    def current(self) -> dict[Pool, int] | None:
        """Replicas per pool the deployment runs (None when the read failed)."""
        ...

    def pools_in_progress(self) -> dict[Pool, bool]:
        """Per pool, whether engines are still starting or stopping."""
        ...

    def apply(self, targets: dict[Pool, int]) -> None:
        """Ask the deployment for these replica counts."""
        ...


class TrafficSource(Protocol):
    """Frontend traffic over the last ``window_s`` seconds (None when unknown)."""

    def window(self, window_s: float) -> ObservedTraffic | None: ...


class EngineSource(Protocol):
    """Latest forward passes (an FpmSubscriber: snapshot with a ``role`` column)."""

    def snapshot(self, now_s: float | None = None) -> dict[str, Any]: ...


@dataclass
class LoopStats:
    """What the loop did: ticks, decisions by reason, failures by kind, worst tick lag."""

    ticks: int = 0
    applied: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    max_lag_s: float = 0.0


class LiveLoop:
    """Runs a policy against live signals; see the module docstring."""

    def __init__(
        self,
        policy: Policy,
        connector: Connector,
        *,
        engines: EngineSource | None = None,
        traffic: TrafficSource | None = None,
        advisory: bool = False,
        clock: Callable[[], float] = time.time,
        on_decision: Callable[[Decision], None] | None = None,
    ) -> None:
        self.policy = policy
        self.connector = connector
        self.engines = engines
        self.traffic = traffic
        self.advisory = advisory
        self.clock = clock
        self.on_decision = on_decision
        self.stats = LoopStats()
        self.decisions: list[Decision] = []
        self._stop = threading.Event()

    def _count(self, table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1

    def _read(self, kind: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:  # an adapter failure is an unknown input, never a crash
            self._count(self.stats.errors, kind)
            log.warning("reading %s failed: %s", kind, exc)
            return None

    def tick(self, kind: TickKind, due_s: float) -> Decision:
        """Gather inputs, decide, apply (unless advisory). Never raises for an adapter failure."""
        now = self.clock()
        self.stats.max_lag_s = max(self.stats.max_lag_s, now - due_s)
        interval = self.policy.intervals()[kind]
        source = self.traffic
        traffic = self._read("traffic", lambda: source.window(interval)) if source is not None else None
        current = self._read("workers", self.connector.current)
        in_progress = self._read("workers", self.connector.pools_in_progress) or {}
        view = None
        backlog = None
        engines = self.engines
        if engines is not None:
            snap = self._read("engines", lambda: engines.snapshot(now))
            if snap is not None:
                view = engine_view_from_snapshot(snap, snap["role"])
                active = snap["active"]
                backlog = float(snap["queued_sum_prefill_tokens"][active].sum())
        decision = self.policy.step(
            ScheduledTick(kind, due_s),
            TickInput(
                now_s=now,
                traffic=traffic,
                current=current,
                scaling_in_progress=any(in_progress.values()),
                pools_in_progress=in_progress,
                backlog_prefill_tokens=backlog,
                engines=view,
            ),
        )
        self.stats.ticks += 1
        self._count(self.stats.reasons, decision.reason.value)
        self.decisions.append(decision)
        if decision.targets is not None and not self.advisory:
            try:
                self.connector.apply(decision.targets)
                self.stats.applied += 1
            except Exception as exc:
                self._count(self.stats.errors, "apply")
                log.warning("applying %s failed: %s", decision.targets, exc)
        if self.on_decision is not None:
            self.on_decision(decision)
        return decision

    def run(self, duration_s: float | None = None, sleep: Callable[[float], None] | None = None) -> None:
        """Tick every loop at its interval until ``duration_s`` passes or :meth:`stop`."""
        intervals = self.policy.intervals()
        start = self.clock()
        due = {k: start + v for k, v in intervals.items()}
        wait = sleep or (lambda s: self._stop.wait(s))
        while not self._stop.is_set():
            kind = min(due, key=lambda k: (due[k], k.value))
            if duration_s is not None and due[kind] > start + duration_s:
                return
            delay = due[kind] - self.clock()
            if delay > 0:
                wait(delay)
                if self._stop.is_set():
                    return
            try:
                self.tick(kind, due[kind])
            except Exception as exc:  # a policy bug must not stop the planner
                self._count(self.stats.errors, "tick")
                log.exception("tick %s failed: %s", kind.value, exc)
            due[kind] += intervals[kind]
            if not math.isfinite(due[kind]):
                return

    def stop(self) -> None:
        """Ask :meth:`run` to return."""
        self._stop.set()
