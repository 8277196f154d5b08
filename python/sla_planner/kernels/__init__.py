"""Compiled kernels or their numpy references, chosen once at import.

``SLA_PLANNER_NO_EXTENSIONS=1`` forces the references everywhere (tests run both ways).
``USING_EXTENSIONS`` tells which set is active.
"""

from __future__ import annotations

import os

from . import interp_ref
from .kalman_ref import KalmanBankRef

__all__ = [
    "USING_EXTENSIONS",
    "KalmanBank",
    "KalmanBankRef",
    "pchip_slopes",
    "hermite_eval",
    "hermite_eval_scalar",
    "grid2d_eval",
    "grid2d_eval_scalar",
    "best_under_target",
]

_FORCE_REFERENCE = os.environ.get("SLA_PLANNER_NO_EXTENSIONS", "") not in ("", "0")

pchip_slopes = interp_ref.pchip_slopes

if _FORCE_REFERENCE:
    USING_EXTENSIONS = False
    KalmanBank = KalmanBankRef
    hermite_eval = interp_ref.hermite_eval
    hermite_eval_scalar = interp_ref.hermite_eval_scalar
    grid2d_eval = interp_ref.grid2d_eval
    grid2d_eval_scalar = interp_ref.grid2d_eval_scalar
    best_under_target = interp_ref.best_under_target
else:
    from .._cy import interp as _interp
    from .._cy.kalman import KalmanBank

    USING_EXTENSIONS = True
    hermite_eval = _interp.hermite_eval
    hermite_eval_scalar = _interp.hermite_eval_scalar
    grid2d_eval = _interp.grid2d_eval
    grid2d_eval_scalar = _interp.grid2d_eval_scalar
    best_under_target = _interp.best_under_target
