"""Frontend traffic from Prometheus: the throughput loop's observation of the last window.

Over a window of W seconds the frontend's series give (DESIGN.md §3): the request count,
``increase(dynamo_frontend_requests_started_total[W])`` (offered load; frontends that predate it
fall back to ``dynamo_frontend_requests_total``), and the means
``increase(X_sum[W]) / increase(X_count[W])`` of ISL, OSL, TTFT, ITL and request duration, plus
the ISL histogram's buckets. Series are filtered by ``model`` (case-insensitive: the frontend
lowercases model names) and ``dynamo_namespace``, and summed across frontends.

Everything is asked in **one** PromQL query (each part tagged by ``label_replace``), so all
parts are evaluated at the same instant and one round trip answers a tick.

Unknown is never zero. :meth:`PrometheusTraffic.window` raises
:class:`~sla_planner.errors.SignalError` naming the cause when Prometheus cannot be read or the
answer cannot be trusted: no request-count series at all (the frontend is not scraped, the
filters match nothing, or it has served no request yet), a count that is NaN, infinite or
negative, a mean whose sum or count is NaN, infinite or negative, or a mean beyond
:data:`MEAN_LIMITS` (tokens or seconds no real deployment reports). A window whose request
count is 0 is **idle**: ``num_req = 0`` and every mean unknown (None). A mean with no
observation in the window (e.g. no request finished yet, so no OSL) is None, not 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import SignalError
from ..types import ObservedTraffic
from .promql import PromClient, PromSettings, Sample, Series

__all__ = [
    "FRONTEND_PREFIX",
    "MEAN_LIMITS",
    "PART_LABEL",
    "PrometheusTraffic",
    "frontend_query",
    "label_filter",
    "traffic_from_parts",
]

FRONTEND_PREFIX = "dynamo_frontend"
PART_LABEL = "sla_planner_part"

#: Histograms read as window means: part name -> (metric, upper limit of a believable mean).
MEAN_LIMITS: Mapping[str, tuple[str, float]] = {
    "isl": (f"{FRONTEND_PREFIX}_input_sequence_tokens", 10_000_000.0),
    "osl": (f"{FRONTEND_PREFIX}_output_sequence_tokens", 10_000_000.0),
    "ttft": (f"{FRONTEND_PREFIX}_time_to_first_token_seconds", 3600.0),
    "itl": (f"{FRONTEND_PREFIX}_inter_token_latency_seconds", 3600.0),
    "duration": (f"{FRONTEND_PREFIX}_request_duration_seconds", 86_400.0),
}
_COUNTERS = (
    ("requests_started", f"{FRONTEND_PREFIX}_requests_started_total"),
    ("requests_total", f"{FRONTEND_PREFIX}_requests_total"),
)
_ISL_BUCKET = f"{FRONTEND_PREFIX}_input_sequence_tokens_bucket"
_REGEX_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")


def _promql_string(text: str) -> str:
    """A double-quoted PromQL string literal."""
    if any(c in text for c in "\n\r\0"):
        raise SignalError(f"label value {text!r} contains a control character")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def label_filter(model: str | None, dynamo_namespace: str | None) -> str:
    """``{model=~"(?i)...",dynamo_namespace="..."}`` (model matched whole, case-insensitively)."""
    matchers = []
    if model:
        pattern = "(?i)" + _REGEX_SPECIAL.sub(r"\\\1", model)
        matchers.append("model=~" + _promql_string(pattern))
    if dynamo_namespace:
        matchers.append(f"dynamo_namespace={_promql_string(dynamo_namespace)}")
    return "{" + ",".join(matchers) + "}"


def _duration(window_s: float) -> str:
    ms = round(window_s * 1000.0)
    if not (math.isfinite(window_s) and ms >= 1):
        raise SignalError(f"traffic window must be >= 1 ms, got {window_s!r} s")
    return f"{ms}ms"


def frontend_query(window_s: float, model: str | None, dynamo_namespace: str | None) -> str:
    """The one PromQL query that answers a window (parts tagged with ``sla_planner_part``)."""
    f = label_filter(model, dynamo_namespace)
    w = _duration(window_s)

    def part(name: str, expr: str) -> str:
        return f'label_replace({expr}, "{PART_LABEL}", "{name}", "", "")'

    parts = [part(name, f"sum(increase({metric}{f}[{w}]))") for name, metric in _COUNTERS]
    for name, (metric, _) in MEAN_LIMITS.items():
        parts.append(part(f"{name}_sum", f"sum(increase({metric}_sum{f}[{w}]))"))
        parts.append(part(f"{name}_count", f"sum(increase({metric}_count{f}[{w}]))"))
    parts.append(part("isl_bucket", f"sum by (le) (increase({_ISL_BUCKET}{f}[{w}]))"))
    return " or ".join(parts)


def _check(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise SignalError(f"{what} is {value} (not a finite number)")
    if value < 0:
        raise SignalError(f"{what} is negative ({value:g})")
    return value


def _mean(name: str, parts: Mapping[str, float], metric: str, limit: float) -> float | None:
    count = parts.get(f"{name}_count")
    total = parts.get(f"{name}_sum")
    if count is None:
        return None
    _check(count, f"increase({metric}_count)")
    if count == 0:
        return None
    if total is None:
        raise SignalError(f"{metric}: {count:g} observations in the window but no _sum series")
    _check(total, f"increase({metric}_sum)")
    mean = total / count
    if mean > limit:
        raise SignalError(f"{metric}: window mean {mean:g} is beyond the believable limit {limit:g}")
    return mean


def _isl_buckets(buckets: Iterable[tuple[str, float]]) -> tuple[tuple[float, float], ...] | None:
    """Non-cumulative (upper bound, count) from cumulative ``le`` buckets; None when unusable."""
    bounds: list[tuple[float, float]] = []
    for le, value in buckets:
        try:
            bound = float(le)
        except ValueError:
            return None
        if math.isnan(bound) or not math.isfinite(value) or value < 0:
            return None
        bounds.append((bound, value))
    if not bounds:
        return None
    bounds.sort()
    out: list[tuple[float, float]] = []
    previous = 0.0
    for bound, cumulative in bounds:
        # increase() extrapolates each bucket on its own: clamp the rare small inversions
        out.append((bound, max(cumulative - previous, 0.0)))
        previous = max(previous, cumulative)
    if not math.isinf(out[-1][0]) or sum(c for _, c in out) <= 0:
        return None
    return tuple(out)


def traffic_from_parts(parts: Mapping[str, float], buckets: Iterable[tuple[str, float]] = ()) -> ObservedTraffic:
    """Validate one window's parts (name -> value) into ObservedTraffic, or raise SignalError."""
    name = "requests_started" if "requests_started" in parts else "requests_total"
    if name not in parts:
        raise SignalError(
            f"no {_COUNTERS[0][1]} or {_COUNTERS[1][1]} series matches: the frontend is not scraped, "
            "the model / dynamo_namespace filters match nothing, or no request was served yet"
        )
    num_req = _check(parts[name], f"increase({dict(_COUNTERS)[name]})")
    if num_req == 0:
        return ObservedTraffic(num_req=0.0)
    means = {key: _mean(key, parts, metric, limit) for key, (metric, limit) in MEAN_LIMITS.items()}
    ttft, itl = means["ttft"], means["itl"]
    return ObservedTraffic(
        num_req=num_req,
        isl=means["isl"],
        osl=means["osl"],
        ttft_ms=None if ttft is None else ttft * 1e3,
        itl_ms=None if itl is None else itl * 1e3,
        request_duration_s=means["duration"],
        isl_buckets=_isl_buckets(buckets),
    )


