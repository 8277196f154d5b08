"""Time-aware scaling (DESIGN.md §4.7): start-up time learned from the deployment, and the
scale-down stabilisation window (pure: time arrives as ``now_s``).

An engine costs GPU-time from the moment it is requested and serves only after its start-up time,
so removing one that will be needed again within that time costs more than keeping it. As the
Kubernetes HPA does, every tick records each pool's *recommendation*; a pool may shrink only to
the largest recommendation of the last ``window_s`` seconds, and not at all until the record
covers a whole window. Scale-up is never delayed.

The window adapts to what scale-downs cost (flap damping): when the deployment gets back
capacity it gave up ``gap`` seconds earlier, and the gap is short (at most ``LESSON_STARTUPS``
start-up times: demand that returns that soon recurs faster than engines can be re-bought), the
window that let it go was too short by that gap, so the window grows to ``window + gap +
start-up`` (the engine must be ready by then), up to ``max_window_s``. A lesson expires after
three times its window (at least half an hour): recurring bursts keep the window long, a one-off
does not, and capacity wanted again only after a long quiet spell teaches nothing.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..types import Pool

__all__ = ["StartupTracker", "Stabilizer"]

_SAMPLES = 32
_MIN_SAMPLES = 3
LESSON_STARTUPS = 5.0


@dataclass
class StartupTracker:
    """Learns each pool's engine start-up time from replica and readiness counts.

    When a pool's requested count rises by k between two observations, k requests are queued at
    the earlier observation's time (the request happened in between: the earliest time makes the
    estimate err long, the safe side); when its ready count rises, the oldest are matched and their
    waits become samples; when the requested count falls, the newest pending requests are dropped
    (starting engines go first). The estimate is the 90th percentile of the recent samples once
    there are a few, else None.
    """

    pending: dict[Pool, deque[float]] = field(default_factory=dict)
    samples: dict[Pool, deque[float]] = field(default_factory=dict)
    _last: dict[Pool, tuple[int, int, float]] = field(default_factory=dict)

    def observe(self, now_s: float, current: dict[Pool, int], ready: dict[Pool, int] | None) -> None:
        """One tick's requested and ready counts."""
        if ready is None:
            return
        for pool, requested in current.items():
            ready_now = int(ready.get(pool, requested))
            last = self._last.get(pool)
            self._last[pool] = (int(requested), ready_now, now_s)
            if last is None:
                # engines already starting when we first look: their request time is unknown
                continue
            pend = self.pending.setdefault(pool, deque())
            grew = int(requested) - last[0]
            for _ in range(max(grew, 0)):
                pend.append(last[2])
            for _ in range(min(max(-grew, 0), len(pend))):
                pend.pop()
            became_ready = ready_now - last[1]
            samples = self.samples.setdefault(pool, deque(maxlen=_SAMPLES))
            for _ in range(max(became_ready, 0)):
                if not pend:
                    break
                samples.append(now_s - pend.popleft())

    def estimate_s(self, pool: Pool) -> float | None:
        """Start-up time of ``pool`` learned so far (None until a few engines started)."""
        samples = self.samples.get(pool)
        if not samples or len(samples) < _MIN_SAMPLES:
            return None
        return float(np.quantile(np.asarray(samples), 0.9))

    def longest_s(self) -> float | None:
        """The largest per-pool estimate (None when no pool has one yet)."""
        known = [e for e in (self.estimate_s(p) for p in self.samples) if e is not None]
        return max(known) if known else None


def _max_since(hist: deque[tuple[float, int, int]], start_s: float, column: int) -> int:
    """Largest value of ``column`` among entries from ``start_s`` on and the one in force at
    ``start_s`` (the latest before it)."""
    best = -1
    before: tuple[float, int, int] | None = None
    for entry in hist:
        if entry[0] >= start_s:
            best = max(best, int(entry[column]))
        else:
            before = entry
    if before is not None:
        best = max(best, int(before[column]))
    return best


@dataclass(frozen=True)
class _Down:
    at_s: float
    to_n: int
    window_s: float


@dataclass
class Stabilizer:
    """Per pool, the recommendations of the last window and the scale-down they allow."""

    max_window_s: float = 3600.0
    history: dict[Pool, deque[tuple[float, int, int]]] = field(default_factory=dict)
    """Per pool: (time, recommendation, its steady part without backlog clearing)."""
    first_s: float | None = None
    downs: dict[Pool, deque[_Down]] = field(default_factory=dict)
    lessons: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=16))
    """(when learned, the window that would have kept the capacity): shared by the pools, which
    see the same demand."""

    def window_s(self, now_s: float, base_s: float) -> float:
        """The long window now: the base, or longer after costly scale-downs."""
        lessons = self.lessons
        while lessons and now_s - lessons[0][0] > max(3.0 * lessons[0][1], 1800.0):
            lessons.popleft()
        learned = max((w for _, w in lessons), default=0.0)
        return max(base_s, min(learned, self.max_window_s))

    def note_change(
        self, now_s: float, pool: Pool, before: int, after: int, window_s: float, startup_s: float
    ) -> None:
        """A pool's size changed: remember scale-downs; learn from capacity taken back."""
        downs = self.downs.setdefault(pool, deque(maxlen=64))
        if after < before:
            downs.append(_Down(now_s, after, window_s))
            return
        if after <= before or self.max_window_s <= 0.0:
            return
        horizon = min(self.max_window_s, LESSON_STARTUPS * startup_s)
        while downs and downs[-1].to_n < after:
            down = downs.pop()
            if now_s - down.at_s <= horizon:
                self.lessons.append((now_s, down.window_s + (now_s - down.at_s) + startup_s))

    def record(
        self, now_s: float, pool: Pool, recommended: int, steady: int, keep_s: float
    ) -> None:
        """Remember a recommendation (and its steady part); forget those older than ``keep_s``
        (keeping one that straddles the boundary, so the window's coverage is known)."""
        if self.first_s is None:
            self.first_s = now_s
        hist = self.history.setdefault(pool, deque())
        hist.append((now_s, int(recommended), min(int(steady), int(recommended))))
        while len(hist) >= 2 and hist[1][0] <= now_s - keep_s:
            hist.popleft()

    def floor(self, now_s: float, pool: Pool, base_s: float, long_s: float) -> float:
        """The lowest size ``pool`` may shrink to now: the largest recommendation of the base
        window, and the largest steady recommendation of the long window (capacity added only
        to clear a backlog is not remembered past the base window); +inf while the record does
        not yet span the base window."""
        hist = self.history.get(pool)
        if not hist or self.first_s is None or now_s - self.first_s < base_s:
            return math.inf
        full = _max_since(hist, now_s - base_s, 1)
        steady = _max_since(hist, now_s - max(long_s, base_s), 2)
        return float(max(full, steady))

    def reset(self, pool: Pool) -> None:
        """Forget a pool's recommendations (after a restart or an outside change)."""
        self.history.pop(pool, None)
