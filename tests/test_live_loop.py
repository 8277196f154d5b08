"""The asyncio live adapter: ticks, applies, advisory mode, failures as unknowns, timeouts, shutdown."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sla_planner.config import PlannerConfig
from sla_planner.connectors import ApplyStatus, DeploymentState, InMemoryConnector, PoolState
from sla_planner.core.load import EngineCapabilities
from sla_planner.core.planner import Decision, PlannerCore, ScheduledTick, StaticPolicy, TickInput
from sla_planner.errors import SignalError
from sla_planner.live import LiveAdapter, LiveOptions, warm_up_from_history
from sla_planner.observe.decision_log import DecisionLog
from sla_planner.signals.prometheus import HistoryPoint
from sla_planner.ticks import TickRecord
from sla_planner.types import DecisionReason, ObservedTraffic, Pool, TickKind

P, D = Pool.PREFILL, Pool.DECODE
FAST = LiveOptions(read_timeout_s=0.2, apply_timeout_s=0.2, traffic_timeout_s=0.2, close_timeout_s=0.2)


class Engines:
    """A snapshot source: decode engines with a KV level the test sets, and their pods."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.kv = 0.0
        self.fail = False

    def snapshot(self, now_s: float | None = None) -> dict[str, Any]:
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

    def instances_of(self, worker_ids: Any) -> dict[str, str]:
        return {w: f"pod-{w}" for w in worker_ids if w != "d9"}


class Traffic:
    def __init__(self, value: ObservedTraffic | None = None, delay_s: float = 0.0) -> None:
        self.value = value or ObservedTraffic(num_req=600, isl=3000, osl=150)
        self.delay_s = delay_s
        self.calls = 0

    async def window(self, window_s: float) -> ObservedTraffic:
        self.calls += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.value.num_req is None:
            raise SignalError("Prometheus http://p:9090: ClientConnectorError (gave up after 3 attempts)")
        return self.value


class Recorder:
    def __init__(self) -> None:
        self.records: list[TickRecord] = []
        self.closed = False

    def on_tick(self, record: TickRecord) -> None:
        self.records.append(record)

    def close(self) -> None:
        self.closed = True


def easy_core(**kw: object) -> PlannerCore:
    cfg = PlannerConfig.from_sources(None, env={}, overrides={
        "mode": "decode", "optimization_target": "latency", "load_scale_down_patience": 2,
        "scale_down_stabilization": 0, **kw})
    return PlannerCore(cfg, None, None, None, EngineCapabilities(max_kv_tokens=1000))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_load_ticks_scale_up_then_down_after_patience() -> None:
    engines = Engines(2)
    conn = InMemoryConnector({D: 2}, on_apply=lambda t: setattr(engines, "n", t[D]))
    rec = Recorder()
    adapter = LiveAdapter(easy_core(), conn, engines=engines, observers=[rec], options=FAST)

    async def go() -> list[DecisionReason]:
        engines.kv = 900.0  # 90% KV > 40% latency threshold
        reasons = [(await adapter.tick(TickKind.LOAD)).decision.reason]
        engines.kv = 0.0  # idle: under 10% on every engine
        for _ in range(3):
            reasons.append((await adapter.tick(TickKind.LOAD)).decision.reason)
        return reasons

    reasons = run(go())
    assert reasons[:3] == [DecisionReason.SCALE_UP, DecisionReason.NO_CHANGE, DecisionReason.SCALE_DOWN]
    assert conn.history == [{D: 3}, {D: 2}]
    assert [r.decision_id for r in conn.requests] == [1, 2]  # monotonic per planner
    applied = [r.apply for r in rec.records if r.apply is not None]
    assert [a.status for a in applied] == [ApplyStatus.APPLIED, ApplyStatus.APPLIED]
    assert adapter.stats.applies == {"applied": 2} and adapter.stats.ticks == 4
    assert set(rec.records[0].timings_s) == {"observe", "decide", "apply"}


def test_advisory_mode_decides_records_and_never_applies(tmp_path: Path) -> None:
    engines = Engines(2)
    engines.kv = 900.0
    conn = InMemoryConnector({D: 2})
    log = DecisionLog(tmp_path / "decisions.jsonl")
    adapter = LiveAdapter(easy_core(), conn, engines=engines, observers=[log],
                          options=LiveOptions(advisory=True))

    async def go() -> TickRecord:
        try:
            return await adapter.tick(TickKind.LOAD)
        finally:
            await adapter.aclose()

    record = run(go())
    assert record.decision.reason is DecisionReason.SCALE_UP and record.decision.targets == {D: 3}
    assert record.apply is not None and record.apply.status is ApplyStatus.ADVISORY
    assert conn.current() == {D: 2} and conn.requests == []  # apply was never called
    line = json.loads((tmp_path / "decisions.jsonl").read_text())
    assert line["apply"]["status"] == "advisory" and line["targets"] == {"decode": 3}


