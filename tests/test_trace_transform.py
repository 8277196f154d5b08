"""Trace transforms (time_scale, rate_scale, limit) and the open_trace dispatcher."""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sla_planner.errors import ConfigError, TraceFormatError
from sla_planner.traces.mooncake import TraceRequest, TraceStats
from sla_planner.traces.csv_trace import CsvColumns
from sla_planner.traces.open import is_csv_spec, open_trace
from sla_planner.traces.transform import limit, rate_scale, time_scale


def _requests(n: int, gap_s: float = 1.0) -> list[TraceRequest]:
    return [TraceRequest(i * gap_s, 100 + i, 10 + i, None, i + 1) for i in range(n)]


def _untouchable() -> Iterator[TraceRequest]:
    raise AssertionError("the source was read before the result was iterated")
    yield  # pragma: no cover


BAD_FACTORS = [0, 0.0, -1.0, math.nan, math.inf, True, "2"]
BAD_FACTOR_IDS = ["zero-int", "zero", "negative", "nan", "inf", "bool", "string"]


# --- time_scale ---------------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [0.25, 1.0, 3.0], ids=["compress", "identity", "stretch"])
def test_time_scale_multiplies_timestamps(factor: float) -> None:
    source = _requests(5, gap_s=2.0)
    out = list(time_scale(source, factor))
    assert [r.timestamp_s for r in out] == [r.timestamp_s * factor for r in source]
    assert [(r.input_length, r.output_length, r.line) for r in out] == [
        (r.input_length, r.output_length, r.line) for r in source
    ]


@pytest.mark.parametrize("factor", BAD_FACTORS, ids=BAD_FACTOR_IDS)
def test_time_scale_rejects_bad_factor(factor: Any) -> None:
    with pytest.raises(ConfigError, match="time_scale factor must be"):
        time_scale(_untouchable(), factor)


def test_transforms_are_lazy() -> None:
    time_scale(_untouchable(), 2.0)
    rate_scale(_untouchable(), 0.5, seed=1)
    limit(_untouchable(), max_requests=3)


# --- rate_scale ---------------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [1, 2, 3.0, 5], ids=["one", "two", "three-float", "five"])
def test_rate_scale_integer_factor_is_exact(factor: float) -> None:
    source = _requests(50)
    out = list(rate_scale(source, factor, seed=3))
    k = int(factor)
    assert len(out) == 50 * k
    assert out == [r for r in source for _ in range(k)]


@pytest.mark.parametrize(
    ("factor", "expected"),
    [(0.3, 6_000), (0.999, 19_980), (1.5, 30_000), (2.25, 45_000)],
    ids=["thin", "just-below-one", "one-and-a-half", "two-and-a-quarter"],
)
def test_rate_scale_fractional_factor_expected_count(factor: float, expected: int) -> None:
    source = _requests(20_000, gap_s=0.01)
    out = list(rate_scale(source, factor, seed=17))
    # binomial sd <= sqrt(20000 / 4) ~ 71: a bound of 300 is over 4 sd
    assert abs(len(out) - expected) <= 300
    times = [r.timestamp_s for r in out]
    assert times == sorted(times)
    assert set(out) <= set(source)
    whole = math.floor(factor)
    copies: dict[int, int] = {}
    for r in out:
        copies[r.line] = copies.get(r.line, 0) + 1
    assert set(copies.values()) <= {whole, whole + 1} - {0}


def test_rate_scale_is_seeded() -> None:
    source = _requests(2_000)
    first = list(rate_scale(source, 0.5, seed=5))
    assert first == list(rate_scale(iter(source), 0.5, seed=5))
    assert first != list(rate_scale(source, 0.5, seed=6))


@pytest.mark.parametrize("factor", BAD_FACTORS, ids=BAD_FACTOR_IDS)
def test_rate_scale_rejects_bad_factor(factor: Any) -> None:
    with pytest.raises(ConfigError, match="rate_scale factor must be"):
        rate_scale(_untouchable(), factor)


@pytest.mark.parametrize("seed", [-1, 1.5, True], ids=["negative", "float", "bool"])
def test_rate_scale_rejects_bad_seed(seed: Any) -> None:
    with pytest.raises(ConfigError, match="rate_scale seed must be an integer >= 0"):
        rate_scale(_untouchable(), 0.5, seed=seed)


