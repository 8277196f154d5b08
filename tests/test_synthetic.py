"""Synthetic traces: determinism, rates and shapes (fixed seeds, generous bounds), spec parsing."""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import islice

import numpy as np
import pytest

from sla_planner.errors import ConfigError
from sla_planner.traces.synthetic import (
    LengthDist,
    bursts,
    diurnal,
    open_synthetic,
    poisson,
    ramp,
)
from sla_planner.traces.mooncake import TraceRequest

BURSTS = (
    "synthetic:bursts?base_rps=2&burst_rps=12&burst_every_s=600&burst_len_s=120"
    "&duration_s=3600&isl=3000&osl=150&seed=7"
)


def _times(reqs: Iterator[TraceRequest]) -> np.ndarray:
    return np.fromiter((r.timestamp_s for r in reqs), dtype=np.float64)


def _count(times: np.ndarray, start_s: float, end_s: float) -> int:
    return int(np.count_nonzero((times >= start_s) & (times < end_s)))


@pytest.mark.parametrize(
    "spec",
    [
        "synthetic:poisson?rate_rps=5&duration_s=200&isl=lognormal:2000:0.8&osl=lognormal:200:1",
        "synthetic:ramp?rate_start=1&rate_end=9&duration_s=200&seed=3",
        BURSTS,
        "synthetic:diurnal?mean_rps=4&amplitude=0.5&period_s=100&duration_s=200&seed=11",
    ],
    ids=["poisson", "ramp", "bursts", "diurnal"],
)
def test_same_seed_same_stream(spec: str) -> None:
    first = list(open_synthetic(spec))
    assert first == list(open_synthetic(spec))
    times = [r.timestamp_s for r in first]
    assert times == sorted(times)
    assert [r.line for r in first] == list(range(1, len(first) + 1))
    assert all(r.hash_ids is None for r in first)


def test_different_seed_different_stream() -> None:
    assert _times(poisson(5, 100, seed=1)).tolist() != _times(poisson(5, 100, seed=2)).tolist()


def test_lengths_do_not_move_arrivals() -> None:
    short = list(poisson(5, 100, seed=4))
    long = list(poisson(5, 100, seed=4, isl=LengthDist.lognormal(8000, 1.0)))
    assert [r.timestamp_s for r in short] == [r.timestamp_s for r in long]
    assert {r.input_length for r in short} == {3000}
    assert len({r.input_length for r in long}) > 100


def test_generation_is_lazy() -> None:
    head = list(islice(poisson(10.0, 1e12, seed=0), 5))
    assert len(head) == 5


@pytest.mark.parametrize("rate_rps", [0.5, 20.0], ids=["slow", "fast"])
def test_poisson_mean_rate(rate_rps: float) -> None:
    duration_s = 40_000 / rate_rps  # 40 000 expected arrivals: sd 200, bound 1.5 % = 3 sd
    times = _times(poisson(rate_rps, duration_s, seed=21))
    assert times.size == pytest.approx(40_000, rel=0.015)
    assert times.min() >= 0.0 and times.max() < duration_s


def test_ramp_shape() -> None:
    times = _times(ramp(0.0, 20.0, 2000.0, seed=5))  # 20 000 expected
    assert times.size == pytest.approx(20_000, rel=0.03)
    # rate grows linearly: the four quarters hold 1/16, 3/16, 5/16, 7/16 of the arrivals
    quarters = [_count(times, q * 500.0, (q + 1) * 500.0) for q in range(4)]
    for q, got in enumerate(quarters):
        assert got == pytest.approx(20_000 * (2 * q + 1) / 16, rel=0.1)


def test_ramp_down() -> None:
    times = _times(ramp(10.0, 2.0, 1000.0, seed=8))
    assert _count(times, 0, 100) > 2.5 * _count(times, 900, 1000)


