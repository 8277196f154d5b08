"""The per-tick planner-metrics update at 80,000 engine ranks (10,000 workers x 8 dp ranks,
top-K = 10 engines per pool; target <= 1 ms), against the same update computing the engine
statistics with the plain-Python reference loop.

Run: ``pytest benches/bench_metrics.py --benchmark-only`` (on a shared machine add
``--benchmark-timer time.process_time``: CPU time, not time spent waiting for a core).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from sla_planner.observe.bench_records import fleet_record, fleet_snapshot
from sla_planner.observe.metrics import MetricsSettings, PlannerMetrics
from sla_planner.ticks import TickRecord
from sla_planner.types import Pool, TickKind

SETTINGS = MetricsSettings(
    pools=(Pool.PREFILL, Pool.DECODE),
    intervals_s={TickKind.THROUGHPUT: 60.0, TickKind.LOAD: 10.0},
    ttft_ms=2000.0,
    itl_ms=30.0,
    gpus_per_engine={Pool.PREFILL: 1, Pool.DECODE: 1},
    top_engines=10,
)


@pytest.fixture(scope="module")
def fleet_records() -> list[TickRecord]:
    """Eight ticks over the same fleet with fresh queues each time (cycled while timing)."""
    rng = np.random.default_rng(20240601)
    records = []
    for i in range(8):
        snapshot, view = fleet_snapshot(10_000, 8, rng)
        records.append(fleet_record(snapshot, view, now_s=1000.0 + 10.0 * i))
    return records


def _engine_samples(metrics: PlannerMetrics) -> dict[tuple[str, ...], float]:
    out = {}
    for family in metrics.registry.collect():
        if family.name.startswith("dynamo_planner_engine_") or family.name.startswith("dynamo_planner_pool_"):
            for s in family.samples:
                out[(s.name, *sorted(s.labels.items()))] = s.value  # type: ignore[arg-type]
    return out


@pytest.mark.benchmark(group="metrics-tick-80k-ranks")
@pytest.mark.parametrize("impl", ["top-k", "reference"])
def test_metrics_tick_80k(benchmark: Any, impl: str, fleet_records: list[TickRecord]) -> None:
    metrics = PlannerMetrics(SETTINGS, reference=impl == "reference")
    want = PlannerMetrics(SETTINGS, reference=True)
    metrics.on_tick(fleet_records[0])
    want.on_tick(fleet_records[0])
    got, expected = _engine_samples(metrics), _engine_samples(want)
    assert got.keys() == expected.keys()
    assert all(np.isclose(got[k], expected[k], rtol=1e-9) for k in got)
    assert sum(1 for k in got if k[0] == "dynamo_planner_engine_queued_prefill_tokens") == 20
    state = {"i": 0}

    def tick() -> None:
        state["i"] += 1
        record = fleet_records[state["i"] % len(fleet_records)]
        now = 1000.0 + 10.0 * state["i"]
        metrics.on_tick(dataclasses.replace(record, tick_input=dataclasses.replace(record.tick_input, now_s=now)))

    rounds = {"top-k": 200, "reference": 5}[impl]
    benchmark.pedantic(tick, rounds=rounds, iterations=1, warmup_rounds=2)
