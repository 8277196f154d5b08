"""numba twins of the interpolation lookups, for use inside the simulator's jitted loop.

Same semantics as :mod:`sla_planner.kernels.interp_ref` (clamped PCHIP evaluation and bilinear
uniform-grid lookup); ``tests/test_sim_lookup.py`` checks they agree.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def hermite_nb(x: np.ndarray, y: np.ndarray, d: np.ndarray, q: float) -> float:  # pragma: no cover - jitted
    n = x.shape[0]
    if q != q:
        return np.nan
    if n == 1 or q <= x[0]:
        return y[0]
    if q >= x[n - 1]:
        return y[n - 1]
    lo = 0
    hi = n - 1
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if x[mid] <= q:
            lo = mid
        else:
            hi = mid
    h = x[lo + 1] - x[lo]
    t = (q - x[lo]) / h
    t2 = t * t
    t3 = t2 * t
    return (
        (2 * t3 - 3 * t2 + 1) * y[lo]
        + (t3 - 2 * t2 + t) * h * d[lo]
        + (-2 * t3 + 3 * t2) * y[lo + 1]
        + (t3 - t2) * h * d[lo + 1]
    )


@njit(cache=True, nogil=True)
def bilinear_nb(
    z: np.ndarray, x_min: float, dx: float, y_min: float, dy: float, xq: float, yq: float
) -> float:  # pragma: no cover - jitted
    if xq != xq or yq != yq:
        return np.nan
    nx = z.shape[0]
    ny = z.shape[1]
    if nx == 1:
        fx = 0.0
    else:
        fx = min(max((xq - x_min) / dx, 0.0), nx - 1.0)
    if ny == 1:
        fy = 0.0
    else:
        fy = min(max((yq - y_min) / dy, 0.0), ny - 1.0)
    i = min(int(fx), max(nx - 2, 0))
    j = min(int(fy), max(ny - 2, 0))
    tx = fx - i
    ty = fy - j
    i1 = min(i + 1, nx - 1)
    j1 = min(j + 1, ny - 1)
    top = z[i, j] * (1 - ty) + z[i, j1] * ty
    bot = z[i1, j] * (1 - ty) + z[i1, j1] * ty
    return top * (1 - tx) + bot * tx
