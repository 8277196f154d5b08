"""Prefill performance model: TTFT and throughput per GPU as functions of the input length.

Both curves are monotone cubic Hermite (PCHIP) interpolants through the profiled points; the knot
slopes are computed once at construction. Queries outside the profiled ISL range are clamped to
its ends (the model never extrapolates). A NaN query gives NaN.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .. import kernels
from .validation import F64, PrefillData, validate_prefill_arrays

__all__ = ["PrefillModel"]


class PrefillModel:
    """TTFT (ms) and prefill throughput (tokens/s/GPU) versus input sequence length (tokens)."""

    __slots__ = ("_data", "_ttft_slopes", "_thpt_slopes")

    def __init__(
        self,
        isl: npt.ArrayLike,
        ttft_ms: npt.ArrayLike,
        thpt_per_gpu: npt.ArrayLike,
        *,
        source: str = "<arrays>",
    ) -> None:
        data = validate_prefill_arrays(
            {
                "prefill_isl": np.asarray(isl),
                "prefill_ttft": np.asarray(ttft_ms),
                "prefill_thpt_per_gpu": np.asarray(thpt_per_gpu),
            },
            source,
        )
        self._init(data)

    @classmethod
    def from_data(cls, data: PrefillData) -> PrefillModel:
        """Build from already validated samples (as returned by the profile readers)."""
        model = cls.__new__(cls)
        model._init(data)
        return model

    def _init(self, data: PrefillData) -> None:
        self._data = data
        self._ttft_slopes = _frozen(kernels.pchip_slopes(data.isl, data.ttft_ms))
        self._thpt_slopes = _frozen(kernels.pchip_slopes(data.isl, data.thpt_per_gpu))

    @property
    def data(self) -> PrefillData:
        """The validated samples the model interpolates (sorted by ISL)."""
        return self._data

    @property
    def isl_range(self) -> tuple[float, float]:
        """Smallest and largest profiled ISL (tokens); queries are clamped to it."""
        return (float(self._data.isl[0]), float(self._data.isl[-1]))

    def ttft_ms(self, isl: float) -> float:
        """Time to first token (ms) of one request of ``isl`` input tokens."""
        d = self._data
        return float(kernels.hermite_eval_scalar(d.isl, d.ttft_ms, self._ttft_slopes, float(isl)))

    def thpt_per_gpu(self, isl: float) -> float:
        """Prefill throughput (tokens/s per GPU) at input length ``isl`` tokens."""
        d = self._data
        return float(
            kernels.hermite_eval_scalar(d.isl, d.thpt_per_gpu, self._thpt_slopes, float(isl))
        )

    def ttft_ms_batch(self, isl: npt.ArrayLike) -> F64:
        """:meth:`ttft_ms` for every element of ``isl``; the result has its shape."""
        d = self._data
        return np.asarray(
            kernels.hermite_eval(d.isl, d.ttft_ms, self._ttft_slopes, _f64(isl)), dtype=np.float64
        )

    def thpt_per_gpu_batch(self, isl: npt.ArrayLike) -> F64:
        """:meth:`thpt_per_gpu` for every element of ``isl``; the result has its shape."""
        d = self._data
        return np.asarray(
            kernels.hermite_eval(d.isl, d.thpt_per_gpu, self._thpt_slopes, _f64(isl)),
            dtype=np.float64,
        )

    def __repr__(self) -> str:
        lo, hi = self.isl_range
        return (
            f"PrefillModel(points={self._data.isl.shape[0]}, isl_range=({lo:g}, {hi:g}), "
            f"source={self._data.source!r})"
        )


def _f64(a: npt.ArrayLike) -> F64:
    return np.ascontiguousarray(a, dtype=np.float64)


def _frozen(a: F64) -> F64:
    out = np.ascontiguousarray(a, dtype=np.float64)
    out.setflags(write=False)
    return out
