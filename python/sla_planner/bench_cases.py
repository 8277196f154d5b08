"""The cases of ``sla-planner bench``: realistic inputs, a correctness check, then timings.

Targets are the per-core goals of the compiled hot paths; the references are the project's own
numpy / pure-Python twins (``sla_planner.kernels.*_ref``), timed in the same run.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np

from .bench import BenchCase, BenchSizes, Kernels, Measurement, check_close, check_equal, median_seconds
from .bench_io import IO_CASES
from .core.load import EngineCapabilities, LoadSettings, LoadState, engine_view_from_snapshot, load_step
from .kernels import interp_ref
from .kernels.table_feed import ENGINE_VIEW_COLUMNS, table_feed
from .kernels.fpm_ingest_ref import FpmIngestor as FpmIngestorRef
from .kernels.kalman_ref import KalmanBankRef
from .kernels.regression_ref import SlidingRegression as SlidingRegressionRef
from .types import DecisionReason, Pool

__all__ = [
    "CASES", "fpm_message", "make_engine_batch", "engine_batch", "split",
    "LoadRig", "warm_load_rig", "check_load_decisions", "load_tick_case",
]

SEED = 20240601
HISTORY_LEN = 10

# ---------------------------------------------------------------------------------------------
# inputs


def fpm_message(worker_id: str, dp_rank: int, counter_id: int, wall_time: float,
                sched: tuple[int, int, int, int], queued_prefill_tokens: int) -> bytes:
    """One FPM message as an engine publishes it (floats as float64; about 440 bytes).

    ``sched`` is (prefill requests, prefill tokens, decode requests, decode KV tokens).
    """
    n_pre, pre_tokens, n_dec, dec_kv = sched
    return msgpack.packb(
        {
            "version": 1, "worker_id": worker_id, "dp_rank": dp_rank, "counter_id": counter_id,
            "wall_time": wall_time,
            "scheduled_requests": {
                "num_prefill_requests": n_pre, "sum_prefill_tokens": pre_tokens,
                "var_prefill_length": 1234.5 * n_pre, "sum_prefill_kv_tokens": 70_000 + pre_tokens,
                "num_decode_requests": n_dec, "sum_decode_kv_tokens": dec_kv,
                "var_decode_kv_tokens": 2.5e6 + dec_kv,
            },
            "queued_requests": {
                "num_prefill_requests": queued_prefill_tokens // 3000,
                "sum_prefill_tokens": queued_prefill_tokens, "var_prefill_length": 0.0,
                "num_decode_requests": 0, "sum_decode_kv_tokens": 0, "var_decode_kv_tokens": 0.0,
            },
        },
        use_bin_type=True,
    )


def _worker_name(worker: int) -> str:
    role = "prefill" if worker % 2 == 0 else "decode"
    return f"{role}-{worker}-6f9c2d7b84-x2k9q"


def dp_size_for(n_ranks: int) -> int:
    """8 dp ranks per worker when ``n_ranks`` allows it, else 4 (100 ranks = 25 workers x 4)."""
    for dp in (8, 4, 2, 1):
        if n_ranks % dp == 0:
            return dp
    return 1  # pragma: no cover - dp 1 divides everything


def make_engine_batch(n_ranks: int, tick: int) -> tuple[bytes, np.ndarray]:
    """One forward pass from each of ``n_ranks`` engine ranks (even workers prefill, odd decode),
    packed for ``ingest_buffer``: (buffer, n + 1 offsets).

    Iteration times follow linear models of the load (prefill: 12 ms + 25 us/token; decode:
    6 ms + 50 us/request + 40 ns/KV token) with 2% noise.
    """
    dp = dp_size_for(n_ranks)
    rng = np.random.default_rng([SEED, n_ranks, tick])
    pre_tokens = rng.integers(512, 8192, n_ranks)
    n_dec = rng.integers(16, 96, n_ranks)
    dec_kv = rng.integers(50_000, 400_000, n_ranks)
    queued = rng.integers(0, 12_000, n_ranks)
    noise = rng.normal(1.0, 0.02, n_ranks)
    out: list[bytes] = []
    for i in range(n_ranks):
        worker = i // dp
        if worker % 2 == 0:
            wall = (0.012 + 2.5e-5 * float(pre_tokens[i])) * float(noise[i])
            sched = (int(pre_tokens[i]) // 2048 + 1, int(pre_tokens[i]), 0, 0)
        else:
            wall = (0.006 + 5e-5 * float(n_dec[i]) + 4e-8 * float(dec_kv[i])) * float(noise[i])
            sched = (0, 0, int(n_dec[i]), int(dec_kv[i]))
        out.append(fpm_message(_worker_name(worker), i % dp, tick + 1, wall, sched, int(queued[i])))
    return b"".join(out), np.cumsum([0] + [len(m) for m in out], dtype=np.int64)


#: the load-tick and memory cases reuse two batches per size (``sla-planner bench`` clears it)
engine_batch = functools.lru_cache(maxsize=12)(make_engine_batch)


def split(buf: bytes, offsets: np.ndarray, n: int) -> list[bytes]:
    """The first ``n`` payloads of a packed batch, for ``ingest``."""
    return [buf[int(offsets[i]) : int(offsets[i + 1])] for i in range(n)]


def _check_tables(case: str, got: Any, want: Any, now_s: float) -> None:
    a, b = got.snapshot(now_s), want.snapshot(now_s)
    check_equal(case, "snapshot columns", sorted(a), sorted(b))
    for key in a:
        check_equal(case, f"snapshot[{key!r}]", a[key], b[key])
    check_equal(case, "counters", sorted(got.counters().items()), sorted(want.counters().items()))


# ---------------------------------------------------------------------------------------------
# FPM ingest and engine memory


def _fpm_ingest(k: Kernels, s: BenchSizes) -> Measurement:
    case = "fpm_ingest"
    ranks = 1_024  # 128 workers x 8 dp ranks publishing in turn
    parts = [make_engine_batch(ranks, t) for t in range(-(-s.fpm_messages // ranks))]
    buf = b"".join(p[0] for p in parts)
    offsets = np.concatenate([[0], np.cumsum(np.concatenate([np.diff(p[1]) for p in parts]))])
    messages = split(buf, offsets, s.fpm_messages)
    small = messages[: s.fpm_reference_messages]
    got, want = k.FpmIngestor(HISTORY_LEN, 30.0, ranks), FpmIngestorRef(HISTORY_LEN, 30.0, ranks)
    check_equal(case, "accepted", got.ingest(small, 1.0), want.ingest(small, 1.0))
    _check_tables(case, got, want, 1.0)

    def rate(cls: Any, msgs: list[bytes]) -> float:
        buf = b"".join(msgs)
        offsets = np.cumsum([0] + [len(m) for m in msgs], dtype=np.int64)
        table = cls(HISTORY_LEN, 30.0, ranks)
        table.ingest_buffer(buf, offsets, 1.0)  # steady state: every engine already known
        repeat = s.repeat if cls is not FpmIngestorRef else max(1, s.repeat // 3)
        return len(msgs) / median_seconds(lambda: table.ingest_buffer(buf, offsets, 2.0), repeat)

    return Measurement(rate(k.FpmIngestor, messages), rate(FpmIngestorRef, small))


def _filled_table(cls: Any, n_ranks: int) -> Any:
    table = cls(HISTORY_LEN, 30.0, n_ranks)
    for t in range(HISTORY_LEN):
        table.ingest_buffer(*engine_batch(n_ranks, t % 2), float(t))
    return table


def _memory_per_engine(k: Kernels, s: BenchSizes) -> Measurement:
    case = "memory_per_engine"
    n_ref = s.memory_reference_engines
    got, want = _filled_table(k.FpmIngestor, n_ref), _filled_table(FpmIngestorRef, n_ref)
    _check_tables(case, got, want, float(HISTORY_LEN))
    h_got, h_want = got.history(_worker_name(0), 0), want.history(_worker_name(0), 0)
    for key in h_want:
        check_equal(case, f"history[{key!r}]", h_got[key], h_want[key])
    check_equal(case, "history length", len(h_got["counter_id"]), HISTORY_LEN)
    table = _filled_table(k.FpmIngestor, s.memory_engines)
    return Measurement(table.memory_bytes() / len(table), want.memory_bytes() / len(want))


# ---------------------------------------------------------------------------------------------
# sliding-window regression


def _decode_samples(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode iterations over 120 s: (running requests, KV tokens) -> iteration time (ms)."""
    rng = np.random.default_rng([SEED, n])
    t = np.sort(rng.uniform(0.0, 120.0, n))
    X = np.column_stack([rng.integers(1, 256, n), rng.integers(1_000, 2_000_000, n)]).astype(np.float64)
    y = 8.0 + 0.05 * X[:, 0] + 2e-6 * X[:, 1] + rng.normal(0.0, 0.1, n)
    return t, X, y


