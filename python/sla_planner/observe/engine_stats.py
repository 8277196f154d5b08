"""Per-pool engine statistics for the planner's metrics, and the top-K rule for per-engine gauges.

One pass over the engine table's latest forward passes (an :class:`~sla_planner.core.load.EngineView`)
gives, per pool, the engines tracked and stale, the queue totals over active engines, and the
**top-K engines**: the ``k`` active engines of the pool with the largest load score (queued
prefill tokens + queued decode KV tokens + in-flight decode KV tokens), ties broken by table
order. Only those engines get per-engine gauges, so a fleet of any size exports at most
``k x pools`` engine series.

:func:`engine_stats` is the vectorised implementation; :func:`engine_stats_reference` is a plain
Python loop with the same meaning, the oracle of the tests and the benchmark's reference.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from ..core.load import ROLE_CODES, EngineView

__all__ = ["UNKNOWN_ROLE", "PoolEngineStats", "EngineStats", "TopKCache", "engine_stats",
           "engine_stats_reference", "engine_label"]

UNKNOWN_ROLE = "unknown"
"""Role label of engines whose role is unknown or not a pool of the mode."""

IntArray = npt.NDArray[np.intp]

_CANDIDATE_FLOOR = 0.5
"""Share of the previous K-th largest score an engine needs to be a top-K candidate."""


@dataclass(frozen=True)
class PoolEngineStats:
    """One pool's engines: counts, queue totals over active engines, and the top-K rows."""

    tracked: int
    stale: int
    queued_prefill_tokens: float
    queued_decode_kv_tokens: float
    inflight_decode_kv_tokens: float
    top_rows: IntArray
    """Table rows of the pool's top-K active engines, ascending."""


@dataclass(frozen=True)
class EngineStats:
    """Per pool (by name) statistics plus the engines of no pool of the mode."""

    pools: dict[str, PoolEngineStats]
    unknown_tracked: int
    unknown_stale: int


