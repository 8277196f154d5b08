"""Bank of N local-linear-trend Kalman filters (Cython). Model, observation rules, input rules
and errors: sla_planner.kernels.kalman_ref (bit-identical results)."""

import numpy as np
import numpy.typing as npt
from typing_extensions import disjoint_base

__all__ = ["KalmanBank"]

@disjoint_base
class KalmanBank:
    """N local-linear-trend Kalman filters updated together (model: KalmanBankRef)."""

    def __init__(
        self, n: int, q_level: float, q_trend: float, r: float, log1p: bool = False
    ) -> None: ...
    @property
    def n(self) -> int:
        """Number of series."""
    @property
    def q_level(self) -> float:
        """Process noise variance of the level."""
    @property
    def q_trend(self) -> float:
        """Process noise variance of the trend."""
    @property
    def r(self) -> float:
        """Observation noise variance."""
    @property
    def log1p(self) -> bool:
        """Whether the filters run on log1p(max(y, 0))."""
    @property
    def level(self) -> npt.NDArray[np.float64]:
        """Filtered level per series (log1p space when log1p); read-only view."""
    @property
    def trend(self) -> npt.NDArray[np.float64]:
        """Filtered trend per series (per update); read-only view."""
    @property
    def p00(self) -> npt.NDArray[np.float64]:
        """Level variance per series; read-only view."""
    @property
    def p01(self) -> npt.NDArray[np.float64]:
        """Level-trend covariance per series; read-only view."""
    @property
    def p11(self) -> npt.NDArray[np.float64]:
        """Trend variance per series; read-only view."""
    @property
    def count(self) -> npt.NDArray[np.int64]:
        """Accepted observations per series; read-only view."""
    def update(self, values: npt.ArrayLike) -> None:
        """Fold one observation per series into the bank (non-finite values skip their series)."""
    def update_one(self, i: int, value: float) -> None:
        """Fold one observation into series i (a non-finite value is skipped)."""
    def predict(self) -> npt.NDArray[np.float64]:
        """One-step-ahead forecast per series, in the input space, never negative (NaN before
        a series' first observation)."""
    def predict_one(self, i: int) -> float:
        """One-step-ahead forecast of series i (NaN before its first observation)."""
