"""Load-based scaling from live engine metrics (pure: no I/O, no clock).

Each load tick reads the latest ForwardPassMetrics of every engine (an :class:`EngineView`, built by
the adapter from the ingestion engine's snapshot), feeds the new forward passes into a sliding-window
regression of iteration time against load, estimates each engine's TTFT / ITL for the next request,
and moves each pool by at most one engine:

* **SLA target**: up when *every* engine's estimate is over the SLA; down when every engine has been
  under ``sensitivity`` x SLA for ``patience`` consecutive ticks *and* the survivors, absorbing the
  removed engine's share (load x N/(N-1)), are still estimated under the SLA.
* **Easy targets** (``throughput`` / ``latency``): no regression; prefill looks at queued prompt
  tokens / context length, decode and aggregated at (scheduled + queued) KV / max KV tokens, each
  as the pool's mean. Up when the mean crosses the up threshold, down (with patience) when the
  mean with one engine fewer would still be under the down threshold.

Each result carries a ``band`` (``over``, ``near``, ``below``): what the engines say about the
pool's size, which the core records as its recommendation for the stabilisation window.

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

#: (prefill up, prefill down, decode up, decode down) per easy target, on the pool's mean
#: utilisation: queued prompt tokens per engine / context length (prefill), KV in use or waiting
#: per engine / KV capacity (decode). The original's levels, except latency's prefill down
#: threshold: "every queue empty" never holds under load, so the pool only grew; half the up
#: threshold gives the same hysteresis band as the other pairs.
EASY_THRESHOLDS: dict[str, tuple[float, float, float, float]] = {
    "throughput": (1.0, 0.1, 1.0, 0.6),
    "latency": (0.1, 0.05, 0.4, 0.1),
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
    names: Any = None
    """Worker id per row (the snapshot's ``worker_id``) when known: drain choices name them."""
    table_feed: Any = None
    """Optional ``(regression, fallback, pool, since_s) -> None`` that feeds a pool's fresh
    forward passes straight from the engine table (see :func:`_feed_from_table`)."""

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
        names=snapshot.get("worker_id"),
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
    max_gpu_budget: int | None
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
            max_gpu_budget=int(cfg.max_gpu_budget) if int(cfg.max_gpu_budget) >= 0 else None,
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
    fallbacks: dict[Pool, Any] = field(default_factory=dict)
    """Decode only: iteration time against KV tokens alone, for when requests and KV move
    together (a fixed-length workload) and the two-feature fit is singular."""
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
    fallback = state.fallbacks.get(pool)
    if fallback is None and pool is Pool.DECODE:
        fallback = state.fallbacks[pool] = _new_regression(Pool.PREFILL, settings)  # one feature
    if _feed_from_table(view, reg, fallback, pool, state.last_tick_s):
        return
    fresh = rows & (view.last_seen_s > state.last_tick_s) & (view.wall_time > 0.0)
    if fresh.any():
        t, y = view.last_seen_s[fresh], view.wall_time[fresh]
        reg.add_many(t, _features(view, fresh, pool), y)
        if fallback is not None:
            fallback.add_many(t, view.s_decode_kv[fresh], y)


# --- compiled layer: the regression fed from the engine table (owned by the Rust work) -------
def _feed_from_table(view: EngineView, reg: Any, fallback: Any, pool: Pool, since_s: float) -> bool:
    """When the adapter gave the view a ``table_feed`` (``kernels.table_feed``), let it append
    the pool's fresh forward passes straight from the engine table (same rows and order as the
    array path below: active, seen after ``since_s``, not a heartbeat) and return True."""
    if view.table_feed is None:
        return False
    view.table_feed(reg, fallback, pool, since_s)
    return True


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
    model = "full"
    if fit is None and reg.last_rejection in ("singular", "negative_slope") and pool in state.fallbacks:
        kv_fit = state.fallbacks[pool].fit(now_s)
        if kv_fit is not None:
            (c0, c_kv), n_kv = kv_fit
            fit, model = (np.array([c0, 0.0, c_kv]), n_kv), "kv_only"
    if fit is None:
        return None, DecisionReason.INSUFFICIENT_DATA, {"regression": reg.last_rejection}
    coef, n_samples = fit
    coef = np.asarray(coef, dtype=np.float64)
    n = max(current, 1)
    grow = n / (n - 1) if n > 1 else math.inf
    detail: dict[str, Any] = {"coefficients": coef.tolist(), "samples": int(n_samples), "model": model}
    if pool is Pool.PREFILL:
        # The wait ahead of a new request is what more engines shorten; its own prefill is not.
        # Judge the wait against what the SLA leaves after the request's own prefill, and never
        # against less than (1 - sensitivity) of the SLA: an average prompt that alone takes
        # most of the SLA must not pin the pool at its size (or grow it) when engines are idle.
        q = view.q_prefill_tokens[rows]
        chunk = caps.max_num_batched_tokens
        own = float(_prefill_ttft_s(coef, np.zeros(1), settings.isl, chunk)[0]) * 1e3
        wait = _prefill_ttft_s(coef, q, settings.isl, chunk) * 1e3 - own
        budget = max(settings.ttft_ms - own, (1.0 - settings.sensitivity) * settings.ttft_ms)
        est = wait / budget
        sla = 1.0
        detail["own_prefill_ms"] = own
        detail["wait_budget_ms"] = budget
        post = (
            (_prefill_ttft_s(coef, q * grow, settings.isl, chunk) * 1e3 - own) / budget
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
    if pool is Pool.PREFILL:
        ttft_ms = est * detail["wait_budget_ms"] + detail["own_prefill_ms"]
        detail.update(
            estimate_max=float(ttft_ms.max()),
            estimate_min=float(ttft_ms.min()),
            sla=settings.ttft_ms,
            wait_ratio_max=float(est.max()),
        )
    # The band is the pool's view of its size for the stabilisation record: engines disagree
    # all the time (one long prompt queued on one of eight), so "near" is the pool's mean.
    near = bool(est.mean() >= settings.sensitivity * sla)
    if np.all(est > sla):
        state.below_streak[pool] = 0
        detail["band"] = "over"
        return current + 1, DecisionReason.SCALE_UP, detail
    if np.all(est < settings.sensitivity * sla):
        if post is None or not np.all(post < sla):
            state.below_streak[pool] = 0
            detail["band"] = "near" if near or post is None or bool(np.mean(post) >= sla) else "below"
            detail["post_consolidation_max"] = None if post is None else float(np.max(post))
            return current, DecisionReason.SCALE_DOWN_REFUSED_CONSOLIDATION, detail
        detail["band"] = "below"
        state.below_streak[pool] = state.below_streak.get(pool, 0) + 1
        if state.below_streak[pool] < settings.patience:
            detail["below_streak"] = state.below_streak[pool]
            return current, DecisionReason.NO_CHANGE, detail
        state.below_streak[pool] = 0
        return current - 1, DecisionReason.SCALE_DOWN, detail
    state.below_streak[pool] = 0
    detail["band"] = "near" if near else "below"
    return current, DecisionReason.NO_CHANGE, detail


def easy_utilisation(
    pool: Pool, view: EngineView, rows: npt.NDArray[np.bool_], caps: EngineCapabilities
) -> dict[str, float]:
    """Pool-mean utilisation per easy signal: queued prompt tokens per engine in units of the
    context length (prefill, agg), KV in use or waiting per engine over its capacity (decode, agg)."""
    out: dict[str, float] = {}
    if pool in (Pool.PREFILL, Pool.AGG):
        out["prefill"] = float(view.q_prefill_tokens[rows].mean()) / max(caps.context_length, 1)
    if pool in (Pool.DECODE, Pool.AGG):
        assert caps.max_kv_tokens
        kv = view.s_decode_kv[rows] + view.q_decode_kv[rows]
        out["decode"] = float(kv.mean()) / caps.max_kv_tokens
    return out


def _easy_pool(
    pool: Pool,
    view: EngineView,
    rows: npt.NDArray[np.bool_],
    current: int,
    state: LoadState,
    settings: LoadSettings,
    caps: EngineCapabilities,
) -> tuple[int | None, DecisionReason, dict[str, Any]]:
    """Symmetric thresholds on the pool's mean utilisation (see EASY_THRESHOLDS).

    Up when the mean is at or over the up threshold of any signal; down (after ``patience``
    ticks) when, with one engine fewer carrying the same load (mean x n / (n - 1)), every signal
    would still be under its down threshold. Between the two bands nothing moves: the gap is the
    hysteresis that keeps a pool from flapping.
    """
    p_up, p_down, d_up, d_down = EASY_THRESHOLDS[settings.optimization_target]
    if pool in (Pool.DECODE, Pool.AGG) and not caps.max_kv_tokens:
        return None, DecisionReason.INSUFFICIENT_DATA, {"missing": "max_kv_tokens"}
    util = easy_utilisation(pool, view, rows, caps)
    down_at = {"prefill": p_down, "decode": d_down}
    n = max(current, 1)
    after_removal = n / (n - 1) if n > 1 else math.inf
    # at the prefill level or over the decode level, as the original compares them
    up = util.get("prefill", -1.0) >= p_up or util.get("decode", -1.0) > d_up
    down = all(util[k] * after_removal < down_at[k] for k in util)
    detail: dict[str, Any] = {f"{k}_utilisation": v for k, v in util.items()}
    if up:
        state.below_streak[pool] = 0
        detail["band"] = "over"
        return current + 1, DecisionReason.SCALE_UP, detail
    if down:
        detail["band"] = "below"
        state.below_streak[pool] = state.below_streak.get(pool, 0) + 1
        detail["below_streak"] = state.below_streak[pool]
        if state.below_streak[pool] >= settings.patience:
            state.below_streak[pool] = 0
            return current - 1, DecisionReason.SCALE_DOWN, detail
        return current, DecisionReason.NO_CHANGE, detail
    state.below_streak[pool] = 0
    detail["band"] = "near"
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
    if settings.max_gpu_budget is not None and total > settings.max_gpu_budget:
        for pool, target in list(wanted.items()):
            cur = int(current.get(pool, 0))
            if target > cur:
                res = results[pool]
                detail = dict(res.detail, budget=settings.max_gpu_budget, gpus_wanted=total)
                results[pool] = PoolLoadResult(pool, cur, DecisionReason.NO_CHANGE, detail)
                total -= settings.gpus(pool) * (target - cur)
    return results
