"""Load-based scaling from live engine metrics (pure: no I/O, no clock).

Each load tick reads the latest ForwardPassMetrics of every engine (an :class:`EngineView`, built by
the adapter from the ingestion engine's snapshot), feeds the new forward passes into a sliding-window
regression of iteration time against load, estimates each engine's TTFT / ITL for the next request,
and moves each pool by at most one engine:

* **SLA target**: up when *every* engine's estimate is over the SLA; down when every engine has been
  under ``sensitivity`` x SLA for ``patience`` consecutive ticks *and* the survivors, absorbing the
  removed engine's share (load x N/(N-1)), are still estimated under the SLA.
* **Easy targets** (``throughput`` / ``latency``): no regression; prefill looks at queued prompt
  tokens / context length, decode and aggregated at (scheduled + queued) KV / max KV tokens. Up when
  any engine crosses the up threshold, down when all are under the down threshold (with patience).

Throughput-based targets, when that loop is on, are a floor no load decision goes under.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..types import DecisionReason, Pool, pools_for_mode

__all__ = [
    "ROLE_CODES",
    "role_codes",
    "EngineCapabilities",
    "EngineView",
    "LoadSettings",
    "PoolLoadResult",
    "LoadState",
    "EASY_THRESHOLDS",
    "engine_view_from_snapshot",
    "load_step",
]

F64 = npt.NDArray[np.float64]

#: (prefill up, prefill down, decode up, decode down) per easy target.
EASY_THRESHOLDS: dict[str, tuple[float, float, float, float]] = {
    "throughput": (1.0, 0.1, 1.0, 0.6),
    "latency": (0.1, 0.0, 0.4, 0.1),
}

#: Integer role codes used in EngineView.role (unknown engines are -1 and never counted).
ROLE_CODES: dict[str, int] = {"prefill": 0, "decode": 1, "agg": 2}
_ROLE_OF_POOL = {Pool.PREFILL: 0, Pool.DECODE: 1, Pool.AGG: 2}


def role_codes(roles: Any) -> npt.NDArray[np.int8]:
    """Role names ("prefill" / "decode" / "agg", anything else unknown) as EngineView codes."""
    arr = np.asarray(roles, dtype=object)
    out = np.full(arr.shape[0], -1, dtype=np.int8)
    for name, code in ROLE_CODES.items():
        out[arr == name] = code
    return out


@dataclass(frozen=True)
class EngineCapabilities:
    """Engine limits the estimates need (from engine metadata, config or the simulator)."""

    max_num_batched_tokens: int = 8192
    context_length: int = 131072
    max_kv_tokens: int | None = None


@dataclass(frozen=True)
class EngineView:
    """Latest forward pass per known engine rank (struct of arrays) and its pool."""

    role: npt.NDArray[np.int8]  # ROLE_CODES; -1 = unknown
    worker: npt.NDArray[np.int64]  # any integer id per worker (interned index or hash)
    active: npt.NDArray[np.bool_]
    last_seen_s: F64
    wall_time: F64
    s_prefill_tokens: F64
    s_decode_requests: F64
    s_decode_kv: F64
    q_prefill_tokens: F64
    q_decode_requests: F64
    q_decode_kv: F64

    def __len__(self) -> int:
        return int(self.role.shape[0])


def engine_view_from_snapshot(snapshot: dict[str, Any], roles: Any) -> EngineView:
    """Build an EngineView from an FpmIngestor snapshot plus a role per row (codes or names).

    Workers are identified by the snapshot's ``worker_index`` when present (interned integers,
    cheap), else by their ``worker_id`` strings.
    """

    def f(key: str) -> F64:
        return np.asarray(snapshot[key], dtype=np.float64)

    codes = np.asarray(roles)
    if codes.dtype.kind not in "iu":
        codes = role_codes(codes)
    if "worker_index" in snapshot:
        worker = np.asarray(snapshot["worker_index"], dtype=np.int64)
    else:
        _, worker = np.unique(np.asarray(snapshot["worker_id"]).astype(str), return_inverse=True)
    return EngineView(
        role=codes.astype(np.int8, copy=False),
        worker=worker.astype(np.int64, copy=False),
        active=np.asarray(snapshot["active"], dtype=bool),
        last_seen_s=f("last_seen_s"),
        wall_time=f("wall_time"),
        s_prefill_tokens=f("scheduled_sum_prefill_tokens"),
        s_decode_requests=f("scheduled_num_decode_requests"),
        s_decode_kv=f("scheduled_sum_decode_kv_tokens"),
        q_prefill_tokens=f("queued_sum_prefill_tokens"),
        q_decode_requests=f("queued_num_decode_requests"),
        q_decode_kv=f("queued_sum_decode_kv_tokens"),
    )


@dataclass(frozen=True)
class LoadSettings:
    """What the load loop reads from PlannerConfig."""

    optimization_target: str
    mode: str
    ttft_ms: float
    itl_ms: float
    isl: float
    osl: float
    min_endpoint: int
    max_gpu_budget: int
    prefill_engine_num_gpu: int
    decode_engine_num_gpu: int
    sensitivity: float
    patience: int
    learning_window_s: float
    min_observations: int

    @classmethod
    def from_config(cls, cfg: Any) -> LoadSettings:
        """Project a PlannerConfig."""
        return cls(
            optimization_target=cfg.optimization_target,
            mode=cfg.mode,
            ttft_ms=float(cfg.ttft),
            itl_ms=float(cfg.itl),
            isl=float(cfg.isl),
            osl=float(cfg.osl),
            min_endpoint=int(cfg.min_endpoint),
            max_gpu_budget=int(cfg.max_gpu_budget),
            prefill_engine_num_gpu=int(cfg.prefill_engine_num_gpu),
            decode_engine_num_gpu=int(cfg.decode_engine_num_gpu),
            sensitivity=float(cfg.load_scaling_down_sensitivity) / 100.0,
            patience=int(cfg.load_scale_down_patience),
            learning_window_s=float(cfg.load_learning_window),
            min_observations=int(cfg.load_min_observations),
        )

    def pools(self) -> tuple[Pool, ...]:
        """Pools of the mode."""
        return pools_for_mode(self.mode)

    def gpus(self, pool: Pool) -> int:
        """GPUs per engine of a pool (aggregated engines count as decode engines)."""
        return self.prefill_engine_num_gpu if pool is Pool.PREFILL else self.decode_engine_num_gpu


@dataclass(frozen=True)
class PoolLoadResult:
    """One pool's load decision: target (None = hold), reason and the estimates behind it."""

    pool: Pool
    target: int | None
    reason: DecisionReason
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadState:
    """What the load loop carries between ticks."""

    regressions: dict[Pool, Any] = field(default_factory=dict)
    below_streak: dict[Pool, int] = field(default_factory=dict)
    last_tick_s: float = -math.inf