def _split(samples: Iterable[tuple[dict[str, str], float]]) -> tuple[dict[str, float], list[tuple[str, float]]]:
    parts: dict[str, float] = {}
    buckets: list[tuple[str, float]] = []
    for labels, value in samples:
        name = labels.get(PART_LABEL)
        if name == "isl_bucket":
            buckets.append((labels.get("le", ""), value))
        elif name is not None:
            parts[name] = value
    return parts, buckets


@dataclass(frozen=True)
class HistoryPoint:
    """One past window: its end time and its traffic, or why it is unknown."""

    end_s: float
    traffic: ObservedTraffic | None
    error: str | None = None


class PrometheusTraffic:
    """The throughput loop's traffic source (see the module docstring)."""

    def __init__(
        self,
        settings: PromSettings,
        *,
        model: str | None = None,
        dynamo_namespace: str | None = None,
        client: PromClient | None = None,
    ) -> None:
        self.client = client or PromClient(settings)
        self.model = model
        self.dynamo_namespace = dynamo_namespace
        label_filter(model, dynamo_namespace)  # reject unusable label values now

    @classmethod
    def from_config(cls, cfg: Any) -> PrometheusTraffic:
        """From PlannerConfig: endpoint, model name, namespace, token, CA bundle, timeouts."""
        shortest = float(cfg.throughput_adjustment_interval)
        if cfg.enable_load_scaling:
            shortest = min(shortest, float(cfg.load_adjustment_interval))
        # retries end within half the shortest tick interval, so a slow Prometheus never
        # delays the next tick
        deadline_s = min(3.0 * float(cfg.prometheus_timeout_s), 0.5 * shortest)
        settings = PromSettings(
            url=cfg.metric_pulling_prometheus_endpoint,
            timeout_s=min(float(cfg.prometheus_timeout_s), deadline_s),
            deadline_s=deadline_s,
            bearer_token=cfg.prometheus_bearer_token,
            bearer_token_file=cfg.prometheus_bearer_token_file,
            ca_bundle=cfg.prometheus_ca_bundle,
        )
        return cls(settings, model=cfg.model_name, dynamo_namespace=cfg.namespace)

    @property
    def deadline_s(self) -> float:
        """How long one window read may take, retries included."""
        return self.client.settings.deadline_s

    def query(self, window_s: float) -> str:
        """The PromQL this source sends for a window of ``window_s`` seconds."""
        return frontend_query(window_s, self.model, self.dynamo_namespace)

    async def window(self, window_s: float) -> ObservedTraffic:
        """Traffic over the last ``window_s`` seconds (raises SignalError when unknown)."""
        samples: list[Sample] = await self.client.query(self.query(window_s))
        parts, buckets = _split(samples)
        try:
            return traffic_from_parts(parts, buckets)
        except SignalError as exc:
            raise SignalError(f"Prometheus {self.client.settings.url}: {exc}") from None

    async def history(self, window_s: float, windows: int, end_s: float) -> list[HistoryPoint]:
        """The ``windows`` consecutive windows ending at ``end_s`` (oldest first), one range query."""
        if windows < 1:
            return []
        start_s = end_s - (windows - 1) * window_s
        series: list[Series] = await self.client.query_range(self.query(window_s), start_s, end_s, window_s)
        by_time: dict[float, list[tuple[dict[str, str], float]]] = {}
        for labels, points in series:
            for t, value in points:
                by_time.setdefault(round(t, 3), []).append((labels, value))
        out: list[HistoryPoint] = []
        for k in range(windows):
            t = round(start_s + k * window_s, 3)
            parts, buckets = _split(by_time.get(t, []))
            try:
                out.append(HistoryPoint(t, traffic_from_parts(parts, buckets)))
            except SignalError as exc:
                out.append(HistoryPoint(t, None, str(exc)))
        return out

    async def close(self) -> None:
        """Close the HTTP session."""
        await self.client.close()
