"""Engine table lifecycle (expiry, stalest-first eviction), wire compatibility of counter_id, the
native regression feed, and bad arguments: native and reference alike."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sla_planner.core.load import engine_view_from_snapshot
from sla_planner.errors import FpmDecodeError, KernelError
from sla_planner.kernels import fpm_ref
from sla_planner.kernels.fpm_ingest_ref import FpmIngestor as FpmIngestorRef
from sla_planner.kernels.regression_ref import SlidingRegression as SlidingRegressionRef

from test_fpm_ingest import payload

try:
    from sla_planner import _native
except ImportError:  # pragma: no cover - the extension is built by `pip install`
    _native = None  # type: ignore[assignment]

IMPLS: list[Any] = [pytest.param((FpmIngestorRef, SlidingRegressionRef), id="reference")]
if _native is not None:
    IMPLS.append(pytest.param((_native.FpmIngestor, _native.SlidingRegression), id="native"))


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> Any:
    return request.param[0]


@pytest.fixture(params=IMPLS)
def impls(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    return request.param  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------ expiry


@pytest.mark.parametrize(("silent_s", "expired"), [(40.0, 0), (40.001, 1)])
def test_expiry_boundary(impl: Any, silent_s: float, expired: int) -> None:
    ing = impl(stale_after_s=10.0, expire_after_s=40.0)
    ing.ingest([payload("old")], now_s=0.0)
    assert ing.expire(silent_s) == expired
    assert (len(ing), ing.counters()["expired"]) == (1 - expired, expired)


def test_ingest_sweeps_silent_engines(impl: Any) -> None:
    ing = impl(stale_after_s=10.0, expire_after_s=40.0)
    ing.ingest([payload("old"), payload("new")], now_s=0.0)
    ing.ingest([payload("new", counter_id=2)], now_s=35.0)
    ing.ingest([payload("new", counter_id=3)], now_s=60.0)  # old: 60 s silent
    assert ing.snapshot(60.0)["worker_id"].tolist() == ["new"]
    assert ing.counters()["expired"] == 1


def test_infinite_expiry_keeps_everything(impl: Any) -> None:
    ing = impl(stale_after_s=1.0, expire_after_s=float("inf"))
    ing.ingest([payload("a")], now_s=0.0)
    ing.ingest([payload("b")], now_s=1e9)
    assert len(ing) == 2 and ing.expire(1e12) == 0


# ------------------------------------------------------------------------------ eviction


def test_full_table_evicts_the_stalest_stale_engine_first(impl: Any) -> None:
    ing = impl(stale_after_s=10.0, max_engines=4, expire_after_s=float("inf"))
    for worker, now in (("a", 3.0), ("b", 1.0), ("c", 2.0), ("d", 50.0)):
        ing.ingest([payload(worker)], now_s=now)
    assert ing.ingest([payload("e")], now_s=55.0) == 1
    assert ing.snapshot(55.0)["worker_id"].tolist() == ["a", "c", "d", "e"]
    c = ing.counters()
    assert (c["evicted"], c["dropped_capacity"]) == (1, 0)


def test_live_engines_are_never_evicted(impl: Any) -> None:
    ing = impl(stale_after_s=10.0, max_engines=2, expire_after_s=float("inf"))
    ing.ingest([payload("a"), payload("b")], now_s=0.0)
    assert ing.ingest([payload("c")], now_s=10.0) == 0  # a and b silent exactly 10 s: still live
    assert ing.ingest([payload("c")], now_s=10.5) == 1  # now both stale: the stalest one goes
    c = ing.counters()
    assert (c["evicted"], c["dropped_capacity"]) == (1, 1)


def _churn(ing: Any, identities: int, per_s: float) -> tuple[int, int]:
    """``identities`` pods appear ``per_s`` a second, each sending 3 passes 1 s apart; returns the
    memory after the table first filled and at the end."""
    first = 0
    for i in range(identities):
        born = i / per_s
        for c in range(3):
            assert ing.ingest([payload(f"pod-{i}", counter_id=c + 1)], now_s=born + c) == 1
        if first == 0 and len(ing) == ing.max_engines:
            first = ing.memory_bytes()
        assert len(ing) <= ing.max_engines
    return first, ing.memory_bytes()


@pytest.mark.parametrize(
    ("identities", "slots"),
    [pytest.param(100_000, 4096, id="100k-through-4096"), pytest.param(5_000, 256, id="5k-through-256")],
)
def test_churning_identities_keep_memory_bounded_and_live_engines_visible(
    impl: Any, identities: int, slots: int, request: pytest.FixtureRequest
) -> None:
    if impl is FpmIngestorRef and identities > 10_000:
        # same rules as the 5k case; ~10 s of pure Python, so only in the slow run
        request.applymarker(pytest.mark.slow)
        if "not slow" in (request.config.getoption("markexpr") or ""):
            pytest.skip("slow: the reference at 100k identities (run with -m slow)")
    per_s = slots / 40.0  # 40 s of new pods fill the table: the oldest are stale (30 s) by then
    ing = impl(history_len=10, stale_after_s=30.0, max_engines=slots, expire_after_s=300.0)
    first, last = _churn(ing, identities, per_s)
    c = ing.counters()
    assert c["dropped_capacity"] == 0
    assert c["expired"] + c["evicted"] + len(ing) == identities
    assert c["evicted"] > 0
    assert 0 < last <= first * 1.25
    now = (identities - 1) / per_s + 2.0
    snap = ing.snapshot(now, with_ids=False)
    view = engine_view_from_snapshot(snap, np.zeros(len(snap["dp_rank"]), dtype=np.int8))
    live = int(view.active.sum())
    expected = sum(1 for i in range(identities) if now - (i / per_s + 2.0) <= 30.0)
    assert live == expected


# ------------------------------------------------------------------------- counter_id u64


@pytest.mark.parametrize(
    ("counters", "gaps", "out_of_order"),
    [
        pytest.param([2**64 - 3, 2**64 - 1], 1, 0, id="one-missing-below-the-top"),
        pytest.param([2**64 - 1, 0, 1], 0, 1, id="wrap-is-a-restart-not-a-gap"),
        pytest.param([0, 2**64 - 1], 2**63 - 1, 0, id="forward-jump-clamped-to-int64"),
        pytest.param([5, 5], 0, 1, id="duplicate"),
    ],
)
def test_counter_id_u64_gaps_and_restarts(impl: Any, counters: list[int], gaps: int, out_of_order: int) -> None:
    ing = impl()
    for i, c in enumerate(counters):
        assert ing.ingest([payload(counter_id=c)], now_s=float(i)) == 1
    k = ing.counters()
    assert (k["counter_gaps"], k["out_of_order"]) == (gaps, out_of_order)
    snap, hist = ing.snapshot(9.0), ing.history("w0", 0)
    assert snap["counter_id"].dtype == hist["counter_id"].dtype == np.uint64
    assert hist["counter_id"].tolist() == counters


# ----------------------------------------------------------------------------- bad input


BAD_KERNEL_ARGS = [
    ("history_len 2**70", lambda cls: cls(history_len=2**70)),
    ("max_engines 2**70", lambda cls: cls(max_engines=2**70)),
    ("negative history_len", lambda cls: cls(history_len=-(2**70))),
    ("float history_len", lambda cls: cls(history_len=1.5)),
    ("expiry below staleness", lambda cls: cls(stale_after_s=30.0, expire_after_s=29.0)),
    ("nan expiry", lambda cls: cls(expire_after_s=float("nan"))),
    ("int worker_id in history", lambda cls: cls().history(5, 0)),
    ("str dp_rank in history", lambda cls: cls().history("w", "0")),
    ("bytes worker_id in remove", lambda cls: cls().remove(b"w", 0)),
    ("nan now in expire", lambda cls: cls().expire(float("nan"))),
]


@pytest.mark.parametrize("call", [pytest.param(c, id=i) for i, c in BAD_KERNEL_ARGS])
def test_bad_arguments_raise_the_projects_errors(impl: Any, call: Any) -> None:
    with pytest.raises(KernelError):
        call(impl)


UNKNOWN_ENGINES = [("w", 2**70), ("w", -(2**70)), ("\udcff", 0)]


@pytest.mark.parametrize(("worker_id", "dp_rank"), UNKNOWN_ENGINES)
def test_impossible_engine_keys_are_unknown_not_overflow(impl: Any, worker_id: str, dp_rank: int) -> None:
    ing = impl()
    with pytest.raises(KeyError, match="unknown engine"):
        ing.history(worker_id, dp_rank)
    assert ing.remove(worker_id, dp_rank) is False


def _with_worker_id_bytes(raw: bytes) -> bytes:
    good = payload("ab")
    return good.replace(b"\xa2ab", bytes([0xa0 | len(raw)]) + raw)


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"\xed\xa0\x80", b"a\xc3"], ids=["ff-fe", "surrogate", "cut"])
def test_non_utf8_worker_id_is_counted_malformed(impl: Any, raw: bytes) -> None:
    bad = _with_worker_id_bytes(raw)
    with pytest.raises(FpmDecodeError) as info:
        fpm_ref.decode_fpm(bad)
    assert info.value.kind == "invalid_utf8"
    ing = impl()
    assert ing.ingest_buffer(bad, np.array([0, len(bad)]), 1.0) == 0
    assert ing.ingest([bad], 1.0) == 0
    assert ing.counters()["malformed"] == 2


def test_fpm_decode_error_carries_kind_and_field_from_construction() -> None:
    err = FpmDecodeError("FPM field dp_rank must be >= 0", kind="negative", field="dp_rank")
    assert (err.kind, err.field, str(err)) == ("negative", "dp_rank", "FPM field dp_rank must be >= 0")
    assert (FpmDecodeError("x").kind, FpmDecodeError("x").field) == ("malformed", None)


# ---------------------------------------------------------------------- regression feed


def _feed_case(ingestor_cls: Any, regression_cls: Any, msgs: list[tuple[Any, ...]], workers: list[bool],
               features: str, since_s: float, now_s: float) -> tuple[int, Any, dict[str, Any]]:
    ing = ingestor_cls(stale_after_s=5.0, expire_after_s=float("inf"))
    for worker, rank, wall, tokens, t in msgs:
        ing.ingest([payload(worker, rank, wall_time=wall, prefill_tokens=tokens)], now_s=t)
    reg = regression_cls(1 if features in ("prefill", "decode_kv") else 2, 120.0, 5.0, 1)
    fallback = regression_cls(1, 120.0, 5.0, 1) if features == "decode" else None
    added = ing.feed_regression(reg, now_s, since_s, np.array(workers, dtype=bool), features, fallback)
    fits = (reg.fit(now_s + 1.0), None if fallback is None else fallback.fit(now_s + 1.0))
    return added, fits, ing.counters()


_msg = st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 1), st.sampled_from([0.0, 0.01, 0.03]),
                 st.integers(0, 9000), st.sampled_from([0.0, 1.0, 2.0, 6.0, 9.0]))


@pytest.mark.skipif(_native is None, reason="native extension not built")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_msg, max_size=12), st.lists(st.booleans(), min_size=0, max_size=4),
       st.sampled_from(["prefill", "decode", "agg", "decode_kv"]), st.sampled_from([-1.0, 1.0, 5.0]), st.sampled_from([9.0, 20.0]))
def test_native_feed_matches_reference(msgs: list[Any], workers: list[bool], features: str, since_s: float,
                                       now_s: float) -> None:
    msgs = sorted(msgs, key=lambda m: m[-1])
    got = _feed_case(_native.FpmIngestor, _native.SlidingRegression, msgs, workers, features, since_s, now_s)
    want = _feed_case(FpmIngestorRef, SlidingRegressionRef, msgs, workers, features, since_s, now_s)
    assert got[0] == want[0] and got[2] == want[2]
    for fit_got, fit_want in zip(got[1], want[1]):
        assert (fit_got is None) == (fit_want is None)
        if fit_got is not None:
            np.testing.assert_array_equal(fit_got[0], fit_want[0])
            assert fit_got[1] == fit_want[1]


def test_feed_takes_fresh_active_forward_passes_of_chosen_workers(impls: tuple[Any, Any]) -> None:
    ingestor_cls, regression_cls = impls
    ing = ingestor_cls(stale_after_s=5.0)
    ing.ingest([payload("a", 0, wall_time=0.02), payload("b", 0, wall_time=0.02)], now_s=1.0)  # a: 0, b: 1
    ing.ingest([payload("a", 1, wall_time=0.0)], now_s=2.0)  # heartbeat: never a sample
    ing.ingest([payload("c", 0, wall_time=0.02)], now_s=3.0)  # worker 2
    reg = regression_cls(1, 60.0, 1.0, 1)
    assert ing.feed_regression(reg, 4.0, 0.0, [True, False, True], "prefill") == 2  # a/0 and c/0
    assert ing.feed_regression(reg, 4.0, 1.0, [True, True, True], "prefill") == 1  # only c/0 is newer
    assert ing.feed_regression(reg, 7.0, 0.0, [True, True, True], "prefill") == 1  # a, b stale at 7
    with pytest.raises(KernelError):
        ing.feed_regression(reg, 4.0, 0.0, [True], "decode")  # 2 features asked of a 1-feature model
    with pytest.raises(KernelError):
        ing.feed_regression(reg, 4.0, 0.0, [True], "bogus")


# ---------------------------------------------------------------------- selective snapshot

VIEW_COLUMNS = ["worker_index", "active", "last_seen_s", "wall_time", "counter_id", "stale",
                "scheduled_var_prefill_length", "queued_sum_prefill_tokens", "received", "gaps"]


def test_snapshot_columns_are_the_full_snapshots_columns(impl: Any) -> None:
    ing = impl(stale_after_s=5.0)
    ing.ingest([payload("a", 0), payload("b", 1, counter_id=2**64 - 1), payload("a", 1, wall_time=0.0)], 1.0)
    ing.ingest([payload("c", 0)], 9.0)
    full, some = ing.snapshot(9.0), ing.snapshot(9.0, columns=VIEW_COLUMNS)
    assert list(some) == VIEW_COLUMNS
    for name in VIEW_COLUMNS:
        assert some[name].dtype == full[name].dtype, name
        np.testing.assert_array_equal(some[name], full[name], err_msg=name)
    assert ing.snapshot(9.0, columns=[]) == {}
    for bad in (["worker_id"], ["bogus"], ["scheduled_bogus"]):
        with pytest.raises(KernelError, match="unknown snapshot column"):
            ing.snapshot(9.0, columns=bad)


# ------------------------------------------------------------------------------ fuzz loop


@pytest.mark.skipif(_native is None, reason="native extension not built")
def test_fuzz_loop_finds_no_mismatch_and_catches_a_wrong_decoder() -> None:
    from sla_planner import fpm_fuzz

    report = fpm_fuzz.fuzz(6_000, seed=7, batch=500)
    assert (report.payloads, report.mismatches) == (6_000, 0)
    assert report.accepted > 500 and report.batches == 12

    class WrongDecoder:  # the native module with a decoder that drops one field
        FpmIngestor = _native.FpmIngestor

        @staticmethod
        def decode_fpm(payload: bytes) -> Any:
            rec = _native.decode_fpm(payload)
            rec.pop("wall_time")
            return rec

    assert fpm_fuzz.fuzz(2_000, seed=7, batch=500, native=WrongDecoder).mismatches > 0
