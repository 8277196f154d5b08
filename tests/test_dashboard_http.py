"""The live dashboard over real HTTP (aiohttp on loopback): health, paged decisions, redacted
config, figures, server-sent events, plotly.js served offline, read-only, bind errors."""

from __future__ import annotations

import base64
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sla_planner.errors import ConfigError
from sla_planner.observe.dashboard import MAX_PAGE, LiveDashboard
from sla_planner.observe.redact import REDACTED, is_sensitive_key, redact, redact_text
from sla_planner.ticks import TickRecord
from sla_planner.types import Pool

from observe_helpers import LoopThread, loop_thread, planner_config, replay

P, D = Pool.PREFILL, Pool.DECODE


@pytest.fixture(scope="module")
def records() -> list[TickRecord]:
    recs, _ = replay(planner_config())
    return recs


def make_dashboard(**kw: Any) -> LiveDashboard:
    kw.setdefault("wall_clock", False)
    return LiveDashboard(pools=(P, D), sla_ttft_ms=2000.0, sla_itl_ms=30.0, gpus_per_engine={P: 1, D: 1},
                         host="127.0.0.1", port=0, kv_capacity_tokens=100_000, **kw)


@pytest.fixture()
def served() -> Iterator[tuple[LoopThread, LiveDashboard]]:
    dash = make_dashboard(config={"ttft": 2000.0, "metric_pulling_prometheus_endpoint":
                                  "http://planner:s3cret@prom:9090/?access_token=abc", "api_token": "t0k3n",
                                  "nested": {"clientSecret": "x", "max_tokens": 5}})
    with loop_thread() as lt:
        lt.run(dash.start())
        try:
            yield lt, dash
        finally:
            lt.run(dash.stop())


def fetch(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def get_json(url: str) -> tuple[int, Any]:
    status, _, body = fetch(url)
    return status, json.loads(body)


def test_healthz_starting_ok_stale(records: list[TickRecord]) -> None:
    dash = make_dashboard(stale_after_s=0.3)
    with loop_thread() as lt:
        lt.run(dash.start())
        try:
            assert get_json(f"{dash.url}/healthz") == (200, {"status": "starting", "ticks": 0,
                                                             "last_tick_age_s": None, "stale_after_s": 0.3})
            dash.on_tick(records[0])
            status, body = get_json(f"{dash.url}/healthz")
            assert (status, body["status"], body["ticks"]) == (200, "ok", 1)
            time.sleep(0.4)
            status, body = get_json(f"{dash.url}/healthz")
            assert (status, body["status"]) == (503, "stale")
        finally:
            lt.run(dash.stop())


def test_decisions_are_paged_newest_first(served: tuple[LoopThread, LiveDashboard], records: list[TickRecord]) -> None:
    _, dash = served
    for rec in records[:25]:
        dash.on_tick(rec)
    status, page = get_json(f"{dash.url}/decisions?limit=10")
    assert status == 200
    assert [d["seq"] for d in page["decisions"]] == list(range(25, 15, -1))
    assert page["next_before"] == 16 and page["oldest_kept"] == 1
    seen = [d["seq"] for d in page["decisions"]]
    while page["next_before"] is not None:
        _, page = get_json(f"{dash.url}/decisions?limit=10&before={page['next_before']}")
        seen += [d["seq"] for d in page["decisions"]]
    assert seen == list(range(25, 0, -1))
    first = json.loads(fetch(f"{dash.url}/decisions?limit=1&before=2")[2])["decisions"][0]
    assert first["t_s"] == records[0].tick_input.now_s and first["tick"] == records[0].tick.kind.value
    assert set(first) >= {"reason", "targets", "pool_reasons", "detail", "apply", "observed", "replicas"}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "limit: must be 1..1000, got 0"),
        (f"limit={MAX_PAGE + 1}", f"limit: must be 1..1000, got {MAX_PAGE + 1}"),
        ("limit=ten", "limit: expected an integer, got 'ten'"),
        ("before=0", "before: must be >= 1, got 0"),
        ("before=-3", "before: must be >= 1, got -3"),
    ],
)
def test_decisions_bad_parameters(served: tuple[LoopThread, LiveDashboard], query: str, message: str) -> None:
    _, dash = served
    assert get_json(f"{dash.url}/decisions?{query}") == (400, {"error": message})


@pytest.mark.parametrize("query", ["limit=1", f"limit={MAX_PAGE}", "before=1"])
def test_decisions_parameters_at_the_bounds(served: tuple[LoopThread, LiveDashboard], query: str) -> None:
    _, dash = served
    assert get_json(f"{dash.url}/decisions?{query}")[0] == 200


