"""Everything observability needs for a planner run, built from its PlannerConfig.

The live adapter (``sla-planner run``) does::

    obs = await start_observers(cfg, kv_capacity_tokens=caps.max_kv_tokens)
    ...  # every tick: for o in obs.observers: o.on_tick(record)
    await obs.stop()   # final periodic report, servers closed

Which parts exist follows the config: metrics (and their server) when
``metric_reporting_prometheus_port`` is not 0, the live dashboard when ``live_dashboard_port`` is
not 0, periodic reports when ``report_interval_hours`` is set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from ..errors import ConfigError
from ..ticks import TickObserver
from ..types import pools_for_mode
from .dashboard import LiveDashboard
from .metrics import MetricsSettings, PlannerMetrics
from .periodic import PeriodicReporter
from .servers import MetricsServer

__all__ = ["Observability", "build_observability", "start_observers"]

log = logging.getLogger(__name__)


@dataclass
class Observability:
    """The observers of one run and their servers."""

    metrics: PlannerMetrics | None = None
    metrics_server: MetricsServer | None = None
    reporter: PeriodicReporter | None = None
    dashboard: LiveDashboard | None = None
    extra: list[TickObserver] = field(default_factory=list)
    _started: bool = False

    @property
    def observers(self) -> list[TickObserver]:
        """Every TickObserver, in the order ticks should reach them."""
        out: list[TickObserver] = []
        for observer in (self.metrics, self.reporter, self.dashboard):
            if observer is not None:
                out.append(observer)
        return out + list(self.extra)

    async def start(self) -> None:
        """Bind the servers (ConfigError naming the port field if one cannot be bound; servers
        already started are stopped again)."""
        if self._started:
            return
        started: list[Any] = []
        try:
            if self.metrics_server is not None:
                await self.metrics_server.start()
                started.append(self.metrics_server)
            if self.dashboard is not None:
                await self.dashboard.start()
                started.append(self.dashboard)
        except BaseException:
            for server in reversed(started):
                await server.stop()
            raise
        self._started = True

    async def stop(self) -> None:
        """Close every observer (the final periodic report is written here), then the servers."""
        for observer in self.observers:
            try:
                observer.close()
            except Exception:  # one observer's failure must not keep the others open
                log.exception("closing %s failed", type(observer).__name__)
        if self.dashboard is not None:
            await self.dashboard.stop()
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        self._started = False


def build_observability(
    cfg: Any,
    *,
    wall_clock: bool = True,
    background_reports: bool = True,
    kv_capacity_tokens: int | None = None,
    registry: CollectorRegistry | None = None,
    title: str = "sla-planner",
) -> Observability:
    """Construct (not start) the observers ``cfg`` asks for; see the module doc.

    ``wall_clock``: tick times are Unix time (live) rather than simulated seconds.
    ``kv_capacity_tokens``: engines' KV cache size, for the KV-usage charts (None: not shown).
    """
    metrics_port = int(cfg.metric_reporting_prometheus_port)
    dashboard_port = int(cfg.live_dashboard_port)
    if metrics_port and metrics_port == dashboard_port:
        raise ConfigError(
            f"live_dashboard_port, metric_reporting_prometheus_port: both are {metrics_port}; "
            "the metrics server and the dashboard need different ports"
        )
    settings = MetricsSettings.from_config(cfg)
    pools = pools_for_mode(cfg.mode)
    obs = Observability()
    if metrics_port:
        obs.metrics = PlannerMetrics(settings, registry)
        obs.metrics_server = MetricsServer(
            obs.metrics.registry, str(cfg.metric_reporting_prometheus_host), metrics_port
        )
    common: dict[str, Any] = dict(
        pools=pools,
        sla_ttft_ms=float(cfg.ttft),
        sla_itl_ms=float(cfg.itl),
        gpus_per_engine=settings.gpus_per_engine,
        kv_capacity_tokens=kv_capacity_tokens,
        wall_clock=wall_clock,
    )
    if cfg.report_interval_hours is not None:
        obs.reporter = PeriodicReporter(
            cfg.report_output_dir,
            float(cfg.report_interval_hours) * 3600.0,
            background=background_reports,
            title=f"{title} report",
            **common,
        )
    if dashboard_port:
        longest = max(settings.intervals_s.values(), default=60.0)
        obs.dashboard = LiveDashboard(
            host=str(cfg.live_dashboard_host),
            port=dashboard_port,
            stale_after_s=3.0 * longest + 60.0,
            config=cfg.to_public_dict(),
            title=f"{title} live dashboard",
            **common,
        )
    return obs


async def start_observers(cfg: Any, **kwargs: Any) -> Observability:
    """:func:`build_observability` then :meth:`Observability.start`."""
    obs = build_observability(cfg, **kwargs)
    await obs.start()
    return obs
