"""PlannerConfig: field rules, cross-field rules, loading paths, environment and CLI precedence."""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sla_planner.config import ENV_VARS, PlannerConfig, add_config_arguments, config_from_args
from sla_planner.config_cli import LEGACY_FLAGS, flag_for
from sla_planner.errors import ConfigError, InfeasibleBudgetError

SLA: dict[str, Any] = {"optimization_target": "sla"}
BOTH_MODES: dict[str, Any] = {**SLA, "enable_throughput_scaling": True, "enable_load_scaling": True}
NO_ENV: dict[str, str] = {}
URL_RULE = "metric_pulling_prometheus_endpoint: must be an http(s) URL"


def _table(*rows: tuple[Any, ...]) -> list[Any]:
    """Rows of (id, *values) as pytest params."""
    return [pytest.param(*row[1:], id=row[0]) for row in rows]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sla-planner", exit_on_error=False)
    add_config_arguments(parser)
    return parser


def _from_argv(argv: list[str], env: dict[str, str] | None = None) -> PlannerConfig:
    return config_from_args(_parser().parse_args(argv), env=NO_ENV if env is None else env)


# -- defaults and helpers -------------------------------------------------------------------------


def test_defaults_follow_the_reference() -> None:
    config = PlannerConfig(**SLA)
    assert (config.throughput_adjustment_interval, config.load_adjustment_interval) == (60, 10)
    assert (config.ttft, config.itl, config.isl, config.osl) == (2000.0, 30.0, 3000.0, 150.0)
    assert (config.min_endpoint, config.max_gpu_budget) == (1, 128)
    assert (config.load_predictor, config.load_predictor_log1p) == ("linear", True)
    assert (config.kalman_q_level, config.kalman_q_trend, config.kalman_r) == (0.1, 0.01, 1.0)
    assert (config.load_scaling_down_sensitivity, config.load_scale_down_patience) == (80, 3)
    assert config.enable_throughput_scaling and not config.enable_load_scaling
    assert PlannerConfig().optimization_target == "throughput"


def test_every_field_has_a_description() -> None:
    missing = [name for name, info in PlannerConfig.model_fields.items() if not info.description]
    assert missing == []


@pytest.mark.parametrize(
    ("mode", "pools", "footprint"),
    _table(
        ("disagg", "disagg", ("prefill", "decode"), 2 * (3 + 5)),
        ("prefill", "prefill", ("prefill",), 2 * 3),
        ("decode", "decode", ("decode",), 2 * 5),
        ("agg", "agg", ("agg",), 2 * 5),
    ),
)
def test_pools_and_footprint_by_mode(mode: str, pools: tuple[str, ...], footprint: int) -> None:
    config = PlannerConfig(
        mode=mode, min_endpoint=2, prefill_engine_num_gpu=3, decode_engine_num_gpu=5
    )
    assert config.pools() == pools
    assert config.min_footprint_gpus() == footprint
    assert [config.engine_num_gpu(pool) for pool in ("prefill", "decode", "agg")] == [3, 5, 5]


def test_engine_num_gpu_rejects_unknown_pool() -> None:
    with pytest.raises(ConfigError, match="unknown pool 'encode'"):
        PlannerConfig().engine_num_gpu("encode")


@pytest.mark.parametrize(
    ("fields", "expected"),
    _table(
        ("sla-default", SLA, True),
        ("no-correction", {**SLA, "no_correction": True}, False),
        ("load-scaling-on", {**BOTH_MODES, "load_adjustment_interval": 5}, False),
        ("easy-target-forces-load-scaling", {"optimization_target": "throughput"}, False),
    ),
)
def test_correction_enabled(fields: dict[str, Any], expected: bool) -> None:
    assert PlannerConfig(**fields).correction_enabled() is expected


def test_public_dict_is_json_and_round_trips() -> None:
    config = PlannerConfig(**SLA, report_interval_hours=None, dgd_name="graph")
    dumped = json.loads(json.dumps(config.to_public_dict()))
    assert PlannerConfig.model_validate(dumped) == config


