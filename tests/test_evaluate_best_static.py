"""The best-static search on fake replay functions with known monotone attainment."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest

from sla_planner.evaluate.best_static import search_best_static

Att = Callable[[tuple[int, ...]], float]


def separable(p_half: float, d_half: float) -> Att:
    """TTFT misses fall with prefill, ITL misses with decode; joint = 1 - both (monotone)."""

    def att(r: tuple[int, ...]) -> float:
        p, d = r
        return max(0.0, 1.0 - 0.5 * 0.5 ** (p / p_half) - 0.5 * 0.5 ** (d / d_half))

    return att


def threshold(p_min: int, d_min: int) -> Att:
    """Perfect when both pools reach their minimum, nothing otherwise (no interaction)."""
    return lambda r: 1.0 if r[0] >= p_min and r[1] >= d_min else 0.0


def coupled(p_min: int, d_min: int) -> Att:
    """Reaching both minima is not enough: one more engine in either pool is needed."""
    return lambda r: 1.0 if r[0] >= p_min and r[1] >= d_min and r[0] + r[1] >= p_min + d_min + 1 else 0.5


def brute_force(att: Att, target: float, gpus: tuple[int, int], limit: int = 64) -> tuple[int, int]:
    ok = [r for r in itertools.product(range(1, limit), repeat=2) if att(r) >= target]
    return min(ok, key=lambda r: (r[0] * gpus[0] + r[1] * gpus[1], r))


def cost(r: tuple[int, ...], gpus: tuple[int, ...]) -> int:
    return sum(a * b for a, b in zip(r, gpus))


# (case, attainment, start, GPUs per engine, target, adjust replays expected at most)
CASES = [
    ("separable, 1 GPU each", separable(3.0, 2.0), (8, 8), (1, 1), 0.95, 6),
    ("separable, 2-GPU prefill", separable(3.0, 2.0), (8, 8), (2, 1), 0.95, 6),
    ("separable, loose target", separable(2.0, 1.0), (4, 4), (1, 1), 0.80, 0),
    ("threshold, start too small (doubling)", threshold(13, 5), (3, 2), (1, 1), 0.95, 0),
    ("threshold, pair verifies", threshold(6, 3), (16, 8), (1, 1), 0.95, 0),
    ("coupled pools need an adjust step", coupled(6, 3), (16, 8), (1, 2), 0.95, 1),
]


@pytest.mark.parametrize(("case", "att", "start", "gpus", "target", "max_adjust"), CASES, ids=[c[0] for c in CASES])
def test_finds_the_cheapest_with_bounded_replays(
    case: str, att: Att, start: tuple[int, int], gpus: tuple[int, int], target: float, max_adjust: int
) -> None:
    calls: list[tuple[int, ...]] = []

    def evaluate(r: tuple[int, ...]) -> float:
        calls.append(r)
        return att(r)

    found = search_best_static(evaluate, start, gpus, target)
    expected = brute_force(att, target, gpus)
    assert found.met and not found.exhausted
    assert cost(found.replicas, gpus) == cost(expected, gpus)
    assert found.attainment >= target
    assert len(calls) == len(set(calls)) == found.replays  # every replay is cached
    # the documented bound: doublings + bisections + verify + the deployments between the verified
    # pair and the answer
    phases = [p.phase for p in found.probes]
    upper = [p.replicas for p in found.probes if p.phase == "upper bound"][-1]
    bisections = sum(math.ceil(math.log2(u + 1)) for u in upper)
    assert phases.count("bisect pool 0") + phases.count("bisect pool 1") <= bisections
    pair = [p.replicas for p in found.probes if p.phase == "verify"] or [found.replicas]
    between = [
        r for r in itertools.product(*(range(a, b + 1) for a, b in zip(pair[0], upper)))
        if cost(r, gpus) <= cost(found.replicas, gpus) and r != pair[0]
    ]
    assert phases.count("adjust") <= min(len(between), max_adjust)
    assert found.replays <= phases.count("upper bound") + bisections + 1 + len(between)


def test_target_out_of_reach_within_the_budget() -> None:
    att = separable(20.0, 20.0)  # needs ~100 engines per pool for 0.95
    found = search_best_static(att, (4, 4), (1, 1), 0.95, max_gpus=16)
    assert not found.met
    assert cost(found.replicas, (1, 1)) <= 16
    assert found.attainment == max(p.attainment for p in found.probes)
    assert found.replays <= 4


def test_replay_cap_returns_the_cheapest_known_success() -> None:
    found = search_best_static(threshold(13, 5), (16, 8), (1, 1), 0.95, max_replays=3)
    assert found.exhausted and found.met
    assert found.replays == 3
    assert found.replicas == min(
        (p.replicas for p in found.probes if p.attainment >= 0.95), key=lambda r: (sum(r), r)
    )


def test_one_pool_is_a_plain_bisection() -> None:
    calls: list[tuple[int, ...]] = []

    def evaluate(r: tuple[int, ...]) -> float:
        calls.append(r)
        return 1.0 if r[0] >= 11 else 0.9

    found = search_best_static(evaluate, (16,), (1,), 0.95)
    assert found.replicas == (11,)
    assert len(calls) == 1 + 4 + 0  # upper bound, 4 bisection steps on (0, 16], verify is cached


def test_minimum_replicas_floor() -> None:
    found = search_best_static(lambda r: 1.0, (4, 4), (1, 1), 0.95, min_replicas=2)
    assert found.replicas == (2, 2)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="one entry per pool"):
        search_best_static(lambda r: 1.0, (4, 4), (1,), 0.95)
    with pytest.raises(ValueError, match="max_replays"):
        search_best_static(lambda r: 1.0, (4, 4), (1, 1), 0.95, max_replays=0)
