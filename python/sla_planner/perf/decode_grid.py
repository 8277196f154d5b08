"""Resampling scattered decode samples onto the uniform (KV usage, context) grid of the model.

Axes
----
* KV usage, uniform, from the smallest sample to 1.0 (a full cache; the last point may pass 1.0
  by less than one step, so a lookup at 1.0 interpolates instead of clamping, but the search
  for the best operating point never picks a point past 1.0).
* Context, uniform in **log** context, from the smallest sample to the engine's maximum context
  (default ``max_kv_tokens``: one sequence holding the whole cache). Sweeps space context levels
  geometrically or over a wide range and throughput falls as 1 / context, so a grid uniform in
  linear context is either coarse at short contexts (and overshoots there) or huge.
* Over the profiled span an axis has ``kv_resolution`` / ``context_resolution`` points, exactly
  the grid of a profile-only model, so inside the profile nothing changes; the same step then
  continues to the axis end (context: the first point at or past it). An axis longer than
  :data:`MAX_AXIS_POINTS` points is resampled uniformly with a coarser step instead.

Values
------
The samples are triangulated (Delaunay) in the plane (kv usage, log context), each axis scaled
to unit span over the samples.

* Inside the samples' convex hull: ITL is linear on the triangle. Throughput is
  ``r * batch / ITL`` with ``batch = kv_usage * max_kv_tokens / context`` sequences and
  ``r = thpt * ITL / batch`` linear on the triangle (``r`` is 1000 / GPUs per engine for a
  consistent profile, so the shape comes from the batch and the interpolated ITL, which is close
  to linear in KV usage), then **clamped to the range of the triangle's three measured
  throughputs**: interpolated throughput never exceeds its neighbouring measurements (a flat
  table gives exactly its value).
* Outside the hull (longer contexts, fuller caches, or corners no sweep reached): the value at
  the nearest hull point ``p`` continued by the fitted cost model ``f`` of
  :mod:`sla_planner.perf.extrapolation`: ``ITL(q) = ITL(p) * f(q) / f(p)`` and
  ``thpt(q) = thpt(p) * (B(q) / B(p)) * (ITL(p) / ITL(q))`` with ``B = kv * max_kv / context``
  sequences, so both are continuous across the hull boundary and grow (ITL) or fall
  (throughput per sequence) as the fitted physics says, never flat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.interpolate import LinearNDInterpolator
from scipy.spatial import ConvexHull, Delaunay, QhullError

from ..errors import ProfileDataError
from .extrapolation import DecodeCostModel, fit_decode_model
from .validation import F64, DecodeData, points_collinear

__all__ = ["DecodeGrids", "build_decode_grids", "MAX_AXIS_POINTS"]

I64 = npt.NDArray[np.int64]

MAX_AXIS_POINTS = 4096
"""Largest number of points on one grid axis (bounds memory: 2 grids of at most 4096^2 cells)."""
_CHUNK = 65536
_NUDGE = 1e-7


@dataclass(frozen=True)
class DecodeGrids:
    """The resampled grids and their axes (uniform: ``axis_min + i * axis_step``)."""

    kv_grid: F64
    log_ctx_grid: F64
    """Natural log of the context length (tokens) at each grid column."""
    itl_ms: F64
    thpt_per_gpu: F64
    cost: DecodeCostModel
    profiled_kv: tuple[float, float]
    profiled_ctx: tuple[float, float]


def _axis(lo: float, hi: float, resolution: int, end: float, *, pass_end: bool) -> F64:
    """``resolution`` points on [lo, hi] (the profiled span), then the same step on towards
    ``end``: to the first point at or past it (``pass_end``) or the last one not past it; at most
    :data:`MAX_AXIS_POINTS` points (then uniform on [lo, end])."""
    if not hi > lo:
        return np.array([lo, max(end, lo + 1.0)])
    step = (hi - lo) / (resolution - 1)
    steps = (end - hi) / step
    extra = math.ceil(steps - 1e-9) if pass_end else math.floor(steps + 1e-9)
    count = resolution + max(0, extra)
    if count > MAX_AXIS_POINTS:
        return np.linspace(lo, end, MAX_AXIS_POINTS)
    axis: F64 = lo + step * np.arange(count, dtype=np.float64)
    axis[resolution - 1] = hi  # the profiled end exactly, as linspace gives it
    return axis


class _Plane:
    """Maps (kv usage, context) to the unit-span (kv usage, log context) interpolation plane."""

    def __init__(self, kv_usage: F64, context_length: F64) -> None:
        self.kv_min = float(kv_usage.min())
        self.kv_span = float(kv_usage.max()) - self.kv_min
        log_ctx = np.log(context_length)
        self.log_ctx_min = float(log_ctx.min())
        self.log_ctx_span = float(log_ctx.max()) - self.log_ctx_min

    def __call__(self, kv_usage: F64, context_length: F64) -> F64:
        return self.from_log(kv_usage, np.log(context_length))

    def from_log(self, kv_usage: F64, log_context: F64) -> F64:
        u = (kv_usage - self.kv_min) / self.kv_span
        v = (log_context - self.log_ctx_min) / self.log_ctx_span
        return np.column_stack((u, v))

    def inverse(self, uv: F64) -> tuple[F64, F64]:
        kv = self.kv_min + uv[:, 0] * self.kv_span
        ctx = np.exp(self.log_ctx_min + uv[:, 1] * self.log_ctx_span)
        return kv, ctx


def _triangulate(points: F64, source: str) -> Delaunay:
    try:
        return Delaunay(points)
    except QhullError as exc:
        first_line = (str(exc).strip().splitlines() or ["QhullError"])[0]
        raise ProfileDataError(
            f"{source}: arrays 'x_kv_usage' and 'y_context_length': cannot triangulate the "
            f"decode samples ({first_line})"
        ) from None


class _Inside:
    """Values at query points inside the samples' hull (see the module docstring)."""

    def __init__(self, data: DecodeData, points: F64) -> None:
        self.tri = _triangulate(points, data.source)
        self.max_kv = float(data.max_kv_tokens)
        self.thpt = data.thpt_per_gpu
        self.itl = LinearNDInterpolator(self.tri, data.itl_ms)
        self.thpt_direct = LinearNDInterpolator(self.tri, data.thpt_per_gpu)
        x, y = data.kv_usage, data.context_length
        # Less than one KV token in use counts as an empty cache: no throughput per sequence there.
        loaded = x * data.max_kv_tokens >= 1.0
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ratio = data.thpt_per_gpu * data.itl_ms / (x * self.max_kv / y)
        self.ratio: LinearNDInterpolator | None
        if loaded.all():
            self.ratio = LinearNDInterpolator(self.tri, ratio)
        elif not points_collinear(points[loaded, 0], points[loaded, 1]):
            self.ratio = LinearNDInterpolator(_triangulate(points[loaded], data.source), ratio[loaded])
        else:
            self.ratio = None

    def simplex(self, uv: F64) -> I64:
        return np.asarray(self.tri.find_simplex(uv), dtype=np.int64)

    def values(self, uv: F64, simplex: I64, kv: F64, ctx: F64) -> tuple[F64, F64]:
        """ITL (linear) and throughput (``ratio * batch / ITL``, clamped to the corners' range)."""
        itl = np.asarray(self.itl(uv), dtype=np.float64)
        corners = self.thpt[self.tri.simplices[simplex]]
        lo, hi = corners.min(axis=1), corners.max(axis=1)
        direct = np.asarray(self.thpt_direct(uv), dtype=np.float64)
        if self.ratio is None:
            return itl, direct
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            shaped = np.asarray(self.ratio(uv), dtype=np.float64) * (kv * self.max_kv / ctx) / itl
        thpt = np.where(np.isfinite(shaped), np.clip(shaped, lo, hi), direct)
        return itl, thpt


