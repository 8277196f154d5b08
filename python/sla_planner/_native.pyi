"""Rust extension (crate ``rust/py``): FPM codec, engine table, sliding-window regression.

Pure-Python twins with identical semantics live in ``sla_planner.kernels.fpm_ref``,
``fpm_ingest_ref`` and ``regression_ref``; ``sla_planner.kernels`` picks one set at import.
Errors: ``sla_planner.errors.FpmDecodeError`` (attributes ``kind: str`` and ``field: str | None``)
for invalid FPM payloads or records, ``sla_planner.errors.KernelError`` for bad arguments.
"""

from collections.abc import Sequence
from typing import Any, Self, final

import numpy as np
import numpy.typing as npt

__all__ = ["fpm_schema_version", "encode_fpm", "encode_fpm_rows", "decode_fpm", "estimate_many", "FpmIngestor", "SlidingRegression", "FpmReceiver", "BenchPublisher", "MAX_PAYLOAD_BYTES", "MAX_WORKER_ID_BYTES", "MAX_MAP_ENTRIES", "MAX_DEPTH", "__version__"]

__version__: str
MAX_PAYLOAD_BYTES: int
MAX_WORKER_ID_BYTES: int
MAX_MAP_ENTRIES: int
MAX_DEPTH: int

def fpm_schema_version() -> int:
    """FPM schema version understood by the native module."""

def encode_fpm(record: dict[str, Any]) -> bytes:
    """Encode an FPM record dict (the shape ``decode_fpm`` returns; ``version`` optional)."""

def encode_fpm_rows(
    worker_ids: Sequence[str] | npt.NDArray[Any],
    dp_rank: npt.ArrayLike,
    counter_id: npt.ArrayLike,
    wall_time: npt.ArrayLike,
    scheduled: npt.ArrayLike,
    queued: npt.ArrayLike,
) -> tuple[bytes, npt.NDArray[np.uint64]]:
    """Encode n records given as columns back to back; returns the buffer and n + 1 offsets
    (what ``FpmIngestor.ingest_buffer`` takes). ``worker_ids``: a sequence of str (list, or a
    numpy object or unicode array). ``scheduled`` (n, 7) and ``queued`` (n, 6) are
    float64 in schema field order; count/sum columns must hold non-negative whole numbers.
    Bad shapes raise KernelError; a bad value raises FpmDecodeError naming the row and cell.
    Byte-identical to ``encode_fpm`` record by record; the GIL is released while encoding."""

def decode_fpm(payload: bytes) -> dict[str, Any]:
    """Decode one FPM payload to ``{version, worker_id, dp_rank, counter_id, wall_time,
    scheduled_requests: {...}, queued_requests: {...}}`` (counts int, variances float)."""

