"""One tick, as both adapters see it: the shared tick-input builder and the record of a tick.

Replay and live build the core's :class:`~sla_planner.core.planner.TickInput` with the same
function, :func:`build_tick_input`, from the same three observations (frontend traffic, the
deployment's state, the engine table's snapshot), so the core cannot tell them apart. After a
tick, the adapter hands a :class:`TickRecord` to every :class:`TickObserver` (decision log,
metrics, reports, live dashboard).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from .connectors.base import ApplyResult, DeploymentState
from .core.load import EngineView, engine_view_from_snapshot
from .core.planner import Decision, ScheduledTick, TickInput
from .types import ObservedTraffic

__all__ = ["build_tick_input", "queued_prefill_tokens", "TickRecord", "TickObserver"]


def queued_prefill_tokens(snapshot: dict[str, Any]) -> float:
    """Prompt tokens queued at active engines, as their latest forward passes report them."""
    active = np.asarray(snapshot["active"], dtype=bool)
    return float(np.asarray(snapshot["queued_sum_prefill_tokens"], dtype=np.float64)[active].sum())


def build_tick_input(
    now_s: float,
    traffic: ObservedTraffic | None,
    deployment: DeploymentState | None,
    snapshot: dict[str, Any] | None,
    roles: npt.ArrayLike | None = None,
) -> TickInput:
    """The core's input for one tick.

    ``traffic`` None = the frontend read failed (unknown); ``deployment`` None = the connector
    read failed (unknown workers); ``snapshot`` None = no engine metrics (no FPM source or the
    read failed). ``roles`` gives each snapshot row's role (codes or names); by default the
    snapshot's own ``role`` column.
    """
    view: EngineView | None = None
    backlog: float | None = None
    if snapshot is not None:
        row_roles = snapshot["role"] if roles is None else roles
        view = engine_view_from_snapshot(snapshot, row_roles)
        backlog = queued_prefill_tokens(snapshot)
    if deployment is None:
        return TickInput(
            now_s=now_s,
            traffic=traffic,
            current=None,
            backlog_prefill_tokens=backlog,
            engines=view,
        )
    in_progress = deployment.in_progress()
    return TickInput(
        now_s=now_s,
        traffic=traffic,
        current=deployment.current(),
        scaling_in_progress=any(in_progress.values()),
        pools_in_progress=in_progress,
        backlog_prefill_tokens=backlog,
        engines=view,
        ready=deployment.ready(),
    )


@dataclass(frozen=True)
class TickRecord:
    """What one tick saw, decided and did."""

    tick: ScheduledTick
    tick_input: TickInput
    decision: Decision
    deployment: DeploymentState | None = None
    apply: ApplyResult | None = None
    """None when the decision had no targets (a hold)."""
    lag_s: float = 0.0
    """How late the tick started after it was due (wall seconds live, 0 in replay)."""
    timings_s: dict[str, float] = field(default_factory=dict)
    """Seconds per phase: ``observe``, ``decide``, ``apply``."""
    input_errors: dict[str, str] = field(default_factory=dict)
    """Inputs that could not be read this tick, by kind (``prometheus``, ``fpm``, ``connector``)."""
    snapshot: dict[str, Any] | None = None
    """The engine table's snapshot ``tick_input.engines`` was built from (same rows; its
    ``worker_id`` and ``dp_rank`` columns label per-engine metrics), when there was one."""


@runtime_checkable
class TickObserver(Protocol):
    """Receives every tick's record (decision log, metrics, reports, dashboard)."""

    def on_tick(self, record: TickRecord) -> None: ...

    def close(self) -> None: ...
