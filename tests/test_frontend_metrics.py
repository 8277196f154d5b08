"""The frontend-metrics exposition emulator: names, bucket layouts, observation points, promtool."""

from __future__ import annotations

import subprocess
import urllib.request

import numpy as np
import pytest
from prom_helpers import PROMTOOL, needs_promtool

from sla_planner.sim import _kernel as K
from sla_planner.sim.frontend_metrics import HISTOGRAM_BUCKETS, FrontendMetrics, FrontendMetricsServer, log_buckets


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((1.0, 512.0, 10), (0.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 130.0, 260.0, 510.0)),
        ((0.001, 2.0, 13), (0.0, 0.0019, 0.0035, 0.0067, 0.013, 0.024, 0.045, 0.084, 0.16, 0.3, 0.56, 1.1, 2.0)),
        ((1.0, 1.5, 20), (0.0, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5)),  # rounding duplicates dropped
    ],
    ids=["request-duration", "itl", "dedup"],
)
def test_bucket_layout_is_the_frontends(args: tuple[float, float, int], expected: tuple[float, ...]) -> None:
    assert log_buckets(*args) == pytest.approx(expected)


def sample(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(series)


def test_a_request_is_observed_where_the_frontend_observes_it() -> None:
    m = FrontendMetrics("Org/Model", dynamo_namespace="ns")
    m.on_arrivals(3)
    m.on_first_token(isl=1000, ttft_s=0.25)
    m.on_completed(osl=11, decode_s=0.5, duration_s=0.75)
    m.on_failed()
    text = m.exposition()
    lab = 'model="org/model",dynamo_namespace="ns"'  # the frontend lowercases model names
    route = 'endpoint="chat_completions",request_type="stream"'
    assert sample(text, f"dynamo_frontend_requests_started_total{{{lab},{route}}}") == 3
    assert sample(text, f'dynamo_frontend_requests_total{{{lab},{route},status="success",error_type=""}}') == 1
    assert sample(text, f'dynamo_frontend_requests_total{{{lab},{route},status="error",error_type="internal"}}') == 1
    assert sample(text, f"dynamo_frontend_input_sequence_tokens_sum{{{lab}}}") == 1000
    assert sample(text, f"dynamo_frontend_time_to_first_token_seconds_count{{{lab}}}") == 1
    # ITL: one observation per inter-token gap (10 gaps of 50 ms)
    assert sample(text, f"dynamo_frontend_inter_token_latency_seconds_count{{{lab}}}") == 10
    assert sample(text, f"dynamo_frontend_inter_token_latency_seconds_sum{{{lab}}}") == pytest.approx(0.5)
    assert sample(text, f'dynamo_frontend_inter_token_latency_seconds_bucket{{{lab},le="0.045"}}') == 0
    assert sample(text, f'dynamo_frontend_inter_token_latency_seconds_bucket{{{lab},le="0.084"}}') == 10
    # a value equal to a bound falls in that bucket (le = less or equal)
    m.on_first_token(isl=870, ttft_s=0.1)
    text = m.exposition()
    assert sample(text, f'dynamo_frontend_input_sequence_tokens_bucket{{{lab},le="870"}}') == 1
    assert sample(text, f'dynamo_frontend_input_sequence_tokens_bucket{{{lab},le="+Inf"}}') == 2
    assert len(HISTOGRAM_BUCKETS["input_sequence_tokens"]) == 12


def test_simulator_rows_feed_first_tokens_completions_and_failures() -> None:
    rows = np.zeros((4, K.D_ENGINE + 1))
    rows[:, K.D_ARRIVAL] = 1.0
    rows[:, K.D_FIRST] = 1.5
    rows[:, K.D_DONE] = 3.5
    rows[:, K.D_ISL] = 2000
    rows[:, K.D_OSL] = 21
    rows[:, K.D_STATUS] = [K.STATUS_FIRST_TOKEN, K.STATUS_FIRST_TOKEN, K.STATUS_OK, K.STATUS_FAILED_REMOVED]
    m = FrontendMetrics("m")
    m.on_done_rows(rows)
    text = m.exposition()
    assert sample(text, 'dynamo_frontend_time_to_first_token_seconds_sum{model="m"}') == pytest.approx(1.0)
    assert sample(text, 'dynamo_frontend_input_sequence_tokens_count{model="m"}') == 2
    assert sample(text, 'dynamo_frontend_inter_token_latency_seconds_sum{model="m"}') == pytest.approx(2.0)
    assert sample(text, 'dynamo_frontend_inter_token_latency_seconds_count{model="m"}') == 20
    assert sample(text, 'dynamo_frontend_request_duration_seconds_sum{model="m"}') == pytest.approx(2.5)
    assert m.finished == {"success": 1, "error": 1}


@needs_promtool
def test_promtool_finds_nothing_to_lint_in_the_served_exposition() -> None:
    m = FrontendMetrics('Org/"Quoted"\\Model', dynamo_namespace="ns")
    for i in range(50):
        m.observe_request(100 * i + 1, 10 + i, 0.01 * i, 0.001 * i, 0.5 * i)
    with FrontendMetricsServer(m) as server:
        with urllib.request.urlopen(server.url, timeout=5) as resp:  # noqa: S310 - loopback
            body = resp.read()
            content_type = resp.headers["Content-Type"]
    assert content_type.startswith("text/plain; version=0.0.4")
    assert PROMTOOL is not None
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert result.returncode == 0 and result.stdout == result.stderr == b"", result
