"""Observability: the planner's Prometheus metrics, periodic HTML reports, the live dashboard, and
the self-contained HTML report of a replay or live run (Plotly figures).

Names are re-exported lazily so that importing one ``observe`` module does not pull in the others
(plotly, aiohttp, prometheus-client are only loaded by the parts that use them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .dashboard import LiveDashboard
    from .metrics import MetricsSettings, PlannerMetrics
    from .periodic import PeriodicReporter
    from .report import build_figures, render_report_html, write_report
    from .servers import MetricsServer
    from .wiring import Observability, build_observability, start_observers

_EXPORTS = {
    "build_figures": "report",
    "render_report_html": "report",
    "write_report": "report",
    "MetricsSettings": "metrics",
    "PlannerMetrics": "metrics",
    "MetricsServer": "servers",
    "PeriodicReporter": "periodic",
    "LiveDashboard": "dashboard",
    "Observability": "wiring",
    "build_observability": "wiring",
    "start_observers": "wiring",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is not None:
        return getattr(importlib.import_module(f".{module}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
