"""Mooncake JSONL trace reader (streaming; plain or gzip, detected by magic bytes).

One JSON object per line: ``timestamp`` (ms since trace start, finite number in
[0, :data:`MAX_TIMESTAMP_MS`]), ``input_length`` and ``output_length`` (integers in
[0, :data:`MAX_TOKENS`]; an integral float such as ``512.0`` is accepted, ``512.5`` is not),
optional ``hash_ids`` (list of 64-bit integers, or null). Other fields are
ignored. Blank lines are skipped; line numbers count every physical line from 1.

Timestamps must be non-decreasing within a file (real traces are sorted, and the replay and the
warm-up buckets rely on it): a request earlier than its predecessor is a bad line.

A bad line raises :class:`TraceFormatError` naming ``file:line`` and the field. With
``skip_bad_lines=True`` it is counted in :class:`TraceStats` instead (the first few messages are
kept as examples) and reading continues. An unreadable file (cannot open, corrupt gzip stream) is
always an error.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Any, BinaryIO

from ..documents import short_repr
from ..errors import TraceFormatError

__all__ = [
    "TraceRequest",
    "TraceStats",
    "iter_trace_paths",
    "read_trace",
    "iter_trace",
    "MAX_BAD_EXAMPLES",
    "MAX_TOKENS",
    "MAX_TIMESTAMP_MS",
]

MAX_BAD_EXAMPLES = 5
#: Largest token count of a request (a C int; real context lengths are far below it).
MAX_TOKENS = 2**31 - 1
#: Longest line read, in bytes (a request with a million-token hash_ids list is ~20 kB).
MAX_LINE_BYTES = 1 << 20
#: Latest timestamp accepted, in ms (about 317 years).
MAX_TIMESTAMP_MS = 1e13
_GZIP_MAGIC = b"\x1f\x8b"
_TRACE_SUFFIXES = (".jsonl", ".jsonl.gz")


@dataclass(frozen=True, slots=True)
class TraceRequest:
    """One request of a trace; ``line`` is its 1-based line number in its file."""

    timestamp_s: float
    input_length: int
    output_length: int
    hash_ids: tuple[int, ...] | None
    line: int


@dataclass
class TraceStats:
    """What a read saw: physical lines, requests yielded, bad lines skipped (with examples)."""

    files: int = 0
    lines_read: int = 0
    requests: int = 0
    bad_lines: int = 0
    first_bad: list[str] = field(default_factory=list)

    def record_bad(self, message: str) -> None:
        """Count one skipped line, keeping its message if it is among the first few."""
        self.bad_lines += 1
        if len(self.first_bad) < MAX_BAD_EXAMPLES:
            self.first_bad.append(message)


class _BadLine(Exception):
    """A malformed line; the message names the field and the rule."""


def iter_trace_paths(spec: str | os.PathLike[str]) -> list[Path]:
    """Trace files named by ``spec``: a file, a directory (its *.jsonl and *.jsonl.gz, sorted
    by name) or a glob pattern (matching files, sorted). TraceFormatError when nothing matches."""
    shown = short_repr(os.fspath(spec))
    try:
        path = Path(spec)
        if path.is_file():
            return [path]
        is_dir = path.is_dir()
        if is_dir:
            found = sorted(
                p for p in path.iterdir() if p.is_file() and p.name.endswith(_TRACE_SUFFIXES)
            )
        else:
            matches = glob(os.fspath(spec), recursive=True)
            found = sorted(Path(p) for p in matches if Path(p).is_file())
    except (OSError, ValueError) as exc:  # name too long, embedded NUL byte, unreadable dir
        raise TraceFormatError(
            f"trace {shown}: cannot be used ({exc})", path=os.fspath(spec)
        ) from None
    if not found:
        what = (
            "directory has no *.jsonl or *.jsonl.gz files"
            if is_dir
            else "no such file, and no file matches it as a glob"
        )
        raise TraceFormatError(f"trace {shown}: {what}", path=os.fspath(spec))
    return found


def iter_trace(
    spec: str | os.PathLike[str],
    *,
    skip_bad_lines: bool = False,
    stats: TraceStats | None = None,
) -> Iterator[tuple[Path, TraceRequest]]:
    """Every request of every file ``spec`` names, file by file, with the file it came from.

    Timestamps are each file's own; callers decide how files follow one another.
    """
    for path in iter_trace_paths(spec):
        for request in read_trace(path, skip_bad_lines=skip_bad_lines, stats=stats):
            yield path, request


def read_trace(
    path: str | os.PathLike[str],
    *,
    skip_bad_lines: bool = False,
    stats: TraceStats | None = None,
) -> Iterator[TraceRequest]:
    """Stream the requests of one Mooncake JSONL file (plain or gzip)."""
    stats = stats if stats is not None else TraceStats()
    name = os.fspath(path)
    stats.files += 1
    line_no = 0
    prev_ts_s = -math.inf
    prev_line = 0
    with _open(name) as fh:
        while True:
            try:
                raw = fh.readline(MAX_LINE_BYTES + 1)
                too_long = len(raw) > MAX_LINE_BYTES
                tail = raw
                while too_long and tail and not tail.endswith(b"\n"):
                    tail = fh.readline(MAX_LINE_BYTES)  # skip the rest of this physical line
            except (OSError, EOFError, zlib.error) as exc:
                raise TraceFormatError(
                    f"{name}:{line_no + 1}: cannot read trace data ({exc})", path=name,
                    line=line_no + 1,
                ) from exc
            if not raw:
                return
            line_no += 1
            stats.lines_read += 1
            if not raw.strip():
                continue
            try:
                if too_long:
                    raise _BadLine(f"line longer than {MAX_LINE_BYTES:,} bytes")
                request = _parse_line(raw, line_no)
                if request.timestamp_s < prev_ts_s:
                    raise _BadLine(
                        f"field 'timestamp': {request.timestamp_s * 1000.0:.12g} ms is earlier than "
                        f"{prev_ts_s * 1000.0:.12g} ms on line {prev_line}; timestamps must be "
                        "non-decreasing"
                    )
            except _BadLine as exc:
                message = f"{name}:{line_no}: {exc}"
                if not skip_bad_lines:
                    raise TraceFormatError(message, path=name, line=line_no) from None
                stats.record_bad(message)
                continue
            prev_ts_s, prev_line = request.timestamp_s, line_no
            stats.requests += 1
            yield request


def _open(name: str) -> BinaryIO | gzip.GzipFile:
    """Open ``name`` for binary reading, through gzip when it starts with the gzip magic."""
    try:
        with open(name, "rb") as probe:
            magic = probe.read(2)
        if magic == _GZIP_MAGIC:
            return gzip.open(name, "rb")
        return open(name, "rb")
    except OSError as exc:
        raise TraceFormatError(
            f"{name}: cannot open trace ({exc.strerror or exc})", path=name
        ) from exc


def _parse_line(raw: bytes, line_no: int) -> TraceRequest:
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise _BadLine(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise _BadLine(f"expected a JSON object, got {type(obj).__name__}")
    timestamp_ms = _number(obj, "timestamp")
    return TraceRequest(
        timestamp_s=timestamp_ms / 1000.0,
        input_length=_length(obj, "input_length"),
        output_length=_length(obj, "output_length"),
        hash_ids=_hash_ids(obj.get("hash_ids")),
        line=line_no,
    )


def _field(obj: dict[str, Any], key: str) -> Any:
    if key not in obj:
        raise _BadLine(f"missing field '{key}'")
    return obj[key]


def _number(obj: dict[str, Any], key: str) -> float:
    value = _field(obj, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _BadLine(f"field '{key}' must be a number, got {type(value).__name__} {value!r}")
    try:
        v = float(value)
    except OverflowError:  # an integer beyond the float range
        v = math.inf
    if not math.isfinite(v):
        raise _BadLine(f"field '{key}' must be finite, got {short_repr(value)}")
    if v < 0.0:
        raise _BadLine(f"field '{key}' must be >= 0, got {short_repr(value)}")
    if v > MAX_TIMESTAMP_MS:
        raise _BadLine(f"field '{key}' must be at most {MAX_TIMESTAMP_MS:g} ms, got {short_repr(value)}")
    return v


def _length(obj: dict[str, Any], key: str) -> int:
    value = _field(obj, key)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _BadLine(
            f"field '{key}' must be an integer, got {type(value).__name__} {short_repr(value)}"
        )
    if value < 0:
        raise _BadLine(f"field '{key}' must be >= 0, got {short_repr(value)}")
    if value > MAX_TOKENS:
        raise _BadLine(f"field '{key}' must be at most {MAX_TOKENS:,} tokens, got {short_repr(value)}")
    return value


def _hash_ids(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _BadLine(f"field 'hash_ids' must be a list of integers, got {type(value).__name__}")
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int):
            raise _BadLine(
                f"field 'hash_ids' item {i} must be an integer, got "
                f"{type(item).__name__} {short_repr(item)}"
            )
        if not -(2**63) <= item < 2**64:
            raise _BadLine(f"field 'hash_ids' item {i} must fit 64 bits, got {short_repr(item)}")
    return tuple(value)