# -- field rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    _table(
        ("bool-word", {"no_operation": "maybe"},
         "no_operation: Input should be a valid boolean (got 'maybe')"),
        ("bool-string", {"enable_load_scaling": "true"},
         "enable_load_scaling: Input should be a valid boolean"),
        ("bool-int", {"no_correction": 1}, "no_correction: Input should be a valid boolean"),
        ("int-float", {"min_endpoint": 1.5}, "min_endpoint: Input should be a valid integer"),
        ("int-bool", {"max_gpu_budget": True}, "max_gpu_budget: Input should be a valid integer"),
        ("float-string", {"ttft": "fast"}, "ttft: Input should be a valid number"),
        ("nan", {"itl": float("nan")}, "itl: Input should be a finite number (got nan)"),
        ("inf", {"ttft": float("inf")}, "ttft: Input should be a finite number (got inf)"),
        ("optional-inf", {"report_interval_hours": float("-inf")},
         "report_interval_hours: Input should be a finite number"),
        ("target", {"optimization_target": "cost"},
         "optimization_target: must be one of 'throughput', 'latency' or 'sla'; got 'cost'"),
        ("mode", {"mode": "mixed"},
         "mode: must be one of 'disagg', 'prefill', 'decode' or 'agg'; got 'mixed'"),
        ("backend", {"backend": "tgi"},
         "backend: must be one of 'vllm', 'sglang', 'trtllm' or 'mocker'"),
        ("environment", {"environment": "local"},
         "environment: must be one of 'kubernetes', 'virtual' or 'global-planner'"),
        ("predictor", {"load_predictor": "lstm"},
         "load_predictor: must be one of 'constant', 'linear', 'kalman', 'arima' or 'prophet'"),
        ("metrics-source", {"throughput_metrics_source": "engine"},
         "throughput_metrics_source: must be one of 'frontend' or 'router'"),
        ("unknown-field", {"gpu_count": 3}, "gpu_count: unknown field"),
        ("typo-suggestion", {"ttf": 3.0}, "ttf: unknown field (did you mean 'ttft'?)"),
        ("url-no-scheme", {"metric_pulling_prometheus_endpoint": "prometheus:9090"}, URL_RULE),
        ("url-ftp", {"metric_pulling_prometheus_endpoint": "ftp://prometheus:9090"}, URL_RULE),
        ("url-bad-port", {"metric_pulling_prometheus_endpoint": "http://p:99999"}, URL_RULE),
        ("url-no-host", {"metric_pulling_prometheus_endpoint": "http://:9090"}, URL_RULE),
        ("empty-namespace", {"namespace": ""},
         "namespace: String should have at least 1 character"),
        ("str-number", {"model_name": 7}, "model_name: Input should be a valid string (got 7)"),
    ),
)
def test_field_rules(fields: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PlannerConfig(**{**SLA, **fields})
    assert type(caught.value) is ConfigError
    assert expected in str(caught.value)


@pytest.mark.parametrize("url", ["http://prometheus:9090", "https://10.0.0.1", "http://[::1]:80"])
def test_http_urls_accepted(url: str) -> None:
    config = PlannerConfig(metric_pulling_prometheus_endpoint=url)
    assert config.metric_pulling_prometheus_endpoint == url


BOUNDARIES = [
    ("load_scaling_down_sensitivity", -1, False),
    ("load_scaling_down_sensitivity", 0, True),
    ("load_scaling_down_sensitivity", 100, True),
    ("load_scaling_down_sensitivity", 101, False),
    ("throughput_adjustment_interval", 0, False),
    ("throughput_adjustment_interval", 1, True),
    ("load_adjustment_interval", 0, False),
    ("load_adjustment_interval", 1, True),
    ("load_learning_window", 0, False),
    ("load_learning_window", 1, True),
    ("min_endpoint", 0, False),
    ("min_endpoint", 1, True),
    ("max_gpu_budget", 0, False),
    ("prefill_engine_num_gpu", 0, False),
    ("decode_engine_num_gpu", 0, False),
    ("load_scale_down_patience", 0, False),
    ("load_scale_down_patience", 1, True),
    ("load_metric_samples", 0, False),
    ("load_metric_samples", 1, True),
    ("load_min_observations", 0, False),
    ("load_min_observations", 1, True),
    ("kalman_min_points", 0, False),
    ("kalman_min_points", 1, True),
    ("linear_window_size", 1, False),
    ("linear_window_size", 2, True),
    ("prophet_window_size", 9, False),
    ("prophet_window_size", 10, True),
    ("kalman_q_level", -1e-9, False),
    ("kalman_q_level", 0.0, True),
    ("kalman_q_trend", -1e-9, False),
    ("kalman_q_trend", 0.0, True),
    ("kalman_r", 0.0, False),
    ("kalman_r", 1e-9, True),
    ("ttft", 0.0, False),
    ("ttft", 1e-9, True),
    ("itl", 0.0, False),
    ("itl", 1e-9, True),
    ("isl", 0.0, False),
    ("isl", 1e-9, True),
    ("osl", 0.0, False),
    ("osl", 1e-9, True),
    ("report_interval_hours", 0.0, False),
    ("report_interval_hours", 1e-9, True),
    ("report_interval_hours", None, True),
    ("live_dashboard_port", -1, False),
    ("live_dashboard_port", 0, True),
    ("live_dashboard_port", 65535, True),
    ("live_dashboard_port", 65536, False),
    ("metric_reporting_prometheus_port", -1, False),
    ("metric_reporting_prometheus_port", 0, True),
    ("metric_reporting_prometheus_port", 65535, True),
    ("metric_reporting_prometheus_port", 65536, False),
]


@pytest.mark.parametrize(
    ("field", "value", "valid"), BOUNDARIES, ids=[f"{f}={v}" for f, v, _ in BOUNDARIES]
)
def test_field_boundaries(field: str, value: object, valid: bool) -> None:
    # an easy target: load scaling only, so the interval rule stays out of the way
    fields: dict[str, Any] = {"optimization_target": "latency", field: value}
    if valid:
        assert getattr(PlannerConfig(**fields), field) == value
    else:
        with pytest.raises(ConfigError, match=f"{field}: "):
            PlannerConfig(**fields)


# -- cross-field rules ----------------------------------------------------------------------------

DISAGG_2x6 = {"min_endpoint": 2, "prefill_engine_num_gpu": 2, "decode_engine_num_gpu": 4}


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    _table(
        ("no-scaling-mode", {**SLA, "enable_throughput_scaling": False}, ConfigError,
         "enable_throughput_scaling, enable_load_scaling: at least one scaling mode must be on"),
        ("intervals-equal", {**BOTH_MODES, "load_adjustment_interval": 60}, ConfigError,
         "load_adjustment_interval (60 s) must be strictly less than "
         "throughput_adjustment_interval (60 s)"),
        ("intervals-one-less", {**BOTH_MODES, "load_adjustment_interval": 59}, None, ""),
        ("intervals-load-only", {**SLA, "enable_throughput_scaling": False,
                                 "enable_load_scaling": True, "load_adjustment_interval": 90},
         None, ""),
        ("global-planner-missing", {"environment": "global-planner"}, ConfigError,
         "global_planner_namespace: required when environment is 'global-planner'"),
        ("global-planner-given",
         {"environment": "global-planner", "global_planner_namespace": "gp"}, None, ""),
        ("disagg-at-budget", {**DISAGG_2x6, "max_gpu_budget": 12}, None, ""),
        ("disagg-one-over", {**DISAGG_2x6, "max_gpu_budget": 11}, InfeasibleBudgetError,
         "max_gpu_budget: minimum footprint in mode 'disagg' is min_endpoint * "
         "(prefill_engine_num_gpu + decode_engine_num_gpu) = 2 * (2 + 4) = 12 GPUs, which "
         "exceeds max_gpu_budget=11"),
        ("prefill-at-budget", {"mode": "prefill", "min_endpoint": 3,
                               "prefill_engine_num_gpu": 2, "max_gpu_budget": 6}, None, ""),
        ("prefill-one-over", {"mode": "prefill", "min_endpoint": 3,
                              "prefill_engine_num_gpu": 2, "max_gpu_budget": 5},
         InfeasibleBudgetError,
         "min_endpoint * prefill_engine_num_gpu = 3 * 2 = 6 GPUs, which exceeds max_gpu_budget=5"),
        ("decode-at-budget", {"mode": "decode", "min_endpoint": 3,
                              "decode_engine_num_gpu": 2, "max_gpu_budget": 6}, None, ""),
        ("decode-one-over", {"mode": "decode", "min_endpoint": 3,
                             "decode_engine_num_gpu": 2, "max_gpu_budget": 5},
         InfeasibleBudgetError, "min_endpoint * decode_engine_num_gpu = 3 * 2 = 6 GPUs"),
        ("agg-ignores-prefill-gpus", {"mode": "agg", "min_endpoint": 3, "max_gpu_budget": 6,
                                      "prefill_engine_num_gpu": 99, "decode_engine_num_gpu": 2},
         None, ""),
        ("agg-one-over", {"mode": "agg", "min_endpoint": 3,
                          "decode_engine_num_gpu": 2, "max_gpu_budget": 5},
         InfeasibleBudgetError,
         "in mode 'agg' is min_endpoint * decode_engine_num_gpu = 3 * 2 = 6 GPUs"),
    ),
)
def test_cross_field_rules(
    fields: dict[str, Any], error: type[Exception] | None, message: str
) -> None:
    if error is None:
        PlannerConfig(**fields)
        return
    with pytest.raises(error) as caught:
        PlannerConfig(**fields)
    assert message in str(caught.value)


