"""Interpolation kernels: compiled (sla_planner._cy.interp) against the numpy reference, shared
input validation, and the properties the planner relies on (PCHIP, clamping, best-under-ITL)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import sla_planner.kernels as kernels
from sla_planner.errors import KernelError
from sla_planner.kernels import interp_ref as ref

try:
    from sla_planner._cy import interp as compiled
except ImportError:  # extensions not built
    compiled = None

needs_compiled = pytest.mark.skipif(compiled is None, reason="sla_planner._cy.interp not built")
IMPLS = [
    pytest.param(ref, id="reference"),
    pytest.param(compiled, id="compiled", marks=needs_compiled),
]
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
NAN, INF = math.nan, math.inf


def outcome(fn: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """("ok", result) or ("error", message); any exception other than KernelError fails."""
    try:
        return ("ok", fn(*args))
    except KernelError as exc:
        return ("error", str(exc))


def assert_same(a: tuple[str, Any], b: tuple[str, Any]) -> None:
    assert a[0] == b[0], (a, b)
    if a[0] == "error":
        assert a[1] == b[1]
    elif isinstance(a[1], np.ndarray):
        assert isinstance(b[1], np.ndarray) and b[1].dtype == np.float64
        assert a[1].shape == b[1].shape
        np.testing.assert_array_equal(a[1], b[1])  # NaN == NaN here; values bit-for-bit
    elif isinstance(a[1], tuple):
        assert len(a[1]) == len(b[1])
        for u, v in zip(a[1], b[1]):
            assert type(u) is type(v)
            assert u == v or (u != u and v != v), (a, b)
    else:
        assert type(a[1]) is type(b[1]) is float
        assert a[1] == b[1] or (a[1] != a[1] and b[1] != b[1]), (a, b)


# ---------------------------------------------------------------------------------------------
# strategies

moderate = st.floats(-1e6, 1e6, allow_nan=False)
extreme = st.sampled_from([0.0, -0.0, 1e-300, -1e-300, 1e300, -1e300, 5e-324, 1.7e308, -1.7e308])
finite = st.one_of(moderate, extreme)
query = st.one_of(
    st.floats(-1e7, 1e7, allow_nan=False),
    st.sampled_from([NAN, INF, -INF, 1e308, -1e308, 0.0, -0.0]),
)


@st.composite
def knots(draw: st.DrawFn, slopes: str = "pchip") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 12))
    start = draw(st.floats(-1e4, 1e4))
    steps = draw(st.lists(st.floats(1e-3, 1e3), min_size=n - 1, max_size=n - 1))
    x = start + np.concatenate([[0.0], np.cumsum(steps)])
    if np.any(np.diff(x) <= 0):  # cumsum rounding at extreme ratios: keep strictly increasing
        x = np.arange(n, dtype=np.float64)
    y = np.array(draw(st.lists(finite, min_size=n, max_size=n)))
    if slopes == "pchip":
        with np.errstate(all="ignore"):
            d = ref.pchip_slopes(x, y)
        if not np.all(np.isfinite(d)):
            d = np.zeros(n)
    else:
        d = np.array(draw(st.lists(finite, min_size=n, max_size=n)))
    return x, y, d


@st.composite
def grids(draw: st.DrawFn) -> tuple[np.ndarray, float, float, float, float]:
    nx = draw(st.integers(1, 6))
    ny = draw(st.integers(1, 6))
    cell = st.one_of(moderate, extreme, st.sampled_from([NAN, INF, -INF]))
    z = draw(hnp.arrays(np.float64, (nx, ny), elements=cell))
    return (
        z,
        draw(moderate),
        draw(st.one_of(st.floats(1e-6, 1e6), st.sampled_from([1e-300, 1e300]))),
        draw(moderate),
        draw(st.one_of(st.floats(1e-6, 1e6), st.sampled_from([1e-300, 1e300]))),
    )


queries = hnp.arrays(
    np.float64, hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=5), elements=query
)


# ---------------------------------------------------------------------------------------------
# compiled == reference on valid inputs (bit-for-bit: the arithmetic is the same)


@needs_compiled
@SETTINGS
@given(k=st.one_of(knots("pchip"), knots("free")), q=queries)
def test_hermite_compiled_equals_reference(k: tuple[np.ndarray, ...], q: np.ndarray) -> None:
    x, y, d = k
    assert_same(outcome(compiled.hermite_eval, x, y, d, q), outcome(ref.hermite_eval, x, y, d, q))
    for v in q.reshape(-1)[:4]:
        scalar = outcome(compiled.hermite_eval_scalar, x, y, d, float(v))
        assert_same(scalar, outcome(ref.hermite_eval_scalar, x, y, d, float(v)))
        assert_same(scalar, ("ok", float(ref.hermite_eval(x, y, d, np.array([v]))[0])))


@needs_compiled
@SETTINGS
@given(g=grids(), q=queries, data=st.data())
def test_grid2d_compiled_equals_reference(
    g: tuple[Any, ...], q: np.ndarray, data: st.DataObject
) -> None:
    z, x0, sx, y0, sy = g
    qy = data.draw(hnp.arrays(np.float64, q.shape, elements=query))
    assert_same(
        outcome(compiled.grid2d_eval, z, x0, sx, y0, sy, q, qy),
        outcome(ref.grid2d_eval, z, x0, sx, y0, sy, q, qy),
    )
    for a, b in list(zip(q.reshape(-1), qy.reshape(-1)))[:4]:
        scalar = outcome(compiled.grid2d_eval_scalar, z, x0, sx, y0, sy, float(a), float(b))
        assert_same(scalar, outcome(ref.grid2d_eval_scalar, z, x0, sx, y0, sy, float(a), float(b)))
        batched = ref.grid2d_eval(z, x0, sx, y0, sy, np.array([a]), np.array([b]))
        assert_same(scalar, ("ok", float(batched[0])))


@needs_compiled
@SETTINGS
@given(g=grids(), data=st.data(), yq=query, target=query)
def test_best_under_target_compiled_equals_reference(
    g: tuple[Any, ...], data: st.DataObject, yq: float, target: float
) -> None:
    z_itl, _, _, y0, sy = g
    z_thpt = data.draw(hnp.arrays(np.float64, z_itl.shape, elements=st.one_of(finite, st.just(NAN))))
    assert_same(
        outcome(compiled.best_under_target, z_itl, z_thpt, y0, sy, yq, target),
        outcome(ref.best_under_target, z_itl, z_thpt, y0, sy, yq, target),
    )


@needs_compiled
@SETTINGS
@given(
    x=st.one_of(st.lists(st.one_of(moderate, st.just(NAN), st.just(INF)), max_size=4),
                st.just([[1.0, 2.0]]), st.just("ab")),
    y=st.lists(moderate, max_size=4),
    d=st.lists(st.one_of(moderate, st.just(NAN)), max_size=4),
    xq=st.one_of(query, st.just("1.0"), st.just(None)),
)
def test_hermite_same_outcome_on_arbitrary_input(x: Any, y: Any, d: Any, xq: Any) -> None:
    assert_same(
        outcome(compiled.hermite_eval_scalar, x, y, d, xq),
        outcome(ref.hermite_eval_scalar, x, y, d, xq),
    )


@needs_compiled
@SETTINGS
@given(
    shape=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    other=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    axis=st.lists(st.one_of(moderate, st.sampled_from([0.0, -1.0, NAN, INF, 3])), min_size=2, max_size=2),
    yq=query,
)
def test_grid_same_outcome_on_arbitrary_input(
    shape: tuple[int, int], other: tuple[int, int], axis: list[float], yq: float
) -> None:
    z = np.ones(shape)
    z2 = np.ones(other)
    y0, sy = axis
    assert_same(
        outcome(compiled.grid2d_eval_scalar, z, 0.0, 1.0, y0, sy, 0.5, yq),
        outcome(ref.grid2d_eval_scalar, z, 0.0, 1.0, y0, sy, 0.5, yq),
    )
    assert_same(
        outcome(compiled.best_under_target, z, z2, y0, sy, yq, 1.0),
        outcome(ref.best_under_target, z, z2, y0, sy, yq, 1.0),
    )


# ---------------------------------------------------------------------------------------------
# validation: one table, both implementations, same KernelError message

X3 = [0.0, 1.0, 2.0]
Y3 = [0.0, 1.0, 4.0]
D3 = [1.0, 2.0, 3.0]
Z22 = np.ones((2, 2))

ERRORS: list[Any] = [
    # (id, function name, args, message fragment)
    ("knots-empty", "hermite_eval_scalar", ([], [], [], 0.5), "x must hold at least 1 knot"),
    ("knots-y-length", "hermite_eval", (X3, Y3[:2], D3, [0.5]), "y has 2 values but x has 3"),
    ("knots-d-length", "hermite_eval", (X3, Y3, D3 + [4.0], [0.5]), "d has 4 slopes but x has 3"),
    ("knots-x-equal", "hermite_eval", ([0.0, 1.0, 1.0], Y3, D3, [0.5]), "x must be strictly"),
    ("knots-x-decreasing", "hermite_eval_scalar", ([2.0, 1.0, 3.0], Y3, D3, 0.5),
     "got x[1] = 1.0 after x[0] = 2.0"),
    ("knots-x-nan", "hermite_eval_scalar", ([0.0, NAN, 2.0], Y3, D3, 0.5), "x must be finite"),
    ("knots-x-overflowing-step", "hermite_eval_scalar", ([-1e308, 1e308], [0, 1], [0, 0], 0.5),
     "finite steps"),
    ("knots-y-inf", "hermite_eval_scalar", (X3, [0.0, INF, 1.0], D3, 0.5), "y[1] = inf"),
    ("knots-d-nan", "hermite_eval_scalar", (X3, Y3, [0.0, 0.0, NAN], 0.5), "d must be finite"),
    ("knots-x-2d", "hermite_eval", ([X3], [Y3], [D3], [0.5]), "x must be 1-D, got 2-D"),
    ("knots-x-strings", "hermite_eval", (["a", "b"], [1, 2], [0, 0], [0.5]), "x must hold real"),
    ("knots-x-complex", "hermite_eval", (np.array([0, 1j]), [1, 2], [0, 0], [0.5]), "dtype complex"),
    ("knots-x-ragged", "hermite_eval", ([[0.0], [1.0, 2.0]], [1, 2], [0, 0], [0.5]), "x is not"),
    ("query-string", "hermite_eval_scalar", (X3, Y3, D3, "0.5"), "xq must be a real number"),
    ("query-none", "grid2d_eval_scalar", (Z22, 0.0, 1.0, 0.0, 1.0, None, 0.5), "xq must be a real"),
    ("query-huge-int", "grid2d_eval_scalar", (Z22, 0.0, 1.0, 0.0, 1.0, 0.5, 10**400), "too large"),
    ("query-batch-object", "hermite_eval", (X3, Y3, D3, [0.5, None]), "xq must hold real"),
    ("grid-1d", "grid2d_eval", (np.ones(3), 0.0, 1.0, 0.0, 1.0, [0.5], [0.5]), "z must be 2-D"),
    ("grid-empty", "grid2d_eval_scalar", (np.ones((0, 3)), 0.0, 1.0, 0.0, 1.0, 0.5, 0.5),
     "z must have at least one cell"),
    ("grid-dx-zero", "grid2d_eval_scalar", (Z22, 0.0, 0.0, 0.0, 1.0, 0.5, 0.5),
     "dx must be finite and > 0 when the grid has 2 x points, got 0.0"),
    ("grid-dy-negative", "grid2d_eval", (Z22, 0.0, 1.0, 0.0, -1.0, [0.5], [0.5]),
     "dy must be finite and > 0"),
    ("grid-dy-inf", "grid2d_eval", (Z22, 0.0, 1.0, 0.0, INF, [0.5], [0.5]), "dy must be finite"),
    ("grid-x-min-nan", "grid2d_eval_scalar", (Z22, NAN, 1.0, 0.0, 1.0, 0.5, 0.5),
     "x_min must be finite"),
    ("grid-query-shapes", "grid2d_eval", (Z22, 0.0, 1.0, 0.0, 1.0, [0.5, 1.0], [0.5]),
     "xq shape (2,) != yq shape (1,)"),
    ("pair-shapes", "best_under_target", (Z22, np.ones((2, 3)), 0.0, 1.0, 0.5, 1.0),
     "z_thpt shape (2, 3) != z_itl shape (2, 2)"),
    ("pair-thpt-1d", "best_under_target", (Z22, np.ones(4), 0.0, 1.0, 0.5, 1.0),
     "z_thpt must be 2-D"),
    ("pair-dy-zero", "best_under_target", (Z22, Z22, 0.0, 0.0, 0.5, 1.0), "dy must be finite"),
    ("pair-target-string", "best_under_target", (Z22, Z22, 0.0, 1.0, 0.5, "30"),
     "itl_target must be a real number"),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("func", "args", "fragment"), [e[1:] for e in ERRORS],
                         ids=[e[0] for e in ERRORS])
def test_bad_input_raises_kernel_error(
    impl: ModuleType, func: str, args: tuple[Any, ...], fragment: str
) -> None:
    with pytest.raises(KernelError, match=None) as info:
        getattr(impl, func)(*args)
    assert str(info.value).startswith(f"{func}: ")
    assert fragment in str(info.value)


@needs_compiled
@pytest.mark.parametrize(("func", "args"), [e[1:3] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_bad_input_same_message(func: str, args: tuple[Any, ...]) -> None:
    assert_same(outcome(getattr(compiled, func), *args), outcome(getattr(ref, func), *args))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    ("points", "step", "ok"),
    [(1, 0.0, True), (1, NAN, True), (2, 0.0, False), (2, 5e-324, True), (2, -5e-324, False)],
    ids=["1pt-zero-step", "1pt-nan-step", "2pt-zero-step", "2pt-tiny-step", "2pt-neg-tiny"],
)
def test_step_rule_only_binds_with_more_than_one_point(
    impl: ModuleType, points: int, step: float, ok: bool
) -> None:
    z = np.arange(points * 2, dtype=np.float64).reshape(points, 2)
    call = lambda: impl.grid2d_eval_scalar(z, 0.0, step, 0.0, 1.0, 0.0, 0.0)  # noqa: E731
    if ok:
        assert call() == 0.0
    else:
        with pytest.raises(KernelError, match="dx must be finite and > 0"):
            call()


# ---------------------------------------------------------------------------------------------
# array-likes are converted once and give the same numbers


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    "convert",
    [
        pytest.param(lambda a: a.tolist(), id="list"),
        pytest.param(lambda a: a.astype(np.float32).astype(np.float64), id="float32-exact"),
        pytest.param(lambda a: np.asfortranarray(a), id="fortran"),
        pytest.param(lambda a: np.repeat(a, 2, axis=-1)[..., ::2], id="strided"),
        pytest.param(lambda a: a.astype(">f8"), id="big-endian"),
        pytest.param(lambda a: np.ma.masked_array(a), id="masked-array"),
    ],
)
def test_array_likes_match_contiguous_float64(impl: ModuleType, convert: Callable) -> None:
    z = np.array([[1.0, 2.0, 4.0], [3.0, 5.0, 9.0]])
    xq = np.array([[0.0, 0.25], [1.0, 2.0]])
    yq = np.array([[0.5, 1.5], [-1.0, 2.0]])
    want = ref.grid2d_eval(z, 0.0, 1.0, 0.0, 1.0, xq, yq)
    got = impl.grid2d_eval(convert(z), 0.0, 1, 0, 1.0, convert(xq), convert(yq))
    np.testing.assert_array_equal(got, want)
    x, y, d = np.array([0.0, 1.0, 3.0]), np.array([0.0, 2.0, 3.0]), np.array([2.0, 1.0, 0.25])
    np.testing.assert_array_equal(
        impl.hermite_eval(convert(x), convert(y), convert(d), convert(xq)),
        ref.hermite_eval(x, y, d, xq),
    )


@pytest.mark.parametrize("impl", IMPLS)
def test_scalar_types_accepted(impl: ModuleType) -> None:
    z = np.array([[1.0, 2.0], [3.0, 5.0]])
    want = impl.grid2d_eval_scalar(z, 0.0, 1.0, 0.0, 1.0, 0.5, 0.5)
    for v in (np.float32(0.5), np.array(0.5), 0.5, np.float64(0.5)):
        assert impl.grid2d_eval_scalar(z, 0, 1, np.int64(0), True, v, v) == want == 2.75


# ---------------------------------------------------------------------------------------------
# 1-D semantics and PCHIP properties


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    ("xq", "expected"),
    [
        (-INF, 10.0),
        (np.nextafter(1.0, -INF), 10.0),  # just outside the low end: clamped
        (1.0, 10.0),
        (np.nextafter(3.0, INF), 30.0),  # just outside the high end: clamped
        (INF, 30.0),
        (NAN, NAN),
    ],
    ids=["-inf", "below-x0", "at-x0", "above-xn", "+inf", "nan"],
)
def test_hermite_clamps_to_end_values(impl: ModuleType, xq: float, expected: float) -> None:
    x, y, d = [1.0, 2.0, 3.0], [10.0, 20.0, 30.0], [5.0, 5.0, 5.0]
    got = impl.hermite_eval_scalar(x, y, d, xq)
    assert got == expected or (math.isnan(got) and math.isnan(expected))


@pytest.mark.parametrize("impl", IMPLS)
def test_hermite_one_knot_is_constant(impl: ModuleType) -> None:
    got = impl.hermite_eval([2.0], [7.0], [0.0], [-INF, -1.0, 2.0, 9.0, INF, NAN])
    np.testing.assert_array_equal(got, [7.0, 7.0, 7.0, 7.0, 7.0, NAN])


@pytest.mark.parametrize("impl", IMPLS)
def test_hermite_output_shape_follows_query(impl: ModuleType) -> None:
    x, y, d = [0.0, 1.0], [0.0, 1.0], [1.0, 1.0]
    assert impl.hermite_eval(x, y, d, 0.5).shape == ()
    assert impl.hermite_eval(x, y, d, np.zeros((2, 3))).shape == (2, 3)
    assert impl.hermite_eval(x, y, d, np.zeros(0)).shape == (0,)


@pytest.mark.parametrize("impl", IMPLS)
@SETTINGS
@given(k=knots("pchip"))
def test_pchip_passes_through_knots(impl: ModuleType, k: tuple[np.ndarray, ...]) -> None:
    x, y, d = k
    np.testing.assert_array_equal(impl.hermite_eval(x, y, d, x), y)


def _monotone_case(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(2, 10))
    x = np.cumsum(draw(st.lists(st.floats(1e-2, 1e2), min_size=n, max_size=n)))
    y = np.cumsum(draw(st.lists(st.floats(0.0, 1e3), min_size=n, max_size=n)))
    return x, y * draw(st.sampled_from([1.0, -1.0]))


@pytest.mark.parametrize("impl", IMPLS)
@SETTINGS
@given(data=st.data())
def test_pchip_monotone_and_no_overshoot(impl: ModuleType, data: st.DataObject) -> None:
    x, y = _monotone_case(data.draw)
    d = ref.pchip_slopes(x, y)
    q = np.linspace(x[0], x[-1], 400)
    out = impl.hermite_eval(x, y, d, q)
    tol = 1e-12 * max(1.0, float(np.max(np.abs(y))))
    steps = np.diff(out) * np.sign(y[-1] - y[0] or 1.0)
    assert np.all(steps >= -tol)  # monotone data -> monotone curve
    k = np.clip(np.searchsorted(x, q, side="right") - 1, 0, len(x) - 2)
    lo = np.minimum(y[k], y[k + 1]) - tol
    hi = np.maximum(y[k], y[k + 1]) + tol
    assert np.all((out >= lo) & (out <= hi))  # no overshoot between neighbouring knots


@SETTINGS
@given(k=knots("pchip"), q=st.lists(st.floats(0, 1), min_size=1, max_size=20))
def test_pchip_matches_scipy(k: tuple[np.ndarray, ...], q: list[float]) -> None:
    interpolate = pytest.importorskip("scipy.interpolate")
    x, y, d = k
    if len(x) < 2 or np.max(np.abs(y)) > 1e12:
        return
    xq = x[0] + np.array(q) * (x[-1] - x[0])
    want = interpolate.PchipInterpolator(x, y)(xq)
    scale = max(1.0, float(np.max(np.abs(y))))
    np.testing.assert_allclose(kernels.hermite_eval(x, y, d, xq), want, rtol=1e-9, atol=1e-9 * scale)


@pytest.mark.parametrize(
    ("x", "y", "expected"),
    [
        ([0.0, 1.0], [0.0, 2.0], [2.0, 2.0]),  # two knots: the secant at both ends
        ([0.0, 1.0, 2.0], [0.0, 1.0, 0.0], [2.0, 0.0, -2.0]),  # local max: flat there
        ([0.0, 1.0, 2.0], [0.0, 1.0, 2.0], [1.0, 1.0, 1.0]),  # straight line: exact slope
        ([5.0], [3.0], [0.0]),
    ],
    ids=["two-knots", "peak", "line", "one-knot"],
)
def test_pchip_slopes_table(x: list[float], y: list[float], expected: list[float]) -> None:
    np.testing.assert_allclose(ref.pchip_slopes(x, y), expected, rtol=0, atol=1e-15)


# ---------------------------------------------------------------------------------------------
# 2-D semantics


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    ("xq", "yq", "expected"),
    [
        (0.0, 0.0, 1.0),
        (1.0, 1.0, 5.0),
        (0.5, 0.5, 2.75),  # (1 + 2 + 3 + 5) / 4
        (-1.0, 0.5, 1.5),  # clamped to x_min
        (np.nextafter(1.0, INF), 1.0, 5.0),  # just outside x_max: clamped
        (INF, -INF, 3.0),
        (0.5, NAN, NAN),
        (NAN, 0.5, NAN),
    ],
    ids=["corner00", "corner11", "centre", "below-x", "above-x", "inf", "nan-y", "nan-x"],
)
def test_grid2d_table(impl: ModuleType, xq: float, yq: float, expected: float) -> None:
    z = np.array([[1.0, 2.0], [3.0, 5.0]])
    got = impl.grid2d_eval_scalar(z, 0.0, 1.0, 0.0, 1.0, xq, yq)
    assert got == expected or (math.isnan(got) and math.isnan(expected))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    ("shape", "xq", "yq", "expected"),
    [((1, 1), 9.0, -9.0, 0.0), ((1, 3), 5.0, 1.5, 1.5), ((3, 1), 1.5, -5.0, 1.5)],
    ids=["1x1", "1x3", "3x1"],
)
def test_grid2d_single_point_axes(
    impl: ModuleType, shape: tuple[int, int], xq: float, yq: float, expected: float
) -> None:
    z = np.arange(shape[0] * shape[1], dtype=np.float64).reshape(shape)
    assert impl.grid2d_eval_scalar(z, 0.0, 1.0, 0.0, 1.0, xq, yq) == expected


# ---------------------------------------------------------------------------------------------
# best throughput under the ITL target

# KV-usage rows (x) x context columns (y): ITL rises with usage, throughput too
Z_ITL = np.array([[10.0, 12.0], [20.0, 24.0], [30.0, 36.0], [40.0, 48.0]])
Z_THPT = np.array([[100.0, 90.0], [200.0, 180.0], [300.0, 270.0], [400.0, 360.0]])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    ("yq", "target", "expected"),
    [
        (0.0, 30.0, (300.0, 2, 30.0, True)),  # exactly at the target: meets
        (0.0, np.nextafter(30.0, -INF), (200.0, 1, 20.0, True)),  # just below: next row down
        (0.0, np.nextafter(10.0, -INF), (100.0, 0, 10.0, False)),  # nothing meets: lowest ITL
        (0.5, 33.0, (285.0, 2, 33.0, True)),  # halfway in context: interpolated
        (7.0, 36.0, (270.0, 2, 36.0, True)),  # context clamped to the last column
        (-INF, INF, (400.0, 3, 40.0, True)),
        (NAN, 30.0, (NAN, -1, NAN, False)),
        (0.0, NAN, (NAN, -1, NAN, False)),
    ],
    ids=["at", "just-below", "none", "mid-context", "clamped", "inf", "nan-yq", "nan-target"],
)
def test_best_under_target_table(
    impl: ModuleType, yq: float, target: float, expected: tuple[float, int, float, bool]
) -> None:
    got = impl.best_under_target(Z_ITL, Z_THPT, 0.0, 1.0, yq, target)
    assert_same(("ok", got), ("ok", expected))


@pytest.mark.parametrize("impl", IMPLS)
def test_best_under_target_ties_and_nan_cells(impl: ModuleType) -> None:
    itl = np.array([[5.0], [NAN], [5.0], [1.0], [9.0]])
    thpt = np.array([[7.0], [99.0], [7.0], [3.0], [NAN]])
    assert impl.best_under_target(itl, thpt, 0.0, 1.0, 0.0, 6.0) == (7.0, 0, 5.0, True)
    assert impl.best_under_target(itl, thpt, 0.0, 1.0, 0.0, 0.5) == (3.0, 3, 1.0, False)
    all_nan = np.full((3, 2), NAN)
    assert_same(
        ("ok", impl.best_under_target(all_nan, all_nan, 0.0, 1.0, 0.0, 1.0)),
        ("ok", (NAN, -1, NAN, False)),
    )


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("first", range(5), ids=lambda i: f"rows{i}-{i + 1}")
def test_best_under_target_tie_between_neighbours_keeps_the_lower_row(
    impl: ModuleType, first: int
) -> None:
    thpt = np.arange(6.0).reshape(6, 1)  # rising: each row beats the ones before it...
    thpt[first + 1:] = thpt[first]  # ...up to a tie between rows first and first + 1 (and on)
    itl = np.zeros((6, 1))
    assert impl.best_under_target(itl, thpt, 0.0, 1.0, 0.0, 1.0) == (float(first), first, 0.0, True)


few_cells = st.sampled_from([0.0, -0.0, 1.0, 2.0, NAN, INF, -INF])


@needs_compiled
@SETTINGS
@given(
    shape=st.tuples(st.integers(1, 9), st.integers(1, 3)),
    data=st.data(),
    yq=st.sampled_from([0.0, 0.5, 1.0, 2.5, NAN]),
    target=st.sampled_from([-INF, 0.0, 0.5, 1.0, 2.0, INF, NAN]),
)
def test_best_under_target_compiled_equals_reference_with_ties(
    shape: tuple[int, int], data: st.DataObject, yq: float, target: float
) -> None:
    """Few distinct cell values: ties, NaN cells and infinities in every row position."""
    z_itl = data.draw(hnp.arrays(np.float64, shape, elements=few_cells))
    z_thpt = data.draw(hnp.arrays(np.float64, shape, elements=few_cells))
    assert_same(
        outcome(compiled.best_under_target, z_itl, z_thpt, 0.0, 1.0, yq, target),
        outcome(ref.best_under_target, z_itl, z_thpt, 0.0, 1.0, yq, target),
    )


# ---------------------------------------------------------------------------------------------
# DecodeGridSearch: best_under_target with the grids checked once


@needs_compiled
@SETTINGS
@given(g=grids(), data=st.data(), yq=query, target=query)
def test_decode_grid_search_equals_best_under_target(
    g: tuple[Any, ...], data: st.DataObject, yq: float, target: float
) -> None:
    z_itl, _, _, y0, sy = g
    cells = st.one_of(finite, st.just(NAN))
    z_thpt = data.draw(hnp.arrays(np.float64, z_itl.shape, elements=cells))
    want = outcome(ref.best_under_target, z_itl, z_thpt, y0, sy, yq, target)
    for impl in (ref, compiled):
        search = impl.DecodeGridSearch(z_itl, z_thpt, y0, sy)
        assert_same(outcome(search.best, yq, target), want)


@pytest.mark.parametrize("impl", IMPLS)
def test_decode_grid_search_keeps_its_own_copy(impl: ModuleType) -> None:
    z_itl, z_thpt = Z_ITL.copy(), Z_THPT.copy()
    search = impl.DecodeGridSearch(z_itl, z_thpt, 0.0, 1.0)
    want = search.best(0.0, 30.0)
    z_itl[:] = 0.0
    z_thpt[:] = NAN
    assert search.best(0.0, 30.0) == want == (300.0, 2, 30.0, True)


@pytest.mark.parametrize("impl", IMPLS)
def test_decode_grid_search_accepts_array_likes(impl: ModuleType) -> None:
    search = impl.DecodeGridSearch(Z_ITL.tolist(), Z_THPT.astype(np.float32), 0, 1)
    assert search.best(0, 30) == impl.best_under_target(Z_ITL, Z_THPT, 0.0, 1.0, 0.0, 30.0)


SEARCH_ERRORS = [
    ("shapes", (Z22, np.ones((2, 3)), 0.0, 1.0), None,
     "DecodeGridSearch: z_thpt shape (2, 3) != z_itl shape (2, 2)"),
    ("itl-1d", (np.ones(4), Z22, 0.0, 1.0), None, "DecodeGridSearch: z_itl"),
    ("dy-zero", (Z22, Z22, 0.0, 0.0), None, "DecodeGridSearch: dy must be finite"),
    ("yq-string", (Z22, Z22, 0.0, 1.0), ("0.5", 1.0), "DecodeGridSearch.best: yq"),
    ("target-string", (Z22, Z22, 0.0, 1.0), (0.5, "30"), "DecodeGridSearch.best: itl_target"),
]


@pytest.mark.parametrize(("args", "query_args", "fragment"), [e[1:] for e in SEARCH_ERRORS],
                         ids=[e[0] for e in SEARCH_ERRORS])
def test_decode_grid_search_bad_input(
    args: tuple[Any, ...], query_args: tuple[Any, ...] | None, fragment: str
) -> None:
    messages = []
    for impl in [ref] + ([compiled] if compiled is not None else []):
        with pytest.raises(KernelError) as info:
            search = impl.DecodeGridSearch(*args)
            if query_args is not None:
                search.best(*query_args)
        assert fragment in str(info.value)
        messages.append(str(info.value))
    assert len(set(messages)) == 1  # compiled and reference say the same


def test_selected_implementation_follows_environment() -> None:
    forced = os.environ.get("SLA_PLANNER_NO_EXTENSIONS", "") not in ("", "0")
    assert kernels.USING_EXTENSIONS is (not forced)
    expected = ref if forced else compiled
    assert kernels.grid2d_eval is expected.grid2d_eval
    assert kernels.best_under_target is expected.best_under_target


@needs_compiled
def test_decode_grid_search_without_init_raises_kernel_error() -> None:
    search = compiled.DecodeGridSearch.__new__(compiled.DecodeGridSearch)
    with pytest.raises(KernelError, match="not initialised"):
        search.best(0.0, 1.0)
