"""A mock inference engine that publishes simulated ForwardPassMetrics over real ZMQ.

:class:`MockEngine` runs a one-pool :class:`~sla_planner.sim.cluster.SimCluster` with
``dp_ranks`` engines of one role in real time (``time_scale`` simulated seconds per wall
second) and publishes every FPM row the simulator emits for each rank, idle heartbeats
included, exactly as a live engine does: rank ``r`` on its own PUB socket at ``port + r``,
multipart ``[topic = worker_id, 8-byte big-endian sequence, msgpack payload]``, sequence per
rank from 0. For the ``prefill`` and ``decode`` roles the other pool of the disaggregated
simulation starts with ``support_engines`` engines and grows (instantly, up to
``MAX_SUPPORT_ENGINES``) whenever requests wait in it, so it never limits this one; its FPM is
not published. ``port = 0`` binds every rank to an ephemeral port instead (see ``endpoints``).

Load: ``constant:RPS[?isl=N&osl=N&seed=S]`` (evenly spaced arrivals, lengths as in
``synthetic:`` specs, ``constant:0`` = idle), or any spec ``open_trace`` accepts.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import zmq

from .. import kernels
from ..errors import ConfigError
from ..kernels.fpm_ref import MAX_WORKER_ID_BYTES
from ..sim import _kernel as K
from ..sim.cluster import SimCluster, SimPerf, SimSettings, warm_up
from ..traces.synthetic import DEFAULT_ISL, DEFAULT_OSL, LengthDist
from ..traces.mooncake import TraceRequest
from ..types import Pool
from .discovery import ROLES

__all__ = ["MockEngine", "open_load", "CONSTANT_PREFIX", "MAX_SUPPORT_ENGINES"]

log = logging.getLogger(__name__)

CONSTANT_PREFIX = "constant:"
MAX_SUPPORT_ENGINES = 1024
_SCHEDULED_COLUMNS = [K.F_S_NPRE, K.F_S_PRE_TOK, K.F_S_PRE_VAR, K.F_S_PRE_KV, K.F_S_NDEC,
                      K.F_S_DEC_KV, K.F_S_DEC_VAR]
_QUEUED_COLUMNS = [K.F_Q_NPRE, K.F_Q_PRE_TOK, K.F_Q_PRE_VAR, K.F_Q_NDEC, K.F_Q_DEC_KV, K.F_Q_DEC_VAR]
_POOL = {"prefill": Pool.PREFILL, "decode": Pool.DECODE, "agg": Pool.AGG}


def _constant_load(spec: str) -> Iterator[TraceRequest]:
    body = spec[len(CONSTANT_PREFIX):]
    rate_text, _, query = body.partition("?")
    try:
        rate_rps = float(rate_text)
    except ValueError:
        raise ConfigError(f"load {spec!r}: RPS must be a number, got {rate_text!r}") from None
    if not (math.isfinite(rate_rps) and rate_rps >= 0.0):
        raise ConfigError(f"load {spec!r}: RPS must be finite and >= 0, got {rate_text!r}")
    lengths = {"isl": DEFAULT_ISL, "osl": DEFAULT_OSL}
    seed = 0
    for item in query.split("&") if query else ():
        key, eq, value = (part.strip() for part in item.partition("="))
        if not eq or key not in ("isl", "osl", "seed"):
            raise ConfigError(f"load {spec!r}: {item!r} is not isl=..., osl=... or seed=...")
        if key == "seed":
            if not value.isdigit():
                raise ConfigError(f"load {spec!r}: seed must be an integer >= 0, got {value!r}")
            seed = int(value)
        else:
            try:
                lengths[key] = LengthDist.parse(value)
            except ConfigError as exc:
                raise ConfigError(f"load {spec!r}: {key}: {exc}") from None
    return _evenly_spaced(rate_rps, lengths["isl"], lengths["osl"], seed)


def _evenly_spaced(rate_rps: float, isl: LengthDist, osl: LengthDist, seed: int) -> Iterator[TraceRequest]:
    if rate_rps == 0.0:
        return
    isl_rng, osl_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    gap_s = 1.0 / rate_rps
    for start in itertools.count(0, 256):
        isl_draws = isl.sample(isl_rng, 256).tolist()
        osl_draws = osl.sample(osl_rng, 256).tolist()
        for j in range(256):
            index = start + j + 1
            yield TraceRequest(index * gap_s, int(isl_draws[j]), int(osl_draws[j]), None, index)


def open_load(spec: str, seed: int = 0) -> Iterator[TraceRequest]:
    """The request stream a load spec names (see the module docstring); ConfigError or
    TraceFormatError for a bad spec."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"load spec must be a non-empty string, got {spec!r}")
    if spec.startswith(CONSTANT_PREFIX):
        return _constant_load(spec)
    from ..traces.open import open_trace

    return open_trace(spec, seed=seed)


