"""The virtual connector: scaling decisions in etcd for an orchestrator that is not Kubernetes.

Wire-compatible with Dynamo's virtual connector (layout in :mod:`.virtual_wire`): the planner
writes a decision (engine counts and a new ``decision_id``), the orchestrator carries it out and
acknowledges it by writing ``scaled_decision_id``. :class:`VirtualConnectorClient
<sla_planner.connectors.virtual_client.VirtualConnectorClient>` is the orchestrator's side.

**apply** writes a new decision only when a count changes, and only once the previous decision is
acknowledged or has waited ``ack_timeout_s`` since it was written (otherwise DEFERRED, with the
reason). All keys of a decision go in one etcd transaction, guarded by the revisions just read,
so a reader never sees half a decision and two writers cannot interleave. The id continues the
sequence found in etcd, so a restarted planner never reuses one. In blocking mode apply also waits
(at most ``ack_timeout_s``) for the acknowledgement.

**read** reports, per pool:

- ``replicas``: the engines the current decision asks for (what the deployment is told to run);
  for a pool with no decision yet (−1), the ready count below, and when that is unknown too the
  read fails (the planner holds rather than guess).
- ``ready``: engines serving, from the first source that knows: the orchestrator's report
  (``orchestrator_status``, written by the shipped client), then the engines the planner's own
  engine discovery sees (``engines_ready``, e.g. the FPM subscriber's engine table, as Dynamo uses
  runtime discovery), then the decision itself: all of it once acknowledged, and while it is
  pending the smaller of it and the last acknowledged decision's count (0 when none was).
- ``rolling_out``: the current decision is not yet acknowledged and changed this pool.

State lives in etcd only: a restarted planner reads it back, including a decision still waiting
for its acknowledgement (and when it was written, for the timeout).
"""

from __future__ import annotations

import asyncio
import operator
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ..errors import ConnectorError
from ..types import Pool, pools_for_mode
from .base import ApplyResult, ApplyStatus, DeploymentState, PoolState, ScaleRequest
from .etcd_gateway import EtcdClient
from .virtual_wire import (
    MAX_WORKERS,
    UNSET,
    WORKER_KINDS,
    Acknowledged,
    KEY_DECISION_ID,
    KEY_RECORD,
    PlannerDecision,
    PlannerKeys,
    WorkerKind,
    decision_puts,
    parse_planner_keys,
    planner_prefix,
)

if TYPE_CHECKING:
    from ..config import PlannerConfig

__all__ = ["EnginesReady", "VirtualConnector", "worker_kind"]

#: Engines seen by the planner's own discovery, per pool (None or a missing pool: not known).
EnginesReady = Callable[[], Mapping[Pool, int] | None]


def worker_kind(pool: Pool) -> WorkerKind:
    """The wire's worker kind of a pool: aggregated engines are Dynamo's decode workers."""
    return "prefill" if pool is Pool.PREFILL else "decode"


