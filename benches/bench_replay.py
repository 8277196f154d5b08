"""Replay speed: the bundled Mooncake trace with the planner in the loop, and scaling with
engine count (static deployments of 8, 64 and 512 engines with the arrival rate scaled to keep
them busy, first 600 s of the trace).

Reported as extra_info: requests per wall-second and simulated seconds per wall-second.
"""

from __future__ import annotations

from importlib import resources

import pytest

from sla_planner.config import PlannerConfig
from sla_planner.core.load import EngineCapabilities
from sla_planner.core.planner import PlannerCore, StaticPolicy
from sla_planner.perf import load_profile
from sla_planner.predict import predictors_from_config
from sla_planner.replay import ReplayOptions, run_replay
from sla_planner.sim.cluster import SimCluster, SimPerf, SimSettings
from sla_planner.traces.open import open_trace
from sla_planner.types import Pool

TRACE = str(resources.files("sla_planner") / "data" / "traces" / "mooncake_conversation.jsonl.gz")
MODELS = load_profile("builtin:example")
PERF = SimPerf.from_models(MODELS.prefill, MODELS.decode)


def _run(policy, initial, **trace_kw):  # type: ignore[no-untyped-def]
    cluster = SimCluster(PERF, SimSettings(), initial)
    return run_replay(open_trace(TRACE, **trace_kw), policy, cluster, ReplayOptions(2000.0, 30.0)).summary


@pytest.mark.benchmark(group="replay-full-trace")
def test_replay_full_trace_with_planner(benchmark) -> None:  # type: ignore[no-untyped-def]
    cfg = PlannerConfig.from_sources(None, env={}, overrides={"optimization_target": "sla",
                                                               "enable_load_scaling": True})
    caps = EngineCapabilities(max_kv_tokens=PERF.max_kv_tokens)

    def once():  # type: ignore[no-untyped-def]
        policy = PlannerCore(cfg, predictors_from_config(cfg), MODELS.prefill, MODELS.decode, caps)
        return _run(policy, {Pool.PREFILL: 8, Pool.DECODE: 4})

    summary = benchmark.pedantic(once, rounds=1, iterations=1, warmup_rounds=1)
    assert summary["requests_total"] == 12_031
    benchmark.extra_info.update(
        requests_per_wall_s=summary["requests_per_wall_s"], sim_s_per_wall_s=summary["sim_s_per_wall_s"]
    )


@pytest.mark.parametrize("engines", [8, 64, 512])
@pytest.mark.benchmark(group="replay-engine-count")
def test_replay_scaling_with_engines(benchmark, engines: int) -> None:  # type: ignore[no-untyped-def]
    prefill, decode = engines * 3 // 4, engines // 4
    rate = engines / 8  # 8 engines (6+2) carry the trace's own rate
    policy = StaticPolicy({Pool.PREFILL: prefill, Pool.DECODE: decode})
    summary = benchmark.pedantic(
        lambda: _run(policy, {Pool.PREFILL: prefill, Pool.DECODE: decode}, rate_scale=rate,
                     max_duration_s=600.0),
        rounds=1, iterations=1, warmup_rounds=0,
    )
    assert summary["requests_total"] > 1000 * rate
    benchmark.extra_info.update(
        requests=summary["requests_total"],
        requests_per_wall_s=summary["requests_per_wall_s"],
        sim_s_per_wall_s=summary["sim_s_per_wall_s"],
    )
