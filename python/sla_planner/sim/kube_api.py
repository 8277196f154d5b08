"""An HTTP emulator of the Kubernetes API server for DynamoGraphDeployments and their pods.

It serves what the official ``kubernetes`` client and ``kubectl`` use here, with the API
server's semantics: discovery (``/api``, ``/apis``, ``/version``), get/list/watch/patch/create/
update/delete of ``dynamographdeployments`` (``nvidia.com/v1alpha1``, status subresource) and of
pods, JSON merge patches with ``metadata.resourceVersion`` preconditions (409 Conflict), label
selectors, watch streams (chunked JSON lines from a resource version, optional bookmarks, 410 Gone
once the history no longer reaches back) and ``Status`` error bodies. A controller
(:class:`~sla_planner.sim.kube_store.KubeStore`) makes pods and ``status`` follow the spec.

Fault switches, for tests and the sandbox: :meth:`KubeApiEmulator.forbid` (403 per verb and
resource, as RBAC answers), :meth:`~KubeApiEmulator.fail_next` (5xx), :meth:`~KubeApiEmulator.hang`
(requests that never answer), :meth:`~KubeApiEmulator.conflict_next` (a concurrent writer before
the next DGD patches), :meth:`~KubeApiEmulator.pending_forever` and
:meth:`~KubeApiEmulator.expire_watches` (:meth:`~KubeApiEmulator.reset_faults` lifts them all);
:meth:`~KubeApiEmulator.add_listener` follows every change (e.g. to run an engine per Ready pod).

Run it in a thread of its own (:meth:`~KubeApiEmulator.start` / :meth:`~KubeApiEmulator.stop`)
or inside a running event loop (:meth:`~KubeApiEmulator.astart` / :meth:`~KubeApiEmulator.astop`);
``python -m sla_planner.sim.kube_api`` runs it standalone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from ..connectors.kube_dgd import GROUP, KIND, VERSION
from .kube_resources import (
    DGDS,
    PODS,
    ApiError,
    WatchEvent,
    discovery_document,
    example_dgd,
    match_labels,
    merge_patch,
    route,
)
from .kube_faults import FaultSwitches
from .kube_store import KubeStore

__all__ = ["KubeApiEmulator", "example_dgd"]

log = logging.getLogger(__name__)

_MERGE = "application/merge-patch+json"
_STRATEGIC = "application/strategic-merge-patch+json"


@dataclass(eq=False)
class _Watcher:
    resource: str
    namespace: str | None
    selector: str | None
    queue: asyncio.Queue[WatchEvent | None]


class KubeApiEmulator:
    """The emulated API server (see the module docstring).

    ``namespace`` is where :meth:`apply_dgd` puts resources and what :meth:`write_kubeconfig`
    selects; ``token`` is a bearer token every request must carry (None: no authentication;
kubectl sends no token over plain HTTP, so set one only for clients that do). Pod timing:
    ``startup_delay_s`` from creation to Ready, ``schedule_delay_s`` to Running with an IP
    (default min(0.1, startup)), ``termination_delay_s`` from deletion to gone. ``pod_network``
    is the CIDR pod IPs come from (on Linux every 127.0.0.0/8 address is loopback, so a
    sandbox may use e.g. ``127.0.1.0/24`` and bind engines there). ``history`` bounds the watch
    history; ``bookmark_interval_s`` is how often watches that allow bookmarks get one.
    """

    def __init__(
        self,
        *,
        namespace: str = "default",
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        startup_delay_s: float = 2.0,
        schedule_delay_s: float | None = None,
        termination_delay_s: float = 0.0,
        pod_network: str = "10.244.0.0/16",
        history: int = 1000,
        bookmark_interval_s: float = 5.0,
        seed: int = 0,
    ) -> None:
        self.namespace = namespace
        self.host = host
        self.port = port
        self.token = token
        self.bookmark_interval_s = bookmark_interval_s
        self.store = KubeStore(
            startup_delay_s=startup_delay_s, schedule_delay_s=schedule_delay_s,
            termination_delay_s=termination_delay_s, pod_network=pod_network, history=history, seed=seed,
        )
        self.store.on_event.append(self._on_store_event)
        self.requests: deque[tuple[str, str, str]] = deque(maxlen=10_000)
        """The latest requests served: (verb, resource, name or '')."""
        self.faults = FaultSwitches(namespace)
        """The fault switches (see :class:`~sla_planner.sim.kube_faults.FaultSwitches`)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._watchers: set[_Watcher] = set()
        self._listeners: list[Callable[[WatchEvent], None]] = []
        self._stopping: asyncio.Event | None = None
        self._timer: asyncio.TimerHandle | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` once started."""
        return f"http://{self.host}:{self.port}"

    async def astart(self) -> KubeApiEmulator:
        """Serve from the running event loop; returns once listening."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = int(server.sockets[0].getsockname()[1])
        self._kick()
        return self

    async def astop(self) -> None:
        """Close watches, release hung requests and stop serving."""
        if self._stopping is None or self._runner is None:
            return
        self._stopping.set()
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(None)
        if self._timer is not None:
            self._timer.cancel()
        await self._runner.cleanup()
        self._runner = None

    def start(self, timeout_s: float = 10.0) -> KubeApiEmulator:
        """Serve from a thread of its own; returns once listening."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self.astart())
            except BaseException as exc:  # noqa: BLE001 - reported to the caller below
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.astop())
            loop.close()

        self._thread = threading.Thread(target=run, name="kube-api-emulator", daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s):
            raise TimeoutError(f"kube API emulator did not start within {timeout_s} s")
        if errors:
            raise errors[0]
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread started by :meth:`start`."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout_s)
        self._thread = None

    def __enter__(self) -> KubeApiEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_kubeconfig(self, path: str | os.PathLike[str], namespace: str | None = None) -> Path:
        """Write a kubeconfig for this server (atomically) and return its path."""
        user: dict[str, Any] = {"token": self.token} if self.token else {}
        doc = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "sla-planner-emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "sla-planner-emulator", "user": user}],
            "contexts": [{"name": "sla-planner-emulator", "context": {
                "cluster": "sla-planner-emulator", "user": "sla-planner-emulator",
                "namespace": namespace or self.namespace}}],
            "current-context": "sla-planner-emulator",
        }
        target = Path(path)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yaml.safe_dump(doc, fh, sort_keys=False)
        os.replace(tmp, target)
        return target

    # -- objects (thread-safe; the controller reacts at once) ----------------------------------

    def apply_dgd(self, manifest: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        """Create a DGD, or replace the spec of an existing one."""
        ns = namespace or (manifest.get("metadata") or {}).get("namespace") or self.namespace
        name = manifest["metadata"]["name"]
        with self.store.lock:
            if (DGDS, ns, name) in self.store.objects:
                current = self.store.get(DGDS, ns, name)
                current["spec"] = manifest.get("spec", {})
                return self.store.update(DGDS, ns, name, current)
            return self.store.create(DGDS, ns, manifest)

    def dgd(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        """The DGD as stored now."""
        return self.store.get(DGDS, namespace or self.namespace, name)

    def scale(self, name: str, service: str, replicas: int, namespace: str | None = None) -> dict[str, Any]:
        """Set a service's replicas directly (another writer than the planner)."""
        patch = {"spec": {"services": {service: {"replicas": replicas}}}}
        return self.store.patch(DGDS, namespace or self.namespace, name, patch)

    def pods(self, dgd: str | None = None, service: str | None = None, namespace: str | None = None) -> list[dict[str, Any]]:
        """Pods (of one DGD / service when given), oldest name first."""
        selector = ",".join(
            f"{k}={v}" for k, v in (("nvidia.com/dynamo-graph-deployment-name", dgd),
                                    ("nvidia.com/dynamo-component", service)) if v
        )
        return self.store.list_objects(PODS, namespace or self.namespace, selector)[0]

    # -- fault switches ------------------------------------------------------------------------

    def forbid(self, verb: str, resource: str = "*") -> None:
        """Answer ``verb`` on ``resource`` (``pods``, ``dynamographdeployments``, ``*``) with 403."""
        self.faults.forbid(verb, resource)

    def allow(self, verb: str | None = None, resource: str | None = None) -> None:
        """Lift :meth:`forbid` rules (all when no argument is given)."""
        self.faults.allow(verb, resource)

    def fail_next(self, status: int = 500, count: int = 1, verb: str | None = None, resource: str | None = None) -> None:
        """Answer the next ``count`` matching requests with HTTP ``status``."""
        self.faults.fail_next(status, count, verb, resource)

    def hang(self, verb: str = "*", resource: str = "*") -> None:
        """Matching requests get no answer until :meth:`release` (or stop)."""
        self.faults.hang(verb, resource)

    def release(self) -> None:
        """Answer hung requests and stop hanging new ones."""
        self.faults.release()

    def conflict_next(self, count: int = 1, patch: dict[str, Any] | None = None) -> None:
        """Before each of the next ``count`` DGD patches, another writer merge-patches the DGD
        (``patch``; default: an annotation), so a patch with a resourceVersion precondition gets 409."""
        self.faults.conflict_next(count, patch)

    def reset_faults(self) -> None:
        """Lift every fault switch: forbids, pending failures, hangs, conflicts, pending pods."""
        self.faults.reset()
        for service in list(self.store.settings.pending_forever):
            self.store.set_pending_forever(False, service)
        self._wake()

    def pending_forever(self, on: bool = True, service: str = "*") -> None:
        """New pods of ``service`` (``*``: all) stay Pending (unschedulable) while on."""
        self.store.set_pending_forever(on, service)
        self._wake()

    def _wake(self) -> None:
        """Have the controller re-plan its timer (after a change made outside the loop)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._kick)

    def expire_watches(self) -> None:
        """Compact the history and end every open watch: resuming from an older version gets 410."""
        self.store.compact()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._end_watches)

    def _end_watches(self) -> None:
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(None)

    # -- controller timer and watch fan-out ----------------------------------------------------

    def _on_store_event(self, event: WatchEvent) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._fan_out, event)

    def _fan_out(self, event: WatchEvent) -> None:
        for watcher in list(self._watchers):
            if watcher.resource == event.resource and watcher.namespace in (None, event.namespace):
                watcher.queue.put_nowait(event)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the controller
                log.exception("kube API emulator listener failed on %s %s", event.type, event.resource)
        self._kick()

    def add_listener(self, callback: Callable[[WatchEvent], None]) -> None:
        """Call ``callback(event)`` for every change (pods and DGDs), on the emulator's event loop,
        in order (e.g. to start a simulated engine when its pod turns Ready)."""
        self._listeners.append(callback)

    def _kick(self) -> None:
        """Reconcile now and schedule the next timed pod transition."""
        if self._stopping is not None and self._stopping.is_set():
            return
        delay = self.store.reconcile()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if delay is not None and self._loop is not None:
            self._timer = self._loop.call_later(delay + 0.001, self._kick)

    # -- HTTP ----------------------------------------------------------------------------------

    @staticmethod
    def _json(body: Any, status: int = 200) -> web.Response:
        return web.Response(text=json.dumps(body), status=status, content_type="application/json")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._json(ApiError(401, "Unauthorized", "Unauthorized").status(), 401)
        parts = [p for p in request.path.split("/") if p]
        static = discovery_document(parts)
        if static is not None:
            return self._json(static)
        target = route(parts)
        if target is None:
            missing = ApiError(404, "NotFound", f"the server could not find the requested resource ({request.path})")
            return self._json(missing.status(), 404)
        resource, namespace, name, sub = target
        watch = request.query.get("watch") in ("true", "1")
        verb = {
            "GET": "watch" if watch else ("get" if name else "list"), "PATCH": "patch", "POST": "create",
            "PUT": "update", "DELETE": "delete",
        }.get(request.method, request.method.lower())
        assert self._stopping is not None
        self.requests.append((verb, resource, name or ""))
        while self.faults.hanging(verb, resource) and not self._stopping.is_set():
            await asyncio.sleep(0.05)
        fault = self.faults.answer(verb, resource, name or "", namespace)
        if fault is not None:
            return self._json(fault.status(), fault.code)
        try:
            if verb == "watch":
                return await self._watch(request, resource, namespace)
            return self._json(await self._serve(request, verb, resource, namespace, name, sub))
        except ApiError as err:
            return self._json(err.status(), err.code)
        except Exception as exc:  # noqa: BLE001 - answer like an API server, never a bare 500 page
            log.exception("kube API emulator: %s %s failed", request.method, request.path)
            return self._json(ApiError(500, "InternalError", f"emulator error: {exc!r}").status(), 500)

    async def _serve(
        self, request: web.Request, verb: str, resource: str, namespace: str | None, name: str | None, sub: str | None
    ) -> dict[str, Any]:
        store = self.store
        if sub not in (None, "status") or (sub == "status" and resource != DGDS):
            raise ApiError(404, "NotFound", f"subresource {sub!r} not found")
        if verb == "list":
            items, rv = store.list_objects(resource, namespace, request.query.get("labelSelector"))
            kind = "PodList" if resource == PODS else f"{KIND}List"
            api = "v1" if resource == PODS else f"{GROUP}/{VERSION}"
            return {"kind": kind, "apiVersion": api, "metadata": {"resourceVersion": str(rv)}, "items": items}
        if namespace is None:
            raise ApiError(404, "NotFound", "namespaced resources need a namespace")
        if verb == "create":
            return store.create(resource, namespace, await self._body(request))
        assert name is not None
        if verb == "get":
            return store.get(resource, namespace, name)
        if verb == "delete":
            return store.delete(resource, namespace, name)
        if verb == "update":
            return store.update(resource, namespace, name, await self._body(request))
        if verb != "patch":
            raise ApiError(405, "MethodNotAllowed", f"{request.method} is not supported")
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
        if ctype != _MERGE and not (ctype == _STRATEGIC and resource == PODS):
            raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                           f"accepted media types include: {_MERGE}" + (f", {_STRATEGIC}" if resource == PODS else ""))
        body = await self._body(request)
        if resource == DGDS and sub is None:
            conflict, writer = self.faults.take_conflict()
            if conflict:
                mark = {"metadata": {"annotations": {"emulator/concurrent-writer": str(store.rv)}}}
                store.patch(DGDS, namespace, name, merge_patch(mark, writer or {}))
        return store.patch(resource, namespace, name, body, status=sub == "status")

    @staticmethod
    async def _body(request: web.Request) -> Any:
        try:
            return json.loads(await request.text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, "BadRequest", f"the request body is not JSON: {exc}") from None

    async def _watch(self, request: web.Request, resource: str, namespace: str | None) -> web.StreamResponse:
        assert self._stopping is not None
        selector = request.query.get("labelSelector")
        raw_rv = request.query.get("resourceVersion") or "0"
        bookmarks = request.query.get("allowWatchBookmarks") in ("true", "1")
        try:
            timeout_s = float(request.query.get("timeoutSeconds") or 1800)
            since = int(raw_rv)
        except ValueError:
            raise ApiError(400, "BadRequest", f"invalid resourceVersion or timeoutSeconds: {raw_rv!r}") from None
        watcher = _Watcher(resource, namespace, selector, asyncio.Queue())
        last = since
        gone: ApiError | None = None
        with self.store.lock:
            try:
                backlog: list[tuple[str, dict[str, Any], int]] = []
                if since == 0:
                    items, last = self.store.list_objects(resource, namespace, selector)
                    backlog = [("ADDED", o, last) for o in items]
                else:
                    backlog = [(e.type, e.obj, e.rv) for e in self.store.events_since(resource, namespace, since)]
            except ApiError as err:
                gone = err
            self._watchers.add(watcher)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            if gone is not None:
                await self._send(response, "ERROR", gone.status())
                return response
            for kind, obj, rv in backlog:
                if match_labels(selector, obj["metadata"].get("labels") or {}):
                    await self._send(response, kind, obj)
                last = max(last, rv)
            while not self._stopping.is_set():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                wait = min(remaining, self.bookmark_interval_s) if bookmarks else remaining
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), wait)
                except asyncio.TimeoutError:
                    if bookmarks and loop.time() < deadline:
                        await self._send(response, "BOOKMARK", {
                            "kind": "Pod" if resource == PODS else KIND,
                            "apiVersion": "v1" if resource == PODS else f"{GROUP}/{VERSION}",
                            "metadata": {"resourceVersion": str(self.store.rv)}})
                    continue
                if event is None:
                    break
                if event.rv <= last:
                    continue
                last = event.rv
                if match_labels(selector, event.obj["metadata"].get("labels") or {}):
                    await self._send(response, event.type, event.obj)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._watchers.discard(watcher)
        return response

    @staticmethod
    async def _send(response: web.StreamResponse, kind: str, obj: dict[str, Any]) -> None:
        await response.write((json.dumps({"type": kind, "object": obj}) + "\n").encode())


def main(argv: list[str] | None = None) -> int:
    """``python -m sla_planner.sim.kube_api``: serve until interrupted."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sla_planner.sim.kube_api", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--kubeconfig", required=True, help="where to write a kubeconfig for this server")
    parser.add_argument("--dgd", action="append", default=[], help="a DGD manifest (YAML/JSON) to create; repeatable")
    parser.add_argument("--example-dgd", metavar="NAME", help="create an example disaggregated DGD with this name")
    parser.add_argument("--startup-delay", type=float, default=2.0, help="seconds from pod creation to Ready")
    args = parser.parse_args(argv)
    emulator = KubeApiEmulator(namespace=args.namespace, port=args.port, startup_delay_s=args.startup_delay)
    manifests: list[dict[str, Any]] = []
    for path in args.dgd:
        try:
            doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            parser.exit(2, f"error: --dgd {path}: {exc}\n")
        if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict) or "name" not in doc["metadata"]:
            parser.exit(2, f"error: --dgd {path}: not a manifest with metadata.name\n")
        manifests.append(doc)
    if args.example_dgd:
        manifests.append(example_dgd(args.example_dgd))
    emulator.start()
    try:
        for manifest in manifests:
            emulator.apply_dgd(manifest)
        emulator.write_kubeconfig(args.kubeconfig)
        print(f"kube API emulator at {emulator.url}; kubeconfig {args.kubeconfig}", flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
