"""`sla-planner run`: the planner against a live deployment.

Builds the policy from the config (as replay does), the traffic source (Prometheus), the FPM
subscriber (``--fpm-endpoints`` / ``--fpm-discovery-file``, or the Kubernetes connector's pod
discovery), the connector (``environment``: kubernetes | virtual, or ``--connector memory:P,D``)
and the observers (``--decisions-out``), then runs :class:`~sla_planner.live.LiveAdapter` until
``--duration`` passes or SIGTERM / SIGINT: the current tick finishes, the decision log is
flushed, everything is closed, and the command exits 0.

Start-up: a bad config, profile, discovery file, connector spec or a connector that cannot be
created is an error (exit 2): retrying cannot fix it. A deployment API or Prometheus that does
not answer is not: the planner starts, holds every tick with the reason (``unknown_workers``,
``unknown_traffic``) and recovers when they come back — an outage of either at planner start
must not crash-loop the planner, and holding changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._common import MAX_SECONDS, float_in
from ._common import count as _count

_seconds = float_in(0.0, MAX_SECONDS)
from ..errors import ConfigError, ConnectorError, SlaPlannerError
from ..types import TickKind, pools_for_mode

__all__ = ["add_run_parser", "RunArgs", "run_planner", "build_policy", "build_connector", "history_windows"]

log = logging.getLogger(__name__)

_CONNECTORS = {
    "kubernetes": ("sla_planner.connectors.kubernetes", "KubernetesConnector"),
    "virtual": ("sla_planner.connectors.virtual", "VirtualConnector"),
}


@dataclass
class RunArgs:
    """Everything `run` takes besides the config (the in-process API of the command)."""

    duration_s: float | None = None
    decisions_out: str | None = None
    fpm_endpoints: Sequence[str] = ()
    fpm_discovery_file: str | None = None
    fpm_role: str = "decode"
    fpm_stale_after_s: float = 30.0
    connector: Any = None
    """``memory:P,D`` / ``memory:N``, a Connector object (in-process use), or None: the
    connector of the config's ``environment``."""
    policy: str = "planner"
    max_kv_tokens: int | None = None
    max_num_batched_tokens: int = 8192
    engine_context_length: int = 131072
    history_windows: int | None = None
    """Past windows read from Prometheus to warm the predictors (None: enough for the predictor)."""
    observers: list[Any] = field(default_factory=list)
    """Extra TickObservers (metrics, dashboard, reports)."""

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> RunArgs:
        """From parsed `run` arguments."""
        return cls(
            duration_s=ns.duration,
            decisions_out=ns.decisions_out,
            fpm_endpoints=list(ns.fpm_endpoints),
            fpm_discovery_file=ns.fpm_discovery_file,
            fpm_role=ns.fpm_role,
            fpm_stale_after_s=ns.fpm_stale_after,
            connector=ns.connector,
            policy=ns.policy,
            max_kv_tokens=ns.max_kv_tokens,
            max_num_batched_tokens=ns.max_num_batched_tokens,
            engine_context_length=ns.engine_context_length,
            history_windows=ns.history_windows,
        )


# ----------------------------------------------------------------------------- builders
def build_policy(cfg: Any, args: RunArgs) -> Any:
    """The policy `args.policy` names, with the profile's models and the engines' limits."""
    from ..core.load import EngineCapabilities
    from ._common import load_config_and_models
    from .replay import make_policy

    needs_profile = args.policy == "planner" and cfg.enable_throughput_scaling
    models = None
    if cfg.profile_results_dir is not None or needs_profile:
        cfg, models = load_config_and_models(cfg)
    max_kv = args.max_kv_tokens
    if max_kv is None and models is not None and models.decode is not None:
        max_kv = int(models.decode.max_kv_tokens)
    caps = EngineCapabilities(
        max_num_batched_tokens=args.max_num_batched_tokens,
        context_length=args.engine_context_length,
        max_kv_tokens=max_kv,
    )

    class _NoModels:
        prefill = None
        decode = None

    return make_policy(args.policy, cfg, models or _NoModels(), caps, pools_for_mode(cfg.mode))


