"""Deterministic mutation fuzzing of the FPM decoder and the batch ingest path, native against
the reference: ``python -m sla_planner.fpm_fuzz --payloads 1000000`` (``make fuzz``; CI runs it).

15% of the payloads are valid records of many engines (new engines, eviction, expiry, gaps);
the others start from seeds: valid payloads in several layouts (the canonical encoder's, msgpack's with other key
orders, float32 floats, unknown keys, big counters, long worker ids); each fuzzed payload is a
seed with one to four mutations (bytes flipped or set to msgpack markers, bytes inserted or
deleted, truncation, a slice repeated, a splice of another seed). The same seed gives the same
payloads. Every payload goes through ``decode_fpm`` of both (same result, or both an
``FpmDecodeError``; for well-formed msgpack the same ``kind`` and ``field``), and through
``FpmIngestor.ingest_buffer`` of both in batches with transport sequence numbers (same accepted
count and counters after each batch, same snapshot at the end). A crash is a Python exception
other than FpmDecodeError or a dead process; either, or any mismatch, fails the run.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from .errors import FpmDecodeError
from .kernels import fpm_ref
from .kernels.fpm_ingest_ref import FpmIngestor as FpmIngestorRef

__all__ = ["seeds", "mutations", "FuzzReport", "fuzz"]

#: reference kinds raised while parsing bytes that are not well-formed msgpack: the native
#: decoder streams and may name another problem first (documented in kernels.fpm_ref)
_PARSE_KINDS = {"truncated", "malformed", "invalid_marker", "trailing_bytes", "too_deep", "invalid_utf8"}
_MARKERS = np.array([0x00, 0x01, 0x7F, 0x80, 0x8F, 0x90, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xC3, 0xCA, 0xCB,
                     0xCC, 0xCD, 0xCE, 0xCF, 0xD0, 0xD3, 0xD9, 0xDA, 0xDC, 0xDE, 0xDF, 0xE0, 0xFF], dtype=np.uint8)


def _record(worker_id: str, dp_rank: int, counter_id: int, wall_time: float, scale: int) -> dict[str, Any]:
    return {
        "version": 1, "worker_id": worker_id, "dp_rank": dp_rank, "counter_id": counter_id,
        "wall_time": wall_time,
        "scheduled_requests": {name: (scale * (j + 1) if is_count else 12.5 * j)
                               for j, (name, is_count) in enumerate(fpm_ref.SCHEDULED_FIELDS)},
        "queued_requests": {name: (scale + j if is_count else 0.5 * j)
                            for j, (name, is_count) in enumerate(fpm_ref.QUEUED_FIELDS)},
    }


def seeds() -> list[bytes]:
    """Valid payloads in the layouts publishers write (and a few they might)."""
    recs = [
        _record("decode-0-6f9c2d7b84-x2k9q", 0, 1, 0.0123, 3),
        _record("p", 7, 2**64 - 1, 0.0, 0),
        _record("w" * 40, 2, 2**40, 1.5, 70_000),
        _record("prefill-12", 1, 300, 0.25, 2**31),
    ]
    out = [fpm_ref.encode_fpm(r) for r in recs]
    out.append(msgpack.packb(dict(reversed(list(recs[0].items()))), use_bin_type=True))
    out.append(msgpack.packb({**recs[2], "kv_cache_usage_perc": 0.4, "extra": [1, {"a": b"x"}]}, use_bin_type=True))
    out.append(msgpack.packb(recs[3], use_single_float=True, use_bin_type=True))
    return out


def mutations(seed_payloads: list[bytes], n: int, rng: np.random.Generator) -> Iterator[bytes]:
    """``n`` payloads: 15% valid records of 100 workers x 4 ranks with random counters (the table's
    paths: new engines, eviction, expiry, gaps, restarts), the rest a seed with 1-4 mutations."""
    for _ in range(n):
        if rng.random() < 0.15:
            worker = int(rng.integers(100))
            counter = int(rng.integers(0, 2**64, dtype=np.uint64))
            yield fpm_ref.encode_fpm(_record(f"pod-{worker}", int(rng.integers(4)), counter,
                                             float(rng.choice([0.0, 0.02])), worker))
            continue
        buf = bytearray(seed_payloads[int(rng.integers(len(seed_payloads)))])
        for _ in range(int(rng.integers(1, 5))):
            op = int(rng.integers(7))
            at = int(rng.integers(len(buf) + 1))
            if op == 0 and buf:  # flip bits
                buf[at % len(buf)] ^= int(rng.integers(1, 256))
            elif op == 1 and buf:  # a msgpack marker
                buf[at % len(buf)] = int(rng.choice(_MARKERS))
            elif op == 2:  # insert
                buf[at:at] = bytes([int(rng.choice(_MARKERS))])
            elif op == 3 and buf:  # delete
                del buf[at % len(buf)]
            elif op == 4:  # truncate
                del buf[at:]
            elif op == 5 and buf:  # repeat a slice
                end = min(len(buf), at + int(rng.integers(1, 24)))
                buf[at:at] = buf[at:end]
            else:  # splice the tail of another seed
                other = seed_payloads[int(rng.integers(len(seed_payloads)))]
                cut = int(rng.integers(len(other) + 1))
                buf[at:] = other[cut:]
        yield bytes(buf)


@dataclass
class FuzzReport:
    """What a run did: payloads, how many each decoder accepted, mismatches (first few kept)."""

    payloads: int = 0
    accepted: int = 0
    batches: int = 0
    mismatches: int = 0
    examples: list[str] | None = None

    def fail(self, what: str) -> None:
        self.mismatches += 1
        if self.examples is None:
            self.examples = []
        if len(self.examples) < 10:
            self.examples.append(what)


def _outcome(decode: Callable[[bytes], Any], payload: bytes) -> tuple[bool, Any]:
    try:
        return True, decode(payload)
    except FpmDecodeError as e:
        return False, (e.kind, e.field)


def _check_decode(report: FuzzReport, native: Callable[[bytes], Any], payload: bytes) -> None:
    ok_n, got = _outcome(native, payload)
    ok_r, want = _outcome(fpm_ref.decode_fpm, payload)
    if ok_n != ok_r:
        report.fail(f"decode accept {ok_n} vs reference {ok_r}: {payload.hex()}")
    elif ok_n:
        report.accepted += 1
        if got != want:
            report.fail(f"decode result differs: {payload.hex()}")
    elif want[0] not in _PARSE_KINDS and got != want:
        report.fail(f"decode error {got} vs reference {want}: {payload.hex()}")


def fuzz(payloads: int, seed: int = 1, batch: int = 2_000, native: Any = None) -> FuzzReport:
    """Run the fuzzer (``native``: the module under test, default ``sla_planner._native``)."""
    if native is None:
        from . import _native as native
    rng = np.random.default_rng(seed)
    report = FuzzReport()
    tables = (native.FpmIngestor(4, 5.0, 64, 20.0), FpmIngestorRef(4, 5.0, 64, 20.0))
    pending: list[bytes] = []
    now = 0.0

    def flush() -> None:
        nonlocal now
        now += float(rng.choice([0.1, 1.0, 7.0, 30.0]))
        offsets = np.cumsum([0] + [len(p) for p in pending], dtype=np.int64)
        buf = b"".join(pending)
        seqs = rng.integers(0, 2**64, len(pending), dtype=np.uint64, endpoint=False).tolist()
        got, want = (t.ingest_buffer(buf, offsets, now, seqs) for t in tables)
        if got != want or tables[0].counters() != tables[1].counters():
            a, b = tables[0].counters(), tables[1].counters()
            diff = {k: (a[k], b[k]) for k in a if a[k] != b.get(k)}
            report.fail(f"batch {report.batches}: accepted {got} vs {want}, counters differ {diff}")
        report.batches += 1
        pending.clear()

    for payload in mutations(seeds(), payloads, rng):
        report.payloads += 1
        _check_decode(report, native.decode_fpm, payload)
        pending.append(payload)
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    a, b = (t.snapshot(now) for t in tables)
    if list(a) != list(b) or any(not np.array_equal(a[k], b[k]) for k in a):
        report.fail("final snapshots differ")
    return report


def main(argv: list[str] | None = None) -> int:
    """Command line: exit 0 when no payload crashed or mismatched, else 1."""
    p = argparse.ArgumentParser(prog="python -m sla_planner.fpm_fuzz", description=__doc__.splitlines()[0])
    p.add_argument("--payloads", type=int, default=1_000_000, help="mutated payloads to run (default 10**6)")
    p.add_argument("--seed", type=int, default=1, help="generator seed (same seed, same payloads)")
    ns = p.parse_args(argv)
    start = time.perf_counter()
    report = fuzz(ns.payloads, ns.seed)
    took = time.perf_counter() - start
    print(f"fpm fuzz: {report.payloads:,} payloads ({report.accepted:,} valid), {report.batches} ingest batches, "
          f"{report.mismatches} mismatches, {took:.0f} s")
    for example in report.examples or []:
        print(f"  {example}")
    return 0 if report.mismatches == 0 else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
