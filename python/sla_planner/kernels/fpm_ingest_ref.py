"""Pure-Python reference of the native engine table (``sla_planner._native.FpmIngestor``).

Same semantics as the Rust table: one engine per ``(worker_id, dp_rank)`` in registration
order; the latest message (idle heartbeats included) and a bounded history of the last
``history_len`` forward passes (heartbeats excluded); per-engine and global counters; staleness
from the caller's ``now_s`` (stale when ``now_s - last_seen_s > stale_after_s``). Counters
saturate at 2**64 - 1 and are reported clamped to int64, like the native ones. Worker ids are
interned to a ``worker_index`` shared by a worker's dp ranks; once a worker's last engine is
removed its index is free, and new workers take the lowest free index first.

Lifecycle (as the native table): an engine silent for more than ``expire_after_s`` is removed
(``expired``); sweeps run when ``now_s`` has moved ``expire_after_s / 8`` past the last one and
whenever a new engine finds the table full. Then the stalest stale engines are evicted
(``evicted``; oldest ``last_seen_s`` first, ties in registration order, ``max(1, max_engines //
16)`` at once); with no stale engine the message is dropped (``dropped_capacity``).
``counter_id`` is unsigned 64-bit: a step back (a wrap-around past 2**64 - 1 included) is a
restart counted in ``out_of_order``, never a gap.
"""

from __future__ import annotations

import heapq
import math
import operator
import sys
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import FpmDecodeError, KernelError
from .fpm_ref import QUEUED_FIELDS, SCHEDULED_FIELDS, decode_fpm

__all__ = ["FpmIngestor", "MAX_HISTORY_LEN", "MAX_ENGINES_LIMIT"]

MAX_HISTORY_LEN = 100_000
MAX_ENGINES_LIMIT = 1 << 20
_U64_MAX = 2**64 - 1
_I64_MAX = 2**63 - 1

_EVICT_BATCH_DIVISOR = 16
_SWEEPS_PER_EXPIRY = 8.0

# Flat sample layout: counter_id, wall_time, scheduled fields..., queued fields...
# (True: int64 count, False: float64, None: uint64 counter_id)
_COLUMNS: tuple[tuple[str, bool | None], ...] = (
    ("counter_id", None),
    ("wall_time", False),
    *((f"scheduled_{name}", is_count) for name, is_count in SCHEDULED_FIELDS),
    *((f"queued_{name}", is_count) for name, is_count in QUEUED_FIELDS),
)


def _sat(value: int) -> int:
    return min(value, _U64_MAX)


def _clamp(value: int) -> int:
    return min(value, _I64_MAX)


def _flatten(rec: dict[str, Any]) -> tuple[Any, ...]:
    sched = rec["scheduled_requests"]
    queued = rec["queued_requests"]
    return (
        rec["counter_id"],
        rec["wall_time"],
        *(sched[name] for name, _ in SCHEDULED_FIELDS),
        *(queued[name] for name, _ in QUEUED_FIELDS),
    )


def _dtype(is_count: bool | None) -> type[np.generic]:
    return np.uint64 if is_count is None else np.int64 if is_count else np.float64


# regression features per pool kind: indices into the flat sample (see _COLUMNS)
_SCHED = {name: 2 + j for j, (name, _) in enumerate(SCHEDULED_FIELDS)}
_FEATURES = {
    "prefill": (_SCHED["sum_prefill_tokens"],),
    "decode": (_SCHED["num_decode_requests"], _SCHED["sum_decode_kv_tokens"]),
    "agg": (_SCHED["sum_prefill_tokens"], _SCHED["sum_decode_kv_tokens"]),
    "decode_kv": (_SCHED["sum_decode_kv_tokens"],),
}


def _engine_key(worker_id: Any, dp_rank: Any) -> tuple[str, int]:
    if not isinstance(worker_id, str):
        raise KernelError(f"worker_id must be a str, got {type(worker_id).__name__}")
    if isinstance(dp_rank, bool) or not isinstance(dp_rank, int):
        raise KernelError(f"dp_rank must be an int, got {type(dp_rank).__name__}")
    return worker_id, dp_rank


