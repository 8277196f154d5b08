"""Reading a DynamoGraphDeployment and its pods: services, replicas, GPUs, readiness, rollouts."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sla_planner.connectors.kube_dgd import (
    FPM_PORT_DEFAULT,
    LABEL_COMPONENT,
    LABEL_SUB_COMPONENT,
    deployment_state,
    gpus_per_engine,
    pod_view,
    resolve_services,
    service_replicas,
)
from sla_planner.errors import ConnectorError
from sla_planner.sim.kube_resources import example_dgd, rfc3339
from sla_planner.types import Pool

P, D, A = Pool.PREFILL, Pool.DECODE, Pool.AGG


def dgd_with(services: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "g", "namespace": "ns", "resourceVersion": "7"}, "spec": {"services": services},
            "status": status or {}}


WORKER = {"componentType": "worker", "replicas": 2}


@pytest.mark.parametrize(
    ("services", "pools", "backend", "expected"),
    [
        pytest.param({"A": {**WORKER, "subComponentType": "prefill"}, "B": {**WORKER, "subComponentType": "decode"},
                      "VllmDecodeWorker": WORKER}, (P, D), "vllm", {P: "A", D: "B"}, id="subComponentType-wins"),
        pytest.param({"A": {**WORKER, "subComponentType": "Decode"}}, (D,), "vllm", {D: "A"}, id="case-insensitive"),
        pytest.param({"VllmPrefillWorker": WORKER, "VllmDecodeWorker": WORKER}, (P, D), "vllm",
                     {P: "VllmPrefillWorker", D: "VllmDecodeWorker"}, id="legacy-vllm"),
        pytest.param({"prefill": WORKER, "decode": WORKER}, (P, D), "sglang", {P: "prefill", D: "decode"},
                     id="legacy-sglang"),
        pytest.param({"SGLangPrefillWorker": WORKER, "SGLangDecodeWorker": WORKER}, (P, D), "sglang",
                     {P: "SGLangPrefillWorker", D: "SGLangDecodeWorker"}, id="legacy-sglang-older"),
        pytest.param({"TRTLLMPrefillWorker": WORKER, "TRTLLMDecodeWorker": WORKER}, (P, D), "trtllm",
                     {P: "TRTLLMPrefillWorker", D: "TRTLLMDecodeWorker"}, id="legacy-trtllm"),
        pytest.param({"TRTLLMPrefillWorker": WORKER, "TRTLLMDecodeWorker": WORKER}, (P, D), "vllm",
                     {P: "TRTLLMPrefillWorker", D: "TRTLLMDecodeWorker"}, id="other-backend-legacy-names"),
        pytest.param({"Frontend": {"componentType": "frontend"}, "Worker": WORKER}, (A,), "vllm", {A: "Worker"},
                     id="agg-untyped-worker"),
        pytest.param({"VllmWorker": {"replicas": 1}}, (A,), "vllm", {A: "VllmWorker"}, id="agg-legacy-vllm"),
        pytest.param({"TRTLLMWorker": {"replicas": 1}}, (A,), "trtllm", {A: "TRTLLMWorker"}, id="agg-legacy-trtllm"),
    ],
)
def test_services_are_found(services: dict[str, Any], pools: tuple[Pool, ...], backend: str,
                            expected: dict[Pool, str]) -> None:
    assert resolve_services(dgd_with(services), pools, backend) == expected


@pytest.mark.parametrize(
    ("dgd", "pools", "message"),
    [
        pytest.param({"metadata": {"name": "g", "namespace": "ns"}, "spec": {}}, (D,), "spec.services is missing",
                     id="no-services"),
        pytest.param(dgd_with({"Frontend": {"componentType": "frontend"}}), (D,),
                     "has no service for pool decode: none has subComponentType decode and none is named "
                     "VllmDecodeWorker", id="missing"),
        pytest.param(dgd_with({"A": {"subComponentType": "decode"}, "B": {"subComponentType": "decode"}}), (D,),
                     "services ['A', 'B'] all serve pool decode", id="ambiguous"),
        pytest.param(dgd_with({"decode": WORKER}), (P, D), "has no service for pool prefill", id="one-missing"),
    ],
)
def test_service_problems_name_the_resource(dgd: dict[str, Any], pools: tuple[Pool, ...], message: str) -> None:
    with pytest.raises(ConnectorError, match="DynamoGraphDeployment ns/g") as info:
        resolve_services(dgd, pools, "vllm")
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        pytest.param({}, 1, id="absent-defaults-to-1"),
        pytest.param({"replicas": 0}, 0, id="zero"),
        pytest.param({"replicas": 12}, 12, id="twelve"),
        pytest.param({"replicas": "2"}, "must be an integer >= 0, got '2'", id="string"),
        pytest.param({"replicas": True}, "must be an integer >= 0, got True", id="bool"),
        pytest.param({"replicas": -1}, "must be an integer >= 0, got -1", id="negative"),
        pytest.param({"replicas": 2.0}, "must be an integer >= 0, got 2.0", id="float"),
    ],
)
def test_replicas(service: dict[str, Any], expected: int | str) -> None:
    dgd = dgd_with({"W": service})
    if isinstance(expected, str):
        with pytest.raises(ConnectorError, match=r"spec\.services\.W\.replicas") as info:
            service_replicas(dgd, "W")
        assert expected in str(info.value)
    else:
        assert service_replicas(dgd, "W") == expected


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        pytest.param({}, None, id="unstated"),
        pytest.param({"resources": {"limits": {"gpu": "4"}}}, 4, id="limits"),
        pytest.param({"resources": {"requests": {"gpu": 2}}}, 2, id="requests"),
        pytest.param({"resources": {"limits": {"gpu": "8"}}, "multinode": {"nodeCount": 2}}, 16, id="multinode"),
        pytest.param({"extraPodSpec": {"mainContainer": {"resources": {"limits": {"nvidia.com/gpu": "2"}}}}}, 2,
                     id="main-container-limit"),
        pytest.param({"resources": {"limits": {"gpuType": "gpu.intel.com/xe"}},
                      "extraPodSpec": {"mainContainer": {"resources": {"limits": {"gpu.intel.com/xe": "1"}}}}}, 1,
                     id="custom-gpu-type"),
        pytest.param({"resources": {"limits": {"gpu": "half"}}}, "resources.limits.gpu must be a whole number",
                     id="not-a-number"),
    ],
)
def test_gpus_per_engine(service: dict[str, Any], expected: int | str | None) -> None:
    dgd = dgd_with({"W": service})
    if isinstance(expected, str):
        with pytest.raises(ConnectorError, match=expected):
            gpus_per_engine(dgd, "W")
    else:
        assert gpus_per_engine(dgd, "W") == expected


def pod(name: str, service: str = "Decode", *, phase: str = "Running", ready: bool = True, ip: str | None = "10.0.0.5",
        created_s: float = 1_000.0, deleting: bool = False, env: list[dict[str, Any]] | None = None,
        args: list[str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {LABEL_COMPONENT: service, LABEL_SUB_COMPONENT: "decode"},
                            "creationTimestamp": rfc3339(created_s)}
    if deleting:
        meta["deletionTimestamp"] = rfc3339(created_s + 100)
    status: dict[str, Any] = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
    container: dict[str, Any] = {"name": "main", "env": env or []}
    if args is not None:
        container["args"] = args
    return {"metadata": meta, "spec": {"containers": [{"name": "sidecar"}, container]}, "status": status}


@pytest.mark.parametrize(
    ("kwargs", "port", "dp", "problem"),
    [
        pytest.param({}, FPM_PORT_DEFAULT, 1, None, id="defaults"),
        pytest.param({"env": [{"name": "DYN_FORWARDPASS_METRIC_PORT", "value": "30100"}]}, 30100, 1, None, id="port"),
        pytest.param({"env": [{"name": "DYN_FORWARDPASS_METRIC_PORT", "value": "70000"}]}, FPM_PORT_DEFAULT, 1,
                     "is not a port", id="port-out-of-range"),
        pytest.param({"args": ["--data-parallel-size", "4"]}, FPM_PORT_DEFAULT, 4, None, id="dp-vllm"),
        pytest.param({"args": ["--dp-size=2"]}, FPM_PORT_DEFAULT, 2, None, id="dp-sglang-equals"),
        pytest.param({"args": ["python3 -m dynamo.vllm --model m -dp 8"]}, FPM_PORT_DEFAULT, 8, None, id="dp-shell-form"),
        pytest.param({"args": ["--data-parallel-size", "zero"]}, FPM_PORT_DEFAULT, 1, "not a whole number",
                     id="dp-bad"),
    ],
)
def test_pod_view_reads_port_and_dp_size(kwargs: dict[str, Any], port: int, dp: int, problem: str | None) -> None:
    view = pod_view(pod("p", **kwargs))
    assert (view.fpm_port, view.dp_size) == (port, dp)
    assert (problem is None) == (not view.problems)
    if problem:
        assert problem in view.problems[0]


@pytest.mark.parametrize(
    ("kwargs", "serving"),
    [
        pytest.param({}, True, id="running-ready"),
        pytest.param({"ready": False}, False, id="not-ready"),
        pytest.param({"phase": "Pending", "ip": None, "ready": False}, False, id="pending"),
        pytest.param({"deleting": True}, False, id="terminating"),
        pytest.param({"ip": None}, False, id="no-ip"),
    ],
)
def test_serving_pods(kwargs: dict[str, Any], serving: bool) -> None:
    assert pod_view(pod("p", **kwargs)).serving is serving


def status_of(ready: int | None, replicas: int, updated: int | None = None, available: int | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"componentKind": "Deployment", "componentName": "x", "replicas": replicas,
                             "updatedReplicas": replicas if updated is None else updated}
    if ready is not None:
        entry["readyReplicas"] = ready
    if available is not None:
        entry["availableReplicas"] = available
    return entry


def decode_dgd(spec_replicas: int, entry: dict[str, Any] | None) -> dict[str, Any]:
    dgd = copy.deepcopy(example_dgd("g", decode_replicas=spec_replicas))
    dgd["metadata"].update(namespace="ns", resourceVersion="9")
    dgd["status"] = {"services": {"Decode": entry}} if entry is not None else {}
    return dgd


@pytest.mark.parametrize(
    ("spec", "entry", "pods", "replicas", "ready", "rolling"),
    [
        pytest.param(2, status_of(2, 2), None, 2, 2, False, id="settled"),
        pytest.param(3, status_of(2, 3), None, 3, 2, True, id="scale-up-starting"),
        pytest.param(1, status_of(2, 2), None, 1, 2, True, id="scale-down-pending"),
        pytest.param(2, status_of(2, 2, updated=1), None, 2, 2, True, id="update-rolling"),
        pytest.param(2, status_of(None, 2, available=2), None, 2, 2, False, id="available-when-no-ready"),
        pytest.param(2, None, [pod("a"), pod("b", ready=False)], 2, 1, True, id="no-status-counts-pods"),
        pytest.param(2, status_of(2, 2), [pod("a"), pod("b"), pod("c", deleting=True)], 2, 2, True,
                     id="terminating-pod-still-rolling"),
    ],
)
def test_pool_state(spec: int, entry: dict[str, Any] | None, pods: list[dict[str, Any]] | None, replicas: int,
                    ready: int, rolling: bool) -> None:
    views = None if pods is None else [pod_view(p) for p in pods]
    state, _ = deployment_state(decode_dgd(spec, entry), {D: "Decode"}, views, 1_100.0, 600.0, {})
    assert (state.pools[D].replicas, state.pools[D].ready, state.rolling_out[D]) == (replicas, ready, rolling)
    assert state.pools[D].gpus_per_engine == 1
    assert state.detail["resource_version"] == "9"


def test_readiness_unknown_is_an_error() -> None:
    with pytest.raises(ConnectorError, match="no readiness for service Decode"):
        deployment_state(decode_dgd(2, None), {D: "Decode"}, None, 0.0, 600.0, {})


@pytest.mark.parametrize(
    ("waited_s", "stalled"),
    [pytest.param(599.9, False, id="just-inside"), pytest.param(600.0, True, id="at-limit"),
     pytest.param(600.1, True, id="just-outside")],
)
def test_a_rollout_stalls_after_the_timeout(waited_s: float, stalled: bool) -> None:
    dgd = decode_dgd(4, status_of(2, 4))
    state, kept = deployment_state(dgd, {D: "Decode"}, None, 1_000.0, 600.0, {})
    assert kept == {D: (4, 1_000.0)} and state.rolling_out[D]
    state, kept = deployment_state(dgd, {D: "Decode"}, None, 1_000.0 + waited_s, 600.0, kept)
    if stalled:
        assert (state.pools[D].replicas, state.pools[D].ready, state.rolling_out[D]) == (2, 2, False)
        assert state.detail["stalled"] == {"decode": {"spec_replicas": 4, "ready": 2, "waited_s": round(waited_s, 3)}}
        assert not state.in_progress()[D]
    else:
        assert (state.pools[D].replicas, state.rolling_out[D]) == (4, True)
        assert "stalled" not in state.detail


def test_rollout_age_comes_from_the_oldest_waiting_pod() -> None:
    """A planner restarted mid-scale does not wait the whole timeout again: pods say how long."""
    dgd = decode_dgd(3, status_of(2, 3))
    pods = [pod_view(pod("a")), pod_view(pod("b")), pod_view(pod("c", phase="Pending", ready=False, ip=None,
                                                                      created_s=1_000.0))]
    state, kept = deployment_state(dgd, {D: "Decode"}, pods, 1_000.0 + 601.0, 600.0, {})
    assert kept[D] == (3, 1_000.0)
    assert state.detail["stalled"]["decode"]["waited_s"] == 601.0
    assert state.detail["pools"]["decode"]["not_ready_pods"] == {"c": "Pending"}


def test_a_new_spec_restarts_the_rollout_clock() -> None:
    state, kept = deployment_state(decode_dgd(4, status_of(2, 4)), {D: "Decode"}, None, 1_000.0, 600.0,
                                   {D: (3, 0.0)})
    assert kept == {D: (4, 1_000.0)} and state.rolling_out[D]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        pytest.param({"readyReplicas": "2", "replicas": 2}, "readyReplicas must be an integer", id="ready-string"),
        pytest.param({"readyReplicas": 1, "replicas": -3}, "replicas must be an integer", id="replicas-negative"),
    ],
)
def test_malformed_status_is_an_error(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConnectorError, match=message):
        deployment_state(decode_dgd(2, entry), {D: "Decode"}, None, 0.0, 600.0, {})