def test_all_problems_are_reported_together() -> None:
    with pytest.raises(InfeasibleBudgetError) as caught:
        PlannerConfig(
            **SLA, ttft=-1.0, backend="tgi", bogus=1, environment="global-planner", min_endpoint=200
        )
    message = str(caught.value)
    assert message.startswith("invalid PlannerConfig (5 problems):\n  ")
    for text in (
        "ttft: Input should be greater than 0 (got -1.0)",
        "backend: must be one of",
        "bogus: unknown field",
        "global_planner_namespace: required",
        "exceeds max_gpu_budget=128",
    ):
        assert text in message


def test_rule_reading_an_invalid_field_is_skipped() -> None:
    with pytest.raises(ConfigError) as caught:
        PlannerConfig(**SLA, mode="mixed", min_endpoint=500)
    assert type(caught.value) is ConfigError
    assert "minimum footprint" not in str(caught.value)


@pytest.mark.parametrize("target", ["throughput", "latency"])
def test_easy_targets_force_load_scaling_and_warn(
    target: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="sla_planner.config"):
        config = PlannerConfig(
            optimization_target=target, enable_load_scaling=False, enable_throughput_scaling=True
        )
    assert (config.enable_load_scaling, config.enable_throughput_scaling) == (True, False)
    messages = [record.getMessage() for record in caplog.records]
    assert any("forcing enable_load_scaling=True" in message for message in messages)
    assert not any("ignores ttft" in message for message in messages)


