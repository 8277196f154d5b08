"""Fitted cost curves that carry the performance models past the profiled range.

A profile measures a finite range (e.g. prompts up to 16k tokens) while traffic does not stop
there. Holding the last measurement flat past it makes a 126k-token prompt look as cheap as a
16k one. Instead both models continue with a cost curve fitted to the profile:

*Prefill*: ``TTFT(isl) = a + b*isl + c*isl**2`` (fixed cost, GEMMs linear in tokens, causal
attention quadratic), fitted by non-negative least squares on relative error
(``a, b, c >= 0``, so the curve never decreases) over the profile's upper range: the points with
``isl >= isl_last / 4``, at least the last three. Past the last profiled ISL ``L``::

    TTFT(q) = max(TTFT_L * f(q) / f(L),  TTFT_L * q / L)

The ratio makes the curve continuous at ``L`` (the measurement there is kept, the curve supplies
the growth); the second term keeps the throughput ``q / TTFT(q)`` from rising past the profile,
so a profile whose fit finds no growth still extrapolates linearly, never flat. Throughput
follows as ``thpt_L * (q / L) * (TTFT_L / TTFT(q))`` (continuous at ``L``).

*Decode*: ``ITL = a + b*K + c*B`` with ``K`` the KV tokens in the batch (attention and KV reads)
and ``B`` the number of sequences (per-sequence GEMM work), fitted the same way on every sample
(``K = kv_usage * max_kv_tokens``, ``B = K / context``). Past the measured region a grid point
``q`` takes the value at the nearest point ``p`` of the samples' convex hull scaled by the fitted
ratio ``f(q) / f(p)``; see :mod:`sla_planner.perf.decode_grid`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import nnls

from .validation import F64

__all__ = [
    "PrefillCostCurve",
    "DecodeCostModel",
    "fit_prefill_curve",
    "fit_decode_model",
    "extrapolate_ttft_ms",
    "extrapolate_prefill_thpt",
    "prefill_extension_isl",
    "UPPER_RANGE_SHARE",
    "EXTENSION_RATIO",
    "EXTENSION_MAX_ISL",
]

UPPER_RANGE_SHARE = 0.25
"""The prefill curve is fitted on the points with ``isl >= UPPER_RANGE_SHARE * isl_last``."""
EXTENSION_RATIO = 2.0 ** (1.0 / 8.0)
"""Geometric spacing of the interpolation knots laid on the prefill curve past the profile."""
EXTENSION_MAX_ISL = float(2**22)
"""Knots reach this ISL (4,194,304 tokens); past it the curve is evaluated directly."""


@dataclass(frozen=True)
class PrefillCostCurve:
    """``ttft_ms = overhead_ms + ms_per_token * isl + ms_per_token_sq * isl**2`` (all >= 0)."""

    overhead_ms: float
    ms_per_token: float
    ms_per_token_sq: float

    def ttft_ms(self, isl: npt.ArrayLike) -> F64:
        """The fitted TTFT (ms) at ``isl`` tokens."""
        q = np.asarray(isl, dtype=np.float64)
        return np.asarray(
            self.overhead_ms + q * (self.ms_per_token + q * self.ms_per_token_sq), dtype=np.float64
        )


@dataclass(frozen=True)
class DecodeCostModel:
    """``itl_ms = step_ms + ms_per_kv_token * K + ms_per_sequence * B`` (all >= 0)."""

    step_ms: float
    ms_per_kv_token: float
    ms_per_sequence: float

    def itl_ms(self, kv_tokens: npt.ArrayLike, batch: npt.ArrayLike) -> F64:
        """The fitted ITL (ms) of ``batch`` sequences holding ``kv_tokens`` KV tokens in all."""
        k = np.asarray(kv_tokens, dtype=np.float64)
        b = np.asarray(batch, dtype=np.float64)
        return np.asarray(
            self.step_ms + self.ms_per_kv_token * k + self.ms_per_sequence * b, dtype=np.float64
        )


def _relative_nnls(columns: F64, target: F64) -> F64:
    """Non-negative ``w`` minimising ``sum(((columns @ w) / target - 1)**2)``.

    Columns are scaled to unit maximum first so the solver sees a well-conditioned system.
    """
    scale = np.abs(columns).max(axis=0)
    scale[scale == 0.0] = 1.0
    a = columns / scale / target[:, None]
    w, _ = nnls(a, np.ones(target.shape[0]))
    return np.asarray(w / scale, dtype=np.float64)


def fit_prefill_curve(isl: F64, ttft_ms: F64) -> PrefillCostCurve:
    """Fit the prefill cost curve on the upper range of sorted profile points."""
    last = float(isl[-1])
    upper = isl >= UPPER_RANGE_SHARE * last
    upper[-min(3, isl.shape[0]):] = True
    x, y = isl[upper], ttft_ms[upper]
    a, b, c = _relative_nnls(np.column_stack((np.ones_like(x), x, x * x)), y)
    return PrefillCostCurve(overhead_ms=float(a), ms_per_token=float(b), ms_per_token_sq=float(c))


def fit_decode_model(kv_tokens: F64, batch: F64, itl_ms: F64) -> DecodeCostModel:
    """Fit the decode cost model on every sample."""
    a, b, c = _relative_nnls(np.column_stack((np.ones_like(kv_tokens), kv_tokens, batch)), itl_ms)
    return DecodeCostModel(step_ms=float(a), ms_per_kv_token=float(b), ms_per_sequence=float(c))


def extrapolate_ttft_ms(
    curve: PrefillCostCurve, isl_last: float, ttft_last_ms: float, isl: npt.ArrayLike
) -> F64:
    """TTFT (ms) at ``isl >= isl_last`` continued from the last profiled point along ``curve``."""
    q = np.asarray(isl, dtype=np.float64)
    f_last = float(curve.ttft_ms(isl_last))
    linear = ttft_last_ms * q / isl_last
    if not f_last > 0.0:
        return np.asarray(linear, dtype=np.float64)
    return np.asarray(np.maximum(ttft_last_ms * curve.ttft_ms(q) / f_last, linear), dtype=np.float64)


def extrapolate_prefill_thpt(
    isl_last: float, ttft_last_ms: float, thpt_last: float, isl: npt.ArrayLike, ttft_ms: F64
) -> F64:
    """Throughput/GPU past the profile from the extrapolated TTFT, continuous at ``isl_last``."""
    q = np.asarray(isl, dtype=np.float64)
    return np.asarray(thpt_last * (q / isl_last) * (ttft_last_ms / ttft_ms), dtype=np.float64)


def prefill_extension_isl(isl_last: float, max_isl: float = EXTENSION_MAX_ISL) -> F64:
    """Knot ISLs past ``isl_last`` (exclusive), geometric, the last one >= ``max_isl``."""
    if isl_last >= max_isl:
        return np.empty(0)
    count = int(np.ceil(np.log(max_isl / isl_last) / np.log(EXTENSION_RATIO) - 1e-9))
    return np.asarray(isl_last * EXTENSION_RATIO ** np.arange(1, count + 1), dtype=np.float64)