def _import_connector_module(environment: str) -> Any:
    module_name, _ = _CONNECTORS[environment]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ConfigError(
                f"environment={environment!r}: this installation has no {module_name} "
                "(use --connector memory:P,D to try the planner without a deployment)"
            ) from None
        raise ConfigError(
            f"environment={environment!r} needs the Python package {exc.name!r}: pip install 'sla-planner[live]'"
        ) from None


async def build_connector(cfg: Any, spec: Any, env: Mapping[str, str]) -> Any:
    """``memory:P,D`` / ``memory:N`` when ``spec`` is that text, ``spec`` itself when it is a
    Connector, else the config's environment's connector
    (``KubernetesConnector`` / ``VirtualConnector.from_config(cfg, env)``)."""
    from ..connectors.base import Connector

    pools = pools_for_mode(cfg.mode)
    if isinstance(spec, Connector):
        return spec
    if spec is not None:
        kind, _, body = spec.partition(":")
        if kind != "memory" or not body:
            raise ConfigError(f"--connector {spec!r}: expected memory:P,D or memory:N")
        from ..connectors.memory import InMemoryConnector
        from .replay import parse_replicas

        return InMemoryConnector(parse_replicas(body, pools))
    if cfg.environment not in _CONNECTORS:
        raise ConfigError(
            f"environment={cfg.environment!r}: sla-planner run applies decisions through "
            f"{' or '.join(sorted(_CONNECTORS))} (or --connector memory:P,D)"
        )
    cls = getattr(_import_connector_module(cfg.environment), _CONNECTORS[cfg.environment][1])
    try:
        connector = cls.from_config(cfg, env)
        if inspect.isawaitable(connector):
            connector = await connector
    except SlaPlannerError:
        raise
    except Exception as exc:  # noqa: BLE001 - a client library's own error, named
        raise ConnectorError(f"{cfg.environment} connector could not be created: {type(exc).__name__}: {exc}") from None
    return connector


def _connector_discovery(connector: Any, cfg: Any, args: RunArgs, env: Mapping[str, str]) -> Any:
    """The deployment's own engine discovery: ``connector.engine_discovery()`` when the connector
    has one, else (environment kubernetes) ``KubernetesDiscovery.from_config(cfg, env)``."""
    method = getattr(connector, "engine_discovery", None)
    if callable(method):
        return method()
    if args.connector is not None or cfg.environment != "kubernetes":
        return None
    cls = getattr(_import_connector_module("kubernetes"), "KubernetesDiscovery", None)
    return None if cls is None else cls.from_config(cfg, env)


def _discovery(cfg: Any, args: RunArgs, connector: Any, env: Mapping[str, str]) -> Any:
    from ..signals.discovery import FileDiscovery, MergedDiscovery, StaticDiscovery, parse_endpoint_list

    sources: list[Any] = []
    if args.fpm_endpoints:
        try:
            sources.append(StaticDiscovery(parse_endpoint_list(",".join(args.fpm_endpoints), args.fpm_role)))  # type: ignore[arg-type]
        except ConfigError as exc:
            raise ConfigError(f"--fpm-endpoints: {exc}") from None
    if args.fpm_discovery_file is not None:
        files = FileDiscovery(args.fpm_discovery_file)
        files.poll()
        if files.last_error is not None:
            raise ConfigError(f"--fpm-discovery-file: {files.last_error}")
        sources.append(files)
    if not sources:
        pods = _connector_discovery(connector, cfg, args, env)
        if pods is not None:
            sources.append(pods)
    if not sources:
        return None
    return sources[0] if len(sources) == 1 else MergedDiscovery(sources)


def history_windows(cfg: Any) -> int:
    """Past windows the configured predictor needs to be ready (10..1000)."""
    need = max(cfg.linear_window_size, cfg.kalman_min_points)
    if cfg.load_predictor == "prophet":
        need = max(need, cfg.prophet_window_size)
    elif cfg.load_predictor == "arima":
        need = max(need, 60)
    return min(max(need, 10), 1000)


