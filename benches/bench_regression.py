"""Sliding-window regression: add_many per sample, single add, fit, estimate_many;
native (Rust) vs the Python reference, same inputs.

Run: ``pytest benches/bench_regression.py --benchmark-only``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sla_planner.kernels import regression_ref

_native = pytest.importorskip("sla_planner._native")

N_SAMPLES = 50_000
IMPLS = {"native": (_native.SlidingRegression, _native.estimate_many),
         "reference": (regression_ref.SlidingRegression, regression_ref.estimate_many)}


@pytest.fixture(scope="module")
def decode_samples() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode iterations over 120 s: (running requests, KV tokens) -> iteration time in ms."""
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(0.0, 120.0, N_SAMPLES))
    X = np.column_stack([rng.integers(1, 256, N_SAMPLES), rng.integers(1_000, 2_000_000, N_SAMPLES)]).astype(float)
    y = 8.0 + 0.05 * X[:, 0] + 2e-6 * X[:, 1] + rng.normal(0.0, 0.1, N_SAMPLES)
    return t, X, y


def _filled(impl: str, data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> Any:
    r = IMPLS[impl][0](2, 120.0, 1.0)
    r.add_many(*data)
    return r


def _check_same(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    small = tuple(a[:5000] for a in data)
    a, b = _filled("native", small).fit(120.0), _filled("reference", small).fit(120.0)
    assert a is not None and b is not None and a[1] == b[1]
    np.testing.assert_allclose(a[0], b[0], rtol=1e-9)


@pytest.mark.benchmark(group="regression-add-many")
@pytest.mark.parametrize("impl", ["native", "reference"])
def test_add_many(benchmark: Any, impl: str, decode_samples: Any) -> None:
    _check_same(decode_samples)
    r = IMPLS[impl][0](2, 120.0, 1.0)
    rounds = {"native": 30, "reference": 2}[impl]
    benchmark.pedantic(r.add_many, args=decode_samples, rounds=rounds, iterations=1)
    benchmark.extra_info["ns_per_sample"] = benchmark.stats.stats.mean / N_SAMPLES * 1e9


@pytest.mark.benchmark(group="regression-add-one")
@pytest.mark.parametrize("impl", ["native", "reference"])
def test_add_one(benchmark: Any, impl: str) -> None:
    r = IMPLS[impl][0](2, 120.0, 1.0)
    benchmark(r.add, 10.0, [32.0, 150_000.0], 12.5)


@pytest.mark.benchmark(group="regression-fit")
@pytest.mark.parametrize("impl", ["native", "reference"])
def test_fit(benchmark: Any, impl: str, decode_samples: Any) -> None:
    _check_same(decode_samples)
    r = _filled(impl, decode_samples)
    result = benchmark(r.fit, 120.0)
    assert result is not None and result[1] > 0


@pytest.mark.benchmark(group="estimate-many")
@pytest.mark.parametrize("impl", ["native", "reference"])
def test_estimate_many(benchmark: Any, impl: str, decode_samples: Any) -> None:
    X = decode_samples[1][:1000]
    coef = np.array([8.0, 0.05, 2e-6])
    np.testing.assert_array_equal(_native.estimate_many(coef, X), regression_ref.estimate_many(coef, X))
    out = benchmark(IMPLS[impl][1], coef, X)
    assert out.shape == (1000,)
