# cython: language_level=3
"""Bank of N independent local-linear-trend Kalman filters.

Model, observation rules and input rules: sla_planner.kernels.kalman_ref (the reference and the
oracle; same operations in the same order, libm log1p/expm1, so results are bit-identical).
Inputs the fast path does not accept go through the reference's helpers, which raise
KernelError or return converted values.
"""

import numpy as np

cimport numpy as cnp
from cpython.long cimport PyLong_AsSsize_t
from libc.math cimport NAN, expm1, isfinite, log1p
from libc.stdint cimport int64_t

cnp.import_array()

__all__ = ["KalmanBank"]

cdef object _REF = None


cdef object _ref():
    """sla_planner.kernels.kalman_ref, imported on first use: only the slow (converting or
    raising) paths need it, and a top-level import would cycle through sla_planner.kernels."""
    global _REF
    if _REF is None:
        from sla_planner.kernels import kalman_ref
        _REF = kalman_ref
    return _REF


include "_scalars.pxi"


cdef inline bint _is_f64_vector(object a, Py_ssize_t n) noexcept:
    """a is an exact ndarray of native, aligned, C-contiguous float64 with shape (n,)."""
    cdef cnp.ndarray arr
    if not cnp.PyArray_CheckExact(a):
        return False
    arr = <cnp.ndarray>a
    return (cnp.PyArray_TYPE(arr) == cnp.NPY_DOUBLE
            and cnp.PyArray_NDIM(arr) == 1
            and cnp.PyArray_DIMS(arr)[0] == n
            and cnp.PyArray_ISCARRAY_RO(arr)
            and cnp.PyArray_ISNOTSWAPPED(arr))


cdef struct _State:
    double* level
    double* trend
    double* p00
    double* p01
    double* p11
    int64_t* count
    double q_level
    double q_trend
    double r


cdef inline void _start(_State* s, Py_ssize_t k, double y) noexcept nogil:
    s.level[k] = y
    s.trend[k] = 0.0
    s.p00[k] = s.r
    s.p01[k] = 0.0
    s.p11[k] = s.r
    s.count[k] += 1


cdef inline void _fold(_State* s, Py_ssize_t k, double y) noexcept nogil:
    """Fold a finite, already transformed observation y into series k."""
    cdef double lv, tr, a00, a01, a11, sv, inv_s, k0, k1, innov, nl, nt, n00, n01, n11
    if s.count[k] == 0:
        _start(s, k, y)
        return
    # predict
    lv = s.level[k] + s.trend[k]
    tr = s.trend[k]
    a00 = s.p00[k] + 2 * s.p01[k] + s.p11[k] + s.q_level
    a01 = s.p01[k] + s.p11[k]
    a11 = s.p11[k] + s.q_trend
    # correct (S = 0: nothing to correct, the prediction is exact)
    sv = a00 + s.r
    if sv > 0.0:
        inv_s = 1.0 / sv
        k0 = a00 * inv_s
        k1 = a01 * inv_s
        innov = y - lv
        nl = lv + k0 * innov
        nt = tr + k1 * innov
        n00 = (1 - k0) * a00
        n01 = (1 - k0) * a01
        n11 = a11 - k1 * a01
    else:
        nl = lv
        nt = tr
        n00 = a00
        n01 = a01
        n11 = a11
    if isfinite(nl) and isfinite(nt) and isfinite(n00) and isfinite(n01) and isfinite(n11):
        s.level[k] = nl
        s.trend[k] = nt
        s.p00[k] = n00
        s.p01[k] = n01
        s.p11[k] = n11
        s.count[k] += 1
    else:
        _start(s, k, y)  # overflow: restart from this observation


cdef enum:
    _BLOCK = 256  # series per block of _update_all: its scratch stays in L1


