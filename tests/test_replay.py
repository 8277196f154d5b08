"""Replay end to end: outputs, determinism, the planner against static deployments, the CLI."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from sla_planner.cli import main
from sla_planner.config import PlannerConfig
from sla_planner.core.planner import PlannerCore, StaticPolicy
from sla_planner.perf import load_profile
from sla_planner.predict import predictors_from_config
from sla_planner.replay import ReplayOptions, run_replay
from sla_planner.sim.cluster import SimCluster, SimPerf, SimSettings
from sla_planner.traces.open import open_trace
from sla_planner.types import Pool

P, D = Pool.PREFILL, Pool.DECODE
BURSTY = (  # one 10-minute burst at ten times the base rate in an hour
    "synthetic:bursts?base_rps=2&burst_rps=20&burst_every_s=1800&burst_len_s=600&duration_s=3600"
    "&isl=lognormal:3000:0.5&osl=lognormal:200:0.5&seed=5"
)
# The same bursts at twice the pace over 20 minutes: the behaviour, in a few seconds.
BURSTY_SHORT = (
    "synthetic:bursts?base_rps=2&burst_rps=20&burst_every_s=600&burst_len_s=300&duration_s=1200"
    "&isl=lognormal:3000:0.5&osl=lognormal:200:0.5&seed=5"
)
TRACES = [
    pytest.param(BURSTY_SHORT, 7_000, id="20-minutes"),
    pytest.param(BURSTY, 17_000, id="1-hour", marks=pytest.mark.slow),
]


@pytest.fixture(scope="module")
def models():  # type: ignore[no-untyped-def]
    return load_profile("builtin:example")


def _cfg(**overrides: object) -> PlannerConfig:
    base: dict[str, object] = {"optimization_target": "sla", "profile_results_dir": "builtin:example"}
    base.update(overrides)
    return PlannerConfig.from_sources(None, env={}, overrides=base)


def _replay(models, policy, initial, out: Path | None = None, trace: str = BURSTY):  # type: ignore[no-untyped-def]
    cluster = SimCluster(SimPerf.from_models(models.prefill, models.decode), SimSettings(), initial)
    return run_replay(open_trace(trace), policy, cluster, ReplayOptions(2000.0, 30.0, out_dir=out))


@pytest.mark.parametrize(("trace", "min_requests"), TRACES)
def test_planner_beats_static_mean_and_costs_less_than_static_peak(models, trace: str, min_requests: int) -> None:  # type: ignore[no-untyped-def]
    cfg = _cfg()
    # what `sla-planner plan` sizes for the mean (5 rps) and for the peak (20 rps) of this trace
    mean, peak = {P: 2, D: 1}, {P: 3, D: 2}
    static_mean = _replay(models, StaticPolicy(mean), mean, trace=trace).summary
    static_peak = _replay(models, StaticPolicy(peak), peak, trace=trace).summary
    planner = _replay(
        models, PlannerCore(cfg, predictors_from_config(cfg), models.prefill, models.decode), mean,
        trace=trace,
    ).summary
    assert planner["sla_attainment"] > static_mean["sla_attainment"] + 0.2
    if trace == BURSTY:
        # saving on the peak needs quiet periods longer than the 120 s engine start-up
        assert planner["gpu_hours"] < static_peak["gpu_hours"]
    assert planner["scale_events"] > 0
    assert planner["requests_failed_scale_down"] == 0  # engines leave only once drained
    for s in (static_mean, static_peak, planner):
        assert s["requests_total"] > min_requests  # every arrival is accounted for
        assert s["requests_total"] == s["requests_ok"] + s["requests_failed"]


@pytest.mark.parametrize(("trace", "min_requests"), TRACES)
def test_replay_is_deterministic_and_writes_its_outputs(models, tmp_path: Path, trace: str, min_requests: int) -> None:  # type: ignore[no-untyped-def]
    cfg = _cfg()
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        _replay(models, PlannerCore(cfg, predictors_from_config(cfg), models.prefill, models.decode),
                {P: 2, D: 1}, out, trace)
        summary = json.loads((out / "summary.json").read_text())
        summary.pop("wall_time_s")
        summary.pop("requests_per_wall_s")
        summary.pop("sim_s_per_wall_s")
        runs.append(((out / "decisions.jsonl").read_text(), summary, (out / "requests.csv").read_text()))
    assert runs[0] == runs[1]
    decisions = [json.loads(line) for line in runs[0][0].splitlines()]
    assert decisions and all({"t_s", "reason", "targets", "observed", "detail"} <= set(d) for d in decisions)
    rows = list(csv.DictReader(runs[0][2].splitlines()))
    assert len(rows) == runs[0][1]["requests_total"] > min_requests
    assert {r["outcome"] for r in rows} <= {"ok", "failed_engine_removed", "rejected_too_long", "unfinished"}


def test_cli_replay_writes_report_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(
        json.dumps({"timestamp": i * 500, "input_length": 2000, "output_length": 50}) + "\n" for i in range(200)
    ))
    out = tmp_path / "out"
    assert main(["replay", "--trace", str(trace), "--profile-results-dir", "builtin:example",
                 "--optimization-target", "sla", "--policy", "static:1,1", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    for key in ("requests_total", "requests_failed", "ttft_sla_attainment", "itl_sla_attainment",
                "sla_attainment", "ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms", "gpu_hours",
                "scale_events", "sim_duration_s", "wall_time_s", "policy"):
        assert key in summary
    assert summary["requests_total"] == 200
    assert summary["policy"] == "static:1,1"
    html = (out / "report.html").read_text()
    assert "<html" in html.lower() and "Plotly" in html


def test_cli_replay_bad_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "bad.jsonl.gz"
    with gzip.open(trace, "wt") as f:
        f.write(json.dumps({"timestamp": 0, "input_length": 100, "output_length": 5}) + "\n")
        f.write("{not json\n")
        f.write(json.dumps({"timestamp": 10, "input_length": 100, "output_length": 5}) + "\n")
    args = ["replay", "--trace", str(trace), "--profile-results-dir", "builtin:example",
            "--optimization-target", "sla", "--policy", "static:1,1", "--json", "--no-report"]
    assert main(args) == 2
    assert "bad.jsonl.gz:2" in capsys.readouterr().err
    assert main([*args, "--skip-bad-lines"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["trace_bad_lines"] == 1 and summary["requests_total"] == 2


@pytest.mark.parametrize(
    "policy,needle",
    [("static:1", "expected P,D"), ("static:a,b", "not an integer"), ("magic", "expected planner"),
     ("python:nonexistent_mod:X", "cannot load")],
)
def test_cli_replay_bad_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str], policy: str, needle: str) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text(json.dumps({"timestamp": 0, "input_length": 10, "output_length": 2}) + "\n")
    assert main(["replay", "--trace", str(trace), "--profile-results-dir", "builtin:example",
                 "--optimization-target", "sla", "--policy", policy, "--no-report"]) == 2
    assert needle in capsys.readouterr().err


def test_demo_runs_and_compares(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path), "--no-report", "--json", "--rate-scale", "0.2",
                 "--time-scale", "0.2"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["planner"]["policy"] == "planner" and r["baseline"]["policy"] == "static:8,4"
    assert r["planner"]["requests_total"] == r["baseline"]["requests_total"] > 1000
    assert r["planner"]["gpu_hours"] < r["baseline"]["gpu_hours"]


def test_load_loop_in_replay_scales_up_on_a_burst_and_down_after_patience(models) -> None:  # type: ignore[no-untyped-def]
    from sla_planner.core.load import EngineCapabilities

    cfg = _cfg(optimization_target="latency", load_scale_down_patience=3, mode="disagg",
               scale_down_stabilization=0)
    caps = EngineCapabilities(max_kv_tokens=int(models.decode.max_kv_tokens))
    policy = PlannerCore(cfg, None, models.prefill, models.decode, caps)
    trace = ("synthetic:bursts?base_rps=1&burst_rps=15&burst_every_s=600&burst_len_s=300&duration_s=1200"
             "&isl=3000&osl=200&seed=2")
    cluster = SimCluster(SimPerf.from_models(models.prefill, models.decode), SimSettings(), {P: 1, D: 1})
    result = run_replay(open_trace(trace), policy, cluster, ReplayOptions(2000.0, 30.0))
    load_ticks = [t for t in result.ticks if t["kind"] == "load"]
    ups = [t["t_s"] for t in load_ticks if t["reason"] == "scale_up"]
    downs = [t["t_s"] for t in load_ticks if t["reason"] == "scale_down"]
    assert ups and min(ups) >= 600.0  # nothing to do before the burst
    assert downs and max(downs) > min(ups)  # and back down once it is over
    # a scale-down needs `patience` consecutive load ticks that all agreed: never within it
    reasons = [t["reason"] for t in load_ticks]
    for i, r in enumerate(reasons):
        if r == "scale_down":
            assert i >= 3
    assert max(t["replicas"]["prefill"] + t["replicas"]["decode"] for t in load_ticks) > 2


@pytest.mark.parametrize(
    "flag,needle",
    [("--sim-time-scale=0", "argument --sim-time-scale: must be a finite number in [1e-06, 1e+06], got '0'"),
     ("--max-num-seqs=0", "argument --max-num-seqs: must be in 1..2,147,483,647, got '0'"),
     ("--max-num-batched-tokens=0", "argument --max-num-batched-tokens: must be in 1..2,147,483,647, got '0'")],
)
def test_cli_replay_bad_simulator_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, needle: str) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text(json.dumps({"timestamp": 0, "input_length": 10, "output_length": 2}) + "\n")
    with pytest.raises(SystemExit) as caught:  # argparse refuses it before anything runs
        main(["replay", "--trace", str(trace), "--profile-results-dir", "builtin:example",
              "--optimization-target", "sla", "--policy", "static:1,1", "--no-report", flag])
    assert caught.value.code == 2
    assert needle in capsys.readouterr().err
