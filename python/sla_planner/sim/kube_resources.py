"""The shape of the emulated Kubernetes API: resources and paths, discovery documents, Status
errors, watch events, JSON merge patches, label selectors, and an example DynamoGraphDeployment."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..connectors.kube_dgd import GROUP, KIND, PLURAL, VERSION

__all__ = [
    "PODS",
    "DGDS",
    "ApiError",
    "WatchEvent",
    "rfc3339",
    "merge_patch",
    "match_labels",
    "discovery_document",
    "route",
    "example_dgd",
]

PODS = "pods"
DGDS = "dynamographdeployments"
LABEL_COMPONENT_TYPE = "nvidia.com/dynamo-component-type"


class ApiError(Exception):
    """An API failure with its HTTP status, Status ``reason`` and message."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> dict[str, Any]:
        """The ``Status`` object the API server answers with."""
        return {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "details": self.details, "code": self.code,
        }


@dataclass(frozen=True)
class WatchEvent:
    """One change: ``ADDED``, ``MODIFIED`` or ``DELETED`` of an object at resource version ``rv``."""

    rv: int
    type: str
    resource: str
    namespace: str
    obj: dict[str, Any]


def rfc3339(t: float) -> str:
    """Wall time as the API server writes timestamps (seconds, UTC)."""
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _split_selector(text: str) -> Iterator[str]:
    depth, start = 0, 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            yield text[start:i].strip()
            start = i + 1
    yield text[start:].strip()


def match_labels(selector: str | None, labels: dict[str, str]) -> bool:
    """Whether ``labels`` satisfy a label selector (``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``,
    ``k in (a,b)``, ``k notin (a,b)``); ApiError 400 for one it cannot parse."""
    for req in _split_selector(selector or ""):
        if not req:
            continue
        if " in " in req or " notin " in req:
            negate = " notin " in req
            key, _, rest = req.partition(" notin " if negate else " in ")
            rest = rest.strip()
            if not (rest.startswith("(") and rest.endswith(")")):
                raise ApiError(400, "BadRequest", f"unable to parse requirement: {req!r}")
            values = {v.strip() for v in rest[1:-1].split(",")}
            if (labels.get(key.strip()) in values) == negate:
                return False
        elif "!=" in req:
            key, _, value = req.partition("!=")
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in req:
            key, _, value = req.replace("==", "=").partition("=")
            if labels.get(key.strip()) != value.strip():
                return False
        elif req.startswith("!"):
            if req[1:].strip() in labels:
                return False
        elif req not in labels:
            return False
    return True


_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def _res(name: str, kind: str, short: str = "") -> dict[str, Any]:
    return {"name": name, "singularName": kind.lower(), "namespaced": True, "kind": kind,
            "verbs": _VERBS, **({"shortNames": [short]} if short else {})}


#: group/version -> resources listed by discovery. Only DGDs and pods are served; the other
#: kinds are listed so ``kubectl apply --dry-run=client -f deploy/`` can map them (and gets 404).
_DISCOVERY: dict[str, list[dict[str, Any]]] = {
    "v1": [_res("pods", "Pod", "po"), _res("configmaps", "ConfigMap", "cm"), _res("services", "Service", "svc"),
           _res("serviceaccounts", "ServiceAccount", "sa")],
    f"{GROUP}/{VERSION}": [
        _res(PLURAL, KIND, "dgd"),
        {"name": f"{PLURAL}/status", "singularName": "", "namespaced": True, "kind": KIND, "verbs": ["get", "patch", "update"]},
    ],
    "apps/v1": [_res("deployments", "Deployment", "deploy")],
    "rbac.authorization.k8s.io/v1": [_res("roles", "Role"), _res("rolebindings", "RoleBinding")],
    "monitoring.coreos.com/v1": [_res("podmonitors", "PodMonitor"), _res("servicemonitors", "ServiceMonitor")],
}


def discovery_document(parts: list[str]) -> dict[str, Any] | None:
    """The discovery answer for a path (``/api``, ``/apis``, a group, a group version, ``/version``,
    health), or None when the path is not a discovery path."""
    if parts in (["healthz"], ["readyz"], ["livez"]):
        return {"status": "ok"}
    if parts == ["version"]:
        return {"major": "1", "minor": "32", "gitVersion": "v1.32.0-sla-planner-emulator", "platform": "linux/amd64"}
    if parts == ["api"]:
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    groups: dict[str, dict[str, Any]] = {}
    for group_version in _DISCOVERY:
        if "/" in group_version:
            group, version = group_version.split("/")
            ref = {"groupVersion": group_version, "version": version}
            groups[group] = {"name": group, "versions": [ref], "preferredVersion": ref}
    if parts == ["apis"]:
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": list(groups.values())}
    if len(parts) == 2 and parts[0] == "apis" and parts[1] in groups:
        return {"kind": "APIGroup", "apiVersion": "v1", **groups[parts[1]]}
    group_version = "/".join(parts[1:]) if parts[:1] in (["api"], ["apis"]) else ""
    if group_version in _DISCOVERY and len(parts) == (2 if parts[0] == "api" else 3):
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                "resources": _DISCOVERY[group_version]}
    return None

def route(parts: list[str]) -> tuple[str, str | None, str | None, str | None] | None:
    """(resource, namespace, name, subresource) of a resource path."""
    if parts[:2] == ["api", "v1"]:
        rest, resource = parts[2:], PODS
    elif parts[:3] == ["apis", GROUP, VERSION]:
        rest, resource = parts[3:], DGDS
    else:
        return None
    namespace = None
    if len(rest) >= 2 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest or rest[0] != resource or len(rest) > 3:
        return None
    return resource, namespace, rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None


def example_dgd(
    name: str,
    *,
    backend: str = "vllm",
    prefill_replicas: int = 1,
    decode_replicas: int = 1,
    gpus_per_engine: int = 1,
    dp_size: int = 1,
    fpm_port: int | None = None,
    legacy_names: bool = False,
) -> dict[str, Any]:
    """A disaggregated DGD manifest: Frontend plus prefill and decode workers (declared with
    ``subComponentType``, or only by the backend's legacy service names)."""
    names = {"vllm": ("VllmPrefillWorker", "VllmDecodeWorker"), "sglang": ("prefill", "decode"),
             "trtllm": ("TRTLLMPrefillWorker", "TRTLLMDecodeWorker")}[backend]
    envs = [] if fpm_port is None else [{"name": "DYN_FORWARDPASS_METRIC_PORT", "value": str(fpm_port)}]

    def worker(sub: str, replicas: int) -> dict[str, Any]:
        svc: dict[str, Any] = {
            "componentType": "worker", "replicas": replicas, "resources": {"limits": {"gpu": str(gpus_per_engine)}},
            "envs": envs,
            "extraPodSpec": {"mainContainer": {"image": f"dynamo-{backend}:emulated",
                                               "args": ["--model", "example", "--data-parallel-size", str(dp_size)]}},
        }
        if not legacy_names:
            svc["subComponentType"] = sub
        return svc

    prefill_name, decode_name = ("Prefill", "Decode") if not legacy_names else names
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": {"name": name},
        "spec": {"backendFramework": backend, "services": {
            "Frontend": {"componentType": "frontend", "replicas": 1},
            prefill_name: worker("prefill", prefill_replicas),
            decode_name: worker("decode", decode_replicas),
        }},
    }
