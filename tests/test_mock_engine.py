"""MockEngine: load specs, argument checks, and what it publishes on real PUB sockets."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq
from sim_helpers import constant_perf

from sla_planner import kernels
from sla_planner.errors import ConfigError, TraceFormatError
from sla_planner.signals.mock_engine import MockEngine, open_load

PERF = constant_perf(prefill_tok_s=20_000.0, itl_ms=10.0, max_kv=100_000)


def wait_for(condition: Callable[[], Any], timeout_s: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def free_port_pair() -> int:
    """A port p such that p and p + 1 were free a moment ago (loopback)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port >= 65535:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    pytest.fail("no free port pair found")


class Subscriber:
    """Raw SUB sockets collecting every multipart message per endpoint."""

    def __init__(self, endpoints: list[str]) -> None:
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.socks = []
        for ep in endpoints:
            s = self.ctx.socket(zmq.SUB)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.RECONNECT_IVL, 10)
            s.setsockopt(zmq.SUBSCRIBE, b"")
            s.connect(ep)
            self.socks.append(s)
        self.messages: list[list[list[bytes]]] = [[] for _ in endpoints]

    def drain(self) -> None:
        for i, s in enumerate(self.socks):
            while True:
                try:
                    self.messages[i].append(s.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break

    def close(self) -> None:
        for s in self.socks:
            s.close(linger=0)
        self.ctx.term()


@pytest.fixture
def subscriber_factory() -> Iterator[Callable[[list[str]], Subscriber]]:
    made: list[Subscriber] = []

    def make(endpoints: list[str]) -> Subscriber:
        sub = Subscriber(endpoints)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close()


# ------------------------------------------------------------------ load specs
def test_constant_load_is_evenly_spaced_with_spec_lengths() -> None:
    reqs = list(itertools.islice(open_load("constant:4?isl=1000&osl=50"), 5))
    assert [r.timestamp_s for r in reqs] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.25])
    assert {(r.input_length, r.output_length) for r in reqs} == {(1000, 50)}
    assert [r.line for r in reqs] == [1, 2, 3, 4, 5]


def test_constant_load_draws_lognormal_lengths_reproducibly() -> None:
    spec = "constant:10?isl=lognormal:1000:0.5&osl=lognormal:100:0.5&seed=3"
    a = [r.input_length for r in itertools.islice(open_load(spec), 300)]
    b = [r.input_length for r in itertools.islice(open_load(spec), 300)]
    assert a == b and len(set(a)) > 10
    assert 700 < sum(a) / len(a) < 1300


def test_constant_zero_is_idle() -> None:
    assert list(open_load("constant:0")) == []


def test_synthetic_specs_pass_through_to_open_trace() -> None:
    reqs = list(open_load("synthetic:poisson?rate_rps=5&duration_s=10&isl=321&osl=12"))
    assert reqs and all(r.input_length == 321 and r.output_length == 12 for r in reqs)
    assert all(0 <= r.timestamp_s < 10 for r in reqs)


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ("constant:fast", ConfigError, "RPS must be a number"),
        ("constant:-1", ConfigError, "RPS must be finite and >= 0"),
        ("constant:inf", ConfigError, "RPS must be finite"),
        ("constant:1?isl=0", ConfigError, "isl: .*constant length must be an integer >= 1"),
        ("constant:1?rate=3", ConfigError, "is not isl=..., osl=... or seed=..."),
        ("constant:1?seed=-2", ConfigError, "seed must be an integer >= 0"),
        ("synthetic:nope", ConfigError, "unknown kind"),
        ("", ConfigError, "non-empty string"),
        ("no-such-dir/trace.jsonl", TraceFormatError, "no such file"),
    ],
    ids=["rps-word", "rps-negative", "rps-inf", "isl-zero", "unknown-key", "seed-negative", "synthetic-kind",
         "empty", "missing-file"],
)
def test_bad_load_specs(spec: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        MockEngine(0, 1, "decode", PERF, spec)


# ------------------------------------------------------------------ arguments
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": -1}, "port must be 0"),
        ({"port": 65535, "dp_ranks": 1}, None),  # highest port, just inside
        ({"port": 65535, "dp_ranks": 2}, "port \\+ dp_ranks - 1 <= 65535"),  # just outside
        ({"port": 65536}, "port must be 0"),
        ({"port": 20380, "dp_ranks": 0}, "dp_ranks must be >= 1"),
        ({"port": 20380, "dp_ranks": 1.0}, "dp_ranks must be an integer"),
        ({"port": 20380, "role": "router"}, "role must be one of"),
        ({"port": 20380, "time_scale": 0.0}, "time_scale must be finite and > 0"),
        ({"port": 20380, "worker_id": ""}, "worker_id must be a non-empty string"),
        ({"port": 20380, "worker_id": "w" * 257}, "at most 256 bytes"),
        ({"port": 20380, "worker_id": "w" * 256}, None),
        ({"port": 20380, "tick_s": 0.0}, "tick_s must be finite and > 0"),
        ({"port": 20380, "support_engines": 0}, "support_engines must be an integer >= 1"),
    ],
    ids=["port-negative", "port-max", "port-overflow", "port-too-big", "ranks-zero", "ranks-float", "role",
         "time-scale", "worker-empty", "worker-too-long", "worker-at-limit", "tick", "support"],
)
def test_mock_engine_arguments(kwargs: dict[str, Any], message: str | None) -> None:
    kwargs = {"perf": PERF, "load": "constant:0", **kwargs}
    if message is None:
        MockEngine(**kwargs)
    else:
        with pytest.raises(ConfigError, match=message):
            MockEngine(**kwargs)


