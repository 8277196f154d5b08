"""Seeded synthetic traces: Poisson arrivals with a shaped rate, and drawn token lengths.

Every generator yields :class:`TraceRequest` lazily (memory does not grow with the duration),
with arrivals in ``[0, duration_s)``, ``hash_ids=None`` and ``line`` = the request's 1-based
index. Arrivals, acceptance draws and ISL/OSL come from independent streams spawned from one
``seed``, so the same seed gives the same stream, and changing a length distribution does not
move the arrivals.

Rate shapes (requests per second at time ``t``):

- ``poisson``: ``rate_rps``.
- ``ramp``: linear from ``rate_start`` at 0 to ``rate_end`` at ``duration_s`` (thinning).
- ``bursts``: ``burst_rps`` during ``[k * burst_every_s, k * burst_every_s + burst_len_s)`` for
  k = 1, 2, ..., ``base_rps`` elsewhere (the trace opens calm).
- ``diurnal``: ``mean_rps * (1 - amplitude * cos(2 pi t / period_s))``: lowest at t = 0 (night),
  highest at ``period_s / 2`` (thinning).

Invalid arguments raise :class:`ConfigError` naming the argument, when the generator is created.

A spec string names one of them for the command line: ``synthetic:KIND?key=value&...`` with the
function's arguments as keys, plus optional ``isl`` and ``osl`` (``N`` or
``lognormal:MEAN:CV[:MAX]``) and ``seed``; for example
``synthetic:bursts?base_rps=2&burst_rps=12&burst_every_s=600&burst_len_s=120&duration_s=3600``.
"""

from __future__ import annotations

import math
from numbers import Integral
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import ConfigError
from .mooncake import TraceRequest

__all__ = [
    "LengthDist",
    "DEFAULT_ISL",
    "DEFAULT_OSL",
    "DEFAULT_MAX_TOKENS",
    "poisson",
    "ramp",
    "bursts",
    "diurnal",
    "SYNTHETIC_PREFIX",
    "SYNTHETIC_KINDS",
    "open_synthetic",
]

DEFAULT_MAX_TOKENS = 131_072
_CHUNK = 1024  # draws per numpy call; fixed so that streams do not depend on consumption


