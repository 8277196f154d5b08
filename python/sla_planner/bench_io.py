"""``sla-planner bench`` cases of the I/O-facing paths: one ``decode_fpm`` call from Python, FPM
ingestion over ZMQ from 64 loopback publishers, and the first replay after an install.

Each checks before timing and reports a reference measured in the same run: the Python codec,
the pyzmq receive loop, a replay that compiles the simulator from scratch.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from .bench import BenchCase, BenchSizes, Kernels, Measurement, check_equal, median_seconds
from .kernels import fpm_ref

__all__ = ["IO_CASES", "zmq_ingest_rate"]

PUBLISHERS = 64


def _message(publisher: int, counter: int) -> bytes:
    from .bench_cases import fpm_message

    return fpm_message(f"decode-{publisher}-6f9c2d7b84-x2k9q", 0, counter, 0.0123, (0, 0, 48, 200_000 + counter), 0)


def _decode_one(k: Kernels, s: BenchSizes) -> Measurement:
    from . import kernels

    payload = _message(3, 1234)
    check_equal("fpm_decode_one", "decode_fpm", [kernels.decode_fpm(payload)], [fpm_ref.decode_fpm(payload)])
    return Measurement(median_seconds(lambda: kernels.decode_fpm(payload), s.repeat, s.scalar_calls * 10) * 1e6,
                       median_seconds(lambda: fpm_ref.decode_fpm(payload), s.repeat, s.scalar_calls) * 1e6)


def zmq_ingest_rate(native: bool, messages_per_publisher: int, timeout_s: float = 120.0) -> tuple[float, Any]:
    """Messages per second from ``PUBLISHERS`` loopback publishers into a native FpmIngestor's
    table, read by the native loop (``native``) or the pyzmq loop; returns the rate and the
    ingestor. The rate counts messages up to the last one that arrived (a pyzmq SUB drops what
    overflows its high-water mark)."""
    from . import _native
    from .signals.discovery import EngineEndpoint, StaticDiscovery
    from .signals.fpm_subscriber import FpmSubscriber

    ingestor = _native.FpmIngestor(10, 30.0, 4096)
    publisher = _native.BenchPublisher(PUBLISHERS)
    payloads = [[_message(p, c) for c in range(1, 9)] for p in range(PUBLISHERS)]
    discovery = StaticDiscovery([EngineEndpoint(e, "decode") for e in publisher.endpoints])
    sub = FpmSubscriber(ingestor, discovery, native=native, poll_interval_s=0.01)
    sub.start()
    total = PUBLISHERS * messages_per_publisher
    try:
        start = time.perf_counter()
        publisher.start(payloads, messages_per_publisher)
        last, last_at = 0, start
        while True:
            time.sleep(0.002)
            got = ingestor.counters()["received"]
            now = time.perf_counter()
            if got != last:
                last, last_at = got, now
            if got >= total or now - last_at > 1.0 or now - start > timeout_s:
                break
    finally:
        sub.stop()
        publisher.join()
    if last == 0:
        raise RuntimeError("zmq_ingest: no message arrived")
    return last / (last_at - start), ingestor


def _zmq_ingest(k: Kernels, s: BenchSizes) -> Measurement:
    from .kernels import USING_EXTENSIONS

    # with SLA_PLANNER_NO_EXTENSIONS the native loop is off: the reference is timed against itself
    rate, ingestor = zmq_ingest_rate(USING_EXTENSIONS, s.zmq_messages)
    c = ingestor.counters()
    if USING_EXTENSIONS:  # the native loop drops nothing (a pyzmq SUB drops at its high-water mark)
        check_equal("zmq_ingest", "messages decoded", c["decoded"], PUBLISHERS * s.zmq_messages)
    check_equal("zmq_ingest", "engines", c["engines"], PUBLISHERS)
    ref_rate, _ = zmq_ingest_rate(False, s.zmq_reference_messages)
    return Measurement(rate, ref_rate)


def _replay_seconds(cache_dir: str, precompile: bool) -> float:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    if precompile:
        subprocess.run([sys.executable, "-m", "sla_planner.sim.precompile"], env=env, check=True,
                       capture_output=True)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "sla_planner.cli", "replay", "--trace", "builtin:mooncake_conversation",
         "--profile-results-dir", "builtin:example", "--json"],
        env=env, check=True, capture_output=True,
    )
    return time.perf_counter() - start


def _replay_first(k: Kernels, s: BenchSizes) -> Measurement:
    with tempfile.TemporaryDirectory() as warm, tempfile.TemporaryDirectory() as cold:
        return Measurement(_replay_seconds(warm, True), _replay_seconds(cold, False))


IO_CASES: tuple[BenchCase, ...] = (
    BenchCase("fpm_decode_one", "us", False, 0.3, _decode_one,
              "decode_fpm of one ~440-byte payload from Python (the nested dict)"),
    BenchCase("zmq_ingest", "msg/s", True, 1e6, _zmq_ingest,
              f"ZMQ loopback socket -> engine table from {PUBLISHERS} publishers; reference: the pyzmq loop"),
    BenchCase("replay_first", "s", False, 5.0, _replay_first,
              "the bundled 1-hour trace after `make install` (numba cache filled by sim.precompile); "
              "reference: the same replay compiling from scratch", full_only=True),
)
