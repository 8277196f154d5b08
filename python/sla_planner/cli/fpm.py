"""The `fpm-watch` and `mock-engine` subcommands: look at live FPM, or publish simulated FPM."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any

from ._common import MAX_SECONDS, float_in
from ._common import int_in as _int_in
from ..errors import ConfigError, SlaPlannerError

__all__ = ["add_fpm_parsers", "engines_from_snapshot"]

_ROLES = ("prefill", "decode", "agg")
_COUNTER_KEYS = ("received", "decoded", "malformed", "wrong_version", "heartbeats", "bad_frames", "oversized",
                 "gaps", "out_of_order", "dropped_capacity")


_seconds = float_in(0.0, MAX_SECONDS)
_positive = float_in(0.0, MAX_SECONDS, low_inclusive=False)
_time_scale = float_in(1e-6, 1e6)


def add_fpm_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `fpm-watch` and `mock-engine`."""
    w = sub.add_parser(
        "fpm-watch",
        help="subscribe to engines' ForwardPassMetrics for a while and print what they report",
        description=(
            "Connect to FPM publishers (ZMQ PUB, multipart [topic, seq, msgpack]) for --duration seconds, "
            "then print the latest sample of every engine and the ingestion counters. Endpoints are "
            "tcp://HOST:PORT or ipc://PATH, comma-separated, each optionally prefixed ROLE= "
            "(prefill, decode, agg), e.g. decode=tcp://127.0.0.1:20380."
        ),
    )
    w.add_argument("--endpoints", action="append", default=[], metavar="ENDPOINTS",
                   help="comma-separated endpoints (repeatable)")
    w.add_argument("--discovery-file", default=None, metavar="FILE",
                   help="file listing endpoints (JSON/YAML list of {endpoint, role[, instance]}, or 'ROLE ENDPOINT [INSTANCE]' lines), "
                        "re-read when it changes")
    w.add_argument("--role", choices=_ROLES, default="decode",
                   help="role of --endpoints items without a ROLE= prefix (default: decode)")
    w.add_argument("--duration", type=_seconds, default=5.0, help="seconds to listen (default: 5)")
    w.add_argument("--stale-after", type=_positive, default=30.0,
                   help="an engine silent this many seconds is stale (default: 30)")
    w.add_argument("--json", action="store_true", help="print one JSON object")
    w.set_defaults(func=_run_fpm_watch)

    m = sub.add_parser(
        "mock-engine",
        help="publish simulated ForwardPassMetrics over ZMQ like a live engine",
        description=(
            "Simulate DP_RANKS engines of one role in real time and publish their FPM, rank r on "
            "tcp://BIND_HOST:(PORT + r). Load: constant:RPS[?isl=N&osl=N&seed=S], synthetic:KIND?..., "
            "or a trace file. Runs until --duration or Ctrl-C."
        ),
    )
    m.add_argument("--port", type=_int_in(0, 65535), required=True,
                   help="base port; rank r binds PORT + r (0: ephemeral ports, printed at start)")
    m.add_argument("--dp-ranks", type=_int_in(1, 4096), default=1, help="data-parallel ranks (default: 1)")
    m.add_argument("--role", choices=_ROLES, default="decode", help="engine role (default: decode)")
    m.add_argument("--profile-results-dir", default="builtin:example",
                   help="profiling data the simulated engines follow (default: builtin:example)")
    m.add_argument("--load", default="constant:1", help="load spec (default: constant:1)")
    m.add_argument("--duration", type=_seconds, default=None, help="wall seconds to run (default: until Ctrl-C)")
    m.add_argument("--worker-id", default=None, help="worker id to publish (default: mock-PORT)")
    m.add_argument("--bind-host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    m.add_argument("--time-scale", type=_time_scale, default=1.0,
                   help="simulated seconds per wall second (default: 1)")
    m.add_argument("--seed", type=_int_in(0, 2**32 - 1), default=0, help="simulation and load seed (default: 0)")
    m.add_argument("--json", action="store_true", help="print the final summary as JSON")
    m.set_defaults(func=_run_mock_engine)


# ----------------------------------------------------------------------------- fpm-watch
def _latest(snap: dict[str, Any], i: int) -> dict[str, Any]:
    from ..kernels.fpm_ref import FPM_SCHEMA_VERSION, QUEUED_FIELDS, SCHEDULED_FIELDS

    def pick(prefix: str, fields: tuple[tuple[str, bool], ...]) -> dict[str, Any]:
        return {name: snap[f"{prefix}_{name}"][i].item() for name, _ in fields}

    return {
        "version": FPM_SCHEMA_VERSION,
        "worker_id": str(snap["worker_id"][i]),
        "dp_rank": int(snap["dp_rank"][i]),
        "counter_id": int(snap["counter_id"][i]),
        "wall_time": float(snap["wall_time"][i]),
        "scheduled_requests": pick("scheduled", SCHEDULED_FIELDS),
        "queued_requests": pick("queued", QUEUED_FIELDS),
    }


def engines_from_snapshot(snap: dict[str, Any], now_s: float) -> list[dict[str, Any]]:
    """One JSON-ready dict per engine of a subscriber snapshot, sorted by (worker_id, dp_rank)."""
    out = [
        {
            "worker_id": str(snap["worker_id"][i]),
            "dp_rank": int(snap["dp_rank"][i]),
            "role": str(snap["role"][i]),
            "endpoint": str(snap["endpoint"][i]),
            "latest": _latest(snap, i),
            "received": int(snap["received"][i]),
            "heartbeats": int(snap["heartbeats"][i]),
            "stale": bool(snap["stale"][i]),
            "last_seen_age_s": round(now_s - float(snap["last_seen_s"][i]), 3),
        }
        for i in range(len(snap["worker_id"]))
    ]
    return sorted(out, key=lambda e: (e["worker_id"], e["dp_rank"]))