# ----------------------------------------------------------------------------- running
async def run_planner(cfg: Any, args: RunArgs, env: Mapping[str, str] | None = None) -> Any:
    """Build everything, run until ``args.duration_s`` or SIGTERM/SIGINT, close; the LoopStats."""
    from .. import kernels
    from ..live import LiveAdapter, LiveOptions, warm_up_from_history
    from ..signals.fpm_subscriber import FpmSubscriber

    env = os.environ if env is None else env
    if cfg.throughput_metrics_source != "frontend":
        raise ConfigError(
            f"throughput_metrics_source={cfg.throughput_metrics_source!r}: sla-planner run reads traffic from the "
            "frontend's dynamo_frontend_* series (the router source serves pool-local planners of a global-planner "
            "deployment, which run does not drive); set it to 'frontend'"
        )
    policy = build_policy(cfg, args)
    intervals = policy.intervals()
    traffic = None
    if TickKind.THROUGHPUT in intervals:
        try:
            from ..signals.prometheus import PrometheusTraffic
        except ModuleNotFoundError as exc:
            raise ConfigError(f"reading traffic from Prometheus needs {exc.name!r}: pip install 'sla-planner[live]'") from None
        traffic = PrometheusTraffic.from_config(cfg)
    connector = await build_connector(cfg, args.connector, env)
    subscriber = None
    observers: list[Any] = []
    try:
        discovery = _discovery(cfg, args, connector, env)
        if discovery is None and TickKind.LOAD in intervals:
            raise ConfigError(
                "load-based scaling reads engine metrics: pass --fpm-endpoints or --fpm-discovery-file"
                + (" (or run with environment=kubernetes for pod discovery)" if cfg.environment != "kubernetes" else "")
            )
        if discovery is not None:
            ingestor = kernels.FpmIngestor(history_len=10, stale_after_s=args.fpm_stale_after_s)
            subscriber = FpmSubscriber(ingestor, discovery)
        if args.decisions_out is not None:  # opened last: a start-up error leaves no file behind
            from ..observe.decision_log import DecisionLog

            observers.append(DecisionLog(args.decisions_out))
        observers.extend(args.observers)
        adapter = LiveAdapter(
            policy,
            connector,
            traffic=traffic,
            engines=subscriber,
            observers=observers,
            options=LiveOptions.for_intervals(
                intervals.values(),
                advisory=cfg.no_operation,
                traffic_deadline_s=None if traffic is None else traffic.deadline_s,
            ),
        )
    except BaseException:
        for observer in observers:
            observer.close()
        await connector.close()
        if traffic is not None:
            await traffic.close()
        raise
    return await _serve(cfg, args, adapter, subscriber, traffic, policy, warm_up_from_history)


async def _serve(cfg: Any, args: RunArgs, adapter: Any, subscriber: Any, traffic: Any, policy: Any, warm: Any) -> Any:
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, _on_signal, adapter, sig)
            handled.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread / platform
            pass
    try:
        if subscriber is not None:
            await asyncio.to_thread(subscriber.start)
        _announce(cfg, adapter.connector, traffic, subscriber)
        forecaster = getattr(policy, "forecaster", None)
        windows = history_windows(cfg) if args.history_windows is None else args.history_windows
        if traffic is not None and forecaster is not None and not cfg.load_predictor_warmup_trace and windows > 0:
            window_s = float(cfg.throughput_adjustment_interval)
            end_s = adapter.clock() - window_s  # the first tick reads the window ending now
            await warm(forecaster, traffic.history, window_s, windows, end_s, traffic.deadline_s + 1.0)
        if not adapter.stopping:
            await adapter.run(args.duration_s)
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        await adapter.aclose()
        if subscriber is not None:
            await asyncio.to_thread(subscriber.stop)
    _summarise(adapter.stats)
    return adapter.stats


def _on_signal(adapter: Any, sig: int) -> None:
    print(f"sla-planner run: {signal.Signals(sig).name}: finishing the current tick", file=sys.stderr, flush=True)
    adapter.stop()


