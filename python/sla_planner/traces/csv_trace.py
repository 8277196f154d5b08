"""CSV trace reader (streaming; plain or gzip, detected by magic bytes).

The first row is a header. Three columns are found by name, case-insensitively (the first
candidate present wins), unless the caller names them:

- arrival time: ``TIMESTAMP``, ``timestamp``, ``time``, ``arrival_time``
- input tokens: ``ContextTokens``, ``input_length``, ``input_tokens``, ``prompt_tokens``
- output tokens: ``GeneratedTokens``, ``output_length``, ``output_tokens``, ``completion_tokens``

Other columns are ignored. A time is either a number (seconds, or milliseconds with
``timestamp_unit="ms"``; finite and >= 0) or a date: ``YYYY-MM-DD``, optionally followed by ``T``
or a space and ``HH:MM[:SS[.fraction]]`` (any number of fractional digits, so the Azure LLM
inference trace style ``2023-11-16 18:15:46.6805900`` works), optionally followed by ``Z``,
``UTC`` or ``+HH:MM`` / ``+HHMM`` / ``+HH``. Every time is made relative to the first good row:
``timestamp_s`` is seconds since that row. Times must be non-decreasing, and dates must all carry
a timezone or all lack one. Token counts are integers >= 0 (``512.0`` is accepted, ``512.5`` not).

Line numbers count physical lines from 1 (the header is line 1); a row's number is the line it
starts on. Blank lines are skipped. A bad row (wrong field count, unparsable value, time going
backwards, bytes that are not UTF-8) raises :class:`TraceFormatError` naming ``file:line`` and
the column; with ``skip_bad_lines=True`` it is counted in :class:`TraceStats` instead. A missing
or unusable header, or an unreadable file, is always an error.
"""

from __future__ import annotations

import csv
import gzip
import math
import os
import re
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import IO, Literal, cast

from ..errors import ConfigError, TraceFormatError
from ..documents import short_repr
from .mooncake import MAX_TIMESTAMP_MS, MAX_TOKENS, TraceRequest, TraceStats

__all__ = [
    "CsvColumns",
    "TIMESTAMP_COLUMNS",
    "INPUT_COLUMNS",
    "OUTPUT_COLUMNS",
    "read_csv_trace",
    "check_csv_options",
]

TIMESTAMP_COLUMNS: tuple[str, ...] = ("TIMESTAMP", "timestamp", "time", "arrival_time")
INPUT_COLUMNS: tuple[str, ...] = ("ContextTokens", "input_length", "input_tokens", "prompt_tokens")
OUTPUT_COLUMNS: tuple[str, ...] = (
    "GeneratedTokens",
    "output_length",
    "output_tokens",
    "completion_tokens",
)

_GZIP_MAGIC = b"\x1f\x8b"
#: Most physical lines one row may span (a quoted field with line breaks).
MAX_ROW_LINES = 64
#: Longest physical line read, in bytes.
MAX_LINE_BYTES = 1 << 20
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_DATE = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<hm>\d{2}:\d{2})(?::(?P<sec>\d{2})(?:[.,](?P<frac>\d+))?)?)?"
    r"\s*(?P<tz>Z|UTC|[+-]\d{2}(?::?\d{2})?)?",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class CsvColumns:
    """Header names to use instead of the candidates (None = search the candidates)."""

    timestamp: str | None = None
    input_tokens: str | None = None
    output_tokens: str | None = None

    @classmethod
    def parse(cls, text: str) -> CsvColumns:
        """``timestamp=NAME,input=NAME,output=NAME`` (any subset, any order; the command-line
        form); ConfigError naming a bad item."""
        roles = {"timestamp": "timestamp", "input": "input_tokens", "output": "output_tokens"}
        names: dict[str, str] = {}
        for item in text.split(","):
            role, eq, name = item.partition("=")
            role, name = role.strip().lower(), name.strip()
            if not eq or not name:
                raise ConfigError(f"CSV columns {text!r}: {item!r} is not ROLE=NAME")
            if role not in roles:
                raise ConfigError(
                    f"CSV columns {text!r}: unknown role {role!r}; allowed: {', '.join(roles)}"
                )
            if roles[role] in names:
                raise ConfigError(f"CSV columns {text!r}: role {role!r} is given twice")
            names[roles[role]] = name
        return cls(**names)


class _BadRow(Exception):
    """A malformed row; the message names the column and the rule."""


@dataclass(frozen=True, slots=True)
class _Time:
    """A parsed time: seconds, or a date split into whole seconds and a fraction."""

    seconds: float
    date: datetime | None = None


