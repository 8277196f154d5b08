"""Engine discovery from Kubernetes: the FPM endpoints of a DynamoGraphDeployment's engine pods.

A background thread lists the DGD's pods (label ``nvidia.com/dynamo-graph-deployment-name``) and
watches them from the list's resource version, resuming after each server timeout and listing
afresh after 410 Gone or an error (with backoff). :meth:`KubePodDiscovery.poll` answers from
that cache and never raises: one :class:`~sla_planner.signals.discovery.EngineEndpoint` per
Running, Ready pod of an engine service and per data-parallel rank,
``tcp://POD_IP:(DYN_FORWARDPASS_METRIC_PORT + rank)`` (port from the main container's env,
default 20380; data-parallel size from its ``--data-parallel-size``/``--dp-size`` argument, or
``dp_size``), with the service's role and the pod name as ``instance``. Pods that leave or stop
being Ready drop out of the set, and the FPM subscriber drops their engines.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..connectors.kube_dgd import LABEL_DGD, PodView, pod_view
from ..errors import ConfigError
from .discovery import ROLES, EngineEndpoint

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = ["KubePodDiscovery"]

log = logging.getLogger(__name__)


class KubePodDiscovery:
    """Watched pods of one DGD -> engine endpoints (see the module docstring).

    ``roles`` maps service name -> role (``prefill``/``decode``/``agg``), or is a callable
    returning that map (the connector's resolved services); a pod of a service it does not
    name gets its role from its ``nvidia.com/dynamo-sub-component-type`` label, else is not an
    engine. ``dp_size`` overrides the data-parallel size read from each pod. The thread starts
    on :meth:`start` or the first :meth:`poll`; :meth:`stop` ends it.
    """

    def __init__(
        self,
        api_client: ApiClient,
        *,
        namespace: str,
        dgd_name: str,
        roles: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
        dp_size: int | None = None,
        request_timeout_s: float = 10.0,
        watch_timeout_s: float = 60.0,
        backoff_s: tuple[float, float] = (0.5, 15.0),
    ) -> None:
        from kubernetes import client

        if dp_size is not None and (isinstance(dp_size, bool) or not isinstance(dp_size, int) or dp_size < 1):
            raise ConfigError(f"dp_size: must be an integer >= 1, got {dp_size!r}")
        if not request_timeout_s > 0 or not watch_timeout_s >= 1:
            raise ConfigError("request_timeout_s must be > 0 and watch_timeout_s >= 1")
        self.namespace = namespace
        self.dgd_name = dgd_name
        self.dp_size = dp_size
        self.request_timeout_s = float(request_timeout_s)
        self.watch_timeout_s = float(watch_timeout_s)
        self.backoff_s = backoff_s
        self.selector = f"{LABEL_DGD}={dgd_name}"
        self.last_error: str | None = None
        """The last list/watch failure (None after a good list)."""
        self.counters = {"lists": 0, "watches": 0, "events": 0, "expired": 0, "errors": 0}
        self._roles = roles
        self._core = client.CoreV1Api(api_client)
        self._pods: dict[str, PodView] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: Any = None
        self._warned: set[tuple[str, str]] = set()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> KubePodDiscovery:
        """Start the list/watch thread (idempotent)."""
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="kube-pod-discovery", daemon=True)
                self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the watch and the thread (waits up to ``timeout_s``)."""
        self._stop.set()
        watch = self._watch
        if watch is not None:
            watch.stop()
        thread = self._thread
        if thread is not None and timeout_s > 0:
            thread.join(timeout_s)

    close = stop

    def wait_synced(self, timeout_s: float) -> bool:
        """Whether the first list arrived within ``timeout_s`` (starts the thread)."""
        self.start()
        return self._synced.wait(timeout_s)

    # -- the Discovery protocol ----------------------------------------------------------------

    def pods(self) -> list[PodView]:
        """The DGD's pods as last seen."""
        with self._lock:
            return list(self._pods.values())

    def _role_map(self) -> Mapping[str, str]:
        roles = self._roles
        if roles is None:
            return {}
        try:
            return roles() if callable(roles) else roles
        except Exception as exc:  # noqa: BLE001 - a bad resolver must not break poll
            self._warn("roles", f"role map failed: {exc}")
            return {}

    def _warn(self, key: str, message: str) -> None:
        if (key, message) not in self._warned:
            self._warned.add((key, message))
            log.warning("%s", message)

    def poll(self) -> list[EngineEndpoint]:
        """The endpoints of serving engine pods now (never raises; see ``last_error``)."""
        self.start()
        roles = self._role_map()
        out: list[EngineEndpoint] = []
        for pod in sorted(self.pods(), key=lambda p: p.name):
            role = roles.get(pod.service or "") or (pod.sub_component or "").lower()
            if role not in ROLES or not pod.serving or pod.ip is None:
                continue
            for problem in pod.problems:
                self._warn(pod.name, f"pod {self.namespace}/{pod.name}: {problem}")
            host = f"[{pod.ip}]" if ":" in pod.ip else pod.ip
            ranks = self.dp_size or pod.dp_size
            if pod.fpm_port + ranks - 1 > 65535:
                self._warn(pod.name, f"pod {pod.name}: FPM ports {pod.fpm_port}+{ranks} ranks pass 65535; skipped")
                continue
            try:
                out.extend(
                    EngineEndpoint(f"tcp://{host}:{pod.fpm_port + rank}", role, instance=pod.name)  # type: ignore[arg-type]
                    for rank in range(ranks)
                )
            except ConfigError as exc:
                self._warn(pod.name, f"pod {pod.name}: {exc}")
        return out

    # -- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        failures = 0
        while not self._stop.is_set():
            try:
                rv = self._list()
                failures = 0
                while not self._stop.is_set():
                    rv = self._watch_once(watch.Watch(), rv)
            except ApiException as exc:
                if self._stop.is_set():
                    return
                if exc.status == 410:
                    self.counters["expired"] += 1
                    log.info("pod watch of %s expired (410); listing again", self.selector)
                    continue
                failures += 1
                self._fail(f"pods of {self.dgd_name}: HTTP {exc.status}: {exc.reason}", failures)
            except Exception as exc:  # noqa: BLE001 - the thread must survive any client failure
                if self._stop.is_set():
                    return
                failures += 1
                self._fail(f"pods of {self.dgd_name}: {type(exc).__name__}: {exc}", failures)

    def _fail(self, message: str, failures: int) -> None:
        self.counters["errors"] += 1
        if message != self.last_error:
            log.warning("kubernetes discovery: %s", message)
        self.last_error = message
        low, high = self.backoff_s
        self._stop.wait(min(high, low * 2 ** (failures - 1)))

    def _list(self) -> str:
        resp: Any = self._core.list_namespaced_pod(
            self.namespace, label_selector=self.selector, _preload_content=False,
            _request_timeout=self.request_timeout_s,
        )
        data = json.loads(resp.data)
        pods = {}
        for item in data.get("items") or []:
            if isinstance(item, dict):
                view = pod_view(item)
                pods[view.name] = view
        with self._lock:
            self._pods = pods
        self.counters["lists"] += 1
        self.last_error = None
        self._synced.set()
        return str((data.get("metadata") or {}).get("resourceVersion") or "")

    def _watch_once(self, w: Any, rv: str) -> str:
        """One watch from ``rv`` until the server ends it; the last resource version seen."""
        self._watch = w
        self.counters["watches"] += 1
        try:
            stream = w.stream(
                self._core.list_namespaced_pod, self.namespace, label_selector=self.selector,
                resource_version=rv, timeout_seconds=int(self.watch_timeout_s), allow_watch_bookmarks=True,
                _request_timeout=(self.request_timeout_s, self.watch_timeout_s + self.request_timeout_s),
            )
            for event in stream:
                if self._stop.is_set():
                    break
                raw = event.get("raw_object")
                if not isinstance(raw, dict):
                    continue
                rv = str((raw.get("metadata") or {}).get("resourceVersion") or rv)
                kind = event.get("type")
                if kind == "BOOKMARK":
                    continue
                view = pod_view(raw)
                self.counters["events"] += 1
                with self._lock:
                    if kind == "DELETED":
                        self._pods.pop(view.name, None)
                    else:
                        self._pods[view.name] = view
        finally:
            self._watch = None
        return rv

