"""Plain-Python twin of the simulator's engine loop: the oracle for :class:`.cluster.SimCluster`.

Same public surface and record arrays as ``SimCluster`` (FPM rows with columns ``_kernel.F_*``,
request rows with columns ``_kernel.D_*``), written for reading rather than speed: requests and
engines are dataclasses, queues are deques, events sit in a heapq. The semantics are those stated
in the :mod:`._kernel` docstring; the rules that decide ties are spelled out where they apply:

* events at equal times: iteration ends, then engines becoming ready (engines by slot index), then
  KV transfers (FIFO), then arrivals (trace order); after every event each idle ready engine with
  work starts an iteration;
* routing ties go to the lowest engine slot;
* a decode engine's running list is newest admission first (the order records come out in);
* engine slots: a new engine takes the lowest dead slot not freed by the same ``set_targets`` call.

Two places where this model follows the documented semantics and ``SimCluster`` does not (see
``tests/test_sim_reference.py``): an engine that is ready at once (zero start-up delay) picks up the
requests waiting at the frontend, and in agg mode a request with nothing to prefill joins an
aggregated engine's decode queue.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ..errors import SimulationError
from ..kernels.interp_ref import grid2d_eval_scalar, hermite_eval_scalar
from ..types import Pool
from . import _kernel as K
from .cluster import ScaleEvent, SimPerf, SimSettings

__all__ = ["ReferenceCluster"]

F64 = npt.NDArray[np.float64]

ITERATION_END = 0  # processed before ENGINE_READY at the same time
ENGINE_READY = 1
DRAIN_DEADLINE = 2
MIN_ITERATION_S = 1e-6  # floor of an iteration's duration


@dataclass(eq=False)
class Request:
    """A request in flight."""

    seq: int  # arrival order
    trace_index: int
    isl: int
    osl: int
    arrival_s: float
    prefill_tok_s: float  # prompt tokens per second on the engine that prefills it
    prefilled: int = 0  # prompt tokens already in KV
    chunk: int = 0  # prompt tokens scheduled in the running iteration
    decoded: int = 0  # tokens generated after the first
    first_token_s: float | None = None
    engine: int = -1  # slot of the last engine it was queued on; -1 before any

    @property
    def remaining_prompt(self) -> int:
        return self.isl - self.prefilled

    @property
    def kv_need(self) -> int:
        """KV tokens reserved for its whole life on a decode engine."""
        return self.isl + self.osl

    @property
    def context(self) -> int:
        """KV tokens it holds now on a decode engine."""
        return self.isl + self.decoded


@dataclass(eq=False)
class Engine:
    """One prefill, decode or aggregated engine."""

    slot: int
    pool: Pool
    worker_id: str
    added_at_s: float
    last_fpm_s: float
    alive: bool = True
    ready: bool = False
    busy: bool = False
    draining: bool = False
    drain_deadline_s: float = math.inf
    prefill_queue: deque[Request] = field(default_factory=deque)
    waiting: deque[Request] = field(default_factory=deque)  # decode, not yet admitted (FIFO)
    running: list[Request] = field(default_factory=list)  # decode, newest admission first

    def queued_prompt_tokens(self) -> int:
        return sum(r.remaining_prompt for r in self.prefill_queue)

    def reserved_kv(self) -> int:
        """KV reserved by running requests."""
        return sum(r.kv_need for r in self.running)

    def committed_kv(self) -> int:
        """KV reserved by running and waiting requests (the decode routing key)."""
        return self.reserved_kv() + sum(r.kv_need for r in self.waiting)

    def kv_tokens(self) -> int:
        return sum(r.context for r in self.running)

    def holds_nothing(self) -> bool:
        return not (self.prefill_queue or self.waiting or self.running)

    def work(self) -> float:
        """Tokens held: queued prompt tokens and committed KV (the drain-choice key)."""
        return float(self.queued_prompt_tokens() + self.committed_kv())


@dataclass(order=True)
class Event:
    """An engine's iteration end or readiness; ordered by (time, kind, slot).

    Only a removed engine's stale event can share its key with another, and stale events are
    skipped, so the key decides every order that matters.
    """

    time_s: float
    kind: int
    slot: int
    engine: Engine = field(compare=False)


def _variance(total: float, total_sq: float, n: int) -> float:
    """Population variance from sums, with the kernel's formula (so rounding matches)."""
    if n <= 0:
        return 0.0
    mean = total / n
    v = total_sq / n - mean * mean
    return v if v > 0.0 else 0.0


