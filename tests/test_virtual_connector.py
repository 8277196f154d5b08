"""The virtual connector and the shipped orchestrator client against a real etcd on loopback."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from etcd_server import EtcdServer

from sla_planner.config import PlannerConfig
from sla_planner.connectors.base import ApplyStatus, Connector, ScaleRequest
from sla_planner.connectors.etcd_gateway import EtcdClient
from sla_planner.connectors.virtual import VirtualConnector
from sla_planner.connectors.virtual_client import VirtualConnectorClient
from sla_planner.connectors.virtual_wire import PlannerDecision
from sla_planner.errors import ConnectorError, EtcdError
from sla_planner.types import Pool

P, D, A = Pool.PREFILL, Pool.DECODE, Pool.AGG
_names = itertools.count()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


class Clock:
    """The connector's wall clock, set by the test."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    server = EtcdServer(tmp_path_factory.mktemp("etcd-virtual") / "data")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def namespace() -> str:
    return f"ns{next(_names)}"


def connector(url: str, namespace: str, **kwargs: Any) -> VirtualConnector:
    return VirtualConnector(EtcdClient(url, timeout_s=2.0), namespace, **kwargs)


def client(url: str, namespace: str) -> VirtualConnectorClient:
    return VirtualConnectorClient(namespace, EtcdClient(url, timeout_s=2.0))


def request(targets: dict[Pool, int], **kwargs: Any) -> ScaleRequest:
    return ScaleRequest(targets=targets, decision_id=0, reason=kwargs.pop("reason", "test"), **kwargs)


async def raw_keys(url: str, namespace: str) -> dict[str, tuple[bytes, int]]:
    etcd = EtcdClient(url)
    try:
        result = await etcd.get_prefix(f"v1/{namespace}/planner/")
    finally:
        await etcd.close()
    return {kv.key.rsplit("/", 1)[1]: (kv.value, kv.mod_revision) for kv in result.kvs}


async def put(url: str, key: str, value: bytes) -> None:
    etcd = EtcdClient(url)
    try:
        await etcd.put(key, value)
    finally:
        await etcd.close()


def test_is_a_connector() -> None:
    assert isinstance(VirtualConnector(EtcdClient(), "ns"), Connector)


def test_first_decision_writes_every_key_in_one_transaction(etcd: EtcdServer, namespace: str) -> None:
    async def scenario() -> None:
        conn = connector(etcd.url, namespace, clock=Clock())
        try:
            result = await conn.apply(request({P: 2, D: 3}, reason="scale_up"))
            assert (result.status, result.decision_id) == (ApplyStatus.APPLIED, 0)
        finally:
            await conn.close()
        keys = await raw_keys(etcd.url, namespace)
        assert set(keys) == {"num_prefill_workers", "num_decode_workers", "decision_id", "scaling_decision"}
        assert {name: value for name, (value, _) in keys.items() if name != "scaling_decision"} == {
            "num_prefill_workers": b"2",
            "num_decode_workers": b"3",
            "decision_id": b"0",
        }
        assert len({revision for _, revision in keys.values()}) == 1  # one etcd transaction
        record = json.loads(keys["scaling_decision"][0])
        assert record["num_prefill_workers"] == 2 and record["num_decode_workers"] == 3
        assert record["decision_id"] == 0 and record["reason"] == "scale_up"
        assert record["written_at_unix_s"] == 1_700_000_000.0

    run(scenario())


def test_etcdctl_sees_plain_decimal_strings(etcd: EtcdServer, namespace: str) -> None:
    """What an orchestrator reading etcd directly (Dynamo's documented protocol) sees."""
    etcdctl = shutil.which("etcdctl")
    if etcdctl is None:
        pytest.skip("etcdctl not found (Debian package etcd-client)")

    async def scenario() -> None:
        conn = connector(etcd.url, namespace)
        try:
            await conn.apply(request({P: 1, D: 4}))
        finally:
            await conn.close()

    run(scenario())
    out = subprocess.run(
        [etcdctl, f"--endpoints={etcd.url}", "get", "--prefix", f"v1/{namespace}/planner/"],
        check=True, capture_output=True, text=True, env={"ETCDCTL_API": "3"}, timeout=30,
    ).stdout.splitlines()
    pairs = dict(zip(out[::2], out[1::2], strict=True))
    prefix = f"v1/{namespace}/planner/"
    assert pairs[prefix + "num_prefill_workers"] == "1"
    assert pairs[prefix + "num_decode_workers"] == "4"
    assert pairs[prefix + "decision_id"] == "0"


