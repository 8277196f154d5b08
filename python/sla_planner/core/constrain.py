"""The last step of every decision: per-pool minimums, then the GPU budget (pure).

DESIGN.md §4.9: the budget is the last word. Whatever the loops proposed, and whatever held a pool
(start-up in progress, an SLA being violated, the throughput floor), the targets that leave the
core hold at least each pool's minimum and at most ``max_gpus`` GPUs. Over budget, the pools that
grow this tick give back first (down to what they run now), then every pool shrinks in proportion
(:func:`~sla_planner.core.budget.fit_disagg_to_budget`). Under a GPU floor (``min_gpus``), pools
grow in proportion to their targets, never past the budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..types import Pool
from .budget import fit_disagg_to_budget, fit_pool_to_budget
from .settings import PoolLimits

__all__ = ["Constrained", "constrain"]


@dataclass(frozen=True)
class Constrained:
    """Targets after the constraints, and which constraints changed them."""

    targets: dict[Pool, int]
    rules: tuple[str, ...]
    """``min_replicas``, ``max_gpu_budget``, ``min_gpu_budget``: each that changed a target."""
    gpus: int


def _shrink_growth(
    targets: dict[Pool, int], current: dict[Pool, int], limits: PoolLimits, max_gpus: int
) -> dict[Pool, int]:
    """Give back this tick's growth, largest GPU cost first, until the budget holds."""
    out = dict(targets)
    for pool in sorted(out, key=lambda p: -limits.gpus_per_engine[p]):
        floor = max(current.get(pool, 0), limits.min_replicas[pool])
        while out[pool] > floor and limits.gpus(out) > max_gpus:
            out[pool] -= 1
    return out


def _fit_budget(targets: dict[Pool, int], limits: PoolLimits, max_gpus: int) -> dict[Pool, int]:
    if set(targets) == {Pool.PREFILL, Pool.DECODE}:
        fit = fit_disagg_to_budget(
            targets[Pool.PREFILL],
            targets[Pool.DECODE],
            limits.gpus_per_engine[Pool.PREFILL],
            limits.gpus_per_engine[Pool.DECODE],
            limits.min_replicas[Pool.PREFILL],
            max_gpus,
            decode_min=limits.min_replicas[Pool.DECODE],
        )
        return dict(fit.replicas)
    out: dict[Pool, int] = {}
    for pool, n in targets.items():
        fit1 = fit_pool_to_budget(
            pool, n, limits.gpus_per_engine[pool], limits.min_replicas[pool], max_gpus
        )
        out[pool] = fit1.replicas[pool]
    return out


def _grow_to_floor(targets: dict[Pool, int], limits: PoolLimits, min_gpus: int) -> dict[Pool, int]:
    """Add engines, one at a time, to the pool furthest below its proportional share."""
    out = dict(targets)
    weight = {p: max(n, 1) for p, n in targets.items()}
    total_weight = sum(weight.values())
    while limits.gpus(out) < min_gpus:
        fits = [
            p
            for p in out
            if limits.max_gpus is None
            or limits.gpus(out) + limits.gpus_per_engine[p] <= limits.max_gpus
        ]
        if not fits:
            break
        pool = min(fits, key=lambda p: (out[p] / (weight[p] / total_weight), p.value))
        out[pool] += 1
    return out


def constrain(
    targets: dict[Pool, int], limits: PoolLimits, current: dict[Pool, int] | None = None
) -> Constrained:
    """Apply minimums, the GPU budget and the GPU floor, in that order (see module docstring)."""
    rules: list[str] = []
    out = {p: max(int(n), limits.min_replicas[p]) for p, n in targets.items()}
    if out != targets:
        rules.append("min_replicas")
    if limits.max_gpus is not None and limits.gpus(out) > limits.max_gpus:
        out = _shrink_growth(out, current or {}, limits, limits.max_gpus)
        if limits.gpus(out) > limits.max_gpus:
            out = _fit_budget(out, limits, limits.max_gpus)
        rules.append("max_gpu_budget")
    if limits.min_gpus is not None and limits.gpus(out) < limits.min_gpus:
        grown = _grow_to_floor(out, limits, limits.min_gpus)
        if grown != out:
            rules.append("min_gpu_budget")
        out = grown
    return Constrained(out, tuple(rules), limits.gpus(out))
