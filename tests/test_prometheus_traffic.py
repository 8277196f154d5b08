"""Traffic from Prometheus: the window's parts, unknown vs idle, and faults.

Real parts: the Debian ``prometheus`` scraping the frontend-metrics emulator over loopback; a
slow proxy in front of it. A tiny aiohttp fake of the query API serves the answers a real
Prometheus only gives when broken (garbage, HTTP 5xx, a negative mean).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prom_helpers import PROMETHEUS, RunningPrometheus, free_port, needs_prometheus

from sla_planner.errors import ConfigError, SignalError
from sla_planner.signals.prometheus import (
    MEAN_LIMITS,
    PrometheusTraffic,
    frontend_query,
    label_filter,
    traffic_from_parts,
)
from sla_planner.signals.promql import PromSettings
from sla_planner.sim.frontend_metrics import FrontendMetrics, FrontendMetricsServer

MODEL = "Org/Model-v1.5"
NS = "dyn-ns"


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def source(url: str, model: str | None = MODEL, ns: str | None = NS, **kw: Any) -> PrometheusTraffic:
    settings = PromSettings(url, **{"timeout_s": 2.0, "deadline_s": 4.0, **kw})
    return PrometheusTraffic(settings, model=model, dynamo_namespace=ns)


async def window(src: PrometheusTraffic, window_s: float) -> Any:
    try:
        return await src.window(window_s)
    finally:
        await src.close()


# --------------------------------------------------------------------------- parts -> traffic
def parts(num: float = 10, **means: tuple[float, float]) -> dict[str, float]:
    out = {"requests_started": float(num)}
    for name, (total, count) in means.items():
        out[f"{name}_sum"], out[f"{name}_count"] = total, count
    return out


ISL_LIMIT = MEAN_LIMITS["isl"][1]
TTFT_LIMIT = MEAN_LIMITS["ttft"][1]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (parts(10, isl=(30_000, 10), osl=(1500, 10)), {"num_req": 10, "isl": 3000, "osl": 150}),
        (parts(0), {"num_req": 0, "isl": None, "osl": None, "ttft_ms": None}),
        (parts(5, isl=(500, 5), osl=(0, 0)), {"num_req": 5, "isl": 100, "osl": None}),  # none finished yet
        (parts(5, ttft=(1.0, 4), itl=(0.5, 50)), {"ttft_ms": 250.0, "itl_ms": 10.0, "isl": None}),
        ({"requests_total": 7.0, "isl_sum": 70.0, "isl_count": 7.0}, {"num_req": 7, "isl": 10}),
        ({"requests_total": 7.0, "requests_started": 9.0}, {"num_req": 9}),  # started wins
        (parts(1, isl=(ISL_LIMIT, 1)), {"isl": ISL_LIMIT}),  # just inside the limit
        (parts(1, ttft=(TTFT_LIMIT, 1)), {"ttft_ms": TTFT_LIMIT * 1e3}),
        (parts(1, duration=(86_400.0, 1)), {"request_duration_s": 86_400.0}),
    ],
    ids=["busy", "idle", "no-completion", "latencies", "fallback-total", "started-first", "isl-at-limit",
         "ttft-at-limit", "duration-at-limit"],
)
def test_parts_make_traffic(given: dict[str, float], expected: dict[str, Any]) -> None:
    traffic = traffic_from_parts(given)
    for key, value in expected.items():
        assert getattr(traffic, key) == (pytest.approx(value) if value is not None else None), key


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, "no dynamo_frontend_requests_started_total or dynamo_frontend_requests_total series"),
        (parts(math.nan), r"requests_started_total\) is nan"),
        (parts(math.inf), r"is inf"),
        (parts(-1), "is negative"),
        (parts(3, isl=(math.nan, 3)), r"input_sequence_tokens_sum\) is nan"),
        (parts(3, isl=(-30, 3)), "is negative"),
        (parts(3, isl=(30, -3)), "is negative"),
        (parts(3, osl=(30, math.inf)), r"output_sequence_tokens_count\) is inf"),
        (parts(1, isl=(ISL_LIMIT * 1.000001, 1)), "beyond the believable limit"),
        (parts(1, ttft=(TTFT_LIMIT * 1.000001, 1)), "beyond the believable limit"),
        ({"requests_started": 3.0, "isl_count": 3.0}, "no _sum series"),
    ],
    ids=["no-series", "nan-count", "inf-count", "negative-count", "nan-sum", "negative-sum", "negative-count-of-mean",
         "inf-count-of-mean", "isl-past-limit", "ttft-past-limit", "sum-missing"],
)
def test_untrustworthy_parts_are_unknown(given: dict[str, float], message: str) -> None:
    with pytest.raises(SignalError, match=message):
        traffic_from_parts(given)


@pytest.mark.parametrize(
    ("buckets", "expected"),
    [
        ([("100", 1), ("1000", 4), ("+Inf", 5)], ((100.0, 1.0), (1000.0, 3.0), (math.inf, 1.0))),
        ([("+Inf", 5), ("100", 1), ("1000", 4)], ((100.0, 1.0), (1000.0, 3.0), (math.inf, 1.0))),  # any order
        ([("100", 2.1), ("1000", 2.0), ("+Inf", 3)], ((100.0, 2.1), (1000.0, 0.0), (math.inf, 0.9))),  # inversion
        ([("100", 1), ("1000", 4)], None),  # no +Inf bucket
        ([("100", math.nan), ("+Inf", 5)], None),
        ([("100", 0), ("+Inf", 0)], None),
        ([("x", 1), ("+Inf", 5)], None),
    ],
    ids=["cumulative", "unordered", "clamped-inversion", "no-inf", "nan", "empty", "bad-le"],
)
def test_isl_buckets(buckets: list[tuple[str, float]], expected: Any) -> None:
    traffic = traffic_from_parts(parts(5, isl=(500, 5)), buckets)
    if expected is None:
        assert traffic.isl_buckets is None
    else:
        assert traffic.isl_buckets is not None
        assert [b for b, _ in traffic.isl_buckets] == [b for b, _ in expected]
        assert [c for _, c in traffic.isl_buckets] == pytest.approx([c for _, c in expected])


@pytest.mark.parametrize(
    ("model", "ns", "expected"),
    [
        ("m", "n", '{model=~"(?i)m",dynamo_namespace="n"}'),
        ("a.b+c", None, '{model=~"(?i)a\\\\.b\\\\+c"}'),
        ('q"x', None, '{model=~"(?i)q\\"x"}'),
        (None, None, "{}"),
    ],
    ids=["both", "regex-escaped", "quote-escaped", "none"],
)
def test_label_filter(model: str | None, ns: str | None, expected: str) -> None:
    assert label_filter(model, ns) == expected


def test_query_asks_every_part_at_once() -> None:
    q = frontend_query(60, "m", "n")
    assert q.count(" or ") == 12  # 13 parts: 2 counters, 5 means x (sum, count), ISL buckets and "[60000ms]" in q
    assert "increase(dynamo_frontend_requests_started_total{" in q and "sum by (le)" in q
    with pytest.raises(SignalError, match="control character"):
        label_filter("a\nb", None)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"url": "ftp://x"}, "must be http"),
        ({"url": "http://"}, "must be http"),
        ({"timeout_s": 0}, "timeout_s must be finite and > 0"),
        ({"deadline_s": math.inf}, "deadline_s must be"),
        ({"bearer_token": "t", "bearer_token_file": "f"}, "not both"),
        ({"bearer_token_file": "/nonexistent/token"}, "token file .* not found"),
        ({"ca_bundle": "/nonexistent/ca.pem"}, "CA bundle .* not found"),
    ],
    ids=["scheme", "no-host", "timeout", "deadline", "two-tokens", "token-file", "ca"],
)
def test_settings_are_checked(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PromSettings(**{"url": "http://prometheus:9090", **kw})


# --------------------------------------------------------------------------- a real Prometheus
class NanSums:
    """An exposition whose ISL count grows every scrape while its sum is NaN."""

    def __init__(self) -> None:
        self.n = 0

    def exposition(self) -> str:
        self.n += 1
        labels = f'model="poison",dynamo_namespace="{NS}"'
        return (
            "# TYPE dynamo_frontend_requests_started_total counter\n"
            f"dynamo_frontend_requests_started_total{{{labels}}} {self.n}\n"
            "# TYPE dynamo_frontend_input_sequence_tokens histogram\n"
            f'dynamo_frontend_input_sequence_tokens_bucket{{{labels},le="+Inf"}} {self.n}\n'
            f"dynamo_frontend_input_sequence_tokens_sum{{{labels}}} NaN\n"
            f"dynamo_frontend_input_sequence_tokens_count{{{labels}}} {self.n}\n"
        )


class Frontends:
    def __init__(self, busy: FrontendMetrics, idle: FrontendMetrics, prom: RunningPrometheus) -> None:
        self.busy, self.idle, self.prom = busy, idle, prom


@pytest.fixture(scope="module")
def frontends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Frontends]:
    if PROMETHEUS is None:
        pytest.skip("the Debian 'prometheus' binary is not installed (apt-get install prometheus)")
    busy = FrontendMetrics(MODEL, dynamo_namespace=NS)
    idle = FrontendMetrics("idle-model", dynamo_namespace=NS)
    busy.observe_request(1000, 100, 0.2, 0.02, 2.2)
    idle.observe_request(10, 10, 0.1, 0.01, 0.2)
    servers = [FrontendMetricsServer(m).start() for m in (busy, idle, NanSums())]  # type: ignore[arg-type]
    prom = RunningPrometheus(tmp_path_factory.mktemp("prom"), [f"127.0.0.1:{s.port}" for s in servers])
    try:
        prom.start()
        prom.wait_scraped()
        yield Frontends(busy, idle, prom)
    finally:
        prom.stop()
        for s in servers:
            s.stop()


@needs_prometheus
def test_window_reads_count_means_and_isl_histogram(frontends: Frontends) -> None:
    for _ in range(100):
        frontends.busy.observe_request(1000, 100, 0.2, 0.02, 2.2)
    frontends.prom.wait_for('sum(dynamo_frontend_requests_started_total{model="org/model-v1.5"}) == 101')
    traffic = run(window(source(frontends.prom.url), 30.0))
    # increase() extrapolates to the window's edges; the means are ratios of equally
    # extrapolated increases, so they are exact
    assert 100 <= traffic.num_req <= 200
    assert traffic.isl == pytest.approx(1000) and traffic.osl == pytest.approx(100)
    assert traffic.ttft_ms == pytest.approx(200) and traffic.itl_ms == pytest.approx(20)
    assert traffic.request_duration_s == pytest.approx(2.2)
    nonzero = [(b, c) for b, c in traffic.isl_buckets if c > 0]
    assert [b for b, _ in nonzero] == [1800.0]  # 870 < 1000 <= 1800
    assert nonzero[0][1] == pytest.approx(traffic.num_req)
    upper_case = run(window(source(frontends.prom.url, model=MODEL.upper()), 30.0))
    assert upper_case.isl == pytest.approx(1000)  # the model filter ignores case


@needs_prometheus
def test_a_window_without_requests_is_idle_not_unknown(frontends: Frontends) -> None:
    traffic = run(window(source(frontends.prom.url, model="idle-model"), 5.0))
    assert traffic.num_req == 0
    assert (traffic.isl, traffic.osl, traffic.ttft_ms, traffic.itl_ms) == (None, None, None, None)


@needs_prometheus
@pytest.mark.parametrize(
    ("model", "ns"),
    [("org/model-v1x5", NS), (MODEL, "other-ns"), ("no-such-model", NS)],
    ids=["dot-is-not-a-wildcard", "other-namespace", "unknown-model"],
)
def test_filters_matching_nothing_are_unknown(frontends: Frontends, model: str, ns: str) -> None:
    with pytest.raises(SignalError, match="series matches"):
        run(window(source(frontends.prom.url, model=model, ns=ns), 30.0))


@needs_prometheus
def test_nan_from_the_frontend_is_unknown(frontends: Frontends) -> None:
    frontends.prom.wait_for('count_over_time(dynamo_frontend_input_sequence_tokens_count{model="poison"}[10s]) >= 2')
    with pytest.raises(SignalError, match=r"input_sequence_tokens_sum\) is nan"):
        run(window(source(frontends.prom.url, model="poison"), 10.0))


@needs_prometheus
def test_history_reads_past_windows_in_one_range_query(frontends: Frontends) -> None:
    src = source(frontends.prom.url, model="idle-model")

    async def go() -> Any:
        try:
            return await src.history(2.0, 5, time.time())
        finally:
            await src.close()

    points = run(go())
    assert len(points) == 5 and src.client.requests == 1
    assert [p.end_s for p in points] == sorted(p.end_s for p in points)
    known = [p for p in points if p.traffic is not None]
    assert known and all(p.traffic.num_req == 0 for p in known)


@needs_prometheus
def test_prometheus_down_is_unknown_within_the_deadline() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    src = source(url, timeout_s=0.5, deadline_s=1.5)
    start = time.monotonic()
    with pytest.raises(SignalError, match=r"ClientConnectorError.*gave up after \d+ attempt"):
        run(window(src, 60.0))
    assert time.monotonic() - start < 3.0
    assert src.client.retries >= 1


@asynccontextmanager
async def serve(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@needs_prometheus
@pytest.mark.parametrize(("delay_s", "timeout_s", "fails"), [(1.0, 0.3, True), (0.2, 2.0, False)],
                         ids=["slower-than-timeout", "slow-but-in-time"])
def test_slow_prometheus(frontends: Frontends, delay_s: float, timeout_s: float, fails: bool) -> None:
    async def proxy(request: web.Request) -> web.Response:
        await asyncio.sleep(delay_s)
        async with aiohttp.ClientSession() as session:
            async with session.post(frontends.prom.url + request.path, data=await request.post()) as resp:
                return web.Response(body=await resp.read(), status=resp.status, content_type="application/json")

    async def go() -> Any:
        async with serve(proxy) as url:
            return await window(source(url, timeout_s=timeout_s, deadline_s=1.2), 30.0)

    if fails:
        with pytest.raises(SignalError, match=r"no answer within .*gave up after \d+ attempt"):
            run(go())
    else:
        assert run(go()).isl == pytest.approx(1000)


# --------------------------------------------------------------------------- a broken Prometheus
def vector(**values: str) -> bytes:
    result = [{"metric": {"sla_planner_part": k}, "value": [1.0, v]} for k, v in values.items()]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


OK = vector(requests_started="10", isl_sum="30000", isl_count="10")


@pytest.mark.parametrize(
    ("answers", "message", "requests"),
    [
        ([(200, b"<html>not json</html>")], "not JSON", 1),
        ([(500, b"boom")] * 50, r"HTTP 500: boom \(gave up after", None),
        ([(503, b'{"status":"error","error":"overloaded"}')] * 50, "HTTP 503: overloaded", None),
        ([(400, b'{"status":"error","errorType":"bad_data","error":"parse error"}')], "HTTP 400: parse error", 1),
        ([(200, b'{"status":"error","error":"query timed out"}')], "status 'error'", 1),
        ([(200, b'{"status":"success","data":{"resultType":"matrix","result":[]}}')], "expected a vector", 1),
        ([(200, vector(requests_started="10", isl_sum="-30000", isl_count="10"))], "is negative", 1),
        ([(200, vector())], "series matches", 1),
        ([(200, vector(requests_started="many"))], "is not a number", 1),
        ([(200, b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1]}]}}')],
         "expected \\[timestamp", 1),
    ],
    ids=["garbage", "http-500", "http-503", "http-400-not-retried", "status-error", "wrong-result-type",
         "negative-mean", "empty", "value-not-number", "short-value"],
)
def test_broken_answers_are_unknown(answers: list[tuple[int, bytes]], message: str, requests: int | None) -> None:
    served: list[int] = []

    async def fake(request: web.Request) -> web.Response:
        status, body = answers[min(len(served), len(answers) - 1)]
        served.append(status)
        return web.Response(status=status, body=body, content_type="application/json")

    async def go() -> None:
        async with serve(fake) as url:
            await window(source(url, timeout_s=0.5, deadline_s=0.8, backoff_s=0.05), 60.0)

    with pytest.raises(SignalError, match=message):
        run(go())
    if requests is not None:
        assert len(served) == requests
    else:
        assert len(served) >= 2  # retried within the deadline


def test_a_transient_503_is_retried_and_the_bearer_token_is_sent(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    seen: list[str | None] = []

    async def fake(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        if len(seen) == 1:
            return web.Response(status=503, text="warming up")
        return web.Response(body=OK, content_type="application/json")

    async def go() -> Any:
        async with serve(fake) as url:
            src = source(url, bearer_token_file=str(token_file), backoff_s=0.05)
            return await window(src, 60.0), src

    traffic, src = run(go())
    assert traffic.num_req == 10 and traffic.isl == 3000
    assert seen == ["Bearer s3cret-token"] * 2 and src.client.retries == 1
    assert "s3cret" not in repr(src.client.settings)


def test_the_token_never_appears_in_errors(tmp_path: Path) -> None:
    async def fake(request: web.Request) -> web.Response:
        return web.Response(status=401, text="unauthorized")

    async def go() -> None:
        async with serve(fake) as url:
            await window(source(url, bearer_token="s3cret-token"), 60.0)

    with pytest.raises(SignalError) as info:
        run(go())
    assert "HTTP 401" in str(info.value) and "s3cret" not in str(info.value)



@pytest.mark.parametrize(
    ("overrides", "timeout_s", "deadline_s"),
    [
        ({}, 3.0, 9.0),  # throughput only, 60 s ticks: 3 attempts' worth
        ({"throughput_adjustment_interval": 4}, 2.0, 2.0),  # half the tick
        ({"enable_load_scaling": True, "load_adjustment_interval": 2}, 1.0, 1.0),  # the load tick is shorter
        ({"prometheus_timeout_s": 0.5}, 0.5, 1.5),
    ],
    ids=["default", "short-ticks", "load-ticks", "short-timeout"],
)
def test_retries_end_within_half_the_shortest_tick(overrides: dict[str, Any], timeout_s: float, deadline_s: float) -> None:
    from sla_planner.config import PlannerConfig

    cfg = PlannerConfig.from_sources(None, env={"PROMETHEUS_ENDPOINT": "http://prom:9090"}, overrides={
        "optimization_target": "sla", "model_name": "m", "namespace": "n", **overrides})
    src = PrometheusTraffic.from_config(cfg)
    assert (src.client.settings.timeout_s, src.deadline_s) == (timeout_s, deadline_s)
    assert (src.client.settings.url, src.model, src.dynamo_namespace) == ("http://prom:9090", "m", "n")
