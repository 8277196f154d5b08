"""GPU budget and minimum-engine rules of PlannerConfig (the Dynamo-compatible ones, DESIGN 4.11).

Per-role minimums (``prefill_min_endpoint``, ``decode_min_endpoint``) replace ``min_endpoint``
for their role when set and are refused in a mode without that role; a negative
``max_gpu_budget`` / ``min_gpu_budget`` disables the ceiling / the floor; the floor may not
exceed the ceiling; the minimum footprint (every pool at its minimum) must fit the ceiling.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

__all__ = ["BudgetProblem", "budget_problems", "footprint", "role_minimum"]


class BudgetProblem(NamedTuple):
    """One broken rule: ``field: message``, and whether it is an infeasible footprint."""

    message: str
    infeasible_budget: bool = False


def role_minimum(values: Mapping[str, Any], role: str) -> int:
    """Minimum engines of ``role``: its own ``<role>_min_endpoint`` when set, else min_endpoint."""
    own = values.get(f"{role}_min_endpoint")
    return int(own if own is not None else values["min_endpoint"])


def _minimum_name(values: Mapping[str, Any], role: str) -> str:
    """The field supplying ``role``'s minimum, for messages."""
    own = f"{role}_min_endpoint"
    return own if values.get(own) is not None else "min_endpoint"


def footprint(values: Mapping[str, Any]) -> tuple[int, str]:
    """Minimum GPUs of the mode's pools at their minimum engine counts, with the arithmetic."""
    mode = values["mode"]
    prefill_gpus, decode_gpus = values["prefill_engine_num_gpu"], values["decode_engine_num_gpu"]
    if mode == "disagg":
        p_name, d_name = _minimum_name(values, "prefill"), _minimum_name(values, "decode")
        p_min, d_min = role_minimum(values, "prefill"), role_minimum(values, "decode")
        total = p_min * prefill_gpus + d_min * decode_gpus
        if p_name == d_name:  # one shared minimum: the long-standing form
            return total, (
                f"{p_name} * (prefill_engine_num_gpu + decode_engine_num_gpu) = "
                f"{p_min} * ({prefill_gpus} + {decode_gpus}) = {total}"
            )
        return total, (
            f"{p_name} * prefill_engine_num_gpu + {d_name} * decode_engine_num_gpu = "
            f"{p_min} * {prefill_gpus} + {d_min} * {decode_gpus} = {total}"
        )
    if mode == "prefill":
        name, minimum, gpus, gpu_name = (
            _minimum_name(values, "prefill"), role_minimum(values, "prefill"),
            prefill_gpus, "prefill_engine_num_gpu",
        )
    elif mode == "decode":
        name, minimum, gpus, gpu_name = (
            _minimum_name(values, "decode"), role_minimum(values, "decode"),
            decode_gpus, "decode_engine_num_gpu",
        )
    else:
        name, minimum, gpus, gpu_name = (
            "min_endpoint", int(values["min_endpoint"]), decode_gpus, "decode_engine_num_gpu"
        )
    total = minimum * gpus
    return total, f"{name} * {gpu_name} = {minimum} * {gpus} = {total}"


_INACTIVE_ROLE_FIELDS: Mapping[str, tuple[str, ...]] = {
    "disagg": (),
    "prefill": ("decode_min_endpoint",),
    "decode": ("prefill_min_endpoint",),
    "agg": ("prefill_min_endpoint", "decode_min_endpoint"),
}


def budget_problems(
    values: Mapping[str, Any], usable: Callable[..., bool]
) -> list[BudgetProblem]:
    """GPU budget rules: per-role minimums in their modes, floor <= ceiling, footprint fits."""
    problems: list[BudgetProblem] = []
    if usable("mode", "prefill_min_endpoint", "decode_min_endpoint"):
        for name in _INACTIVE_ROLE_FIELDS[values["mode"]]:
            if values.get(name) is not None:
                instead = " (use min_endpoint)" if values["mode"] == "agg" else ""
                problems.append(
                    BudgetProblem(f"{name}: has no pool in mode {values['mode']!r}{instead}; leave it unset")
                )
    ceiling, floor = values.get("max_gpu_budget"), values.get("min_gpu_budget")
    if (
        usable("max_gpu_budget", "min_gpu_budget")
        and ceiling is not None and floor is not None and ceiling >= 0 and floor > ceiling
    ):
        problems.append(
            BudgetProblem(
                f"min_gpu_budget, max_gpu_budget: min_gpu_budget ({floor}) must be at most "
                f"max_gpu_budget ({ceiling}); a negative value disables either"
            )
        )
    footprint_fields = (
        "mode", "min_endpoint", "prefill_min_endpoint", "decode_min_endpoint",
        "prefill_engine_num_gpu", "decode_engine_num_gpu", "max_gpu_budget",
    )
    if usable(*footprint_fields) and ceiling is not None and ceiling >= 0:
        total, arithmetic = footprint(values)
        if total > ceiling:
            problems.append(
                BudgetProblem(
                    f"max_gpu_budget: minimum footprint in mode {values['mode']!r} is {arithmetic} "
                    f"GPUs, which exceeds max_gpu_budget={ceiling}",
                    infeasible_budget=True,
                )
            )
    return problems
