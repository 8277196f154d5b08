"""The `sla-planner` command: one subcommand per job, config flags shared by all of them."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .errors import SlaPlannerError

__all__ = ["main", "build_parser"]

log = logging.getLogger("sla_planner")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def _add_plan(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from .config import add_config_arguments

    p = sub.add_parser(
        "plan",
        help="size the pools for one traffic forecast from profiling data",
        description=(
            "Print the replica counts the throughput planner would set for N requests of mean ISL/OSL "
            "tokens in the next interval, with the reasons and the numbers behind them. "
            "Use --profile-results-dir builtin:example for the profile bundled with the package."
        ),
    )
    p.add_argument("--num-req", type=_positive_float, required=True, help="requests expected in the interval")
    p.add_argument("--interval", type=_positive_float, default=None,
                   help="interval length in seconds (default: throughput_adjustment_interval)")
    p.add_argument("--observed-ttft-ms", type=_positive_float, default=None,
                   help="observed mean TTFT (ms) over the last interval, for the prefill correction factor")
    p.add_argument("--observed-itl-ms", type=_positive_float, default=None,
                   help="observed mean ITL (ms) over the last interval, for the decode correction factor")
    p.add_argument("--observed-request-duration-s", type=_positive_float, default=None,
                   help="observed mean request duration (s), for the decode correction factor")
    p.add_argument("--current-decode-replicas", type=_count, default=None,
                   help="decode replicas serving the observed interval, for the decode correction factor")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_config_arguments(p)
    p.set_defaults(func=_run_plan)


def _add_validate(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from .config import add_config_arguments

    p = sub.add_parser(
        "validate",
        help="check a config (and its profiling data) and exit 0, or 2 with the errors",
    )
    add_config_arguments(p)
    p.set_defaults(func=_run_validate)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="sla-planner",
        description="SLA-driven autoscaler for LLM inference (prefill / decode / aggregated pools).",
    )
    parser.add_argument("--version", action="version", version=f"sla-planner {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_plan(sub)
    _add_validate(sub)
    from .cli_replay import add_replay_parsers

    add_replay_parsers(sub)
    from .cli_fpm import add_fpm_parsers

    add_fpm_parsers(sub)
    from .cli_bench import add_bench_parser

    add_bench_parser(sub)
    return parser


def _load_models(cfg: Any) -> Any:
    from .perf import load_profile

    if cfg.profile_results_dir is None:
        raise SlaPlannerError(
            "profile_results_dir is not set: pass --profile-results-dir DIR "
            "(or builtin:example for the profile bundled with sla-planner)"
        )
    pools = set(cfg.pools())
    return load_profile(
        cfg.profile_results_dir,
        need_prefill=bool(pools & {"prefill", "agg"}),
        need_decode=bool(pools & {"decode", "agg"}),
    )


def _run_plan(ns: argparse.Namespace) -> int:
    from .config import config_from_args
    from .core.throughput import ThroughputSettings, plan_throughput
    from .types import ObservedTraffic, TrafficForecast

    cfg = config_from_args(ns)
    models = _load_models(cfg)
    interval = ns.interval if ns.interval is not None else float(cfg.throughput_adjustment_interval)
    if interval <= 0:
        raise SlaPlannerError(f"--interval must be > 0 seconds, got {interval}")
    forecast = TrafficForecast(ns.num_req, cfg.isl, cfg.osl, interval)
    observed = ObservedTraffic(
        num_req=ns.num_req,
        isl=cfg.isl,
        osl=cfg.osl,
        ttft_ms=ns.observed_ttft_ms,
        itl_ms=ns.observed_itl_ms,
        request_duration_s=ns.observed_request_duration_s,
    )
    plan = plan_throughput(
        forecast,
        ThroughputSettings.from_config(cfg),
        models.prefill,
        models.decode,
        observed,
        ns.current_decode_replicas,
    )
    result = plan.to_dict()
    result["profile"] = models.source
    result["mode"] = cfg.mode
    if ns.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(_format_plan(result))
    return 0


def _format_plan(r: dict[str, Any]) -> str:
    f = r["forecast"]
    lines = [
        f"sla-planner plan — mode {r['mode']}, profile {r['profile']}",
        f"forecast: {f['num_req']:g} requests in {f['interval_s']:g} s, ISL {f['isl']:g}, OSL {f['osl']:g} tokens",
    ]
    for pool, prop in r["proposals"].items():
        replicas = r.get(f"{pool}_replicas")
        head = f"  {pool:<8} {replicas if replicas is not None else '-':>5} replicas  ({prop['reason']})"
        detail = []
        for kind, demand in prop["demand_tokens_per_s"].items():
            detail.append(f"{kind} demand {demand:,.0f} tok/s")
        for kind, cap in prop["capacity_tokens_per_s_per_gpu"].items():
            detail.append(f"{kind} capacity {cap:,.0f} tok/s/GPU")
        if prop.get("itl_target_ms") is not None:
            detail.append(
                f"ITL target {prop['itl_target_ms']:.1f} ms at context {prop['context_length']:,.0f}"
                f" -> KV usage {prop['decode_kv_usage']:.2f}, ITL {prop['decode_itl_ms']:.1f} ms"
            )
        if prop.get("raw_replicas") is not None:
            detail.append(f"{prop['engine_num_gpu']} GPU/engine, exact need {prop['raw_replicas']:.2f} engines")
        lines.append(head)
        lines.extend(f"             {d}" for d in detail)
    for pool, c in r["corrections"].items():
        factor = "—" if c["factor"] is None else f"{c['factor']:.3f}"
        lines.append(f"  correction {pool}: {factor} ({c['status']})")
    b = r["budget"]
    if b is not None:
        lines.append(
            f"  budget: {b['action']}: {b['gpus_used']} of {b['max_gpu_budget']} GPUs"
            f" (requested {b['gpus_requested']})"
        )
    return "\n".join(lines)


def _run_validate(ns: argparse.Namespace) -> int:
    from .config import config_from_args

    cfg = config_from_args(ns)
    checked = ["config"]
    if cfg.profile_results_dir is not None:
        models = _load_models(cfg)
        checked.append(f"profile {models.source}")
    print(f"ok: {', '.join(checked)} valid (mode {cfg.mode}, optimization_target {cfg.optimization_target})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `sla-planner` console script; returns the exit code."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(ns.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(ns.func(ns))
    except SlaPlannerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
