"""The load loop's regression fed straight from the engine table (``FpmIngestor.feed_regression``).

:func:`table_feed` builds the ``EngineView.table_feed`` callable an adapter hands to the decision
core: for a pool it appends every fresh forward pass of that pool's workers to the pool's
regression (and the decode pool's one-feature fallback) without building numpy feature arrays.
Works with the native ingestor and the reference alike (``feed_regression`` is in both).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from ..types import Pool

__all__ = ["table_feed", "FEATURES_OF_POOL", "ENGINE_VIEW_COLUMNS"]

#: the snapshot columns ``core.load.engine_view_from_snapshot`` reads (``snapshot(columns=...)``)
ENGINE_VIEW_COLUMNS = (
    "worker_index", "active", "last_seen_s", "wall_time", "scheduled_sum_prefill_tokens",
    "scheduled_num_decode_requests", "scheduled_sum_decode_kv_tokens", "queued_sum_prefill_tokens",
    "queued_num_decode_requests", "queued_sum_decode_kv_tokens",
)

#: regression features per pool (``FpmIngestor.feed_regression``'s ``features``)
FEATURES_OF_POOL = {Pool.PREFILL: "prefill", Pool.DECODE: "decode", Pool.AGG: "agg"}
_ROLE_CODE = {Pool.PREFILL: 0, Pool.DECODE: 1, Pool.AGG: 2}


def table_feed(
    ingestor: Any, now_s: float, role_of_worker: npt.NDArray[np.int8]
) -> Callable[[Any, Any, Pool, float], None]:
    """A ``table_feed`` for a view of ``ingestor`` at ``now_s``; ``role_of_worker[i]`` is the
    role code (``core.load.ROLE_CODES``) of the worker interned as ``worker_index`` i."""
    roles = np.asarray(role_of_worker)

    def feed(reg: Any, fallback: Any, pool: Pool, since_s: float) -> None:
        workers = roles == _ROLE_CODE[pool]
        ingestor.feed_regression(reg, now_s, since_s, workers, FEATURES_OF_POOL[pool], fallback)

    return feed
