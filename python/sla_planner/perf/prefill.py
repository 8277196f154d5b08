"""Prefill performance model: TTFT and throughput per GPU as functions of the input length.

Inside the profiled ISL range both curves are monotone cubic Hermite (PCHIP) interpolants through
the profiled points. Past the last profiled ISL they continue along the fitted prefill cost curve
``TTFT = a + b*isl + c*isl**2`` (see :mod:`sla_planner.perf.extrapolation`): the curve is
sampled at knots spaced by 2**(1/8) out to 4,194,304 tokens and the same PCHIP runs through the
profiled points and those knots, so the model is continuous at the joint and the simulator reads
the very same knots (:attr:`PrefillModel.knot_isl`). Past the last knot the curve is evaluated
directly. Queries below the first profiled ISL are clamped to it. A NaN query gives NaN.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .. import kernels
from .extrapolation import (
    PrefillCostCurve,
    extrapolate_prefill_thpt,
    extrapolate_ttft_ms,
    fit_prefill_curve,
    prefill_extension_isl,
)
from .validation import F64, PrefillData, validate_prefill_arrays

__all__ = ["PrefillModel"]


class PrefillModel:
    """TTFT (ms) and prefill throughput (tokens/s/GPU) versus input sequence length (tokens)."""

    __slots__ = ("_data", "_curve", "_isl", "_ttft", "_thpt", "_ttft_slopes", "_thpt_slopes")

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
        self._curve = fit_prefill_curve(data.isl, data.ttft_ms)
        ext = prefill_extension_isl(float(data.isl[-1]))
        ext_ttft = self._ttft_past(ext)
        ext_thpt = self._thpt_past(ext, ext_ttft)
        self._isl = _frozen(np.concatenate((data.isl, ext)))
        self._ttft = _frozen(np.concatenate((data.ttft_ms, ext_ttft)))
        self._thpt = _frozen(np.concatenate((data.thpt_per_gpu, ext_thpt)))
        self._ttft_slopes = _frozen(kernels.pchip_slopes(self._isl, self._ttft))
        self._thpt_slopes = _frozen(kernels.pchip_slopes(self._isl, self._thpt))

    def _ttft_past(self, isl: F64) -> F64:
        d = self._data
        return extrapolate_ttft_ms(self._curve, float(d.isl[-1]), float(d.ttft_ms[-1]), isl)

    def _thpt_past(self, isl: F64, ttft_ms: F64) -> F64:
        d = self._data
        return extrapolate_prefill_thpt(
            float(d.isl[-1]), float(d.ttft_ms[-1]), float(d.thpt_per_gpu[-1]), isl, ttft_ms
        )

    @property
    def data(self) -> PrefillData:
        """The validated samples the model interpolates (sorted by ISL)."""
        return self._data

    @property
    def curve(self) -> PrefillCostCurve:
        """The cost curve fitted to the profile's upper range (drives the extrapolation)."""
        return self._curve

    @property
    def isl_range(self) -> tuple[float, float]:
        """Smallest and largest profiled ISL (tokens); past the largest the curve takes over."""
        return (float(self._data.isl[0]), float(self._data.isl[-1]))

    @property
    def knot_isl(self) -> F64:
        """Interpolation knots (tokens, read-only): the profiled ISLs then the curve's knots."""
        return self._isl

    @property
    def knot_ttft_ms(self) -> F64:
        """TTFT (ms) at :attr:`knot_isl` (read-only)."""
        return self._ttft

    @property
    def knot_thpt_per_gpu(self) -> F64:
        """Throughput (tokens/s/GPU) at :attr:`knot_isl` (read-only)."""
        return self._thpt

    @property
    def knot_thpt_slopes(self) -> F64:
        """PCHIP slopes of the throughput at :attr:`knot_isl` (read-only)."""
        return self._thpt_slopes

    def ttft_ms(self, isl: float) -> float:
        """Time to first token (ms) of one request of ``isl`` input tokens."""
        q = float(isl)
        if q > self._isl[-1]:
            return float(self._ttft_past(np.array([q]))[0])
        return float(kernels.hermite_eval_scalar(self._isl, self._ttft, self._ttft_slopes, q))

    def thpt_per_gpu(self, isl: float) -> float:
        """Prefill throughput (tokens/s per GPU) at input length ``isl`` tokens."""
        q = float(isl)
        if q > self._isl[-1]:
            past = np.array([q])
            return float(self._thpt_past(past, self._ttft_past(past))[0])
        return float(kernels.hermite_eval_scalar(self._isl, self._thpt, self._thpt_slopes, q))

    def ttft_ms_batch(self, isl: npt.ArrayLike) -> F64:
        """:meth:`ttft_ms` for every element of ``isl``; the result has its shape."""
        q = _f64(isl)
        out = np.asarray(kernels.hermite_eval(self._isl, self._ttft, self._ttft_slopes, q))
        far = q > self._isl[-1]
        if far.any():
            out = np.array(out, dtype=np.float64)
            out[far] = self._ttft_past(q[far])
        return np.asarray(out, dtype=np.float64)

    def thpt_per_gpu_batch(self, isl: npt.ArrayLike) -> F64:
        """:meth:`thpt_per_gpu` for every element of ``isl``; the result has its shape."""
        q = _f64(isl)
        out = np.asarray(kernels.hermite_eval(self._isl, self._thpt, self._thpt_slopes, q))
        far = q > self._isl[-1]
        if far.any():
            out = np.array(out, dtype=np.float64)
            out[far] = self._thpt_past(q[far], self._ttft_past(q[far]))
        return np.asarray(out, dtype=np.float64)

    def __repr__(self) -> str:
        lo, hi = self.isl_range
        c = self._curve
        return (
            f"PrefillModel(points={self._data.isl.shape[0]}, isl_range=({lo:g}, {hi:g}), "
            f"curve=({c.overhead_ms:.4g} + {c.ms_per_token:.4g}*isl + "
            f"{c.ms_per_token_sq:.4g}*isl^2 ms), source={self._data.source!r})"
        )


def _f64(a: npt.ArrayLike) -> F64:
    return np.ascontiguousarray(a, dtype=np.float64)


def _frozen(a: F64) -> F64:
    out = np.ascontiguousarray(a, dtype=np.float64)
    out.setflags(write=False)
    return out

