"""Regenerate docs/dashboard.png: the live dashboard in headless Chromium after a replayed burst.

Needs the system Chromium and chromedriver (Debian ``chromium``, ``chromium-driver``), selenium
and Pillow. Run from the repository root: ``python scripts/dashboard_screenshot.py``.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import threading
import time
from pathlib import Path

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from sla_planner.cli._common import load_models
from sla_planner.cli.replay import make_policy
from sla_planner.config import PlannerConfig
from sla_planner.core.load import EngineCapabilities
from sla_planner.observe.dashboard import LiveDashboard
from sla_planner.replay import ReplayOptions, run_replay
from sla_planner.sim.cluster import SimCluster, SimPerf, SimSettings
from sla_planner.traces.open import open_trace
from sla_planner.types import Pool

TRACE = "synthetic:bursts?base_rps=2&burst_rps=14&burst_every_s=900&burst_len_s=180&duration_s=2700"
OUT = Path("docs/dashboard.png")


def main() -> None:
    cfg = PlannerConfig.from_sources(None, env={}, overrides={
        "profile_results_dir": "builtin:example", "optimization_target": "sla", "enable_load_scaling": True})
    models = load_models(cfg)
    max_kv = int(models.decode.max_kv_tokens)
    policy = make_policy("planner", cfg, models, EngineCapabilities(max_kv_tokens=max_kv))
    cluster = SimCluster(SimPerf.from_models(models.prefill, models.decode),
                         SimSettings(mode="disagg", startup_delay_s=60.0), {Pool.PREFILL: 2, Pool.DECODE: 2})
    dash = LiveDashboard(pools=(Pool.PREFILL, Pool.DECODE), sla_ttft_ms=cfg.ttft, sla_itl_ms=cfg.itl,
                         gpus_per_engine={Pool.PREFILL: 1, Pool.DECODE: 1}, kv_capacity_tokens=max_kv,
                         wall_clock=False, title="sla-planner live dashboard (replayed burst)")
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    asyncio.run_coroutine_threadsafe(dash.start(), loop).result(30)
    run_replay(open_trace(TRACE), policy, cluster, ReplayOptions(cfg.ttft, cfg.itl), observers=[dash])
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,1150", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(f"{dash.url}/")
        deadline = time.monotonic() + 60
        while driver.execute_script("return document.body.getAttribute('data-rendered')") != "6":
            if time.monotonic() > deadline:
                raise SystemExit("the dashboard did not render")
            time.sleep(0.2)
        time.sleep(1.0)
        png = driver.get_screenshot_as_png()
    finally:
        driver.quit()
        asyncio.run_coroutine_threadsafe(dash.stop(), loop).result(30)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.LANCZOS)
    image.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(OUT, optimize=True)
    print(f"{OUT}: {OUT.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
