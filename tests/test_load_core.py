"""Load-based decisions (core/load.py): SLA and easy targets, reasons, floors, properties."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sla_planner.core.load import (
    EngineCapabilities,
    role_codes,
    EngineView,
    LoadSettings,
    LoadState,
    load_step,
)
from sla_planner.types import DecisionReason, Pool

P, D, A = Pool.PREFILL, Pool.DECODE, Pool.AGG
CAPS = EngineCapabilities(max_num_batched_tokens=1000, context_length=10_000, max_kv_tokens=100_000)


def settings_for(**kw: Any) -> LoadSettings:
    base: dict[str, Any] = dict(
        optimization_target="sla", mode="disagg", ttft_ms=1000.0, itl_ms=30.0, isl=1000.0, osl=100.0,
        min_endpoint=1, max_gpu_budget=100, prefill_engine_num_gpu=1, decode_engine_num_gpu=1,
        sensitivity=0.8, patience=3, learning_window_s=120.0, min_observations=5,
    )
    base.update(kw)
    return LoadSettings(**base)


def view(rows: list[dict[str, Any]]) -> EngineView:
    def col(key: str, default: Any = 0.0) -> np.ndarray:
        return np.array([r.get(key, default) for r in rows], dtype=np.float64)

    names = [r.get("worker", f"w{i}") for i, r in enumerate(rows)]
    index = {n: k for k, n in enumerate(dict.fromkeys(names))}
    return EngineView(
        role=role_codes([r["role"] for r in rows]),
        worker=np.array([index[n] for n in names], dtype=np.int64),
        active=np.array([r.get("active", True) for r in rows], dtype=bool),
        last_seen_s=col("t"),
        wall_time=col("wall"),
        s_prefill_tokens=col("sp"),
        s_decode_requests=col("sdr"),
        s_decode_kv=col("skv"),
        q_prefill_tokens=col("qp"),
        q_decode_requests=col("qdr"),
        q_decode_kv=col("qkv"),
    )


def train_prefill(state: LoadState, s: LoadSettings, n_engines: int, now: float) -> None:
    """Feed a linear prefill model: iteration time = 0.01 s + 0.0001 s/token."""
    for k in range(8):
        t = now - 60 + k
        rows = [
            {"role": "prefill", "worker": f"p{i}", "t": t, "sp": 100.0 * (k + 1 + i),
             "wall": 0.01 + 0.0001 * 100.0 * (k + 1 + i)}
            for i in range(n_engines)
        ]
        load_step(state, view(rows), {P: n_engines, D: 0}, False, t, s, CAPS)
    state.below_streak.clear()  # the training ticks were idle too: start the patience count fresh


def prefill_rows(n: int, queued: float, t: float) -> list[dict[str, Any]]:
    return [{"role": "prefill", "worker": f"p{i}", "t": t, "qp": queued} for i in range(n)]


def test_sla_scale_up_when_every_engine_is_over() -> None:
    s = settings_for(mode="prefill")
    state = LoadState()
    train_prefill(state, s, 2, 100.0)
    # TTFT estimate with 20,000 queued tokens + 1,000 avg ISL, 1,000-token chunks:
    # 21 iterations * 0.01 s + 0.0001 * 21,000 = 0.21 + 2.1 = 2.31 s > 1 s on both engines
    r = load_step(state, view(prefill_rows(2, 20_000, 101.0)), {P: 2}, False, 101.0, s, CAPS)[P]
    assert r.reason is DecisionReason.SCALE_UP and r.target == 3
    assert r.detail["estimate_min"] == pytest.approx(2310.0, rel=1e-6)
    assert r.detail["coefficients"] == pytest.approx([0.01, 0.0001], rel=1e-6)


def test_sla_no_scale_up_if_one_engine_is_fine() -> None:
    s = settings_for(mode="prefill")
    state = LoadState()
    train_prefill(state, s, 2, 100.0)
    rows = prefill_rows(2, 20_000, 101.0)
    rows[1]["qp"] = 0.0
    r = load_step(state, view(rows), {P: 2}, False, 101.0, s, CAPS)[P]
    assert r.reason is DecisionReason.NO_CHANGE and r.target == 2


def test_sla_scale_down_needs_patience_and_consolidation() -> None:
    s = settings_for(mode="prefill", patience=3)
    state = LoadState()
    train_prefill(state, s, 3, 100.0)
    # idle: estimate = 1 iteration * 0.01 + 0.0001 * 1000 = 0.11 s < 0.8 * 1 s
    reasons = []
    for k in range(4):
        t = 101.0 + k
        r = load_step(state, view(prefill_rows(3, 0.0, t)), {P: 3}, False, t, s, CAPS)[P]
        reasons.append((r.reason, r.target))
    assert reasons[:2] == [(DecisionReason.NO_CHANGE, 3)] * 2  # within the patience window
    assert reasons[2] == (DecisionReason.SCALE_DOWN, 2)  # third consecutive tick
    assert reasons[3] == (DecisionReason.NO_CHANGE, 3)  # streak restarts after a removal


def test_sla_scale_down_refused_when_survivors_would_breach() -> None:
    s = settings_for(mode="prefill", patience=1, sensitivity=0.95)
    state = LoadState()
    train_prefill(state, s, 2, 100.0)
    # 7,000 queued: 8 iters * 0.01 + 0.0001 * 8,000 = 0.88 s < 0.95 s; with 2 -> 1 engine the queue
    # doubles: 15 iters * 0.01 + 0.0001 * 15,000 = 1.65 s > 1 s
    r = load_step(state, view(prefill_rows(2, 7_000, 101.0)), {P: 2}, False, 101.0, s, CAPS)[P]
    assert r.reason is DecisionReason.SCALE_DOWN_REFUSED_CONSOLIDATION and r.target == 2


@pytest.mark.parametrize(
    "rows,current,in_progress,reason",
    [
        ([], {P: 1}, False, DecisionReason.NO_FPM_DATA),
        ([{"role": "prefill", "worker": "a", "active": False}], {P: 1}, False, DecisionReason.NO_FPM_DATA),
        ([{"role": "prefill", "worker": "a"}], {P: 2}, False, DecisionReason.WORKER_COUNT_MISMATCH),
        ([{"role": "prefill", "worker": "a"}], {P: 1}, True, DecisionReason.SCALING_IN_PROGRESS),
        ([{"role": "prefill", "worker": "a"}], {P: 1}, False, DecisionReason.INSUFFICIENT_DATA),
    ],
    ids=["none", "stale_only", "mismatch", "in_progress", "untrained"],
)
def test_hold_reasons(rows: list[dict[str, Any]], current: dict[Pool, int], in_progress: bool, reason: DecisionReason) -> None:
    s = settings_for(mode="prefill")
    r = load_step(LoadState(), view(rows) if rows else None, current, in_progress, 1.0, s, CAPS)[P]
    assert r.reason is reason and r.target is None


def test_dp_ranks_count_as_one_worker_each() -> None:
    s = settings_for(mode="prefill", optimization_target="throughput")
    rows = [{"role": "prefill", "worker": w, "t": 1.0} for w in ("a", "a", "b", "b")]
    r = load_step(LoadState(), view(rows), {P: 2}, False, 1.0, s, CAPS)[P]
    assert r.reason is not DecisionReason.WORKER_COUNT_MISMATCH
    uneven = rows[:3]  # worker b has one rank, a has two
    r = load_step(LoadState(), view(uneven), {P: 2}, False, 1.0, s, CAPS)[P]
    assert r.reason is DecisionReason.WORKER_COUNT_MISMATCH


# easy targets: thresholds just inside and just outside (context 10,000 tokens, max KV 100,000)
@pytest.mark.parametrize(
    "target,queued,expected",
    [
        ("throughput", 20_000, DecisionReason.SCALE_UP),  # pool mean 1.0 >= 1.0
        ("throughput", 19_999, DecisionReason.NO_CHANGE),
        ("latency", 2_000, DecisionReason.SCALE_UP),  # 0.1 >= 0.1
        ("latency", 1_999, DecisionReason.NO_CHANGE),
    ],
)
def test_easy_prefill_thresholds(target: str, queued: float, expected: DecisionReason) -> None:
    s = settings_for(mode="prefill", optimization_target=target)
    rows = prefill_rows(2, 0.0, 1.0)
    rows[0]["qp"] = queued  # the pool's mean counts: one engine's queue is shared by two
    r = load_step(LoadState(), view(rows), {P: 2}, False, 1.0, s, CAPS)[P]
    assert r.reason is expected


@pytest.mark.parametrize(
    "target,queued,expected_after_patience",
    [
        ("throughput", 499, DecisionReason.SCALE_DOWN),  # mean 0.0499 x 2/1 < 0.1
        ("throughput", 500, DecisionReason.NO_CHANGE),
        ("latency", 249, DecisionReason.SCALE_DOWN),  # mean 0.0249 x 2 < 0.05
        ("latency", 250, DecisionReason.NO_CHANGE),
    ],
)
def test_easy_prefill_scale_down_is_symmetric(target: str, queued: float, expected_after_patience: DecisionReason) -> None:
    # a queue is tolerated on the way down too: the pool shrinks when one engine fewer would
    # still hold its mean under the down threshold, not only when every queue is empty
    s = settings_for(mode="prefill", optimization_target=target, patience=1)
    rows = prefill_rows(2, queued, 1.0)
    r = load_step(LoadState(), view(rows), {P: 2}, False, 1.0, s, CAPS)[P]
    assert r.reason is expected_after_patience


@pytest.mark.parametrize(
    "target,kv,expected_after_patience",
    [
        ("throughput", 29_999, DecisionReason.SCALE_DOWN),  # 0.29999 x 2/1 < 0.6
        ("throughput", 30_000, DecisionReason.NO_CHANGE),
        ("latency", 4_999, DecisionReason.SCALE_DOWN),
        ("latency", 5_000, DecisionReason.NO_CHANGE),
    ],
)
def test_easy_decode_scale_down_thresholds(target: str, kv: float, expected_after_patience: DecisionReason) -> None:
    s = settings_for(mode="decode", optimization_target=target, patience=2)
    state = LoadState()
    rows = [{"role": "decode", "worker": f"d{i}", "t": 1.0, "skv": kv} for i in range(2)]
    first = load_step(state, view(rows), {D: 2}, False, 1.0, s, CAPS)[D]
    second = load_step(state, view(rows), {D: 2}, False, 2.0, s, CAPS)[D]
    assert first.reason is DecisionReason.NO_CHANGE
    assert second.reason is expected_after_patience


@pytest.mark.parametrize("kv,expected", [(100_001, DecisionReason.SCALE_UP), (100_000, DecisionReason.NO_CHANGE)])
def test_easy_decode_scale_up_threshold(kv: float, expected: DecisionReason) -> None:
    s = settings_for(mode="decode", optimization_target="throughput")
    rows = [{"role": "decode", "worker": "d0", "t": 1.0, "skv": kv / 2, "qkv": kv / 2}]
    assert load_step(LoadState(), view(rows), {D: 1}, False, 1.0, s, CAPS)[D].reason is expected


def test_throughput_floor_caps_scale_down() -> None:
    s = settings_for(mode="decode", optimization_target="latency", patience=1)
    rows = [{"role": "decode", "worker": f"d{i}", "t": 1.0} for i in range(3)]
    r = load_step(LoadState(), view(rows), {D: 3}, False, 1.0, s, CAPS, floor={D: 3})[D]
    assert r.reason is DecisionReason.SCALE_DOWN_CAPPED_BY_THROUGHPUT and r.target == 3


def test_budget_refuses_scale_up() -> None:
    s = settings_for(mode="decode", optimization_target="latency", max_gpu_budget=4, decode_engine_num_gpu=2)
    rows = [{"role": "decode", "worker": f"d{i}", "t": 1.0, "skv": 90_000} for i in range(2)]
    r = load_step(LoadState(), view(rows), {D: 2}, False, 1.0, s, CAPS)[D]
    assert r.target == 2 and r.detail["budget"] == 4


pools_state = st.fixed_dictionaries({"p": st.integers(1, 6), "d": st.integers(1, 6)})


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(["throughput", "latency"]),
    st.integers(1, 3),
    st.integers(4, 30),
    st.integers(1, 4),
    st.lists(st.tuples(st.floats(0, 50_000), st.floats(0, 150_000)), min_size=5, max_size=25),
)
def test_properties_easy(target: str, min_endpoint: int, budget: int, patience: int, ticks: list[tuple[float, float]]) -> None:
    s = settings_for(optimization_target=target, min_endpoint=min_endpoint, max_gpu_budget=budget, patience=patience)
    state = LoadState()
    cur = {P: min_endpoint, D: min_endpoint}
    if sum(cur.values()) > budget:
        return
    last_down = {P: -10, D: -10}
    for k, (qp, kv) in enumerate(ticks):
        rows = [{"role": "prefill", "worker": f"p{i}", "t": k, "qp": qp} for i in range(cur[P])]
        rows += [{"role": "decode", "worker": f"d{i}", "t": k, "skv": kv} for i in range(cur[D])]
        res = load_step(state, view(rows), dict(cur), False, float(k), s, CAPS)
        for pool, r in res.items():
            new = r.target if r.target is not None else cur[pool]
            assert new >= min_endpoint  # never below the floor
            assert abs(new - cur[pool]) <= 1  # one step per tick
            if new < cur[pool]:
                assert k - last_down[pool] >= patience  # never within the patience window
                last_down[pool] = k
            cur[pool] = new
        assert cur[P] + cur[D] <= max(budget, 2 * min_endpoint)  # never over the budget


def test_scaling_in_progress_holds_only_that_pool() -> None:
    s = settings_for(optimization_target="latency")
    rows = [{"role": "prefill", "worker": "p0", "t": 1.0, "qp": 5_000},
            {"role": "decode", "worker": "d0", "t": 1.0, "skv": 90_000}]
    res = load_step(LoadState(), view(rows), {P: 1, D: 1}, {P: True, D: False}, 1.0, s, CAPS)
    assert res[P].reason is DecisionReason.SCALING_IN_PROGRESS and res[P].target is None
    assert res[D].reason is DecisionReason.SCALE_UP and res[D].target == 2


def test_blocked_decode_queue_counts_as_over_sla() -> None:
    s = settings_for(mode="decode")
    state = LoadState()
    for k in range(8):  # ITL = 10 ms + 0.1 ms per running request
        rows = [{"role": "decode", "worker": "d0", "t": float(k), "sdr": 10.0 * (k + 1),
                 "skv": 1000.0 * (k + 1) + 37.0 * k * k, "wall": 0.010 + 0.0001 * 10 * (k + 1)}]
        load_step(state, view(rows), {D: 1}, False, float(k), s, CAPS)
    idle = [{"role": "decode", "worker": "d0", "t": 9.0, "sdr": 1.0, "skv": 1000.0}]
    blocked = [dict(idle[0], t=10.0, qdr=1.0, qkv=500.0)]
    assert load_step(state, view(idle), {D: 1}, False, 9.0, s, CAPS)[D].reason is not DecisionReason.SCALE_UP
    assert load_step(state, view(blocked), {D: 1}, False, 10.0, s, CAPS)[D].reason is DecisionReason.SCALE_UP
