"""The virtual connector's key layout and encodings: decimal keys, the JSON record, ids."""

from __future__ import annotations

import json

import pytest

from sla_planner.connectors.etcd_gateway import KeyValue, prefix_range_end
from sla_planner.connectors.virtual_wire import (
    MAX_DECISION_ID,
    MAX_WORKERS,
    Acknowledged,
    OrchestratorStatus,
    PlannerDecision,
    decision_puts,
    parse_decimal,
    parse_endpoints,
    parse_planner_keys,
    planner_prefix,
)
from sla_planner.errors import ConnectorError

PREFIX = "v1/ns/planner/"

DECIMALS = {
    "zero": (b"0", 0),
    "plain": (b"42", 42),
    "leading zeros (Rust's parse accepts them)": (b"007", 7),
    "unset": (b"-1", -1),
    "at the limit": (str(MAX_WORKERS).encode(), MAX_WORKERS),
}

BAD_DECIMALS = {
    "just above the limit": (str(MAX_WORKERS + 1).encode(), "out of range"),
    "huge": (b"9" * 40, "out of range"),
    "negative": (b"-2", "is negative"),
    "not a number": (b"three", "not a decimal integer"),
    "float": (b"3.0", "not a decimal integer"),
    "exponent": (b"1e3", "not a decimal integer"),
    "padded": (b" 3", "not a decimal integer"),
    "plus sign": (b"+3", "not a decimal integer"),
    "underscore (Python's int accepts it)": (b"1_000", "not a decimal integer"),
    "non-ASCII digits": ("٣".encode(), "not a decimal integer"),
    "empty": (b"", "not a decimal integer"),
    "not UTF-8": (b"\xff\xfe", "not UTF-8"),
}


@pytest.mark.parametrize("raw, expected", DECIMALS.values(), ids=DECIMALS.keys())
def test_decimal_keys_parse(raw: bytes, expected: int) -> None:
    assert parse_decimal(PREFIX + "num_decode_workers", raw, MAX_WORKERS) == expected


@pytest.mark.parametrize("raw, message", BAD_DECIMALS.values(), ids=BAD_DECIMALS.keys())
def test_malformed_decimal_keys_name_the_key(raw: bytes, message: str) -> None:
    with pytest.raises(ConnectorError, match=message) as info:
        parse_decimal(PREFIX + "num_decode_workers", raw, MAX_WORKERS)
    assert PREFIX + "num_decode_workers" in str(info.value)


def test_decision_id_accepts_64_bit_ids_and_no_more() -> None:
    assert parse_decimal("k", str(MAX_DECISION_ID).encode(), MAX_DECISION_ID) == MAX_DECISION_ID
    with pytest.raises(ConnectorError, match="out of range"):
        parse_decimal("k", str(MAX_DECISION_ID + 1).encode(), MAX_DECISION_ID)


def _record(**fields: object) -> bytes:
    base: dict[str, object] = {"num_prefill_workers": 1, "num_decode_workers": 2, "decision_id": 0}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


BAD_RECORDS = {
    "not JSON": (b"{not json", "invalid JSON at line 1"),
    "a list": (b"[1, 2, 3]", "expected a JSON object"),
    "missing decision_id": (_record(decision_id=...), "missing field"),
    "count as string": (_record(num_decode_workers="2"), "'num_decode_workers' must be an integer"),
    "count as float": (_record(num_decode_workers=2.0), "must be an integer"),
    "count as bool": (_record(num_prefill_workers=True), "must be an integer"),
    "negative count": (_record(num_decode_workers=-2), "out of range"),
    "huge count": (_record(num_decode_workers=MAX_WORKERS + 1), "out of range"),
    "drain not an object": (_record(drain=["w1"]), "'drain' must be an object"),
    "drain of an unknown kind": (_record(drain={"agg": ["w1"]}), "has key 'agg'"),
    "drain with an empty name": (_record(drain={"decode": [""]}), "non-empty strings"),
    "negative written_at": (_record(written_at_unix_s=-1), "must be >= 0"),
    "reason not a string": (_record(reason=3), "'reason' must be a string"),
    "bad last_acknowledged": (_record(last_acknowledged={"decision_id": 0}), "must be an integer"),
}


@pytest.mark.parametrize("raw, message", BAD_RECORDS.values(), ids=BAD_RECORDS.keys())
def test_malformed_records_are_errors_naming_the_key(raw: bytes, message: str) -> None:
    kvs = [KeyValue(PREFIX + "scaling_decision", raw, 5)]
    with pytest.raises(ConnectorError, match=message) as info:
        parse_planner_keys(PREFIX, kvs, 5)
    assert PREFIX + "scaling_decision" in str(info.value)


def test_record_round_trips_with_drain_and_last_acknowledged() -> None:
    decision = PlannerDecision(
        num_prefill_workers=-1,
        num_decode_workers=3,
        decision_id=9,
        drain={"decode": ("w3", "w1")},
        drain_instances={"decode": ("host-b",)},
        reason="scale_down",
        written_at_unix_s=1700000000.25,
        last_acknowledged=Acknowledged(8, -1, 5),
    )
    puts = decision_puts(PREFIX, decision)
    assert set(puts) == {PREFIX + "decision_id", PREFIX + "num_decode_workers", PREFIX + "scaling_decision"}
    assert puts[PREFIX + "decision_id"] == b"9"
    assert puts[PREFIX + "num_decode_workers"] == b"3"
    kvs = [KeyValue(key, value, 7) for key, value in puts.items()]
    keys = parse_planner_keys(PREFIX, kvs, 7)
    assert keys.decision == decision
    assert keys.from_record and not keys.notes