# --- limit --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "lines"),
    [
        ({}, list(range(1, 11))),
        ({"max_requests": 0}, []),
        ({"max_requests": 3}, [1, 2, 3]),
        ({"max_requests": 99}, list(range(1, 11))),
        ({"max_duration_s": 4.0}, [1, 2, 3, 4]),  # 10 + 4 s excluded: t < first + 4
        ({"max_duration_s": 4.000001}, [1, 2, 3, 4, 5]),
        ({"max_duration_s": 4.0, "max_requests": 2}, [1, 2]),
    ],
    ids=["none", "zero", "count", "count-beyond", "duration-edge", "just-past-edge", "both"],
)
def test_limit(kwargs: dict[str, Any], lines: list[int]) -> None:
    source = [TraceRequest(10.0 + i, 1, 1, None, i + 1) for i in range(10)]
    assert [r.line for r in limit(source, **kwargs)] == lines


def test_limit_closes_its_source_when_it_stops() -> None:
    closed: list[bool] = []

    def source() -> Iterator[TraceRequest]:
        try:
            yield from _requests(100)
        finally:
            closed.append(True)

    assert len(list(limit(source(), max_requests=5))) == 5
    assert closed == [True]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_requests": -1}, "max_requests must be an integer >= 0"),
        ({"max_requests": 2.0}, "max_requests must be an integer >= 0"),
        ({"max_duration_s": 0.0}, "max_duration_s must be finite and > 0"),
        ({"max_duration_s": math.inf}, "max_duration_s must be finite and > 0"),
    ],
    ids=["negative-count", "float-count", "zero-duration", "infinite-duration"],
)
def test_limit_rejects_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        limit(_untouchable(), **kwargs)


# --- open_trace ---------------------------------------------------------------------------------


def _jsonl(path: Path, stamps_ms: list[float], compress: bool = False) -> Path:
    lines = "".join(
        json.dumps({"timestamp": t, "input_length": 10, "output_length": 2}) + "\n"
        for t in stamps_ms
    )
    path.write_bytes(gzip.compress(lines.encode()) if compress else lines.encode())
    return path


def _csv(path: Path, stamps_s: list[float]) -> Path:
    rows = "".join(f"{t},10,2\n" for t in stamps_s)
    path.write_text("timestamp,input_length,output_length\n" + rows)
    return path