cdef void _update_all(_State* s, const double* ys, Py_ssize_t n,
                      bint use_log) noexcept nogil:
    """update(): fold ys[k] into series k for every k, in blocks of series.

    With use_log, pass 0 maps each finite y to log1p(max(y, 0)) (a non-finite y stays as it
    is, so it is still skipped). Pass 1 computes every series' predict / correct as if it were
    the common case (started, S > 0, finite result), with the same operations in the same
    order as _fold, into scratch: no branch and no store to the state, so the compiler
    vectorises it. Pass 2 keeps the results of the common case and sends every other series
    (skipped, first, S = 0, overflow) through _fold, which reads the state pass 1 left
    untouched.
    """
    cdef double t_nl[_BLOCK]
    cdef double t_nt[_BLOCK]
    cdef double t_n00[_BLOCK]
    cdef double t_n01[_BLOCK]
    cdef double t_n11[_BLOCK]
    cdef double t_sv[_BLOCK]
    cdef double t_sum[_BLOCK]
    cdef double t_y[_BLOCK]
    cdef Py_ssize_t start = 0, k, m, i
    cdef double y, tr, c00, c01, c11, lv, a00, a01, a11, sv, inv_s, k0, k1, innov
    cdef double nl, nt, n00, n01, n11
    cdef double q_level = s.q_level, q_trend = s.q_trend, r = s.r
    cdef const double* level
    cdef const double* trend
    cdef const double* p00
    cdef const double* p01
    cdef const double* p11
    cdef const double* yb
    while start < n:
        m = n - start if n - start < _BLOCK else _BLOCK
        level = s.level + start
        trend = s.trend + start
        p00 = s.p00 + start
        p01 = s.p01 + start
        p11 = s.p11 + start
        yb = ys + start
        if use_log:
            for i in range(m):
                y = yb[i]
                t_y[i] = log1p(y if y > 0.0 else 0.0) if isfinite(y) else y
            yb = t_y
        for i in range(m):
            tr = trend[i]
            c00 = p00[i]
            c01 = p01[i]
            c11 = p11[i]
            # predict
            lv = level[i] + tr
            a00 = c00 + 2 * c01 + c11 + q_level
            a01 = c01 + c11
            a11 = c11 + q_trend
            # correct
            sv = a00 + r
            inv_s = 1.0 / sv
            k0 = a00 * inv_s
            k1 = a01 * inv_s
            innov = yb[i] - lv
            nl = lv + k0 * innov
            nt = tr + k1 * innov
            n00 = (1 - k0) * a00
            n01 = (1 - k0) * a01
            n11 = a11 - k1 * a01
            t_nl[i] = nl
            t_nt[i] = nt
            t_n00[i] = n00
            t_n01[i] = n01
            t_n11[i] = n11
            t_sv[i] = sv
            # finite only if all five are (an inf or NaN term makes the sum inf or NaN); a
            # finite set whose sum overflows merely takes the exact path in pass 2
            t_sum[i] = (nl + nt) + (n00 + n01) + n11
        for i in range(m):
            k = start + i
            # a non-finite y makes the innovation, hence nl, non-finite when S > 0
            if (s.count[k] > 0) & (t_sv[i] > 0.0) & isfinite(t_sum[i]):
                s.level[k] = t_nl[i]
                s.trend[k] = t_nt[i]
                s.p00[k] = t_n00[i]
                s.p01[k] = t_n01[i]
                s.p11[k] = t_n11[i]
                s.count[k] += 1
            else:
                y = yb[i]
                if isfinite(y):
                    _fold(s, k, y)
        start += m


cdef inline double _forecast(const _State* s, Py_ssize_t k, bint use_log) noexcept nogil:
    cdef double f
    if s.count[k] == 0:
        return NAN
    f = s.level[k] + s.trend[k]
    if use_log:
        f = expm1(f)
    return 0.0 if f <= 0.0 else f


