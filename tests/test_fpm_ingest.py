"""FPM ingestion: the engine table behind FpmIngestor, native and reference."""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sla_planner.errors import KernelError
from sla_planner.kernels import fpm_ref
from sla_planner.kernels.fpm_ingest_ref import FpmIngestor as FpmIngestorRef

try:
    from sla_planner import _native
except ImportError:  # pragma: no cover - the extension is built by `pip install`
    _native = None  # type: ignore[assignment]

IMPLS: list[Any] = [pytest.param(FpmIngestorRef, id="reference")]
if _native is not None:
    IMPLS.append(pytest.param(_native.FpmIngestor, id="native"))


def payload(worker_id: str = "w0", dp_rank: int = 0, counter_id: int = 1, wall_time: float = 0.02,
            prefill_tokens: int = 4096, version: int = 1) -> bytes:
    rec = {
        "version": version,
        "worker_id": worker_id,
        "dp_rank": dp_rank,
        "counter_id": counter_id,
        "wall_time": wall_time,
        "scheduled_requests": {
            name: (prefill_tokens if name == "sum_prefill_tokens" else 3) if is_count else 1.5
            for name, is_count in fpm_ref.SCHEDULED_FIELDS
        },
        "queued_requests": {name: 2 if is_count else 0.5 for name, is_count in fpm_ref.QUEUED_FIELDS},
    }
    return msgpack.packb(rec, use_bin_type=True)


def heartbeat(worker_id: str = "w0", dp_rank: int = 0) -> bytes:
    return payload(worker_id, dp_rank, counter_id=0, wall_time=0.0, prefill_tokens=0)


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> Any:
    return request.param


def test_counts_accepted_malformed_and_wrong_version(impl: Any) -> None:
    ing = impl(history_len=4)
    accepted = ing.ingest([payload(), b"\x80", b"", payload(version=2), heartbeat()], now_s=1.0)
    assert accepted == 2
    c = ing.counters()
    assert (c["received"], c["decoded"], c["malformed"], c["wrong_version"], c["heartbeats"]) == (5, 2, 2, 1, 1)
    assert c["engines"] == len(ing) == 1


def test_history_ring_keeps_newest_and_excludes_heartbeats(impl: Any) -> None:
    ing = impl(history_len=3)
    for c in range(1, 6):
        ing.ingest([payload(counter_id=c, prefill_tokens=100 * c)], now_s=float(c))
    ing.ingest([heartbeat()], now_s=6.0)
    h = ing.history("w0", 0)
    assert h["counter_id"].tolist() == [3, 4, 5]
    assert h["received_s"].tolist() == [3.0, 4.0, 5.0]
    assert h["scheduled_sum_prefill_tokens"].tolist() == [300, 400, 500]
    snap = ing.snapshot(6.0)
    assert snap["wall_time"].tolist() == [0.0]  # latest is the heartbeat: idle
    assert snap["scheduled_sum_prefill_tokens"].tolist() == [0]


def test_history_len_zero_keeps_nothing(impl: Any) -> None:
    ing = impl(history_len=0)
    ing.ingest([payload()], now_s=1.0)
    assert ing.history("w0", 0)["counter_id"].size == 0


def test_counter_and_seq_gaps(impl: Any) -> None:
    ing = impl()
    ing.ingest([payload(counter_id=c) for c in (1, 4, 5, 5)], now_s=1.0, seqs=[10, 11, 15, 16])
    c = ing.counters()
    assert (c["counter_gaps"], c["seq_gaps"], c["gaps"], c["out_of_order"]) == (2, 3, 5, 1)
    assert ing.snapshot(1.0)["gaps"].tolist() == [5]


def test_heartbeats_do_not_break_counter_tracking(impl: Any) -> None:
    ing = impl()
    ing.ingest([payload(counter_id=7), heartbeat(), payload(counter_id=8)], now_s=1.0)
    assert ing.counters()["gaps"] == 0 and ing.counters()["out_of_order"] == 0


@pytest.mark.parametrize(("now_s", "stale"), [pytest.param(130.0, False, id="at-threshold"),
                                              pytest.param(130.001, True, id="just-beyond")])
