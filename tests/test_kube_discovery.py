"""Pod discovery over a real watch (official client vs the API emulator), and the FPM subscriber
following it over real ZMQ: engines join when their pods are Ready and leave with their pods."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kube_helpers import DGD, NS, connector, deploy, emulator, kubeconfig, pod_names, run, start_emulator, wait_for
from sim_helpers import constant_perf

from sla_planner import kernels
from sla_planner.connectors.base import ApplyStatus, ScaleRequest
from sla_planner.connectors.kubernetes import KubernetesConnector, load_api_client
from sla_planner.errors import ConfigError
from sla_planner.signals import EngineEndpoint, FpmSubscriber
from sla_planner.signals.kube_discovery import KubePodDiscovery
from sla_planner.signals.mock_engine import MockEngine
from sla_planner.sim.kube_api import KubeApiEmulator
from sla_planner.types import Pool

__all__ = ["emulator", "kubeconfig"]  # fixtures

PORT = 31000


def discovery(path: Path, **kwargs: Any) -> KubePodDiscovery:
    api, _ = load_api_client({"KUBECONFIG": str(path)})
    kwargs.setdefault("watch_timeout_s", 2.0)
    kwargs.setdefault("request_timeout_s", 2.0)
    kwargs.setdefault("backoff_s", (0.05, 0.2))
    return KubePodDiscovery(api, namespace=NS, dgd_name=DGD, **kwargs)


@pytest.fixture
def watching(kubeconfig: Path) -> Iterator[KubePodDiscovery]:
    d = discovery(kubeconfig)
    try:
        yield d
    finally:
        d.stop()


def endpoints_by_pod(d: KubePodDiscovery) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for ep in d.poll():
        out.setdefault(ep.instance or "", []).append((ep.endpoint, ep.role))
    return out


def ip_of(emu: KubeApiEmulator, pod: str) -> str:
    return next(p["status"]["podIP"] for p in emu.pods(DGD) if p["metadata"]["name"] == pod)


def test_engines_follow_pods_with_ips_ports_and_dp_ranks(emulator: KubeApiEmulator, watching: KubePodDiscovery) -> None:
    deploy(emulator, prefill_replicas=1, decode_replicas=2, dp_size=2, fpm_port=PORT)
    assert watching.wait_synced(5.0)
    decode = pod_names(emulator, "Decode")
    prefill = pod_names(emulator, "Prefill")
    wait_for(lambda: set(endpoints_by_pod(watching)) == set(decode + prefill), what="3 engine pods")
    seen = endpoints_by_pod(watching)
    for name in decode:
        ip = ip_of(emulator, name)
        assert seen[name] == [(f"tcp://{ip}:{PORT}", "decode"), (f"tcp://{ip}:{PORT + 1}", "decode")]
    assert {role for _, role in seen[prefill[0]]} == {"prefill"}
    assert not any(name.startswith(f"{DGD}-frontend") for name in seen)  # not an engine

    # a pod that cannot start is not an engine
    emulator.pending_forever(True, "Decode")
    emulator.scale(DGD, "Decode", 3)
    new = wait_for(lambda: set(pod_names(emulator, "Decode")) - set(decode), what="a third decode pod")
    time.sleep(0.3)
    assert not new & set(endpoints_by_pod(watching))
    emulator.pending_forever(False, "Decode")
    wait_for(lambda: new <= set(endpoints_by_pod(watching)), what="the third pod once Ready")

    # pods that leave drop out
    emulator.scale(DGD, "Decode", 1)
    wait_for(lambda: len([n for n in endpoints_by_pod(watching) if "-decode-" in n]) == 1, what="decode down to 1")
    assert watching.last_error is None and watching.counters["watches"] >= 1


def test_roles_come_from_the_connectors_services_for_legacy_names(emulator: KubeApiEmulator, kubeconfig: Path) -> None:
    deploy(emulator, legacy_names=True, decode_replicas=2)
    plain = discovery(kubeconfig)
    try:
        assert plain.wait_synced(5.0)
        wait_for(lambda: len(plain.pods()) == 4, what="4 pods listed")
        assert plain.poll() == []  # no sub-component label, no role map: not engines

        async def go() -> list[EngineEndpoint]:
            c = connector(kubeconfig)
            d = c.pod_discovery(watch_timeout_s=2.0)
            try:
                await c.read()  # resolves VllmPrefillWorker / VllmDecodeWorker
                assert d.wait_synced(5.0)
                return wait_for(lambda: len(d.poll()) == 3 and d.poll(), what="3 engines")  # type: ignore[no-any-return]
            finally:
                await c.close()  # stops the discovery it made

        found = run(go())
        assert sorted(ep.role for ep in found) == ["decode", "decode", "prefill"]
        assert {ep.instance for ep in found if ep.role == "decode"} == set(pod_names(emulator, "VllmDecodeWorker"))
    finally:
        plain.stop()


def test_dp_size_override(emulator: KubeApiEmulator, kubeconfig: Path) -> None:
    deploy(emulator, decode_replicas=1, prefill_replicas=1, dp_size=1)
    d = discovery(kubeconfig, dp_size=4)
    try:
        ports = wait_for(lambda: sorted(ep.endpoint.rsplit(":", 1)[1] for ep in d.poll() if ep.role == "decode"),
                         what="decode endpoints")
        assert ports == ["20380", "20381", "20382", "20383"]
    finally:
        d.stop()
    with pytest.raises(ConfigError, match="dp_size"):
        discovery(kubeconfig, dp_size=0)


def test_watch_expiry_lists_again(emulator: KubeApiEmulator, watching: KubePodDiscovery) -> None:
    deploy(emulator, decode_replicas=1)
    wait_for(lambda: len(watching.poll()) == 2, what="2 engines")
    emulator.expire_watches()  # ends the stream; resuming from its version is 410 Gone
    emulator.scale(DGD, "Decode", 2)
    wait_for(lambda: watching.counters["expired"] >= 1, what="the 410")
    wait_for(lambda: len(watching.poll()) == 3, what="3 engines after listing again")
    assert watching.counters["lists"] >= 2 and watching.last_error is None


def test_api_errors_keep_the_last_set_and_recover(emulator: KubeApiEmulator, watching: KubePodDiscovery) -> None:
    deploy(emulator, decode_replicas=1)
    before = wait_for(lambda: len(watching.poll()) == 2 and watching.poll(), what="2 engines")
    emulator.forbid("watch", "pods")
    emulator.forbid("list", "pods")
    emulator.expire_watches()
    wait_for(lambda: watching.last_error is not None, what="the error to be recorded")
    assert "HTTP 403" in (watching.last_error or "")
    assert watching.poll() == before  # poll never raises; the last known set stands
    emulator.allow()
    emulator.scale(DGD, "Decode", 2)
    wait_for(lambda: len(watching.poll()) == 3, what="recovery")
    wait_for(lambda: watching.last_error is None, what="the error to clear")


def test_stop_is_bounded_while_the_api_hangs(emulator: KubeApiEmulator, kubeconfig: Path) -> None:
    """A blocked list cannot be interrupted: stop() waits at most its timeout, the daemon thread
    ends once the call returns (here: when the API answers again)."""
    deploy(emulator, wait=False)
    d = discovery(kubeconfig, request_timeout_s=30.0, watch_timeout_s=60.0)
    assert d.wait_synced(5.0)
    emulator.hang("list")
    emulator.expire_watches()  # the relist now hangs
    wait_for(lambda: ("list", "pods", "") in list(emulator.requests)[-3:], what="the hung relist")
    started = time.monotonic()
    d.stop(timeout_s=0.5)
    assert time.monotonic() - started < 1.0
    emulator.release()
    wait_for(lambda: d._thread is not None and not d._thread.is_alive(), what="the thread to end")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs every 127.0.0.0/8 address on loopback (Linux)")
def test_fpm_subscriber_follows_the_pods_over_zmq(kubeconfig: Path, tmp_path: Path) -> None:
    """Pods get loopback IPs; a mock engine per Ready pod publishes FPM there. The subscriber
    learns them through the watch, and forgets the engine of the pod a scale-down drained."""
    emu = start_emulator(pod_network="127.0.77.0/24")
    port = _free_port()
    engines: dict[str, MockEngine] = {}
    perf = constant_perf(prefill_tok_s=20_000.0, itl_ms=10.0, max_kv=100_000)
    try:
        path = emu.write_kubeconfig(tmp_path / "kc")
        deploy(emu, decode_replicas=3, prefill_replicas=1, dp_size=2, fpm_port=port)
        api, _ = load_api_client({"KUBECONFIG": str(path)})
        c = KubernetesConnector(api, namespace=NS, dgd_name=DGD, pools=(Pool.PREFILL, Pool.DECODE), owns_client=True)
        run(c.read())
        for p in emu.pods(DGD, "Decode"):
            name = p["metadata"]["name"]
            engines[name] = MockEngine(port, 2, "decode", perf, "constant:20?isl=200&osl=20", name,
                                       bind_host=p["status"]["podIP"], time_scale=10.0)
            engines[name].start()
        d = c.pod_discovery(watch_timeout_s=2.0)
        with FpmSubscriber(kernels.FpmIngestor(), d, poll_interval_s=0.02, refresh_interval_s=0.1) as sub:
            def seen() -> set[tuple[str, int]]:
                snap = sub.snapshot()
                return {(str(w), int(r)) for w, r in zip(snap["worker_id"], snap["dp_rank"])}

            wanted = {(name, rank) for name in engines for rank in (0, 1)}
            wait_for(lambda: wanted <= seen(), timeout_s=20, what="all 6 engine ranks")
            assert {sub.roles()[key] for key in wanted} == {"decode"}
            drained = sorted(engines)[1]
            result = run(c.apply(ScaleRequest({Pool.PREFILL: 1, Pool.DECODE: 2}, 9, "scale_down",
                                              drain_instances={Pool.DECODE: (drained,)})))
            assert result.status is ApplyStatus.APPLIED
            wait_for(lambda: drained not in pod_names(emu, "Decode"), what="the drained pod to go")
            wait_for(lambda: not {(drained, 0), (drained, 1)} & seen(), timeout_s=10, what="its engines to leave")
            assert wanted - {(drained, 0), (drained, 1)} <= seen()
        run(c.close())
    finally:
        for engine in engines.values():
            engine.stop()
        emu.stop()
