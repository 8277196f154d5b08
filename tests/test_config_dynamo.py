"""A Dynamo planner config loads: its names, its fields with a meaning here, the rest warned."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from sla_planner.config import MAX_CONFIG_FLOAT, MAX_CONFIG_INT, PlannerConfig
from sla_planner.config_dynamo import DYNAMO_ALIASES, NO_EFFECT
from sla_planner.errors import ConfigError, InfeasibleBudgetError

NO_ENV: dict[str, str] = {}

# A planner config shaped as Dynamo's documentation and PlannerConfig describe it (its field
# names, types and defaults), as the profiler would mount it: our names where they match,
# Dynamo's newer names (ttft_ms, *_seconds, advisory) and fields with no meaning here.
DYNAMO_YAML = """\
pre_deployment_sweeping_mode: rapid
environment: kubernetes
namespace: llm-prod
backend: vllm
mode: disagg
optimization_target: sla
log_dir: null
throughput_adjustment_interval_seconds: 180
max_throughput_scaling_replicas: 8
max_gpu_budget: -1
min_gpu_budget: -1
min_endpoint: 1
prefill_min_endpoint: 2
decode_min_endpoint: 3
control_api_port: 9086
decode_engine_num_gpu: 2
prefill_engine_num_gpu: null
profile_results_dir: builtin:example
aic_interpolation: null
ttft_ms: 500.0
itl_ms: 50.0
load_predictor: arima
load_predictor_log1p: false
prophet_window_size: 50
load_predictor_warmup_trace: null
kalman_q_level: 1.0
kalman_q_trend: 0.1
kalman_r: 10.0
kalman_min_points: 5
metric_pulling_prometheus_endpoint: http://prometheus:9090
metric_pulling_prometheus_token: null
metric_pulling_prometheus_ssl_verify: false
metric_pulling_prometheus_request_timeout_seconds: 10.0
metric_reporting_prometheus_port: 0
throughput_metrics_source: frontend
model_name: Qwen/Qwen3-0.6B
enable_throughput_scaling: true
enable_load_scaling: true
load_adjustment_interval_seconds: 5
max_num_fpm_samples: 64
fpm_sample_bucket_size: 16
load_scaling_down_sensitivity: 80
prefill_scale_up_queue_tokens: null
prefill_scale_down_queue_tokens: null
decode_scale_up_kv_rate: null
decode_scale_down_kv_rate: null
load_min_observations: 5
speculative_nextn: 0
advisory: true
enable_power_awareness: false
total_gpu_power_limit: null
report_interval_hours: 24.0
report_output_dir: ./planner_reports
report_filename: null
report_write_gzip_log: true
live_dashboard_port: 8080
scheduling:
  tick_max_duration_seconds: 30.0
