"""What `sla-planner evaluate` prints and writes: one table, results.json, results.csv, report.html.

Files are rendered in memory first and each is written to a temporary name and renamed, so an
interrupted or failed run leaves no half-written result.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .runner import Evaluation

__all__ = ["COLUMNS", "CSV_FIELDS", "format_table", "results_document", "render_csv", "render_html", "write_outputs"]

SCHEMA_VERSION = 1


def _pct(v: Any) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _num(fmt: str) -> Callable[[Any], str]:
    return lambda v: "—" if v is None else fmt.format(v)


def _failed(r: dict[str, Any]) -> str:
    down = r.get("requests_failed_scale_down")
    return f"{r['requests_failed']:,}" + ("" if down is None else f" ({down:,})")


def _peak(r: dict[str, Any]) -> str:
    budget = r["gpu_budget"]
    mark = "" if r["within_budget"] else " OVER"
    return f"{r['peak_gpus_requested']}/{budget if budget > 0 else '∞'}{mark}"


def _deployment(r: dict[str, Any]) -> str:
    d = r.get("deployment", "")
    if d == "dynamic":
        return f"from {r['initial_replicas']}"
    best = r.get("best_static")
    if best is not None and not best["met"]:
        return f"{d} (target not met)"
    return str(d)


#: (header, how to show a record) for every column of the printed table.
COLUMNS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("trace", lambda r: str(r["trace"])),
    ("profile", lambda r: str(r["profile"])),
    ("sim×", lambda r: f"{r['sim_time_scale']:g}"),
    ("start-up s", lambda r: f"{r['startup_delay_s']:g}"),
    ("policy", lambda r: str(r["policy"])),
    ("deployment", _deployment),
    ("SLA all", lambda r: _pct(r["sla_attainment"])),
    ("SLA feasible", lambda r: _pct(r["sla_attainment_feasible"])),
    ("infeasible", lambda r: _num("{:,}")(r["requests_infeasible"])),
    ("GPU-h", lambda r: _num("{:.2f}")(r["gpu_hours"])),
    ("× oracle", lambda r: _num("{:.2f}")(r["gpu_hours_vs_oracle"])),
    ("events/h", lambda r: _num("{:.1f}")(r["scale_events_per_hour"])),
    ("failed (scale-down)", _failed),
    ("peak GPUs/budget", _peak),
    ("replays", lambda r: str(r["replays"])),
    ("wall s", lambda r: _num("{:.1f}")(r["wall_s"])),
]

#: Flat columns of results.csv, in order.
CSV_FIELDS: list[str] = [
    "trace", "profile", "sim_time_scale", "startup_delay_s", "policy", "policy_spec", "deployment",
    "initial_replicas", "requests", "requests_infeasible", "sla_attainment", "sla_attainment_feasible",
    "ttft_attainment", "itl_attainment", "ttft_p99_ms", "itl_p99_ms", "gpu_hours", "oracle_gpu_hours",
    "gpu_hours_vs_oracle", "scale_events", "scale_events_per_hour", "requests_failed",
    "requests_failed_scale_down", "requests_unfinished", "peak_gpus_requested", "peak_gpus_in_use",
    "gpu_budget", "within_budget", "ttft_target_ms", "itl_target_ms", "best_static_target",
    "best_static_met", "replays",
    "sim_duration_s", "replay_wall_s", "wall_s",
]


def _group_key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["trace"], r["profile"], r["sim_time_scale"], r["startup_delay_s"])


def format_table(records: Sequence[dict[str, Any]]) -> str:
    """The one table: a row per cell, a blank line between groups of comparable cells."""
    rows = [[show(r) for _, show in COLUMNS] for r in records]
    headers = [h for h, _ in COLUMNS]
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(headers)]
    left = {0, 1, 4, 5}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    previous = None
    for r, row in zip(records, rows):
        key = _group_key(r)
        if previous is not None and key != previous:
            out.append("")
        previous = key
        out.append(line(row))
    return "\n".join(out)


def results_document(ev: Evaluation) -> dict[str, Any]:
    """The content of results.json."""
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_by": "sla-planner evaluate",
        "matrix": ev.matrix.describe(),
        "backend": ev.backend,
        "jobs": ev.jobs,
        "wall_time_s": ev.wall_s,
        "cells": ev.records,
    }


def render_csv(records: Sequence[dict[str, Any]]) -> str:
    """results.csv: one row per cell, :data:`CSV_FIELDS` columns, empty for unknown values."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in records:
        row = dict(r)
        best = r.get("best_static")
        row["best_static_target"] = None if best is None else best["target"]
        row["best_static_met"] = None if best is None else best["met"]
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in CSV_FIELDS})
    return buf.getvalue()


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
       max-width: 1400px; padding: 0 24px 24px; color: #1f2933; background: #fafbfc; }