def test_no_new_decision_until_acknowledged_then_the_next_one(etcd: EtcdServer, namespace: str) -> None:
    async def scenario() -> None:
        conn = connector(etcd.url, namespace, clock=Clock())
        orchestrator = client(etcd.url, namespace)
        try:
            await conn.apply(request({P: 1, D: 1}))
            before = await raw_keys(etcd.url, namespace)
            deferred = await conn.apply(request({P: 1, D: 2}))
            assert deferred.status is ApplyStatus.DEFERRED
            assert "decision 0 not acknowledged" in deferred.detail
            assert await raw_keys(etcd.url, namespace) == before  # nothing written
            decision = await orchestrator.get()
            await orchestrator.complete(decision)
            applied = await conn.apply(request({P: 1, D: 2}))
            assert (applied.status, applied.decision_id) == (ApplyStatus.APPLIED, 1)
            assert (await orchestrator.get()).num_decode_workers == 2
        finally:
            await conn.close()
            await orchestrator.close()

    run(scenario())


TIMEOUT_S = 600.0
WAITED = {
    "just inside the wait": (TIMEOUT_S - 0.01, ApplyStatus.DEFERRED),
    "exactly the wait": (TIMEOUT_S, ApplyStatus.APPLIED),
    "well past it": (TIMEOUT_S * 3, ApplyStatus.APPLIED),
}


@pytest.mark.parametrize("waited_s, expected", WAITED.values(), ids=WAITED.keys())
def test_an_unacknowledged_decision_is_superseded_after_the_wait(
    etcd: EtcdServer, namespace: str, waited_s: float, expected: ApplyStatus
) -> None:
    async def scenario() -> None:
        clock = Clock()
        conn = connector(etcd.url, namespace, clock=clock, ack_timeout_s=TIMEOUT_S)
        try:
            await conn.apply(request({P: 1, D: 1}))
            clock.now += waited_s
            result = await conn.apply(request({P: 1, D: 5}))
            assert result.status is expected
            if expected is ApplyStatus.APPLIED:
                assert result.decision_id == 1 and "superseded" in result.detail
                keys = await conn.keys()
                assert keys.decision.num_decode_workers == 5
                assert keys.decision.last_acknowledged is None  # 0 never was
        finally:
            await conn.close()

    run(scenario())


def test_unchanged_targets_write_nothing(etcd: EtcdServer, namespace: str) -> None:
    async def scenario() -> None:
        conn = connector(etcd.url, namespace)
        orchestrator = client(etcd.url, namespace)
        try:
            await conn.apply(request({P: 2, D: 2}))
            before = await raw_keys(etcd.url, namespace)
            pending = await conn.apply(request({P: 2, D: 2}))
            assert pending.status is ApplyStatus.UNCHANGED and "not yet acknowledged" in pending.detail
            await orchestrator.complete(await orchestrator.get())
            after_ack = await raw_keys(etcd.url, namespace)
            one_pool = await conn.apply(request({D: 2}))  # the other pool keeps its count
            assert one_pool.status is ApplyStatus.UNCHANGED
            assert await raw_keys(etcd.url, namespace) == after_ack
            assert {k: v for k, v in after_ack.items() if k != "scaled_decision_id"} == before
        finally:
            await conn.close()
            await orchestrator.close()

    run(scenario())


def test_blocking_mode_waits_for_the_acknowledgement(etcd: EtcdServer, namespace: str) -> None:
    async def scenario() -> None:
        conn = connector(etcd.url, namespace, blocking=True, ack_timeout_s=30.0)
        orchestrator = client(etcd.url, namespace)
        try:
            apply = asyncio.create_task(conn.apply(request({P: 1, D: 2})))
            decision = await orchestrator.wait(timeout_s=10)
            assert decision is not None and not apply.done()
            await orchestrator.complete(decision)
            result = await asyncio.wait_for(apply, 10)
            assert result.status is ApplyStatus.APPLIED and result.detail.endswith("acknowledged")
        finally:
            await conn.close()
            await orchestrator.close()

    run(scenario())