def _new_regression(pool: Pool, settings: LoadSettings) -> Any:
    from ..kernels import SlidingRegression

    n_features = 1 if pool is Pool.PREFILL else 2
    bucket = max(settings.learning_window_s / 24.0, 1.0)
    return SlidingRegression(n_features, settings.learning_window_s, bucket, settings.min_observations)


def _features(view: EngineView, mask: npt.NDArray[np.bool_], pool: Pool) -> F64:
    if pool is Pool.PREFILL:
        return view.s_prefill_tokens[mask]
    if pool is Pool.DECODE:
        return np.column_stack([view.s_decode_requests[mask], view.s_decode_kv[mask]])
    return np.column_stack([view.s_prefill_tokens[mask], view.s_decode_kv[mask]])


def _feed(state: LoadState, view: EngineView, rows: npt.NDArray[np.bool_], pool: Pool, settings: LoadSettings) -> None:
    """New forward passes (not heartbeats) since the last tick go into the pool's regression."""
    reg = state.regressions.get(pool)
    if reg is None:
        reg = state.regressions[pool] = _new_regression(pool, settings)
    fresh = rows & (view.last_seen_s > state.last_tick_s) & (view.wall_time > 0.0)
    if fresh.any():
        reg.add_many(view.last_seen_s[fresh], _features(view, fresh, pool), view.wall_time[fresh])


def _prefill_ttft_s(coef: F64, queued: F64, isl: float, chunk: int, decode_kv: F64 | None = None) -> F64:
    """Time to clear the queue plus one average prompt in chunks of at most ``chunk`` tokens."""
    tokens = queued + isl
    iters = np.ceil(tokens / max(chunk, 1))
    per_iter = coef[0] if decode_kv is None else coef[0] + coef[2] * decode_kv
    return iters * per_iter + coef[1] * tokens


def _decode_itl_s(coef: F64, requests: F64, kv: F64) -> F64:
    return coef[0] + coef[1] * requests + coef[2] * kv


