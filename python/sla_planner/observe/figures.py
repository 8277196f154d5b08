"""Plotly figures for a replay or live-run report, one per report section.

Every builder takes a validated :class:`ReportRecord` and returns a figure; a series with no
finite values is left out, and a panel with nothing to show carries a "no data" note. Strings that
come from users' data (worker ids, pool names, reasons) are HTML-escaped before plotly sees them,
because plotly.js renders a subset of HTML in names and hover text.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from .report_record import FloatArray, ReportRecord, ScaleEventRow, TickSeries

__all__ = [
    "MAX_ENGINE_TRACES",
    "MAX_REQUEST_POINTS",
    "decisions_figure",
    "engines_figure",
    "gpus_figure",
    "latency_figure",
    "replicas_figure",
    "traffic_figure",
]

MAX_ENGINE_TRACES = 40
"""Above this many engines the queue figure shows pool aggregates (p50, max) instead."""
MAX_REQUEST_POINTS = 20_000
"""Per-request scatter points drawn at most (evenly strided beyond this)."""
_WEBGL_FROM_POINTS = 10_000
_ENGINE_PALETTE = tuple(qualitative.Dark24) + tuple(qualitative.Light24)  # 48 distinct colours
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")
_TIME_AXIS = "time (s)"
_HEIGHT_PX = 420
_GRID = "#e4e7eb"


def _esc(text: str) -> str:
    return html.escape(text, quote=False)


def _color(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def _has_data(*series: FloatArray) -> bool:
    return any(bool(np.isfinite(s).any()) for s in series if s.size)


def _scatter_class(points: int) -> type[go.Scatter] | type[go.Scattergl]:
    chosen = go.Scattergl if points >= _WEBGL_FROM_POINTS else go.Scatter
    return cast("type[go.Scatter] | type[go.Scattergl]", chosen)


def _no_data(fig: go.Figure, row: int | None = None, col: int | None = None) -> None:
    """Annotate a panel (or the whole figure) as empty."""
    note: dict[str, Any] = dict(
        text="no data", showarrow=False, x=0.5, y=0.5, font=dict(size=16, color="#888")
    )
    if row is None:
        fig.add_annotation(xref="paper", yref="paper", **note)
    else:
        fig.add_annotation(xref="x domain", yref="y domain", row=row, col=col, **note)


def _base_layout(
    fig: go.Figure,
    y_title: str | None = None,
    height_px: int = _HEIGHT_PX,
    legend_on_top: bool = False,
) -> None:
    """Shared look: white template, time on x; legend at the right (or on top, one row)."""
    legend = (
        dict(orientation="h", yanchor="bottom", y=1.02, x=0.0)
        if legend_on_top
        else dict(orientation="v", yanchor="top", y=1.0, x=1.02)
    )
    # Colours set directly rather than through template="plotly_white": assigning a named
    # template deep-copies and re-validates it per figure, which dominated report build time.
    fig.update_layout(
        height=height_px,
        margin=dict(l=60, r=30, t=50, b=50),
        legend=legend,
        plot_bgcolor="white",
        paper_bgcolor="white",
    )
    fig.update_xaxes(title_text=_TIME_AXIS, gridcolor=_GRID, zerolinecolor=_GRID, linecolor=_GRID)
    fig.update_yaxes(gridcolor=_GRID, zerolinecolor=_GRID, linecolor=_GRID)
    if y_title is not None:
        fig.update_yaxes(title_text=y_title)


def _kind_groups(ticks: TickSeries) -> list[tuple[str, npt.NDArray[np.intp]]]:
    """Tick indices per tick kind, kinds in order of first appearance."""
    order: dict[str, list[int]] = {}
    for i, kind in enumerate(ticks.kind):
        order.setdefault(kind, []).append(i)
    return [(kind, np.array(idx, dtype=np.intp)) for kind, idx in order.items()]


def _previous(values: FloatArray) -> FloatArray:
    """``values`` shifted one step later: element i is what was known at step i - 1."""
    out = np.full(values.shape, math.nan)
    out[1:] = values[:-1]
    return out


def _targets_text(targets: dict[str, float] | None) -> str:
    """``prefill → 2, decode → 3`` for hover text; unknown or non-finite counts show ``?``."""
    if targets is None:
        return "none (hold)"
    if not targets:
        return "{}"
    return ", ".join(
        f"{_esc(p)} → {int(n) if math.isfinite(n) else '?'}" for p, n in targets.items()
    )


def _step_value(t_s: FloatArray, values: FloatArray, at_s: float) -> float:
    """Value of a step series (held from each tick) at ``at_s``; NaN before the first tick."""
    i = int(np.searchsorted(t_s, at_s, side="right")) - 1
    return float(values[i]) if i >= 0 else math.nan


def _event_markers(rec: ReportRecord, fig: go.Figure, pool_colors: dict[str, str]) -> None:
    """Triangles at each scale event, on the pool's alive line (or a running count without one)."""
    ticks = rec.ticks
    for pool in rec.pools:
        events = sorted((e for e in rec.scale_events if e.pool == pool), key=lambda e: e.t_s)
        running = 0
        heights: list[float] = []
        for e in events:
            running += 1 if e.action == "add" else -1
            y = _step_value(ticks.t_s, ticks.replicas[pool], e.t_s)
            heights.append(float(running) if math.isnan(y) else y)
        for action, symbol in (("add", "triangle-up"), ("remove", "triangle-down")):
            chosen = [k for k, e in enumerate(events) if e.action == action]
            if not chosen:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[events[k].t_s for k in chosen],
                    y=[heights[k] for k in chosen],
                    mode="markers",
                    marker=dict(
                        symbol=symbol,
                        size=11,
                        color=pool_colors[pool],
                        line=dict(width=1, color="#333"),
                    ),
                    name=f"{_esc(pool)} {action}",
                    legendgroup=pool,
                    hovertext=[_event_text(events[k]) for k in chosen],
                    hoverinfo="text",
                )
            )


