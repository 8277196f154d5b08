"""A simulated cluster of prefill / decode / aggregated engines on a simulated clock.

:class:`SimCluster` owns the numba state arrays of :mod:`._kernel`, adds and removes engines the
way a real deployment does (a new engine serves only after its start-up delay; a removed one first
drains: it gets no new requests, finishes what it holds and then leaves, or at its deadline fails
what is left), advances time, and hands out what engines and the frontend emit:
FPM records and finished-request records. GPU time is integrated from every engine that holds GPUs,
starting or ready.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .. import kernels
from ..errors import ConfigError, SimulationError
from ..types import Pool
from . import _kernel as K

__all__ = ["SimSettings", "SimPerf", "SimCluster", "ScaleEvent", "warm_up"]

F64 = npt.NDArray[np.float64]

_POOL_CODE = {Pool.PREFILL: K.POOL_PREFILL, Pool.DECODE: K.POOL_DECODE, Pool.AGG: K.POOL_AGG}


@dataclass(frozen=True)
class SimSettings:
    """Engine and cluster behaviour of the simulator."""

    mode: str = "disagg"
    max_num_batched_tokens: int = 8192
    max_num_seqs: int = 256
    startup_delay_s: float = 120.0
    startup_delay_max_s: float | None = None
    """When set, each new engine's delay is drawn uniformly from [startup_delay_s, this] (seeded)."""
    transfer_s: float = 0.0
    drain_timeout_s: float = 600.0
    """A removed engine finishes its requests for at most this long (0: removal fails them)."""
    time_scale: float = 1.0
    """Multiplies every simulated engine time: 1.2 = engines 20% slower than their profile."""
    prefill_engine_num_gpu: int = 1
    decode_engine_num_gpu: int = 1
    heartbeat_s: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "mode": self.mode in ("disagg", "agg"),
            "max_num_batched_tokens": self.max_num_batched_tokens >= 1,
            "max_num_seqs": self.max_num_seqs >= 1,
            "startup_delay_s": math.isfinite(self.startup_delay_s) and self.startup_delay_s >= 0,
            "startup_delay_max_s": self.startup_delay_max_s is None
            or (math.isfinite(self.startup_delay_max_s) and self.startup_delay_max_s >= self.startup_delay_s),
            "transfer_s": math.isfinite(self.transfer_s) and self.transfer_s >= 0,
            "drain_timeout_s": math.isfinite(self.drain_timeout_s) and self.drain_timeout_s >= 0,
            "time_scale": math.isfinite(self.time_scale) and self.time_scale > 0,
            "prefill_engine_num_gpu": self.prefill_engine_num_gpu >= 1,
            "decode_engine_num_gpu": self.decode_engine_num_gpu >= 1,
            "heartbeat_s": math.isfinite(self.heartbeat_s) and self.heartbeat_s > 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            rules = {
                "mode": "'disagg' or 'agg'",
                "startup_delay_max_s": "finite and >= startup_delay_s",
                "transfer_s": "finite and >= 0",
                "drain_timeout_s": "finite and >= 0",
                "startup_delay_s": "finite and >= 0",
            }

            def rule(name: str) -> str:
                default = "finite and > 0" if isinstance(getattr(self, name), float) else ">= 1"
                return rules.get(name, default)

            detail = "; ".join(f"{name}={getattr(self, name)!r} must be {rule(name)}" for name in bad)
            raise ConfigError(f"invalid simulator settings: {detail}")

    def pools(self) -> tuple[Pool, ...]:
        """Pools of this mode."""
        return (Pool.PREFILL, Pool.DECODE) if self.mode == "disagg" else (Pool.AGG,)

    def engine_num_gpu(self, pool: Pool) -> int:
        """GPUs per engine of a pool (an aggregated engine counts as a decode engine)."""
        return self.prefill_engine_num_gpu if pool is Pool.PREFILL else self.decode_engine_num_gpu