def test_blocking_mode_gives_up_after_the_wait_and_still_reports_the_write(
    etcd: EtcdServer, namespace: str
) -> None:
    async def scenario() -> None:
        conn = connector(etcd.url, namespace, blocking=True, ack_timeout_s=0.3)
        try:
            loop = asyncio.get_running_loop()
            began = loop.time()
            result = await conn.apply(request({P: 1, D: 2}))
            assert result.status is ApplyStatus.APPLIED
            assert "not acknowledged within" in result.detail
            assert 0.3 <= loop.time() - began < 5.0
            assert (await conn.keys()).decision.decision_id == 0
        finally:
            await conn.close()

    run(scenario())


UNSET_CASES = {
    "agg: one decode count, prefill unset": ("agg", {A: 3}, (-1, 3)),
    "prefill only": ("prefill", {P: 2}, (2, -1)),
    "decode only": ("decode", {D: 4}, (-1, 4)),
}


@pytest.mark.parametrize("mode, targets, counts", UNSET_CASES.values(), ids=UNSET_CASES.keys())
def test_minus_one_is_unset(
    etcd: EtcdServer, namespace: str, mode: str, targets: dict[Pool, int], counts: tuple[int, int]
) -> None:
    async def scenario() -> None:
        cfg = PlannerConfig(mode=mode, namespace=namespace, virtual_etcd_endpoints=etcd.url)
        conn = VirtualConnector.from_config(cfg, {})
        orchestrator = client(etcd.url, namespace)
        try:
            before = await orchestrator.get()
            assert (before.num_prefill_workers, before.num_decode_workers, before.decision_id) == (-1, -1, -1)
            assert await orchestrator.wait(timeout_s=0) is None
            assert (await conn.apply(request(targets))).status is ApplyStatus.APPLIED
            decision = await orchestrator.get()
            assert (decision.num_prefill_workers, decision.num_decode_workers) == counts
            keys = await raw_keys(etcd.url, namespace)
            # an unset count's decimal key stays absent (Dynamo's planner cannot parse "-1")
            assert ("num_prefill_workers" in keys) == (counts[0] >= 0)
            assert ("num_decode_workers" in keys) == (counts[1] >= 0)
            state = await conn.read()
            assert set(state.pools) == set(targets)
            assert state.current() == targets
        finally:
            await conn.close()
            await orchestrator.close()

    run(scenario())


def test_legacy_minus_one_values_read_as_unset(etcd: EtcdServer, namespace: str) -> None:
    prefix = f"v1/{namespace}/planner/"

    async def scenario() -> None:
        await put(etcd.url, prefix + "num_prefill_workers", b"-1")
        await put(etcd.url, prefix + "num_decode_workers", b"2")
        await put(etcd.url, prefix + "decision_id", b"4")
        await put(etcd.url, prefix + "scaled_decision_id", b"4")
        conn = connector(etcd.url, namespace, pools=(D,))
        try:
            state = await conn.read()
            assert state.current() == {D: 2} and state.ready() == {D: 2}
            result = await conn.apply(request({D: 3}))
            assert (result.status, result.decision_id) == (ApplyStatus.APPLIED, 5)
        finally:
            await conn.close()

    run(scenario())


def test_a_legacy_decision_without_write_time_waits_from_when_it_was_first_seen(
    etcd: EtcdServer, namespace: str
) -> None:
    prefix = f"v1/{namespace}/planner/"

    async def scenario() -> None:
        await put(etcd.url, prefix + "num_decode_workers", b"2")
        await put(etcd.url, prefix + "decision_id", b"3")  # an older planner's, unacknowledged
        clock = Clock()
        conn = connector(etcd.url, namespace, pools=(D,), clock=clock, ack_timeout_s=50.0)
        try:
            assert (await conn.apply(request({D: 4}))).status is ApplyStatus.DEFERRED
            clock.now += 49.0
            assert (await conn.apply(request({D: 4}))).status is ApplyStatus.DEFERRED
            clock.now += 1.0
            result = await conn.apply(request({D: 4}))
            assert (result.status, result.decision_id) == (ApplyStatus.APPLIED, 4)
        finally:
            await conn.close()

    run(scenario())