def _stamps(reqs: Iterator[TraceRequest]) -> list[float]:
    return [r.timestamp_s for r in reqs]


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a.csv", True), ("A.CSV.GZ", True), ("dir/*.csv", True), ("a.jsonl", False),
     ("a.csv.bak", False), ("synthetic:poisson", False)],
    ids=["csv", "csv-gz-upper", "glob", "jsonl", "backup", "synthetic"],
)
def test_is_csv_spec(name: str, expected: bool) -> None:
    assert is_csv_spec(name) is expected


def test_open_synthetic_counts_requests() -> None:
    stats = TraceStats()
    spec = "synthetic:poisson?rate_rps=4&duration_s=50&seed=2"
    reqs = list(open_trace(spec, stats=stats))
    assert (stats.files, stats.requests) == (0, len(reqs))
    assert len(reqs) > 100


def test_open_jsonl_file_keeps_its_timestamps(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "a.jsonl", [500.0, 1500.0, 1500.0, 4000.0])
    assert _stamps(open_trace(path)) == [0.5, 1.5, 1.5, 4.0]


def test_open_jsonl_directory_chains_files(tmp_path: Path) -> None:
    _jsonl(tmp_path / "1.jsonl", [0.0, 2000.0])
    _jsonl(tmp_path / "2.jsonl.gz", [5000.0, 6000.0], compress=True)
    _jsonl(tmp_path / "3.jsonl", [])
    _jsonl(tmp_path / "4.jsonl", [100.0])
    stats = TraceStats()
    # 2.jsonl.gz starts at 2 s (the last request of 1.jsonl), 4.jsonl at 3 s
    assert _stamps(open_trace(str(tmp_path), stats=stats)) == [0.0, 2.0, 2.0, 3.0, 3.0]
    assert (stats.files, stats.requests) == (4, 5)


def test_open_csv_glob_chains_files(tmp_path: Path) -> None:
    _csv(tmp_path / "b.csv", [100.0, 101.5])
    _csv(tmp_path / "a.csv", [7.0, 8.0, 10.0])
    assert _stamps(open_trace(str(tmp_path / "*.csv"))) == [0.0, 1.0, 3.0, 3.0, 4.5]


def test_open_csv_options(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("when,isl,osl\n1000,5,6\n3500,7,8\n")
    reqs = list(open_trace(path, csv_columns=CsvColumns("when", "isl", "osl"),
                           timestamp_unit="ms"))
    assert [(r.timestamp_s, r.input_length, r.output_length) for r in reqs] == [
        (0.0, 5, 6), (2.5, 7, 8)
    ]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"], ids=["csv", "jsonl"])
def test_open_passes_skip_mode_and_stats(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"t{suffix}"
    if suffix == ".csv":
        path.write_text("timestamp,input_length,output_length\n0,1,1\nbad,1,1\n2,1,1\n")
    else:
        path.write_text('{"timestamp":0,"input_length":1,"output_length":1}\nbad\n'
                        '{"timestamp":2000,"input_length":1,"output_length":1}\n')
    bad_line = 3 if suffix == ".csv" else 2  # the CSV header is line 1
    with pytest.raises(TraceFormatError, match=rf"t{suffix}:{bad_line}: "):
        list(open_trace(path))
    stats = TraceStats()
    assert _stamps(open_trace(path, skip_bad_lines=True, stats=stats)) == [0.0, 2.0]
    assert (stats.requests, stats.bad_lines) == (2, 1)


def test_open_applies_transforms(tmp_path: Path) -> None:
    path = _csv(tmp_path / "t.csv", [float(i) for i in range(100)])
    stats = TraceStats()
    doubled = list(open_trace(path, stats=stats, rate_scale=2.0, time_scale=0.5))
    assert _stamps(iter(doubled)) == [i * 0.5 for i in range(100) for _ in range(2)]
    assert stats.requests == 100  # counted as read, before the transforms
    cut = _stamps(open_trace(path, time_scale=2.0, max_duration_s=10.0))
    assert cut == [0.0, 2.0, 4.0, 6.0, 8.0]  # max_duration_s counts scaled seconds
    thinned = list(open_trace(path, rate_scale=0.5, seed=3))
    assert thinned == list(open_trace(path, rate_scale=0.5, seed=3))
    assert 25 <= len(thinned) <= 75
    assert len(list(open_trace(path, max_requests=7))) == 7


@pytest.mark.parametrize(
    ("spec", "kwargs", "error", "message"),
    [
        ("", {}, TraceFormatError, "trace spec is empty"),
        ("nowhere/*.jsonl", {}, TraceFormatError, "no file matches it as a glob"),
        ("nowhere.csv", {}, TraceFormatError, "no file matches it as a glob"),
        ("synthetic:poisson?rate_rps=1", {}, ConfigError, "missing key(s) duration_s"),
        ("synthetic:poisson?rate_rps=1&duration_s=5", {"time_scale": 0.0}, ConfigError,
         "time_scale factor"),
        ("synthetic:poisson?rate_rps=1&duration_s=5", {"rate_scale": -2.0}, ConfigError,
         "rate_scale factor"),
        ("synthetic:poisson?rate_rps=1&duration_s=5", {"max_requests": -1}, ConfigError,
         "max_requests"),
    ],
    ids=["empty", "no-jsonl", "no-csv", "bad-synthetic", "bad-time-scale", "bad-rate-scale",
         "bad-limit"],
)
def test_open_errors_raised_when_called(
    spec: str, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        open_trace(spec, **kwargs)
    assert message in str(info.value)


def test_open_csv_option_errors_raised_when_called(tmp_path: Path) -> None:
    path = _csv(tmp_path / "t.csv", [0.0])
    with pytest.raises(ConfigError, match="timestamp_unit must be 's' or 'ms'"):
        open_trace(path, timestamp_unit="h")  # type: ignore[arg-type]