def test_default_config_resolves_modes_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sla_planner.config"):
        config = PlannerConfig()
    assert (config.enable_load_scaling, config.enable_throughput_scaling) == (True, False)
    assert caplog.records == []


def test_easy_target_warns_that_sla_targets_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sla_planner.config"):
        PlannerConfig(optimization_target="latency", itl=20.0)
    messages = [record.getMessage() for record in caplog.records]
    assert any("ignores ttft=2000.0 ms and itl=20.0 ms" in message for message in messages)


def test_sla_target_keeps_modes_without_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sla_planner.config"):
        config = PlannerConfig(**SLA, ttft=500.0)
    assert (config.enable_throughput_scaling, config.enable_load_scaling) == (True, False)
    assert caplog.records == []


def test_assignment_is_validated_and_a_failure_changes_nothing() -> None:
    config = PlannerConfig(**SLA)
    with pytest.raises(InfeasibleBudgetError, match="exceeds max_gpu_budget=1"):
        config.max_gpu_budget = 1
    with pytest.raises(ConfigError, match="ttft: Input should be a finite number"):
        config.ttft = float("nan")
    assert (config.max_gpu_budget, config.ttft) == (128, 2000.0)
    config.max_gpu_budget = 2
    assert config.max_gpu_budget == 2


def test_model_validate_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="kalman_r: Input should be greater than 0"):
        PlannerConfig.model_validate({"kalman_r": 0})


