"""`sla-planner plan`: throughput-based sizing for one traffic forecast."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import SlaPlannerError
from ._common import MAX_SECONDS, float_in
from ._common import count as _count
from ._common import load_config_and_models
from ._common import positive_float as _positive_float

__all__ = ["add_plan_parser"]


def add_plan_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``plan``."""
    from ..config import add_config_arguments

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
    p.add_argument("--interval", type=float_in(1e-3, MAX_SECONDS), default=None,
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


def _run_plan(ns: argparse.Namespace) -> int:
    from ..config import config_from_args
    from ..core.throughput import ThroughputSettings, plan_throughput
    from ..types import ObservedTraffic, TrafficForecast

    cfg = config_from_args(ns)
    cfg, models = load_config_and_models(cfg)
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
