"""Interpolation kernels (Cython). Semantics, input rules and errors: sla_planner.kernels.interp_ref.

Every function accepts any array-like / real number, validates it with the reference's rules and
raises sla_planner.errors.KernelError for bad input.
"""

import numpy as np
import numpy.typing as npt
from typing_extensions import disjoint_base

__all__ = [
    "hermite_eval",
    "hermite_eval_scalar",
    "grid2d_eval",
    "grid2d_eval_scalar",
    "best_under_target",
    "DecodeGridSearch",
]

def hermite_eval_scalar(
    x: npt.ArrayLike, y: npt.ArrayLike, d: npt.ArrayLike, xq: float
) -> float:
    """Evaluate the cubic Hermite through (x, y, d) at one query clamped to [x[0], x[-1]]."""

def hermite_eval(
    x: npt.ArrayLike, y: npt.ArrayLike, d: npt.ArrayLike, xq: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Batched hermite_eval_scalar; returns a float64 array of xq's shape."""

def grid2d_eval_scalar(
    z: npt.ArrayLike, x_min: float, dx: float, y_min: float, dy: float, xq: float, yq: float
) -> float:
    """Bilinear lookup of z on a uniform grid at one query clamped to the grid box."""

def grid2d_eval(
    z: npt.ArrayLike,
    x_min: float,
    dx: float,
    y_min: float,
    dy: float,
    xq: npt.ArrayLike,
    yq: npt.ArrayLike,
) -> npt.NDArray[np.float64]:
    """Batched grid2d_eval_scalar; xq and yq must have one shape."""

def best_under_target(
    z_itl: npt.ArrayLike,
    z_thpt: npt.ArrayLike,
    y_min: float,
    dy: float,
    yq: float,
    itl_target: float,
) -> tuple[float, int, float, bool]:
    """(throughput, x_index, itl, meets_target): best throughput at context yq with ITL <= target.

    Ties go to the lowest x index; with no point meeting the target, the lowest-ITL point and
    meets_target False; points with NaN ITL or throughput are skipped; no usable point, or a
    NaN yq / itl_target, gives (nan, -1, nan, False).
    """

@disjoint_base
class DecodeGridSearch:
    """best_under_target on one ITL / throughput grid pair validated (and copied) once.

    best(yq, itl_target) equals best_under_target(z_itl, z_thpt, y_min, dy, yq, itl_target) on
    the grids as they were at construction, without re-checking them on every call.
    """

    def __init__(
        self, z_itl: npt.ArrayLike, z_thpt: npt.ArrayLike, y_min: float, dy: float
    ) -> None: ...
    def best(self, yq: float, itl_target: float) -> tuple[float, int, float, bool]:
        """(throughput, x_index, itl, meets_target) at context yq; as best_under_target."""