class _Workspace:
    """Buffers reused between ticks: fresh 80,000-row temporaries cost page faults, not math."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.score = np.empty(n, dtype=np.float64)
        self.weights = np.empty(n, dtype=np.float64)
        self.rmask = np.empty(n, dtype=bool)
        self.amask = np.empty(n, dtype=bool)
        self.candidates = np.empty(n, dtype=bool)


class TopKCache:
    """What :func:`engine_stats` keeps between ticks: per pool the K-th largest score of the
    previous tick (a cheap, exact filter for this one) and reusable buffers."""

    def __init__(self) -> None:
        self.kth_score: dict[str, float] = {}
        self._work: _Workspace | None = None

    def workspace(self, n: int) -> _Workspace:
        """Buffers for ``n`` rows (reallocated only when the table size changes)."""
        if self._work is None or self._work.n != n:
            self._work = _Workspace(n)
        return self._work


def _masked_sum(values: npt.NDArray[np.float64], weights: npt.NDArray[np.float64]) -> float:
    # einsum, not np.dot: a BLAS call wakes BLAS's thread pool, milliseconds on a busy machine
    return float(np.einsum("i,i->", values, weights))


def _top_rows(rows: IntArray, scores: npt.NDArray[np.float64], k: int) -> IntArray:
    """The ``k`` rows with the largest score (ties: lower row first), ascending."""
    if rows.size <= k:
        return rows
    if k == 0:
        return rows[:0]
    kth = float(np.partition(scores, rows.size - k)[rows.size - k])
    above = rows[scores > kth]
    ties = rows[scores == kth][: k - above.size]
    return np.sort(np.concatenate([above, ties]))


def _pool_top(
    pool: str,
    amask: npt.NDArray[np.bool_],
    score: npt.NDArray[np.float64],
    k: int,
    active_count: int,
    cache: TopKCache | None,
    candidate_buf: npt.NDArray[np.bool_] | None,
) -> IntArray:
    if k == 0 or active_count == 0:
        return np.empty(0, dtype=np.intp)
    if cache is not None and candidate_buf is not None and active_count > 4 * k:
        # Exact shortcut: if at least k active engines score >= c, every top-K engine does too
        # (the K-th largest score is >= c), so the candidates hold the whole answer.
        floor = cache.kth_score.get(pool, 0.0) * _CANDIDATE_FLOOR
        if floor > 0.0:
            np.greater_equal(score, floor, out=candidate_buf)
            candidates = np.flatnonzero(candidate_buf)
            candidates = candidates[amask[candidates]]
            if candidates.size >= k:
                top = _top_rows(candidates, score[candidates], k)
                cache.kth_score[pool] = float(score[top].min())
                return top
    rows = np.flatnonzero(amask)
    top = _top_rows(rows, score[rows], k)
    if cache is not None and top.size:
        cache.kth_score[pool] = float(score[top].min())
    return top


def engine_stats(
    view: EngineView, pools: tuple[str, ...], k: int, cache: TopKCache | None = None
) -> EngineStats:
    """Statistics of ``view`` for ``pools`` (names); ``k`` engines per pool for the top-K.

    ``cache`` (kept by the caller between ticks) reuses buffers and makes the top-K search look
    only at engines scoring at least half the previous tick's K-th largest score when that is
    provably enough.
    """
    role = view.role
    active = view.active
    q_prefill = view.q_prefill_tokens
    q_kv = view.q_decode_kv
    s_kv = view.s_decode_kv
    n = int(role.shape[0])
    work = cache.workspace(n) if cache is not None else _Workspace(n)
    score = np.add(q_prefill, q_kv, out=work.score)
    score += s_kv
    out: dict[str, PoolEngineStats] = {}
    known = 0
    known_stale = 0
    for pool in pools:
        rmask = np.equal(role, ROLE_CODES[pool], out=work.rmask)
        tracked = int(np.count_nonzero(rmask))
        if tracked == 0:
            out[pool] = PoolEngineStats(0, 0, 0.0, 0.0, 0.0, np.empty(0, dtype=np.intp))
            continue
        amask = np.logical_and(rmask, active, out=work.amask)
        weights = work.weights
        np.copyto(weights, amask)
        n_active = int(np.count_nonzero(amask))
        out[pool] = PoolEngineStats(
            tracked=tracked,
            stale=tracked - n_active,
            queued_prefill_tokens=_masked_sum(q_prefill, weights),
            queued_decode_kv_tokens=_masked_sum(q_kv, weights),
            inflight_decode_kv_tokens=_masked_sum(s_kv, weights),
            top_rows=_pool_top(pool, amask, score, k, n_active, cache, work.candidates),
        )
        known += tracked
        known_stale += tracked - n_active
    unknown_stale = int(n - np.count_nonzero(active)) - known_stale
    return EngineStats(out, n - known, unknown_stale)


def engine_stats_reference(view: EngineView, pools: tuple[str, ...], k: int) -> EngineStats:
    """The same statistics by a plain loop over the rows (test oracle, benchmark reference)."""
    codes = {ROLE_CODES[p]: p for p in pools}
    tracked = dict.fromkeys(pools, 0)
    stale = dict.fromkeys(pools, 0)
    sums: dict[str, list[float]] = {p: [0.0, 0.0, 0.0] for p in pools}
    scored: dict[str, list[tuple[float, int]]] = {p: [] for p in pools}
    unknown = unknown_stale = 0
    for i in range(len(view)):
        pool = codes.get(int(view.role[i]))
        is_active = bool(view.active[i])
        if pool is None:
            unknown += 1
            unknown_stale += not is_active
            continue
        tracked[pool] += 1
        if not is_active:
            stale[pool] += 1
            continue
        q, qkv, skv = float(view.q_prefill_tokens[i]), float(view.q_decode_kv[i]), float(view.s_decode_kv[i])
        acc = sums[pool]
        acc[0] += q
        acc[1] += qkv
        acc[2] += skv
        scored[pool].append(((q + qkv) + skv, i))
    out = {}
    for pool in pools:
        best = heapq.nsmallest(k, scored[pool], key=lambda item: (-item[0], item[1]))
        out[pool] = PoolEngineStats(
            tracked=tracked[pool],
            stale=stale[pool],
            queued_prefill_tokens=sums[pool][0],
            queued_decode_kv_tokens=sums[pool][1],
            inflight_decode_kv_tokens=sums[pool][2],
            top_rows=np.array(sorted(i for _, i in best), dtype=np.intp),
        )
    return EngineStats(out, unknown, unknown_stale)


def engine_label(snapshot: Mapping[str, Any], row: int) -> tuple[str, str]:
    """``(worker_id, dp_rank)`` label values of one snapshot row."""
    return str(snapshot["worker_id"][row]), str(int(snapshot["dp_rank"][row]))
