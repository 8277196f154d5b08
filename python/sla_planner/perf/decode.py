"""Decode performance model: ITL and throughput per GPU over (KV-cache usage, context length).

The profile is a scattered set of samples (a concurrency sweep at a few context lengths). At
construction it is resampled once onto a uniform grid:

* KV-usage axis: ``kv_resolution`` points on ``[min(x_kv_usage), max(x_kv_usage)]``. The grid
  spans the *profiled* range rather than [0, 1] so the model never claims an operating point at a
  KV usage no measurement reached.
* Context axis: ``context_resolution`` points on ``[min(y_context_length), max(y_context_length)]``.
* Values: piecewise-linear on a Delaunay triangulation of the samples
  (``scipy.interpolate.LinearNDInterpolator``); grid points outside the convex hull take the value
  of the nearest sample (``NearestNDInterpolator``). Both work in the plane
  (kv usage, log context), each axis scaled to unit span: sweeps space context lengths
  geometrically or over a wide range, and in linear context the triangles would join far-apart
  context levels.
* Throughput is interpolated as ``g = thpt_per_gpu * context_length / kv_usage`` (samples holding
  at least one KV token, ``kv_usage * max_kv_tokens >= 1``) and multiplied back by
  ``kv_usage / context_length`` on the grid. Decode throughput is batch / ITL with
  batch = kv_usage * max_kv_tokens / context_length, so ``g`` is smooth (proportional to 1 / ITL)
  while throughput itself falls as 1 / context; interpolating throughput directly overstates it
  between context levels (by up to 2x on the bundled example). The triangulated throughput still
  equals each sample's own value at that sample, and outside the hull it goes to 0 with KV usage
  instead of copying a loaded sample's value.

Queries are bilinear on that grid and clamped to the grid box. A NaN query gives NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.interpolate import LinearNDInterpolator, NearestNDInterpolator
from scipy.spatial import QhullError

from .. import kernels
from ..errors import ConfigError, ProfileDataError
from .validation import F64, DecodeData, points_collinear, validate_decode_arrays

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
        self._init(data, kv_resolution, context_resolution)

    @classmethod
    def from_data(
        cls,
        data: DecodeData,
        *,
        kv_resolution: int = DEFAULT_GRID_RESOLUTION,
        context_resolution: int = DEFAULT_GRID_RESOLUTION,
    ) -> DecodeModel:
        """Build from already validated samples (as returned by the profile readers)."""
        model = cls.__new__(cls)
        model._init(data, kv_resolution, context_resolution)
        return model

    def _init(self, data: DecodeData, kv_resolution: int, context_resolution: int) -> None:
        resolutions = (("kv_resolution", kv_resolution), ("context_resolution", context_resolution))
        for name, value in resolutions:
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ConfigError(f"DecodeModel: {name} must be an integer >= 2, got {value!r}")
        self._data = data
        x, y = data.kv_usage, data.context_length
        kv_grid = np.linspace(float(x.min()), float(x.max()), kv_resolution)
        ctx_grid = np.linspace(float(y.min()), float(y.max()), context_resolution)
        self._kv_min = float(kv_grid[0])
        self._kv_step = float(kv_grid[1] - kv_grid[0])
        self._ctx_min = float(ctx_grid[0])
        self._ctx_step = float(ctx_grid[1] - ctx_grid[0])
        self._kv_grid = _frozen(kv_grid)
        self._ctx_grid = _frozen(ctx_grid)
        gx, gy = np.meshgrid(kv_grid, ctx_grid, indexing="ij")
        plane = _Plane(x, y)
        grid_uv = plane(gx.ravel(), gy.ravel())
        points = plane(x, y)
        # Less than one KV token in use counts as an empty cache: no throughput density there.
        loaded = x * data.max_kv_tokens >= 1.0
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            g = data.thpt_per_gpu * y / x
            if loaded.all():  # the usual case: one triangulation for both quantities
                both = _resample(points, np.column_stack((data.itl_ms, g)), grid_uv, data.source)
                itl, g_grid = both[:, 0], both[:, 1]
            else:
                itl = _resample(points, data.itl_ms[:, None], grid_uv, data.source)[:, 0]
                g_grid = _resample(points[loaded], g[loaded, None], grid_uv, data.source)[:, 0]
            thpt = g_grid.reshape(gx.shape) * gx / gy
        for name, grid in (("z_itl", itl), ("z_thpt_per_gpu", thpt)):
            if not np.all(np.isfinite(grid)):
                raise ProfileDataError(
                    f"{data.source}: array '{name}': values too large or too close together to "
                    "interpolate (the grid overflowed)"
                )
        self._itl_grid = _frozen(itl.reshape(gx.shape))
        self._thpt_grid = _frozen(thpt)
        self._search = kernels.DecodeGridSearch(
            self._itl_grid, self._thpt_grid, self._ctx_min, self._ctx_step
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
    def kv_usage_range(self) -> tuple[float, float]:
        """KV-usage span of the grid (the profiled span); queries are clamped to it."""
        return (float(self._kv_grid[0]), float(self._kv_grid[-1]))

    @property
    def context_range(self) -> tuple[float, float]:
        """Context-length span of the grid (tokens); queries are clamped to it."""
        return (float(self._ctx_grid[0]), float(self._ctx_grid[-1]))

    @property
    def kv_usage_grid(self) -> F64:
        """The KV-usage grid points (read-only), axis 0 of the value grids."""
        return self._kv_grid

    @property
    def context_grid(self) -> F64:
        """The context-length grid points (tokens, read-only), axis 1 of the value grids."""
        return self._ctx_grid

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
                float(kv_usage), float(context_length),
            )
        )

    def thpt_per_gpu(self, kv_usage: float, context_length: float) -> float:
        """Decode throughput (tokens/s/GPU) at ``kv_usage`` and ``context_length`` tokens."""
        return float(
            kernels.grid2d_eval_scalar(
                self._thpt_grid, self._kv_min, self._kv_step, self._ctx_min, self._ctx_step,
                float(kv_usage), float(context_length),
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
        thpt, index, itl, meets = self._search.best(float(context_length), float(itl_target_ms))
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


class _Plane:
    """Maps (kv usage, context) to the unit-span (kv usage, log context) interpolation plane."""

    def __init__(self, kv_usage: F64, context_length: F64) -> None:
        self.kv_min = float(kv_usage.min())
        self.kv_span = float(kv_usage.max()) - self.kv_min
        log_ctx = np.log(context_length)
        self.log_ctx_min = float(log_ctx.min())
        self.log_ctx_span = float(log_ctx.max()) - self.log_ctx_min

    def __call__(self, kv_usage: F64, context_length: F64) -> F64:
        u = (kv_usage - self.kv_min) / self.kv_span
        v = (np.log(context_length) - self.log_ctx_min) / self.log_ctx_span
        return np.column_stack((u, v))


def _resample(points: F64, values: F64, queries: F64, source: str) -> F64:
    """Columns of ``values`` at ``queries``: Delaunay-linear inside the hull, nearest outside.

    Fewer than 3 or collinear points (possible only for the throughput subset that holds KV
    tokens) use the nearest sample everywhere.
    """
    nearest = NearestNDInterpolator(points, values)
    if points_collinear(points[:, 0], points[:, 1]):
        return np.asarray(nearest(queries), dtype=np.float64)
    try:
        linear = LinearNDInterpolator(points, values)
    except QhullError as exc:
        first_line = (str(exc).strip().splitlines() or ["QhullError"])[0]
        raise ProfileDataError(
            f"{source}: arrays 'x_kv_usage' and 'y_context_length': cannot triangulate the "
            f"decode samples ({first_line})"
        ) from None
    out = np.asarray(linear(queries), dtype=np.float64)
    outside = np.isnan(out).any(axis=1)
    if outside.any():
        out[outside] = nearest(queries[outside])
    return out


def _frozen(a: F64) -> F64:
    out = np.ascontiguousarray(a, dtype=np.float64)
    out.setflags(write=False)
    return out
