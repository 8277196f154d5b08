"""Policy evaluation: a matrix of traces x profiles x policies through the simulator.

``sla-planner evaluate`` is the command; :func:`run_matrix` the library entry point. See the
README section "Evaluating policies" for every column, the oracle and the best-static search.
"""

from __future__ import annotations

from .best_static import BestStatic, Probe, search_best_static
from .cells import CellTask, run_cell
from .matrix import (
    Cell,
    Matrix,
    PolicyEntry,
    ProfileEntry,
    SimKnobs,
    TraceEntry,
    build_matrix,
    parse_policy,
    parse_profile,
    parse_trace,
)
from .matrix_file import matrix_from_file
from .oracle import OraclePolicy, OracleSchedule, hindsight_oracle
from .runner import Evaluation, check_matrix, run_matrix

__all__ = [
    "BestStatic",
    "Cell",
    "CellTask",
    "Evaluation",
    "Matrix",
    "OraclePolicy",
    "OracleSchedule",
    "PolicyEntry",
    "Probe",
    "ProfileEntry",
    "SimKnobs",
    "TraceEntry",
    "build_matrix",
    "check_matrix",
    "hindsight_oracle",
    "matrix_from_file",
    "parse_policy",
    "parse_profile",
    "parse_trace",
    "run_cell",
    "run_matrix",
    "search_best_static",
]
