"""CSV traces: column discovery, both time styles, gzip, bad rows with file:line, skip mode."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from sla_planner.errors import ConfigError, TraceFormatError
from sla_planner.traces.mooncake import TraceStats
from sla_planner.traces.csv_trace import CsvColumns, read_csv_trace

AZURE = (
    "TIMESTAMP,ContextTokens,GeneratedTokens\n"
    "2023-11-16 18:15:46.6805900,4808,10\n"
    "2023-11-16 18:15:50.7484100,3180,8\n"
    "2023-11-16 18:15:50.7484100,110,27\n"
)


def _write(tmp_path: Path, text: str | bytes, name: str = "trace.csv") -> Path:
    path = tmp_path / name
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(data)
    return path


def _read(path: Path, **kwargs: object) -> list[tuple[float, int, int, int]]:
    return [
        (r.timestamp_s, r.input_length, r.output_length, r.line)
        for r in read_csv_trace(path, **kwargs)  # type: ignore[arg-type]
    ]


def test_azure_trace_seven_digit_fractions(tmp_path: Path) -> None:
    rows = _read(_write(tmp_path, AZURE))
    assert [r[1:] for r in rows] == [(4808, 10, 2), (3180, 8, 3), (110, 27, 4)]
    assert rows[0][0] == 0.0
    assert rows[1][0] == pytest.approx(4.06782, abs=1e-9)
    assert rows[2][0] == rows[1][0]


def test_gzip_detected_by_magic_not_name(tmp_path: Path) -> None:
    plain = _read(_write(tmp_path, AZURE))
    packed = _write(tmp_path, gzip.compress(AZURE.encode()), name="trace.csv")
    assert _read(packed) == plain
    assert _read(_write(tmp_path, gzip.compress(AZURE.encode()), name="t.csv.gz")) == plain


@pytest.mark.parametrize(
    ("header", "row"),
    [
        ("timestamp,input_length,output_length", "5,100,20"),
        ("Time,Prompt_Tokens,Completion_Tokens", "5,100,20"),
        ("ARRIVAL_TIME,INPUT_TOKENS,OUTPUT_TOKENS", "5,100,20"),
        (" output_tokens , id , input_tokens , time ", "20,abc,100,5"),
        ("TIMESTAMP,time,ContextTokens,input_length,GeneratedTokens", "5,999,100,7,20"),
    ],
    ids=["mooncake-names", "openai-names", "upper-case", "padded-reordered-extra", "priority"],
)
def test_columns_found_case_insensitively(tmp_path: Path, header: str, row: str) -> None:
    path = _write(tmp_path, f"{header}\n0,100,20\n{row}\n".replace("0,100,20", _first(header)))
    assert _read(path)[-1] == (5.0, 100, 20, 3)


def _first(header: str) -> str:
    """A first row for ``header`` at time 0 with filler values."""
    names = [h.strip().lower() for h in header.split(",")]
    values = {"timestamp": "0", "time": "0", "arrival_time": "0", "id": "x"}
    return ",".join(values.get(n, "1") for n in names)


def test_column_overrides(tmp_path: Path) -> None:
    path = _write(tmp_path, "t_arrive,isl,osl,timestamp\n1.5,10,2,99\n2.5,11,3,98\n")
    columns = CsvColumns.parse("timestamp=t_arrive, input=ISL, output=osl")
    assert columns == CsvColumns("t_arrive", "ISL", "osl")
    assert _read(path, columns=columns) == [(0.0, 10, 2, 2), (1.0, 11, 3, 3)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("timestamp=a,bogus=b", "unknown role 'bogus'; allowed: timestamp, input, output"),
        ("timestamp=a,timestamp=b", "role 'timestamp' is given twice"),
        ("timestamp", "'timestamp' is not ROLE=NAME"),
        ("input=", "'input=' is not ROLE=NAME"),
    ],
    ids=["unknown-role", "repeated", "no-equals", "empty-name"],
)
def test_column_override_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CsvColumns.parse(text)


@pytest.mark.parametrize(
    ("unit", "stamps", "expected"),
    [
        ("s", ["1700000000.25", "1700000001.75"], [0.0, 1.5]),
        ("ms", ["1000", "2500"], [0.0, 1.5]),
        ("s", ["1e1", "12"], [0.0, 2.0]),
    ],
    ids=["epoch-seconds", "milliseconds", "exponent"],
)
def test_numeric_timestamps(
    tmp_path: Path, unit: str, stamps: list[str], expected: list[float]
) -> None:
    text = "timestamp,input_length,output_length\n" + "".join(f"{s},1,1\n" for s in stamps)
    got = [r[0] for r in _read(_write(tmp_path, text), timestamp_unit=unit)]
    assert got == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("first", "second", "seconds"),
    [
        ("2023-11-16T18:15:46Z", "2023-11-16T18:15:47.5Z", 1.5),
        ("2023-11-16T18:15:46+00:00", "2023-11-16T19:15:47+01:00", 1.0),
        ("2023-11-16 18:15:46 UTC", "2023-11-16 18:15:46.123456789 UTC", 0.123456789),
        ("2023-11-16 23:59:59.9999999", "2023-11-17 00:00:00.0000001", 2e-7),
        ("2023-11-16", "2023-11-17", 86400.0),
        ("2023-11-16T18:15", "2023-11-16T18:16", 60.0),
        ("2023-11-16T18:15:46+0530", "2023-11-16T12:45:47+00", 1.0),
        ("2023-11-16T18:15:46-05:30", "2023-11-16T23:45:47z", 1.0),
    ],
    ids=["zulu", "offsets", "utc-word-nanos", "seven-digits-midnight", "date-only",
         "minutes", "compact-offsets", "negative-offset"],
)
def test_iso_dates(tmp_path: Path, first: str, second: str, seconds: float) -> None:
    text = f"time,input_tokens,output_tokens\n{first},1,1\n{second},1,1\n"
    assert [r[0] for r in _read(_write(tmp_path, text))] == pytest.approx(
        [0.0, seconds], abs=1e-9
    )


def test_quoted_multiline_field_keeps_line_numbers(tmp_path: Path) -> None:
    text = (
        "timestamp,note,input_length,output_length\n"
        '0,"a, b\nstill the note",5,6\n'
        "1,plain,7,8\n"
    )
    assert _read(_write(tmp_path, text)) == [(0.0, 5, 6, 2), (1.0, 7, 8, 4)]


def test_byte_order_mark_and_blank_lines(tmp_path: Path) -> None:
    text = b"\xef\xbb\xbftimestamp,input_length,output_length\r\n\r\n0,1,2\r\n  \r\n3,4,5\r\n"
    stats = TraceStats()
    assert _read(_write(tmp_path, text), stats=stats) == [(0.0, 1, 2, 3), (3.0, 4, 5, 5)]
    assert (stats.files, stats.lines_read, stats.requests, stats.bad_lines) == (1, 5, 2, 0)


HEADER = "timestamp,input_length,output_length\n"
BAD_ROWS = [
    ("abc,1,1", "column 'timestamp': 'abc' is neither a number nor an ISO 8601 date"),
    ("nan,1,1", "column 'timestamp': 'nan' is neither a number nor an ISO 8601 date"),
    ("-0.5,1,1", "column 'timestamp' must be >= 0, got '-0.5'"),
    ("1e999,1,1", "column 'timestamp' must be finite"),
    ("5,12.5,1", "column 'input_length' must be an integer, got '12.5'"),
    ("5,,1", "column 'input_length' must be an integer, got ''"),
    ("5,1,-1", "column 'output_length' must be >= 0, got '-1'"),
    ("5,1_000,1", "column 'input_length' must be an integer, got '1_000'"),
    ("5,1,1,9", "row has 4 fields, the header has 3"),
    ("5,1", "row has 2 fields, the header has 3"),
    ("0.999999,1,1", "column 'timestamp': '0.999999' is earlier than '1' on line 2; "
                     "timestamps must be non-decreasing"),
    ("2023-11-16 18:15:46,1,1", "column 'timestamp': time is a date but the first row's is a "
                                "number"),
    ('"5"x,1,1', "malformed CSV"),
    (",,", "column 'timestamp': '' is neither a number nor an ISO 8601 date"),
]


@pytest.mark.parametrize(
    ("row", "message"),
    BAD_ROWS,
    ids=["word", "nan", "negative", "overflow", "fraction-tokens", "empty-tokens",
         "negative-tokens", "underscore", "extra-field", "missing-field", "backwards",
         "kind-change", "bad-quoting", "empty-fields"],
)
def test_bad_row_names_file_line_and_column(tmp_path: Path, row: str, message: str) -> None:
    path = _write(tmp_path, f"{HEADER}1,1,1\n{row}\n")
    with pytest.raises(TraceFormatError) as info:
        _read(path)
    assert str(info.value).startswith(f"{path}:3: {message}")
    assert (info.value.path, info.value.line) == (str(path), 3)


@pytest.mark.parametrize(
    ("first", "row", "message"),
    [
        ("2023-11-16 18:15:46", "2023-13-01 00:00:00",
         "'2023-13-01 00:00:00' is not a valid date"),
        ("2023-11-16 18:15:46", "2023-11-16 18:15:47Z",
         "date has a timezone but the first row's has none"),
        ("2023-11-16 18:15:46Z", "2023-11-16 18:15:47",
         "date has no timezone but the first row's has one"),
        ("2023-11-16 18:15:46Z", "2023-11-16 18:15:47+24:00", "invalid UTC offset '+24:00'"),
        ("2023-11-16 18:15:46", "5", "time is a number but the first row's is a date"),
        ("2023-11-16 18:15:46", "2023-11-16 18:15:45.9999999",
         "'2023-11-16 18:15:45.9999999' is earlier than '2023-11-16 18:15:46' on line 2"),
    ],
    ids=["month-13", "tz-appears", "tz-vanishes", "offset-24h", "number-after-date",
         "date-backwards"],
)
def test_bad_dates(tmp_path: Path, first: str, row: str, message: str) -> None:
    path = _write(tmp_path, f"{HEADER}{first},1,1\n{row},1,1\n")
    with pytest.raises(TraceFormatError) as info:
        _read(path)
    assert str(info.value).startswith(f"{path}:3: column 'timestamp'")
    assert message in str(info.value)


def test_non_decreasing_boundary(tmp_path: Path) -> None:
    inside = _write(tmp_path, f"{HEADER}2.000001,1,1\n2.000001,1,1\n", name="inside.csv")
    assert len(_read(inside)) == 2
    outside = _write(tmp_path, f"{HEADER}2.000001,1,1\n2.000000,1,1\n", name="outside.csv")
    with pytest.raises(TraceFormatError, match=r"outside\.csv:3: .* non-decreasing"):
        _read(outside)


def test_invalid_utf8_row(tmp_path: Path) -> None:
    path = _write(tmp_path, HEADER.encode() + b"1,1,1\n2,\xff\xfe,1\n")
    with pytest.raises(TraceFormatError, match=r":3: row is not valid UTF-8"):
        _read(path)


def test_skip_mode_counts_and_keeps_examples(tmp_path: Path) -> None:
    rows = ["x,1,1", "10,1,1", "11,1.5,1", "12,1,1", "9,1,1", "13,1", "14,2,2"]
    path = _write(tmp_path, HEADER + "\n".join(rows) + "\n")
    stats = TraceStats()
    got = _read(path, skip_bad_lines=True, stats=stats)
    # The first good row (line 3, time 10) is time zero; line 6 goes back before line 5.
    assert got == [(0.0, 1, 1, 3), (2.0, 1, 1, 5), (4.0, 2, 2, 8)]
    assert (stats.lines_read, stats.requests, stats.bad_lines) == (8, 3, 4)
    assert [m.split(": ")[0] for m in stats.first_bad] == [f"{path}:{n}" for n in (2, 4, 6, 7)]


def test_skip_mode_caps_examples(tmp_path: Path) -> None:
    path = _write(tmp_path, HEADER + "bad,1,1\n" * 9 + "1,1,1\n")
    stats = TraceStats()
    assert len(_read(path, skip_bad_lines=True, stats=stats)) == 1
    assert (stats.bad_lines, len(stats.first_bad)) == (9, 5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", ":1: empty file; a header row is required"),
        ("\n\n", ":1: empty file; a header row is required"),
        ("0,100,20\n1,100,20\n", ":1: header has no timestamp column (looked for 'TIMESTAMP', "
                                 "'timestamp', 'time', 'arrival_time'; found '0', '100', '20')"),
        ("timestamp,input_length\n", ":1: header has no output-token column"),
        ("time,TIME,input_tokens,output_tokens\n",
         ":1: header names the timestamp column 'time' 2 times (columns 1, 2)"),
        ('"time,input_tokens,output_tokens\n', ":1: header: malformed CSV"),
        (b"time,input_tokens,output_\xfftokens\n", ":1: header is not valid UTF-8"),
    ],
    ids=["empty", "blank", "no-header", "missing-output", "duplicate", "broken-quote",
         "not-utf8"],
)
def test_header_errors_even_in_skip_mode(
    tmp_path: Path, text: str | bytes, message: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(TraceFormatError) as info:
        _read(path, skip_bad_lines=True)
    assert str(info.value).startswith(f"{path}{message}")


def test_padded_header_names_in_messages(tmp_path: Path) -> None:
    path = _write(tmp_path, " time , input_tokens ,output_tokens\n0,x,1\n")
    with pytest.raises(TraceFormatError, match=r":2: column 'input_tokens' must be an integer"):
        _read(path)


def test_override_names_missing_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "TIMESTAMP,ContextTokens,GeneratedTokens\n0,1,1\n")
    with pytest.raises(TraceFormatError, match=r"no input-token column \(looked for 'isl'"):
        _read(path, columns=CsvColumns(input_tokens="isl"))


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(TraceFormatError, match="cannot open trace"):
        _read(tmp_path / "missing.csv")
    corrupt = gzip.compress((HEADER + "1,1,1\n" * 200).encode())[:-30]
    with pytest.raises(TraceFormatError, match="cannot read trace data"):
        _read(_write(tmp_path, corrupt), skip_bad_lines=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timestamp_unit": "us"}, "timestamp_unit must be 's' or 'ms', got 'us'"),
        ({"columns": CsvColumns(timestamp=" ")}, "CSV column timestamp must be a non-empty"),
    ],
    ids=["unit", "blank-override"],
)
def test_bad_options_fail_before_reading(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read_csv_trace("never-opened.csv", **kwargs)  # type: ignore[arg-type]
