"""Queue-aware sizing of the prefill pool (pure math, no I/O).

The throughput formula sizes prefill to run at 100% utilisation, which is fine for throughput
but not for a TTFT target: requests wait behind each other, and with heavy-tailed prompt lengths
(a 100k-token prompt holds an engine for seconds) the wait dominates. Here the pool is modelled as
an M/G/c queue: Poisson arrivals at rate ``lam``, service time S (the profiled TTFT of a prompt)
with mean ``mean_s`` and squared coefficient of variation ``scv``, ``c`` engines. The probability
that a request waits is Erlang C; its waiting-time tail is taken from M/M/c with the decay rate
scaled by ``2 / (k * (1 + scv))`` (the Allen-Cunneen / Kingman correction for general service
times, ``(ca2 + scv) / 2`` with Poisson's ``ca2 = 1``, times a calibration ``k``):

    P(W > t) ~= C(c, a) * exp(-(c / mean_s - lam) * t * 2 / (k * (1 + scv))),   a = lam * mean_s

``k`` (the *wait factor*) is 1 for the model as it stands, and more for arrivals burstier than
Poisson (``k = (ca2 + scv) / (1 + scv)`` for inter-arrival SCV ``ca2``). The planner sizes with
``k = 1``: measured against the simulator on bursty conversation traces and Poisson ones, the
model is a little optimistic at the engine counts where it matters and pessimistic at larger
ones, and attempts to learn ``k`` online from frontend TTFT proved too noisy to act on (the
misses it would learn from are a few percent, the same size as the uncertainty in which prompts
could never meet the target). :func:`implied_wait_factor` reads the ``k`` that explains an
observed mean wait, for analysis.

A request meets its TTFT when its wait is at most ``ttft_target - S`` for its own service time S,
so the attainment the pool reaches is the mix, over the ISL histogram's buckets, of
P(W <= ttft_target - S_b). Requests whose service alone exceeds the target (prompts too long to
meet it on an idle engine) cannot be helped by more engines and are left out of the share, as
the evaluation's "feasible" attainment leaves them out. The pool needs the smallest ``c`` whose
attainment is at least the target.

Decode is sized the same way for ITL. The requests in decode form an M/G/inf population: the
total in flight is about Poisson with mean ``M`` (the concurrency). The router sends each request
to the engine with the most free KV, so the engines' batches stay close to ``M / c``; what varies
is the total. An engine meets the ITL target up to the batch of its profiled operating point, and
a request's ITL is the average over its own decode, so the quantity to keep within that limit is
the per-engine batch averaged over a request's lifetime, ``(M + z * sqrt(0.74 M)) / c`` at the
attainment target's normal quantile ``z`` (averaging an M/M/inf population over one mean duration
leaves ``2 / e ~ 0.74`` of its variance). Treating each engine's batch as independently Poisson
instead sized decode two to three times the pool that meets the target when the operating
batch is small (a few sequences).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

__all__ = [
    "erlang_c",
    "wait_tail",
    "ServiceMoments",
    "service_moments",
    "engines_for_ttft",
    "engines_for_itl",
    "implied_wait_factor",
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


def wait_tail(
    c: int, lam: float, mean_s: float, scv: float, t: float, wait_factor: float = 1.0
) -> float:
    """Approximate P(wait > t) for M/G/c scaled by ``wait_factor``; 1.0 when unstable."""
    a = lam * mean_s
    if a >= c:
        return 1.0
    if t <= 0.0:
        return erlang_c(c, a)
    decay = (c / mean_s - lam) * 2.0 / (max(wait_factor, 1e-3) * (1.0 + max(scv, 0.0)))
    return erlang_c(c, a) * math.exp(-decay * t)


def implied_wait_factor(
    c: int, lam: float, mean_s: float, scv: float, mean_wait_s: float
) -> float | None:
    """The wait factor for which the model's mean wait, ``C(c, a) * k * (1 + scv) / 2 /
    (c / mean_s - lam)``, equals ``mean_wait_s``; None when the window says nothing about it
    (unstable, or too little queueing for the wait to be more than noise: C(c, a) < 0.02)."""
    if c <= 0 or lam <= 0.0 or mean_s <= 0.0 or not math.isfinite(mean_wait_s):
        return None
    a = lam * mean_s
    if a >= c:
        return None
    wait_prob = erlang_c(c, a)
    if wait_prob < 0.02:
        return None
    return 2.0 * max(mean_wait_s, 0.0) * (c / mean_s - lam) / (wait_prob * (1.0 + max(scv, 0.0)))


@dataclass(frozen=True)
class ServiceMoments:
    """Mean (s) and squared coefficient of variation of prefill service time per request, and
    the service-time mix they came from: (service time s, share of requests)."""

    mean_s: float
    scv: float
    from_histogram: bool
    mix: tuple[tuple[float, float], ...] = ()

    def attainment(
        self, c: int, lam: float, ttft_target_s: float, wait_factor: float = 1.0
    ) -> float | None:
        """Share of feasible requests whose TTFT meets the target with ``c`` engines; None when
        none is feasible."""
        mix = self.mix or ((self.mean_s, 1.0),)
        feasible = [(s, w) for s, w in mix if s < ttft_target_s]
        total = sum(w for _, w in feasible)
        if total <= 0.0:
            return None
        met = sum(
            w * (1.0 - wait_tail(c, lam, self.mean_s, self.scv, ttft_target_s - s, wait_factor))
            for s, w in feasible
        )
        return met / total


_SUBPOINTS = 4


def service_moments(
    ttft_s_at: object,
    mean_isl: float,
    isl_buckets: Sequence[tuple[float, float]] | None,
) -> ServiceMoments:
    """Service-time moments from the ISL histogram of the last window (when there is one).

    ``ttft_s_at(isl)`` is the profiled single-request prefill time in seconds. Each bucket
    ``(upper_bound, count)`` is spread over four points, log-spaced inside its bounds (the first
    bucket's lower bound is half its upper; the +Inf bucket spans up to twice the last finite
    bound), so the mix resolves which requests are too long to meet a target within a bucket.
    Without a usable histogram: the mean ISL's service time and scv 1 (exponential).
    """
    f = ttft_s_at  # callable: isl -> seconds
    if isl_buckets:
        total = 0.0
        s1 = 0.0
        s2 = 0.0
        lower: float | None = None
        last_finite: float | None = None
        mix: list[tuple[float, float]] = []
        for upper, count in isl_buckets:
            if math.isfinite(upper):
                lo = upper / 2.0 if lower is None else lower
                hi = upper
                last_finite = upper
                lower = upper
            else:
                lo = last_finite or max(mean_isl, 1.0)
                hi = 2.0 * lo
            if count <= 0:
                continue
            lo, hi = max(lo, 1.0), max(hi, 1.0)
            for k in range(_SUBPOINTS):
                point = lo * (hi / lo) ** ((k + 0.5) / _SUBPOINTS)
                s = float(f(point))  # type: ignore[operator]
                w = count / _SUBPOINTS
                total += w
                s1 += w * s
                s2 += w * s * s
                mix.append((s, w))
        if total > 0 and s1 > 0:
            mean = s1 / total
            scv = max(s2 / total / (mean * mean) - 1.0, 0.0)
            return ServiceMoments(mean, scv, True, tuple((s, w / total) for s, w in mix))
    mean = float(f(mean_isl))  # type: ignore[operator]
    return ServiceMoments(mean, 1.0, False, ((mean, 1.0),))


def engines_for_ttft(
    lam: float,
    moments: ServiceMoments,
    ttft_target_s: float,
    attainment: float,
    max_engines: int,
    wait_factor: float = 1.0,
) -> int | None:
    """Smallest engine count meeting the TTFT target for ``attainment`` of the feasible requests.

    None when no request is feasible (every service time alone exceeds the target) or the answer
    would exceed ``max_engines``.
    """
    if lam <= 0.0:
        return 1
    c = max(1, math.floor(lam * moments.mean_s) + 1)
    while c <= max_engines:
        reached = moments.attainment(c, lam, ttft_target_s, wait_factor)
        if reached is None:
            return None
        if reached >= attainment:
            return c
        c += 1
    return None


#: Variance of a request's lifetime-average batch over the Poisson batch's (M/M/inf, 2/e).
LIFETIME_VARIANCE = 2.0 / math.e


def engines_for_itl(
    concurrency: float, batch_limit: float, attainment: float, start: int, max_engines: int
) -> int | None:
    """Smallest engine count (from ``start``) whose lifetime-average batch per engine stays
    within ``batch_limit`` for ``attainment`` of requests (see the module docstring); None past
    ``max_engines`` or when no batch meets the target (``batch_limit`` < 1)."""
    if concurrency <= 0.0:
        return max(start, 1)
    if batch_limit < 1.0:
        return None
    z = max(NormalDist().inv_cdf(attainment), 0.0)
    high = concurrency + z * math.sqrt(LIFETIME_VARIANCE * concurrency)
    c = max(start, 1, math.ceil(high / batch_limit - 1e-9))
    return c if c <= max_engines else None
