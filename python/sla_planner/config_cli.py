"""Where PlannerConfig values come from outside Python: --config, environment, command line.

``--config VALUE`` is a file when VALUE names an existing file (``.json``: JSON; ``.yaml``/``.yml``:
YAML; other suffixes: JSON, then YAML) and inline JSON otherwise. Every config field has one flag,
the kebab-case of its name. A boolean ``X`` gets ``--X``/``--no-X``; a boolean ``no_X`` gets
``--no-X`` (True) and ``--X`` (False), so ``--no-operation`` keeps its long-standing meaning. Flags
default to ``argparse.SUPPRESS``: only flags the user typed override the file and the environment.
"""

from __future__ import annotations

import argparse
import json
import os
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

from .documents import DocumentError, parse_json, parse_yaml, read_bounded, short_repr
from .errors import ConfigError

if TYPE_CHECKING:
    from .config import PlannerConfig

__all__ = [
    "ENV_VARS",
    "LEGACY_FLAGS",
    "add_config_arguments",
    "config_from_args",
    "flag_for",
    "read_config_file",
    "read_config_value",
    "read_env",
    "read_inline_json",
]


def _env_int(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError("expected an integer") from None


def _env_float(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError("expected a number") from None


#: Environment variable -> (field, parser). Empty or blank values count as unset.
ENV_VARS: Mapping[str, tuple[str, Callable[[str], object]]] = {
    "DYN_NAMESPACE": ("namespace", str),
    "DYN_PARENT_DGD_K8S_NAME": ("dgd_name", str),
    "PROMETHEUS_ENDPOINT": ("metric_pulling_prometheus_endpoint", str),
    "PLANNER_PROMETHEUS_PORT": ("metric_reporting_prometheus_port", _env_int),
    "ETCD_ENDPOINTS": ("virtual_etcd_endpoints", str),
    "SCALING_MAX_WAIT_TIME": ("virtual_ack_timeout_s", _env_float),
    "POD_NAMESPACE": ("kube_namespace", str),
}

#: Older flag spellings still accepted, by field.
LEGACY_FLAGS: Mapping[str, tuple[str, ...]] = {
    "throughput_adjustment_interval": ("--adjustment-interval",),
    "metric_pulling_prometheus_endpoint": ("--prometheus-endpoint",),
    "metric_reporting_prometheus_port": ("--prometheus-port",),
}

_NONE_WORDS = frozenset({"none", "null", "off"})

#: Largest config file read (a planner config is a few kilobytes).
MAX_CONFIG_BYTES = 1 << 20


# -- --config values --------------------------------------------------------------------------


def _parse_json(text: str, where: str) -> object:
    return parse_json(text, where, ConfigError)


def _parse_yaml(text: str, where: str) -> object:
    return parse_yaml(text, where, ConfigError)


def _require_mapping(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        kind = "nothing (empty document)" if value is None else f"a {type(value).__name__}"
        raise ConfigError(f"{where}: top level must be a mapping of config fields, got {kind}")
    return value


def read_config_file(path: str | os.PathLike[str]) -> dict[str, object]:
    """The mapping in a JSON/YAML config file; ConfigError naming the file on any problem."""
    where = f"config file {os.fspath(path)}"
    try:
        with open(path, "rb") as fh:
            text = read_bounded(fh, MAX_CONFIG_BYTES, where).decode("utf-8")
    except DocumentError as exc:
        raise ConfigError(str(exc)) from None
    except FileNotFoundError:
        raise ConfigError(f"{where}: not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:  # an embedded NUL byte in the path
        raise ConfigError(f"{where}: cannot be read ({exc})") from None
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        data = _parse_json(text, where)
    elif suffix in (".yaml", ".yml"):
        data = _parse_yaml(text, where)
    else:
        try:
            data = _parse_json(text, where)
        except ConfigError as json_error:
            try:
                data = _parse_yaml(text, where)
            except ConfigError as yaml_error:
                json_detail = str(json_error).removeprefix(f"{where}: ")
                yaml_detail = str(yaml_error).removeprefix(f"{where}: ")
                raise ConfigError(
                    f"{where}: neither JSON nor YAML: {json_detail}; {yaml_detail}"
                ) from None
    return _require_mapping(data, where)


def read_inline_json(text: str) -> dict[str, object]:
    """The mapping in an inline JSON config string."""
    where = "inline JSON config"
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{where}: longer than {MAX_CONFIG_BYTES:,} characters; refused")
    return _require_mapping(_parse_json(text, where), where)


def _is_file(value: str) -> bool:
    try:
        return Path(value).is_file()
    except (OSError, ValueError):  # name too long, embedded NUL byte
        return False


def read_config_value(value: str) -> tuple[dict[str, object], str]:
    """The mapping a ``--config`` value names, and a label for error messages.

    An existing file is read by suffix. A value starting with ``{`` or ``[`` is inline JSON; any
    other value names a file that does not exist.
    """
    if _is_file(value):
        return read_config_file(value), f"config file {value}"
    if value.lstrip().startswith(("{", "[")):
        return read_inline_json(value), "inline JSON config"
    raise ConfigError(f"--config: {short_repr(value)} is neither an existing file nor inline JSON")


# -- environment ------------------------------------------------------------------------------


def read_env(
    env: Mapping[str, str],
) -> tuple[dict[str, object], dict[str, str], list[str]]:
    """Field values from ``env``: (values, field -> source label, problems naming the variable)."""
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    problems: list[str] = []
    for variable, (field, parse) in ENV_VARS.items():
        raw = env.get(variable)
        if raw is None or not raw.strip():
            continue
        try:
            values[field] = parse(raw.strip())
        except ValueError as exc:
            problems.append(f"{field}: environment variable {variable}={raw!r}: {exc}")
            continue
        sources[field] = f"environment variable {variable}"
    return values, sources, problems


# -- command-line flags -----------------------------------------------------------------------


def flag_for(field: str) -> str:
    """The flag of a config field: ``--`` plus the kebab-case name."""
    return "--" + field.replace("_", "-")


def _optional_float(text: str) -> float | None:
    if text.strip().lower() in _NONE_WORDS:
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number or 'none', got {short_repr(text)}"
        ) from None


def _int_flag(text: str) -> int:
    """An integer flag; ranges are the field's (checked with the config), length bounded here."""
    digits = text.strip().lstrip("+-")
    if len(digits) > 40 or not digits.isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer, got {short_repr(text)}")
    return int(text)


def _float_flag(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {short_repr(text)}") from None


class _NegatedBooleanAction(argparse.Action):
    """For a ``no_X`` field: ``--no-X`` sets it True and ``--X`` sets it False.

    ``argparse.BooleanOptionalAction`` would read ``--no-X`` as False, inverting the legacy flags.
    """

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        positive = ["--" + option.removeprefix("--no-") for option in option_strings]
        super().__init__([*option_strings, *positive], dest, nargs=0, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, bool(option_string and option_string.startswith("--no-")))

    def format_usage(self) -> str:
        return " | ".join(self.option_strings)


def _help(description: str | None, default: object) -> str:
    text = f"{description or ''} (default: {json.dumps(default)})"
    return text.replace("%", "%%")


def _argument_kwargs(name: str, annotation: Any) -> dict[str, Any]:
    """argparse keyword arguments (type/choices/action) for a field and its annotation."""
    args = get_args(annotation)
    optional = get_origin(annotation) in (Union, types.UnionType) and type(None) in args
    base = next(arg for arg in args if arg is not type(None)) if optional else annotation
    if base is bool:
        negated = name.startswith("no_")
        return {"action": _NegatedBooleanAction if negated else argparse.BooleanOptionalAction}
    if get_origin(base) is Literal:
        return {"choices": list(get_args(base))}
    if base is int:
        return {"type": _int_flag, "metavar": "N"}
    if base is float:
        if optional:
            return {"type": _optional_float, "metavar": "X|none"}
        return {"type": _float_flag, "metavar": "X"}
    if base is str:
        return {"type": str}
    raise TypeError(f"no flag type for config annotation {annotation!r}")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config`` and one flag per PlannerConfig field (plus legacy spellings)."""
    from .config import PlannerConfig

    group = parser.add_argument_group(
        "planner config",
        "PlannerConfig fields; flags beat environment variables, which beat --config.",
    )
    group.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        metavar="FILE|JSON",
        help="PlannerConfig as a .json/.yaml/.yml file or inline JSON.",
    )
    for name, info in PlannerConfig.model_fields.items():
        group.add_argument(
            flag_for(name),
            *LEGACY_FLAGS.get(name, ()),
            dest=name,
            default=argparse.SUPPRESS,
            help=_help(info.description, info.default),
            **_argument_kwargs(name, info.annotation),
        )


def config_from_args(
    ns: argparse.Namespace, env: Mapping[str, str] | None = None
) -> PlannerConfig:
    """The config for parsed arguments: defaults < --config < ``env`` (os.environ) < typed flags."""
    from .config import PlannerConfig

    fields = PlannerConfig.model_fields
    overrides = {name: getattr(ns, name) for name in fields if hasattr(ns, name)}
    labels = {name: f"flag {flag_for(name)}" for name in overrides}
    return PlannerConfig._from_sources(getattr(ns, "config", None), env, overrides, labels)
