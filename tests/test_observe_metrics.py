"""The planner's Prometheus metrics: every family from hand-built tick records (samples read from
an injected registry), the top-K rule for per-engine series, and a replay driving them."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from sla_planner.connectors.base import ApplyResult, ApplyStatus, DeploymentState, PoolState
from sla_planner.core.load import ROLE_CODES, EngineView
from sla_planner.core.planner import Decision, ScheduledTick, TickInput
from sla_planner.observe.engine_stats import TopKCache, engine_stats, engine_stats_reference
from sla_planner.observe.metrics import LEGACY_NAMES, MetricsSettings, PlannerMetrics
from sla_planner.ticks import TickRecord
from sla_planner.types import DecisionReason, ObservedTraffic, Pool, TickKind, TrafficForecast

from observe_helpers import planner_config, replay

P, D = Pool.PREFILL, Pool.DECODE
SETTINGS = MetricsSettings(
    pools=(P, D),
    intervals_s={TickKind.THROUGHPUT: 60.0, TickKind.LOAD: 10.0},
    ttft_ms=2000.0,
    itl_ms=30.0,
    gpus_per_engine={P: 2, D: 1},
    top_engines=2,
)


def make_metrics(**changes: Any) -> PlannerMetrics:
    return PlannerMetrics(replace(SETTINGS, **changes), CollectorRegistry())


def value(m: PlannerMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def deployment(p: int = 2, d: int = 3, ready_p: int | None = None, ready_d: int | None = None) -> DeploymentState:
    return DeploymentState({P: PoolState(p, p if ready_p is None else ready_p),
                            D: PoolState(d, d if ready_d is None else ready_d)})


def record(
    kind: TickKind = TickKind.THROUGHPUT,
    now_s: float = 100.0,
    reason: DecisionReason = DecisionReason.NO_CHANGE,
    targets: dict[Pool, int] | None = None,
    traffic: ObservedTraffic | None = None,
    dep: DeploymentState | None = None,
    detail: dict[str, Any] | None = None,
    pool_reasons: dict[Pool, str] | None = None,
    forecast: TrafficForecast | None = None,
    apply: ApplyResult | None = None,
    input_errors: dict[str, str] | None = None,
    view: EngineView | None = None,
    snapshot: dict[str, Any] | None = None,
    lag_s: float = 0.0,
    timings_s: dict[str, float] | None = None,
) -> TickRecord:
    decision = Decision(now_s, kind, targets, reason, pool_reasons or {}, forecast, detail or {})
    tick_input = TickInput(now_s=now_s, traffic=traffic, current=None if dep is None else dep.current(),
                           engines=view)
    return TickRecord(ScheduledTick(kind, now_s), tick_input, decision, dep, apply, lag_s,
                      timings_s or {}, input_errors or {}, snapshot)


def fleet(rows: list[tuple[str, str, int, bool, float, float, float]]) -> tuple[EngineView, dict[str, Any]]:
    """Rows of (role, worker_id, dp_rank, active, queued prefill, queued decode KV, in-flight KV)."""
    n = len(rows)
    col = lambda j: np.array([r[j] for r in rows], dtype=np.float64)  # noqa: E731
    role = np.array([ROLE_CODES.get(r[0], -1) for r in rows], dtype=np.int8)
    active = np.array([r[3] for r in rows], dtype=bool)
    z = np.zeros(n)
    view = EngineView(role=role, worker=np.arange(n, dtype=np.int64), active=active,
                      last_seen_s=z, wall_time=z, s_prefill_tokens=z, s_decode_requests=z,
                      s_decode_kv=col(6), q_prefill_tokens=col(4), q_decode_requests=z, q_decode_kv=col(5))
    snapshot = {"worker_id": np.array([r[1] for r in rows], dtype=object),
                "dp_rank": np.array([r[2] for r in rows], dtype=np.int64)}
    return view, snapshot


def engine_series(m: PlannerMetrics) -> dict[tuple[str, str, str], tuple[float, float, float]]:
    return {labels: values for labels, values in m.f.engine_series.rows()}


# -- deployment, traffic, targets -----------------------------------------------------------------


def test_deployment_counts_gpus_and_legacy_ready_counts() -> None:
    m = make_metrics()
    m.on_tick(record(dep=deployment(p=3, d=4, ready_p=2, ready_d=4), now_s=0.0))
    assert value(m, "dynamo_planner_replicas", pool="prefill") == 3
    assert value(m, "dynamo_planner_ready_replicas", pool="prefill") == 2
    assert value(m, "dynamo_planner_gpus", pool="prefill") == 6  # 3 engines x 2 GPUs
    assert value(m, "dynamo_planner_gpus", pool="decode") == 4
    assert value(m, "dynamo_planner_num_prefill_replicas") == 2  # the original counts ready engines
    assert value(m, "dynamo_planner_num_decode_replicas") == 4
    # GPUs held since the last tick accumulate: 10 GPUs for 360 s = 1 GPU-hour
    m.on_tick(record(dep=deployment(p=1, d=1), now_s=360.0))
    assert value(m, "dynamo_planner_gpu_seconds_total") == pytest.approx(3600.0)
    assert value(m, "dynamo_planner_gpu_hours") == pytest.approx(1.0)
    # a failed deployment read holds the last count (3 GPUs) instead of dropping to zero
    m.on_tick(record(dep=None, now_s=720.0))
    m.on_tick(record(dep=None, now_s=1080.0))
    assert value(m, "dynamo_planner_gpu_seconds_total") == pytest.approx(3600.0 + 2 * 360.0 * 3)
    # time going backwards adds nothing
    m.on_tick(record(dep=deployment(), now_s=500.0))
    assert value(m, "dynamo_planner_gpu_seconds_total") == pytest.approx(3600.0 + 2 * 360.0 * 3)


def test_agg_pool_fills_the_original_decode_gauges() -> None:
    m = make_metrics(pools=(Pool.AGG,), gpus_per_engine={Pool.AGG: 4})
    dep = DeploymentState({Pool.AGG: PoolState(5, 3)})
    m.on_tick(record(dep=dep, targets={Pool.AGG: 6}))
    assert value(m, "dynamo_planner_num_decode_replicas") == 3
    assert value(m, "dynamo_planner_predicted_num_decode_replicas") == 6
    assert value(m, "dynamo_planner_recommended_replicas", pool="agg") == 6
    assert value(m, "dynamo_planner_gpus", pool="agg") == 20


@pytest.mark.parametrize(
    ("traffic", "expected"),
    [
        pytest.param(
            ObservedTraffic(num_req=120.0, isl=3000.0, osl=150.0, ttft_ms=250.0, itl_ms=12.5, request_duration_s=4.0),
            {"dynamo_planner_observed_requests_per_second": 2.0, "dynamo_planner_observed_ttft_seconds": 0.25,
             "dynamo_planner_observed_ttft_ms": 250.0, "dynamo_planner_observed_itl_seconds": 0.0125,
             "dynamo_planner_observed_itl_ms": 12.5, "dynamo_planner_observed_input_sequence_tokens": 3000.0,
             "dynamo_planner_observed_output_sequence_tokens": 150.0,
             "dynamo_planner_observed_request_duration_seconds": 4.0},
            id="full-window",
        ),
        pytest.param(
            ObservedTraffic(num_req=0.0),
            {"dynamo_planner_observed_requests_per_second": 0.0, "dynamo_planner_observed_ttft_seconds": 0.5,
             "dynamo_planner_observed_input_sequence_tokens": 1000.0},
            id="idle-window-means-unknown-kept",
        ),
        pytest.param(
            None,
            {"dynamo_planner_observed_requests_per_second": 1.0, "dynamo_planner_observed_ttft_seconds": 0.5},
            id="unknown-traffic-changes-nothing",
        ),
        pytest.param(
            ObservedTraffic(num_req=60.0, ttft_ms=math.nan, isl=math.inf),
            {"dynamo_planner_observed_requests_per_second": 1.0, "dynamo_planner_observed_ttft_seconds": 0.5,
             "dynamo_planner_observed_input_sequence_tokens": 1000.0},
            id="non-finite-means-ignored",
        ),
    ],
)
def test_observed_traffic(traffic: ObservedTraffic | None, expected: dict[str, float]) -> None:
    m = make_metrics()
    m.on_tick(record(traffic=ObservedTraffic(num_req=60.0, isl=1000.0, ttft_ms=500.0)))
    m.on_tick(record(traffic=traffic, now_s=160.0))
    for name, want in expected.items():
        assert value(m, name) == pytest.approx(want), name


def test_load_tick_rate_uses_the_load_window() -> None:
    m = make_metrics()
    m.on_tick(record(kind=TickKind.LOAD, traffic=ObservedTraffic(num_req=30.0)))
    assert value(m, "dynamo_planner_observed_requests_per_second") == 3.0


def test_forecast_targets_and_throughput_detail() -> None:
    m = make_metrics()
    detail = {
        "prefill_replicas": 4, "decode_replicas": 2, "agg_replicas": None,
        "forecast": {"isl": 2000.0, "osl": 100.0},
        "proposals": {
            "prefill": {"capacity_tokens_per_s_per_gpu": {"prefill": 10_000.0}, "engine_num_gpu": 2},
            "decode": {"capacity_tokens_per_s_per_gpu": {"decode": 500.0}, "engine_num_gpu": 1},
        },
        "corrections": {"prefill": {"factor": 1.25, "status": "applied"},
                        "decode": {"factor": None, "status": "load_scaling_on"}},
    }
    m.on_tick(record(targets={P: 5, D: 2}, reason=DecisionReason.SCALE_UP, detail=detail,
                     forecast=TrafficForecast(num_req=300.0, isl=2000.0, osl=100.0, interval_s=60.0),
                     pool_reasons={P: "sized_for_ttft_queueing", D: "sized_from_forecast"}))
    assert value(m, "dynamo_planner_predicted_requests_per_second") == 5.0
    assert value(m, "dynamo_planner_predicted_input_sequence_tokens") == 2000.0
    assert value(m, "dynamo_planner_predicted_num_prefill_replicas") == 5
    assert value(m, "dynamo_planner_recommended_replicas", pool="decode") == 2
    assert value(m, "dynamo_planner_planned_replicas", pool="prefill") == 4
    assert value(m, "dynamo_planner_correction_factor", pool="prefill") == 1.25
    assert math.isnan(value(m, "dynamo_planner_correction_factor", pool="decode") or 0.0)
    # one prefill engine: 10,000 tokens/s/GPU x 2 GPUs / 2,000 tokens per request
    assert value(m, "dynamo_planner_engine_prefill_capacity_requests_per_second") == 10.0
    assert value(m, "dynamo_planner_engine_decode_capacity_requests_per_second") == 5.0
    assert value(m, "dynamo_planner_throughput_scaling_decision",
                 dynamo_planner_throughput_scaling_decision="scale_up") == 1
    assert value(m, "dynamo_planner_pool_scaling_decision", loop="throughput", pool="prefill",
                 dynamo_planner_pool_scaling_decision="sized_for_ttft_queueing") == 1


def test_load_detail_estimates() -> None:
    m = make_metrics()
    detail = {"pools": {"prefill": {"estimate_max": 2500.0, "sla": 2000.0},
                        "decode": {"estimate_max": math.inf, "sla": 30.0},
                        "agg": {"reason": "no_fpm_data"}}}
    m.on_tick(record(kind=TickKind.LOAD, detail=detail, pool_reasons={P: "scale_up", D: "my_policy_reason"}))
    assert value(m, "dynamo_planner_estimated_ttft_seconds", pool="prefill") == 2.5
    assert value(m, "dynamo_planner_estimated_ttft_ms") == 2500.0
    assert value(m, "dynamo_planner_estimated_sla_ratio", pool="prefill") == 1.25
    assert value(m, "dynamo_planner_estimated_itl_seconds", pool="decode") == math.inf  # blocked queue
    assert value(m, "dynamo_planner_pool_scaling_decision", loop="load", pool="decode",
                 dynamo_planner_pool_scaling_decision="other") == 1


@pytest.mark.parametrize(
    ("intervals", "load_state", "throughput_state"),
    [
        ({TickKind.THROUGHPUT: 60.0}, "disabled", "unset"),
        ({TickKind.LOAD: 10.0}, "unset", "disabled"),
        ({TickKind.THROUGHPUT: 60.0, TickKind.LOAD: 10.0}, "unset", "unset"),
    ],
)
def test_decision_enums_start_unset_or_disabled(intervals: dict[TickKind, float], load_state: str,
                                                throughput_state: str) -> None:
    m = make_metrics(intervals_s=intervals)
    assert value(m, "dynamo_planner_load_scaling_decision", dynamo_planner_load_scaling_decision=load_state) == 1
    assert value(m, "dynamo_planner_throughput_scaling_decision",
                 dynamo_planner_throughput_scaling_decision=throughput_state) == 1


# -- loop health ------------------------------------------------------------------------------------


def test_loop_health_counters() -> None:
    m = make_metrics()
    for kind in ("prometheus", "fpm", "connector"):
        assert value(m, "dynamo_planner_input_failures_total", kind=kind) == 0  # exist from the start
    assert value(m, "dynamo_planner_decisions_total", loop="load", reason="scale_up") == 0
    m.on_tick(record(kind=TickKind.LOAD, reason=DecisionReason.UNKNOWN_WORKERS, lag_s=0.25,
                     input_errors={"connector": "timeout", "fpm": "lock"},
                     timings_s={"observe": 0.002, "decide": 0.0004, "apply": 0.3}))
    m.on_tick(record(kind=TickKind.LOAD, now_s=110.0, reason=DecisionReason.SCALE_UP, targets={P: 3},
                     apply=ApplyResult(ApplyStatus.FAILED, "403 forbidden")))
    m.on_tick(record(kind=TickKind.THROUGHPUT, now_s=160.0, input_errors={"prometheus": "refused"}))
    assert value(m, "dynamo_planner_ticks_total", loop="load") == 2
    assert value(m, "dynamo_planner_input_failures_total", kind="connector") == 1
    assert value(m, "dynamo_planner_input_failures_total", kind="prometheus") == 1
    assert value(m, "dynamo_planner_decisions_total", loop="load", reason="unknown_workers") == 1
    assert value(m, "dynamo_planner_applies_total", status="failed") == 1
    assert value(m, "dynamo_planner_applies_total", status="applied") == 0
    assert value(m, "dynamo_planner_tick_lag_seconds", loop="load") == 0.0  # the last tick's lag
    assert value(m, "dynamo_planner_last_tick_timestamp_seconds", loop="throughput") == 160.0
    assert value(m, "dynamo_planner_tick_duration_seconds_count", phase="apply") == 1
    assert value(m, "dynamo_planner_tick_duration_seconds_bucket", phase="apply", le="0.25") == 0
    assert value(m, "dynamo_planner_tick_duration_seconds_bucket", phase="apply", le="0.5") == 1
    assert value(m, "dynamo_planner_sla_itl_seconds") == 0.03


@pytest.mark.parametrize(("legacy", "present"), [(True, True), (False, False)])
def test_legacy_names_follow_the_setting(legacy: bool, present: bool) -> None:
    m = make_metrics(legacy_names=legacy)
    names = {family.name for family in m.registry.collect()}
    for legacy_name in LEGACY_NAMES:
        assert (legacy_name in names) is present
    assert "dynamo_planner_gpu_seconds" in names  # the conventional twin is always there


# -- engines and the top-K rule ----------------------------------------------------------------------


def test_top_k_per_pool_ties_by_table_order_and_departures_removed() -> None:
    m = make_metrics(top_engines=2)
    view, snap = fleet([
        ("prefill", "p0", 0, True, 100.0, 0.0, 0.0),
        ("prefill", "p0", 1, True, 300.0, 0.0, 0.0),
        ("prefill", "p1", 0, True, 100.0, 0.0, 0.0),   # ties with p0:0; p0:0 is earlier
        ("prefill", "p2", 0, False, 9e9, 0.0, 0.0),    # stale: never exported
        ("decode", "d0", 0, True, 0.0, 10.0, 500.0),
        ("mystery", "x0", 0, True, 9e9, 0.0, 0.0),     # no pool: counted, never exported
    ])
    m.on_tick(record(kind=TickKind.LOAD, view=view, snapshot=snap))
    assert engine_series(m) == {
        ("prefill", "p0", "1"): (300.0, 0.0, 0.0),
        ("prefill", "p0", "0"): (100.0, 0.0, 0.0),
        ("decode", "d0", "0"): (0.0, 10.0, 500.0),
    }
    assert value(m, "dynamo_planner_engine_inflight_decode_kv_tokens", pool="decode", worker_id="d0", dp_rank="0") == 500.0
    assert value(m, "dynamo_planner_engines_tracked", role="prefill") == 4
    assert value(m, "dynamo_planner_engines_stale", role="prefill") == 1
    assert value(m, "dynamo_planner_engines_tracked", role="unknown") == 1
    assert value(m, "dynamo_planner_pool_queued_prefill_tokens", pool="prefill") == 500.0  # active only
    # d0 leaves the table, p1 heats up: their series follow at once
    view, snap = fleet([
        ("prefill", "p0", 0, True, 100.0, 0.0, 0.0),
        ("prefill", "p0", 1, True, 300.0, 0.0, 0.0),
        ("prefill", "p1", 0, True, 101.0, 0.0, 0.0),
    ])
    m.on_tick(record(kind=TickKind.LOAD, now_s=110.0, view=view, snapshot=snap))
    assert set(engine_series(m)) == {("prefill", "p0", "1"), ("prefill", "p1", "0")}
    assert value(m, "dynamo_planner_engine_queued_prefill_tokens", pool="decode", worker_id="d0", dp_rank="0") is None
    assert value(m, "dynamo_planner_engines_tracked", role="decode") == 0


@pytest.mark.parametrize(("k", "exported"), [(0, 0), (1, 2), (3, 6), (4, 6)])
def test_top_k_bounds_series(k: int, exported: int) -> None:
    m = make_metrics(top_engines=k)
    rows = [("prefill", f"p{i}", 0, True, float(i), 0.0, 0.0) for i in range(3)]
    rows += [("decode", f"d{i}", 0, True, 0.0, 0.0, float(i)) for i in range(3)]
    view, snap = fleet(rows)
    m.on_tick(record(kind=TickKind.LOAD, view=view, snapshot=snap))
    assert len(engine_series(m)) == exported


def test_engines_without_ids_keep_aggregates_only() -> None:
    m = make_metrics()
    view, _ = fleet([("decode", "d0", 0, True, 0.0, 7.0, 1.0)])
    m.on_tick(record(kind=TickKind.LOAD, view=view, snapshot=None))
    assert value(m, "dynamo_planner_pool_queued_decode_kv_tokens", pool="decode") == 7.0
    assert engine_series(m) == {}


_ROW = st.tuples(
    st.sampled_from(["prefill", "decode", "agg", "unknown"]),
    st.booleans(),
    st.sampled_from([0.0, 1.0, 5.0, 1e6]) | st.floats(0, 1e7, allow_nan=False),
    st.sampled_from([0.0, 3.0]) | st.floats(0, 1e7, allow_nan=False),
    st.sampled_from([0.0, 3.0]) | st.floats(0, 1e7, allow_nan=False),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(_ROW, max_size=60), k=st.integers(0, 8), ticks=st.integers(1, 3),
       seed=st.integers(0, 2**16))
def test_engine_stats_match_the_reference(rows: list[tuple[str, bool, float, float, float]], k: int,
                                          ticks: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    cache = TopKCache()
    for _ in range(ticks):  # the cache's candidate filter must never change the answer
        shaped = [(r, f"w{i}", 0, a, q * rng.uniform(0.5, 2.0), qkv, skv) for i, (r, a, q, qkv, skv) in enumerate(rows)]
        view, _ = fleet(shaped)
        pools = ("prefill", "decode")
        got = engine_stats(view, pools, k, cache)
        want = engine_stats_reference(view, pools, k)
        assert (got.unknown_tracked, got.unknown_stale) == (want.unknown_tracked, want.unknown_stale)
        for pool in pools:
            g, w = got.pools[pool], want.pools[pool]
            assert (g.tracked, g.stale) == (w.tracked, w.stale)
            assert g.top_rows.tolist() == w.top_rows.tolist()
            assert g.queued_prefill_tokens == pytest.approx(w.queued_prefill_tokens, rel=1e-9)
            assert g.inflight_decode_kv_tokens == pytest.approx(w.inflight_decode_kv_tokens, rel=1e-9)


# -- through a replay -------------------------------------------------------------------------------


def test_replay_drives_the_metrics() -> None:
    cfg = planner_config()
    metrics = PlannerMetrics(MetricsSettings.from_config(cfg))
    records, result = replay(cfg, observers=(metrics,))
    last = records[-1]
    assert last.deployment is not None
    for pool, state in last.deployment.pools.items():
        assert value(metrics, "dynamo_planner_replicas", pool=pool.value) == state.replicas
    per_loop = {k: sum(1 for r in records if r.tick.kind is k) for k in TickKind}
    for kind, n in per_loop.items():
        assert value(metrics, "dynamo_planner_ticks_total", loop=kind.value) == n
        total = sum(value(metrics, "dynamo_planner_decisions_total", loop=kind.value, reason=r.value) or 0
                    for r in DecisionReason)
        assert total == n
    # the metric integrates GPUs tick to tick; the simulator exactly: within one load interval
    gpu_hours = value(metrics, "dynamo_planner_gpu_seconds_total") / 3600.0  # type: ignore[operator]
    assert gpu_hours == pytest.approx(result.summary["gpu_hours"], abs=20 * 10 / 3600.0)
    applied = sum(1 for r in records if r.apply is not None and r.apply.status is ApplyStatus.APPLIED)
    assert applied > 0 and value(metrics, "dynamo_planner_applies_total", status="applied") == applied
    assert sum(len(v) for v in engine_series(metrics).values()) > 0
    assert all(len(r.timings_s) == 3 and r.snapshot is not None for r in records)


def test_readme_table_lists_every_metric_with_its_type() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`dynamo_planner_"):
            rows[cells[0].strip("`")] = cells[1]
    kinds = {"counter": "counter", "gauge": "gauge", "histogram": "histogram", "stateset": "stateset (enum)"}
    m = make_metrics()
    exported = {}
    for family in m.registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        exported[name] = kinds[family.type]
    assert rows == exported
    for name in LEGACY_NAMES:
        assert "kept for compatibility" in section.split(f"`{name}`", 1)[1].split("\n", 1)[0]
