"""What `sla-planner evaluate` runs: traces x profiles x policies x simulator variants.

A matrix comes from command-line strings and/or a YAML/JSON file (see :mod:`.matrix_file`);
every problem is a :class:`~sla_planner.errors.ConfigError` naming the key (``policies[2].config``)
or the flag. Entries are plain frozen dataclasses, so cells pickle cheaply to worker processes.

String forms (also accepted as list items in a file):

- trace: ``[NAME=]SPEC[@KEY=VALUE...]`` with ``SPEC`` a trace file, directory, glob,
  ``synthetic:KIND?...`` or ``builtin:NAME``; keys ``time_scale``, ``rate_scale``,
  ``max_requests``, ``max_duration_s``; ``@xN`` is ``@time_scale=1/N`` (N times faster).
- profile: ``[NAME=]SPEC[@sim=SPEC]`` (``sim``: the profile the simulated engines follow when it
  differs from the one the policies plan with).
- policy: ``[NAME=]KIND`` with KIND ``planner``, ``planner:PRESET``, either followed by
  ``?field=value&...`` (PlannerConfig overrides), ``static:P,D``, ``static:N``, ``static:mean``,
  ``static:peak``, ``static:best[?target=0.95]``, ``oracle`` or ``python:module:Class``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError

__all__ = [
    "PLANNER_PRESETS",
    "TRACE_KEYS",
    "TraceEntry",
    "ProfileEntry",
    "PolicyEntry",
    "SimKnobs",
    "Matrix",
    "Cell",
    "parse_trace",
    "parse_profile",
    "parse_policy",
    "split_list",
    "check_attainment",
    "check_number",
    "profile_name",
    "trace_entry",
    "build_matrix",
]

PolicyKind = Literal["planner", "static", "static_mean", "static_peak", "static_best", "oracle", "python"]

#: ``planner:PRESET`` -> PlannerConfig overrides.
PLANNER_PRESETS: dict[str, dict[str, Any]] = {
    "sla": {"optimization_target": "sla", "enable_throughput_scaling": True, "enable_load_scaling": True},
    "sla-throughput-loop": {
        "optimization_target": "sla", "enable_throughput_scaling": True, "enable_load_scaling": False,
    },
    "sla-load-loop": {
        "optimization_target": "sla", "enable_throughput_scaling": False, "enable_load_scaling": True,
    },
    "throughput": {"optimization_target": "throughput"},
    "latency": {"optimization_target": "latency"},
}

_NAME = re.compile(r"^([A-Za-z0-9_.+-][A-Za-z0-9_.+ -]*)=(?=.)")
TRACE_KEYS = ("time_scale", "rate_scale", "max_requests", "max_duration_s")


@dataclass(frozen=True)
class TraceEntry:
    """A trace and the transforms applied to it (rate scaling, then time scaling, then limits)."""

    name: str
    spec: str
    time_scale: float = 1.0
    rate_scale: float = 1.0
    max_requests: int | None = None
    max_duration_s: float | None = None


@dataclass(frozen=True)
class ProfileEntry:
    """The profile policies plan with, and the one the simulated engines follow (default: same)."""

    name: str
    spec: str
    sim_spec: str | None = None

    @property
    def simulated(self) -> str:
        """The simulated engines' profile spec."""
        return self.sim_spec or self.spec


@dataclass(frozen=True)
class PolicyEntry:
    """One policy column of the matrix."""

    name: str
    kind: PolicyKind
    spec: str
    overrides: tuple[tuple[str, Any], ...] = ()
    """PlannerConfig overrides (planner and python policies)."""
    replicas: tuple[int, ...] | None = None
    """Fixed replica counts (``static:P,D``)."""
    target: float | None = None
    """Attainment target over feasible requests (``static:best``; None = the matrix's)."""

    @property
    def is_dynamic(self) -> bool:
        """Whether the policy starts from the matrix's initial replicas (not its own size)."""
        return self.kind in ("planner", "python")


