"""Periodic reports: one self-contained report and one snapshot file per interval of tick time,
a last one on close, bounded memory over a day of ticks, failures logged and never raised."""

from __future__ import annotations

import dataclasses
import gc
import gzip
import json
import os
import re
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sla_planner.errors import ConfigError
from sla_planner.observe.bench_records import fleet_record, fleet_snapshot
from sla_planner.observe.periodic import PeriodicReporter, period_label
from sla_planner.ticks import TickRecord
from sla_planner.types import Pool, TickKind

P, D = Pool.PREFILL, Pool.DECODE


def reporter(out: Path, interval_s: float, **kw: Any) -> PeriodicReporter:
    kw.setdefault("wall_clock", False)
    return PeriodicReporter(out, interval_s, pools=(P, D), sla_ttft_ms=2000.0, sla_itl_ms=30.0,
                            gpus_per_engine={P: 1, D: 1}, kv_capacity_tokens=100_000, **kw)


@pytest.fixture(scope="module")
def base_record() -> TickRecord:
    snapshot, view = fleet_snapshot(4, 2, np.random.default_rng(7))
    return fleet_record(snapshot, view)


def at(record: TickRecord, now_s: float, kind: TickKind = TickKind.LOAD) -> TickRecord:
    return dataclasses.replace(
        record,
        tick=dataclasses.replace(record.tick, kind=kind, due_s=now_s),
        tick_input=dataclasses.replace(record.tick_input, now_s=now_s),
    )


def html_files(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("*.html"))


@pytest.mark.parametrize(
    ("times", "reports"),
    [
        # the period is [0, 100): a tick just inside stays, a tick exactly at the end opens the next
        ([0.0, 99.999], ["planner-report-t000000000s.html"]),
        ([0.0, 100.0], ["planner-report-t000000000s.html", "planner-report-t000000100s.html"]),
        # periods with no tick write nothing
        ([5.0, 350.0], ["planner-report-t000000000s.html", "planner-report-t000000300s.html"]),
        # periods align to multiples of the interval, not to the first tick
        ([150.0, 199.0], ["planner-report-t000000100s.html"]),
    ],
)
def test_period_boundaries(tmp_path: Path, base_record: TickRecord, times: list[float], reports: list[str]) -> None:
    rep = reporter(tmp_path, 100.0)
    for t in times:
        rep.on_tick(at(base_record, t))
    rep.close()
    assert html_files(tmp_path) == reports
    assert sorted(p.name for p in tmp_path.glob("*.jsonl.gz")) == [r.replace(".html", ".jsonl.gz") for r in reports]
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob(".*"))


def test_report_content_and_snapshots(tmp_path: Path, base_record: TickRecord) -> None:
    rep = reporter(tmp_path, 3600.0)
    kinds = [TickKind.THROUGHPUT if i % 6 == 0 else TickKind.LOAD for i in range(720)]
    for i, kind in enumerate(kinds):
        rep.on_tick(at(base_record, 10.0 * i, kind))
    rep.close()
    first, second = (tmp_path / f"planner-report-t{t:09d}s.html" for t in (0, 3600))
    page = first.read_text()
    assert "plotly" in page and "https://" not in page.split("<body>", 1)[1][:2000]
    for title in ("Replicas per pool", "TTFT and ITL vs SLA", "Per-engine queues", "Decisions timeline"):
        assert title in page
    assert re.search(r"0 s to 3,600 s", page)
    # 8 engines (<= 40): one trace per engine rank, labelled worker:rank
    assert "p-00000:1" in page
    lines = gzip.open(tmp_path / "planner-report-t000000000s.jsonl.gz", "rt").read().splitlines()
    assert len(lines) == 360
    first_line = json.loads(lines[0])
    assert first_line["seq"] == 1 and first_line["t_s"] == 0.0 and first_line["apply"]["status"] == "applied"
    assert first_line["reason"] == "scale_up" and first_line["input_errors"] == {}
    assert second.exists() and rep.written[-1] == second and rep.failures == 0