@dataclass(frozen=True, slots=True)
class LengthDist:
    """A token-length distribution: a constant, or a lognormal with a mean and a coefficient of
    variation, rounded and clipped to ``[1, max_tokens]``."""

    kind: Literal["constant", "lognormal"]
    mean: float
    cv: float = 0.0
    max_tokens: int = DEFAULT_MAX_TOKENS

    @classmethod
    def constant(cls, tokens: int) -> LengthDist:
        """Every request has ``tokens`` tokens (an integer >= 1)."""
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
            raise ConfigError(f"constant length must be an integer >= 1, got {tokens!r}")
        return cls("constant", float(tokens), 0.0, tokens)

    @classmethod
    def lognormal(
        cls, mean: float, cv: float, max_tokens: int = DEFAULT_MAX_TOKENS
    ) -> LengthDist:
        """Lognormal lengths with mean ``mean`` (>= 1) and coefficient of variation ``cv``
        (>= 0), clipped to ``[1, max_tokens]``."""
        mean = _real("lognormal mean", mean, minimum=1.0)
        cv = _real("lognormal cv", cv, minimum=0.0)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ConfigError(f"lognormal max_tokens must be an integer >= 1, got {max_tokens!r}")
        return cls("lognormal", mean, cv, max_tokens)

    @classmethod
    def parse(cls, text: str) -> LengthDist:
        """``N`` (constant) or ``lognormal:MEAN:CV[:MAX]``; ConfigError naming the rule."""
        value = text.strip()
        if value.lower().startswith("lognormal:"):
            parts = value.split(":")[1:]
            if len(parts) not in (2, 3):
                raise ConfigError(f"length {text!r}: expected lognormal:MEAN:CV or "
                                  "lognormal:MEAN:CV:MAX")
            mean = _parse_float(f"length {text!r} MEAN", parts[0])
            cv = _parse_float(f"length {text!r} CV", parts[1])
            if len(parts) == 3:
                return cls.lognormal(mean, cv, _parse_int(f"length {text!r} MAX", parts[2]))
            return cls.lognormal(mean, cv)
        return cls.constant(_parse_int(f"length {text!r}", value))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` lengths (int64) drawn from ``rng``; a constant draws nothing."""
        if self.kind == "constant" or self.cv == 0.0:
            return np.full(n, min(max(round(self.mean), 1), self.max_tokens), dtype=np.int64)
        sigma2 = math.log1p(self.cv * self.cv)
        mu = math.log(self.mean) - sigma2 / 2.0
        draws = rng.lognormal(mu, math.sqrt(sigma2), n)
        return np.clip(np.rint(draws), 1, self.max_tokens).astype(np.int64)


DEFAULT_ISL = LengthDist.constant(3000)
DEFAULT_OSL = LengthDist.constant(150)


def poisson(
    rate_rps: float,
    duration_s: float,
    *,
    isl: LengthDist = DEFAULT_ISL,
    osl: LengthDist = DEFAULT_OSL,
    seed: int = 0,
) -> Iterator[TraceRequest]:
    """Homogeneous Poisson arrivals at ``rate_rps`` (> 0) for ``duration_s``."""
    rate_rps = _real("rate_rps", rate_rps, minimum=0.0, exclusive=True)
    duration_s = _duration(duration_s)
    streams = _Streams(seed)
    return _emit(_piecewise(streams, [(0.0, duration_s, rate_rps)]), streams, isl, osl)


def ramp(
    rate_start: float,
    rate_end: float,
    duration_s: float,
    *,
    isl: LengthDist = DEFAULT_ISL,
    osl: LengthDist = DEFAULT_OSL,
    seed: int = 0,
) -> Iterator[TraceRequest]:
    """Rate linear from ``rate_start`` to ``rate_end`` (both >= 0, not both 0)."""
    rate_start = _real("rate_start", rate_start, minimum=0.0)
    rate_end = _real("rate_end", rate_end, minimum=0.0)
    duration_s = _duration(duration_s)
    peak = max(rate_start, rate_end)
    if peak == 0.0:
        raise ConfigError("ramp: rate_start and rate_end are both 0; the trace would be empty")
    slope = (rate_end - rate_start) / duration_s
    streams = _Streams(seed)
    arrivals = _thinned(streams, lambda t: rate_start + slope * t, peak, duration_s)
    return _emit(arrivals, streams, isl, osl)


def bursts(
    base_rps: float,
    burst_rps: float,
    burst_every_s: float,
    burst_len_s: float,
    duration_s: float,
    *,
    isl: LengthDist = DEFAULT_ISL,
    osl: LengthDist = DEFAULT_OSL,
    seed: int = 0,
) -> Iterator[TraceRequest]:
    """``burst_rps`` for ``burst_len_s`` starting every ``burst_every_s`` (first at
    ``burst_every_s``), ``base_rps`` elsewhere."""
    base_rps = _real("base_rps", base_rps, minimum=0.0)
    burst_rps = _real("burst_rps", burst_rps, minimum=0.0)
    burst_every_s = _real("burst_every_s", burst_every_s, minimum=0.0, exclusive=True)
    burst_len_s = _real("burst_len_s", burst_len_s, minimum=0.0, exclusive=True)
    duration_s = _duration(duration_s)
    if burst_len_s > burst_every_s:
        raise ConfigError(
            f"bursts: burst_len_s ({burst_len_s:g}) must be <= burst_every_s ({burst_every_s:g})"
        )
    if max(base_rps, burst_rps) == 0.0:
        raise ConfigError("bursts: base_rps and burst_rps are both 0; the trace would be empty")
    streams = _Streams(seed)
    segments = _burst_segments(base_rps, burst_rps, burst_every_s, burst_len_s, duration_s)
    return _emit(_piecewise(streams, segments), streams, isl, osl)


def diurnal(
    mean_rps: float,
    amplitude: float,
    period_s: float,
    duration_s: float,
    *,
    isl: LengthDist = DEFAULT_ISL,
    osl: LengthDist = DEFAULT_OSL,
    seed: int = 0,
) -> Iterator[TraceRequest]:
    """Day-shaped sinusoidal rate around ``mean_rps`` (> 0), ``amplitude`` in [0, 1]."""
    mean_rps = _real("mean_rps", mean_rps, minimum=0.0, exclusive=True)
    amplitude = _real("amplitude", amplitude, minimum=0.0)
    if amplitude > 1.0:
        raise ConfigError(f"amplitude must be <= 1, got {amplitude!r}")
    period_s = _real("period_s", period_s, minimum=0.0, exclusive=True)
    duration_s = _duration(duration_s)
    omega = 2.0 * math.pi / period_s
    streams = _Streams(seed)
    arrivals = _thinned(
        streams,
        lambda t: mean_rps * (1.0 - amplitude * math.cos(omega * t)),
        mean_rps * (1.0 + amplitude),
        duration_s,
    )
    return _emit(arrivals, streams, isl, osl)


SYNTHETIC_PREFIX = "synthetic:"
_SPEC_OPTIONAL = ("isl", "osl", "seed")
_SPEC_KINDS: dict[str, tuple[Callable[..., Iterator[TraceRequest]], tuple[str, ...]]] = {
    "poisson": (poisson, ("rate_rps", "duration_s")),
    "ramp": (ramp, ("rate_start", "rate_end", "duration_s")),
    "bursts": (bursts, ("base_rps", "burst_rps", "burst_every_s", "burst_len_s", "duration_s")),
    "diurnal": (diurnal, ("mean_rps", "amplitude", "period_s", "duration_s")),
}
SYNTHETIC_KINDS: tuple[str, ...] = tuple(_SPEC_KINDS)


def open_synthetic(spec: str) -> Iterator[TraceRequest]:
    """The synthetic trace a ``synthetic:KIND?key=value&...`` spec names.

    ConfigError naming the kind or key (and listing the allowed ones) for an unknown kind or
    key, a repeated or missing key, or a bad value; raised here, before anything is drawn.
    """
    if not isinstance(spec, str) or not spec.startswith(SYNTHETIC_PREFIX):
        raise ConfigError(f"synthetic spec must start with {SYNTHETIC_PREFIX!r}, got {spec!r}")
    kind, _, query = spec[len(SYNTHETIC_PREFIX):].partition("?")
    kind = kind.strip()
    if kind not in _SPEC_KINDS:
        raise ConfigError(
            f"synthetic spec {spec!r}: unknown kind {kind!r}; allowed: {', '.join(_SPEC_KINDS)}"
        )
    function, required = _SPEC_KINDS[kind]
    allowed = required + _SPEC_OPTIONAL
    values: dict[str, str] = {}
    for item in query.split("&") if query else ():
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq:
            raise ConfigError(f"synthetic spec {spec!r}: {item!r} is not key=value")
        if key not in allowed:
            raise ConfigError(
                f"synthetic spec {spec!r}: unknown key {key!r} for {kind}; "
                f"allowed: {', '.join(allowed)}"
            )
        if key in values:
            raise ConfigError(f"synthetic spec {spec!r}: key {key!r} is given twice")
        values[key] = value.strip()
    missing = [key for key in required if key not in values]
    if missing:
        raise ConfigError(
            f"synthetic spec {spec!r}: missing key(s) {', '.join(missing)} for {kind}; "
            f"required: {', '.join(required)}"
        )
    try:
        args = [_parse_float(key, values[key]) for key in required]
        options: dict[str, object] = {}
        for key in ("isl", "osl"):
            if key in values:
                try:
                    options[key] = LengthDist.parse(values[key])
                except ConfigError as exc:
                    raise ConfigError(f"{key}: {exc}") from None
        if "seed" in values:
            options["seed"] = _parse_int("seed", values["seed"])
        return function(*args, **options)
    except ConfigError as exc:
        raise ConfigError(f"synthetic spec {spec!r}: {exc}") from None


class _Streams:
    """Independent generators spawned from one seed: arrivals, acceptance, ISL, OSL."""

    def __init__(self, seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
        arrival, accept, isl, osl = np.random.SeedSequence(int(seed)).spawn(4)
        self.arrival: np.random.Generator = np.random.default_rng(arrival)
        self.accept: np.random.Generator = np.random.default_rng(accept)
        self.isl: np.random.Generator = np.random.default_rng(isl)
        self.osl: np.random.Generator = np.random.default_rng(osl)


def _chunks(draw: Callable[[int], np.ndarray]) -> Iterator[float]:
    """An endless stream of scalars drawn ``_CHUNK`` at a time."""
    while True:
        yield from draw(_CHUNK).tolist()


def _piecewise(
    streams: _Streams, segments: list[tuple[float, float, float]]
) -> Iterator[float]:
    """Poisson arrivals with a rate constant on each ``(start_s, end_s, rate_rps)`` segment.

    Exact by memorylessness: the gap that overshoots a segment is dropped and the next segment
    starts afresh at its boundary.
    """
    gaps = _chunks(streams.arrival.standard_exponential)
    for start_s, end_s, rate_rps in segments:
        if rate_rps <= 0.0:
            continue
        t = start_s
        while True:
            t += next(gaps) / rate_rps
            if t >= end_s:
                break
            yield t


def _thinned(
    streams: _Streams, rate: Callable[[float], float], peak_rps: float, duration_s: float
) -> Iterator[float]:
    """Non-homogeneous Poisson arrivals by thinning candidates drawn at ``peak_rps``."""
    gaps = _chunks(streams.arrival.standard_exponential)
    coins = _chunks(streams.accept.random)
    t = 0.0
    while True:
        t += next(gaps) / peak_rps
        if t >= duration_s:
            return
        if next(coins) * peak_rps < rate(t):
            yield t


def _burst_segments(
    base_rps: float, burst_rps: float, every_s: float, len_s: float, duration_s: float
) -> list[tuple[float, float, float]]:
    """Segments of the burst schedule, as few as the duration needs (2 per period)."""
    segments: list[tuple[float, float, float]] = []
    t = 0.0
    k = 1
    while t < duration_s:
        burst_start = min(k * every_s, duration_s)
        burst_end = min(k * every_s + len_s, duration_s)
        segments.append((t, burst_start, base_rps))
        segments.append((burst_start, burst_end, burst_rps))
        t = burst_end
        k += 1
    return segments


def _emit(
    arrivals: Iterator[float], streams: _Streams, isl: LengthDist, osl: LengthDist
) -> Iterator[TraceRequest]:
    """Pair arrivals with drawn lengths (validated now, drawn lazily)."""
    for name, dist in (("isl", isl), ("osl", osl)):
        if not isinstance(dist, LengthDist):
            raise ConfigError(f"{name} must be a LengthDist, got {type(dist).__name__}")
    return _pair(arrivals, streams, isl, osl)


def _pair(
    arrivals: Iterator[float], streams: _Streams, isl: LengthDist, osl: LengthDist
) -> Iterator[TraceRequest]:
    isl_tokens = _chunks(lambda n: isl.sample(streams.isl, n))
    osl_tokens = _chunks(lambda n: osl.sample(streams.osl, n))
    for index, t in enumerate(arrivals, start=1):
        yield TraceRequest(t, int(next(isl_tokens)), int(next(osl_tokens)), None, index)


def _real(name: str, value: float, *, minimum: float, exclusive: bool = False) -> float:
    """``value`` as a finite float >= ``minimum`` (> when ``exclusive``), else ConfigError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    v = float(value)
    bad = not math.isfinite(v) or v < minimum or (exclusive and v == minimum)
    if bad:
        rule = ">" if exclusive else ">="
        raise ConfigError(f"{name} must be finite and {rule} {minimum:g}, got {value!r}")
    return v


def _duration(duration_s: float) -> float:
    return _real("duration_s", duration_s, minimum=0.0, exclusive=True)


def _parse_float(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {text!r}") from None


def _parse_int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {text!r}") from None