def _event_text(e: ScaleEventRow) -> str:
    ready = ""
    if e.action == "add":
        ready = ", never ready" if math.isnan(e.ready_at_s) else f", ready at {e.ready_at_s:.1f} s"
    failed = "" if e.failed_requests is None else f"<br>failed requests: {e.failed_requests}"
    return (
        f"{e.action} {_esc(e.pool)} engine <b>{_esc(e.worker_id)}</b><br>"
        f"t = {e.t_s:.1f} s{ready}{failed}"
    )


def replicas_figure(rec: ReportRecord) -> go.Figure:
    """Alive and ready engines per pool (step lines), targets (markers), scale events."""
    fig = go.Figure()
    ticks = rec.ticks
    colors = {pool: _color(i) for i, pool in enumerate(rec.pools)}
    for pool in rec.pools:
        alive, ready = ticks.replicas[pool], ticks.ready[pool]
        target = np.array(
            [math.nan if t is None else t.get(pool, math.nan) for t in ticks.targets]
        )
        name = _esc(pool)
        if _has_data(alive):
            fig.add_trace(go.Scatter(x=ticks.t_s, y=alive, mode="lines", line_shape="hv",
                                     line=dict(color=colors[pool], width=2), name=f"{name} alive",
                                     legendgroup=pool))
        if _has_data(ready):
            fig.add_trace(go.Scatter(x=ticks.t_s, y=ready, mode="lines", line_shape="hv",
                                     line=dict(color=colors[pool], width=1.5, dash="dot"),
                                     name=f"{name} ready", legendgroup=pool))
        if _has_data(target):
            fig.add_trace(go.Scatter(x=ticks.t_s, y=target, mode="markers",
                                     marker=dict(symbol="x-thin-open", size=9, color=colors[pool],
                                                 line=dict(width=2, color=colors[pool])),
                                     name=f"{name} target", legendgroup=pool))
    _event_markers(rec, fig, colors)
    _base_layout(fig, "engines")
    fig.update_layout(hovermode="closest")
    if not fig.data:
        _no_data(fig)
    return fig


