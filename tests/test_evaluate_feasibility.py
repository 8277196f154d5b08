"""Idle-engine feasibility: which requests can meet the SLA at all, and the ledger's counts of them."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from sla_planner.sim import _kernel as K
from sla_planner.sim.cluster import SimSettings
from sla_planner.sim.ledger import IdleFeasibility, RequestLedger
from sla_planner.perf import load_profile
from sla_planner.sim.cluster import SimPerf
from sla_planner.types import Pool

from sim_helpers import Run, cluster, constant_perf

P, D = Pool.PREFILL, Pool.DECODE


def _classifier(itl_ms: float = 30.0, max_kv: int = 10_000, **settings: object) -> IdleFeasibility:
    # constant engines: prefill 1000 tok/s/GPU, ITL itl_ms at any load; SLA 2000 ms / 30 ms
    fake = SimpleNamespace(perf=constant_perf(1000.0, itl_ms, max_kv), settings=SimSettings(**settings))
    return IdleFeasibility(fake, 2000.0, 30.0)


# (case, classifier settings, isl, osl, feasible)
CASES = [
    ("ttft exactly at the target", {}, 2000, 2, True),
    ("ttft one token over", {}, 2001, 2, False),
    ("two GPUs per prefill engine halve the ttft", {"prefill_engine_num_gpu": 2}, 4000, 2, True),
    ("two GPUs, one token over", {"prefill_engine_num_gpu": 2}, 4001, 2, False),
    ("slower simulated engines", {"time_scale": 1.25}, 1600, 2, True),
    ("slower simulated engines, one token over", {"time_scale": 1.25}, 1601, 2, False),
    ("itl exactly at the target", {"itl_ms": 30.0}, 100, 50, True),
    ("itl just over the target", {"itl_ms": 30.0, "time_scale": 1.0001}, 100, 50, False),
    ("one output token has no itl", {"itl_ms": 99.0}, 100, 1, True),
    ("transfer time spread over the gaps, inside", {"itl_ms": 20.0, "transfer_s": 0.1}, 100, 11, True),
    ("transfer time spread over the gaps, outside", {"itl_ms": 20.0, "transfer_s": 0.1001}, 100, 11, False),
    ("fits the kv cache exactly", {}, 1000, 9000, True),
    ("one token over the kv cache (rejected)", {}, 1000, 9001, False),
]


@pytest.mark.parametrize(("case", "settings", "isl", "osl", "feasible"), CASES, ids=[c[0] for c in CASES])
def test_feasibility_boundaries(case: str, settings: dict, isl: int, osl: int, feasible: bool) -> None:
    kw = dict(settings)
    itl_ms = float(kw.pop("itl_ms", 10.0))
    f = _classifier(itl_ms, **kw)
    assert bool(f(np.array([isl]), np.array([osl]))[0]) is feasible


def test_idle_times_match_a_lone_request_in_the_simulator() -> None:
    """The classifier charges exactly what the simulator does on an idle engine."""
    models = load_profile("builtin:example")
    perf = SimPerf.from_models(models.prefill, models.decode)
    for scale, transfer in ((1.0, 0.0), (1.15, 0.25)):
        run = Run(cluster({P: 1, D: 1}, perf, time_scale=scale, transfer_s=transfer))
        run.play([(0.5, 20_000, 300)], until=60.0)
        row = run.outcomes()[0]
        ttft, itl = IdleFeasibility(run.c, 2000.0, 30.0).idle_times_s([20_000], [300])
        assert row[K.D_FIRST] - row[K.D_ARRIVAL] == pytest.approx(ttft[0], rel=1e-9)
        assert (row[K.D_DONE] - row[K.D_FIRST]) / 299 == pytest.approx(itl[0], rel=1e-4)


def test_ledger_counts_infeasible_requests_and_attainment_over_the_rest() -> None:
    run = Run(cluster({P: 1, D: 1}))  # prefill 1000 tok/s, ITL 10 ms
    # 0: ISL 1000 alone -> 1.0 s, met. 1: ISL 3000 -> 3.0 s, infeasible. 2: ISL 1500 arrives at 1.1 s
    # behind request 1 (busy until 4.0 s) -> TTFT 4.4 s, feasible but missed.
    run.play([(0.0, 1000, 5), (1.0, 3000, 5), (1.1, 1500, 5)], until=20.0)
    ledger = RequestLedger(2000.0, 30.0, feasibility=IdleFeasibility(run.c, 2000.0, 30.0))
    ledger.add(run.records())
    s = ledger.summary()
    assert s["requests_total"] == 3
    assert s["requests_infeasible"] == 1
    assert s["sla_attainment"] == pytest.approx(1 / 3)
    assert s["sla_attainment_feasible"] == pytest.approx(1 / 2)


def test_ledger_without_a_classifier_reports_no_feasibility() -> None:
    ledger = RequestLedger(2000.0, 30.0)
    ledger.add(np.zeros((0, K.N_D)))
    assert "sla_attainment_feasible" not in ledger.summary()
