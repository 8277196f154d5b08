"""GPU budget rules: proportional shrink, floors, never growing, boundaries."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sla_planner.core.budget import fit_disagg_to_budget, fit_pool_to_budget
from sla_planner.errors import InfeasibleBudgetError
from sla_planner.types import BudgetAction, Pool

P, D = Pool.PREFILL, Pool.DECODE

# (prefill, decode, gpus_p, gpus_d, min_endpoint, budget) -> (prefill', decode', action)
DISAGG_CASES = {
    # 8 + 6 = 14 GPUs > 10: prefill floor(8*10/14) = 5, decode takes the remaining 5.
    "proportional": ((8, 6, 1, 1, 1, 10), (5, 5, BudgetAction.SCALED_DOWN_TO_BUDGET)),
    # exactly at the budget: untouched
    "at_budget": ((4, 6, 1, 1, 1, 10), (4, 6, BudgetAction.WITHIN_BUDGET)),
    # one GPU over: prefill floor(5*10/11)=4, decode min(6, 10-4)=6
    "one_over": ((5, 6, 1, 1, 1, 10), (4, 6, BudgetAction.SCALED_DOWN_TO_BUDGET)),
    # prefill would round to 0: floored at min_endpoint, decode gets the other 9
    "prefill_floor": ((2, 20, 1, 1, 1, 10), (1, 9, BudgetAction.SCALED_DOWN_TO_BUDGET)),
    # 10*2 + 1*4 = 24 > 6: prefill floor(10*6/24)=2 (4 GPUs), decode floor (6-4)/4 = 0 -> min 1
    # (4 GPUs) overflows by 2, so prefill gives back ceil(2/2)=1 engine: 1*2 + 1*4 = 6.
    "decode_floor_overflow": ((10, 1, 2, 4, 1, 6), (1, 1, BudgetAction.SCALED_DOWN_TO_BUDGET)),
    # below the floor on input: raised to min_endpoint first
    "raise_to_min": ((0, 0, 1, 1, 2, 10), (2, 2, BudgetAction.WITHIN_BUDGET)),
    # multi-GPU engines: 6*2 + 6*2 = 24 > 16: prefill floor(6*16/24)=4 (8), decode 8//2=4
    "multi_gpu": ((6, 6, 2, 2, 1, 16), (4, 4, BudgetAction.SCALED_DOWN_TO_BUDGET)),
}


@pytest.mark.parametrize("args,expected", list(DISAGG_CASES.values()), ids=list(DISAGG_CASES))
def test_disagg_budget_table(args: tuple[int, ...], expected: tuple[int, int, BudgetAction]) -> None:
    result = fit_disagg_to_budget(*args)
    assert (result.replicas[P], result.replicas[D], result.action) == expected
    assert result.gpus_used <= result.max_gpu_budget


@pytest.mark.parametrize(
    "min_endpoint,budget,feasible",
    [(2, 4, True), (2, 3, False), (1, 2, True), (1, 1, False)],
    ids=["footprint_eq_budget", "footprint_one_over", "min1_eq", "min1_over"],
)
def test_disagg_infeasible_floor(min_endpoint: int, budget: int, feasible: bool) -> None:
    if feasible:
        result = fit_disagg_to_budget(5, 5, 1, 1, min_endpoint, budget)
        assert result.replicas == {P: min_endpoint, D: min_endpoint}
    else:
        with pytest.raises(InfeasibleBudgetError, match="max_gpu_budget"):
            fit_disagg_to_budget(5, 5, 1, 1, min_endpoint, budget)


@pytest.mark.parametrize(
    "replicas,gpus,min_endpoint,budget,expected,action",
    [
        (4, 2, 1, 8, 4, BudgetAction.WITHIN_BUDGET),  # 8 GPUs == budget
        (5, 2, 1, 8, 4, BudgetAction.SCALED_DOWN_TO_BUDGET),  # 10 > 8 -> 8 // 2
        (5, 3, 1, 8, 2, BudgetAction.SCALED_DOWN_TO_BUDGET),  # 15 > 8 -> 8 // 3
        (0, 1, 3, 8, 3, BudgetAction.WITHIN_BUDGET),  # floor
    ],
    ids=["at_budget", "over", "uneven", "floor"],
)
def test_single_pool_budget(
    replicas: int, gpus: int, min_endpoint: int, budget: int, expected: int, action: BudgetAction
) -> None:
    result = fit_pool_to_budget(Pool.AGG, replicas, gpus, min_endpoint, budget)
    assert result.replicas == {Pool.AGG: expected}
    assert result.action is action


def test_single_pool_infeasible() -> None:
    with pytest.raises(InfeasibleBudgetError):
        fit_pool_to_budget(Pool.DECODE, 1, 4, 1, 3)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 500),
    st.integers(0, 500),
    st.integers(1, 8),
    st.integers(1, 8),
    st.integers(1, 4),
    st.integers(1, 400),
)
def test_disagg_budget_properties(p: int, d: int, gp: int, gd: int, m: int, budget: int) -> None:
    if m * (gp + gd) > budget:
        with pytest.raises(InfeasibleBudgetError):
            fit_disagg_to_budget(p, d, gp, gd, m, budget)
        return
    r = fit_disagg_to_budget(p, d, gp, gd, m, budget)
    new_p, new_d = r.replicas[P], r.replicas[D]
    assert new_p >= m and new_d >= m  # never under the floor
    assert new_p <= max(p, m) and new_d <= max(d, m)  # never grows a pool
    assert new_p * gp + new_d * gd <= budget  # never over budget
    assert r.gpus_used == new_p * gp + new_d * gd
