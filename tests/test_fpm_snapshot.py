"""Engine-table snapshots at scale: ``worker_index`` (interned workers), ``with_ids`` and capacity.

Native and reference tables get the same messages and must produce the same snapshot.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pytest

from sla_planner.errors import KernelError
from sla_planner.kernels.fpm_ingest_ref import FpmIngestor as FpmIngestorRef

try:
    from sla_planner import _native
except ImportError:  # pragma: no cover - the extension is built by `pip install`
    _native = None  # type: ignore[assignment]

IMPLS: list[Any] = [pytest.param(FpmIngestorRef, id="reference")]
if _native is not None:
    IMPLS.append(pytest.param(_native.FpmIngestor, id="native"))
needs_native = pytest.mark.skipif(_native is None, reason="native extension not built")


def payload(worker_id: str, dp_rank: int, counter_id: int, wall_time: float = 0.02) -> bytes:
    """One FPM message with a few non-zero numbers derived from the key."""
    return msgpack.packb(
        {
            "version": 1,
            "worker_id": worker_id,
            "dp_rank": dp_rank,
            "counter_id": counter_id,
            "wall_time": wall_time,
            "scheduled_requests": {
                "num_prefill_requests": dp_rank, "sum_prefill_tokens": 100 * counter_id,
                "var_prefill_length": 0.5, "sum_prefill_kv_tokens": 7, "num_decode_requests": 3,
                "sum_decode_kv_tokens": 1000 + counter_id, "var_decode_kv_tokens": 2.5,
            },
            "queued_requests": {
                "num_prefill_requests": 1, "sum_prefill_tokens": 50 * dp_rank, "var_prefill_length": 0.0,
                "num_decode_requests": 0, "sum_decode_kv_tokens": 0, "var_decode_kv_tokens": 0.0,
            },
        },
        use_bin_type=True,
    )


# workers a (3 ranks), b (1 rank), c (2 ranks), interleaved; one heartbeat
MESSAGES = [
    payload("a", 0, 1), payload("b", 0, 1), payload("a", 2, 1), payload("c", 1, 1),
    payload("a", 1, 1), payload("c", 0, 1), payload("a", 0, 2), payload("b", 0, 0, 0.0),
]


@pytest.fixture(params=IMPLS)
def table_cls(request: pytest.FixtureRequest) -> Any:
    return request.param


def filled(cls: Any, messages: list[bytes] = MESSAGES, **kw: Any) -> Any:
    t = cls(**kw)
    assert t.ingest(messages, 10.0) == len(messages)
    return t


def test_worker_index_is_shared_by_ranks_and_distinct_across_workers(table_cls: Any) -> None:
    s = filled(table_cls).snapshot(10.0)
    assert s["worker_index"].dtype == np.int64
    by_worker: dict[str, set[int]] = {}
    for wid, idx in zip(s["worker_id"].tolist(), s["worker_index"].tolist()):
        by_worker.setdefault(wid, set()).add(idx)
    assert all(len(v) == 1 for v in by_worker.values())
    assert len({next(iter(v)) for v in by_worker.values()}) == len(by_worker) == 3
    # dense: interned in first-seen order, 0..n_workers-1
    assert s["worker_index"].tolist() == [0, 1, 0, 2, 0, 2]


@pytest.mark.parametrize("with_ids", [True, False], ids=["with_ids", "without_ids"])
def test_with_ids_only_drops_the_strings(table_cls: Any, with_ids: bool) -> None:
    t = filled(table_cls)
    full = t.snapshot(10.0)
    s = t.snapshot(10.0, with_ids=with_ids)
    assert ("worker_id" in s) is with_ids
    assert set(full) - set(s) == (set() if with_ids else {"worker_id"})
    for key in s:
        np.testing.assert_array_equal(s[key], full[key], err_msg=key)


def test_with_ids_is_keyword_only(table_cls: Any) -> None:
    with pytest.raises(TypeError):
        filled(table_cls).snapshot(10.0, False)


@needs_native
@pytest.mark.parametrize("with_ids", [True, False], ids=["with_ids", "without_ids"])
def test_native_snapshot_equals_reference(with_ids: bool) -> None:
    native, ref = filled(_native.FpmIngestor), filled(FpmIngestorRef)
    for t in (native, ref):
        assert t.remove("a", 2) and t.remove("b", 0)
        assert t.ingest([payload("d", 0, 1), payload("e", 3, 1), payload("a", 2, 5)], 11.0) == 3
    sn, sr = native.snapshot(12.0, with_ids=with_ids), ref.snapshot(12.0, with_ids=with_ids)
    assert list(sn) == list(sr)
    for key in sn:
        assert sn[key].dtype == sr[key].dtype, key
        np.testing.assert_array_equal(sn[key], sr[key], err_msg=key)


@pytest.mark.parametrize(
    ("removed", "new_worker_index"),
    [
        ([("b", 0)], 1),  # b's only rank gone: its index is free and reused
        ([("a", 0)], 3),  # a still has ranks 1 and 2: no index freed
        ([("a", 0), ("a", 1), ("a", 2), ("b", 0)], 0),  # a and b free: the lowest (0) first
    ],
    ids=["last-rank-frees", "other-ranks-keep", "lowest-free-first"],
)
def test_worker_index_reuse_after_remove(table_cls: Any, removed: list[tuple[str, int]], new_worker_index: int) -> None:
    t = filled(table_cls)
    for wid, rank in removed:
        assert t.remove(wid, rank)
    assert t.ingest([payload("new", 0, 1), payload("new", 1, 1)], 11.0) == 2
    s = t.snapshot(11.0)
    rows = s["worker_id"] == "new"
    assert s["worker_index"][rows].tolist() == [new_worker_index] * 2
    others = s["worker_index"][~rows]
    assert new_worker_index not in others.tolist()


def test_empty_snapshot_has_every_column(table_cls: Any) -> None:
    s = table_cls().snapshot(0.0, with_ids=False)
    assert s["worker_index"].shape == (0,) and s["dp_rank"].shape == (0,)
    assert "worker_id" not in s


@pytest.mark.parametrize("max_engines", [0, (1 << 20) + 1], ids=["zero", "over-limit"])
def test_max_engines_out_of_range_is_rejected(table_cls: Any, max_engines: int) -> None:
    with pytest.raises(KernelError, match="max_engines"):
        table_cls(max_engines=max_engines)


@needs_native
def test_native_table_holds_more_than_100k_engine_ranks() -> None:
    """12,501 workers x 8 dp ranks = 100,008 engines; one past max_engines is dropped."""
    n_workers, ranks = 12_501, 8
    messages = [payload(f"decode-{w:05d}-7c9f", r, 1) for w in range(n_workers) for r in range(ranks)]
    t = _native.FpmIngestor(history_len=4, max_engines=n_workers * ranks)
    buf = b"".join(messages)
    offsets = np.cumsum([0] + [len(m) for m in messages], dtype=np.int64)
    assert t.ingest_buffer(buf, offsets, 1.0) == n_workers * ranks
    assert t.ingest([payload("one-too-many", 0, 1)], 1.0) == 0
    assert t.counters()["dropped_capacity"] == 1
    s = t.snapshot(1.0, with_ids=False)
    assert s["worker_index"].shape == (n_workers * ranks,)
    np.testing.assert_array_equal(s["worker_index"], np.repeat(np.arange(n_workers), ranks))
    # same messages again: every one finds its engine (no new registrations)
    assert t.ingest_buffer(buf, offsets, 2.0) == n_workers * ranks
    assert len(t) == n_workers * ranks
