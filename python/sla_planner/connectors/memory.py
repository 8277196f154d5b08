"""An in-memory deployment: the connector for tests, demos and embedding the planner in code.

It implements the async :class:`~sla_planner.connectors.base.Connector` protocol with the
semantics of a real deployment, and injects the faults a real one has, so users' tests can
exercise a planner against an API that fails, hangs or rolls out slowly.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import ConnectorError
from ..types import Pool
from .base import ApplyResult, ApplyStatus, DeploymentState, PoolState, ScaleRequest

__all__ = ["InMemoryConnector"]

OnApply = Callable[[dict[Pool, int]], "None | Awaitable[None]"]


class InMemoryConnector:
    """Replica counts per pool, set by ``apply``.

    By default engines are ready as soon as they are asked for; ``ready_follows=False`` leaves
    readiness to :meth:`set_ready` (engines starting). ``on_apply(targets)`` (sync or async) is
    called after every applied change.

    Faults: ``fail_reads`` / ``fail_applies`` make that many next reads raise ConnectorError /
    applies return FAILED; ``read_delay_s`` / ``apply_delay_s`` make every call take that long
    (a hung API when larger than the caller's timeout).
    """

    name = "memory"

    def __init__(
        self,
        replicas: dict[Pool, int],
        on_apply: OnApply | None = None,
        *,
        ready_follows: bool = True,
        gpus_per_engine: dict[Pool, int] | None = None,
    ) -> None:
        if not replicas:
            raise ValueError("InMemoryConnector needs at least one pool")
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in replicas.values()):
            raise ValueError(f"replica counts must be integers >= 0, got {replicas}")
        self._replicas = dict(replicas)
        self._ready = dict(replicas)
        self._rolling_out = {p: False for p in replicas}
        self._gpus = dict(gpus_per_engine or {})
        self._on_apply = on_apply
        self.ready_follows = ready_follows
        self.history: list[dict[Pool, int]] = []
        """Targets of every applied change, in order."""
        self.requests: list[ScaleRequest] = []
        """Every ScaleRequest received (applied or not)."""
        self.reads = 0
        self.fail_reads = 0
        self.fail_applies = 0
        self.read_delay_s = 0.0
        self.apply_delay_s = 0.0
        self.closed = False

    # ------------------------------------------------------------------ test helpers
    def current(self) -> dict[Pool, int]:
        """Replica counts now (no fault injection)."""
        return dict(self._replicas)

    def set_ready(self, pool: Pool, ready: int) -> None:
        """Engines of ``pool`` that are serving."""
        self._ready[pool] = int(ready)

    def set_rolling_out(self, pool: Pool, value: bool) -> None:
        """Mark a pool's previous scale as still rolling out (or settled)."""
        self._rolling_out[pool] = value

    # ------------------------------------------------------------------ Connector
    async def read(self) -> DeploymentState:
        """The pools' state (raises ConnectorError while ``fail_reads`` > 0)."""
        self.reads += 1
        if self.read_delay_s > 0:
            await asyncio.sleep(self.read_delay_s)
        if self.fail_reads > 0:
            self.fail_reads -= 1
            raise ConnectorError("in-memory deployment: read failed (injected fault)")
        return DeploymentState(
            pools={p: PoolState(n, min(self._ready.get(p, 0), n) if n else 0, self._gpus.get(p))
                   for p, n in self._replicas.items()},
            rolling_out=dict(self._rolling_out),
        )

    async def apply(self, request: ScaleRequest) -> ApplyResult:
        """Set the replica counts; FAILED while ``fail_applies`` > 0 or for unknown pools."""
        self.requests.append(request)
        if self.apply_delay_s > 0:
            await asyncio.sleep(self.apply_delay_s)
        rid = request.decision_id
        if self.fail_applies > 0:
            self.fail_applies -= 1
            return ApplyResult(ApplyStatus.FAILED, "in-memory deployment: apply failed (injected fault)", rid)
        unknown = sorted(p.value for p in request.targets if p not in self._replicas)
        if unknown:
            return ApplyResult(ApplyStatus.FAILED, f"in-memory deployment has no pool {', '.join(unknown)}", rid)
        bad = {p.value: n for p, n in request.targets.items() if isinstance(n, bool) or not isinstance(n, int) or n < 0}
        if bad:
            return ApplyResult(ApplyStatus.FAILED, f"replica counts must be integers >= 0, got {bad}", rid)
        if all(self._replicas[p] == n for p, n in request.targets.items()):
            return ApplyResult(ApplyStatus.UNCHANGED, "targets equal the current replicas", rid)
        self._replicas.update(request.targets)
        if self.ready_follows:
            self._ready.update(request.targets)
        self.history.append(dict(request.targets))
        if self._on_apply is not None:
            result: Any = self._on_apply(dict(request.targets))
            if inspect.isawaitable(result):
                await result
        return ApplyResult(ApplyStatus.APPLIED, "", rid)

    async def close(self) -> None:
        """Nothing to release."""
        self.closed = True
