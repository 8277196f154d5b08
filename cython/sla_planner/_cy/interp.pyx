# cython: language_level=3
"""Interpolation kernels: clamped monotone cubic Hermite (1-D), bilinear uniform grid (2-D),
and the best-throughput-under-ITL row search (a function, and DecodeGridSearch, which checks
its grids once for repeated searches).

Semantics and input rules: sla_planner.kernels.interp_ref (the reference and the oracle). Each
public function first runs a C-level predicate that accepts only inputs already satisfying the
reference's rules (exact float64 ndarrays, native byte order, aligned, C-contiguous, right ndim,
valid values); anything else goes through the reference's ``check_*`` / ``as_*`` helpers, which
either raise KernelError or return converted inputs. The loops below run with bounds checks off,
so they only ever see validated inputs.
"""

import numpy as np

cimport numpy as cnp
from libc.math cimport INFINITY, NAN, isfinite, isnan

cnp.import_array()

__all__ = [
    "hermite_eval",
    "hermite_eval_scalar",
    "grid2d_eval",
    "grid2d_eval_scalar",
    "best_under_target",
    "DecodeGridSearch",
]

cdef object _REF = None


cdef object _ref():
    """sla_planner.kernels.interp_ref, imported on first use: only the slow (converting or
    raising) paths need it, and a top-level import would cycle through sla_planner.kernels."""
    global _REF
    if _REF is None:
        from sla_planner.kernels import interp_ref
        _REF = interp_ref
    return _REF


# ---------------------------------------------------------------------------------------------
# fast acceptance predicates (never raise; False means "let the reference decide")

include "_scalars.pxi"


cdef inline bint _is_f64_c(object a, int ndim) noexcept:
    """a is an exact ndarray of native, aligned, C-contiguous float64 (ndim < 0: any ndim)."""
    cdef cnp.ndarray arr
    if not cnp.PyArray_CheckExact(a):
        return False
    arr = <cnp.ndarray>a
    return (cnp.PyArray_TYPE(arr) == cnp.NPY_DOUBLE
            and (ndim < 0 or cnp.PyArray_NDIM(arr) == ndim)
            and cnp.PyArray_ISCARRAY_RO(arr)
            and cnp.PyArray_ISNOTSWAPPED(arr))


cdef inline const double* _data(object a) noexcept:
    return <const double*>cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline Py_ssize_t _dim(object a, int axis) noexcept:
    return cnp.PyArray_DIMS(<cnp.ndarray>a)[axis]


cdef bint _knots_ok(object x, object y, object d) noexcept:
    """The reference's check_knots would accept (x, y, d) unchanged."""
    cdef Py_ssize_t k, n
    cdef const double* px
    cdef const double* py
    cdef const double* pd
    cdef double step
    if not (_is_f64_c(x, 1) and _is_f64_c(y, 1) and _is_f64_c(d, 1)):
        return False
    n = _dim(x, 0)
    if n < 1 or _dim(y, 0) != n or _dim(d, 0) != n:
        return False
    px = _data(x)
    py = _data(y)
    pd = _data(d)
    for k in range(n):
        if not (isfinite(px[k]) and isfinite(py[k]) and isfinite(pd[k])):
            return False
        if k > 0:
            step = px[k] - px[k - 1]
            if not (step > 0.0 and step < INFINITY):
                return False
    return True


cdef inline bint _axis_ok(Py_ssize_t points, object lo, object step,
                          double* lo_out, double* step_out) noexcept:
    """The reference's axis rule holds: origin finite; step finite and > 0 if points > 1."""
    if not (_as_double(lo, lo_out) and _as_double(step, step_out)):
        return False
    if not isfinite(lo_out[0]):
        return False
    return points == 1 or (isfinite(step_out[0]) and step_out[0] > 0.0)


cdef inline bint _cells_ok(object z) noexcept:
    return _is_f64_c(z, 2) and _dim(z, 0) >= 1 and _dim(z, 1) >= 1


cdef inline double _real(str func, str name, object v) except? -1.0:
    cdef double out
    if _as_double(v, &out):
        return out
    return _ref().as_real(func, name, v)


