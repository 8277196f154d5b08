# cython: language_level=3
"""Bank of N independent local-linear-trend Kalman filters. Reference:
sla_planner.kernels.kalman_ref.KalmanBankRef (same semantics, same numbers)."""

import numpy as np
cimport numpy as cnp
from libc.math cimport isnan, isfinite, log1p, expm1, NAN

cnp.import_array()


cdef class KalmanBank:
    """N local-linear-trend filters updated together; see KalmanBankRef for the model."""

    cdef public Py_ssize_t n
    cdef public double q_level, q_trend, r
    cdef public bint log1p
    cdef double[::1] _level, _trend, _p00, _p01, _p11
    cdef long long[::1] _count
    cdef object level_arr, trend_arr, p00_arr, p01_arr, p11_arr, count_arr

    def __init__(self, Py_ssize_t n, double q_level, double q_trend, double r, bint log1p=False):
        from sla_planner.kernels.kalman_ref import _check_params
        _check_params(n, q_level, q_trend, r)
        self.n = n
        self.q_level = q_level
        self.q_trend = q_trend
        self.r = r
        self.log1p = log1p
        self.level_arr = np.zeros(n)
        self.trend_arr = np.zeros(n)
        self.p00_arr = np.zeros(n)
        self.p01_arr = np.zeros(n)
        self.p11_arr = np.zeros(n)
        self.count_arr = np.zeros(n, dtype=np.int64)
        self._level = self.level_arr
        self._trend = self.trend_arr
        self._p00 = self.p00_arr
        self._p01 = self.p01_arr
        self._p11 = self.p11_arr
        self._count = self.count_arr

    @property
    def level(self):
        return self.level_arr

    @property
    def trend(self):
        return self.trend_arr

    @property
    def p00(self):
        return self.p00_arr

    @property
    def p01(self):
        return self.p01_arr

    @property
    def p11(self):
        return self.p11_arr

    @property
    def count(self):
        return self.count_arr

    def update(self, values):
        """Fold one observation per series into the bank (NaN skips that series)."""
        arr = np.ascontiguousarray(values, dtype=np.float64)
        if arr.shape != (self.n,):
            from sla_planner.errors import KernelError
            raise KernelError(f"KalmanBank.update: expected shape ({self.n},), got {arr.shape}")
        cdef const double[::1] ys = arr
        cdef Py_ssize_t k
        cdef double y, lv, tr, p00, p01, p11, s, k0, k1, innov
        cdef double ql = self.q_level, qt = self.q_trend, r = self.r
        cdef bint use_log = self.log1p
        with nogil:
            for k in range(self.n):
                y = ys[k]
                if isnan(y):
                    continue
                if use_log:
                    y = log1p(y if y > 0.0 else 0.0)
                if not isfinite(y):
                    continue
                if self._count[k] == 0:
                    self._level[k] = y
                    self._trend[k] = 0.0
                    self._p00[k] = r
                    self._p01[k] = 0.0
                    self._p11[k] = r
                    self._count[k] = 1
                    continue
                lv = self._level[k] + self._trend[k]
                tr = self._trend[k]
                p00 = self._p00[k] + 2 * self._p01[k] + self._p11[k] + ql
                p01 = self._p01[k] + self._p11[k]
                p11 = self._p11[k] + qt
                s = p00 + r
                if s <= 0.0:
                    self._level[k] = lv
                    self._trend[k] = tr
                    self._count[k] += 1
                    continue
                k0 = p00 / s
                k1 = p01 / s
                innov = y - lv
                self._level[k] = lv + k0 * innov
                self._trend[k] = tr + k1 * innov
                self._p00[k] = (1 - k0) * p00
                self._p01[k] = (1 - k0) * p01
                self._p11[k] = p11 - k1 * p01
                self._count[k] += 1

    def predict(self):
        """One-step-ahead forecast per series (NaN before the first observation), never negative."""
        out = np.empty(self.n, dtype=np.float64)
        cdef double[::1] o = out
        cdef Py_ssize_t k
        cdef double f
        cdef bint use_log = self.log1p
        with nogil:
            for k in range(self.n):
                if self._count[k] == 0:
                    o[k] = NAN
                    continue
                f = self._level[k] + self._trend[k]
                if use_log:
                    f = expm1(f)
                o[k] = f if f > 0.0 else 0.0
        return out
