"""The hindsight oracle: the fewest engines per interval that could serve the trace within the SLA.

A fluid lower bound, computed from the whole trace and the *simulated* engines (their profile and
time scale), per interval ``k`` of ``I`` seconds (``[k I, (k+1) I)`` of simulated time):

* **prefill**: every prompt is charged its own idle prefill time on a simulated engine,
  ``ISL / (thpt_per_gpu(ISL) * GPUs / time_scale)`` (exactly what the simulator charges); the
  prompts arriving in the interval need ``P_k = ceil(sum / I)`` engines, each busy all interval.
* **decode**: request ``i`` decodes its ``OSL - 1`` tokens at exactly the ITL target from the end of
  its idle prefill, ``[a_i + ttft_i, a_i + ttft_i + (OSL_i - 1) * ITL)``; the tokens falling in
  the interval give the tokens/s in flight, and their token-weighted context ``ISL + OSL / 2`` the
  operating point: ``D_k = ceil(tokens/s / capacity)`` with capacity the decode profile's best
  throughput per GPU under ``ITL / time_scale`` at that context, divided by ``time_scale``
  (the lowest-ITL point when none meets it), times GPUs per engine.
* **aggregated** engines time-share both: ``A_k = ceil(prefill share + decode share)``.

Every pool keeps ``min_endpoint`` engines in every interval. Intervals run from 0 to the end of the
last request's decode. Oracle GPU-hours = ``sum_k GPUs_k * I / 3600``: no start-up time, no
queueing, engines exactly as busy as the work. No deployment can serve the trace with less.

:class:`OraclePolicy` replays that schedule: at every tick the target is the largest need of the
intervals that overlap ``[now, now + start-up + tick)``, so engines are requested a start-up delay
before the interval that needs them and kept until no interval within that window does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt

from ..core.planner import Decision, ScheduledTick, TickInput
from ..sim.ledger import IdleFeasibility
from ..types import DecisionReason, Pool, TickKind
from .workload import Workload

__all__ = ["OracleSchedule", "hindsight_oracle", "OraclePolicy"]

F64 = npt.NDArray[np.float64]
_SLACK = 1e-9


@dataclass(frozen=True)
class OracleSchedule:
    """Per-interval minimum replicas and the numbers behind them."""

    interval_s: float
    replicas: dict[Pool, npt.NDArray[np.int64]]
    gpus_per_engine: dict[Pool, int]
    min_endpoint: int
    prefill_busy_s: F64
    decode_tokens_per_s: F64
    decode_context: F64
    decode_capacity_per_engine: F64

    @property
    def intervals(self) -> int:
        """Number of intervals."""
        return int(self.prefill_busy_s.shape[0])

    @property
    def gpu_hours(self) -> float:
        """Sum over intervals of the GPUs needed times the interval length."""
        gpus = sum(self.replicas[p].astype(np.float64) * g for p, g in self.gpus_per_engine.items())
        return float(np.sum(gpus) * self.interval_s / 3600.0)

    def needed(self, k: int) -> dict[Pool, int]:
        """Replicas interval ``k`` needs (``min_endpoint`` outside the schedule)."""
        if 0 <= k < self.intervals:
            return {p: int(r[k]) for p, r in self.replicas.items()}
        return {p: self.min_endpoint for p in self.replicas}

    def peak(self) -> dict[Pool, int]:
        """The largest need of each pool."""
        return {p: int(r.max()) for p, r in self.replicas.items()}

    def summary(self) -> dict[str, Any]:
        """JSON-safe figures for results.json."""
        return {
            "interval_s": self.interval_s,
            "intervals": self.intervals,
            "gpu_hours": self.gpu_hours,
            "peak_replicas": {p.value: n for p, n in self.peak().items()},
            "mean_replicas": {p.value: float(r.mean()) for p, r in self.replicas.items()},
        }


def _ramp_sums(start: F64, end: F64, weight: F64, t: F64) -> F64:
    """``sum_i weight_i * |[start_i, end_i) ∩ [0, t)|`` for every ``t`` (vectorised by sorting)."""

    def one_side(points: F64) -> F64:
        order = np.argsort(points, kind="stable")
        p, w = points[order], weight[order]
        cw = np.concatenate(([0.0], np.cumsum(w)))
        cwp = np.concatenate(([0.0], np.cumsum(w * p)))
        n = np.searchsorted(p, t, side="left")
        return np.asarray(t * cw[n] - cwp[n], dtype=np.float64)

    return one_side(start) - one_side(end)


def hindsight_oracle(
    work: Workload,
    sim_perf: Any,
    sim_settings: Any,
    decode_model: Any,
    ttft_ms: float,
    itl_ms: float,
    interval_s: float,
    min_endpoint: int = 1,
) -> OracleSchedule:
    """The oracle schedule of ``work`` on engines described by ``sim_perf``/``sim_settings`` (a
    SimPerf and SimSettings) and the simulated profile's ``decode_model`` (see the module doc)."""
    if not (math.isfinite(interval_s) and interval_s > 0):
        raise ValueError(f"oracle interval must be > 0, got {interval_s}")
    idle = IdleFeasibility(SimpleNamespace(perf=sim_perf, settings=sim_settings), ttft_ms, itl_ms)
    ttft_s, _ = idle.idle_times_s(work.isl, work.osl)
    scale = float(sim_settings.time_scale)
    itl_s = itl_ms / 1e3
    steps = np.maximum(work.osl - 1.0, 0.0)
    start = work.arrival_s + ttft_s
    end = start + steps * itl_s
    horizon = float(max(end.max(), start.max(), work.arrival_s.max()))
    n = max(1, int(math.floor(horizon / interval_s)) + 1)
    bounds = np.arange(n + 1, dtype=np.float64) * interval_s

    k_arrival = np.minimum(np.floor(work.arrival_s / interval_s).astype(np.int64), n - 1)
    busy = np.bincount(k_arrival, weights=ttft_s, minlength=n).astype(np.float64)[:n]

    ones = np.ones_like(start)
    context = work.isl + work.osl / 2.0
    decoding = steps > 0
    token_s = np.diff(_ramp_sums(start[decoding], end[decoding], ones[decoding], bounds))
    ctx_token_s = np.diff(_ramp_sums(start[decoding], end[decoding], context[decoding], bounds))
    tokens_per_s = token_s / itl_s / interval_s
    with np.errstate(invalid="ignore", divide="ignore"):
        ctx = np.where(token_s > 0, ctx_token_s / np.where(token_s > 0, token_s, 1.0), np.nan)

    mode = sim_settings.mode
    decode_gpus = int(sim_settings.decode_engine_num_gpu)
    prefill_gpus = int(sim_settings.prefill_engine_num_gpu) if mode == "disagg" else decode_gpus
    capacity = np.full(n, np.nan)
    for k in np.flatnonzero(token_s > 0):
        point = decode_model.best_throughput_per_gpu(itl_ms / scale, float(ctx[k]))
        capacity[k] = float(point.thpt_per_gpu) / scale * decode_gpus

    prefill_share = busy / interval_s
    with np.errstate(invalid="ignore", divide="ignore"):
        decode_share = np.where(token_s > 0, tokens_per_s / capacity, 0.0)

    def engines(share: F64) -> npt.NDArray[np.int64]:
        return np.maximum(np.ceil(share - _SLACK), min_endpoint).astype(np.int64)

    if mode == "disagg":
        replicas = {Pool.PREFILL: engines(prefill_share), Pool.DECODE: engines(decode_share)}
        gpus = {Pool.PREFILL: prefill_gpus, Pool.DECODE: decode_gpus}
    else:
        replicas = {Pool.AGG: engines(prefill_share + decode_share)}
        gpus = {Pool.AGG: decode_gpus}
    return OracleSchedule(
        interval_s, replicas, gpus, min_endpoint, busy, tokens_per_s, ctx, capacity,
    )


