"""Bad input on the command line ends in exit 2 and ``error: ...``, never a traceback.

The cases of issue 11 end to end (config, plan numbers, traces), then a fuzz-ish sweep: every
flag of every command given hostile values.
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sla_planner.cli import build_parser, main
from sla_planner.config import PlannerConfig

EXAMPLE = ["--profile-results-dir", "builtin:example"]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of one in-process run (argparse exits are codes too)."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code, _, err = _run(argv, capsys)
    assert code == 2, (argv[:6], err[-500:])
    assert "error:" in err and "Traceback" not in err, err[-500:]
    assert len(err) < 20_000  # messages quote hostile values short, not whole
    return err


# -- the cases of the issue -------------------------------------------------------------------------


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


CONFIG_FILES = [
    pytest.param("c.json", "[" * 100_000, "nested more than 64 levels deep", id="deep-json"),
    pytest.param("c.json", '{"a": ' + _nested(100_000) + "}", "nested more than 64 levels deep", id="deep-json-closed"),
    pytest.param("c.yaml", "x: " + _nested(100_000), "nested more than 64 levels deep", id="deep-yaml"),
    pytest.param("c.yaml", "? [a, b]\n: 1\n", "a mapping key is a list", id="yaml-list-key"),
    pytest.param("c.yaml", "max_gpu_budget: " + "9" * 5000, "integer of 5,000 digits", id="yaml-5000-digits"),
    pytest.param("c.json", '{"max_gpu_budget": ' + "9" * 5000 + "}", "integer of 5,000 digits", id="json-5000-digits"),
    pytest.param("c.json", '{"max_gpu_budget": ' + "9" * 30 + "}", "max_gpu_budget: must be at most 2,147,483,647", id="json-30-digits"),
    pytest.param("c.cfg", "[" * 100_000, "neither JSON nor YAML", id="deep-unknown-suffix"),
]


@pytest.mark.parametrize(("name", "text", "fragment"), CONFIG_FILES)
def test_hostile_config_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, fragment: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    err = _refused(["validate", "--config", str(path)], capsys)
    assert f"config file {path}" in err and fragment in err


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        pytest.param("[" * 100_000, "inline JSON config: invalid JSON: nested more than 64 levels deep", id="deep"),
        pytest.param(_nested(100_000), "inline JSON config: invalid JSON: nested more than 64 levels deep", id="deep-closed"),
        pytest.param('{"isl": ' + "9" * 5000 + "}", "key 'isl': integer of 5,000 digits", id="5000-digits"),
        pytest.param("{" * 10 + "x" * 2_000_000, "longer than 1,048,576 characters", id="2-megabytes"),
    ],
)
def test_hostile_inline_config(capsys: pytest.CaptureFixture[str], value: str, fragment: str) -> None:
    assert fragment in _refused(["validate", "--config", value], capsys)


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        pytest.param(["--isl", "1e308"], "isl: must be at most 1e+15 in magnitude", id="isl-1e308"),
        pytest.param(["--osl", "1e308"], "osl: must be at most", id="osl-1e308"),
        pytest.param(["--num-req", "1e308"], "argument --num-req: must be a finite number in [0, 1e+15]", id="num-req-1e308"),
        pytest.param(["--interval", "1e-320"], "argument --interval: must be a finite number in [0.001, 1e+09]", id="interval-subnormal"),
        pytest.param(["--max-gpu-budget", "9" * 400], "argument --max-gpu-budget: expected an integer, got '999", id="budget-400-digits"),
        pytest.param(["--throughput-adjustment-interval", "9" * 30], "throughput_adjustment_interval: must be at most", id="interval-30-digits"),
        pytest.param(["--load-min-observations", "9" * 30], "load_min_observations: must be at most", id="min-observations-30-digits"),
    ],
)
def test_plan_numbers_are_bounded(capsys: pytest.CaptureFixture[str], flags: list[str], fragment: str) -> None:
    argv = ["plan", *EXAMPLE, "--num-req", "10", "--optimization-target", "sla", *flags]
    assert fragment in _refused(argv, capsys)


def test_plan_at_the_bounds_still_plans(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["plan", *EXAMPLE, "--json", "--optimization-target", "sla", "--num-req", "1e15",
            "--isl", "1e15", "--osl", "1e15", "--interval", "0.001", "--max-gpu-budget", str(2**31 - 1)]
    code, out, err = _run(argv, capsys)
    assert code == 0, err
    assert json.loads(out)["budget"]["action"] == "scaled_down_to_budget"


def _jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _good_lines(n: int) -> list[str]:
    return [json.dumps({"timestamp": i * 1000, "input_length": 1000, "output_length": 50}) for i in range(n)]


TRACE_LINES = [
    pytest.param('{"timestamp": ' + "9" * 400 + ', "input_length": 10, "output_length": 5}',
                 "field 'timestamp' must be finite", id="timestamp-400-digits"),
    pytest.param('{"timestamp": 10000, "input_length": ' + str(2**63) + ', "output_length": 5}',
                 "field 'input_length' must be at most 2,147,483,647 tokens", id="input-length-2**63"),
    pytest.param('{"timestamp": 10000, "input_length": 5, "output_length": ' + str(2**64) + "}",
                 "field 'output_length' must be at most", id="output-length-2**64"),
    pytest.param('{"timestamp": 1e300, "input_length": 5, "output_length": 5}',
                 "field 'timestamp' must be at most 1e+13 ms", id="timestamp-1e300"),
    pytest.param('{"timestamp": 10000, "input_length": 5, "output_length": 5, "hash_ids": [' + str(2**70) + "]}",
                 "field 'hash_ids' item 0 must fit 64 bits", id="hash-id-2**70"),
]


@pytest.mark.parametrize(("bad", "fragment"), TRACE_LINES)
def test_overflowing_trace_values_are_bad_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str, fragment: str) -> None:
    lines = _good_lines(30)
    lines.insert(10, bad)
    trace = _jsonl(tmp_path / "t.jsonl", lines)
    base = ["replay", "--trace", str(trace), *EXAMPLE, "--policy", "static:1,1", "--no-report"]
    err = _refused(base, capsys)
    assert f"{trace}:11: {fragment}" in err
    code, out, err = _run([*base, "--skip-bad-lines", "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["trace_bad_lines"] == 1 and summary["requests_total"] == 30


def test_unterminated_csv_quote_costs_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = ["timestamp,input_length,output_length"] + [f"{i},100,10" for i in range(300)]
    rows[4] = '"3,100,10'  # the quote never closes
    trace = tmp_path / "t.csv"
    trace.write_text("\n".join(rows) + "\n")
    base = ["replay", "--trace", str(trace), *EXAMPLE, "--policy", "static:1,1", "--no-report"]
    assert f"{trace}:5: malformed CSV (a quoted field is not closed within 64 lines)" in _refused(base, capsys)
    code, out, err = _run([*base, "--skip-bad-lines", "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["requests_total"], summary["trace_bad_lines"]) == (299, 1)


@pytest.mark.parametrize(
    ("tokens", "rejected"),
    [pytest.param(131_072 - 5, 0, id="just-inside-context"), pytest.param(131_072 - 4, 1, id="just-outside-context"),
     pytest.param(10**7, 1, id="ten-million-tokens")],
)
def test_requests_longer_than_the_context_are_rejected_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tokens: int, rejected: int
) -> None:
    lines = _good_lines(60)
    lines.insert(10, json.dumps({"timestamp": 10_000, "input_length": tokens, "output_length": 5}))
    trace = _jsonl(tmp_path / "t.jsonl", lines)
    code, out, err = _run(["replay", "--trace", str(trace), *EXAMPLE, "--policy", "static:2,2",
                           "--no-report", "--json"], capsys)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["requests_rejected_too_long"] == rejected
    assert summary["requests_total"] == 61 - rejected
    if tokens == 10**7:
        assert summary["sim_duration_s"] < 120  # the replay does not wait out the drain for it
        assert summary["outcomes"]["unfinished"] == 0 if "outcomes" in summary else True


def test_gzip_trace_with_a_bad_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "t.jsonl.gz"
    with gzip.open(trace, "wt") as fh:
        fh.write("\n".join([*_good_lines(3), '{"timestamp": ' + "9" * 400 + "}"]) + "\n")
    assert f"{trace}:4:" in _refused(["replay", "--trace", str(trace), *EXAMPLE, "--no-report"], capsys)


# -- every flag of every command, hostile values ------------------------------------------------------

BASES: dict[str, list[str]] = {
    "plan": ["plan", *EXAMPLE, "--num-req", "10"],
    "validate": ["validate"],
    "replay": ["replay", "--trace", "synthetic:poisson?rate_rps=1&duration_s=10", *EXAMPLE,
               "--policy", "static:1,1", "--no-report"],
    "demo": ["demo", "--trace", "synthetic:poisson?rate_rps=1&duration_s=10", "--no-report"],
    "fpm-watch": ["fpm-watch", "--endpoints", "tcp://127.0.0.1:9", "--duration", "0"],
    "mock-engine": ["mock-engine", "--port", "0", "--duration", "0"],
    "bench": ["bench", "--quick", "--only", "no-such-case"],
    "run": ["run", "--connector", "memory:1,1", "--duration", "0", *EXAMPLE, "--live-dashboard-port", "0",
            "--optimization-target", "sla", "--no-enable-load-scaling",
            "--metric-pulling-prometheus-endpoint", "http://127.0.0.1:9"],
    "evaluate": ["evaluate", "--traces", "synthetic:poisson?rate_rps=1&duration_s=10",
                 "--profiles", "builtin:example", "--policies", "static:1,1", "--jobs", "1",
                 "--quiet"],
    "profile": ["profile", "--system", "h100_sxm", "--model", "Qwen/Qwen3-8B", "--out", "prof"],
}

#: Values no number flag accepts.
HOSTILE_NUMBERS = ["nan", "inf", "-inf", "1e308", "-1e308", "9" * 400, "-" + "9" * 5000, "", "x" * 5000]

#: Values no path-like flag accepts (name too long, NUL byte, nothing there).
HOSTILE_PATHS = ["x" * 5000, "a\x00b", "no/such/thing/here"]
PATH_FLAGS = {
    "--config", "--profile-results-dir", "--sim-profile-results-dir", "--trace", "--load",
    "--discovery-file", "--fpm-discovery-file", "--matrix",
}
#: Text flags with a grammar, and values each refuses (``--out`` is created, not read).
TEXT_FLAGS = {
    "--out": ["x" * 5000, "a\x00b"],
    "--metrics-out": ["x" * 5000, "a\x00b"],
    "--decisions-out": ["x" * 5000, "a\x00b"],
    "--connector": ["x" * 5000, "memory:-1,1", "memory:" + "9" * 5000, ""],
    "--fpm-endpoints": ["x" * 5000, "a\x00b", "tcp://host:99999"],
    "--only": ["x" * 5000, ""],
    "--endpoints": ["x" * 5000, "a\x00b", "", "tcp://host:99999", "decode=" + "[" * 1000],
    "--bind-host": ["x" * 5000, "a\x00b", ""],
    "--policy": ["x" * 5000, "static:" + "9" * 5000, "python:" + "x" * 5000 + ":C", ""],
    "--baseline": ["x" * 5000, "static:-1", ""],
    "--initial-replicas": ["x" * 5000, "-1,2", "9" * 5000 + ",1", ""],
    "--traces": ["x" * 5000, "a\x00b", ""],
    "--profiles": ["x" * 5000, "a\x00b", ""],
    "--policies": ["x" * 5000, "static:-1", ""],
    "--ray": ["x" * 5000, "a\x00b", ""],
    "--system": ["x" * 5000, ""],
    "--model": ["x" * 5000, "a\x00b", ""],
}


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub: argparse.ArgumentParser = action.choices[command]
    return sub


def _number_flag(action: argparse.Action) -> bool:
    return action.type is not None and action.type is not str and action.choices is None


def _cases() -> Iterator[object]:
    config_fields = set(PlannerConfig.model_fields)
    for command, base in BASES.items():
        for action in _subparser(command)._actions:
            if not action.option_strings or action.nargs == 0:
                continue
            flag = action.option_strings[0]
            # config flags are the same on every command: swept once, on `validate`
            if action.dest in config_fields and command != "validate":
                continue
            if flag in PATH_FLAGS:
                values = HOSTILE_PATHS
            elif flag in TEXT_FLAGS:
                values = TEXT_FLAGS[flag]
            elif _number_flag(action):
                values = HOSTILE_NUMBERS
            elif action.choices is not None:
                values = ["", "x" * 5000]
            else:
                continue  # free text (names, namespaces): any string is a value
            for value in values:
                yield pytest.param(base, flag, value, id=f"{command} {flag} {value[:12]!r}")


@pytest.mark.parametrize(("base", "flag", "value"), list(_cases()))
def test_every_flag_refuses_hostile_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    base: list[str], flag: str, value: str,
) -> None:
    monkeypatch.chdir(tmp_path)  # relative names resolve to nothing
    _refused([*base, f"{flag}={value}" if value.startswith("-") else flag, *([] if value.startswith("-") else [value])], capsys)


def test_the_sweep_covers_every_command() -> None:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands = {case.values[0][0] for case in _cases()}  # type: ignore[attr-defined]
    assert commands == set(BASES) == set(action.choices)
