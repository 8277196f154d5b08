"""M/G/c queue-aware prefill sizing: Erlang C, the wait tail, moments, engine counts."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sla_planner.core.queueing import (
    ServiceMoments,
    engines_for_itl,
    engines_for_ttft,
    erlang_c,
    service_moments,
    wait_tail,
)


@pytest.mark.parametrize(
    "c,a,expected",
    [
        (1, 0.5, 0.5),  # M/M/1: P(wait) = rho
        (2, 1.0, 1.0 / 3.0),  # textbook value
        (1, 0.0, 0.0),
        (3, 3.0, 1.0),  # saturated
        (3, 5.0, 1.0),  # unstable
    ],
    ids=["mm1", "mm2_rho_half", "idle", "saturated", "unstable"],
)
def test_erlang_c_known_values(c: int, a: float, expected: float) -> None:
    assert erlang_c(c, a) == pytest.approx(expected)


@pytest.mark.parametrize("c,a", [(0, 1.0), (1, -1.0), (1, math.nan), (1, math.inf)])
def test_erlang_c_rejects_bad_input(c: int, a: float) -> None:
    with pytest.raises(ValueError):
        erlang_c(c, a)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 200), st.floats(0.0, 0.999))
def test_erlang_c_is_a_probability_and_falls_with_more_servers(c: int, rho: float) -> None:
    a = rho * c
    p = erlang_c(c, a)
    assert 0.0 <= p <= 1.0
    assert erlang_c(c + 1, a) <= p + 1e-12


def test_wait_tail_mm1_closed_form() -> None:
    # M/M/1, lam 0.5, mean 1 s: P(W > t) = rho * exp(-(mu - lam) t) = 0.5 * exp(-0.5 t)
    assert wait_tail(1, 0.5, 1.0, 1.0, 2.0) == pytest.approx(0.5 * math.exp(-1.0))
    # deterministic service (scv 0) decays twice as fast in the approximation
    assert wait_tail(1, 0.5, 1.0, 0.0, 2.0) == pytest.approx(0.5 * math.exp(-2.0))
    assert wait_tail(1, 2.0, 1.0, 1.0, 5.0) == 1.0  # unstable


def test_service_moments_from_histogram_and_fallback() -> None:
    # service time = isl / 1000 s. Two buckets: (64, 128] and (128, 256] with 1 request each,
    # each spread over four log-spaced points inside its bounds.
    m = service_moments(lambda isl: isl / 1000.0, 100.0, ((64.0, 0.0), (128.0, 1.0), (256.0, 1.0)))
    points = [lo * 2 ** ((k + 0.5) / 4) / 1000 for lo in (64.0, 128.0) for k in range(4)]
    mean = sum(points) / 8
    assert m.from_histogram
    assert m.mean_s == pytest.approx(mean)
    assert m.scv == pytest.approx(sum(p * p for p in points) / 8 / mean**2 - 1)
    assert [s for s, _ in m.mix] == pytest.approx(points)
    assert sum(w for _, w in m.mix) == pytest.approx(1.0)
    fallback = service_moments(lambda isl: isl / 1000.0, 100.0, None)
    assert fallback == ServiceMoments(0.1, 1.0, False, ((0.1, 1.0),))
    empty = service_moments(lambda isl: isl / 1000.0, 100.0, ((64.0, 0.0), (math.inf, 0.0)))
    assert not empty.from_histogram


def test_attainment_leaves_out_requests_too_long_for_the_target() -> None:
    # half the requests need 3 s of service alone against a 2 s target: never feasible
    m = ServiceMoments(mean_s=1.75, scv=0.5, from_histogram=True, mix=((0.5, 0.5), (3.0, 0.5)))
    idle = m.attainment(100, 1e-6, 2.0)
    assert idle == pytest.approx(1.0)  # every feasible request meets it on an idle pool
    assert ServiceMoments(3.0, 0.0, True, ((3.0, 1.0),)).attainment(4, 0.1, 2.0) is None


def test_a_larger_wait_factor_needs_more_engines() -> None:
    m = ServiceMoments(mean_s=1.0, scv=1.0, from_histogram=False, mix=((1.0, 1.0),))
    modelled = engines_for_ttft(3.0, m, 3.0, 0.95, 64)
    longer = engines_for_ttft(3.0, m, 3.0, 0.95, 64, wait_factor=8.0)
    assert modelled is not None and longer is not None and longer > modelled


def test_engines_for_ttft_boundaries() -> None:
    moments = ServiceMoments(mean_s=1.0, scv=1.0, from_histogram=False)
    # lam 0.5/s, 1 s service, target 3 s -> budget 2 s. One engine: 0.5 * e^-1 = 0.184 > 0.05;
    # two engines: C(2, 0.5) = 0.1 ... * e^{-(2 - 0.5) * 2} = 0.1 * e^-3 = 0.005 <= 0.05.
    assert engines_for_ttft(0.5, moments, 3.0, 0.95, 64) == 2
    assert engines_for_ttft(0.5, moments, 3.0, 0.80, 64) == 1  # 0.184 <= 0.2
    assert engines_for_ttft(0.0, moments, 3.0, 0.95, 64) == 1  # no traffic
    assert engines_for_ttft(0.5, moments, 1.0, 0.95, 64) is None  # service alone uses the target
    assert engines_for_ttft(50.0, moments, 3.0, 0.95, 10) is None  # over the cap


@settings(max_examples=150, deadline=None)
@given(st.floats(0.01, 50.0), st.floats(0.01, 2.0), st.floats(0.0, 8.0), st.floats(0.5, 0.99))
def test_engines_for_ttft_is_stable_and_monotone_in_load(lam: float, mean_s: float, scv: float, q: float) -> None:
    m = ServiceMoments(mean_s, scv, False)
    target = mean_s * 3
    c = engines_for_ttft(lam, m, target, q, 10_000)
    assert c is not None and c > lam * mean_s  # always a stable queue
    more = engines_for_ttft(lam * 1.5, m, target, q, 10_000)
    assert more is not None and more >= c


def test_decode_engines_for_the_lifetime_average_batch() -> None:
    # limit 6.5 sequences at 95%: (110 + 1.645 * sqrt(0.7358 * 110)) / 6.5 = 19.2 -> 20 engines
    # (each engine's batch taken as independently Poisson would say 40)
    assert engines_for_itl(110.0, 6.5, 0.95, 1, 1000) == 20
    assert engines_for_itl(110.0, 6.5, 0.5, 1, 1000) == 17  # the mean alone: ceil(110 / 6.5)
    assert engines_for_itl(110.0, 6.5, 0.95, 25, 1000) == 25  # never below the formula's count
    assert engines_for_itl(110.0, 6.5, 0.95, 1, 19) is None  # past the budget
    assert engines_for_itl(110.0, 0.9, 0.95, 1, 1000) is None  # no batch meets the target
    assert engines_for_itl(0.0, 6.5, 0.95, 3, 1000) == 3
