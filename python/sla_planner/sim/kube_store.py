"""The object store behind the Kubernetes API emulator: resource versions, watch history, merge
patches with preconditions, label selectors, and a controller that makes DynamoGraphDeployment
pods follow ``spec.services.<name>.replicas``.

Pods live through Pending -> Running (with an IP) -> Ready after configurable delays (or stay
Pending and unschedulable while ``pending_forever`` holds their service); scaling down deletes
pods in the order the ReplicaSet controller ranks them (unscheduled, pending, not ready, lower
``controller.kubernetes.io/pod-deletion-cost``, newer first). The DGD's ``status.services`` and
``Ready`` condition follow the pods. Thread-safe: every public method takes the store lock;
``on_event`` callbacks run under it and must only hand the event on.
"""

from __future__ import annotations

import copy
import ipaddress
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..connectors.kube_dgd import (
    DELETION_COST,
    GROUP,
    KIND,
    LABEL_COMPONENT,
    LABEL_DGD,
    LABEL_SUB_COMPONENT,
    VERSION,
)
from .kube_resources import DGDS, LABEL_COMPONENT_TYPE, PODS, ApiError, WatchEvent, match_labels, merge_patch, rfc3339

__all__ = ["KubeStore"]


@dataclass
class _PodClock:
    created_s: float
    scheduled_at: float | None
    ready_at: float | None
    gone_at: float | None = None
    ready_since: float | None = None


@dataclass
class _Settings:
    startup_delay_s: float
    schedule_delay_s: float
    termination_delay_s: float
    pending_forever: set[str] = field(default_factory=set)
    """Service names (``*`` = every service) whose new pods stay Pending."""


