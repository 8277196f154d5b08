"""GPU budget rules for replica proposals (pure).

Budgets never grow a pool and never push one under ``min_endpoint``. Over budget, both pools shrink
in proportion; prefill is rounded down first, decode takes what remains (also rounded down), and if
the decode floor then overflows the budget, prefill gives back engines until it fits.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InfeasibleBudgetError
from ..types import BudgetAction, Pool

__all__ = ["BudgetResult", "fit_disagg_to_budget", "fit_pool_to_budget"]


@dataclass(frozen=True)
class BudgetResult:
    """Replica counts after the budget, with what the budget did and the GPU arithmetic."""

    replicas: dict[Pool, int]
    action: BudgetAction
    gpus_requested: int
    gpus_used: int
    max_gpu_budget: int | None
    """None: no budget was set."""


def _check_floor(min_endpoint: int, gpus_at_floor: int, max_gpu_budget: int) -> None:
    if gpus_at_floor > max_gpu_budget:
        raise InfeasibleBudgetError(
            f"max_gpu_budget: minimum footprint {gpus_at_floor} GPUs "
            f"(min_endpoint={min_endpoint}) exceeds max_gpu_budget={max_gpu_budget}"
        )


def fit_pool_to_budget(
    pool: Pool, replicas: int, engine_num_gpu: int, min_endpoint: int, max_gpu_budget: int
) -> BudgetResult:
    """Cap one pool (prefill-only, decode-only or aggregated mode) at the budget."""
    _check_floor(min_endpoint, min_endpoint * engine_num_gpu, max_gpu_budget)
    replicas = max(replicas, min_endpoint)
    requested = replicas * engine_num_gpu
    if requested <= max_gpu_budget:
        return BudgetResult(
            {pool: replicas}, BudgetAction.WITHIN_BUDGET, requested, requested, max_gpu_budget
        )
    capped = max(min_endpoint, max_gpu_budget // engine_num_gpu)
    return BudgetResult(
        {pool: capped},
        BudgetAction.SCALED_DOWN_TO_BUDGET,
        requested,
        capped * engine_num_gpu,
        max_gpu_budget,
    )


def fit_disagg_to_budget(
    prefill: int,
    decode: int,
    prefill_engine_num_gpu: int,
    decode_engine_num_gpu: int,
    min_endpoint: int,
    max_gpu_budget: int,
    *,
    decode_min: int | None = None,
) -> BudgetResult:
    """Shrink both pools proportionally until prefill + decode GPUs fit in the budget.

    ``min_endpoint`` is the prefill pool's minimum, and the decode pool's unless ``decode_min``
    says otherwise.
    """
    d_min = min_endpoint if decode_min is None else decode_min
    _check_floor(
        min_endpoint,
        min_endpoint * prefill_engine_num_gpu + d_min * decode_engine_num_gpu,
        max_gpu_budget,
    )
    prefill = max(prefill, min_endpoint)
    decode = max(decode, d_min)
    requested = prefill * prefill_engine_num_gpu + decode * decode_engine_num_gpu
    if requested <= max_gpu_budget:
        return BudgetResult(
            {Pool.PREFILL: prefill, Pool.DECODE: decode},
            BudgetAction.WITHIN_BUDGET,
            requested,
            requested,
            max_gpu_budget,
        )
    # Integer arithmetic: floor(prefill * budget / requested) without float rounding.
    new_prefill = max(min_endpoint, min(prefill, prefill * max_gpu_budget // requested))
    left = max_gpu_budget - new_prefill * prefill_engine_num_gpu
    new_decode = max(d_min, min(decode, left // decode_engine_num_gpu))
    overflow = new_prefill * prefill_engine_num_gpu + new_decode * decode_engine_num_gpu - max_gpu_budget
    if overflow > 0:
        give_back = -(-overflow // prefill_engine_num_gpu)
        new_prefill = max(min_endpoint, new_prefill - give_back)
    used = new_prefill * prefill_engine_num_gpu + new_decode * decode_engine_num_gpu
    return BudgetResult(
        {Pool.PREFILL: new_prefill, Pool.DECODE: new_decode},
        BudgetAction.SCALED_DOWN_TO_BUDGET,
        requested,
        used,
        max_gpu_budget,
    )