def _check_regression(case: str, k: Kernels, data: tuple[np.ndarray, ...]) -> None:
    got, want = k.SlidingRegression(2, 120.0, 1.0), SlidingRegressionRef(2, 120.0, 1.0)
    got.add_many(*data)
    want.add_many(*data)
    a, b = got.fit(120.0), want.fit(120.0)
    if a is None or b is None:
        check_equal(case, "fit is None", a is None, b is None)
        return
    check_equal(case, "fit sample count", a[1], b[1])
    check_close(case, "fit coefficients", a[0], b[0], rtol=1e-9)


def _regression_add(k: Kernels, s: BenchSizes) -> Measurement:
    small = _decode_samples(s.regression_reference_samples)
    _check_regression("regression_add", k, small)

    def ns_per_sample(cls: Any, data: tuple[np.ndarray, ...]) -> float:
        fresh = [cls(2, 120.0, 1.0)]

        def new_regression() -> None:
            fresh[0] = cls(2, 120.0, 1.0)

        per_call = median_seconds(lambda: fresh[0].add_many(*data), s.repeat, setup=new_regression)
        return per_call / data[0].shape[0] * 1e9

    return Measurement(ns_per_sample(k.SlidingRegression, _decode_samples(s.regression_samples)),
                       ns_per_sample(SlidingRegressionRef, small))


