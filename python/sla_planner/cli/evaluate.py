"""`sla-planner evaluate`: a matrix of traces x profiles x policies through the simulator, one table."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

from ..errors import ConfigError
from ._common import MAX_SECONDS, count, float_in, int_in, output_path, positive_float

__all__ = ["add_evaluate_parser", "DEFAULT_TRACES", "QUICK_TRACES", "DEFAULT_POLICIES", "BURSTY_TRACE"]

#: The synthetic bursty trace of the default matrix: calm at 2 req/s, 4 minutes at 12 req/s every
#: 15 minutes, heavy-tailed prompt and output lengths.
BURSTY_TRACE = (
    "bursty=synthetic:bursts?base_rps=2&burst_rps=12&burst_every_s=900&burst_len_s=240"
    "&duration_s=3600&isl=lognormal:4000:1.0:65536&osl=lognormal:300:0.8:4096&seed=11"
)
DEFAULT_TRACES = ("builtin:mooncake_conversation", "builtin:mooncake_conversation@x4", BURSTY_TRACE)
DEFAULT_POLICIES = (
    "planner:sla", "planner:throughput", "planner:latency", "static:mean", "static:peak",
    "static:best", "oracle",
)
DEFAULT_SIM_TIME_SCALES = (1.0, 1.15)
QUICK_TRACES = ("builtin:mooncake_conversation@x4",)
QUICK_POLICIES = ("planner:sla", "static:mean", "static:peak", "static:best", "oracle")
QUICK_SIM_TIME_SCALES = (1.0,)

_SIM_FLAGS = (
    "max_num_batched_tokens", "max_num_seqs", "transfer_s", "drain_timeout_s", "engine_context_length", "drain_s",
)


def _floats(flag: str) -> Any:
    def parse(text: str) -> list[float]:
        from ..evaluate.matrix import split_list

        out = []
        for item in split_list(text):
            try:
                value = float(item)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{flag}: not a number: {item!r}") from None
            if not (value == value and 0 <= value <= MAX_SECONDS):
                raise argparse.ArgumentTypeError(
                    f"{flag}: must be a number in [0, {MAX_SECONDS:g}], got {item!r}"
                )
            out.append(value)
        if not out:
            raise argparse.ArgumentTypeError(f"{flag}: expected at least one number")
        return out

    return parse


def _settings(ns: argparse.Namespace) -> dict[str, Any]:
    """Matrix settings: --quick or the default matrix, then --matrix FILE, then flags."""
    from ..evaluate.matrix import SimKnobs, parse_policy, parse_profile, parse_trace, split_list
    from ..evaluate.matrix_file import check_initial, matrix_from_file

    if ns.quick and ns.matrix:
        raise ConfigError("--quick and --matrix: choose one")
    quick = bool(ns.quick)
    settings: dict[str, Any] = {
        "traces": [parse_trace(t, "default traces") for t in (QUICK_TRACES if quick else DEFAULT_TRACES)],
        "profiles": [parse_profile("builtin:example")],
        "policies": [parse_policy(p) for p in (QUICK_POLICIES if quick else DEFAULT_POLICIES)],
        "sim_time_scales": list(QUICK_SIM_TIME_SCALES if quick else DEFAULT_SIM_TIME_SCALES),
        "config": {},
    }
    from_file = matrix_from_file(ns.matrix) if ns.matrix else {}
    settings.update(from_file)
    if ns.traces:
        settings["traces"] = [parse_trace(t) for arg in ns.traces for t in split_list(arg)]
    if ns.profiles:
        settings["profiles"] = [parse_profile(p) for arg in ns.profiles for p in split_list(arg)]
    elif getattr(ns, "profile_results_dir", None) and "profiles" not in from_file:
        settings["profiles"] = [parse_profile(ns.profile_results_dir, "--profile-results-dir")]
    if ns.policies:
        settings["policies"] = [
            parse_policy(p) for arg in ns.policies for p in split_list(arg, merge_integers=True)
        ]
    for flag, key in (("sim_time_scale", "sim_time_scales"), ("startup_delay", "startup_delays_s")):
        values = getattr(ns, flag)
        if values is not None:
            settings[key] = values
    if any(v <= 0 for v in settings.get("sim_time_scales", [1.0])):
        raise ConfigError("--sim-time-scale: every value must be > 0")
    for flag, key in (
        ("best_static_target", "best_static_target"),
        ("best_static_max_replays", "best_static_max_replays"),
        ("oracle_interval", "oracle_interval_s"),
        ("seed", "seed"),
    ):
        value = getattr(ns, flag)
        if value is not None:
            settings[key] = value
    if ns.initial_replicas is not None:
        settings["initial_replicas"] = check_initial(ns.initial_replicas, "--initial-replicas")
    knobs = {k: getattr(ns, k) for k in _SIM_FLAGS if getattr(ns, k) is not None}
    if knobs:
        base = settings.get("sim", SimKnobs())
        settings["sim"] = SimKnobs(**{**base.__dict__, **knobs})
    config = dict(settings.pop("config", {}))
    if getattr(ns, "config", None) is not None:
        from ..config_cli import read_config_value

        config.update(read_config_value(ns.config)[0])
    from ..config import PlannerConfig

    for name in PlannerConfig.model_fields:
        if name != "profile_results_dir" and hasattr(ns, name):
            config[name] = getattr(ns, name)
    settings["config"] = config
    return settings


def _check_ranges(ns: argparse.Namespace) -> None:
    if ns.best_static_target is not None and not 0 < ns.best_static_target <= 1:
        raise ConfigError(f"--best-static-target: must be in (0, 1], got {ns.best_static_target}")
    # the other flags' ranges are their argparse types'; 0 is the one target they let through


def _run(ns: argparse.Namespace) -> int:
    from ..evaluate import build_matrix, check_matrix, run_matrix
    from ..evaluate.output import format_table, results_document, write_outputs

    _check_ranges(ns)
    # SIGTERM ends the run like Ctrl-C: the worker processes are stopped, not orphaned
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    matrix = build_matrix(**_settings(ns))
    check_matrix(matrix)
    cells = len(matrix.cells())

    def progress(done: int, total: int, r: dict[str, Any]) -> None:
        if ns.quiet:
            return
        feasible = r.get("sla_attainment_feasible")
        shown = "—" if feasible is None else f"{100 * feasible:.1f}%"
        sys.stderr.write(
            f"[{done}/{total}] {r['trace']} · {r['profile']} · sim×{r['sim_time_scale']:g} · "
            f"{r['policy']}: {shown} of feasible, {r['gpu_hours']:.2f} GPU-h ({r['wall_s']:.1f} s)\n"
        )
        sys.stderr.flush()

    if not ns.quiet:
        sys.stderr.write(f"sla-planner evaluate: {cells} cells\n")
    ev = run_matrix(matrix, jobs=ns.jobs, ray_address=ns.ray, progress=progress)
    paths = write_outputs(ev, ns.out) if ns.out else {}
    if ns.json:
        print(json.dumps(results_document(ev), indent=2, allow_nan=False))
        return 0
    print(format_table(ev.records))
    print(f"\n{len(ev.records)} cells in {ev.wall_s:.1f} s ({ev.backend}, {ev.jobs} jobs)")
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def add_evaluate_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `evaluate`."""
    from ..config import add_config_arguments

    p = sub.add_parser(
        "evaluate",
        help="replay a matrix of traces x profiles x policies and compare them in one table",
        description=(
            "Replay every combination of traces, profiles, policies, simulator time scales and "
            "start-up delays through the simulated cluster and print one table (SLA attainment "
            "over all and over feasible requests, GPU-hours, x oracle, scale events, failures, "
            "peak GPUs). Without --matrix or axis flags it runs the matrix of issue 8's "
            "'Done when' on builtin:example; --quick runs a small one."
        ),
    )
    p.add_argument("--matrix", default=None, help="YAML/JSON matrix file (flags override its keys)")
    p.add_argument("--quick", action="store_true", help="a small matrix that runs in about a minute")
    p.add_argument("--traces", action="append", default=None,
                   help="comma-separated [NAME=]SPEC[@xN][@time_scale=F][@rate_scale=F][@max_duration_s=S][@max_requests=N]")
    p.add_argument("--profiles", action="append", default=None,
                   help="comma-separated [NAME=]SPEC[@sim=SPEC] (default: builtin:example)")
    p.add_argument("--policies", action="append", default=None,
                   help="comma-separated [NAME=]planner[:sla|sla-throughput-loop|sla-load-loop|throughput|latency]"
                        "[?field=value&...] | static:P,D | static:mean | static:peak | static:best[?target=F] | "
                        "oracle | python:module:Class")
    p.add_argument("--sim-time-scale", type=_floats("--sim-time-scale"), default=None,
                   help="comma-separated: simulated engines this many times slower than the profile (default 1,1.15)")
    p.add_argument("--startup-delay", type=_floats("--startup-delay"), default=None,
                   help="comma-separated start-up delays in seconds (default 120)")
    p.add_argument("--best-static-target", type=float_in(0.0, 1.0), default=None,
                   help="attainment over feasible requests static:best must reach (default 0.95)")
    p.add_argument("--best-static-max-replays", type=int_in(1, 10_000), default=None,
                   help="replays one best-static search may use (default 40)")
    p.add_argument("--oracle-interval", type=float_in(1e-3, MAX_SECONDS), default=None,
                   help="oracle interval in seconds (default: throughput_adjustment_interval)")
    p.add_argument("--initial-replicas", default=None,
                   help="engines at t=0 for planner policies: static:mean (default), static:peak or P,D")
    p.add_argument("--seed", type=int_in(0, 2**32 - 1), default=None, help="seed for rate scaling, start-up delays (default 0)")
    p.add_argument("--max-num-batched-tokens", type=count, default=None, help="prefill tokens per iteration (8192)")
    p.add_argument("--max-num-seqs", type=count, default=None, help="running requests per decode engine (256)")
    p.add_argument("--transfer-s", type=positive_float, default=None, help="prefill-to-decode KV transfer time (0)")
    p.add_argument("--drain-timeout-s", type=positive_float, default=None,
                   help="a removed engine finishes its requests for at most this long; 0 kills them (600)")
    p.add_argument("--engine-context-length", type=count, default=None, help="engines' maximum context (131072)")
    p.add_argument("--drain-s", type=positive_float, default=None,
                   help="after the last arrival, wait at most this long for in-flight requests (600)")
    p.add_argument("--jobs", type=int_in(1, 1024), default=None, help="worker processes (default: the CPUs available)")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run the cells on an existing Ray cluster (needs the ray extra)")
    p.add_argument("--out", type=output_path, default=None, help="write results.json, results.csv and report.html here")
    p.add_argument("--json", action="store_true", help="print results.json instead of the table")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    add_config_arguments(p)
    p.set_defaults(func=_run)
