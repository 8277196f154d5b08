"""The replay adapter: a trace through a simulated cluster with a policy in the loop.

Time is simulated. Every ``heartbeat_s`` the cluster advances with the arrivals of that step;
ticks fire at each loop's interval, read the frontend window like Prometheus would, ask the policy,
and apply its targets to the cluster (not in advisory mode). After the last arrival the replay
drains in-flight requests for at most ``drain_s`` and records what is still running as unfinished.
A request longer than the engines' context length (``max_request_tokens``) is rejected where it
arrives, as a real frontend would, and counted in ``requests_rejected_too_long``.
Given the same inputs and seed, ``decisions.jsonl`` and ``summary.json`` are identical (apart from
``wall_time_s``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from .connectors.base import ApplyResult, ApplyStatus, DeploymentState, PoolState
from .core.load import role_codes
from .core.planner import Decision, Policy, ScheduledTick
from .sim import _kernel as K
from .sim.cluster import ScaleEvent, SimCluster
from .sim.fpm_bridge import SimFpmBridge
from .sim.frontend import FrontendCounters, FrontendEmulator
from .sim.ledger import IdleFeasibility, RequestLedger
from .observe.decision_log import decision_record, finite_or_none, json_line
from .ticks import TickObserver, TickRecord, build_tick_input
from .types import ObservedTraffic, Pool, TickKind

__all__ = ["ReplayOptions", "ReplayResult", "run_replay", "deployment_state"]

_CHUNK = 4096
_REQUEST_SAMPLE_MAX = 20_000


@dataclass(frozen=True)
class ReplayOptions:
    """How to run a replay (not what to simulate: that is SimSettings and the policy)."""

    ttft_target_ms: float
    itl_target_ms: float
    no_operation: bool = False
    drain_s: float = 600.0
    out_dir: Path | None = None
    progress: bool = False
    title: str = "sla-planner replay"
    stale_after_s: float = 30.0
    max_engines: int = 1 << 16
    max_request_tokens: int | None = None
    """Engines' context length: a request whose input + output tokens exceed it is rejected at
    the frontend (counted as ``requests_rejected_too_long``), never simulated. None: no limit."""


@dataclass
class ReplayResult:
    """Summary, the per-tick timeline and where outputs were written."""

    summary: dict[str, Any]
    ticks: list[dict[str, Any]] = field(default_factory=list)
    report_record: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)


def _roles(worker_ids: npt.NDArray[Any], draining: set[str]) -> npt.NDArray[np.int8]:
    """Simulated worker ids are "<pool>-<n>": the pool is the role. A draining engine belongs
    to no pool any more (as a terminating pod leaves its service's endpoints)."""
    return role_codes(
        ["draining" if str(w) in draining else str(w).split("-", 1)[0] for w in worker_ids]
    )


def deployment_state(cluster: SimCluster) -> DeploymentState:
    """The simulated deployment as a connector would read it."""
    current, ready = cluster.counts(), cluster.ready_counts()
    pools = cluster.settings.pools()
    return DeploymentState(
        pools={
            p: PoolState(current[p], ready[p], cluster.settings.engine_num_gpu(p)) for p in pools
        },
        rolling_out={p: cluster.scaling_in_progress(p) for p in pools},
    )


class _Arrivals:
    """Streams trace requests as numpy chunks and hands out the arrivals of each time step."""

    def __init__(self, requests: Iterable[Any], max_request_tokens: int | None = None) -> None:
        self._it: Iterator[Any] = iter(requests)
        self._max_tokens = max_request_tokens
        self.rejected_too_long = 0
        self._t = np.zeros(0)
        self._isl = np.zeros(0, dtype=np.int64)
        self._osl = np.zeros(0, dtype=np.int64)
        self._idx = np.zeros(0, dtype=np.int64)
        self._pos = 0
        self._count = 0
        self.exhausted = False
        self.last_t = 0.0

    def _refill(self) -> None:
        t, isl, osl = [], [], []
        for req in self._it:
            if self._max_tokens is not None and (
                int(req.input_length) + int(req.output_length) > self._max_tokens
            ):
                self.rejected_too_long += 1  # a real frontend refuses it: no engine could run it
                continue
            t.append(float(req.timestamp_s))
            isl.append(int(req.input_length))
            osl.append(int(req.output_length))
            if len(t) >= _CHUNK:
                break
        if not t:
            self.exhausted = True
            return
        rest = slice(self._pos, None)
        n = len(t)
        self._t = np.concatenate([self._t[rest], np.asarray(t)])
        self._isl = np.concatenate([self._isl[rest], np.asarray(isl, dtype=np.int64)])
        self._osl = np.concatenate([self._osl[rest], np.asarray(osl, dtype=np.int64)])
        self._idx = np.concatenate(
            [self._idx[rest], np.arange(self._count, self._count + n, dtype=np.int64)]
        )
        self._count += n
        self._pos = 0
        self.last_t = float(self._t[-1])

    def take_until(self, t_end: float) -> tuple[npt.NDArray[Any], ...]:
        """Arrivals with timestamp <= t_end, in order."""
        while not self.exhausted and (self._pos >= self._t.shape[0] or self._t[-1] <= t_end):
            self._refill()
        hi = int(np.searchsorted(self._t, t_end, side="right"))
        lo = self._pos
        self._pos = hi
        return self._t[lo:hi], self._isl[lo:hi], self._osl[lo:hi], self._idx[lo:hi]

    @property
    def pending(self) -> bool:
        """Arrivals not yet handed out."""
        return not self.exhausted or self._pos < self._t.shape[0]

    @property
    def total(self) -> int:
        """Requests read so far."""
        return self._count


def _pools(d: dict[Pool, int]) -> dict[str, int]:
    return {p.value: int(n) for p, n in d.items()}


def _event_record(e: ScaleEvent) -> dict[str, Any]:
    return {
        "t_s": e.at_s,
        "pool": e.pool.value,
        "action": e.action,
        "worker_id": e.worker_id,
        "ready_at_s": e.ready_at_s,
        "failed_requests": e.failed_requests,
        "after_drain": e.after_drain,
    }


class _Progress:
    def __init__(self, enabled: bool, total_s: float | None) -> None:
        self.enabled = enabled
        self.total_s = total_s
        self._last = 0.0

    def update(self, sim_s: float, done: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.2:
            return
        self._last = now
        sys.stderr.write(f"\rreplay: {sim_s:8.0f} s simulated, {done:8d} requests finished")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _engine_samples(cluster: SimCluster, t: float) -> list[dict[str, Any]]:
    out = []
    max_kv = float(cluster.perf.max_kv_tokens)
    for e in range(cluster.n_engines):
        if cluster.ei[e, K.EI_ALIVE] != 1 or cluster.ei[e, K.EI_READY] != 1:
            continue
        out.append(
            {
                "t_s": t,
                "worker_id": cluster.worker_id(e),
                "pool": cluster.engine_pool(e).value,
                "queued_prefill_tokens": float(cluster.ef[e, K.EF_Q_TOKENS]),
                "queued_requests": float(cluster.ei[e, K.EI_Q_COUNT] + cluster.ei[e, K.EI_WAIT_COUNT]),
                "running_requests": float(cluster.ei[e, K.EI_RUN_COUNT]),
                "kv_usage": float(cluster.ef[e, K.EF_KV]) / max_kv,
            }
        )
    return out


def _apply_result(decision: Decision, events: list[ScaleEvent], advisory: bool) -> ApplyResult | None:
    """What a connector would have answered for this tick's targets."""
    if decision.targets is None:
        return None
    if advisory:
        return ApplyResult(ApplyStatus.ADVISORY, "advisory mode: not applied")
    if events:
        return ApplyResult(ApplyStatus.APPLIED, f"{len(events)} engines added or removed")
    return ApplyResult(ApplyStatus.UNCHANGED, "targets equal the simulated deployment")


def run_replay(
    requests: Iterable[Any],
    policy: Policy,
    cluster: SimCluster,
    options: ReplayOptions,
    observers: Sequence[TickObserver] = (),
) -> ReplayResult:
    """Play ``requests`` (objects with timestamp_s, input_length, output_length) through ``cluster``.

    Each tick's :class:`~sla_planner.ticks.TickRecord` goes to every observer (metrics, periodic
    reports); closing them is the caller's job. Phase timings are wall seconds; lag is 0.
    """
    wall_start = time.perf_counter()
    out = options.out_dir
    decisions_file: IO[str] | None = None
    csv_path = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        decisions_file = open(out / "decisions.jsonl", "w")
        csv_path = out / "requests.csv"
    feasibility = IdleFeasibility(cluster, options.ttft_target_ms, options.itl_target_ms)
    ledger = RequestLedger(options.ttft_target_ms, options.itl_target_ms, csv_path, feasibility)
    frontend = FrontendEmulator()
    arrivals = _Arrivals(requests, options.max_request_tokens)
    intervals = policy.intervals()
    if not intervals:
        raise ValueError(f"policy {policy.name} schedules no ticks")
    for kind, interval in intervals.items():
        if not (math.isfinite(interval) and interval > 0):
            raise ValueError(f"policy {policy.name}: {kind.value} interval must be > 0, got {interval}")
    next_tick = dict(intervals)
    last_snapshot: dict[TickKind, FrontendCounters] = {k: frontend.snapshot() for k in intervals}
    step = cluster.settings.heartbeat_s
    ticks: list[dict[str, Any]] = []
    engines: list[dict[str, Any]] = []
    sample: dict[str, list[float]] = {"finish_s": [], "ttft_ms": [], "itl_ms": []}
    sample_stride = 1
    finished = 0
    progress = _Progress(options.progress, None)

    bridge = SimFpmBridge(
        cluster, history_len=10, stale_after_s=options.stale_after_s, max_engines=options.max_engines
    )

    def sink() -> None:
        nonlocal finished, sample_stride
        bridge.ingest(cluster.take_fpm(), cluster.now_s)
        done = cluster.take_done()
        if done.shape[0] == 0:
            return
        frontend.on_records(done)
        ledger.add(done, cluster.worker_id)
        ok = done[done[:, K.D_STATUS] == K.STATUS_OK]
        finished += int((done[:, K.D_STATUS] != K.STATUS_FIRST_TOKEN).sum())
        for row in ok[::sample_stride]:
            gaps = row[K.D_OSL] - 1.0
            sample["finish_s"].append(float(row[K.D_DONE]))
            sample["ttft_ms"].append(float((row[K.D_FIRST] - row[K.D_ARRIVAL]) * 1e3))
            sample["itl_ms"].append(
                float((row[K.D_DONE] - row[K.D_FIRST]) / gaps * 1e3) if gaps > 0 else float("nan")
            )
        if len(sample["finish_s"]) > _REQUEST_SAMPLE_MAX:
            for key in sample:
                sample[key] = sample[key][::2]
            sample_stride *= 2

    t = 0.0
    while True:
        t_next = min(t + step, min(next_tick.values()))
        a_t, a_isl, a_osl, a_idx = arrivals.take_until(t_next)
        frontend.on_arrivals(a_isl)
        cluster.advance(t_next, a_t, a_isl, a_osl, a_idx, sink)
        sink()
        bridge.apply_scale_events(cluster.take_retired())
        t = t_next
        for kind in sorted(next_tick, key=lambda k: k.value):
            if next_tick[kind] > t + 1e-9:
                continue
            next_tick[kind] += intervals[kind]
            snap = frontend.snapshot()
            traffic = FrontendEmulator.window(last_snapshot[kind], snap)
            last_snapshot[kind] = snap
            phase_start = time.perf_counter()
            deployment = deployment_state(cluster)
            snapshot = bridge.snapshot(t)
            tick_input = build_tick_input(
                t, traffic, deployment, snapshot,
                _roles(snapshot["worker_id"], cluster.draining_workers()),
            )
            decide_start = time.perf_counter()
            scheduled = ScheduledTick(kind, t)
            decision: Decision = policy.step(scheduled, tick_input)
            apply_start = time.perf_counter()
            events: list[ScaleEvent] = []
            if decision.targets is not None and not options.no_operation:
                sink()  # rows of engines about to be removed go out under their own ids
                events = cluster.set_targets(decision.targets, decision.drain)
                bridge.apply_scale_events(events)
                sink()
            tick_record = TickRecord(
                tick=scheduled,
                tick_input=tick_input,
                decision=decision,
                deployment=deployment,
                apply=_apply_result(decision, events, options.no_operation),
            )
            if observers:
                timed = dataclasses.replace(
                    tick_record,
                    timings_s={
                        "observe": decide_start - phase_start,
                        "decide": apply_start - decide_start,
                        "apply": time.perf_counter() - apply_start,
                    },
                    snapshot=snapshot,
                )
                for observer in observers:
                    observer.on_tick(timed)
            # the decision log holds no wall-clock timings: a replay's log is reproducible
            record = decision_record(tick_record)
            record.update(
                {
                    "replicas": _pools(cluster.counts()),
                    "gpus": cluster.gpus_in_use(),
                    "gpu_hours": cluster.gpu_seconds / 3600.0,
                    "frontend_waiting": cluster.frontend_waiting,
                    "in_flight": cluster.in_flight,
                }
            )
            ticks.append({k: v for k, v in record.items() if k not in ("pool_reasons", "detail")})
            engines.extend(_engine_samples(cluster, t))
            if decisions_file is not None:
                record["events"] = [_event_record(e) for e in events]
                decisions_file.write(json_line(record) + "\n")
        progress.update(t, finished)
        if not arrivals.pending:
            if cluster.in_flight == 0 and cluster.frontend_waiting == 0:
                break
            if t >= arrivals.last_t + options.drain_s:
                break
    cluster.finish()
    sink()
    progress.close()
    ledger.close()
    if decisions_file is not None:
        decisions_file.close()

    wall = time.perf_counter() - wall_start
    summary: dict[str, Any] = ledger.summary()
    bridge.apply_scale_events(cluster.take_retired())
    decided = [e for e in cluster.scale_events if e.decided]
    adds = sum(1 for e in decided if e.action == "add")
    removes = sum(1 for e in decided if e.action in ("remove", "drain"))
    drains = sum(1 for e in decided if e.action == "drain")
    summary.update(
        {
            "gpu_hours": cluster.gpu_seconds / 3600.0,
            "scale_events": len(decided),
            "engines_added": adds,
            "engines_removed": removes,
            "engines_drained": drains,
            "requests_failed_scale_down": int(summary["outcomes"].get("failed_engine_removed", 0)),
            "sim_duration_s": t,
            "wall_time_s": wall,
            "requests_per_wall_s": summary["requests_total"] / wall if wall > 0 else None,
            "sim_s_per_wall_s": t / wall if wall > 0 else None,
            "policy": policy.name,
            "ttft_target_ms": options.ttft_target_ms,
            "itl_target_ms": options.itl_target_ms,
            "advisory": options.no_operation,
            "requests_rejected_too_long": arrivals.rejected_too_long,
        }
    )
    summary = finite_or_none(summary)
    report: dict[str, Any] = {
        "title": options.title,
        "generated_by": "sla-planner",
        "summary": summary,
        "sla": {"ttft_ms": options.ttft_target_ms, "itl_ms": options.itl_target_ms},
        "pools": [p.value for p in cluster.settings.pools()],
        "ticks": finite_or_none(ticks),
        "engines": engines,
        "requests_sample": finite_or_none(sample),
        "scale_events": [_event_record(e) for e in cluster.scale_events],
    }
    result = ReplayResult(summary, ticks, report)
    if out is not None:
        summary_path = out / "summary.json"
        summary_path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        result.outputs = {
            "summary": str(summary_path),
            "decisions": str(out / "decisions.jsonl"),
            "requests": str(out / "requests.csv"),
        }
    return result
