"""`sla-planner replay` and `sla-planner demo`: a trace through the simulated cluster."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from ..documents import short_repr, short_text
from ..errors import ConfigError, SlaPlannerError
from ..types import Pool

__all__ = ["add_replay_parsers", "make_policy", "parse_replicas", "BUNDLED_TRACE"]

BUNDLED_TRACE = "builtin:mooncake_conversation"


def parse_replicas(text: str, pools: tuple[Pool, ...]) -> dict[Pool, int]:
    """`P,D` for disaggregated mode, `N` for a single pool; counts are integers >= 0."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != len(pools):
        want = "P,D (prefill,decode)" if len(pools) == 2 else "N"
        raise ConfigError(f"replica counts {text!r}: expected {want} for pools {[p.value for p in pools]}")
    out: dict[Pool, int] = {}
    for pool, part in zip(pools, parts):
        try:
            n = int(part)
        except ValueError:
            raise ConfigError(f"replica counts {text!r}: {part!r} is not an integer") from None
        if n < 0:
            raise ConfigError(f"replica counts {text!r}: {pool.value} must be >= 0")
        out[pool] = n
    return out


def _out_dir(text: str) -> Path:
    """The output directory, created now: a path that cannot be one fails before the replay."""
    try:
        path = Path(text)
        path.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(f"--out {short_repr(text)}: cannot create the directory ({detail})") from None
    return path


def _sim_pools(mode: str) -> tuple[Pool, ...]:
    if mode == "disagg":
        return (Pool.PREFILL, Pool.DECODE)
    if mode == "agg":
        return (Pool.AGG,)
    raise ConfigError(f"mode: replay simulates 'disagg' or 'agg' deployments, not {mode!r}")


def make_policy(
    spec: str, cfg: Any, models: Any, capabilities: Any = None, pools: tuple[Pool, ...] | None = None
) -> Any:
    """`planner`, `static:P,D` / `static:N`, or `python:module:Class` (constructed with the config).

    ``pools`` defaults to the pools the simulator supports for ``cfg.mode``.
    """
    from ..core.planner import PlannerCore, StaticPolicy
    from ..predict import predictors_from_config

    pools = _sim_pools(cfg.mode) if pools is None else pools
    if spec == "planner":
        forecaster = predictors_from_config(cfg) if cfg.enable_throughput_scaling else None
        return PlannerCore(cfg, forecaster, models.prefill, models.decode, capabilities)
    if spec.startswith("static:"):
        return StaticPolicy(parse_replicas(spec[len("static:"):], pools), float(cfg.throughput_adjustment_interval))
    if spec.startswith("python:"):
        try:
            module_name, class_name = spec[len("python:"):].rsplit(":", 1)
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ValueError, ImportError, AttributeError) as exc:
            raise ConfigError(f"policy {spec!r}: cannot load python:MODULE:CLASS ({exc})") from exc
        policy = cls(cfg)
        for attr in ("name", "intervals", "step"):
            if not hasattr(policy, attr):
                raise ConfigError(f"policy {spec!r}: {class_name} has no {attr!r} (see sla_planner.core.planner.Policy)")
        return policy
    raise ConfigError(f"policy {spec!r}: expected planner, static:P,D, static:N or python:module:Class")


def _open_requests(ns: argparse.Namespace, stats: Any) -> Any:
    from ..traces.open import open_trace

    spec = ns.trace
    if spec == BUNDLED_TRACE:
        spec = str(resources.files("sla_planner") / "data" / "traces" / "mooncake_conversation.jsonl.gz")
    return open_trace(
        spec,
        skip_bad_lines=ns.skip_bad_lines,
        stats=stats,
        time_scale=ns.time_scale,
        rate_scale=ns.rate_scale,
        seed=ns.seed,
    )