def test_default_worker_id_and_endpoints_follow_the_port() -> None:
    engine = MockEngine(20380, 3, "decode", PERF, "constant:0")
    assert engine.worker_id == "mock-20380"
    assert engine.endpoints == [f"tcp://127.0.0.1:{p}" for p in (20380, 20381, 20382)]


# ------------------------------------------------------------------ publishing
def test_idle_ranks_publish_heartbeats_with_sequences_from_zero(
    subscriber_factory: Callable[[list[str]], Subscriber],
) -> None:
    port = free_port_pair()
    sub = subscriber_factory([f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{port + 1}"])
    time.sleep(0.05)  # let the SUB sockets start reconnecting; the first heartbeat is 0.25 s away
    with MockEngine(port, 2, "decode", PERF, "constant:0", time_scale=4.0) as engine:
        assert engine.endpoints == [f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{port + 1}"]

        def two_each() -> bool:
            sub.drain()
            return all(len(m) >= 2 for m in sub.messages)

        wait_for(two_each, what="two heartbeats per rank")
    for rank, messages in enumerate(sub.messages):
        seqs = [int.from_bytes(m[1], "big") for m in messages]
        assert seqs[:2] == [0, 1]
        for frames in messages:
            assert len(frames) == 3 and frames[0] == f"mock-{port}".encode() and len(frames[1]) == 8
            rec = kernels.decode_fpm(frames[2])
            assert rec["worker_id"] == f"mock-{port}" and rec["dp_rank"] == rank
            assert rec["wall_time"] == 0.0 and rec["counter_id"] == 0  # heartbeat before any pass
            assert rec["scheduled_requests"]["num_decode_requests"] == 0


@pytest.mark.parametrize(
    ("role", "busy_field"),
    [("decode", "num_decode_requests"), ("prefill", "num_prefill_requests"), ("agg", "num_decode_requests")],
    ids=["decode", "prefill", "agg"],
)
def test_busy_ranks_publish_forward_passes(
    role: str, busy_field: str, subscriber_factory: Callable[[list[str]], Subscriber]
) -> None:
    engine = MockEngine(0, 2, role, PERF, "constant:40?isl=500&osl=30", "w-busy", time_scale=5.0)
    with engine:
        sub = subscriber_factory(engine.endpoints)

        def enough() -> bool:
            sub.drain()
            return all(sum(kernels.decode_fpm(m[2])["wall_time"] > 0 for m in ms) >= 5 for ms in sub.messages)

        wait_for(enough, what="forward passes on both ranks")
    assert engine.requests_sent > 0 and all(n > 0 for n in engine.published)
    for rank, messages in enumerate(sub.messages):
        seqs = [int.from_bytes(m[1], "big") for m in messages]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # consecutive, no loss once joined
        recs = [kernels.decode_fpm(m[2]) for m in messages]
        assert {r["dp_rank"] for r in recs} == {rank} and {r["worker_id"] for r in recs} == {"w-busy"}
        passes = [r for r in recs if r["wall_time"] > 0]
        counters = [r["counter_id"] for r in passes]
        assert counters == list(range(counters[0], counters[0] + len(counters)))  # +1 per forward pass
        assert any(r["scheduled_requests"][busy_field] > 0 for r in passes)
        if role == "prefill":  # only this role's engines are published
            assert all(r["scheduled_requests"]["num_decode_requests"] == 0 for r in recs)


def test_run_in_the_foreground_returns_a_summary_and_runs_once() -> None:
    engine = MockEngine(0, 1, "agg", PERF, "constant:20?isl=100&osl=10", time_scale=10.0)
    summary = engine.run(0.3)
    assert summary["worker_id"] == engine.worker_id and summary["role"] == "agg"
    assert summary["requests_sent"] > 0 and summary["published"][0] > 0
    assert summary["sim_time_s"] == pytest.approx(3.0, rel=0.01)
    with pytest.raises(ConfigError, match="runs once"):
        engine.run(0.1)
    with pytest.raises(ConfigError, match="runs once"):
        engine.start()


def test_bind_conflict_is_a_config_error() -> None:
    with MockEngine(0, 1, "decode", PERF, "constant:0") as first:
        port = int(first.endpoints[0].rsplit(":", 1)[1])
        with pytest.raises(ConfigError, match="cannot bind rank 0"):
            MockEngine(port, 1, "decode", PERF, "constant:0").start()


def test_a_bad_trace_line_ends_the_thread_and_is_kept(tmp_path: Any) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"timestamp": 0, "input_length": 10, "output_length": 5}\n{"timestamp": 1}\n')
    engine = MockEngine(0, 1, "decode", PERF, str(trace), time_scale=10.0)
    engine.start()
    wait_for(lambda: not engine.running, what="the engine thread to stop")
    assert isinstance(engine.error, TraceFormatError)
    engine.stop()


@pytest.mark.parametrize(
    ("role", "load"),
    [("decode", "constant:20?isl=3000&osl=10"), ("prefill", "constant:50?isl=10&osl=3000")],
    ids=["decode-needs-prefill", "prefill-needs-decode"],
)
def test_the_support_pool_grows_when_requests_wait_in_it(role: str, load: str) -> None:
    # prefill at 1000 tok/s: 3000-token prompts take 3 s each, so 20 req/s need ~60 prefill engines;
    # decode KV of 10_000 tokens holds 3 requests of 3000 output tokens, so 50 req/s need many engines
    slow = constant_perf(prefill_tok_s=1000.0, itl_ms=10.0, max_kv=10_000)
    engine = MockEngine(0, 1, role, slow, load, time_scale=10.0, support_engines=2)
    summary = engine.run(0.5)
    assert summary["support_pool_size"] > 10
    assert summary["support_pool_size"] <= 1024


def test_agg_has_no_support_pool() -> None:
    assert MockEngine(0, 1, "agg", PERF, "constant:0").support_pool_size == 0
