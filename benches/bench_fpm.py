"""FPM decode + ingest throughput, and batch encode + ingest (the replay path): native (Rust)
vs the Python reference, same inputs.

Run: ``pytest benches/bench_fpm.py --benchmark-only`` (groups pair native with reference).
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pytest

from sla_planner.kernels import fpm_ref
from sla_planner.kernels.fpm_ingest_ref import FpmIngestor as FpmIngestorRef
from sla_planner.sim import _kernel as K

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


# ---------------------------------------------------------------- batch encode + ingest (replay)

N_ROWS = 100_000


@pytest.fixture(scope="module")
def sim_rows() -> dict[str, Any]:
    """100k simulator-shaped FPM rows over 64 engines as encode_fpm_rows columns (1 in 8 a heartbeat)."""
    rng = np.random.default_rng(7)
    n = N_ROWS
    wall = 0.005 + 0.05 * rng.random(n)
    wall[::8] = 0.0
    scheduled = np.column_stack([
        rng.integers(0, 4, n), rng.integers(0, 8192, n), 1e5 * rng.random(n), rng.integers(0, 10**5, n),
        rng.integers(0, 256, n), rng.integers(0, 10**6, n), 1e6 * rng.random(n),
    ]).astype(np.float64)
    queued = np.column_stack([
        rng.integers(0, 16, n), rng.integers(0, 10**5, n), 1e5 * rng.random(n),
        rng.integers(0, 64, n), rng.integers(0, 10**5, n), 1e6 * rng.random(n),
    ]).astype(np.float64)
    scheduled[wall == 0.0] = 0.0
    queued[wall == 0.0] = 0.0
    ids = np.array([f"{('prefill', 'decode')[e % 2]}-{e}" for e in range(N_ENGINES)], dtype=object)
    engine = rng.integers(0, N_ENGINES, n)
    assert K.N_F == 16  # the bridge slices these columns out of (n, 16) simulator rows
    return {
        "worker_ids": ids[engine],
        "dp_rank": np.zeros(n, dtype=np.int64),
        "counter_id": np.arange(1, n + 1, dtype=np.int64),
        "wall_time": wall,
        "scheduled": scheduled,
        "queued": queued,
    }


def _encode_and_ingest(encode_rows: Any, ingestor_cls: Any, cols: dict[str, Any]) -> int:
    buf, offsets = encode_rows(*cols.values())
    accepted: int = ingestor_cls().ingest_buffer(buf, offsets, 1.0)
    return accepted


@pytest.mark.benchmark(group="fpm-encode-rows-ingest")
@pytest.mark.parametrize("impl", ["native", "reference"])
def test_encode_rows_and_ingest(benchmark: Any, impl: str, sim_rows: dict[str, Any]) -> None:
    small = {k: v[:500] for k, v in sim_rows.items()}
    assert _native.encode_fpm_rows(*small.values())[0] == fpm_ref.encode_fpm_rows(*small.values())[0]
    if impl == "native":
        args, rounds = (_native.encode_fpm_rows, _native.FpmIngestor, sim_rows), 20
    else:
        args, rounds = (fpm_ref.encode_fpm_rows, FpmIngestorRef, sim_rows), 1
    accepted = benchmark.pedantic(_encode_and_ingest, args=args, rounds=rounds, iterations=1)
    assert accepted == N_ROWS
    benchmark.extra_info["rows"] = N_ROWS
    benchmark.extra_info["ns_per_row"] = 1e9 * benchmark.stats.stats.mean / N_ROWS


@pytest.mark.benchmark(group="fpm-encode-rows")
@pytest.mark.parametrize("impl", ["native", "reference"])
def test_encode_rows(benchmark: Any, impl: str, sim_rows: dict[str, Any]) -> None:
    encode_rows = _native.encode_fpm_rows if impl == "native" else fpm_ref.encode_fpm_rows
    rounds = {"native": 20, "reference": 1}[impl]
    buf, offsets = benchmark.pedantic(encode_rows, args=tuple(sim_rows.values()), rounds=rounds, iterations=1)
    assert offsets.shape == (N_ROWS + 1,) and offsets[-1] == len(buf)
    benchmark.extra_info["ns_per_row"] = 1e9 * benchmark.stats.stats.mean / N_ROWS