def _run(ns: argparse.Namespace, cfg: Any) -> dict[str, Any]:
    from ._common import load_config_and_models
    from ..perf import load_profile
    from ..replay import ReplayOptions, run_replay
    from ..sim.cluster import SimCluster, SimPerf, SimSettings
    from ..traces.mooncake import TraceStats

    pools = _sim_pools(cfg.mode)
    cfg, models = load_config_and_models(cfg)
    sim_models = models
    if ns.sim_profile_results_dir is not None:
        sim_models = load_profile(ns.sim_profile_results_dir, need_prefill=True, need_decode=True)
    if sim_models.prefill is None or sim_models.decode is None:
        raise SlaPlannerError("the simulator needs both prefill and decode profiling data")
    settings = SimSettings(
        mode=cfg.mode,
        max_num_batched_tokens=ns.max_num_batched_tokens,
        max_num_seqs=ns.max_num_seqs,
        startup_delay_s=ns.startup_delay,
        startup_delay_max_s=ns.startup_delay_max,
        transfer_s=ns.transfer_s,
        time_scale=ns.sim_time_scale,
        prefill_engine_num_gpu=cfg.prefill_engine_num_gpu,
        decode_engine_num_gpu=cfg.decode_engine_num_gpu,
        seed=ns.seed,
    )
    from ..core.load import EngineCapabilities

    caps = EngineCapabilities(
        max_num_batched_tokens=ns.max_num_batched_tokens,
        context_length=ns.engine_context_length,
        max_kv_tokens=int(sim_models.decode.max_kv_tokens),
    )
    policy = make_policy(ns.policy, cfg, models, caps)
    if ns.initial_replicas is not None:
        initial = parse_replicas(ns.initial_replicas, pools)
    elif ns.policy.startswith("static:"):
        initial = dict(policy.targets)
    else:
        initial = {p: cfg.min_replicas(p.value) for p in pools}
    cluster = SimCluster(SimPerf.from_models(sim_models.prefill, sim_models.decode), settings, initial)
    stats = TraceStats()
    out_dir = _out_dir(ns.out) if ns.out else None
    options = ReplayOptions(
        ttft_target_ms=cfg.ttft,
        itl_target_ms=cfg.itl,
        no_operation=cfg.no_operation,
        drain_s=ns.drain_s,
        max_request_tokens=ns.engine_context_length,
        out_dir=out_dir,
        progress=sys.stderr.isatty() and not ns.json,
        title=f"sla-planner replay — {Path(ns.trace).name} — policy {policy.name}",
    )
    observers, finish = _observers(ns, cfg, int(sim_models.decode.max_kv_tokens))
    result = run_replay(_open_requests(ns, stats), policy, cluster, options, observers)
    summary = dict(result.summary)
    summary.update(finish())
    summary["trace"] = ns.trace
    summary["trace_bad_lines"] = stats.bad_lines
    summary["initial_replicas"] = {p.value: n for p, n in initial.items()}
    if out_dir is not None:
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        if not ns.no_report:
            from ..observe.report import write_report

            record = dict(result.report_record)
            record["summary"] = summary
            summary["report"] = str(write_report(out_dir / "report.html", record))
    return summary


def _observers(ns: argparse.Namespace, cfg: Any, kv_capacity_tokens: int) -> tuple[list[Any], Any]:
    """Observers asked for by `--metrics-out` / `--periodic-reports`, and a function that closes
    them after the replay and returns what they wrote (summary keys)."""
    observers: list[Any] = []
    metrics = reporter = None
    if getattr(ns, "metrics_out", None):
        try:
            target = Path(ns.metrics_out)
            target.parent.mkdir(parents=True, exist_ok=True)
        except (OSError, ValueError) as exc:  # fail before the replay, not after it
            detail = getattr(exc, "strerror", None) or exc
            raise SlaPlannerError(f"--metrics-out {short_text(ns.metrics_out)}: cannot write: {detail}") from None
        try:
            from ..observe.metrics import MetricsSettings, PlannerMetrics
        except ImportError as exc:
            raise SlaPlannerError(
                f"--metrics-out needs prometheus-client ({exc.name} is missing): pip install 'sla-planner[observe]'"
            ) from exc
        metrics = PlannerMetrics(MetricsSettings.from_config(cfg))
        observers.append(metrics)
    if getattr(ns, "periodic_reports", False):
        if cfg.report_interval_hours is None:
            raise ConfigError("--periodic-reports: report_interval_hours is null (reports disabled)")
        from ..observe.metrics import MetricsSettings
        from ..observe.periodic import PeriodicReporter
        from ..types import pools_for_mode

        reporter = PeriodicReporter(
            cfg.report_output_dir,
            float(cfg.report_interval_hours) * 3600.0,
            pools=pools_for_mode(cfg.mode),
            sla_ttft_ms=float(cfg.ttft),
            sla_itl_ms=float(cfg.itl),
            gpus_per_engine=MetricsSettings.from_config(cfg).gpus_per_engine,
            kv_capacity_tokens=kv_capacity_tokens,
            wall_clock=False,
            title="sla-planner replay report",
        )
        observers.append(reporter)

    def finish() -> dict[str, Any]:
        out: dict[str, Any] = {}
        if reporter is not None:
            reporter.close()
            out["periodic_reports"] = [str(p) for p in reporter.written]
        if metrics is not None:
            try:
                out["metrics"] = str(metrics.write_exposition(ns.metrics_out))
            except (OSError, ValueError) as exc:
                detail = getattr(exc, "strerror", None) or exc
                raise SlaPlannerError(f"--metrics-out {short_text(ns.metrics_out)}: cannot write: {detail}") from None
        return out

    return observers, finish