@dataclass(frozen=True)
class SimPerf:
    """The arrays the jitted loop reads: prefill throughput curve and decode ITL grid.

    The decode grid's context axis is uniform in the natural log of the context (tokens):
    column ``j`` is at ``exp(log_ctx_min + j * log_ctx_step)``.
    """

    prefill_isl: F64
    prefill_thpt_per_gpu: F64
    prefill_slopes: F64
    decode_itl_grid_ms: F64
    kv_min: float
    kv_step: float
    log_ctx_min: float
    log_ctx_step: float
    max_kv_tokens: int

    @classmethod
    def from_models(cls, prefill: object, decode: object) -> SimPerf:
        """From a PrefillModel and DecodeModel (sla_planner.perf): the very knots and grid the
        models evaluate, extrapolated past the profile, so engines follow the planner's truth."""
        kv = decode.kv_usage_grid  # type: ignore[attr-defined]
        return cls(
            prefill_isl=np.ascontiguousarray(prefill.knot_isl, dtype=np.float64),  # type: ignore[attr-defined]
            prefill_thpt_per_gpu=np.ascontiguousarray(prefill.knot_thpt_per_gpu, dtype=np.float64),  # type: ignore[attr-defined]
            prefill_slopes=np.ascontiguousarray(prefill.knot_thpt_slopes, dtype=np.float64),  # type: ignore[attr-defined]
            decode_itl_grid_ms=np.ascontiguousarray(decode.itl_grid_ms, dtype=np.float64),  # type: ignore[attr-defined]
            kv_min=float(kv[0]),
            kv_step=float(kv[1] - kv[0]) if len(kv) > 1 else 1.0,
            log_ctx_min=float(decode.log_context_min),  # type: ignore[attr-defined]
            log_ctx_step=float(decode.log_context_step),  # type: ignore[attr-defined]
            max_kv_tokens=int(decode.max_kv_tokens),  # type: ignore[attr-defined]
        )


@dataclass(frozen=True)
class ScaleEvent:
    """One engine added, set draining, or removed."""

    at_s: float
    pool: Pool
    action: str  # "add" | "drain" | "remove"
    worker_id: str
    ready_at_s: float | None = None
    failed_requests: int = 0
    after_drain: bool = False
    """A removal that ends a drain (the decision to remove was its "drain" event)."""

    @property
    def decided(self) -> bool:
        """An event a scaling decision made (adds, drains, immediate removals)."""
        return not self.after_drain


