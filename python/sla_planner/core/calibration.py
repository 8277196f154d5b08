"""Online calibration from what the deployment shows (pure): the engines' speed against the
profile, from their own forward passes (:class:`EngineSpeed`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..types import ObservedTraffic
from .queueing import service_moments

__all__ = ["EngineSpeed", "SPEED_SAMPLES", "MIN_SPEED_SAMPLES", "MIN_SPEED", "MAX_SPEED"]


@dataclass
class EngineSpeed:
    """How much slower (or faster) the engines run than the profile says, from their own
    forward passes (a correction factor that, unlike observed TTFT, contains no queueing).

    Every fresh forward pass (not a heartbeat) adds its measured duration and the profile's
    prediction for the same work: for a decode pass, the profiled ITL at its KV usage and mean
    context; for a prefill pass, its prompt tokens at the profile's seconds per token for the
    window's ISL mix (token-weighted: a chunk of a long prompt costs what long prompts cost). The
    factor is the ratio of the sums over the last ``SPEED_SAMPLES`` passes of a pool, clamped to
    ``[MIN_SPEED, MAX_SPEED]``; 1 until ``MIN_SPEED_SAMPLES`` passes are in, and 1 while it is within
    ``SPEED_DEAD_BAND`` of 1: the prefill estimate prices a chunk at the window's ISL mix, not at its
    own prompts', and is a few percent off on engines that match their profile exactly; acting on
    that would buy engines for a difference that is not there.
    """

    samples: dict[Any, deque[tuple[float, float]]] = field(default_factory=dict)
    seconds_per_token: float | None = None
    _last_seen_s: float = -math.inf

    def set_isl_mix(self, traffic: ObservedTraffic, prefill: Any, gpus: int) -> None:
        """The profile's prompt seconds per token for the window's ISL mix."""
        if traffic.isl_buckets:
            moments = service_moments(lambda isl: isl, traffic.isl or 1.0, traffic.isl_buckets)
            tokens = sum(isl * w for isl, w in moments.mix)
            cost = sum(w * isl / max(prefill.thpt_per_gpu(isl) * gpus, 1e-9) for isl, w in moments.mix)
            if tokens > 0:
                self.seconds_per_token = cost / tokens
        elif traffic.isl and traffic.isl > 0:
            self.seconds_per_token = 1.0 / max(prefill.thpt_per_gpu(traffic.isl) * gpus, 1e-9)

    def observe(self, view: Any, roles: dict[Any, int], prefill: Any, decode: Any) -> None:
        """Fresh passes of ``view`` (an EngineView) per pool (``roles``: pool -> role code)."""
        if view is None or len(view) == 0:
            return
        import numpy as np

        fresh = (view.last_seen_s > self._last_seen_s) & (view.wall_time > 0.0) & view.active
        if fresh.any():
            self._last_seen_s = float(view.last_seen_s[fresh].max())
        for pool, code in roles.items():
            index = np.flatnonzero(fresh & (view.role == code))
            if index.size == 0:
                continue
            if index.size > PER_TICK_SAMPLES:  # bounded work per tick at any engine count
                index = index[:: -(-index.size // PER_TICK_SAMPLES)]
            wall = view.wall_time[index]
            if code == 1 and decode is not None:  # decode: ITL at the pass's KV usage and context
                batch = view.s_decode_requests[index]
                kv = view.s_decode_kv[index]
                ok = batch > 0
                model = decode.itl_ms_batch(
                    kv[ok] / decode.max_kv_tokens, kv[ok] / batch[ok]
                ) / 1e3
                pairs = zip(wall[ok].tolist(), np.asarray(model).tolist())
            elif code == 0 and prefill is not None and self.seconds_per_token is not None:
                tokens = view.s_prefill_tokens[index]
                ok = (tokens > 0) & (view.s_decode_requests[index] == 0)
                pairs = zip(wall[ok].tolist(), (tokens[ok] * self.seconds_per_token).tolist())
            else:
                continue
            store = self.samples.setdefault(pool, deque(maxlen=SPEED_SAMPLES))
            for measured, predicted in pairs:
                if math.isfinite(measured) and math.isfinite(predicted) and predicted > 0:
                    store.append((measured, predicted))

    def factor(self, pool: Any) -> float:
        """Measured over profiled duration for ``pool`` (1 until enough passes are in)."""
        store = self.samples.get(pool)
        if not store or len(store) < MIN_SPEED_SAMPLES:
            return 1.0
        measured = sum(m for m, _ in store)
        predicted = sum(p for _, p in store)
        ratio = measured / predicted
        if abs(math.log(ratio)) <= SPEED_DEAD_BAND:
            return 1.0
        return min(max(ratio, MIN_SPEED), MAX_SPEED)


SPEED_SAMPLES = 400
PER_TICK_SAMPLES = 64
MIN_SPEED_SAMPLES = 20
MIN_SPEED = 0.5
SPEED_DEAD_BAND = 0.08
MAX_SPEED = 3.0
