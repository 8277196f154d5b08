"""FpmSubscriber over real ZMQ sockets on loopback: roles, joins and leaves, garbage, shutdown."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq
from sim_helpers import constant_perf

from sla_planner import kernels
from sla_planner.errors import ConfigError, KernelError
from sla_planner.kernels.fpm_ingest_ref import FpmIngestor as FpmIngestorRef
from sla_planner.signals import (
    UNKNOWN_ROLE,
    EngineEndpoint,
    FileDiscovery,
    FpmSubscriber,
    StaticDiscovery,
)
from sla_planner.signals.mock_engine import MockEngine

PERF = constant_perf(prefill_tok_s=20_000.0, itl_ms=10.0, max_kv=100_000)
LOAD = "constant:20?isl=200&osl=20"


def wait_for(condition: Callable[[], Any], timeout_s: float = 10.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it is truthy; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def mock(role: str, dp_ranks: int, worker_id: str, load: str = LOAD) -> MockEngine:
    return MockEngine(0, dp_ranks, role, PERF, load, worker_id, time_scale=10.0)


def endpoints_of(engine: MockEngine, role: str) -> list[EngineEndpoint]:
    return [EngineEndpoint(ep, role) for ep in engine.endpoints]  # type: ignore[arg-type]


def engines_seen(sub: FpmSubscriber) -> dict[tuple[str, int], tuple[str, int]]:
    """(worker_id, dp_rank) -> (role, received) from the subscriber's snapshot."""
    snap = sub.snapshot()
    return {
        (w, int(r)): (role, int(n))
        for w, r, role, n in zip(snap["worker_id"], snap["dp_rank"], snap["role"], snap["received"])
    }


def record(worker_id: str, counter_id: int = 1, **overrides: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "version": 1,
        "worker_id": worker_id,
        "dp_rank": 0,
        "counter_id": counter_id,
        "wall_time": 0.01,
        "scheduled_requests": {
            "num_prefill_requests": 0, "sum_prefill_tokens": 0, "var_prefill_length": 0.0,
            "sum_prefill_kv_tokens": 0, "num_decode_requests": 1, "sum_decode_kv_tokens": 10,
            "var_decode_kv_tokens": 0.0,
        },
        "queued_requests": {
            "num_prefill_requests": 0, "sum_prefill_tokens": 0, "var_prefill_length": 0.0,
            "num_decode_requests": 0, "sum_decode_kv_tokens": 0, "var_decode_kv_tokens": 0.0,
        },
    }
    rec.update(overrides)
    return rec


def seq(n: int) -> bytes:
    return n.to_bytes(8, "big")


@pytest.fixture(params=["native", "reference"])
def ingestor(request: pytest.FixtureRequest) -> Any:
    return kernels.FpmIngestor() if request.param == "native" else FpmIngestorRef()


@pytest.fixture
def raw_pub() -> Iterator[tuple[zmq.Socket[Any], str]]:
    ctx: zmq.Context[Any] = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    yield sock, f"tcp://127.0.0.1:{port}"
    sock.close(linger=0)
    ctx.term()


# ------------------------------------------------------------------ roles over several engines
def test_several_engines_and_ranks_arrive_with_their_roles(ingestor: Any) -> None:
    engines = [mock("decode", 2, "dec"), mock("prefill", 2, "pre"), mock("agg", 1, "agg")]
    for e in engines:
        e.start()
    try:
        discovery = StaticDiscovery([ep for e in engines for ep in endpoints_of(e, e.role)])
        with FpmSubscriber(ingestor, discovery, poll_interval_s=0.02) as sub:
            expected = {
                ("dec", 0): "decode", ("dec", 1): "decode",
                ("pre", 0): "prefill", ("pre", 1): "prefill",
                ("agg", 0): "agg",
            }
            wait_for(lambda: set(engines_seen(sub)) == set(expected), what="all five engines")
            assert {k: role for k, (role, _) in engines_seen(sub).items()} == expected
            assert sub.roles() == expected
            c = sub.counters()
            assert c["bad_frames"] == c["oversized"] == c["malformed"] == c["wrong_version"] == 0
            assert c["loop_errors"] == c["ingest_errors"] == 0
            assert c["endpoints"] == c["connected"] == 5
            assert set(c["received_by_endpoint"]) == {ep.endpoint for ep in discovery.poll()}
            assert c["received"] == sum(c["received_by_endpoint"].values())
            assert c["received"] >= c["ingested"] >= c["decoded"] > 0
            snap = sub.snapshot()
            assert snap["endpoint"].dtype == object and all(snap["endpoint"])
    finally:
        for e in engines:
            e.stop()