@dataclass(frozen=True)
class SimKnobs:
    """Simulator settings shared by every cell (see `sla-planner replay --help`)."""

    max_num_batched_tokens: int = 8192
    max_num_seqs: int = 256
    transfer_s: float = 0.0
    drain_timeout_s: float = 600.0
    engine_context_length: int = 131072
    drain_s: float = 600.0


@dataclass(frozen=True)
class Cell:
    """One replay (or best-static search) of the matrix."""

    index: int
    trace: TraceEntry
    profile: ProfileEntry
    sim_time_scale: float
    startup_delay_s: float
    policy: PolicyEntry

    @property
    def group(self) -> tuple[str, str, float, float]:
        """Cells compared with each other: same trace, profile and simulator variant."""
        return (self.trace.name, self.profile.name, self.sim_time_scale, self.startup_delay_s)

    @property
    def label(self) -> str:
        """Human-readable identity for progress lines and errors."""
        return (
            f"{self.trace.name} · {self.profile.name} · sim×{self.sim_time_scale:g} · "
            f"start-up {self.startup_delay_s:g} s · {self.policy.name}"
        )


@dataclass(frozen=True)
class Matrix:
    """Axes plus the settings every cell shares."""

    traces: tuple[TraceEntry, ...]
    profiles: tuple[ProfileEntry, ...]
    policies: tuple[PolicyEntry, ...]
    sim_time_scales: tuple[float, ...] = (1.0,)
    startup_delays_s: tuple[float, ...] = (120.0,)
    config: tuple[tuple[str, Any], ...] = ()
    """PlannerConfig overrides shared by every cell (policy overrides go on top)."""
    best_static_target: float = 0.95
    best_static_max_replays: int = 40
    oracle_interval_s: float | None = None
    """Oracle interval; None = the config's throughput_adjustment_interval."""
    initial_replicas: str = "static:mean"
    """Engines at t=0 for planner/python policies: ``static:mean``, ``static:peak`` or ``P,D``."""
    seed: int = 0
    sim: SimKnobs = field(default_factory=SimKnobs)

    def cells(self) -> list[Cell]:
        """Every cell, in table order: trace, profile, simulator variant, policy."""
        out: list[Cell] = []
        for trace in self.traces:
            for profile in self.profiles:
                for scale in self.sim_time_scales:
                    for delay in self.startup_delays_s:
                        for policy in self.policies:
                            out.append(Cell(len(out), trace, profile, scale, delay, policy))
        return out

    def config_dict(self) -> dict[str, Any]:
        """The shared PlannerConfig overrides as a dict."""
        return dict(self.config)

    def describe(self) -> dict[str, Any]:
        """JSON-safe description (written into results.json)."""

        def plain(obj: Any) -> Any:
            if isinstance(obj, tuple):
                return [plain(v) for v in obj]
            if hasattr(obj, "__dataclass_fields__"):
                return {k: plain(getattr(obj, k)) for k in obj.__dataclass_fields__}
            return obj

        out = plain(self)
        out["config"] = dict(self.config)
        out["policies"] = [
            {**plain(p), "overrides": dict(p.overrides)} for p in self.policies
        ]
        return dict(out)


# ---------------------------------------------------------------------------------- parsing


def split_list(text: str, *, merge_integers: bool = False) -> list[str]:
    """Comma-separated items; with ``merge_integers`` a bare integer joins the item before it
    (so ``static:8,4,planner:sla`` is two policies). An argument with no item is a ConfigError."""
    parts = [p.strip() for p in text.split(",")]
    if not any(parts):
        raise ConfigError(f"empty list {text!r}: give at least one comma-separated item")
    out: list[str] = []
    for part in parts:
        if merge_integers and out and part.isdigit() and re.match(r"^(.+=)?static:\d+(,\d+)*$", out[-1]):
            out[-1] = f"{out[-1]},{part}"
        elif part:
            out.append(part)
    return out


def _split_name(text: str) -> tuple[str | None, str]:
    m = _NAME.match(text)
    if m is None:
        return None, text
    return m.group(1).strip(), text[m.end():]


