"""The YAML/JSON form of an evaluation matrix (``sla-planner evaluate --matrix FILE``).

Top-level keys: ``traces``, ``profiles``, ``policies`` (lists of strings in the forms of
:mod:`.matrix`, or mappings), ``sim_time_scales``, ``startup_delays``, ``config`` (PlannerConfig
fields shared by every cell), ``best_static_target``, ``best_static_max_replays``,
``oracle_interval_s``, ``initial_replicas``, ``seed`` and ``sim`` (simulator knobs). Every problem
is a ConfigError naming the file and the key path (``policies[1].config``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .matrix import (
    TRACE_KEYS,
    PolicyEntry,
    ProfileEntry,
    SimKnobs,
    TraceEntry,
    check_attainment,
    check_number,
    parse_policy,
    parse_profile,
    parse_trace,
    profile_name,
    trace_entry,
)

__all__ = ["matrix_from_file", "check_initial"]

_FILE_KEYS = {
    "traces", "profiles", "policies", "sim_time_scales", "startup_delays", "config",
    "best_static_target", "best_static_max_replays", "oracle_interval_s", "initial_replicas",
    "seed", "sim",
}
_SIM_KEYS = set(SimKnobs.__dataclass_fields__)


def _as_list(value: Any, where: str) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if not value:
            raise ConfigError(f"{where}: must not be empty")
        return list(value)
    if isinstance(value, (str, int, float, dict)) and not isinstance(value, bool):
        return [value]
    raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")


def _check_keys(mapping: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    allowed = set(allowed)
    for key in mapping:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}: unknown key (expected one of {', '.join(sorted(allowed))})")


def _file_trace(item: Any, where: str) -> TraceEntry:
    if isinstance(item, str):
        return parse_trace(item, where)
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a string or a mapping, got {type(item).__name__}")
    _check_keys(item, ("spec", "name", *TRACE_KEYS), where)
    spec = item.get("spec")
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"{where}.spec: required, a trace spec string")
    name = item.get("name")
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"{where}.name: expected a string")
    return trace_entry(name, spec.strip(), item, where)


def _file_profile(item: Any, where: str) -> ProfileEntry:
    if isinstance(item, str):
        return parse_profile(item, where)
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a string or a mapping, got {type(item).__name__}")
    _check_keys(item, ("spec", "name", "sim_spec"), where)
    for key in ("spec", "name", "sim_spec"):
        if key in item and not (isinstance(item[key], str) and item[key].strip()):
            raise ConfigError(f"{where}.{key}: expected a non-empty string")
    if "spec" not in item:
        raise ConfigError(f"{where}.spec: required, a profile directory or builtin:NAME")
    spec = item["spec"].strip()
    return ProfileEntry(item.get("name") or profile_name(spec), spec, item.get("sim_spec"))


def _file_policy(item: Any, where: str) -> PolicyEntry:
    if isinstance(item, str):
        return parse_policy(item, where)
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a string or a mapping, got {type(item).__name__}")
    _check_keys(item, ("policy", "name", "config", "target"), where)
    spec = item.get("policy")
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"{where}.policy: required, a policy string such as planner:sla")
    entry = parse_policy(spec, f"{where}.policy")
    if "name" in item:
        if not (isinstance(item["name"], str) and item["name"].strip()):
            raise ConfigError(f"{where}.name: expected a non-empty string")
        entry = replace(entry, name=item["name"].strip())
    if "config" in item:
        if entry.kind not in ("planner", "python"):
            raise ConfigError(f"{where}.config: only planner and python policies take config overrides")
        config = item["config"]
        if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
            raise ConfigError(f"{where}.config: expected a mapping of PlannerConfig fields")
        entry = replace(entry, overrides=tuple({**dict(entry.overrides), **config}.items()))
    if "target" in item:
        if entry.kind != "static_best":
            raise ConfigError(f"{where}.target: only static:best takes a target")
        entry = replace(entry, target=check_attainment(item["target"], f"{where}.target"))
    return entry


def matrix_from_file(path: str | Path) -> dict[str, Any]:
    """The settings a YAML/JSON matrix file holds, parsed and checked, as :func:`build_matrix`
    keyword arguments."""
    from ..config_cli import read_config_file

    where = f"matrix file {path}"
    try:
        data = read_config_file(path)
    except ConfigError as exc:
        message = str(exc).replace(f"config file {path}", where, 1)
        raise ConfigError(message.replace("mapping of config fields", "mapping")) from None
    _check_keys(data, _FILE_KEYS, where)
    out: dict[str, Any] = {}
    if "traces" in data:
        items = _as_list(data["traces"], f"{where}: traces")
        out["traces"] = [_file_trace(t, f"{where}: traces[{i}]") for i, t in enumerate(items)]
    if "profiles" in data:
        items = _as_list(data["profiles"], f"{where}: profiles")
        out["profiles"] = [_file_profile(p, f"{where}: profiles[{i}]") for i, p in enumerate(items)]
    if "policies" in data:
        items = _as_list(data["policies"], f"{where}: policies")
        out["policies"] = [_file_policy(p, f"{where}: policies[{i}]") for i, p in enumerate(items)]
    if "sim_time_scales" in data:
        items = _as_list(data["sim_time_scales"], f"{where}: sim_time_scales")
        out["sim_time_scales"] = [check_number(v, f"{where}: sim_time_scales[{i}]") for i, v in enumerate(items)]
    if "startup_delays" in data:
        items = _as_list(data["startup_delays"], f"{where}: startup_delays")
        out["startup_delays_s"] = [
            check_number(v, f"{where}: startup_delays[{i}]", positive=False) for i, v in enumerate(items)
        ]
    if "config" in data:
        config = data["config"]
        if not isinstance(config, dict):
            raise ConfigError(f"{where}: config: expected a mapping of PlannerConfig fields")
        out["config"] = dict(config)
    if "best_static_target" in data:
        out["best_static_target"] = check_attainment(data["best_static_target"], f"{where}: best_static_target")
    if "best_static_max_replays" in data:
        out["best_static_max_replays"] = check_number(
            data["best_static_max_replays"], f"{where}: best_static_max_replays", integer=True
        )
    if "oracle_interval_s" in data:
        out["oracle_interval_s"] = check_number(data["oracle_interval_s"], f"{where}: oracle_interval_s")
    if "initial_replicas" in data:
        out["initial_replicas"] = check_initial(data["initial_replicas"], f"{where}: initial_replicas")
    if "seed" in data:
        seed = data["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"{where}: seed: expected an integer >= 0, got {seed!r}")
        out["seed"] = seed
    if "sim" in data:
        sim = data["sim"]
        if not isinstance(sim, dict):
            raise ConfigError(f"{where}: sim: expected a mapping")
        _check_keys(sim, _SIM_KEYS, f"{where}: sim")
        knobs: dict[str, Any] = {}
        for key, value in sim.items():
            integer = key in ("max_num_batched_tokens", "max_num_seqs", "engine_context_length")
            knobs[key] = check_number(value, f"{where}: sim.{key}", integer=integer, positive=key not in ("transfer_s", "drain_timeout_s"))
        out["sim"] = SimKnobs(**knobs)
    return out


def check_initial(value: Any, where: str) -> str:
    """``static:mean``, ``static:peak`` or replica counts ``P,D`` / ``N``."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not (
        value in ("static:mean", "static:peak") or re.fullmatch(r"\d+(,\d+)*", value.strip())
    ):
        raise ConfigError(f"{where}: expected static:mean, static:peak or P,D, got {value!r}")
    return value.strip()
