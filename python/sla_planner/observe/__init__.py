"""Observability: the self-contained HTML report of a replay or live run (Plotly figures).

The report functions are re-exported lazily so that importing another ``observe`` module (planner
metrics, dashboard) does not pull in plotly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .report import build_figures, render_report_html, write_report

__all__ = ["build_figures", "render_report_html", "write_report"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import report

        return getattr(report, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
