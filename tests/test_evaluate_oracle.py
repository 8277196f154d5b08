"""The hindsight oracle: worked numbers, and its schedule replayed as a policy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sla_planner.core.planner import ScheduledTick, TickInput
from sla_planner.evaluate.oracle import OraclePolicy, hindsight_oracle
from sla_planner.evaluate.workload import Workload
from sla_planner.perf import DecodeModel, PrefillModel
from sla_planner.sim.cluster import SimPerf, SimSettings
from sla_planner.types import Pool, TickKind

P, D, A = Pool.PREFILL, Pool.DECODE, Pool.AGG
MAX_KV = 10_000


def _models() -> tuple[PrefillModel, DecodeModel]:
    """Prefill 1000 tok/s/GPU at any ISL; decode ITL 10 ms at any load and context, KV 10k tokens,
    profiled KV usage 0.1..0.9. The decode model carries the flat ITL on to a full cache, so the
    best point is usage 1.0: 10k / context / 0.01 tok/s (to the log-context grid's accuracy)."""
    isl = np.array([100.0, 10_000.0, 100_000.0])
    prefill = PrefillModel(isl, isl, np.full(3, 1000.0))  # ttft ms = isl at 1000 tok/s
    kv = np.array([0.1, 0.5, 0.9, 0.1, 0.5, 0.9])
    ctx = np.array([1000.0, 1000.0, 1000.0, 4000.0, 4000.0, 4000.0])
    itl = np.full(6, 10.0)
    decode = DecodeModel(kv, ctx, itl, kv * MAX_KV / ctx / 0.01, MAX_KV)
    return prefill, decode


def _oracle(work: Workload, **settings: object):  # type: ignore[no-untyped-def]
    prefill, decode = _models()
    sim = SimSettings(**settings)
    return hindsight_oracle(work, SimPerf.from_models(prefill, decode), sim, decode, 2000.0, 30.0, 60.0)


def _work(arrivals: list[float], isl: float, osl: float) -> Workload:
    n = len(arrivals)
    return Workload(np.asarray(arrivals, dtype=float), np.full(n, isl), np.full(n, osl))


def test_worked_example_one_busy_interval() -> None:
    # 50 requests at 0, 0.2, ..., 9.8 s, ISL 1500 (1.5 s of prefill each), OSL 1001 (1000 tokens at
    # 30 ms = 30 s of decode, all inside [0, 60)).
    o = _oracle(_work([0.2 * i for i in range(50)], 1500, 1001))
    assert o.intervals == 1
    assert o.prefill_busy_s[0] == pytest.approx(75.0)  # 50 x 1.5 s
    assert o.replicas[P][0] == 2  # ceil(75 / 60)
    assert o.decode_tokens_per_s[0] == pytest.approx(50 * 1000 / 60)  # 833.3 tok/s
    assert o.decode_context[0] == pytest.approx(1500 + 1001 / 2)
    capacity = MAX_KV / 2000.5 / 0.01  # 499.9 tok/s per engine
    # (the decode grid is uniform in log context while throughput goes as 1/context: 0.3% off)
    assert o.decode_capacity_per_engine[0] == pytest.approx(capacity, rel=5e-3)
    assert o.replicas[D][0] == math.ceil(833.333 / capacity) == 2
    assert o.gpu_hours == pytest.approx(4 * 60 / 3600)


def test_slower_simulated_engines_need_more_of_both() -> None:
    # time scale 2: 3 s of prefill each (150 s -> 3 engines); decode half as fast (D = ceil(3.7) = 4)
    o = _oracle(_work([0.2 * i for i in range(50)], 1500, 1001), time_scale=2.0)
    assert o.prefill_busy_s[0] == pytest.approx(150.0)
    assert o.replicas[P][0] == 3
    assert o.decode_capacity_per_engine[0] == pytest.approx(MAX_KV / 2000.5 / 0.01 / 2, rel=5e-3)
    assert o.replicas[D][0] == 4


def test_decode_tokens_split_across_intervals() -> None:
    # one request at 50 s: prefill until 51.5, decode 1000 tokens until 81.5: 8.5 s in interval 0
    # (283.3 tokens), 21.5 s in interval 1 (716.7 tokens)
    o = _oracle(_work([50.0], 1500, 1001))
    assert o.intervals == 2
    assert o.decode_tokens_per_s * 60 == pytest.approx([8.5 / 0.03, 21.5 / 0.03])
    assert list(o.prefill_busy_s) == pytest.approx([1.5, 0.0])
    assert [list(o.replicas[P]), list(o.replicas[D])] == [[1, 1], [1, 1]]  # min_endpoint floors


def test_prefill_share_boundary() -> None:
    # 40 requests of 1.5 s = exactly 60 s of work: one engine; one more request: two
    assert _oracle(_work([0.1 * i for i in range(40)], 1500, 2)).replicas[P][0] == 1
    assert _oracle(_work([0.1 * i for i in range(41)], 1500, 2)).replicas[P][0] == 2


def test_aggregated_engines_sum_both_shares() -> None:
    # prefill share 75/60 = 1.25, decode share 833.3/498.4 = 1.67 -> ceil(2.92) = 3
    o = _oracle(_work([0.2 * i for i in range(50)], 1500, 1001), mode="agg")
    assert set(o.replicas) == {A}
    assert o.replicas[A][0] == 3


def _tick(policy: OraclePolicy, now_s: float) -> dict[Pool, int]:
    inp = TickInput(now_s=now_s, traffic=None, current={P: 1, D: 1})
    decision = policy.step(ScheduledTick(TickKind.THROUGHPUT, now_s), inp)
    assert decision.targets is not None
    return decision.targets


def test_oracle_policy_raises_targets_a_startup_delay_ahead() -> None:
    # need: interval 0 -> 1P, interval 3 (180..240 s) -> 2P (50 requests arriving there)
    work = _work([10.0] + [180.0 + 0.2 * i for i in range(50)], 1500, 2)
    o = _oracle(work)
    assert list(o.replicas[P]) == [1, 1, 1, 2]
    policy = OraclePolicy(o, startup_delay_s=100.0, tick_s=10.0)
    # at t the targets cover [t, t + 110): interval 3 enters the window after t = 70
    assert _tick(policy, 60.0)[P] == 1
    assert _tick(policy, 70.0)[P] == 1
    assert _tick(policy, 80.0)[P] == 2
    assert _tick(policy, 239.0)[P] == 2
    assert _tick(policy, 240.0)[P] == 1  # past the schedule: min_endpoint