def estimate_many(coef: npt.ArrayLike, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """``coef[0] + X @ coef[1:]`` for every row of X ((n, k), or (n,) when k == 1)."""

@final
class FpmIngestor:
    """Engine table fed by FPM payloads, one row per ``(worker_id, dp_rank)``.

    Keeps the latest message (idle heartbeats, ``wall_time == 0.0``, included), the last
    ``history_len`` forward passes (heartbeats excluded) and counters; an engine is stale when
    ``now_s - last_seen_s > stale_after_s`` and removed (``expired``) when silent for more than
    ``expire_after_s`` (``inf``: never; must be >= ``stale_after_s``). At most ``max_engines``
    engines: a new engine at capacity first sweeps expired ones, then evicts the stalest stale
    ones (``evicted``; up to ``max(1, max_engines // 16)`` at once); when every engine is live
    its message is dropped (``dropped_capacity``). ``counter_id`` is unsigned 64-bit.
    """

    def __new__(
        cls, history_len: int = 10, stale_after_s: float = 30.0, max_engines: int = 4096,
        expire_after_s: float = 300.0,
    ) -> Self: ...
    @property
    def history_len(self) -> int: ...
    @property
    def stale_after_s(self) -> float: ...
    @property
    def expire_after_s(self) -> float: ...
    @property
    def max_engines(self) -> int: ...
    def ingest(self, payloads: Sequence[bytes], now_s: float, seqs: Sequence[int] | None = None) -> int:
        """Decode and apply payloads received at ``now_s``; returns how many were accepted.
        Invalid payloads are counted (``malformed``, ``wrong_version``), never raised."""

    def ingest_buffer(
        self, buf: bytes, offsets: npt.ArrayLike, now_s: float, seqs: Sequence[int] | None = None
    ) -> int:
        """Like ``ingest``; payload i is ``buf[offsets[i]:offsets[i+1]]`` (offsets: n + 1 ints)."""

    def snapshot(
        self, now_s: float, *, with_ids: bool = True, columns: Sequence[str] | None = None
    ) -> dict[str, npt.NDArray[Any]]:
        """Struct of arrays, one row per engine in registration order: ``worker_id`` (object
        array of str; left out when ``with_ids`` is False, which saves one str per engine),
        ``worker_index`` (int64: the interned worker, equal for all dp ranks of one worker,
        distinct across workers; a removed worker's index is reused, lowest first),
        ``dp_rank`` (int64), ``counter_id`` (uint64), ``wall_time``, ``last_seen_s``
        (float64), ``stale``, ``active`` (bool, ``active == ~stale``), ``received``,
        ``heartbeats``, ``gaps``, ``out_of_order`` (int64), and ``scheduled_<field>`` /
        ``queued_<field>`` for every FPM field (int64 counts, float64 variances). ``columns``:
        only those (any of the names above but ``worker_id``), in that order: the load tick
        takes 10 of 24, which is most of the snapshot's cost at 80k engines."""

    def history(self, worker_id: str, dp_rank: int) -> dict[str, npt.NDArray[Any]]:
        """Stored forward passes, oldest first: ``received_s``, ``counter_id`` (uint64),
        ``wall_time`` and the ``scheduled_*`` / ``queued_*`` columns. KeyError for an unknown
        engine; KernelError when ``worker_id`` is not a str or ``dp_rank`` not an int."""

    def counters(self) -> dict[str, int]:
        """``received``, ``decoded``, ``malformed``, ``wrong_version``, ``heartbeats``,
        ``gaps`` (= ``counter_gaps`` + ``seq_gaps``), ``counter_gaps``, ``seq_gaps``,
        ``out_of_order``, ``dropped_capacity``, ``expired``, ``evicted``, ``engines``."""

    def remove(self, worker_id: str, dp_rank: int) -> bool:
        """Forget an engine; returns whether it was known."""

    def expire(self, now_s: float) -> int:
        """Remove engines silent for more than ``expire_after_s`` at ``now_s``; returns how many."""

    def feed_regression(
        self, regression: SlidingRegression, now_s: float, since_s: float, workers: npt.ArrayLike, features: str,
        fallback: SlidingRegression | None = None,
    ) -> int:
        """Add the latest forward pass of every engine active at ``now_s``, seen after
        ``since_s``, not a heartbeat, whose ``worker_index`` is True in the bool mask
        ``workers``, to ``regression`` in registration order: ``t = last_seen_s``, ``y =
        wall_time``, ``x`` by ``features`` ("prefill": scheduled prefill tokens; "decode":
        scheduled decode requests and KV tokens; "agg": prefill tokens and decode KV tokens;
        "decode_kv": decode KV tokens alone); the same samples' decode KV tokens also go into the
        one-feature ``fallback`` when given (one pass over the table for both).
        Returns how many samples were added. No numpy round trip; the GIL is released."""

    def memory_bytes(self) -> int:
        """Approximate bytes held by the table."""

    def __len__(self) -> int: ...

@final
class SlidingRegression:
    """Time-bucketed sliding-window OLS with intercept over 1 or 2 features."""

    def __new__(cls, n_features: int, window_s: float, bucket_s: float, min_observations: int = 5) -> Self: ...
    @property
    def n_features(self) -> int: ...
    @property
    def window_s(self) -> float: ...
    @property
    def bucket_s(self) -> float: ...
    @property
    def n_buckets(self) -> int: ...
    @property
    def min_observations(self) -> int: ...
    @property
    def last_rejection(self) -> str | None:
        """Why the last fit returned None: "insufficient", "singular", "negative_slope"."""

    @property
    def dropped_invalid(self) -> int:
        """Samples dropped for NaN/inf values or an out-of-range time."""

    @property
    def dropped_late(self) -> int:
        """Samples whose bucket had already left the ring."""

    def add(self, t_s: float, x: float | Sequence[float], y: float) -> None:
        """Add one sample (O(1)); non-finite samples are counted and dropped."""

    def add_many(self, t: npt.ArrayLike, X: npt.ArrayLike, y: npt.ArrayLike) -> None:
        """Add samples: ``t`` (n,), ``X`` (n, n_features) or (n,) for one feature, ``y`` (n,)."""

    def fit(self, now_s: float) -> tuple[npt.NDArray[np.float64], int] | None:
        """``(coefficients [intercept, b1, (b2)], sample count)`` over the window ending at
        ``now_s``, or None (see ``last_rejection``)."""

@final
class FpmReceiver:
    """ZMTP SUB connections to FPM endpoints (``tcp://host:port``), read on a native thread
    straight into ``ingestor``'s table (messages stamped with the wall clock). Reconnects every
    ``reconnect_s`` to an endpoint that is down; messages that are not ``[topic, 8-byte
    sequence, payload]`` are counted ``bad_frames``, payloads over ``max_payload_bytes``
    ``oversized``."""

    def __new__(cls, ingestor: FpmIngestor, max_payload_bytes: int = 65536, reconnect_s: float = 0.1) -> Self: ...
    @property
    def running(self) -> bool: ...
    def connect(self, endpoint: str) -> None:
        """Subscribe to ``endpoint``; KernelError when it is not ``tcp://host:port``."""

    def disconnect(self, endpoint: str) -> None:
        """Close the connection to ``endpoint`` and drop its counters."""

    def counters(self) -> dict[str, Any]:
        """``received``, ``bad_frames``, ``oversized``, ``connect_errors``,
        ``received_by_endpoint`` (endpoint -> messages), ``connected`` (sorted endpoints whose
        handshake is done)."""

    def take_learned(self) -> list[tuple[str, str, int]]:
        """New engines since the last call as ``(endpoint, worker_id, dp_rank)``."""

    def stop(self) -> None:
        """Stop the loop and close every connection (idempotent)."""

@final
class BenchPublisher:
    """``n`` loopback ZMTP PUB endpoints that send FPM messages as fast as a subscriber reads
    (benchmarks and tests of the receive path)."""

    def __new__(cls, n: int) -> Self: ...
    @property
    def endpoints(self) -> list[str]: ...
    def start(self, payloads: Sequence[Sequence[bytes]], messages: int) -> None:
        """Endpoint i accepts one subscriber and sends it ``messages`` messages cycling
        through ``payloads[i]``; returns at once (call once)."""

    def join(self) -> int:
        """Wait until every endpoint's subscriber has closed; returns the messages sent."""