"""

NO_EFFECT_GIVEN = [
    "pre_deployment_sweeping_mode", "max_throughput_scaling_replicas", "control_api_port",
    "aic_interpolation", "metric_pulling_prometheus_ssl_verify", "max_num_fpm_samples",
    "fpm_sample_bucket_size", "prefill_scale_up_queue_tokens", "prefill_scale_down_queue_tokens",
    "decode_scale_up_kv_rate", "decode_scale_down_kv_rate", "speculative_nextn",
    "enable_power_awareness", "total_gpu_power_limit", "report_filename", "report_write_gzip_log",
    "scheduling",
]


def _dynamo_dict() -> dict[str, Any]:
    import yaml

    data: dict[str, Any] = yaml.safe_load(DYNAMO_YAML)
    return data


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_dynamo_config_file_loads_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, suffix: str
) -> None:
    path = tmp_path / f"planner_config{suffix}"
    path.write_text(DYNAMO_YAML if suffix == ".yaml" else json.dumps(_dynamo_dict()))
    with caplog.at_level(logging.WARNING, logger="sla_planner"):
        config = PlannerConfig.from_sources(str(path), env=NO_ENV)
    # Dynamo's names carry their values into ours
    assert (config.ttft, config.itl) == (500.0, 50.0)
    assert (config.throughput_adjustment_interval, config.load_adjustment_interval) == (180, 5)
    assert config.no_operation is True
    assert (config.prometheus_bearer_token, config.prometheus_timeout_s) == (None, 10.0)
    # the fields with a meaning here
    assert config.gpu_budget() is None and config.gpu_floor() is None
    assert (config.min_replicas("prefill"), config.min_replicas("decode")) == (2, 3)
    assert config.prefill_engine_num_gpu == 1 and config.decode_engine_num_gpu == 2
    # one warning naming every field without effect, and the null engine size
    dynamo_warnings = [w for w in _warnings(caplog) if "Dynamo" in w]
    assert len(dynamo_warnings) == 1
    for name in NO_EFFECT_GIVEN:
        assert name in dynamo_warnings[0], name
    assert "prefill_engine_num_gpu" in dynamo_warnings[0]
    # the dropped fields are not ours: no attribute, not in the public dict
    assert "speculative_nextn" not in config.to_public_dict()


def test_the_dynamo_config_validates_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sla_planner.cli import main

    path = tmp_path / "planner_config.yaml"
    path.write_text(DYNAMO_YAML)
    assert main(["validate", "--config", str(path)]) == 0
    assert "ok: config, profile builtin:example valid" in capsys.readouterr().out


def test_no_warning_without_dynamo_only_fields(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sla_planner"):
        PlannerConfig.from_json('{"max_gpu_budget": -1, "ttft_ms": 2000}')
    assert not [w for w in _warnings(caplog) if "Dynamo" in w]


def test_every_no_effect_field_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name in [*NO_EFFECT, *DYNAMO_ALIASES]:
        assert f"`{name}`" in readme, name


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({"speculative_nextn": -1}, "speculative_nextn: must be an integer >= 0 (got -1)", id="nextn-negative"),
        pytest.param({"fpm_sample_bucket_size": 15}, "fpm_sample_bucket_size: must be a perfect square", id="bucket-not-square"),
        pytest.param({"fpm_sample_bucket_size": 0}, "fpm_sample_bucket_size: must be a perfect square", id="bucket-zero"),
        pytest.param({"max_num_fpm_samples": 0}, "max_num_fpm_samples: must be an integer >= 1", id="samples-zero"),
        pytest.param({"pre_deployment_sweeping_mode": "fast"}, "pre_deployment_sweeping_mode: must be one of", id="sweep-mode"),
        pytest.param({"control_api_port": 65536}, "control_api_port: must be an integer in 0..65535", id="port-just-outside"),
        pytest.param({"decode_scale_up_kv_rate": 100.5}, "decode_scale_up_kv_rate: must be a number in 0..100", id="kv-rate-just-outside"),
        pytest.param({"scheduling": [1]}, "scheduling: must be a mapping (got <list of 1 item>)", id="scheduling-list"),
        pytest.param({"ttft": 100, "ttft_ms": 200}, "ttft_ms, ttft: the same setting is given twice", id="alias-twice"),
        pytest.param({"speculative_next": 1}, "speculative_next: unknown field (did you mean 'speculative_nextn'?)", id="typo-of-dynamo-field"),
        pytest.param({"max_gpu_budgte": 1}, "did you mean 'max_gpu_budget'?", id="typo-of-our-field"),
        pytest.param({"optimization_target": "load"}, "optimization_target: must be one of", id="load-target"),
    ],
)
def test_dynamo_fields_are_checked_like_dynamo_does(fields: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PlannerConfig.from_json(json.dumps(fields))
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    ("fields", "error", "expected"),
    [
        pytest.param({"max_gpu_budget": -1, "min_endpoint": 1000}, None, "", id="negative-budget-disables-footprint-rule"),
        pytest.param({"max_gpu_budget": 0}, InfeasibleBudgetError, "exceeds max_gpu_budget=0", id="zero-budget"),
        pytest.param({"max_gpu_budget": 5, "prefill_min_endpoint": 2, "decode_min_endpoint": 3}, None, "", id="role-footprint-just-inside"),
        pytest.param({"max_gpu_budget": 4, "prefill_min_endpoint": 2, "decode_min_endpoint": 3}, InfeasibleBudgetError,
                     "prefill_min_endpoint * prefill_engine_num_gpu + decode_min_endpoint * decode_engine_num_gpu = 2 * 1 + 3 * 1 = 5", id="role-footprint-just-outside"),
        pytest.param({"max_gpu_budget": 3, "decode_min_endpoint": 3}, InfeasibleBudgetError,
                     "min_endpoint * prefill_engine_num_gpu + decode_min_endpoint * decode_engine_num_gpu = 1 * 1 + 3 * 1 = 4", id="one-role-minimum"),
        pytest.param({"mode": "prefill", "max_gpu_budget": 2, "prefill_min_endpoint": 3}, InfeasibleBudgetError,
                     "prefill_min_endpoint * prefill_engine_num_gpu = 3 * 1 = 3", id="prefill-mode-footprint"),
        pytest.param({"mode": "prefill", "decode_min_endpoint": 2}, ConfigError,
                     "decode_min_endpoint: has no pool in mode 'prefill'", id="decode-minimum-in-prefill-mode"),
        pytest.param({"mode": "decode", "prefill_min_endpoint": 2}, ConfigError,
                     "prefill_min_endpoint: has no pool in mode 'decode'", id="prefill-minimum-in-decode-mode"),
        pytest.param({"mode": "agg", "decode_min_endpoint": 2}, ConfigError,
                     "decode_min_endpoint: has no pool in mode 'agg' (use min_endpoint)", id="role-minimum-in-agg-mode"),
        pytest.param({"prefill_min_endpoint": 0}, ConfigError, "prefill_min_endpoint: Input should be greater than or equal to 1", id="role-minimum-zero"),
        pytest.param({"min_gpu_budget": 128, "max_gpu_budget": 128}, None, "", id="floor-equals-ceiling"),
        pytest.param({"min_gpu_budget": 129, "max_gpu_budget": 128}, ConfigError,
                     "min_gpu_budget (129) must be at most max_gpu_budget (128)", id="floor-just-over-ceiling"),
        pytest.param({"min_gpu_budget": 1000, "max_gpu_budget": -1}, None, "", id="floor-without-ceiling"),
    ],
)
def test_budget_and_minimum_rules(fields: dict[str, Any], error: type[Exception] | None, expected: str) -> None:
    if error is None:
        PlannerConfig(**fields)
        return
    with pytest.raises(error) as caught:
        PlannerConfig(**fields)
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    ("fields", "pool", "replicas"),
    [
        pytest.param({}, "prefill", 1, id="default"),
        pytest.param({"min_endpoint": 2}, "decode", 2, id="shared-minimum"),
        pytest.param({"min_endpoint": 2, "prefill_min_endpoint": 4}, "prefill", 4, id="own-minimum-wins"),
        pytest.param({"min_endpoint": 2, "prefill_min_endpoint": 4}, "decode", 2, id="other-role-keeps-shared"),
        pytest.param({"mode": "agg", "min_endpoint": 3}, "agg", 3, id="agg"),
    ],
)
def test_min_replicas(fields: dict[str, Any], pool: str, replicas: int) -> None:
    assert PlannerConfig(**fields).min_replicas(pool) == replicas


def test_budget_helpers() -> None:
    config = PlannerConfig(max_gpu_budget=64, min_gpu_budget=8, prefill_engine_num_gpu=2,
                           prefill_min_endpoint=2, decode_min_endpoint=3)
    assert (config.gpu_budget(), config.gpu_floor(), config.min_footprint_gpus()) == (64, 8, 7)
    assert PlannerConfig(max_gpu_budget=-5).gpu_budget() is None
    with pytest.raises(ConfigError, match="unknown pool"):
        config.min_replicas("encode")


@pytest.mark.parametrize(
    ("field", "value", "ok"),
    [
        pytest.param("max_gpu_budget", MAX_CONFIG_INT, True, id="int-just-inside"),
        pytest.param("max_gpu_budget", MAX_CONFIG_INT + 1, False, id="int-just-outside"),
        pytest.param("max_gpu_budget", -MAX_CONFIG_INT - 1, False, id="negative-int-just-outside"),
        pytest.param("load_min_observations", 10**30, False, id="huge-window"),
        pytest.param("isl", MAX_CONFIG_FLOAT, True, id="float-just-inside"),
        pytest.param("isl", MAX_CONFIG_FLOAT * 1.0000001, False, id="float-just-outside"),
        pytest.param("ttft", 1e308, False, id="ttft-1e308"),
    ],
)
def test_numbers_are_bounded(field: str, value: object, ok: bool) -> None:
    fields = {field: value, "optimization_target": "sla"}
    if ok:
        PlannerConfig(**fields)
        return
    with pytest.raises(ConfigError, match=f"{field}: must be at most"):
        PlannerConfig(**fields)


def test_plan_with_a_negative_budget_has_no_ceiling(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sla_planner.cli import main

    path = tmp_path / "planner_config.yaml"
    path.write_text(DYNAMO_YAML)
    assert main(["plan", "--config", str(path), "--num-req", "100000", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["budget"]["action"] == "within_budget"
    assert result["prefill_replicas"] + 2 * result["decode_replicas"] > 8  # beyond Dynamo's default 8