# ------------------------------------------------------------------ joins and leaves
def test_engines_join_and_leave_with_the_discovery_file(tmp_path: Path) -> None:
    a, b = mock("decode", 1, "eng-a"), mock("prefill", 2, "eng-b")
    a.start()
    b.start()
    path = tmp_path / "engines.txt"

    def write(lines: list[str]) -> None:
        tmp = path.with_name("engines.tmp")
        tmp.write_text("".join(f"{line}\n" for line in lines))
        os.replace(tmp, path)

    try:
        write([f"decode {a.endpoints[0]}"])
        sub = FpmSubscriber(kernels.FpmIngestor(), FileDiscovery(path), poll_interval_s=0.02, refresh_interval_s=0.1)
        with sub:
            wait_for(lambda: ("eng-a", 0) in engines_seen(sub), what="engine a")
            assert sub.connected() == [a.endpoints[0]]

            # b joins (picked up by the thread's periodic refresh)
            write([f"decode {a.endpoints[0]}"] + [f"prefill {ep}" for ep in b.endpoints])
            wait_for(lambda: {("eng-b", 0), ("eng-b", 1)} <= set(engines_seen(sub)), what="engine b")
            assert sub.roles()[("eng-b", 1)] == "prefill"

            # a leaves: socket closed, engine gone from the table and the roles
            write([f"prefill {ep}" for ep in b.endpoints])
            got = sub.refresh()  # synchronous re-poll while running
            assert sorted(ep.endpoint for ep in got) == sorted(b.endpoints)
            assert ("eng-a", 0) not in engines_seen(sub)
            assert ("eng-a", 0) not in sub.roles()
            assert sub.connected() == sorted(b.endpoints)
            assert a.endpoints[0] not in sub.counters()["received_by_endpoint"]

            # b keeps flowing
            before = engines_seen(sub)[("eng-b", 0)][1]
            wait_for(lambda: engines_seen(sub)[("eng-b", 0)][1] > before, what="engine b to keep flowing")
            assert ("eng-a", 0) not in engines_seen(sub)

            # a bad file keeps the current set
            path.write_text("prefill tcp://127.0.0.1:0\n")
            assert sorted(ep.endpoint for ep in sub.refresh()) == sorted(b.endpoints)
    finally:
        a.stop()
        b.stop()


# ------------------------------------------------------------------ engines -> instances (drain)
def test_workers_map_to_the_instance_their_endpoint_names() -> None:
    a, b = mock("decode", 2, "wa"), mock("decode", 1, "wb")
    a.start()
    b.start()
    try:
        named = [EngineEndpoint(ep, "decode", "pod-a") for ep in a.endpoints]
        with FpmSubscriber(kernels.FpmIngestor(), StaticDiscovery([*named, *endpoints_of(b, "decode")]),
                           poll_interval_s=0.02) as sub:
            wait_for(lambda: {("wa", 0), ("wa", 1), ("wb", 0)} <= set(engines_seen(sub)), what="three ranks")
            assert sub.instances_of(["wa", "wb", "nobody"]) == {"wa": "pod-a"}  # wb's endpoint names none
            assert sub.instances_of([]) == {}
    finally:
        a.stop()
        b.stop()


# ------------------------------------------------------------------ garbage on the wire
def test_garbage_is_counted_and_good_engines_keep_flowing(raw_pub: tuple[zmq.Socket[Any], str]) -> None:
    pub, garbage_endpoint = raw_pub
    good = mock("decode", 1, "good")
    good.start()
    try:
        discovery = StaticDiscovery([EngineEndpoint(garbage_endpoint, "agg"), *endpoints_of(good, "decode")])
        with FpmSubscriber(kernels.FpmIngestor(), discovery, poll_interval_s=0.02) as sub:

            def probe_seen() -> bool:
                pub.send_multipart([b"probe", seq(0), kernels.encode_fpm(record("probe", 1))])
                return ("probe", 0) in engines_seen(sub)

            wait_for(probe_seen, what="the garbage publisher's handshake")
            # Under load the mock engine's first forward pass can arrive after the garbage has
            # been handled: wait for it before indexing it (this was the flake).
            wait_for(lambda: ("good", 0) in engines_seen(sub), what="the good engine's first forward pass")
            base = sub.counters()
            valid = kernels.encode_fpm(record("probe", 2))
            garbage: list[list[bytes]] = [
                [b"only one frame"],
                [b"probe", seq(1)],
                [b"probe", seq(2), valid, b"extra"],
                [b"probe", b"\x00" * 7, valid],  # 7-byte sequence
                [b"probe", seq(3), b"\x00" * (1 << 20)],  # 1 MB payload
                [b"probe", seq(4), msgpack.packb(record("probe", 3, version=2))],
                [b"probe", seq(5), valid[:-3]],  # truncated msgpack
                [b"probe", seq(6), msgpack.packb(record("probe", 4, wall_time=math.nan))],
                [b"probe", seq(7), msgpack.packb(record("probe", counter_id=-1))],
                [b"probe", seq(8), b"\xc1 not msgpack at all"],
                [b"probe", seq(9), b""],
                [b"probe", seq(10), bytes(np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8))],
            ]
            for frames in garbage:
                pub.send_multipart(frames)
            pub.send_multipart([b"probe", seq(11), kernels.encode_fpm(record("probe", 999))])  # sentinel

            def sentinel_seen() -> bool:
                snap = sub.snapshot()  # one snapshot: rows may be added between two
                return bool(snap["counter_id"][list(snap["worker_id"]).index("probe")] == 999)

            wait_for(sentinel_seen, what="the sentinel after the garbage")

            c = sub.counters()
            assert c["bad_frames"] - base["bad_frames"] == 4
            assert c["oversized"] - base["oversized"] == 1
            assert c["wrong_version"] - base["wrong_version"] == 1
            assert c["malformed"] - base["malformed"] == 6
            assert c["loop_errors"] == c["ingest_errors"] == 0
            assert sub.running
            assert engines_seen(sub)[("probe", 0)][0] == "agg"

            before = engines_seen(sub)[("good", 0)][1]
            wait_for(lambda: engines_seen(sub)[("good", 0)][1] > before, what="the good engine to keep flowing")
    finally:
        good.stop()