def _check_args(port: int, dp_ranks: int, role: str, time_scale: float, worker_id: str | None) -> None:
    for name, value in (("port", port), ("dp_ranks", dp_ranks)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
    if dp_ranks < 1:
        raise ConfigError(f"dp_ranks must be >= 1, got {dp_ranks}")
    if port != 0 and not (1 <= port and port + dp_ranks - 1 <= 65535):
        raise ConfigError(f"port must be 0 (ephemeral) or 1..65535 with port + dp_ranks - 1 <= 65535, "
                          f"got port {port} with {dp_ranks} ranks")
    if role not in ROLES:
        raise ConfigError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if not (isinstance(time_scale, (int, float)) and math.isfinite(time_scale) and time_scale > 0):
        raise ConfigError(f"time_scale must be finite and > 0, got {time_scale!r}")
    if worker_id is not None and (
        not isinstance(worker_id, str) or not worker_id or len(worker_id.encode("utf-8")) > MAX_WORKER_ID_BYTES
    ):
        raise ConfigError(f"worker_id must be a non-empty string of at most {MAX_WORKER_ID_BYTES} bytes, "
                          f"got {worker_id!r}")


class MockEngine:
    """Simulated engine ranks publishing FPM on ZMQ PUB sockets (see the module docstring).

    ``perf`` defaults to the bundled ``builtin:example`` profile; ``load`` is a spec string or
    an iterable of :class:`TraceRequest` (non-decreasing ``timestamp_s``). ``tick_s`` is the
    wall time between simulation steps.
    """

    def __init__(
        self,
        port: int,
        dp_ranks: int = 1,
        role: str = "decode",
        perf: SimPerf | None = None,
        load: str | Iterable[TraceRequest] = "constant:1",
        worker_id: str | None = None,
        bind_host: str = "127.0.0.1",
        time_scale: float = 1.0,
        seed: int = 0,
        *,
        support_engines: int = 8,
        tick_s: float = 0.02,
    ) -> None:
        _check_args(port, dp_ranks, role, time_scale, worker_id)
        if not (math.isfinite(tick_s) and tick_s > 0):
            raise ConfigError(f"tick_s must be finite and > 0, got {tick_s!r}")
        if isinstance(support_engines, bool) or not isinstance(support_engines, int) or support_engines < 1:
            raise ConfigError(f"support_engines must be an integer >= 1, got {support_engines!r}")
        self.port = port
        self.dp_ranks = dp_ranks
        self.role = role
        self.bind_host = bind_host
        self.time_scale = float(time_scale)
        self.seed = seed
        self.tick_s = float(tick_s)
        self.support_engines = support_engines
        self._perf = perf
        self._requests: Iterator[TraceRequest] = iter(open_load(load, seed) if isinstance(load, str) else load)
        self._worker_id = worker_id
        self._ports: list[int] = []
        self.published = [0] * dp_ranks
        """Messages published per rank."""
        self.requests_sent = 0
        """Requests handed to the simulated engines."""
        self.sim_time_s = 0.0
        self.support_pool_size = 0 if role == "agg" else support_engines
        """Engines in the other pool of the simulation (0 for agg)."""
        self.error: BaseException | None = None
        """The exception that ended a background run, if any."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._used = False

    # ------------------------------------------------------------------ identity
    @property
    def worker_id(self) -> str:
        """``worker_id`` as given, else ``mock-<port>`` (the first bound port when port is 0)."""
        if self._worker_id is not None:
            return self._worker_id
        return f"mock-{self._ports[0] if self._ports else self.port}"

    @property
    def endpoints(self) -> list[str]:
        """``tcp://HOST:PORT`` of every rank (bound ports once started)."""
        ports = self._ports or [self.port + r for r in range(self.dp_ranks)]
        return [f"tcp://{self.bind_host}:{p}" for p in ports]

    @property
    def running(self) -> bool:
        """Whether the background thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ lifecycle
    def _claim(self) -> None:
        if self._used:
            raise ConfigError("a MockEngine runs once (its load stream is consumed); create a new one")
        self._used = True

    def _bind(self) -> tuple[zmq.Context[Any], list[zmq.Socket[Any]]]:
        context: zmq.Context[Any] = zmq.Context()
        sockets: list[zmq.Socket[Any]] = []
        self._ports = []
        try:
            for rank in range(self.dp_ranks):
                sock = context.socket(zmq.PUB)
                sockets.append(sock)
                sock.setsockopt(zmq.LINGER, 0)
                sock.setsockopt(zmq.SNDHWM, 100_000)
                if self.port == 0:
                    self._ports.append(sock.bind_to_random_port(f"tcp://{self.bind_host}"))
                else:
                    address = f"tcp://{self.bind_host}:{self.port + rank}"
                    sock.bind(address)
                    self._ports.append(self.port + rank)
        except zmq.ZMQError as exc:
            for sock in sockets:
                sock.close(linger=0)
            context.term()
            raise ConfigError(f"mock engine cannot bind rank {len(self._ports)} on {self.bind_host}: {exc}") from None
        return context, sockets

    def start(self) -> MockEngine:
        """Bind the sockets (errors raise here) and run in a background thread until ``stop``."""
        if self.running:
            return self
        self._claim()
        self._stop.clear()
        context, sockets = self._bind()
        self._thread = threading.Thread(
            target=self._guarded, args=(context, sockets, None), name=f"mock-engine-{self.worker_id}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread; its sockets are closed before this returns."""
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join(timeout_s)

    def run(self, duration_s: float | None = None) -> dict[str, Any]:
        """Run in this thread for ``duration_s`` wall seconds (None: until ``stop`` or Ctrl-C);
        returns what was published."""
        if duration_s is not None and not (math.isfinite(duration_s) and duration_s >= 0):
            raise ConfigError(f"duration_s must be finite and >= 0, got {duration_s!r}")
        self._claim()
        self._stop.clear()
        context, sockets = self._bind()
        self._serve(context, sockets, duration_s)
        return self.summary()

    def summary(self) -> dict[str, Any]:
        """Worker id, endpoints, messages published per rank, requests sent, simulated time."""
        return {
            "worker_id": self.worker_id,
            "role": self.role,
            "endpoints": self.endpoints,
            "published": list(self.published),
            "requests_sent": self.requests_sent,
            "sim_time_s": self.sim_time_s,
            "support_pool_size": self.support_pool_size,
        }

    def __enter__(self) -> MockEngine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ simulation
    def _guarded(self, context: zmq.Context[Any], sockets: list[zmq.Socket[Any]], duration_s: float | None) -> None:
        try:
            self._serve(context, sockets, duration_s)
        except Exception as exc:  # noqa: BLE001 - kept in ``error``, never raised out of the thread
            self.error = exc
            log.error("mock engine %s stopped on an error: %s", self.worker_id, exc)

    def _cluster(self) -> SimCluster:
        perf = self._perf
        if perf is None:
            from ..perf import load_profile

            models = load_profile("builtin:example")
            perf = self._perf = SimPerf.from_models(models.prefill, models.decode)
        pool = _POOL[self.role]
        if pool is Pool.AGG:
            initial = {Pool.AGG: self.dp_ranks}
        else:
            initial = {p: self.dp_ranks if p is pool else self.support_engines for p in (Pool.PREFILL, Pool.DECODE)}
        settings = SimSettings(
            mode="agg" if pool is Pool.AGG else "disagg", startup_delay_s=0.0, heartbeat_s=1.0, seed=self.seed
        )
        return SimCluster(perf, settings, initial, fpm_capacity=1 << 12, request_capacity=1 << 12)

    def _serve(self, context: zmq.Context[Any], sockets: list[zmq.Socket[Any]], duration_s: float | None) -> None:
        try:
            warm_up()  # a first numba compile must not eat into the published time
            cluster = self._cluster()
            code = {Pool.PREFILL: K.POOL_PREFILL, Pool.DECODE: K.POOL_DECODE, Pool.AGG: K.POOL_AGG}[_POOL[self.role]]
            mine = [e for e in range(cluster.n_engines) if cluster.ei[e, K.EI_POOL] == code]
            publisher = _Publisher(self, sockets, mine)
            pending = next(self._requests, None)
            start = time.monotonic()
            while True:
                wall_s = time.monotonic() - start
                last = self._stop.is_set() or (duration_s is not None and wall_s >= duration_s)
                if duration_s is not None:
                    wall_s = min(wall_s, duration_s)
                t_end = max(wall_s * self.time_scale, cluster.now_s)
                arrivals: list[TraceRequest] = []
                while pending is not None and pending.timestamp_s <= t_end:
                    arrivals.append(pending)
                    pending = next(self._requests, None)
                self._advance(cluster, t_end, arrivals, publisher)
                self._grow_support(cluster)
                if last:
                    return
                self._stop.wait(self.tick_s)
        finally:
            for sock in sockets:
                sock.close(linger=0)
            context.term()

    def _grow_support(self, cluster: SimCluster) -> None:
        """Give the support pool one more engine per request waiting in it (up to the cap)."""
        pool = _POOL[self.role]
        if pool is Pool.AGG:
            return
        support = Pool.DECODE if pool is Pool.PREFILL else Pool.PREFILL
        code = K.POOL_DECODE if support is Pool.DECODE else K.POOL_PREFILL
        n = cluster.n_engines
        alive = (cluster.ei[:n, K.EI_ALIVE] == 1) & (cluster.ei[:n, K.EI_POOL] == code)
        if support is Pool.PREFILL:  # the queue holds the request being prefilled too
            waiting = int(np.maximum(cluster.ei[:n, K.EI_Q_COUNT][alive] - 1, 0).sum())
        else:
            waiting = int(cluster.ei[:n, K.EI_WAIT_COUNT][alive].sum())
        waiting += cluster.frontend_waiting
        current = int(alive.sum())
        target = min(current + waiting, MAX_SUPPORT_ENGINES)
        if target > current:
            cluster.set_targets({support: target})
            self.support_pool_size = target

    def _advance(self, cluster: SimCluster, t_end: float, arrivals: list[TraceRequest], publisher: _Publisher) -> None:
        n = len(arrivals)
        floor = float(np.nextafter(cluster.now_s, np.inf))
        arr_t = np.maximum(np.fromiter((r.timestamp_s for r in arrivals), np.float64, n), floor)
        arr_t = np.minimum(arr_t, max(t_end, floor))
        isl = np.fromiter((r.input_length for r in arrivals), np.int64, n)
        osl = np.fromiter((r.output_length for r in arrivals), np.int64, n)
        idx = np.arange(self.requests_sent, self.requests_sent + n, dtype=np.int64)

        def sink() -> None:
            cluster.take_done()
            publisher.publish(cluster.take_fpm())

        cluster.advance(max(t_end, float(arr_t[-1]) if n else t_end), arr_t, isl, osl, idx, sink)
        sink()
        self.requests_sent += n
        self.sim_time_s = cluster.now_s


class _Publisher:
    """Encodes one tick's FPM rows (one batch call) and sends them on the ranks' sockets."""

    def __init__(self, engine: MockEngine, sockets: list[zmq.Socket[Any]], slots: list[int]) -> None:
        self._engine = engine
        self._sockets = sockets
        self._rank_of_slot = np.full(max(slots) + 1, -1, dtype=np.int64)
        self._rank_of_slot[slots] = np.arange(len(slots))
        self._topic = engine.worker_id.encode("utf-8")
        self._last_counter = np.zeros(len(sockets), dtype=np.int64)
        self._seq = [0] * len(sockets)

    def publish(self, rows: npt.NDArray[np.float64]) -> None:
        slots = rows[:, K.F_ENGINE].astype(np.int64)
        ranks = np.full(slots.shape[0], -1, dtype=np.int64)
        known = slots < self._rank_of_slot.shape[0]  # support engines may sit in later slots
        ranks[known] = self._rank_of_slot[slots[known]]
        keep = ranks >= 0
        rows, ranks = rows[keep], ranks[keep]
        n = rows.shape[0]
        if n == 0:
            return
        forward = (rows[:, K.F_WALL] != 0.0).astype(np.int64)
        counter_id = np.empty(n, dtype=np.int64)
        for rank in np.unique(ranks).tolist():
            at = ranks == rank
            numbers = self._last_counter[rank] + np.cumsum(forward[at])
            counter_id[at] = numbers
            self._last_counter[rank] = numbers[-1]
        buf, offsets = kernels.encode_fpm_rows(
            [self._engine.worker_id] * n, ranks, counter_id, rows[:, K.F_WALL],
            rows[:, _SCHEDULED_COLUMNS], rows[:, _QUEUED_COLUMNS],
        )
        view = memoryview(buf)
        bounds = offsets.tolist()
        published = self._engine.published
        for i, rank in enumerate(ranks.tolist()):
            seq = self._seq[rank]
            self._seq[rank] = seq + 1
            self._sockets[rank].send_multipart(
                [self._topic, seq.to_bytes(8, "big"), view[bounds[i]:bounds[i + 1]]]
            )
            published[rank] += 1
