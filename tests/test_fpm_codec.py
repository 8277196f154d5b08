"""FPM codec: native (Rust) and reference (msgpack) decoders agree and enforce the schema."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sla_planner.errors import FpmDecodeError, KernelError
from sla_planner.kernels import fpm_ref

try:
    from sla_planner import _native
except ImportError:  # pragma: no cover - the extension is built by `pip install`
    _native = None  # type: ignore[assignment]

needs_native = pytest.mark.skipif(_native is None, reason="native extension not built")

Codec = tuple[Callable[[dict[str, Any]], bytes], Callable[[bytes], dict[str, Any]]]
CODECS: list[Any] = [pytest.param((fpm_ref.encode_fpm, fpm_ref.decode_fpm), id="reference")]
if _native is not None:
    CODECS.append(pytest.param((_native.encode_fpm, _native.decode_fpm), id="native"))


def make_record(worker_id: str = "decode-0-7f9c", dp_rank: int = 0, counter_id: int = 41, **over: Any) -> dict[str, Any]:
    """A valid record dict in schema order; keyword overrides replace top-level fields."""
    rec: dict[str, Any] = {
        "version": 1,
        "worker_id": worker_id,
        "dp_rank": dp_rank,
        "counter_id": counter_id,
        "wall_time": 0.0231,
        "scheduled_requests": {
            "num_prefill_requests": 2,
            "sum_prefill_tokens": 8192,
            "var_prefill_length": 1.5e5,
            "sum_prefill_kv_tokens": 1024,
            "num_decode_requests": 48,
            "sum_decode_kv_tokens": 96_000,
            "var_decode_kv_tokens": 2.5e6,
        },
        "queued_requests": {
            "num_prefill_requests": 1,
            "sum_prefill_tokens": 3000,
            "var_prefill_length": 0.0,
            "num_decode_requests": 0,
            "sum_decode_kv_tokens": 0,
            "var_decode_kv_tokens": 0.0,
        },
    }
    rec.update(over)
    return rec


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def error_of(fn: Callable[[Any], Any], arg: Any) -> tuple[str, str | None]:
    with pytest.raises(FpmDecodeError) as info:
        fn(arg)
    return info.value.kind, info.value.field  # type: ignore[attr-defined]


def nested_set(rec: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    head, _, tail = path.partition(".")
    if tail:
        rec[head] = dict(rec[head])
        rec[head][tail] = value
    else:
        rec[head] = value
    return rec


def nested_del(rec: dict[str, Any], path: str) -> dict[str, Any]:
    head, _, tail = path.partition(".")
    if tail:
        rec[head] = {k: v for k, v in rec[head].items() if k != tail}
    else:
        del rec[head]
    return rec


@pytest.mark.parametrize("codec", CODECS)
class TestRoundTrip:
    def test_decode_inverts_encode(self, codec: Codec) -> None:
        encode, decode = codec
        rec = make_record()
        assert decode(encode(rec)) == rec

    @pytest.mark.parametrize("value", [0, 127, 128, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32, 2**63 - 1])
    def test_integer_width_boundaries(self, codec: Codec, value: int) -> None:
        encode, decode = codec
        rec = nested_set(make_record(counter_id=value), "scheduled_requests.sum_decode_kv_tokens", value)
        assert decode(encode(rec)) == rec

    # counter_id is unsigned 64-bit in Dynamo: the whole range round-trips
    @pytest.mark.parametrize("value", [2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1])
    def test_counter_id_takes_the_full_u64_range(self, codec: Codec, value: int) -> None:
        encode, decode = codec
        rec = make_record(counter_id=value)
        assert decode(encode(rec)) == rec
        assert decode(pack(rec)) == rec

    def test_version_is_optional_when_encoding(self, codec: Codec) -> None:
        encode, decode = codec
        rec = make_record()
        del rec["version"]
        assert decode(encode(rec))["version"] == 1

    def test_unknown_keys_are_skipped_in_any_order(self, codec: Codec) -> None:
        _, decode = codec
        rec = make_record()
        shuffled = {"extra_list": [1, [2, {"a": None}]], **dict(reversed(list(rec.items()))), "extra_bin": b"\x00"}
        shuffled["scheduled_requests"] = {"new_metric": 1.5, **rec["scheduled_requests"]}
        assert decode(pack(shuffled)) == rec

    def test_integer_encoded_floats_become_floats(self, codec: Codec) -> None:
        _, decode = codec
        rec = nested_set(make_record(wall_time=2), "queued_requests.var_prefill_length", 7)
        out = decode(pack(rec))
        assert out["wall_time"] == 2.0 and isinstance(out["wall_time"], float)
        assert isinstance(out["queued_requests"]["var_prefill_length"], float)

    def test_float32_values_are_accepted(self, codec: Codec) -> None:
        _, decode = codec
        out = decode(msgpack.packb(make_record(wall_time=0.5), use_single_float=True))
        assert out["wall_time"] == 0.5

    def test_realistic_payload_size(self, codec: Codec) -> None:
        encode, _ = codec
        assert 380 <= len(encode(make_record(worker_id="vllm-decode-0-6f9c2d7b84-x2k9q"))) <= 480


@needs_native
def test_native_and_reference_encode_identical_bytes() -> None:
    for rec in (make_record(), make_record(worker_id="x" * 256, counter_id=2**40, wall_time=1e-9)):
        assert _native.encode_fpm(rec) == fpm_ref.encode_fpm(rec)


DECODE_CASES = [
    ("empty", b"", "truncated", None),
    ("not a map", pack([1, 2]), "wrong_type", "<payload>"),
    ("version 2", pack(make_record(version=2)), "bad_version", "version"),
    ("version -1", pack(make_record(version=-1)), "bad_version", "version"),
    ("version float", pack(make_record(version=1.0)), "wrong_type", "version"),
    ("version bool", pack(make_record(version=True)), "wrong_type", "version"),
    ("missing worker_id", pack(nested_del(make_record(), "worker_id")), "missing_field", "worker_id"),
    ("missing nested", pack(nested_del(make_record(), "queued_requests.sum_prefill_tokens")),
     "missing_field", "queued_requests.sum_prefill_tokens"),
    ("worker_id int", pack(make_record(worker_id=5)), "wrong_type", "worker_id"),
    ("worker_id bytes", pack(make_record(worker_id=b"w")), "wrong_type", "worker_id"),
    ("worker_id 257 bytes", pack(make_record(worker_id="w" * 257)), "too_large", "worker_id"),
    ("negative dp_rank", pack(make_record(dp_rank=-1)), "negative", "dp_rank"),
    ("float counter_id", pack(make_record(counter_id=1.0)), "wrong_type", "counter_id"),
    ("dp_rank 2**63", pack(make_record(dp_rank=2**63)), "out_of_range", "dp_rank"),
    ("negative counter_id", pack(make_record(counter_id=-1)), "negative", "counter_id"),
    ("negative wall_time", pack(make_record(wall_time=-0.001)), "negative", "wall_time"),
    ("nan wall_time", pack(make_record(wall_time=math.nan)), "non_finite", "wall_time"),
    ("inf variance", pack(nested_set(make_record(), "scheduled_requests.var_prefill_length", math.inf)),
     "non_finite", "scheduled_requests.var_prefill_length"),
    ("negative count", pack(nested_set(make_record(), "queued_requests.num_decode_requests", -3)),
     "negative", "queued_requests.num_decode_requests"),
    ("string count", pack(nested_set(make_record(), "scheduled_requests.num_prefill_requests", "2")),
     "wrong_type", "scheduled_requests.num_prefill_requests"),
    ("scheduled is list", pack(make_record(scheduled_requests=[1])), "wrong_type", "scheduled_requests"),
    ("non-str root key", pack({1: 2, **make_record()}), "wrong_type", "<key>"),
    ("non-str nested key", pack(nested_set(make_record(), "queued_requests", {0: 1})),
     "wrong_type", "queued_requests.<key>"),
    ("trailing byte", pack(make_record()) + b"\xc0", "trailing_bytes", None),
    ("65 map entries", pack({**make_record(), **{f"x{i}": 0 for i in range(58)}}), "too_large", "map entries"),
    ("payload over limit", pack({**make_record(), "pad": b"\x00" * 65_200}), "too_large", "payload bytes"),
]


def _duplicate_key_payload() -> bytes:
    body = pack(make_record())
    # Root fixmap of 7 -> 8 entries, then append a second dp_rank.
    return bytes([0x88]) + body[1:] + pack("dp_rank") + pack(0)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize(("payload", "kind", "field"), [pytest.param(p, k, f, id=i) for i, p, k, f in DECODE_CASES])
def test_decode_rejects(codec: Codec, payload: bytes, kind: str, field: str | None) -> None:
    assert error_of(codec[1], payload) == (kind, field)


@pytest.mark.parametrize("codec", CODECS)
def test_duplicate_field_is_rejected(codec: Codec) -> None:
    assert error_of(codec[1], _duplicate_key_payload()) == ("duplicate_field", "dp_rank")


def _deep(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize(
    ("mutation", "ok"),
    [
        pytest.param({"worker_id": "w" * 256}, True, id="worker_id-256-inside"),
        pytest.param({"worker_id": "w" * 257}, False, id="worker_id-257-outside"),
        pytest.param({"deep": _deep(fpm_ref.MAX_DEPTH - 1)}, True, id="depth-inside"),
        pytest.param({"deep": _deep(fpm_ref.MAX_DEPTH)}, False, id="depth-outside"),
        pytest.param({f"x{i}": 0 for i in range(57)}, True, id="64-entries-inside"),
        pytest.param({f"x{i}": 0 for i in range(58)}, False, id="65-entries-outside"),
    ],
)
def test_limits_just_inside_and_outside(codec: Codec, mutation: dict[str, Any], ok: bool) -> None:
    payload = pack({**make_record(), **mutation})
    if ok:
        codec[1](payload)
    else:
        with pytest.raises(FpmDecodeError):
            codec[1](payload)


@pytest.mark.parametrize("codec", CODECS)
def test_payload_size_boundary(codec: Codec) -> None:
    base = pack({**make_record(), "pad": b""})
    # bin8 -> bin16 adds 1 header byte; size the pad so the payload is exactly the limit.
    pad = fpm_ref.MAX_PAYLOAD_BYTES - len(base) - 1
    exact = pack({**make_record(), "pad": b"\x00" * pad})
    assert len(exact) == fpm_ref.MAX_PAYLOAD_BYTES
    codec[1](exact)
    with pytest.raises(FpmDecodeError):
        codec[1](pack({**make_record(), "pad": b"\x00" * (pad + 1)}))


@pytest.mark.parametrize("codec", CODECS)
def test_every_truncation_is_rejected(codec: Codec) -> None:
    payload = pack(make_record())
    for cut in range(len(payload)):
        assert error_of(codec[1], payload[:cut])[0] == "truncated", cut


@pytest.mark.parametrize("codec", CODECS)
def test_decode_requires_bytes(codec: Codec) -> None:
    with pytest.raises(KernelError, match="payload must be bytes"):
        codec[1](bytearray(pack(make_record())))  # type: ignore[arg-type]


ENCODE_CASES = [
    ("not a dict", [1], "wrong_type", "<payload>"),
    ("unknown root key", make_record(extra=1), "unknown_field", "'extra'"),
    ("unknown nested key", nested_set(make_record(), "queued_requests.bogus", 1), "unknown_field",
     "queued_requests.'bogus'"),
    ("version 2", make_record(version=2), "bad_version", "version"),
    ("missing counter_id", nested_del(make_record(), "counter_id"), "missing_field", "counter_id"),
    ("bool dp_rank", make_record(dp_rank=True), "wrong_type", "dp_rank"),
    ("float count", nested_set(make_record(), "scheduled_requests.sum_prefill_tokens", 1.0), "wrong_type",
     "scheduled_requests.sum_prefill_tokens"),
    ("huge count", make_record(counter_id=2**64), "out_of_range", "counter_id"),
    ("negative huge", make_record(counter_id=-(2**64)), "negative", "counter_id"),
    ("huge int float field", make_record(wall_time=10**400), "out_of_range", "wall_time"),
    ("nan", make_record(wall_time=math.nan), "non_finite", "wall_time"),
    ("surrogate worker_id", make_record(worker_id="\ud800"), "invalid_utf8", "worker_id"),
    ("long worker_id", make_record(worker_id="é" * 129), "too_large", "worker_id"),
    ("queued is list", make_record(queued_requests=[]), "wrong_type", "queued_requests"),
]


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize(("record", "kind", "field"), [pytest.param(r, k, f, id=i) for i, r, k, f in ENCODE_CASES])
def test_encode_rejects(codec: Codec, record: Any, kind: str, field: str) -> None:
    assert error_of(codec[0], record) == (kind, field)


# ----------------------------------------------------------------- native == reference (hypothesis)


def _outcome(decode: Callable[[bytes], dict[str, Any]], payload: bytes) -> Any:
    try:
        return ("ok", decode(payload))
    except FpmDecodeError as e:
        return ("error", e.kind, e.field)  # type: ignore[attr-defined]


def _parses(payload: bytes) -> bool:
    try:
        msgpack.unpackb(payload, raw=False, strict_map_key=False, object_pairs_hook=list)
    except Exception:
        return False
    return True


def _assert_same(payload: bytes) -> None:
    native, ref = _outcome(_native.decode_fpm, payload), _outcome(fpm_ref.decode_fpm, payload)
    if native[0] == "ok" or ref[0] == "ok" or _parses(payload):
        assert native == ref
    else:
        assert native[0] == ref[0] == "error"


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@needs_native
@FUZZ
@given(st.binary(max_size=600))
def test_arbitrary_bytes_agree(payload: bytes) -> None:
    _assert_same(payload)


@needs_native
@FUZZ
@given(st.data())
def test_mutated_payloads_agree(data: st.DataObject) -> None:
    payload = bytearray(pack(make_record()))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(payload) - 1))
        payload[i] = data.draw(st.integers(0, 255))
    _assert_same(bytes(payload))


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=8),
    st.binary(max_size=8),
)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=12)


@needs_native
@FUZZ
@given(st.data())
def test_structured_records_agree(data: st.DataObject) -> None:
    rec = make_record()
    for path in data.draw(st.lists(st.sampled_from([
        "version", "worker_id", "dp_rank", "counter_id", "wall_time", "scheduled_requests",
        "scheduled_requests.var_prefill_length", "scheduled_requests.num_decode_requests",
        "queued_requests.sum_decode_kv_tokens", "queued_requests.var_decode_kv_tokens", "extra",
    ]), max_size=3)):
        head, _, tail = path.partition(".")
        if tail and not isinstance(rec.get(head), dict):
            continue
        if data.draw(st.booleans()):
            nested_set(rec, path, data.draw(_values))
        elif (tail and tail in rec[head]) or (not tail and head in rec):
            nested_del(rec, path)
    payload = pack(rec)
    _assert_same(payload)
    native_enc = _outcome(lambda _: _native.encode_fpm(rec), b"")
    ref_enc = _outcome(lambda _: fpm_ref.encode_fpm(rec), b"")
    assert native_enc == ref_enc