def test_staleness_boundary(impl: Any, now_s: float, stale: bool) -> None:
    ing = impl(stale_after_s=30.0)
    ing.ingest([payload()], now_s=100.0)
    snap = ing.snapshot(now_s)
    assert snap["stale"].tolist() == [stale]
    assert snap["active"].tolist() == [not stale]


def test_snapshot_is_struct_of_arrays_in_registration_order(impl: Any) -> None:
    ing = impl()
    ing.ingest([payload("b", 1), payload("a", 0), payload("b", 0)], now_s=5.0)
    snap = ing.snapshot(5.0)
    assert snap["worker_id"].dtype == object and snap["worker_id"].tolist() == ["b", "a", "b"]
    assert snap["dp_rank"].dtype == np.int64 and snap["dp_rank"].tolist() == [1, 0, 0]
    assert snap["wall_time"].dtype == np.float64
    assert snap["queued_var_prefill_length"].dtype == np.float64
    assert snap["scheduled_num_decode_requests"].dtype == np.int64
    expected = {f"scheduled_{n}" for n, _ in fpm_ref.SCHEDULED_FIELDS} | {f"queued_{n}" for n, _ in fpm_ref.QUEUED_FIELDS}
    assert expected <= set(snap)
    assert snap["worker_id"][snap["active"]].tolist() == ["b", "a", "b"]


def test_remove_keeps_order_and_readds_at_end(impl: Any) -> None:
    ing = impl()
    ing.ingest([payload("a"), payload("b"), payload("c")], now_s=1.0)
    assert ing.remove("b", 0) is True
    assert ing.remove("b", 0) is False
    ing.ingest([payload("b")], now_s=2.0)
    assert ing.snapshot(2.0)["worker_id"].tolist() == ["a", "c", "b"]
    with pytest.raises(KeyError):
        ing.history("zz", 0)


def test_capacity_limit_drops_only_new_engines(impl: Any) -> None:
    ing = impl(max_engines=2)
    assert ing.ingest([payload("a"), payload("b"), payload("c"), payload("a", counter_id=2)], now_s=1.0) == 3
    assert ing.counters()["dropped_capacity"] == 1 and len(ing) == 2


def test_ingest_buffer_matches_ingest(impl: Any) -> None:
    msgs = [payload("a", counter_id=1), b"junk", payload("b", 1), heartbeat("a"), payload(version=3)]
    one, two = impl(), impl()
    offsets = np.cumsum([0] + [len(m) for m in msgs])
    assert one.ingest_buffer(b"".join(msgs), offsets, 3.0, seqs=[1, 2, 3, 4, 5]) == \
        two.ingest(msgs, 3.0, seqs=[1, 2, 3, 4, 5])
    assert one.counters() == two.counters()
    _assert_snapshots_equal(one.snapshot(3.0), two.snapshot(3.0))


def test_memory_is_reported_and_bounded(impl: Any) -> None:
    ing = impl(history_len=10)
    empty = ing.memory_bytes()
    for i in range(20):
        ing.ingest([payload(f"w{i}", counter_id=c) for c in range(30)], now_s=1.0)
    grown = ing.memory_bytes()
    for i in range(20):
        ing.ingest([payload(f"w{i}", counter_id=c) for c in range(30, 60)], now_s=2.0)
    assert empty < grown == ing.memory_bytes()  # the ring is full: more messages, same memory


BAD_ARGS = [
    ("negative history_len", lambda cls: cls(history_len=-1)),
    ("huge history_len", lambda cls: cls(history_len=100_001)),
    ("zero stale_after_s", lambda cls: cls(stale_after_s=0.0)),
    ("nan stale_after_s", lambda cls: cls(stale_after_s=float("nan"))),
    ("zero max_engines", lambda cls: cls(max_engines=0)),
    ("nan now_s", lambda cls: cls().ingest([], float("nan"))),
    ("str payload", lambda cls: cls().ingest(["abc"], 1.0)),
    ("bytearray payload", lambda cls: cls().ingest([bytearray(b"x")], 1.0)),
    ("seqs length", lambda cls: cls().ingest([b"x"], 1.0, seqs=[1, 2])),
    ("negative seq", lambda cls: cls().ingest([b"x"], 1.0, seqs=[-1])),
    ("float offsets", lambda cls: cls().ingest_buffer(b"ab", np.array([0.0, 2.0]), 1.0)),
    ("empty offsets", lambda cls: cls().ingest_buffer(b"ab", np.array([], dtype=np.int64), 1.0)),
    ("decreasing offsets", lambda cls: cls().ingest_buffer(b"ab", [0, 2, 1], 1.0)),
    ("offsets past end", lambda cls: cls().ingest_buffer(b"ab", [0, 3], 1.0)),
    ("negative first offset", lambda cls: cls().ingest_buffer(b"ab", [-1, 1], 1.0)),
    ("2-D offsets", lambda cls: cls().ingest_buffer(b"ab", [[0, 1]], 1.0)),
]


