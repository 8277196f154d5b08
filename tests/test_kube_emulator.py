"""The Kubernetes API emulator, driven by the official client (unmodified) and kubectl."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kube_helpers import DGD, NS, all_ready, deploy, emulator, kubeconfig, pod_names, start_emulator, wait_for
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from sla_planner.sim.kube_api import KubeApiEmulator
from sla_planner.sim.kube_resources import match_labels, merge_patch

__all__ = ["emulator", "kubeconfig"]  # fixtures

G, V, PL = "nvidia.com", "v1alpha1", "dynamographdeployments"


def apis(path: Path) -> tuple[client.CustomObjectsApi, client.CoreV1Api]:
    api = config.new_client_from_config(config_file=str(path))
    return client.CustomObjectsApi(api), client.CoreV1Api(api)


def get_dgd(custom: client.CustomObjectsApi) -> dict[str, Any]:
    return custom.get_namespaced_custom_object(G, V, NS, PL, DGD)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [
        pytest.param({"a": 1, "b": {"c": 2}}, {"b": {"d": 3}}, {"a": 1, "b": {"c": 2, "d": 3}}, id="merge"),
        pytest.param({"a": 1, "b": 2}, {"a": None}, {"b": 2}, id="null-deletes"),
        pytest.param({"a": [1, 2]}, {"a": [3]}, {"a": [3]}, id="lists-replace"),
        pytest.param({"a": {"b": 1}}, {"a": 5}, {"a": 5}, id="scalar-replaces-object"),
    ],
)
def test_merge_patch_follows_rfc_7386(target: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]) -> None:
    assert merge_patch(target, patch) == expected


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        pytest.param("a=1", True, id="equals"), pytest.param("a==1,b=2", True, id="double-equals-and"),
        pytest.param("a!=1", False, id="not-equals"), pytest.param("c", False, id="exists-missing"),
        pytest.param("!c", True, id="not-exists"), pytest.param("a in (1,3)", True, id="in"),
        pytest.param("b notin (1,2)", False, id="notin"), pytest.param("", True, id="empty"),
    ],
)
def test_label_selectors(selector: str, matches: bool) -> None:
    assert match_labels(selector, {"a": "1", "b": "2"}) is matches


def test_status_follows_spec_after_the_startup_delay(emulator: KubeApiEmulator, kubeconfig: Path) -> None:
    custom, core = apis(kubeconfig)
    deploy(emulator, wait=False, decode_replicas=2)
    first = get_dgd(custom)
    assert first["status"]["services"]["Decode"]["readyReplicas"] == 0
    assert first["status"]["conditions"][0]["status"] == "False"
    wait_for(lambda: all_ready(emulator), what="Ready")
    pods = core.list_namespaced_pod(NS, label_selector=f"nvidia.com/dynamo-component=Decode")  # typed models
    assert len(pods.items) == 2
    for p in pods.items:
        assert p.status.phase == "Running" and p.status.pod_ip.startswith("10.244.")
        assert {c.type: c.status for c in p.status.conditions}["Ready"] == "True"
        assert p.metadata.labels["nvidia.com/dynamo-graph-deployment-name"] == DGD
    status = get_dgd(custom)["status"]["services"]["Decode"]
    assert (status["replicas"], status["readyReplicas"], status["updatedReplicas"]) == (2, 2, 2)


def test_merge_patch_with_resource_version_precondition(emulator: KubeApiEmulator, kubeconfig: Path) -> None:
    custom, _ = apis(kubeconfig)
    deploy(emulator)
    dgd = get_dgd(custom)
    rv = dgd["metadata"]["resourceVersion"]
    body = {"metadata": {"resourceVersion": rv}, "spec": {"services": {"Decode": {"replicas": 3}}}}
    out = custom.patch_namespaced_custom_object(G, V, NS, PL, DGD, body)
    assert out["spec"]["services"]["Decode"]["replicas"] == 3
    assert int(out["metadata"]["resourceVersion"]) > int(rv)
    assert out["metadata"]["generation"] == dgd["metadata"]["generation"] + 1
    assert out["spec"]["services"]["Prefill"] == dgd["spec"]["services"]["Prefill"]  # merge, not replace
    with pytest.raises(ApiException) as info:
        custom.patch_namespaced_custom_object(G, V, NS, PL, DGD, {**body, "spec": {"services": {"Decode": {"replicas": 4}}}})
    assert info.value.status == 409 and json.loads(info.value.body)["reason"] == "Conflict"
    assert get_dgd(custom)["spec"]["services"]["Decode"]["replicas"] == 3
    # the main resource ignores status (status subresource)
    custom.patch_namespaced_custom_object(G, V, NS, PL, DGD, {"status": {"state": "hacked"}})
    assert get_dgd(custom)["status"]["state"] != "hacked"


@pytest.mark.parametrize(
    ("patch", "status", "reason"),
    [
        pytest.param({"spec": {"services": {"Decode": {"replicas": -1}}}}, 422, "Invalid", id="negative-replicas"),
        pytest.param({"spec": {"services": {"Decode": {"replicas": "3"}}}}, 422, "Invalid", id="string-replicas"),
    ],
)
def test_invalid_writes_are_refused(emulator: KubeApiEmulator, kubeconfig: Path, patch: dict[str, Any], status: int,
                                    reason: str) -> None:
    custom, _ = apis(kubeconfig)
    deploy(emulator, wait=False)
    with pytest.raises(ApiException) as info:
        custom.patch_namespaced_custom_object(G, V, NS, PL, DGD, patch)
    assert (info.value.status, json.loads(info.value.body)["reason"]) == (status, reason)


def test_strategic_merge_patch_of_a_custom_resource_is_415(emulator: KubeApiEmulator, kubeconfig: Path) -> None:
    custom, _ = apis(kubeconfig)
    deploy(emulator, wait=False)
    with pytest.raises(ApiException) as info:
        custom.patch_namespaced_custom_object(G, V, NS, PL, DGD, {"spec": {}},
                                              _content_type="application/strategic-merge-patch+json")
    assert info.value.status == 415


def test_scale_down_deletes_the_lowest_deletion_cost_first(emulator: KubeApiEmulator, kubeconfig: Path) -> None:
    custom, core = apis(kubeconfig)
    deploy(emulator, decode_replicas=4)
    names = pod_names(emulator, "Decode")
    victims = [names[1], names[2]]
    for cost, name in ((-5, victims[0]), (-3, victims[1]), (10, names[0])):
        core.patch_namespaced_pod(name, NS, {"metadata": {"annotations": {
            "controller.kubernetes.io/pod-deletion-cost": str(cost)}}}, _content_type="application/merge-patch+json")
    custom.patch_namespaced_custom_object(G, V, NS, PL, DGD, {"spec": {"services": {"Decode": {"replicas": 2}}}})
    assert pod_names(emulator, "Decode") == sorted(set(names) - set(victims))


def test_pending_pods_go_before_ready_ones(emulator: KubeApiEmulator, kubeconfig: Path) -> None:
    custom, _ = apis(kubeconfig)
    deploy(emulator, decode_replicas=1)
    ready = pod_names(emulator, "Decode")
    emulator.pending_forever(True, "Decode")
    emulator.scale(DGD, "Decode", 3)
    wait_for(lambda: len(pod_names(emulator, "Decode")) == 3, what="3 decode pods")
    time.sleep(0.3)  # past the startup delay: they would be Ready if they could be scheduled
    pending = [p for p in emulator.pods(DGD, "Decode") if p["status"]["phase"] == "Pending"]
    assert len(pending) == 2
    assert pending[0]["status"]["conditions"][0]["reason"] == "Unschedulable"
    assert get_dgd(custom)["status"]["services"]["Decode"]["readyReplicas"] == 1
    emulator.scale(DGD, "Decode", 2)
    assert ready[0] in pod_names(emulator, "Decode")
    emulator.pending_forever(False, "Decode")
    wait_for(lambda: all_ready(emulator), what="the pending pod to start once schedulable")


def test_list_then_watch_from_the_resource_version(emulator: KubeApiEmulator, kubeconfig: Path) -> None:
    _, core = apis(kubeconfig)
    deploy(emulator, decode_replicas=1)
    listed = core.list_namespaced_pod(NS, label_selector="nvidia.com/dynamo-component=Decode")
    emulator.scale(DGD, "Decode", 2)
    emulator.scale(DGD, "Decode", 1)
    events = [
        (e["type"], e["raw_object"]["metadata"]["name"])
        for e in watch.Watch().stream(core.list_namespaced_pod, NS, label_selector="nvidia.com/dynamo-component=Decode",
                                      resource_version=listed.metadata.resource_version, timeout_seconds=1)
    ]
    kinds = [k for k, _ in events]
    assert kinds[0] == "ADDED" and "DELETED" in kinds
    assert all(name.startswith(f"{DGD}-decode-") for _, name in events)


def test_watch_too_old_is_410_gone(emulator: KubeApiEmulator, kubeconfig: Path) -> None:
    _, core = apis(kubeconfig)
    deploy(emulator, wait=False)
    old = core.list_namespaced_pod(NS).metadata.resource_version
    emulator.scale(DGD, "Decode", 2)
    emulator.expire_watches()
    with pytest.raises(ApiException) as info:
        for _ in watch.Watch().stream(core.list_namespaced_pod, NS, resource_version=old, timeout_seconds=2):
            pass
    assert info.value.status == 410


def test_bookmarks_carry_the_current_resource_version(kubeconfig: Path) -> None:
    emu = start_emulator(bookmark_interval_s=0.1)
    try:
        path = emu.write_kubeconfig(kubeconfig.with_name("bm"))
        _, core = apis(path)
        rv = core.list_namespaced_pod(NS).metadata.resource_version
        kinds = [e["type"] for e in watch.Watch().stream(core.list_namespaced_pod, NS, resource_version=rv,
                                                          allow_watch_bookmarks=True, timeout_seconds=1)]
        assert kinds and set(kinds) == {"BOOKMARK"}
    finally:
        emu.stop()


@pytest.mark.parametrize(
    ("verb", "resource", "call"),
    [
        pytest.param("get", "dynamographdeployments", "get", id="get-dgd"),
        pytest.param("patch", "dynamographdeployments", "patch", id="patch-dgd"),
        pytest.param("list", "pods", "list-pods", id="list-pods"),
    ],
)
def test_forbid_answers_403_per_verb(emulator: KubeApiEmulator, kubeconfig: Path, verb: str, resource: str,
                                     call: str) -> None:
    custom, core = apis(kubeconfig)
    deploy(emulator, wait=False)
    calls = {
        "get": lambda: get_dgd(custom),
        "patch": lambda: custom.patch_namespaced_custom_object(G, V, NS, PL, DGD, {"spec": {}}),
        "list-pods": lambda: core.list_namespaced_pod(NS),
    }
    emulator.forbid(verb, resource)
    with pytest.raises(ApiException) as info:
        calls[call]()
    assert info.value.status == 403
    assert f"cannot {verb} resource \"{resource}\"" in json.loads(info.value.body)["message"]
    for other in set(calls) - {call}:
        calls[other]()  # other verbs still allowed
    emulator.allow()
    calls[call]()


def test_injected_5xx_then_recovers(emulator: KubeApiEmulator, kubeconfig: Path) -> None:
    custom, _ = apis(kubeconfig)
    deploy(emulator, wait=False)
    emulator.fail_next(503, count=2, verb="get")
    for _ in range(2):
        with pytest.raises(ApiException) as info:
            get_dgd(custom)
        assert info.value.status == 503
    assert get_dgd(custom)["metadata"]["name"] == DGD


def test_hang_until_released(emulator: KubeApiEmulator, kubeconfig: Path) -> None:
    custom, _ = apis(kubeconfig)
    deploy(emulator, wait=False)
    emulator.hang("get")
    started = time.monotonic()
    with pytest.raises(Exception) as info:
        custom.get_namespaced_custom_object(G, V, NS, PL, DGD, _request_timeout=0.5)
    assert "timed out" in str(info.value).lower() or "timeout" in type(info.value).__name__.lower()
    assert time.monotonic() - started < 5.0
    emulator.release()
    assert get_dgd(custom)["metadata"]["name"] == DGD


def test_bearer_token_is_required_when_set(tmp_path: Path) -> None:
    emu = start_emulator(token="s3cret")
    try:
        good = emu.write_kubeconfig(tmp_path / "good")
        custom, _ = apis(good)
        assert custom.list_namespaced_custom_object(G, V, NS, PL)["items"] == []
        bad = config.new_client_from_config_dict({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": emu.url}}],
            "users": [{"name": "u", "user": {"token": "wrong"}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]})
        with pytest.raises(ApiException) as info:
            client.CustomObjectsApi(bad).list_namespaced_custom_object(G, V, NS, PL)
        assert info.value.status == 401
    finally:
        emu.stop()


def test_kubectl_reads_the_emulated_dgd(emulator: KubeApiEmulator, kubeconfig: Path) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    deploy(emulator, decode_replicas=2)
    out = subprocess.run(
        ["kubectl", "get", "dgd", DGD, "-o", "jsonpath={.status.services.Decode.readyReplicas}"],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)}, capture_output=True, text=True, timeout=60, check=True,
    )
    assert out.stdout == "2"


def test_standalone_entry_point(tmp_path: Path) -> None:
    kc = tmp_path / "kc"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sla_planner.sim.kube_api", "--kubeconfig", str(kc), "--example-dgd", "demo",
         "--namespace", "ns1", "--startup-delay", "0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        wait_for(lambda: kc.exists(), timeout_s=30, what="the kubeconfig")
        custom, _ = apis(kc)
        dgd = wait_for(lambda: custom.get_namespaced_custom_object(G, V, "ns1", PL, "demo"), what="demo DGD")
        assert set(dgd["spec"]["services"]) == {"Frontend", "Prefill", "Decode"}
    finally:
        proc.terminate()
        proc.wait(10)


def test_listeners_see_every_change_in_order(emulator: KubeApiEmulator) -> None:
    seen: list[tuple[str, str, str]] = []
    emulator.add_listener(lambda e: seen.append((e.type, e.resource, e.obj["metadata"]["name"])))
    emulator.add_listener(lambda e: 1 / 0)  # a broken listener does not stop the others
    deploy(emulator, decode_replicas=1)
    pod = pod_names(emulator, "Decode")[0]
    emulator.scale(DGD, "Decode", 0)
    wait_for(lambda: ("DELETED", "pods", pod) in seen, what="the pod's deletion")
    mine = [kind for kind, resource, name in seen if name == pod]
    assert mine[0] == "ADDED" and mine[-1] == "DELETED" and set(mine[1:-1]) == {"MODIFIED"}
    assert ("ADDED", "dynamographdeployments", DGD) in seen
