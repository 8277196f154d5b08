"""A real etcd (Debian's ``etcd`` binary) on loopback for tests: free ports, a temporary data
directory, readiness by polling ``/health``, stop and restart on the same ports and data."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

__all__ = ["EtcdServer", "etcd_binary", "free_port", "require_etcd"]


def etcd_binary() -> str | None:
    """Path of the etcd server binary, or None."""
    return shutil.which("etcd")


def require_etcd() -> str:
    """The etcd binary, or skip the test with the reason."""
    binary = etcd_binary()
    if binary is None:
        pytest.skip("etcd server binary not found (Debian package etcd-server; CI installs it)")
    return binary


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EtcdServer:
    """One etcd member on 127.0.0.1; ``url`` is its client endpoint."""

    def __init__(
        self,
        data_dir: Path,
        *,
        extra_args: tuple[str, ...] = (),
        scheme: str = "http",
        health_ssl: ssl.SSLContext | None = None,
    ) -> None:
        self.binary = require_etcd()
        self.data_dir = data_dir
        self.client_port = free_port()
        self.peer_port = free_port()
        self.extra_args = extra_args
        self.scheme = scheme
        self.health_ssl = health_ssl
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    def start(self, timeout_s: float = 30.0) -> None:
        """Start etcd and wait until it reports healthy."""
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = [
            self.binary,
            "--name=test",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=test={peer}",
            "--logger=zap",
            "--log-level=warn",
            *self.extra_args,
        ]
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "ETCD_UNSUPPORTED_ARCH": ""}
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"etcd exited with {self._process.returncode}: {self.log_tail()}")
            if self._healthy():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"etcd not healthy after {timeout_s} s: {self.log_tail()}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                self.url + "/health", timeout=1.0, context=self.health_ssl
            ) as response:
                return b'"true"' in response.read()
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """Stop etcd (SIGTERM, then SIGKILL after 10 s); the data directory stays."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # in case it was paused
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: etcd keeps its sockets but answers nothing (a hung server)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Stop and start again on the same ports and data."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