def check_number(value: Any, where: str, *, positive: bool = True, integer: bool = False) -> Any:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if integer and (not float(value).is_integer()):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or (v <= 0 if positive else v < 0):
        raise ConfigError(f"{where}: must be finite and {'> 0' if positive else '>= 0'}, got {value!r}")
    return int(v) if integer else v


def _trace_name(spec: str, time_scale: float, rate_scale: float) -> str:
    if spec.startswith("builtin:"):
        base = spec[len("builtin:"):]
    elif spec.startswith("synthetic:"):
        base = spec[len("synthetic:"):].split("?", 1)[0]
    else:
        base = Path(spec.rstrip("/")).name
        for suffix in (".gz", ".jsonl", ".csv"):
            base = base.removesuffix(suffix)
    if time_scale != 1.0:
        base += f" x{1.0 / time_scale:g}"
    if rate_scale != 1.0:
        base += f" rate{rate_scale:g}"
    return base or spec


def parse_trace(text: str, where: str = "--traces") -> TraceEntry:
    """A trace entry from its string form (see the module docstring)."""
    name, rest = _split_name(text.strip())
    pieces = rest.split("@")
    spec = pieces[0].strip()
    if not spec:
        raise ConfigError(f"{where}: {text!r}: the trace spec is empty")
    values: dict[str, Any] = {}
    for piece in pieces[1:]:
        piece = piece.strip()
        m = re.fullmatch(r"x([0-9.eE+-]+)", piece)
        if m:
            values["time_scale"] = 1.0 / check_number(m.group(1), f"{where}: {text!r}: @x")
            continue
        key, sep, value = piece.partition("=")
        key = key.strip()
        if not sep or key not in TRACE_KEYS:
            raise ConfigError(
                f"{where}: {text!r}: unknown modifier {piece!r} (expected @xN or @KEY=VALUE with "
                f"KEY one of {', '.join(TRACE_KEYS)})"
            )
        values[key] = value.strip()
    return trace_entry(name, spec, values, f"{where}: {text!r}")


def trace_entry(name: str | None, spec: str, values: Mapping[str, Any], where: str) -> TraceEntry:
    time_scale = check_number(values.get("time_scale", 1.0), f"{where}: time_scale")
    rate_scale = check_number(values.get("rate_scale", 1.0), f"{where}: rate_scale")
    max_requests = values.get("max_requests")
    if max_requests is not None:
        max_requests = check_number(max_requests, f"{where}: max_requests", integer=True)
    max_duration = values.get("max_duration_s")
    if max_duration is not None:
        max_duration = check_number(max_duration, f"{where}: max_duration_s")
    return TraceEntry(
        name or _trace_name(spec, time_scale, rate_scale),
        spec,
        time_scale,
        rate_scale,
        max_requests,
        max_duration,
    )


def parse_profile(text: str, where: str = "--profiles") -> ProfileEntry:
    """A profile entry from its string form (see the module docstring)."""
    name, rest = _split_name(text.strip())
    spec, _, tail = rest.partition("@")
    spec = spec.strip()
    sim_spec = None
    if tail:
        key, sep, value = tail.partition("=")
        if key.strip() != "sim" or not sep or not value.strip():
            raise ConfigError(f"{where}: {text!r}: unknown modifier {tail!r} (expected @sim=SPEC)")
        sim_spec = value.strip()
    if not spec:
        raise ConfigError(f"{where}: {text!r}: the profile spec is empty")
    return ProfileEntry(name or profile_name(spec), spec, sim_spec)


def profile_name(spec: str) -> str:
    if spec.startswith("builtin:"):
        return spec[len("builtin:"):]
    return Path(spec.rstrip("/")).name or spec


