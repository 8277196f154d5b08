"""Kalman filter bank: compiled (sla_planner._cy.kalman) against the numpy reference, a
hand-worked example, filter behaviour (constant, ramp, skips, log1p, clamping) and validation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sla_planner.errors import KernelError
from sla_planner.kernels.kalman_ref import KalmanBankRef

try:
    from sla_planner._cy.kalman import KalmanBank as CompiledBank
except ImportError:  # extensions not built
    CompiledBank = None

needs_compiled = pytest.mark.skipif(CompiledBank is None, reason="sla_planner._cy.kalman not built")
IMPLS = [
    pytest.param(KalmanBankRef, id="reference"),
    pytest.param(CompiledBank, id="compiled", marks=needs_compiled),
]
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAN, INF = math.nan, math.inf
STATE = ("level", "trend", "p00", "p01", "p11", "count")


def assert_same_state(a: Any, b: Any) -> None:
    for name in STATE:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_array_equal(a.predict(), b.predict(), err_msg="predict")


# ---------------------------------------------------------------------------------------------
# hand-worked example: q_level = q_trend = r = 1


@pytest.mark.parametrize("impl", IMPLS)
def test_hand_worked_three_steps(impl: type) -> None:
    bank = impl(1, 1.0, 1.0, 1.0)
    # step 1, y = 10: first observation -> level 10, trend 0, P = diag(r, r) = diag(1, 1)
    bank.update([10.0])
    assert (bank.level[0], bank.trend[0], bank.p00[0], bank.p01[0], bank.p11[0]) == (
        10.0, 0.0, 1.0, 0.0, 1.0)
    assert bank.predict_one(0) == 10.0
    # step 2, y = 12: predict level 10 + 0 = 10, trend 0
    #   P-: p00 = 1 + 2*0 + 1 + q_level 1 = 3, p01 = 0 + 1 = 1, p11 = 1 + q_trend 1 = 2
    #   S = 3 + r 1 = 4, K = (3/4, 1/4) = (0.75, 0.25), innovation 12 - 10 = 2
    #   level 10 + 0.75*2 = 11.5, trend 0 + 0.25*2 = 0.5
    #   P: p00 = 0.25*3 = 0.75, p01 = 0.25*1 = 0.25, p11 = 2 - 0.25*1 = 1.75
    bank.update([12.0])
    assert (bank.level[0], bank.trend[0], bank.p00[0], bank.p01[0], bank.p11[0]) == (
        11.5, 0.5, 0.75, 0.25, 1.75)
    assert bank.predict_one(0) == 12.0  # 11.5 + 0.5
    # step 3, y = 15: predict level 11.5 + 0.5 = 12, trend 0.5
    #   P-: p00 = 0.75 + 2*0.25 + 1.75 + 1 = 4, p01 = 0.25 + 1.75 = 2, p11 = 1.75 + 1 = 2.75
    #   S = 5, K = (0.8, 0.4), innovation 15 - 12 = 3
    #   level 12 + 0.8*3 = 14.4, trend 0.5 + 0.4*3 = 1.7
    #   P: p00 = 0.2*4 = 0.8, p01 = 0.2*2 = 0.4, p11 = 2.75 - 0.4*2 = 1.95
    bank.update([15.0])
    got = (bank.level[0], bank.trend[0], bank.p00[0], bank.p01[0], bank.p11[0])
    assert got == pytest.approx((14.4, 1.7, 0.8, 0.4, 1.95), rel=1e-14)
    assert bank.predict_one(0) == pytest.approx(16.1, rel=1e-14)  # 14.4 + 1.7
    assert bank.count[0] == 3


# ---------------------------------------------------------------------------------------------
# behaviour


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("log1p", [False, True], ids=["linear", "log1p"])
def test_constant_series_converges_to_the_constant(impl: type, log1p: bool) -> None:
    bank = impl(3, 0.1, 0.01, 1.0, log1p)
    values = np.array([0.0, 7.5, 1e6])
    for _ in range(100):
        bank.update(values)
    np.testing.assert_allclose(bank.predict(), values, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
def test_linear_ramp_forecast_approaches_next_value(impl: type) -> None:
    bank = impl(1, 0.1, 0.01, 1.0)
    errors = []
    for t in range(200):
        bank.update([10.0 + 2.0 * t])
        errors.append(abs(bank.predict_one(0) - (10.0 + 2.0 * (t + 1))))
    assert errors[-1] < 1e-6
    assert errors[-1] < errors[20] < errors[2]


@pytest.mark.parametrize("impl", IMPLS)
def test_exact_observation_model_learns_the_trend(impl: type) -> None:
    # r = q_level = 0: S = 0 on the first step (prediction kept, P still grows by q_trend),
    # after that K = (1, 1) and the ramp is tracked exactly
    bank = impl(1, 0.0, 0.5, 0.0)
    for y in range(6):
        bank.update([float(y)])
    assert bank.predict_one(0) == 6.0


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("skip", [NAN, INF, -INF], ids=["nan", "+inf", "-inf"])
@pytest.mark.parametrize("log1p", [False, True], ids=["linear", "log1p"])
def test_non_finite_observation_skips_the_series(
    impl: type, skip: float, log1p: bool
) -> None:
    bank = impl(2, 0.1, 0.01, 1.0, log1p)
    bank.update([5.0, 6.0])
    bank.update([7.0, 6.5])
    before = {name: getattr(bank, name).copy() for name in STATE}
    bank.update([skip, 9.0])
    bank.update_one(0, skip)
    assert bank.count.tolist() == [2, 3]
    for name in STATE:
        assert getattr(bank, name)[0] == before[name][0], name
    assert bank.level[1] != before["level"][1]


@pytest.mark.parametrize("impl", IMPLS)
def test_unseen_series_predicts_nan(impl: type) -> None:
    bank = impl(3, 0.1, 0.01, 1.0)
    bank.update([NAN, 4.0, NAN])
    out = bank.predict()
    assert math.isnan(out[0]) and out[1] == 4.0 and math.isnan(out[2])
    assert math.isnan(bank.predict_one(2))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("value", [0.0, 1e-9, 3.0, 1234.5, 1e12], ids=str)
def test_log1p_round_trip(impl: type, value: float) -> None:
    bank = impl(1, 0.1, 0.01, 1.0, True)
    bank.update([value])
    assert bank.level[0] == math.log1p(value)
    assert bank.predict_one(0) == pytest.approx(value, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("impl", IMPLS)
def test_log1p_treats_negative_observations_as_zero(impl: type) -> None:
    bank = impl(1, 0.1, 0.01, 1.0, True)
    bank.update([-5.0])
    assert bank.level[0] == 0.0 and bank.predict_one(0) == 0.0


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("log1p", [False, True], ids=["linear", "log1p"])
def test_forecast_never_negative(impl: type, log1p: bool) -> None:
    bank = impl(2, 0.1, 0.01, 1.0, log1p)
    for t in range(30):  # falling fast towards and below zero
        bank.update([100.0 - 10.0 * t, -3.0])
        assert np.all(bank.predict() >= 0.0)
    assert bank.predict()[0] == 0.0


@pytest.mark.parametrize("impl", IMPLS)
def test_overflow_restarts_the_series(impl: type) -> None:
    bank = impl(1, 0.1, 0.01, 1.0)
    bank.update([1.7e308])
    bank.update([-1.7e308])  # the innovation overflows: restart from this observation
    assert (bank.level[0], bank.trend[0], bank.p00[0], bank.p01[0], bank.p11[0]) == (
        -1.7e308, 0.0, 1.0, 0.0, 1.0)
    assert bank.count[0] == 2
    assert bank.predict_one(0) == 0.0


@pytest.mark.parametrize("impl", IMPLS)
def test_state_and_parameters_are_read_only(impl: type) -> None:
    bank = impl(2, 0.1, 0.01, 1.0, True)
    assert (bank.n, bank.q_level, bank.q_trend, bank.r, bank.log1p) == (2, 0.1, 0.01, 1.0, True)
    for name in STATE:
        with pytest.raises(ValueError):
            getattr(bank, name)[0] = 1
    for name in ("n", "q_level", "r", "log1p"):
        with pytest.raises(AttributeError):
            setattr(bank, name, 5)


@pytest.mark.parametrize("impl", IMPLS)
def test_array_likes_accepted(impl: type) -> None:
    a, b = impl(3, 0.1, 0.01, 1.0), impl(3, 0.1, 0.01, 1.0)
    a.update(np.array([1.0, 2.0, 3.0]))
    b.update([1, 2, 3])
    a.update(np.array([2.0, 0.0, 4.0, 0.0, 6.0, 0.0])[::2])
    b.update(np.array([2.0, 4.0, 6.0], dtype=">f8"))
    a.update_one(1, 5.0)
    b.update_one(np.int64(1), np.float32(5.0))
    assert_same_state(a, b)


@pytest.mark.parametrize("impl", IMPLS)
def test_empty_bank(impl: type) -> None:
    bank = impl(0, 0.1, 0.01, 1.0)
    bank.update([])
    assert bank.predict().shape == (0,)


# ---------------------------------------------------------------------------------------------
# validation: both implementations, same message

ERRORS: list[Any] = [
    # (id, constructor args, call on a valid bank or None, message fragment)
    ("n-negative", (-1, 0.1, 0.01, 1.0), None, "KalmanBank: n must be >= 0, got -1"),
    ("n-float", (2.0, 0.1, 0.01, 1.0), None, "n must be an integer, got float"),
    ("q-negative", (2, -0.1, 0.01, 1.0), None, "q_level must be finite and >= 0, got -0.1"),
    ("q-nan", (2, 0.1, NAN, 1.0), None, "q_trend must be finite and >= 0"),
    ("r-inf", (2, 0.1, 0.01, INF), None, "r must be finite and >= 0, got inf"),
    ("r-string", (2, 0.1, 0.01, "1"), None, "r must be a real number, got str"),
    ("all-zero", (2, 0.0, 0.0, 0.0), None, "q_level, q_trend and r cannot all be 0"),
    ("values-short", (2, 0.1, 0.01, 1.0), ("update", [1.0]),
     "KalmanBank.update: values must have shape (2,), got (1,)"),
    ("values-2d", (2, 0.1, 0.01, 1.0), ("update", [[1.0, 2.0]]), "got (1, 2)"),
    ("values-scalar", (1, 0.1, 0.01, 1.0), ("update", 1.0), "got ()"),
    ("values-strings", (2, 0.1, 0.01, 1.0), ("update", ["a", "b"]), "values must hold real"),
    ("index-high", (2, 0.1, 0.01, 1.0), ("update_one", 2, 1.0),
     "KalmanBank.update_one: i must be in [0, 2), got 2"),
    ("index-negative", (2, 0.1, 0.01, 1.0), ("predict_one", -1), "i must be in [0, 2), got -1"),
    ("index-huge", (2, 0.1, 0.01, 1.0), ("predict_one", 2**70), "i must be in [0, 2)"),
    ("index-float", (2, 0.1, 0.01, 1.0), ("predict_one", 1.0), "i must be an integer, got float"),
    ("value-none", (2, 0.1, 0.01, 1.0), ("update_one", 0, None),
     "KalmanBank.update_one: value must be a real number, got NoneType"),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("args", "call", "fragment"), [e[1:] for e in ERRORS],
                         ids=[e[0] for e in ERRORS])
def test_bad_input_raises_kernel_error(
    impl: type, args: tuple[Any, ...], call: tuple[Any, ...] | None, fragment: str
) -> None:
    with pytest.raises(KernelError) as info:
        bank = impl(*args)
        if call is not None:
            getattr(bank, call[0])(*call[1:])
    assert fragment in str(info.value)
    if CompiledBank is not None and impl is KalmanBankRef:  # same message from both
        with pytest.raises(KernelError) as other:
            bank = CompiledBank(*args)
            if call is not None:
                getattr(bank, call[0])(*call[1:])
        assert str(other.value) == str(info.value)


# ---------------------------------------------------------------------------------------------
# compiled == reference, bit for bit

observation = st.one_of(
    st.floats(-1e3, 1e6, allow_nan=False),
    st.sampled_from([NAN, INF, -INF, 0.0, -0.0, 1e300, -1e300, 1.7e308, -1.7e308, 5e-324]),
)
noise = st.one_of(st.floats(0.0, 10.0), st.sampled_from([0.0, 1e-12, 1e6, 1e150]))


@needs_compiled
@SETTINGS
@given(
    n=st.integers(1, 5),
    params=st.tuples(noise, noise, noise).filter(lambda p: any(v > 0 for v in p)),
    log1p=st.booleans(),
    data=st.data(),
)
def test_compiled_equals_reference(
    n: int, params: tuple[float, float, float], log1p: bool, data: st.DataObject
) -> None:
    a, b = CompiledBank(n, *params, log1p=log1p), KalmanBankRef(n, *params, log1p=log1p)
    for _ in range(data.draw(st.integers(1, 25))):
        if data.draw(st.booleans()):
            values = data.draw(st.lists(observation, min_size=n, max_size=n))
            a.update(values)
            b.update(values)
        else:
            i, v = data.draw(st.integers(0, n - 1)), data.draw(observation)
            a.update_one(i, v)
            b.update_one(i, v)
            got, want = a.predict_one(i), b.predict_one(i)
            assert got == want or (math.isnan(got) and math.isnan(want))
        assert_same_state(a, b)
        assert np.all(np.isfinite(a.level) & np.isfinite(a.trend))  # never a NaN state
        forecast = a.predict()
        assert np.all(np.isnan(forecast) | (forecast >= 0.0))


# ---------------------------------------------------------------------------------------------
# whole-bank updates: many series per call (the compiled update works in blocks of series)


def _mixed_observations(rng: np.random.Generator, n: int, step: int) -> np.ndarray:
    """Request rates with every special case mixed in: skips (NaN, +/-inf), zeros, values that
    overflow a correction, and (on the first steps) series left unstarted."""
    values = rng.uniform(0.0, 500.0, n) * (1 + 0.05 * step)
    kind = rng.random(n)
    values[kind < 0.03] = NAN
    values[(kind >= 0.03) & (kind < 0.04)] = INF
    values[(kind >= 0.04) & (kind < 0.05)] = -INF
    values[(kind >= 0.05) & (kind < 0.06)] = 0.0
    values[(kind >= 0.06) & (kind < 0.07)] = 1.7e308
    values[(kind >= 0.07) & (kind < 0.08)] = -1.7e308
    if step < 2:
        values[: n // 10] = NAN  # some series start late
    return values


@needs_compiled
@pytest.mark.parametrize("n", [1, 255, 256, 257, 515], ids=lambda n: f"n{n}")
@pytest.mark.parametrize("log1p", [False, True], ids=["linear", "log1p"])
@pytest.mark.parametrize("noises", [(0.1, 0.01, 1.0), (0.0, 0.0, 1.0), (0.0, 1e-12, 0.0)],
                         ids=["default", "r-only", "s-can-be-zero"])
def test_large_bank_compiled_equals_reference(
    n: int, log1p: bool, noises: tuple[float, float, float]
) -> None:
    rng = np.random.default_rng([20240601, n])
    a, b = CompiledBank(n, *noises, log1p=log1p), KalmanBankRef(n, *noises, log1p=log1p)
    for step in range(6):
        values = _mixed_observations(rng, n, step)
        a.update(values)
        b.update(values)
        assert_same_state(a, b)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["positive", "negative"])
def test_finite_state_whose_sum_overflows_is_kept(impl: type, sign: float) -> None:
    bank = impl(1, 0.1, 0.01, 1.0)
    for y in (0.0, sign * 1e308, sign * 1.7e308):
        bank.update([y])
    state = [float(getattr(bank, name)[0]) for name in STATE[:5]]
    assert all(math.isfinite(v) for v in state)
    assert math.isinf(state[0] + state[1])  # level + trend alone overflows
    assert int(bank.count[0]) == 3  # kept as a correction, not a restart
    ref = KalmanBankRef(1, 0.1, 0.01, 1.0)
    for y in (0.0, sign * 1e308, sign * 1.7e308):
        ref.update([y])
    assert_same_state(bank, ref)
