"""The live dashboard in a real headless Chromium (system browser and chromedriver via selenium):
every chart renders with no console error, and a new tick appears without a reload."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sla_planner.observe.dashboard import LiveDashboard
from sla_planner.ticks import TickRecord
from sla_planner.types import Pool

from observe_helpers import chromium_driver, loop_thread, planner_config, replay

pytestmark = [
    pytest.mark.skipif(shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
                       reason="chromium (Debian chromium) not installed"),
    pytest.mark.skipif(shutil.which("chromedriver") is None, reason="chromedriver (Debian chromium-driver) not installed"),
]
selenium = pytest.importorskip("selenium")

P, D = Pool.PREFILL, Pool.DECODE


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture(scope="module")
def records() -> list[TickRecord]:
    recs, _ = replay(planner_config())
    return recs


@pytest.fixture()
def browser() -> Iterator[Any]:
    driver = chromium_driver()
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: Any) -> list[dict[str, Any]]:
    return [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]


def test_charts_render_and_update_live(browser: Any, records: list[TickRecord]) -> None:
    cfg = planner_config()
    dash = LiveDashboard(pools=(P, D), sla_ttft_ms=cfg.ttft, sla_itl_ms=cfg.itl, gpus_per_engine={P: 1, D: 1},
                         host="127.0.0.1", port=0, kv_capacity_tokens=100_000, wall_clock=False,
                         config=cfg.to_public_dict())
    with loop_thread() as lt:
        lt.run(dash.start())
        try:
            for rec in records[:-1]:
                dash.on_tick(rec)
            browser.get(f"{dash.url}/")
            wait_for(lambda: browser.execute_script("return document.body.getAttribute('data-rendered')") == "6",
                     60, "six charts")
            charts = browser.execute_script(
                "return Array.from(document.querySelectorAll('#charts .chart')).map("
                "d => [d.id, d.classList.contains('js-plotly-plot'), d.querySelectorAll('svg.main-svg').length,"
                " d.querySelectorAll('.scatterlayer .trace').length])"
            )
            assert [c[0] for c in charts] == [f"figure-{i}" for i in range(1, 7)]
            for chart_id, plotted, svgs, traces in charts:
                assert plotted and svgs > 0 and traces > 0, (chart_id, plotted, svgs, traces)
            headings = browser.execute_script(
                "return Array.from(document.querySelectorAll('#charts h2')).map(h => h.textContent)")
            assert headings[0] == "Replicas per pool" and headings[2] == "TTFT and ITL vs SLA"
            before = int(browser.execute_script("return document.body.getAttribute('data-ticks')"))
            assert before == len(records) - 1
            browser.execute_script("window.__sameDocument = 'yes'")
            dash.on_tick(records[-1])
            wait_for(lambda: browser.execute_script("return document.body.getAttribute('data-ticks')")
                     == str(len(records)), 30, "the new tick on the page")
            assert browser.execute_script("return window.__sameDocument") == "yes"  # no reload
            assert browser.find_element("id", "tick-count").text == str(len(records))
            assert browser.find_element("id", "status").text == "live"
            errors = console_errors(browser)
            assert errors == [], errors
        finally:
            lt.run(dash.stop())


def test_console_errors_are_seen(browser: Any) -> None:
    # the log check is real: an error in the page shows up in the browser log
    browser.get("data:text/html,<script>console.error('planted error')</script>")
    wait_for(lambda: any("planted error" in e["message"] for e in console_errors(browser)), 10, "planted error")
