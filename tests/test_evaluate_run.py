"""`sla-planner evaluate` end to end on a short trace: records, outputs, parallel = serial."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sla_planner.cli import main
from sla_planner.evaluate import build_matrix, parse_policy, parse_profile, parse_trace, run_matrix
from sla_planner.evaluate.output import CSV_FIELDS, COLUMNS

from eval_helpers import write_profile

SHORT = "builtin:mooncake_conversation@x4@max_duration_s=150"
WALL = ("wall_s", "replay_wall_s")


@pytest.fixture(scope="module")
def a100(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_profile(tmp_path_factory.mktemp("profiles") / "a100")


@pytest.fixture(scope="module")
def evaluation(a100: Path) -> Any:
    matrix = build_matrix(
        traces=[parse_trace(SHORT)],
        profiles=[parse_profile("builtin:example"), parse_profile(f"a100={a100}")],
        policies=[parse_policy(p) for p in ("planner:sla", "static:mean", "static:peak", "static:best", "oracle")],
    )
    return run_matrix(matrix, jobs=1)


def _by(ev: Any, profile: str, policy: str) -> dict[str, Any]:
    (record,) = [r for r in ev.records if r["profile"] == profile and r["policy"] == policy]
    return record


def test_every_cell_has_a_complete_record(evaluation: Any) -> None:
    assert [r["index"] for r in evaluation.records] == list(range(10))
    for r in evaluation.records:
        assert set(CSV_FIELDS) - {"best_static_target", "best_static_met"} <= set(r)
        assert r["requests"] > 1000
        for key in ("sla_attainment", "sla_attainment_feasible", "ttft_attainment", "itl_attainment"):
            assert 0.0 <= r[key] <= 1.0
        assert r["sla_attainment_feasible"] >= r["sla_attainment"]
        assert r["within_budget"] and r["peak_gpus_requested"] <= r["gpu_budget"] == 128
        assert r["peak_gpus_in_use"] <= r["gpu_budget"]
        assert r["gpu_hours_vs_oracle"] == pytest.approx(r["gpu_hours"] / r["oracle_gpu_hours"])
        assert r["requests_failed"] >= (r["requests_failed_scale_down"] or 0)


def test_cells_of_a_group_share_the_oracle_and_the_infeasible_count(evaluation: Any) -> None:
    for profile in ("example", "a100"):
        rows = [r for r in evaluation.records if r["profile"] == profile]
        assert len({r["oracle_gpu_hours"] for r in rows}) == 1
        assert len({r["requests_infeasible"] for r in rows}) == 1
    # a slower GPU class: more infeasible prompts and a bigger oracle
    assert _by(evaluation, "a100", "oracle")["requests_infeasible"] > _by(evaluation, "example", "oracle")["requests_infeasible"]
    assert _by(evaluation, "a100", "oracle")["oracle_gpu_hours"] > _by(evaluation, "example", "oracle")["oracle_gpu_hours"]


def test_static_baselines(evaluation: Any) -> None:
    for profile in ("example", "a100"):
        mean, peak = _by(evaluation, profile, "static:mean"), _by(evaluation, profile, "static:peak")
        best = _by(evaluation, profile, "static:best")
        for r in (mean, peak, best):
            assert r["scale_events"] == 0 and r["requests_failed_scale_down"] == 0
        assert peak["peak_gpus_requested"] >= mean["peak_gpus_requested"]
        search = best["best_static"]
        assert search["met"] and best["sla_attainment_feasible"] >= search["target"] == 0.95
        assert best["replays"] == len(search["probes"]) <= 40
        # no cheaper probe reached the target
        cheaper = [p for p in search["probes"] if _gpus(p["replicas"]) < best["peak_gpus_requested"]]
        assert all(p["attainment"] < 0.95 for p in cheaper)
        # the planner starts from the static-at-mean deployment
        assert _by(evaluation, profile, "planner:sla")["initial_replicas"] == mean["deployment"]


def _gpus(replicas: str) -> int:
    return sum(int(part[:-1]) for part in replicas.split("+"))


def test_oracle_replay_follows_its_schedule(evaluation: Any) -> None:
    r = _by(evaluation, "example", "oracle")
    assert r["deployment"] == "schedule"
    assert r["scale_events"] > 0
    assert 0.8 < r["gpu_hours_vs_oracle"] < 2.0


def test_table_has_one_row_per_cell(evaluation: Any) -> None:
    from sla_planner.evaluate.output import format_table

    lines = format_table(evaluation.records).splitlines()
    assert lines[0].split()[:3] == ["trace", "profile", "sim×"]
    rows = [line for line in lines[2:] if line.strip()]
    assert len(rows) == 10
    assert len(lines) == 2 + 10 + 1  # one blank line between the two profiles' groups
    assert len(COLUMNS) == 16


def test_cli_writes_json_csv_and_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eval"
    code = main([
        "evaluate", "--traces", SHORT, "--policies", "static:2,1,oracle", "--sim-time-scale", "1,1.15",
        "--jobs", "1", "--out", str(out), "--max-gpu-budget", "64",
    ])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert "[4/4]" in stderr
    assert "static:2,1" in stdout and "oracle" in stdout
    doc = json.loads((out / "results.json").read_text())
    assert doc["schema_version"] == 1 and doc["generated_by"] == "sla-planner evaluate"
    assert doc["matrix"]["sim_time_scales"] == [1.0, 1.15]
    assert doc["matrix"]["config"] == {"max_gpu_budget": 64}
    assert [c["policy"] for c in doc["cells"]] == ["static:2,1", "oracle"] * 2
    assert all(c["gpu_budget"] == 64 for c in doc["cells"])
    rows = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    assert list(rows[0]) == CSV_FIELDS
    assert [r["sim_time_scale"] for r in rows] == ["1.0", "1.0", "1.15", "1.15"]
    assert rows[0]["deployment"] == "2P+1D" and rows[0]["best_static_met"] == ""
    page = (out / "report.html").read_text()
    assert page.count("plotly.js v") == 1  # embedded once
    assert page.count("Plotly.newPlot(") == 3  # a scatter per group (2) and the oracle bars
    assert not re.search(r"<script[^>]+src=", page)  # loads nothing
    # nothing left behind but the three files
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "results.csv", "results.json"]


def test_parallel_processes_give_the_serial_results() -> None:
    matrix = build_matrix(
        traces=[parse_trace(SHORT)],
        profiles=[parse_profile("builtin:example")],
        policies=[parse_policy("planner:sla"), parse_policy("static:mean")],
    )
    serial = run_matrix(matrix, jobs=1)
    parallel = run_matrix(matrix, jobs=2)
    assert (serial.backend, parallel.backend) == ("serial", "processes")

    def strip(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k not in WALL} for r in records]

    assert strip(parallel.records) == strip(serial.records)


def _children(pid: int) -> set[int]:
    """Process ids whose parent is ``pid`` (read from /proc)."""
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.add(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to find the worker processes")
def test_sigterm_stops_the_worker_processes(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sla_planner.cli", "evaluate", "--quick", "--jobs", "2", "--quiet"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        workers: set[int] = set()
        while time.monotonic() < deadline and len(workers) < 2:
            workers = {c for c in _children(proc.pid) if "spawn_main" in open(f"/proc/{c}/cmdline").read()}
            time.sleep(0.05)
        assert len(workers) >= 2, "the workers did not start"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 143
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.05)
        assert not any(_alive(w) for w in workers), "a worker outlived the run"
        err = proc.stderr.read().decode() if proc.stderr else ""
        assert "Traceback" not in err, err[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
