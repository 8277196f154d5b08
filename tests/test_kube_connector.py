"""KubernetesConnector with the official client against the API emulator over HTTP."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from kube_helpers import (
    DGD,
    DISAGG,
    NS,
    all_ready,
    connector,
    deploy,
    emulator,
    kubeconfig,
    pod_names,
    run,
    wait_for,
)

from sla_planner.config import PlannerConfig
from sla_planner.connectors.base import ApplyResult, ApplyStatus, Connector, DeploymentState, ScaleRequest
from sla_planner.connectors.kube_dgd import DELETION_COST, DRAIN_MARK
from sla_planner.connectors.kubernetes import DRAIN_COST_BASE, KubernetesConnector
from sla_planner.errors import ConfigError, ConnectorError
from sla_planner.sim.kube_api import KubeApiEmulator
from sla_planner.sim.kube_resources import DGDS
from sla_planner.types import Pool

__all__ = ["emulator", "kubeconfig"]  # fixtures

P, D = Pool.PREFILL, Pool.DECODE


def read(path: Path, **kwargs: Any) -> DeploymentState:
    async def go() -> DeploymentState:
        c = connector(path, **kwargs)
        try:
            return await c.read()
        finally:
            await c.close()

    return run(go())


def apply(path: Path, request: ScaleRequest, **kwargs: Any) -> ApplyResult:
    async def go() -> ApplyResult:
        c = connector(path, **kwargs)
        try:
            return await c.apply(request)
        finally:
            await c.close()

    return run(go())


def scale(targets: dict[Pool, int], decision_id: int = 1, **drain: tuple[str, ...]) -> ScaleRequest:
    return ScaleRequest(targets, decision_id, "test", drain_instances={Pool(k): v for k, v in drain.items()})


def spec_replicas(emu: KubeApiEmulator, service: str) -> int:
    return int(emu.dgd(DGD)["spec"]["services"][service]["replicas"])


def annotations(emu: KubeApiEmulator, service: str) -> dict[str, dict[str, str]]:
    return {p["metadata"]["name"]: p["metadata"].get("annotations") or {} for p in emu.pods(DGD, service)}


@pytest.mark.parametrize(
    ("backend", "legacy"),
    [pytest.param("vllm", False, id="subComponentType"), pytest.param("vllm", True, id="legacy-vllm"),
     pytest.param("sglang", True, id="legacy-sglang"), pytest.param("trtllm", True, id="legacy-trtllm")],
)
def test_reads_replicas_readiness_and_gpus(emulator: KubeApiEmulator, kubeconfig: Path, backend: str,
                                           legacy: bool) -> None:
    deploy(emulator, backend=backend, legacy_names=legacy, prefill_replicas=1, decode_replicas=3, gpus_per_engine=2)
    state = read(kubeconfig, backend=backend)
    c = connector(kubeconfig)
    assert isinstance(c, Connector)
    run(c.close())
    assert state.current() == {P: 1, D: 3} and state.ready() == {P: 1, D: 3}
    assert state.rolling_out == {P: False, D: False} and not any(state.in_progress().values())
    assert {s.gpus_per_engine for s in state.pools.values()} == {2}
    assert state.detail["dgd"] == f"{NS}/{DGD}"
    services = {pool: facts["service"] for pool, facts in state.detail["pools"].items()}
    expected = {"vllm": ("VllmPrefillWorker", "VllmDecodeWorker"), "sglang": ("prefill", "decode"),
                "trtllm": ("TRTLLMPrefillWorker", "TRTLLMDecodeWorker")}[backend] if legacy else ("Prefill", "Decode")
    assert (services["prefill"], services["decode"]) == expected


def test_scale_up_then_down_with_merge_patches(emulator: KubeApiEmulator, kubeconfig: Path) -> None:
    deploy(emulator, decode_replicas=1)
    rv_before = emulator.dgd(DGD)["metadata"]["resourceVersion"]
    result = apply(kubeconfig, scale({P: 1, D: 3}, 7))
    assert (result.status, result.decision_id) == (ApplyStatus.APPLIED, 7)
    assert "decode 1->3" in result.detail
    assert spec_replicas(emulator, "Decode") == 3 and spec_replicas(emulator, "Prefill") == 1
    patches = [r for r in emulator.requests if r[0] == "patch" and r[1] == DGDS]
    assert len(patches) == 1  # one merge patch, prefill untouched
    assert int(emulator.dgd(DGD)["metadata"]["resourceVersion"]) > int(rv_before)
    wait_for(lambda: all_ready(emulator), what="3 decode engines")
    assert read(kubeconfig).current() == {P: 1, D: 3}
    assert apply(kubeconfig, scale({P: 1, D: 3})).status is ApplyStatus.UNCHANGED
    result = apply(kubeconfig, scale({P: 2, D: 2}, 8))
    assert result.status is ApplyStatus.APPLIED
    assert (spec_replicas(emulator, "Prefill"), spec_replicas(emulator, "Decode")) == (2, 2)
    wait_for(lambda: len(pod_names(emulator, "Decode")) == 2, what="decode back to 2")


def test_drain_marks_the_chosen_pods_and_they_go_first(emulator: KubeApiEmulator, kubeconfig: Path) -> None:
    deploy(emulator, decode_replicas=4)
    names = pod_names(emulator, "Decode")
    chosen = (names[2], names[0])  # idlest first; both differ from the ReplicaSet's own choice
    result = apply(kubeconfig, scale({P: 1, D: 2}, 11, decode=chosen + ("gone-pod",)))
    assert result.status is ApplyStatus.APPLIED and f"draining decode: {names[2]}, {names[0]}" in result.detail
    assert pod_names(emulator, "Decode") == sorted(set(names) - set(chosen))
    marks = [r for r in emulator.requests if r[0] == "patch" and r[1] == "pods"]
    assert [name for _, _, name in marks] == [names[2], names[0]]


def test_drain_costs_rank_the_chosen_pods_and_clear_stale_marks(emulator: KubeApiEmulator, kubeconfig: Path) -> None:
    deploy(emulator, decode_replicas=4)
    names = pod_names(emulator, "Decode")
    emulator.pending_forever(True, "Prefill")  # keep prefill rolling out: decision 1 is deferred after marking
    emulator.scale(DGD, "Prefill", 2)
    first = apply(kubeconfig, scale({P: 1, D: 3}, 1, decode=(names[3],)))
    assert first.status is ApplyStatus.DEFERRED and spec_replicas(emulator, "Decode") == 4
    assert DRAIN_MARK not in annotations(emulator, "Decode")[names[3]]  # deferred before marking
    emulator.pending_forever(False, "Prefill")
    wait_for(lambda: all_ready(emulator), what="prefill ready")
    # a decision marks two pods, then its replica write fails: the marks stay behind
    emulator.fail_next(500, count=1, verb="patch", resource=DGDS)
    failed = apply(kubeconfig, scale({P: 2, D: 2}, 2, decode=(names[1], names[3])), conflict_retries=0)
    assert failed.status is ApplyStatus.FAILED and "API server error 500" in failed.detail
    marks = annotations(emulator, "Decode")
    assert (marks[names[1]][DELETION_COST], marks[names[3]][DELETION_COST]) == (
        str(DRAIN_COST_BASE), str(DRAIN_COST_BASE + 1))
    assert marks[names[1]][DRAIN_MARK] == "2"
    # the next decision chooses another pod: the stale marks are cleared, the new one goes
    ok = apply(kubeconfig, scale({P: 2, D: 3}, 3, decode=(names[0],)), conflict_retries=0)
    assert ok.status is ApplyStatus.APPLIED, ok.detail
    assert pod_names(emulator, "Decode") == sorted(set(names) - {names[0]})
    assert all(DRAIN_MARK not in a and DELETION_COST not in a for a in annotations(emulator, "Decode").values())


def test_annotation_refused_keeps_the_pool_and_writes_the_others(emulator: KubeApiEmulator, kubeconfig: Path) -> None:
    deploy(emulator, decode_replicas=3)
    names = pod_names(emulator, "Decode")
    emulator.forbid("patch", "pods")
    result = apply(kubeconfig, scale({P: 2, D: 2}, 5, decode=(names[0],)))
    assert result.status is ApplyStatus.FAILED
    assert "prefill 1->2" in result.detail and "NOT shrunk: decode" in result.detail
    assert "may not patch pods" in result.detail
    assert (spec_replicas(emulator, "Prefill"), spec_replicas(emulator, "Decode")) == (2, 3)
    only_down = apply(kubeconfig, scale({P: 2, D: 2}, 6, decode=(names[0],)))
    assert only_down.status is ApplyStatus.FAILED and only_down.detail.startswith("nothing written")
    # with no pods chosen, the ReplicaSet picks: nothing to mark, the scale-down goes through
    wait_for(lambda: all_ready(emulator), what="prefill 2 ready")
    assert apply(kubeconfig, scale({P: 2, D: 2}, 7)).status is ApplyStatus.APPLIED


@pytest.mark.parametrize(
    ("conflicts", "status"),
    [pytest.param(1, ApplyStatus.APPLIED, id="one-conflict-retried"),
     pytest.param(3, ApplyStatus.APPLIED, id="retries-just-enough"),
     pytest.param(4, ApplyStatus.FAILED, id="retries-exhausted")],
)
def test_409_is_reread_and_retried(emulator: KubeApiEmulator, kubeconfig: Path, conflicts: int,
                                   status: ApplyStatus) -> None:
    deploy(emulator)
    emulator.conflict_next(conflicts)
    result = apply(kubeconfig, scale({P: 1, D: 2}), conflict_retries=3)
    assert result.status is status, result.detail
    assert spec_replicas(emulator, "Decode") == (2 if status is ApplyStatus.APPLIED else 1)
    patches = [r for r in emulator.requests if r[0] == "patch" and r[1] == DGDS]
    assert len(patches) == min(conflicts + 1, 4)
    if status is ApplyStatus.FAILED:
        assert "409 conflict on each of 4 attempts" in result.detail


def test_concurrent_writer_reaching_the_target_makes_it_unchanged(emulator: KubeApiEmulator,
                                                                  kubeconfig: Path) -> None:
    deploy(emulator)
    emulator.conflict_next(1, patch={"spec": {"services": {"Decode": {"replicas": 2}}}})
    result = apply(kubeconfig, scale({P: 1, D: 2}))
    assert result.status is ApplyStatus.UNCHANGED and spec_replicas(emulator, "Decode") == 2


def test_rollout_in_progress_is_deferred(emulator: KubeApiEmulator, kubeconfig: Path) -> None:
    emulator.store.settings.startup_delay_s = 1.5
    deploy(emulator, decode_replicas=1)
    assert apply(kubeconfig, scale({P: 1, D: 2})).status is ApplyStatus.APPLIED
    state = read(kubeconfig)
    assert state.rolling_out[D] and state.in_progress()[D] and not state.rolling_out[P]
    result = apply(kubeconfig, scale({P: 1, D: 3}))
    assert result.status is ApplyStatus.DEFERRED
    assert "decode (Decode) is still rolling out: 1 of 2 ready" in result.detail
    assert spec_replicas(emulator, "Decode") == 2
    # a pool not rolling out is still written when it alone changes
    assert apply(kubeconfig, scale({P: 2, D: 2})).status is ApplyStatus.APPLIED
    wait_for(lambda: all_ready(emulator), what="rollout to settle")
    assert apply(kubeconfig, scale({P: 2, D: 3})).status is ApplyStatus.APPLIED


def test_pending_forever_is_waited_for_a_bounded_time_then_replanned(emulator: KubeApiEmulator,
                                                                    kubeconfig: Path) -> None:
    deploy(emulator, decode_replicas=2)
    emulator.pending_forever(True, "Decode")
    now = [time.time()]

    async def go() -> None:
        c = connector(kubeconfig, rollout_timeout_s=600.0, clock=lambda: now[0])
        try:
            assert (await c.apply(scale({P: 1, D: 4}))).status is ApplyStatus.APPLIED
            wait_for(lambda: len(pod_names(emulator, "Decode")) == 4, what="4 decode pods")
            state = await c.read()
            assert (state.pools[D].replicas, state.pools[D].ready, state.rolling_out[D]) == (4, 2, True)
            now[0] += 599.0  # just inside the bound: still waiting
            assert (await c.apply(scale({P: 1, D: 5}))).status is ApplyStatus.DEFERRED
            now[0] += 2.0  # past it: planned with the Ready engines
            state = await c.read()
            assert (state.pools[D].replicas, state.pools[D].ready, state.rolling_out[D]) == (2, 2, False)
            assert not state.in_progress()[D]
            assert state.detail["stalled"]["decode"]["spec_replicas"] == 4
            pending = state.detail["pools"]["decode"]["not_ready_pods"]
            assert len(pending) == 2 and all("Unschedulable" in why for why in pending.values())
            result = await c.apply(scale({P: 1, D: 3}))  # the core re-planned: one more than ready
            assert result.status is ApplyStatus.APPLIED and "decode 4->3" in result.detail
        finally:
            await c.close()

    run(go())
    live = [p for p in emulator.pods(DGD, "Decode") if not p["metadata"].get("deletionTimestamp")]
    assert sorted(p["status"]["phase"] for p in live) == ["Pending", "Running", "Running"]  # a pending pod went


def test_restarted_planner_reads_a_half_rolled_out_dgd(emulator: KubeApiEmulator, kubeconfig: Path) -> None:
    deploy(emulator, decode_replicas=2)
    emulator.pending_forever(True, "Decode")
    assert apply(kubeconfig, scale({P: 1, D: 4}, 1)).status is ApplyStatus.APPLIED  # planner 1, then it dies
    wait_for(lambda: len(pod_names(emulator, "Decode")) == 4, what="4 decode pods")
    state = read(kubeconfig)  # planner 2
    assert (state.pools[D].replicas, state.pools[D].ready, state.rolling_out[D]) == (4, 2, True)
    assert apply(kubeconfig, scale({P: 1, D: 2}, 2)).status is ApplyStatus.DEFERRED
    # the pods say how long they have waited: a restart does not reset the bound
    later = time.time() + 700.0
    stalled = read(kubeconfig, rollout_timeout_s=600.0, clock=lambda: later)
    assert stalled.pools[D].replicas == 2 and "stalled" in stalled.detail
    emulator.pending_forever(False, "Decode")
    wait_for(lambda: all_ready(emulator), what="the rollout to finish")
    assert read(kubeconfig).current() == {P: 1, D: 4}


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        pytest.param(("forbid", "get", "dynamographdeployments"),
                     "forbidden (403): the planner's service account may not get dynamographdeployments.nvidia.com "
                     "in namespace inference", id="403-get"),
        pytest.param(("fail", 500, "get"), "API server error 500 on get dynamographdeployments.nvidia.com llama",
                     id="500"),
        pytest.param(("fail", 503, "get"), "API server error 503", id="503"),
        pytest.param(("hang", "get"), "get dynamographdeployments.nvidia.com llama in namespace inference: "
                     "no answer within 0.5 s", id="timeout"),
        pytest.param(("missing",), "dynamographdeployments.nvidia.com inference/llama not found (404)", id="404"),
    ],
)
def test_read_failures_are_connector_errors(emulator: KubeApiEmulator, kubeconfig: Path, fault: tuple[Any, ...],
                                            message: str) -> None:
    if fault[0] != "missing":
        deploy(emulator, wait=False)
    if fault[0] == "forbid":
        emulator.forbid(fault[1], fault[2])
    elif fault[0] == "fail":
        emulator.fail_next(fault[1], count=1, verb=fault[2])
    elif fault[0] == "hang":
        emulator.hang(fault[1])
    started = time.monotonic()
    with pytest.raises(ConnectorError) as info:
        read(kubeconfig, request_timeout_s=0.5)
    assert message in str(info.value)
    assert time.monotonic() - started < 3.0


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        pytest.param(("forbid", "patch", "dynamographdeployments"),
                     "may not patch dynamographdeployments.nvidia.com in namespace inference", id="403-patch"),
        pytest.param(("fail", 502, "patch"), "API server error 502 on patch", id="502-patch"),
        pytest.param(("hang", "patch"), "patch dynamographdeployments.nvidia.com llama in namespace inference: "
                     "no answer within 0.5 s", id="timeout-patch"),
        pytest.param(("forbid", "get", "dynamographdeployments"), "may not get", id="403-reread"),
    ],
)
def test_apply_failures_are_failed_never_applied(emulator: KubeApiEmulator, kubeconfig: Path,
                                                 fault: tuple[Any, ...], message: str) -> None:
    deploy(emulator)
    if fault[0] == "forbid":
        emulator.forbid(fault[1], fault[2])
    elif fault[0] == "fail":
        emulator.fail_next(fault[1], count=1, verb=fault[2])
    else:
        emulator.hang(fault[1])
    result = apply(kubeconfig, scale({P: 1, D: 2}, 4), request_timeout_s=0.5)
    assert (result.status, result.decision_id) == (ApplyStatus.FAILED, 4)
    assert message in result.detail
    assert spec_replicas(emulator, "Decode") == 1  # (a hung patch may still land later: the next read says)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        pytest.param(lambda d: d["spec"].pop("services"), "spec.services is missing or empty", id="no-services"),
        pytest.param(lambda d: d["spec"]["services"]["Decode"].update(replicas="two"),
                     "spec.services.Decode.replicas must be an integer >= 0, got 'two'", id="replicas-not-int"),
        pytest.param(lambda d: d["status"]["services"]["Decode"].update(readyReplicas=-1),
                     "status.services.Decode.readyReplicas must be an integer >= 0", id="bad-status"),
    ],
)
def test_malformed_resource_is_a_connector_error(emulator: KubeApiEmulator, kubeconfig: Path, mutate: Any,
                                                 message: str) -> None:
    deploy(emulator)
    with emulator.store.lock:  # written past the API's validation, as a broken operator or webhook could
        mutate(emulator.store.objects[(DGDS, NS, DGD)])
    with pytest.raises(ConnectorError, match="DynamoGraphDeployment inference/llama") as info:
        read(kubeconfig)
    assert message in str(info.value)
    result = apply(kubeconfig, scale({P: 1, D: 2}))
    assert result.status is ApplyStatus.FAILED and message in result.detail


def test_a_hung_api_blocks_neither_the_loop_nor_shutdown(emulator: KubeApiEmulator, kubeconfig: Path) -> None:
    deploy(emulator)
    emulator.hang()
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.05)

    async def go() -> float:
        c = connector(kubeconfig, request_timeout_s=1.0)
        task = asyncio.create_task(ticker())
        started = time.monotonic()
        results = await asyncio.gather(c.read(), c.apply(scale({P: 1, D: 2})), return_exceptions=True)
        assert isinstance(results[0], ConnectorError)
        assert isinstance(results[1], ApplyResult) and results[1].status is ApplyStatus.FAILED
        elapsed = time.monotonic() - started
        closing = time.monotonic()
        await c.close()
        assert time.monotonic() - closing < 0.5
        task.cancel()
        return elapsed

    elapsed = run(go())
    assert elapsed < 4.0
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert max(gaps) < 0.5  # the event loop kept ticking while calls hung
    emulator.release()


def test_invalid_targets_fail_without_a_call(emulator: KubeApiEmulator, kubeconfig: Path) -> None:
    deploy(emulator, wait=False)
    before = len(emulator.requests)
    result = apply(kubeconfig, scale({Pool.AGG: 2}))
    assert result.status is ApplyStatus.FAILED and "invalid targets agg=2" in result.detail
    result = apply(kubeconfig, ScaleRequest({D: -1}, 1, "x"))
    assert result.status is ApplyStatus.FAILED
    assert len(emulator.requests) == before


def test_from_config_uses_env_and_kubeconfig(emulator: KubeApiEmulator, tmp_path: Path) -> None:
    deploy(emulator, decode_replicas=2)
    path = emulator.write_kubeconfig(tmp_path / "kc", namespace="elsewhere")
    cfg = PlannerConfig.from_sources(
        '{"mode": "decode", "kube_request_timeout_s": 3, "kube_rollout_timeout_s": 60, "kube_conflict_retries": 1}',
        env={"POD_NAMESPACE": NS, "DYN_PARENT_DGD_K8S_NAME": DGD},
    )

    async def go() -> DeploymentState:
        c = KubernetesConnector.from_config(cfg, {"KUBECONFIG": str(path)})
        assert (c.namespace, c.dgd_name, c.pools, c.request_timeout_s, c.rollout_timeout_s, c.conflict_retries) == (
            NS, DGD, (D,), 3.0, 60.0, 1)
        try:
            return await c.read()
        finally:
            await c.close()

    assert run(go()).current() == {D: 2}
    # namespace from the kubeconfig context when neither config nor env says
    ctx = emulator.write_kubeconfig(tmp_path / "kc2", namespace=NS)
    c = KubernetesConnector.from_config(PlannerConfig(dgd_name=DGD), {"KUBECONFIG": str(ctx)})
    assert c.namespace == NS
    run(c.close())


@pytest.mark.parametrize(
    ("cfg", "env", "error", "message"),
    [
        pytest.param({}, {"KUBECONFIG": "KC"}, ConfigError, "dgd_name: required by the Kubernetes connector",
                     id="no-dgd"),
        pytest.param({"dgd_name": "x"}, {"KUBECONFIG": "MISSING"}, ConnectorError, "could not be loaded",
                     id="no-kubeconfig"),
        pytest.param({"dgd_name": "x", "backend": "mocker"}, {"KUBECONFIG": "KC"}, None, None, id="mocker-backend"),
    ],
)
def test_from_config_problems(emulator: KubeApiEmulator, tmp_path: Path, cfg: dict[str, Any], env: dict[str, str],
                              error: type[Exception] | None, message: str | None) -> None:
    kc = emulator.write_kubeconfig(tmp_path / "kc")
    env = {k: str(kc) if v == "KC" else str(tmp_path / "missing") for k, v in env.items()}
    config = PlannerConfig(**cfg)
    if error is None:
        run(KubernetesConnector.from_config(config, env).close())
        return
    with pytest.raises(error, match=message):
        KubernetesConnector.from_config(config, env)


def test_connector_name_and_config_fields_are_validated() -> None:
    with pytest.raises(ConfigError, match="namespace"):
        KubernetesConnector(object(), namespace="", dgd_name="x", pools=DISAGG)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="backend"):
        KubernetesConnector(object(), namespace="a", dgd_name="x", pools=DISAGG, backend="nope")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="kube_conflict_retries"):
        KubernetesConnector(object(), namespace="a", dgd_name="x", pools=DISAGG, conflict_retries=-1)  # type: ignore[arg-type]
    assert KubernetesConnector.name == "kubernetes"
