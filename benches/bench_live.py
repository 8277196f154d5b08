"""The live adapter's own cost, and one traffic read from a local Prometheus.

* ``live-tick``: one load tick through :class:`~sla_planner.live.LiveAdapter` (connector read,
  engine snapshot, tick input, core, apply, decision-log line) against the reference: the same
  core step on a prebuilt tick input. The ratio is what the adapter adds.
* ``prometheus-window``: :meth:`PrometheusTraffic.window` (one 13-part query) against the
  reference: a trivial instant query (``vector(1)``) through the same client. Needs the Debian
  ``prometheus`` binary.

Run: ``pytest benches/bench_live.py --benchmark-only``
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from prom_helpers import PROMETHEUS, RunningPrometheus  # noqa: E402

from sla_planner.config import PlannerConfig  # noqa: E402
from sla_planner.connectors import InMemoryConnector  # noqa: E402
from sla_planner.core.load import EngineCapabilities  # noqa: E402
from sla_planner.core.planner import PlannerCore, ScheduledTick  # noqa: E402
from sla_planner.live import LiveAdapter, LiveOptions  # noqa: E402
from sla_planner.observe.decision_log import DecisionLog  # noqa: E402
from sla_planner.signals.prometheus import PrometheusTraffic  # noqa: E402
from sla_planner.signals.promql import PromSettings  # noqa: E402
from sla_planner.sim.frontend_metrics import FrontendMetrics, FrontendMetricsServer  # noqa: E402
from sla_planner.ticks import build_tick_input  # noqa: E402
from sla_planner.types import DecisionReason, Pool, TickKind  # noqa: E402

ENGINES = 64


class Engines:
    """A fixed snapshot of ``ENGINES`` decode engines at 50 % KV (no scaling)."""

    def __init__(self, n: int) -> None:
        z = np.zeros(n)
        self.snap = {
            "worker_id": np.array([f"d{i}" for i in range(n)], dtype=object),
            "worker_index": np.arange(n, dtype=np.int64),
            "role": np.array(["decode"] * n, dtype=object),
            "active": np.ones(n, dtype=bool),
            "last_seen_s": np.zeros(n),
            "wall_time": np.full(n, 0.02),
            "scheduled_sum_prefill_tokens": z, "scheduled_num_decode_requests": z,
            "scheduled_sum_decode_kv_tokens": np.full(n, 250.0),
            "queued_sum_prefill_tokens": z, "queued_num_decode_requests": z, "queued_sum_decode_kv_tokens": z,
        }

    def snapshot(self, now_s: float | None = None) -> dict[str, Any]:
        return self.snap


def _core() -> PlannerCore:
    cfg = PlannerConfig.from_sources(None, env={}, overrides={"mode": "decode", "optimization_target": "latency"})
    return PlannerCore(cfg, None, None, None, EngineCapabilities(max_kv_tokens=1000))


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.mark.benchmark(group="live-tick")
def test_live_adapter_tick(benchmark: Any, loop: asyncio.AbstractEventLoop, tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "decisions.jsonl")
    adapter = LiveAdapter(_core(), InMemoryConnector({Pool.DECODE: ENGINES}), engines=Engines(ENGINES),
                          observers=[log], options=LiveOptions())
    record = loop.run_until_complete(adapter.tick(TickKind.LOAD))
    assert record.decision.reason is DecisionReason.NO_CHANGE and record.input_errors == {}
    benchmark.pedantic(lambda: loop.run_until_complete(adapter.tick(TickKind.LOAD)), rounds=300, iterations=1)
    log.close()
    assert log.lines == 301


@pytest.mark.benchmark(group="live-tick")
def test_core_step_reference(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    core, engines = _core(), Engines(ENGINES)
    state = loop.run_until_complete(InMemoryConnector({Pool.DECODE: ENGINES}).read())

    def step() -> Any:
        inp = build_tick_input(time.time(), None, state, engines.snapshot())
        return core.step(ScheduledTick(TickKind.LOAD, inp.now_s), inp)

    assert step().reason is DecisionReason.NO_CHANGE
    benchmark.pedantic(step, rounds=300, iterations=1)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if PROMETHEUS is None:
        pytest.skip("the Debian 'prometheus' binary is not installed")
    metrics = FrontendMetrics("m", dynamo_namespace="ns")
    for i in range(100):
        metrics.observe_request(1000 + i, 100, 0.2, 0.02, 2.2)
    with FrontendMetricsServer(metrics) as server:
        prom = RunningPrometheus(tmp_path_factory.mktemp("prom"), [f"127.0.0.1:{server.port}"])
        try:
            prom.start()
            prom.wait_scraped()
            yield prom.url
        finally:
            prom.stop()


@pytest.mark.benchmark(group="prometheus-window")
def test_prometheus_window(benchmark: Any, loop: asyncio.AbstractEventLoop, prometheus: str) -> None:
    src = PrometheusTraffic(PromSettings(prometheus), model="m", dynamo_namespace="ns")
    assert loop.run_until_complete(src.window(60.0)).num_req == 0  # flat counters: idle, known
    benchmark.pedantic(lambda: loop.run_until_complete(src.window(60.0)), rounds=100, iterations=1)
    loop.run_until_complete(src.close())


@pytest.mark.benchmark(group="prometheus-window")
def test_trivial_query_reference(benchmark: Any, loop: asyncio.AbstractEventLoop, prometheus: str) -> None:
    src = PrometheusTraffic(PromSettings(prometheus))
    assert loop.run_until_complete(src.client.query("vector(1)"))[0][1] == 1.0
    benchmark.pedantic(lambda: loop.run_until_complete(src.client.query("vector(1)")), rounds=100, iterations=1)
    loop.run_until_complete(src.close())