# -- loading --------------------------------------------------------------------------------------

SLA_AGG_JSON = '{"optimization_target": "sla", "ttft": 500, "mode": "agg"}'
SLA_AGG_YAML = "optimization_target: sla\nttft: 5e2\nmode: agg\n"


@pytest.mark.parametrize(
    ("name", "text"),
    _table(
        ("json", "c.json", SLA_AGG_JSON),
        ("yaml", "c.yaml", SLA_AGG_YAML),
        ("yml-upper-case", "c.YML", SLA_AGG_YAML),
        ("other-suffix-json", "planner.conf", SLA_AGG_JSON),
        ("other-suffix-yaml", "planner.conf", SLA_AGG_YAML),
        ("no-suffix-yaml", "planner", SLA_AGG_YAML),
    ),
)
def test_load_file_formats(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    for config in (PlannerConfig.load_file(path), PlannerConfig.from_sources(str(path), NO_ENV)):
        assert (config.optimization_target, config.ttft, config.mode) == ("sla", 500.0, "agg")


def test_inline_json() -> None:
    text = '{"optimization_target": "sla", "itl": 12.5}'
    assert PlannerConfig.from_json(text).itl == 12.5
    assert PlannerConfig.from_sources(f"  {text}", env=NO_ENV).itl == 12.5


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    _table(
        ("json-syntax", "c.json", '{\n  "ttft": 5,\n  "itl": \n}',
         "c.json: invalid JSON at line 4 column 1"),
        ("json-nan-value", "c.json", '{"ttft": NaN}',
         "ttft: Input should be a finite number (got nan) [from config file "),
        ("json-duplicate-key", "c.json", '{"ttft": 5, "ttft": 6}',
         "c.json: invalid JSON: duplicate key 'ttft'"),
        ("json-list", "c.json", "[1, 2]",
         "c.json: top level must be a mapping of config fields, got a list"),
        ("yaml-syntax", "c.yaml", "ttft: 5\nmode: [agg\n",
         "c.yaml: invalid YAML at line 3 column 1"),
        ("yaml-duplicate-key", "c.yaml", "ttft: 5\nttft: 6\n",
         "c.yaml: invalid YAML at line 2 column 1: duplicate key 'ttft'"),
        ("yaml-scalar", "c.yml", "just words\n",
         "c.yml: top level must be a mapping of config fields, got a str"),
        ("yaml-empty", "c.yaml", "",
         "c.yaml: top level must be a mapping of config fields, got nothing"),
        ("yaml-unknown-field", "c.yaml", "ttft: 5\nmax_gpu_budgte: 3\n",
         "max_gpu_budgte: unknown field (did you mean 'max_gpu_budget'?) [from config file "),
        ("yaml-bool-for-string", "c.yaml", "namespace: no\n",
         "namespace: Input should be a valid string (got False)"),
        ("other-garbage", "c.conf", "mode: [agg\n",
         "c.conf: neither JSON nor YAML: invalid JSON at line 1 column 1: Expecting value; "
         "invalid YAML at line 2 column 1"),
        ("other-scalar", "c.txt", "hello",
         "c.txt: top level must be a mapping of config fields, got a str"),
    ),
)
def test_bad_files_name_the_file(tmp_path: Path, name: str, text: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    loaders: list[Callable[[], PlannerConfig]] = [
        lambda: PlannerConfig.load_file(path),
        lambda: PlannerConfig.from_sources(str(path), env=NO_ENV),
    ]
    for load in loaders:
        with pytest.raises(ConfigError) as caught:
            load()
        assert expected in str(caught.value)
        assert name in str(caught.value)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yaml: not found"):
        PlannerConfig.load_file(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="cannot be read"):
        PlannerConfig.load_file(tmp_path)
    binary = tmp_path / "c.json"
    binary.write_bytes(b'{"ttft": "\xff"}')
    with pytest.raises(ConfigError, match=r"c\.json: not UTF-8 text"):
        PlannerConfig.load_file(binary)


@pytest.mark.parametrize(
    ("value", "message"),
    _table(
        ("inline-garbage", '{"ttft": }', "inline JSON config: invalid JSON at line 1 column 10"),
        ("inline-list", "[1]", "inline JSON config: top level must be a mapping"),
        ("missing-file", "no/such/planner.yaml",
         "--config: 'no/such/planner.yaml' is neither an existing file nor inline JSON"),
        ("too-long-for-a-path", "x" * 5000, "is neither an existing file nor inline JSON"),
        ("nul-byte", "planner\x00.yaml", "is neither an existing file nor inline JSON"),
        ("empty", "", "--config: '' is neither an existing file nor inline JSON"),
        ("inline-unknown-field", '{"max_gpus": 4}',
         "max_gpus: unknown field (did you mean 'max_gpu_budget'?) [from inline JSON config]"),
    ),
)
def test_bad_config_values(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PlannerConfig.from_sources(value, env=NO_ENV)
    assert message in str(caught.value)


def test_inline_json_helper_rejects_garbage() -> None:
    with pytest.raises(ConfigError, match="inline JSON config: invalid JSON at line 1 column 1"):
        PlannerConfig.from_json("ttft=5")


# -- environment ----------------------------------------------------------------------------------


def test_env_vars_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("namespace: file\ndgd_name: file\nmetric_reporting_prometheus_port: 9000\n")
    env = {
        "DYN_NAMESPACE": "from-env",
        "DYN_PARENT_DGD_K8S_NAME": " env-graph ",
        "PROMETHEUS_ENDPOINT": "https://prom.example:9090",
        "PLANNER_PROMETHEUS_PORT": "9091",
        "ETCD_ENDPOINTS": "http://etcd-0:2379,http://etcd-1:2379",
        "SCALING_MAX_WAIT_TIME": "600",
        "POD_NAMESPACE": "inference",
    }
    config = PlannerConfig.from_sources(str(path), env=env)
    assert (config.namespace, config.dgd_name) == ("from-env", "env-graph")
    assert config.metric_pulling_prometheus_endpoint == "https://prom.example:9090"
    assert config.metric_reporting_prometheus_port == 9091
    assert config.virtual_etcd_endpoints == "http://etcd-0:2379,http://etcd-1:2379"
    assert config.virtual_ack_timeout_s == 600.0
    assert config.kube_namespace == "inference"
    assert set(ENV_VARS) == set(env)


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("SCALING_MAX_WAIT_TIME", "30min", "environment variable SCALING_MAX_WAIT_TIME"),
        ("SCALING_MAX_WAIT_TIME", "0", "virtual_ack_timeout_s"),
        ("ETCD_ENDPOINTS", "etcd-0:2379", "expected http(s)://host:port"),
    ],
    ids=["not a number", "zero wait", "endpoint without scheme"],
)
def test_bad_virtual_connector_env_values_are_named(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        PlannerConfig.from_sources(None, env={variable: value})


def test_blank_env_values_count_as_unset() -> None:
    env = {"DYN_NAMESPACE": "  ", "PLANNER_PROMETHEUS_PORT": ""}
    config = PlannerConfig.from_sources('{"namespace": "file"}', env=env)
    assert (config.namespace, config.metric_reporting_prometheus_port) == ("file", 0)


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYN_NAMESPACE", "process-env")
    assert PlannerConfig.from_sources(None).namespace == "process-env"


@pytest.mark.parametrize(
    ("env", "message"),
    _table(
        ("port-not-int", {"PLANNER_PROMETHEUS_PORT": "nine"},
         "metric_reporting_prometheus_port: environment variable PLANNER_PROMETHEUS_PORT='nine': "
         "expected an integer"),
        ("port-out-of-range", {"PLANNER_PROMETHEUS_PORT": "65536"},
         "less than or equal to 65535 (got 65536) [from environment variable "
         "PLANNER_PROMETHEUS_PORT]"),
        ("endpoint-not-url", {"PROMETHEUS_ENDPOINT": "prometheus"},
         "(got 'prometheus') [from environment variable PROMETHEUS_ENDPOINT]"),
    ),
)
def test_bad_env_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PlannerConfig.from_sources(None, env=env)
    assert message in str(caught.value)


def test_bad_env_value_is_reported_with_other_problems() -> None:
    with pytest.raises(ConfigError) as caught:
        PlannerConfig.from_sources('{"ttft": -1}', env={"PLANNER_PROMETHEUS_PORT": "x"})
    assert "PLANNER_PROMETHEUS_PORT='x'" in str(caught.value)
    assert "ttft: Input should be greater than 0" in str(caught.value)


def test_overrides_beat_env_and_are_validated() -> None:
    config = PlannerConfig.from_sources(
        None, env={"DYN_NAMESPACE": "env"}, overrides={"namespace": "cli"}
    )
    assert config.namespace == "cli"
    with pytest.raises(ConfigError, match=r"itl: .* \(got 0\) \[from override\]"):
        PlannerConfig.from_sources(None, env=NO_ENV, overrides={"itl": 0})


# -- command line ---------------------------------------------------------------------------------


def test_precedence_file_then_env_then_flag(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    fields = {"namespace": "file", "dgd_name": "file", "model_name": "file", "ttft": 100}
    path.write_text(json.dumps(fields))
    env = {"DYN_NAMESPACE": "env", "DYN_PARENT_DGD_K8S_NAME": "env"}
    config = _from_argv(["--config", str(path), "--namespace", "flag"], env)
    assert (config.namespace, config.dgd_name, config.model_name) == ("flag", "env", "file")
    assert config.ttft == 100.0


def test_flags_not_typed_do_not_override() -> None:
    namespace = _parser().parse_args([])
    assert vars(namespace) == {}
    assert config_from_args(namespace, env=NO_ENV) == PlannerConfig()
    from_file = _from_argv(["--config", '{"optimization_target": "sla", "ttft": 7}'])
    assert from_file.ttft == 7.0


def test_every_field_has_a_flag() -> None:
    actions = {option: action for action in _parser()._actions for option in action.option_strings}
    for name in PlannerConfig.model_fields:
        assert actions[flag_for(name)].dest == name
    assert "--config" in actions


def test_help_defaults_equal_field_defaults() -> None:
    actions = {action.dest: action for action in _parser()._actions}
    for name, info in PlannerConfig.model_fields.items():
        help_text = (actions[name].help or "").replace("%%", "%")
        match = re.fullmatch(r"(.*) \(default: (.*)\)", help_text)
        assert match is not None, name
        assert match.group(1) == info.description, name
        assert json.loads(match.group(2)) == info.default, name


@pytest.mark.parametrize(
    ("argv", "field", "value"),
    _table(
        ("adjustment-interval", ["--adjustment-interval", "120"],
         "throughput_adjustment_interval", 120),
        ("prometheus-endpoint", ["--prometheus-endpoint", "http://p:1"],
         "metric_pulling_prometheus_endpoint", "http://p:1"),
        ("prometheus-port", ["--prometheus-port", "9100"],
         "metric_reporting_prometheus_port", 9100),
        ("no-operation", ["--no-operation"], "no_operation", True),
        ("no-correction", ["--no-correction"], "no_correction", True),
        ("load-predictor", ["--load-predictor", "kalman"], "load_predictor", "kalman"),
        ("kalman-q-level", ["--kalman-q-level", "0.5"], "kalman_q_level", 0.5),
        ("kalman-q-trend", ["--kalman-q-trend", "0.05"], "kalman_q_trend", 0.05),
        ("kalman-r", ["--kalman-r", "2"], "kalman_r", 2.0),
        ("kalman-min-points", ["--kalman-min-points", "4"], "kalman_min_points", 4),
    ),
)
def test_legacy_flags(argv: list[str], field: str, value: object) -> None:
    assert getattr(_from_argv(argv), field) == value
    assert set(LEGACY_FLAGS) <= set(PlannerConfig.model_fields)


@pytest.mark.parametrize(
    ("argv", "expected"),
    _table(
        ("throughput-off-load-on", ["--no-enable-throughput-scaling", "--enable-load-scaling"],
         {"enable_throughput_scaling": False, "enable_load_scaling": True}),
        ("throughput-on-load-off", ["--enable-throughput-scaling", "--no-enable-load-scaling"],
         {"enable_throughput_scaling": True, "enable_load_scaling": False}),
        ("log1p-off", ["--no-load-predictor-log1p"], {"load_predictor_log1p": False}),
        ("log1p-on", ["--load-predictor-log1p"], {"load_predictor_log1p": True}),
        ("advisory-on", ["--no-operation"], {"no_operation": True}),
        ("advisory-last-wins", ["--no-operation", "--operation"], {"no_operation": False}),
        ("correction-off", ["--no-correction"], {"no_correction": True}),
        ("correction-on", ["--correction"], {"no_correction": False}),
    ),
)
def test_boolean_flags_both_ways(argv: list[str], expected: dict[str, bool]) -> None:
    config = _from_argv(["--optimization-target", "sla", "--load-adjustment-interval", "5", *argv])
    assert {name: getattr(config, name) for name in expected} == expected


def test_flag_values_are_validated_and_name_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"ttft: .* \(got nan\) \[from flag --ttft\]"):
        _from_argv(["--ttft", "nan"])
    with pytest.raises(InfeasibleBudgetError):
        _from_argv(["--max-gpu-budget", "1"])


def test_optional_float_flag_accepts_none() -> None:
    assert _from_argv(["--report-interval-hours", "none"]).report_interval_hours is None
    assert _from_argv(["--report-interval-hours", "6"]).report_interval_hours == 6.0
    with pytest.raises(argparse.ArgumentError, match="expected a number or 'none'"):
        _parser().parse_args(["--report-interval-hours", "daily"])


def test_bad_choice_is_an_argparse_error() -> None:
    with pytest.raises(argparse.ArgumentError, match="invalid choice: 'tgi'"):
        _parser().parse_args(["--backend", "tgi"])


def test_plan_subcommand_flags_do_not_clash() -> None:
    parser = argparse.ArgumentParser(prog="sla-planner")
    plan = parser.add_subparsers(dest="command").add_parser("plan")
    plan.add_argument("--num-req", type=float)
    plan.add_argument("--interval", type=float)
    plan.add_argument("--json", action="store_true")
    add_config_arguments(plan)
    args = parser.parse_args(
        ["plan", "--num-req", "10", "--interval", "60", "--json", "--isl", "512", "--osl", "64"]
    )
    config = config_from_args(args, env=NO_ENV)
    assert (args.num_req, args.interval, args.json) == (10.0, 60.0, True)
    assert (config.isl, config.osl) == (512.0, 64.0)