def _paired_traces(
    fig: go.Figure,
    ticks: TickSeries,
    row: int,
    series: Sequence[tuple[str, str]],
) -> None:
    """Observed (solid) and previous-tick forecast (dashed) series per tick kind, in one panel.

    ``series`` holds (label, field); the field names both the observed and the forecast value.
    """
    groups = [
        (kind, idx)
        for kind, idx in _kind_groups(ticks)
        if any(
            _has_data(ticks.observed[name][idx], ticks.forecast[name][idx]) for _, name in series
        )
    ]
    for g, (kind, idx) in enumerate(groups):
        suffix = f" ({_esc(kind)})" if len(groups) > 1 else ""
        t = ticks.t_s[idx]
        for s, (label, name) in enumerate(series):
            color = _color(2 * g + s)
            observed = ticks.observed[name][idx]
            if _has_data(observed):
                fig.add_trace(go.Scatter(x=t, y=observed, mode="lines+markers", marker_size=4,
                                         line=dict(color=color), name=f"{label} observed{suffix}"),
                              row=row, col=1)
            predicted = _previous(ticks.forecast[name][idx])
            if _has_data(predicted):
                fig.add_trace(go.Scatter(x=t, y=predicted, mode="lines+markers", marker_size=4,
                                         line=dict(color=color, dash="dash"),
                                         name=f"{label} predicted{suffix}"),
                              row=row, col=1)
    if not groups:
        _no_data(fig, row=row, col=1)


def traffic_figure(rec: ReportRecord) -> go.Figure:
    """Observed request count, ISL and OSL per interval vs the forecast made one tick earlier."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=("requests per interval", "mean ISL / OSL (tokens)"))
    _paired_traces(fig, rec.ticks, 1, [("requests", "num_req")])
    _paired_traces(fig, rec.ticks, 2, [("ISL", "isl"), ("OSL", "osl")])
    _base_layout(fig, height_px=560)
    fig.update_xaxes(title_text=None, row=1, col=1)
    fig.update_yaxes(title_text="requests", row=1, col=1)
    fig.update_yaxes(title_text="tokens", row=2, col=1)
    fig.update_layout(hovermode="x unified")
    return fig


def _request_points(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray, int]:
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    total = int(x.size)
    if total > MAX_REQUEST_POINTS:
        stride = math.ceil(total / MAX_REQUEST_POINTS)
        x, y = x[::stride], y[::stride]
    return x, y, total


def latency_figure(rec: ReportRecord) -> go.Figure:
    """Per-window TTFT and ITL means against the SLA, over the per-request scatter."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=("TTFT (ms)", "ITL (ms)"))
    ticks, req = rec.ticks, rec.requests
    panels = ((1, "TTFT", "ttft_ms", req.ttft_ms, rec.sla_ttft_ms),
              (2, "ITL", "itl_ms", req.itl_ms, rec.sla_itl_ms))
    for row, label, field, per_request, sla_ms in panels:
        x, y, total = _request_points(req.finish_s, per_request)
        if x.size:
            shown = "" if x.size == total else f", {x.size:,} of {total:,} shown"
            fig.add_trace(go.Scattergl(x=x, y=y, mode="markers",
                                       marker=dict(size=3, color="#9aa5b1", opacity=0.45),
                                       name=f"{label} per request{shown}",
                                       hovertemplate="finish %{x:.1f} s<br>%{y:.1f} ms"),
                          row=row, col=1)
        plotted = x.size > 0
        groups = [
            (k, idx) for k, idx in _kind_groups(ticks) if _has_data(ticks.observed[field][idx])
        ]
        for g, (kind, idx) in enumerate(groups):
            suffix = f" ({_esc(kind)})" if len(groups) > 1 else ""
            fig.add_trace(go.Scatter(x=ticks.t_s[idx], y=ticks.observed[field][idx],
                                     mode="lines+markers", marker_size=4,
                                     line=dict(color=_color(g)),
                                     name=f"{label} window mean{suffix}"),
                          row=row, col=1)
            plotted = True
        if math.isfinite(sla_ms):
            fig.add_hline(y=sla_ms, line=dict(color="#d62728", dash="dash", width=2),
                          annotation_text=f"{label} SLA {sla_ms:g} ms",
                          annotation_position="top left", row=row, col=1)
        if not plotted:
            _no_data(fig, row=row, col=1)
    _base_layout(fig, height_px=600)
    fig.update_xaxes(title_text=None, row=1, col=1)
    fig.update_yaxes(title_text="ms")
    return fig