def _regression_fit(k: Kernels, s: BenchSizes) -> Measurement:
    data = _decode_samples(s.regression_reference_samples)
    _check_regression("regression_fit", k, data)

    def us_per_fit(cls: Any, number: int) -> float:
        r = cls(2, 120.0, 1.0)
        r.add_many(*data)
        return median_seconds(lambda: r.fit(120.0), s.repeat, number) * 1e6

    return Measurement(us_per_fit(k.SlidingRegression, s.scalar_calls), us_per_fit(SlidingRegressionRef, 50))


# ---------------------------------------------------------------------------------------------
# Kalman bank

Q_LEVEL, Q_TREND, R = 0.1, 0.01, 1.0


def _kalman_bank(k: Kernels, s: BenchSizes) -> Measurement:
    n = s.kalman_series
    rng = np.random.default_rng([SEED, n])
    base = rng.uniform(1.0, 500.0, n)
    steps = np.array([base * (1 + 0.02 * t) + rng.normal(0.0, 5.0, n) for t in range(8)])
    steps[rng.random(steps.shape) < 0.01] = np.nan  # 1% missing observations
    got, want = k.KalmanBank(n, Q_LEVEL, Q_TREND, R, False), KalmanBankRef(n, Q_LEVEL, Q_TREND, R, False)
    for values in steps:
        got.update(values)
        want.update(values)
    check_equal("kalman_bank", "predict()", got.predict(), want.predict())
    step = steps[-1]
    return Measurement(median_seconds(lambda: got.update(step), s.repeat, 20) / n * 1e9,
                       median_seconds(lambda: want.update(step), s.repeat, 5) / n * 1e9)


