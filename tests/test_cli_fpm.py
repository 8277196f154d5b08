"""`sla-planner fpm-watch` and `mock-engine` in-process: JSON shape, table, exit codes."""

from __future__ import annotations

import json
import time
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sim_helpers import constant_perf

from sla_planner.cli import main
from sla_planner.kernels.fpm_ref import QUEUED_FIELDS, ROOT_KEYS, SCHEDULED_FIELDS
from sla_planner.signals.mock_engine import MockEngine

PERF = constant_perf(prefill_tok_s=20_000.0, itl_ms=10.0, max_kv=100_000)
REQUIRED_COUNTERS = {"received", "decoded", "malformed", "wrong_version", "heartbeats", "bad_frames"}


@pytest.fixture(scope="module")
def engine() -> Iterator[MockEngine]:
    """A two-rank decode mock engine publishing for the whole module."""
    with MockEngine(0, 2, "decode", PERF, "constant:20?isl=300&osl=20", "cli-mock", time_scale=5.0) as e:
        # publishing starts after the simulator is compiled (seconds on a cold numba cache)
        deadline = time.monotonic() + 120
        while sum(e.published) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        yield e


def watch_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["fpm-watch", "--json", *argv]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def test_fpm_watch_json_shape(engine: MockEngine, capsys: pytest.CaptureFixture[str]) -> None:
    endpoints = ",".join(f"prefill={ep}" if i else ep for i, ep in enumerate(engine.endpoints))
    r = watch_json(capsys, "--endpoints", endpoints, "--duration", "0.8", "--stale-after", "5")
    assert {(e["worker_id"], e["dp_rank"]) for e in r["engines"]} == {("cli-mock", 0), ("cli-mock", 1)}
    roles = {e["dp_rank"]: e["role"] for e in r["engines"]}
    assert roles == {0: "decode", 1: "prefill"}  # default role, then the ROLE= prefix
    for e in r["engines"]:
        assert {"worker_id", "dp_rank", "role", "latest", "received", "stale"} <= set(e)
        assert e["received"] > 0 and e["stale"] is False
        latest = e["latest"]
        assert set(latest) == set(ROOT_KEYS)  # the shape decode_fpm returns
        assert latest["version"] == 1 and latest["worker_id"] == "cli-mock" and latest["dp_rank"] == e["dp_rank"]
        assert set(latest["scheduled_requests"]) == {name for name, _ in SCHEDULED_FIELDS}
        assert set(latest["queued_requests"]) == {name for name, _ in QUEUED_FIELDS}
        assert all(isinstance(v, int) for k, v in latest["scheduled_requests"].items() if not k.startswith("var_"))
    c = r["counters"]
    assert REQUIRED_COUNTERS <= set(c)
    assert c["received"] >= c["decoded"] > 0 and c["bad_frames"] == 0
    assert r["endpoints"] == [
        {"endpoint": engine.endpoints[0], "role": "decode"}, {"endpoint": engine.endpoints[1], "role": "prefill"}
    ]


def test_fpm_watch_table(engine: MockEngine, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fpm-watch", "--endpoints", engine.endpoints[0], "--role", "agg", "--duration", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "worker_id" in out and "cli-mock" in out and " agg " in out
    assert "counters: received" in out and "bad_frames 0" in out


def test_fpm_watch_discovery_file_with_endpoints(
    engine: MockEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "engines.json"
    path.write_text(json.dumps([{"endpoint": engine.endpoints[1], "role": "agg"}]))
    r = watch_json(capsys, "--discovery-file", str(path), "--endpoints", engine.endpoints[0], "--duration", "0.8")
    assert {e["dp_rank"]: e["role"] for e in r["engines"]} == {0: "decode", 1: "agg"}
    assert r["discovery_error"] is None


def test_fpm_watch_with_nothing_publishing(capsys: pytest.CaptureFixture[str]) -> None:
    r = watch_json(capsys, "--endpoints", "tcp://127.0.0.1:9", "--duration", "0")
    assert r["engines"] == [] and r["counters"]["received"] == 0
    assert main(["fpm-watch", "--endpoints", "tcp://127.0.0.1:9", "--duration", "0"]) == 0
    assert "no ForwardPassMetrics received" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--endpoints", "tcp://127.0.0.1:0"], "--endpoints: endpoint 'tcp://127.0.0.1:0': port must be"),
        (["--endpoints", "tcp://127.0.0.1:65536"], "port must be an integer in 1..65535"),
        (["--endpoints", "http://127.0.0.1:80"], "scheme 'http' is not supported"),
        (["--endpoints", "router=tcp://127.0.0.1:1"], "role must be one of prefill, decode, agg"),
        (["--endpoints", "tcp://127.0.0.1:1,,tcp://127.0.0.1:2"], "item 2 is empty"),
        (["--endpoints", "tcp://127.0.0.1:1,tcp://127.0.0.1:1"], "listed twice"),
        ([], "needs --endpoints or --discovery-file"),
        (["--discovery-file", "no-such-dir/engines.txt"], "--discovery-file: .*cannot read"),
    ],
    ids=["port-0", "port-65536", "scheme", "role", "empty-item", "duplicate", "nothing", "missing-file"],
)
def test_fpm_watch_bad_input_exits_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fpm-watch", "--duration", "0", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert re.search(message, err), err


def test_fpm_watch_bad_discovery_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "engines.txt"
    path.write_text("decode tcp://127.0.0.1:1\nrouter tcp://127.0.0.1:2\n")
    assert main(["fpm-watch", "--discovery-file", str(path), "--duration", "0"]) == 2
    assert "line 2" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [["--duration", "-1"], ["--duration", "nan"], ["--stale-after", "0"], ["--role", "router"]],
    ids=["duration-negative", "duration-nan", "stale-zero", "role"],
)
def test_fpm_watch_bad_flags_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["fpm-watch", "--endpoints", "tcp://127.0.0.1:1", *argv])
    assert exc.value.code == 2


# ------------------------------------------------------------------ mock-engine
def test_mock_engine_command_runs_for_the_duration(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["mock-engine", "--port", "0", "--dp-ranks", "2", "--role", "agg", "--load", "constant:10?isl=200&osl=10",
            "--duration", "0.4", "--time-scale", "5", "--worker-id", "cli-run", "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["worker_id"] == "cli-run" and summary["role"] == "agg" and len(summary["endpoints"]) == 2
    assert summary["requests_sent"] > 0 and summary["interrupted"] is False
    assert "publishing on tcp://127.0.0.1:" in captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--load", "constant:fast"], "RPS must be a number"),
        (["--load", "synthetic:nope"], "unknown kind"),
        (["--profile-results-dir", "no-such-profile-dir"], "no-such-profile-dir"),
        (["--worker-id", ""], "worker_id must be a non-empty string"),
    ],
    ids=["load-word", "synthetic-kind", "profile", "worker-id"],
)
def test_mock_engine_bad_input_exits_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mock-engine", "--port", "0", "--duration", "0", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [["--port", "65536"], ["--port", "-1"], ["--port", "x"], ["--dp-ranks", "0"], ["--time-scale", "0"], []],
    ids=["port-high", "port-negative", "port-word", "ranks-zero", "time-scale-zero", "no-port"],
)
def test_mock_engine_bad_flags_are_usage_errors(argv: list[str]) -> None:
    base = [] if not argv or argv[0] == "--port" else ["--port", "0"]
    with pytest.raises(SystemExit) as exc:
        main(["mock-engine", *base, *argv])
    assert exc.value.code == 2