def _scalar(text: str) -> Any:
    """A query-string value: JSON when it parses (numbers, true/false, null), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _query(query: str, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in query.split("&"):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{where}: {item!r} is not KEY=VALUE")
        if key in out:
            raise ConfigError(f"{where}: {key!r} given twice")
        out[key] = _scalar(value)
    return out


def parse_policy(text: str, where: str = "--policies") -> PolicyEntry:
    """A policy entry from its string form (see the module docstring)."""
    name, spec = _split_name(text.strip())
    spec = spec.strip()
    base, _, query = spec.partition("?")
    here = f"{where}: {text!r}"
    if base == "planner" or base.startswith("planner:"):
        preset = base[len("planner:"):] if ":" in base else None
        overrides: dict[str, Any] = {}
        if preset is not None:
            if preset not in PLANNER_PRESETS:
                raise ConfigError(
                    f"{here}: unknown planner preset {preset!r} (expected one of "
                    f"{', '.join(PLANNER_PRESETS)})"
                )
            overrides.update(PLANNER_PRESETS[preset])
        overrides.update(_query(query, here))
        return PolicyEntry(name or base, "planner", spec, tuple(overrides.items()))
    if base == "oracle":
        _no_query(query, here)
        return PolicyEntry(name or "oracle", "oracle", spec)
    if base.startswith("python:"):
        _no_query(query, here)
        return PolicyEntry(name or base, "python", spec)
    if base.startswith("static:"):
        arg = base[len("static:"):]
        if arg in ("mean", "peak"):
            _no_query(query, here)
            return PolicyEntry(name or base, "static_mean" if arg == "mean" else "static_peak", spec)
        if arg == "best":
            params = _query(query, here)
            unknown = set(params) - {"target"}
            if unknown:
                raise ConfigError(f"{here}: unknown static:best parameter {sorted(unknown)[0]!r} (expected target)")
            target = None
            if "target" in params:
                target = check_attainment(params["target"], f"{here}: target")
            return PolicyEntry(name or base, "static_best", spec, target=target)
        _no_query(query, here)
        counts = []
        for part in arg.split(","):
            if not part.strip().isdigit():
                raise ConfigError(
                    f"{here}: expected static:P,D, static:N, static:mean, static:peak or static:best"
                )
            counts.append(int(part))
        return PolicyEntry(name or base, "static", spec, replicas=tuple(counts))
    raise ConfigError(
        f"{here}: unknown policy (expected planner[:PRESET][?k=v&...], static:P,D, static:mean, "
        "static:peak, static:best, oracle or python:module:Class)"
    )


def _no_query(query: str, where: str) -> None:
    if query:
        raise ConfigError(f"{where}: takes no ?parameters")


def check_attainment(value: Any, where: str) -> float:
    v = check_number(value, where)
    if v > 1.0:
        raise ConfigError(f"{where}: an attainment share must be in (0, 1], got {value!r}")
    return float(v)


def _unique(entries: Sequence[Any]) -> tuple[Any, ...]:
    """Entries with unique names: repeated derived names get #2, #3...; explicit clashes fail."""
    seen: dict[str, int] = {}
    out = []
    for e in entries:
        name = e.name
        if name in seen:
            seen[name] += 1
            name = f"{name} #{seen[e.name]}"
        else:
            seen[name] = 1
        out.append(replace(e, name=name))
    return tuple(out)


def build_matrix(
    *,
    traces: Sequence[TraceEntry],
    profiles: Sequence[ProfileEntry],
    policies: Sequence[PolicyEntry],
    **settings: Any,
) -> Matrix:
    """A :class:`Matrix` with unique names on each axis and checked settings."""
    for axis, entries in (("traces", traces), ("profiles", profiles), ("policies", policies)):
        if not entries:
            raise ConfigError(f"{axis}: the matrix needs at least one entry")
    config = settings.pop("config", {})
    sim_scales = tuple(float(v) for v in settings.pop("sim_time_scales", (1.0,)))
    delays = tuple(float(v) for v in settings.pop("startup_delays_s", (120.0,)))
    for name, values in (("sim_time_scales", sim_scales), ("startup_delays", delays)):
        if len(set(values)) != len(values):
            raise ConfigError(f"{name}: values repeat: {list(values)}")
    return Matrix(
        traces=_unique(traces),
        profiles=_unique(profiles),
        policies=_unique(policies),
        sim_time_scales=sim_scales,
        startup_delays_s=delays,
        config=tuple(dict(config).items()),
        **settings,
    )