h1 { font-size: 1.5rem; margin: 20px 0 6px; } h2 { font-size: 1.15rem; margin: 28px 0 8px; }
.meta { color: #52606d; } table { border-collapse: collapse; font-size: 0.85rem; background: #fff; }
th, td { border: 1px solid #e4e7eb; padding: 3px 8px; text-align: right; white-space: nowrap; }
th { background: #f5f7fa; } td.l { text-align: left; } tr.sep td { border-top: 2px solid #9aa5b1; }
section { background: #fff; border: 1px solid #e4e7eb; border-radius: 6px; padding: 4px 12px 12px;
          margin-bottom: 18px; }
"""


def _html_table(records: Sequence[dict[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h, _ in COLUMNS)
    body = []
    previous = None
    for r in records:
        key = _group_key(r)
        cls = ' class="sep"' if previous is not None and key != previous else ""
        previous = key
        cells = "".join(
            f'<td{" class=l" if i in (0, 1, 4, 5) else ""}>{html.escape(show(r))}</td>'
            for i, (_, show) in enumerate(COLUMNS)
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table>\n<tr>{head}</tr>\n" + "\n".join(body) + "\n</table>"


def _figures(ev: Evaluation) -> list[tuple[str, Any]]:
    import plotly.graph_objects as go

    figures: list[tuple[str, Any]] = []
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in ev.records:
        groups.setdefault(_group_key(r), []).append(r)
    target = ev.matrix.best_static_target
    for (trace, profile, scale, delay), rows in groups.items():
        fig = go.Figure()
        for r in rows:
            fig.add_trace(
                go.Scatter(
                    x=[r["gpu_hours"]],
                    y=[None if r["sla_attainment_feasible"] is None else 100 * r["sla_attainment_feasible"]],
                    mode="markers+text",
                    text=[r["policy"]],
                    textposition="top center",
                    name=r["policy"],
                    marker={"size": 11},
                    hovertemplate=(
                        f"{html.escape(r['policy'])}<br>GPU-h %{{x:.2f}}<br>feasible SLA %{{y:.1f}}%"
                        f"<br>all SLA {_pct(r['sla_attainment'])}<br>{html.escape(_deployment(r))}<extra></extra>"
                    ),
                )
            )
        oracle = rows[0].get("oracle_gpu_hours")
        if oracle:
            fig.add_vline(x=oracle, line_dash="dot", annotation_text="oracle GPU-h")
        fig.add_hline(y=100 * target, line_dash="dash", annotation_text=f"target {100 * target:g}%")
        fig.update_layout(
            xaxis_title="GPU-hours", yaxis_title="SLA attainment over feasible requests (%)",
            height=420, margin={"t": 30, "b": 50}, showlegend=False,
        )
        figures.append((f"{trace} · {profile} · sim×{scale:g} · start-up {delay:g} s", fig))
    bar = go.Figure()
    labels = [" · ".join(str(x) for x in k) for k in groups]
    for policy in dict.fromkeys(r["policy"] for r in ev.records):
        by_group = {_group_key(r): r["gpu_hours_vs_oracle"] for r in ev.records if r["policy"] == policy}
        bar.add_trace(go.Bar(name=policy, x=labels, y=[by_group.get(k) for k in groups]))
    bar.update_layout(barmode="group", yaxis_title="GPU-hours × oracle", height=460, margin={"t": 30})
    figures.append(("GPU-hours relative to the hindsight oracle", bar))
    return figures


def render_html(ev: Evaluation) -> str:
    """A self-contained comparison page: the table and figures, plotly.js embedded once."""
    parts = []
    for i, (title, fig) in enumerate(_figures(ev)):
        div = fig.to_html(
            full_html=False, include_plotlyjs=i == 0, include_mathjax=False, div_id=f"figure-{i + 1}",
            config={"displaylogo": False, "responsive": True}, default_width="100%",
        )
        parts.append(f'<section id="section-{i + 1}"><h2>{html.escape(title)}</h2>\n{div}\n</section>')
    first = ev.records[0] if ev.records else {}
    meta = (
        f"{len(ev.records)} cells · {ev.backend}, {ev.jobs} jobs · {ev.wall_s:.0f} s · "
        f"SLA TTFT {first.get('ttft_target_ms', 0):g} ms / ITL {first.get('itl_target_ms', 0):g} ms · best static target "
        f"{100 * ev.matrix.best_static_target:g}% of feasible requests"
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sla-planner evaluate</title>
<style>{_CSS}</style>
</head>
<body>
<h1>sla-planner evaluate</h1>
<p class="meta">{html.escape(meta)}</p>
<div style="overflow-x:auto">{_html_table(ev.records)}</div>
{chr(10).join(parts)}
</body>
</html>
"""


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_outputs(ev: Evaluation, out_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Write results.json, results.csv and report.html into ``out_dir``; their paths."""
    out = Path(out_dir)
    texts = {
        "results.json": json.dumps(results_document(ev), indent=2, sort_keys=False, allow_nan=False) + "\n",
        "results.csv": render_csv(ev.records),
        "report.html": render_html(ev),
    }
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, text in texts.items():
        _write_atomic(out / name, text)
        paths[name] = str(out / name)
    return paths
