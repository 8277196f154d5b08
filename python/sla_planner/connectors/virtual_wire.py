"""The virtual connector's etcd layout and encodings, shared by the planner side and the client.

Everything lives under ``v1/{namespace}/planner/`` (Dynamo's layout):

=========================  ==============  =====================================================
key                        written by      value
=========================  ==============  =====================================================
``num_prefill_workers``    planner         decimal string; engines asked for (absent = unset)
``num_decode_workers``     planner         decimal string (aggregated engines count as decode)
``decision_id``            planner         decimal string; 0, 1, 2, ... one per decision
``scaling_decision``       planner         JSON record of the three fields above (−1 = unset),
                                           plus ``drain``, ``drain_instances``, ``reason``,
                                           ``written_at_unix_s``, ``last_acknowledged``
``scaled_decision_id``     orchestrator    decimal string; the newest decision carried out
``orchestrator_status``    orchestrator    JSON: ``ready_prefill_workers``,
                                           ``ready_decode_workers`` (−1 = not reported),
                                           ``decision_id``, ``reported_at_unix_s`` (optional;
                                           sla-planner's client only)
=========================  ==============  =====================================================

A decision is acknowledged when ``scaled_decision_id >= decision_id``. When the record is present
it is authoritative; the three decimal keys are read only when it is absent (written by an older
Dynamo planner). Every malformed value is a :class:`~sla_planner.errors.ConnectorError` naming the
key: nothing is guessed from a value that cannot be trusted.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple
from urllib.parse import urlsplit

from ..errors import ConnectorError

if TYPE_CHECKING:
    from .etcd_gateway import KeyValue

__all__ = [
    "DEFAULT_ENDPOINT",
    "parse_endpoints",
    "UNSET",
    "MAX_WORKERS",
    "MAX_DECISION_ID",
    "WORKER_KINDS",
    "WorkerKind",
    "KEY_PREFILL",
    "KEY_DECODE",
    "KEY_DECISION_ID",
    "KEY_RECORD",
    "KEY_SCALED",
    "KEY_STATUS",
    "planner_prefix",
    "Acknowledged",
    "PlannerDecision",
    "OrchestratorStatus",
    "PlannerKeys",
    "parse_decimal",
    "parse_planner_keys",
    "decision_puts",
]

#: −1 in any count or id: not set (no decision yet, or a pool the planner does not size).
UNSET = -1
#: Largest engine count accepted in a key; anything above is treated as garbage.
MAX_WORKERS = 1_000_000
#: Largest decision id (Dynamo stores them as 64-bit integers).
MAX_DECISION_ID = 2**63 - 1

WorkerKind = Literal["prefill", "decode"]
WORKER_KINDS: tuple[WorkerKind, ...] = ("prefill", "decode")

KEY_PREFILL = "num_prefill_workers"
KEY_DECODE = "num_decode_workers"
KEY_DECISION_ID = "decision_id"
KEY_RECORD = "scaling_decision"
KEY_SCALED = "scaled_decision_id"
KEY_STATUS = "orchestrator_status"

#: Where etcd listens when nothing says otherwise (Dynamo's default as well).
DEFAULT_ENDPOINT = "http://localhost:2379"

_DIGITS = re.compile(r"[0-9]+")
_NEGATIVE = re.compile(r"-[0-9]+")


def parse_endpoints(value: str | Sequence[str]) -> tuple[str, ...]:
    """``http(s)://host:port`` endpoints from a comma-separated string or a sequence.

    Raises ValueError naming the bad entry; trailing slashes are dropped.
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    endpoints: list[str] = []
    for item in items:
        text = item.strip().rstrip("/")
        if not text:
            continue
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError as exc:
            raise ValueError(f"etcd endpoint {text!r}: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"etcd endpoint {text!r}: expected http(s)://host:port")
        if parts.path or parts.query:
            raise ValueError(f"etcd endpoint {text!r}: expected no path, got {parts.path!r}")
        endpoints.append(text)
    if not endpoints:
        raise ValueError("no etcd endpoint given")
    return tuple(endpoints)


def planner_prefix(namespace: str) -> str:
    """``v1/{namespace}/planner/``; the namespace must be non-empty and free of ``/``."""
    if not namespace or "/" in namespace or namespace != namespace.strip():
        raise ValueError(f"namespace {namespace!r}: expected a non-empty name without '/'")
    return f"v1/{namespace}/planner/"


def parse_decimal(key: str, raw: bytes, maximum: int) -> int:
    """A key's decimal-string value: an integer in 0..maximum, or −1 for unset."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConnectorError(f"etcd key {key}: value is not UTF-8 text: {raw[:40]!r}") from None
    if text == "-1":
        return UNSET
    if _NEGATIVE.fullmatch(text):
        raise ConnectorError(f"etcd key {key}: {text[:40]} is negative (only -1, unset, is allowed)")
    if not _DIGITS.fullmatch(text):
        raise ConnectorError(
            f"etcd key {key}: {text[:40]!r} is not a decimal integer (expected digits, or -1 for "
            "unset)"
        )
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(maximum)) or int(digits) > maximum:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise ConnectorError(f"etcd key {key}: {shown} is out of range (0..{maximum}, or -1)")
    return int(digits)


def _json_int(where: str, name: str, value: object, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConnectorError(f"{where}: field {name!r} must be an integer, got {value!r}")
    if not UNSET <= value <= maximum:
        raise ConnectorError(f"{where}: field {name!r} = {value} is out of range (-1..{maximum})")
    return value


def _json_time(where: str, name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConnectorError(f"{where}: field {name!r} must be a number of seconds, got {value!r}")
    if value < 0:
        raise ConnectorError(f"{where}: field {name!r} = {value} must be >= 0")
    return float(value)


def _json_names(where: str, name: str, value: object) -> dict[str, tuple[str, ...]]:
    """``{"prefill": [...], "decode": [...]}`` of non-empty strings."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConnectorError(f"{where}: field {name!r} must be an object, got {value!r}")
    result: dict[str, tuple[str, ...]] = {}
    for kind, names in value.items():
        if kind not in WORKER_KINDS:
            raise ConnectorError(
                f"{where}: field {name!r} has key {kind!r}; expected one of {list(WORKER_KINDS)}"
            )
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise ConnectorError(
                f"{where}: field {name!r}.{kind} must be a list of non-empty strings"
            )
        if names:
            result[kind] = tuple(names)
    return result


def _json_object(where: str, raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConnectorError(f"{where}: value is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ConnectorError(
            f"{where}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(value, dict):
        raise ConnectorError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


class Acknowledged(NamedTuple):
    """The newest acknowledged decision's counts at the time a later decision was written."""

    decision_id: int
    num_prefill_workers: int
    num_decode_workers: int


@dataclass(frozen=True)
class PlannerDecision:
    """One scaling decision as the orchestrator sees it (−1 = unset)."""

    num_prefill_workers: int = UNSET
    num_decode_workers: int = UNSET
    decision_id: int = UNSET
    drain: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Per worker kind (``prefill``/``decode``), the engines (worker ids, idlest first) to remove
    first when lowering that count."""
    drain_instances: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """The same engines by deployment-side name (host, container, pod), where known."""
    reason: str = ""
    written_at_unix_s: float | None = None
    last_acknowledged: Acknowledged | None = None

    @property
    def is_set(self) -> bool:
        """A decision was made (``decision_id`` >= 0)."""
        return self.decision_id >= 0

    def count(self, kind: WorkerKind) -> int:
        """The engine count asked for ``kind`` (−1 = unset)."""
        return self.num_prefill_workers if kind == "prefill" else self.num_decode_workers

    def to_record(self) -> dict[str, Any]:
        """The JSON record stored at ``scaling_decision``."""
        record: dict[str, Any] = {
            KEY_PREFILL: self.num_prefill_workers,
            KEY_DECODE: self.num_decode_workers,
            KEY_DECISION_ID: self.decision_id,
            "drain": {kind: list(names) for kind, names in self.drain.items()},
            "drain_instances": {kind: list(names) for kind, names in self.drain_instances.items()},
            "reason": self.reason,
            "written_at_unix_s": self.written_at_unix_s,
        }
        if self.last_acknowledged is not None:
            record["last_acknowledged"] = self.last_acknowledged._asdict()
        return record

    @classmethod
    def from_record(cls, where: str, raw: bytes) -> PlannerDecision:
        """Parse the JSON record; ConnectorError naming the key and field on any problem."""
        obj = _json_object(where, raw)
        missing = [k for k in (KEY_PREFILL, KEY_DECODE, KEY_DECISION_ID) if k not in obj]
        if missing:
            raise ConnectorError(f"{where}: missing field(s) {missing}")
        reason = obj.get("reason", "")
        if not isinstance(reason, str):
            raise ConnectorError(f"{where}: field 'reason' must be a string, got {reason!r}")
        last = obj.get("last_acknowledged")
        acknowledged: Acknowledged | None = None
        if last is not None:
            inner = f"{where} (last_acknowledged)"
            if not isinstance(last, dict):
                raise ConnectorError(f"{inner}: expected an object, got {last!r}")
            acknowledged = Acknowledged(
                _json_int(inner, KEY_DECISION_ID, last.get(KEY_DECISION_ID), MAX_DECISION_ID),
                _json_int(inner, KEY_PREFILL, last.get(KEY_PREFILL), MAX_WORKERS),
                _json_int(inner, KEY_DECODE, last.get(KEY_DECODE), MAX_WORKERS),
            )
        return cls(
            num_prefill_workers=_json_int(where, KEY_PREFILL, obj[KEY_PREFILL], MAX_WORKERS),
            num_decode_workers=_json_int(where, KEY_DECODE, obj[KEY_DECODE], MAX_WORKERS),
            decision_id=_json_int(where, KEY_DECISION_ID, obj[KEY_DECISION_ID], MAX_DECISION_ID),
            drain=_json_names(where, "drain", obj.get("drain")),
            drain_instances=_json_names(where, "drain_instances", obj.get("drain_instances")),
            reason=reason,
            written_at_unix_s=_json_time(where, "written_at_unix_s", obj.get("written_at_unix_s")),
            last_acknowledged=acknowledged,
        )


@dataclass(frozen=True)
class OrchestratorStatus:
    """What the orchestrator last reported about its engines (−1 = not reported)."""

    ready_prefill_workers: int = UNSET
    ready_decode_workers: int = UNSET
    decision_id: int = UNSET
    """The newest decision the orchestrator had seen when it reported."""
    reported_at_unix_s: float | None = None

    def ready(self, kind: WorkerKind) -> int:
        """Engines of ``kind`` serving, as reported (−1 = not reported)."""
        return self.ready_prefill_workers if kind == "prefill" else self.ready_decode_workers

    def to_json(self) -> bytes:
        """The JSON value stored at ``orchestrator_status``."""
        return json.dumps(
            {
                "ready_prefill_workers": self.ready_prefill_workers,
                "ready_decode_workers": self.ready_decode_workers,
                KEY_DECISION_ID: self.decision_id,
                "reported_at_unix_s": self.reported_at_unix_s,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, where: str, raw: bytes) -> OrchestratorStatus:
        """Parse the status; ConnectorError naming the key and field on any problem."""
        obj = _json_object(where, raw)
        return cls(
            ready_prefill_workers=_json_int(
                where, "ready_prefill_workers", obj.get("ready_prefill_workers", UNSET), MAX_WORKERS
            ),
            ready_decode_workers=_json_int(
                where, "ready_decode_workers", obj.get("ready_decode_workers", UNSET), MAX_WORKERS
            ),
            decision_id=_json_int(
                where, KEY_DECISION_ID, obj.get(KEY_DECISION_ID, UNSET), MAX_DECISION_ID
            ),
            reported_at_unix_s=_json_time(
                where, "reported_at_unix_s", obj.get("reported_at_unix_s")
            ),
        )


@dataclass(frozen=True)
class PlannerKeys:
    """Everything under the planner prefix at one etcd revision, validated."""

    prefix: str
    decision: PlannerDecision
    """The current decision: the record when present, else the legacy decimal keys."""
    scaled_decision_id: int
    status: OrchestratorStatus | None
    revision: int
    mod_revisions: Mapping[str, int]
    """Key name (without prefix) -> etcd mod revision, for the keys that exist."""
    highest_decision_id: int
    """The largest id in any key (record, legacy ``decision_id``, ``scaled_decision_id``)."""
    from_record: bool = True
    notes: tuple[str, ...] = ()

    @property
    def acknowledged(self) -> bool:
        """No decision yet, or the orchestrator acknowledged the current one."""
        return not self.decision.is_set or self.scaled_decision_id >= self.decision.decision_id

    def next_decision_id(self) -> int:
        """The id of the next decision: above every id any key holds (never reused, and never
        one an earlier acknowledgement already covers); the first is 0."""
        if self.highest_decision_id >= MAX_DECISION_ID:
            raise ConnectorError(
                f"etcd keys under {self.prefix}: decision ids are exhausted "
                f"({self.highest_decision_id}); delete the keys to start over"
            )
        return self.highest_decision_id + 1

    def mod_revision(self, name: str) -> int:
        """The mod revision of key ``name`` (0 = absent)."""
        return self.mod_revisions.get(name, 0)


def parse_planner_keys(prefix: str, kvs: Iterable[KeyValue], revision: int) -> PlannerKeys:
    """Validate the keys under ``prefix``; keys of other tools under it are ignored."""
    values: dict[str, bytes] = {}
    mods: dict[str, int] = {}
    for kv in kvs:
        if kv.key.startswith(prefix):
            name = kv.key[len(prefix) :]
            values[name] = kv.value
            mods[name] = kv.mod_revision

    def decimal(name: str, maximum: int) -> int:
        raw = values.get(name)
        return UNSET if raw is None else parse_decimal(prefix + name, raw, maximum)

    legacy = PlannerDecision(
        num_prefill_workers=decimal(KEY_PREFILL, MAX_WORKERS),
        num_decode_workers=decimal(KEY_DECODE, MAX_WORKERS),
        decision_id=decimal(KEY_DECISION_ID, MAX_DECISION_ID),
    )
    scaled = decimal(KEY_SCALED, MAX_DECISION_ID)
    status = None
    if KEY_STATUS in values:
        status = OrchestratorStatus.from_json(prefix + KEY_STATUS, values[KEY_STATUS])
    notes: list[str] = []
    if KEY_RECORD in values:
        decision = PlannerDecision.from_record(prefix + KEY_RECORD, values[KEY_RECORD])
        from_record = True
        legacy_view = (legacy.num_prefill_workers, legacy.num_decode_workers, legacy.decision_id)
        record_view = (
            decision.num_prefill_workers,
            decision.num_decode_workers,
            decision.decision_id,
        )
        if legacy.is_set and legacy_view != record_view:
            notes.append(
                f"legacy keys (prefill, decode, id) = {legacy_view} differ from the record "
                f"{record_view}; the record is authoritative"
            )
    else:
        decision = legacy
        from_record = False
    return PlannerKeys(
        prefix=prefix,
        decision=decision,
        scaled_decision_id=scaled,
        status=status,
        revision=revision,
        mod_revisions=mods,
        highest_decision_id=max(decision.decision_id, legacy.decision_id, scaled),
        from_record=from_record,
        notes=tuple(notes),
    )


def decision_puts(prefix: str, decision: PlannerDecision) -> dict[str, bytes]:
    """The keys one decision writes (in one transaction): the record, ``decision_id`` and the
    decimal count of every kind that is set (an unset kind's key is left absent, as Dynamo
    leaves it, because Dynamo's planner cannot parse −1 there)."""
    puts = {
        prefix + KEY_DECISION_ID: str(decision.decision_id).encode(),
        prefix + KEY_RECORD: json.dumps(decision.to_record(), separators=(",", ":")).encode(),
    }
    if decision.num_prefill_workers >= 0:
        puts[prefix + KEY_PREFILL] = str(decision.num_prefill_workers).encode()
    if decision.num_decode_workers >= 0:
        puts[prefix + KEY_DECODE] = str(decision.num_decode_workers).encode()
    return puts
