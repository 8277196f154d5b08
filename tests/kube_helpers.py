"""Shared pieces of the Kubernetes tests: the API emulator on loopback and clients for it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sla_planner.connectors.kubernetes import KubernetesConnector, load_api_client
from sla_planner.sim.kube_api import KubeApiEmulator
from sla_planner.sim.kube_resources import example_dgd
from sla_planner.types import Pool

NS = "inference"
DGD = "llama"
DISAGG = (Pool.PREFILL, Pool.DECODE)
T = TypeVar("T")


def wait_for(condition: Callable[[], Any], timeout_s: float = 10.0, what: str = "condition") -> Any:
    """Poll ``condition`` until truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine on a fresh event loop."""
    return asyncio.run(coro)


def start_emulator(**kwargs: Any) -> KubeApiEmulator:
    kwargs.setdefault("namespace", NS)
    kwargs.setdefault("startup_delay_s", 0.2)
    return KubeApiEmulator(**kwargs).start()


@pytest.fixture
def emulator() -> Iterator[KubeApiEmulator]:
    emu = start_emulator()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def kubeconfig(emulator: KubeApiEmulator, tmp_path: Path) -> Path:
    return emulator.write_kubeconfig(tmp_path / "kubeconfig")


def all_ready(emu: KubeApiEmulator, name: str = DGD) -> bool:
    """Whether the DGD's Ready condition is True."""
    conditions = emu.dgd(name).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def deploy(emu: KubeApiEmulator, *, wait: bool = True, **kwargs: Any) -> dict[str, Any]:
    """Create the example DGD (``kwargs`` to :func:`example_dgd`) and wait until it is ready."""
    manifest = example_dgd(DGD, **kwargs)
    emu.apply_dgd(manifest)
    if wait:
        wait_for(lambda: all_ready(emu), what="the DGD to become ready")
    return manifest


def connector(kubeconfig: Path, pools: tuple[Pool, ...] = DISAGG, **kwargs: Any) -> KubernetesConnector:
    api, _ = load_api_client({"KUBECONFIG": str(kubeconfig)})
    kwargs.setdefault("request_timeout_s", 2.0)
    return KubernetesConnector(api, namespace=NS, dgd_name=DGD, pools=pools, owns_client=True, **kwargs)


def pod_names(emu: KubeApiEmulator, service: str) -> list[str]:
    """Names of the live (not terminating) pods of a service."""
    return sorted(
        p["metadata"]["name"] for p in emu.pods(DGD, service) if not p["metadata"].get("deletionTimestamp")
    )