def _sla_pool(
    pool: Pool,
    view: EngineView,
    rows: npt.NDArray[np.bool_],
    current: int,
    state: LoadState,
    now_s: float,
    settings: LoadSettings,
    caps: EngineCapabilities,
) -> tuple[int | None, DecisionReason, dict[str, Any]]:
    reg = state.regressions[pool]
    fit = reg.fit(now_s)
    if fit is None:
        return None, DecisionReason.INSUFFICIENT_DATA, {"regression": reg.last_rejection}
    coef, n_samples = fit
    coef = np.asarray(coef, dtype=np.float64)
    n = max(current, 1)
    grow = n / (n - 1) if n > 1 else math.inf
    detail: dict[str, Any] = {"coefficients": coef.tolist(), "samples": int(n_samples)}
    if pool is Pool.PREFILL:
        q = view.q_prefill_tokens[rows]
        est = _prefill_ttft_s(coef, q, settings.isl, caps.max_num_batched_tokens) * 1e3
        sla = settings.ttft_ms
        post = (
            _prefill_ttft_s(coef, q * grow, settings.isl, caps.max_num_batched_tokens) * 1e3
            if n > 1
            else None
        )
    else:
        running = view.s_decode_requests[rows]
        kv = view.s_decode_kv[rows] + view.q_decode_kv[rows]
        reqs = running + view.q_decode_requests[rows]
        avg_ctx = np.where(running > 0, view.s_decode_kv[rows] / np.maximum(running, 1), settings.isl + settings.osl / 2)
        if pool is Pool.DECODE:
            est = _decode_itl_s(coef, reqs + 1, kv + avg_ctx) * 1e3
            post = _decode_itl_s(coef, (reqs + 1) * grow, (kv + avg_ctx) * grow) * 1e3 if n > 1 else None
            sla = settings.itl_ms
            # Requests the engine could not admit wait a whole admission for their next token: no
            # iteration-time model sees that, so an engine with a blocked queue is over the SLA.
            est = np.where(view.q_decode_requests[rows] > 0, np.inf, est)
            if post is not None and caps.max_kv_tokens:
                # the survivors must also have the KV for what they absorb
                post = np.where((kv + avg_ctx) * grow >= caps.max_kv_tokens, np.inf, post)
        else:
            # aggregated: the worse of TTFT and ITL, each against its own SLA (ratio to SLA)
            q = view.q_prefill_tokens[rows]
            ttft = _prefill_ttft_s(coef, q, settings.isl, caps.max_num_batched_tokens, kv) * 1e3
            itl = (coef[0] + coef[1] * view.s_prefill_tokens[rows] + coef[2] * (kv + avg_ctx)) * 1e3
            est = np.maximum(ttft / settings.ttft_ms, itl / settings.itl_ms)
            sla = 1.0
            if n > 1:
                ttft_p = _prefill_ttft_s(coef, q * grow, settings.isl, caps.max_num_batched_tokens, kv * grow) * 1e3
                itl_p = (coef[0] + coef[1] * view.s_prefill_tokens[rows] + coef[2] * (kv + avg_ctx) * grow) * 1e3
                post = np.maximum(ttft_p / settings.ttft_ms, itl_p / settings.itl_ms)
            else:
                post = None
    detail.update({"estimate_max": float(est.max()), "estimate_min": float(est.min()), "sla": sla})
    if np.all(est > sla):
        state.below_streak[pool] = 0
        return current + 1, DecisionReason.SCALE_UP, detail
    if np.all(est < settings.sensitivity * sla):
        state.below_streak[pool] = state.below_streak.get(pool, 0) + 1
        if state.below_streak[pool] < settings.patience:
            detail["below_streak"] = state.below_streak[pool]
            return current, DecisionReason.NO_CHANGE, detail
        if post is None or not np.all(post < sla):
            detail["post_consolidation_max"] = None if post is None else float(np.max(post))
            return current, DecisionReason.SCALE_DOWN_REFUSED_CONSOLIDATION, detail
        state.below_streak[pool] = 0
        return current - 1, DecisionReason.SCALE_DOWN, detail
    state.below_streak[pool] = 0
    return current, DecisionReason.NO_CHANGE, detail


def _easy_pool(
    pool: Pool,
    view: EngineView,
    rows: npt.NDArray[np.bool_],
    current: int,
    state: LoadState,
    settings: LoadSettings,
    caps: EngineCapabilities,
) -> tuple[int | None, DecisionReason, dict[str, Any]]:
    p_up, p_down, d_up, d_down = EASY_THRESHOLDS[settings.optimization_target]
    up = False
    down = True
    detail: dict[str, Any] = {}
    if pool in (Pool.PREFILL, Pool.AGG):
        ratio = view.q_prefill_tokens[rows] / max(caps.context_length, 1)
        up |= bool(np.any(ratio >= p_up))
        down &= bool(np.all(ratio <= 0.0)) if p_down == 0.0 else bool(np.all(ratio < p_down))
        detail["queued_prefill_ratio_max"] = float(ratio.max())
    if pool in (Pool.DECODE, Pool.AGG):
        if not caps.max_kv_tokens:
            return None, DecisionReason.INSUFFICIENT_DATA, {"missing": "max_kv_tokens"}
        usage = (view.s_decode_kv[rows] + view.q_decode_kv[rows]) / caps.max_kv_tokens
        up |= bool(np.any(usage > d_up))
        down &= bool(np.all(usage < d_down))
        detail["kv_usage_max"] = float(usage.max())
    if up:
        state.below_streak[pool] = 0
        return current + 1, DecisionReason.SCALE_UP, detail
    if down:
        state.below_streak[pool] = state.below_streak.get(pool, 0) + 1
        detail["below_streak"] = state.below_streak[pool]
        if state.below_streak[pool] >= settings.patience:
            state.below_streak[pool] = 0
            return current - 1, DecisionReason.SCALE_DOWN, detail
        return current, DecisionReason.NO_CHANGE, detail
    state.below_streak[pool] = 0
    return current, DecisionReason.NO_CHANGE, detail


