"""The `sla-planner` command end to end: plan and validate, exit codes and JSON shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sla_planner.cli import main

EXAMPLE = ["--profile-results-dir", "builtin:example"]


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:  # type: ignore[type-arg]
    assert main(["plan", *EXAMPLE, "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_plan_json_has_the_documented_fields(capsys: pytest.CaptureFixture[str]) -> None:
    # queue-aware sizing off: the throughput formula alone
    r = run_json(capsys, "--num-req", "600", "--isl", "3000", "--osl", "150", "--ttft-attainment-target", "0")
    for key in ("prefill_replicas", "decode_replicas", "reasons", "proposals", "corrections", "budget"):
        assert key in r
    assert r["prefill_replicas"] >= 1 and r["decode_replicas"] >= 1
    assert r["agg_replicas"] is None
    pre = r["proposals"]["prefill"]
    # prefill demand is N*ISL/T tokens/s
    assert pre["demand_tokens_per_s"]["prefill"] == pytest.approx(600 * 3000 / 60)
    # the replica count is the ceiling of the exact need (budget not binding here)
    assert r["prefill_replicas"] == max(1, -(-pre["raw_replicas"] // 1))
    assert r["budget"]["action"] == "within_budget"


def test_plan_more_traffic_never_needs_fewer_engines(capsys: pytest.CaptureFixture[str]) -> None:
    low = run_json(capsys, "--num-req", "600", "--isl", "3000", "--osl", "150")
    high = run_json(capsys, "--num-req", "6000", "--isl", "3000", "--osl", "150")
    assert high["prefill_replicas"] > low["prefill_replicas"]
    assert high["decode_replicas"] >= low["decode_replicas"]


def test_plan_budget_flag_caps_the_total(capsys: pytest.CaptureFixture[str]) -> None:
    r = run_json(capsys, "--num-req", "60000", "--isl", "8000", "--osl", "500", "--max-gpu-budget", "10")
    assert r["prefill_replicas"] + r["decode_replicas"] <= 10
    assert r["budget"]["action"] == "scaled_down_to_budget"
    assert "budget:scaled_down_to_budget" in r["reasons"]


@pytest.mark.parametrize(
    "mode,present,absent",
    [("agg", "agg_replicas", "prefill_replicas"), ("prefill", "prefill_replicas", "decode_replicas"),
     ("decode", "decode_replicas", "prefill_replicas")],
)
def test_plan_modes_null_missing_pools(capsys: pytest.CaptureFixture[str], mode: str, present: str, absent: str) -> None:
    r = run_json(capsys, "--num-req", "600", "--mode", mode)
    assert r[present] >= 1
    assert r[absent] is None


def test_plan_correction_factor_from_observations(capsys: pytest.CaptureFixture[str]) -> None:
    r = run_json(capsys, "--num-req", "600", "--observed-ttft-ms", "1", "--enable-throughput-scaling",
                 "--optimization-target", "sla")
    c = r["corrections"]["prefill"]
    assert c["status"] == "applied" and c["factor"] < 1.0


def test_plan_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", *EXAMPLE, "--num-req", "600"]) == 0
    out = capsys.readouterr().out
    assert "prefill" in out and "decode" in out and "budget" in out


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["plan", "--num-req", "600"], "profile_results_dir"),
        (["plan", "--profile-results-dir", "/nonexistent-profile-dir", "--num-req", "1"], "nonexistent-profile-dir"),
        (["plan", *EXAMPLE, "--num-req", "1", "--min-endpoint", "100"], "max_gpu_budget"),
        (["plan", *EXAMPLE, "--num-req", "1", "--config", "{not json"], "config"),
    ],
    ids=["no_profile", "missing_dir", "infeasible_footprint", "bad_config"],
)
def test_plan_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    assert main(argv) == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["-5", "nan", "abc"])
def test_plan_rejects_bad_numbers(bad: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["plan", *EXAMPLE, "--num-req", bad])
    assert exc.value.code == 2


def test_validate_ok_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("optimization_target: sla\nenable_throughput_scaling: true\nttft: 500\n")
    assert main(["validate", "--config", str(good), *EXAMPLE]) == 0
    assert "ok" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"ttft": -1, "mode": "sideways"}))
    assert main(["validate", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "ttft" in err and "mode" in err


def test_validate_bad_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "prefill_raw_data.json").write_text(json.dumps({"prefill_isl": [1, 2]}))
    (tmp_path / "decode_raw_data.json").write_text("{}")
    assert main(["validate", "--profile-results-dir", str(tmp_path)]) == 2
    assert "prefill_raw_data.json" in capsys.readouterr().err


def test_console_script_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sla_planner.cli", "plan", *EXAMPLE, "--num-req", "600", "--json"],
        capture_output=True, text=True, check=True,
    )
    assert json.loads(out.stdout)["prefill_replicas"] >= 1
