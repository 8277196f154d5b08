"""Interpolation kernels: compiled vs numpy reference vs SciPy, per group.

Run: pytest benches/bench_interp.py --benchmark-only
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import PchipInterpolator, RegularGridInterpolator

from sla_planner.kernels import interp_ref as ref

compiled = pytest.importorskip("sla_planner._cy.interp", reason="Cython kernels not built")

N_QUERIES = 100_000


def _axes(g) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    nx, ny = g.z_itl_ms.shape
    return g.x_min + g.dx * np.arange(nx), g.y_min + g.dy * np.arange(ny)


# ---------------------------------------------------------------------------------------------
# 1-D PCHIP, batched


@pytest.fixture(scope="module")
def isl_queries(prefill_curve, rng) -> np.ndarray:  # type: ignore[no-untyped-def]
    return rng.uniform(prefill_curve.isl[0], prefill_curve.isl[-1], N_QUERIES)


@pytest.mark.benchmark(group="interp-1d-batched-100k")
@pytest.mark.parametrize("impl", ["compiled", "reference", "scipy-pchip"])
def test_hermite_batched(benchmark, prefill_curve, isl_queries, impl: str) -> None:  # type: ignore[no-untyped-def]
    c = prefill_curve
    want = ref.hermite_eval(c.isl, c.ttft_ms, c.slopes, isl_queries)
    if impl == "compiled":
        fn = lambda: compiled.hermite_eval(c.isl, c.ttft_ms, c.slopes, isl_queries)  # noqa: E731
        np.testing.assert_array_equal(fn(), want)
    elif impl == "reference":
        fn = lambda: ref.hermite_eval(c.isl, c.ttft_ms, c.slopes, isl_queries)  # noqa: E731
    else:
        pchip = PchipInterpolator(c.isl, c.ttft_ms)
        fn = lambda: pchip(isl_queries)  # noqa: E731
        np.testing.assert_allclose(fn(), want, rtol=1e-9)
    benchmark(fn)


# ---------------------------------------------------------------------------------------------
# 2-D bilinear, batched and single


@pytest.fixture(scope="module")
def grid_queries(decode_grid, rng) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    xs, ys = _axes(decode_grid)
    return rng.uniform(xs[0], xs[-1], N_QUERIES), rng.uniform(ys[0], ys[-1], N_QUERIES)


@pytest.mark.benchmark(group="interp-2d-batched-100k")
@pytest.mark.parametrize("impl", ["compiled", "reference", "scipy-regular-grid"])
def test_grid2d_batched(benchmark, decode_grid, grid_queries, impl: str) -> None:  # type: ignore[no-untyped-def]
    g, (qx, qy) = decode_grid, grid_queries
    args = (g.z_itl_ms, g.x_min, g.dx, g.y_min, g.dy, qx, qy)
    want = ref.grid2d_eval(*args)
    if impl == "compiled":
        fn = lambda: compiled.grid2d_eval(*args)  # noqa: E731
        np.testing.assert_array_equal(fn(), want)
    elif impl == "reference":
        fn = lambda: ref.grid2d_eval(*args)  # noqa: E731
    else:
        rgi = RegularGridInterpolator(_axes(g), g.z_itl_ms, method="linear")
        points = np.column_stack([qx, qy])
        fn = lambda: rgi(points)  # noqa: E731
        np.testing.assert_allclose(fn(), want, rtol=1e-12)
    benchmark(fn)


@pytest.mark.benchmark(group="interp-2d-single")
@pytest.mark.parametrize("impl", ["compiled", "reference", "scipy-regular-grid"])
def test_grid2d_single(benchmark, decode_grid, impl: str) -> None:  # type: ignore[no-untyped-def]
    g = decode_grid
    xq, yq = 0.4321, 3210.5
    want = ref.grid2d_eval_scalar(g.z_itl_ms, g.x_min, g.dx, g.y_min, g.dy, xq, yq)
    if impl == "compiled":
        fn = lambda: compiled.grid2d_eval_scalar(g.z_itl_ms, g.x_min, g.dx, g.y_min, g.dy, xq, yq)  # noqa: E731
        assert fn() == want
    elif impl == "reference":
        fn = lambda: ref.grid2d_eval_scalar(g.z_itl_ms, g.x_min, g.dx, g.y_min, g.dy, xq, yq)  # noqa: E731
    else:
        rgi = RegularGridInterpolator(_axes(g), g.z_itl_ms, method="linear")
        fn = lambda: float(rgi((xq, yq)))  # noqa: E731
        assert fn() == pytest.approx(want, rel=1e-12)
    benchmark(fn)


# ---------------------------------------------------------------------------------------------
# best throughput under the ITL target (one decode sizing step)


def _scipy_best(rgi_itl, rgi_thpt, xs, yq: float, target: float) -> tuple[float, int, float, bool]:  # type: ignore[no-untyped-def]
    points = np.column_stack([xs, np.full(xs.shape, yq)])
    itl, thpt = rgi_itl(points), rgi_thpt(points)
    meets = np.flatnonzero(itl <= target)
    if meets.size:
        i = int(meets[np.argmax(thpt[meets])])
        return (float(thpt[i]), i, float(itl[i]), True)
    i = int(np.argmin(itl))
    return (float(thpt[i]), i, float(itl[i]), False)


@pytest.mark.benchmark(group="best-under-target-100x50")
@pytest.mark.parametrize("impl", ["compiled", "reference", "scipy-regular-grid"])
def test_best_under_target(benchmark, decode_grid, impl: str) -> None:  # type: ignore[no-untyped-def]
    g = decode_grid
    yq, target = 3210.5, 25.0
    args = (g.z_itl_ms, g.z_thpt_per_gpu, g.y_min, g.dy, yq, target)
    want = ref.best_under_target(*args)
    assert want[3]  # the target is reachable: the common case
    if impl == "compiled":
        fn = lambda: compiled.best_under_target(*args)  # noqa: E731
        assert fn() == want
    elif impl == "reference":
        fn = lambda: ref.best_under_target(*args)  # noqa: E731
    else:
        axes = _axes(g)
        rgi_itl = RegularGridInterpolator(axes, g.z_itl_ms, method="linear")
        rgi_thpt = RegularGridInterpolator(axes, g.z_thpt_per_gpu, method="linear")
        fn = lambda: _scipy_best(rgi_itl, rgi_thpt, axes[0], yq, target)  # noqa: E731
        got = fn()
        assert got[1] == want[1] and got[0] == pytest.approx(want[0], rel=1e-12)
    benchmark(fn)