_ROWS: list[tuple[str, Any, str]] = [
    ("policy", "policy", "{}"),
    ("requests", "requests_total", "{:,}"),
    ("failed", "requests_failed", "{:,}"),
    ("rejected (longer than context)", "requests_rejected_too_long", "{:,}"),
    ("SLA attainment (TTFT and ITL)", "sla_attainment", "{:.1%}"),
    ("TTFT attainment", "ttft_sla_attainment", "{:.1%}"),
    ("ITL attainment", "itl_sla_attainment", "{:.1%}"),
    ("TTFT p50 / p99 (ms)", ("ttft_p50_ms", "ttft_p99_ms"), "{:,.0f} / {:,.0f}"),
    ("ITL p50 / p99 (ms)", ("itl_p50_ms", "itl_p99_ms"), "{:.1f} / {:.1f}"),
    ("GPU-hours", "gpu_hours", "{:.2f}"),
    ("scale events", "scale_events", "{}"),
    ("simulated (s)", "sim_duration_s", "{:,.0f}"),
    ("wall time (s)", "wall_time_s", "{:.2f}"),
]


def format_summaries(summaries: list[dict[str, Any]]) -> str:
    """A side-by-side table of replay summaries."""
    cols = []
    for s in summaries:
        col = []
        for _, key, fmt in _ROWS:
            if isinstance(key, tuple):
                vals = [s.get(k) for k in key]
                col.append("—" if any(v is None for v in vals) else fmt.format(*vals))
            else:
                v = s.get(key)
                col.append("—" if v is None else fmt.format(v))
        cols.append(col)
    label_w = max(len(label) for label, _, _ in _ROWS)
    widths = [max(len(c[i]) for i in range(len(_ROWS))) for c in cols]
    lines = []
    for i, (label, _, _) in enumerate(_ROWS):
        cells = "  ".join(c[i].rjust(w) for c, w in zip(cols, widths))
        lines.append(f"  {label.ljust(label_w)}  {cells}")
    return "\n".join(lines)


def _run_replay(ns: argparse.Namespace) -> int:
    from ..config import config_from_args

    cfg = config_from_args(ns)
    summary = _run(ns, cfg)
    if ns.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
    else:
        print(format_summaries([summary]))
        if "report" in summary:
            print(f"report: {summary['report']}")
    return 0


def _run_demo(ns: argparse.Namespace) -> int:
    from ..config import config_from_args

    cfg = config_from_args(ns)
    out = Path(ns.out or "sla-planner-demo")
    summaries = []
    baseline = ns.baseline
    if not baseline.startswith("static:"):
        raise ConfigError(f"--baseline {baseline!r}: expected static:P,D or static:N")
    if ns.initial_replicas is None:
        # The planner takes over the baseline deployment, as when it is switched on in production.
        ns.initial_replicas = baseline[len("static:"):]
    for policy, sub in ((ns.policy, "planner"), (baseline, "baseline")):
        ns.policy, ns.out = policy, str(out / sub)
        summaries.append(_run(ns, cfg))
    if ns.json:
        print(json.dumps({"planner": summaries[0], "baseline": summaries[1]}, indent=2, sort_keys=True))
        return 0
    print(f"sla-planner demo: {ns.trace} on profile {cfg.profile_results_dir}, "
          f"SLA TTFT {cfg.ttft:g} ms / ITL {cfg.itl:g} ms; the planner starts from the "
          f"{baseline} deployment and resizes it\n")
    print(format_summaries(summaries))
    for s in summaries:
        if "report" in s:
            print(f"report ({s['policy']}): {s['report']}")
    return 0


