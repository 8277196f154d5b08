"""Mooncake JSONL reader: good files, gzip, every kind of bad line, skip mode, globs and dirs."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from sla_planner.errors import TraceFormatError
from sla_planner.traces.mooncake import (
    MAX_BAD_EXAMPLES,
    TraceRequest,
    TraceStats,
    iter_trace,
    iter_trace_paths,
    read_trace,
)

GOOD_LINES = [
    '{"timestamp": 0, "input_length": 100, "output_length": 10, "hash_ids": [1, 2]}',
    "",
    '{"timestamp": 1500, "input_length": 200, "output_length": 20}',
    '{"timestamp": 1500.5, "input_length": 300.0, "output_length": 0, "hash_ids": null, "x": 1}',
]
GOOD_REQUESTS = [
    TraceRequest(0.0, 100, 10, (1, 2), 1),
    TraceRequest(1.5, 200, 20, None, 3),
    TraceRequest(1.5005, 300, 0, None, 4),
]


def write(path: Path, lines: list[str], *, gz: bool = False) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_good_file(tmp_path: Path) -> None:
    stats = TraceStats()
    requests = list(read_trace(write(tmp_path / "t.jsonl", GOOD_LINES), stats=stats))
    assert requests == GOOD_REQUESTS
    assert (stats.files, stats.lines_read, stats.requests, stats.bad_lines) == (1, 4, 3, 0)


@pytest.mark.parametrize(
    "name", ["t.jsonl.gz", "t.jsonl", "trace.data"], ids=["gz suffix", "gz as .jsonl", "no suffix"]
)
def test_gzip_detected_by_magic_bytes(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, GOOD_LINES, gz=True)
    assert list(read_trace(path)) == GOOD_REQUESTS


def test_plain_file_with_gz_suffix_is_read_plain(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl.gz", GOOD_LINES)
    assert list(read_trace(path)) == GOOD_REQUESTS


@pytest.mark.parametrize(
    "lines", [[], [""], ["", "   ", "\t"]], ids=["empty", "one blank", "blanks"]
)
def test_empty_file_yields_nothing(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join(lines))
    stats = TraceStats()
    assert list(read_trace(path, stats=stats)) == []
    assert (stats.requests, stats.bad_lines) == (0, 0)


def test_crlf_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b'{"timestamp": 5, "input_length": 1, "output_length": 2}\r\n')
    assert list(read_trace(path)) == [TraceRequest(0.005, 1, 2, None, 1)]


OK = {"timestamp": 10, "input_length": 5, "output_length": 3}


DROP = object()


def line_with(**changes: object) -> str:
    """The OK line with fields changed (DROP removes one)."""
    obj: dict[str, object] = {**OK, **changes}
    return json.dumps({k: v for k, v in obj.items() if v is not DROP})


# (id, bad line, expected fragment of the message after "file:line: ")
BAD_LINES = [
    ("bad json", '{"timestamp": 1,', "not valid JSON"),
    ("not utf-8", b'{"timestamp": "\xff"}'.decode("latin-1"), "not valid JSON"),
    ("not an object", "[1, 2, 3]", "expected a JSON object, got list"),
    ("missing timestamp", line_with(timestamp=DROP), "missing field 'timestamp'"),
    ("missing input_length", line_with(input_length=DROP), "missing field 'input_length'"),
    ("missing output_length", line_with(output_length=DROP), "missing field 'output_length'"),
    ("timestamp string", line_with(timestamp="10"), "field 'timestamp' must be a number"),
    ("timestamp bool", line_with(timestamp=True), "field 'timestamp' must be a number, got bool"),
    ("timestamp null", line_with(timestamp=None), "field 'timestamp' must be a number"),
    ("timestamp NaN", '{"timestamp": NaN, "input_length": 1, "output_length": 1}',
     "field 'timestamp' must be finite"),
    ("timestamp Infinity", '{"timestamp": Infinity, "input_length": 1, "output_length": 1}',
     "field 'timestamp' must be finite"),
    ("timestamp negative", line_with(timestamp=-1), "field 'timestamp' must be >= 0"),
    ("input_length negative", line_with(input_length=-1), "field 'input_length' must be >= 0"),
    ("output_length negative", line_with(output_length=-5),
     "field 'output_length' must be >= 0"),
    ("input_length fraction", line_with(input_length=2.5),
     "field 'input_length' must be an integer"),
    ("input_length bool", line_with(input_length=False),
     "field 'input_length' must be an integer, got bool"),
    ("output_length string", line_with(output_length="3"),
     "field 'output_length' must be an integer"),
    ("output_length NaN", '{"timestamp": 1, "input_length": 1, "output_length": NaN}',
     "field 'output_length' must be an integer"),
    ("hash_ids not a list", line_with(hash_ids=5), "field 'hash_ids' must be a list of integers"),
    ("hash_ids item string", line_with(hash_ids=[1, "a"]),
     "field 'hash_ids' item 1 must be an integer"),
    ("hash_ids item bool", line_with(hash_ids=[True]),
     "field 'hash_ids' item 0 must be an integer"),
    ("hash_ids item float", line_with(hash_ids=[1.0]),
     "field 'hash_ids' item 0 must be an integer"),
    ("timestamp goes back", line_with(timestamp=9.5),
     "field 'timestamp': 9.5 ms is earlier than 10 ms on line 2"),
]


@pytest.mark.parametrize(
    ("bad", "fragment"), [c[1:] for c in BAD_LINES], ids=[c[0] for c in BAD_LINES]
)
def test_bad_line_names_file_line_and_field(tmp_path: Path, bad: str, fragment: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(("\n" + line_with() + "\n" + bad + "\n").encode("latin-1"))
    with pytest.raises(TraceFormatError) as err:
        list(read_trace(path))
    assert str(err.value).startswith(f"{path}:3: ")
    assert fragment in str(err.value)
    assert (err.value.path, err.value.line) == (str(path), 3)


@pytest.mark.parametrize(
    ("bad", "fragment"), [c[1:] for c in BAD_LINES], ids=[c[0] for c in BAD_LINES]
)
def test_skip_mode_counts_bad_lines_and_keeps_reading(
    tmp_path: Path, bad: str, fragment: str
) -> None:
    path = tmp_path / "bad.jsonl"
    text = "\n".join([line_with(), bad, line_with(timestamp=20)]) + "\n"
    path.write_bytes(text.encode("latin-1"))
    stats = TraceStats()
    requests = list(read_trace(path, skip_bad_lines=True, stats=stats))
    assert [r.line for r in requests] == [1, 3]
    assert (stats.lines_read, stats.requests, stats.bad_lines) == (3, 2, 1)
    assert stats.first_bad[0].startswith(f"{path}:2: ")
    assert fragment.split(" on line")[0] in stats.first_bad[0]


def test_skip_mode_keeps_only_the_first_examples(tmp_path: Path) -> None:
    lines = [line_with()] + ["oops"] * (MAX_BAD_EXAMPLES + 3)
    stats = TraceStats()
    path = write(tmp_path / "b.jsonl", lines)
    requests = list(read_trace(path, skip_bad_lines=True, stats=stats))
    assert len(requests) == 1
    assert stats.bad_lines == MAX_BAD_EXAMPLES + 3
    assert len(stats.first_bad) == MAX_BAD_EXAMPLES
    assert stats.first_bad[0].startswith(f"{tmp_path / 'b.jsonl'}:2: not valid JSON")


def test_skipped_out_of_order_line_does_not_move_the_clock(tmp_path: Path) -> None:
    lines = [line_with(timestamp=100), line_with(timestamp=50), line_with(timestamp=60),
             line_with(timestamp=100)]
    stats = TraceStats()
    path = write(tmp_path / "o.jsonl", lines)
    requests = list(read_trace(path, skip_bad_lines=True, stats=stats))
    assert [r.line for r in requests] == [1, 4]
    assert stats.bad_lines == 2


def test_truncated_gzip_is_an_error_naming_the_file(tmp_path: Path) -> None:
    data = gzip.compress(("\n".join([line_with()] * 200) + "\n").encode())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(TraceFormatError, match=r"cut\.jsonl\.gz:\d+: cannot read trace data"):
        list(read_trace(path, skip_bad_lines=True))


def test_unreadable_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TraceFormatError, match="cannot open trace"):
        list(read_trace(tmp_path / "missing.jsonl"))


def test_reading_is_lazy(tmp_path: Path) -> None:
    path = write(tmp_path / "lazy.jsonl", [line_with(), "oops"])
    it = read_trace(path)
    assert next(it).line == 1  # the bad line 2 has not been read yet
    with pytest.raises(TraceFormatError):
        next(it)


# --- paths: file, directory, glob --------------------------------------------------------------


def make_dir(tmp_path: Path) -> Path:
    d = tmp_path / "traces"
    d.mkdir()
    write(d / "b.jsonl", [line_with(timestamp=1)])
    write(d / "a.jsonl.gz", [line_with(timestamp=2)], gz=True)
    write(d / "c.txt", [line_with()])
    (d / "sub.jsonl").mkdir()
    return d


def test_directory_lists_jsonl_and_gz_sorted(tmp_path: Path) -> None:
    d = make_dir(tmp_path)
    assert iter_trace_paths(d) == [d / "a.jsonl.gz", d / "b.jsonl"]


@pytest.mark.parametrize(
    ("pattern", "names"),
    [
        ("*.jsonl", ["b.jsonl"]),
        ("*", ["a.jsonl.gz", "b.jsonl", "c.txt"]),
        ("?.jsonl*", ["a.jsonl.gz", "b.jsonl"]),
    ],
    ids=["jsonl", "star skips dirs", "question mark"],
)
def test_glob_matches_files_sorted(tmp_path: Path, pattern: str, names: list[str]) -> None:
    d = make_dir(tmp_path)
    assert iter_trace_paths(str(d / pattern)) == [d / n for n in names]


def test_single_file_path(tmp_path: Path) -> None:
    d = make_dir(tmp_path)
    assert iter_trace_paths(d / "c.txt") == [d / "c.txt"]


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [("nothing/*.jsonl", "no such file, and no file matches it as a glob"),
     ("missing.jsonl", "no such file"),
     ("emptydir", "directory has no *.jsonl or *.jsonl.gz files")],
    ids=["glob", "file", "empty dir"],
)
def test_nothing_matched_names_the_spec(tmp_path: Path, spec: str, fragment: str) -> None:
    (tmp_path / "emptydir").mkdir()
    full = str(tmp_path / spec)
    with pytest.raises(TraceFormatError) as err:
        iter_trace_paths(full)
    assert repr(full) in str(err.value) and fragment in str(err.value)


def test_iter_trace_reads_files_in_order(tmp_path: Path) -> None:
    d = make_dir(tmp_path)
    got = [(p.name, r.timestamp_s) for p, r in iter_trace(d)]
    assert got == [("a.jsonl.gz", 0.002), ("b.jsonl", 0.001)]