def _discovery(ns: argparse.Namespace) -> Any:
    from ..signals.discovery import FileDiscovery, MergedDiscovery, StaticDiscovery, parse_endpoint_list

    sources: list[Any] = []
    if ns.endpoints:
        try:
            sources.append(StaticDiscovery(parse_endpoint_list(",".join(ns.endpoints), ns.role)))
        except ConfigError as exc:
            raise ConfigError(f"--endpoints: {exc}") from None
    if ns.discovery_file is not None:
        files = FileDiscovery(ns.discovery_file)
        files.poll()
        if files.last_error is not None:
            raise ConfigError(f"--discovery-file: {files.last_error}")
        sources.append(files)
    if not sources:
        raise ConfigError("fpm-watch needs --endpoints or --discovery-file (or both)")
    return sources[0] if len(sources) == 1 else MergedDiscovery(sources)


def _run_fpm_watch(ns: argparse.Namespace) -> int:
    from .. import kernels
    from ..signals.fpm_subscriber import FpmSubscriber

    discovery = _discovery(ns)
    ingestor = kernels.FpmIngestor(history_len=1, stale_after_s=ns.stale_after)
    subscriber = FpmSubscriber(ingestor, discovery, refresh_interval_s=1.0)
    interrupted = False
    with subscriber:
        try:
            time.sleep(ns.duration)
        except KeyboardInterrupt:
            interrupted = True
    now_s = time.time()
    engines = engines_from_snapshot(subscriber.snapshot(now_s), now_s)
    counters = subscriber.counters()
    result = {
        "duration_s": ns.duration,
        "interrupted": interrupted,
        "endpoints": [{"endpoint": ep.endpoint, "role": ep.role} for ep in subscriber.endpoints()],
        "discovery_error": getattr(discovery, "last_error", None),
        "engines": engines,
        "counters": counters,
    }
    if ns.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(_format_watch(result))
    return 0


def _format_watch(r: dict[str, Any]) -> str:
    lines = [f"sla-planner fpm-watch — {len(r['endpoints'])} endpoint(s), {r['duration_s']:g} s"]
    if r["discovery_error"]:
        lines.append(f"discovery: {r['discovery_error']}")
    if not r["engines"]:
        lines.append("no ForwardPassMetrics received")
    else:
        head = (f"{'worker_id':<24} {'dp':>3} {'role':<8} {'recv':>7} {'hb':>5} {'stale':<5} {'wall_ms':>8} "
                f"{'s.pre':>5} {'s.pre_tok':>9} {'s.dec':>5} {'s.dec_kv':>9} {'q.pre':>5} {'q.pre_tok':>9} "
                f"{'q.dec':>5} {'q.dec_kv':>9}")
        lines.append(head)
        for e in r["engines"]:
            s = e["latest"]["scheduled_requests"]
            q = e["latest"]["queued_requests"]
            lines.append(
                f"{e['worker_id'][:24]:<24} {e['dp_rank']:>3} {e['role']:<8} {e['received']:>7} "
                f"{e['heartbeats']:>5} {'yes' if e['stale'] else 'no':<5} "
                f"{e['latest']['wall_time'] * 1000.0:>8.2f} "
                f"{s['num_prefill_requests']:>5} {s['sum_prefill_tokens']:>9} "
                f"{s['num_decode_requests']:>5} {s['sum_decode_kv_tokens']:>9} "
                f"{q['num_prefill_requests']:>5} {q['sum_prefill_tokens']:>9} "
                f"{q['num_decode_requests']:>5} {q['sum_decode_kv_tokens']:>9}"
            )
    c = r["counters"]
    lines.append("counters: " + ", ".join(f"{k} {c.get(k, 0)}" for k in _COUNTER_KEYS))
    return "\n".join(lines)


# --------------------------------------------------------------------------- mock-engine
def _run_mock_engine(ns: argparse.Namespace) -> int:
    from ..perf import load_profile
    from ..signals.mock_engine import MockEngine
    from ..sim.cluster import SimPerf

    models = load_profile(ns.profile_results_dir, need_prefill=True, need_decode=True)
    perf = SimPerf.from_models(models.prefill, models.decode)
    engine = MockEngine(
        ns.port, ns.dp_ranks, ns.role, perf, ns.load, ns.worker_id,
        bind_host=ns.bind_host, time_scale=ns.time_scale, seed=ns.seed,
    )
    engine.start()
    print(f"mock-engine {engine.worker_id} ({ns.role}, {ns.dp_ranks} rank(s), profile {models.source}, "
          f"load {ns.load}) publishing on {', '.join(engine.endpoints)}", file=sys.stderr, flush=True)
    interrupted = False
    deadline = math.inf if ns.duration is None else time.monotonic() + ns.duration
    try:
        while engine.running and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        engine.stop()
    if engine.error is not None:
        if isinstance(engine.error, SlaPlannerError):
            raise engine.error
        raise SlaPlannerError(f"mock engine failed: {engine.error!r}") from engine.error
    summary = engine.summary()
    summary["interrupted"] = interrupted
    if ns.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
    else:
        print(f"mock-engine {summary['worker_id']}: published {sum(summary['published']):,} messages "
              f"({', '.join(str(n) for n in summary['published'])} per rank), "
              f"{summary['requests_sent']:,} requests, {summary['sim_time_s']:.1f} simulated s")
    return 0
