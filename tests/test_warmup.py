"""Predictor warm-up: trace -> per-interval buckets (empty ones included) -> predictors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sla_planner.errors import PredictorError, TraceFormatError
from sla_planner.predict import (
    Forecast,
    LoadPredictors,
    TrafficBucket,
    make_predictor,
    warm_up,
    warmup_series,
)
from sla_planner.predict import warmup as warmup_module
from sla_planner.traces.mooncake import TraceStats

# The Mooncake conversation trace bundled with the package (gzip; the readers detect it).
BUNDLED_TRACE = Path(__file__).resolve().parents[1] / "python" / "sla_planner" / "data" / "traces" / "mooncake_conversation.jsonl.gz"


def write(path: Path, rows: list[tuple[float, int, int]]) -> Path:
    lines = [
        json.dumps({"timestamp": t, "input_length": i, "output_length": o}) for t, i, o in rows
    ]
    path.write_text("".join(line + "\n" for line in lines))
    return path


def predictors(name: str = "constant") -> LoadPredictors:
    return LoadPredictors(*(make_predictor(name, log1p=False) for _ in range(3)))


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([(0, 100, 10)], [TrafficBucket(1, 100.0, 10.0)]),
        ([(0, 100, 10), (9999, 300, 30)], [TrafficBucket(2, 200.0, 20.0)]),
        ([(0, 100, 10), (10000, 300, 30)],
         [TrafficBucket(1, 100.0, 10.0), TrafficBucket(1, 300.0, 30.0)]),
        ([(0, 100, 10), (5000, 200, 20), (12000, 50, 5), (35000, 10, 1)],
         [TrafficBucket(2, 150.0, 15.0), TrafficBucket(1, 50.0, 5.0), TrafficBucket(0, 0.0, 0.0),
          TrafficBucket(1, 10.0, 1.0)]),
        ([(100000, 100, 10), (109999, 100, 10), (110000, 7, 0)],
         [TrafficBucket(2, 100.0, 10.0), TrafficBucket(1, 7.0, 0.0)]),
    ],
    ids=["one request", "just inside the interval", "on the boundary", "empty bucket kept",
         "buckets start at the first request"],
)
def test_buckets_of_one_file(
    tmp_path: Path, rows: list[tuple[float, int, int]], expected: list[TrafficBucket]
) -> None:
    assert warmup_series(write(tmp_path / "t.jsonl", rows), 10.0) == expected


def test_files_are_concatenated_each_on_a_fresh_bucket(tmp_path: Path) -> None:
    d = tmp_path / "traces"
    d.mkdir()
    write(d / "1.jsonl", [(0, 100, 10), (15000, 200, 20)])  # buckets 0, 1
    write(d / "2.jsonl", [])  # adds nothing
    write(d / "3.jsonl", [(50000, 300, 30), (52000, 500, 50), (75000, 9, 9)])  # buckets 2, 4
    assert warmup_series(d, 10.0) == [
        TrafficBucket(1, 100.0, 10.0),
        TrafficBucket(1, 200.0, 20.0),
        TrafficBucket(2, 400.0, 40.0),
        TrafficBucket(0, 0.0, 0.0),
        TrafficBucket(1, 9.0, 9.0),
    ]
    assert warmup_series(str(d / "[13].jsonl"), 10.0) == warmup_series(d, 10.0)


def test_empty_trace_gives_no_buckets_and_feeds_nothing(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.jsonl", [])
    preds = predictors()
    assert warmup_series(path, 60.0) == []
    assert warm_up(preds, path, 60.0) == 0
    assert preds.forecast() == Forecast(0.0, 0.0, 0.0)


def test_warm_up_feeds_every_bucket(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", [(0, 100, 10), (5000, 300, 30), (31000, 40, 4)])
    preds = LoadPredictors(*(make_predictor("linear", log1p=False) for _ in range(3)))
    assert warm_up(preds, path, 10.0) == 4
    # buckets: (2, 200, 20), (0, 0, 0), (0, 0, 0), (1, 40, 4); every value reaches the predictor
    assert preds.num_req.get_last_value() == 1.0
    assert preds.isl.history() == (200.0, 0.0, 0.0, 40.0)  # type: ignore[attr-defined]
    assert preds.osl.history() == (20.0, 0.0, 0.0, 4.0)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "interval_s", [0.0, -60.0, math.nan, math.inf, True, "60"],
    ids=["zero", "negative", "nan", "inf", "bool", "str"],
)
def test_bad_interval(tmp_path: Path, interval_s: float) -> None:
    path = write(tmp_path / "t.jsonl", [(0, 1, 1)])
    with pytest.raises(PredictorError, match="interval_s must be finite and > 0"):
        warmup_series(path, interval_s)


def test_bad_line_stops_warm_up_unless_skipped(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(
        '{"timestamp": 0, "input_length": 10, "output_length": 1}\n'
        '{"timestamp": 1, "input_length": -1, "output_length": 1}\n'
        '{"timestamp": 2, "input_length": 30, "output_length": 3}\n'
    )
    with pytest.raises(TraceFormatError, match=r"t\.jsonl:2: field 'input_length'"):
        warmup_series(path, 60.0)
    stats = TraceStats()
    assert warmup_series(path, 60.0, skip_bad_lines=True, stats=stats) == [
        TrafficBucket(2, 20.0, 2.0)
    ]
    assert stats.bad_lines == 1


def test_too_many_buckets_is_an_error_naming_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warmup_module, "MAX_WARMUP_BUCKETS", 3)
    ok = write(tmp_path / "ok.jsonl", [(0, 1, 1), (29999, 1, 1)])  # buckets 0..2: just inside
    assert len(warmup_series(ok, 10.0)) == 3
    bad = write(tmp_path / "bad.jsonl", [(0, 1, 1), (30000, 1, 1)])  # bucket 3: just outside
    with pytest.raises(TraceFormatError, match=r"bad\.jsonl:2: .*more than 3 intervals"):
        warmup_series(bad, 10.0)


def test_missing_trace_names_the_spec(tmp_path: Path) -> None:
    with pytest.raises(TraceFormatError, match="nope"):
        warm_up(predictors(), tmp_path / "nope.jsonl", 60.0)


def test_real_conversation_trace() -> None:
    import gzip

    path = BUNDLED_TRACE
    with gzip.open(path, "rt") as fh:
        lines = sum(1 for line in fh if line.strip())
    assert lines == 12_031
    series = warmup_series(path, 60.0)
    assert len(series) == 59  # timestamps run from 0 to just under 59 minutes
    assert sum(b.num_req for b in series) == lines
    assert all(b.num_req > 0 and b.isl > 0 and b.osl > 0 for b in series)
    preds = LoadPredictors(*(make_predictor("kalman", log1p=True) for _ in range(3)))
    assert warm_up(preds, path, 60.0) == 59
    assert preds.ready
    forecast = preds.forecast()
    last = series[-1]
    pairs = [(forecast.num_req, last.num_req), (forecast.isl, last.isl), (forecast.osl, last.osl)]
    for got, ref in pairs:
        assert 0.5 * ref < got < 2.0 * ref


def test_warm_up_in_skip_mode_logs_the_bad_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"timestamp": 0, "input_length": 10, "output_length": 1}\nnot json\n')
    with caplog.at_level("INFO", logger="sla_planner.predict.warmup"):
        assert warm_up(predictors(), path, 60.0, skip_bad_lines=True) == 1
    assert "1 requests in 1 intervals" in caplog.text
    assert "skipped 1 bad lines" in caplog.text and "t.jsonl:2: not valid JSON" in caplog.text


def test_idle_windows_after_a_warm_up_keep_the_warmed_level() -> None:
    # issue 8, cause 9: a deployment that has not received traffic yet must not erase the warm-up
    from sla_planner.predict import LoadPredictors
    from sla_planner.predict.simple import ConstantPredictor

    predictors = LoadPredictors(ConstantPredictor(), ConstantPredictor(), ConstantPredictor())
    for _ in range(10):
        predictors.observe(150, 3000.0, 200.0)
    predictors.mark_warmed()
    forecasts = []
    for _ in range(3):
        predictors.observe(0, None, None)
        forecasts.append(round(predictors.forecast().num_req))
    assert forecasts == [150, 150, 150]
    predictors.observe(40, 3000.0, 200.0)  # live traffic: from now on zeros are data
    predictors.observe(0, None, None)
    assert predictors.forecast().num_req == 0.0