@pytest.mark.parametrize("call", [pytest.param(c, id=i) for i, c in BAD_ARGS])
def test_bad_arguments_raise_kernel_error(impl: Any, call: Any) -> None:
    with pytest.raises(KernelError):
        call(impl)


# ------------------------------------------------------------ native == reference (hypothesis)


def _assert_snapshots_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


_message = st.one_of(
    st.builds(payload, st.sampled_from(["a", "b", "c"]), st.integers(0, 2), st.integers(0, 12),
              st.sampled_from([0.0, 0.01, 0.05]), st.integers(0, 10**6)),
    st.builds(payload, st.just("a"), st.just(0), st.integers(0, 3), st.just(0.01), st.just(1), st.integers(0, 3)),
    st.builds(payload, st.sampled_from(["a", "d"]), st.just(0), st.sampled_from([0, 1, 2**63, 2**64 - 2, 2**64 - 1]),
              st.just(0.01)),
    st.binary(max_size=40),
)
_op = st.one_of(
    st.tuples(st.just("ingest"), st.lists(_message, max_size=6), st.booleans()),
    st.tuples(st.just("buffer"), st.lists(_message, max_size=6), st.booleans()),
    st.tuples(st.just("remove"), st.sampled_from(["a", "b", "c"]), st.integers(0, 2)),
    st.tuples(st.just("expire")),
)


@pytest.mark.skipif(_native is None, reason="native extension not built")
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_op, max_size=8), st.integers(1, 4), st.sampled_from([0.5, 2.0, 30.0]),
       st.sampled_from([1.0, 4.0, math.inf]), st.data())
def test_native_matches_reference(
    ops: list[Any], history_len: int, stale_after_s: float, expire_factor: float, data: st.DataObject
) -> None:
    expire_after_s = stale_after_s * expire_factor
    native = _native.FpmIngestor(history_len, stale_after_s, max_engines=5, expire_after_s=expire_after_s)
    ref = FpmIngestorRef(history_len, stale_after_s, max_engines=5, expire_after_s=expire_after_s)
    now = 0.0
    for op in ops:
        now += data.draw(st.sampled_from([0.0, 0.25, 1.0, 3.0, 40.0]))
        if op[0] == "remove":
            assert native.remove(op[1], op[2]) == ref.remove(op[1], op[2])
            continue
        if op[0] == "expire":
            assert native.expire(now) == ref.expire(now)
            continue
        msgs, with_seq = op[1], op[2]
        seqs = data.draw(st.lists(st.integers(0, 20), min_size=len(msgs), max_size=len(msgs))) if with_seq else None
        if op[0] == "ingest":
            assert native.ingest(msgs, now, seqs) == ref.ingest(msgs, now, seqs)
        else:
            offsets = np.cumsum([0] + [len(m) for m in msgs])
            buf = b"".join(msgs)
            assert native.ingest_buffer(buf, offsets, now, seqs) == ref.ingest_buffer(buf, offsets, now, seqs)
    assert native.counters() == ref.counters()
    assert len(native) == len(ref)
    _assert_snapshots_equal(native.snapshot(now), ref.snapshot(now))
    for w, r in zip(native.snapshot(now)["worker_id"].tolist(), native.snapshot(now)["dp_rank"].tolist()):
        h_native, h_ref = native.history(w, r), ref.history(w, r)
        _assert_snapshots_equal(h_native, h_ref)


def test_kernels_package_picks_native_or_reference() -> None:
    from sla_planner import kernels

    expected = _native.FpmIngestor if kernels.USING_EXTENSIONS and _native is not None else FpmIngestorRef
    assert kernels.FpmIngestor is expected
