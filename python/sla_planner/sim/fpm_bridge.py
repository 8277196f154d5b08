"""Simulated FPM into the live ingestion path.

The simulator emits one float64 row per engine iteration (columns ``_kernel.F_*``). Live engines
publish msgpack ForwardPassMetrics instead, and the planner reads them from an
:class:`~sla_planner.kernels.FpmIngestor`. :class:`SimFpmBridge` turns each batch of simulator rows
into real FPM v1 payloads (one batch call to ``encode_fpm_rows``) and feeds them to its own
ingestor with ``ingest_buffer``, so replay exercises exactly the decoding and engine table that
live uses.

Identity: an engine is ``(worker_id, dp_rank=0)``; worker ids come from the cluster
(``"prefill-3"``, ``"decode-7"``, ``"agg-0"``) and are never reused, while engine slots are.
``counter_id`` is per worker: forward passes number 1, 2, 3, ...; an idle heartbeat repeats the
last number (heartbeats take no part in gap detection).

Contract: drain ``cluster.take_fpm()`` into :meth:`SimFpmBridge.ingest` before
``cluster.set_targets`` can hand a freed slot to a new engine (rows are mapped to worker ids by
slot at ingest time), and report removed engines with :meth:`SimFpmBridge.remove` or
:meth:`SimFpmBridge.apply_scale_events`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import kernels
from ..errors import KernelError, SimulationError
from ..kernels import fpm_ref
from ..kernels.fpm_ingest_ref import FpmIngestor as FpmIngestorRef
from ..types import Pool
from . import _kernel as K
from .cluster import ScaleEvent, SimCluster

__all__ = ["SimFpmBridge"]

I64 = npt.NDArray[np.int64]

_SCHEDULED_COLUMNS = [K.F_S_NPRE, K.F_S_PRE_TOK, K.F_S_PRE_VAR, K.F_S_PRE_KV, K.F_S_NDEC,
                      K.F_S_DEC_KV, K.F_S_DEC_VAR]
_QUEUED_COLUMNS = [K.F_Q_NPRE, K.F_Q_PRE_TOK, K.F_Q_PRE_VAR, K.F_Q_NDEC, K.F_Q_DEC_KV, K.F_Q_DEC_VAR]
_DP_RANK = 0


class SimFpmBridge:
    """Encodes a :class:`SimCluster`'s FPM rows as msgpack and ingests them (see module doc).

    ``history_len``, ``stale_after_s`` and ``max_engines`` configure the owned ingestor.
    ``reference=True`` uses the pure-Python encoder and ingestor whatever
    ``SLA_PLANNER_NO_EXTENSIONS`` says (tests compare both paths in one run).
    """

    def __init__(
        self,
        cluster: SimCluster,
        history_len: int = 10,
        stale_after_s: float = 30.0,
        max_engines: int = 4096,
        *,
        reference: bool = False,
    ) -> None:
        self._cluster = cluster
        if reference:
            self._encode = fpm_ref.encode_fpm_rows
            self._ingestor: Any = FpmIngestorRef(history_len, stale_after_s, max_engines)
        else:
            self._encode = kernels.encode_fpm_rows
            self._ingestor = kernels.FpmIngestor(history_len, stale_after_s, max_engines)
        self._index_of: dict[str, int] = {}  # worker id -> row of _last_counter
        self._pool_of: dict[str, Pool] = {}
        self._last_counter: I64 = np.zeros(16, dtype=np.int64)
        self._n_counters = 0
        self._slot_ids: npt.NDArray[np.object_] = np.empty(0, dtype=object)
        self._slot_index: I64 = np.empty(0, dtype=np.int64)
        self._slots_key: tuple[int, int] | None = None

    @property
    def ingestor(self) -> Any:
        """The owned engine table (``FpmIngestor`` or its reference)."""
        return self._ingestor

    # ------------------------------------------------------------------ engine slots
    def _refresh_slots(self) -> None:
        """Re-read slot -> worker id when the cluster added or removed engines."""
        c = self._cluster
        key = (c.n_engines, len(c.scale_events))
        if key == self._slots_key:
            return
        ids = [c.worker_id(e) for e in range(c.n_engines)]
        self._slot_ids = np.empty(len(ids), dtype=object)
        self._slot_ids[:] = ids
        self._slot_index = np.array([self._index_of.get(w, -1) for w in ids], dtype=np.int64)
        self._slots_key = key

    def _register(self, slot: int) -> None:
        worker_id = str(self._slot_ids[slot])
        if self._n_counters == self._last_counter.shape[0]:
            self._last_counter = np.concatenate([self._last_counter, np.zeros_like(self._last_counter)])
        self._index_of[worker_id] = self._n_counters
        self._pool_of[worker_id] = self._cluster.engine_pool(slot)
        self._slot_index[slot] = self._n_counters
        self._n_counters += 1

    def _counter_index(self, slots: I64) -> I64:
        index = self._slot_index[slots]
        unknown = index < 0
        if unknown.any():
            for slot in np.unique(slots[unknown]).tolist():
                self._register(slot)
            index = self._slot_index[slots]
        return index

    def _counter_ids(self, index: I64, forward: npt.NDArray[np.bool_]) -> I64:
        """Per-row counter_id: forward passes take the next number of their worker, heartbeats
        repeat the last one; rows of one worker are numbered in batch order."""
        key = index.astype(np.uint16) if self._n_counters <= 1 << 16 else index
        order = np.argsort(key, kind="stable")  # radix sort for 16-bit keys
        group = index[order]
        steps = forward[order].astype(np.int64)
        run = np.cumsum(steps)
        first = np.empty(group.shape[0], dtype=bool)
        first[0] = True
        np.not_equal(group[1:], group[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        within = run - (run[starts] - steps[starts])[np.cumsum(first) - 1]
        out = np.empty_like(index)
        out[order] = self._last_counter[group] + within
        ends = np.append(starts[1:], group.shape[0]) - 1
        self._last_counter[group[starts]] += within[ends]
        return out

    # ------------------------------------------------------------------------ public
    def ingest(self, rows: npt.ArrayLike, now_s: float) -> int:
        """Encode ``rows`` (from ``cluster.take_fpm()``) and ingest them at ``now_s``; returns
        how many payloads the ingestor accepted (all of them unless the table is full)."""
        fpm = np.asarray(rows, dtype=np.float64)
        if fpm.ndim != 2 or fpm.shape[1] != K.N_F:
            raise KernelError(f"rows must have shape (n, {K.N_F}) (columns _kernel.F_*), got {fpm.shape}")
        n = fpm.shape[0]
        if n == 0:
            return 0
        self._refresh_slots()
        slot_f = fpm[:, K.F_ENGINE]
        slots = slot_f.astype(np.int64)
        bad = np.flatnonzero((slots != slot_f) | (slots < 0) | (slots >= self._slot_ids.shape[0]))
        if bad.size:
            i = int(bad[0])
            raise KernelError(
                f"rows[{i}, F_ENGINE] = {float(slot_f[i])!r} is not an engine slot of the cluster "
                f"(0..{self._slot_ids.shape[0] - 1})"
            )
        wall_time = fpm[:, K.F_WALL]
        counter_id = self._counter_ids(self._counter_index(slots), wall_time != 0.0)
        buf, offsets = self._encode(
            self._slot_ids[slots],
            np.zeros(n, dtype=np.int64),
            counter_id,
            wall_time,
            fpm[:, _SCHEDULED_COLUMNS],
            fpm[:, _QUEUED_COLUMNS],
        )
        accepted: int = self._ingestor.ingest_buffer(buf, offsets, now_s)
        return accepted

    def remove(self, worker_id: str) -> bool:
        """Forget an engine the cluster removed; returns whether the ingestor knew it."""
        index = self._index_of.pop(worker_id, None)  # its pool stays known: ids are never reused
        if index is not None:
            self._slot_index[self._slot_index == index] = -1
        known: bool = self._ingestor.remove(worker_id, _DP_RANK)
        return known

    def apply_scale_events(self, events: Iterable[ScaleEvent]) -> int:
        """:meth:`remove` every engine a ``"remove"`` event names; returns how many were known."""
        return sum(self.remove(ev.worker_id) for ev in events if ev.action == "remove")

    def pool_of(self, worker_id: str) -> Pool:
        """Pool of an engine the bridge has ingested FPM from (removed ones included) or that the
        cluster currently holds; KeyError otherwise."""
        pool = self._pool_of.get(worker_id)
        if pool is not None:
            return pool
        self._refresh_slots()
        slots = np.flatnonzero(self._slot_ids == worker_id)
        if slots.size == 0:
            raise SimulationError(f"unknown worker_id {worker_id!r}: not an engine of this cluster")
        return self._cluster.engine_pool(int(slots[-1]))

    def snapshot(self, now_s: float) -> dict[str, npt.NDArray[Any]]:
        """The ingestor's struct-of-arrays snapshot at ``now_s`` (one row per engine)."""
        snap: dict[str, npt.NDArray[Any]] = self._ingestor.snapshot(now_s)
        return snap

    def queued_prefill_tokens(self, now_s: float, pools: Pool | Iterable[Pool]) -> float:
        """Sum of the latest ``queued_requests.sum_prefill_tokens`` over active (not stale)
        engines of ``pools``, as the ingested FPM reports it."""
        wanted = {pools} if isinstance(pools, Pool) else set(pools)
        snap = self._ingestor.snapshot(now_s)
        ids = snap["worker_id"]
        in_pools = np.fromiter((self._pool_of.get(w) in wanted for w in ids), dtype=bool, count=len(ids))
        mask = in_pools & snap["active"]
        return float(snap["queued_sum_prefill_tokens"][mask].sum())
