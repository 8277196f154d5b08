"""Engine discovery: which FPM endpoints to subscribe to, and the role of the engines behind each.

An :class:`EngineEndpoint` is a ZMQ address (``tcp://HOST:PORT`` or ``ipc://PATH``) and a role
(``prefill``, ``decode`` or ``agg``). A :class:`Discovery` source answers ``poll()`` with the
current set; the FPM subscriber connects to new endpoints and drops the ones that disappear.

Sources: :class:`StaticDiscovery` (a fixed list), :class:`FileDiscovery` (a file re-read when it
changes) and :class:`MergedDiscovery` (the union of several). A file is a JSON or YAML list of
``{"endpoint": ..., "role": ..., "instance": ...}`` objects (``instance``, optional, names the
engine's pod: what a scale-down drains), or plain lines ``ROLE ENDPOINT [INSTANCE]`` (``#``
starts a comment). A file that cannot be read or parsed keeps the previous set and records the problem
in ``last_error``; ``poll`` never raises.

On the command line, :func:`parse_endpoint_list` reads ``tcp://h:p[,tcp://h:p...]`` where any
item may carry a role prefix: ``decode=tcp://127.0.0.1:20380``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, cast, get_args, runtime_checkable

from ..documents import DocumentError, parse_json, parse_yaml, read_bounded
from ..errors import ConfigError

__all__ = [
    "Role",
    "ROLES",
    "EngineEndpoint",
    "Discovery",
    "StaticDiscovery",
    "FileDiscovery",
    "MergedDiscovery",
    "validate_endpoint",
    "parse_endpoint_list",
    "parse_discovery_text",
]

log = logging.getLogger(__name__)

Role = Literal["prefill", "decode", "agg"]
ROLES: tuple[str, ...] = get_args(Role)

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
_FORMS = "tcp://HOST:PORT or ipc://PATH"


def validate_endpoint(endpoint: str) -> str:
    """``endpoint`` if it is ``tcp://HOST:PORT`` (port 1-65535; HOST a name, IPv4 or ``[IPv6]``)
    or ``ipc://PATH``; ConfigError naming the endpoint and the rule otherwise."""
    if not isinstance(endpoint, str):
        raise ConfigError(f"endpoint must be a string ({_FORMS}), got {type(endpoint).__name__}")
    if endpoint != endpoint.strip() or not endpoint or any(c.isspace() or c == "\0" for c in endpoint):
        raise ConfigError(f"endpoint {endpoint!r} must not be empty or contain whitespace ({_FORMS})")
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        raise ConfigError(f"endpoint {endpoint!r} has no scheme: expected {_FORMS}")
    if scheme == "ipc":
        if not rest or rest == "*":
            raise ConfigError(f"endpoint {endpoint!r}: ipc:// needs a path")
        return endpoint
    if scheme != "tcp":
        raise ConfigError(f"endpoint {endpoint!r}: scheme {scheme!r} is not supported; expected {_FORMS}")
    host, colon, port_text = rest.rpartition(":")
    if not colon or not host:
        raise ConfigError(f"endpoint {endpoint!r}: expected tcp://HOST:PORT")
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        raise ConfigError(f"endpoint {endpoint!r}: port must be an integer in 1..65535, got {port_text!r}")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ConfigError(f"endpoint {endpoint!r}: IPv6 host must be written [ADDRESS]")
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ConfigError(f"endpoint {endpoint!r}: {host} is not an IPv6 address") from None
    elif not _HOSTNAME.match(host):
        raise ConfigError(f"endpoint {endpoint!r}: {host!r} is not a host name or IPv4 address")
    elif all(label.isdigit() for label in host.split(".")):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ConfigError(f"endpoint {endpoint!r}: {host!r} is not an IPv4 address") from None
    return endpoint


def _validate_role(role: Any, where: str) -> Role:
    if role not in ROLES:
        raise ConfigError(f"{where}: role must be one of {', '.join(ROLES)}, got {role!r}")
    return cast(Role, role)


