"""Sliding-window regression and estimate_many: behaviour, and native == reference."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sla_planner.errors import KernelError
from sla_planner.kernels import regression_ref

try:
    from sla_planner import _native
except ImportError:  # pragma: no cover - the extension is built by `pip install`
    _native = None  # type: ignore[assignment]

IMPLS: list[Any] = [pytest.param((regression_ref.SlidingRegression, regression_ref.estimate_many), id="reference")]
if _native is not None:
    IMPLS.append(pytest.param((_native.SlidingRegression, _native.estimate_many), id="native"))


@pytest.fixture(params=IMPLS)
def reg(request: pytest.FixtureRequest) -> Any:
    return request.param[0]


@pytest.fixture(params=IMPLS)
def estimate(request: pytest.FixtureRequest) -> Any:
    return request.param[1]


def test_recovers_prefill_line_from_token_counts(reg: Any) -> None:
    r = reg(1, 60.0, 1.0)
    tokens = np.arange(50) * 512.0 + 1000.0
    r.add_many(np.arange(50.0), tokens, 12.0 + 0.004 * tokens)
    coef, n = r.fit(49.0)
    np.testing.assert_allclose(coef, [12.0, 0.004], rtol=1e-9)
    assert n == 50 and r.last_rejection is None


def test_recovers_decode_plane(reg: Any) -> None:
    r = reg(2, 60.0, 1.0)
    rng = np.random.default_rng(7)
    X = np.column_stack([rng.integers(1, 256, 200), rng.integers(1_000, 2_000_000, 200)]).astype(float)
    t = np.linspace(0.0, 59.0, 200)
    r.add_many(t, X, 8.0 + 0.05 * X[:, 0] + 2e-6 * X[:, 1])
    coef, n = r.fit(59.0)
    np.testing.assert_allclose(coef, [8.0, 0.05, 2e-6], rtol=1e-8)
    assert n == 200


def test_add_accepts_scalar_and_sequence(reg: Any) -> None:
    one, two = reg(1, 10.0, 1.0, min_observations=2), reg(2, 10.0, 1.0, min_observations=3)
    for i in range(4):
        one.add(float(i), float(i), 2.0 * i)
        two.add(float(i), [float(i), float(i * i)], 1.0 + i + i * i)
    assert one.fit(3.0)[1] == 4 and two.fit(3.0)[1] == 4


def test_old_buckets_leave_the_window(reg: Any) -> None:
    r = reg(1, 10.0, 1.0, min_observations=3)
    for i in range(5):
        r.add(float(i), float(i), 100.0 - i)
    for i in range(20, 25):
        r.add(float(i), float(i), 2.0 * i)
    coef, n = r.fit(24.5)
    assert n == 5 and coef[1] == pytest.approx(2.0)


@pytest.mark.parametrize(("samples", "fits"), [pytest.param(4, False, id="one-short"), pytest.param(5, True, id="exactly-min")])
def test_min_observations_boundary(reg: Any, samples: int, fits: bool) -> None:
    r = reg(1, 60.0, 1.0, min_observations=5)
    for i in range(samples):
        r.add(float(i), float(i), float(i))
    assert (r.fit(10.0) is not None) is fits
    assert r.last_rejection == (None if fits else "insufficient")


REJECTIONS = [
    ("constant feature", 1, lambda i: ([7.0], float(i)), "singular"),
    ("negative slope", 1, lambda i: ([float(i)], 10.0 - i), "negative_slope"),
    ("collinear features", 2, lambda i: ([float(i), 2.0 * i], float(i)), "singular"),
    ("one negative slope of two", 2, lambda i: ([float(i), float(i * i)], i * i - 0.5 * i), "negative_slope"),
    ("overflowing values", 1, lambda i: ([1e200 * i], 1e200 * i), "singular"),
]


@pytest.mark.parametrize(("k", "sample", "reason"), [pytest.param(k, s, r, id=i) for i, k, s, r in REJECTIONS])
def test_rejections(reg: Any, k: int, sample: Any, reason: str) -> None:
    r = reg(k, 60.0, 1.0, min_observations=2)
    for i in range(8):
        x, y = sample(i)
        r.add(float(i), x, y)
    assert r.fit(8.0) is None
    assert r.last_rejection == reason


def test_zero_slope_is_accepted(reg: Any) -> None:
    r = reg(1, 60.0, 1.0, min_observations=2)
    for i in range(6):
        r.add(float(i), float(i), 3.0)
    coef, _ = r.fit(6.0)
    assert coef.tolist() == [3.0, 0.0]


def test_invalid_and_late_samples_are_counted(reg: Any) -> None:
    r = reg(1, 5.0, 1.0, min_observations=1)
    r.add_many([math.nan, 1.0, 1.0, 1e300], [1.0, math.inf, 1.0, 1.0], [1.0, 1.0, math.nan, 1.0])
    r.add(10.0, 1.0, 1.0)
    r.add(5.0, 1.0, 1.0)  # bucket 5 shares a slot with bucket 10: already rotated out
    assert (r.dropped_invalid, r.dropped_late) == (4, 1)


def test_properties(reg: Any) -> None:
    r = reg(2, 120.0, 0.5, min_observations=7)
    assert (r.n_features, r.window_s, r.bucket_s, r.n_buckets, r.min_observations) == (2, 120.0, 0.5, 240, 7)


BAD_ARGS = [
    ("n_features 0", lambda cls: cls(0, 10.0, 1.0)),
    ("n_features 3", lambda cls: cls(3, 10.0, 1.0)),
    ("window 0", lambda cls: cls(1, 0.0, 1.0)),
    ("bucket > window", lambda cls: cls(1, 10.0, 10.5)),
    ("bucket nan", lambda cls: cls(1, 10.0, math.nan)),
    ("too many buckets", lambda cls: cls(1, 1e7, 1.0)),
    ("min_observations 0", lambda cls: cls(1, 10.0, 1.0, min_observations=0)),
    ("x too short", lambda cls: cls(2, 10.0, 1.0).add(0.0, [1.0], 1.0)),
    ("x not numbers", lambda cls: cls(1, 10.0, 1.0).add(0.0, "a", 1.0)),
    ("add_many X columns", lambda cls: cls(2, 10.0, 1.0).add_many([0.0], [[1.0, 2.0, 3.0]], [1.0])),
    ("add_many lengths", lambda cls: cls(1, 10.0, 1.0).add_many([0.0, 1.0], [1.0], [1.0])),
    ("add_many 3-D", lambda cls: cls(1, 10.0, 1.0).add_many([0.0], np.zeros((1, 1, 1)), [1.0])),
    ("add_many strings", lambda cls: cls(1, 10.0, 1.0).add_many(["a"], [1.0], [1.0])),
    ("fit nan", lambda cls: cls(1, 10.0, 1.0).fit(math.nan)),
]


@pytest.mark.parametrize("call", [pytest.param(c, id=i) for i, c in BAD_ARGS])
def test_bad_arguments_raise_kernel_error(reg: Any, call: Any) -> None:
    with pytest.raises(KernelError):
        call(reg)


def test_estimate_many(estimate: Any) -> None:
    assert estimate([1.0, 2.0, 3.0], [[1.0, 1.0], [0.0, 2.0]]).tolist() == [6.0, 7.0]
    assert estimate([1.0, 0.5], [2.0, 4.0]).tolist() == [2.0, 3.0]
    assert estimate([1.0, 0.5], np.empty(0)).shape == (0,)
    for coef, X in (([1.0, 2.0], [[1.0, 2.0]]), ([[1.0, 2.0]], [1.0]), ([1.0, 2.0], np.zeros((1, 1, 1)))):
        with pytest.raises(KernelError):
            estimate(coef, X)


# ------------------------------------------------------------ native == reference (hypothesis)

_value = st.one_of(
    st.floats(-1e6, 1e6),
    st.sampled_from([0.0, 1.0, -1.0, 1e15, -1e15, 1e-300, 1e300, math.nan, math.inf, -math.inf]),
)
_time = st.one_of(st.floats(0.0, 100.0), st.sampled_from([math.nan, -5.0, 1e300]))


@pytest.mark.skipif(_native is None, reason="native extension not built")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    k=st.integers(1, 2),
    window_s=st.sampled_from([5.0, 30.0, 120.0]),
    bucket_s=st.sampled_from([0.5, 1.0, 5.0]),
    min_obs=st.integers(1, 6),
    data=st.data(),
)
def test_native_matches_reference(k: int, window_s: float, bucket_s: float, min_obs: int, data: st.DataObject) -> None:
    native = _native.SlidingRegression(k, window_s, bucket_s, min_obs)
    ref = regression_ref.SlidingRegression(k, window_s, bucket_s, min_obs)
    n = data.draw(st.integers(0, 40))
    t = np.sort(np.array(data.draw(st.lists(_time, min_size=n, max_size=n)), dtype=float))
    X = np.array(data.draw(st.lists(st.lists(_value, min_size=k, max_size=k), min_size=n, max_size=n)), dtype=float)
    X = X.reshape(n, k)
    y = np.array(data.draw(st.lists(_value, min_size=n, max_size=n)), dtype=float)
    if data.draw(st.booleans()):
        native.add_many(t, X, y)
        ref.add_many(t, X, y)
    else:
        for i in range(n):
            native.add(t[i], X[i].tolist(), y[i])
            ref.add(t[i], X[i].tolist(), y[i])
    for now in (data.draw(st.floats(0.0, 200.0)), 100.0):
        a, b = native.fit(now), ref.fit(now)
        assert native.last_rejection == ref.last_rejection
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert a[1] == b[1]
            np.testing.assert_allclose(a[0], b[0], rtol=1e-9, atol=0.0)
    assert (native.dropped_invalid, native.dropped_late) == (ref.dropped_invalid, ref.dropped_late)
    coef = np.array(data.draw(st.lists(_value, min_size=k + 1, max_size=k + 1)))
    np.testing.assert_array_equal(_native.estimate_many(coef, X), regression_ref.estimate_many(coef, X))
