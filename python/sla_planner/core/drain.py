"""Which engines leave when a pool shrinks (DESIGN.md §4.8; pure).

The core names the idlest workers of the pool by their latest forward passes: the least work
in hand (queued and scheduled prompt tokens for prefill, KV tokens held or waiting for decode,
both for aggregated engines; summed over a worker's dp ranks). Adapters stop routing to them, let
their requests finish, then remove them; so the fewer requests they hold, the sooner they go and
the less is at stake.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ..types import Pool

__all__ = ["ROLE_OF_POOL", "work_in_hand", "choose_drain"]

ROLE_OF_POOL = {Pool.PREFILL: 0, Pool.DECODE: 1, Pool.AGG: 2}


def work_in_hand(view: Any, rows: npt.NDArray[np.bool_], pool: Pool) -> npt.NDArray[np.float64]:
    """Per row of ``rows``, the work an engine holds, in tokens."""
    prefill = view.q_prefill_tokens[rows] + view.s_prefill_tokens[rows]
    decode = view.s_decode_kv[rows] + view.q_decode_kv[rows]
    if pool is Pool.PREFILL:
        return np.asarray(prefill, dtype=np.float64)
    if pool is Pool.DECODE:
        return np.asarray(decode, dtype=np.float64)
    return np.asarray(prefill + decode, dtype=np.float64)


def choose_drain(view: Any, pool: Pool, count: int) -> tuple[str, ...]:
    """The ``count`` idlest workers of ``pool`` in ``view`` (fewer if the view has fewer), least
    work first, ties by name. Empty when the view has no worker names."""
    if count <= 0 or view is None or getattr(view, "names", None) is None or len(view) == 0:
        return ()
    rows = view.active & (view.role == ROLE_OF_POOL[pool])
    if not rows.any():
        return ()
    work = work_in_hand(view, rows, pool)
    names = np.asarray(view.names, dtype=object)[rows]
    totals: dict[str, float] = {}
    for name, w in zip(names.tolist(), work.tolist()):
        key = str(name)
        totals[key] = totals.get(key, 0.0) + float(w)
    order = sorted(totals, key=lambda n: (totals[n], n))
    return tuple(order[:count])
