"""The decision log: one JSON line per tick, the same record shape in replay and live.

:func:`decision_record` turns a :class:`~sla_planner.ticks.TickRecord` into a JSON-safe dict;
``replay`` writes it (plus the simulator's own facts) to ``decisions.jsonl`` and
:class:`DecisionLog` (``sla-planner run --decisions-out FILE``) appends it to a file, flushed
after every line so a stopped or killed planner leaves a complete log of the ticks it finished.
Non-finite numbers become ``null``: every line is strict JSON.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..documents import short_text
from ..errors import ConfigError
from ..ticks import TickRecord
from ..types import ObservedTraffic, Pool

__all__ = ["decision_record", "observed_record", "json_line", "finite_or_none", "DecisionLog"]

log = logging.getLogger(__name__)


def observed_record(o: ObservedTraffic | None) -> dict[str, Any] | None:
    """The frontend traffic of a tick (None when unknown)."""
    if o is None:
        return None
    return {
        "num_req": o.num_req,
        "isl": o.isl,
        "osl": o.osl,
        "ttft_ms": o.ttft_ms,
        "itl_ms": o.itl_ms,
        "request_duration_s": o.request_duration_s,
    }


def _pools(d: dict[Pool, int] | None) -> dict[str, int] | None:
    return None if d is None else {p.value: int(n) for p, n in d.items()}


def decision_record(record: TickRecord, *, detail: bool = True) -> dict[str, Any]:
    """The shared JSON record of one tick (``detail=False`` leaves out pool reasons and detail)."""
    tick, inp, decision = record.tick, record.tick_input, record.decision
    forecast = decision.forecast
    out: dict[str, Any] = {
        "t_s": inp.now_s,
        "due_s": tick.due_s,
        "kind": tick.kind.value,
        "reason": decision.reason.value,
        "before": _pools(inp.current),
        "ready": _pools(inp.ready),
        "targets": _pools(decision.targets),
        "drain": {p.value: list(ids) for p, ids in decision.drain.items()},
        "observed": observed_record(inp.traffic),
        "forecast": None
        if forecast is None
        else {"num_req": forecast.num_req, "isl": forecast.isl, "osl": forecast.osl},
        "apply": None
        if record.apply is None
        else {
            "status": record.apply.status.value,
            "detail": record.apply.detail,
            "decision_id": record.apply.decision_id,
        },
        "input_errors": dict(record.input_errors),
    }
    if record.timings_s or record.lag_s:
        out["lag_s"] = record.lag_s
        out["timings_s"] = dict(record.timings_s)
    if detail:
        out["pool_reasons"] = {p.value: r for p, r in decision.pool_reasons.items()}
        out["detail"] = decision.detail
    return out


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "value"):
        return obj.value
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def finite_or_none(obj: Any) -> Any:
    """``obj`` with NaN/inf replaced by None, recursively (keys of Pool become their names)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.floating):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, dict):
        return {(k.value if isinstance(k, Pool) else k): finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def json_line(obj: Any) -> str:
    """One strict-JSON line (sorted keys, no NaN)."""
    return json.dumps(finite_or_none(obj), sort_keys=True, allow_nan=False, default=_json_default)


class DecisionLog:
    """A :class:`~sla_planner.ticks.TickObserver` appending :func:`decision_record` lines to a file.

    The file is opened for appending (a restarted planner continues its log); each line is
    written whole and flushed. :meth:`close` is idempotent.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._file: IO[str] | None = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        except (OSError, ValueError) as exc:  # ValueError: an embedded NUL byte
            detail = getattr(exc, "strerror", None) or exc
            raise ConfigError(
                f"--decisions-out {short_text(str(self.path))}: cannot open for writing ({detail})"
            ) from None
        self.lines = 0

    def on_tick(self, record: TickRecord) -> None:
        """Append the tick's record."""
        if self._file is None:
            return
        self._file.write(json_line(decision_record(record)) + "\n")
        self._file.flush()
        self.lines += 1

    def close(self) -> None:
        """Flush and close the file."""
        f, self._file = self._file, None
        if f is not None:
            f.close()
