"""deploy/: kubectl accepts the manifests, the Role grants exactly the API calls the planner makes,
and the pieces fit together (config, service account, ports, volumes, namespace from the pod)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube_helpers import connector, deploy, emulator, kubeconfig, pod_names, run, wait_for

from sla_planner.config import PlannerConfig
from sla_planner.connectors.base import ApplyStatus, ScaleRequest
from sla_planner.sim.kube_api import KubeApiEmulator
from sla_planner.types import Pool

__all__ = ["emulator", "kubeconfig"]  # fixtures

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def manifests() -> dict[str, dict[str, Any]]:
    """``Kind/name`` -> object, from every file in deploy/."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(DEPLOY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                out[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return out


def test_kubectl_client_dry_run_accepts_every_manifest(emulator: KubeApiEmulator, kubeconfig: Path) -> None:
    """``kubectl apply --dry-run=client`` needs the API server's discovery to map kinds (the
    emulator serves it, so this runs offline); ``--validate=false`` because schema validation
    downloads OpenAPI documents, which only a real cluster has."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    out = subprocess.run(
        ["kubectl", "apply", "--dry-run=client", "--validate=false", "-f", str(DEPLOY), "-o", "json"],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)}, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    items = json.loads(out.stdout)["items"]
    assert sorted(f"{i['kind']}/{i['metadata']['name']}" for i in items) == sorted(manifests())


def rules() -> set[tuple[str, str]]:
    role = manifests()["Role/sla-planner"]
    return {(verb, resource) for rule in role["rules"] for resource in rule["resources"] for verb in rule["verbs"]}


def test_the_role_grants_exactly_what_the_planner_calls(emulator: KubeApiEmulator, kubeconfig: Path) -> None:
    deploy(emulator, decode_replicas=2)
    names = pod_names(emulator, "Decode")

    async def everything() -> None:
        c = connector(kubeconfig)
        d = c.pod_discovery(watch_timeout_s=2.0)
        try:
            await c.read()
            wait_for(lambda: len(d.poll()) == 3, what="discovery")
            result = await c.apply(ScaleRequest({Pool.PREFILL: 1, Pool.DECODE: 1}, 1, "scale_down",
                                                drain_instances={Pool.DECODE: (names[0],)}))
            assert result.status is ApplyStatus.APPLIED
        finally:
            await c.close()

    run(everything())
    used = {(verb, resource) for verb, resource, _ in emulator.requests}
    assert used == rules()
    assert used == {("get", "dynamographdeployments"), ("patch", "dynamographdeployments"),
                    ("list", "pods"), ("watch", "pods"), ("patch", "pods")}
    role = manifests()["Role/sla-planner"]
    assert {g for rule in role["rules"] for g in rule["apiGroups"]} == {"nvidia.com", ""}


def test_the_pieces_fit_together(tmp_path: Path) -> None:
    m = manifests()
    deployment = m["Deployment/sla-planner"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["serviceAccountName"] == m["ServiceAccount/sla-planner"]["metadata"]["name"]
    binding = m["RoleBinding/sla-planner"]
    assert binding["roleRef"]["name"] == "sla-planner" and binding["subjects"][0]["name"] == pod["serviceAccountName"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert {"DYN_PARENT_DGD_K8S_NAME", "PROMETHEUS_ENDPOINT"} <= set(env)
    assert container["args"][:3] == ["run", "--config", "/etc/sla-planner/config.yaml"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert {mount["name"] for mount in container["volumeMounts"]} == set(volumes)
    assert volumes["config"]["configMap"]["name"] == "sla-planner-config"
    assert volumes["profile"]["configMap"]["optional"] is True
    # the config in the ConfigMap is a valid PlannerConfig whose paths and port match the pod
    path = tmp_path / "config.yaml"
    path.write_text(m["ConfigMap/sla-planner-config"]["data"]["config.yaml"], encoding="utf-8")
    config = PlannerConfig.load_file(path)
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert config.environment == "kubernetes"
    assert config.profile_results_dir in mounts
    assert any(config.report_output_dir.startswith(path) for path in mounts)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == config.metric_reporting_prometheus_port
    service_port = m["Service/sla-planner"]["spec"]["ports"][0]
    assert (service_port["targetPort"], service_port["port"]) == ("metrics", ports["metrics"])
    monitor = m["PodMonitor/sla-planner"]["spec"]
    assert monitor["podMetricsEndpoints"][0]["port"] == "metrics"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert monitor["selector"]["matchLabels"].items() <= labels.items()
    assert m["Service/sla-planner"]["spec"]["selector"].items() <= labels.items()