def test_restart_mid_decision_continues_the_sequence(etcd: EtcdServer, namespace: str) -> None:
    async def scenario() -> None:
        clock = Clock()
        first = connector(etcd.url, namespace, clock=clock, ack_timeout_s=100.0)
        orchestrator = client(etcd.url, namespace)
        try:
            await first.apply(request({P: 1, D: 1}))
            await orchestrator.complete(await orchestrator.get())
            await first.apply(request({P: 1, D: 3}))  # decision 1, then the planner "crashes"
        finally:
            await first.close()
        clock.now += 40.0
        second = connector(etcd.url, namespace, clock=clock, ack_timeout_s=100.0)
        try:
            state = await second.read()
            assert state.current() == {P: 1, D: 3}
            assert state.ready() == {P: 1, D: 1}  # decision 0's counts until 1 is acknowledged
            assert state.rolling_out == {P: False, D: True}
            assert state.detail["pending_s"] == pytest.approx(40.0, abs=0.01)
            deferred = await second.apply(request({P: 1, D: 4}))
            assert deferred.status is ApplyStatus.DEFERRED and "decision 1" in deferred.detail
            clock.now += 60.0  # 100 s since decision 1 was written, across the restart
            superseded = await second.apply(request({P: 1, D: 4}))
            assert (superseded.status, superseded.decision_id) == (ApplyStatus.APPLIED, 2)
            decision = await orchestrator.wait(timeout_s=5)
            assert decision is not None and decision.decision_id == 2
        finally:
            await second.close()
            await orchestrator.close()

    run(scenario())


def test_ids_stay_above_a_stale_acknowledgement(etcd: EtcdServer, namespace: str) -> None:
    async def scenario() -> None:
        await put(etcd.url, f"v1/{namespace}/planner/scaled_decision_id", b"7")
        conn = connector(etcd.url, namespace)
        try:
            result = await conn.apply(request({P: 1, D: 1}))
            assert result.decision_id == 8
            assert (await conn.read()).detail["acknowledged"] is False
        finally:
            await conn.close()

    run(scenario())


def test_etcd_down_fails_reads_and_applies_then_recovers(tmp_path: Path) -> None:
    server = EtcdServer(tmp_path / "data")
    server.start()
    try:

        async def scenario() -> None:
            conn = connector(server.url, "down")
            try:
                assert (await conn.apply(request({P: 1, D: 1}))).status is ApplyStatus.APPLIED
                server.stop()
                with pytest.raises(ConnectorError, match="no endpoint answered"):
                    await conn.read()
                failed = await conn.apply(request({P: 2, D: 2}))
                assert failed.status is ApplyStatus.FAILED and "no endpoint answered" in failed.detail
                server.start()  # same data: the decision survived
                state = await conn.read()
                assert state.current() == {P: 1, D: 1}
                assert (await conn.apply(request({P: 1, D: 1}))).status is ApplyStatus.UNCHANGED
            finally:
                await conn.close()

        run(scenario())
    finally:
        server.stop()


def test_a_hung_etcd_fails_the_tick_within_the_timeout(tmp_path: Path) -> None:
    server = EtcdServer(tmp_path / "data")
    server.start()
    try:

        async def scenario() -> None:
            conn = VirtualConnector(EtcdClient(server.url, timeout_s=0.5), "hung")
            try:
                server.pause()
                loop = asyncio.get_running_loop()
                began = loop.time()
                with pytest.raises(EtcdError):
                    await conn.read()
                assert (await conn.apply(request({P: 1, D: 1}))).status is ApplyStatus.FAILED
                assert loop.time() - began < 5.0
            finally:
                server.resume()
                await conn.close()

        run(scenario())
    finally:
        server.stop()


GARBAGE = {
    "non-decimal count": ("num_decode_workers", b"three", "not a decimal integer"),
    "negative count": ("num_prefill_workers", b"-3", "is negative"),
    "huge count": ("num_decode_workers", b"9" * 30, "out of range"),
    "non-decimal decision id": ("decision_id", b"0x10", "not a decimal integer"),
    "garbage acknowledgement": ("scaled_decision_id", b"done", "not a decimal integer"),
    "record not JSON": ("scaling_decision", b"{num_prefill_workers: 1", "invalid JSON"),
    "record with a string count": (
        "scaling_decision",
        b'{"num_prefill_workers": "1", "num_decode_workers": 1, "decision_id": 0}',
        "must be an integer",
    ),
    "status not JSON": ("orchestrator_status", b"ready", "invalid JSON"),
}


