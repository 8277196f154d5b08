"""The best static deployment in hindsight: the cheapest fixed replica counts reaching a target.

Replays are expensive, so the search exploits the shape of the problem: TTFT depends mostly on the
prefill count and ITL mostly on the decode count, and attainment never falls when a pool grows
(assumed monotone). With ``evaluate(replicas) -> attainment``:

1. **Upper bound**: start from a generous deployment (twice the oracle's peak); double every pool
   until the target is reached (or the GPU budget stops growth: then no deployment within the
   budget reaches it and the best attainment seen is returned, ``met=False``).
2. **Bisection per pool**, the other pools held at the upper bound: the smallest count of that pool
   that still reaches the target. By monotonicity no deployment reaching the target has fewer.
3. **Verify** the pair of those minima. If it falls short (the pools' misses add up), **adjust**:
   visit the deployments between the pair and the upper bound in order of GPU cost (Dijkstra over
   the lattice; equal costs in order of the attainment predicted by adding each pool's measured
   misses), skipping any that a known failure dominates, until one reaches the target; the first
   that does is the cheapest.

Every evaluation is cached. A search takes one replay per doubling, ``ceil(log2(P_hi + 1)) +
ceil(log2(D_hi + 1))`` for the bisections (fewer when a probe is already cached) and one to verify;
the adjust step adds at most one per deployment between the pair and the answer that no known
failure dominates (none when the pair verifies, typically one or two). Never more than
``max_replays``: then the cheapest deployment known to reach the target is returned with
``exhausted=True``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Probe", "BestStatic", "search_best_static"]

Replicas = tuple[int, ...]


@dataclass(frozen=True)
class Probe:
    """One evaluated deployment: replica counts, attainment and the search phase that asked."""

    replicas: Replicas
    attainment: float
    phase: str


@dataclass(frozen=True)
class BestStatic:
    """The search's answer and its trail."""

    replicas: Replicas
    attainment: float
    target: float
    met: bool
    exhausted: bool
    probes: tuple[Probe, ...]

    @property
    def replays(self) -> int:
        """Distinct deployments evaluated."""
        return len(self.probes)


class _Search:
    def __init__(
        self,
        evaluate: Callable[[Replicas], float],
        gpus: Sequence[int],
        target: float,
        max_replays: int,
    ) -> None:
        self.evaluate = evaluate
        self.gpus = tuple(gpus)
        self.target = target
        self.max_replays = max_replays
        self.cache: dict[Replicas, float] = {}
        self.probes: list[Probe] = []

    def cost(self, r: Replicas) -> int:
        return sum(n * g for n, g in zip(r, self.gpus))

    def att(self, r: Replicas, phase: str) -> float:
        if r not in self.cache:
            if len(self.probes) >= self.max_replays:
                raise _Exhausted
            value = float(self.evaluate(r))
            self.cache[r] = value
            self.probes.append(Probe(r, value, phase))
        return self.cache[r]

    def ok(self, r: Replicas, phase: str) -> bool:
        return self.att(r, phase) >= self.target

    def dominated_failure(self, r: Replicas) -> bool:
        """A known failure with at least as many engines in every pool."""
        return any(
            v < self.target and all(a <= b for a, b in zip(r, f)) for f, v in self.cache.items()
        )

    def cheapest_success(self) -> Replicas | None:
        wins = [r for r, v in self.cache.items() if v >= self.target]
        return min(wins, key=lambda r: (self.cost(r), r)) if wins else None

    def result(self, r: Replicas, met: bool, exhausted: bool) -> BestStatic:
        return BestStatic(r, self.cache[r], self.target, met, exhausted, tuple(self.probes))


class _Exhausted(Exception):
    pass


def _grow(r: Replicas, gpus: Sequence[int], max_gpus: int | None, floor: int) -> Replicas:
    doubled = tuple(2 * n for n in r)
    if max_gpus is None:
        return doubled
    cost = sum(n * g for n, g in zip(doubled, gpus))
    if cost <= max_gpus:
        return doubled
    factor = max_gpus / cost
    return tuple(max(floor, int(n * factor)) for n in doubled)


