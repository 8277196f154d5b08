"""The Kubernetes connector: reads and scales a DynamoGraphDeployment with the official client.

``read`` gets the DGD and lists its pods (both at once) and returns the pools' replicas, ready
engines, GPUs per engine and whether a scale is still rolling out (see
:func:`~sla_planner.connectors.kube_dgd.deployment_state`). ``apply`` writes
``spec.services.<name>.replicas`` with one JSON merge patch carrying ``metadata.resourceVersion``
(a 409 means another writer got there first: re-read and retry, a bounded number of times).

- A pool still rolling out is not written (``DEFERRED``); a rollout older than
  ``rollout_timeout_s`` (pods that stay Pending) stops blocking: the pool is presented as its
  Ready engines, the stall is logged and shown in ``DeploymentState.detail["stalled"]``.
- Before a pool shrinks, the pods the core chose (``ScaleRequest.drain_instances``, idlest first)
  get ``controller.kubernetes.io/pod-deletion-cost`` (the first the lowest) so the ReplicaSet
  deletes them first; marks of earlier decisions are cleared. If marking fails, that pool is
  not shrunk (``FAILED``, other pools are still written): scale-down saves money and can wait a
  tick, while removing an engine that still serves requests loses them.
- The client is synchronous: every call runs in a worker thread with ``_request_timeout`` and
  an asyncio deadline, so a hung API server never blocks the tick loop or shutdown. Any failure
  is a :class:`~sla_planner.errors.ConnectorError` on read and ``ApplyResult(FAILED)`` on apply,
  with the verb, the resource and the cause.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from ..errors import ConfigError, ConnectorError
from ..types import Pool, pools_for_mode
from .base import ApplyResult, ApplyStatus, DeploymentState, ScaleRequest
from .kube_dgd import (
    DELETION_COST,
    DRAIN_MARK,
    GROUP,
    KIND,
    LABEL_DGD,
    LEGACY_SERVICES,
    PLURAL,
    VERSION,
    PodView,
    Rollouts,
    deployment_state,
    pod_view,
    resolve_services,
    service_replicas,
)

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from ..config import PlannerConfig
    from ..signals.kube_discovery import KubePodDiscovery

__all__ = ["KubernetesConnector", "load_api_client", "DRAIN_COST_BASE"]

log = logging.getLogger(__name__)

DRAIN_COST_BASE = -1_000_000
"""Deletion cost of the first pod chosen to leave; the next ones get +1 each (unmarked pods: 0)."""
_MERGE = "application/merge-patch+json"
_SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class _ApiFailure(ConnectorError):
    """A ConnectorError that keeps the HTTP status (0 when there was no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def load_api_client(env: Mapping[str, str] | None = None) -> tuple[ApiClient, str | None]:
    """An ApiClient from in-cluster credentials (when ``KUBERNETES_SERVICE_HOST`` is set), else
    from the kubeconfig (``KUBECONFIG`` or ``~/.kube/config``), with urllib3 retries off (every
    call has its own timeout); and the namespace the credentials point at, when they say."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    env = os.environ if env is None else env
    conf = client.Configuration()
    namespace: str | None = None
    if env.get("KUBERNETES_SERVICE_HOST"):
        try:
            config.load_incluster_config(client_configuration=conf)
        except ConfigException as exc:
            raise ConnectorError(f"kubernetes: in-cluster credentials could not be loaded: {exc}") from None
        try:
            with open(_SA_NAMESPACE, encoding="utf-8") as fh:
                namespace = fh.read().strip() or None
        except OSError:
            namespace = None
    else:
        path = env.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        try:
            config.load_kube_config(config_file=path, client_configuration=conf, persist_config=False)
            _, context = config.list_kube_config_contexts(config_file=path)
        except (ConfigException, OSError, ValueError, TypeError) as exc:
            raise ConnectorError(
                f"kubernetes: no cluster credentials: not in a pod (KUBERNETES_SERVICE_HOST unset) and "
                f"kubeconfig {path} could not be loaded: {exc}"
            ) from None
        namespace = ((context or {}).get("context") or {}).get("namespace") or None
    conf.retries = False
    return client.ApiClient(conf), namespace


def _server_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    try:
        data = json.loads(body) if body else None
    except (TypeError, ValueError):
        data = None
    if isinstance(data, dict) and data.get("message"):
        return str(data["message"])
    return str(getattr(exc, "reason", "") or exc).strip()


class KubernetesConnector:
    """Reads and scales one DynamoGraphDeployment (see the module docstring).

    ``pools`` are the pools the planner sizes (their services are found by ``subComponentType``,
    else by ``backend``'s legacy names); ``request_timeout_s`` bounds every API call;
    ``rollout_timeout_s`` bounds how long an unfinished scale blocks writes; ``conflict_retries``
    is how many times a 409 is re-read and retried; ``clock`` gives wall seconds.
    """

    name = "kubernetes"

    def __init__(
        self,
        api_client: ApiClient,
        *,
        namespace: str,
        dgd_name: str,
        pools: Sequence[Pool],
        backend: str = "vllm",
        request_timeout_s: float = 10.0,
        rollout_timeout_s: float = 900.0,
        conflict_retries: int = 3,
        clock: Callable[[], float] = time.time,
        owns_client: bool = False,
    ) -> None:
        from kubernetes import client

        for field_name, value in (("namespace", namespace), ("dgd_name", dgd_name)):
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{field_name}: the Kubernetes connector needs a non-empty name, got {value!r}")
        if not pools:
            raise ConfigError("pools: the Kubernetes connector needs at least one pool")
        if backend not in LEGACY_SERVICES:
            raise ConfigError(f"backend: expected one of {', '.join(LEGACY_SERVICES)}, got {backend!r}")
        if not request_timeout_s > 0 or not rollout_timeout_s > 0:
            raise ConfigError("kube_request_timeout_s and kube_rollout_timeout_s must be > 0")
        if isinstance(conflict_retries, bool) or not isinstance(conflict_retries, int) or conflict_retries < 0:
            raise ConfigError(f"kube_conflict_retries: must be an integer >= 0, got {conflict_retries!r}")
        self.namespace = namespace
        self.dgd_name = dgd_name
        self.pools = tuple(pools)
        self.backend = backend
        self.request_timeout_s = float(request_timeout_s)
        self.rollout_timeout_s = float(rollout_timeout_s)
        self.conflict_retries = conflict_retries
        self.clock = clock
        self.services: dict[Pool, str] = {}
        """Pool -> service name, as the last read resolved them."""
        self._client = api_client
        self._owns_client = owns_client
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="kube-connector")
        self._rollouts: Rollouts = {}
        self._stall_logged: set[tuple[Pool, int]] = set()
        self._pods_error: str | None = None
        self._apply_lock = asyncio.Lock()
        self._discoveries: list[KubePodDiscovery] = []
        self._closed = False

    @classmethod
    def from_config(
        cls, cfg: PlannerConfig, env: Mapping[str, str] | None = None, *, api_client: ApiClient | None = None
    ) -> KubernetesConnector:
        """A connector for ``cfg``: DGD ``dgd_name`` (env ``DYN_PARENT_DGD_K8S_NAME``), namespace
        ``kube_namespace`` (env ``POD_NAMESPACE``, else the service account's or the kubeconfig
        context's, else ``default``), pools from ``mode``, legacy names from ``backend``."""
        env = os.environ if env is None else env
        dgd_name = cfg.dgd_name or (env.get("DYN_PARENT_DGD_K8S_NAME") or "").strip()
        if not dgd_name:
            raise ConfigError(
                "dgd_name: required by the Kubernetes connector (config dgd_name, --dgd-name or "
                "env DYN_PARENT_DGD_K8S_NAME)"
            )
        owns = api_client is None
        context_ns: str | None = None
        if api_client is None:
            api_client, context_ns = load_api_client(env)
        namespace = cfg.kube_namespace or (env.get("POD_NAMESPACE") or "").strip() or context_ns or "default"
        return cls(
            api_client,
            namespace=namespace,
            dgd_name=dgd_name,
            pools=pools_for_mode(cfg.mode),
            backend=cfg.backend,
            request_timeout_s=cfg.kube_request_timeout_s,
            rollout_timeout_s=cfg.kube_rollout_timeout_s,
            conflict_retries=cfg.kube_conflict_retries,
            owns_client=owns,
        )

    @property
    def dgd_ref(self) -> str:
        """``KIND namespace/name`` for messages."""
        return f"{KIND} {self.namespace}/{self.dgd_name}"

    # -- calls ---------------------------------------------------------------------------------

    async def _call(self, verb: str, resource: str, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in a worker thread, bounded by the request timeout."""
        from kubernetes.client.exceptions import ApiException

        if self._closed:
            raise _ApiFailure(f"kubernetes: {verb} {resource}: the connector is closed")
        timeout = self.request_timeout_s
        what = f"{verb} {resource}" + (f" {name}" if name else "") + f" in namespace {self.namespace}"
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, partial(fn, *args, _request_timeout=timeout, **kwargs)
        )
        try:
            return await asyncio.wait_for(future, timeout + 1.0)
        except asyncio.TimeoutError:
            raise _ApiFailure(f"kubernetes: {what}: no answer within {timeout:g} s") from None
        except ApiException as exc:
            status = int(exc.status or 0)
            message = _server_message(exc)
            if status == 403:
                text = (f"forbidden (403): the planner's service account may not {verb} {resource} in namespace "
                        f"{self.namespace}; grant it in the Role (deploy/rbac.yaml). API server: {message}")
            elif status == 404:
                text = f"{resource} {self.namespace}/{name} not found (404): {message}"
            elif status == 401:
                text = f"unauthorized (401): the API server rejected the credentials: {message}"
            elif status >= 500:
                text = f"API server error {status} on {what}: {message}"
            else:
                text = f"{what} failed with HTTP {status}: {message}"
            raise _ApiFailure(f"kubernetes: {text}", status) from None
        except Exception as exc:  # urllib3 / socket errors: the server did not answer properly
            cause = type(exc).__name__
            if "Timeout" in cause or "timed out" in str(exc):
                raise _ApiFailure(f"kubernetes: {what}: no answer within {timeout:g} s ({cause})") from None
            raise _ApiFailure(f"kubernetes: {what}: cannot reach the API server: {cause}: {exc}") from None

    async def _get_dgd(self) -> dict[str, Any]:
        dgd = await self._call(
            "get", f"{PLURAL}.{GROUP}", self.dgd_name, self._custom.get_namespaced_custom_object,
            GROUP, VERSION, self.namespace, PLURAL, self.dgd_name,
        )
        if not isinstance(dgd, dict) or not isinstance(dgd.get("metadata"), dict):
            raise ConnectorError(f"kubernetes: {self.dgd_ref}: the API server answered with something that is not an object")
        return dgd

    def _pod_list_body(self, **kwargs: Any) -> bytes:
        """The raw PodList of this DGD (the body is read here, in the worker thread)."""
        resp: Any = self._core.list_namespaced_pod(
            self.namespace, label_selector=f"{LABEL_DGD}={self.dgd_name}", _preload_content=False, **kwargs
        )
        return bytes(resp.data)

    async def _list_pods(self) -> list[PodView]:
        body = await self._call("list", "pods", "", self._pod_list_body)
        try:
            data = json.loads(body)
            items = data["items"]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ConnectorError(f"kubernetes: list pods in namespace {self.namespace}: the answer is not a PodList") from None
        return [pod_view(item) for item in items if isinstance(item, dict)]

    async def _observe(self) -> tuple[dict[str, Any], dict[Pool, str], list[PodView] | None, DeploymentState]:
        """GET the DGD and LIST its pods at once; the pods are optional (None when the list failed)."""
        dgd_result, pods_result = await asyncio.gather(self._get_dgd(), self._list_pods(), return_exceptions=True)
        if isinstance(dgd_result, BaseException):
            if isinstance(dgd_result, ConnectorError):
                raise dgd_result
            raise ConnectorError(f"kubernetes: get {self.dgd_ref}: {dgd_result!r}") from dgd_result
        pods: list[PodView] | None
        pods_error = None
        if isinstance(pods_result, BaseException):
            pods, pods_error = None, str(pods_result)
            if pods_error != self._pods_error:
                log.warning("%s (readiness from the DGD status only; no drain marks)", pods_error)
        else:
            pods = pods_result
        self._pods_error = pods_error
        services = resolve_services(dgd_result, self.pools, self.backend)
        self.services = dict(services)
        state, self._rollouts = deployment_state(
            dgd_result, services, pods, self.clock(), self.rollout_timeout_s, self._rollouts
        )
        if pods_error:
            state.detail["pods_error"] = pods_error
        pool_facts = cast(dict[str, dict[str, Any]], state.detail["pools"])
        for pool_name, stall in cast(dict[str, dict[str, Any]], state.detail.get("stalled") or {}).items():
            key = (Pool(pool_name), int(stall["spec_replicas"]))
            if key not in self._stall_logged:
                self._stall_logged.add(key)
                log.warning(
                    "%s: pool %s asked for %d engines but only %d are ready after %.0f s; planning with the "
                    "ready ones (pods not ready: %s)", self.dgd_ref, pool_name, stall["spec_replicas"],
                    stall["ready"], stall["waited_s"], pool_facts[pool_name]["not_ready_pods"] or "none listed",
                )
        return dgd_result, services, pods, state

    # -- the Connector protocol ----------------------------------------------------------------

    async def read(self) -> DeploymentState:
        """The deployment's state now; ConnectorError when it cannot be read or is malformed."""
        return (await self._observe())[3]

    async def apply(self, request: ScaleRequest) -> ApplyResult:
        """Write the targets (see the module docstring); never raises for a deployment failure."""
        bad = [
            f"{getattr(p, 'value', p)}={n!r}" for p, n in request.targets.items()
            if p not in self.pools or isinstance(n, bool) or not isinstance(n, int) or n < 0
        ]
        if bad:
            return ApplyResult(ApplyStatus.FAILED, f"kubernetes: invalid targets {', '.join(bad)} for pools "
                               f"{[p.value for p in self.pools]}", request.decision_id)
        async with self._apply_lock:
            try:
                return await self._apply(request)
            except ConnectorError as exc:
                log.warning("apply of decision %s failed: %s", request.decision_id, exc)
                return ApplyResult(ApplyStatus.FAILED, str(exc), request.decision_id)

    async def _apply(self, request: ScaleRequest) -> ApplyResult:
        marked: dict[Pool, list[str]] = {}
        refused: dict[Pool, str] = {}
        for attempt in range(self.conflict_retries + 1):
            dgd, services, pods, state = await self._observe()
            spec = {p: service_replicas(dgd, services[p]) for p in request.targets}
            changes = {p: n for p, n in request.targets.items() if n != spec[p] and p not in refused}
            if not changes:
                if refused:
                    break
                return ApplyResult(ApplyStatus.UNCHANGED, "targets equal the replicas asked for: " + ", ".join(
                    f"{p.value}={spec[p]}" for p in request.targets), request.decision_id)
            busy = [p for p in changes if state.rolling_out.get(p)]
            if busy:
                facts = cast(dict[str, dict[str, Any]], state.detail["pools"])
                reason = "; ".join(
                    f"{p.value} ({services[p]}) is still rolling out: {facts[p.value]['ready']} of "
                    f"{facts[p.value]['spec_replicas']} ready for {facts[p.value].get('rolling_out_s', 0):.0f} s "
                    f"(waiting at most {self.rollout_timeout_s:g} s)" for p in busy
                )
                log.info("decision %s deferred: %s", request.decision_id, reason)
                return ApplyResult(ApplyStatus.DEFERRED, reason, request.decision_id)
            for pool, target in changes.items():
                if target < spec[pool] and pool not in marked:
                    try:
                        marked[pool] = await self._mark_for_deletion(pool, services[pool], spec[pool] - target, request, pods)
                    except ConnectorError as exc:
                        refused[pool] = str(exc)
            writes = {p: n for p, n in changes.items() if p not in refused}
            if not writes:
                break
            body = {
                "metadata": {"resourceVersion": dgd["metadata"].get("resourceVersion")},
                "spec": {"services": {services[p]: {"replicas": n} for p, n in writes.items()}},
            }
            try:
                await self._call(
                    "patch", f"{PLURAL}.{GROUP}", self.dgd_name, self._custom.patch_namespaced_custom_object,
                    GROUP, VERSION, self.namespace, PLURAL, self.dgd_name, body, _content_type=_MERGE,
                )
            except _ApiFailure as exc:
                if exc.status == 409:
                    log.info("%s changed under decision %s (409, attempt %d); re-reading", self.dgd_ref,
                             request.decision_id, attempt + 1)
                    continue
                raise
            now = self.clock()
            for pool, target in writes.items():
                self._rollouts[pool] = (target, now)
            written = ", ".join(f"{p.value} {spec[p]}->{n}" for p, n in writes.items())
            drained = "; ".join(f"draining {p.value}: {', '.join(names)}" for p, names in marked.items() if names)
            text = f"{written} ({self.dgd_ref})" + (f"; {drained}" if drained else "")
            if refused:
                text += "; NOT shrunk: " + "; ".join(f"{p.value}: {why}" for p, why in refused.items())
                log.warning("decision %s partly applied: %s", request.decision_id, text)
                return ApplyResult(ApplyStatus.FAILED, text, request.decision_id)
            log.info("decision %s applied: %s", request.decision_id, text)
            return ApplyResult(ApplyStatus.APPLIED, text, request.decision_id)
        if refused:
            return ApplyResult(ApplyStatus.FAILED, "nothing written; NOT shrunk: " + "; ".join(
                f"{p.value}: {why}" for p, why in refused.items()), request.decision_id)
        return ApplyResult(
            ApplyStatus.FAILED,
            f"kubernetes: 409 conflict on each of {self.conflict_retries + 1} attempts: another writer keeps "
            f"changing {self.dgd_ref}",
            request.decision_id,
        )

    async def _mark_for_deletion(
        self, pool: Pool, service: str, count: int, request: ScaleRequest, pods: list[PodView] | None
    ) -> list[str]:
        """Clear this planner's older marks on ``service``'s pods and give the first ``count``
        chosen pods the lowest deletion costs (idlest first); the pods marked."""
        names = request.drain_instances.get(pool, ())
        if pods is None:
            if not names:
                return []
            raise ConnectorError(f"kubernetes: cannot mark pods of {service} for draining: pods could not be listed")
        own = {p.name: p for p in pods if p.service == service and not p.deleting}
        chosen = [n for n in dict.fromkeys(names) if n in own][:count]
        gone = [n for n in names if n not in own]
        if gone:
            log.info("drain for %s: %s are not pods of service %s any more", pool.value, ", ".join(gone), service)
        stale = [p.name for p in own.values() if DRAIN_MARK in p.annotations and p.name not in chosen]
        for name in stale:
            await self._annotate(name, {DELETION_COST: None, DRAIN_MARK: None})
        for rank, name in enumerate(chosen):
            await self._annotate(name, {DELETION_COST: str(DRAIN_COST_BASE + rank), DRAIN_MARK: str(request.decision_id)})
        return chosen

    async def _annotate(self, pod: str, annotations: dict[str, str | None]) -> None:
        await self._call(
            "patch", "pods", pod, self._core.patch_namespaced_pod, pod, self.namespace,
            {"metadata": {"annotations": annotations}}, _content_type=_MERGE,
        )

    async def close(self) -> None:
        """Stop pod discoveries made here, release the worker threads (without waiting for a hung
        call) and the client when this connector created it."""
        if self._closed:
            return
        self._closed = True
        for discovery in self._discoveries:
            discovery.stop(timeout_s=0.0)
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._owns_client:
            close = getattr(self._client, "close", None)
            if callable(close):
                close()

    # -- discovery -----------------------------------------------------------------------------

    def pod_discovery(self, **kwargs: Any) -> KubePodDiscovery:
        """A :class:`~sla_planner.signals.kube_discovery.KubePodDiscovery` of this DGD's engines,
        sharing the client; pods are given roles by the services this connector resolved
        (``kwargs`` go to its constructor). :meth:`close` stops it."""
        from ..signals.kube_discovery import KubePodDiscovery

        def roles() -> dict[str, str]:
            return {service: pool.value for pool, service in self.services.items()}

        kwargs.setdefault("request_timeout_s", self.request_timeout_s)
        discovery = KubePodDiscovery(
            self._client, namespace=self.namespace, dgd_name=self.dgd_name, roles=roles, **kwargs
        )
        self._discoveries.append(discovery)
        return discovery
