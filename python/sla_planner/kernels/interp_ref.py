"""Plain numpy references of the interpolation kernels (the oracle for sla_planner._cy.interp).

Conventions shared with the compiled kernels:

* 1-D: monotone cubic Hermite (PCHIP) through knots ``x`` (finite, strictly increasing) with
  values ``y`` and slopes ``d`` (finite; ``d`` usually from :func:`pchip_slopes`). Queries are
  clamped to ``[x[0], x[-1]]`` (so +/-inf give the end values); a NaN query gives NaN.
* 2-D: bilinear lookup on a *uniform* grid ``z[i, j]`` at ``x = x_min + i*dx``,
  ``y = y_min + j*dy``; queries clamped to the grid box; a NaN query gives NaN. An axis with
  one grid point ignores its step. Cells of ``z`` are not checked: a non-finite cell spreads
  into every query whose bilinear stencil touches it.
* Best throughput: at context ``yq`` (clamped, linear in y), walk the x grid points (KV usage)
  and return the highest throughput whose ITL is <= the target (ties: lowest x index). When
  none meets it, the point with the lowest ITL (ties: lowest x index), ``meets_target`` False.
  Points whose interpolated ITL or throughput is NaN are skipped; with no usable point, or a
  NaN ``yq`` / target, the answer is ``(nan, -1, nan, False)``.

Input validation lives here and nowhere else: the compiled kernels accept inputs that already
satisfy these rules directly and send everything else through the ``check_*`` / ``as_*``
helpers below, so both raise the same :class:`~sla_planner.errors.KernelError` messages.
"""

from __future__ import annotations

import numbers

import numpy as np
import numpy.typing as npt

from ..errors import KernelError

F64 = npt.NDArray[np.float64]

__all__ = [
    "pchip_slopes",
    "hermite_eval",
    "hermite_eval_scalar",
    "grid2d_eval",
    "grid2d_eval_scalar",
    "best_under_target",
    "DecodeGridSearch",
    "as_real",
    "as_array",
    "check_curve",
    "check_knots",
    "check_grid",
    "check_grid_pair",
    "check_same_shape",
]

_REAL_KINDS = "iuf"


# ---------------------------------------------------------------------------------------------
# validation (one source of truth for the rules and the messages)


def as_real(func: str, name: str, value: object) -> float:
    """``value`` as a Python float; KernelError unless it is a real number or 0-d real array."""
    is_0d_real = (
        isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in _REAL_KINDS
    )
    if not (isinstance(value, numbers.Real) or is_0d_real):
        raise KernelError(f"{func}: {name} must be a real number, got {type(value).__name__}")
    try:
        return float(value)  # type: ignore[arg-type]
    except OverflowError:
        raise KernelError(f"{func}: {name} is too large for a float64") from None


