"""The orchestrator's side of the virtual connector: read decisions, acknowledge them.

An orchestrator (a process manager, a Slurm or Nomad job, a script) runs this loop::

    async with VirtualConnectorClient("my-namespace") as client:
        while True:
            decision = await client.wait(timeout_s=60)
            if decision is None:
                continue                       # nothing new; check your own health, loop
            await start_or_stop_engines(decision.num_prefill_workers,
                                        decision.num_decode_workers,
                                        drain_first=decision.drain)
            await client.complete(decision, ready_prefill_workers=...,
                                  ready_decode_workers=...)

It speaks the same keys as Dynamo's ``VirtualConnectorClient`` (``get``, ``wait``, ``complete``),
so it also works with Dynamo's planner; reporting ready engines is an addition the sla-planner
virtual connector reads. Transport failures raise :class:`~sla_planner.errors.EtcdError`,
malformed keys :class:`~sla_planner.errors.ConnectorError` naming the key.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from types import TracebackType

from ..errors import ConnectorError
from .etcd_gateway import EtcdClient
from .virtual_wire import (
    KEY_SCALED,
    KEY_STATUS,
    MAX_WORKERS,
    UNSET,
    OrchestratorStatus,
    PlannerDecision,
    PlannerKeys,
    parse_planner_keys,
    planner_prefix,
)

__all__ = ["VirtualConnectorClient", "PlannerDecision", "OrchestratorStatus"]


class VirtualConnectorClient:
    """Reads the planner's decisions under ``v1/{namespace}/planner/`` and acknowledges them.

    Give an :class:`EtcdClient`, or endpoints (comma list or sequence; default
    ``ETCD_ENDPOINTS`` from ``env``, else ``http://localhost:2379``) with ``ETCD_AUTH_*``
    credentials read from ``env`` (default ``os.environ``).
    """

    def __init__(
        self,
        namespace: str,
        etcd: EtcdClient | None = None,
        *,
        endpoints: str | Sequence[str] | None = None,
        timeout_s: float = 5.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.namespace = namespace
        self.prefix = planner_prefix(namespace)
        self.etcd = etcd or EtcdClient.from_env(
            os.environ if env is None else env, endpoints, timeout_s=timeout_s
        )
        self._returned = UNSET

    async def __aenter__(self) -> VirtualConnectorClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def keys(self) -> PlannerKeys:
        """Every planner key, validated."""
        result = await self.etcd.get_prefix(self.prefix)
        return parse_planner_keys(self.prefix, result.kvs, result.revision)

    async def get(self) -> PlannerDecision:
        """The current decision (``decision_id`` −1: none yet)."""
        return (await self.keys()).decision

    async def acknowledged_id(self) -> int:
        """The newest acknowledged decision id (``scaled_decision_id``; −1: none)."""
        return (await self.keys()).scaled_decision_id

    async def wait(self, timeout_s: float | None = None) -> PlannerDecision | None:
        """The next decision to carry out: the current one once its id is above both the
        acknowledged id and the last id this client's ``wait`` returned. Returns at once when
        one is pending (e.g. after the orchestrator restarted); otherwise watches etcd until one
        is written, at most ``timeout_s`` (None: no limit), then returns None."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + max(timeout_s, 0.0)
        while True:
            keys = await self.keys()
            decision = keys.decision
            if decision.decision_id > max(keys.scaled_decision_id, self._returned):
                self._returned = decision.decision_id
                return decision
            remaining = 3600.0 if deadline is None else deadline - loop.time()
            if remaining <= 0:
                return None
            await self.etcd.watch_prefix(self.prefix, keys.revision + 1, remaining)

    async def complete(
        self,
        decision: PlannerDecision,
        *,
        ready_prefill_workers: int | None = None,
        ready_decode_workers: int | None = None,
    ) -> None:
        """Acknowledge ``decision`` (``scaled_decision_id`` = its id); with ready counts, report
        them in the same transaction."""
        if decision.decision_id < 0:
            raise ConnectorError("virtual client: cannot acknowledge a decision with id -1 (none)")
        puts = {self.prefix + KEY_SCALED: str(decision.decision_id).encode()}
        if ready_prefill_workers is not None or ready_decode_workers is not None:
            status = self._status(ready_prefill_workers, ready_decode_workers, decision.decision_id)
            puts[self.prefix + KEY_STATUS] = status.to_json()
        await self.etcd.txn(puts)

    async def report_ready(
        self,
        *,
        prefill: int | None = None,
        decode: int | None = None,
        decision_id: int | None = None,
    ) -> None:
        """Report the engines serving now (aggregated engines count as decode); the planner
        uses them as each pool's ready count. ``decision_id`` defaults to the newest one this
        client returned from :meth:`wait`."""
        seen = self._returned if decision_id is None else decision_id
        status = self._status(prefill, decode, seen)
        await self.etcd.put(self.prefix + KEY_STATUS, status.to_json())

    @staticmethod
    def _status(prefill: int | None, decode: int | None, decision_id: int) -> OrchestratorStatus:
        for name, value in (("prefill", prefill), ("decode", decode)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_WORKERS
            ):
                raise ConnectorError(
                    f"virtual client: ready {name} workers must be an integer in 0..{MAX_WORKERS}, "
                    f"got {value!r}"
                )
        return OrchestratorStatus(
            ready_prefill_workers=UNSET if prefill is None else prefill,
            ready_decode_workers=UNSET if decode is None else decode,
            decision_id=max(decision_id, UNSET),
            reported_at_unix_s=round(time.time(), 3),
        )

    async def close(self) -> None:
        """Close the etcd client."""
        await self.etcd.close()
