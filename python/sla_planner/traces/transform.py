"""Order-preserving transforms of a request stream: stretch time, thin or copy requests, cut.

Each function checks its arguments when called (ConfigError naming the argument) and returns a
lazy iterator; nothing is read from ``reqs`` until the result is iterated.
"""

from __future__ import annotations

import math
from numbers import Integral
from collections.abc import Iterable, Iterator
from dataclasses import replace

import numpy as np

from ..errors import ConfigError
from .mooncake import TraceRequest

__all__ = ["time_scale", "rate_scale", "limit"]

_CHUNK = 1024  # uniform draws per numpy call; fixed so that the stream is deterministic


def time_scale(reqs: Iterable[TraceRequest], factor: float) -> Iterator[TraceRequest]:
    """Every timestamp multiplied by ``factor`` (finite, > 0): < 1 compresses, > 1 stretches."""
    factor = _positive("time_scale factor", factor)
    if factor == 1.0:
        return iter(reqs)
    return (replace(req, timestamp_s=req.timestamp_s * factor) for req in reqs)


def rate_scale(
    reqs: Iterable[TraceRequest], factor: float, seed: int = 0
) -> Iterator[TraceRequest]:
    """Thin or multiply requests so the rate scales by ``factor`` (finite, > 0) on average.

    Each request is emitted ``floor(factor)`` times plus once more with probability
    ``frac(factor)`` (so below 1 it is kept with probability ``factor``; an integer factor is
    exact). Copies are the same request (same timestamp, lengths and line). One uniform draw per
    request from a generator seeded with ``seed`` (an integer >= 0) makes the result
    deterministic.
    """
    factor = _positive("rate_scale factor", factor)
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise ConfigError(f"rate_scale seed must be an integer >= 0, got {seed!r}")
    if factor == 1.0:
        return iter(reqs)
    whole = math.floor(factor)
    frac = factor - whole
    return _rate_scaled(reqs, whole, frac, np.random.default_rng(seed))


def _rate_scaled(
    reqs: Iterable[TraceRequest], whole: int, frac: float, rng: np.random.Generator
) -> Iterator[TraceRequest]:
    coins: list[float] = []
    for req in reqs:
        if not coins:
            coins = rng.random(_CHUNK).tolist()
            coins.reverse()
        copies = whole + (1 if coins.pop() < frac else 0)
        for _ in range(copies):
            yield req


def limit(
    reqs: Iterable[TraceRequest],
    max_requests: int | None = None,
    max_duration_s: float | None = None,
) -> Iterator[TraceRequest]:
    """At most ``max_requests`` requests (an integer >= 0), and only those that arrive within
    ``max_duration_s`` (finite, > 0) of the first request's timestamp (``t < first +
    max_duration_s``). Reading stops at the first request past a limit, and a source that has
    a ``close`` method (a generator) is closed then, releasing its file."""
    bad_count = isinstance(max_requests, bool) or not isinstance(max_requests, Integral)
    if max_requests is not None and (bad_count or max_requests < 0):
        raise ConfigError(f"limit max_requests must be an integer >= 0, got {max_requests!r}")
    if max_duration_s is not None:
        max_duration_s = _positive("limit max_duration_s", max_duration_s)
    if max_requests is None and max_duration_s is None:
        return iter(reqs)
    return _limited(iter(reqs), max_requests, max_duration_s)


def _limited(
    source: Iterator[TraceRequest], max_requests: int | None, max_duration_s: float | None
) -> Iterator[TraceRequest]:
    try:
        count = 0
        end_s = math.inf
        while max_requests is None or count < max_requests:
            req = next(source, None)
            if req is None:
                return
            if count == 0 and max_duration_s is not None:
                end_s = req.timestamp_s + max_duration_s
            if req.timestamp_s >= end_s:
                return
            count += 1
            yield req
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v) or v <= 0.0:
        raise ConfigError(f"{name} must be finite and > 0, got {value!r}")
    return v