def test_failed_reads_are_unknown_inputs_and_failed_applies_are_recorded_as_failed() -> None:
    engines = Engines(2)
    engines.kv = 900.0
    conn = InMemoryConnector({D: 2})
    adapter = LiveAdapter(easy_core(), conn, engines=engines, options=FAST)

    async def go() -> list[TickRecord]:
        out = []
        conn.fail_reads = 1
        out.append(await adapter.tick(TickKind.LOAD))
        engines.fail = True
        out.append(await adapter.tick(TickKind.LOAD))
        engines.fail = False
        conn.fail_applies = 1
        out.append(await adapter.tick(TickKind.LOAD))
        return out

    unknown, no_fpm, failed = run(go())
    assert unknown.decision.reason is DecisionReason.UNKNOWN_WORKERS and unknown.apply is None
    assert "read failed" in unknown.input_errors["connector"]
    assert no_fpm.decision.reason is DecisionReason.NO_FPM_DATA
    assert "lock timeout" in no_fpm.input_errors["fpm"]
    assert failed.decision.reason is DecisionReason.SCALE_UP
    assert failed.apply is not None and failed.apply.status is ApplyStatus.FAILED
    assert conn.current() == {D: 2}  # nothing changed, nothing crashed
    assert adapter.stats.input_errors == {"connector": 1, "fpm": 1}
    assert adapter.stats.applies == {"failed": 1}


def test_a_hung_connector_never_blocks_the_tick() -> None:
    engines = Engines(2)
    engines.kv = 900.0
    conn = InMemoryConnector({D: 2})
    adapter = LiveAdapter(easy_core(), conn, engines=engines, options=FAST)

    async def go() -> tuple[TickRecord, TickRecord, float]:
        start = time.monotonic()
        conn.read_delay_s = 5.0
        hung_read = await adapter.tick(TickKind.LOAD)
        conn.read_delay_s, conn.apply_delay_s = 0.0, 5.0
        hung_apply = await adapter.tick(TickKind.LOAD)
        return hung_read, hung_apply, time.monotonic() - start

    hung_read, hung_apply, elapsed = run(go())
    assert hung_read.decision.reason is DecisionReason.UNKNOWN_WORKERS
    assert "no answer within 0.2 s" in hung_read.input_errors["connector"]
    assert hung_apply.apply is not None and hung_apply.apply.status is ApplyStatus.FAILED
    assert "no answer within 0.2 s (outcome unknown)" in hung_apply.apply.detail
    assert elapsed < 2.0


@pytest.mark.parametrize(
    ("traffic", "reason", "error"),
    [
        (Traffic(ObservedTraffic(num_req=None)), DecisionReason.UNKNOWN_TRAFFIC, "gave up after 3 attempts"),
        (Traffic(delay_s=5.0), DecisionReason.UNKNOWN_TRAFFIC, "no answer within 0.2 s"),
        (Traffic(), DecisionReason.SCALE_UP, None),
    ],
    ids=["prometheus-down", "prometheus-hung", "known"],
)
def test_throughput_ticks_read_traffic_and_hold_when_it_is_unknown(
    traffic: Traffic, reason: DecisionReason, error: str | None
) -> None:
    from sla_planner.cli.replay import make_policy
    from sla_planner.perf import load_profile

    cfg = PlannerConfig.from_sources(None, env={}, overrides={
        "optimization_target": "sla", "profile_results_dir": "builtin:example", "enable_load_scaling": False})
    policy = make_policy("planner", cfg, load_profile("builtin:example"))
    conn = InMemoryConnector({P: 1, D: 1})
    adapter = LiveAdapter(policy, conn, traffic=traffic, options=FAST)
    record = run(adapter.tick(TickKind.THROUGHPUT))
    assert record.decision.reason is reason
    assert record.input_errors.get("prometheus") == error or error in record.input_errors["prometheus"]
    if error is not None:
        assert record.apply is None and conn.history == []
    else:
        assert record.tick_input.traffic == traffic.value and conn.history


def test_drained_engines_reach_the_connector_as_worker_ids_and_instances() -> None:
    class Draining(StaticPolicy):
        def step(self, tick: ScheduledTick, tick_input: TickInput) -> Decision:
            decision = super().step(tick, tick_input)
            return Decision(decision.at_s, decision.tick, decision.targets, decision.reason,
                            drain={D: ("d1", "d9")})

    conn = InMemoryConnector({D: 3})
    adapter = LiveAdapter(Draining({D: 1}), conn, engines=Engines(3), options=FAST)
    run(adapter.tick(TickKind.THROUGHPUT))
    (request,) = conn.requests
    assert request.targets == {D: 1} and request.drain == {D: ("d1", "d9")}
    assert request.drain_instances == {D: ("pod-d1",)}  # d9 has no known instance


