"""A real Prometheus (the Debian binary) for tests: temp config and data dir, loopback, fast scrapes."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None, reason="the Debian 'prometheus' binary is not installed (apt-get install prometheus)"
)
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="the Debian 'promtool' binary is not installed (apt-get install prometheus)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_json(url: str, timeout_s: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - loopback test server
        return json.loads(resp.read())


class RunningPrometheus:
    """``prometheus`` scraping ``targets`` (``host:port`` serving /metrics) every ``scrape_interval``."""

    def __init__(self, workdir: Path, targets: list[str], scrape_interval: str = "1s") -> None:
        self.workdir = workdir
        self.targets = targets
        self.scrape_interval = scrape_interval
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def _config(self) -> Path:
        path = self.workdir / "prometheus.yml"
        jobs = "\n".join(
            f"  - job_name: t{i}\n    metrics_path: /metrics\n    static_configs:\n      - targets: ['{t}']"
            for i, t in enumerate(self.targets)
        )
        path.write_text(
            f"global:\n  scrape_interval: {self.scrape_interval}\n  evaluation_interval: {self.scrape_interval}\n"
            f"scrape_configs:\n{jobs}\n"
        )
        return path

    def start(self, timeout_s: float = 30.0) -> RunningPrometheus:
        assert PROMETHEUS is not None
        config = self._config()
        for _attempt in range(3):
            port = free_port()
            data = self.workdir / f"data-{port}"
            log = open(self.workdir / f"prometheus-{port}.log", "wb")  # noqa: SIM115
            self.proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={data}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT,
            )
            self.url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with urllib.request.urlopen(self.url + "/-/ready", timeout=1.0) as resp:  # noqa: S310
                        if resp.status == 200:
                            return self
                except (urllib.error.URLError, OSError):
                    pass
                time.sleep(0.1)
            self.stop()  # died (port taken between free_port and bind) or never ready: retry
        raise RuntimeError(f"prometheus did not become ready; see {self.workdir}")

    def query(self, promql: str) -> list[Any]:
        data = http_json(self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        assert data["status"] == "success", data
        return list(data["data"]["result"])

    def wait_for(self, promql: str, timeout_s: float = 20.0, what: str = "") -> list[Any]:
        """Poll until ``promql`` returns a non-empty vector."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(promql)
            if result:
                return result
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for Prometheus: {what or promql}")
            time.sleep(0.2)

    def wait_scraped(self, timeout_s: float = 20.0) -> None:
        """Every target up and scraped at least twice (so increase() has two points)."""
        for i in range(len(self.targets)):
            self.wait_for(f'count_over_time(up{{job="t{i}"}}[1m]) >= 2 and up{{job="t{i}"}} == 1',
                          timeout_s, f"target t{i} scraped twice")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