def test_bursts_shape() -> None:
    times = _times(bursts(2.0, 20.0, 100.0, 20.0, 1000.0, seed=9))
    in_burst = sum(_count(times, k * 100.0, k * 100.0 + 20.0) for k in range(1, 10))
    calm = times.size - in_burst
    burst_rate = in_burst / (9 * 20.0)  # 9 windows of 20 s: [100, 120) ... [900, 920)
    calm_rate = calm / (1000.0 - 9 * 20.0)
    assert burst_rate == pytest.approx(20.0, rel=0.1)
    assert calm_rate == pytest.approx(2.0, rel=0.1)
    assert _count(times, 0.0, 100.0) < 2 * 2.0 * 100.0  # the trace opens calm


def test_bursts_cut_by_duration() -> None:
    times = _times(bursts(0.0, 50.0, 100.0, 40.0, 120.0, seed=2))
    assert times.size > 0
    assert times.min() >= 100.0 and times.max() < 120.0


def test_diurnal_shape() -> None:
    mean_rps, amplitude, period_s = 10.0, 0.8, 1000.0
    times = _times(diurnal(mean_rps, amplitude, period_s, 3000.0, seed=13))
    assert times.size == pytest.approx(30_000, rel=0.03)
    omega = 2 * math.pi / period_s

    def expected(a: float, b: float) -> float:
        swing = amplitude * (math.sin(omega * b) - math.sin(omega * a)) / omega
        return mean_rps * ((b - a) - swing)

    for start in np.arange(0.0, 3000.0, 125.0):
        got = _count(times, start, start + 125.0)
        assert got == pytest.approx(expected(start, start + 125.0), rel=0.2, abs=30)
    peak = _count(times, 375.0, 625.0)
    trough = _count(times, 0.0, 125.0) + _count(times, 875.0, 1000.0)
    assert peak > 4 * trough


def test_diurnal_without_amplitude_is_flat() -> None:
    times = _times(diurnal(8.0, 0.0, 100.0, 2500.0, seed=1))
    assert times.size == pytest.approx(20_000, rel=0.03)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512", LengthDist("constant", 512.0, 0.0, 512)),
        ("lognormal:3000:0.5", LengthDist("lognormal", 3000.0, 0.5)),
        ("LogNormal:100:2:150", LengthDist("lognormal", 100.0, 2.0, 150)),
        ("lognormal:1:0", LengthDist("lognormal", 1.0, 0.0)),
    ],
    ids=["constant", "lognormal", "with-max", "smallest-mean"],
)
def test_length_parse(text: str, expected: LengthDist) -> None:
    assert LengthDist.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0", "constant length must be an integer >= 1, got 0"),
        ("12.5", "length '12.5' must be an integer"),
        ("lognormal:3000", "expected lognormal:MEAN:CV"),
        ("lognormal:0.99:1", "lognormal mean must be finite and >= 1"),
        ("lognormal:100:-0.1", "lognormal cv must be finite and >= 0"),
        ("lognormal:100:nan", "lognormal cv must be finite"),
        ("lognormal:100:1:0", "max_tokens must be an integer >= 1"),
        ("lognormal:x:1", "MEAN must be a number, got 'x'"),
    ],
    ids=["zero", "fraction", "no-cv", "mean-below-1", "negative-cv", "nan-cv", "zero-max",
         "word"],
)
def test_length_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LengthDist.parse(text)