class KubeStore:
    """DGDs and pods, resource versions, a bounded event history and the pod controller."""

    def __init__(
        self,
        *,
        startup_delay_s: float = 2.0,
        schedule_delay_s: float | None = None,
        termination_delay_s: float = 0.0,
        pod_network: str = "10.244.0.0/16",
        history: int = 1000,
        clock: Callable[[], float] = time.time,
        seed: int = 0,
    ) -> None:
        schedule = min(0.1, startup_delay_s) if schedule_delay_s is None else schedule_delay_s
        if min(startup_delay_s, schedule, termination_delay_s) < 0 or schedule > startup_delay_s:
            raise ValueError("delays must be >= 0 and schedule_delay_s <= startup_delay_s")
        self.lock = threading.RLock()
        self.settings = _Settings(startup_delay_s, schedule, termination_delay_s)
        self.clock = clock
        self.rv = 1
        self.oldest_rv = 1
        """Watches may resume from this resource version or later (older: 410 Gone)."""
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.events: deque[WatchEvent] = deque(maxlen=history)
        self.on_event: list[Callable[[WatchEvent], None]] = []
        self._clocks: dict[tuple[str, str], _PodClock] = {}
        self._rng = random.Random(seed)
        self._ips = (str(ip) for ip in ipaddress.ip_network(pod_network).hosts())

    # -- objects -------------------------------------------------------------------------------

    def _record(self, kind: str, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        key = (resource, obj["metadata"]["namespace"], obj["metadata"]["name"])
        if kind == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj
        if len(self.events) == self.events.maxlen:
            self.oldest_rv = self.events[0].rv
        event = WatchEvent(self.rv, kind, resource, key[1], copy.deepcopy(obj))
        self.events.append(event)
        for callback in list(self.on_event):
            callback(event)
        return copy.deepcopy(obj)

    def _find(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        obj = self.objects.get((resource, namespace, name))
        if obj is None:
            noun = f"{resource}.{GROUP}" if resource == DGDS else resource
            raise ApiError(404, "NotFound", f'{noun} "{name}" not found', {"name": name, "kind": resource})
        return obj

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        """A copy of one object (ApiError 404 when absent)."""
        with self.lock:
            return copy.deepcopy(self._find(resource, namespace, name))

    def list_objects(self, resource: str, namespace: str | None, selector: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """Objects of ``resource`` (one namespace or all) matching the label selector, and the rv."""
        with self.lock:
            items = [
                copy.deepcopy(o) for (r, ns, _), o in sorted(self.objects.items())
                if r == resource and namespace in (None, ns) and match_labels(selector, o["metadata"].get("labels") or {})
            ]
            return items, self.rv

    def events_since(self, resource: str, namespace: str | None, rv: int) -> list[WatchEvent]:
        """Events after ``rv``; ApiError 410 when history no longer reaches back to it."""
        with self.lock:
            if rv < self.oldest_rv:
                raise ApiError(410, "Expired", f"too old resource version: {rv} ({self.oldest_rv})")
            return [e for e in self.events if e.rv > rv and e.resource == resource and namespace in (None, e.namespace)]

    def compact(self) -> None:
        """Forget the event history and move past every version handed out so far: watches
        resuming from any of them get 410 Gone (a list gives a version to watch from)."""
        with self.lock:
            self.events.clear()
            self.rv += 1
            self.oldest_rv = self.rv

    def create(self, resource: str, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create an object (409 AlreadyExists when it exists); a DGD is reconciled at once."""
        with self.lock:
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            name = meta.get("name")
            if not isinstance(name, str) or not name:
                raise ApiError(422, "Invalid", "metadata.name: Required value")
            if (resource, namespace, name) in self.objects:
                raise ApiError(409, "AlreadyExists", f'{resource} "{name}" already exists', {"name": name})
            if resource == DGDS:
                self._validate_dgd(obj)
                obj.setdefault("apiVersion", f"{GROUP}/{VERSION}")
                obj.setdefault("kind", KIND)
                obj.setdefault("status", {})
                meta["generation"] = 1
            meta.update(namespace=namespace, uid=str(uuid.UUID(int=self._rng.getrandbits(128))),
                        creationTimestamp=rfc3339(self.clock()))
            out = self._record("ADDED", resource, obj)
            self.reconcile()
            return out

    def patch(self, resource: str, namespace: str, name: str, patch: Any, *, status: bool = False) -> dict[str, Any]:
        """Merge-patch an object. ``metadata.resourceVersion`` in the patch is a precondition
        (409 Conflict when stale); the main resource ignores ``status`` and the status
        subresource (``status=True``) changes only ``status``, as for a CRD with a status subresource."""
        with self.lock:
            if not isinstance(patch, dict):
                raise ApiError(400, "BadRequest", "the patch must be a JSON object")
            current = self._find(resource, namespace, name)
            want_rv = (patch.get("metadata") or {}).get("resourceVersion") if isinstance(patch.get("metadata"), dict) else None
            if want_rv is not None and str(want_rv) != current["metadata"]["resourceVersion"]:
                noun = f"{resource}.{GROUP}" if resource == DGDS else resource
                raise ApiError(
                    409, "Conflict",
                    f'Operation cannot be fulfilled on {noun} "{name}": the object has been modified; '
                    "please apply your changes to the latest version and try again",
                    {"name": name, "kind": resource},
                )
            return self._replace(resource, current, merge_patch(current, patch), status=status)

    def update(self, resource: str, namespace: str, name: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Replace an object (PUT); its ``metadata.resourceVersion``, when given, must be current."""
        with self.lock:
            current = self._find(resource, namespace, name)
            want_rv = (obj.get("metadata") or {}).get("resourceVersion")
            if want_rv is not None and str(want_rv) != current["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {resource} "{name}": '
                               "the object has been modified", {"name": name})
            return self._replace(resource, current, copy.deepcopy(obj), status=False)

    def _replace(self, resource: str, current: dict[str, Any], new: dict[str, Any], *, status: bool) -> dict[str, Any]:
        meta = current["metadata"]
        new_meta: dict[str, Any] = new["metadata"] if isinstance(new.get("metadata"), dict) else {}
        for immutable in ("name", "namespace", "uid", "creationTimestamp", "generation", "deletionTimestamp"):
            if immutable in meta:
                new_meta[immutable] = meta[immutable]
        new["metadata"] = new_meta
        if status:
            new = {**copy.deepcopy(current), "status": new.get("status", {})}
        else:
            new["status"] = copy.deepcopy(current.get("status", {}))
            if resource == PODS:
                new["spec"] = copy.deepcopy(current.get("spec", {}))
        if resource == DGDS and not status:
            self._validate_dgd(new)
            if new.get("spec") != current.get("spec"):
                new_meta["generation"] = int(meta.get("generation", 1)) + 1
        if new == current:
            return copy.deepcopy(current)
        out = self._record("MODIFIED", resource, new)
        self.reconcile()
        return out

    def delete(self, resource: str, namespace: str, name: str) -> dict[str, Any]:
        """Delete an object (a DGD's pods go with it)."""
        with self.lock:
            obj = self._find(resource, namespace, name)
            out = self._record("DELETED", resource, copy.deepcopy(obj))
            self.reconcile()
            return out

    @staticmethod
    def _validate_dgd(obj: dict[str, Any]) -> None:
        services = (obj.get("spec") or {}).get("services") if isinstance(obj.get("spec"), dict) else None
        if services is None:
            return
        if not isinstance(services, dict):
            raise ApiError(422, "Invalid", "spec.services: Invalid value: must be an object")
        for name, svc in services.items():
            replicas = svc.get("replicas") if isinstance(svc, dict) else None
            if replicas is not None and (isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0):
                raise ApiError(422, "Invalid", f"spec.services.{name}.replicas: Invalid value: {replicas!r}: "
                               "must be an integer >= 0")

    # -- the controller ------------------------------------------------------------------------

    def set_pending_forever(self, on: bool, service: str = "*") -> None:
        """New (and still pending) pods of ``service`` (``*``: all) stay Pending while on."""
        with self.lock:
            if on:
                self.settings.pending_forever.add(service)
            else:
                self.settings.pending_forever.discard(service)
                now = self.clock()
                for (ns, pod_name), clk in self._clocks.items():
                    pod = self.objects.get((PODS, ns, pod_name))
                    labels = (pod or {}).get("metadata", {}).get("labels") or {}
                    if clk.scheduled_at is None and clk.gone_at is None and not self._held(labels.get(LABEL_COMPONENT, "")):
                        clk.scheduled_at = now + self.settings.schedule_delay_s
                        clk.ready_at = now + self.settings.startup_delay_s
            self.reconcile()

    def _held(self, service: str) -> bool:
        return bool({"*", service} & self.settings.pending_forever)

    def reconcile(self) -> float | None:
        """Bring pods and DGD status up to date now; seconds until the next timed change (or None)."""
        with self.lock:
            now = self.clock()
            dgds = [o for (r, _, _), o in list(self.objects.items()) if r == DGDS]
            wanted: set[tuple[str, str, str]] = set()
            for dgd in dgds:
                ns, name = dgd["metadata"]["namespace"], dgd["metadata"]["name"]
                services = (dgd.get("spec") or {}).get("services") or {}
                for svc_name, svc in services.items():
                    if isinstance(svc, dict):
                        wanted.add((ns, name, svc_name))
                        self._scale_service(dgd, svc_name, svc, now)
            for (r, ns, pod_name), pod in list(self.objects.items()):
                labels = pod["metadata"].get("labels") or {}
                owner = (ns, labels.get(LABEL_DGD, ""), labels.get(LABEL_COMPONENT, ""))
                if r == PODS and owner not in wanted and not pod["metadata"].get("deletionTimestamp"):
                    self._start_deleting(ns, pod_name, now)
            self._advance_pods(now)
            for dgd in dgds:
                self._update_status(dgd)
            times = [
                t for c in self._clocks.values()
                for t in (c.scheduled_at, c.ready_at, c.gone_at) if t is not None and t > now
            ]
            return max(min(times) - now, 0.0) if times else None

    def _service_pods(self, ns: str, dgd: str, service: str) -> list[dict[str, Any]]:
        return [
            o for (r, n, _), o in self.objects.items()
            if r == PODS and n == ns and (o["metadata"].get("labels") or {}).get(LABEL_DGD) == dgd
            and o["metadata"]["labels"].get(LABEL_COMPONENT) == service
        ]

    def _scale_service(self, dgd: dict[str, Any], svc_name: str, svc: dict[str, Any], now: float) -> None:
        ns, name = dgd["metadata"]["namespace"], dgd["metadata"]["name"]
        replicas = svc.get("replicas", 1)
        live = [p for p in self._service_pods(ns, name, svc_name) if not p["metadata"].get("deletionTimestamp")]
        for _ in range(replicas - len(live)):
            self._create_pod(dgd, svc_name, svc, now)
        if len(live) > replicas:
            for pod in sorted(live, key=lambda p: self._deletion_rank(p))[: len(live) - replicas]:
                self._start_deleting(ns, pod["metadata"]["name"], now)

    def _deletion_rank(self, pod: dict[str, Any]) -> tuple[Any, ...]:
        """Smaller goes first, as the ReplicaSet controller ranks pods to delete."""
        phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(pod["status"].get("phase", ""), 3)
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in pod["status"].get("conditions", []))
        raw = (pod["metadata"].get("annotations") or {}).get(DELETION_COST, "0")
        try:
            cost = int(raw)
        except ValueError:
            cost = 0
        clk = self._clocks.get((pod["metadata"]["namespace"], pod["metadata"]["name"]))
        ready_since = clk.ready_since if clk and clk.ready_since is not None else 0.0
        created = clk.created_s if clk else 0.0
        return (bool(pod["spec"].get("nodeName")), phase_rank, ready, cost, -ready_since, -created, pod["metadata"]["name"])

    def _create_pod(self, dgd: dict[str, Any], svc_name: str, svc: dict[str, Any], now: float) -> None:
        ns, name = dgd["metadata"]["namespace"], dgd["metadata"]["name"]
        suffix = "".join(self._rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
        pod_name = f"{name}-{svc_name.lower()}-{suffix}"
        main = ((svc.get("extraPodSpec") or {}).get("mainContainer") or {}) if isinstance(svc.get("extraPodSpec"), dict) else {}
        env = [
            e for e in [*(dgd["spec"].get("envs") or []), *(svc.get("envs") or []), *(main.get("env") or [])]
            if isinstance(e, dict) and "name" in e
        ]
        limits = ((svc.get("resources") or {}).get("limits") or {}) if isinstance(svc.get("resources"), dict) else {}
        container: dict[str, Any] = {"name": "main", "image": main.get("image", "dynamo-worker:emulated"), "env": env}
        for key in ("command", "args"):
            if isinstance(main.get(key), list):
                container[key] = list(main[key])
        if limits.get("gpu"):
            container["resources"] = {"limits": {limits.get("gpuType") or "nvidia.com/gpu": str(limits["gpu"])}}
        labels = {LABEL_DGD: name, LABEL_COMPONENT: svc_name, LABEL_COMPONENT_TYPE: str(svc.get("componentType") or "worker")}
        if svc.get("subComponentType"):
            labels[LABEL_SUB_COMPONENT] = str(svc["subComponentType"])
        labels.update({str(k): str(v) for k, v in ((svc.get("extraPodMetadata") or {}).get("labels") or {}).items()})
        held = self._held(svc_name)
        s = self.settings
        self._clocks[(ns, pod_name)] = _PodClock(
            now, None if held else now + s.schedule_delay_s, None if held else now + s.startup_delay_s
        )
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name, "namespace": ns, "labels": labels, "annotations": {},
                "uid": str(uuid.UUID(int=self._rng.getrandbits(128))), "creationTimestamp": rfc3339(now),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{name}-{svc_name.lower()}",
                                     "uid": dgd["metadata"]["uid"], "controller": True}],
            },
            "spec": {"containers": [container], "restartPolicy": "Always"},
            "status": {"phase": "Pending", "qosClass": "BestEffort", "conditions": []},
        }
        self._record("ADDED", PODS, pod)

    def _start_deleting(self, ns: str, pod_name: str, now: float) -> None:
        pod = copy.deepcopy(self.objects[(PODS, ns, pod_name)])
        clk = self._clocks.setdefault((ns, pod_name), _PodClock(now, None, None))
        clk.gone_at = now + self.settings.termination_delay_s
        if clk.gone_at <= now:
            self._clocks.pop((ns, pod_name), None)
            self._record("DELETED", PODS, pod)
            return
        pod["metadata"]["deletionTimestamp"] = rfc3339(clk.gone_at)
        pod["status"]["conditions"] = [
            {**c, "status": "False"} if c.get("type") in ("Ready", "ContainersReady") else c
            for c in pod["status"].get("conditions", [])
        ]
        self._record("MODIFIED", PODS, pod)

    def _advance_pods(self, now: float) -> None:
        for (r, ns, pod_name), stored in list(self.objects.items()):
            clk = self._clocks.get((ns, pod_name))
            if r != PODS or clk is None:
                continue
            if clk.gone_at is not None:
                if now >= clk.gone_at:
                    self._clocks.pop((ns, pod_name), None)
                    self._record("DELETED", PODS, copy.deepcopy(stored))
                continue
            pod = copy.deepcopy(stored)
            service = (pod["metadata"].get("labels") or {}).get(LABEL_COMPONENT, "")
            status = pod["status"]
            stamp = rfc3339(now)
            if status["phase"] == "Pending" and (clk.scheduled_at is None or self._held(service)):
                clk.scheduled_at = clk.ready_at = None
                if not status["conditions"]:
                    status["conditions"] = [{
                        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                        "lastTransitionTime": stamp, "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.",
                    }]
            elif clk.scheduled_at is not None and now >= clk.scheduled_at and status["phase"] == "Pending":
                pod["spec"]["nodeName"] = "emulated-node-0"
                status.update(phase="Running", podIP=next(self._ips), hostIP="192.0.2.10", startTime=stamp)
                status["conditions"] = [
                    {"type": t, "status": v, "lastTransitionTime": stamp}
                    for t, v in (("PodScheduled", "True"), ("Initialized", "True"), ("ContainersReady", "False"), ("Ready", "False"))
                ]
            if status["phase"] == "Running" and clk.ready_at is not None and now >= clk.ready_at and clk.ready_since is None:
                clk.ready_since = now
                for cond in status["conditions"]:
                    if cond["type"] in ("ContainersReady", "Ready"):
                        cond.update(status="True", lastTransitionTime=stamp)
            if pod != stored:
                self._record("MODIFIED", PODS, pod)

    def _update_status(self, dgd: dict[str, Any]) -> None:
        ns, name = dgd["metadata"]["namespace"], dgd["metadata"]["name"]
        services = (dgd.get("spec") or {}).get("services") or {}
        out: dict[str, Any] = {}
        all_ready = True
        for svc_name, svc in services.items():
            pods = self._service_pods(ns, name, svc_name)
            live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            ready = sum(
                any(c.get("type") == "Ready" and c.get("status") == "True" for c in p["status"].get("conditions", []))
                for p in live
            )
            want = svc.get("replicas", 1) if isinstance(svc, dict) else 0
            all_ready &= ready == want and len(pods) == want
            out[svc_name] = {
                "componentKind": "Deployment", "componentName": f"{name}-{svc_name.lower()}",
                "replicas": len(live), "updatedReplicas": len(live), "readyReplicas": ready, "availableReplicas": ready,
            }
        old = dgd.get("status") or {}
        old_ready = next((c for c in old.get("conditions", []) if c.get("type") == "Ready"), None)
        flag = "True" if all_ready else "False"
        condition = {
            "type": "Ready", "status": flag,
            "reason": "AllResourcesAreReady" if all_ready else "SomeResourcesAreNotReady",
            "message": "All resources are ready" if all_ready else "Some services are not ready",
            "lastTransitionTime": old_ready["lastTransitionTime"] if old_ready and old_ready.get("status") == flag
            else rfc3339(self.clock()),
        }
        status = {"state": "successful" if all_ready else "pending", "conditions": [condition], "services": out}
        if status != old:
            new = copy.deepcopy(dgd)
            new["status"] = status
            self._record("MODIFIED", DGDS, new)
