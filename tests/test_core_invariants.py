"""Invariants of the whole decision core (PlannerCore.step), property-tested.

Random configurations (mode, target, loops, per-pool minimums, GPU ceiling and floor, GPUs per
engine), and random tick sequences (traffic known or unknown, deployments known or unknown and
possibly over budget, engine views or none, pools starting or settled):

* final targets never exceed the GPU budget and never go below a pool's minimum;
* a pool never moves on unknown data: with no worker counts nothing moves; with no traffic on a
  throughput tick, or no engine metrics on a load tick, only the constraints (minimums, budget)
  can move a deployment that breaks them;
* the engines named to drain belong to the shrinking pool, and no more than it gives up.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sla_planner.config import PlannerConfig
from sla_planner.core.constrain import constrain
from sla_planner.core.load import EngineCapabilities, EngineView, role_codes
from sla_planner.core.planner import PlannerCore, ScheduledTick, TickInput
from sla_planner.perf import load_profile
from sla_planner.predict import predictors_from_config
from sla_planner.types import ObservedTraffic, Pool, TickKind, pools_for_mode

MODELS = load_profile("builtin:example")
CAPS = EngineCapabilities(max_kv_tokens=int(MODELS.decode.max_kv_tokens))


@st.composite
def configs(draw: st.DrawFn) -> PlannerConfig:
    mode = draw(st.sampled_from(["disagg", "agg", "prefill", "decode"]))
    target = draw(st.sampled_from(["sla", "sla", "throughput", "latency"]))
    p_gpus, d_gpus = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    min_endpoint = draw(st.integers(1, 3))
    overrides: dict[str, Any] = {
        "mode": mode,
        "optimization_target": target,
        "prefill_engine_num_gpu": p_gpus,
        "decode_engine_num_gpu": d_gpus,
        "min_endpoint": min_endpoint,
        "engine_startup_time": draw(st.sampled_from([0.0, 60.0, 120.0])),
        "forecast_headroom_quantile": draw(st.sampled_from([0.0, 0.9])),
        "load_scale_down_patience": draw(st.integers(1, 3)),
    }
    if target == "sla":
        overrides["enable_load_scaling"] = draw(st.booleans())
    if mode in ("disagg", "prefill") and draw(st.booleans()):
        overrides["prefill_min_endpoint"] = draw(st.integers(1, 3))
    if mode in ("disagg", "decode") and draw(st.booleans()):
        overrides["decode_min_endpoint"] = draw(st.integers(1, 3))
    probe = PlannerConfig.from_sources(None, env={}, overrides=overrides)
    floor = probe.min_footprint_gpus()
    budget = draw(st.sampled_from([-1, floor, floor + 1, floor + 7, 64]))
    overrides["max_gpu_budget"] = budget
    if draw(st.booleans()):
        top = budget if budget >= 0 else floor + 10
        overrides["min_gpu_budget"] = draw(st.integers(0, top))
    return PlannerConfig.from_sources(None, env={}, overrides=overrides)


def engine_view(draw: st.DrawFn, pools: tuple[Pool, ...], current: dict[Pool, int], now: float) -> EngineView | None:
    if draw(st.integers(0, 4)) == 0:
        return None
    names: list[str] = []
    roles: list[str] = []
    for pool in pools:
        for k in range(current.get(pool, 0) + draw(st.integers(-1, 1))):
            names.append(f"{pool.value}-{k}")
            roles.append(pool.value)
    n = len(names)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))

    def col(scale: float) -> np.ndarray:
        return rng.uniform(0, scale, n) * (rng.uniform(0, 1, n) < 0.7)

    return EngineView(
        role=role_codes(roles),
        worker=np.arange(n, dtype=np.int64),
        active=np.ones(n, dtype=bool),
        last_seen_s=np.full(n, now),
        wall_time=rng.uniform(0.005, 0.5, n),
        s_prefill_tokens=col(8192),
        s_decode_requests=col(64),
        s_decode_kv=col(200_000),
        q_prefill_tokens=col(100_000),
        q_decode_requests=col(8),
        q_decode_kv=col(100_000),
        names=np.array(names, dtype=object),
    )


@st.composite
def tick_inputs(draw: st.DrawFn, pools: tuple[Pool, ...], now: float) -> TickInput:
    known = draw(st.integers(0, 5)) > 0
    current = {p: draw(st.integers(0, 12)) for p in pools} if known else None
    traffic = None
    if draw(st.integers(0, 4)) > 0:
        num = draw(st.sampled_from([0.0, 5.0, 50.0, 500.0, 5000.0]))
        traffic = ObservedTraffic(
            num_req=num,
            isl=draw(st.sampled_from([100.0, 3000.0, 20000.0])) if num else None,
            osl=draw(st.sampled_from([10.0, 200.0])) if num else None,
            ttft_ms=draw(st.sampled_from([None, 100.0, 5000.0])),
            itl_ms=draw(st.sampled_from([None, 10.0, 60.0])),
        )
    ready = None if current is None else {p: max(0, n - draw(st.integers(0, 2))) for p, n in current.items()}
    view = engine_view(draw, pools, current or {}, now)
    in_progress = None if ready is None or current is None else {p: ready[p] != current[p] for p in pools}
    return TickInput(
        now_s=now,
        traffic=traffic,
        current=current,
        scaling_in_progress=bool(in_progress and any(in_progress.values())),
        pools_in_progress=in_progress,
        backlog_prefill_tokens=draw(st.sampled_from([None, 0.0, 1e5, 1e7])),
        engines=view,
        ready=ready,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=configs(), data=st.data())
def test_decisions_respect_budget_minimums_and_unknowns(cfg: PlannerConfig, data: st.DataObject) -> None:
    forecaster = predictors_from_config(cfg) if cfg.enable_throughput_scaling else None
    core = PlannerCore(cfg, forecaster, MODELS.prefill, MODELS.decode, CAPS)
    pools = pools_for_mode(cfg.mode)
    limits = core.settings.limits
    kinds = list(core.intervals())
    now = 0.0
    for _ in range(data.draw(st.integers(1, 12))):
        now += 10.0
        kind = data.draw(st.sampled_from(kinds))
        inp = data.draw(tick_inputs(pools, now))
        decision = core.step(ScheduledTick(kind, now), inp)
        if inp.current is None:
            assert decision.targets is None, (kind, decision.reason)
            continue
        if inp.traffic is None if kind is TickKind.THROUGHPUT else inp.engines is None:
            if decision.targets is not None:
                assert decision.targets == constrain(inp.current, limits, inp.current).targets
            continue
        if decision.targets is None:
            continue
        targets = decision.targets
        assert set(targets) == set(pools)
        for pool, n in targets.items():
            assert n >= limits.min_replicas[pool]
        if limits.max_gpus is not None:
            assert limits.gpus(targets) <= limits.max_gpus
        for pool, names in decision.drain.items():
            assert inp.current is not None
            assert len(names) <= inp.current[pool] - targets[pool]
            assert all(str(name).startswith(pool.value + "-") for name in names)
