"""`sla-planner evaluate --ray ADDRESS` against a local Ray head this test starts and stops."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sla_planner.evaluate import build_matrix, parse_policy, parse_profile, parse_trace, run_matrix

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'sla-planner[ray]')")

PYTHON_DIR = Path(__file__).resolve().parents[1] / "python"


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _processes_with(marker: str) -> list[int]:
    """Pids whose command line mentions ``marker`` (the unique temp dir of our Ray head)."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    return [int(line.split(None, 1)[0]) for line in out.splitlines() if marker in line]


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    ports = _free_ports(20)
    gcs, node_manager, object_manager, client, agent, agent_grpc, metrics, runtime_env, dashboard = ports[:9]
    temp_dir = tempfile.mkdtemp(prefix="ray")  # short: Ray's unix socket paths have a length limit
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    env["PYTHONPATH"] = os.pathsep.join([str(PYTHON_DIR), env.get("PYTHONPATH", "")])  # workers import this tree
    cmd = [
        sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
        "--node-ip-address=127.0.0.1", f"--port={gcs}", f"--node-manager-port={node_manager}",
        f"--object-manager-port={object_manager}", f"--ray-client-server-port={client}",
        f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}",
        f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1", "--include-dashboard=false",
        "--worker-port-list=" + ",".join(str(p) for p in ports[9:]),
        "--num-cpus=2", "--object-store-memory=100000000", "--disable-usage-stats", f"--temp-dir={temp_dir}",
    ]
    head = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{gcs}"
    try:
        deadline = time.monotonic() + 120
        while True:  # ready when a driver can connect
            if head.poll() is not None:
                pytest.fail(f"ray start exited with {head.returncode}")
            try:
                ray.init(address=address, logging_level="ERROR", log_to_driver=False)
                ray.shutdown()
                break
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        os.killpg(head.pid, signal.SIGTERM)  # the head and what it started share its process group
        try:
            head.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=10)
        for pid in _processes_with(temp_dir):  # workers run in their own groups: by pid
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _strip(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in ("wall_s", "replay_wall_s")} for r in records]


def test_matrix_on_a_ray_cluster_matches_the_serial_run(ray_head: str) -> None:
    matrix = build_matrix(
        traces=[parse_trace("builtin:mooncake_conversation@x4@max_duration_s=120")],
        profiles=[parse_profile("builtin:example")],
        policies=[parse_policy("static:mean"), parse_policy("oracle")],
    )
    seen: list[int] = []
    on_ray = run_matrix(matrix, ray_address=ray_head, progress=lambda done, total, r: seen.append(done))
    assert on_ray.backend == "ray"
    assert sorted(seen) == [1, 2]
    assert not ray.is_initialized()  # the driver disconnected; the cluster keeps running
    assert _strip(on_ray.records) == _strip(run_matrix(matrix, jobs=1).records)


def test_unreachable_ray_address_is_a_clear_error() -> None:
    from sla_planner.errors import ConfigError

    (port,) = _free_ports(1)
    matrix = build_matrix(
        traces=[parse_trace("builtin:mooncake_conversation@max_requests=10")],
        profiles=[parse_profile("builtin:example")],
        policies=[parse_policy("static:1,1")],
    )
    with pytest.raises(ConfigError, match=f"--ray 127.0.0.1:{port}: cannot connect"):
        run_matrix(matrix, ray_address=f"127.0.0.1:{port}")