def _sums(values: list[int]) -> tuple[int, int]:
    return sum(values), sum(v * v for v in values)


class ReferenceCluster:
    """Readable discrete-event twin of :class:`.cluster.SimCluster` (same methods and records)."""

    def __init__(self, perf: SimPerf, settings: SimSettings, initial: dict[Pool, int]) -> None:
        self.perf = perf
        self.settings = settings
        self._rng = np.random.default_rng(settings.seed)
        self.now_s = 0.0
        self.gpu_seconds = 0.0
        self.scale_events: list[ScaleEvent] = []
        self._agg = settings.mode == "agg"
        self._prefill_gpus = (
            settings.decode_engine_num_gpu if self._agg else settings.prefill_engine_num_gpu
        )
        self._slots: list[Engine] = []  # slot -> its engine (alive, or the last one there)
        self._next_worker = 0
        self._next_seq = 0
        self._events: list[Event] = []
        self._transfers: deque[tuple[float, Request]] = deque()
        self._frontend: deque[Request] = deque()
        self._in_flight: dict[int, Request] = {}
        self._fpm: list[list[float]] = []
        self._done: list[list[float]] = []
        self._retired: list[ScaleEvent] = []
        self._finished = False
        for pool, n in initial.items():
            if pool not in settings.pools() or n < 0:
                raise SimulationError(
                    f"initial engines: {pool.value}={n} (pools of mode {settings.mode}: "
                    f"{', '.join(p.value for p in settings.pools())}; counts must be >= 0)"
                )
        for pool in settings.pools():
            for _ in range(int(initial.get(pool, 0))):
                self._add_engine(pool, 0.0, freed_now=set())

    # ------------------------------------------------------------------ pools
    def set_targets(
        self, targets: dict[Pool, int], drain: dict[Pool, tuple[str, ...]] | None = None
    ) -> list[ScaleEvent]:
        """Add or remove engines so each pool has its target (starting engines count).

        Removal order: starting engines (newest first, removed at once), then the workers named
        in ``drain`` in order, then the ready engines holding the least work (newest first on
        ties); ready ones drain unless ``drain_timeout_s`` is 0.
        """
        events: list[ScaleEvent] = []
        freed_now: set[int] = set()
        draining = False
        for pool, target in targets.items():
            if pool not in self.settings.pools():
                raise SimulationError(f"pool {pool.value} does not exist in mode {self.settings.mode}")
            if target < 0:
                raise SimulationError(f"target for {pool.value} must be >= 0, got {target}")
            alive = self._alive(pool)
            for _ in range(target - len(alive)):
                events.append(self._add_engine(pool, self.now_s + self._startup_delay(), freed_now))
            if target < len(alive):
                rank = {w: i for i, w in enumerate((drain or {}).get(pool, ()))}
                order = sorted(
                    alive,
                    key=lambda e: (
                        e.ready,
                        rank.get(e.worker_id, len(rank)),
                        e.work(),
                        -e.added_at_s,
                        -e.slot,
                    ),
                )
                for engine in order[: len(alive) - target]:
                    if not engine.ready or self.settings.drain_timeout_s <= 0.0:
                        events.append(self._remove_engine(engine))
                        freed_now.add(engine.slot)
                    else:
                        events.append(self._start_drain(engine))
                        draining = True
        if draining:
            self._start_idle_engines(self.now_s)
        self.scale_events.extend(events)
        return events + self.take_retired()

    def _start_drain(self, engine: Engine) -> ScaleEvent:
        engine.draining = True
        engine.drain_deadline_s = self.now_s + self.settings.drain_timeout_s
        self._push_event(engine.drain_deadline_s, DRAIN_DEADLINE, engine)
        return ScaleEvent(self.now_s, engine.pool, "drain", engine.worker_id)

    def _retire(self, engine: Engine, t: float, failed: int = 0) -> None:
        engine.alive = engine.ready = engine.busy = False
        self._retired.append(
            ScaleEvent(t, engine.pool, "remove", engine.worker_id, None, failed, after_drain=True)
        )

    def take_retired(self) -> list[ScaleEvent]:
        """Removals that ended drains since the last call (also added to ``scale_events``)."""
        out = sorted(self._retired, key=lambda ev: (ev.at_s, ev.worker_id))
        self._retired = []
        self.scale_events.extend(out)
        return out

    def draining_workers(self) -> set[str]:
        """Worker ids of engines draining now."""
        return {e.worker_id for e in self._slots if e.alive and e.draining}

    def _startup_delay(self) -> float:
        s = self.settings
        if s.startup_delay_max_s is None or s.startup_delay_max_s == s.startup_delay_s:
            return s.startup_delay_s
        return float(self._rng.uniform(s.startup_delay_s, s.startup_delay_max_s))

    def _add_engine(self, pool: Pool, ready_at_s: float, freed_now: set[int]) -> ScaleEvent:
        retired = {ev.worker_id for ev in self._retired}
        dead = [
            e.slot
            for e in self._slots
            if not e.alive and e.slot not in freed_now and e.worker_id not in retired
        ]
        slot = dead[0] if dead else len(self._slots)
        worker_id = f"{pool.value}-{self._next_worker}"
        self._next_worker += 1
        engine = Engine(slot, pool, worker_id, added_at_s=self.now_s, last_fpm_s=ready_at_s)
        if slot == len(self._slots):
            self._slots.append(engine)
        else:
            self._slots[slot] = engine
        if ready_at_s <= self.now_s:
            self._become_ready(engine)
            self._start_idle_engines(self.now_s)
        else:
            self._push_event(ready_at_s, ENGINE_READY, engine)
        return ScaleEvent(self.now_s, pool, "add", worker_id, ready_at_s)

    def _remove_engine(self, engine: Engine) -> ScaleEvent:
        """The engine is gone at once; every request it holds fails."""
        held = [*engine.prefill_queue, *engine.waiting, *engine.running]
        for r in held:
            self._finish(r, self.now_s, K.STATUS_FAILED_REMOVED, engine.slot)
        engine.prefill_queue.clear()
        engine.waiting.clear()
        engine.running.clear()
        engine.alive = engine.ready = engine.busy = False
        return ScaleEvent(self.now_s, engine.pool, "remove", engine.worker_id, None, len(held))

    def _alive(self, pool: Pool) -> list[Engine]:
        """Engines the deployment counts: starting or serving, not draining."""
        return [e for e in self._slots if e.alive and not e.draining and e.pool is pool]

    def _ready(self, pool: Pool) -> list[Engine]:
        return [e for e in self._alive(pool) if e.ready]

    def counts(self) -> dict[Pool, int]:
        """Engines per pool, starting ones included."""
        return {p: len(self._alive(p)) for p in self.settings.pools()}

    def ready_counts(self) -> dict[Pool, int]:
        """Engines per pool that are serving."""
        return {p: len(self._ready(p)) for p in self.settings.pools()}

    def scaling_in_progress(self) -> bool:
        """True while any engine is still starting."""
        return any(e.alive and not e.ready and not e.draining for e in self._slots)

    def gpus_in_use(self) -> int:
        """GPUs held by engines (starting, ready or draining)."""
        return sum(self.settings.engine_num_gpu(e.pool) for e in self._slots if e.alive)

    def worker_id(self, e: int) -> str:
        """The worker id of engine slot e (current occupant)."""
        return self._slots[e].worker_id

    def engine_pool(self, e: int) -> Pool:
        """Pool of engine slot e."""
        return self._slots[e].pool

    @property
    def n_engines(self) -> int:
        """Engine slots used so far (alive or dead)."""
        return len(self._slots)

    @property
    def in_flight(self) -> int:
        """Requests admitted and not finished."""
        return len(self._in_flight)

    @property
    def frontend_waiting(self) -> int:
        """Requests waiting at the frontend for a ready engine."""
        return len(self._frontend)

    def engine_kv_usage(self) -> dict[str, float]:
        """Reserved KV share per alive decode/agg engine."""
        return {
            e.worker_id: e.reserved_kv() / self.perf.max_kv_tokens
            for e in self._slots
            if e.alive and e.pool is not Pool.PREFILL
        }

    # ------------------------------------------------------------------- time
    def advance(
        self,
        t_end: float,
        arr_t: F64,
        arr_isl: npt.NDArray[np.int64],
        arr_osl: npt.NDArray[np.int64],
        arr_idx: npt.NDArray[np.int64],
        sink: Callable[[], None],
    ) -> None:
        """Play events up to ``t_end`` with these arrivals (sorted, in [now, t_end]).

        ``sink`` is accepted for parity with SimCluster and never called: records are kept in
        unbounded lists until ``take_fpm`` / ``take_done``.
        """
        if self._finished:
            raise SimulationError("advance() after finish(): the replay has ended")
        if not math.isfinite(t_end) or t_end < self.now_s:
            raise SimulationError(f"t_end must be finite and >= now ({self.now_s}), got {t_end}")
        arrivals = deque(self._checked_arrivals(t_end, arr_t, arr_isl, arr_osl, arr_idx))
        gpus = self.gpus_in_use()
        start_s = self.now_s
        while True:
            t_event = self._events[0].time_s if self._events else math.inf
            t_transfer = self._transfers[0][0] if self._transfers else math.inf
            t_arrival = arrivals[0][0] if arrivals else math.inf
            t = min(t_event, t_transfer, t_arrival)
            if t > t_end:
                break
            self.now_s = t
            if t_event == t:
                event = heapq.heappop(self._events)
                if not event.engine.alive:
                    continue  # removed after this event was scheduled
                if event.kind == ITERATION_END:
                    self._end_iteration(event.engine, t)
                elif event.kind == DRAIN_DEADLINE:
                    self._drain_deadline(event.engine, t)
                else:
                    self._become_ready(event.engine)
            elif t_transfer == t:
                _, r = self._transfers.popleft()
                self._hand_off_to_decode(r, t)
            else:
                _, isl, osl, trace_index = arrivals.popleft()
                self._arrive(t, isl, osl, trace_index)
            self._start_idle_engines(t)
        self._emit_heartbeats(t_end)
        self.now_s = t_end
        self.gpu_seconds += gpus * (t_end - start_s)

    def _checked_arrivals(
        self, t_end: float, arr_t: F64, arr_isl: npt.NDArray[np.int64],
        arr_osl: npt.NDArray[np.int64], arr_idx: npt.NDArray[np.int64],
    ) -> list[tuple[float, int, int, int]]:
        """Arrivals as (time, ISL, OSL, trace index); ValueError naming the array and position."""
        arrays = {"arr_t": arr_t, "arr_isl": arr_isl, "arr_osl": arr_osl, "arr_idx": arr_idx}
        shapes = {name: np.shape(a) for name, a in arrays.items()}
        if len(set(shapes.values())) != 1 or len(shapes["arr_t"]) != 1:
            raise SimulationError(f"arrival arrays must be 1-D and of one length, got shapes {shapes}")
        out: list[tuple[float, int, int, int]] = []
        prev = self.now_s
        for i, (t, isl, osl, idx) in enumerate(zip(arr_t, arr_isl, arr_osl, arr_idx)):
            t = float(t)
            if not (prev <= t <= t_end):
                raise SimulationError(
                    f"arr_t[{i}] = {t}: arrivals must be sorted and in [now={self.now_s}, t_end={t_end}]"
                )
            if isl < 0 or osl < 0:
                raise SimulationError(f"arr_isl[{i}] = {isl}, arr_osl[{i}] = {osl}: lengths must be >= 0")
            out.append((t, int(isl), int(osl), int(idx)))
            prev = t
        return out

    def _drain_deadline(self, engine: Engine, t: float) -> None:
        """A drain's deadline: whatever the engine still holds fails, and it leaves."""
        if not engine.draining:
            return
        held = [*engine.prefill_queue, *engine.waiting, *engine.running]
        for r in held:
            self._finish(r, t, K.STATUS_FAILED_REMOVED, engine.slot)
        engine.prefill_queue.clear()
        engine.waiting.clear()
        engine.running.clear()
        self._retire(engine, t, len(held))

    def _push_event(self, time_s: float, kind: int, engine: Engine) -> None:
        heapq.heappush(self._events, Event(time_s, kind, engine.slot, engine))

    def _emit_heartbeats(self, t: float) -> None:
        """All-zero FPM from every ready idle engine silent for at least a heartbeat period."""
        for engine in self._slots:
            if engine.alive and engine.ready and not engine.busy:
                if t - engine.last_fpm_s >= self.settings.heartbeat_s:
                    row = [0.0] * K.N_F
                    row[K.F_ENGINE] = engine.slot
                    row[K.F_TIME] = t
                    self._fpm.append(row)
                    engine.last_fpm_s = t

    # --------------------------------------------------------------- requests
    def _arrive(self, t: float, isl: int, osl: int, trace_index: int) -> None:
        rate = (
            hermite_eval_scalar(
                self.perf.prefill_isl, self.perf.prefill_thpt_per_gpu, self.perf.prefill_slopes,
                float(isl),
            )
            * self._prefill_gpus
            / self.settings.time_scale
        )
        r = Request(self._next_seq, trace_index, isl, osl, t, rate if rate > 0.0 else 1.0)
        self._next_seq += 1
        self._in_flight[r.seq] = r
        if isl > 0:
            self._route_new(r, t)
            return
        self._first_token(r, t, -1)  # nothing to prefill
        if osl <= 1:
            self._finish(r, t, K.STATUS_OK, -1)
        else:
            self._hand_off_to_decode(r, t)

    def _route_new(self, r: Request, t: float) -> None:
        """Route a request that still needs its prefill (arrival or frontend retry)."""
        if self._agg and r.kv_need > self.perf.max_kv_tokens:
            self._finish(r, t, K.STATUS_REJECTED_TOO_LONG, -1)
            return
        ready = self._ready(Pool.AGG if self._agg else Pool.PREFILL)
        if not ready:
            self._frontend.append(r)
            return
        # min() keeps the first of equal keys: ties go to the lowest slot
        self._enqueue_prefill(min(ready, key=Engine.queued_prompt_tokens), r)

    def _hand_off_to_decode(self, r: Request, t: float) -> None:
        """Send a prefilled request to the decode engine with the least committed KV."""
        if r.kv_need > self.perf.max_kv_tokens:
            self._finish(r, t, K.STATUS_REJECTED_TOO_LONG, -1)
            return
        ready = self._ready(Pool.AGG if self._agg else Pool.DECODE)
        if not ready:
            self._frontend.append(r)
            return
        self._enqueue_decode(min(ready, key=Engine.committed_kv), r)  # ties: lowest slot

    def _enqueue_prefill(self, engine: Engine, r: Request) -> None:
        r.engine = engine.slot
        engine.prefill_queue.append(r)

    def _enqueue_decode(self, engine: Engine, r: Request) -> None:
        r.engine = engine.slot
        engine.waiting.append(r)

    def _become_ready(self, engine: Engine) -> None:
        """The engine serves from now on; every request at the frontend is routed again."""
        engine.ready = True
        retry, self._frontend = self._frontend, deque()
        for r in retry:
            if r.first_token_s is not None:
                self._hand_off_to_decode(r, self.now_s)
            else:
                self._route_new(r, self.now_s)

    def _first_token(self, r: Request, t: float, slot: int) -> None:
        r.first_token_s = t
        self._done.append(self._record(r, t, K.STATUS_FIRST_TOKEN, slot))

    def _finish(self, r: Request, t: float, status: int, slot: int) -> None:
        self._done.append(self._record(r, t, status, slot))
        del self._in_flight[r.seq]

    @staticmethod
    def _record(r: Request, t: float, status: int, slot: int) -> list[float]:
        row = [0.0] * K.N_D
        row[K.D_TRACE] = r.trace_index
        row[K.D_ARRIVAL] = r.arrival_s
        row[K.D_FIRST] = -1.0 if r.first_token_s is None else r.first_token_s
        row[K.D_DONE] = t
        row[K.D_ISL] = r.isl
        row[K.D_OSL] = r.osl
        row[K.D_STATUS] = status
        row[K.D_ENGINE] = slot
        return row

    # ------------------------------------------------------------- iterations
    def _start_idle_engines(self, t: float) -> None:
        for engine in self._slots:
            if engine.alive and engine.ready and not engine.busy:
                self._start_iteration(engine, t)
                if engine.draining and not engine.busy and engine.holds_nothing():
                    self._retire(engine, t)

    def _start_iteration(self, engine: Engine, t: float) -> None:
        """Schedule the engine's next iteration if it has work, and emit its FPM row."""
        s = self.settings
        duration_s = 0.0
        running: list[Request] = []
        if engine.pool is not Pool.PREFILL:
            # admission: FIFO, while a sequence slot and the whole-life KV reservation fit
            while engine.waiting and len(engine.running) < s.max_num_seqs:
                head = engine.waiting[0]
                if engine.reserved_kv() + head.kv_need > self.perf.max_kv_tokens:
                    break
                engine.running.insert(0, engine.waiting.popleft())
            running = engine.running
            duration_s += self._decode_step_s(engine)
        scheduled: list[Request] = []
        if engine.pool is not Pool.DECODE:
            # chunked prefill from the queue head; in agg mode decode tokens use up budget first
            budget = s.max_num_batched_tokens - len(running)
            for r in engine.prefill_queue:
                if budget <= 0:
                    break
                r.chunk = min(r.remaining_prompt, budget)
                budget -= r.chunk
                scheduled.append(r)
                duration_s += r.chunk / r.prefill_tok_s
        if not scheduled and not running:
            return
        duration_s = duration_s if duration_s > 0.0 else MIN_ITERATION_S
        end_s = t + duration_s
        engine.busy = True
        self._push_event(end_s, ITERATION_END, engine)
        self._fpm.append(self._fpm_row(engine, end_s, duration_s, scheduled, running))
        engine.last_fpm_s = end_s

    def _decode_step_s(self, engine: Engine) -> float:
        """One decode iteration: the ITL grid at (KV usage, mean context), times time_scale."""
        n = len(engine.running)
        if n == 0:
            return 0.0
        kv = engine.kv_tokens()
        p = self.perf
        itl_ms = grid2d_eval_scalar(
            p.decode_itl_grid_ms, p.kv_min, p.kv_step, p.log_ctx_min, p.log_ctx_step,
            kv / p.max_kv_tokens, math.log(max(kv / n, 1.0)),
        )
        return itl_ms * 1e-3 * self.settings.time_scale

    def _fpm_row(
        self, engine: Engine, end_s: float, duration_s: float,
        scheduled: list[Request], running: list[Request],
    ) -> list[float]:
        """The iteration's ForwardPassMetrics, stamped with its end time; queues as at its start."""
        pre_tok = sum(r.chunk for r in scheduled)
        pre_len, pre_len2 = _sums([r.isl for r in scheduled])
        dec_kv, dec_kv2 = _sums([r.context for r in running])
        queued = list(engine.prefill_queue)[len(scheduled):]
        q_len, q_len2 = _sums([r.isl for r in queued])
        q_kv, q_kv2 = _sums([r.context for r in engine.waiting])
        row = [0.0] * K.N_F
        row[K.F_ENGINE] = engine.slot
        row[K.F_TIME] = end_s
        row[K.F_WALL] = duration_s
        row[K.F_S_NPRE] = len(scheduled)
        row[K.F_S_PRE_TOK] = pre_tok
        row[K.F_S_PRE_VAR] = _variance(pre_len, pre_len2, len(scheduled))
        row[K.F_S_PRE_KV] = sum(r.prefilled for r in scheduled)
        row[K.F_S_NDEC] = len(running)
        row[K.F_S_DEC_KV] = dec_kv
        row[K.F_S_DEC_VAR] = _variance(dec_kv, dec_kv2, len(running))
        row[K.F_Q_NPRE] = len(queued)
        # the unscheduled rest of a partly scheduled prompt counts as queued tokens
        row[K.F_Q_PRE_TOK] = engine.queued_prompt_tokens() - pre_tok
        row[K.F_Q_PRE_VAR] = _variance(q_len, q_len2, len(queued))
        row[K.F_Q_NDEC] = len(engine.waiting)
        row[K.F_Q_DEC_KV] = q_kv
        row[K.F_Q_DEC_VAR] = _variance(q_kv, q_kv2, len(engine.waiting))
        return row

    def _end_iteration(self, engine: Engine, t: float) -> None:
        """Apply an iteration: one token per running request, then the prefill chunks."""
        engine.busy = False
        if engine.pool is not Pool.PREFILL:
            for r in list(engine.running):
                r.decoded += 1
                if 1 + r.decoded >= r.osl:
                    engine.running.remove(r)
                    self._finish(r, t, K.STATUS_OK, engine.slot)
        if engine.pool is not Pool.DECODE:
            for r in [r for r in engine.prefill_queue if r.chunk > 0]:
                r.prefilled += r.chunk
                r.chunk = 0
                if r.prefilled < r.isl:
                    continue
                engine.prefill_queue.remove(r)
                self._first_token(r, t, engine.slot)
                if r.osl <= 1:
                    self._finish(r, t, K.STATUS_OK, engine.slot)
                elif engine.pool is Pool.AGG:
                    self._enqueue_decode(engine, r)
                elif self.settings.transfer_s > 0.0:
                    self._transfers.append((t + self.settings.transfer_s, r))
                else:
                    self._hand_off_to_decode(r, t)

    # ---------------------------------------------------------------- outputs
    def take_fpm(self) -> F64:
        """FPM records emitted since the last call (columns: _kernel.F_*)."""
        out = np.array(self._fpm, dtype=np.float64).reshape(-1, K.N_F)
        self._fpm = []
        return out

    def take_done(self) -> F64:
        """Request records since the last call (columns: _kernel.D_*)."""
        out = np.array(self._done, dtype=np.float64).reshape(-1, K.N_D)
        self._done = []
        return out

    def finish(self) -> None:
        """Record every request still in flight as unfinished (end of the replay)."""
        for r in list(self._in_flight.values()):
            self._finish(r, self.now_s, K.STATUS_UNFINISHED, r.engine)
        self._frontend.clear()
        self._transfers.clear()
        for engine in self._slots:
            engine.prefill_queue.clear()
            engine.waiting.clear()
            engine.running.clear()
        self._finished = True
