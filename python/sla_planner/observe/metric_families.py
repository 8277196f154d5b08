"""The planner's metric families (names, types, help, labels), in one registry.

Names follow :mod:`sla_planner.observe.metrics`: the original planner's where it has them, the
Prometheus conventions otherwise; the README's metrics table lists every one.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..types import DecisionReason, ThroughputReason

__all__ = ["PREFIX", "ENGINE_GAUGES", "EngineSeries", "REASONS", "LOOP_STATES", "POOL_STATES", "LEGACY_NAMES", "MetricFamilies"]

PREFIX = "dynamo_planner"

REASONS = tuple(r.value for r in DecisionReason)
LOOP_STATES: tuple[str, ...] = ("unset", "disabled", *REASONS)
"""States of the per-loop decision enums: not yet ticked, loop off, then every decision reason."""
POOL_STATES: tuple[str, ...] = (
    "unset",
    *REASONS,
    *(r.value for r in ThroughputReason if r.value not in REASONS),
    "other",
)
"""States of the per-pool reason enum: decision reasons and throughput-proposal reasons;
``other`` for a reason outside both sets (a user's policy)."""

LEGACY_NAMES: tuple[str, ...] = tuple(
    f"{PREFIX}_{n}"
    for n in ("observed_ttft_ms", "observed_itl_ms", "estimated_ttft_ms", "estimated_itl_ms", "gpu_hours")
)
"""Original names that break Prometheus naming (exported only with ``legacy_names``)."""

PHASE_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _name(short: str) -> str:
    return f"{PREFIX}_{short}"


ENGINE_LABELS = ("pool", "worker_id", "dp_rank")
ENGINE_GAUGES: tuple[tuple[str, str], ...] = (
    (_name("engine_queued_prefill_tokens"), "Queued prefill tokens of a top-K engine rank (FPM)."),
    (_name("engine_queued_decode_kv_tokens"), "Queued decode KV tokens of a top-K engine rank (FPM)."),
    (
        _name("engine_inflight_decode_kv_tokens"),
        "Scheduled (in-flight) decode KV tokens of a top-K engine rank (FPM).",
    ),
)
"""The per-engine gauges (original names; labels ``pool``, ``worker_id``, ``dp_rank``)."""


class EngineSeries(Collector):
    """The per-engine gauges as one collector: each tick replaces the whole set of rows, so an
    engine that left the top-K (or the table) has no series at the next scrape, and a tick costs
    a list assignment instead of creating and removing labelled children."""

    def __init__(self) -> None:
        self._rows: list[tuple[tuple[str, str, str], tuple[float, float, float]]] = []

    def set_rows(self, rows: list[tuple[tuple[str, str, str], tuple[float, float, float]]]) -> None:
        """Replace the exported engines: ``((pool, worker_id, dp_rank), (queued prefill tokens,
        queued decode KV tokens, in-flight decode KV tokens))`` each."""
        self._rows = rows

    def rows(self) -> list[tuple[tuple[str, str, str], tuple[float, float, float]]]:
        """The engines exported now."""
        return self._rows

    def describe(self) -> list[Metric]:
        """The three families, empty (so registering does not collect)."""
        return [GaugeMetricFamily(name, doc, labels=ENGINE_LABELS) for name, doc in ENGINE_GAUGES]

    def collect(self) -> Iterable[Metric]:
        """One gauge family per value, one sample per exported engine."""
        rows = self._rows
        for j, (name, doc) in enumerate(ENGINE_GAUGES):
            family = GaugeMetricFamily(name, doc, labels=ENGINE_LABELS)
            for labels, values in rows:
                family.add_metric(labels, values[j])
            yield family


class MetricFamilies:
    """Every planner metric, registered in ``registry``; the legacy-named ones only with
    ``legacy_names`` (else those attributes are None)."""

    def __init__(self, registry: CollectorRegistry, legacy_names: bool) -> None:
        r = registry

        def gauge(short: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(_name(short), doc, labels, registry=r)

        def counter(short: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(_name(short), doc, labels, registry=r)

        legacy = legacy_names

        def legacy_gauge(short: str, doc: str) -> Gauge | None:
            return gauge(short, doc) if legacy else None

        # -- original names (kept for compatibility) ---------------------------------------------
        self.num_prefill_replicas = gauge("num_prefill_replicas", "Ready prefill engines.")
        self.num_decode_replicas = gauge(
            "num_decode_replicas", "Ready decode engines (the aggregated pool's in agg mode)."
        )
        self.observed_ttft_ms = legacy_gauge("observed_ttft_ms", "Observed mean TTFT (ms).")
        self.observed_itl_ms = legacy_gauge("observed_itl_ms", "Observed mean ITL (ms).")
        self.observed_requests_per_second = gauge(
            "observed_requests_per_second", "Observed request rate over the last window."
        )
        self.observed_request_duration_seconds = gauge(
            "observed_request_duration_seconds", "Observed mean request duration."
        )
        self.observed_input_sequence_tokens = gauge(
            "observed_input_sequence_tokens", "Observed mean input sequence length (tokens)."
        )
        self.observed_output_sequence_tokens = gauge(
            "observed_output_sequence_tokens", "Observed mean output sequence length (tokens)."
        )
        self.predicted_requests_per_second = gauge(
            "predicted_requests_per_second", "Predicted request rate for the next interval."
        )
        self.predicted_input_sequence_tokens = gauge(
            "predicted_input_sequence_tokens", "Predicted mean input sequence length (tokens)."
        )
        self.predicted_output_sequence_tokens = gauge(
            "predicted_output_sequence_tokens", "Predicted mean output sequence length (tokens)."
        )
        self.predicted_num_prefill_replicas = gauge(
            "predicted_num_prefill_replicas", "Prefill engines the last decision asked for."
        )
        self.predicted_num_decode_replicas = gauge(
            "predicted_num_decode_replicas",
            "Decode engines (aggregated in agg mode) the last decision asked for.",
        )
        self.gpu_hours = legacy_gauge("gpu_hours", "GPU-hours requested since the planner started.")
        self.estimated_ttft_ms = legacy_gauge(
            "estimated_ttft_ms", "Largest TTFT the load model estimates across prefill engines (ms)."
        )
        self.estimated_itl_ms = legacy_gauge(
            "estimated_itl_ms", "Largest ITL the load model estimates across decode engines (ms)."
        )
        self.engine_prefill_capacity = gauge(
            "engine_prefill_capacity_requests_per_second",
            "Requests per second one prefill engine serves within the SLA (throughput model).",
        )
        self.engine_decode_capacity = gauge(
            "engine_decode_capacity_requests_per_second",
            "Requests per second one decode engine serves within the SLA (throughput model).",
        )
        self.load_scaling_decision = Enum(
            _name("load_scaling_decision"), "Reason of the last load-loop decision.",
            states=list(LOOP_STATES), registry=r,
        )
        self.throughput_scaling_decision = Enum(
            _name("throughput_scaling_decision"), "Reason of the last throughput-loop decision.",
            states=list(LOOP_STATES), registry=r,
        )
        self.engine_series = EngineSeries()
        r.register(self.engine_series)
        # -- sla-planner's own ----------------------------------------------------------------------
        self.replicas = gauge("replicas", "Engines the deployment asks for (starting ones included).", ("pool",))
        self.ready_replicas = gauge("ready_replicas", "Engines serving.", ("pool",))
        self.gpus = gauge("gpus", "GPUs the pool asks for (replicas x GPUs per engine).", ("pool",))
        self.gpu_seconds = counter("gpu_seconds", "GPU-seconds requested since the planner started.")
        self.recommended_replicas = gauge(
            "recommended_replicas", "Engines the last decision that set targets asked for.", ("pool",)
        )
        self.planned_replicas = gauge(
            "planned_replicas",
            "Engines the throughput model sizes the pool at for the predicted traffic (after the budget).",
            ("pool",),
        )
        self.observed_ttft_seconds = gauge("observed_ttft_seconds", "Observed mean TTFT.")
        self.observed_itl_seconds = gauge("observed_itl_seconds", "Observed mean ITL.")
        self.estimated_ttft_seconds = gauge(
            "estimated_ttft_seconds", "Largest TTFT the load model estimates across the pool's engines.",
            ("pool",),
        )
        self.estimated_itl_seconds = gauge(
            "estimated_itl_seconds", "Largest ITL the load model estimates across the pool's engines.",
            ("pool",),
        )
        self.estimated_sla_ratio = gauge(
            "estimated_sla_ratio",
            "Largest load-model estimate across the pool's engines over its SLA (above 1: over).",
            ("pool",),
        )
        self.sla_ttft_seconds = gauge("sla_ttft_seconds", "TTFT target.")
        self.sla_itl_seconds = gauge("sla_itl_seconds", "ITL target.")
        self.correction_factor = gauge(
            "correction_factor",
            "Observed over profiled latency applied by the throughput model (NaN when not applied).",
            ("pool",),
        )
        self.pool_scaling_decision = Enum(
            _name("pool_scaling_decision"), "Reason of the last decision per loop and pool.",
            ("loop", "pool"), states=list(POOL_STATES), registry=r,
        )
        self.pool_queued_prefill_tokens = gauge(
            "pool_queued_prefill_tokens", "Queued prefill tokens summed over the pool's active engines.",
            ("pool",),
        )
        self.pool_queued_decode_kv_tokens = gauge(
            "pool_queued_decode_kv_tokens",
            "Queued decode KV tokens summed over the pool's active engines.", ("pool",),
        )
        self.pool_inflight_decode_kv_tokens = gauge(
            "pool_inflight_decode_kv_tokens",
            "In-flight decode KV tokens summed over the pool's active engines.", ("pool",),
        )
        # -- loop health ----------------------------------------------------------------------------
        self.engines_tracked = gauge(
            "engines_tracked", "Engine ranks in the FPM engine table.", ("role",)
        )
        self.engines_stale = gauge(
            "engines_stale", "Engine ranks with no forward pass within the staleness bound.", ("role",)
        )
        self.ticks = counter("ticks", "Ticks run.", ("loop",))
        self.last_tick_timestamp_seconds = gauge(
            "last_tick_timestamp_seconds", "Time of the last tick (Unix time live, simulated in replay).",
            ("loop",),
        )
        self.tick_lag_seconds = gauge(
            "tick_lag_seconds", "How late the last tick started after it was due.", ("loop",)
        )
        self.tick_duration_seconds = Histogram(
            _name("tick_duration_seconds"), "Time per tick phase (observe, decide, apply).",
            ("phase",), registry=r, buckets=PHASE_BUCKETS_S,
        )
        self.input_failures = counter(
            "input_failures", "Tick inputs that could not be read, by kind.", ("kind",)
        )
        self.decisions = counter("decisions", "Decisions by loop and reason.", ("loop", "reason"))
        self.applies = counter("applies", "Apply outcomes by status (failed: refused or incomplete).", ("status",))