cdef class KalmanBank:
    """N local-linear-trend Kalman filters updated together (model: KalmanBankRef)."""

    cdef _State _s
    cdef Py_ssize_t _n
    cdef bint _log1p
    cdef object _arrays  # (level, trend, p00, p01, p11, count): owners of the _s pointers

    def __cinit__(self):
        self._n = 0
        self._log1p = False
        self._arrays = ()

    def __init__(self, n, q_level, q_trend, r, log1p=False):
        cdef cnp.ndarray level, trend, p00, p01, p11, count
        n, q_level, q_trend, r, log1p = _ref().check_params(n, q_level, q_trend, r, log1p)
        level = np.zeros(n)
        trend = np.zeros(n)
        p00 = np.zeros(n)
        p01 = np.zeros(n)
        p11 = np.zeros(n)
        count = np.zeros(n, dtype=np.int64)
        self._arrays = (level, trend, p00, p01, p11, count)
        self._s.level = <double*>cnp.PyArray_DATA(level)
        self._s.trend = <double*>cnp.PyArray_DATA(trend)
        self._s.p00 = <double*>cnp.PyArray_DATA(p00)
        self._s.p01 = <double*>cnp.PyArray_DATA(p01)
        self._s.p11 = <double*>cnp.PyArray_DATA(p11)
        self._s.count = <int64_t*>cnp.PyArray_DATA(count)
        self._s.q_level = q_level
        self._s.q_trend = q_trend
        self._s.r = r
        self._n = n
        self._log1p = log1p

    # parameters (read-only)
    @property
    def n(self):
        """Number of series."""
        return self._n

    @property
    def q_level(self):
        """Process noise variance of the level."""
        return self._s.q_level

    @property
    def q_trend(self):
        """Process noise variance of the trend."""
        return self._s.q_trend

    @property
    def r(self):
        """Observation noise variance."""
        return self._s.r

    @property
    def log1p(self):
        """Whether the filters run on log1p(max(y, 0))."""
        return self._log1p

    # state (read-only views)
    @property
    def level(self):
        """Filtered level per series (log1p space when log1p)."""
        return self._view(0)

    @property
    def trend(self):
        """Filtered trend per series (per update)."""
        return self._view(1)

    @property
    def p00(self):
        """Level variance per series."""
        return self._view(2)

    @property
    def p01(self):
        """Level-trend covariance per series."""
        return self._view(3)

    @property
    def p11(self):
        """Trend variance per series."""
        return self._view(4)

    @property
    def count(self):
        """Accepted observations per series."""
        return self._view(5)

    def _view(self, Py_ssize_t which):
        if not self._arrays:  # constructed without __init__
            return np.zeros(0, dtype=np.int64 if which == 5 else np.float64)
        view = self._arrays[which].view()
        view.flags.writeable = False
        return view

    def update(self, values):
        """Fold one observation per series into the bank (non-finite values skip their series)."""
        if not _is_f64_vector(values, self._n):
            values = _ref().as_observations(values, self._n)
        cdef const double* ys = <const double*>cnp.PyArray_DATA(<cnp.ndarray>values)
        cdef Py_ssize_t n = self._n
        cdef bint use_log = self._log1p
        with nogil:
            _update_all(&self._s, ys, n, use_log)

    def update_one(self, i, value):
        """Fold one observation into series i (a non-finite value is skipped)."""
        cdef Py_ssize_t k = self._index("KalmanBank.update_one", i)
        cdef double y
        if not _as_double(value, &y):
            y = _ref().as_observation(value)
        if isfinite(y):
            if self._log1p:
                y = log1p(y if y > 0.0 else 0.0)
            _fold(&self._s, k, y)

    def predict(self):
        """One-step-ahead forecast per series, in the input space, never negative (NaN before
        a series' first observation)."""
        cdef cnp.ndarray out = np.empty(self._n, dtype=np.float64)
        cdef double* o = <double*>cnp.PyArray_DATA(out)
        cdef Py_ssize_t k, n = self._n
        cdef bint use_log = self._log1p
        cdef const _State* s = &self._s
        with nogil:
            for k in range(n):
                o[k] = _forecast(s, k, use_log)
        return out

    def predict_one(self, i):
        """One-step-ahead forecast of series i (NaN before its first observation)."""
        cdef Py_ssize_t k = self._index("KalmanBank.predict_one", i)
        return _forecast(&self._s, k, self._log1p)

    cdef inline Py_ssize_t _index(self, str func, object i) except -1:
        cdef Py_ssize_t k = -1
        if type(i) is int:
            try:
                k = PyLong_AsSsize_t(i)
            except OverflowError:
                k = -1
        if 0 <= k < self._n:
            return k
        return _ref().check_index(func, i, self._n)
