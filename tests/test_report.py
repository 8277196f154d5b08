"""The self-contained HTML report: figures, summary table, escaping, offline plotly, bad records."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import pytest

from sla_planner.errors import ReportDataError
from sla_planner.observe import build_figures, render_report_html, write_report
from sla_planner.observe import figures as figures_module
from sla_planner.observe.report import format_summary_value
from sla_planner.observe.report_record import parse_record

SECTION_TITLES = (
    "Replicas per pool",
    "Observed vs predicted traffic",
    "TTFT and ITL vs SLA",
    "Per-engine queues",
    "Decisions timeline",
    "GPUs in use and GPU-hours",
)
EVIL = "<script>alert(1)</script>"


def make_record(n_ticks: int = 6, engines_per_pool: int = 2) -> dict[str, Any]:
    """A small disaggregated replay: throughput ticks every 3rd tick, load ticks between."""
    pools = ["prefill", "decode"]
    ticks = []
    engines = []
    for i in range(n_ticks):
        t = 10.0 * i
        throughput = i % 3 == 0
        replicas = {"prefill": 1 + i // 3, "decode": 2}
        ticks.append(
            {
                "t_s": t,
                "kind": "throughput" if throughput else "load",
                "reason": "scale_up" if i == 3 else "no_change",
                "replicas": replicas,
                "ready": {"prefill": 1, "decode": 2},
                "targets": {"prefill": 2, "decode": 2} if i == 3 else None,
                "observed": {
                    "num_req": 100.0 + i,
                    "isl": 3000.0,
                    "osl": 150.0 + i,
                    "ttft_ms": 400.0 + 10 * i,
                    "itl_ms": 20.0 + i,
                    "request_duration_s": 5.0,
                }
                if throughput
                else None,
                "forecast": {"num_req": 110.0 + i, "isl": 3100.0, "osl": 160.0}
                if throughput
                else None,
                "gpus": replicas["prefill"] + replicas["decode"],
                "gpu_hours": 0.01 * i,
                "in_flight": 12,  # extra keys from the replay adapter are ignored
            }
        )
        for pool in pools:
            for e in range(engines_per_pool):
                engines.append(
                    {
                        "t_s": t,
                        "worker_id": f"{pool}-{e}",
                        "pool": pool,
                        "queued_prefill_tokens": float(100 * e + i),
                        "queued_requests": float(e),
                        "running_requests": 4.0,
                        "kv_usage": 0.1 * (e + 1),
                    }
                )
    n_req = 50
    return {
        "title": "sla-planner replay — synthetic.jsonl",
        "generated_by": "sla-planner 0.1.0",
        "summary": {
            "requests_total": 1234,
            "requests_failed": 3,
            "outcomes": {"ok": 1231, "failed_engine_removed": 3},
            "ttft_sla_attainment": 0.98765,
            "itl_sla_attainment": 0.5,
            "sla_attainment": None,
            "ttft_p99_ms": 1523.26,
            "gpu_hours": 0.0123456,
            "wall_time_s": 12345.678,
            "policy": "planner",
            "advisory": False,
        },
        "sla": {"ttft_ms": 2000.0, "itl_ms": 30.0},
        "pools": pools,
        "ticks": ticks,
        "engines": engines,
        "requests_sample": {
            "finish_s": [float(k) for k in range(n_req)],
            "ttft_ms": [300.0 + k for k in range(n_req)],
            "itl_ms": [18.0 + 0.1 * k for k in range(n_req)],
        },
        "scale_events": [
            {"t_s": 30.0, "pool": "prefill", "action": "add", "worker_id": "prefill-9",
             "ready_at_s": 45.0, "failed_requests": 0},
            {"t_s": 50.0, "pool": "decode", "action": "remove", "worker_id": "decode-1",
             "ready_at_s": None, "failed_requests": 2},
        ],
    }  # fmt: skip


def empty_record() -> dict[str, Any]:
    return {
        "title": "empty",
        "generated_by": "sla-planner 0.1.0",
        "summary": {},
        "sla": {"ttft_ms": None, "itl_ms": None},
        "pools": ["agg"],
        "ticks": [],
        "engines": [],
        "requests_sample": {"finish_s": [], "ttft_ms": [], "itl_ms": []},
        "scale_events": [],
    }


BUILDERS = {
    "Replicas": figures_module.replicas_figure,
    "Observed vs predicted": figures_module.traffic_figure,
    "TTFT and ITL": figures_module.latency_figure,
    "Per-engine queues": lambda rec: figures_module.engines_figure(rec)[1],
    "Decisions": figures_module.decisions_figure,
    "GPUs": figures_module.gpus_figure,
}


def figure_by_title(record: dict[str, Any], prefix: str) -> go.Figure:
    """One figure, built alone (plotly figure construction dominates this file's run time)."""
    return BUILDERS[prefix](parse_record(record))


def trace(fig: go.Figure, name: str) -> Any:
    matches = [t for t in fig.data if t.name == name]
    assert len(matches) == 1, [t.name for t in fig.data]
    return matches[0]


def has_no_data_note(fig: go.Figure) -> bool:
    return any(a.text == "no data" for a in fig.layout.annotations)


@pytest.fixture(scope="module")
def page() -> str:
    return render_report_html(make_record())


# --- the page ------------------------------------------------------------------------------------


def test_page_has_every_section_title(page: str) -> None:
    for title in SECTION_TITLES:
        assert f"<h2>{title}" in page


@pytest.mark.parametrize(
    "key, shown",
    [
        ("requests_total", "1,234"),
        ("outcomes.failed_engine_removed", "3"),
        ("ttft_sla_attainment", "98.77 %"),
        ("itl_sla_attainment", "50.00 %"),
        ("sla_attainment", "—"),
        ("ttft_p99_ms", "1,523.3"),
        ("gpu_hours", "0.01235"),
        ("wall_time_s", "12,345.7"),
        ("policy", "planner"),
        ("advisory", "no"),
    ],
    ids=lambda v: str(v),
)
def test_page_summary_table_shows_every_value(page: str, key: str, shown: str) -> None:
    assert f"<tr><th>{key}</th><td>{shown}</td></tr>" in page


def test_page_embeds_plotlyjs_once_and_loads_nothing_from_the_network(page: str) -> None:
    assert page.count("plotly.js v") == 1
    assert page.count("Plotly.newPlot(") == len(SECTION_TITLES)
    assert "<script src=" not in page
    assert not re.search(r"<script[^>]+src=", page)


def test_page_header_and_footer(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>sla-planner replay — synthetic.jsonl</title>" in page
    assert "<footer>Generated by sla-planner 0.1.0</footer>" in page
    assert "TTFT SLA ≤ 2000 ms · ITL SLA ≤ 30 ms · pools: prefill, decode" in page


def test_user_strings_are_html_escaped() -> None:
    record = make_record(n_ticks=3, engines_per_pool=1)
    record["title"] = EVIL
    record["generated_by"] = EVIL
    record["summary"] = {EVIL: EVIL}
    record["engines"][0]["worker_id"] = EVIL
    record["scale_events"][0]["worker_id"] = EVIL
    page = render_report_html(record)
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # title, summary, footer
    # in figure data (names, hover text) plotly.js shows the entity-decoded text
    assert "&lt;script&gt;alert(1)&lt;\\u002fscript&gt;" in page
    engines = figure_by_title(record, "Per-engine queues")
    assert f"prefill/{EVIL}".replace("<", "&lt;").replace(">", "&gt;") in {
        t.name for t in engines.data
    }


@pytest.mark.parametrize(
    "record",
    [empty_record(), {}],
    ids=["all-keys-empty", "no-keys"],
)
def test_empty_record_renders_with_no_data_notes(record: dict[str, Any]) -> None:
    page = render_report_html(record)
    sections = page.split('<section id="section-')[1:]
    assert len(sections) == len(SECTION_TITLES)
    for section in sections:
        assert '"text":"no data"' in section
    assert page.count("plotly.js v") == 1
    assert "No summary values." in page


def test_all_none_series_render_as_no_data() -> None:
    record = make_record(n_ticks=4)
    for tick in record["ticks"]:
        tick.update(gpus=None, gpu_hours=None, observed=None, forecast=None)
    record["requests_sample"] = {"finish_s": [None] * 3, "ttft_ms": [None] * 3, "itl_ms": None}
    assert has_no_data_note(figure_by_title(record, "GPUs"))
    assert has_no_data_note(figure_by_title(record, "Observed vs predicted"))
    latency = figure_by_title(record, "TTFT and ITL")
    assert sum(a.text == "no data" for a in latency.layout.annotations) == 2


# --- figures -------------------------------------------------------------------------------------


def test_build_figures_titles_and_types() -> None:
    figures = build_figures(make_record())
    assert [t.split(" — ")[0] for t, _ in figures] == list(SECTION_TITLES)
    assert all(isinstance(f, go.Figure) and f.data for _, f in figures)


def test_replicas_step_lines_targets_and_scale_events() -> None:
    fig = figure_by_title(make_record(), "Replicas")
    alive = trace(fig, "prefill alive")
    assert alive.line.shape == "hv"
    assert list(alive.y) == [1, 1, 1, 2, 2, 2]
    assert trace(fig, "decode ready").line.dash == "dot"
    target = trace(fig, "prefill target")
    assert [y for y in target.y if not math.isnan(y)] == [2]
    added = trace(fig, "prefill add")
    assert list(added.x) == [30.0] and list(added.y) == [2]  # on the alive line at t=30
    assert "prefill-9" in added.hovertext[0] and "ready at 45.0 s" in added.hovertext[0]
    removed = trace(fig, "decode remove")
    assert removed.marker.symbol == "triangle-down"
    assert "failed requests: 2" in removed.hovertext[0]


def test_scale_events_without_ticks_use_a_running_count() -> None:
    record = make_record()
    record["ticks"] = []
    fig = figure_by_title(record, "Replicas")
    assert list(trace(fig, "prefill add").y) == [1]
    assert list(trace(fig, "decode remove").y) == [-1]


def test_forecast_is_compared_with_the_interval_it_predicted() -> None:
    fig = figure_by_title(make_record(), "Observed vs predicted")
    observed = trace(fig, "requests observed")  # only throughput ticks carry traffic here
    predicted = trace(fig, "requests predicted")
    # throughput ticks at t=0 and t=30; the forecast made at t=0 (110) is drawn at t=30
    assert list(observed.x) == [0.0, 30.0] and list(observed.y) == [100.0, 103.0]
    assert math.isnan(predicted.y[0]) and predicted.y[1] == 110.0
    assert {"ISL observed", "OSL predicted"} <= {t.name for t in fig.data}


def test_traffic_series_are_split_by_tick_kind_when_both_kinds_carry_data() -> None:
    record = make_record()
    for tick in record["ticks"]:
        tick["observed"] = {"num_req": tick["t_s"]}
        tick["forecast"] = {"num_req": tick["t_s"] + 1.0, "isl": None, "osl": None}
    fig = figure_by_title(record, "Observed vs predicted")
    load = trace(fig, "requests predicted (load)")
    # load ticks at 10, 20, 40, 50: each compares with the previous load tick's forecast
    assert list(load.x) == [10.0, 20.0, 40.0, 50.0]
    assert math.isnan(load.y[0]) and list(load.y[1:]) == [11.0, 21.0, 41.0]
    assert list(trace(fig, "requests observed (throughput)").y) == [0.0, 30.0]


def test_latency_panels_have_sla_lines_and_webgl_scatter() -> None:
    fig = figure_by_title(make_record(), "TTFT and ITL")
    assert sorted(s.y0 for s in fig.layout.shapes) == [30.0, 2000.0]
    per_request = trace(fig, "TTFT per request")
    assert isinstance(per_request, go.Scattergl) and len(per_request.x) == 50
    assert list(trace(fig, "ITL window mean").y) == [20.0, 23.0]


def test_per_request_points_are_strided_above_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(figures_module, "MAX_REQUEST_POINTS", 20)
    fig = figure_by_title(make_record(), "TTFT and ITL")
    per_request = trace(fig, "TTFT per request, 17 of 50 shown")
    assert list(per_request.x[:3]) == [0.0, 3.0, 6.0]


@pytest.mark.parametrize(
    "engines_per_pool, aggregated",
    [(20, False), (21, True), (50, True)],
    ids=["40-engines-per-engine-traces", "42-engines-aggregates", "100-engines-aggregates"],
)
def test_engine_figure_switches_to_pool_aggregates(
    engines_per_pool: int, aggregated: bool
) -> None:
    record = make_record(n_ticks=3, engines_per_pool=engines_per_pool)
    title, fig = figures_module.engines_figure(parse_record(record))
    n = 2 * engines_per_pool
    assert f"{n} engines" in title
    assert ("aggregates" in title) is aggregated
    if aggregated:
        names = {t.name for t in fig.data}
        assert names == {"prefill p50", "prefill max", "decode p50", "decode max"}
        assert len(fig.data) == 8  # two statistics x two pools x two panels
    else:
        assert len(fig.data) == 2 * n
        assert sum(bool(t.showlegend) for t in fig.data) == n


def test_pool_aggregates_are_median_and_max_per_tick() -> None:
    t_s = np.array([0.0, 0.0, 0.0, 0.0, 10.0, 10.0, 10.0])
    values = np.array([4.0, 1.0, 3.0, 2.0, np.nan, 7.0, 5.0])
    t, median, peak = figures_module._aggregate(t_s, values)
    assert list(t) == [0.0, 10.0]
    assert list(median) == [2.5, 6.0]
    assert list(peak) == [4.0, 7.0]


def test_decisions_timeline_marks_every_tick_with_targets_on_hover() -> None:
    fig = figure_by_title(make_record(), "Decisions")
    assert fig.layout.yaxis.type == "category"
    assert list(fig.layout.yaxis.categoryarray) == ["no_change", "scale_up"]
    assert sum(len(t.x) for t in fig.data) == 6
    throughput = trace(fig, "throughput tick")
    assert "targets: prefill → 2, decode → 2" in throughput.hovertext[1]
    assert "targets: none (hold)" in throughput.hovertext[0]


def test_gpu_figure_has_cumulative_gpu_hours_on_a_second_axis() -> None:
    fig = figure_by_title(make_record(), "GPUs")
    assert list(trace(fig, "GPUs in use").y) == [3, 3, 3, 4, 4, 4]
    assert trace(fig, "GPU-hours (cumulative)").yaxis == "y2"


def test_pools_missing_from_the_list_are_taken_from_the_ticks() -> None:
    record = make_record()
    record["pools"] = None
    assert parse_record(record).pools == ["prefill", "decode"]


# --- summary formatting --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value, shown",
    [
        ("sla_attainment", 0.98765, "98.77 %"),
        ("sla_attainment", 1.0, "100.00 %"),
        ("kv_share", 0.25, "25.00 %"),
        ("requests_total", 1234567, "1,234,567"),
        ("gpu_hours", 999.94, "999.9"),
        ("gpu_hours", 1000.0, "1,000"),
        ("ttft_p99_ms", 1000.05, "1,000.0"),
        ("sim_duration_s", 570.0, "570"),
        ("itl_p50_ms", 0.000123, "0.000123"),
        ("ttft_p50_ms", None, "—"),
        ("advisory", True, "yes"),
        ("policy", "static:2,3", "static:2,3"),
        ("ratio", math.inf, "inf"),
        ("pools", ["prefill", "decode"], '["prefill", "decode"]'),
        ("speedup", np.float64(2.5), "2.5"),
        ("count", np.int64(7), "7"),
    ],
    ids=lambda v: str(v),
)
def test_format_summary_value(key: str, value: object, shown: str) -> None:
    assert format_summary_value(key, value) == shown


# --- bad records ---------------------------------------------------------------------------------


def _set(path: str, value: object) -> Any:
    def mutate(record: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node: Any = record
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return mutate


@pytest.mark.parametrize(
    "mutate, message",
    [
        (_set("ticks", "many"), r"^ticks: expected a list or null, got str"),
        (_set("ticks/2", 7), r"^ticks\[2\]: expected an object"),
        (_set("ticks/2/t_s", "20"), r"^ticks\[2\]\.t_s: required, must be a finite number"),
        (_set("ticks/2/t_s", None), r"^ticks\[2\]\.t_s: required"),
        (_set("ticks/2/t_s", 5.0), r"^ticks\[2\]\.t_s: ticks must be time-ordered"),
        (_set("ticks/1/replicas/decode", "2"), r"^ticks\[1\]\.replicas\.decode: expected a number"),
        (_set("ticks/1/gpus", True), r"^ticks\[1\]\.gpus: expected a number or null, got bool"),
        (_set("ticks/0/observed/isl", [1]), r"^ticks\[0\]\.observed\.isl: expected a number"),
        (_set("ticks/0/forecast", 3.0), r"^ticks\[0\]\.forecast: expected an object or null"),
        (_set("engines/3/kv_usage", "x"), r"^engines\[3\]\.kv_usage: expected a number"),
        (_set("engines/3/t_s", None), r"^engines\[3\]\.t_s: required"),
        (_set("engines/1/worker_id", None), r"^engines\[1\]\.worker_id: required, must be a str"),
        (_set("scale_events/1/action", "scale"), r"^scale_events\[1\]\.action: must be 'add' or"),
        (_set("requests_sample/itl_ms", [1.0]), r"^requests_sample\.itl_ms: has 1 values but"),
        (_set("requests_sample/ttft_ms/4", "slow"), r"^requests_sample\.ttft_ms\[4\]: expected"),
        (_set("sla/ttft_ms", "2s"), r"^sla\.ttft_ms: expected a number"),
        (_set("pools", "prefill"), r"^pools: expected a list"),
        (_set("title", 42), r"^title: expected a string or null"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_record_names_the_key_and_rule(mutate: Any, message: str) -> None:
    record = make_record()
    mutate(record)
    with pytest.raises(ReportDataError, match=message):
        build_figures(record)


def test_record_must_be_a_mapping() -> None:
    with pytest.raises(ReportDataError, match="record: expected an object"):
        build_figures([1, 2])  # type: ignore[arg-type]


# --- writing -------------------------------------------------------------------------------------


def test_write_report_is_atomic_and_complete(tmp_path: Path) -> None:
    record = make_record(n_ticks=3, engines_per_pool=1)
    path = write_report(tmp_path / "out" / "report.html", record)
    assert path == tmp_path / "out" / "report.html"
    text = path.read_text(encoding="utf-8")
    assert text.rstrip().endswith("</html>") and text.count("plotly.js v") == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]


def test_write_report_leaves_an_existing_file_alone_on_a_bad_record(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text("previous report")
    record = copy.deepcopy(make_record(n_ticks=3, engines_per_pool=1))
    record["ticks"][1]["t_s"] = "later"
    with pytest.raises(ReportDataError):
        write_report(path, record)
    assert path.read_text() == "previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