def read_csv_trace(
    path: str | os.PathLike[str],
    *,
    skip_bad_lines: bool = False,
    stats: TraceStats | None = None,
    columns: CsvColumns | None = None,
    timestamp_unit: Literal["s", "ms"] = "s",
) -> Iterator[TraceRequest]:
    """Stream the requests of one CSV trace file (plain or gzip), in file order.

    ``columns`` overrides the header names searched; ``timestamp_unit`` says what a numeric
    time counts ("s" or "ms"). ConfigError for a bad option, raised before the file is opened.
    """
    columns = check_csv_options(columns, timestamp_unit)
    return _read(os.fspath(path), skip_bad_lines, stats, columns, timestamp_unit)


def check_csv_options(columns: CsvColumns | None, timestamp_unit: str) -> CsvColumns:
    """The column overrides to use (defaults for None); ConfigError naming a bad option."""
    if timestamp_unit not in ("s", "ms"):
        raise ConfigError(f"timestamp_unit must be 's' or 'ms', got {timestamp_unit!r}")
    if columns is None:
        return CsvColumns()
    if not isinstance(columns, CsvColumns):
        raise ConfigError(f"CSV columns must be a CsvColumns, got {type(columns).__name__}")
    for role in ("timestamp", "input_tokens", "output_tokens"):
        name = getattr(columns, role)
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ConfigError(f"CSV column {role} must be a non-empty string, got {name!r}")
    return columns


def _read(
    name: str,
    skip_bad_lines: bool,
    stats: TraceStats | None,
    columns: CsvColumns,
    timestamp_unit: str,
) -> Iterator[TraceRequest]:
    stats = stats if stats is not None else TraceStats()
    stats.files += 1
    ms = timestamp_unit == "ms"
    lines = _Lines(name, stats)
    with _open(name) as fh:
        lines.fh = fh
        reader = csv.reader(lines, strict=True)
        try:
            header = _next_row(reader, lines)
        except _BadRow as exc:
            raise TraceFormatError(f"{name}:{lines.row_start}: header: {exc}", path=name,
                                   line=lines.row_start) from None
        if header is None:
            raise TraceFormatError(f"{name}:1: empty file; a header row is required", path=name,
                                   line=1)
        if lines.undecodable:
            raise TraceFormatError(f"{name}:{lines.row_start}: header is not valid UTF-8",
                                   path=name, line=lines.row_start)
        header = [title.strip() for title in header]
        ts_col, in_col, out_col = _find_columns(header, columns, name, lines.row_start)
        width = len(header)
        t0: _Time | None = None
        prev_s, prev_line, prev_text = -math.inf, 0, ""
        while True:
            try:
                row = _next_row(reader, lines)
                if row is None:
                    return
                if lines.undecodable:
                    raise _BadRow("row is not valid UTF-8")
                if len(row) != width:
                    raise _BadRow(f"row has {len(row)} fields, the header has {width}")
                when = _parse_time(row[ts_col], header[ts_col], ms)
                timestamp_s = _since(when, t0 if t0 is not None else when, header[ts_col])
                if timestamp_s < prev_s:
                    raise _BadRow(
                        f"column '{header[ts_col]}': {row[ts_col].strip()!r} is earlier than "
                        f"{prev_text!r} on line {prev_line}; timestamps must be non-decreasing"
                    )
                request = TraceRequest(
                    timestamp_s=timestamp_s,
                    input_length=_parse_tokens(row[in_col], header[in_col]),
                    output_length=_parse_tokens(row[out_col], header[out_col]),
                    hash_ids=None,
                    line=lines.row_start,
                )
            except _BadRow as exc:
                message = f"{name}:{lines.row_start}: {exc}"
                if not skip_bad_lines:
                    raise TraceFormatError(message, path=name, line=lines.row_start) from None
                stats.record_bad(message)
                lines.push_back_continuation()  # a bad row costs its first physical line only
                continue
            if t0 is None:
                t0 = when  # the first good row is time zero
            prev_s, prev_line, prev_text = timestamp_s, request.line, row[ts_col].strip()
            stats.requests += 1
            yield request


class _RowTooLong(Exception):
    """The row has spanned MAX_ROW_LINES physical lines (an unterminated quote, most likely)."""


class _LineTooLong(Exception):
    """A physical line is longer than MAX_LINE_BYTES (its rest has been skipped)."""


