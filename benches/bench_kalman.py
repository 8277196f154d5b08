"""Kalman filter bank: compiled vs numpy reference vs a per-series pure-Python filter.

Run: pytest benches/bench_kalman.py --benchmark-only
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sla_planner.kernels.kalman_ref import KalmanBankRef

kalman = pytest.importorskip("sla_planner._cy.kalman", reason="Cython kernels not built")

N_SERIES = 10_000
Q_LEVEL, Q_TREND, R = 0.1, 0.01, 1.0


class PyLocalLinearTrend:
    """One local-linear-trend filter in plain Python: the "no library" baseline."""

    def __init__(self, q_level: float, q_trend: float, r: float) -> None:
        self.q_level, self.q_trend, self.r = q_level, q_trend, r
        self.level = self.trend = self.p00 = self.p01 = self.p11 = 0.0
        self.count = 0

    def update(self, y: float) -> None:
        if not math.isfinite(y):
            return
        if self.count == 0:
            self.level, self.trend, self.p00, self.p01, self.p11 = y, 0.0, self.r, 0.0, self.r
            self.count = 1
            return
        lv, tr = self.level + self.trend, self.trend
        a00 = self.p00 + 2 * self.p01 + self.p11 + self.q_level
        a01 = self.p01 + self.p11
        a11 = self.p11 + self.q_trend
        inv_s = 1.0 / (a00 + self.r)
        k0, k1 = a00 * inv_s, a01 * inv_s
        innov = y - lv
        self.level, self.trend = lv + k0 * innov, tr + k1 * innov
        self.p00, self.p01, self.p11 = (1 - k0) * a00, (1 - k0) * a01, a11 - k1 * a01
        self.count += 1

    def predict(self) -> float:
        return max(self.level + self.trend, 0.0) if self.count else math.nan


class PyBank:
    """N independent :class:`PyLocalLinearTrend` filters."""

    def __init__(self, n: int) -> None:
        self.filters = [PyLocalLinearTrend(Q_LEVEL, Q_TREND, R) for _ in range(n)]

    def update(self, values: np.ndarray) -> None:
        for f, y in zip(self.filters, values.tolist()):
            f.update(y)

    def predict(self) -> np.ndarray:
        return np.array([f.predict() for f in self.filters])


def _make(impl: str, n: int, log1p: bool = False):  # type: ignore[no-untyped-def]
    if impl == "compiled":
        return kalman.KalmanBank(n, Q_LEVEL, Q_TREND, R, log1p)
    if impl == "reference":
        return KalmanBankRef(n, Q_LEVEL, Q_TREND, R, log1p)
    return PyBank(n)


@pytest.fixture(scope="module")
def load_series(rng) -> np.ndarray:  # type: ignore[no-untyped-def]
    """20 steps of N_SERIES request rates with a trend, noise and 1% missing."""
    base = rng.uniform(1.0, 500.0, N_SERIES)
    steps = [base * (1 + 0.02 * t) + rng.normal(0.0, 5.0, N_SERIES) for t in range(20)]
    values = np.array(steps)
    values[rng.random(values.shape) < 0.01] = np.nan
    return values


@pytest.mark.benchmark(group="kalman-bank-update-10k")
@pytest.mark.parametrize("impl", ["compiled", "reference", "python-per-series"])
def test_bank_update(benchmark, load_series, impl: str) -> None:  # type: ignore[no-untyped-def]
    want = _make("reference", N_SERIES)
    bank = _make(impl, N_SERIES)
    for values in load_series:
        want.update(values)
        bank.update(values)
    np.testing.assert_array_equal(bank.predict(), want.predict())
    step = load_series[-1]
    benchmark(bank.update, step)


@pytest.mark.benchmark(group="kalman-bank-update-10k-log1p")
@pytest.mark.parametrize("impl", ["compiled", "reference"])
def test_bank_update_log1p(benchmark, load_series, impl: str) -> None:  # type: ignore[no-untyped-def]
    want = _make("reference", N_SERIES, log1p=True)
    bank = _make(impl, N_SERIES, log1p=True)
    for values in load_series[:5]:
        want.update(values)
        bank.update(values)
    np.testing.assert_array_equal(bank.predict(), want.predict())
    benchmark(bank.update, load_series[5])


@pytest.mark.benchmark(group="kalman-single-observe-predict")
@pytest.mark.parametrize("impl", ["compiled", "reference", "python-per-series"])
def test_single_observe_predict(benchmark, impl: str) -> None:  # type: ignore[no-untyped-def]
    if impl == "python-per-series":
        f = PyLocalLinearTrend(Q_LEVEL, Q_TREND, R)

        def step() -> float:
            f.update(42.0)
            return f.predict()
    else:
        bank = _make(impl, 1)

        def step() -> float:
            bank.update_one(0, 42.0)
            return bank.predict_one(0)

    ref = _make("reference", 1)
    for _ in range(3):
        ref.update_one(0, 42.0)
        assert step() == ref.predict_one(0)
    benchmark(step)