class SimCluster:
    """Engines, their queues and the clock; see the module docstring."""

    def __init__(
        self,
        perf: SimPerf,
        settings: SimSettings,
        initial: dict[Pool, int],
        *,
        engine_capacity: int = 64,
        request_capacity: int = 1 << 14,
        fpm_capacity: int = 1 << 16,
    ) -> None:
        self.perf = perf
        self.settings = settings
        self._rng = np.random.default_rng(settings.seed)
        self.now_s = 0.0
        self.gpu_seconds = 0.0
        self._next_worker = 0
        self._worker_ids: list[str] = []
        self._alloc_engines(engine_capacity)
        self._alloc_requests(request_capacity)
        self.fpm = np.zeros((fpm_capacity + engine_capacity + 2, K.N_F))
        self.g = np.zeros(K.N_G, dtype=np.int64)
        self.g[K.G_FQ_HEAD] = self.g[K.G_FQ_TAIL] = -1
        self.g[K.G_DIRTY_HEAD] = -1
        self._link_free_list(0)
        self.params = np.zeros(K.N_P)
        self.params[K.P_TIME_SCALE] = settings.time_scale
        self.params[K.P_PREFILL_GPUS] = (
            settings.prefill_engine_num_gpu if settings.mode == "disagg" else settings.decode_engine_num_gpu
        )
        self.params[K.P_MAX_BATCHED] = settings.max_num_batched_tokens
        self.params[K.P_MAX_SEQS] = settings.max_num_seqs
        self.params[K.P_MAX_KV] = perf.max_kv_tokens
        self.params[K.P_KV_MIN] = perf.kv_min
        self.params[K.P_KV_STEP] = perf.kv_step
        self.params[K.P_CTX_MIN] = perf.log_ctx_min
        self.params[K.P_CTX_STEP] = perf.log_ctx_step
        self.params[K.P_TRANSFER_S] = settings.transfer_s
        self.params[K.P_HEARTBEAT_S] = settings.heartbeat_s
        self.params[K.P_AGG] = 1.0 if settings.mode == "agg" else 0.0
        self.n_engines = 0
        self._ready_now = False
        self._freed_now: set[int] = set()
        self.scale_events: list[ScaleEvent] = []
        unknown = [p for p in initial if p not in settings.pools()]
        if unknown:
            raise SimulationError(
                f"initial replicas for {[p.value for p in unknown]}: mode {settings.mode} has pools "
                f"{[p.value for p in settings.pools()]}"
            )
        for pool in settings.pools():
            count = int(initial.get(pool, 0))
            if count < 0:
                raise SimulationError(f"initial replicas for {pool.value} must be >= 0, got {count}")
            for _ in range(count):
                self._add_engine(pool, ready_at=0.0, initial=True)
        self._finished = False

    # ------------------------------------------------------------------ allocation
    def _alloc_engines(self, cap: int) -> None:
        self.ef = np.zeros((cap, K.N_EF))
        self.ei = np.full((cap, K.N_EI), -1, dtype=np.int64)
        self.ei[:, [K.EI_ALIVE, K.EI_READY, K.EI_BUSY, K.EI_VERSION, K.EI_Q_COUNT, K.EI_RUN_COUNT,
                    K.EI_WAIT_COUNT, K.EI_ITERS, K.EI_DIRTY, K.EI_POOL, K.EI_DRAINING,
                    K.EI_DRAIN_FAILED]] = 0
        heap_cap = 8 * cap + 4096
        self.ht = np.zeros(heap_cap)
        self.he = np.zeros(heap_cap, dtype=np.int64)
        self.hk = np.zeros(heap_cap, dtype=np.int64)
        self.hv = np.zeros(heap_cap, dtype=np.int64)

    def _grow_engines(self) -> None:
        old_ef, old_ei = self.ef, self.ei
        old_heap = (self.ht, self.he, self.hk, self.hv)
        cap = old_ef.shape[0] * 2
        self._alloc_engines(cap)
        self.ef[: old_ef.shape[0]] = old_ef
        self.ei[: old_ei.shape[0]] = old_ei
        n = int(self.g[K.G_HEAP_N])
        for new, old in zip((self.ht, self.he, self.hk, self.hv), old_heap):
            new[:n] = old[:n]
        fpm = np.zeros((self.fpm.shape[0] + cap, K.N_F))
        fpm[: self.fpm.shape[0]] = self.fpm
        self.fpm = fpm

    def _alloc_requests(self, cap: int) -> None:
        self.rf = np.zeros((cap, K.N_RF))
        self.ri = np.zeros((cap, K.N_RI), dtype=np.int64)
        self.tr_t = np.zeros(cap + 1)
        self.tr_r = np.zeros(cap + 1, dtype=np.int64)
        self.done = np.zeros((4 * cap + 1024, K.N_D))

    def _link_free_list(self, start: int) -> None:
        cap = self.ri.shape[0]
        idx = np.arange(start, cap)
        self.ri[start:, K.RI_NEXT] = idx + 1
        self.ri[cap - 1, K.RI_NEXT] = self.g[K.G_FREE_HEAD] if start > 0 else -1
        self.ri[start:, K.RI_STATE] = K.RS_FREE
        self.g[K.G_FREE_HEAD] = start

    def _grow_requests(self) -> None:
        """Double the request table (the transfer ring is re-laid in order)."""
        old_rf, old_ri = self.rf, self.ri
        old_tr_t, old_tr_r = self.tr_t, self.tr_r
        head, tail = int(self.g[K.G_TR_HEAD]), int(self.g[K.G_TR_TAIL])
        pending = []
        while head != tail:
            pending.append((old_tr_t[head], old_tr_r[head]))
            head = (head + 1) % old_tr_t.shape[0]
        old_done, n_done = self.done, int(self.g[K.G_DONE_N])
        cap = old_rf.shape[0]
        self._alloc_requests(cap * 2)
        self.rf[:cap] = old_rf
        self.ri[:cap] = old_ri
        self.done[:n_done] = old_done[:n_done]
        for i, (t, r) in enumerate(pending):
            self.tr_t[i], self.tr_r[i] = t, r
        self.g[K.G_TR_HEAD], self.g[K.G_TR_TAIL] = 0, len(pending)
        # append the new slots to the free list
        free_head = int(self.g[K.G_FREE_HEAD])
        new_cap = self.ri.shape[0]
        self.ri[cap:, K.RI_NEXT] = np.arange(cap + 1, new_cap + 1)
        self.ri[new_cap - 1, K.RI_NEXT] = free_head
        self.ri[cap:, K.RI_STATE] = K.RS_FREE
        self.g[K.G_FREE_HEAD] = cap

    # ---------------------------------------------------------------------- engines
    def _startup_delay(self) -> float:
        s = self.settings
        if s.startup_delay_max_s is None or s.startup_delay_max_s == s.startup_delay_s:
            return s.startup_delay_s
        return float(self._rng.uniform(s.startup_delay_s, s.startup_delay_max_s))

    def _free_slot(self) -> int:
        """Lowest dead slot not freed by the current set_targets call, else a new one."""
        for e in range(self.n_engines):
            if (
                self.ei[e, K.EI_ALIVE] == 0
                and self.ei[e, K.EI_DRAINING] != K.DRAIN_RETIRED
                and e not in self._freed_now
            ):
                return e
        if self.n_engines == self.ef.shape[0]:
            self._grow_engines()
        self.n_engines += 1
        self._worker_ids.append("")
        return self.n_engines - 1

    def _add_engine(self, pool: Pool, ready_at: float, initial: bool = False) -> ScaleEvent:
        e = self._free_slot()
        version = int(self.ei[e, K.EI_VERSION]) + 1
        self.ef[e] = 0.0
        self.ei[e] = -1
        self.ei[e, [K.EI_READY, K.EI_BUSY, K.EI_Q_COUNT, K.EI_RUN_COUNT, K.EI_WAIT_COUNT,
                    K.EI_ITERS, K.EI_DIRTY, K.EI_DRAINING, K.EI_DRAIN_FAILED]] = 0
        self.ei[e, K.EI_ALIVE] = 1
        self.ei[e, K.EI_VERSION] = version
        self.ei[e, K.EI_POOL] = _POOL_CODE[pool]
        self.ef[e, K.EF_READY_AT] = ready_at
        self.ef[e, K.EF_ADDED_AT] = self.now_s
        self.ef[e, K.EF_LAST_FPM] = ready_at
        worker_id = f"{pool.value}-{self._next_worker}"
        self._next_worker += 1
        self._worker_ids[e] = worker_id
        if ready_at <= self.now_s:
            self.ei[e, K.EI_READY] = 1
            if not initial:
                self._ready_now = True
        else:
            self._push_ready(e, ready_at, version)
        return ScaleEvent(self.now_s, pool, "add", worker_id, ready_at)

    def _push_ready(self, e: int, at: float, version: int) -> None:
        if self.g[K.G_HEAP_N] + 2 >= self.ht.shape[0]:
            K.compact_heap(self.ht, self.he, self.hk, self.hv, self.g, self.ei)
        K._heap_push(self.ht, self.he, self.hk, self.hv, self.g, at, e, K.EV_READY, version)

    def _remove_engine(self, e: int) -> ScaleEvent:
        pool = _pool_of(int(self.ei[e, K.EI_POOL]))
        self._ensure_done_room(self.ri.shape[0])
        before = int(self.g[K.G_DONE_N])
        K.remove_engine(self.ef, self.ei, self.rf, self.ri, self.g, self.done, e, self.now_s)
        failed = int(self.g[K.G_DONE_N]) - before
        return ScaleEvent(self.now_s, pool, "remove", self._worker_ids[e], None, failed)

    def set_targets(
        self, targets: dict[Pool, int], drain: dict[Pool, tuple[str, ...]] | None = None
    ) -> list[ScaleEvent]:
        """Add or remove engines so each pool has its target (starting engines count).

        Removal order: engines still starting (newest first; they hold nothing and go at once),
        then the workers named in ``drain`` in their order, then the ready engines holding the
        least work (newest first on ties). A ready engine drains (see the module docstring), or
        with ``drain_timeout_s == 0`` is removed at once, failing what it holds. Pools are
        handled in the order given; a slot freed in this call is not reused in it (so a failed
        request's record still names the engine that held it).
        """
        events: list[ScaleEvent] = []
        self._freed_now = set()
        draining = False
        for pool, target in targets.items():
            if pool not in self.settings.pools():
                raise SimulationError(f"pool {pool.value} does not exist in mode {self.settings.mode}")
            if target < 0:
                raise SimulationError(f"target for {pool.value} must be >= 0, got {target}")
            alive = self._alive(pool)
            if target > len(alive):
                for _ in range(target - len(alive)):
                    events.append(self._add_engine(pool, self.now_s + self._startup_delay()))
            elif target < len(alive):
                for e in self._removal_order(alive, (drain or {}).get(pool, ()))[: len(alive) - target]:
                    if self.ei[e, K.EI_READY] == 0 or self.settings.drain_timeout_s <= 0.0:
                        events.append(self._remove_engine(e))
                        self._freed_now.add(e)
                    else:
                        events.append(self._start_drain(e))
                        draining = True
        if self._ready_now or draining:
            # engines ready at once take the frontend queue now, as a readiness event would;
            # draining engines that hold nothing leave now
            self._ready_now = False
            self._ensure_done_room(self.ri.shape[0])
            K._drain_frontend(
                self.ef, self.ei, self.rf, self.ri, self.g, self.done, self.n_engines, self.params,
                self.params[K.P_AGG] > 0.0, self.now_s,
            )
            if self.g[K.G_FPM_N] + self.n_engines + 2 >= self.fpm.shape[0]:
                # no sink here: make room for this call's rows instead
                self.fpm = np.concatenate([self.fpm, np.zeros((self.n_engines + 2, K.N_F))])
            K._kick(
                self.ef, self.ei, self.rf, self.ri, self.g, self.params, self.perf.decode_itl_grid_ms,
                self.fpm, self.ht, self.he, self.hk, self.hv, self.n_engines, self.now_s,
            )
        self.scale_events.extend(events)
        return events + self.take_retired()

    def _removal_order(self, alive: list[int], named: tuple[str, ...]) -> list[int]:
        rank = {w: i for i, w in enumerate(named)}

        def key(e: int) -> tuple[float, ...]:
            starting = int(self.ei[e, K.EI_READY]) == 0
            chosen = rank.get(self._worker_ids[e], len(rank))
            return (
                0 if starting else 1,
                float(chosen),
                self._work(e),
                -float(self.ef[e, K.EF_ADDED_AT]),
                -float(e),
            )

        return sorted(alive, key=key)

    def _work(self, e: int) -> float:
        """Tokens an engine holds: queued prompt tokens and reserved KV."""
        return float(self.ef[e, K.EF_Q_TOKENS] + self.ef[e, K.EF_RESERVED] + self.ef[e, K.EF_WAIT_RES])

    def _start_drain(self, e: int) -> ScaleEvent:
        pool = _pool_of(int(self.ei[e, K.EI_POOL]))
        deadline = self.now_s + self.settings.drain_timeout_s
        self.ei[e, K.EI_DRAINING] = K.DRAIN_ACTIVE
        self.ef[e, K.EF_DRAIN_AT] = deadline
        if self.g[K.G_HEAP_N] + 2 >= self.ht.shape[0]:
            K.compact_heap(self.ht, self.he, self.hk, self.hv, self.g, self.ei)
        K._heap_push(
            self.ht, self.he, self.hk, self.hv, self.g, deadline, e, K.EV_DRAIN_DEADLINE,
            int(self.ei[e, K.EI_VERSION]),
        )
        K._mark(self.ei, self.g, e)
        return ScaleEvent(self.now_s, pool, "drain", self._worker_ids[e])

    def take_retired(self) -> list[ScaleEvent]:
        """Removals that ended drains since the last call (also added to ``scale_events``)."""
        out: list[ScaleEvent] = []
        for e in range(self.n_engines):
            if self.ei[e, K.EI_DRAINING] == K.DRAIN_RETIRED:
                out.append(
                    ScaleEvent(
                        float(self.ef[e, K.EF_DRAIN_AT]),
                        _pool_of(int(self.ei[e, K.EI_POOL])),
                        "remove",
                        self._worker_ids[e],
                        None,
                        int(self.ei[e, K.EI_DRAIN_FAILED]),
                        after_drain=True,
                    )
                )
                self.ei[e, K.EI_DRAINING] = K.DRAIN_NONE
                self.ei[e, K.EI_DRAIN_FAILED] = 0
        out.sort(key=lambda ev: (ev.at_s, ev.worker_id))
        self.scale_events.extend(out)
        return out

    def draining_workers(self) -> set[str]:
        """Worker ids of engines draining now."""
        return {
            self._worker_ids[e]
            for e in range(self.n_engines)
            if self.ei[e, K.EI_ALIVE] == 1 and self.ei[e, K.EI_DRAINING] == K.DRAIN_ACTIVE
        }

    def _alive(self, pool: Pool) -> list[int]:
        """Engines of ``pool`` the deployment counts: starting or serving, not draining."""
        code = _POOL_CODE[pool]
        return [
            e for e in range(self.n_engines)
            if self.ei[e, K.EI_ALIVE] == 1
            and self.ei[e, K.EI_POOL] == code
            and self.ei[e, K.EI_DRAINING] == K.DRAIN_NONE
        ]

    def _holding(self, pool: Pool) -> int:
        """Engines of ``pool`` holding GPUs: starting, serving or draining."""
        code = _POOL_CODE[pool]
        n = self.n_engines
        return int(((self.ei[:n, K.EI_ALIVE] == 1) & (self.ei[:n, K.EI_POOL] == code)).sum())

    def counts(self) -> dict[Pool, int]:
        """Engines per pool, starting ones included (what the deployment asked for)."""
        return {p: len(self._alive(p)) for p in self.settings.pools()}

    def ready_counts(self) -> dict[Pool, int]:
        """Engines per pool that are serving."""
        return {
            p: sum(1 for e in self._alive(p) if self.ei[e, K.EI_READY] == 1)
            for p in self.settings.pools()
        }

    def scaling_in_progress(self, pool: Pool | None = None) -> bool:
        """True while any engine (of ``pool``, when given) is still starting."""
        code = None if pool is None else _POOL_CODE[pool]
        return any(
            self.ei[e, K.EI_ALIVE] == 1
            and self.ei[e, K.EI_READY] == 0
            and self.ei[e, K.EI_DRAINING] == K.DRAIN_NONE
            and (code is None or self.ei[e, K.EI_POOL] == code)
            for e in range(self.n_engines)
        )

    def gpus_in_use(self) -> int:
        """GPUs held by engines (starting, ready or draining)."""
        return sum(
            self.settings.engine_num_gpu(p) * self._holding(p) for p in self.settings.pools()
        )

    def worker_id(self, e: int) -> str:
        """The worker id of engine slot e (current occupant)."""
        return self._worker_ids[e]

    def engine_pool(self, e: int) -> Pool:
        """Pool of engine slot e."""
        return _pool_of(int(self.ei[e, K.EI_POOL]))

    def queued_prefill_tokens(self) -> float:
        """Prompt tokens queued (not yet computed) at ready prefill and aggregated engines."""
        n = self.n_engines
        mask = (self.ei[:n, K.EI_ALIVE] == 1) & (self.ei[:n, K.EI_POOL] != K.POOL_DECODE)
        return float(self.ef[:n, K.EF_Q_TOKENS][mask].sum())

    @property
    def in_flight(self) -> int:
        """Requests admitted and not finished."""
        return int(self.g[K.G_IN_FLIGHT])

    @property
    def frontend_waiting(self) -> int:
        """Requests waiting at the frontend for any ready engine."""
        return int(self.g[K.G_FQ_COUNT])

    # ------------------------------------------------------------------------ time
    def _ensure_done_room(self, rows: int) -> None:
        if self.done.shape[0] - int(self.g[K.G_DONE_N]) < rows + 2:
            raise SimulationError("finished-request buffer full: drain_done() before advancing")

    def advance(
        self,
        t_end: float,
        arr_t: F64,
        arr_isl: npt.NDArray[np.int64],
        arr_osl: npt.NDArray[np.int64],
        arr_idx: npt.NDArray[np.int64],
        sink: Callable[[], None],
    ) -> None:
        """Play events up to ``t_end`` with these arrivals (sorted, in (now, t_end]).

        ``sink`` is called whenever output buffers fill; it must drain FPM and finished requests.
        """
        if self._finished:
            raise SimulationError("SimCluster.advance after finish(): the replay is over")
        if not math.isfinite(t_end) or t_end < self.now_s:
            raise SimulationError(f"cannot advance to {t_end}: now is {self.now_s}")
        n = arr_t.shape[0]
        if not (arr_isl.shape[0] == arr_osl.shape[0] == arr_idx.shape[0] == n):
            raise SimulationError("arrival arrays arr_t, arr_isl, arr_osl, arr_idx must have one length")
        if n and (arr_t[0] < self.now_s or arr_t[-1] > t_end or np.any(np.diff(arr_t) < 0)):
            raise SimulationError(
                f"arr_t must be sorted within [{self.now_s}, {t_end}], got {arr_t[0]}..{arr_t[-1]}"
            )
        if n and (arr_isl.min() < 0 or arr_osl.min() < 0):
            raise SimulationError("arr_isl and arr_osl must be >= 0")
        self.g[K.G_ARR_CURSOR] = 0
        gpus = self.gpus_in_use()
        start = self.now_s
        while True:
            if self.g[K.G_HEAP_N] + 2 * self.n_engines + 8 >= self.ht.shape[0]:
                K.compact_heap(self.ht, self.he, self.hk, self.hv, self.g, self.ei)
            code, t = K.advance(
                self.ef, self.ei, self.rf, self.ri, self.g, self.params,
                self.perf.prefill_isl, self.perf.prefill_thpt_per_gpu, self.perf.prefill_slopes,
                self.perf.decode_itl_grid_ms,
                self.ht, self.he, self.hk, self.hv, self.tr_t, self.tr_r, self.fpm, self.done,
                arr_t, arr_isl, arr_osl, arr_idx,
                self.n_engines, self.now_s, t_end,
            )
            self.now_s = t
            if code == K.ADV_DONE:
                break
            if code == K.ADV_NO_SLOTS:
                self._grow_requests()
            else:
                sink()
        if self.g[K.G_FPM_N] + self.n_engines + 2 >= self.fpm.shape[0]:
            sink()
        K.emit_heartbeats(self.ef, self.ei, self.g, self.params, self.fpm, self.n_engines, t_end)
        self.now_s = t_end
        self.gpu_seconds += gpus * (t_end - start)

    def take_fpm(self) -> F64:
        """FPM records emitted since the last call (columns: _kernel.F_*)."""
        n = int(self.g[K.G_FPM_N])
        out = self.fpm[:n].copy()
        self.g[K.G_FPM_N] = 0
        return out

    def take_done(self) -> F64:
        """Finished / failed request records since the last call (columns: _kernel.D_*)."""
        n = int(self.g[K.G_DONE_N])
        out = self.done[:n].copy()
        self.g[K.G_DONE_N] = 0
        return out

    def finish(self) -> None:
        """Record every request still in flight as unfinished (end of the replay)."""
        self._ensure_done_room(self.ri.shape[0])
        K.fail_all_in_flight(self.rf, self.ri, self.g, self.done, self.now_s)
        self._finished = True
        self.g[K.G_FQ_HEAD] = self.g[K.G_FQ_TAIL] = -1
        self.g[K.G_FQ_COUNT] = 0

    def engine_kv_usage(self) -> dict[str, float]:
        """Reserved KV share per ready decode/agg engine (for invariants and reports)."""
        out: dict[str, float] = {}
        for e in range(self.n_engines):
            if self.ei[e, K.EI_ALIVE] == 1 and self.ei[e, K.EI_POOL] != K.POOL_PREFILL:
                out[self._worker_ids[e]] = float(self.ef[e, K.EF_RESERVED]) / self.perf.max_kv_tokens
        return out


