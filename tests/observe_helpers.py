"""Shared helpers of the observability tests: replayed tick records, a server thread, Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from sla_planner.config import PlannerConfig
from sla_planner.ticks import TickRecord

T = TypeVar("T")

BURSTS = "synthetic:bursts?base_rps=2&burst_rps=14&burst_every_s=900&burst_len_s=180&duration_s=1800"


class Collect:
    """A TickObserver keeping every record."""

    def __init__(self) -> None:
        self.records: list[TickRecord] = []
        self.closed = False

    def on_tick(self, record: TickRecord) -> None:
        self.records.append(record)

    def close(self) -> None:
        self.closed = True


def planner_config(**overrides: Any) -> PlannerConfig:
    """The SLA planner with both loops on the bundled example profile (no environment)."""
    values: dict[str, Any] = {
        "profile_results_dir": "builtin:example",
        "optimization_target": "sla",
        "enable_load_scaling": True,
        "live_dashboard_port": 0,
        "report_interval_hours": None,
    }
    values.update(overrides)
    return PlannerConfig.from_sources(None, env={}, overrides=values)


def replay(cfg: PlannerConfig, trace: str = BURSTS, observers: tuple[Any, ...] = (),
           initial: tuple[int, int] = (2, 2)) -> tuple[list[TickRecord], Any]:
    """Replay ``trace`` with the planner; returns the tick records and the replay result."""
    from sla_planner.cli._common import load_models
    from sla_planner.cli.replay import make_policy
    from sla_planner.core.load import EngineCapabilities
    from sla_planner.replay import ReplayOptions, run_replay
    from sla_planner.sim.cluster import SimCluster, SimPerf, SimSettings
    from sla_planner.traces.open import open_trace
    from sla_planner.types import Pool

    models = load_models(cfg)
    caps = EngineCapabilities(max_kv_tokens=int(models.decode.max_kv_tokens))
    policy = make_policy("planner", cfg, models, caps)
    cluster = SimCluster(
        SimPerf.from_models(models.prefill, models.decode),
        SimSettings(mode="disagg", startup_delay_s=60.0),
        {Pool.PREFILL: initial[0], Pool.DECODE: initial[1]},
    )
    collect = Collect()
    result = run_replay(open_trace(trace), policy, cluster, ReplayOptions(cfg.ttft, cfg.itl),
                        observers=(collect, *observers))
    return collect.records, result


class LoopThread:
    """An asyncio event loop on a thread, for servers the test talks to from outside."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@contextlib.contextmanager
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    try:
        yield thread
    finally:
        thread.close()


def chromium_driver(width: int = 1280, height: int = 1000) -> Any:
    """Headless Chromium (the system browser and chromedriver) with the console log kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary:
        options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
