"""Simulator behaviour: hand-checked timings and invariants (numba kernel)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sla_planner.sim import _kernel as K
from sla_planner.types import Pool

from sim_helpers import Run, cluster, constant_perf

P, D, A = Pool.PREFILL, Pool.DECODE, Pool.AGG


def by_trace(rows: np.ndarray) -> dict[int, np.ndarray]:
    return {int(r[K.D_TRACE]): r for r in rows}


def test_hand_checked_disagg_timings() -> None:
    # Prefill 1000 tok/s, ITL 10 ms. A (t=0, ISL 2000, OSL 3): prefill 2.0 s -> first token at 2.0,
    # decode tokens 2 and 3 at 2.01 and 2.02. B (t=0.5, ISL 1000, OSL 1) waits for A's iteration,
    # prefills 2.0..3.0 -> TTFT 2.5 s, done at its first token.
    run = Run(cluster({P: 1, D: 1}))
    run.play([(0.0, 2000, 3), (0.5, 1000, 1)], until=5.0)
    out = by_trace(run.outcomes())
    a, b = out[0], out[1]
    assert a[K.D_FIRST] == pytest.approx(2.0)
    assert a[K.D_DONE] == pytest.approx(2.02)
    assert (a[K.D_DONE] - a[K.D_FIRST]) / 2 == pytest.approx(0.010)
    assert b[K.D_FIRST] - b[K.D_ARRIVAL] == pytest.approx(2.5)
    assert b[K.D_DONE] == pytest.approx(3.0)
    assert {int(r[K.D_STATUS]) for r in out.values()} == {K.STATUS_OK}


def test_chunked_prefill_shares_an_iteration() -> None:
    # max 1500 tokens per iteration: iteration 1 = 1500 of A (1.5 s); iteration 2 at 1.5 s = A's last
    # 500 (0.5 s) + all 1000 of B (1.0 s) -> both first tokens at 3.0 s.
    run = Run(cluster({P: 1, D: 1}, max_num_batched_tokens=1500))
    run.play([(0.0, 2000, 1), (0.5, 1000, 1)], until=5.0)
    out = by_trace(run.outcomes())
    assert out[0][K.D_FIRST] == pytest.approx(3.0)
    assert out[1][K.D_FIRST] == pytest.approx(3.0)
    pre = run.fpm_rows()
    pre = pre[pre[:, K.F_S_NPRE] > 0]
    assert list(pre[:, K.F_S_PRE_TOK]) == [1500, 1500]
    assert list(pre[:, K.F_S_NPRE]) == [1, 2]
    assert pre[1, K.F_S_PRE_KV] == 1500  # A's already-computed prefix


def test_routing_prefers_least_queued_prefill_engine() -> None:
    run = Run(cluster({P: 2, D: 1}))
    run.play([(0.0, 4000, 1), (0.1, 1000, 1), (0.2, 1000, 1)], until=10.0)
    out = by_trace(run.outcomes())
    # request 1 goes to the idle engine; request 2 follows it (1000 queued tokens there against the
    # 4000 of request 0, which count as queued until their iteration ends at 4.0 s)
    assert out[1][K.D_ENGINE] == out[2][K.D_ENGINE] != out[0][K.D_ENGINE]


def test_startup_delay_is_respected_and_frontend_waits() -> None:
    run = Run(cluster({P: 0, D: 1}, startup_delay_s=120.0))
    run.c.set_targets({P: 1})
    run.play([(1.0, 1000, 1)], until=130.0, step=5.0)
    (r,) = run.outcomes()
    # routed when the engine is ready at 120 s; 1.0 s of prefill
    assert r[K.D_FIRST] == pytest.approx(121.0)
    assert run.c.ready_counts() == {P: 1, D: 1}


def test_removal_without_drain_fails_in_flight_requests_and_counts_them() -> None:
    run = Run(cluster({P: 1, D: 2}, drain_timeout_s=0.0))
    # long decodes: 500 tokens at 10 ms = 5 s each
    run.play([(0.0, 100, 500), (0.0, 100, 500)], until=2.0)
    events = run.c.set_targets({D: 0})
    run.sink()
    failed = sum(e.failed_requests for e in events)
    assert failed == 2
    out = run.outcomes()
    assert sorted(out[:, K.D_STATUS].astype(int).tolist()) == [K.STATUS_FAILED_REMOVED] * 2
    assert run.c.in_flight == 0


def test_drain_lets_in_flight_requests_finish_then_removes() -> None:
    run = Run(cluster({P: 1, D: 2}))
    # long decodes: 500 tokens at 10 ms = 5 s each, one per decode engine
    run.play([(0.0, 100, 500), (0.0, 100, 500)], until=2.0)
    gpus_before = run.c.gpus_in_use()
    events = run.c.set_targets({D: 1})
    assert [e.action for e in events] == ["drain"]
    drained = events[0].worker_id
    assert run.c.counts() == {P: 1, D: 1}  # the deployment no longer counts it
    assert run.c.gpus_in_use() == gpus_before  # but it still holds its GPU
    assert run.c.draining_workers() == {drained}
    # a new request never goes to the draining engine
    run.play([(2.5, 100, 3)], until=10.0)
    retired = run.c.take_retired()
    assert retired == [e for e in run.c.scale_events if e.after_drain]
    assert [(e.worker_id, e.action, e.failed_requests) for e in retired] == [(drained, "remove", 0)]
    assert 5.0 < retired[0].at_s < 5.2  # when its last request finished
    out = run.outcomes()
    assert {int(s) for s in out[:, K.D_STATUS]} == {K.STATUS_OK}
    (late,) = [r for r in out if r[K.D_ARRIVAL] == 2.5]
    assert run.c.worker_id(int(late[K.D_ENGINE])) != drained
    assert run.c.gpus_in_use() == gpus_before - 1
    assert run.c.draining_workers() == set()


def test_drain_deadline_fails_what_is_left() -> None:
    run = Run(cluster({P: 1, D: 1}, drain_timeout_s=1.0))
    run.play([(0.0, 100, 500)], until=2.0)  # a 5 s decode
    (drain,) = run.c.set_targets({D: 0})
    run.play([], until=4.0)
    (retired,) = run.c.take_retired()
    assert retired.worker_id == drain.worker_id and retired.failed_requests == 1
    assert retired.at_s == pytest.approx(3.0)
    (r,) = run.outcomes()
    assert r[K.D_STATUS] == K.STATUS_FAILED_REMOVED


def test_drain_idle_engine_leaves_at_once_and_named_workers_go_first() -> None:
    c = cluster({P: 1, D: 3})
    names = [c.worker_id(e) for e in range(c.n_engines) if c.engine_pool(e) is D]
    events = c.set_targets({D: 2}, {D: (names[1],)})
    assert [(e.action, e.worker_id) for e in events] == [("drain", names[1]), ("remove", names[1])]
    assert events[1].after_drain and events[1].at_s == c.now_s
    assert c.counts()[D] == 2 and c.gpus_in_use() == 3


def test_removal_order_starting_engines_first() -> None:
    c = cluster({P: 1, D: 2})
    c.set_targets({D: 4})  # two starting engines
    starting = {e.worker_id for e in c.scale_events if e.action == "add"}
    events = c.set_targets({D: 2})
    assert {e.worker_id for e in events} == starting
    assert c.ready_counts()[D] == 2


def test_request_too_long_for_kv_is_rejected() -> None:
    run = Run(cluster({P: 1, D: 1}, perf=constant_perf(max_kv=1000)))
    run.play([(0.0, 900, 200)], until=3.0)
    (r,) = run.outcomes()
    assert r[K.D_STATUS] == K.STATUS_REJECTED_TOO_LONG


def test_transfer_delay_and_agg_mode() -> None:
    run = Run(cluster({P: 1, D: 1}, transfer_s=0.5))
    run.play([(0.0, 1000, 2)], until=3.0)
    (r,) = run.outcomes()
    assert r[K.D_FIRST] == pytest.approx(1.0)
    assert r[K.D_DONE] == pytest.approx(1.5 + 0.01)  # transfer, then one decode iteration
    agg = Run(cluster({A: 1}, mode="agg"))
    agg.play([(0.0, 1000, 2)], until=3.0)
    (r,) = agg.outcomes()
    assert r[K.D_FIRST] == pytest.approx(1.0)
    assert r[K.D_DONE] == pytest.approx(1.01)


def test_idle_engines_heartbeat_about_once_a_second() -> None:
    run = Run(cluster({P: 1, D: 1}))
    run.play([], until=10.0)
    hb = run.fpm_rows()
    assert np.all(hb[:, K.F_WALL] == 0)
    per_engine = np.bincount(hb[:, K.F_ENGINE].astype(int))
    assert list(per_engine) == [10, 10]


requests = st.lists(
    st.tuples(st.floats(0, 30), st.integers(0, 6000), st.integers(0, 120)), min_size=1, max_size=60
)


@settings(max_examples=40, deadline=None)
@given(
    requests,
    st.integers(1, 3),
    st.integers(1, 3),
    st.sampled_from([256, 2048, 8192]),
    st.sampled_from([1, 4, 256]),
    st.sampled_from([0.0, 0.3]),
)
def test_invariants(reqs, n_p, n_d, batched, max_seqs, transfer) -> None:  # type: ignore[no-untyped-def]
    max_kv = 8000
    run = Run(cluster({P: n_p, D: n_d}, perf=constant_perf(max_kv=max_kv),
                      max_num_batched_tokens=batched, max_num_seqs=max_seqs, transfer_s=transfer))

    def check(c) -> None:  # type: ignore[no-untyped-def]
        alive = c.ei[: c.n_engines, K.EI_ALIVE] == 1
        reserved = c.ef[: c.n_engines, K.EF_RESERVED][alive]
        kv = c.ef[: c.n_engines, K.EF_KV][alive]
        assert np.all(reserved <= max_kv)  # KV never over capacity
        assert np.all(kv <= reserved + 1e-9)
        assert np.all(c.ei[: c.n_engines, K.EI_RUN_COUNT][alive] <= max_seqs)

    run.play(reqs, until=400.0, step=2.0, check=check)
    out = run.outcomes()
    # every request exactly once, nothing lost or duplicated
    assert sorted(out[:, K.D_TRACE].astype(int).tolist()) == list(range(len(reqs)))
    ok = out[out[:, K.D_STATUS] == K.STATUS_OK]
    rejected = out[out[:, K.D_STATUS] == K.STATUS_REJECTED_TOO_LONG]
    assert ok.shape[0] + rejected.shape[0] == len(reqs)
    assert np.all(rejected[:, K.D_ISL] + rejected[:, K.D_OSL] > max_kv)
    # token conservation: prefill work = sum of ISL of requests that got a first token
    fpm = run.fpm_rows()
    firsts = run.records()
    firsts = firsts[firsts[:, K.D_STATUS] == K.STATUS_FIRST_TOKEN]
    assert fpm[:, K.F_S_PRE_TOK].sum() == firsts[:, K.D_ISL].sum()
    # decode work = one token per running request per iteration = sum of (OSL - 1) over decoded ones
    decoded = ok[ok[:, K.D_OSL] > 1]
    assert fpm[:, K.F_S_NDEC].sum() == (decoded[:, K.D_OSL] - 1).sum()
    # causality
    assert np.all(ok[:, K.D_FIRST] >= ok[:, K.D_ARRIVAL])
    assert np.all(ok[:, K.D_DONE] >= ok[:, K.D_FIRST])
