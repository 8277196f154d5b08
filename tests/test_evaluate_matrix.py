"""Matrix specification: string forms, the YAML/JSON file, and clear errors naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sla_planner.cli import main
from sla_planner.errors import ConfigError
from sla_planner.evaluate.matrix_file import matrix_from_file
from sla_planner.evaluate.matrix import (
    PLANNER_PRESETS,
    SimKnobs,
    TraceEntry,
    build_matrix,
    parse_policy,
    parse_profile,
    parse_trace,
    split_list,
)

# (text, expected TraceEntry)
TRACES = [
    ("builtin:mooncake_conversation", TraceEntry("mooncake_conversation", "builtin:mooncake_conversation")),
    ("builtin:mooncake_conversation@x4", TraceEntry("mooncake_conversation x4", "builtin:mooncake_conversation", 0.25)),
    ("fast=builtin:mooncake_conversation@time_scale=0.5@max_duration_s=300",
     TraceEntry("fast", "builtin:mooncake_conversation", 0.5, 1.0, None, 300.0)),
    ("data/trace.jsonl.gz@rate_scale=2@max_requests=100", TraceEntry("trace rate2", "data/trace.jsonl.gz", 1.0, 2.0, 100)),
    ("synthetic:bursts?base_rps=2&burst_rps=9&burst_every_s=60&burst_len_s=10&duration_s=120",
     TraceEntry("bursts", "synthetic:bursts?base_rps=2&burst_rps=9&burst_every_s=60&burst_len_s=10&duration_s=120")),
]


@pytest.mark.parametrize(("text", "expected"), TRACES, ids=[t for t, _ in TRACES])
def test_trace_strings(text: str, expected: TraceEntry) -> None:
    assert parse_trace(text) == expected


# (text, message fragment)
BAD_TRACES = [
    ("@x4", "the trace spec is empty"),
    ("builtin:x@speed=2", "unknown modifier 'speed=2'"),
    ("builtin:x@x0", "must be finite and > 0"),
    ("builtin:x@max_requests=2.5", "max_requests: expected an integer"),
    ("builtin:x@time_scale=fast", "time_scale: expected a number"),
]


@pytest.mark.parametrize(("text", "message"), BAD_TRACES, ids=[t for t, _ in BAD_TRACES])
def test_bad_trace_strings(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="--traces") as err:
        parse_trace(text)
    assert message in str(err.value)


def test_policy_strings() -> None:
    sla = parse_policy("planner:sla")
    assert (sla.name, sla.kind, dict(sla.overrides)) == ("planner:sla", "planner", PLANNER_PRESETS["sla"])
    tuned = parse_policy("kalman=planner:sla?load_predictor=kalman&max_gpu_budget=8&no_correction=true")
    assert tuned.name == "kalman"
    assert dict(tuned.overrides) == {**PLANNER_PRESETS["sla"], "load_predictor": "kalman", "max_gpu_budget": 8,
                                     "no_correction": True}
    assert parse_policy("static:8,4").replicas == (8, 4)
    assert parse_policy("static:3").replicas == (3,)
    assert parse_policy("static:mean").kind == "static_mean"
    assert parse_policy("static:peak").kind == "static_peak"
    assert parse_policy("static:best").target is None
    assert parse_policy("static:best?target=0.9").target == 0.9
    assert parse_policy("oracle").kind == "oracle"
    assert parse_policy("python:my.module:Policy").kind == "python"


BAD_POLICIES = [
    ("planner:fastest", "unknown planner preset 'fastest'"),
    ("static:8,x", "expected static:P,D"),
    ("static:best?target=1.5", "in (0, 1]"),
    ("static:best?margin=2", "unknown static:best parameter 'margin'"),
    ("oracle?x=1", "takes no ?parameters"),
    ("planner:sla?budget", "'budget' is not KEY=VALUE"),
    ("greedy", "unknown policy"),
]


@pytest.mark.parametrize(("text", "message"), BAD_POLICIES, ids=[t for t, _ in BAD_POLICIES])
def test_bad_policy_strings(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_policy(text)
    assert message in str(err.value) and text in str(err.value)


def test_list_splitting_keeps_static_counts_together() -> None:
    assert split_list("planner:sla,static:8,4,static:3,oracle", merge_integers=True) == [
        "planner:sla", "static:8,4", "static:3", "oracle",
    ]
    assert split_list("a, b,,c") == ["a", "b", "c"]


def test_profile_strings() -> None:
    p = parse_profile("slow=builtin:example@sim=/profiles/h100")
    assert (p.name, p.spec, p.simulated) == ("slow", "builtin:example", "/profiles/h100")
    with pytest.raises(ConfigError, match="expected @sim=SPEC"):
        parse_profile("builtin:example@fast=1")


def test_duplicate_names_get_a_suffix() -> None:
    m = build_matrix(
        traces=[parse_trace("builtin:a"), parse_trace("builtin:a@rate_scale=1")],
        profiles=[parse_profile("builtin:example")],
        policies=[parse_policy("static:mean")],
    )
    assert [t.name for t in m.traces] == ["a", "a #2"]
    assert len(m.cells()) == 2


def _write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_matrix_file(tmp_path: Path) -> None:
    path = _write(tmp_path, """
