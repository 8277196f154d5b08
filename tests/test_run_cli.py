"""`sla-planner run` start-up: what is an error (exit 2, one clear line) and what is not."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from prom_helpers import free_port

from sla_planner.cli import main
from sla_planner.cli import run as run_cli
from sla_planner.config import PlannerConfig
from sla_planner.errors import ConfigError

NOWHERE = f"tcp://127.0.0.1:{free_port()}"
LOAD_ONLY = ["--optimization-target", "latency", "--mode", "decode", "--max-kv-tokens", "1000"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--metric-pulling-prometheus-endpoint", "ftp://prometheus"], r"must be an http\(s\) URL"),
        (["--connector", "k8s:1,1"], "--connector 'k8s:1,1': expected memory:P,D or memory:N"),
        (["--connector", "memory:1"], r"expected P,D \(prefill,decode\)"),
        (["--environment", "global-planner", "--global-planner-namespace", "g"], "applies decisions through kubernetes or virtual"),
        (["--connector", "memory:1,1", "--optimization-target", "sla"], "profile_results_dir is not set"),
        (["--connector", "memory:1", *LOAD_ONLY], "load-based scaling reads engine metrics"),
        (["--connector", "memory:1", *LOAD_ONLY, "--fpm-discovery-file", "/nonexistent/engines.json"],
         "--fpm-discovery-file: discovery file /nonexistent/engines.json: cannot read"),
        (["--connector", "memory:1", *LOAD_ONLY, "--fpm-endpoints", "decode=tcp://h:0"], "--fpm-endpoints: .*port"),
        (["--connector", "memory:1,1", "--throughput-metrics-source", "router"], "reads traffic from the frontend"),
        (["--connector", "memory:1", *LOAD_ONLY, "--fpm-endpoints", NOWHERE, "--decisions-out", "/nonexistent/d.jsonl"],
         "--decisions-out /nonexistent/d.jsonl: cannot open"),
        (["--connector", "memory:1,1", "--prometheus-bearer-token", "t", "--prometheus-bearer-token-file", "f",
          "--optimization-target", "sla", "--profile-results-dir", "builtin:example"], "not both"),
    ],
    ids=["prometheus-url", "connector-kind", "connector-pools", "global-planner", "no-profile", "load-without-fpm",
         "discovery-file", "fpm-endpoint", "router-source", "decisions-out", "two-tokens"],
)
def test_start_up_errors_exit_2_with_one_clear_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--duration", "1", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert re.search(message, err), err


def test_a_missing_connector_module_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(run_cli._CONNECTORS, "virtual", ("sla_planner.connectors.no_such_module", "X"))
    cfg = PlannerConfig.from_sources(None, env={}, overrides={"environment": "virtual"})
    with pytest.raises(ConfigError, match="has no sla_planner.connectors.no_such_module"):
        asyncio.run(run_cli.build_connector(cfg, None, {}))


def test_the_environments_connector_is_built_from_config_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    seen: list[Any] = []

    class Fake:
        name = "fake"

        @classmethod
        async def from_config(cls, cfg: Any, env: Any) -> Fake:
            seen.append((cfg.namespace, dict(env)))
            return cls()

    module = types.ModuleType("sla_planner_fake_connector")
    module.FakeConnector = Fake  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "sla_planner_fake_connector", module)
    monkeypatch.setitem(run_cli._CONNECTORS, "virtual", ("sla_planner_fake_connector", "FakeConnector"))
    cfg = PlannerConfig.from_sources(None, env={"DYN_NAMESPACE": "ns1"}, overrides={"environment": "virtual"})
    connector = asyncio.run(run_cli.build_connector(cfg, None, {"ETCD_ENDPOINTS": "http://127.0.0.1:2379"}))
    assert isinstance(connector, Fake)
    assert seen == [("ns1", {"ETCD_ENDPOINTS": "http://127.0.0.1:2379"})]


def test_unreachable_engines_are_not_a_start_up_error_and_log_dir_gets_the_log(tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    argv = ["run", "--duration", "1.5", "--connector", "memory:1", *LOAD_ONLY, "--fpm-endpoints", NOWHERE,
            "--load-adjustment-interval", "1", "--decisions-out", str(log), "--log-dir", str(tmp_path / "logs")]
    assert main(argv) == 0
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["reason"] for r in records] == ["no_fpm_data"]
    assert "no_fpm_data" in (tmp_path / "logs" / "sla-planner-run.log").read_text()


@pytest.mark.parametrize(
    ("predictor", "overrides", "windows"),
    [("linear", {}, 10), ("kalman", {"kalman_min_points": 25}, 25), ("prophet", {}, 300),
     ("prophet", {"prophet_window_size": 5000}, 1000), ("arima", {}, 60)],
    ids=["linear", "kalman", "prophet", "prophet-capped", "arima"],
)
def test_history_windows_cover_what_the_predictor_needs(predictor: str, overrides: dict[str, Any], windows: int) -> None:
    cfg = PlannerConfig.from_sources(None, env={}, overrides={"load_predictor": predictor, **overrides})
    assert run_cli.history_windows(cfg) == windows


def test_a_start_up_error_leaves_no_decision_log_behind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "decisions.jsonl"
    assert main(["run", "--connector", "memory:1", *LOAD_ONLY, "--decisions-out", str(log)]) == 2
    assert "load-based scaling reads engine metrics" in capsys.readouterr().err
    assert not log.exists()
