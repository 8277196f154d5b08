"""The DynamoGraphDeployment and its pods as the Kubernetes connector reads them (pure, no I/O).

Facts about the resource (from Dynamo's operator API): ``nvidia.com/v1alpha1``
``dynamographdeployments``; ``spec.services`` maps a service name to its spec (``replicas``,
``subComponentType`` prefill/decode, ``componentType``, ``resources.limits.gpu``,
``multinode.nodeCount``, ``extraPodSpec.mainContainer``); ``status.services`` maps the same names
to ``replicas``, ``updatedReplicas``, ``readyReplicas`` (absent for some kinds) and
``availableReplicas``; ``status.conditions`` holds a ``Ready`` condition. The operator labels each
pod with the graph name (:data:`LABEL_DGD`) and the service name (:data:`LABEL_COMPONENT`).

Everything here takes the API server's JSON (dicts) and returns values or raises
:class:`~sla_planner.errors.ConnectorError` naming the resource, the key and the rule.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..errors import ConnectorError
from ..types import Pool
from .base import DeploymentState, PoolState

__all__ = [
    "GROUP",
    "VERSION",
    "PLURAL",
    "KIND",
    "LABEL_DGD",
    "LABEL_COMPONENT",
    "LABEL_SUB_COMPONENT",
    "DELETION_COST",
    "DRAIN_MARK",
    "FPM_PORT_ENV",
    "FPM_PORT_DEFAULT",
    "LEGACY_SERVICES",
    "PodView",
    "pod_view",
    "resolve_services",
    "service_replicas",
    "gpus_per_engine",
    "Rollouts",
    "deployment_state",
]

GROUP = "nvidia.com"
VERSION = "v1alpha1"
PLURAL = "dynamographdeployments"
KIND = "DynamoGraphDeployment"
LABEL_DGD = "nvidia.com/dynamo-graph-deployment-name"
LABEL_COMPONENT = "nvidia.com/dynamo-component"
LABEL_SUB_COMPONENT = "nvidia.com/dynamo-sub-component-type"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
"""Pods with a lower cost are deleted first when a ReplicaSet shrinks (default cost 0)."""
DRAIN_MARK = "sla-planner/drain-decision"
"""Marks the pods this planner gave a deletion cost, with the decision id, so stale marks are cleared."""
FPM_PORT_ENV = "DYN_FORWARDPASS_METRIC_PORT"
FPM_PORT_DEFAULT = 20380

#: Service names Dynamo's own planner falls back to when no service declares a subComponentType.
LEGACY_SERVICES: Mapping[str, Mapping[Pool, tuple[str, ...]]] = {
    "vllm": {
        Pool.PREFILL: ("VllmPrefillWorker",),
        Pool.DECODE: ("VllmDecodeWorker",),
        Pool.AGG: ("VllmWorker",),
    },
    "sglang": {
        Pool.PREFILL: ("prefill", "SGLangPrefillWorker"),
        Pool.DECODE: ("decode", "SGLangDecodeWorker"),
        Pool.AGG: (),
    },
    "trtllm": {
        Pool.PREFILL: ("TRTLLMPrefillWorker",),
        Pool.DECODE: ("TRTLLMDecodeWorker",),
        Pool.AGG: ("TRTLLMWorker",),
    },
    "mocker": {Pool.PREFILL: ("prefill",), Pool.DECODE: ("decode",), Pool.AGG: ()},
}

_DP_FLAGS = ("--data-parallel-size", "-dp", "--dp-size", "--dp")


def _obj(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def _where(dgd: Mapping[str, Any]) -> str:
    meta = _obj(dgd.get("metadata"))
    return f"{KIND} {meta.get('namespace', '?')}/{meta.get('name', '?')}"


def _services(dgd: Mapping[str, Any]) -> dict[str, Any]:
    spec = dgd.get("spec")
    services = spec.get("services") if isinstance(spec, dict) else None
    if not isinstance(services, dict) or not services:
        raise ConnectorError(f"kubernetes: {_where(dgd)} is malformed: spec.services is missing or empty")
    return services


def resolve_services(dgd: Mapping[str, Any], pools: Sequence[Pool], backend: str) -> dict[Pool, str]:
    """The service of each pool: by ``subComponentType`` (prefill/decode; for agg the one worker
    without one), else by the backend's legacy names (then the other backends')."""
    services = _services(dgd)
    found: dict[Pool, str] = {}
    for pool in pools:
        if pool is Pool.AGG:
            typed = [
                n for n, s in services.items()
                if isinstance(s, dict) and s.get("componentType") == "worker" and not s.get("subComponentType")
            ]
        else:
            typed = [
                n for n, s in services.items()
                if isinstance(s, dict) and str(s.get("subComponentType") or "").lower() == pool.value
            ]
        if len(typed) > 1:
            raise ConnectorError(
                f"kubernetes: {_where(dgd)}: services {sorted(typed)} all serve pool {pool.value}; "
                "expected exactly one"
            )
        if typed:
            found[pool] = typed[0]
            continue
        order = [backend] + [b for b in LEGACY_SERVICES if b != backend]
        legacy = [name for b in order for name in LEGACY_SERVICES.get(b, {}).get(pool, ())]
        named = next((name for name in legacy if name in services), None)
        if named is None:
            how = "componentType worker without subComponentType" if pool is Pool.AGG else (
                f"subComponentType {pool.value}"
            )
            raise ConnectorError(
                f"kubernetes: {_where(dgd)} has no service for pool {pool.value}: none has {how} "
                f"and none is named {', '.join(dict.fromkeys(legacy)) or '(no legacy name)'}; "
                f"services: {', '.join(sorted(services))}"
            )
        found[pool] = named
    seen: dict[str, Pool] = {}
    for pool, name in found.items():
        if name in seen:
            raise ConnectorError(
                f"kubernetes: {_where(dgd)}: service {name} would serve both {seen[name].value} and {pool.value}"
            )
        seen[name] = pool
    return found


def _service_spec(dgd: Mapping[str, Any], name: str) -> dict[str, Any]:
    spec = _services(dgd).get(name)
    if not isinstance(spec, dict):
        raise ConnectorError(f"kubernetes: {_where(dgd)}: spec.services.{name} is missing or not an object")
    return spec


def service_replicas(dgd: Mapping[str, Any], name: str) -> int:
    """``spec.services.<name>.replicas`` (1 when absent, as the operator defaults it)."""
    value = _service_spec(dgd, name).get("replicas", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConnectorError(
            f"kubernetes: {_where(dgd)}: spec.services.{name}.replicas must be an integer >= 0, got {value!r}"
        )
    return value


def _count(value: Any, what: str, dgd: Mapping[str, Any]) -> int:
    if isinstance(value, bool):
        raise ConnectorError(f"kubernetes: {_where(dgd)}: {what} must be a whole number, got {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        raise ConnectorError(f"kubernetes: {_where(dgd)}: {what} must be a whole number, got {value!r}")
    return number


def gpus_per_engine(dgd: Mapping[str, Any], name: str) -> int | None:
    """GPUs of one engine: ``resources.limits.gpu`` (else ``requests.gpu``, else the main
    container's ``nvidia.com/gpu`` limit) times ``multinode.nodeCount``; None when unstated."""
    spec = _service_spec(dgd, name)
    at = f"spec.services.{name}"
    per_node: int | None = None
    resources = _obj(spec.get("resources"))
    for part in ("limits", "requests"):
        item = _obj(resources.get(part))
        if item.get("gpu") not in (None, ""):
            per_node = _count(item["gpu"], f"{at}.resources.{part}.gpu", dgd)
            break
    if per_node is None:
        key = _obj(resources.get("limits")).get("gpuType") or "nvidia.com/gpu"
        main = _obj(_obj(spec.get("extraPodSpec")).get("mainContainer"))
        limits = _obj(_obj(main.get("resources")).get("limits"))
        if limits.get(key) not in (None, ""):
            per_node = _count(limits[key], f"{at}.extraPodSpec.mainContainer.resources.limits[{key}]", dgd)
    if per_node is None:
        return None
    nodes = 1
    multinode = _obj(spec.get("multinode"))
    if multinode.get("nodeCount") is not None:
        nodes = _count(multinode["nodeCount"], f"{at}.multinode.nodeCount", dgd)
    return per_node * max(nodes, 1)


# -- pods -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodView:
    """What the planner needs of one pod."""

    name: str
    service: str | None
    sub_component: str | None
    phase: str
    ready: bool
    ip: str | None
    created_s: float | None
    deleting: bool
    reason: str = ""
    """Why it is not running or not ready (scheduler message, container state), when it says."""
    fpm_port: int = FPM_PORT_DEFAULT
    dp_size: int = 1
    annotations: dict[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    """Values that could not be read (a bad FPM port or data-parallel size), named."""

    @property
    def serving(self) -> bool:
        """Running, Ready, not being deleted, with an IP."""
        return self.phase == "Running" and self.ready and not self.deleting and bool(self.ip)


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _main_container(spec: Mapping[str, Any]) -> dict[str, Any]:
    containers = spec.get("containers")
    if not isinstance(containers, list):
        return {}
    dicts = [c for c in containers if isinstance(c, dict)]
    return next((c for c in dicts if c.get("name") == "main"), dicts[0] if dicts else {})


def _tokens(container: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for key in ("command", "args"):
        items = container.get(key)
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, str):
                continue
            try:
                out.extend(shlex.split(item) if " " in item else [item])
            except ValueError:
                out.append(item)
    return out


def _dp_size(tokens: list[str]) -> tuple[int, str | None]:
    for i, token in enumerate(tokens):
        flag, eq, value = token.partition("=")
        if flag not in _DP_FLAGS:
            continue
        if not eq:
            value = tokens[i + 1] if i + 1 < len(tokens) else ""
        if value.isdigit() and int(value) >= 1:
            return int(value), None
        return 1, f"{flag} {value!r} is not a whole number >= 1; assuming 1"
    return 1, None


def pod_view(pod: Mapping[str, Any]) -> PodView:
    """A pod (API JSON) as a :class:`PodView`; odd fields become defaults and ``problems``."""
    meta = _obj(pod.get("metadata"))
    spec = _obj(pod.get("spec"))
    status = _obj(pod.get("status"))
    labels = _obj(meta.get("labels"))
    annotations = _obj(meta.get("annotations"))
    conditions = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    reason = next(
        (
            f"{c.get('reason', '')}: {c.get('message', '')}".strip(": ")
            for c in conditions
            if c.get("status") == "False" and (c.get("reason") or c.get("message"))
        ),
        str(status.get("reason") or ""),
    )
    problems: list[str] = []
    main = _main_container(spec)
    port = FPM_PORT_DEFAULT
    for env in main.get("env") or []:
        if isinstance(env, dict) and env.get("name") == FPM_PORT_ENV and "value" in env:
            raw = str(env.get("value", "")).strip()
            if raw.isdigit() and 1 <= int(raw) <= 65535:
                port = int(raw)
            else:
                problems.append(f"{FPM_PORT_ENV}={raw!r} is not a port (1-65535)")
    dp_size, dp_problem = _dp_size(_tokens(main))
    if dp_problem:
        problems.append(dp_problem)
    return PodView(
        name=str(meta.get("name", "")),
        service=labels.get(LABEL_COMPONENT),
        sub_component=labels.get(LABEL_SUB_COMPONENT),
        phase=str(status.get("phase") or "Pending"),
        ready=ready,
        ip=status.get("podIP") or None,
        created_s=_timestamp(meta.get("creationTimestamp")),
        deleting=bool(meta.get("deletionTimestamp")),
        reason=reason,
        fpm_port=port,
        dp_size=dp_size,
        annotations={str(k): str(v) for k, v in annotations.items()},
        problems=tuple(problems),
    )


# -- deployment state -------------------------------------------------------------------------

Rollouts = dict[Pool, tuple[int, float]]
"""Per pool rolling out: (the spec replicas it is rolling out to, wall time it started)."""


def _ready_condition(dgd: Mapping[str, Any]) -> dict[str, Any] | None:
    status = _obj(dgd.get("status"))
    for cond in status.get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == "Ready":
            return {"status": cond.get("status"), "reason": cond.get("reason"), "message": cond.get("message")}
    return None


def _status_int(entry: Mapping[str, Any], key: str, at: str, dgd: Mapping[str, Any]) -> int | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConnectorError(f"kubernetes: {_where(dgd)}: {at}.{key} must be an integer >= 0, got {value!r}")
    return value


def deployment_state(
    dgd: Mapping[str, Any],
    services: Mapping[Pool, str],
    pods: Sequence[PodView] | None,
    now_s: float,
    rollout_timeout_s: float,
    rollouts: Rollouts,
) -> tuple[DeploymentState, Rollouts]:
    """The pools' state from the DGD (spec, ``status.services``) and its pods (None when they
    could not be listed), with the rollouts still tracked.

    A pool rolls out until its ready, current and updated replicas equal the spec and no pod
    of it is terminating. A rollout older than ``rollout_timeout_s`` (counted from the oldest
    pod not yet ready, or from when it was first seen) is *stalled*: the pool is presented as
    its Ready engines, not rolling out, so the core re-plans with what serves.
    """
    status = _obj(dgd.get("status"))
    status_services = _obj(status.get("services"))
    pools: dict[Pool, PoolState] = {}
    rolling: dict[Pool, bool] = {}
    kept: Rollouts = {}
    per_pool: dict[str, Any] = {}
    stalled: dict[str, Any] = {}
    for pool, name in services.items():
        spec_n = service_replicas(dgd, name)
        gpus = gpus_per_engine(dgd, name)
        own = [p for p in pods if p.service == name] if pods is not None else None
        entry = status_services.get(name)
        at = f"status.services.{name}"
        if isinstance(entry, dict):
            ready = _status_int(entry, "readyReplicas", at, dgd)
            if ready is None:
                ready = _status_int(entry, "availableReplicas", at, dgd)
            current = _status_int(entry, "replicas", at, dgd)
            updated = _status_int(entry, "updatedReplicas", at, dgd)
        else:
            ready = current = updated = None
        if ready is None:
            if own is None:
                raise ConnectorError(
                    f"kubernetes: {_where(dgd)}: no readiness for service {name}: {at} has no "
                    "readyReplicas/availableReplicas and its pods could not be listed"
                )
            ready = sum(p.serving for p in own)
        if current is None and own is not None:
            current = sum(not p.deleting for p in own)
        terminating = [p.name for p in own if p.deleting] if own is not None else []
        waiting = [p for p in own if not p.deleting and not p.serving] if own is not None else []
        settled = (
            ready == spec_n
            and (current is None or current == spec_n)
            and (updated is None or updated >= spec_n)
            and not terminating
        )
        facts: dict[str, Any] = {
            "service": name,
            "spec_replicas": spec_n,
            "status_replicas": current,
            "ready": ready,
            "updated": updated,
            "not_ready_pods": {p.name: p.reason or p.phase for p in waiting},
            "terminating_pods": terminating,
        }
        per_pool[pool.value] = facts
        if settled:
            pools[pool] = PoolState(spec_n, ready, gpus)
            rolling[pool] = False
            continue
        started = rollouts.get(pool)
        if started is None or started[0] != spec_n:
            oldest = [p.created_s for p in waiting if p.created_s is not None]
            started = (spec_n, min([now_s, *oldest]))
        kept[pool] = started
        age = now_s - started[1]
        facts["rolling_out_s"] = round(age, 3)
        if age >= rollout_timeout_s:
            serving = min(spec_n, ready)
            stalled[pool.value] = {"spec_replicas": spec_n, "ready": ready, "waited_s": round(age, 3)}
            pools[pool] = PoolState(serving, serving, gpus)
            rolling[pool] = False
        else:
            pools[pool] = PoolState(spec_n, ready, gpus)
            rolling[pool] = True
    meta = _obj(dgd.get("metadata"))
    detail: dict[str, Any] = {
        "dgd": f"{meta.get('namespace', '')}/{meta.get('name', '')}",
        "resource_version": meta.get("resourceVersion"),
        "ready_condition": _ready_condition(dgd),
        "pools": per_pool,
    }
    if stalled:
        detail["stalled"] = stalled
    if pods is None:
        detail["pods"] = "not listed"
    return DeploymentState(pools, rolling, detail), kept