# ---------------------------------------------------------------------------------------------
# nogil arithmetic (operation order matches the reference exactly)

cdef inline double _hermite(const double* x, const double* y, const double* d,
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


cdef inline Py_ssize_t _cell(double q, double lo, double step, Py_ssize_t points,
                             double* frac) noexcept nogil:
    """Lower grid index of a non-NaN query along one axis; its fraction goes to frac."""
    cdef double f
    cdef Py_ssize_t i
    if points == 1:
        frac[0] = 0.0
        return 0
    # written as selects so the compiler emits branch-free min/max (same values as the
    # reference's clamp; q is never NaN here)
    f = (q - lo) / step
    f = 0.0 if f < 0.0 else f
    f = points - 1.0 if f > points - 1.0 else f
    i = <Py_ssize_t>f
    i = points - 2 if i > points - 2 else i
    frac[0] = f - i
    return i


cdef inline double _grid(const double* z, Py_ssize_t nx, Py_ssize_t ny, double x_min,
                         double dx, double y_min, double dy, double xq, double yq) noexcept nogil:
    cdef double tx, ty, top, bot
    cdef Py_ssize_t i, j, i1, j1
    if isnan(xq) or isnan(yq):
        return NAN
    i = _cell(xq, x_min, dx, nx, &tx)
    j = _cell(yq, y_min, dy, ny, &ty)
    i1 = i + 1 if i + 1 < nx else nx - 1
    j1 = j + 1 if j + 1 < ny else ny - 1
    top = z[i * ny + j] * (1 - ty) + z[i * ny + j1] * ty
    bot = z[i1 * ny + j] * (1 - ty) + z[i1 * ny + j1] * ty
    return top * (1 - tx) + bot * tx


# ---------------------------------------------------------------------------------------------
# 1-D

def hermite_eval_scalar(x, y, d, xq):
    """Evaluate the cubic Hermite through (x, y, d) at one query clamped to [x[0], x[-1]]."""
    if not _knots_ok(x, y, d):
        x, y, d = _ref().check_knots("hermite_eval_scalar", x, y, d)
    cdef double q = _real("hermite_eval_scalar", "xq", xq)
    return _hermite(_data(x), _data(y), _data(d), _dim(x, 0), q)


def hermite_eval(x, y, d, xq):
    """Batched hermite_eval_scalar; returns a float64 array of xq's shape."""
    if not _knots_ok(x, y, d):
        x, y, d = _ref().check_knots("hermite_eval", x, y, d)
    if not _is_f64_c(xq, -1):
        xq = _ref().as_array("hermite_eval", "xq", xq)
    cdef cnp.ndarray q = <cnp.ndarray>xq
    cdef cnp.ndarray out = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(q), cnp.PyArray_DIMS(q),
                                             cnp.NPY_DOUBLE, 0)
    cdef const double* px = _data(x)
    cdef const double* py = _data(y)
    cdef const double* pd = _data(d)
    cdef const double* pq = _data(q)
    cdef double* po = <double*>cnp.PyArray_DATA(out)
    cdef Py_ssize_t i, n = _dim(x, 0), m = cnp.PyArray_SIZE(q)
    with nogil:
        for i in range(m):
            po[i] = _hermite(px, py, pd, n, pq[i])
    return out


# ---------------------------------------------------------------------------------------------
# 2-D

cdef inline object _checked_grid(str func, object z, object x_min, object dx, object y_min,
                                 object dy, double* g):
    """Validated z; g receives (x_min, dx, y_min, dy) as doubles."""
    if _cells_ok(z) and _axis_ok(_dim(z, 0), x_min, dx, &g[0], &g[1]) \
            and _axis_ok(_dim(z, 1), y_min, dy, &g[2], &g[3]):
        return z
    z, g[0], g[1], g[2], g[3] = _ref().check_grid(func, z, x_min, dx, y_min, dy)
    return z


