"""Loading a Dynamo planner config: Dynamo's field names, and its fields without a meaning here.

DESIGN §4.11: a Dynamo planner config loads. Fields of Dynamo's ``PlannerConfig`` that mean the
same as one of ours under another name are renamed (:data:`DYNAMO_ALIASES`). Fields with no
meaning here (:data:`NO_EFFECT`) are checked against Dynamo's own type and range, then dropped,
and the load warns once, naming all of them. Names that are neither ours nor Dynamo's stay
errors (``PlannerConfig`` suggests the nearest field). The Dynamo fields with a meaning here
(``min_gpu_budget``, ``prefill_min_endpoint``, ``decode_min_endpoint``, a negative
``max_gpu_budget``) are ordinary ``PlannerConfig`` fields.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .documents import short_repr

__all__ = ["DYNAMO_ALIASES", "NO_EFFECT", "DynamoFields", "absorb_dynamo_fields"]

#: Dynamo's newer field name -> our field of the same meaning and unit.
DYNAMO_ALIASES: Mapping[str, str] = {
    "ttft_ms": "ttft",
    "itl_ms": "itl",
    "throughput_adjustment_interval_seconds": "throughput_adjustment_interval",
    "load_adjustment_interval_seconds": "load_adjustment_interval",
    "advisory": "no_operation",
    "metric_pulling_prometheus_token": "prometheus_bearer_token",
    "metric_pulling_prometheus_token_file": "prometheus_bearer_token_file",
    "metric_pulling_prometheus_ca_bundle": "prometheus_ca_bundle",
    "metric_pulling_prometheus_request_timeout_seconds": "prometheus_timeout_s",
}

#: Our fields Dynamo allows to be null ("read it from the deployment"); null means our default.
NULLABLE_IN_DYNAMO: frozenset[str] = frozenset({"prefill_engine_num_gpu", "decode_engine_num_gpu"})

Check = Callable[[Any], str | None]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_at_least(low: int, *, nullable: bool = False) -> Check:
    def check(value: Any) -> str | None:
        if value is None and nullable:
            return None
        if not _is_int(value) or value < low:
            return f"must be an integer >= {low}" + (" or null" if nullable else "")
        return None

    return check


def _int_between(low: int, high: int) -> Check:
    def check(value: Any) -> str | None:
        if not _is_int(value) or not low <= value <= high:
            return f"must be an integer in {low}..{high}"
        return None

    return check


def _perfect_square(value: Any) -> str | None:
    if not _is_int(value) or value < 1 or math.isqrt(value) ** 2 != value:
        return "must be a perfect square integer >= 1 (1, 4, 9, 16, ...)"
    return None


def _percent_or_null(value: Any) -> str | None:
    if value is None:
        return None
    number_ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number_ok or not math.isfinite(value) or not 0 <= value <= 100:
        return "must be a number in 0..100 or null"
    return None


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _str_or_null(value: Any) -> str | None:
    return None if value is None or isinstance(value, str) else "must be a string or null"


def _mapping_or_null(value: Any) -> str | None:
    return None if value is None or isinstance(value, dict) else "must be a mapping or null"


def _mapping(value: Any) -> str | None:
    return None if isinstance(value, dict) else "must be a mapping"


def _sweep_mode(value: Any) -> str | None:
    if value is None or value in ("none", "rapid", "thorough"):
        return None
    return "must be one of 'none', 'rapid', 'thorough' or null"


def _query_params(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return "must be a mapping of strings to strings or null"
    return None


#: Dynamo field -> (check of Dynamo's type and range, why it has no effect here).
NO_EFFECT: Mapping[str, tuple[Check, str]] = {
    "pre_deployment_sweeping_mode": (
        _sweep_mode, "profiles are read from profile_results_dir; the profiler is not run here"),
    "max_num_fpm_samples": (
        _int_at_least(1), "the load regression keeps a time window (load_learning_window)"),
    "fpm_sample_bucket_size": (
        _perfect_square, "the load regression buckets by time, not by input axes"),
    "speculative_nextn": (_int_at_least(0), "no speculative-decoding model here"),
    "max_throughput_scaling_replicas": (
        _int_at_least(1), "throughput targets are not step-limited here"),
    "control_api_port": (_int_between(0, 65535), "no runtime control API here"),
    "aic_interpolation": (_mapping_or_null, "no in-process AIConfigurator sweep here"),
    "aic_perf_model": (_mapping_or_null, "performance models come from profile data here"),
    "prefill_scale_up_queue_tokens": (
        _int_at_least(0, nullable=True), "optimization_target 'load' is not implemented here"),
    "prefill_scale_down_queue_tokens": (
        _int_at_least(0, nullable=True), "optimization_target 'load' is not implemented here"),
    "decode_scale_up_kv_rate": (
        _percent_or_null, "optimization_target 'load' is not implemented here"),
    "decode_scale_down_kv_rate": (
        _percent_or_null, "optimization_target 'load' is not implemented here"),
    "metric_pulling_prometheus_ssl_verify": (
        _bool, "https is always verified here (system CAs, or prometheus_ca_bundle)"),
    "metric_pulling_prometheus_extra_query_params": (
        _query_params, "no extra PromQL query parameters here"),
    "enable_power_awareness": (_bool, "no power budget here"),
    "total_gpu_power_limit": (_int_at_least(1, nullable=True), "no power budget here"),
    "report_filename": (_str_or_null, "report names are timestamped here"),
    "report_write_gzip_log": (_bool, "no gzip diagnostics log here"),
    "scheduling": (_mapping, "the two loops run at their own intervals; no plugin pipeline here"),
    "plugin_registration": (_mapping, "no plugin pipeline here"),
}


@dataclass
class DynamoFields:
    """What :func:`absorb_dynamo_fields` did to one input mapping."""

    data: dict[str, Any]
    """The input with aliases renamed and no-effect fields dropped."""
    renamed: dict[str, str] = field(default_factory=dict)
    """Dynamo name -> our field name, for names that were renamed."""
    ignored: list[str] = field(default_factory=list)
    """No-effect fields that were given (in input order)."""
    defaulted: list[str] = field(default_factory=list)
    """Our fields given as null, Dynamo's "read from the deployment", left at our default."""
    problems: list[str] = field(default_factory=list)
    """``field: message`` lines for values Dynamo itself would refuse, or names given twice."""

    def warning(self) -> str | None:
        """One warning naming every field without effect here (None when there is none)."""
        parts = []
        if self.ignored:
            reasons = "; ".join(f"{name} ({NO_EFFECT[name][1]})" for name in self.ignored)
            parts.append(f"Dynamo planner fields accepted with no effect here: {reasons}")
        if self.defaulted:
            parts.append(
                "null (read from the deployment in Dynamo) means the default here for: "
                + ", ".join(self.defaulted)
            )
        return ". ".join(parts) if parts else None


def absorb_dynamo_fields(data: Mapping[Any, Any], sources: Mapping[str, str]) -> DynamoFields:
    """Rename Dynamo's aliases, check and drop its no-effect fields (see the module docstring).

    ``sources`` labels keys for messages (``config file x.yaml``). Keys that are not strings are
    left for the model to refuse.
    """
    out = DynamoFields(data={})
    for key, value in data.items():
        if not isinstance(key, str):
            out.data[key] = value
            continue
        label = f" [from {sources[key]}]" if key in sources else ""
        if key in NO_EFFECT:
            check, _ = NO_EFFECT[key]
            problem = check(value)
            if problem is not None:
                out.problems.append(f"{key}: {problem} (got {short_repr(value)}){label}")
            else:
                out.ignored.append(key)
            continue
        if key in NULLABLE_IN_DYNAMO and value is None:
            out.defaulted.append(key)
            continue
        if key in DYNAMO_ALIASES:
            target = DYNAMO_ALIASES[key]
            if target in data:
                out.problems.append(
                    f"{key}, {target}: the same setting is given twice (Dynamo's name and "
                    f"ours){label}"
                )
                continue
            out.renamed[key] = target
            out.data[target] = value
            continue
        out.data[key] = value
    return out