class _Lines:
    """Decoded physical lines of a binary file for csv.reader, tracking line numbers.

    ``row_lines`` are the lines (number, text, undecodable) the row being read has consumed;
    ``row_start`` is the first of them. A line that is not UTF-8 is passed on with replacement
    characters and marks its row undecodable. :meth:`push_back` makes lines be read again, so a
    bad row spanning several lines costs only its first one. A row spans at most
    :data:`MAX_ROW_LINES` lines.
    """

    def __init__(self, name: str, stats: TraceStats) -> None:
        self.name = name
        self.stats = stats
        self.fh: IO[bytes] | None = None
        self.line_no = 0
        self.row_start = 1
        self.row_lines: list[tuple[int, str, bool]] = []
        self._pending: deque[tuple[int, str, bool]] = deque()

    @property
    def undecodable(self) -> bool:
        """Whether any line of the current row was not UTF-8."""
        return any(bad for _, _, bad in self.row_lines)

    def start_row(self) -> None:
        """Forget the previous row's lines; the next line read starts a row."""
        self.row_lines = []
        self.row_start = self._pending[0][0] if self._pending else self.line_no + 1

    def push_back_continuation(self) -> None:
        """Read the current row's lines after its first one again."""
        self._pending.extendleft(reversed(self.row_lines[1:]))
        self.row_lines = self.row_lines[:1]

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if len(self.row_lines) >= MAX_ROW_LINES:
            raise _RowTooLong
        line = self._pending.popleft() if self._pending else self._read()
        self.row_lines.append(line)
        return line[1]

    def _read(self) -> tuple[int, str, bool]:
        assert self.fh is not None
        try:
            raw = self.fh.readline(MAX_LINE_BYTES + 1)
            too_long = len(raw) > MAX_LINE_BYTES
            tail = raw
            while too_long and tail and not tail.endswith(b"\n"):
                tail = self.fh.readline(MAX_LINE_BYTES)  # skip the rest of this physical line
        except (OSError, EOFError, zlib.error) as exc:
            raise TraceFormatError(
                f"{self.name}:{self.line_no + 1}: cannot read trace data ({exc})",
                path=self.name, line=self.line_no + 1,
            ) from exc
        if not raw:
            raise StopIteration
        self.line_no += 1
        self.stats.lines_read += 1
        if too_long:
            self.row_lines.append((self.line_no, "", False))
            raise _LineTooLong
        if self.line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]  # UTF-8 byte order mark
        try:
            return self.line_no, raw.decode("utf-8"), False
        except UnicodeDecodeError:
            return self.line_no, raw.decode("utf-8", errors="replace"), True


def _next_row(reader: Iterator[list[str]], lines: _Lines) -> list[str] | None:
    """The next non-blank row, or None at the end; _BadRow for broken CSV quoting."""
    while True:
        lines.start_row()
        try:
            row = next(reader)
        except StopIteration:
            return None
        except _RowTooLong:
            raise _BadRow(
                f"malformed CSV (a quoted field is not closed within {MAX_ROW_LINES} lines)"
            ) from None
        except _LineTooLong:
            raise _BadRow(f"line longer than {MAX_LINE_BYTES:,} bytes") from None
        except csv.Error as exc:
            raise _BadRow(f"malformed CSV ({exc})") from None
        if len(row) > 1 or (row and row[0].strip()):  # a blank line is [] or one blank field
            return row


def _open(name: str) -> IO[bytes]:
    """Open ``name`` for binary reading, through gzip when it starts with the gzip magic."""
    try:
        with open(name, "rb") as probe:
            magic = probe.read(2)
        if magic == _GZIP_MAGIC:
            return cast(IO[bytes], gzip.open(name, "rb"))
        return open(name, "rb")
    except OSError as exc:
        raise TraceFormatError(
            f"{name}: cannot open trace ({exc.strerror or exc})", path=name
        ) from exc


def _find_columns(
    header: list[str], columns: CsvColumns, name: str, line: int
) -> tuple[int, int, int]:
    """Indices of the time, input-token and output-token columns in ``header``."""
    folded: dict[str, list[int]] = {}
    for i, title in enumerate(header):
        folded.setdefault(title.casefold(), []).append(i)

    def find(role: str, override: str | None, candidates: tuple[str, ...], hint: str) -> int:
        wanted = (override,) if override is not None else candidates
        for candidate in wanted:
            hits = folded.get(candidate.strip().casefold(), [])
            if len(hits) > 1:
                raise TraceFormatError(
                    f"{name}:{line}: header names the {role} column {candidate!r} "
                    f"{len(hits)} times (columns {', '.join(str(h + 1) for h in hits)})",
                    path=name, line=line,
                )
            if hits:
                return hits[0]
        looked_for = ", ".join(repr(c) for c in wanted)
        found = ", ".join(repr(t) for t in header)
        raise TraceFormatError(
            f"{name}:{line}: header has no {role} column (looked for {looked_for}; found "
            f"{found}); a header row is required, name the column with {hint}",
            path=name, line=line,
        )

    return (
        find("timestamp", columns.timestamp, TIMESTAMP_COLUMNS, "CsvColumns(timestamp=...)"),
        find("input-token", columns.input_tokens, INPUT_COLUMNS, "CsvColumns(input_tokens=...)"),
        find("output-token", columns.output_tokens, OUTPUT_COLUMNS,
             "CsvColumns(output_tokens=...)"),
    )


