"""The metrics exposition against the real Prometheus tools: ``promtool check metrics`` lints it,
and a real Prometheus scrapes the metrics server and answers every Grafana panel's query."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sla_planner.observe.metrics import LEGACY_NAMES, MetricsSettings, PlannerMetrics
from sla_planner.observe.servers import MetricsServer

from observe_helpers import loop_thread, planner_config, replay
from promql_names import grafana_exprs

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "sla-planner-dashboard.json"

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) not installed")
needs_prometheus = pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus (Debian prometheus) not installed")


def replayed_metrics(**cfg: Any) -> PlannerMetrics:
    config = planner_config(**cfg)
    metrics = PlannerMetrics(MetricsSettings.from_config(config))
    replay(config, observers=(metrics,))
    return metrics


def promtool(exposition: bytes) -> tuple[int, str]:
    proc = subprocess.run(["promtool", "check", "metrics"], input=exposition, capture_output=True, timeout=60)
    return proc.returncode, (proc.stdout + proc.stderr).decode()


@needs_promtool
def test_promtool_clean_without_legacy_names() -> None:
    code, output = promtool(replayed_metrics(metrics_legacy_names=False).exposition())
    assert (code, output.strip()) == (0, "")


@needs_promtool
def test_promtool_flags_only_the_kept_original_names() -> None:
    code, output = promtool(replayed_metrics().exposition())
    flagged = {line.split()[0] for line in output.strip().splitlines()}
    assert code != 0
    assert flagged == set(LEGACY_NAMES)


@needs_promtool
def test_promtool_fails_a_broken_counter() -> None:
    # the check is real: a counter without _total is refused
    bad = b"# HELP x_requests Requests.\n# TYPE x_requests counter\nx_requests 1\n"
    code, output = promtool(bad)
    assert code != 0 and "_total" in output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def query(base: str, expr: str) -> Any:
    return get_json(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))


@needs_prometheus
def test_real_prometheus_scrapes_and_answers_every_panel(tmp_path: Path) -> None:
    metrics = replayed_metrics()
    with loop_thread() as lt:
        server = MetricsServer(metrics.registry, "127.0.0.1", 0)
        lt.run(server.start())
        try:
            scrape = urllib.request.urlopen(f"{server.url}/metrics", timeout=10)
            assert scrape.headers["Content-Type"].startswith("text/plain")
            assert b"dynamo_planner_ticks_total" in scrape.read()
            config = tmp_path / "prometheus.yml"
            config.write_text(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "scrape_configs:\n  - job_name: sla-planner\n    static_configs:\n"
                f"      - targets: ['127.0.0.1:{server.port}']\n"
            )
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            proc = subprocess.Popen(
                ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
            try:
                deadline = time.monotonic() + 60
                samples = 0
                while time.monotonic() < deadline and samples < 3:
                    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                    try:
                        result = query(base, "count_over_time(dynamo_planner_ticks_total{loop=\"load\"}[1m])")
                        values = result["data"]["result"]
                        samples = int(float(values[0]["value"][1])) if values else 0
                    except (urllib.error.URLError, ConnectionError, KeyError):
                        pass
                    time.sleep(0.5)
                assert samples >= 3, "Prometheus did not scrape the planner three times within 60 s"
                targets = get_json(f"{base}/api/v1/targets")["data"]["activeTargets"]
                assert [t["health"] for t in targets] == ["up"], targets
                dashboard = json.loads(DASHBOARD.read_text())
                for title, expr in grafana_exprs(dashboard):
                    promql = expr.replace("$instance", ".*").replace("$__rate_interval", "30s")
                    answer = query(base, promql)
                    assert answer["status"] == "success", (title, promql, answer)
                    assert answer["data"]["result"], f"panel {title!r}: no data for {promql}"
            finally:
                proc.terminate()
                proc.wait(20)
        finally:
            lt.run(server.stop())
