"""Periodic HTML reports: one self-contained report per ``interval_s`` of tick time, and a last one
when the observer closes.

Tick time is ``TickRecord.tick_input.now_s``: Unix time live, simulated seconds in replay, so a
replay of a day writes a day's reports in seconds. Periods are aligned to multiples of the
interval (a 6 h interval live: 00:00, 06:00, ... UTC; the first and last reports cover what part
of their period the run saw); a period with no ticks writes nothing. Each report comes with the period's tick records as compressed JSON
lines (``.jsonl.gz``), streamed as ticks arrive (written under a ``.partial`` name, renamed when
the period closes), so memory holds only the report's bounded window.

Live, reports render on a background thread (a render takes about a second; the event loop must
not stall); replay renders inline (deterministic, nothing left running).
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigError
from ..ticks import TickRecord
from ..types import Pool
from .record_view import decision_record, json_line
from .report_window import ReportWindow

__all__ = ["PeriodicReporter", "period_label"]

log = logging.getLogger(__name__)

MAX_TICKS_PER_REPORT = 10_000
"""Above this many ticks in a period the report keeps every other tick (resolution halves)."""


def period_label(start_s: float, wall_clock: bool) -> str:
    """File-name label of a period: UTC ``20250101T120000Z`` live, ``t000003600s`` in replay."""
    if wall_clock:
        return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(start_s))
    return f"t{max(int(start_s), 0):09d}s"


class PeriodicReporter:
    """A TickObserver writing ``<prefix>-<label>.html`` and ``.jsonl.gz`` into ``out_dir``."""

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        interval_s: float,
        *,
        pools: tuple[Pool, ...],
        sla_ttft_ms: float,
        sla_itl_ms: float,
        gpus_per_engine: Mapping[Pool, int],
        kv_capacity_tokens: int | None = None,
        wall_clock: bool = True,
        background: bool = False,
        title: str = "sla-planner report",
        prefix: str = "planner-report",
        max_ticks: int = MAX_TICKS_PER_REPORT,
    ) -> None:
        if not interval_s > 0:
            raise ConfigError(f"report_interval_hours: must be > 0, got {interval_s / 3600.0} h")
        self.out_dir = Path(out_dir)
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"report_output_dir: cannot create {self.out_dir}: {exc.strerror}") from exc
        self.interval_s = float(interval_s)
        self.wall_clock = wall_clock
        self.title = title
        self.prefix = prefix
        self.window = ReportWindow(
            pools, sla_ttft_ms, sla_itl_ms, gpus_per_engine,
            max_ticks=max_ticks, rolling=False, kv_capacity_tokens=kv_capacity_tokens,
        )
        self.written: list[Path] = []
        """Files written so far (reports and snapshot files), in order."""
        self.failures = 0
        """Reports or snapshot files that could not be written (logged)."""
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="planner-report") if background else None
        self._pending: list[Future[None]] = []
        self._period_start: float | None = None
        self._snapshots: IO[str] | None = None
        self._snapshots_path: Path | None = None
        self._seq = 0

    # -- TickObserver ----------------------------------------------------------------------------

    def on_tick(self, record: TickRecord) -> None:
        """Add the tick to the current period, closing the period first if the tick is past it."""
        now = float(record.tick_input.now_s)
        start = math.floor(now / self.interval_s) * self.interval_s
        if self._period_start is None:
            self._open_period(start)
        elif now >= self._period_start + self.interval_s:
            self._close_period(self._period_start + self.interval_s)
            self._open_period(start)  # periods with no ticks in between write nothing
        self.window.add(record)
        self._write_snapshot(record)

    def close(self) -> None:
        """Write the last (partial) period's report and wait for reports still rendering."""
        if self._period_start is not None and self.window.ticks_seen:
            self._close_period(None)
        self._period_start = None
        for future in self._pending:
            future.result()
        self._pending.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None  # a tick after close renders inline

    # -- periods -----------------------------------------------------------------------------------

    def _stem(self, start_s: float) -> str:
        return f"{self.prefix}-{period_label(start_s, self.wall_clock)}"

    def _partial(self) -> Path:
        assert self._snapshots_path is not None
        return self._snapshots_path.with_name(self._snapshots_path.name + ".partial")

    def _open_period(self, start_s: float) -> None:
        self._period_start = start_s
        self.window.reset()
        self._snapshots_path = self.out_dir / f"{self._stem(start_s)}.jsonl.gz"
        try:
            self._snapshots = gzip.open(self._partial(), "wt", encoding="utf-8")
        except OSError as exc:
            self._fail(f"cannot open snapshot file {self._snapshots_path}: {exc}")
            self._snapshots = None

    def _write_snapshot(self, record: TickRecord) -> None:
        if self._snapshots is None:
            return
        self._seq += 1
        try:
            line = json_line(decision_record(record, self._seq))
            self._snapshots.write(line + "\n")
        except (OSError, ValueError) as exc:
            self._fail(f"cannot write snapshot line to {self._snapshots_path}: {exc}")
            self._discard_snapshots()

    def _discard_snapshots(self) -> None:
        if self._snapshots is None:
            return
        try:
            self._snapshots.close()
        except OSError:
            pass
        self._partial().unlink(missing_ok=True)
        self._snapshots = None

    def _close_period(self, end_s: float | None) -> None:
        assert self._period_start is not None
        start = self._period_start
        if self._snapshots is not None and self._snapshots_path is not None:
            try:
                self._snapshots.close()
                os.replace(self._partial(), self._snapshots_path)
                self.written.append(self._snapshots_path)
            except OSError as exc:
                self._fail(f"cannot finish snapshot file {self._snapshots_path}: {exc}")
            self._snapshots = None
        end = end_s if end_s is not None else self.window.end_s
        summary = {"period_interval_s": self.interval_s, "snapshots_file": self._snapshots_path.name
                   if self._snapshots_path is not None else None}
        title = f"{self.title} — {self._when(start)} to {self._when(end)}"
        try:
            rec = self.window.report_record(title, summary)
        except Exception as exc:  # a report must never take the planner down
            self._fail(f"cannot build the report for the period from {start}: {exc}")
            return
        path = self.out_dir / f"{self._stem(start)}.html"
        if self._executor is None:
            self._render(rec, path)
        else:
            self._pending = [f for f in self._pending if not f.done()]
            self._pending.append(self._executor.submit(self._render, rec, path))

    def _when(self, t_s: float | None) -> str:
        if t_s is None:
            return "?"
        if self.wall_clock:
            return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t_s))
        return f"{t_s:,.0f} s"

    def _render(self, rec: Any, path: Path) -> None:
        from .report import write_report

        try:
            write_report(path, rec)
            self.written.append(path)
        except Exception as exc:  # disk full, unwritable directory: logged, counted, never raised
            self._fail(f"cannot write report {path}: {exc}")

    def _fail(self, message: str) -> None:
        self.failures += 1
        log.error("periodic report: %s", message)