def search_best_static(
    evaluate: Callable[[Replicas], float],
    start: Replicas,
    gpus_per_engine: Sequence[int],
    target: float,
    *,
    min_replicas: int = 1,
    max_gpus: int | None = None,
    max_replays: int = 40,
) -> BestStatic:
    """The cheapest replica tuple (GPU cost) whose attainment reaches ``target`` (module doc)."""
    if len(start) != len(gpus_per_engine) or not start:
        raise ValueError("search_best_static: start and gpus_per_engine need one entry per pool")
    if max_replays < 1:
        raise ValueError("search_best_static: max_replays must be >= 1")
    s = _Search(evaluate, gpus_per_engine, target, max_replays)
    upper = tuple(max(min_replicas, n) for n in start)
    try:
        while not s.ok(upper, "upper bound"):
            grown = _grow(upper, gpus_per_engine, max_gpus, min_replicas)
            if all(a <= b for a, b in zip(grown, upper)):
                best = max(s.cache, key=lambda r: (s.cache[r], -s.cost(r)))
                return s.result(best, False, False)
            upper = tuple(max(a, b) for a, b in zip(grown, upper))
        lower = list(upper)
        for j in range(len(upper)):
            lo, hi = min_replicas - 1, upper[j]
            while hi - lo > 1:
                mid = (lo + hi) // 2
                probe = upper[:j] + (mid,) + upper[j + 1:]
                if s.ok(probe, f"bisect pool {j}"):
                    hi = mid
                else:
                    lo = mid
            lower[j] = hi
        pair = tuple(lower)
        if s.ok(pair, "verify"):
            return s.result(pair, True, False)
        return _adjust(s, pair, upper)
    except _Exhausted:
        best_known = s.cheapest_success()
        if best_known is None:
            best_known = max(s.cache, key=lambda r: (s.cache[r], -s.cost(r)))
            return s.result(best_known, False, True)
        return s.result(best_known, True, True)


def _predicted(s: _Search, r: Replicas, upper: Replicas) -> float:
    """Attainment if each pool's misses add up: per pool, the misses measured on its bisection
    line (the other pools at ``upper``) at the largest probed count <= r's; a tie-breaker only."""
    base = 1.0 - s.cache.get(upper, 1.0)
    total = base
    for j in range(len(r)):
        line = [
            (f[j], 1.0 - v) for f, v in s.cache.items()
            if all(f[i] == upper[i] for i in range(len(r)) if i != j) and f[j] <= r[j]
        ]
        miss = max(line)[1] if line else 1.0
        total += miss - base
    return 1.0 - total


def _adjust(s: _Search, pair: Replicas, upper: Replicas) -> BestStatic:
    """Dijkstra from ``pair`` towards ``upper`` in GPU cost; the first success is the cheapest.

    Deployments of equal cost are tried in order of predicted attainment (:func:`_predicted`)."""
    heap: list[tuple[int, Replicas]] = [(s.cost(pair), pair)]
    seen = {pair}
    while heap:
        level_cost = heap[0][0]
        level = []
        while heap and heap[0][0] == level_cost:
            level.append(heapq.heappop(heap)[1])
        level.sort(key=lambda r: (-_predicted(s, r, upper), r))
        for r in level:
            known = s.cache.get(r)
            if known is not None:
                success = known >= s.target
            elif s.dominated_failure(r):
                success = False
            else:
                success = s.ok(r, "adjust")
            if success:
                return s.result(r, True, False)
            for j in range(len(r)):
                if r[j] < upper[j]:
                    nxt = r[:j] + (r[j] + 1,) + r[j + 1:]
                    if nxt not in seen:
                        seen.add(nxt)
                        heapq.heappush(heap, (s.cost(nxt), nxt))
    # unreachable under monotonicity (upper succeeds); fall back to the cheapest known success
    best = s.cheapest_success()
    assert best is not None
    return s.result(best, True, False)
