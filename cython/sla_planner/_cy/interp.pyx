# cython: language_level=3
"""Interpolation kernels: clamped monotone cubic Hermite (1-D), bilinear uniform grid (2-D),
and the best-throughput-under-ITL row search. Reference: sla_planner.kernels.interp_ref."""

import numpy as np
cimport numpy as cnp
from libc.math cimport isnan, NAN, INFINITY

cnp.import_array()


cdef inline double _hermite(const double[::1] x, const double[::1] y, const double[::1] d,
                            Py_ssize_t n, double xq) noexcept nogil:
    cdef Py_ssize_t lo, hi, mid
    cdef double h, t, t2, t3
    if isnan(xq):
        return NAN
    if n == 1 or xq <= x[0]:
        return y[0]
    if xq >= x[n - 1]:
        return y[n - 1]
    lo = 0
    hi = n - 1
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if x[mid] <= xq:
            lo = mid
        else:
            hi = mid
    h = x[lo + 1] - x[lo]
    t = (xq - x[lo]) / h
    t2 = t * t
    t3 = t2 * t
    return ((2 * t3 - 3 * t2 + 1) * y[lo] + (t3 - 2 * t2 + t) * h * d[lo]
            + (-2 * t3 + 3 * t2) * y[lo + 1] + (t3 - t2) * h * d[lo + 1])


def hermite_eval_scalar(const double[::1] x, const double[::1] y, const double[::1] d, double xq):
    """Evaluate the cubic Hermite through (x, y, d) at one query clamped to [x[0], x[-1]]."""
    return _hermite(x, y, d, x.shape[0], xq)


def hermite_eval(const double[::1] x, const double[::1] y, const double[::1] d, xq):
    """Batched hermite_eval_scalar; returns an array of xq's shape."""
    q = np.ascontiguousarray(xq, dtype=np.float64)
    cdef const double[::1] qf = q.reshape(-1)
    out = np.empty(qf.shape[0], dtype=np.float64)
    cdef double[::1] o = out
    cdef Py_ssize_t i, n = x.shape[0], m = qf.shape[0]
    with nogil:
        for i in range(m):
            o[i] = _hermite(x, y, d, n, qf[i])
    return out.reshape(q.shape)


cdef inline double _grid(const double[:, ::1] z, Py_ssize_t nx, Py_ssize_t ny, double x_min,
                         double dx, double y_min, double dy, double xq, double yq) noexcept nogil:
    cdef double fx, fy, tx, ty, top, bot
    cdef Py_ssize_t i, j, i1, j1
    if isnan(xq) or isnan(yq):
        return NAN
    if nx == 1:
        fx = 0.0
    else:
        fx = (xq - x_min) / dx
        fx = 0.0 if fx < 0.0 else (nx - 1.0 if fx > nx - 1.0 else fx)
    if ny == 1:
        fy = 0.0
    else:
        fy = (yq - y_min) / dy
        fy = 0.0 if fy < 0.0 else (ny - 1.0 if fy > ny - 1.0 else fy)
    i = <Py_ssize_t>fx
    j = <Py_ssize_t>fy
    if i > nx - 2:
        i = nx - 2 if nx >= 2 else 0
    if j > ny - 2:
        j = ny - 2 if ny >= 2 else 0
    tx = fx - i
    ty = fy - j
    i1 = i + 1 if i + 1 < nx else nx - 1
    j1 = j + 1 if j + 1 < ny else ny - 1
    top = z[i, j] * (1 - ty) + z[i, j1] * ty
    bot = z[i1, j] * (1 - ty) + z[i1, j1] * ty
    return top * (1 - tx) + bot * tx


def grid2d_eval_scalar(const double[:, ::1] z, double x_min, double dx, double y_min, double dy,
                       double xq, double yq):
    """Bilinear lookup of z on a uniform grid at one clamped query point."""
    return _grid(z, z.shape[0], z.shape[1], x_min, dx, y_min, dy, xq, yq)


def grid2d_eval(const double[:, ::1] z, double x_min, double dx, double y_min, double dy, xq, yq):
    """Batched grid2d_eval_scalar; xq and yq must have one shape."""
    qx = np.ascontiguousarray(xq, dtype=np.float64)
    qy = np.ascontiguousarray(yq, dtype=np.float64)
    if qx.shape != qy.shape:
        from sla_planner.errors import KernelError
        raise KernelError(f"grid2d_eval: xq shape {qx.shape} != yq shape {qy.shape}")
    cdef const double[::1] a = qx.reshape(-1)
    cdef const double[::1] b = qy.reshape(-1)
    out = np.empty(a.shape[0], dtype=np.float64)
    cdef double[::1] o = out
    cdef Py_ssize_t i, m = a.shape[0], nx = z.shape[0], ny = z.shape[1]
    with nogil:
        for i in range(m):
            o[i] = _grid(z, nx, ny, x_min, dx, y_min, dy, a[i], b[i])
    return out.reshape(qx.shape)


def best_under_target(const double[:, ::1] z_itl, const double[:, ::1] z_thpt, double y_min,
                      double dy, double yq, double itl_target):
    """(throughput, x_index, itl, meets_target): best throughput at context yq with ITL <= target."""
    cdef Py_ssize_t nx = z_itl.shape[0], ny = z_itl.shape[1], i, j, j1
    cdef Py_ssize_t best_i = -1, low_i = 0
    cdef double fy, ty, itl, thpt, best_thpt = -INFINITY, best_itl = NAN, low_itl = INFINITY
    if isnan(yq) or isnan(itl_target):
        return (NAN, -1, NAN, False)
    with nogil:
        if ny == 1:
            fy = 0.0
        else:
            fy = (yq - y_min) / dy
            fy = 0.0 if fy < 0.0 else (ny - 1.0 if fy > ny - 1.0 else fy)
        j = <Py_ssize_t>fy
        if j > ny - 2:
            j = ny - 2 if ny >= 2 else 0
        ty = fy - j
        j1 = j + 1 if j + 1 < ny else ny - 1
        for i in range(nx):
            itl = z_itl[i, j] * (1 - ty) + z_itl[i, j1] * ty
            thpt = z_thpt[i, j] * (1 - ty) + z_thpt[i, j1] * ty
            if itl < low_itl:
                low_i = i
                low_itl = itl
            if itl <= itl_target and thpt > best_thpt:
                best_i = i
                best_thpt = thpt
                best_itl = itl
    if best_i >= 0:
        return (best_thpt, best_i, best_itl, True)
    thpt = z_thpt[low_i, j] * (1 - ty) + z_thpt[low_i, j1] * ty
    return (thpt, low_i, low_itl, False)