def _worker_count_ok(view: EngineView, rows: npt.NDArray[np.bool_], expected: int) -> tuple[bool, dict[str, Any]]:
    """Distinct active workers must equal the deployment's count, each with the same dp size."""
    ids = view.worker[rows]
    ranks = np.bincount(ids - ids.min()) if ids.size else np.zeros(0, dtype=np.int64)
    ranks = ranks[ranks > 0]
    ok = ranks.shape[0] == expected and (ranks.size == 0 or ranks.min() == ranks.max())
    return bool(ok), {"workers_seen": int(ranks.shape[0]), "workers_expected": expected,
                      "dp_sizes": sorted({int(r) for r in np.unique(ranks)})}


def load_step(
    state: LoadState,
    view: EngineView | None,
    current: dict[Pool, int],
    scaling_in_progress: bool | dict[Pool, bool],
    now_s: float,
    settings: LoadSettings,
    caps: EngineCapabilities,
    floor: dict[Pool, int] | None = None,
) -> dict[Pool, PoolLoadResult]:
    """One load tick for every pool of the mode (mutates ``state`` only)."""
    easy = settings.optimization_target in EASY_THRESHOLDS
    results: dict[Pool, PoolLoadResult] = {}
    wanted: dict[Pool, int] = {}
    for pool in settings.pools():
        rows = (
            np.zeros(0, dtype=bool)
            if view is None
            else view.active & (view.role == _ROLE_OF_POOL[pool])
        )
        cur = int(current.get(pool, 0))
        if view is not None and not easy:
            _feed(state, view, rows, pool, settings)
        if view is None or not rows.any():
            results[pool] = PoolLoadResult(pool, None, DecisionReason.NO_FPM_DATA)
            continue
        in_progress = (
            scaling_in_progress.get(pool, False)
            if isinstance(scaling_in_progress, dict)
            else scaling_in_progress
        )
        if in_progress:
            results[pool] = PoolLoadResult(pool, None, DecisionReason.SCALING_IN_PROGRESS)
            continue
        ok, counts = _worker_count_ok(view, rows, cur)
        if not ok:
            results[pool] = PoolLoadResult(pool, None, DecisionReason.WORKER_COUNT_MISMATCH, counts)
            continue
        if easy:
            target, reason, detail = _easy_pool(pool, view, rows, cur, state, settings, caps)
        else:
            target, reason, detail = _sla_pool(pool, view, rows, cur, state, now_s, settings, caps)
        if target is None:
            results[pool] = PoolLoadResult(pool, None, reason, detail)
            continue
        target = max(target, settings.min_endpoint)
        if floor and pool in floor and target < floor[pool]:
            if reason in (DecisionReason.SCALE_DOWN, DecisionReason.NO_CHANGE) and target < cur:
                reason = DecisionReason.SCALE_DOWN_CAPPED_BY_THROUGHPUT
            target = max(target, floor[pool])
        wanted[pool] = target
        results[pool] = PoolLoadResult(pool, target, reason, detail)
    state.last_tick_s = now_s
    # budget: an increase that would exceed it is refused (never shrink to fit: that is the
    # throughput loop's job at startup; budgets never grow a pool)
    total = sum(settings.gpus(p) * wanted.get(p, int(current.get(p, 0))) for p in settings.pools())
    if total > settings.max_gpu_budget:
        for pool, target in list(wanted.items()):
            cur = int(current.get(pool, 0))
            if target > cur:
                res = results[pool]
                detail = dict(res.detail, budget=settings.max_gpu_budget, gpus_wanted=total)
                results[pool] = PoolLoadResult(pool, cur, DecisionReason.NO_CHANGE, detail)
                total -= settings.gpus(pool) * (target - cur)
    return results