@dataclass(frozen=True, slots=True)
class EngineEndpoint:
    """One FPM publisher address, the role of the engines publishing there and, when discovery
    knows it, the deployment-side name of the engine (a Kubernetes pod name)."""

    endpoint: str
    role: Role
    instance: str | None = None
    """Deployment-side engine name: what a connector marks when the core drains this engine."""

    def __post_init__(self) -> None:
        validate_endpoint(self.endpoint)
        _validate_role(self.role, f"endpoint {self.endpoint}")
        if self.instance is not None and (not isinstance(self.instance, str) or not self.instance):
            raise ConfigError(f"endpoint {self.endpoint}: instance must be a non-empty string")


@runtime_checkable
class Discovery(Protocol):
    """A source of the current endpoint set."""

    def poll(self) -> list[EngineEndpoint]:
        """The endpoints to subscribe to now (never raises for a bad source; see ``last_error``)."""
        ...


def _unique(endpoints: Iterable[EngineEndpoint], where: str) -> list[EngineEndpoint]:
    seen: dict[str, EngineEndpoint] = {}
    for ep in endpoints:
        if ep.endpoint in seen:
            raise ConfigError(f"{where}: endpoint {ep.endpoint} is listed twice")
        seen[ep.endpoint] = ep
    return list(seen.values())


class StaticDiscovery:
    """A fixed endpoint list (duplicates are a ConfigError)."""

    last_error: str | None = None

    def __init__(self, endpoints: Iterable[EngineEndpoint]) -> None:
        items = list(endpoints)
        for i, ep in enumerate(items):
            if not isinstance(ep, EngineEndpoint):
                raise ConfigError(f"endpoints[{i}] must be an EngineEndpoint, got {type(ep).__name__}")
        self._endpoints = _unique(items, "static endpoints")

    def poll(self) -> list[EngineEndpoint]:
        """The fixed list."""
        return list(self._endpoints)


def parse_endpoint_list(text: str, default_role: Role = "decode") -> list[EngineEndpoint]:
    """``tcp://h:p[,ROLE=tcp://h:p...]`` -> endpoints; items without a prefix get ``default_role``."""
    _validate_role(default_role, "default role")
    items = [item.strip() for item in text.split(",")]
    out: list[EngineEndpoint] = []
    for i, item in enumerate(items):
        if not item:
            raise ConfigError(f"endpoint list {text!r}: item {i + 1} is empty")
        role: str = default_role
        prefix, eq, rest = item.partition("=")
        if eq and "://" not in prefix:
            role, item = prefix.strip(), rest.strip()
            if not item:
                raise ConfigError(f"endpoint list {text!r}: item {i + 1} has no endpoint after {prefix}=")
        out.append(EngineEndpoint(validate_endpoint(item), _validate_role(role, f"endpoint list item {item!r}")))
    return _unique(out, f"endpoint list {text!r}")


def _entries_from_structured(data: Any, where: str) -> list[EngineEndpoint]:
    if data is None:
        return []
    if not isinstance(data, list):
        raise ConfigError(f"{where}: expected a list of {{endpoint, role}} objects, got {type(data).__name__}")
    out: list[EngineEndpoint] = []
    for i, entry in enumerate(data):
        at = f"{where}: entry [{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{at} must be an object with endpoint and role, got {type(entry).__name__}")
        for key in ("endpoint", "role"):
            if key not in entry:
                raise ConfigError(f"{at} has no {key!r}")
        try:
            out.append(
                EngineEndpoint(
                    validate_endpoint(entry["endpoint"]), _validate_role(entry["role"], at), entry.get("instance")
                )
            )
        except ConfigError as exc:
            raise ConfigError(f"{at}: {exc}") from None
    return out