def _hull_projection(points: F64, queries: F64) -> F64:
    """The nearest point of the convex hull of ``points`` to each query (all in the plane)."""
    hull = ConvexHull(points)
    ring = points[hull.vertices]
    a = ring
    b = np.roll(ring, -1, axis=0)
    ab = b - a
    ab_len2 = np.maximum((ab * ab).sum(axis=1), 1e-300)
    out = np.empty_like(queries)
    for start in range(0, queries.shape[0], _CHUNK):
        q = queries[start:start + _CHUNK]
        t = ((q[:, None, :] - a[None, :, :]) * ab[None, :, :]).sum(axis=2) / ab_len2[None, :]
        t = np.clip(t, 0.0, 1.0)
        proj = a[None, :, :] + t[:, :, None] * ab[None, :, :]
        dist2 = ((proj - q[:, None, :]) ** 2).sum(axis=2)
        best = np.argmin(dist2, axis=1)
        out[start:start + _CHUNK] = proj[np.arange(q.shape[0]), best]
    # A hair inside the hull so the triangle lookup never misses on rounding.
    centroid = ring.mean(axis=0)
    return out + _NUDGE * (centroid - out)


def build_decode_grids(
    data: DecodeData, kv_resolution: int, context_resolution: int, max_context_length: float
) -> DecodeGrids:
    """Resample ``data`` onto the extended uniform grid (see the module docstring)."""
    x, y, m = data.kv_usage, data.context_length, float(data.max_kv_tokens)
    kv_lo, kv_hi = float(x.min()), float(x.max())
    ctx_lo, ctx_hi = float(y.min()), float(y.max())
    kv_grid = _axis(kv_lo, kv_hi, kv_resolution, 1.0, pass_end=True)
    log_ctx_grid = _axis(
        math.log(ctx_lo), math.log(ctx_hi), context_resolution,
        math.log(max(max_context_length, ctx_hi)), pass_end=True,
    )
    cost = fit_decode_model(x * m, x * m / y, data.itl_ms)

    gx, gy = np.meshgrid(kv_grid, log_ctx_grid, indexing="ij")
    kv, ctx = gx.ravel(), np.exp(gy.ravel())
    plane = _Plane(x, y)
    inside = _Inside(data, plane(x, y))
    uv = plane.from_log(kv, gy.ravel())  # from the log axis itself: profiled ends land exactly
    itl = np.full(kv.shape, np.nan)
    thpt = np.full(kv.shape, np.nan)
    simplex = inside.simplex(uv)
    hit = simplex >= 0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        itl[hit], thpt[hit] = inside.values(uv[hit], simplex[hit], kv[hit], ctx[hit])
        out = np.flatnonzero(~hit)
        if out.size:
            p_uv = _hull_projection(plane(x, y), uv[out])
            p_simplex = inside.simplex(p_uv)
            if (p_simplex < 0).any():  # rounding at a sliver: step further inside
                centroid = plane(x, y).mean(axis=0)
                p_uv = np.where(
                    (p_simplex < 0)[:, None], p_uv + 1e-4 * (centroid - p_uv), p_uv
                )
                p_simplex = inside.simplex(p_uv)
            p_kv, p_ctx = plane.inverse(p_uv)
            p_itl, p_thpt = inside.values(p_uv, p_simplex, p_kv, p_ctx)
            itl[out], thpt[out] = _continue(
                cost, m, kv[out], ctx[out], p_kv, p_ctx, p_itl, p_thpt, _median_ratio(data)
            )
    for name, grid in (("z_itl", itl), ("z_thpt_per_gpu", thpt)):
        if not np.all(np.isfinite(grid)):
            raise ProfileDataError(
                f"{data.source}: array '{name}': values too large or too close together to "
                "interpolate (the grid overflowed)"
            )
    return DecodeGrids(
        kv_grid=kv_grid,
        log_ctx_grid=log_ctx_grid,
        itl_ms=itl.reshape(gx.shape),
        thpt_per_gpu=thpt.reshape(gx.shape),
        cost=cost,
        profiled_kv=(kv_lo, kv_hi),
        profiled_ctx=(ctx_lo, ctx_hi),
    )


