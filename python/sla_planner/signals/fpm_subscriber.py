"""Live ForwardPassMetrics ingestion: ZMQ SUB sockets feeding an FPM engine table.

:class:`FpmSubscriber` keeps one SUB socket per discovered endpoint (so the endpoint, and with
it the role, of every message is known), subscribed to every topic. A background thread polls
the sockets, drains up to ``max_batch`` messages per socket at a time, checks the frames
(exactly ``[topic, 8-byte big-endian sequence, payload]``, payload at most
``max_payload_bytes``) and hands each socket's batch to ``ingestor.ingest`` with the sequence
numbers. Everything else is counted and dropped: garbage on the wire never stops the thread.

Engines are mapped to the endpoint they publish on without decoding the hot path: only when a
batch grows the engine table are that batch's payloads peeked at with ``decode_fpm`` to find
the new ``(worker_id, dp_rank)``. When discovery drops an endpoint its socket is closed and its
engines are removed from the table.

Sockets are created, used and closed by the background thread only. The ingestor is not safe
for concurrent use, so while the subscriber runs read it through :meth:`FpmSubscriber.snapshot`,
:meth:`~FpmSubscriber.counters` and :meth:`~FpmSubscriber.history`, which take the same lock as
the thread.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt
import zmq

from .. import kernels
from ..errors import ConfigError, FpmDecodeError, KernelError
from ..kernels.fpm_ref import MAX_PAYLOAD_BYTES
from .discovery import Discovery, EngineEndpoint, Role
from .fpm_receive_native import NATIVE_COUNTERS, native_receiver_for

__all__ = ["FpmSubscriber", "UNKNOWN_ROLE", "SEQ_BYTES"]

log = logging.getLogger(__name__)

UNKNOWN_ROLE = "unknown"
SEQ_BYTES = 8
EngineKey = tuple[str, int]

_OWN_COUNTERS = (
    "received", "bad_frames", "oversized", "ingest_errors", "connect_errors", "discovery_errors",
    "loop_errors",
)


def _positive(name: str, value: float) -> float:
    number = float(value)
    if not (math.isfinite(number) and number > 0.0):
        raise ConfigError(f"{name} must be finite and > 0, got {value!r}")
    return number


def _at_least_one(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    return value


class FpmSubscriber:
    """Subscribes to every endpoint ``discovery`` lists and feeds ``ingestor`` (see module doc).

    ``clock`` gives the receive time passed to the ingestor (seconds); ``poll_interval_s``
    bounds how long the thread waits for traffic (and so how fast it stops);
    ``refresh_interval_s`` is how often it re-polls discovery; ``max_batch`` caps the messages
    drained from one socket per ingest call; payloads over ``max_payload_bytes`` are counted
    (``oversized``) and dropped; ``rcv_hwm`` is the ZMQ receive high-water mark. (ZMQ's own
    message size limit is not set: libzmq drops a connection that breaks it and does not
    reconnect, which would silence an endpoint for good.) ``native``: read the sockets with the
    native receive loop (``True``: required, ``False``: the pyzmq loop, ``None``: native when it
    can be used; see :mod:`~sla_planner.signals.fpm_receive_native`).
    """

    def __init__(
        self,
        ingestor: Any,
        discovery: Discovery,
        *,
        clock: Callable[[], float] = time.time,
        poll_interval_s: float = 0.05,
        refresh_interval_s: float = 2.0,
        max_batch: int = 1024,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        rcv_hwm: int = 10_000,
        native: bool | None = None,
    ) -> None:
        if not callable(getattr(discovery, "poll", None)):
            raise ConfigError(f"discovery must have a poll() method, got {type(discovery).__name__}")
        self._ingestor = ingestor
        self._discovery = discovery
        self._clock = clock
        self._poll_ms = max(1, round(_positive("poll_interval_s", poll_interval_s) * 1000.0))
        self._refresh_interval_s = _positive("refresh_interval_s", refresh_interval_s)
        self._max_batch = _at_least_one("max_batch", max_batch)
        self._max_payload_bytes = _at_least_one("max_payload_bytes", max_payload_bytes)
        self._rcv_hwm = _at_least_one("rcv_hwm", rcv_hwm)

        self._lock = threading.Lock()  # ingestor, engine maps, counters
        self._desired: dict[str, EngineEndpoint] = {}
        self._connected: set[str] = set()
        self._engines_of: dict[str, set[EngineKey]] = {}
        self._endpoint_of: dict[EngineKey, str] = {}
        self._counts = dict.fromkeys(_OWN_COUNTERS, 0)
        self._received_by_endpoint: dict[str, int] = {}

        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._refresh_cond = threading.Condition()
        self._refresh_requested = False
        self._refreshes_started = 0  # refreshes the thread began (guarded by _refresh_cond)
        self._refreshes_done = 0  # number of the last refresh it finished
        self._context: zmq.Context[Any] | None = None
        self._native_preference = native
        self._receiver: Any | None = None  # FpmReceiver while the native path runs

    # ------------------------------------------------------------------ lifecycle
    @property
    def running(self) -> bool:
        """Whether the background thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout_s: float = 5.0) -> FpmSubscriber:
        """Start the thread and wait (up to ``timeout_s``) until it has connected the first set."""
        if self.running:
            return self
        self._stop.clear()
        self._ready.clear()
        self._receiver = native_receiver_for(
            self._ingestor, self._clock, self._max_payload_bytes, self._native_preference
        )
        self._context = zmq.Context()
        self._thread = threading.Thread(target=self._run, args=(self._context,), name="fpm-subscriber", daemon=True)
        self._thread.start()
        self._ready.wait(timeout_s)
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread; every socket is closed before this returns (idempotent)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout_s)
        context, self._context = self._context, None
        if thread.is_alive():
            log.error("FPM subscriber thread did not stop within %.1f s", timeout_s)
            return
        if context is not None:
            context.term()

    @property
    def native(self) -> bool:
        """Whether the native receive loop (``_native.FpmReceiver``) reads the sockets."""
        return self._receiver is not None

    def __enter__(self) -> FpmSubscriber:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ discovery
    def refresh(self, timeout_s: float = 2.0) -> list[EngineEndpoint]:
        """Re-poll discovery now and apply it; returns the endpoint set.

        While running, the thread applies it (this waits up to ``timeout_s`` for that);
        otherwise the set is recorded, dropped endpoints' engines are removed, and sockets
        follow on ``start``.
        """
        thread = self._thread
        if thread is not None and thread.is_alive() and threading.current_thread() is not thread:
            with self._refresh_cond:  # wait for a refresh that starts after this request
                target = self._refreshes_started + 1
                self._refresh_requested = True
                self._refresh_cond.wait_for(lambda: self._refreshes_done >= target, timeout_s)
        else:
            endpoints = self._poll_discovery()
            if endpoints is not None:
                self._apply_table(endpoints)
        return self.endpoints()

    def endpoints(self) -> list[EngineEndpoint]:
        """The endpoint set last taken from discovery."""
        with self._lock:
            return list(self._desired.values())

    def connected(self) -> list[str]:
        """Endpoints with an open socket."""
        with self._lock:
            return sorted(self._connected)

    def _poll_discovery(self) -> list[EngineEndpoint] | None:
        try:
            endpoints = list(self._discovery.poll())
            for ep in endpoints:
                if not isinstance(ep, EngineEndpoint):
                    raise ConfigError(f"discovery returned {type(ep).__name__}, not EngineEndpoint")
            return endpoints
        except Exception as exc:  # noqa: BLE001 - a user's discovery must not kill the thread
            self._error("discovery_errors", f"discovery poll failed: {exc}")
            return None

    def _apply_table(self, endpoints: list[EngineEndpoint]) -> list[str]:
        """Record the new set, forget dropped endpoints' engines; returns the dropped endpoints."""
        with self._lock:
            new = {ep.endpoint: ep for ep in endpoints}
            dropped = [e for e in self._desired if e not in new]
            self._desired = new
            for endpoint in dropped:
                for key in self._engines_of.pop(endpoint, set()):
                    self._endpoint_of.pop(key, None)
                    self._ingestor.remove(key[0], key[1])
                self._received_by_endpoint.pop(endpoint, None)
            return dropped

    # ------------------------------------------------------------------ reading
    def roles(self) -> dict[EngineKey, Role]:
        """Role of every engine seen on a current endpoint."""
        self._sync_native()
        with self._lock:
            return {key: self._desired[ep].role for key, ep in self._endpoint_of.items() if ep in self._desired}

    def instances_of(self, worker_ids: Iterable[str]) -> dict[str, str]:
        """Deployment-side instance (pod) of each worker id whose endpoint names one.

        Every rank of a worker publishes from the same instance; ids without a known instance
        (not seen yet, or discovery gives no instance names) are left out.
        """
        wanted = set(worker_ids)
        out: dict[str, str] = {}
        with self._lock:
            for (worker_id, _rank), endpoint in self._endpoint_of.items():
                if worker_id not in wanted or worker_id in out:
                    continue
                ep = self._desired.get(endpoint)
                if ep is not None and ep.instance is not None:
                    out[worker_id] = ep.instance
        return out

    def snapshot(self, now_s: float | None = None) -> dict[str, npt.NDArray[Any]]:
        """The ingestor's snapshot at ``now_s`` (default: the clock) plus ``role`` and
        ``endpoint`` object columns (``"unknown"`` / ``""`` for engines not mapped)."""
        now = self._clock() if now_s is None else now_s
        self._sync_native()
        with self._lock:
            snap: dict[str, npt.NDArray[Any]] = self._ingestor.snapshot(now)
            n = len(snap["worker_id"])
            role = np.empty(n, dtype=object)
            endpoint = np.empty(n, dtype=object)
            for i, key in enumerate(zip(snap["worker_id"].tolist(), snap["dp_rank"].tolist())):
                ep = self._endpoint_of.get(key)
                known = self._desired.get(ep) if ep is not None else None
                role[i] = known.role if known is not None else UNKNOWN_ROLE
                endpoint[i] = ep or ""
        snap["role"] = role
        snap["endpoint"] = endpoint
        return snap

    def history(self, worker_id: str, dp_rank: int) -> dict[str, npt.NDArray[Any]]:
        """The ingestor's history of one engine (KeyError when unknown)."""
        with self._lock:
            out: dict[str, npt.NDArray[Any]] = self._ingestor.history(worker_id, dp_rank)
            return out

    def counters(self) -> dict[str, Any]:
        """Ingestor counters (its ``received`` renamed ``ingested``) and the subscriber's own:
        ``received`` (messages off the wire), ``bad_frames``, ``oversized``, ``ingest_errors``,
        ``connect_errors``, ``discovery_errors``, ``loop_errors``, ``endpoints``, ``connected``
        and ``received_by_endpoint`` (endpoint -> messages)."""
        self._sync_native()
        receiver = self._receiver
        with self._lock:
            table = dict(self._ingestor.counters())
            out: dict[str, Any] = {"ingested": table.pop("received", 0), **table, **self._counts}
            out["endpoints"] = len(self._desired)
            out["connected"] = len(self._connected)
            out["received_by_endpoint"] = dict(self._received_by_endpoint)
        if receiver is not None:  # the running native loop's counts on top of earlier runs'
            native = receiver.counters()
            for name in (*NATIVE_COUNTERS, "connect_errors"):
                out[name] += native[name]
            out["connected"] = len(native["connected"])
            by = out["received_by_endpoint"]
            for endpoint, n in native["received_by_endpoint"].items():
                by[endpoint] = by.get(endpoint, 0) + n
        return out

    def _fold_native(self, receiver: Any) -> None:
        """Keep a stopping native loop's counts in the subscriber's own."""
        native = receiver.counters()
        with self._lock:
            for name in (*NATIVE_COUNTERS, "connect_errors"):
                self._counts[name] += native[name]
            for endpoint, n in native["received_by_endpoint"].items():
                if endpoint in self._desired:
                    self._received_by_endpoint[endpoint] = self._received_by_endpoint.get(endpoint, 0) + n

    # ------------------------------------------------------------------ native receive path
    def _sync_native(self) -> None:
        """Map the engines the native loop learned to their endpoints (no-op without it)."""
        receiver = self._receiver
        if receiver is None:
            return
        learned = receiver.take_learned()
        if not learned:
            return
        with self._lock:
            for endpoint, worker_id, dp_rank in learned:
                if endpoint not in self._desired:
                    continue
                key = (worker_id, dp_rank)
                self._endpoint_of[key] = endpoint
                self._engines_of.setdefault(endpoint, set()).add(key)

    def _apply_native(self, receiver: Any, endpoints: list[EngineEndpoint]) -> None:
        for endpoint in self._apply_table(endpoints):
            receiver.disconnect(endpoint)
            log.info("FPM: disconnected from %s", endpoint)
        connected = set(self._connected)
        for ep in endpoints:
            if ep.endpoint in connected:
                continue
            try:
                receiver.connect(ep.endpoint)
            except KernelError as exc:
                self._error("connect_errors", f"FPM: cannot connect to {ep.endpoint}: {exc}")
                continue
            connected.add(ep.endpoint)
            log.info("FPM: subscribed to %s (%s, native)", ep.endpoint, ep.role)
        with self._lock:
            self._connected = {e for e in connected if e in self._desired}

    # ------------------------------------------------------------------ the thread
    def _error(self, counter: str, message: str) -> None:
        """Count an error; log it when its count is a power of two (1, 2, 4, ...)."""
        with self._lock:
            self._counts[counter] += 1
            n = self._counts[counter]
        if n & (n - 1) == 0:
            log.warning("%s (%s #%d)", message, counter, n)

    def _run(self, context: zmq.Context[Any]) -> None:
        sockets: dict[str, zmq.Socket[Any]] = {}
        by_socket: dict[zmq.Socket[Any], str] = {}
        poller = zmq.Poller()
        next_refresh = 0.0
        try:
            while not self._stop.is_set():
                try:
                    if self._refresh_requested or time.monotonic() >= next_refresh:
                        with self._refresh_cond:
                            self._refresh_requested = False
                            self._refreshes_started += 1
                            number = self._refreshes_started
                        try:
                            endpoints = self._poll_discovery()
                            if endpoints is not None and self._receiver is not None:
                                self._apply_native(self._receiver, endpoints)
                            elif endpoints is not None:
                                self._apply_sockets(context, endpoints, sockets, by_socket, poller)
                        finally:
                            next_refresh = time.monotonic() + self._refresh_interval_s
                            with self._refresh_cond:
                                self._refreshes_done = number
                                self._refresh_cond.notify_all()
                        self._ready.set()
                    if self._receiver is not None:  # the native loop reads; map what it learned
                        self._stop.wait(self._poll_ms / 1000.0)
                        self._sync_native()
                        continue
                    events = poller.poll(self._poll_ms) if sockets else None
                    if not events:
                        if not sockets:
                            self._stop.wait(self._poll_ms / 1000.0)
                        continue
                    for sock, _ in events:
                        endpoint = by_socket.get(sock)
                        if endpoint is not None:
                            self._drain(sock, endpoint)
                except Exception as exc:  # noqa: BLE001 - the thread must survive anything
                    self._error("loop_errors", f"FPM subscriber loop error: {exc!r}")
                    self._stop.wait(self._poll_ms / 1000.0)
        finally:
            for sock in sockets.values():
                sock.close(linger=0)
            receiver, self._receiver = self._receiver, None
            if receiver is not None:
                receiver.stop()
                self._sync_native_from(receiver)
                self._fold_native(receiver)
            with self._lock:
                self._connected.clear()
            self._ready.set()

    def _sync_native_from(self, receiver: Any) -> None:
        self._receiver = receiver
        try:
            self._sync_native()
        finally:
            self._receiver = None

    def _apply_sockets(
        self,
        context: zmq.Context[Any],
        endpoints: list[EngineEndpoint],
        sockets: dict[str, zmq.Socket[Any]],
        by_socket: dict[zmq.Socket[Any], str],
        poller: zmq.Poller,
    ) -> None:
        dropped = self._apply_table(endpoints)
        for endpoint in dropped:
            sock = sockets.pop(endpoint, None)
            if sock is not None:
                poller.unregister(sock)
                by_socket.pop(sock, None)
                sock.close(linger=0)
                log.info("FPM: disconnected from %s", endpoint)
        for ep in endpoints:
            if ep.endpoint in sockets:
                continue
            sock = context.socket(zmq.SUB)
            try:
                sock.setsockopt(zmq.LINGER, 0)
                sock.setsockopt(zmq.RCVHWM, self._rcv_hwm)
                sock.setsockopt(zmq.SUBSCRIBE, b"")
                sock.connect(ep.endpoint)
            except zmq.ZMQError as exc:
                sock.close(linger=0)
                self._error("connect_errors", f"FPM: cannot connect to {ep.endpoint}: {exc}")
                continue
            sockets[ep.endpoint] = sock
            by_socket[sock] = ep.endpoint
            poller.register(sock, zmq.POLLIN)
            log.info("FPM: subscribed to %s (%s)", ep.endpoint, ep.role)
        with self._lock:
            self._connected = set(sockets)

    def _drain(self, sock: zmq.Socket[Any], endpoint: str) -> None:
        """Receive up to ``max_batch`` messages from one socket and ingest the good ones."""
        payloads: list[bytes] = []
        seqs: list[int] = []
        received = bad_frames = oversized = 0
        for _ in range(self._max_batch):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            received += 1
            if len(frames) != 3 or len(frames[1]) != SEQ_BYTES:
                bad_frames += 1
                continue
            if len(frames[2]) > self._max_payload_bytes:
                oversized += 1
                continue
            payloads.append(frames[2])
            seqs.append(int.from_bytes(frames[1], "big"))
        ingest_error: str | None = None
        with self._lock:
            c = self._counts
            c["received"] += received
            c["bad_frames"] += bad_frames
            c["oversized"] += oversized
            if endpoint in self._desired:
                self._received_by_endpoint[endpoint] = self._received_by_endpoint.get(endpoint, 0) + received
            if payloads:
                before = len(self._ingestor)
                try:
                    self._ingestor.ingest(payloads, now_s=self._clock(), seqs=seqs)
                except Exception as exc:  # noqa: BLE001 - counted, never raised out of the thread
                    ingest_error = f"FPM ingest failed for a batch of {len(payloads)} from {endpoint}: {exc!r}"
                else:
                    added = len(self._ingestor) - before
                    if added > 0:
                        self._learn_engines(endpoint, payloads, added)
        if ingest_error is not None:
            self._error("ingest_errors", ingest_error)

    def _learn_engines(self, endpoint: str, payloads: list[bytes], added: int) -> None:
        """Map the ``added`` engines this batch registered to ``endpoint`` (lock held)."""
        engines = self._engines_of.setdefault(endpoint, set())
        found = 0
        for payload in payloads:
            try:
                rec = kernels.decode_fpm(payload)
            except (FpmDecodeError, KernelError):
                continue
            key = (rec["worker_id"], rec["dp_rank"])
            if key in self._endpoint_of:
                continue
            self._endpoint_of[key] = endpoint
            engines.add(key)
            found += 1
            if found >= added:
                return
