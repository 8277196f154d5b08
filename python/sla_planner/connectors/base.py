"""What a connector is: reads the deployment's state and asks it for replica counts.

Adapters (``run``, tests, users' code) drive every connector through this one async Protocol.
A read that fails raises :class:`~sla_planner.errors.ConnectorError` (the tick then sees unknown
workers and holds); an apply never raises for a deployment-side failure: it returns an
:class:`ApplyResult` whose status says what happened, so a failed write is recorded as failed,
never as applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol, runtime_checkable

from ..types import Pool

__all__ = [
    "PoolState",
    "DeploymentState",
    "ScaleRequest",
    "ApplyStatus",
    "ApplyResult",
    "Connector",
]


@dataclass(frozen=True)
class PoolState:
    """One pool of the deployment: engines asked for, engines serving, GPUs per engine."""

    replicas: int
    """Engines the deployment asks for (spec): starting ones included."""
    ready: int
    """Engines serving (Ready)."""
    gpus_per_engine: int | None = None
    """From the engines' resource limits, when the deployment says."""

    @property
    def starting(self) -> int:
        """Engines asked for and not yet ready (starting, pending or stopping)."""
        return max(self.replicas - self.ready, 0)


@dataclass(frozen=True)
class DeploymentState:
    """What a connector read: every pool's state, and whether a previous scale is still rolling out."""

    pools: dict[Pool, PoolState]
    rolling_out: dict[Pool, bool] = field(default_factory=dict)
    """Per pool: a previous scale has not settled (spec != status, or pods not yet Ready)."""
    detail: dict[str, object] = field(default_factory=dict)
    """Connector-specific facts worth logging (resource version, pending pods, ...)."""

    def current(self) -> dict[Pool, int]:
        """Replicas per pool (what the planner's targets are compared with)."""
        return {p: s.replicas for p, s in self.pools.items()}

    def ready(self) -> dict[Pool, int]:
        """Ready engines per pool."""
        return {p: s.ready for p, s in self.pools.items()}

    def in_progress(self) -> dict[Pool, bool]:
        """Per pool: engines still starting, or a rollout not settled."""
        return {
            p: bool(self.rolling_out.get(p, False)) or s.ready != s.replicas
            for p, s in self.pools.items()
        }


@dataclass(frozen=True)
class ScaleRequest:
    """One decision to apply: targets per pool and the engines chosen to leave first."""

    targets: dict[Pool, int]
    decision_id: int
    """Monotonic per planner (the virtual connector's ``decision_id``)."""
    reason: str
    drain: dict[Pool, tuple[str, ...]] = field(default_factory=dict)
    """Per pool, the engines (worker ids, idlest first) the core chose to remove; connectors pass
    them on (pod-deletion-cost annotations, the virtual connector's record)."""
    drain_instances: dict[Pool, tuple[str, ...]] = field(default_factory=dict)
    """The same engines as deployment-side names (pod names) when discovery knows them."""


class ApplyStatus(str, Enum):
    """What became of a ScaleRequest."""

    APPLIED = "applied"
    """The deployment accepted the new replica counts."""
    UNCHANGED = "unchanged"
    """The targets equal what the deployment already asks for; nothing was written."""
    DEFERRED = "deferred"
    """Not written yet: a previous scale is still rolling out or not yet acknowledged."""
    FAILED = "failed"
    """The write was refused or did not complete (error in ``detail``)."""
    ADVISORY = "advisory"
    """Advisory mode (no_operation): computed and recorded, never written."""


@dataclass(frozen=True)
class ApplyResult:
    """Outcome of one apply, with the reason in words."""

    status: ApplyStatus
    detail: str = ""
    decision_id: int | None = None


@runtime_checkable
class Connector(Protocol):
    """A deployment the planner reads and scales (Kubernetes, virtual/etcd, in-memory)."""

    name: str

    async def read(self) -> DeploymentState:
        """The deployment's state now; raises ConnectorError when it cannot be read."""
        ...

    async def apply(self, request: ScaleRequest) -> ApplyResult:
        """Ask for ``request.targets``; never raises for a deployment-side failure."""
        ...

    async def close(self) -> None:
        """Release clients, watches and sockets."""
        ...
