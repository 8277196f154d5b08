"""Observability from a PlannerConfig (what ``sla-planner run`` calls) and the replay flags
``--metrics-out`` and ``--periodic-reports``."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sla_planner.cli import main
from sla_planner.errors import ConfigError
from sla_planner.observe.wiring import build_observability, start_observers

from observe_helpers import loop_thread, planner_config, replay

SHORT = "synthetic:bursts?base_rps=2&burst_rps=10&burst_every_s=300&burst_len_s=60&duration_s=900"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("overrides", "parts"),
    [
        ({}, set()),
        ({"metric_reporting_prometheus_port": 9100}, {"metrics", "metrics_server"}),
        ({"live_dashboard_port": 8080}, {"dashboard"}),
        ({"report_interval_hours": 6.0}, {"reporter"}),
        ({"metric_reporting_prometheus_port": 9100, "live_dashboard_port": 8080, "report_interval_hours": 1.0},
         {"metrics", "metrics_server", "dashboard", "reporter"}),
    ],
)
def test_parts_follow_the_config(tmp_path: Path, overrides: dict[str, Any], parts: set[str]) -> None:
    cfg = planner_config(report_output_dir=str(tmp_path), **overrides)
    obs = build_observability(cfg)
    built = {name for name in ("metrics", "metrics_server", "dashboard", "reporter") if getattr(obs, name) is not None}
    assert built == parts
    assert len(obs.observers) == len(parts - {"metrics_server"})


def test_defaults_serve_the_dashboard_on_loopback(tmp_path: Path) -> None:
    from sla_planner.config import PlannerConfig

    cfg = PlannerConfig.from_sources(None, env={}, overrides={"report_output_dir": str(tmp_path)})
    obs = build_observability(cfg)
    assert obs.dashboard is not None and obs.dashboard.server.host == "127.0.0.1"
    assert obs.dashboard.server.requested_port == 8080 and obs.metrics is None and obs.reporter is not None


def test_env_port_enables_metrics(tmp_path: Path) -> None:
    from sla_planner.config import PlannerConfig

    cfg = PlannerConfig.from_sources(None, env={"PLANNER_PROMETHEUS_PORT": "9464"},
                                     overrides={"report_output_dir": str(tmp_path), "live_dashboard_port": 0})
    obs = build_observability(cfg)
    assert obs.metrics_server is not None and obs.metrics_server.requested_port == 9464
    assert obs.metrics_server.host == "0.0.0.0"


def test_same_port_twice_is_a_config_error() -> None:
    cfg = planner_config(metric_reporting_prometheus_port=9000, live_dashboard_port=9000)
    with pytest.raises(ConfigError, match=r"^live_dashboard_port, metric_reporting_prometheus_port: both are 9000"):
        build_observability(cfg)


def test_start_feed_stop(tmp_path: Path) -> None:
    metrics_port, dashboard_port = free_port(), free_port()
    cfg = planner_config(
        metric_reporting_prometheus_port=metrics_port, metric_reporting_prometheus_host="127.0.0.1",
        live_dashboard_port=dashboard_port, report_interval_hours=0.25, report_output_dir=str(tmp_path),
    )
    with loop_thread() as lt:
        obs = lt.run(start_observers(cfg, wall_clock=False, kv_capacity_tokens=100_000))
        try:
            records, _ = replay(cfg, SHORT, observers=tuple(obs.observers))
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
            load_ticks = sum(1 for r in records if r.tick.kind.value == "load")
            assert f'dynamo_planner_ticks_total{{loop="load"}} {float(load_ticks)}' in metrics
            health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{dashboard_port}/healthz", timeout=10).read())
            assert health["ticks"] == len(records)
        finally:
            lt.run(obs.stop())
        with pytest.raises(OSError):  # both servers are gone
            urllib.request.urlopen(f"http://127.0.0.1:{dashboard_port}/healthz", timeout=2)
    # 900 s of simulated time in 15 min periods, and the final one written on stop
    assert sorted(p.name for p in tmp_path.glob("*.html")) == [
        "planner-report-t000000000s.html", "planner-report-t000000900s.html"]


def test_failed_start_releases_what_started() -> None:
    metrics_port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cfg = planner_config(metric_reporting_prometheus_port=metrics_port, metric_reporting_prometheus_host="127.0.0.1",
                             live_dashboard_port=taken.getsockname()[1])
        with loop_thread() as lt:
            with pytest.raises(ConfigError, match=r"^live_dashboard_port: cannot listen"):
                lt.run(start_observers(cfg))
    with socket.socket() as again:  # the metrics port was released
        again.bind(("127.0.0.1", metrics_port))


def test_replay_cli_writes_metrics_and_periodic_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m" / "metrics.prom"
    reports = tmp_path / "reports"
    code = main(["replay", "--trace", SHORT, "--profile-results-dir", "builtin:example", "--json",
                 "--metrics-out", str(out), "--periodic-reports", "--report-interval-hours", "0.1",
                 "--report-output-dir", str(reports)])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["metrics"] == str(out)
    text = out.read_text()
    assert "# TYPE dynamo_planner_ticks_total counter" in text and "dynamo_planner_gpu_seconds_total" in text
    htmls = sorted(p.name for p in reports.glob("*.html"))
    assert len(htmls) == 3 and htmls[0] == "planner-report-t000000000s.html"
    assert sorted(summary["periodic_reports"]) == sorted(str(p) for p in reports.iterdir())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--periodic-reports", "--report-interval-hours", "null"], "--periodic-reports: report_interval_hours is null"),
        (["--metrics-out", "/dev/null/x.prom"], "--metrics-out /dev/null/x.prom: cannot write"),
    ],
)
def test_replay_cli_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["replay", "--trace", SHORT, "--profile-results-dir", "builtin:example", *argv])
    assert code == 2
    assert capsys.readouterr().err.startswith(f"error: {message}")