class VirtualConnector:
    """Decisions in etcd, acknowledged by the orchestrator (see the module docstring)."""

    name = "virtual"

    def __init__(
        self,
        etcd: EtcdClient,
        namespace: str,
        *,
        pools: tuple[Pool, ...] = (Pool.PREFILL, Pool.DECODE),
        ack_timeout_s: float = 1800.0,
        blocking: bool = False,
        engines_ready: EnginesReady | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not pools or len({worker_kind(p) for p in pools}) != len(pools):
            raise ValueError(f"pools {[p.value for p in pools]}: agg and decode share one key")
        if not ack_timeout_s > 0:
            raise ValueError(f"ack_timeout_s must be > 0, got {ack_timeout_s}")
        self.etcd = etcd
        self.namespace = namespace
        self.prefix = planner_prefix(namespace)
        self.pools = tuple(pools)
        self.ack_timeout_s = float(ack_timeout_s)
        self.blocking = blocking
        self._engines_ready = engines_ready
        self._clock = clock
        self._pending_seen: tuple[int, float] | None = None

    @classmethod
    def from_config(
        cls,
        cfg: PlannerConfig,
        env: Mapping[str, str] | None = None,
        *,
        engines_ready: EnginesReady | None = None,
    ) -> VirtualConnector:
        """The connector a config describes: namespace, mode's pools, the ``virtual_*`` fields;
        etcd endpoints from the config, else ``ETCD_ENDPOINTS``; credentials from ``env``
        (``ETCD_AUTH_*``, as Dynamo reads them)."""
        etcd = EtcdClient.from_env(
            env or {}, cfg.virtual_etcd_endpoints, timeout_s=cfg.virtual_etcd_timeout_s
        )
        return cls(
            etcd,
            cfg.namespace,
            pools=pools_for_mode(cfg.mode),
            ack_timeout_s=cfg.virtual_ack_timeout_s,
            blocking=cfg.virtual_blocking,
            engines_ready=engines_ready,
        )

    # -- reading ------------------------------------------------------------------------------

    async def keys(self) -> PlannerKeys:
        """Every planner key, validated (raises EtcdError / ConnectorError naming the key)."""
        result = await self.etcd.get_prefix(self.prefix)
        return parse_planner_keys(self.prefix, result.kvs, result.revision)

    async def read(self) -> DeploymentState:
        """The deployment as the decisions and the orchestrator describe it."""
        try:
            keys = await self.keys()
        except ConnectorError as exc:
            # same class (EtcdError: unreachable; ConnectorError: a malformed key), with context
            raise type(exc)(f"virtual connector ({self.prefix}): read failed: {exc}") from None
        seen = self._engines_seen()
        pools: dict[Pool, PoolState] = {}
        rolling: dict[Pool, bool] = {}
        sources: dict[str, str] = {}
        decision = keys.decision
        for pool in self.pools:
            kind = worker_kind(pool)
            desired = decision.count(kind)
            observed, source = self._observed(keys, pool, seen)
            if desired >= 0:
                replicas = desired
            elif observed is not None:
                replicas = observed
            else:
                raise ConnectorError(
                    f"virtual connector ({self.prefix}): {pool.value} engines unknown: no decision "
                    f"sets {kind} workers yet, the orchestrator reported no ready count and no "
                    "engine discovery is attached"
                )
            prior = self._last_acknowledged(keys, kind)
            if observed is None:
                if keys.acknowledged:
                    observed, source = replicas, "acknowledged_decision"
                else:
                    observed = min(replicas, prior) if prior >= 0 else 0
                    source = "last_acknowledged_decision"
            pools[pool] = PoolState(replicas=replicas, ready=observed)
            rolling[pool] = not keys.acknowledged and (prior < 0 or prior != desired)
            sources[pool.value] = source
        detail: dict[str, object] = {
            "decision_id": decision.decision_id,
            "scaled_decision_id": keys.scaled_decision_id,
            "acknowledged": keys.acknowledged,
            "ready_source": sources,
            "etcd_endpoint": self.etcd.endpoint,
        }
        if not keys.acknowledged:
            detail["pending_s"] = round(self._pending_for_s(keys), 3)
        if keys.notes:
            detail["notes"] = list(keys.notes)
        return DeploymentState(pools=pools, rolling_out=rolling, detail=detail)

    def _engines_seen(self) -> Mapping[Pool, int] | None:
        if self._engines_ready is None:
            return None
        try:
            return self._engines_ready()
        except Exception as exc:  # noqa: BLE001 - a discovery hiccup must not fail the read
            raise ConnectorError(f"virtual connector: engine discovery failed: {exc}") from None

    @staticmethod
    def _observed(
        keys: PlannerKeys, pool: Pool, seen: Mapping[Pool, int] | None
    ) -> tuple[int | None, str]:
        """Ready engines of ``pool`` from the orchestrator's report, else from discovery."""
        if keys.status is not None and keys.status.ready(worker_kind(pool)) >= 0:
            return keys.status.ready(worker_kind(pool)), "orchestrator_status"
        if seen is not None and seen.get(pool) is not None:
            count = int(seen[pool])
            if not 0 <= count <= MAX_WORKERS:
                raise ConnectorError(f"virtual connector: engine discovery counted {count}")
            return count, "engine_discovery"
        return None, ""

    @staticmethod
    def _last_acknowledged(keys: PlannerKeys, kind: WorkerKind) -> int:
        """The count of the newest acknowledged decision, −1 when none is known."""
        decision = keys.decision
        if decision.is_set and keys.acknowledged:
            return decision.count(kind)
        last = decision.last_acknowledged
        if last is None:
            return UNSET
        return last.num_prefill_workers if kind == "prefill" else last.num_decode_workers

    def _pending_for_s(self, keys: PlannerKeys) -> float:
        """Seconds the current, unacknowledged decision has waited: since it was written (from
        the record), else since this connector first saw it pending."""
        now = self._clock()
        decision_id = keys.decision.decision_id
        if keys.decision.written_at_unix_s is not None:
            since = keys.decision.written_at_unix_s
        else:
            if self._pending_seen is None or self._pending_seen[0] != decision_id:
                self._pending_seen = (decision_id, now)
            since = self._pending_seen[1]
        return max(now - since, 0.0)

    # -- writing ------------------------------------------------------------------------------

    async def apply(self, request: ScaleRequest) -> ApplyResult:
        """Write ``request`` as the next decision when allowed (never raises for etcd trouble)."""
        try:
            counts = self._requested_counts(request)
        except ValueError as exc:
            return ApplyResult(ApplyStatus.FAILED, f"virtual connector: {exc}")
        try:
            keys = await self.keys()
        except ConnectorError as exc:
            return ApplyResult(ApplyStatus.FAILED, f"virtual connector: read before write: {exc}")
        current = keys.decision
        wanted: dict[WorkerKind, int] = {
            kind: counts.get(kind, current.count(kind)) for kind in WORKER_KINDS
        }
        if current.is_set and all(wanted[k] == current.count(k) for k in wanted):
            state = "acknowledged" if keys.acknowledged else "not yet acknowledged"
            return ApplyResult(
                ApplyStatus.UNCHANGED,
                f"decision {current.decision_id} ({state}) already asks for prefill="
                f"{wanted['prefill']} decode={wanted['decode']}",
                decision_id=current.decision_id,
            )
        note = ""
        if not keys.acknowledged:
            waited = self._pending_for_s(keys)
            if waited < self.ack_timeout_s:
                return ApplyResult(
                    ApplyStatus.DEFERRED,
                    f"decision {current.decision_id} not acknowledged yet (scaled_decision_id="
                    f"{keys.scaled_decision_id}) after {waited:.0f} s; a new decision waits for "
                    f"it up to {self.ack_timeout_s:.0f} s",
                    decision_id=current.decision_id,
                )
            note = (
                f"; decision {current.decision_id} was still unacknowledged after {waited:.0f} s "
                f"(limit {self.ack_timeout_s:.0f} s), superseded"
            )
        try:
            decision = self._next_decision(keys, request, wanted)
        except ConnectorError as exc:
            return ApplyResult(ApplyStatus.FAILED, f"virtual connector: {exc}")
        guard = {
            self.prefix + KEY_DECISION_ID: keys.mod_revision(KEY_DECISION_ID),
            self.prefix + KEY_RECORD: keys.mod_revision(KEY_RECORD),
        }
        try:
            written, _ = await self.etcd.txn(decision_puts(self.prefix, decision), guard)
        except ConnectorError as exc:
            return ApplyResult(
                ApplyStatus.FAILED,
                f"virtual connector: writing decision {decision.decision_id} failed: {exc}",
            )
        if not written:
            return ApplyResult(
                ApplyStatus.FAILED,
                f"virtual connector: the decision keys under {self.prefix} changed while decision "
                f"{decision.decision_id} was being written (another planner on this namespace?); "
                "nothing written",
            )
        self._pending_seen = None
        detail = (
            f"decision {decision.decision_id}: prefill={wanted['prefill']} "
            f"decode={wanted['decode']}{note}"
        )
        if self.blocking:
            detail += await self._blocking_wait(decision.decision_id)
        return ApplyResult(ApplyStatus.APPLIED, detail, decision_id=decision.decision_id)

    def _requested_counts(self, request: ScaleRequest) -> dict[WorkerKind, int]:
        counts: dict[WorkerKind, int] = {}
        for pool, target in request.targets.items():
            if pool not in self.pools:
                raise ValueError(
                    f"pool {pool.value} is not one of this deployment's "
                    f"{[p.value for p in self.pools]}"
                )
            try:
                if isinstance(target, bool):
                    raise TypeError
                count = operator.index(target)
            except TypeError:
                raise ValueError(f"target for {pool.value} must be an integer, got {target!r}") from None
            if not 0 <= count <= MAX_WORKERS:
                raise ValueError(f"target for {pool.value} = {count} is outside 0..{MAX_WORKERS}")
            counts[worker_kind(pool)] = count
        if not counts:
            raise ValueError("the request has no targets")
        return counts

    def _next_decision(
        self, keys: PlannerKeys, request: ScaleRequest, wanted: Mapping[WorkerKind, int]
    ) -> PlannerDecision:
        current = keys.decision
        if current.is_set and keys.acknowledged:
            last: Acknowledged | None = Acknowledged(
                current.decision_id, current.num_prefill_workers, current.num_decode_workers
            )
        else:
            last = current.last_acknowledged
        return PlannerDecision(
            num_prefill_workers=wanted["prefill"],
            num_decode_workers=wanted["decode"],
            decision_id=keys.next_decision_id(),
            drain=_by_kind(request.drain),
            drain_instances=_by_kind(request.drain_instances),
            reason=request.reason,
            written_at_unix_s=round(self._clock(), 3),
            last_acknowledged=last,
        )

    async def _blocking_wait(self, decision_id: int) -> str:
        try:
            acknowledged = await self.wait_for_acknowledgement(decision_id, self.ack_timeout_s)
        except ConnectorError as exc:
            return f"; waiting for the acknowledgement failed: {exc}"
        if acknowledged:
            return "; acknowledged"
        return f"; not acknowledged within {self.ack_timeout_s:.0f} s"

    async def wait_for_acknowledgement(self, decision_id: int, timeout_s: float) -> bool:
        """Wait until ``scaled_decision_id >= decision_id``, at most ``timeout_s``; False on
        timeout. Raises ConnectorError when etcd fails or a key is malformed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            keys = await self.keys()
            if keys.scaled_decision_id >= decision_id:
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await self.etcd.watch_prefix(self.prefix, keys.revision + 1, remaining)

    async def close(self) -> None:
        """Close the etcd client."""
        await self.etcd.close()


def _by_kind(names: Mapping[Pool, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """Per-pool engine names keyed by the wire's worker kind (empty lists dropped)."""
    result: dict[str, tuple[str, ...]] = {}
    for pool, items in names.items():
        if items:
            result.setdefault(worker_kind(pool), ())
            result[worker_kind(pool)] += tuple(str(item) for item in items)
    return result
