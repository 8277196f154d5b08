"""The Grafana dashboard queries only metrics the planner exports, and covers what an operator
needs (the panels the README promises)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sla_planner.observe.metrics import MetricsSettings, PlannerMetrics

from observe_helpers import planner_config, replay
from promql_names import exported_sample_names, grafana_exprs, metric_names

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "sla-planner-dashboard.json"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


@pytest.fixture(scope="module")
def exported() -> set[str]:
    """What a planner exports after a replay with both loops (per-engine series included)."""
    cfg = planner_config()
    metrics = PlannerMetrics(MetricsSettings.from_config(cfg))
    replay(cfg, observers=(metrics,))
    return exported_sample_names(metrics.registry)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("dynamo_planner_replicas", {"dynamo_planner_replicas"}),
        ('dynamo_planner_replicas{pool="prefill", instance=~"$instance"}', {"dynamo_planner_replicas"}),
        ("sum by (loop, reason) (rate(dynamo_planner_decisions_total[$__rate_interval])) * 60",
         {"dynamo_planner_decisions_total"}),
        ("histogram_quantile(0.95, sum by (le, phase) (rate(x_bucket{a=\"b{c}\"}[5m])))", {"x_bucket"}),
        ("time() - last_tick", {"last_tick"}),
        ("a / on (pool) group_left b offset 5m", {"a", "b"}),
        ('label_replace(up, "dst", "$1", "src", "(.*)")', {"up"}),
        ("max without (dp_rank) (engine_q) > bool 3", {"engine_q"}),
    ],
)
def test_metric_name_parser(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_every_panel_queries_only_exported_metrics(dashboard: dict[str, Any], exported: set[str]) -> None:
    names = exported
    exprs = grafana_exprs(dashboard)
    assert len(exprs) >= 25
    for title, expr in exprs:
        used = metric_names(expr)
        assert used, f"panel {title!r}: no metric in {expr!r}"
        missing = used - names
        assert not missing, f"panel {title!r} queries {sorted(missing)}, which the planner does not export"


def test_dashboard_covers_the_operator_questions(dashboard: dict[str, Any]) -> None:
    used = set().union(*(metric_names(e) for _, e in grafana_exprs(dashboard)))
    wanted = {
        "workers and GPUs": {"dynamo_planner_replicas", "dynamo_planner_gpus", "dynamo_planner_gpu_seconds_total"},
        "latency vs SLA": {"dynamo_planner_observed_ttft_seconds", "dynamo_planner_sla_ttft_seconds",
                           "dynamo_planner_observed_itl_seconds", "dynamo_planner_sla_itl_seconds"},
        "traffic": {"dynamo_planner_observed_requests_per_second", "dynamo_planner_observed_input_sequence_tokens",
                    "dynamo_planner_observed_output_sequence_tokens"},
        "prediction": {"dynamo_planner_predicted_requests_per_second", "dynamo_planner_recommended_replicas",
                       "dynamo_planner_planned_replicas"},
        "correction factors": {"dynamo_planner_correction_factor"},
        "decisions": {"dynamo_planner_load_scaling_decision", "dynamo_planner_throughput_scaling_decision",
                      "dynamo_planner_decisions_total"},
        "engines": {"dynamo_planner_engine_queued_prefill_tokens", "dynamo_planner_engine_queued_decode_kv_tokens"},
        "loop health": {"dynamo_planner_tick_lag_seconds", "dynamo_planner_tick_duration_seconds_bucket",
                        "dynamo_planner_input_failures_total", "dynamo_planner_applies_total"},
    }
    for topic, names in wanted.items():
        assert names <= used, f"{topic}: no panel shows {sorted(names - used)}"


def test_panels_are_well_formed(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "instance"}
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert 'instance=~"$instance"' in target["expr"], (panel["title"], target["expr"])
