"""Compiled kernels or their numpy references, chosen once at import.

``SLA_PLANNER_NO_EXTENSIONS=1`` forces the references everywhere (tests run both ways).
``USING_EXTENSIONS`` tells which set is active. Both sets take any array-like, validate it with
the reference's rules and raise :class:`~sla_planner.errors.KernelError` for bad input.
"""

from __future__ import annotations

import os

from . import interp_ref
from .kalman_ref import KalmanBankRef

__all__ = [
    "USING_EXTENSIONS",
    # interpolation (profiling data -> performance)
    "pchip_slopes",
    "hermite_eval",
    "hermite_eval_scalar",
    "grid2d_eval",
    "grid2d_eval_scalar",
    "best_under_target",
    "DecodeGridSearch",
    # load forecasting
    "KalmanBank",
    "KalmanBankRef",
]

USING_EXTENSIONS: bool = os.environ.get("SLA_PLANNER_NO_EXTENSIONS", "") in ("", "0")

pchip_slopes = interp_ref.pchip_slopes  # setup-time only: no compiled twin

if USING_EXTENSIONS:
    from .._cy import interp as _interp
    from .._cy.kalman import KalmanBank

    hermite_eval = _interp.hermite_eval
    hermite_eval_scalar = _interp.hermite_eval_scalar
    grid2d_eval = _interp.grid2d_eval
    grid2d_eval_scalar = _interp.grid2d_eval_scalar
    best_under_target = _interp.best_under_target
    DecodeGridSearch = _interp.DecodeGridSearch
else:
    KalmanBank = KalmanBankRef  # type: ignore[misc,assignment]
    hermite_eval = interp_ref.hermite_eval
    hermite_eval_scalar = interp_ref.hermite_eval_scalar
    grid2d_eval = interp_ref.grid2d_eval
    grid2d_eval_scalar = interp_ref.grid2d_eval_scalar
    best_under_target = interp_ref.best_under_target
    DecodeGridSearch = interp_ref.DecodeGridSearch  # type: ignore[misc,assignment]

# --- FPM codec, engine table and sliding-window regression: Rust `_native` or the references ---
# (the Rust part; same USING_EXTENSIONS switch as above)
from . import fpm_ref as _fpm_ref  # noqa: E402
from . import regression_ref as _regression_ref  # noqa: E402
from .fpm_ingest_ref import FpmIngestor as FpmIngestorRef  # noqa: E402
from .regression_ref import SlidingRegression as SlidingRegressionRef  # noqa: E402

__all__ += [
    "encode_fpm",
    "encode_fpm_rows",
    "decode_fpm",
    "FpmIngestor",
    "FpmIngestorRef",
    "SlidingRegression",
    "SlidingRegressionRef",
    "estimate_many",
]

if USING_EXTENSIONS:
    from .._native import (  # noqa: E402
        FpmIngestor,
        SlidingRegression,
        decode_fpm,
        encode_fpm,
        encode_fpm_rows,
        estimate_many,
    )
else:
    encode_fpm = _fpm_ref.encode_fpm
    encode_fpm_rows = _fpm_ref.encode_fpm_rows
    decode_fpm = _fpm_ref.decode_fpm
    FpmIngestor = FpmIngestorRef  # type: ignore[misc,assignment]
    SlidingRegression = SlidingRegressionRef  # type: ignore[misc,assignment]
    estimate_many = _regression_ref.estimate_many
