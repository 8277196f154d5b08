"""One full load tick (snapshot without id strings, engine view, regression feed + fit, per-engine
estimates, decision) at 1,000 engine ranks (compiled vs the Python references) and at 80,000
(10,000 workers x 8 dp ranks; target < 10 ms). Fresh forward passes arrive before every round
(untimed), as they would between two load intervals.

Run: ``pytest benches/bench_load_tick.py --benchmark-only``
"""

from __future__ import annotations

from typing import Any

import pytest

from sla_planner.bench_cases import LoadRig, check_load_decisions, warm_load_rig
from sla_planner.kernels.fpm_ingest_ref import FpmIngestor as FpmIngestorRef
from sla_planner.kernels.regression_ref import SlidingRegression as SlidingRegressionRef

_native = pytest.importorskip("sla_planner._native")

IMPLS = {
    "compiled": (_native.FpmIngestor, _native.SlidingRegression),
    "reference": (FpmIngestorRef, SlidingRegressionRef),
}


def _rig(impl: str, n_ranks: int) -> tuple[LoadRig, dict[Any, Any]]:
    rig = LoadRig(n_ranks, *IMPLS[impl])
    return rig, warm_load_rig(rig)


@pytest.mark.benchmark(group="load-tick-1k-ranks")
@pytest.mark.parametrize("impl", ["compiled", "reference"])
def test_load_tick_1k(benchmark: Any, impl: str) -> None:
    rig, decisions = _rig(impl, 1_000)
    _, want = _rig("reference", 1_000)
    check_load_decisions("load_tick_1000", decisions, want)
    rounds = {"compiled": 30, "reference": 5}[impl]
    benchmark.pedantic(rig.tick, setup=rig.feed, rounds=rounds, iterations=1)


@pytest.mark.benchmark(group="load-tick-80k-ranks")
def test_load_tick_80k(benchmark: Any) -> None:
    rig, decisions = _rig("compiled", 80_000)
    check_load_decisions("load_tick_80000", decisions, None)
    result = benchmark.pedantic(rig.tick, setup=rig.feed, rounds=15, iterations=1)
    assert set(result) == set(decisions)