def _index_arg(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise KernelError(f"{name} must be an int, got {type(value).__name__}")
    if value < lo:
        raise KernelError(f"{name} must be >= {lo}, got {value}")
    if value > hi:
        raise KernelError(f"{name} must be <= {hi}, got {value}")
    return int(value)


def _now(now_s: Any) -> float:
    now = float(now_s)
    if not math.isfinite(now):
        raise KernelError(f"now_s must be finite, got {now}")
    return now


class _Engine:
    __slots__ = (
        "worker_id", "worker_index", "dp_rank", "latest", "last_seen_s", "history", "received", "heartbeats",
        "counter_gaps", "seq_gaps", "out_of_order", "last_counter_id", "last_seq",
    )

    def __init__(self, worker_id: str, worker_index: int, dp_rank: int, history_len: int) -> None:
        self.worker_id = worker_id
        self.worker_index = worker_index
        self.dp_rank = dp_rank
        self.latest: tuple[Any, ...] = ()
        self.last_seen_s = -math.inf
        self.history: deque[tuple[float, tuple[Any, ...]]] = deque(maxlen=history_len)
        self.received = 0
        self.heartbeats = 0
        self.counter_gaps = 0
        self.seq_gaps = 0
        self.out_of_order = 0
        self.last_counter_id: int | None = None
        self.last_seq: int | None = None

    def update(self, sample: tuple[Any, ...], now_s: float, seq: int | None) -> tuple[bool, int, int, bool]:
        heartbeat = sample[1] == 0.0
        seq_gap = counter_gap = 0
        out_of_order = False
        if seq is not None:
            if self.last_seq is not None:
                if seq > self.last_seq:
                    seq_gap = seq - self.last_seq - 1
                else:
                    out_of_order = True
            self.last_seq = seq
        if not heartbeat:
            counter_id = sample[0]
            if self.last_counter_id is not None:
                if counter_id > self.last_counter_id:
                    counter_gap = counter_id - self.last_counter_id - 1
                else:
                    out_of_order = True
            self.last_counter_id = counter_id
            self.history.append((now_s, sample))
        self.received = _sat(self.received + 1)
        self.heartbeats = _sat(self.heartbeats + int(heartbeat))
        self.counter_gaps = _sat(self.counter_gaps + counter_gap)
        self.seq_gaps = _sat(self.seq_gaps + seq_gap)
        self.out_of_order = _sat(self.out_of_order + int(out_of_order))
        self.latest = sample
        self.last_seen_s = now_s
        return heartbeat, counter_gap, seq_gap, out_of_order


def _seqs(seqs: Any, n: int) -> list[int] | None:
    if seqs is None:
        return None
    try:
        items = iter(seqs)
    except TypeError:
        raise KernelError(f"seqs must be a sequence of ints, got {type(seqs).__name__}") from None
    out: list[int] = []
    for i, item in enumerate(items):
        try:
            value = operator.index(item)
        except TypeError:
            raise KernelError(f"seqs[{i}] must be an int in [0, 2**64), got {item!r}") from None
        if not 0 <= value <= _U64_MAX:
            raise KernelError(f"seqs[{i}] must be an int in [0, 2**64), got {item!r}")
        out.append(value)
    if len(out) != n:
        raise KernelError(f"seqs has {len(out)} entries but there are {n} payloads")
    return out


def _offsets(offsets: Any, buf_len: int) -> np.ndarray:
    arr = np.asarray(offsets)
    if arr.dtype.kind not in "iu" or arr.ndim != 1:
        raise KernelError(
            f"offsets must be a 1-D integer array, got dtype kind {arr.dtype.kind!r} with {arr.ndim} dimensions"
        )
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if arr.size == 0:
        raise KernelError("offsets must have n + 1 >= 1 entries, got 0")
    if arr[0] < 0:
        raise KernelError(f"offsets[0] must be >= 0, got {arr[0]}")
    bad = np.flatnonzero(arr[1:] < arr[:-1])
    if bad.size:
        i = int(bad[0])
        raise KernelError(f"offsets must be non-decreasing: offsets[{i + 1}] = {arr[i + 1]} < offsets[{i}] = {arr[i]}")
    if int(arr[-1]) > buf_len:
        raise KernelError(f"offsets[-1] = {arr[-1]} is beyond the buffer of {buf_len} bytes")
    return arr


class FpmIngestor:
    """Engine table fed by FPM payloads: latest sample, bounded history and counters per engine."""

    def __init__(
        self, history_len: int = 10, stale_after_s: float = 30.0, max_engines: int = 4096,
        expire_after_s: float = 300.0,
    ) -> None:
        history_len = _index_arg(history_len, "history_len", 0, MAX_HISTORY_LEN)
        max_engines = _index_arg(max_engines, "max_engines", 1, MAX_ENGINES_LIMIT)
        stale_after_s = float(stale_after_s)
        expire_after_s = float(expire_after_s)
        if not (math.isfinite(stale_after_s) and stale_after_s > 0.0):
            raise KernelError(f"stale_after_s must be finite and > 0, got {stale_after_s}")
        if math.isnan(expire_after_s) or expire_after_s < stale_after_s:
            raise KernelError(
                f"expire_after_s must be >= stale_after_s ({stale_after_s}) or inf, got {expire_after_s}"
            )
        self._history_len = history_len
        self._stale_after_s = stale_after_s
        self._expire_after_s = expire_after_s
        self._next_sweep_s = -math.inf
        self._max_engines = max_engines
        self._engines: dict[tuple[str, int], _Engine] = {}
        self._worker_index: dict[str, int] = {}  # interned worker ids
        self._engines_of: list[int] = []  # live engines per worker index
        self._free_indices: list[int] = []  # heap of reusable worker indices
        self._counters = dict.fromkeys(
            ("received", "decoded", "malformed", "wrong_version", "heartbeats", "counter_gaps",
             "seq_gaps", "out_of_order", "dropped_capacity", "expired", "evicted"),
            0,
        )

    @property
    def history_len(self) -> int:
        """Forward passes kept per engine."""
        return self._history_len

    @property
    def stale_after_s(self) -> float:
        """Seconds of silence after which an engine is stale."""
        return self._stale_after_s

    @property
    def expire_after_s(self) -> float:
        """Seconds of silence after which an engine is removed."""
        return self._expire_after_s

    @property
    def max_engines(self) -> int:
        """Most engines the table holds."""
        return self._max_engines

    def _acquire(self, worker_id: str) -> int:
        index = self._worker_index.get(worker_id)
        if index is None:
            if self._free_indices:
                index = heapq.heappop(self._free_indices)
            else:
                index = len(self._engines_of)
                self._engines_of.append(0)
            self._worker_index[worker_id] = index
        self._engines_of[index] += 1
        return index

    def _release(self, engine: _Engine) -> None:
        index = engine.worker_index
        self._engines_of[index] -= 1
        if self._engines_of[index] == 0:
            del self._worker_index[engine.worker_id]
            heapq.heappush(self._free_indices, index)

    def _remove_where(self, gone: Any) -> int:
        doomed = [key for key, e in self._engines.items() if gone(e)]
        for key in doomed:
            self._release(self._engines.pop(key))
        return len(doomed)

    def _sweep(self, now_s: float) -> int:
        self._next_sweep_s = now_s + self._expire_after_s / _SWEEPS_PER_EXPIRY
        limit = self._expire_after_s
        n = self._remove_where(lambda e: now_s - e.last_seen_s > limit)
        self._counters["expired"] += n
        return n

    def _make_room(self, now_s: float) -> bool:
        if self._sweep(now_s) > 0:
            return True
        stale = [
            (e.last_seen_s, pos, key)
            for pos, (key, e) in enumerate(self._engines.items())
            if now_s - e.last_seen_s > self._stale_after_s
        ]
        if not stale:
            return False
        k = min(max(1, self._max_engines // _EVICT_BATCH_DIVISOR), len(stale))
        for _, _, key in sorted(stale)[:k]:
            self._release(self._engines.pop(key))
        self._counters["evicted"] += k
        return True

    def expire(self, now_s: float) -> int:
        """Remove engines silent for more than ``expire_after_s`` at ``now_s``; returns how many."""
        return self._sweep(_now(now_s))

    def _ingest_one(self, payload: bytes, now_s: float, seq: int | None) -> bool:
        c = self._counters
        c["received"] += 1
        if now_s >= self._next_sweep_s:
            self._sweep(now_s)
        try:
            rec = decode_fpm(payload)
        except FpmDecodeError as e:
            c["wrong_version" if getattr(e, "kind", "") == "bad_version" else "malformed"] += 1
            return False
        c["decoded"] += 1
        key = (rec["worker_id"], rec["dp_rank"])
        engine = self._engines.get(key)
        if engine is None:
            if len(self._engines) >= self._max_engines and not self._make_room(now_s):
                c["dropped_capacity"] += 1
                return False
            engine = self._engines[key] = _Engine(key[0], self._acquire(key[0]), key[1], self._history_len)
        heartbeat, counter_gap, seq_gap, out_of_order = engine.update(_flatten(rec), now_s, seq)
        c["heartbeats"] += int(heartbeat)
        c["counter_gaps"] = _sat(c["counter_gaps"] + counter_gap)
        c["seq_gaps"] = _sat(c["seq_gaps"] + seq_gap)
        c["out_of_order"] += int(out_of_order)
        return True

    def ingest(self, payloads: Sequence[bytes], now_s: float, seqs: Sequence[int] | None = None) -> int:
        """Decode and apply payloads received at ``now_s``; returns how many were accepted."""
        now = _now(now_s)
        try:
            items = list(payloads)
        except TypeError:
            raise KernelError(f"payloads must be a sequence of bytes, got {type(payloads).__name__}") from None
        for i, item in enumerate(items):
            if not isinstance(item, bytes):
                raise KernelError(f"payloads[{i}] must be bytes, got {type(item).__name__}")
        seq_list = _seqs(seqs, len(items))
        return sum(
            self._ingest_one(p, now, None if seq_list is None else seq_list[i]) for i, p in enumerate(items)
        )

    def ingest_buffer(
        self, buf: bytes, offsets: Any, now_s: float, seqs: Sequence[int] | None = None
    ) -> int:
        """Like ``ingest``, for payloads packed in one buffer: payload i is ``buf[offsets[i]:offsets[i+1]]``."""
        now = _now(now_s)
        if not isinstance(buf, bytes):
            raise KernelError(f"buf must be bytes, got {type(buf).__name__}")
        offs = _offsets(offsets, len(buf)).tolist()
        seq_list = _seqs(seqs, len(offs) - 1)
        return sum(
            self._ingest_one(buf[offs[i] : offs[i + 1]], now, None if seq_list is None else seq_list[i])
            for i in range(len(offs) - 1)
        )

    def snapshot(
        self, now_s: float, *, with_ids: bool = True, columns: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Struct of arrays, one row per known engine in registration order (see the stub);
        ``with_ids=False`` leaves out ``worker_id`` (use ``worker_index``); ``columns`` keeps
        only those, in that order."""
        if columns is not None:
            full = self.snapshot(now_s, with_ids=False)
            for name in columns:
                if name not in full:
                    raise KernelError(
                        f"columns: unknown snapshot column {name!r} (worker_id needs with_ids and no columns)"
                    )
            return {name: full[name] for name in columns}
        now = _now(now_s)
        engines = list(self._engines.values())
        n = len(engines)
        stale = np.array([now - e.last_seen_s > self._stale_after_s for e in engines], dtype=bool)
        out: dict[str, np.ndarray] = {}
        if with_ids:
            worker_id = np.empty(n, dtype=object)
            worker_id[:] = [e.worker_id for e in engines]
            out["worker_id"] = worker_id
        out["worker_index"] = np.array([e.worker_index for e in engines], dtype=np.int64)
        out["dp_rank"] = np.array([e.dp_rank for e in engines], dtype=np.int64)
        for j, (name, is_count) in enumerate(_COLUMNS[:2]):
            out[name] = np.array([e.latest[j] for e in engines], dtype=_dtype(is_count))
        out["last_seen_s"] = np.array([e.last_seen_s for e in engines], dtype=np.float64)
        out["stale"] = stale
        out["active"] = ~stale
        out["received"] = np.array([_clamp(e.received) for e in engines], dtype=np.int64)
        out["heartbeats"] = np.array([_clamp(e.heartbeats) for e in engines], dtype=np.int64)
        out["gaps"] = np.array([_clamp(_sat(e.counter_gaps + e.seq_gaps)) for e in engines], dtype=np.int64)
        out["out_of_order"] = np.array([_clamp(e.out_of_order) for e in engines], dtype=np.int64)
        for j, (name, is_count) in enumerate(_COLUMNS[2:], start=2):
            out[name] = np.array([e.latest[j] for e in engines], dtype=_dtype(is_count))
        return out

    def history(self, worker_id: str, dp_rank: int) -> dict[str, np.ndarray]:
        """Stored forward passes of one engine, oldest first (KeyError when unknown)."""
        engine = self._engines.get(_engine_key(worker_id, dp_rank))
        if engine is None:
            raise KeyError(f"unknown engine (worker_id={worker_id!r}, dp_rank={dp_rank})")
        entries = list(engine.history)
        out = {"received_s": np.array([t for t, _ in entries], dtype=np.float64)}
        for j, (name, is_count) in enumerate(_COLUMNS):
            out[name] = np.array([s[j] for _, s in entries], dtype=_dtype(is_count))
        return out

    def counters(self) -> dict[str, int]:
        """Table-wide counters (see the stub for their meaning)."""
        c = self._counters
        out = {name: _clamp(c[name]) for name in ("received", "decoded", "malformed", "wrong_version", "heartbeats")}
        out["gaps"] = _clamp(_sat(c["counter_gaps"] + c["seq_gaps"]))
        for name in ("counter_gaps", "seq_gaps", "out_of_order", "dropped_capacity", "expired", "evicted"):
            out[name] = _clamp(c[name])
        out["engines"] = len(self._engines)
        return out

    def remove(self, worker_id: str, dp_rank: int) -> bool:
        """Forget an engine; returns whether it was known."""
        engine = self._engines.pop(_engine_key(worker_id, dp_rank), None)
        if engine is None:
            return False
        self._release(engine)
        return True

    def feed_regression(
        self, regression: Any, now_s: float, since_s: float, workers: Any, features: str, fallback: Any = None
    ) -> int:
        """Feed the latest forward pass of every engine active at ``now_s``, seen after
        ``since_s``, not a heartbeat, whose ``worker_index`` is set in the bool mask
        ``workers``, into ``regression`` in registration order (``t = last_seen_s``, ``y =
        wall_time``, ``x`` per ``features``: "prefill", "decode", "agg" or "decode_kv"), and into
        the one-feature ``fallback`` (decode KV tokens) when given; returns the count."""
        now = _now(now_s)
        if features not in _FEATURES:
            raise KernelError(f'features must be "prefill", "decode", "agg" or "decode_kv", got {features!r}')
        cols = _FEATURES[features]
        if regression.n_features != len(cols):
            raise KernelError(
                f"regression: features {features!r} need a regression of {len(cols)} features, "
                f"got {regression.n_features}"
            )
        if fallback is not None and fallback.n_features != 1:
            raise KernelError(
                f"fallback: features 'decode_kv' need a regression of 1 features, got {fallback.n_features}"
            )
        try:
            mask = np.ascontiguousarray(workers, dtype=np.bool_)
        except (TypeError, ValueError) as e:
            raise KernelError(f"workers must be a bool array: {e}") from None
        if mask.ndim != 1:
            raise KernelError("workers must be a 1-D bool array")
        picked = [
            e for e in self._engines.values()
            if e.last_seen_s > since_s and e.latest[1] > 0.0 and now - e.last_seen_s <= self._stale_after_s
            and e.worker_index < mask.shape[0] and mask[e.worker_index]
        ]
        if picked:
            t = np.array([e.last_seen_s for e in picked], dtype=np.float64)
            x = np.array([[e.latest[j] for j in cols] for e in picked], dtype=np.float64)
            y = np.array([e.latest[1] for e in picked], dtype=np.float64)
            regression.add_many(t, x, y)
            if fallback is not None:
                kv = _FEATURES["decode_kv"][0]
                fallback.add_many(t, np.array([e.latest[kv] for e in picked], dtype=np.float64), y)
        return len(picked)

    def memory_bytes(self) -> int:
        """Approximate bytes held by the table (Python object sizes; not comparable to native)."""
        total = sys.getsizeof(self._engines) + sys.getsizeof(self._worker_index)
        for e in self._engines.values():
            total += sys.getsizeof(e) + sys.getsizeof(e.worker_id) + sys.getsizeof(e.history)
            total += sum(sys.getsizeof(s) + 8 * len(s) for _, s in e.history)
        return total

    def __len__(self) -> int:
        return len(self._engines)
