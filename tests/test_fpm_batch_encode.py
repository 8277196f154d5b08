"""Batch FPM encoding (``encode_fpm_rows``): native and reference agree byte for byte with
``encode_fpm`` record by record, feed ``ingest_buffer``, and reject bad input naming row and cell."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sla_planner import kernels
from sla_planner.errors import FpmDecodeError, KernelError
from sla_planner.kernels import fpm_ref
from sla_planner.kernels.fpm_ingest_ref import FpmIngestor as FpmIngestorRef

try:
    from sla_planner import _native
except ImportError:  # pragma: no cover - the extension is built by `pip install`
    _native = None  # type: ignore[assignment]

needs_native = pytest.mark.skipif(_native is None, reason="native extension not built")

# (batch encoder, one-record encoder, ingestor) per implementation
IMPLS: list[Any] = [
    pytest.param((fpm_ref.encode_fpm_rows, fpm_ref.encode_fpm, FpmIngestorRef), id="reference")
]
if _native is not None:
    IMPLS.append(pytest.param((_native.encode_fpm_rows, _native.encode_fpm, _native.FpmIngestor), id="native"))

SCHEDULED = [name for name, _ in fpm_ref.SCHEDULED_FIELDS]
QUEUED = [name for name, _ in fpm_ref.QUEUED_FIELDS]
BELOW_2_63 = float(np.nextafter(2.0**63, 0.0))  # largest float64 that still fits int64


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> Any:
    return request.param


def columns(n: int = 6) -> dict[str, Any]:
    """A valid batch: mixed pools, a heartbeat every 4th row, integers at msgpack width edges."""
    edges = [0, 127, 128, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32, 2**53]
    sched = np.array([[i % 5, edges[i % 10], 12.5 * i, edges[(i + 3) % 10], i, 96_000 + i, 0.25]
                      for i in range(n)], dtype=np.float64).reshape(n, 7)
    queued = np.array([[i % 3, 4096.0 * i, 0.5, edges[(i + 7) % 10], 1e6, 3.5e6]
                       for i in range(n)], dtype=np.float64).reshape(n, 6)
    wall = np.array([0.0 if i % 4 == 3 else 0.0125 + 1e-4 * i for i in range(n)])
    sched[wall == 0.0] = 0.0
    return {
        "worker_ids": [("prefill-", "decode-", "agg-")[i % 3] + str(i // 3) for i in range(n)],
        "dp_rank": np.array([i % 2 for i in range(n)], dtype=np.int64),
        "counter_id": np.array([(i // 3) * 1000 for i in range(n)], dtype=np.int64),
        "wall_time": wall,
        "scheduled": sched,
        "queued": queued,
    }


def records(cols: dict[str, Any]) -> list[dict[str, Any]]:
    """The same batch as record dicts (what one-by-one ``encode_fpm`` takes)."""
    out = []
    for i, worker_id in enumerate(cols["worker_ids"]):
        out.append({
            "version": 1,
            "worker_id": worker_id,
            "dp_rank": int(cols["dp_rank"][i]),
            "counter_id": int(cols["counter_id"][i]),
            "wall_time": float(cols["wall_time"][i]),
            "scheduled_requests": {
                name: (int(v) if is_count else float(v))
                for (name, is_count), v in zip(fpm_ref.SCHEDULED_FIELDS, cols["scheduled"][i])
            },
            "queued_requests": {
                name: (int(v) if is_count else float(v))
                for (name, is_count), v in zip(fpm_ref.QUEUED_FIELDS, cols["queued"][i])
            },
        })
    return out


def encode(impl: Any, cols: dict[str, Any]) -> tuple[bytes, np.ndarray]:
    encode_rows, _, _ = impl
    return encode_rows(cols["worker_ids"], cols["dp_rank"], cols["counter_id"], cols["wall_time"],
                       cols["scheduled"], cols["queued"])


# ---------------------------------------------------------------------------- equivalence

def test_rows_equal_one_by_one_encoding(impl: Any) -> None:
    cols = columns(12)
    buf, offsets = encode(impl, cols)
    assert isinstance(buf, bytes)
    assert offsets.dtype == np.uint64 and offsets.shape == (13,)
    assert offsets[0] == 0 and offsets[-1] == len(buf)
    _, encode_one, _ = impl
    expected = [encode_one(rec) for rec in records(cols)]
    assert [buf[a:b] for a, b in zip(offsets[:-1], offsets[1:])] == expected
    assert buf == b"".join(fpm_ref.encode_fpm(rec) for rec in records(cols))


def test_rows_decode_back_to_the_records(impl: Any) -> None:
    cols = columns(7)
    buf, offsets = encode(impl, cols)
    decoded = [fpm_ref.decode_fpm(buf[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]
    assert decoded == records(cols)


def test_rows_feed_ingest_buffer(impl: Any) -> None:
    cols = columns(9)
    _, _, ingestor_cls = impl
    ing = ingestor_cls(history_len=4)
    assert ing.ingest_buffer(*encode(impl, cols), 5.0) == 9
    c = ing.counters()
    assert (c["received"], c["decoded"], c["malformed"], c["heartbeats"]) == (9, 9, 0, 2)
    assert c["engines"] == 9  # (worker_id, dp_rank) pairs are all distinct here


def test_empty_batch(impl: Any) -> None:
    encode_rows, _, ingestor_cls = impl
    buf, offsets = encode_rows([], np.zeros(0, np.int64), [], np.zeros(0), np.zeros((0, 7)), np.zeros((0, 6)))
    assert buf == b""
    assert offsets.tolist() == [0] and offsets.dtype == np.uint64
    assert ingestor_cls().ingest_buffer(buf, offsets, 0.0) == 0


@needs_native
def test_native_equals_reference_on_a_larger_batch() -> None:
    cols = columns(200)
    nb, no = _native.encode_fpm_rows(*cols.values())
    rb, ro = fpm_ref.encode_fpm_rows(*cols.values())
    assert nb == rb
    np.testing.assert_array_equal(no, ro)


count_value = st.integers(min_value=0, max_value=2**53).map(float)
var_value = st.floats(min_value=0.0, max_value=1e300, allow_nan=False, allow_infinity=False)


@needs_native
@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.text(min_size=0, max_size=40),
            st.integers(0, 2**63 - 1),
            st.integers(0, 2**63 - 1),
            var_value,
            st.tuples(count_value, count_value, var_value, count_value, count_value, count_value, var_value),
            st.tuples(count_value, count_value, var_value, count_value, count_value, var_value),
        ),
        max_size=8,
    )
)
def test_property_native_reference_and_one_by_one_agree(rows: list[tuple[Any, ...]]) -> None:
    n = len(rows)
    cols: dict[str, Any] = {
        "worker_ids": [r[0] for r in rows],
        "dp_rank": np.array([r[1] for r in rows], dtype=np.int64),
        "counter_id": np.array([r[2] for r in rows], dtype=np.int64),
        "wall_time": np.array([r[3] for r in rows], dtype=np.float64),
        "scheduled": np.array([r[4] for r in rows], dtype=np.float64).reshape(n, 7),
        "queued": np.array([r[5] for r in rows], dtype=np.float64).reshape(n, 6),
    }
    try:
        expected = b"".join(_native.encode_fpm(rec) for rec in records(cols))
    except FpmDecodeError:  # a generated worker id can be invalid UTF-8 (lone surrogate)
        with pytest.raises(FpmDecodeError):
            _native.encode_fpm_rows(*cols.values())
        with pytest.raises(FpmDecodeError):
            fpm_ref.encode_fpm_rows(*cols.values())
        return
    assert _native.encode_fpm_rows(*cols.values())[0] == expected
    assert fpm_ref.encode_fpm_rows(*cols.values())[0] == expected


# --------------------------------------------------------------------------- input forms

@pytest.mark.parametrize(
    "convert",
    [
        pytest.param(lambda c: c, id="int64-arrays-list-ids"),
        pytest.param(lambda c: {**c, "worker_ids": np.array(c["worker_ids"], dtype=object)}, id="object-array-ids"),
        pytest.param(lambda c: {**c, "worker_ids": np.array(c["worker_ids"])}, id="unicode-array-ids"),
        pytest.param(lambda c: {**c, "worker_ids": tuple(c["worker_ids"])}, id="tuple-ids"),
        pytest.param(lambda c: {**c, "dp_rank": c["dp_rank"].astype(np.int32),
                                "counter_id": c["counter_id"].astype(np.uint32)}, id="narrow-int-dtypes"),
        pytest.param(lambda c: {**c, "dp_rank": c["dp_rank"].tolist(), "wall_time": c["wall_time"].tolist(),
                                "scheduled": c["scheduled"].tolist()}, id="python-lists"),
        pytest.param(lambda c: {**c, "scheduled": np.asfortranarray(c["scheduled"]),
                                "queued": np.hstack([c["queued"], c["queued"]])[:, :6]}, id="non-contiguous"),
    ],
)
def test_accepted_input_forms(impl: Any, convert: Any) -> None:
    cols = columns(5)
    assert encode(impl, convert(cols))[0] == encode(impl, cols)[0]


SHAPE_ERRORS = [
    pytest.param({"worker_ids": "decode-0"}, "worker_ids must be a sequence of str, got str", id="ids-str"),
    pytest.param({"worker_ids": 7}, "worker_ids must be a sequence of str, got int", id="ids-int"),
    pytest.param({"dp_rank": np.zeros(3, np.int64)},
                 "dp_rank must be 1-D with len(worker_ids) = 4 entries, got shape (3,)", id="dp-short"),
    pytest.param({"counter_id": np.zeros((4, 1), np.int64)},
                 "counter_id must be 1-D with len(worker_ids) = 4 entries, got shape (4, 1)", id="counter-2d"),
    pytest.param({"wall_time": np.zeros(5)},
                 "wall_time must be 1-D with len(worker_ids) = 4 entries, got shape (5,)", id="wall-long"),
    pytest.param({"scheduled": np.zeros((4, 6))},
                 "scheduled must have shape (len(worker_ids), 7) = (4, 7), got shape (4, 6)", id="sched-cols"),
    pytest.param({"queued": np.zeros(24)},
                 "queued must have shape (len(worker_ids), 6) = (4, 6), got shape (24,)", id="queued-flat"),
    pytest.param({"dp_rank": np.zeros(4)}, "dp_rank must be an integer array that fits int64, got dtype float64",
                 id="dp-float"),
    pytest.param({"counter_id": np.zeros(4, np.uint64)},
                 "counter_id must be an integer array that fits int64, got dtype uint64", id="counter-uint64"),
    pytest.param({"dp_rank": np.zeros(4, bool)}, "dp_rank must be an integer array that fits int64, got dtype bool",
                 id="dp-bool"),
    pytest.param({"wall_time": np.array(["a"] * 4)}, "wall_time must be a real numeric array, got dtype <U1",
                 id="wall-str"),
    pytest.param({"scheduled": np.zeros((4, 7), complex)},
                 "scheduled must be a real numeric array, got dtype complex128", id="sched-complex"),
]


@pytest.mark.parametrize(("override", "message"), SHAPE_ERRORS)
def test_bad_shapes_and_dtypes_raise_kernel_error(impl: Any, override: dict[str, Any], message: str) -> None:
    cols = {**columns(4), **override}
    with pytest.raises(KernelError) as exc:
        encode(impl, cols)
    assert str(exc.value) == message


def _set(array: str, row: int, col: int | None, value: Any) -> Any:
    def edit(cols: dict[str, Any]) -> dict[str, Any]:
        cols = {k: (v.copy() if isinstance(v, np.ndarray) else list(v)) for k, v in cols.items()}
        if col is None:
            cols[array][row] = value
        else:
            cols[array][row, col] = value
        return cols
    return edit


VALUE_ERRORS = [
    # (edit, kind, field, message)
    pytest.param(_set("worker_ids", 2, None, 5), "wrong_type", "worker_id",
                 "FPM row 2: worker_ids[2] (worker_id) must be str, got int", id="id-not-str"),
    pytest.param(_set("worker_ids", 1, None, "w\ud800"), "invalid_utf8", "worker_id",
                 "FPM row 1: worker_ids[1] (worker_id) is not valid UTF-8", id="id-surrogate"),
    pytest.param(_set("worker_ids", 3, None, "w" * 257), "too_large", "worker_id",
                 "FPM row 3: worker_ids[3] (worker_id) is 257 bytes, over the limit of 256", id="id-257-bytes"),
    pytest.param(_set("worker_ids", 3, None, "é" * 129), "too_large", "worker_id",
                 "FPM row 3: worker_ids[3] (worker_id) is 258 bytes, over the limit of 256", id="id-258-utf8-bytes"),
    pytest.param(_set("dp_rank", 1, None, -1), "negative", "dp_rank",
                 "FPM row 1: dp_rank[1] (dp_rank) must be >= 0, got -1", id="dp-negative"),
    pytest.param(_set("counter_id", 0, None, -5), "negative", "counter_id",
                 "FPM row 0: counter_id[0] (counter_id) must be >= 0, got -5", id="counter-negative"),
    pytest.param(_set("wall_time", 2, None, np.nan), "non_finite", "wall_time",
                 "FPM row 2: wall_time[2] (wall_time) must be finite, got NaN", id="wall-nan"),
    pytest.param(_set("wall_time", 2, None, -1e-9), "negative", "wall_time",
                 "FPM row 2: wall_time[2] (wall_time) must be >= 0, got -1e-9", id="wall-negative"),
    pytest.param(_set("scheduled", 1, 1, 1.5), "not_integral", "scheduled_requests.sum_prefill_tokens",
                 "FPM row 1: scheduled[1, 1] (scheduled_requests.sum_prefill_tokens) must be a whole number, "
                 "got 1.5", id="sched-fraction"),
    pytest.param(_set("scheduled", 1, 0, 1.0000000000000002), "not_integral",
                 "scheduled_requests.num_prefill_requests",
                 "FPM row 1: scheduled[1, 0] (scheduled_requests.num_prefill_requests) must be a whole number, "
                 "got 1.0000000000000002", id="sched-just-above-1"),
    pytest.param(_set("scheduled", 0, 3, -1.0), "negative", "scheduled_requests.sum_prefill_kv_tokens",
                 "FPM row 0: scheduled[0, 3] (scheduled_requests.sum_prefill_kv_tokens) must be >= 0, got -1.0",
                 id="sched-negative"),
    pytest.param(_set("scheduled", 3, 6, np.inf), "non_finite", "scheduled_requests.var_decode_kv_tokens",
                 "FPM row 3: scheduled[3, 6] (scheduled_requests.var_decode_kv_tokens) must be finite, got inf",
                 id="sched-var-inf"),
    pytest.param(_set("scheduled", 2, 5, 2.0**63), "out_of_range", "scheduled_requests.sum_decode_kv_tokens",
                 "FPM row 2: scheduled[2, 5] (scheduled_requests.sum_decode_kv_tokens) does not fit a signed "
                 "64-bit integer, got 9.223372036854776e18", id="sched-2**63"),
    pytest.param(_set("queued", 0, 2, -np.inf), "non_finite", "queued_requests.var_prefill_length",
                 "FPM row 0: queued[0, 2] (queued_requests.var_prefill_length) must be finite, got -inf",
                 id="queued-var-neg-inf"),
    pytest.param(_set("queued", 3, 4, np.nan), "non_finite", "queued_requests.sum_decode_kv_tokens",
                 "FPM row 3: queued[3, 4] (queued_requests.sum_decode_kv_tokens) must be finite, got NaN",
                 id="queued-count-nan"),
    pytest.param(_set("queued", 2, 5, -1e-300), "negative", "queued_requests.var_decode_kv_tokens",
                 "FPM row 2: queued[2, 5] (queued_requests.var_decode_kv_tokens) must be >= 0, got -1e-300",
                 id="queued-var-negative"),
]


@pytest.mark.parametrize(("edit", "kind", "field", "message"), VALUE_ERRORS)
def test_bad_values_raise_fpm_decode_error_naming_row_and_cell(
    impl: Any, edit: Any, kind: str, field: str, message: str
) -> None:
    with pytest.raises(FpmDecodeError) as exc:
        encode(impl, edit(columns(4)))
    err = exc.value
    assert (err.kind, err.field, str(err)) == (kind, field, message)  # type: ignore[attr-defined]


BOUNDARIES_INSIDE = [
    pytest.param(_set("worker_ids", 0, None, "w" * 256), id="id-256-bytes"),
    pytest.param(_set("worker_ids", 0, None, ""), id="id-empty"),
    pytest.param(_set("scheduled", 0, 1, BELOW_2_63), id="count-largest-below-2**63"),
    pytest.param(_set("scheduled", 0, 1, -0.0), id="count-negative-zero"),
    pytest.param(_set("queued", 0, 2, 0.0), id="var-zero"),
    pytest.param(_set("wall_time", 0, None, 5e-324), id="wall-smallest-positive"),
    pytest.param(_set("counter_id", 0, None, 2**63 - 1), id="counter-int64-max"),
]


@pytest.mark.parametrize("edit", BOUNDARIES_INSIDE)
def test_boundaries_just_inside_are_encoded(impl: Any, edit: Any) -> None:
    cols = edit(columns(2))
    _, encode_one, _ = impl
    buf, offsets = encode(impl, cols)
    assert buf[: int(offsets[1])] == encode_one(records(cols)[0])


def test_worker_ids_are_checked_before_numbers_then_rows_in_order(impl: Any) -> None:
    cols = _set("dp_rank", 0, None, -1)(columns(4))
    cols = _set("worker_ids", 3, None, "w" * 300)(cols)
    with pytest.raises(FpmDecodeError, match=r"^FPM row 3: worker_ids\[3\]"):
        encode(impl, cols)
    cols = _set("queued", 1, 0, -1.0)(columns(4))
    cols = _set("scheduled", 1, 6, np.nan)(cols)
    cols = _set("counter_id", 2, None, -1)(cols)
    with pytest.raises(FpmDecodeError, match=r"^FPM row 1: scheduled\[1, 6\]"):
        encode(impl, cols)


def test_kernels_exports_the_active_implementation() -> None:
    expected = _native.encode_fpm_rows if kernels.USING_EXTENSIONS else fpm_ref.encode_fpm_rows
    assert kernels.encode_fpm_rows is expected
    assert "encode_fpm_rows" in kernels.__all__