def test_record_is_authoritative_over_stale_legacy_keys() -> None:
    kvs = [
        KeyValue(PREFIX + "scaling_decision", _record(num_decode_workers=4, decision_id=3), 9),
        KeyValue(PREFIX + "num_decode_workers", b"2", 5),
        KeyValue(PREFIX + "decision_id", b"2", 5),
    ]
    keys = parse_planner_keys(PREFIX, kvs, 9)
    assert (keys.decision.num_decode_workers, keys.decision.decision_id) == (4, 3)
    assert keys.notes and "authoritative" in keys.notes[0]


def test_legacy_keys_alone_are_a_decision_and_absent_keys_are_unset() -> None:
    kvs = [KeyValue(PREFIX + "num_decode_workers", b"2", 4), KeyValue(PREFIX + "decision_id", b"0", 4)]
    keys = parse_planner_keys(PREFIX, kvs, 4)
    assert not keys.from_record
    assert (keys.decision.num_prefill_workers, keys.decision.num_decode_workers) == (-1, 2)
    assert not keys.acknowledged  # no scaled_decision_id yet


def test_keys_of_other_tools_under_the_prefix_are_ignored() -> None:
    kvs = [KeyValue(PREFIX + "something_else", b"{garbage", 3), KeyValue("v1/other/planner/decision_id", b"x", 3)]
    keys = parse_planner_keys(PREFIX, kvs, 3)
    assert not keys.decision.is_set and keys.acknowledged


ACKNOWLEDGED = {
    "no decision yet": (None, None, True),
    "decision, no acknowledgement": (4, None, False),
    "stale acknowledgement": (4, 3, False),
    "matching acknowledgement": (4, 4, True),
    "newer acknowledgement": (4, 5, True),
}


@pytest.mark.parametrize("decision_id, scaled, expected", ACKNOWLEDGED.values(), ids=ACKNOWLEDGED.keys())
def test_acknowledged_when_scaled_id_reaches_decision_id(
    decision_id: int | None, scaled: int | None, expected: bool
) -> None:
    kvs = []
    if decision_id is not None:
        kvs.append(KeyValue(PREFIX + "decision_id", str(decision_id).encode(), 2))
    if scaled is not None:
        kvs.append(KeyValue(PREFIX + "scaled_decision_id", str(scaled).encode(), 3))
    assert parse_planner_keys(PREFIX, kvs, 3).acknowledged is expected


NEXT_ID = {
    "first decision is 0": ({}, 0),
    "after the record's id": ({"scaling_decision": _record(decision_id=6)}, 7),
    "after a newer legacy id": ({"scaling_decision": _record(decision_id=6), "decision_id": b"8"}, 9),
    "above a stale acknowledgement (no reuse of acknowledged ids)": ({"scaled_decision_id": b"11"}, 12),
}


@pytest.mark.parametrize("values, expected", NEXT_ID.values(), ids=NEXT_ID.keys())
def test_next_decision_id_is_above_every_id_in_etcd(values: dict[str, bytes], expected: int) -> None:
    kvs = [KeyValue(PREFIX + name, raw, 2) for name, raw in values.items()]
    assert parse_planner_keys(PREFIX, kvs, 2).next_decision_id() == expected


def test_exhausted_ids_are_an_error() -> None:
    kvs = [KeyValue(PREFIX + "decision_id", str(MAX_DECISION_ID).encode(), 2)]
    with pytest.raises(ConnectorError, match="exhausted"):
        parse_planner_keys(PREFIX, kvs, 2).next_decision_id()


def test_orchestrator_status_round_trip_and_errors() -> None:
    status = OrchestratorStatus(2, -1, 5, 1700000000.0)
    key = PREFIX + "orchestrator_status"
    assert OrchestratorStatus.from_json(key, status.to_json()) == status
    with pytest.raises(ConnectorError, match="ready_decode_workers"):
        OrchestratorStatus.from_json(key, b'{"ready_decode_workers": "3"}')


ENDPOINTS = {
    "one": ("http://127.0.0.1:2379", ("http://127.0.0.1:2379",)),
    "comma list, blanks and slashes": (" http://a:1/ , https://b:2,", ("http://a:1", "https://b:2")),
}
BAD_ENDPOINTS = {
    "no scheme": ("127.0.0.1:2379", "expected http"),
    "other scheme": ("grpc://a:1", "expected http"),
    "bad port": ("http://a:99999", "etcd endpoint"),
    "a path": ("http://a:1/v3", "expected no path"),
    "nothing": (" , ", "no etcd endpoint"),
}


@pytest.mark.parametrize("text, expected", ENDPOINTS.values(), ids=ENDPOINTS.keys())
def test_endpoints_parse(text: str, expected: tuple[str, ...]) -> None:
    assert parse_endpoints(text) == expected


@pytest.mark.parametrize("text, message", BAD_ENDPOINTS.values(), ids=BAD_ENDPOINTS.keys())
def test_bad_endpoints_are_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_endpoints(text)


@pytest.mark.parametrize("namespace", ["", "a/b", " ns"])
def test_namespaces_that_would_break_the_layout_are_refused(namespace: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        planner_prefix(namespace)


def test_prefix_range_end_covers_exactly_the_prefix() -> None:
    assert prefix_range_end(b"v1/ns/planner/") == b"v1/ns/planner0"
    assert prefix_range_end(b"a\xff") == b"b"
    assert prefix_range_end(b"\xff\xff") == b"\0"
