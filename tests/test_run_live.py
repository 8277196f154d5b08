"""`sla-planner run` end to end: a real Prometheus scraping the frontend-metrics emulator under a
steady load, mock engines publishing FPM over real ZMQ, and the in-memory connector.

The command runs as a subprocess (SIGTERM, exit code, the decision log on disk) and in-process
through its async API (``run_planner``) where the test needs to look inside the connector.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prom_helpers import PROMETHEUS, RunningPrometheus, free_port
from sim_helpers import constant_perf

from sla_planner.cli.run import RunArgs, run_planner
from sla_planner.config import PlannerConfig
from sla_planner.connectors import InMemoryConnector
from sla_planner.signals.mock_engine import MockEngine
from sla_planner.sim.frontend_metrics import FrontendMetrics, FrontendMetricsServer
from sla_planner.types import Pool

P, D = Pool.PREFILL, Pool.DECODE
MODEL = "example-model"
NS = "sandbox"
RATE_RPS = 40.0
PERF = constant_perf(prefill_tok_s=50_000.0, itl_ms=10.0, max_kv=100_000)


class Stack:
    def __init__(self, prom: RunningPrometheus, engines: list[MockEngine]) -> None:
        self.prom = prom
        self.fpm = [f"{e.role}={ep}" for e in engines for ep in e.endpoints]

    def config(self, **overrides: Any) -> dict[str, Any]:
        return {
            "optimization_target": "sla",
            "profile_results_dir": "builtin:example",
            "throughput_adjustment_interval": 2,
            "load_adjustment_interval": 1,
            "enable_load_scaling": True,
            "metric_pulling_prometheus_endpoint": self.prom.url,
            "model_name": MODEL,
            "namespace": NS,
            **overrides,
        }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if PROMETHEUS is None:
        pytest.skip("the Debian 'prometheus' binary is not installed (apt-get install prometheus)")
    metrics = FrontendMetrics(MODEL, dynamo_namespace=NS)
    stop = threading.Event()

    def feed() -> None:  # a steady load: RATE_RPS requests of ISL 3000 / OSL 150
        while not stop.wait(0.1):
            for _ in range(int(RATE_RPS / 10)):
                metrics.observe_request(3000, 150, 0.3, 0.02, 3.3)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    server = FrontendMetricsServer(metrics).start()
    engines = [MockEngine(0, 1, role, PERF, "constant:2?isl=3000&osl=150", f"{role}-w0", time_scale=1.0).start()
               for role in ("prefill", "decode")]
    prom = RunningPrometheus(tmp_path_factory.mktemp("prom"), [f"127.0.0.1:{server.port}"])
    try:
        prom.start()
        prom.wait_scraped()
        prom.wait_for(f'sum(increase(dynamo_frontend_requests_started_total{{model="{MODEL}"}}[3s])) > 0')
        yield Stack(prom, engines)
    finally:
        stop.set()
        prom.stop()
        server.stop()
        for e in engines:
            e.stop()


def read_log(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "the last line is incomplete"
    return [json.loads(line) for line in text.splitlines()]


def planner(stack: Stack, args: RunArgs, **overrides: Any) -> Any:
    cfg = PlannerConfig.from_sources(None, env={}, overrides=stack.config(**overrides))
    if not args.fpm_endpoints:
        args.fpm_endpoints = stack.fpm
    return asyncio.run(run_planner(cfg, args, env={}))


def test_run_writes_decisions_and_stops_cleanly_on_sigterm(stack: Stack, tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    cmd = [sys.executable, "-m", "sla_planner.cli", "run", "--connector", "memory:1,1",
           "--config", json.dumps(stack.config()), "--decisions-out", str(log)]
    for fpm in stack.fpm:
        cmd += ["--fpm-endpoints", fpm]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            kinds = [r["kind"] for r in read_log(log)] if log.exists() else []
            if kinds.count("throughput") >= 2 and kinds.count("load") >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    stderr = err.decode()
    assert proc.returncode == 0, stderr
    assert "SIGTERM: finishing the current tick" in stderr and "Traceback" not in stderr
    records = read_log(log)
    first = records[0]
    assert first["kind"] == "throughput"  # the first throughput tick runs at start
    assert first["observed"]["num_req"] > 0 and first["observed"]["isl"] == pytest.approx(3000)
    assert first["reason"] == "scale_up" and first["apply"]["status"] == "applied"
    assert first["apply"]["decision_id"] == 1 and first["targets"]["prefill"] > 1
    assert all(r["input_errors"] == {} for r in records), [r["input_errors"] for r in records]
    ids = [r["apply"]["decision_id"] for r in records if r["apply"] is not None]
    assert ids == list(range(1, len(ids) + 1))
    assert f"sla-planner run: {len(records)} ticks" in stderr


def test_advisory_mode_records_decisions_and_applies_nothing(stack: Stack, tmp_path: Path) -> None:
    connector = InMemoryConnector({P: 1, D: 1})
    log = tmp_path / "decisions.jsonl"
    stats = planner(stack, RunArgs(duration_s=2.5, decisions_out=str(log), connector=connector), no_operation=True)
    records = read_log(log)
    with_targets = [r for r in records if r["targets"] is not None]
    assert with_targets and all(r["apply"]["status"] == "advisory" for r in with_targets)
    assert connector.requests == [] and connector.current() == {P: 1, D: 1}
    assert stats.applies == {"advisory": len(with_targets)} and connector.closed


def test_prometheus_down_holds_with_unknown_traffic_and_never_scales(stack: Stack, tmp_path: Path) -> None:
    connector = InMemoryConnector({P: 1, D: 1})
    log = tmp_path / "decisions.jsonl"
    stats = planner(stack, RunArgs(duration_s=2.5, decisions_out=str(log), connector=connector),
                    metric_pulling_prometheus_endpoint=f"http://127.0.0.1:{free_port()}", enable_load_scaling=False)
    records = read_log(log)
    assert len(records) == 2 and all(r["kind"] == "throughput" for r in records)
    assert all(r["reason"] == "unknown_traffic" and r["apply"] is None for r in records)
    assert all("ClientConnectorError" in r["input_errors"]["prometheus"] for r in records)
    assert connector.requests == [] and stats.input_errors == {"prometheus": 2}


def test_unreadable_deployment_is_unknown_workers(stack: Stack, tmp_path: Path) -> None:
    connector = InMemoryConnector({P: 1, D: 1})
    connector.fail_reads = 10**6
    log = tmp_path / "decisions.jsonl"
    planner(stack, RunArgs(duration_s=2.5, decisions_out=str(log), connector=connector))
    records = read_log(log)
    assert {r["kind"] for r in records} == {"throughput", "load"}
    assert all(r["reason"] == "unknown_workers" and r["apply"] is None for r in records)
    assert all("read failed" in r["input_errors"]["connector"] for r in records)
    assert connector.requests == []


def test_a_failed_apply_is_recorded_as_failed_never_as_applied(stack: Stack, tmp_path: Path) -> None:
    connector = InMemoryConnector({P: 1, D: 1})
    connector.fail_applies = 10**6
    log = tmp_path / "decisions.jsonl"
    stats = planner(stack, RunArgs(duration_s=2.5, decisions_out=str(log), connector=connector))
    applied = [r["apply"] for r in read_log(log) if r["apply"] is not None]
    assert applied and all(a["status"] == "failed" and "injected fault" in a["detail"] for a in applied)
    assert connector.current() == {P: 1, D: 1} and connector.history == []
    assert stats.applies == {"failed": len(applied)}


def test_a_restarted_planner_warms_its_predictors_from_prometheus_history(stack: Stack) -> None:
    from sla_planner.live import warm_up_from_history
    from sla_planner.predict import predictors_from_config
    from sla_planner.signals.prometheus import PrometheusTraffic

    cfg = PlannerConfig.from_sources(None, env={}, overrides=stack.config(load_predictor="constant"))
    traffic = PrometheusTraffic.from_config(cfg)
    forecaster = predictors_from_config(cfg)

    async def go() -> int:
        try:  # the three windows before the one the first tick will read
            return await warm_up_from_history(forecaster, traffic.history, 2.0, 3, time.time() - 2.0, 5.0)
        finally:
            await traffic.close()

    assert asyncio.run(go()) == 3
    forecast = forecaster.forecast()
    assert forecast.num_req == pytest.approx(RATE_RPS * 2.0, rel=0.5)  # ~80 requests per 2 s window
    assert forecast.isl == pytest.approx(3000) and forecast.osl == pytest.approx(150)
