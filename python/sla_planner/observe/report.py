"""One self-contained HTML page per replay (or live-run window): summary table plus Plotly figures.

The page embeds plotly.js exactly once (about 4.8 MB) and loads nothing from the network, so it
opens offline and can be archived as a single file. Every string that comes from the record is
HTML-escaped.
"""

from __future__ import annotations

import html
import json
import math
import numbers
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from .figures import (
    decisions_figure,
    engines_figure,
    gpus_figure,
    latency_figure,
    replicas_figure,
    traffic_figure,
)
from .report_record import ReportRecord, parse_record

__all__ = ["build_figures", "format_summary_value", "render_report_html", "write_report"]

_SHARE_KEY_PARTS = ("attainment", "share", "fraction")
"""Summary keys containing one of these hold a 0..1 share and are shown as a percentage."""

_PLOTLY_CONFIG: dict[str, Any] = {"displaylogo": False, "responsive": True}

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1f2933; background: #fafbfc; }
header, main, footer { max-width: 1200px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 20px; }
h1 { font-size: 1.5rem; margin: 0 0 6px; word-break: break-word; }
h2 { font-size: 1.15rem; margin: 28px 0 8px; }
.meta { color: #52606d; margin: 0 0 12px; }
nav ul { list-style: none; padding: 0; margin: 8px 0 16px; display: flex; flex-wrap: wrap;
         gap: 14px; }
nav a { color: #1f77b4; text-decoration: none; }
table.summary { border-collapse: collapse; font-size: 0.92rem; background: #fff; }
table.summary th, table.summary td { border: 1px solid #e4e7eb; padding: 4px 10px;
                                     text-align: left; }
table.summary th { font-weight: 600; font-family: ui-monospace, monospace; background: #f5f7fa; }
table.summary td { font-variant-numeric: tabular-nums; word-break: break-word; }
section { background: #fff; border: 1px solid #e4e7eb; border-radius: 6px; padding: 4px 12px 12px;
          margin-bottom: 18px; }
footer { color: #7b8794; font-size: 0.85rem; padding-top: 12px; padding-bottom: 24px; }
"""


def build_figures(record: Mapping[str, Any] | ReportRecord) -> list[tuple[str, go.Figure]]:
    """The report's figures in page order, each with its section title."""
    rec = record if isinstance(record, ReportRecord) else parse_record(record)
    engines_title, engines = engines_figure(rec)
    return [
        ("Replicas per pool", replicas_figure(rec)),
        ("Observed vs predicted traffic", traffic_figure(rec)),
        ("TTFT and ITL vs SLA", latency_figure(rec)),
        (engines_title, engines),
        ("Decisions timeline", decisions_figure(rec)),
        ("GPUs in use and GPU-hours", gpus_figure(rec)),
    ]


def _is_share_key(key: str) -> bool:
    lowered = key.lower()
    return any(part in lowered for part in _SHARE_KEY_PARTS)


def format_summary_value(key: str, value: object) -> str:
    """Plain text for one summary value: shares as %, integers with separators, floats to 4 s.f."""
    if value is None:
        return "—"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            return str(number)
        if _is_share_key(key):
            return f"{number * 100:.2f} %"
        if abs(number) >= 1000:
            return f"{number:,.0f}" if number.is_integer() else f"{number:,.1f}"
        return f"{number:.4g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, sort_keys=True)


def _summary_rows(summary: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(key, formatted value) for every summary key; nested objects become dotted keys."""
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _summary_rows(value, f"{name}.")
        else:
            yield name, format_summary_value(str(key), value)


def _summary_table(summary: Mapping[str, Any]) -> str:
    rows = [
        f"<tr><th>{html.escape(key)}</th><td>{html.escape(value)}</td></tr>"
        for key, value in _summary_rows(summary)
    ]
    if not rows:
        return '<p class="meta">No summary values.</p>'
    return '<table class="summary">\n' + "\n".join(rows) + "\n</table>"


def _meta_line(rec: ReportRecord) -> str:
    parts = []
    if math.isfinite(rec.sla_ttft_ms):
        parts.append(f"TTFT SLA ≤ {rec.sla_ttft_ms:g} ms")
    if math.isfinite(rec.sla_itl_ms):
        parts.append(f"ITL SLA ≤ {rec.sla_itl_ms:g} ms")
    parts.append("pools: " + (", ".join(rec.pools) if rec.pools else "none"))
    parts.append(f"{len(rec.ticks):,} ticks")
    parts.append(f"{len(rec.scale_events):,} scale events")
    return html.escape(" · ".join(parts))


def _figure_html(fig: go.Figure, div_id: str, include_plotlyjs: bool) -> str:
    height = fig.layout.height
    return str(
        fig.to_html(
            full_html=False,
            include_plotlyjs=include_plotlyjs,
            include_mathjax=False,
            div_id=div_id,
            config=_PLOTLY_CONFIG,
            default_width="100%",
            default_height=f"{int(height)}px" if height else "450px",
        )
    )


def render_report_html(record: Mapping[str, Any] | ReportRecord) -> str:
    """The whole report as one HTML page, plotly.js embedded once, no network references."""
    rec = record if isinstance(record, ReportRecord) else parse_record(record)
    figures = build_figures(rec)
    nav = "\n".join(
        f'<li><a href="#section-{i}">{html.escape(title)}</a></li>'
        for i, (title, _) in enumerate(figures, start=1)
    )
    sections = "\n".join(
        f'<section id="section-{i}">\n<h2>{html.escape(title)}</h2>\n'
        f"{_figure_html(fig, f'figure-{i}', include_plotlyjs=i == 1)}\n</section>"
        for i, (title, fig) in enumerate(figures, start=1)
    )
    title = html.escape(rec.title)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{_CSS}</style>
</head>
<body>
<header>
<h1>{title}</h1>
<p class="meta">{_meta_line(rec)}</p>
{_summary_table(rec.summary)}
<nav><ul>
{nav}
</ul></nav>
</header>
<main>
{sections}
</main>
<footer>Generated by {html.escape(rec.generated_by)}</footer>
</body>
</html>
"""


def write_report(path: str | os.PathLike[str], record: Mapping[str, Any] | ReportRecord) -> Path:
    """Render the report and write it atomically (temporary file, then rename) to ``path``."""
    target = Path(path)
    page = render_report_html(record)  # a bad record fails before anything touches the disk
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would make the report private to the writer
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(page)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target
