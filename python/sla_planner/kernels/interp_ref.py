"""Plain numpy references of the interpolation kernels (the oracle for sla_planner._cy.interp).

Conventions shared with the compiled kernels:

* 1-D: monotone cubic Hermite (PCHIP) through knots ``x`` (strictly increasing) with slopes
  ``d`` from :func:`pchip_slopes`; queries are clamped to ``[x[0], x[-1]]``. NaN query -> NaN.
* 2-D: bilinear lookup on a *uniform* grid ``z[i, j]`` at ``x = x_min + i*dx``,
  ``y = y_min + j*dy``; queries clamped to the grid box. NaN query -> NaN.
* Best throughput: for a context length ``y``, walk the x grid points (KV usage) and return the
  highest throughput whose ITL meets the target; when none does, the point with the lowest ITL,
  with ``meets_target`` False.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

__all__ = [
    "pchip_slopes",
    "hermite_eval",
    "hermite_eval_scalar",
    "grid2d_eval",
    "grid2d_eval_scalar",
    "best_under_target",
]


def pchip_slopes(x: F64, y: F64) -> F64:
    """Knot slopes of the monotone (Fritsch-Carlson / PCHIP) cubic through (x, y)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = x.shape[0]
    if n == 1:
        return np.zeros(1)
    h = np.diff(x)
    delta = np.diff(y) / h
    if n == 2:
        return np.array([delta[0], delta[0]])
    d = np.zeros(n)
    for k in range(1, n - 1):
        if delta[k - 1] * delta[k] <= 0.0:
            d[k] = 0.0
        else:
            w1 = 2.0 * h[k] + h[k - 1]
            w2 = h[k] + 2.0 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k])
    d[0] = _pchip_end(h[0], h[1], delta[0], delta[1])
    d[-1] = _pchip_end(h[-1], h[-2], delta[-1], delta[-2])
    return d


def _pchip_end(h0: float, h1: float, m0: float, m1: float) -> float:
    d = ((2.0 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if np.sign(d) != np.sign(m0):
        return 0.0
    if np.sign(m0) != np.sign(m1) and abs(d) > abs(3.0 * m0):
        return 3.0 * m0
    return float(d)


def hermite_eval_scalar(x: F64, y: F64, d: F64, xq: float) -> float:
    """Evaluate the cubic Hermite through (x, y, d) at one clamped query."""
    if xq != xq:  # NaN
        return float("nan")
    n = x.shape[0]
    if n == 1 or xq <= x[0]:
        return float(y[0])
    if xq >= x[n - 1]:
        return float(y[n - 1])
    k = int(np.searchsorted(x, xq, side="right")) - 1
    h = x[k + 1] - x[k]
    t = (xq - x[k]) / h
    t2 = t * t
    t3 = t2 * t
    h00 = 2 * t3 - 3 * t2 + 1
    h10 = t3 - 2 * t2 + t
    h01 = -2 * t3 + 3 * t2
    h11 = t3 - t2
    return float(h00 * y[k] + h10 * h * d[k] + h01 * y[k + 1] + h11 * h * d[k + 1])


def hermite_eval(x: F64, y: F64, d: F64, xq: F64) -> F64:
    """Batched :func:`hermite_eval_scalar`."""
    xq = np.asarray(xq, dtype=np.float64)
    return np.array([hermite_eval_scalar(x, y, d, float(q)) for q in xq.ravel()]).reshape(xq.shape)


def grid2d_eval_scalar(
    z: F64, x_min: float, dx: float, y_min: float, dy: float, xq: float, yq: float
) -> float:
    """Bilinear lookup of ``z`` on a uniform grid at one clamped query point."""
    if xq != xq or yq != yq:
        return float("nan")
    nx, ny = z.shape
    fx = 0.0 if nx == 1 else min(max((xq - x_min) / dx, 0.0), nx - 1.0)
    fy = 0.0 if ny == 1 else min(max((yq - y_min) / dy, 0.0), ny - 1.0)
    i = min(int(fx), max(nx - 2, 0))
    j = min(int(fy), max(ny - 2, 0))
    tx = fx - i
    ty = fy - j
    i1 = min(i + 1, nx - 1)
    j1 = min(j + 1, ny - 1)
    top = z[i, j] * (1 - ty) + z[i, j1] * ty
    bot = z[i1, j] * (1 - ty) + z[i1, j1] * ty
    return float(top * (1 - tx) + bot * tx)


def grid2d_eval(
    z: F64, x_min: float, dx: float, y_min: float, dy: float, xq: F64, yq: F64
) -> F64:
    """Batched :func:`grid2d_eval_scalar` (``xq`` and ``yq`` of one shape)."""
    xq = np.asarray(xq, dtype=np.float64)
    yq = np.asarray(yq, dtype=np.float64)
    out = [
        grid2d_eval_scalar(z, x_min, dx, y_min, dy, float(a), float(b))
        for a, b in zip(xq.ravel(), yq.ravel())
    ]
    return np.array(out, dtype=np.float64).reshape(xq.shape)


def best_under_target(
    z_itl: F64, z_thpt: F64, y_min: float, dy: float, yq: float, itl_target: float
) -> tuple[float, int, float, bool]:
    """Highest throughput along the x axis at context ``yq`` whose ITL <= ``itl_target``.

    Returns ``(throughput, x_index, itl, meets_target)``. When no x meets the target, the
    lowest-ITL x is returned with ``meets_target`` False. NaN ``yq`` or target -> (nan, -1, nan, False).
    """
    if yq != yq or itl_target != itl_target:
        return (float("nan"), -1, float("nan"), False)
    nx, ny = z_itl.shape
    fy = 0.0 if ny == 1 else min(max((yq - y_min) / dy, 0.0), ny - 1.0)
    j = min(int(fy), max(ny - 2, 0))
    ty = fy - j
    j1 = min(j + 1, ny - 1)
    best_i, best_thpt, best_itl = -1, -np.inf, np.nan
    low_i, low_itl = 0, np.inf
    for i in range(nx):
        itl = z_itl[i, j] * (1 - ty) + z_itl[i, j1] * ty
        thpt = z_thpt[i, j] * (1 - ty) + z_thpt[i, j1] * ty
        if itl < low_itl:
            low_i, low_itl = i, itl
        if itl <= itl_target and thpt > best_thpt:
            best_i, best_thpt, best_itl = i, thpt, itl
    if best_i >= 0:
        return (float(best_thpt), best_i, float(best_itl), True)
    thpt = z_thpt[low_i, j] * (1 - ty) + z_thpt[low_i, j1] * ty
    return (float(thpt), low_i, float(low_itl), False)
