"""Synthetic tick records at fleet scale, for the metrics benchmark and tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..connectors.base import ApplyResult, ApplyStatus, DeploymentState, PoolState
from ..core.load import ROLE_CODES, EngineView
from ..core.planner import Decision, ScheduledTick, TickInput
from ..ticks import TickRecord
from ..types import DecisionReason, ObservedTraffic, Pool, TickKind

__all__ = ["fleet_snapshot", "fleet_record"]


def fleet_snapshot(
    n_workers: int, dp_size: int, rng: np.random.Generator, stale_share: float = 0.01
) -> tuple[dict[str, Any], EngineView]:
    """A disaggregated fleet: half the workers prefill, half decode, ``dp_size`` ranks each,
    heavy-tailed queues (most engines idle-ish, a few hot), a share of stale ranks."""
    n = n_workers * dp_size
    worker = np.repeat(np.arange(n_workers), dp_size)
    prefill = worker < n_workers // 2
    role_names = np.where(prefill, "prefill", "decode").astype(object)
    roles = np.where(prefill, ROLE_CODES["prefill"], ROLE_CODES["decode"]).astype(np.int8)
    worker_id = np.array([f"{'p' if p else 'd'}-{w:05d}" for w, p in zip(worker, prefill)], dtype=object)
    active = rng.random(n) >= stale_share
    zeros = np.zeros(n)
    q_prefill = np.where(prefill, np.floor(rng.pareto(1.5, n) * 500.0), 0.0)
    s_kv = np.where(prefill, 0.0, np.floor(rng.random(n) * 60_000.0))
    q_kv = np.where(prefill, 0.0, np.floor(rng.pareto(2.0, n) * 1000.0))
    snapshot = {
        "worker_id": worker_id,
        "worker_index": worker.astype(np.int64),
        "dp_rank": np.tile(np.arange(dp_size, dtype=np.int64), n_workers),
        "role": role_names,
        "active": active,
        "stale": ~active,
        "last_seen_s": np.full(n, 1000.0),
        "wall_time": np.full(n, 0.02),
        "queued_sum_prefill_tokens": q_prefill,
        "queued_sum_decode_kv_tokens": q_kv,
        "scheduled_sum_decode_kv_tokens": s_kv,
    }
    view = EngineView(
        role=roles, worker=worker.astype(np.int64), active=active, last_seen_s=snapshot["last_seen_s"],
        wall_time=snapshot["wall_time"], s_prefill_tokens=zeros, s_decode_requests=zeros,
        s_decode_kv=s_kv, q_prefill_tokens=q_prefill, q_decode_requests=zeros, q_decode_kv=q_kv,
    )
    return snapshot, view


def fleet_record(snapshot: dict[str, Any], view: EngineView, now_s: float = 1000.0) -> TickRecord:
    """A load tick over the fleet, shaped as the SLA load loop reports one."""
    n_workers = len(set(snapshot["worker_index"].tolist()))
    half = n_workers // 2
    deployment = DeploymentState({Pool.PREFILL: PoolState(half, half, 1), Pool.DECODE: PoolState(half, half, 1)})
    pools_detail = {
        "prefill": {"target": half, "reason": "no_change", "estimate_max": 950.0, "sla": 2000.0},
        "decode": {"target": half + 1, "reason": "scale_up", "estimate_max": 41.0, "sla": 30.0},
    }
    decision = Decision(
        now_s, TickKind.LOAD, {Pool.PREFILL: half, Pool.DECODE: half + 1}, DecisionReason.SCALE_UP,
        {Pool.PREFILL: "no_change", Pool.DECODE: "scale_up"}, None, {"pools": pools_detail, "floor": None},
    )
    traffic = ObservedTraffic(num_req=1200.0, isl=3000.0, osl=150.0, ttft_ms=800.0, itl_ms=28.0,
                              request_duration_s=5.0)
    tick_input = TickInput(now_s=now_s, traffic=traffic, current=deployment.current(), engines=view,
                           ready=deployment.ready())
    return TickRecord(
        tick=ScheduledTick(TickKind.LOAD, now_s), tick_input=tick_input, decision=decision,
        deployment=deployment, apply=ApplyResult(ApplyStatus.APPLIED), lag_s=0.003,
        timings_s={"observe": 0.004, "decide": 0.009, "apply": 0.02}, snapshot=snapshot,
    )