def _reason(current: dict[Pool, int] | None, targets: dict[Pool, int]) -> DecisionReason:
    if current is None:
        return DecisionReason.SCALE_UP
    up = any(n > current.get(p, 0) for p, n in targets.items())
    down = any(n < current.get(p, 0) for p, n in targets.items())
    if up and down:
        return DecisionReason.REBALANCE
    return DecisionReason.SCALE_UP if up else DecisionReason.SCALE_DOWN if down else DecisionReason.NO_CHANGE


class OraclePolicy:
    """Replays an :class:`OracleSchedule`, raising targets a start-up delay ahead of need."""

    name = "oracle"

    def __init__(self, schedule: OracleSchedule, startup_delay_s: float, tick_s: float = 10.0) -> None:
        if not (math.isfinite(tick_s) and tick_s > 0):
            raise ValueError(f"oracle tick must be > 0, got {tick_s}")
        self.schedule = schedule
        self.lead_s = startup_delay_s
        self.tick_s = tick_s

    def targets_at(self, now_s: float) -> dict[Pool, int]:
        """The largest need over the intervals overlapping ``[now, now + lead + tick)``."""
        s = self.schedule
        first = int(math.floor(now_s / s.interval_s))
        last = int(math.ceil((now_s + self.lead_s + self.tick_s) / s.interval_s)) - 1
        out = s.needed(first)
        for k in range(first + 1, max(last, first) + 1):
            for pool, n in s.needed(k).items():
                out[pool] = max(out[pool], n)
        return out

    def intervals(self) -> dict[TickKind, float]:
        """One tick every ``tick_s``."""
        return {TickKind.THROUGHPUT: self.tick_s}

    def step(self, tick: ScheduledTick, tick_input: TickInput) -> Decision:
        """The schedule's targets for now."""
        targets = self.targets_at(tick_input.now_s)
        return Decision(tick_input.now_s, tick.kind, targets, _reason(tick_input.current, targets))