def _engine_keys(rec: ReportRecord) -> list[tuple[str, str]]:
    return list(dict.fromkeys(zip(rec.engines.pool, rec.engines.worker_id, strict=True)))


def _aggregate(t_s: FloatArray, values: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per distinct time: (times, median, max) of the finite values."""
    keep = np.isfinite(values)
    t, v = t_s[keep], values[keep]
    if t.size == 0:
        empty = np.empty(0)
        return empty, empty, empty
    order = np.lexsort((v, t))
    t, v = t[order], v[order]
    starts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
    ends = np.r_[starts[1:], t.size]
    n = ends - starts
    median = 0.5 * (v[starts + (n - 1) // 2] + v[starts + n // 2])
    return t[starts], median, v[ends - 1]


_ENGINE_PANELS = (
    (1, "queued_prefill_tokens", "queued prefill tokens"),
    (2, "kv_usage", "KV usage"),
)


def engines_figure(rec: ReportRecord) -> tuple[str, go.Figure]:
    """Queued prefill tokens and KV usage per engine, or pool p50/max above MAX_ENGINE_TRACES."""
    eng = rec.engines
    keys = _engine_keys(rec)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=tuple(label for _, _, label in _ENGINE_PANELS))
    if len(keys) > MAX_ENGINE_TRACES:
        title = (f"Per-engine queues — {len(keys)} engines, more than {MAX_ENGINE_TRACES}: "
                 "pool aggregates (p50 and max across engines) instead of one trace per engine")
        _add_pool_aggregates(fig, rec)
    else:
        title = f"Per-engine queues — {len(keys)} engine{'' if len(keys) == 1 else 's'}"
        _add_engine_traces(fig, rec, keys)
    for row, column, _ in _ENGINE_PANELS:
        if not _has_data(getattr(eng, column)):
            _no_data(fig, row=row, col=1)
    _base_layout(fig, height_px=620)
    fig.update_layout(hovermode="closest")
    fig.update_xaxes(title_text=None, row=1, col=1)
    fig.update_yaxes(title_text="tokens", row=1, col=1)
    fig.update_yaxes(title_text="share of KV cache", tickformat=".0%", row=2, col=1)
    return title, fig


def _engine_hover(label: str) -> str:
    # The trace name is referenced, not interpolated: a worker id must not become a template.
    return f"%{{fullData.name}}<br>%{{x:.1f}} s: %{{y:.3~g}} {label}<extra></extra>"


def _add_engine_traces(fig: go.Figure, rec: ReportRecord, keys: list[tuple[str, str]]) -> None:
    eng = rec.engines
    cls = _scatter_class(2 * len(eng))
    rows_of: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(zip(eng.pool, eng.worker_id, strict=True)):
        rows_of.setdefault(key, []).append(i)
    for k, key in enumerate(keys):
        idx = np.array(rows_of[key], dtype=np.intp)
        idx = idx[np.argsort(eng.t_s[idx], kind="stable")]
        pool, worker_id = key
        name = _esc(worker_id if worker_id.startswith(pool) else f"{pool}/{worker_id}")
        for row, column, label in _ENGINE_PANELS:
            values = getattr(eng, column)[idx]
            if not _has_data(values):
                continue
            color = _ENGINE_PALETTE[k % len(_ENGINE_PALETTE)]
            fig.add_trace(cls(x=eng.t_s[idx], y=values, mode="lines", line=dict(color=color),
                              name=name, legendgroup=name, showlegend=row == 1,
                              hovertemplate=_engine_hover(label)),
                          row=row, col=1)


def _add_pool_aggregates(fig: go.Figure, rec: ReportRecord) -> None:
    eng = rec.engines
    pools = np.array(eng.pool, dtype=object)
    for p, pool in enumerate(rec.pools):
        in_pool = pools == pool
        if not in_pool.any():
            continue
        for row, column, label in _ENGINE_PANELS:
            t, median, peak = _aggregate(eng.t_s[in_pool], getattr(eng, column)[in_pool])
            if t.size == 0:
                continue
            cls = _scatter_class(2 * t.size)
            for stat, y, dash in (("p50", median, "solid"), ("max", peak, "dot")):
                name = f"{_esc(pool)} {stat}"
                fig.add_trace(cls(x=t, y=y, mode="lines", line=dict(color=_color(p), dash=dash),
                                  name=name, legendgroup=name, showlegend=row == 1,
                                  hovertemplate=_engine_hover(label)),
                              row=row, col=1)


def decisions_figure(rec: ReportRecord) -> go.Figure:
    """One marker per tick on a categorical axis of reasons; hover shows targets and replicas."""
    ticks = rec.ticks
    fig = go.Figure()
    reasons = sorted({_esc(r) for r in ticks.reason})
    for g, (kind, idx) in enumerate(_kind_groups(ticks)):
        hover = []
        for i in idx:
            replicas = {p: float(ticks.replicas[p][i]) for p in rec.pools}
            known = {p: n for p, n in replicas.items() if not math.isnan(n)}
            hover.append(
                f"t = {ticks.t_s[i]:.1f} s · {_esc(kind)} tick"
                f"<br>reason: <b>{_esc(ticks.reason[i])}</b>"
                f"<br>targets: {_targets_text(ticks.targets[i])}"
                f"<br>replicas: {_targets_text(known)}"
            )
        symbols = ["circle-open" if ticks.targets[i] is None else "circle" for i in idx]
        fig.add_trace(
            _scatter_class(len(ticks))(
                x=ticks.t_s[idx],
                y=[_esc(ticks.reason[i]) for i in idx],
                mode="markers",
                marker=dict(color=_color(g), size=9, symbol=symbols),
                name=f"{_esc(kind)} tick",
                hovertext=hover,
                hoverinfo="text",
            )
        )
    _base_layout(fig, height_px=max(300, 160 + 32 * len(reasons)))
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=reasons, title_text=None)
    fig.update_layout(hovermode="closest")
    if not fig.data:
        _no_data(fig)
    return fig


def gpus_figure(rec: ReportRecord) -> go.Figure:
    """GPUs in use (step line, left axis) and cumulative GPU-hours (right axis)."""
    ticks = rec.ticks
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    if _has_data(ticks.gpus):
        fig.add_trace(go.Scatter(x=ticks.t_s, y=ticks.gpus, mode="lines", line_shape="hv",
                                 line=dict(color=_color(0), width=2), name="GPUs in use"),
                      secondary_y=False)
    if _has_data(ticks.gpu_hours):
        fig.add_trace(go.Scatter(x=ticks.t_s, y=ticks.gpu_hours, mode="lines",
                                 line=dict(color=_color(1), width=2),
                                 name="GPU-hours (cumulative)"),
                      secondary_y=True)
    _base_layout(fig, legend_on_top=True)
    fig.update_yaxes(title_text="GPUs", rangemode="tozero", secondary_y=False)
    fig.update_yaxes(title_text="GPU-hours", rangemode="tozero", secondary_y=True, showgrid=False)
    fig.update_layout(hovermode="x unified")
    if not fig.data:
        _no_data(fig)
    return fig