def _continue(
    cost: DecodeCostModel,
    max_kv: float,
    kv: F64,
    ctx: F64,
    p_kv: F64,
    p_ctx: F64,
    p_itl: F64,
    p_thpt: F64,
    fallback_ratio: float,
) -> tuple[F64, F64]:
    """ITL and throughput at ``(kv, ctx)`` continued from hull point ``p`` along ``cost``.

    Throughput per GPU is ``ratio * batch / ITL`` with ``ratio = thpt * ITL / batch`` measured at
    ``p`` (1000 / GPUs per engine for a consistent profile); where ``p`` holds under half a
    sequence that ratio is noise and the profile-wide median ``fallback_ratio`` is used.
    """
    batch = kv * max_kv / ctx
    p_batch = p_kv * max_kv / p_ctx
    f_q = cost.itl_ms(kv * max_kv, batch)
    f_p = cost.itl_ms(p_kv * max_kv, p_batch)
    positive = f_p > 0.0
    itl = np.where(positive, p_itl * f_q / np.where(positive, f_p, 1.0), p_itl + f_q)
    local = p_batch >= 0.5
    ratio = np.where(local, p_thpt * p_itl / np.where(local, p_batch, 1.0), fallback_ratio)
    return itl, np.maximum(ratio * batch / itl, 0.0)  # barycentric rounding can dip below 0


def _median_ratio(data: DecodeData) -> float:
    """Median of ``thpt * ITL / batch`` over samples holding at least one sequence."""
    batch = data.kv_usage * data.max_kv_tokens / data.context_length
    use = batch >= 1.0
    if not use.any():
        use = batch > 0.0
    return float(np.median(data.thpt_per_gpu[use] * data.itl_ms[use] / batch[use]))
