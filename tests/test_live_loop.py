"""The live loop on a fake clock: ticks, applies, advisory mode, failures as unknowns."""

from __future__ import annotations

import numpy as np

from sla_planner.config import PlannerConfig
from sla_planner.connectors import InMemoryConnector
from sla_planner.core.load import EngineCapabilities
from sla_planner.core.planner import PlannerCore, StaticPolicy
from sla_planner.live import LiveLoop
from sla_planner.types import DecisionReason, ObservedTraffic, Pool, TickKind

P, D = Pool.PREFILL, Pool.DECODE


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


class Engines:
    """A snapshot source: decode engines with a KV level the test sets."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.kv = 0.0
        self.fail = False

    def snapshot(self, now_s: float | None = None) -> dict:  # type: ignore[type-arg]
        if self.fail:
            raise TimeoutError("engine table lock timeout")
        n = self.n
        z = np.zeros(n)
        return {
            "worker_id": np.array([f"d{i}" for i in range(n)], dtype=object),
            "worker_index": np.arange(n, dtype=np.int64),
            "role": np.array(["decode"] * n, dtype=object),
            "active": np.ones(n, dtype=bool),
            "last_seen_s": np.full(n, now_s or 0.0),
            "wall_time": np.full(n, 0.02),
            "scheduled_sum_prefill_tokens": z, "scheduled_num_decode_requests": z,
            "scheduled_sum_decode_kv_tokens": np.full(n, self.kv),
            "queued_sum_prefill_tokens": z, "queued_num_decode_requests": z,
            "queued_sum_decode_kv_tokens": z,
        }


def _easy_core(**kw: object) -> PlannerCore:
    cfg = PlannerConfig.from_sources(None, env={}, overrides={
        "mode": "decode", "optimization_target": "latency", "load_scale_down_patience": 2,
        "scale_down_stabilization": 0, **kw})
    return PlannerCore(cfg, None, None, None, EngineCapabilities(max_kv_tokens=1000))


def test_load_loop_scales_up_then_down_after_patience() -> None:
    clock = FakeClock()
    engines = Engines(2)
    conn = InMemoryConnector({D: 2}, on_apply=lambda t: setattr(engines, "n", t[D]))
    loop = LiveLoop(_easy_core(), conn, engines=engines, clock=clock)
    engines.kv = 900.0  # 90% KV > 40% latency threshold
    loop.run(duration_s=10.0, sleep=clock.sleep)
    assert conn.current() == {D: 3}
    engines.kv = 0.0  # idle: under 10% on every engine
    reasons = []
    for k in range(3):
        clock.t += 10
        reasons.append(loop.tick(TickKind.LOAD, clock.t).reason)
    assert reasons[0] is DecisionReason.NO_CHANGE  # inside the patience window
    assert reasons[1] is DecisionReason.SCALE_DOWN
    assert conn.current() == {D: 2}
    assert loop.stats.applied == 2


def test_advisory_mode_decides_but_never_applies() -> None:
    clock = FakeClock()
    engines = Engines(2)
    engines.kv = 900.0
    conn = InMemoryConnector({D: 2})
    loop = LiveLoop(_easy_core(), conn, engines=engines, clock=clock, advisory=True)
    d = loop.tick(TickKind.LOAD, clock.t)
    assert d.reason is DecisionReason.SCALE_UP and d.targets == {D: 3}
    assert conn.current() == {D: 2} and conn.history == []


def test_failed_reads_are_unknown_and_failed_applies_are_counted() -> None:
    clock = FakeClock()
    engines = Engines(2)
    engines.kv = 900.0
    conn = InMemoryConnector({D: 2})
    loop = LiveLoop(_easy_core(), conn, engines=engines, clock=clock)
    conn.fail_reads = 1
    assert loop.tick(TickKind.LOAD, clock.t).reason is DecisionReason.UNKNOWN_WORKERS
    engines.fail = True
    assert loop.tick(TickKind.LOAD, clock.t).reason is DecisionReason.NO_FPM_DATA
    engines.fail = False
    conn.fail_applies = 1
    assert loop.tick(TickKind.LOAD, clock.t).reason is DecisionReason.SCALE_UP
    assert conn.current() == {D: 2}  # the apply failed; nothing changed, nothing crashed
    assert loop.stats.errors == {"workers": 1, "engines": 1, "apply": 1}


def test_throughput_ticks_use_traffic_and_unknown_traffic_holds() -> None:
    class Traffic:
        value: ObservedTraffic | None = ObservedTraffic(num_req=600, isl=3000, osl=150)

        def window(self, window_s: float) -> ObservedTraffic | None:
            return self.value

    clock = FakeClock()
    conn = InMemoryConnector({P: 8, D: 8})
    policy = StaticPolicy({P: 2, D: 1}, interval_s=60.0)
    traffic = Traffic()
    loop = LiveLoop(policy, conn, traffic=traffic, clock=clock)
    loop.run(duration_s=60.0, sleep=clock.sleep)
    assert conn.current() == {P: 2, D: 1}
    assert loop.stats.ticks == 1 and loop.stats.max_lag_s == 0.0