def _add_common(p: argparse.ArgumentParser) -> None:
    from ._common import MAX_COUNT, MAX_SECONDS, float_in, int_in

    seconds = float_in(0.0, MAX_SECONDS)

    p.add_argument("--out", default=None, help="write summary.json, decisions.jsonl, requests.csv and report.html here")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--sim-profile-results-dir", default=None,
                   help="profile the simulated engines follow (default: the planner's profile)")
    p.add_argument("--sim-time-scale", type=float_in(1e-6, 1e6), default=1.0,
                   help="simulated engines take this many times their profiled time (model error)")
    p.add_argument("--startup-delay", type=seconds, default=120.0, help="seconds before a new engine serves")
    p.add_argument("--startup-delay-max", type=seconds, default=None,
                   help="draw each start-up delay uniformly from [--startup-delay, this]")
    p.add_argument("--transfer-s", type=seconds, default=0.0, help="prefill-to-decode KV transfer time")
    p.add_argument("--max-num-batched-tokens", type=int_in(1, MAX_COUNT), default=8192, help="prefill tokens per iteration")
    p.add_argument("--max-num-seqs", type=int_in(1, MAX_COUNT), default=256, help="running requests per decode engine")
    p.add_argument("--engine-context-length", type=int_in(1, MAX_COUNT), default=131072,
                   help="engines' maximum context length: the easy prefill target's queue unit; a request "
                        "with more input + output tokens is rejected and counted")
    p.add_argument("--initial-replicas", default=None,
                   help="engines at t=0: P,D (disagg) or N (agg); default each pool's minimum (static: its size)")
    p.add_argument("--time-scale", type=float_in(1e-6, 1e6), default=1.0,
                   help="multiply arrival times (0.5 = twice as fast)")
    p.add_argument("--rate-scale", type=float_in(0.0, 1000.0, low_inclusive=False), default=1.0,
                   help="thin (<1) or replicate (>1) requests, seeded")
    p.add_argument("--seed", type=int_in(0, 2**32 - 1), default=0, help="seed for rate scaling, start-up delays, synthetic traces")
    p.add_argument("--skip-bad-lines", action="store_true", help="count malformed trace lines instead of failing")
    p.add_argument("--drain-s", type=seconds, default=600.0,
                   help="after the last arrival, wait at most this long for in-flight requests")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")


def add_replay_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `replay` and `demo`."""
    from ..config import add_config_arguments

    p = sub.add_parser("replay", help="replay a trace through a simulated cluster with a policy in the loop")
    p.add_argument("--trace", required=True,
                   help=f"Mooncake JSONL (.gz), CSV, a directory or glob, synthetic:KIND?..., or {BUNDLED_TRACE}")
    p.add_argument("--policy", default="planner", help="planner | static:P,D | static:N | python:module:Class")
    p.add_argument("--metrics-out", default=None, metavar="FILE",
                   help="write the planner's Prometheus metrics (text exposition) at the end of the replay")
    p.add_argument("--periodic-reports", action="store_true",
                   help="write an HTML report (and .jsonl.gz snapshots) into report_output_dir every "
                        "report_interval_hours of simulated time, and one at the end")
    _add_common(p)
    add_config_arguments(p)
    p.set_defaults(func=_run_replay)

    d = sub.add_parser("demo", help="replay the bundled trace: the planner against a static deployment")
    d.add_argument("--trace", default=BUNDLED_TRACE, help="trace to replay (default: the bundled Mooncake trace)")
    d.add_argument("--policy", default="planner", help=argparse.SUPPRESS)
    d.add_argument("--baseline", default="static:8,4", help="the static deployment to compare with")
    _add_common(d)
    add_config_arguments(d)
    # The demo shows the SLA planner with both loops (throughput floor + load-based bursts); the
    # package default (easy `throughput` target) packs KV and is not SLA-driven. Flags override.
    d.set_defaults(
        func=_run_demo,
        profile_results_dir="builtin:example",
        optimization_target="sla",
        enable_load_scaling=True,
    )