traces:
  - builtin:mooncake_conversation@x4
  - {spec: builtin:mooncake_conversation, name: one-hour, max_duration_s: 600}
profiles: [builtin:example, {spec: builtin:example, name: slow-sim, sim_spec: builtin:example}]
policies:
  - planner:sla
  - {policy: planner:sla, name: kalman, config: {load_predictor: kalman}}
  - {policy: static:best, target: 0.9}
  - static:8,4
sim_time_scales: [1.0, 1.15]
startup_delays: 60
config: {max_gpu_budget: 64}
best_static_target: 0.97
seed: 3
sim: {transfer_s: 0.1, max_num_seqs: 128}
""")
    s = matrix_from_file(path)
    m = build_matrix(**s)
    assert [t.name for t in m.traces] == ["mooncake_conversation x4", "one-hour"]
    assert m.traces[1].max_duration_s == 600.0
    assert [p.name for p in m.profiles] == ["example", "slow-sim"]
    assert [p.name for p in m.policies] == ["planner:sla", "kalman", "static:best", "static:8,4"]
    assert dict(m.policies[1].overrides)["load_predictor"] == "kalman"
    assert m.policies[2].target == 0.9
    assert (m.sim_time_scales, m.startup_delays_s, m.seed) == ((1.0, 1.15), (60.0,), 3)
    assert m.config_dict() == {"max_gpu_budget": 64}
    assert m.sim == SimKnobs(max_num_seqs=128, transfer_s=0.1)
    assert len(m.cells()) == 2 * 2 * 2 * 1 * 4


# (file content, message fragment naming the key)
BAD_FILES = [
    ("traces: [builtin:x]\ncolour: red\n", ".colour: unknown key"),
    ("traces: []\n", "traces: must not be empty"),
    ("traces: true\n", "traces: expected a list"),
    ("traces: [{name: x}]\n", "traces[0].spec: required"),
    ("traces: [{spec: builtin:x, speed: 2}]\n", "traces[0].speed: unknown key"),
    ("profiles: [{spec: ''}]\n", "profiles[0].spec: expected a non-empty string"),
    ("policies: [planner:sla, {policy: static:mean, config: {ttft: 1}}]\n",
     "policies[1].config: only planner and python policies"),
    ("policies: [{policy: planner, target: 0.9}]\n", "policies[0].target: only static:best"),
    ("policies: [{name: x}]\n", "policies[0].policy: required"),
    ("policies: [planner:nope]\n", "policies[0]: 'planner:nope': unknown planner preset"),
    ("sim_time_scales: [1, 0]\n", "sim_time_scales[1]: must be finite and > 0"),
    ("startup_delays: [-1]\n", "startup_delays[0]: must be finite and >= 0"),
    ("best_static_target: 2\n", "best_static_target: an attainment share"),
    ("seed: -1\n", "seed: expected an integer >= 0"),
    ("sim: {max_num_seqs: 1.5}\n", "sim.max_num_seqs: expected an integer"),
    ("sim: {gpus: 1}\n", "sim.gpus: unknown key"),
    ("initial_replicas: lots\n", "initial_replicas: expected static:mean"),
    ("config: [1]\n", "config: expected a mapping"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("traces: [a\n", "invalid YAML"),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES, ids=[m for _, m in BAD_FILES])
def test_bad_matrix_files(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        build_matrix(**{"traces": [parse_trace("builtin:x")], "profiles": [parse_profile("builtin:example")],
                        "policies": [parse_policy("oracle")], **matrix_from_file(path)})
    assert f"matrix file {path}" in str(err.value)
    assert message in str(err.value)


def test_missing_matrix_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="matrix file .*: not found"):
        matrix_from_file(tmp_path / "absent.yaml")


# (CLI arguments, message fragment) -> exit 2, "error: ..." on stderr, nothing on stdout
BAD_CLI = [
    (["--matrix", "{missing}"], "not found"),
    (["--quick", "--matrix", "m.yaml"], "--quick and --matrix: choose one"),
    (["--policies", "static:best?target=7"], "--policies: 'static:best?target=7'"),
    (["--traces", "builtin:nope"], "trace 'nope': unknown built-in trace"),
    (["--profiles", "builtin:nope"], "profile 'nope': unknown built-in profile"),
    (["--policies", "static:1,2,3"], "needs P,D"),
    (["--policies", "planner:sla?ttft=-5"], "policy 'planner:sla': "),
    (["--max-gpu-budget", "0"], "max_gpu_budget"),
    (["--best-static-target", "0"], "--best-static-target: must be in (0, 1]"),
    (["--sim-time-scale", "0"], "--sim-time-scale: every value must be > 0"),
    (["--mode", "prefill"], "evaluate simulates 'disagg' or 'agg'"),
    (["--initial-replicas", "3,x"], "--initial-replicas"),
]


@pytest.mark.parametrize(("args", "message"), BAD_CLI, ids=[m for _, m in BAD_CLI])
def test_cli_errors_exit_2_naming_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    args = [a.replace("{missing}", str(tmp_path / "missing.yaml")) for a in args]
    code = main(["evaluate", "--quiet", *args])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err


def test_cli_json_file_form(tmp_path: Path) -> None:
    path = _write(tmp_path, json.dumps({"traces": ["builtin:mooncake_conversation"], "seed": 1}), "m.json")
    assert matrix_from_file(path)["seed"] == 1


def _cli_matrix(*args: str):  # type: ignore[no-untyped-def]
    from sla_planner.cli import build_parser
    from sla_planner.cli.evaluate import _settings

    return build_matrix(**_settings(build_parser().parse_args(["evaluate", *args])))


def test_default_matrix_is_the_issue_matrix() -> None:
    m = _cli_matrix()
    assert [t.name for t in m.traces] == ["mooncake_conversation", "mooncake_conversation x4", "bursty"]
    assert [p.name for p in m.profiles] == ["example"]
    assert [p.name for p in m.policies] == [
        "planner:sla", "planner:throughput", "planner:latency", "static:mean", "static:peak", "static:best", "oracle",
    ]
    assert (m.sim_time_scales, m.startup_delays_s, m.initial_replicas) == ((1.0, 1.15), (120.0,), "static:mean")
    assert len(m.cells()) == 3 * 2 * 7


def test_quick_matrix_and_flag_precedence(tmp_path: Path) -> None:
    assert len(_cli_matrix("--quick").cells()) == 5
    path = _write(tmp_path, "traces: [builtin:a]\nseed: 4\nconfig: {max_gpu_budget: 64, ttft: 1500}\n")
    m = _cli_matrix("--matrix", str(path), "--seed", "5", "--max-gpu-budget", "32", "--profile-results-dir", "builtin:b")
    assert [t.name for t in m.traces] == ["a"]
    assert m.seed == 5
    assert m.config_dict() == {"max_gpu_budget": 32, "ttft": 1500}  # flags beat the file's config
    assert [p.spec for p in m.profiles] == ["builtin:b"]
