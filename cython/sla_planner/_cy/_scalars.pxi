# Shared by the Cython kernels (textually included): the scalar fast path of the input rules.
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_AsDouble

cdef object _F64_SCALAR = np.float64


cdef inline bint _as_double(object v, double* out) noexcept:
    """Store v as a double if it is a float, numpy float64 or int that fits; else False."""
    if type(v) is float or type(v) is _F64_SCALAR:
        out[0] = PyFloat_AS_DOUBLE(v)
        return True
    if type(v) is int:
        try:
            out[0] = PyLong_AsDouble(v)
        except OverflowError:
            return False
        return True
    return False