def test_background_rendering_finishes_on_close(tmp_path: Path, base_record: TickRecord) -> None:
    rep = reporter(tmp_path, 60.0, background=True)
    for i in range(30):
        rep.on_tick(at(base_record, 10.0 * i))
    rep.close()
    assert len(html_files(tmp_path)) == 5
    rep.on_tick(at(base_record, 1000.0))  # after close: a new period, rendered inline
    rep.close()
    assert len(html_files(tmp_path)) == 6


def test_day_of_ticks_bounded_memory_and_a_report_per_interval(tmp_path: Path, base_record: TickRecord) -> None:
    interval_s = 6 * 3600.0
    rep = reporter(tmp_path, interval_s, max_ticks=1000)
    records = [at(base_record, 0.0, TickKind.LOAD), at(base_record, 0.0, TickKind.THROUGHPUT)]
    gc.collect()
    tracemalloc.start()
    try:
        at_period_end: list[int] = []
        for i in range(8640):  # 24 h of 10 s load ticks, a throughput tick every minute
            now = 10.0 * i
            for rec in records if i % 6 == 0 else records[:1]:
                rep.on_tick(dataclasses.replace(rec, tick_input=dataclasses.replace(rec.tick_input, now_s=now)))
            assert len(rep.window) <= 1000
            if i % 2160 == 2159:  # the last tick of each 6 h period
                gc.collect()
                at_period_end.append(tracemalloc.get_traced_memory()[0])
        rep.close()
    finally:
        tracemalloc.stop()
    assert len(html_files(tmp_path)) == 4
    growth = max(at_period_end[1:]) - at_period_end[0]
    assert growth < 2_000_000, f"memory grew by {growth / 1e6:.1f} MB across periods"
    assert max(at_period_end) < 40_000_000
    # a period of 2,520 ticks keeps at most 1,000 (every other one each time it fills up)
    page = (tmp_path / "planner-report-t000021600s.html").read_text()
    assert re.search(r"<th>ticks</th><td>2,520<", page)
    shown = re.search(r"<th>ticks_shown</th><td>(\d+)<", page)
    assert shown is not None and 500 <= int(shown.group(1)) <= 1000


def test_wall_clock_labels() -> None:
    assert period_label(0.0, wall_clock=True) == "19700101T000000Z"
    assert period_label(1_700_000_000.0, wall_clock=True) == "20231114T221320Z"
    assert period_label(3600.0, wall_clock=False) == "t000003600s"


def test_bad_settings_are_config_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match=r"^report_output_dir: cannot create"):
        reporter(blocker / "reports", 60.0)
    with pytest.raises(ConfigError, match=r"^report_interval_hours: must be > 0"):
        reporter(tmp_path, 0.0)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_directory_is_logged_not_raised(tmp_path: Path, base_record: TickRecord) -> None:
    rep = reporter(tmp_path, 60.0)
    tmp_path.chmod(0o500)
    try:
        rep.on_tick(at(base_record, 0.0))
        rep.on_tick(at(base_record, 60.0))
        rep.close()
    finally:
        tmp_path.chmod(0o700)
    assert rep.failures >= 2 and html_files(tmp_path) == []


def test_write_failure_is_logged_not_raised(tmp_path: Path, base_record: TickRecord,
                                             caplog: pytest.LogCaptureFixture) -> None:
    rep = reporter(tmp_path, 60.0)
    rep.on_tick(at(base_record, 0.0))
    # the report's path is taken by a directory: rendering fails, the planner goes on
    (tmp_path / "planner-report-t000000000s.html").mkdir()
    rep.on_tick(at(base_record, 60.0))
    rep.close()
    assert rep.failures == 1
    assert "cannot write report" in caplog.text
    assert html_files(tmp_path) == ["planner-report-t000000000s.html", "planner-report-t000000060s.html"]
    assert (tmp_path / "planner-report-t000000060s.html").is_file()
