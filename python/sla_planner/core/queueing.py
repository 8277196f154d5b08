"""Queue-aware sizing of the prefill pool (pure math, no I/O).

The throughput formula sizes prefill to run at 100% utilisation, which is fine for throughput
but not for a TTFT target: requests wait behind each other, and with heavy-tailed prompt lengths
(a 100k-token prompt holds an engine for seconds) the wait dominates. Here the pool is modelled as
an M/G/c queue: Poisson arrivals at rate ``lam``, service time S (the profiled TTFT of a prompt)
with mean ``mean_s`` and squared coefficient of variation ``scv``, ``c`` engines. The probability
that a request waits is Erlang C; its waiting-time tail is taken from M/M/c with the decay rate
scaled by ``2 / (1 + scv)`` (the Allen-Cunneen / Kingman correction for general service times):

    P(W > t) ~= C(c, a) * exp(-(c / mean_s - lam) * t * 2 / (1 + scv)),   a = lam * mean_s

The pool needs the smallest ``c`` whose P(W > ttft_target - mean_s) is at most
``1 - attainment``.

Decode is sized the same way for ITL: the requests in decode form an M/G/inf population, so the
batch on each of ``c`` engines is about Poisson with mean ``concurrency / c``; an engine meets the
ITL target up to the batch of its profiled operating point, and the pool needs the smallest ``c``
whose P(batch > that limit) is at most ``1 - attainment``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "erlang_c",
    "wait_tail",
    "ServiceMoments",
    "service_moments",
    "engines_for_ttft",
    "engines_for_itl",
]


def erlang_c(c: int, a: float) -> float:
    """Probability that an arrival waits in an M/M/c queue with offered load ``a`` (< c)."""
    if c <= 0:
        raise ValueError(f"erlang_c: c must be >= 1, got {c}")
    if not (math.isfinite(a) and a >= 0.0):
        raise ValueError(f"erlang_c: offered load must be finite and >= 0, got {a}")
    if a == 0.0:
        return 0.0
    if a >= c:
        return 1.0
    # Erlang B by the stable recurrence, then C from B.
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    rho = a / c
    return b / (1.0 - rho + rho * b)


def wait_tail(c: int, lam: float, mean_s: float, scv: float, t: float) -> float:
    """Approximate P(wait > t) for M/G/c; 1.0 when the queue is unstable."""
    a = lam * mean_s
    if a >= c:
        return 1.0
    if t <= 0.0:
        return erlang_c(c, a)
    decay = (c / mean_s - lam) * 2.0 / (1.0 + max(scv, 0.0))
    return erlang_c(c, a) * math.exp(-decay * t)


@dataclass(frozen=True)
class ServiceMoments:
    """Mean (s) and squared coefficient of variation of prefill service time per request."""

    mean_s: float
    scv: float
    from_histogram: bool


def service_moments(
    ttft_s_at: object,
    mean_isl: float,
    isl_buckets: Sequence[tuple[float, float]] | None,
) -> ServiceMoments:
    """Service-time moments from the ISL histogram of the last window (when there is one).

    ``ttft_s_at(isl)`` is the profiled single-request prefill time in seconds. Each bucket
    ``(upper_bound, count)`` is represented by the geometric middle of its bounds (the first
    bucket's lower bound is half its upper; the +Inf bucket uses twice the last finite bound).
    Without a usable histogram: the mean ISL's service time and scv 1 (exponential).
    """
    f = ttft_s_at  # callable: isl -> seconds
    if isl_buckets:
        total = 0.0
        s1 = 0.0
        s2 = 0.0
        lower = None
        last_finite = None
        for upper, count in isl_buckets:
            if math.isfinite(upper):
                lo = upper / 2.0 if lower is None else lower
                mid = math.sqrt(max(lo, 1.0) * max(upper, 1.0))
                last_finite = upper
                lower = upper
            else:
                mid = 2.0 * (last_finite or max(mean_isl, 1.0))
            if count > 0:
                s = float(f(mid))  # type: ignore[operator]
                total += count
                s1 += count * s
                s2 += count * s * s
        if total > 0 and s1 > 0:
            mean = s1 / total
            scv = max(s2 / total / (mean * mean) - 1.0, 0.0)
            return ServiceMoments(mean, scv, True)
    return ServiceMoments(float(f(mean_isl)), 1.0, False)  # type: ignore[operator]


def engines_for_ttft(
    lam: float,
    moments: ServiceMoments,
    ttft_target_s: float,
    attainment: float,
    max_engines: int,
) -> int | None:
    """Smallest engine count meeting the TTFT target for ``attainment`` of requests.

    None when no count can (the service time alone exceeds the target) or the answer would
    exceed ``max_engines``.
    """
    if lam <= 0.0:
        return 1
    budget = ttft_target_s - moments.mean_s
    if budget <= 0.0:
        return None
    allowed = 1.0 - attainment
    c = max(1, math.floor(lam * moments.mean_s) + 1)
    while c <= max_engines:
        if wait_tail(c, lam, moments.mean_s, moments.scv, budget) <= allowed:
            return c
        c += 1
    return None


def _poisson_sf(k: int, mean: float) -> float:
    """P(X > k) for X ~ Poisson(mean)."""
    from scipy.stats import poisson

    return float(poisson.sf(k, mean))


def engines_for_itl(
    concurrency: float, batch_limit: float, attainment: float, start: int, max_engines: int
) -> int | None:
    """Smallest engine count (from ``start``) whose per-engine batch stays within
    ``batch_limit`` with probability ``attainment``; None past ``max_engines`` or when no batch
    meets the target (``batch_limit`` < 1)."""
    if concurrency <= 0.0:
        return max(start, 1)
    if batch_limit < 1.0:
        return None
    k = math.floor(batch_limit)
    allowed = 1.0 - attainment
    c = max(start, 1)
    while c <= max_engines:
        if _poisson_sf(k, concurrency / c) <= allowed:
            return c
        c += 1
    return None