def test_start_reads_the_deployment_first_and_continues_its_decision_ids() -> None:
    class Resumed(InMemoryConnector):
        async def read(self) -> DeploymentState:
            state = await super().read()
            return DeploymentState(state.pools, state.rolling_out, {"last_decision_id": 41})

    conn = Resumed({D: 2}, ready_follows=False)
    conn.set_ready(D, 1)
    adapter = LiveAdapter(StaticPolicy({D: 3}), conn, options=FAST)

    async def go() -> Any:
        state = await adapter.start()
        await adapter.tick(TickKind.THROUGHPUT)
        return state

    state = run(go())
    assert state.pools[D] == PoolState(2, 1)
    assert conn.requests[0].decision_id == 42


class Scripted:
    """A policy with fast intervals that raises on chosen ticks."""

    name = "scripted"

    def __init__(self, intervals: dict[TickKind, float], fail_on: set[int] | None = None, sleep_s: float = 0.0) -> None:
        self._intervals = intervals
        self.fail_on = fail_on or set()
        self.sleep_s = sleep_s
        self.ticks: list[tuple[TickKind, float]] = []

    def intervals(self) -> dict[TickKind, float]:
        return dict(self._intervals)

    def step(self, tick: ScheduledTick, tick_input: TickInput) -> Decision:
        self.ticks.append((tick.kind, time.monotonic()))
        if len(self.ticks) in self.fail_on:
            raise RuntimeError("policy bug")
        if self.sleep_s:
            time.sleep(self.sleep_s)
        return Decision(tick_input.now_s, tick.kind, None, DecisionReason.NO_CHANGE)


def test_run_ticks_throughput_first_and_survives_a_policy_bug_and_a_bad_observer() -> None:
    class Broken(Recorder):
        def on_tick(self, record: TickRecord) -> None:
            raise ValueError("observer bug")

    policy = Scripted({TickKind.THROUGHPUT: 0.3, TickKind.LOAD: 0.1}, fail_on={2})
    rec, broken = Recorder(), Broken()
    adapter = LiveAdapter(policy, InMemoryConnector({D: 1}), observers=[broken, rec], options=FAST)
    start = time.monotonic()
    stats = run(adapter.run(duration_s=0.65))
    kinds = [k for k, _ in policy.ticks]
    assert kinds[0] is TickKind.THROUGHPUT and policy.ticks[0][1] - start < 0.3  # at once, not after 0.3 s
    # due: throughput at 0, 0.3, 0.6 and load at 0.1 ... 0.6 (a loaded machine may skip some)
    assert len(kinds) + stats.skipped_ticks == 9 and kinds.count(TickKind.THROUGHPUT) >= 2
    assert stats.tick_errors == 1 and stats.ticks == len(kinds) - 1
    assert stats.observer_errors == stats.ticks and len(rec.records) == stats.ticks
    assert stats.median_tick_s() is not None


def test_overrunning_ticks_are_skipped_not_queued() -> None:
    policy = Scripted({TickKind.LOAD: 0.05}, sleep_s=0.18)
    stats = run(LiveAdapter(policy, InMemoryConnector({D: 1}), options=FAST).run(duration_s=0.5))
    assert 2 <= stats.ticks <= 4 and stats.skipped_ticks >= 4


def test_stop_from_another_thread_finishes_the_current_tick_then_returns() -> None:
    policy = Scripted({TickKind.LOAD: 0.05}, sleep_s=0.1)
    rec = Recorder()
    conn = InMemoryConnector({D: 1})
    adapter = LiveAdapter(policy, conn, observers=[rec], options=FAST)

    async def go() -> float:
        threading.Timer(0.3, adapter.stop).start()
        await adapter.run()  # no duration: only stop() ends it
        stopped = time.monotonic()
        await adapter.aclose()
        return stopped

    start = time.monotonic()
    stopped = run(go())
    assert stopped - start < 1.0
    assert len(rec.records) == len(policy.ticks)  # every started tick was finished and recorded
    assert rec.closed and conn.closed


def test_warm_up_feeds_known_past_windows_only() -> None:
    class Forecaster:
        def __init__(self) -> None:
            self.seen: list[tuple[float, float | None, float | None]] = []

        def observe(self, num_req: float, isl: float | None, osl: float | None) -> None:
            self.seen.append((num_req, isl, osl))

    async def history(window_s: float, windows: int, end_s: float) -> list[HistoryPoint]:
        return [
            HistoryPoint(end_s - 2 * window_s, None, "no series"),
            HistoryPoint(end_s - window_s, ObservedTraffic(num_req=0.0)),
            HistoryPoint(end_s, ObservedTraffic(num_req=5.0, isl=100.0, osl=10.0)),
        ]

    async def down(window_s: float, windows: int, end_s: float) -> list[HistoryPoint]:
        raise SignalError("Prometheus down")

    f = Forecaster()
    assert run(warm_up_from_history(f, history, 60.0, 3, 1000.0, 1.0)) == 2
    assert f.seen == [(0.0, None, None), (5.0, 100.0, 10.0)]
    assert run(warm_up_from_history(f, down, 60.0, 3, 1000.0, 1.0)) == 0