def grid2d_eval_scalar(z, x_min, dx, y_min, dy, xq, yq):
    """Bilinear lookup of z on a uniform grid at one query clamped to the grid box."""
    cdef double g[4]
    z = _checked_grid("grid2d_eval_scalar", z, x_min, dx, y_min, dy, g)
    cdef double qx = _real("grid2d_eval_scalar", "xq", xq)
    cdef double qy = _real("grid2d_eval_scalar", "yq", yq)
    return _grid(_data(z), _dim(z, 0), _dim(z, 1), g[0], g[1], g[2], g[3], qx, qy)


def grid2d_eval(z, x_min, dx, y_min, dy, xq, yq):
    """Batched grid2d_eval_scalar; xq and yq must have one shape."""
    cdef double g[4]
    z = _checked_grid("grid2d_eval", z, x_min, dx, y_min, dy, g)
    if not _is_f64_c(xq, -1):
        xq = _ref().as_array("grid2d_eval", "xq", xq)
    if not _is_f64_c(yq, -1):
        yq = _ref().as_array("grid2d_eval", "yq", yq)
    cdef cnp.ndarray qx = <cnp.ndarray>xq
    cdef cnp.ndarray qy = <cnp.ndarray>yq
    if not cnp.PyArray_SAMESHAPE(qx, qy):
        _ref().check_same_shape("grid2d_eval", qx, qy)
    cdef cnp.ndarray out = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(qx), cnp.PyArray_DIMS(qx),
                                             cnp.NPY_DOUBLE, 0)
    cdef const double* pz = _data(z)
    cdef const double* pa = _data(qx)
    cdef const double* pb = _data(qy)
    cdef double* po = <double*>cnp.PyArray_DATA(out)
    cdef Py_ssize_t i, m = cnp.PyArray_SIZE(qx), nx = _dim(z, 0), ny = _dim(z, 1)
    cdef double x0 = g[0], sx = g[1], y0 = g[2], sy = g[3]
    with nogil:
        for i in range(m):
            po[i] = _grid(pz, nx, ny, x0, sx, y0, sy, pa[i], pb[i])
    return out


cdef object _search(const double* pi, const double* pt, Py_ssize_t nx, Py_ssize_t ny,
                    double y0, double sy, double q, double target):
    """best_under_target on validated C-contiguous grids pi / pt of shape (nx, ny).

    No GIL release: the whole search takes less time than releasing and re-taking it.
    """
    cdef Py_ssize_t i, j, dj
    cdef Py_ssize_t best_i = -1, low_i = -1
    cdef double ty, w0, itl, itl1, thpt
    cdef double best_thpt = NAN, best_itl = NAN, low_itl = NAN, low_thpt = NAN
    cdef const double* a
    cdef const double* b
    if isnan(q) or isnan(target):
        return (NAN, -1, NAN, False)
    j = _cell(q, y0, sy, ny, &ty)
    dj = 1 if j + 1 < ny else 0
    w0 = 1 - ty
    # pass 1: best throughput among points meeting the target (the common case ends here).
    # Throughput is interpolated only where the ITL meets the target (NaN ITL never does).
    # 1a: the first such point with a non-NaN throughput starts the search.
    a = pi + j
    b = pt + j
    i = 0
    while i < nx:
        itl = a[0] * w0 + a[dj] * ty
        if itl <= target:
            thpt = b[0] * w0 + b[dj] * ty
            if thpt == thpt:
                best_i = i
                best_thpt = thpt
                best_itl = itl
                break
        i += 1
        a += ny
        b += ny
    # 1b: later points replace it only with a strictly higher throughput (so ties keep the
    # lowest index and a NaN throughput never wins); two rows per step for more overlap.
    if best_i >= 0:
        i += 1
        a += ny
        b += ny
        while i + 1 < nx:
            itl = a[0] * w0 + a[dj] * ty
            itl1 = a[ny] * w0 + a[ny + dj] * ty
            if itl <= target:
                thpt = b[0] * w0 + b[dj] * ty
                if thpt > best_thpt:
                    best_i = i
                    best_thpt = thpt
                    best_itl = itl
            if itl1 <= target:
                thpt = b[ny] * w0 + b[ny + dj] * ty
                if thpt > best_thpt:
                    best_i = i + 1
                    best_thpt = thpt
                    best_itl = itl1
            i += 2
            a += 2 * ny
            b += 2 * ny
        if i < nx:
            itl = a[0] * w0 + a[dj] * ty
            if itl <= target:
                thpt = b[0] * w0 + b[dj] * ty
                if thpt > best_thpt:
                    best_i = i
                    best_thpt = thpt
                    best_itl = itl
    # pass 2, only when nothing meets the target: the lowest usable ITL
    if best_i < 0:
        a = pi + j
        b = pt + j
        for i in range(nx):
            itl = a[0] * w0 + a[dj] * ty
            thpt = b[0] * w0 + b[dj] * ty
            a += ny
            b += ny
            if (itl == itl) & (thpt == thpt) & ((low_i < 0) | (itl < low_itl)):
                low_i = i
                low_itl = itl
                low_thpt = thpt
    if best_i >= 0:
        return (best_thpt, best_i, best_itl, True)
    if low_i >= 0:
        return (low_thpt, low_i, low_itl, False)
    return (NAN, -1, NAN, False)


