"""PlannerConfig: the one source of truth for planner settings, with loading and validation.

Precedence, lowest to highest: field defaults < ``--config`` (file or inline JSON) < environment
variables (:data:`ENV_VARS`) < explicit overrides (CLI flags). Every validation failure is raised as
:class:`~sla_planner.errors.ConfigError` listing ``field: message`` for every problem found; an
infeasible minimum GPU footprint is the subclass :class:`~sla_planner.errors.InfeasibleBudgetError`.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple, NoReturn, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .config_cli import (
    ENV_VARS,
    add_config_arguments,
    config_from_args,
    read_config_file,
    read_config_value,
    read_env,
    read_inline_json,
)
from .config_budget import budget_problems, footprint, role_minimum
from .config_dynamo import DYNAMO_ALIASES, NO_EFFECT, absorb_dynamo_fields
from .documents import short_repr
from .errors import ConfigError, InfeasibleBudgetError

__all__ = [
    "ENV_VARS",
    "EASY_TARGETS",
    "PlannerConfig",
    "PoolName",
    "add_config_arguments",
    "config_from_args",
]

logger = logging.getLogger(__name__)

PoolName = Literal["prefill", "decode", "agg"]

#: Optimisation targets served by static queue / KV thresholds: they force load-based scaling.
EASY_TARGETS: frozenset[str] = frozenset({"throughput", "latency"})

_POOLS_BY_MODE: Mapping[str, tuple[PoolName, ...]] = {
    "disagg": ("prefill", "decode"),
    "prefill": ("prefill",),
    "decode": ("decode",),
    "agg": ("agg",),
}

_RULES_ERROR = "planner_config_rules"

_DEFAULT_PROMETHEUS = (
    "http://prometheus-kube-prometheus-prometheus.monitoring.svc.cluster.local:9090"
)


class _Problem(NamedTuple):
    message: str
    infeasible_budget: bool = False


#: Largest magnitude of an integer field, and of a float field (bad-input bounds: every product
#: the planner forms from config values stays finite and fits a C long).
MAX_CONFIG_INT = 2**31 - 1
MAX_CONFIG_FLOAT = 1e15


def _cross_field_problems(values: Mapping[str, Any], invalid: frozenset[str]) -> list[_Problem]:
    """Rules spanning several fields; a rule that reads a field in ``invalid`` is skipped."""

    def usable(*names: str) -> bool:
        return not invalid.intersection(names)

    problems: list[_Problem] = []
    throughput_on = values["enable_throughput_scaling"]
    load_on = values["enable_load_scaling"]
    if usable("optimization_target") and values["optimization_target"] in EASY_TARGETS:
        throughput_on, load_on = False, True
    modes_known = usable("optimization_target", "enable_throughput_scaling", "enable_load_scaling")
    if modes_known and not (throughput_on or load_on):
        problems.append(
            _Problem(
                "enable_throughput_scaling, enable_load_scaling: at least one scaling mode must be "
                "on (both are false)"
            )
        )
    if (
        modes_known
        and throughput_on
        and load_on
        and usable("load_adjustment_interval", "throughput_adjustment_interval")
        and values["load_adjustment_interval"] >= values["throughput_adjustment_interval"]
    ):
        problems.append(
            _Problem(
                "load_adjustment_interval, throughput_adjustment_interval: with both scaling modes "
                f"on, load_adjustment_interval ({values['load_adjustment_interval']} s) must be "
                f"strictly less than throughput_adjustment_interval "
                f"({values['throughput_adjustment_interval']} s)"
            )
        )
    if (
        usable("environment", "global_planner_namespace")
        and values["environment"] == "global-planner"
        and not values["global_planner_namespace"]
    ):
        problems.append(
            _Problem("global_planner_namespace: required when environment is 'global-planner'")
        )
    problems.extend(_Problem(*problem) for problem in budget_problems(values, usable))
    return problems


def _describe_error(error: Mapping[str, Any], sources: Mapping[str, str]) -> str:
    """One ``field: message (got value) [from source]`` line for a pydantic field error."""
    field = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        known = [*PlannerConfig.model_fields, *DYNAMO_ALIASES, *NO_EFFECT]
        close = difflib.get_close_matches(field, known, n=1)
        message = "unknown field" + (f" (did you mean {close[0]!r}?)" if close else "")
    elif kind == "literal_error":
        message = f"must be one of {error['ctx']['expected']}; got {short_repr(error['input'])}"
    else:
        got = short_repr(error["input"])
        message = f"{str(error['msg']).removeprefix('Value error, ')} (got {got})"
    source = sources.get(str(error["loc"][0])) if error["loc"] else None
    return f"{field}: {message}" + (f" [from {source}]" if source else "")


def _raise_config_error(problems: list[_Problem]) -> NoReturn:
    """One ConfigError listing every problem; InfeasibleBudgetError if the footprint is one."""
    count = f" ({len(problems)} problems)" if len(problems) > 1 else ""
    message = f"invalid PlannerConfig{count}:\n  " + "\n  ".join(p.message for p in problems)
    if any(problem.infeasible_budget for problem in problems):
        raise InfeasibleBudgetError(message)
    raise ConfigError(message)


def _absorb_dynamo(
    data: Any, sources: Mapping[str, str]
) -> tuple[Any, dict[str, str], list[_Problem], str | None]:
    """Dynamo's names renamed and no-effect fields dropped (see :mod:`.config_dynamo`):
    (data, sources under the new names, problems, the warning to log after a good load)."""
    if not isinstance(data, Mapping):
        return data, dict(sources), [], None
    found = absorb_dynamo_fields(data, sources)
    renamed = {found.renamed.get(key, key): label for key, label in sources.items()}
    return found.data, renamed, [_Problem(text) for text in found.problems], found.warning()


class PlannerConfig(BaseModel):
    """Every planner setting, validated; build with :meth:`from_sources` to apply env and CLI."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False
    )

    # scaling modes and targets
    enable_throughput_scaling: bool = Field(
        True, description="Size pools from profiling data and predicted traffic."
    )
    enable_load_scaling: bool = Field(
        False, description="Scale on live engine load (forward-pass metrics)."
    )
    optimization_target: Literal["throughput", "latency", "sla"] = Field(
        "throughput",
        description="'sla' plans for the ttft/itl targets; 'throughput' and 'latency' use static "
        "queue/KV thresholds and force load-based scaling only.",
    )
    mode: Literal["disagg", "prefill", "decode", "agg"] = Field(
        "disagg", description="Pools to plan: prefill+decode, one of them, or one aggregated pool."
    )
    backend: Literal["vllm", "sglang", "trtllm", "mocker"] = Field(
        "vllm", description="Inference engine backend serving the pools."
    )
    environment: Literal["kubernetes", "virtual", "global-planner"] = Field(
        "kubernetes", description="Where scaling decisions are applied."
    )
    namespace: str = Field(
        "dynamo", min_length=1, description="Deployment namespace (env DYN_NAMESPACE)."
    )
    dgd_name: str | None = Field(
        None,
        min_length=1,
        description="Parent graph deployment resource name (env DYN_PARENT_DGD_K8S_NAME).",
    )
    global_planner_namespace: str | None = Field(
        None,
        min_length=1,
        description="Namespace of the global planner; required for environment global-planner.",
    )
    model_name: str | None = Field(
        None, min_length=1, description="Served model name used to filter frontend metrics."
    )
    # intervals, floors and budget
    throughput_adjustment_interval: int = Field(
        60, gt=0, description="Seconds between throughput-based decisions (the traffic window)."
    )
    load_adjustment_interval: int = Field(
        10, gt=0, description="Seconds between load-based decisions."
    )
    min_endpoint: int = Field(1, ge=1, description="Minimum number of engines in every pool.")
    max_gpu_budget: int = Field(
        128, description="Maximum GPUs across all pools; a negative value disables the budget."
    )
    prefill_engine_num_gpu: int = Field(1, ge=1, description="GPUs per prefill engine.")
    decode_engine_num_gpu: int = Field(
        1, ge=1, description="GPUs per decode engine (also per engine of the aggregated pool)."
    )
    # Dynamo planner compatibility (DESIGN 4.11): per-role floors and a GPU floor
    min_gpu_budget: int = Field(
        -1,
        description="Minimum GPUs across all pools that scale-downs keep; a negative value "
        "disables it.",
    )
    prefill_min_endpoint: int | None = Field(
        None,
        ge=1,
        description="Minimum prefill engines (modes disagg, prefill); null uses min_endpoint.",
    )
    decode_min_endpoint: int | None = Field(
        None,
        ge=1,
        description="Minimum decode engines (modes disagg, decode); null uses min_endpoint.",
    )
    # SLA targets and the request shape assumed until one is observed
    ttft: float = Field(2000.0, gt=0, description="Time-to-first-token target in ms.")
    itl: float = Field(30.0, gt=0, description="Inter-token latency target in ms.")
    isl: float = Field(
        3000.0, gt=0, description="Input sequence length in tokens, assumed when unobserved."
    )
    osl: float = Field(
        150.0, gt=0, description="Output sequence length in tokens, assumed when unobserved."
    )
    no_correction: bool = Field(
        False, description="Disable correction factors from observed vs. profiled TTFT/ITL."
    )
    ttft_attainment_target: float = Field(
        0.95,
        ge=0.0,
        lt=1.0,
        description=(
            "Share of requests whose TTFT should meet `ttft`: prefill is sized so an M/G/c queue "
            "model of the pool (service time from the profile over the observed ISL histogram) "
            "predicts at most this share waiting too long. 0 disables queue-aware sizing."
        ),
    )
    itl_attainment_target: float = Field(
        0.95,
        ge=0.0,
        lt=1.0,
        description=(
            "Share of time each decode engine's batch should stay within the batch that meets "
            "`itl` (Poisson model of concurrent requests per engine). 0 disables it."
        ),
    )
    forecast_at_least_observed: bool = Field(
        True,
        description=(
            "Plan for at least the request count observed in the last interval when it exceeds "
            "the forecast by more than its Poisson noise (two standard deviations): trend "
            "predictors lag a step up, and under-provisioning builds queues that outlast it."
        ),
    )
    throughput_include_backlog: bool = Field(
        True,
        description=(
            "Size prefill to also clear, within one interval, the prompt tokens already queued at "
            "prefill engines (from engine metrics)."
        ),
    )
    profile_results_dir: str | None = Field(
        None,
        min_length=1,
        description="Directory of profiling results; 'builtin:example' names the bundled profile.",
    )
    # load-based scaling
    load_learning_window: int = Field(
        120, gt=0, description="Seconds of forward-pass metrics the load regression learns from."
    )
    load_scaling_down_sensitivity: int = Field(
        80,
        ge=0,
        le=100,
        description="Percent of the SLA every engine must be under before a scale-down (0..100).",
    )
    load_scale_down_patience: int = Field(
        3, ge=1, description="Consecutive load intervals that must agree before a scale-down."
    )
    load_metric_samples: int = Field(
        10, ge=1, description="Forward-pass metric samples averaged per engine per load interval."
    )
    load_min_observations: int = Field(
        5, ge=1, description="Observations needed before the load regression is trusted."
    )
    # time-aware scaling (DESIGN.md §4.7)
    engine_startup_time: float = Field(
        120.0,
        ge=0,
        description=(
            "Seconds from asking for an engine until it serves (image pull, weights, warm-up). "
            "Scale-up plans for the load expected when a new engine is ready; scale-down waits "
            "until capacity is not needed again within this time. Refined by observed ready times."
        ),
    )
    scale_down_stabilization: float | None = Field(
        None,
        ge=0,
        description=(
            "Seconds every recommendation must stay below the current size before a pool shrinks "
            "(as the Kubernetes HPA's scale-down stabilisation window); null: engine_startup_time."
        ),
    )
    scale_down_tolerance: float = Field(
        0.05,
        ge=0,
        lt=1,
        description=(
            "A pool shrinks only to a size its need fills to at most (1 - tolerance): the band "
            "between scale-up and scale-down that keeps a pool from flapping."
        ),
    )
    forecast_headroom_quantile: float = Field(
        0.9,
        ge=0,
        lt=1,
        description=(
            "Plan for this quantile of the request-count forecast, from the predictor's recent "
            "errors (headroom for forecast error); 0 plans for the point forecast."
        ),
    )
    # load prediction
    load_predictor: Literal["constant", "linear", "kalman", "arima", "prophet"] = Field(
        "linear", description="Traffic predictor for the next throughput interval."
    )
    load_predictor_log1p: bool = Field(
        True, description="Predict in log1p space, keeping forecasts non-negative."
    )
    linear_window_size: int = Field(10, ge=2, description="Points the linear predictor fits.")
    prophet_window_size: int = Field(300, ge=10, description="Points the prophet predictor keeps.")
    kalman_q_level: float = Field(0.1, ge=0, description="Kalman process noise of the level.")
    kalman_q_trend: float = Field(0.01, ge=0, description="Kalman process noise of the trend.")
    kalman_r: float = Field(1.0, gt=0, description="Kalman measurement noise.")
    kalman_min_points: int = Field(
        10, ge=1, description="Observations before the Kalman forecast is used."
    )
    load_predictor_warmup_trace: str | None = Field(
        None, min_length=1, description="Mooncake JSONL trace used to warm up the predictor."
    )
    # reporting and observability
    report_interval_hours: float | None = Field(
        24.0, gt=0, description="Hours between HTML reports; null disables them."
    )
    report_output_dir: str = Field(
        "./planner_reports", min_length=1, description="Directory HTML reports are written to."
    )
    live_dashboard_port: int = Field(
        8080, ge=0, le=65535, description="Port of the live dashboard; 0 disables it."
    )
    metric_pulling_prometheus_endpoint: str = Field(
        _DEFAULT_PROMETHEUS,
        description="http(s) URL of the Prometheus traffic is read from (env PROMETHEUS_ENDPOINT).",
    )
    metric_reporting_prometheus_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Port serving planner metrics; 0 disables (env PLANNER_PROMETHEUS_PORT).",
    )
    throughput_metrics_source: Literal["frontend", "router"] = Field(
        "frontend", description="Which component's metrics report traffic."
    )
    no_operation: bool = Field(
        False, description="Advisory mode: decide and report, never scale."
    )
    log_dir: str | None = Field(None, min_length=1, description="Directory for planner log files.")
    # virtual connector (environment: virtual): decisions in etcd for an external orchestrator
    virtual_etcd_endpoints: str | None = Field(
        None,
        min_length=1,
        description="Comma-separated etcd URLs (env ETCD_ENDPOINTS); unset: "
        "http://localhost:2379. Credentials: env ETCD_AUTH_USERNAME/ETCD_AUTH_PASSWORD, "
        "ETCD_AUTH_CA, ETCD_AUTH_CLIENT_CERT/ETCD_AUTH_CLIENT_KEY.",
    )
    virtual_ack_timeout_s: float = Field(
        1800.0,
        gt=0,
        description="Seconds a decision may stay unacknowledged before the next one is written "
        "anyway; also the longest blocking wait (env SCALING_MAX_WAIT_TIME).",
    )
    virtual_blocking: bool = Field(
        False,
        description="After writing a decision, wait (at most virtual_ack_timeout_s) for the "
        "orchestrator to acknowledge it.",
    )
    virtual_etcd_timeout_s: float = Field(
        5.0, gt=0, description="Timeout of each etcd request, per endpoint, in seconds."
    )
    # kubernetes connector
    kube_namespace: str | None = Field(
        None,
        min_length=1,
        description="Kubernetes namespace of the graph deployment (env POD_NAMESPACE); unset: the "
        "service account's namespace, else the kubeconfig context's, else 'default'.",
    )
    kube_request_timeout_s: float = Field(
        10.0, gt=0, description="Seconds one Kubernetes API call may take before it counts as failed."
    )
    kube_rollout_timeout_s: float = Field(
        900.0,
        gt=0,
        description="Seconds a scale may stay unfinished (pods Pending or not Ready) before the "
        "planner stops waiting for it and plans with the Ready engines.",
    )
    kube_conflict_retries: int = Field(
        3, ge=0, description="Re-reads and retries of a replica write refused with 409 Conflict."
    )
    # live operation (`sla-planner run`): reading frontend traffic from Prometheus
    prometheus_timeout_s: float = Field(
        3.0,
        gt=0,
        le=600,
        description="Seconds one Prometheus request may take; retries end within a tick.",
    )
    prometheus_bearer_token: str | None = Field(
        None,
        min_length=1,
        repr=False,
        description="Bearer token sent to Prometheus (never logged; prefer the token file).",
    )
    prometheus_bearer_token_file: str | None = Field(
        None,
        min_length=1,
        description="File holding the Prometheus bearer token, re-read on every request.",
    )
    prometheus_ca_bundle: str | None = Field(
        None, min_length=1, description="CA bundle (PEM) that verifies an https Prometheus."
    )
    # observability: metrics server, live dashboard (sla_planner.observe)
    metric_reporting_prometheus_host: str = Field(
        "0.0.0.0",
        min_length=1,
        description="Address the metrics server binds (all interfaces: Prometheus scrapes the pod).",
    )
    live_dashboard_host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Address the live dashboard binds; 0.0.0.0 exposes it beyond this host.",
    )
    metrics_top_engines: int = Field(
        10,
        ge=0,
        le=1000,
        description="Engine ranks per pool with per-engine gauges (the most loaded); 0 exports none.",
    )
    metrics_legacy_names: bool = Field(
        True,
        description="Also export the original planner's metric names that break Prometheus "
        "naming (*_ms, gpu_hours) beside their conventional twins.",
    )

    # -- validation ---------------------------------------------------------------------------

    @field_validator("metric_pulling_prometheus_endpoint")
    @classmethod
    def _check_http_url(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError as exc:
            raise ValueError(f"must be an http(s) URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL such as http://prometheus:9090")
        return value

    @field_validator("virtual_etcd_endpoints")
    @classmethod
    def _check_etcd_endpoints(cls, value: str | None) -> str | None:
        if value is not None:
            from .connectors.virtual_wire import parse_endpoints  # no aiohttp import

            parse_endpoints(value)
        return value

    @field_validator("*")
    @classmethod
    def _bounded_number(cls, value: Any) -> Any:
        # Bad-input bound: arithmetic on config values must stay finite and fit a C long.
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and abs(value) > MAX_CONFIG_INT:
            raise ValueError(f"must be at most {MAX_CONFIG_INT:,} in magnitude")
        if isinstance(value, float) and abs(value) > MAX_CONFIG_FLOAT:
            raise ValueError(f"must be at most {MAX_CONFIG_FLOAT:g} in magnitude")
        return value

    @model_validator(mode="after")
    def _apply_rules(self) -> Self:
        if self.optimization_target in EASY_TARGETS:
            self._force_load_scaling()
        problems = _cross_field_problems(self.__dict__, frozenset())
        if problems:
            raise PydanticCustomError(
                _RULES_ERROR,
                "{detail}",
                {
                    "detail": "; ".join(problem.message for problem in problems),
                    "problems": tuple(problems),
                },
            )
        return self

    def _force_load_scaling(self) -> None:
        target = self.optimization_target
        if self.enable_throughput_scaling or not self.enable_load_scaling:
            # A warning when the user asked for the modes being overridden; the defaults
            # themselves are simply resolved (every default-config run would warn otherwise).
            chosen = self.model_fields_set & {"enable_throughput_scaling", "enable_load_scaling"}
            log = logger.warning if chosen else logger.info
            log(
                "optimization_target=%r uses static load thresholds: forcing "
                "enable_load_scaling=True and enable_throughput_scaling=False",
                target,
            )
            self.__dict__["enable_throughput_scaling"] = False
            self.__dict__["enable_load_scaling"] = True
        defaults = type(self).model_fields
        if self.ttft != defaults["ttft"].default or self.itl != defaults["itl"].default:
            logger.warning(
                "optimization_target=%r ignores ttft=%s ms and itl=%s ms; set "
                "optimization_target='sla' to plan for them",
                target,
                self.ttft,
                self.itl,
            )

    @classmethod
    def _build(
        cls,
        data: Any,
        sources: Mapping[str, str] | None = None,
        earlier_problems: list[_Problem] | None = None,
    ) -> Self:
        """Validate ``data``; on failure raise ConfigError listing every problem, with sources."""
        data, sources, dynamo_problems, warning = _absorb_dynamo(data, sources or {})
        problems = list(earlier_problems or []) + dynamo_problems
        try:
            config: Self = cls.__pydantic_validator__.validate_python(data)
        except ValidationError as exc:
            _raise_config_error(problems + cls._explain(exc, data, sources))
        if problems:
            _raise_config_error(problems)
        if warning:
            logger.warning("%s", warning)
        return config

    @classmethod
    def _explain(
        cls, exc: ValidationError, data: Any, sources: Mapping[str, str]
    ) -> list[_Problem]:
        """Every problem in ``exc``; if fields failed, also the cross-field rules still usable."""
        problems: list[_Problem] = []
        invalid: set[str] = set()
        rules_ran = False
        for error in exc.errors(include_url=False):
            if error["type"] == _RULES_ERROR:
                rules_ran = True
                problems.extend(error["ctx"]["problems"])
                continue
            problems.append(_Problem(_describe_error(error, sources)))
            if error["loc"]:
                invalid.add(str(error["loc"][0]))
        if not rules_ran and isinstance(data, Mapping):
            values = {name: info.default for name, info in cls.model_fields.items()}
            values.update((key, value) for key, value in data.items() if key in values)
            problems.extend(_cross_field_problems(values, frozenset(invalid)))
        return problems

    def __init__(self, **data: Any) -> None:
        data, _, problems, warning = _absorb_dynamo(data, {})
        try:
            super().__init__(**data)
        except ValidationError as exc:
            _raise_config_error(problems + type(self)._explain(exc, data, {}))
        if problems:
            _raise_config_error(problems)
        if warning:
            logger.warning("%s", warning)

    # Only wraps BaseModel.__init__, so pydantic may validate without calling it (no custom init).
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    def __setattr__(self, name: str, value: Any) -> None:
        before = dict(self.__dict__)
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            # pydantic has already written the new value; a failed assignment must change nothing
            self.__dict__.clear()
            self.__dict__.update(before)
            _raise_config_error(type(self)._explain(exc, None, {}))

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        """Pydantic's model_validate, raising ConfigError instead of ValidationError."""
        obj, _, problems, warning = _absorb_dynamo(obj, {})
        try:
            config = super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            _raise_config_error(problems + cls._explain(exc, obj, {}))
        if problems:
            _raise_config_error(problems)
        if warning:
            logger.warning("%s", warning)
        return config

    # -- loading ------------------------------------------------------------------------------

    @classmethod
    def from_sources(
        cls,
        config_value: str | None,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, object] | None = None,
    ) -> Self:
        """Defaults < ``config_value`` (file / inline JSON) < ``env`` (os.environ) < overrides."""
        return cls._from_sources(config_value, env, overrides, None)

    @classmethod
    def _from_sources(
        cls,
        config_value: str | None,
        env: Mapping[str, str] | None,
        overrides: Mapping[str, object] | None,
        override_labels: Mapping[str, str] | None,
    ) -> Self:
        data: dict[str, object] = {}
        sources: dict[str, str] = {}
        dynamo_problems: list[_Problem] = []
        warning = None
        if config_value is not None:
            loaded, label = read_config_value(config_value)
            # Dynamo's names are renamed before flags and env (our names) are merged over them.
            absorbed, _, dynamo_problems, warning = _absorb_dynamo(
                loaded, {str(key): label for key in loaded}
            )
            data.update(absorbed)
            sources.update((str(key), label) for key in absorbed)
        env_values, env_sources, env_problems = read_env(os.environ if env is None else env)
        data.update(env_values)
        sources.update(env_sources)
        for key, value in (overrides or {}).items():
            data[key] = value
            sources[key] = (override_labels or {}).get(key, "override")
        config = cls._build(data, sources, dynamo_problems + [_Problem(t) for t in env_problems])
        if warning:
            logger.warning("%s", warning)
        return config

    @classmethod
    def load_file(cls, path: str | os.PathLike[str]) -> Self:
        """A config from one JSON or YAML file (no environment variables applied)."""
        data = read_config_file(path)
        return cls._build(data, {str(key): f"config file {os.fspath(path)}" for key in data})

    @classmethod
    def from_json(cls, text: str) -> Self:
        """A config from inline JSON text (no environment variables applied)."""
        data = read_inline_json(text)
        return cls._build(data, {str(key): "inline JSON config" for key in data})

    # -- helpers ------------------------------------------------------------------------------

    def pools(self) -> tuple[PoolName, ...]:
        """Pool names present in this mode, prefill first."""
        return _POOLS_BY_MODE[self.mode]

    def engine_num_gpu(self, pool: str) -> int:
        """GPUs per engine of ``pool`` ('prefill', 'decode' or 'agg')."""
        if pool == "prefill":
            return self.prefill_engine_num_gpu
        if pool in ("decode", "agg"):
            return self.decode_engine_num_gpu
        raise ConfigError(f"pool: unknown pool {pool!r}; expected 'prefill', 'decode' or 'agg'")

    def min_replicas(self, pool: str) -> int:
        """Fewest engines ``pool`` may have: ``prefill_min_endpoint`` / ``decode_min_endpoint``
        when set, else ``min_endpoint`` (the aggregated pool always uses ``min_endpoint``)."""
        if pool == "agg":
            return self.min_endpoint
        if pool in ("prefill", "decode"):
            return role_minimum(self.__dict__, pool)
        raise ConfigError(f"pool: unknown pool {pool!r}; expected 'prefill', 'decode' or 'agg'")

    def gpu_budget(self) -> int | None:
        """The GPU ceiling across all pools, or None when ``max_gpu_budget`` is negative."""
        return self.max_gpu_budget if self.max_gpu_budget >= 0 else None

    def gpu_floor(self) -> int | None:
        """The GPU floor scale-downs keep, or None when ``min_gpu_budget`` is negative."""
        return self.min_gpu_budget if self.min_gpu_budget >= 0 else None

    def min_footprint_gpus(self) -> int:
        """GPUs of every pool of the mode at :meth:`min_replicas` engines."""
        total, _ = footprint(self.__dict__)
        return total

    def correction_enabled(self) -> bool:
        """Whether throughput scaling applies correction factors (off with load scaling on)."""
        return not self.no_correction and not self.enable_load_scaling

    def to_public_dict(self) -> dict[str, Any]:
        """All fields as JSON-safe values (secrets shown as ``"<redacted>"``)."""
        data = self.model_dump(mode="json")
        if data.get("prometheus_bearer_token") is not None:
            data["prometheus_bearer_token"] = "<redacted>"
        return data