def as_array(func: str, name: str, value: object, ndim: int | None = None) -> F64:
    """``value`` as a C-contiguous float64 array; KernelError for non-real dtypes or wrong ndim."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nested sequences and the like
        raise KernelError(f"{func}: {name} is not an array of real numbers ({exc})") from None
    if arr.dtype.kind not in _REAL_KINDS:
        raise KernelError(f"{func}: {name} must hold real numbers, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise KernelError(f"{func}: {name} must be {ndim}-D, got {arr.ndim}-D shape {arr.shape}")
    # C-contiguous, aligned, native float64, base ndarray; 0-d stays 0-d
    return np.require(arr, np.float64, ["C", "A", "E"])


def _check_finite(func: str, name: str, a: F64) -> None:
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        k = int(bad[0])
        raise KernelError(f"{func}: {name} must be finite, got {name}[{k}] = {float(a[k])!r}")


def check_curve(func: str, x: object, y: object) -> tuple[F64, F64]:
    """Validated curve knots: 1-D, same length >= 1, ``x`` finite and strictly increasing with
    finite steps, ``y`` finite."""
    xa = as_array(func, "x", x, 1)
    ya = as_array(func, "y", y, 1)
    if xa.shape[0] == 0:
        raise KernelError(f"{func}: x must hold at least 1 knot, got 0")
    if ya.shape[0] != xa.shape[0]:
        raise KernelError(f"{func}: y has {ya.shape[0]} values but x has {xa.shape[0]} knots")
    _check_finite(func, "x", xa)
    with np.errstate(over="ignore"):
        steps = np.diff(xa)
    bad = np.flatnonzero(~((steps > 0.0) & (steps < np.inf)))
    if bad.size:
        k = int(bad[0]) + 1
        raise KernelError(
            f"{func}: x must be strictly increasing with finite steps, got x[{k}] = "
            f"{float(xa[k])!r} after x[{k - 1}] = {float(xa[k - 1])!r}"
        )
    _check_finite(func, "y", ya)
    return xa, ya


def check_knots(func: str, x: object, y: object, d: object) -> tuple[F64, F64, F64]:
    """Validated Hermite knots: :func:`check_curve` plus slopes ``d`` (1-D, same length, finite)."""
    xa, ya = check_curve(func, x, y)
    da = as_array(func, "d", d, 1)
    if da.shape[0] != xa.shape[0]:
        raise KernelError(f"{func}: d has {da.shape[0]} slopes but x has {xa.shape[0]} knots")
    _check_finite(func, "d", da)
    return xa, ya, da


def _check_axis(func: str, axis: str, points: int, lo: object, step: object) -> tuple[float, float]:
    lo_f = as_real(func, f"{axis}_min", lo)
    step_f = as_real(func, f"d{axis}", step)
    if not np.isfinite(lo_f):
        raise KernelError(f"{func}: {axis}_min must be finite, got {lo_f!r}")
    if points > 1 and not (np.isfinite(step_f) and step_f > 0.0):
        raise KernelError(
            f"{func}: d{axis} must be finite and > 0 when the grid has {points} {axis} points, "
            f"got {step_f!r}"
        )
    return lo_f, step_f


def _check_cells(func: str, name: str, z: object) -> F64:
    za = as_array(func, name, z, 2)
    if za.size == 0:
        raise KernelError(f"{func}: {name} must have at least one cell, got shape {za.shape}")
    return za


def check_grid(
    func: str, z: object, x_min: object, dx: object, y_min: object, dy: object
) -> tuple[F64, float, float, float, float]:
    """Validated uniform grid: ``z`` 2-D non-empty; origins finite; a step finite and > 0 on
    every axis with more than one point."""
    za = _check_cells(func, "z", z)
    x0, sx = _check_axis(func, "x", za.shape[0], x_min, dx)
    y0, sy = _check_axis(func, "y", za.shape[1], y_min, dy)
    return za, x0, sx, y0, sy


def check_grid_pair(
    func: str, z_itl: object, z_thpt: object, y_min: object, dy: object
) -> tuple[F64, F64, float, float]:
    """Validated ITL / throughput grids: both 2-D, non-empty, one shape; y axis as in
    :func:`check_grid`."""
    za = _check_cells(func, "z_itl", z_itl)
    zb = _check_cells(func, "z_thpt", z_thpt)
    if za.shape != zb.shape:
        raise KernelError(f"{func}: z_thpt shape {zb.shape} != z_itl shape {za.shape}")
    y0, sy = _check_axis(func, "y", za.shape[1], y_min, dy)
    return za, zb, y0, sy


def check_same_shape(func: str, xq: F64, yq: F64) -> None:
    """KernelError unless the converted query arrays ``xq`` and ``yq`` have one shape."""
    if xq.shape != yq.shape:
        raise KernelError(f"{func}: xq shape {xq.shape} != yq shape {yq.shape}")


# ---------------------------------------------------------------------------------------------
# 1-D monotone cubic Hermite


def pchip_slopes(x: npt.ArrayLike, y: npt.ArrayLike) -> F64:
    """Knot slopes of the monotone (Fritsch-Carlson / PCHIP) cubic through (x, y)."""
    xa, ya = check_curve("pchip_slopes", x, y)
    n = xa.shape[0]
    if n == 1:
        return np.zeros(1)
    # a tiny secant makes w / delta overflow to inf, which correctly drives the slope to 0
    with np.errstate(over="ignore", under="ignore"):
        h = np.diff(xa)
        delta = np.diff(ya) / h
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
        return float(3.0 * m0)
    return float(d)


def _hermite_point(x: F64, y: F64, d: F64, xq: float) -> float:
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
    with np.errstate(invalid="ignore", over="ignore"):
        return float(h00 * y[k] + h10 * h * d[k] + h01 * y[k + 1] + h11 * h * d[k + 1])


def hermite_eval_scalar(x: npt.ArrayLike, y: npt.ArrayLike, d: npt.ArrayLike, xq: float) -> float:
    """Evaluate the cubic Hermite through (x, y, d) at one query clamped to [x[0], x[-1]]."""
    func = "hermite_eval_scalar"
    xa, ya, da = check_knots(func, x, y, d)
    return _hermite_point(xa, ya, da, as_real(func, "xq", xq))


def hermite_eval(x: npt.ArrayLike, y: npt.ArrayLike, d: npt.ArrayLike, xq: npt.ArrayLike) -> F64:
    """Batched :func:`hermite_eval_scalar`; returns a float64 array of ``xq``'s shape."""
    xa, ya, da = check_knots("hermite_eval", x, y, d)
    q = as_array("hermite_eval", "xq", xq)
    flat = q.reshape(-1)
    n = xa.shape[0]
    if n == 1:
        out = np.where(np.isnan(flat), np.nan, ya[0])
        return out.reshape(q.shape)
    k = np.clip(np.searchsorted(xa, flat, side="right") - 1, 0, n - 2)
    h = xa[k + 1] - xa[k]
    with np.errstate(invalid="ignore", over="ignore"):
        t = (flat - xa[k]) / h
        t2 = t * t
        t3 = t2 * t
        h00 = 2 * t3 - 3 * t2 + 1
        h10 = t3 - 2 * t2 + t
        h01 = -2 * t3 + 3 * t2
        h11 = t3 - t2
        inner = h00 * ya[k] + h10 * h * da[k] + h01 * ya[k + 1] + h11 * h * da[k + 1]
    out = np.where(flat <= xa[0], ya[0], np.where(flat >= xa[-1], ya[-1], inner))
    out[np.isnan(flat)] = np.nan
    return out.reshape(q.shape)


