"""One entry point for every trace source: ``open_trace(spec)`` -> a stream of requests.

A spec is one of:

- ``synthetic:KIND?key=value&...``: a seeded synthetic trace (see :mod:`.synthetic`);
- a file or glob whose name ends ``.csv`` or ``.csv.gz`` (any case): CSV (see :mod:`.trace_csv`);
- anything else (a file, a directory of ``*.jsonl`` / ``*.jsonl.gz``, a glob): Mooncake JSONL
  (see :mod:`.trace`).

Several files are played one after another in sorted order: the first keeps its own timestamps;
each later file is shifted so its first request arrives at the previous file's last request
time, its other requests keeping their offsets from its first. The stream is therefore
non-decreasing in time. ``stats`` counts what was read (lines, requests, bad lines), before
any transform. Then ``rate_scale`` (seeded with ``seed``), ``time_scale`` and the limits apply,
in that order (see :mod:`.trace_transform`); ``max_duration_s`` counts scaled seconds.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Literal

from ..errors import TraceFormatError
from .synthetic import SYNTHETIC_PREFIX, open_synthetic
from .mooncake import TraceRequest, TraceStats, iter_trace, iter_trace_paths
from . import transform as trace_transform
from .csv_trace import CsvColumns, check_csv_options, read_csv_trace

__all__ = ["open_trace", "is_csv_spec"]

_CSV_SUFFIXES = (".csv", ".csv.gz")


def is_csv_spec(spec: str | os.PathLike[str]) -> bool:
    """Whether ``spec`` names CSV traces (its name ends .csv or .csv.gz, any case)."""
    return os.fspath(spec).lower().endswith(_CSV_SUFFIXES)


def open_trace(
    spec: str | os.PathLike[str],
    *,
    skip_bad_lines: bool = False,
    stats: TraceStats | None = None,
    time_scale: float = 1.0,
    rate_scale: float = 1.0,
    seed: int = 0,
    csv_columns: CsvColumns | None = None,
    timestamp_unit: Literal["s", "ms"] = "s",
    max_requests: int | None = None,
    max_duration_s: float | None = None,
) -> Iterator[TraceRequest]:
    """The requests of the trace ``spec`` names, transformed (see the module docstring).

    ``csv_columns`` and ``timestamp_unit`` apply to CSV files only. Bad options raise
    ConfigError and a spec that names no file raises TraceFormatError, both here; bad lines
    raise TraceFormatError while iterating (or are counted in ``stats`` with
    ``skip_bad_lines``).
    """
    if isinstance(spec, str) and spec.startswith(SYNTHETIC_PREFIX):
        requests = _counted(open_synthetic(spec), stats)
    elif not os.fspath(spec).strip():
        raise TraceFormatError("trace spec is empty", path=os.fspath(spec))
    elif is_csv_spec(spec):
        paths = iter_trace_paths(spec)
        check_csv_options(csv_columns, timestamp_unit)
        requests = _chained(
            (path, request)
            for path in paths
            for request in read_csv_trace(
                path,
                skip_bad_lines=skip_bad_lines,
                stats=stats,
                columns=csv_columns,
                timestamp_unit=timestamp_unit,
            )
        )
    else:
        iter_trace_paths(spec)  # raise now when nothing matches
        requests = _chained(iter_trace(spec, skip_bad_lines=skip_bad_lines, stats=stats))
    thinned = trace_transform.rate_scale(requests, rate_scale, seed)
    scaled = trace_transform.time_scale(thinned, time_scale)
    return trace_transform.limit(scaled, max_requests=max_requests, max_duration_s=max_duration_s)


def _counted(requests: Iterator[TraceRequest], stats: TraceStats | None) -> Iterator[TraceRequest]:
    """Count synthetic requests in ``stats`` (no files, no lines)."""
    if stats is None:
        return requests
    return _counting(requests, stats)


def _counting(requests: Iterator[TraceRequest], stats: TraceStats) -> Iterator[TraceRequest]:
    for request in requests:
        stats.requests += 1
        yield request


def _chained(pairs: Iterable[tuple[Path, TraceRequest]]) -> Iterator[TraceRequest]:
    """Requests of consecutive files on one timeline (see the module docstring)."""
    current: Path | None = None
    offset_s = 0.0
    last_s = 0.0
    for path, request in pairs:
        if path != current:
            if current is not None:  # a later file: its first request at the last one's time
                offset_s = last_s - request.timestamp_s
            current = path
        if offset_s != 0.0:
            request = replace(request, timestamp_s=request.timestamp_s + offset_s)
        last_s = request.timestamp_s
        yield request
