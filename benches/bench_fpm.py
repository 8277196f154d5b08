"""FPM decode + ingest throughput: native (Rust) vs the Python reference, same inputs.

Run: ``pytest benches/bench_fpm.py --benchmark-only`` (groups pair native with reference).
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pytest

from sla_planner.kernels import fpm_ref
from sla_planner.kernels.fpm_ingest_ref import FpmIngestor as FpmIngestorRef

_native = pytest.importorskip("sla_planner._native")

N_MESSAGES = 20_000
N_ENGINES = 64


def realistic_payload(i: int) -> bytes:
    """A ~440-byte FPM message like a busy engine publishes (float64 floats, one extra key)."""
    engine = i % N_ENGINES
    rec: dict[str, Any] = {
        "version": 1,
        "worker_id": f"vllm-decode-{engine // 8}-6f9c2d7b84-x2k9q",
        "dp_rank": engine % 8,
        "counter_id": i // N_ENGINES + 1,
        "wall_time": 0.0123 + 1e-6 * (i % 977),
        "scheduled_requests": {
            "num_prefill_requests": i % 4,
            "sum_prefill_tokens": 512 * (i % 4),
            "var_prefill_length": 1234.5,
            "sum_prefill_kv_tokens": 70_000 + i % 1000,
            "num_decode_requests": 48 + i % 16,
            "sum_decode_kv_tokens": 96_000 + 13 * (i % 5000),
            "var_decode_kv_tokens": 2.5e6,
        },
        "queued_requests": {
            "num_prefill_requests": i % 3,
            "sum_prefill_tokens": 3000 * (i % 3),
            "var_prefill_length": 0.0,
            "num_decode_requests": 0,
            "sum_decode_kv_tokens": 0,
            "var_decode_kv_tokens": 0.0,
        },
        "kv_cache_usage_perc": 0.4375,
    }
    return msgpack.packb(rec, use_bin_type=True)


@pytest.fixture(scope="module")
def messages() -> list[bytes]:
    msgs = [realistic_payload(i) for i in range(N_MESSAGES)]
    sizes = [len(m) for m in msgs]
    assert 400 <= sum(sizes) / len(sizes) <= 480
    return msgs


@pytest.fixture(scope="module")
def packed(messages: list[bytes]) -> tuple[bytes, np.ndarray]:
    return b"".join(messages), np.cumsum([0] + [len(m) for m in messages]).astype(np.int64)


def _check_same(messages: list[bytes]) -> None:
    native, ref = _native.FpmIngestor(), FpmIngestorRef()
    assert native.ingest(messages[:2000], 1.0) == ref.ingest(messages[:2000], 1.0) == 2000
    snap_n, snap_r = native.snapshot(1.0), ref.snapshot(1.0)
    for key in snap_n:
        np.testing.assert_array_equal(snap_n[key], snap_r[key], err_msg=key)


@pytest.mark.benchmark(group="fpm-ingest-buffer")
@pytest.mark.parametrize("impl", ["native", "reference"])
def test_ingest_buffer(benchmark: Any, impl: str, messages: list[bytes], packed: tuple[bytes, np.ndarray]) -> None:
    _check_same(messages)
    buf, offsets = packed
    ingestor = _native.FpmIngestor() if impl == "native" else FpmIngestorRef()
    rounds = {"native": 30, "reference": 2}[impl]
    accepted = benchmark.pedantic(ingestor.ingest_buffer, args=(buf, offsets, 1.0), rounds=rounds, iterations=1)
    assert accepted == N_MESSAGES
    benchmark.extra_info["messages"] = N_MESSAGES
    benchmark.extra_info["msgs_per_s"] = N_MESSAGES / benchmark.stats.stats.mean


@pytest.mark.benchmark(group="fpm-ingest-list")
@pytest.mark.parametrize("impl", ["native", "reference"])
def test_ingest_list(benchmark: Any, impl: str, messages: list[bytes]) -> None:
    _check_same(messages)
    ingestor = _native.FpmIngestor() if impl == "native" else FpmIngestorRef()
    rounds = {"native": 30, "reference": 2}[impl]
    accepted = benchmark.pedantic(ingestor.ingest, args=(messages, 1.0), rounds=rounds, iterations=1)
    assert accepted == N_MESSAGES
    benchmark.extra_info["msgs_per_s"] = N_MESSAGES / benchmark.stats.stats.mean


@pytest.mark.benchmark(group="fpm-decode-one")
@pytest.mark.parametrize("impl", ["native", "reference"])
def test_decode_one(benchmark: Any, impl: str, messages: list[bytes]) -> None:
    decode = _native.decode_fpm if impl == "native" else fpm_ref.decode_fpm
    assert _native.decode_fpm(messages[0]) == fpm_ref.decode_fpm(messages[0])
    benchmark(decode, messages[0])