def test_lognormal_mean_cv_and_clip() -> None:
    rng = np.random.default_rng(0)
    draws = LengthDist.lognormal(3000, 0.5).sample(rng, 200_000)
    assert draws.dtype == np.int64
    assert draws.mean() == pytest.approx(3000, rel=0.01)
    assert draws.std() / draws.mean() == pytest.approx(0.5, rel=0.03)
    clipped = LengthDist.lognormal(100, 2.0, max_tokens=150).sample(rng, 10_000)
    assert clipped.min() >= 1 and clipped.max() == 150


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("synthetic:square?rate_rps=1", "unknown kind 'square'; allowed: poisson, ramp, bursts, "
                                        "diurnal"),
        ("synthetic:poisson?rate_rps=1&duration_s=9&burst_rps=2",
         "unknown key 'burst_rps' for poisson; allowed: rate_rps, duration_s, isl, osl, seed"),
        ("synthetic:poisson?rate_rps=1", "missing key(s) duration_s for poisson"),
        ("synthetic:poisson", "missing key(s) rate_rps, duration_s for poisson"),
        ("synthetic:poisson?rate_rps=1&rate_rps=2&duration_s=9", "key 'rate_rps' is given twice"),
        ("synthetic:poisson?rate_rps&duration_s=9", "'rate_rps' is not key=value"),
        ("synthetic:poisson?rate_rps=fast&duration_s=9", "rate_rps must be a number, got 'fast'"),
        ("synthetic:poisson?rate_rps=0&duration_s=9", "rate_rps must be finite and > 0, got 0.0"),
        ("synthetic:poisson?rate_rps=1&duration_s=inf", "duration_s must be finite and > 0"),
        ("synthetic:poisson?rate_rps=1&duration_s=9&isl=lognormal:5", "isl: length"),
        ("synthetic:poisson?rate_rps=1&duration_s=9&osl=0", "osl: constant length must be"),
        ("synthetic:poisson?rate_rps=1&duration_s=9&seed=-1", "seed must be an integer >= 0"),
        ("synthetic:poisson?rate_rps=1&duration_s=9&seed=1.5", "seed must be an integer"),
        ("synthetic:ramp?rate_start=0&rate_end=0&duration_s=9", "both 0"),
        ("synthetic:bursts?base_rps=1&burst_rps=5&burst_every_s=60&burst_len_s=60.001"
         "&duration_s=600", "burst_len_s (60.001) must be <= burst_every_s (60)"),
        ("synthetic:diurnal?mean_rps=1&amplitude=1.000001&period_s=60&duration_s=600",
         "amplitude must be <= 1"),
        ("synthetic:diurnal?mean_rps=1&amplitude=-0.1&period_s=60&duration_s=600",
         "amplitude must be finite and >= 0"),
    ],
    ids=["unknown-kind", "unknown-key", "missing-key", "no-query", "repeated-key", "no-equals",
         "word", "zero-rate", "infinite-duration", "bad-isl", "bad-osl", "negative-seed",
         "fractional-seed", "empty-ramp", "burst-longer-than-period", "amplitude-above-1",
         "negative-amplitude"],
)
def test_spec_errors_name_the_key(spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_synthetic(spec)
    assert str(info.value).startswith(f"synthetic spec {spec!r}: ")
    assert message in str(info.value)


@pytest.mark.parametrize(
    "spec",
    [
        "synthetic:poisson?rate_rps=1e-9&duration_s=9",
        "synthetic:bursts?base_rps=0&burst_rps=5&burst_every_s=60&burst_len_s=60&duration_s=600",
        "synthetic:diurnal?mean_rps=1&amplitude=1&period_s=60&duration_s=600",
        "synthetic:ramp?rate_start=0&rate_end=1&duration_s=9&seed=0",
    ],
    ids=["tiny-rate", "burst-fills-period", "full-amplitude", "ramp-from-zero"],
)
def test_spec_boundaries_accepted(spec: str) -> None:
    times = _times(open_synthetic(spec))
    assert np.all(np.diff(times) >= 0)


def test_example_spec_matches_function() -> None:
    from_spec = list(open_synthetic(BURSTS))
    direct = list(
        bursts(2, 12, 600, 120, 3600, isl=LengthDist.constant(3000), osl=LengthDist.constant(150),
               seed=7)
    )
    assert from_spec == direct
    assert {(r.input_length, r.output_length) for r in direct} == {(3000, 150)}


def test_arguments_checked_when_called() -> None:
    with pytest.raises(ConfigError, match="rate_rps must be finite and > 0"):
        poisson(-1.0, 10.0)
    with pytest.raises(ConfigError, match="isl must be a LengthDist"):
        poisson(1.0, 10.0, isl=512)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="rate_start must be a number"):
        ramp(True, 1.0, 10.0)
    with pytest.raises(ConfigError, match="synthetic spec must start with 'synthetic:'"):
        open_synthetic("poisson?rate_rps=1")