def _announce(cfg: Any, connector: Any, traffic: Any, subscriber: Any) -> None:
    parts = [f"connector {connector.name}"]
    parts.append("traffic from " + cfg.metric_pulling_prometheus_endpoint if traffic is not None else "no traffic loop")
    parts.append(f"{len(subscriber.endpoints()) if subscriber is not None else 0} FPM endpoint(s)")
    if cfg.no_operation:
        parts.append("ADVISORY (no_operation: nothing is applied)")
    print("sla-planner run: " + ", ".join(parts), file=sys.stderr, flush=True)


def _summarise(stats: Any) -> None:
    def table(d: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none"

    print(
        f"sla-planner run: {stats.ticks} ticks; decisions: {table(stats.reasons)}; "
        f"applies: {table(stats.applies)}; input errors: {table(stats.input_errors)}",
        file=sys.stderr,
        flush=True,
    )


def _log_to_dir(log_dir: str) -> None:
    """Also write the planner's INFO-and-above log to ``log_dir/sla-planner-run.log``; the
    terminal keeps the verbosity ``-v`` chose."""
    from pathlib import Path

    path = Path(log_dir) / "sla-planner-run.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"log_dir: cannot write {path} ({exc.strerror or exc})") from None
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for existing in root.handlers:
        if existing.level == logging.NOTSET:
            existing.setLevel(root.level)
    root.setLevel(min(root.level, logging.INFO))
    root.addHandler(handler)


def _run(ns: argparse.Namespace) -> int:
    from ..config import config_from_args

    cfg = config_from_args(ns)
    if cfg.log_dir is not None:
        _log_to_dir(cfg.log_dir)
    asyncio.run(run_planner(cfg, RunArgs.from_namespace(ns)))
    return 0


def add_run_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `run`."""
    from ..config import add_config_arguments
    from ..signals.discovery import ROLES

    p = sub.add_parser(
        "run",
        help="run the planner against a live deployment (Prometheus, FPM, Kubernetes or virtual connector)",
        description=(
            "Plan live: traffic from Prometheus (metric_pulling_prometheus_endpoint / PROMETHEUS_ENDPOINT), engine "
            "load from ForwardPassMetrics over ZMQ, decisions applied through the connector of `environment` "
            "(kubernetes: the DynamoGraphDeployment DYN_PARENT_DGD_K8S_NAME; virtual: etcd at ETCD_ENDPOINTS). "
            "no_operation=true records decisions without applying them. Stops on SIGTERM/SIGINT after the "
            "current tick."
        ),
    )
    p.add_argument("--duration", type=_seconds, default=None, help="stop after this many seconds (default: run until signalled)")
    p.add_argument("--decisions-out", default=None, metavar="FILE",
                   help="append one JSON line per tick here (the records of replay's decisions.jsonl)")
    p.add_argument("--fpm-endpoints", action="append", default=[], metavar="ENDPOINTS",
                   help="FPM publishers: comma-separated tcp://HOST:PORT, each optionally ROLE=... (repeatable)")
    p.add_argument("--fpm-discovery-file", default=None, metavar="FILE",
                   help="file listing FPM endpoints (JSON/YAML {endpoint, role, instance} or 'ROLE ENDPOINT [POD]' lines), "
                        "re-read when it changes")
    p.add_argument("--fpm-role", choices=ROLES, default="decode", help="role of --fpm-endpoints items without ROLE=")
    p.add_argument("--fpm-stale-after", type=_seconds, default=30.0, help="an engine silent this long is stale (s)")
    p.add_argument("--connector", default=None, metavar="memory:P,D",
                   help="an in-memory deployment instead of the environment's connector (tests, demos)")
    p.add_argument("--policy", default="planner", help="planner | static:P,D | static:N | python:module:Class")
    p.add_argument("--max-kv-tokens", type=_count, default=None,
                   help="KV tokens per decode engine (default: the profile's)")
    p.add_argument("--max-num-batched-tokens", type=_count, default=8192, help="prefill tokens per engine iteration")
    p.add_argument("--engine-context-length", type=_count, default=131072, help="engines' maximum context length")
    p.add_argument("--history-windows", type=_count, default=None,
                   help="past windows read from Prometheus to warm the predictors (default: what the predictor "
                        "needs; 0: none; ignored with load_predictor_warmup_trace)")
    add_config_arguments(p)
    p.set_defaults(func=_run)

