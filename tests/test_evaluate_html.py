"""The comparison page renders in a real headless Chromium with the network cut off."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from sla_planner.evaluate.matrix import build_matrix, parse_policy, parse_profile, parse_trace
from sla_planner.evaluate.output import write_outputs
from sla_planner.evaluate.runner import Evaluation

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")


def _record(index: int, policy: str, gpu_hours: float, attainment: float, evil: str = "") -> dict[str, Any]:
    return {
        "index": index, "trace": "trace" + evil, "profile": "example", "sim_time_scale": 1.0,
        "startup_delay_s": 120.0, "policy": policy, "policy_spec": policy, "deployment": "dynamic",
        "initial_replicas": "2P+1D", "requests": 100, "requests_infeasible": 3,
        "sla_attainment": attainment * 0.97, "sla_attainment_feasible": attainment,
        "ttft_attainment": attainment, "itl_attainment": 1.0, "ttft_p99_ms": 900.0, "itl_p99_ms": 20.0,
        "gpu_hours": gpu_hours, "oracle_gpu_hours": 1.0, "gpu_hours_vs_oracle": gpu_hours,
        "scale_events": 4, "scale_events_per_hour": 4.0, "requests_failed": 0,
        "requests_failed_scale_down": 0, "requests_unfinished": 0, "peak_gpus_requested": 5,
        "peak_gpus_in_use": 5, "gpu_budget": 128, "within_budget": True, "ttft_target_ms": 2000.0,
        "itl_target_ms": 30.0, "replays": 1, "sim_duration_s": 3600.0, "replay_wall_s": 1.0, "wall_s": 1.0,
    }


def evaluation(evil: str = "") -> Evaluation:
    matrix = build_matrix(
        traces=[parse_trace("builtin:x")], profiles=[parse_profile("builtin:example")],
        policies=[parse_policy("planner:sla"), parse_policy("oracle")],
    )
    records = [_record(0, "planner:sla" + evil, 1.6, 0.96, evil), _record(1, "oracle", 1.1, 0.7, evil)]
    return Evaluation(matrix, records, 3.0, 1, "serial")


def test_user_strings_are_escaped(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    page = (Path(write_outputs(evaluation(evil), tmp_path)["report.html"])).read_text()
    assert evil not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason="chromium and chromedriver are not installed")
def test_page_renders_offline_in_headless_chromium(tmp_path: Path) -> None:
    selenium = pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    del selenium
    page = Path(write_outputs(evaluation(), tmp_path)["report.html"])
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"):
        options.add_argument(arg)  # every network request goes to a dead proxy: offline
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(60)
        driver.get(page.as_uri())
        assert driver.execute_script("return typeof window.Plotly") == "object"
        plots = driver.execute_script(
            "return Array.from(document.querySelectorAll('.plotly-graph-div'))"
            ".map(d => d.querySelectorAll('.main-svg').length)"
        )
        assert plots == [pytest.approx(plots[0])] * 2 and plots[0] >= 1  # the group scatter + the bars
        points = driver.execute_script(
            "return document.querySelectorAll('#figure-1 .scatterlayer .point').length"
        )
        assert points == 2  # one marker per policy
        rows = driver.execute_script("return document.querySelectorAll('table tr').length")
        assert rows == 3  # header + one row per cell
    finally:
        driver.quit()