# ---------------------------------------------------------------------------------------------
# 2-D uniform grid


def _cell(q: float, lo: float, step: float, points: int) -> tuple[int, float]:
    """Lower grid index and fraction of a clamped, non-NaN query along one axis."""
    if points == 1:
        return 0, 0.0
    f = min(max((q - lo) / step, 0.0), points - 1.0)
    i = min(int(f), points - 2)
    return i, f - i


def grid2d_eval_scalar(
    z: npt.ArrayLike, x_min: float, dx: float, y_min: float, dy: float, xq: float, yq: float
) -> float:
    """Bilinear lookup of ``z`` on a uniform grid at one query clamped to the grid box."""
    func = "grid2d_eval_scalar"
    za, x0, sx, y0, sy = check_grid(func, z, x_min, dx, y_min, dy)
    xf = as_real(func, "xq", xq)
    yf = as_real(func, "yq", yq)
    if xf != xf or yf != yf:
        return float("nan")
    nx, ny = za.shape
    i, tx = _cell(xf, x0, sx, nx)
    j, ty = _cell(yf, y0, sy, ny)
    i1 = min(i + 1, nx - 1)
    j1 = min(j + 1, ny - 1)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite cells spread, by design
        top = za[i, j] * (1 - ty) + za[i, j1] * ty
        bot = za[i1, j] * (1 - ty) + za[i1, j1] * ty
        return float(top * (1 - tx) + bot * tx)


