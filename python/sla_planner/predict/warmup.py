"""Warm the load predictors up from a Mooncake trace before the planner's first tick.

The trace is cut into buckets of ``interval_s`` seconds starting at the first request; bucket
``k`` holds the requests with ``k * interval_s <= t - t_first < (k + 1) * interval_s``. Every
bucket from the first to the one holding the last request is produced, empty ones included
(``num_req = 0`` and ISL / OSL 0; the predictors' zero rules take care of them).

Several files (a glob or a directory) are concatenated in sorted order, each starting on a fresh
bucket: a file's first request falls at the start of the bucket after the one holding the previous
file's last request, and its other timestamps keep their offsets from its first request. An empty
file adds nothing.
"""

from __future__ import annotations

import logging
import math
import os
from typing import NamedTuple

from ..errors import PredictorError, TraceFormatError
from ..traces.mooncake import TraceStats, iter_trace_paths, read_trace
from .bundle import LoadPredictors

__all__ = ["TrafficBucket", "MAX_WARMUP_BUCKETS", "warmup_series", "warm_up"]

logger = logging.getLogger(__name__)

# A guard against a corrupt timestamp turning into millions of empty buckets.
MAX_WARMUP_BUCKETS = 100_000


class TrafficBucket(NamedTuple):
    """One interval of a trace: request count and mean ISL / OSL (tokens; 0 when empty)."""

    num_req: int
    isl: float
    osl: float


def warmup_series(
    spec: str | os.PathLike[str],
    interval_s: float,
    *,
    skip_bad_lines: bool = False,
    stats: TraceStats | None = None,
) -> list[TrafficBucket]:
    """Per-interval traffic of the trace(s) ``spec`` names (see the module docstring)."""
    valid = (
        isinstance(interval_s, (int, float))
        and not isinstance(interval_s, bool)
        and math.isfinite(interval_s)
        and interval_s > 0
    )
    if not valid:
        raise PredictorError(f"warm-up: interval_s must be finite and > 0, got {interval_s!r}")
    counts: list[int] = []
    isl_sums: list[int] = []
    osl_sums: list[int] = []
    for path in iter_trace_paths(spec):
        first_s: float | None = None
        start_bucket = len(counts)  # the bucket after the previous file's last one
        for request in read_trace(path, skip_bad_lines=skip_bad_lines, stats=stats):
            if first_s is None:
                first_s = request.timestamp_s
            index = start_bucket + int((request.timestamp_s - first_s) // interval_s)
            if index >= MAX_WARMUP_BUCKETS:
                raise TraceFormatError(
                    f"{path}:{request.line}: the warm-up trace spans more than "
                    f"{MAX_WARMUP_BUCKETS} intervals of {interval_s:g} s",
                    path=os.fspath(path),
                    line=request.line,
                )
            while len(counts) <= index:
                counts.append(0)
                isl_sums.append(0)
                osl_sums.append(0)
            counts[index] += 1
            isl_sums[index] += request.input_length
            osl_sums[index] += request.output_length
    return [
        TrafficBucket(n, isl / n, osl / n) if n else TrafficBucket(0, 0.0, 0.0)
        for n, isl, osl in zip(counts, isl_sums, osl_sums)
    ]


def warm_up(
    predictors: LoadPredictors,
    spec: str | os.PathLike[str],
    interval_s: float,
    *,
    skip_bad_lines: bool = False,
) -> int:
    """Feed every bucket of the trace(s) ``spec`` to ``predictors``; the number of buckets fed."""
    stats = TraceStats()
    series = warmup_series(spec, interval_s, skip_bad_lines=skip_bad_lines, stats=stats)
    for bucket in series:
        predictors.observe(bucket.num_req, bucket.isl, bucket.osl)
    predictors.mark_warmed()
    logger.info(
        "load predictors warmed up from %s: %d requests in %d intervals of %g s",
        os.fspath(spec), stats.requests, len(series), interval_s,
    )
    if stats.bad_lines:
        logger.warning(
            "warm-up trace %s: skipped %d bad lines, first: %s",
            os.fspath(spec), stats.bad_lines, "; ".join(stats.first_bad),
        )
    return len(series)