def _pool_of(code: int) -> Pool:
    return {K.POOL_PREFILL: Pool.PREFILL, K.POOL_DECODE: Pool.DECODE, K.POOL_AGG: Pool.AGG}[code]


def warm_up() -> None:
    """Compile (or load from numba's cache) every jitted simulator function with a tiny run.

    Real-time users (mock engines) call this before their clock starts: a first compile can
    take seconds on a fresh install.
    """
    perf = SimPerf(
        prefill_isl=np.array([1.0, 1e6]),
        prefill_thpt_per_gpu=np.array([1e4, 1e4]),
        prefill_slopes=np.zeros(2),
        decode_itl_grid_ms=np.full((2, 2), 10.0),
        kv_min=0.0,
        kv_step=1.0,
        log_ctx_min=0.0,
        log_ctx_step=20.0,
        max_kv_tokens=10_000,
    )
    for mode, initial in (("disagg", {Pool.PREFILL: 1, Pool.DECODE: 1}), ("agg", {Pool.AGG: 1})):
        c = SimCluster(perf, SimSettings(mode=mode, startup_delay_s=0.0), initial, request_capacity=8)
        c.advance(
            1.0,
            np.array([0.0, 0.5]),
            np.array([100, 0], dtype=np.int64),
            np.array([5, 3], dtype=np.int64),
            np.array([0, 1], dtype=np.int64),
            lambda: None,
        )
        pools = c.settings.pools()
        c.set_targets({p: 2 for p in pools})
        c.set_targets({p: 1 for p in pools})
        c.take_fpm()
        c.take_done()
        c.finish()