@pytest.mark.parametrize("name, value, message", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_in_a_key_is_a_clear_error_and_never_a_write(
    etcd: EtcdServer, namespace: str, name: str, value: bytes, message: str
) -> None:
    key = f"v1/{namespace}/planner/{name}"

    async def scenario() -> None:
        await put(etcd.url, key, value)
        conn = connector(etcd.url, namespace)
        orchestrator = client(etcd.url, namespace)
        try:
            with pytest.raises(ConnectorError, match=message) as info:
                await conn.read()
            assert key in str(info.value)
            result = await conn.apply(request({P: 1, D: 1}))
            assert result.status is ApplyStatus.FAILED and key in result.detail
            assert set(await raw_keys(etcd.url, namespace)) == {name}  # nothing written
            if name != "orchestrator_status":
                with pytest.raises(ConnectorError, match=message):
                    await orchestrator.get()
        finally:
            await conn.close()
            await orchestrator.close()

    run(scenario())


def test_a_concurrent_writer_makes_the_write_fail_not_interleave(
    etcd: EtcdServer, namespace: str
) -> None:
    class Raced(VirtualConnector):
        async def keys(self) -> Any:
            seen = await super().keys()
            await self.etcd.put(self.prefix + "decision_id", b"41")  # another planner, meanwhile
            return seen

    async def scenario() -> None:
        conn = Raced(EtcdClient(etcd.url), namespace)
        try:
            result = await conn.apply(request({P: 1, D: 1}))
            assert result.status is ApplyStatus.FAILED and "another planner" in result.detail
            assert set(await raw_keys(etcd.url, namespace)) == {"decision_id"}
        finally:
            await conn.close()

    run(scenario())


def test_client_wait_sees_decisions_as_they_are_written(etcd: EtcdServer, namespace: str) -> None:
    async def scenario() -> None:
        conn = connector(etcd.url, namespace)
        orchestrator = client(etcd.url, namespace)
        try:
            waiting = asyncio.create_task(orchestrator.wait(timeout_s=20))
            await asyncio.sleep(0)  # before or after the watch starts, the write is seen
            await conn.apply(request({P: 3, D: 2}))
            decision = await asyncio.wait_for(waiting, 20)
            assert decision is not None
            assert (decision.num_prefill_workers, decision.num_decode_workers, decision.decision_id) == (3, 2, 0)
            # the same decision is not returned twice, acknowledged or not
            assert await orchestrator.wait(timeout_s=0.2) is None
            await orchestrator.complete(decision)
            assert await orchestrator.wait(timeout_s=0.2) is None
            await conn.apply(request({P: 3, D: 4}))
            following = await orchestrator.wait(timeout_s=5)
            assert following is not None and following.decision_id == 1
            assert following.last_acknowledged is not None
            assert following.last_acknowledged.decision_id == 0
            # a restarted orchestrator gets the pending decision at once
            restarted = client(etcd.url, namespace)
            try:
                pending = await restarted.wait(timeout_s=0)
                assert pending is not None and pending.decision_id == 1
            finally:
                await restarted.close()
        finally:
            await conn.close()
            await orchestrator.close()

    run(scenario())


def test_drain_engines_travel_in_the_record(etcd: EtcdServer, namespace: str) -> None:
    async def scenario() -> None:
        conn = connector(etcd.url, namespace)
        orchestrator = client(etcd.url, namespace)
        try:
            await conn.apply(request({P: 2, D: 4}))
            await orchestrator.complete(await orchestrator.get())
            await conn.apply(
                request(
                    {P: 2, D: 2},
                    reason="scale_down",
                    drain={D: ("w7", "w3")},
                    drain_instances={D: ("host-b",)},
                )
            )
            decision = await orchestrator.get()
            assert decision.drain == {"decode": ("w7", "w3")}
            assert decision.drain_instances == {"decode": ("host-b",)}
            assert decision.reason == "scale_down"
            record = json.loads((await raw_keys(etcd.url, namespace))["scaling_decision"][0])
            assert record["drain"] == {"decode": ["w7", "w3"]}
        finally:
            await conn.close()
            await orchestrator.close()

    run(scenario())


def test_agg_drain_is_listed_under_decode(etcd: EtcdServer, namespace: str) -> None:
    async def scenario() -> None:
        conn = connector(etcd.url, namespace, pools=(A,))
        orchestrator = client(etcd.url, namespace)
        try:
            await conn.apply(request({A: 1}, drain={A: ("w1",)}))
            assert (await orchestrator.get()).drain == {"decode": ("w1",)}
        finally:
            await conn.close()
            await orchestrator.close()

    run(scenario())


READY_SOURCES = {
    "orchestrator report wins over discovery": (True, {P: 5, D: 5}, {P: 1, D: 2}, "orchestrator_status"),
    "discovery when nothing is reported": (False, {P: 1, D: 3}, {P: 1, D: 3}, "engine_discovery"),
    "the acknowledged decision otherwise": (False, None, {P: 2, D: 2}, "acknowledged_decision"),
}


@pytest.mark.parametrize(
    "report, seen, ready, source", READY_SOURCES.values(), ids=READY_SOURCES.keys()
)
def test_ready_counts_come_from_the_first_source_that_knows(
    etcd: EtcdServer,
    namespace: str,
    report: bool,
    seen: dict[Pool, int] | None,
    ready: dict[Pool, int],
    source: str,
) -> None:
    async def scenario() -> None:
        conn = connector(etcd.url, namespace, engines_ready=lambda: seen)
        orchestrator = client(etcd.url, namespace)
        try:
            await conn.apply(request({P: 2, D: 2}))
            decision = await orchestrator.get()
            if report:
                await orchestrator.complete(decision, ready_prefill_workers=1, ready_decode_workers=2)
            else:
                await orchestrator.complete(decision)
            state = await conn.read()
            assert state.current() == {P: 2, D: 2}
            assert state.ready() == ready
            assert state.detail["ready_source"] == {"prefill": source, "decode": source}
        finally:
            await conn.close()
            await orchestrator.close()

    run(scenario())


def test_without_a_decision_replicas_come_from_what_is_ready_or_the_read_fails(
    etcd: EtcdServer, namespace: str
) -> None:
    async def scenario() -> None:
        blind = connector(etcd.url, namespace)
        discovering = connector(etcd.url, namespace, engines_ready=lambda: {P: 1, D: 2})
        orchestrator = client(etcd.url, namespace)
        try:
            with pytest.raises(ConnectorError, match="prefill engines unknown"):
                await blind.read()
            assert (await discovering.read()).current() == {P: 1, D: 2}
            await orchestrator.report_ready(prefill=3, decode=1)
            state = await blind.read()
            assert state.current() == state.ready() == {P: 3, D: 1}
            assert not any(state.in_progress().values())
        finally:
            for c in (blind, discovering):
                await c.close()
            await orchestrator.close()

    run(scenario())


BAD_REQUESTS = {
    "a pool the deployment lacks": ({A: 2}, "not one of this deployment's"),
    "negative target": ({D: -1}, "outside 0.."),
    "float target": ({D: 2.5}, "must be an integer"),
    "no targets": ({}, "no targets"),
}


@pytest.mark.parametrize("targets, message", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_bad_requests_fail_without_touching_etcd(targets: dict[Pool, Any], message: str) -> None:
    conn = VirtualConnector(EtcdClient("http://127.0.0.1:9"), "bad")  # never contacted
    result = run(conn.apply(request(targets)))
    assert result.status is ApplyStatus.FAILED and message in result.detail


def test_from_config_takes_endpoints_from_the_environment(etcd: EtcdServer, namespace: str) -> None:
    cfg = PlannerConfig.from_sources(
        None, {"ETCD_ENDPOINTS": f"http://127.0.0.1:9,{etcd.url}", "DYN_NAMESPACE": namespace}
    )
    assert cfg.virtual_etcd_endpoints == f"http://127.0.0.1:9,{etcd.url}"
    conn = VirtualConnector.from_config(cfg, {})

    async def scenario() -> None:
        try:
            assert (await conn.apply(request({P: 1, D: 1}))).status is ApplyStatus.APPLIED
            assert conn.etcd.endpoint == etcd.url  # failed over past the dead endpoint
            assert conn.prefix == f"v1/{namespace}/planner/"
        finally:
            await conn.close()

    run(scenario())


def test_client_refuses_bad_acknowledgements_and_reports() -> None:
    orchestrator = VirtualConnectorClient("ns", EtcdClient("http://127.0.0.1:9"))
    with pytest.raises(ConnectorError, match="id -1"):
        run(orchestrator.complete(PlannerDecision()))
    with pytest.raises(ConnectorError, match="ready decode workers"):
        run(orchestrator.report_ready(decode=-2))