def best_under_target(z_itl, z_thpt, y_min, dy, yq, itl_target):
    """(throughput, x_index, itl, meets_target): best throughput at context yq with ITL <= target.

    Ties go to the lowest x index; with no point meeting the target, the lowest-ITL point and
    meets_target False; points with NaN ITL or throughput are skipped; no usable point, or a
    NaN yq / itl_target, gives (nan, -1, nan, False).
    """
    cdef double y0, sy
    if not (_cells_ok(z_itl) and _cells_ok(z_thpt)
            and cnp.PyArray_SAMESHAPE(<cnp.ndarray>z_itl, <cnp.ndarray>z_thpt)
            and _axis_ok(_dim(z_itl, 1), y_min, dy, &y0, &sy)):
        z_itl, z_thpt, y0, sy = _ref().check_grid_pair(
            "best_under_target", z_itl, z_thpt, y_min, dy)
    cdef double q = _real("best_under_target", "yq", yq)
    cdef double target = _real("best_under_target", "itl_target", itl_target)
    return _search(_data(z_itl), _data(z_thpt), _dim(z_itl, 0), _dim(z_itl, 1), y0, sy, q,
                   target)


cdef class DecodeGridSearch:
    """best_under_target on one ITL / throughput grid pair validated (and copied) once.

    best(yq, itl_target) equals best_under_target(z_itl, z_thpt, y_min, dy, yq, itl_target) on
    the grids as they were at construction, without re-checking them on every call.
    """

    cdef object _grids  # (z_itl, z_thpt): private C-contiguous float64 copies
    cdef const double* _pi
    cdef const double* _pt
    cdef Py_ssize_t _nx, _ny
    cdef double _y0, _sy

    def __cinit__(self):
        self._grids = None
        self._pi = NULL
        self._pt = NULL
        self._nx = 0
        self._ny = 0

    def __init__(self, z_itl, z_thpt, y_min, dy):
        za, zb, y0, sy = _ref().check_grid_pair("DecodeGridSearch", z_itl, z_thpt, y_min, dy)
        za = np.array(za, dtype=np.float64, order="C")
        zb = np.array(zb, dtype=np.float64, order="C")
        self._grids = (za, zb)
        self._pi = _data(za)
        self._pt = _data(zb)
        self._nx = _dim(za, 0)
        self._ny = _dim(za, 1)
        self._y0 = y0
        self._sy = sy

    def best(self, yq, itl_target):
        """(throughput, x_index, itl, meets_target) at context yq; as best_under_target."""
        if self._grids is None:  # constructed without __init__
            from sla_planner.errors import KernelError
            raise KernelError("DecodeGridSearch.best: the search was not initialised")
        cdef double q = _real("DecodeGridSearch.best", "yq", yq)
        cdef double target = _real("DecodeGridSearch.best", "itl_target", itl_target)
        return _search(self._pi, self._pt, self._nx, self._ny, self._y0, self._sy, q, target)