def _cells(q: F64, lo: float, step: float, points: int) -> tuple[npt.NDArray[np.intp], F64]:
    """Vectorised :func:`_cell` (NaN queries land on cell 0; callers mask them)."""
    if points == 1:
        return np.zeros(q.shape, dtype=np.intp), np.zeros(q.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        f = np.clip((q - lo) / step, 0.0, points - 1.0)
    f[np.isnan(f)] = 0.0
    i = np.minimum(f.astype(np.intp), points - 2)
    return i, f - i


def grid2d_eval(
    z: npt.ArrayLike,
    x_min: float,
    dx: float,
    y_min: float,
    dy: float,
    xq: npt.ArrayLike,
    yq: npt.ArrayLike,
) -> F64:
    """Batched :func:`grid2d_eval_scalar`; ``xq`` and ``yq`` must have one shape."""
    func = "grid2d_eval"
    za, x0, sx, y0, sy = check_grid(func, z, x_min, dx, y_min, dy)
    qx = as_array(func, "xq", xq)
    qy = as_array(func, "yq", yq)
    check_same_shape(func, qx, qy)
    a = qx.reshape(-1)
    b = qy.reshape(-1)
    nx, ny = za.shape
    i, tx = _cells(a, x0, sx, nx)
    j, ty = _cells(b, y0, sy, ny)
    i1 = np.minimum(i + 1, nx - 1)
    j1 = np.minimum(j + 1, ny - 1)
    with np.errstate(invalid="ignore", over="ignore"):
        top = za[i, j] * (1 - ty) + za[i, j1] * ty
        bot = za[i1, j] * (1 - ty) + za[i1, j1] * ty
        out = top * (1 - tx) + bot * tx
    out[np.isnan(a) | np.isnan(b)] = np.nan
    return out.reshape(qx.shape)


def best_under_target(
    z_itl: npt.ArrayLike,
    z_thpt: npt.ArrayLike,
    y_min: float,
    dy: float,
    yq: float,
    itl_target: float,
) -> tuple[float, int, float, bool]:
    """Highest throughput along the x axis at context ``yq`` whose ITL <= ``itl_target``.

    Returns ``(throughput, x_index, itl, meets_target)``; see the module docstring for the
    fallback, the tie rule and NaN handling.
    """
    func = "best_under_target"
    za, zb, y0, sy = check_grid_pair(func, z_itl, z_thpt, y_min, dy)
    return _best(func, za, zb, y0, sy, yq, itl_target)


class DecodeGridSearch:
    """:func:`best_under_target` on one ITL / throughput grid pair validated (and copied) once.

    ``best(yq, itl_target)`` equals ``best_under_target(z_itl, z_thpt, y_min, dy, yq,
    itl_target)`` on the grids as they were at construction.
    """

    __slots__ = ("_z_itl", "_z_thpt", "_y_min", "_dy")

    def __init__(
        self, z_itl: npt.ArrayLike, z_thpt: npt.ArrayLike, y_min: float, dy: float
    ) -> None:
        za, zb, self._y_min, self._dy = check_grid_pair(
            "DecodeGridSearch", z_itl, z_thpt, y_min, dy
        )
        self._z_itl: F64 = np.array(za, dtype=np.float64, order="C")  # own copies
        self._z_thpt: F64 = np.array(zb, dtype=np.float64, order="C")

    def best(self, yq: float, itl_target: float) -> tuple[float, int, float, bool]:
        """(throughput, x_index, itl, meets_target) at context ``yq``; as best_under_target."""
        return _best(
            "DecodeGridSearch.best", self._z_itl, self._z_thpt, self._y_min, self._dy, yq,
            itl_target,
        )


def _best(
    func: str, za: F64, zb: F64, y0: float, sy: float, yq: object, itl_target: object
) -> tuple[float, int, float, bool]:
    """The search of :func:`best_under_target` on validated grids."""
    yf = as_real(func, "yq", yq)
    target = as_real(func, "itl_target", itl_target)
    none = (float("nan"), -1, float("nan"), False)
    if yf != yf or target != target:
        return none
    j, ty = _cell(yf, y0, sy, za.shape[1])
    j1 = min(j + 1, za.shape[1] - 1)
    with np.errstate(invalid="ignore", over="ignore"):
        itl = za[:, j] * (1 - ty) + za[:, j1] * ty
        thpt = zb[:, j] * (1 - ty) + zb[:, j1] * ty
    usable = np.flatnonzero(~np.isnan(itl) & ~np.isnan(thpt))
    if usable.size == 0:
        return none
    meets = usable[itl[usable] <= target]
    if meets.size:
        i = int(meets[np.argmax(thpt[meets])])
        return (float(thpt[i]), i, float(itl[i]), True)
    i = int(usable[np.argmin(itl[usable])])
    return (float(thpt[i]), i, float(itl[i]), False)
