"""End to end over real ZMQ on loopback: mock engines publish FPM, the subscriber ingests it,
the live adapter decides with the same core as replay, and a connector starts and stops engines.

A burst saturates the decode engines' KV; the planner (easy latency target) adds an engine;
when the burst is over it removes one only after the patience window.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from sim_helpers import constant_perf

from sla_planner import kernels
from sla_planner.config import PlannerConfig
from sla_planner.connectors import InMemoryConnector
from sla_planner.core.load import EngineCapabilities
from sla_planner.core.planner import PlannerCore
from sla_planner.live import LiveAdapter
from sla_planner.signals import FileDiscovery, FpmSubscriber
from sla_planner.signals.mock_engine import MockEngine
from sla_planner.types import DecisionReason, Pool, TickKind

D = Pool.DECODE
PERF = constant_perf(prefill_tok_s=50_000.0, itl_ms=10.0, max_kv=100_000)
# 20 s of simulated burst (2 s of wall time at time_scale 10): ~30 running sequences of 3,000+
# tokens per rank overflow its 100,000-token KV cache; then nothing.
BURST = "synthetic:poisson?rate_rps=20&duration_s=20&isl=3000&osl=300&seed=1"
IDLE = "synthetic:poisson?rate_rps=0.001&duration_s=1&isl=10&osl=2&seed=1"


class MockDeployment:
    """Decode workers as MockEngines (2 dp ranks each), listed in a discovery file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.engines: list[MockEngine] = []

    def _write(self) -> None:
        entries = [{"endpoint": ep, "role": "decode"} for e in self.engines for ep in e.endpoints]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries))
        tmp.replace(self.path)

    def add(self, load: str) -> None:
        n = len(self.engines)
        engine = MockEngine(0, 2, "decode", PERF, load, f"decode-w{n}", time_scale=10.0).start()
        self.engines.append(engine)
        self._write()

    def resize(self, targets: dict[Pool, int]) -> None:
        while len(self.engines) < targets[D]:
            self.add(IDLE)
        while len(self.engines) > targets[D]:
            self.engines.pop().stop()
        self._write()

    def stop(self) -> None:
        for e in self.engines:
            e.stop()


def wait_until(cond: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_burst_scales_up_then_down_after_patience(tmp_path: Path) -> None:
    cfg = PlannerConfig.from_sources(None, env={}, overrides={
        "mode": "decode", "optimization_target": "latency", "load_scale_down_patience": 3,
        "min_endpoint": 2, "scale_down_stabilization": 0,
    })
    core = PlannerCore(cfg, None, None, None, EngineCapabilities(max_kv_tokens=PERF.max_kv_tokens))
    deployment = MockDeployment(tmp_path / "engines.json")
    deployment.add(BURST)
    deployment.add(BURST)
    connector = InMemoryConnector({D: 2}, on_apply=deployment.resize)
    subscriber = FpmSubscriber(kernels.FpmIngestor(10, 3.0), FileDiscovery(deployment.path),
                               refresh_interval_s=0.2)
    reasons: list[DecisionReason] = []

    async def plan() -> None:
        adapter = LiveAdapter(core, connector, engines=subscriber)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            await asyncio.to_thread(subscriber.refresh)
            record = await adapter.tick(TickKind.LOAD)
            reasons.append(record.decision.reason)
            if DecisionReason.SCALE_DOWN in reasons:
                break
            await asyncio.sleep(0.3)

    try:
        with subscriber:
            wait_until(lambda: len(subscriber.snapshot()["worker_id"]) == 4, 10, "4 engine ranks")
            asyncio.run(plan())
    finally:
        deployment.stop()
    assert DecisionReason.SCALE_UP in reasons, reasons
    up = reasons.index(DecisionReason.SCALE_UP)
    assert DecisionReason.SCALE_DOWN in reasons[up:], reasons
    down = reasons.index(DecisionReason.SCALE_DOWN, up)
    # the removal needed three consecutive agreeing ticks right before it
    assert reasons[down - 2 : down] == [DecisionReason.NO_CHANGE] * 2, reasons
    # one engine at a time, up while the burst lasts, then exactly one down
    sizes = [h[D] for h in connector.history]
    assert sizes[0] == 3
    assert all(b - a == 1 for a, b in zip(sizes, sizes[1:-1]))
    assert sizes[-1] == max(sizes) - 1