def test_config_is_redacted(served: tuple[LoopThread, LiveDashboard]) -> None:
    _, dash = served
    status, body = get_json(f"{dash.url}/config")
    assert status == 200
    assert body["api_token"] == REDACTED and body["nested"]["clientSecret"] == REDACTED
    assert body["nested"]["max_tokens"] == 5 and body["ttft"] == 2000.0
    assert body["metric_pulling_prometheus_endpoint"] == f"http://{REDACTED}@prom:9090/?access_token={REDACTED}"
    everything = b"".join(fetch(f"{dash.url}{path}")[2] for path in ("/", "/config", "/decisions", "/healthz"))
    for secret in (b"s3cret", b"t0k3n", b"abc"):
        assert secret not in everything


def test_read_only_and_headers(served: tuple[LoopThread, LiveDashboard]) -> None:
    _, dash = served
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert fetch(f"{dash.url}/decisions", method)[0] == 405
    status, headers, body = fetch(f"{dash.url}/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"
    assert b"https://" not in body and b"http://" not in body  # nothing loads from the network
    assert fetch(f"{dash.url}/static/../dashboard.py")[0] == 404
    assert fetch(f"{dash.url}/nope")[0] == 404


def test_plotly_is_served_from_the_installed_package(served: tuple[LoopThread, LiveDashboard]) -> None:
    _, dash = served
    status, headers, body = fetch(f"{dash.url}/static/plotly.min.js")
    bundled = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js")).read_bytes()
    assert status == 200 and body == bundled and "javascript" in headers["Content-Type"]


def test_figures_follow_the_ticks(served: tuple[LoopThread, LiveDashboard], records: list[TickRecord]) -> None:
    _, dash = served
    status, empty = get_json(f"{dash.url}/api/figures")
    assert status == 200 and empty["ticks"] == 0 and len(empty["figures"]) == 6
    for rec in records[:40]:
        dash.on_tick(rec)
    _, body = get_json(f"{dash.url}/api/figures")
    assert body["ticks"] == 40
    titles = [f["title"] for f in body["figures"]]
    assert titles[0] == "Replicas per pool" and titles[4] == "Decisions timeline"
    for fig in body["figures"]:
        assert {t["type"] for t in fig["figure"]["data"]} <= {"scatter"}  # no WebGL traces
    replicas = body["figures"][0]["figure"]["data"][0]
    assert array(replicas["x"]).tolist() == [r.tick_input.now_s for r in records[:40]]


def array(value: Any) -> np.ndarray:
    """A plotly JSON array: a plain list, or a base64 typed array (plotly >= 6)."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return np.asarray(value)


def test_server_sent_events_announce_each_tick(served: tuple[LoopThread, LiveDashboard],
                                               records: list[TickRecord]) -> None:
    _, dash = served
    stream = urllib.request.urlopen(f"{dash.url}/events", timeout=20)
    assert stream.headers["Content-Type"] == "text/event-stream"
    assert stream.readline() == b"retry: 2000\n"
    stream.readline()
    deadline = time.monotonic() + 10
    while not dash._subscribers and time.monotonic() < deadline:  # the stream is registered
        time.sleep(0.01)
    dash.on_tick(records[0])
    dash.on_tick(records[1])
    lines = [stream.readline() for _ in range(6)]
    assert lines == [b"event: tick\n", b"data: 1\n", b"\n", b"event: tick\n", b"data: 2\n", b"\n"]
    stream.close()


def test_port_in_use_is_a_config_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        dash = LiveDashboard(pools=(P, D), sla_ttft_ms=1.0, sla_itl_ms=1.0, gpus_per_engine={P: 1, D: 1},
                             host="127.0.0.1", port=port)
        with loop_thread() as lt:
            with pytest.raises(ConfigError, match=rf"^live_dashboard_port: cannot listen on 127.0.0.1:{port}: "):
                lt.run(dash.start())


@pytest.mark.parametrize(
    ("key", "sensitive"),
    [("api_token", True), ("clientSecret", True), ("PASSWORD", True), ("private-key", True), ("apiKey", True),
     ("auth_header", True), ("key", True), ("max_tokens", False), ("monkey", False), ("kalman_r", False),
     ("metric_pulling_prometheus_endpoint", False), ("keyboard", False)],
)
def test_sensitive_keys(key: str, sensitive: bool) -> None:
    assert is_sensitive_key(key) is sensitive


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://user:pw@prom:9090/x", f"http://{REDACTED}@prom:9090/x"),
        ("https://prom:9090/api?x=1&api_key=k&y=2", f"https://prom:9090/api?x=1&api_key={REDACTED}&y=2"),
        ("Authorization: Bearer abcdefgh12345", f"Authorization: Bearer {REDACTED}"),
        ("http://prom:9090/?tokens_per_s=5", f"http://prom:9090/?tokens_per_s={REDACTED}"),
        ("plain text with no secrets", "plain text with no secrets"),
        ("mailto:ops@example.com", "mailto:ops@example.com"),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_redact_keeps_empty_sensitive_values() -> None:
    assert redact({"token": None, "password": "", "secret": "x", "items": [{"auth": "y"}]}) == {
        "token": None, "password": "", "secret": REDACTED, "items": [{"auth": REDACTED}]}