def _entries_from_lines(text: str, where: str) -> list[EngineEndpoint]:
    out: list[EngineEndpoint] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        at = f"{where} line {number}"
        parts = line.split()
        if len(parts) not in (2, 3):
            raise ConfigError(f"{at}: expected 'ROLE ENDPOINT [INSTANCE]', got {line!r}")
        try:
            instance = parts[2] if len(parts) == 3 else None
            out.append(EngineEndpoint(validate_endpoint(parts[1]), _validate_role(parts[0], at), instance))
        except ConfigError as exc:
            raise ConfigError(f"{at}: {exc}") from None
    return out


def parse_discovery_text(text: str, where: str = "discovery file", *, suffix: str = "") -> list[EngineEndpoint]:
    """Endpoints from a discovery file's text: JSON (``suffix == ".json"``), YAML (``.yaml``,
    ``.yml``, or text starting with ``[``, ``{`` or ``-``) or ``ROLE ENDPOINT`` lines."""
    suffix = suffix.lower()
    significant = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    first = significant[0][:1] if significant else ""
    if suffix == ".json":
        data = parse_json(text, where, ConfigError) if text.strip() else None
        entries = _entries_from_structured(data, where)
    elif suffix in (".yaml", ".yml") or first in ("[", "{", "-"):
        entries = _entries_from_structured(parse_yaml(text, where, ConfigError), where)
    else:
        entries = _entries_from_lines(text, where)
    return _unique(entries, where)


_MAX_DISCOVERY_BYTES = 4 << 20  # a discovery file lists endpoints: kilobytes


class FileDiscovery:
    """Endpoints listed in a file, re-read when its inode, mtime or size changes.

    A bad file (missing, unreadable, unparsable) keeps the previous set; the message is in
    ``last_error`` (None after a good read) and ``errors`` counts bad reads.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.last_error: str | None = None
        self.errors = 0
        self._key: tuple[int, int, int] | None = None
        self._endpoints: list[EngineEndpoint] = []

    def _fail(self, message: str) -> None:
        if message != self.last_error:
            log.warning("%s", message)
        self.last_error = message
        self.errors += 1

    def poll(self) -> list[EngineEndpoint]:
        """The current set (the previous one while the file is bad); never raises."""
        where = f"discovery file {self.path}"
        try:
            st = os.stat(self.path)
        except (OSError, ValueError) as exc:  # ValueError: an embedded NUL byte
            self._key = None
            self._fail(f"{where}: cannot read: {getattr(exc, 'strerror', None) or exc}")
            return list(self._endpoints)
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key == self._key:
            return list(self._endpoints)
        self._key = key
        try:
            with open(self.path, "rb") as fh:
                text = read_bounded(fh, _MAX_DISCOVERY_BYTES, where).decode("utf-8")
            self._endpoints = parse_discovery_text(text, where, suffix=self.path.suffix)
        except OSError as exc:
            self._key = None
            self._fail(f"{where}: cannot read: {exc.strerror or exc}")
        except UnicodeDecodeError as exc:
            self._fail(f"{where}: not UTF-8 text (byte {exc.start})")
        except (ConfigError, DocumentError) as exc:
            self._fail(str(exc))
        else:
            self.last_error = None
        return list(self._endpoints)


class MergedDiscovery:
    """The union of several sources; an endpoint listed by several keeps the first one's role."""

    def __init__(self, sources: Sequence[Discovery]) -> None:
        self._sources = list(sources)

    @property
    def last_error(self) -> str | None:
        """The sources' last errors joined by ``; `` (None when none has one)."""
        errors = [e for e in (getattr(s, "last_error", None) for s in self._sources) if e]
        return "; ".join(errors) if errors else None

    def poll(self) -> list[EngineEndpoint]:
        """Every source's endpoints, first occurrence wins."""
        merged: dict[str, EngineEndpoint] = {}
        for source in self._sources:
            for ep in source.poll():
                merged.setdefault(ep.endpoint, ep)
        return list(merged.values())
