"""Decode performance model: ITL and throughput per GPU over (KV-cache usage, context length).

The profile is a scattered set of samples (a concurrency sweep at a few context lengths). At
construction it is resampled once onto a uniform grid (:mod:`sla_planner.perf.decode_grid`):

* KV-usage axis from the smallest sample to 1.0, context axis from the smallest sample to the
  engine's maximum context (``max_context_length``, default ``max_kv_tokens``). Over the profiled
  span the grid has ``kv_resolution`` x ``context_resolution`` points; the same step continues
  past it.
* Inside the samples' convex hull (in the plane kv usage, log context): ITL is linear on a
  Delaunay triangulation; throughput is shaped like ``batch / ITL`` and clamped to the range of
  the triangle's measured throughputs, so it **never exceeds its neighbouring measurements**.
* Outside the hull (beyond the profiled context or KV range): the nearest hull value continued
  by the fitted cost model ``ITL = a + b*KV tokens + c*batch``
  (:mod:`sla_planner.perf.extrapolation`), never held flat.

Queries are bilinear on that grid and clamped to the grid box (below the smallest profiled KV
usage or context, and past the maximum context). A NaN query gives NaN. The simulator reads the
same grid, so planner and simulated engines share one ground truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .. import kernels
from ..errors import ConfigError
from .decode_grid import build_decode_grids
from .extrapolation import DecodeCostModel
from .validation import F64, DecodeData, validate_decode_arrays

__all__ = ["DecodeOperatingPoint", "DecodeModel", "DEFAULT_GRID_RESOLUTION"]

DEFAULT_GRID_RESOLUTION = 100


@dataclass(frozen=True)
class DecodeOperatingPoint:
    """A decode operating point on the profile grid at one context length."""

    thpt_per_gpu: float
    """Decode throughput (tokens/s per GPU) at this point."""
    kv_usage: float
    """KV-cache usage (0..1) of the grid point."""
    itl_ms: float
    """Inter-token latency (ms) at this point."""
    meets_target: bool
    """False when no profiled KV usage meets the ITL target (the lowest-ITL point is returned)."""


class DecodeModel:
    """ITL (ms) and decode throughput (tokens/s/GPU) over KV usage (0..1) and context (tokens)."""

    __slots__ = (
        "_data",
        "_kv_grid",
        "_ctx_grid",
        "_itl_grid",
        "_thpt_grid",
        "_kv_min",
        "_kv_step",
        "_ctx_min",
        "_ctx_step",
        "_search",
        "_cost",
        "_profiled_kv",
        "_profiled_ctx",
    )

    def __init__(
        self,
        kv_usage: npt.ArrayLike,
        context_length: npt.ArrayLike,
        itl_ms: npt.ArrayLike,
        thpt_per_gpu: npt.ArrayLike,
        max_kv_tokens: int,
        *,
        kv_resolution: int = DEFAULT_GRID_RESOLUTION,
        context_resolution: int = DEFAULT_GRID_RESOLUTION,
        max_context_length: float | None = None,
        source: str = "<arrays>",
    ) -> None:
        data = validate_decode_arrays(
            {
                "x_kv_usage": np.asarray(kv_usage),
                "y_context_length": np.asarray(context_length),
                "z_itl": np.asarray(itl_ms),
                "z_thpt_per_gpu": np.asarray(thpt_per_gpu),
                "max_kv_tokens": max_kv_tokens,
            },
            source,
        )
        self._init(data, kv_resolution, context_resolution, max_context_length)

    @classmethod
    def from_data(
        cls,
        data: DecodeData,
        *,
        kv_resolution: int = DEFAULT_GRID_RESOLUTION,
        context_resolution: int = DEFAULT_GRID_RESOLUTION,
        max_context_length: float | None = None,
    ) -> DecodeModel:
        """Build from already validated samples (as returned by the profile readers)."""
        model = cls.__new__(cls)
        model._init(data, kv_resolution, context_resolution, max_context_length)
        return model

    def _init(
        self,
        data: DecodeData,
        kv_resolution: int,
        context_resolution: int,
        max_context_length: float | None,
    ) -> None:
        resolutions = (("kv_resolution", kv_resolution), ("context_resolution", context_resolution))
        for name, value in resolutions:
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ConfigError(f"DecodeModel: {name} must be an integer >= 2, got {value!r}")
        if max_context_length is None:
            max_context_length = float(data.max_kv_tokens)
        elif not (math.isfinite(max_context_length) and max_context_length > 0):
            raise ConfigError(
                f"DecodeModel: max_context_length must be a finite number > 0, "
                f"got {max_context_length!r}"
            )
        self._data = data
        grids = build_decode_grids(data, kv_resolution, context_resolution, max_context_length)
        self._cost = grids.cost
        self._profiled_kv = grids.profiled_kv
        self._profiled_ctx = grids.profiled_ctx
        kv_grid, log_ctx_grid = grids.kv_grid, grids.log_ctx_grid
        self._kv_min = float(kv_grid[0])
        self._kv_step = float(kv_grid[1] - kv_grid[0])
        self._ctx_min = float(log_ctx_grid[0])  # the context axis is uniform in log(tokens)
        self._ctx_step = float(log_ctx_grid[1] - log_ctx_grid[0])
        self._kv_grid = _frozen(kv_grid)
        self._ctx_grid = _frozen(np.exp(log_ctx_grid))
        self._itl_grid = _frozen(grids.itl_ms)
        self._thpt_grid = _frozen(grids.thpt_per_gpu)
        # the best-point search skips grid rows past a full cache, and cells that serve nothing
        # (an empty cache's 0 tokens/s is never an operating point, even the fastest one)
        searchable = np.array(self._thpt_grid)
        searchable[kv_grid > 1.0 + 1e-12, :] = np.nan
        searchable[~(searchable > 0.0)] = np.nan
        self._search = kernels.DecodeGridSearch(
            self._itl_grid, searchable, self._ctx_min, self._ctx_step
        )

    @property
    def data(self) -> DecodeData:
        """The validated scattered samples the grid was built from."""
        return self._data

    @property
    def max_kv_tokens(self) -> int:
        """KV-cache capacity of one engine (tokens)."""
        return self._data.max_kv_tokens

    @property
    def cost_model(self) -> DecodeCostModel:
        """The cost model fitted to the samples (drives the extrapolation past them)."""
        return self._cost

    @property
    def kv_usage_range(self) -> tuple[float, float]:
        """KV-usage span of the grid (smallest sample to the first step at or past 1.0); queries
        are clamped to it."""
        return (float(self._kv_grid[0]), float(self._kv_grid[-1]))

    @property
    def context_range(self) -> tuple[float, float]:
        """Context-length span of the grid (tokens, to the maximum context); queries clamp."""
        return (float(self._ctx_grid[0]), float(self._ctx_grid[-1]))

    @property
    def profiled_kv_usage_range(self) -> tuple[float, float]:
        """Smallest and largest profiled KV usage."""
        return self._profiled_kv

    @property
    def profiled_context_range(self) -> tuple[float, float]:
        """Smallest and largest profiled context length (tokens)."""
        return self._profiled_ctx

    @property
    def kv_usage_grid(self) -> F64:
        """The KV-usage grid points (read-only), axis 0 of the value grids."""
        return self._kv_grid

    @property
    def context_grid(self) -> F64:
        """The context-length grid points (tokens, read-only), axis 1 of the value grids.

        The axis is uniform in log context: point ``j`` is
        ``exp(log_context_min + j * log_context_step)``.
        """
        return self._ctx_grid

    @property
    def log_context_min(self) -> float:
        """Natural log of the first context grid point (tokens)."""
        return self._ctx_min

    @property
    def log_context_step(self) -> float:
        """Step of the context axis in natural log of tokens."""
        return self._ctx_step

    @property
    def itl_grid_ms(self) -> F64:
        """ITL (ms) at every grid point, shape (kv points, context points), read-only."""
        return self._itl_grid

    @property
    def thpt_grid_per_gpu(self) -> F64:
        """Throughput (tokens/s/GPU) at every grid point, shape (kv, context), read-only."""
        return self._thpt_grid

    def itl_ms(self, kv_usage: float, context_length: float) -> float:
        """Inter-token latency (ms) at ``kv_usage`` (0..1) and ``context_length`` tokens."""
        return float(
            kernels.grid2d_eval_scalar(
                self._itl_grid, self._kv_min, self._kv_step, self._ctx_min, self._ctx_step,
                float(kv_usage), _log_context(float(context_length)),
            )
        )

    def thpt_per_gpu(self, kv_usage: float, context_length: float) -> float:
        """Decode throughput (tokens/s/GPU) at ``kv_usage`` and ``context_length`` tokens."""
        return float(
            kernels.grid2d_eval_scalar(
                self._thpt_grid, self._kv_min, self._kv_step, self._ctx_min, self._ctx_step,
                float(kv_usage), _log_context(float(context_length)),
            )
        )

    def itl_ms_batch(self, kv_usage: npt.ArrayLike, context_length: npt.ArrayLike) -> F64:
        """:meth:`itl_ms` element-wise; the two inputs are broadcast to one shape."""
        return self._batch(self._itl_grid, kv_usage, context_length)

    def thpt_per_gpu_batch(self, kv_usage: npt.ArrayLike, context_length: npt.ArrayLike) -> F64:
        """:meth:`thpt_per_gpu` element-wise; the two inputs are broadcast to one shape."""
        return self._batch(self._thpt_grid, kv_usage, context_length)

    def _batch(self, grid: F64, kv_usage: npt.ArrayLike, context_length: npt.ArrayLike) -> F64:
        xq, yq = np.broadcast_arrays(
            np.asarray(kv_usage, dtype=np.float64), np.asarray(context_length, dtype=np.float64)
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            yq = np.log(np.maximum(yq, _TINY))
        return np.asarray(
            kernels.grid2d_eval(
                grid, self._kv_min, self._kv_step, self._ctx_min, self._ctx_step,
                np.ascontiguousarray(xq), np.ascontiguousarray(yq),
            ),
            dtype=np.float64,
        )

    def best_throughput_per_gpu(
        self, itl_target_ms: float, context_length: float
    ) -> DecodeOperatingPoint:
        """The highest-throughput KV usage whose ITL is within ``itl_target_ms`` at this context.

        When no profiled KV usage meets the target, the lowest-ITL point is returned with
        ``meets_target`` False. A NaN argument gives NaN fields and ``meets_target`` False.
        """
        thpt, index, itl, meets = self._search.best(
            _log_context(float(context_length)), float(itl_target_ms)
        )
        kv = float(self._kv_grid[index]) if index >= 0 else math.nan
        return DecodeOperatingPoint(
            thpt_per_gpu=float(thpt), kv_usage=kv, itl_ms=float(itl), meets_target=bool(meets)
        )

    def kv_usage_at_concurrency(
        self, concurrency_per_engine: float, context_length: float
    ) -> float:
        """KV usage (clamped to [0, 1]) of ``concurrency_per_engine`` sequences of this context."""
        usage = float(concurrency_per_engine) * float(context_length) / self._data.max_kv_tokens
        if math.isnan(usage):
            return math.nan
        return min(max(usage, 0.0), 1.0)

    def itl_at_concurrency(self, concurrency_per_engine: float, context_length: float) -> float:
        """ITL (ms) of one engine running ``concurrency_per_engine`` sequences of this context.

        KV usage is ``concurrency * context_length / max_kv_tokens`` clamped to [0, 1] (then to the
        profiled span by the grid lookup).
        """
        kv = self.kv_usage_at_concurrency(concurrency_per_engine, context_length)
        return self.itl_ms(kv, context_length)

    def __repr__(self) -> str:
        (kv_lo, kv_hi), (c_lo, c_hi) = self.kv_usage_range, self.context_range
        return (
            f"DecodeModel(points={self._data.kv_usage.shape[0]}, "
            f"kv_usage_range=({kv_lo:g}, {kv_hi:g}), context_range=({c_lo:g}, {c_hi:g}), "
            f"grid={self._itl_grid.shape}, max_kv_tokens={self.max_kv_tokens}, "
            f"source={self._data.source!r})"
        )


_TINY = 1e-300


def _log_context(context_length: float) -> float:
    """Natural log of a context length; 0 or less maps below every grid point, NaN stays NaN."""
    if math.isnan(context_length):
        return math.nan
    return math.log(max(context_length, _TINY))


def _frozen(a: F64) -> F64:
    out = np.ascontiguousarray(a, dtype=np.float64)
    out.setflags(write=False)
    return out