# ------------------------------------------------------------------ failures inside the thread
class FlakyIngestor:
    """Wraps a real ingestor; ``ingest`` raises on its first ``failures`` calls."""

    def __init__(self, failures: int) -> None:
        self.inner = kernels.FpmIngestor()
        self.failures = failures

    def ingest(self, payloads: list[bytes], now_s: float, seqs: list[int] | None = None) -> int:
        if self.failures > 0:
            self.failures -= 1
            raise KernelError("injected failure")
        return int(self.inner.ingest(payloads, now_s, seqs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __len__(self) -> int:
        return len(self.inner)


class BrokenDiscovery:
    def __init__(self, endpoints: list[EngineEndpoint]) -> None:
        self.calls = 0
        self.endpoints = endpoints

    def poll(self) -> list[EngineEndpoint]:
        self.calls += 1
        if self.calls % 2 == 0:
            raise OSError("discovery backend down")
        return self.endpoints


def test_ingest_and_discovery_errors_are_counted_not_raised() -> None:
    good = mock("decode", 1, "good")
    good.start()
    try:
        discovery = BrokenDiscovery(endpoints_of(good, "decode"))
        sub = FpmSubscriber(FlakyIngestor(failures=2), discovery, poll_interval_s=0.02, refresh_interval_s=0.05)
        with sub:
            wait_for(lambda: ("good", 0) in engines_seen(sub), what="the engine after injected failures")
            wait_for(lambda: sub.counters()["discovery_errors"] >= 1, what="a discovery error")
            c = sub.counters()
            assert c["ingest_errors"] == 2
            assert sub.running
            assert sub.connected() == good.endpoints  # a failed poll keeps the current set
    finally:
        good.stop()


def test_discovery_returning_the_wrong_type_is_counted() -> None:
    class Wrong:
        def poll(self) -> list[Any]:
            return ["tcp://127.0.0.1:1"]

    sub = FpmSubscriber(kernels.FpmIngestor(), Wrong())  # type: ignore[arg-type]
    assert sub.refresh() == []
    assert sub.counters()["discovery_errors"] == 1


# ------------------------------------------------------------------ lifecycle and reading
def test_stop_closes_every_socket_and_is_idempotent() -> None:
    good = mock("decode", 2, "good")
    good.start()
    try:
        sub = FpmSubscriber(kernels.FpmIngestor(), StaticDiscovery(endpoints_of(good, "decode")), poll_interval_s=0.02)
        sub.start()
        assert sub.start() is sub  # already running: no second thread
        assert sub.running and len(sub.connected()) == 2
        wait_for(lambda: len(engines_seen(sub)) == 2, what="both ranks")
        sub.stop()
        assert not sub.running
        assert sub.connected() == []
        sub.stop()  # no-op
        received = sub.counters()["received"]
        time.sleep(0.1)
        assert sub.counters()["received"] == received  # nothing arrives after stop
        # the table and roles survive stop; a restart reconnects
        assert set(sub.roles().values()) == {"decode"}
        with sub:
            assert len(sub.connected()) == 2
            wait_for(lambda: sub.counters()["received"] > received, what="traffic after restart")
    finally:
        good.stop()


def test_refresh_while_stopped_drops_engines_of_removed_endpoints(raw_pub: tuple[zmq.Socket[Any], str]) -> None:
    pub, endpoint = raw_pub

    class Switchable:
        def __init__(self) -> None:
            self.endpoints = [EngineEndpoint(endpoint, "prefill")]

        def poll(self) -> list[EngineEndpoint]:
            return list(self.endpoints)

    discovery = Switchable()
    sub = FpmSubscriber(kernels.FpmIngestor(), discovery, poll_interval_s=0.02)
    with sub:
        def seen() -> bool:
            pub.send_multipart([b"w", seq(0), kernels.encode_fpm(record("w", 1))])
            return ("w", 0) in engines_seen(sub)

        wait_for(seen, what="the engine")
    assert sub.roles() == {("w", 0): "prefill"}
    discovery.endpoints = []
    assert sub.refresh() == []
    assert engines_seen(sub) == {}
    assert sub.roles() == {}


def test_engines_the_subscriber_did_not_map_have_unknown_role() -> None:
    table = kernels.FpmIngestor()
    table.ingest([kernels.encode_fpm(record("preloaded", 1))], now_s=time.time())
    sub = FpmSubscriber(table, StaticDiscovery([]))
    snap = sub.snapshot()
    assert list(snap["role"]) == [UNKNOWN_ROLE]
    assert list(snap["endpoint"]) == [""]
    assert sub.history("preloaded", 0)["counter_id"].tolist() == [1]


def test_single_message_batches_still_deliver_everything(raw_pub: tuple[zmq.Socket[Any], str]) -> None:
    pub, endpoint = raw_pub
    sub = FpmSubscriber(
        kernels.FpmIngestor(), StaticDiscovery([EngineEndpoint(endpoint, "decode")]), poll_interval_s=0.02, max_batch=1
    )
    with sub:
        def seen() -> bool:
            pub.send_multipart([b"w", seq(0), kernels.encode_fpm(record("w", 1))])
            return ("w", 0) in engines_seen(sub)

        wait_for(seen, what="the engine")
        for i in range(2, 52):
            pub.send_multipart([b"w", seq(i), kernels.encode_fpm(record("w", i))])
        wait_for(lambda: sub.snapshot()["counter_id"][0] == 51, what="all 50 messages")
        assert sub.counters()["counter_gaps"] == 0


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("poll_interval_s", 0.0, "poll_interval_s must be finite and > 0"),
        ("poll_interval_s", math.inf, "poll_interval_s must be finite"),
        ("refresh_interval_s", -1.0, "refresh_interval_s must be finite and > 0"),
        ("max_batch", 0, "max_batch must be an integer >= 1"),
        ("max_batch", 1.5, "max_batch must be an integer"),
        ("max_payload_bytes", 0, "max_payload_bytes must be an integer >= 1"),
        ("rcv_hwm", 0, "rcv_hwm must be an integer >= 1"),
    ],
    ids=["poll-zero", "poll-inf", "refresh-negative", "batch-zero", "batch-float", "payload-zero", "hwm-zero"],
)
def test_bad_options_are_config_errors(option: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FpmSubscriber(kernels.FpmIngestor(), StaticDiscovery([]), **{option: value})


def test_discovery_without_poll_is_rejected() -> None:
    with pytest.raises(ConfigError, match="poll"):
        FpmSubscriber(kernels.FpmIngestor(), object())  # type: ignore[arg-type]


def test_payload_size_limit_boundary(raw_pub: tuple[zmq.Socket[Any], str]) -> None:
    pub, endpoint = raw_pub
    payload = kernels.encode_fpm(record("w", 1))
    sub = FpmSubscriber(
        kernels.FpmIngestor(), StaticDiscovery([EngineEndpoint(endpoint, "decode")]),
        poll_interval_s=0.02, max_payload_bytes=len(payload),
    )
    with sub:
        def seen() -> bool:
            pub.send_multipart([b"w", seq(0), payload])  # exactly at the limit: accepted
            return ("w", 0) in engines_seen(sub)

        wait_for(seen, what="a payload at the limit")
        pub.send_multipart([b"w", seq(1), payload + b"\x00"])  # one byte over: dropped
        wait_for(lambda: sub.counters()["oversized"] == 1, what="the oversized payload")



# ------------------------------------------------------------------ which receive path runs
def test_native_receive_loop_runs_for_the_native_ingestor_only(ingestor: Any) -> None:
    is_native = kernels.USING_EXTENSIONS and not isinstance(ingestor, FpmIngestorRef)
    with FpmSubscriber(ingestor, StaticDiscovery([])) as sub:
        assert sub.native is is_native
    with FpmSubscriber(ingestor, StaticDiscovery([]), native=False) as sub:
        assert sub.native is False
    if not is_native:
        with pytest.raises(KernelError, match="native FPM receive loop cannot be used"):
            FpmSubscriber(ingestor, StaticDiscovery([]), native=True).start()


def test_custom_clock_keeps_the_python_loop() -> None:
    with FpmSubscriber(kernels.FpmIngestor(), StaticDiscovery([]), clock=lambda: 5.0) as sub:
        assert sub.native is False
