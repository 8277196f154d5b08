"""Throughput-based planning: the formulas pinned with worked examples.

The fake models are linear so every number can be checked by hand:
prefill TTFT(isl) = 0.1 ms/token * isl, prefill capacity 10,000 tokens/s/GPU at any ISL;
decode best throughput/GPU at ITL target t = 100 * t tokens/s (meets the target when t >= 10 ms),
decode ITL at concurrency c = 10 + c ms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from sla_planner.core.throughput import (
    ThroughputSettings,
    plan_throughput,
)
from sla_planner.types import (
    BudgetAction,
    CorrectionStatus,
    ObservedTraffic,
    Pool,
    ThroughputReason,
    TrafficForecast,
)


class FakePrefill:
    def ttft_ms(self, isl: float) -> float:
        return 0.1 * isl

    def thpt_per_gpu(self, isl: float) -> float:
        return 10_000.0


@dataclass(frozen=True)
class Point:
    thpt_per_gpu: float
    kv_usage: float
    itl_ms: float
    meets_target: bool


class FakeDecode:
    def best_throughput_per_gpu(self, itl_target_ms: float, context_length: float) -> Point:
        if itl_target_ms >= 10.0:
            return Point(100.0 * itl_target_ms, 0.5, itl_target_ms, True)
        return Point(1_000.0, 0.0, 10.0, False)  # lowest-ITL point

    def itl_at_concurrency(self, concurrency_per_engine: float, context_length: float) -> float:
        return 10.0 + concurrency_per_engine


PREFILL, DECODE = FakePrefill(), FakeDecode()


def plan(forecast: TrafficForecast, observed: ObservedTraffic | None = None, decode_replicas: int | None = None, **kw: object):  # type: ignore[no-untyped-def]
    return plan_throughput(
        forecast, ThroughputSettings(**kw), PREFILL, DECODE, observed, decode_replicas  # type: ignore[arg-type]
    )


def test_worked_example_disagg_uncorrected() -> None:
    # prefill: 600 req * 3000 tok / 60 s = 30,000 tok/s; / 10,000 tok/s/GPU / 1 GPU = 3.0 -> 3
    # decode:  600 req * 150 tok / 60 s = 1,500 tok/s; capacity at ITL 30 ms = 3,000 -> 0.5 -> 1
    p = plan(TrafficForecast(600, 3000, 150, 60))
    assert p.replicas == {Pool.PREFILL: 3, Pool.DECODE: 1}
    pre = p.proposals[Pool.PREFILL]
    assert pre.demand_tokens_per_s["prefill"] == pytest.approx(30_000)
    assert pre.raw_replicas == pytest.approx(3.0)
    assert pre.reason is ThroughputReason.SIZED_FROM_FORECAST
    dec = p.proposals[Pool.DECODE]
    assert dec.demand_tokens_per_s["decode"] == pytest.approx(1_500)
    assert dec.capacity_tokens_per_s_per_gpu["decode"] == pytest.approx(3_000)
    assert dec.context_length == pytest.approx(3000 + 75)
    assert dec.raw_replicas == pytest.approx(0.5)
    assert p.budget is not None and p.budget.action is BudgetAction.WITHIN_BUDGET
    # no observations: correction was wanted but inputs are missing
    assert p.corrections[Pool.PREFILL].status is CorrectionStatus.MISSING_INPUT


@pytest.mark.parametrize(
    "observed_ttft_ms,cf,expected_prefill",
    [
        # expected TTFT at ISL 3000 = 300 ms. cf_p = 150/300 = 0.5: 30,000 * 0.5 / 10,000 = 1.5 -> 2
        (150.0, 0.5, 2),
        # cf_p = 600/300 = 2.0 is capped at 1: 30,000 / 10,000 = 3
        (600.0, 2.0, 3),
        # cf_p exactly 1
        (300.0, 1.0, 3),
    ],
    ids=["faster_than_profile", "slower_capped", "exact"],
)
def test_prefill_correction(observed_ttft_ms: float, cf: float, expected_prefill: int) -> None:
    obs = ObservedTraffic(ttft_ms=observed_ttft_ms, isl=3000)
    p = plan(TrafficForecast(600, 3000, 150, 60), obs)
    assert p.corrections[Pool.PREFILL].factor == pytest.approx(cf)
    assert p.corrections[Pool.PREFILL].expected_ms == pytest.approx(300.0)
    assert p.replicas is not None and p.replicas[Pool.PREFILL] == expected_prefill


@pytest.mark.parametrize(
    "observed_itl_ms,cf,expected_decode",
    [
        # concurrency = 6000 req * 3 s / 60 s / 5 engines = 60 -> expected ITL 70 ms.
        # cf_d = 70/70 = 1: target 30 ms -> 3,000 tok/s/GPU; demand 6000*150/60 = 15,000 -> 5
        (70.0, 1.0, 5),
        # cf_d = 140/70 = 2: target 15 ms -> 1,500 tok/s/GPU -> 15,000 / 1,500 = 10
        (140.0, 2.0, 10),
        # cf_d = 35/70 = 0.5: target 60 ms -> 6,000 tok/s/GPU -> 2.5 -> 3
        (35.0, 0.5, 3),
    ],
    ids=["exact", "slower", "faster"],
)
def test_decode_correction(observed_itl_ms: float, cf: float, expected_decode: int) -> None:
    obs = ObservedTraffic(num_req=6000, isl=3000, osl=150, itl_ms=observed_itl_ms, request_duration_s=3.0)
    p = plan(TrafficForecast(6000, 3000, 150, 60), obs, decode_replicas=5)
    c = p.corrections[Pool.DECODE]
    assert c.status is CorrectionStatus.APPLIED
    assert c.expected_ms == pytest.approx(70.0)
    assert c.factor == pytest.approx(cf)
    assert p.proposals[Pool.DECODE].itl_target_ms == pytest.approx(30.0 / cf)
    assert p.replicas is not None and p.replicas[Pool.DECODE] == expected_decode


@pytest.mark.parametrize(
    "settings_kw,status",
    [
        ({"correction": CorrectionStatus.DISABLED}, CorrectionStatus.DISABLED),
        ({"correction": CorrectionStatus.LOAD_SCALING_ON}, CorrectionStatus.LOAD_SCALING_ON),
    ],
    ids=["no_correction", "load_scaling_on"],
)
def test_correction_skipped(settings_kw: dict[str, object], status: CorrectionStatus) -> None:
    obs = ObservedTraffic(num_req=6000, isl=3000, osl=150, itl_ms=140.0, ttft_ms=150.0, request_duration_s=3.0)
    p = plan(TrafficForecast(6000, 3000, 150, 60), obs, decode_replicas=5, **settings_kw)
    assert p.corrections[Pool.PREFILL].status is status
    assert p.corrections[Pool.DECODE].status is status
    # uncorrected: prefill 6000*3000/60/10,000 = 30; decode 15,000/3,000 = 5
    assert p.replicas == {Pool.PREFILL: 30, Pool.DECODE: 5}


@pytest.mark.parametrize(
    "observed",
    [
        ObservedTraffic(num_req=6000, isl=3000, osl=150, itl_ms=0.0, request_duration_s=3.0),
        ObservedTraffic(num_req=6000, isl=3000, osl=150, itl_ms=float("nan"), request_duration_s=3.0),
        ObservedTraffic(num_req=6000, isl=3000, osl=150, itl_ms=70.0, request_duration_s=None),
        ObservedTraffic(num_req=0, isl=3000, osl=150, itl_ms=70.0, request_duration_s=3.0),
    ],
    ids=["zero_itl", "nan_itl", "missing_duration", "zero_requests"],
)
def test_decode_correction_missing_inputs_use_uncorrected_target(observed: ObservedTraffic) -> None:
    p = plan(TrafficForecast(6000, 3000, 150, 60), observed, decode_replicas=5)
    assert p.corrections[Pool.DECODE].factor is None
    assert p.proposals[Pool.DECODE].itl_target_ms == pytest.approx(30.0)
    assert p.replicas is not None and p.replicas[Pool.DECODE] == 5


def test_decode_correction_needs_current_replicas() -> None:
    obs = ObservedTraffic(num_req=6000, isl=3000, osl=150, itl_ms=140.0, request_duration_s=3.0)
    p = plan(TrafficForecast(6000, 3000, 150, 60), obs, decode_replicas=None)
    assert p.corrections[Pool.DECODE].status is CorrectionStatus.MISSING_INPUT


def test_idle_forecast_gives_min_endpoint() -> None:
    p = plan(TrafficForecast(0, 3000, 150, 60), min_endpoint=2)
    assert p.replicas == {Pool.PREFILL: 2, Pool.DECODE: 2}
    assert all(x.reason is ThroughputReason.IDLE_FORECAST for x in p.proposals.values())


def test_min_endpoint_floor_reason() -> None:
    # prefill raw = 60*3000/60/10,000 = 0.3 -> 1 < min_endpoint 3
    p = plan(TrafficForecast(60, 3000, 150, 60), min_endpoint=3)
    assert p.replicas is not None and p.replicas[Pool.PREFILL] == 3
    assert p.proposals[Pool.PREFILL].reason is ThroughputReason.MIN_ENDPOINT_FLOOR


@pytest.mark.parametrize(
    "forecast",
    [
        TrafficForecast(float("nan"), 3000, 150, 60),
        TrafficForecast(-1, 3000, 150, 60),
        TrafficForecast(600, float("inf"), 150, 60),
        TrafficForecast(600, 3000, 150, 0),
    ],
    ids=["nan_requests", "negative_requests", "inf_isl", "zero_interval"],
)
def test_untrustworthy_forecast_holds(forecast: TrafficForecast) -> None:
    p = plan(forecast)
    assert p.replicas is None
    assert {x.reason for x in p.proposals.values()} == {ThroughputReason.UNKNOWN_TRAFFIC}
    assert p.to_dict()["prefill_replicas"] is None


def test_itl_target_unreachable() -> None:
    # target 5 ms < 10 ms: lowest-ITL point, 1,000 tok/s/GPU; demand 1,500 -> 2 replicas
    p = plan(TrafficForecast(600, 3000, 150, 60), itl_ms=5.0)
    d = p.proposals[Pool.DECODE]
    assert d.reason is ThroughputReason.ITL_TARGET_UNREACHABLE
    assert p.replicas is not None and p.replicas[Pool.DECODE] == 2


def test_multi_gpu_engines() -> None:
    # prefill 30,000 / 10,000 / 2 GPUs = 1.5 -> 2; decode 15,000 / 3,000 / 4 GPUs = 1.25 -> 2
    p = plan(TrafficForecast(6000, 300, 150, 60), prefill_engine_num_gpu=2, decode_engine_num_gpu=4)
    assert p.replicas == {Pool.PREFILL: 2, Pool.DECODE: 2}


def test_budget_applied_after_sizing() -> None:
    # uncapped: prefill 30, decode 5 (35 GPUs) > 20: prefill floor(30*20/35)=17, decode 3
    p = plan(TrafficForecast(6000, 3000, 150, 60), max_gpu_budget=20)
    assert p.replicas == {Pool.PREFILL: 17, Pool.DECODE: 3}
    assert p.budget is not None and p.budget.action is BudgetAction.SCALED_DOWN_TO_BUDGET
    assert "budget:scaled_down_to_budget" in p.reasons


def test_agg_mode_time_shares_an_engine() -> None:
    # prefill share 30,000/10,000 = 3.0; decode share 15,000/3,000 = 5.0 -> 8 aggregated engines
    p = plan(TrafficForecast(6000, 300, 150, 60), mode="agg")
    p2 = plan(TrafficForecast(6000, 3000, 150, 60), mode="agg")
    assert p.replicas == {Pool.AGG: math.ceil(6000 * 300 / 60 / 10_000 + 5.0)}
    assert p2.replicas == {Pool.AGG: 35}
    d = p2.to_dict()
    assert d["prefill_replicas"] is None and d["decode_replicas"] is None and d["agg_replicas"] == 35


@pytest.mark.parametrize("mode,pool", [("prefill", Pool.PREFILL), ("decode", Pool.DECODE)])
def test_single_pool_modes(mode: str, pool: Pool) -> None:
    p = plan(TrafficForecast(6000, 3000, 150, 60), mode=mode, max_gpu_budget=8)
    assert p.replicas is not None and set(p.replicas) == {pool}
    assert p.replicas[pool] <= 8


def test_missing_model_is_an_error() -> None:
    with pytest.raises(ValueError, match="prefill performance model"):
        plan_throughput(TrafficForecast(1, 1, 1, 60), ThroughputSettings(), None, DECODE)


def test_ceil_ignores_float_noise() -> None:
    # float noise must not add a replica: 600.0000000000001 req -> raw 3.0000000000000004 -> 3
    p = plan(TrafficForecast(0.1 * 3 * 2000, 3000, 150, 60))
    assert p.replicas is not None and p.replicas[Pool.PREFILL] == 3


def test_queue_aware_prefill_adds_headroom_for_ttft() -> None:
    # Formula: 600 req * 3000 / 60 s / 10,000 tok/s = 3.0 engines (100% busy). As an M/M/4 queue:
    # lam 10/s, service 0.3 s (0.1 ms/token * 3000), a = 3: 3 engines are saturated (a = c) and 4
    # give P(wait > 2.0 - 0.3 s) = C(4, 3) * exp(-(4/0.3 - 10) * 1.7) ~= 0.509 * 0.0035 <= 0.05.
    p = plan(TrafficForecast(600, 3000, 150, 60), ttft_attainment=0.95, ttft_ms=2000.0)
    prop = p.proposals[Pool.PREFILL]
    assert p.replicas is not None and p.replicas[Pool.PREFILL] == 4
    assert prop.reason is ThroughputReason.SIZED_FOR_TTFT_QUEUEING
    assert prop.queueing["service_mean_s"] == pytest.approx(0.3)
    assert prop.queueing["engines"] == 4
    # off: the formula alone
    off = plan(TrafficForecast(600, 3000, 150, 60), ttft_attainment=0.0)
    assert off.replicas is not None and off.replicas[Pool.PREFILL] == 3


def test_backlog_is_cleared_within_the_interval() -> None:
    # 600 req * 3000 + 1,200,000 queued tokens = 3,000,000 tokens / 60 s / 10,000 = 5 engines;
    # decode also serves the 400 backlogged requests: (600 + 400) * 150 / 60 / 3,000 = 0.83 -> 1
    p = plan(TrafficForecast(600, 3000, 150, 60, backlog_prefill_tokens=1_200_000))
    assert p.replicas == {Pool.PREFILL: 5, Pool.DECODE: 1}
    assert p.proposals[Pool.DECODE].demand_tokens_per_s["decode"] == pytest.approx(2500.0)


def test_decode_sized_for_batch_variance() -> None:
    # ITL 30 ms point: 3,000 tok/s/GPU -> a batch of 3,000 * 0.030 = 90 sequences per engine.
    # 6000 req * 150 / 60 = 15,000 tok/s -> 15,000 * 0.030 = 450 sequences in decode (Little).
    # Formula: 5 engines, each at mean batch 90 = its limit, so P(batch > 90) = 0.47. Poisson
    # tails: 6 engines (mean 75) -> P(> 90) = 0.042 <= 0.05.
    p = plan(TrafficForecast(6000, 3000, 150, 60), itl_attainment=0.95)
    d = p.proposals[Pool.DECODE]
    assert d.queueing["batch_limit"] == pytest.approx(90.0)
    assert d.queueing["concurrency"] == pytest.approx(450.0)
    assert p.replicas is not None and p.replicas[Pool.DECODE] == 6
    assert d.reason is ThroughputReason.SIZED_FOR_ITL_VARIANCE