def _parse_time(text: str, column: str, ms: bool) -> _Time:
    value = text.strip()
    if _NUMBER.fullmatch(value):
        number = float(value)
        if not math.isfinite(number):
            raise _BadRow(f"column '{column}' must be finite, got {short_repr(value)}")
        if number < 0.0:
            raise _BadRow(f"column '{column}' must be >= 0, got {short_repr(value)}")
        seconds = number / 1000.0 if ms else number
        if seconds > MAX_TIMESTAMP_MS / 1000.0:
            raise _BadRow(f"column '{column}' is beyond {MAX_TIMESTAMP_MS / 1000.0:g} s, got {short_repr(value)}")
        return _Time(seconds)
    match = _DATE.fullmatch(value)
    if match is None:
        raise _BadRow(
            f"column '{column}': {value!r} is neither a number nor an ISO 8601 date"
        )
    base = f"{match['date']}T{match['hm'] or '00:00'}:{match['sec'] or '00'}"
    try:
        date = datetime.fromisoformat(base)
    except ValueError as exc:
        raise _BadRow(f"column '{column}': {value!r} is not a valid date ({exc})") from None
    tz = match["tz"]
    if tz is not None:
        date = date.replace(tzinfo=_zone(tz, value, column))
    frac = match["frac"]
    fraction_s = int(frac) / 10 ** len(frac) if frac else 0.0
    return _Time(fraction_s, date)


def _zone(tz: str, value: str, column: str) -> timezone:
    if tz.upper() in ("Z", "UTC"):
        return timezone.utc
    digits = tz[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or "0")
    if hours > 23 or minutes > 59:
        raise _BadRow(f"column '{column}': {value!r} has an invalid UTC offset {tz!r}")
    offset = timedelta(hours=hours, minutes=minutes)
    return timezone(-offset if tz[0] == "-" else offset)


def _since(when: _Time, t0: _Time, column: str) -> float:
    """Seconds from ``t0`` to ``when``; _BadRow when one is a date and the other is not."""
    if (when.date is None) != (t0.date is None):
        kind = "a date" if when.date is not None else "a number"
        first = "a date" if t0.date is not None else "a number"
        raise _BadRow(f"column '{column}': time is {kind} but the first row's is {first}")
    if when.date is None or t0.date is None:
        return when.seconds - t0.seconds
    if (when.date.tzinfo is None) != (t0.date.tzinfo is None):
        this = "has a timezone" if when.date.tzinfo is not None else "has no timezone"
        first = "has one" if t0.date.tzinfo is not None else "has none"
        raise _BadRow(
            f"column '{column}': date {this} but the first row's {first}; dates must all "
            "have a timezone or all lack one"
        )
    whole_s = (when.date - t0.date).total_seconds()
    return whole_s + (when.seconds - t0.seconds)


def _parse_tokens(text: str, column: str) -> int:
    if text.isascii() and text.isdigit() and len(text) <= 10:  # the common case, fast
        tokens = int(text)
        if tokens > MAX_TOKENS:
            raise _BadRow(f"column '{column}' must be at most {MAX_TOKENS:,}, got {text!r}")
        return tokens
    value = text.strip()
    if len(value) > 40:
        raise _BadRow(f"column '{column}' must be an integer of at most 40 characters, got {short_repr(value)}")
    if not _NUMBER.fullmatch(value):
        raise _BadRow(f"column '{column}' must be an integer, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or not number.is_integer():
        raise _BadRow(f"column '{column}' must be an integer, got {value!r}")
    if number < 0:
        raise _BadRow(f"column '{column}' must be >= 0, got {value!r}")
    tokens = int(number) if "." in value or "e" in value.lower() else int(value)
    if tokens > MAX_TOKENS:
        raise _BadRow(f"column '{column}' must be at most {MAX_TOKENS:,}, got {value!r}")
    return tokens