def _kalman_single(k: Kernels, s: BenchSizes) -> Measurement:
    def step_of(bank: Any) -> Callable[[], float]:
        def step() -> float:
            bank.update_one(0, 42.0)
            return float(bank.predict_one(0))

        return step

    got = step_of(k.KalmanBank(1, Q_LEVEL, Q_TREND, R, False))
    want = step_of(KalmanBankRef(1, Q_LEVEL, Q_TREND, R, False))
    for _ in range(3):
        check_equal("kalman_single", "predict_one(0)", got(), want())
    return Measurement(median_seconds(got, s.repeat, s.scalar_calls) * 1e6,
                       median_seconds(want, s.repeat, max(1, s.scalar_calls // 10)) * 1e6)


# ---------------------------------------------------------------------------------------------
# interpolation on a decode profile grid (100 KV-usage points x 50 context lengths)


@functools.lru_cache(maxsize=1)
def _decode_grid() -> tuple[np.ndarray, np.ndarray, float, float, float, float]:
    kv = np.linspace(0.0, 1.0, 100)
    ctx = np.linspace(0.0, 8000.0, 50)
    x, y = np.meshgrid(kv, ctx, indexing="ij")
    itl_ms = 8.0 + 25.0 * x**1.5 + y / 1000.0
    thpt = 2000.0 * x * (1.0 - 0.3 * y / 8000.0) + 50.0
    return itl_ms, thpt, 0.0, float(kv[1] - kv[0]), 0.0, float(ctx[1] - ctx[0])


def _interp_2d_batched(k: Kernels, s: BenchSizes) -> Measurement:
    z, _, x0, dx, y0, dy = _decode_grid()
    rng = np.random.default_rng([SEED, s.interp_queries])
    qx, qy = rng.uniform(0.0, 1.0, s.interp_queries), rng.uniform(0.0, 8000.0, s.interp_queries)
    check_equal("interp_2d_batched", "grid2d_eval", k.grid2d_eval(z, x0, dx, y0, dy, qx, qy),
                interp_ref.grid2d_eval(z, x0, dx, y0, dy, qx, qy))
    per = 1e9 / s.interp_queries
    return Measurement(median_seconds(lambda: k.grid2d_eval(z, x0, dx, y0, dy, qx, qy), s.repeat) * per,
                       median_seconds(lambda: interp_ref.grid2d_eval(z, x0, dx, y0, dy, qx, qy), s.repeat) * per)


def _interp_2d_single(k: Kernels, s: BenchSizes) -> Measurement:
    z, _, x0, dx, y0, dy = _decode_grid()
    args = (z, x0, dx, y0, dy, 0.4321, 3210.5)
    check_equal("interp_2d_single", "grid2d_eval_scalar", k.grid2d_eval_scalar(*args),
                interp_ref.grid2d_eval_scalar(*args))
    return Measurement(median_seconds(lambda: k.grid2d_eval_scalar(*args), s.repeat, s.scalar_calls) * 1e6,
                       median_seconds(lambda: interp_ref.grid2d_eval_scalar(*args), s.repeat,
                                    max(1, s.scalar_calls // 10)) * 1e6)


def _best_throughput(k: Kernels, s: BenchSizes) -> Measurement:
    """The planner's path: a DecodeGridSearch built once per profile, queried per decision."""
    itl, thpt, _, _, y0, dy = _decode_grid()
    args = (itl, thpt, y0, dy, 3210.5, 25.0)  # reachable ITL target: the common case
    search, ref = k.DecodeGridSearch(itl, thpt, y0, dy), interp_ref.DecodeGridSearch(itl, thpt, y0, dy)
    check_equal("best_throughput", "best_under_target", list(k.best_under_target(*args)),
                list(interp_ref.best_under_target(*args)))
    check_equal("best_throughput", "DecodeGridSearch.best", list(search.best(3210.5, 25.0)),
                list(ref.best(3210.5, 25.0)))
    return Measurement(median_seconds(lambda: search.best(3210.5, 25.0), s.repeat, s.scalar_calls) * 1e9,
                       median_seconds(lambda: ref.best(3210.5, 25.0), s.repeat,
                                    max(1, s.scalar_calls // 10)) * 1e9)


# ---------------------------------------------------------------------------------------------
# one full load tick: snapshot, engine view, regression feed + fit, estimates, decision

LOAD_INTERVAL_S = 10.0
LOAD_T0_S = 1000.0
LOAD_SETTINGS = LoadSettings(
    optimization_target="sla", mode="disagg", ttft_ms=2000.0, itl_ms=30.0, isl=3000.0, osl=150.0,
    min_endpoint=1, max_gpu_budget=10_000_000, prefill_engine_num_gpu=1, decode_engine_num_gpu=1,
    sensitivity=0.8, patience=3, learning_window_s=120.0, min_observations=5,
)
LOAD_CAPS = EngineCapabilities(max_num_batched_tokens=8192, context_length=131072, max_kv_tokens=2_000_000)
_FULL_TICK_REASONS = {DecisionReason.SCALE_UP, DecisionReason.SCALE_DOWN, DecisionReason.NO_CHANGE,
                      DecisionReason.SCALE_DOWN_REFUSED_CONSOLIDATION}


class LoadRig:
    """An engine table and load state as the live adapter keeps them, fed one batch per tick."""

    def __init__(self, n_ranks: int, ingestor_cls: Any, regression_cls: Any) -> None:
        self.n_ranks = n_ranks
        self.table = ingestor_cls(HISTORY_LEN, 30.0, n_ranks)
        window = LOAD_SETTINGS.learning_window_s
        bucket = max(window / 24.0, 1.0)  # what core.load builds for a new pool
        self.state = LoadState(regressions={
            Pool.PREFILL: regression_cls(1, window, bucket, LOAD_SETTINGS.min_observations),
            Pool.DECODE: regression_cls(2, window, bucket, LOAD_SETTINGS.min_observations),
        })
        self.ticks = 0
        self.feed()
        # the adapter learns each worker's role once (from discovery; here from the name)
        snap = self.table.snapshot(self.now_s)
        role_of_worker = np.full(int(snap["worker_index"].max()) + 1, -1, dtype=np.int8)
        role_of_worker[snap["worker_index"]] = np.where(
            np.char.startswith(snap["worker_id"].astype(str), "prefill-"), 0, 1)
        self.role_of_worker = role_of_worker
        workers = role_of_worker.shape[0]
        self.current = {Pool.PREFILL: (workers + 1) // 2, Pool.DECODE: workers // 2}

    @property
    def now_s(self) -> float:
        """The current tick's time (seconds)."""
        return LOAD_T0_S + LOAD_INTERVAL_S * self.ticks

    def feed(self) -> None:
        """The forward passes of one interval arrive (untimed: ingest is its own case)."""
        self.ticks += 1
        self.table.ingest_buffer(*engine_batch(self.n_ranks, self.ticks % 2), self.now_s)

    def tick(self) -> dict[Pool, Any]:
        """One load tick: snapshot (no id strings), engine view, load_step."""
        now = self.now_s
        snap = self.table.snapshot(now, with_ids=False, columns=ENGINE_VIEW_COLUMNS)
        view = engine_view_from_snapshot(snap, self.role_of_worker[snap["worker_index"]])
        view = dataclasses.replace(view, table_feed=table_feed(self.table, now, self.role_of_worker))
        return load_step(self.state, view, self.current, False, now, LOAD_SETTINGS, LOAD_CAPS)


def warm_load_rig(rig: LoadRig, ticks: int = 4) -> dict[Pool, Any]:
    """Run ``ticks`` ticks (the regressions fill up); returns the last decisions."""
    out = rig.tick()
    for _ in range(ticks - 1):
        rig.feed()
        out = rig.tick()
    return out


def check_load_decisions(case: str, got: dict[Pool, Any], want: dict[Pool, Any] | None) -> None:
    """Every pool reached a decision, and (with ``want``) the same one with the same numbers."""
    for pool, r in got.items():
        if r.reason not in _FULL_TICK_REASONS:
            raise RuntimeError(f"{case}: {pool.value} stopped at {r.reason.value}; the bench input is wrong")
        if want is None:
            continue
        w = want[pool]
        check_equal(case, f"{pool.value} decision", [r.target, r.reason.value], [w.target, w.reason.value])
        check_close(case, f"{pool.value} coefficients", r.detail["coefficients"], w.detail["coefficients"], 1e-6)
        check_close(case, f"{pool.value} estimate_max", r.detail["estimate_max"], w.detail["estimate_max"], 1e-6)


def _load_tick(n_ranks: int) -> Callable[[Kernels, BenchSizes], Measurement]:
    def run(k: Kernels, s: BenchSizes) -> Measurement:
        case = f"load_tick_{n_ranks}"
        rig = LoadRig(n_ranks, k.FpmIngestor, k.SlidingRegression)
        with_ref = n_ranks in s.load_tick_reference_ranks
        ref = LoadRig(n_ranks, FpmIngestorRef, SlidingRegressionRef) if with_ref else None
        check_load_decisions(case, warm_load_rig(rig), None if ref is None else warm_load_rig(ref))
        value = median_seconds(rig.tick, s.repeat, setup=rig.feed) * 1e3
        ref_value = None if ref is None else median_seconds(ref.tick, max(1, s.repeat // 2), setup=ref.feed) * 1e3
        return Measurement(value, ref_value)

    return run


def load_tick_case(n_ranks: int) -> BenchCase:
    """``load_tick_<n>``: one disaggregated SLA load tick over ``n`` engine ranks (ms)."""
    dp = dp_size_for(n_ranks)
    return BenchCase(f"load_tick_{n_ranks}", "ms", False, 5.0 if n_ranks == 80_000 else None, _load_tick(n_ranks),
                     f"snapshot + engine view + load_step, {n_ranks // dp:,} workers x {dp} dp ranks")


# ---------------------------------------------------------------------------------------------
# cases

CASES: tuple[BenchCase, ...] = (
    BenchCase("fpm_ingest", "msg/s", True, 5e6, _fpm_ingest,
              "FPM decode + engine table, ingest_buffer of ~440-byte messages from 1,024 engine ranks"),
    *(load_tick_case(n) for n in (100, 1_000, 10_000, 80_000, 100_000)),
    BenchCase("memory_per_engine", "bytes", False, None, _memory_per_engine,
              "memory_bytes() / engine rank with a full history (history_len 10)"),
    BenchCase("regression_add", "ns/sample", False, 50.0, _regression_add, "add_many, 2 features"),
    BenchCase("regression_fit", "us", False, 2.0, _regression_fit, "one fit over a 120-bucket window"),
    BenchCase("kalman_bank", "ns/series", False, 5.0, _kalman_bank, "one update of N = 10,000 series"),
    BenchCase("kalman_single", "us", False, 1.0, _kalman_single, "update_one + predict_one via Python"),
    BenchCase("interp_2d_batched", "ns/query", False, 10.0, _interp_2d_batched, "bilinear, 100 x 50 grid"),
    BenchCase("interp_2d_single", "us", False, 1.0, _interp_2d_single, "one query via Python"),
    BenchCase("best_throughput", "ns", False, 200.0, _best_throughput, "best throughput under the ITL target"),
    *IO_CASES,
)
