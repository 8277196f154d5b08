"""A bounded window of tick records in the report's shape (periodic reports, live dashboard).

Per tick the window keeps the report's tick row and a small block of engine samples: every
active engine while the pools have at most :data:`~sla_planner.observe.figures.MAX_ENGINE_TRACES`
of them, else two pseudo-engines per pool, ``p50`` and ``max`` across all its active engines,
so a tick costs the same at 8 engines as at 80,000. A window that reaches ``max_ticks`` either
drops its oldest tick (``rolling``) or every other tick (halving the resolution but keeping the
whole period). Replica changes show as steps of the replica lines (live adapters do not see
which engine came or went, so there are no per-engine scale events).
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from ..core.load import ROLE_CODES, EngineView
from ..ticks import TickRecord
from ..types import Pool
from .figures import MAX_ENGINE_TRACES
from .record_view import GpuMeter, tick_row
from .report_record import EngineSamples, ReportRecord, parse_record

__all__ = ["EngineBlock", "ReportWindow", "engine_block"]

_FLOAT_COLUMNS = ("queued_prefill_tokens", "queued_requests", "running_requests", "kv_usage")


@dataclass(frozen=True)
class EngineBlock:
    """One tick's engine samples: pool and label per row, and the float columns."""

    pools: tuple[str, ...]
    labels: tuple[str, ...]
    values: npt.NDArray[np.float64]
    """Shape (rows, 4): queued prefill tokens, queued requests, running requests, KV usage."""


_LABELS: dict[str, str] = {}


def _label(text: str) -> str:
    """One shared string per engine label (a window holds thousands of ticks of the same ids)."""
    if len(_LABELS) > 100_000:
        _LABELS.clear()
    return _LABELS.setdefault(text, text)


def _column(snapshot: Mapping[str, Any] | None, names: tuple[str, ...], rows: npt.NDArray[np.intp]) -> npt.NDArray[np.float64]:
    """Sum of snapshot columns ``names`` at ``rows`` (NaN when the snapshot lacks one)."""
    if snapshot is None or any(n not in snapshot for n in names):
        return np.full(rows.size, math.nan)
    total = np.zeros(rows.size)
    for name in names:
        total += np.asarray(snapshot[name], dtype=np.float64)[rows]
    return total


def engine_block(
    view: EngineView,
    snapshot: Mapping[str, Any] | None,
    pools: tuple[str, ...],
    kv_capacity_tokens: int | None,
) -> EngineBlock:
    """The engine samples of one tick (see the module doc for the large-fleet rule)."""
    masks = {p: view.active & (view.role == ROLE_CODES[p]) for p in pools}
    kv = view.s_decode_kv + view.q_decode_kv
    kv_usage = kv / kv_capacity_tokens if kv_capacity_tokens else np.full(kv.shape, math.nan)
    total = sum(int(np.count_nonzero(m)) for m in masks.values())
    row_pools: list[str] = []
    labels: list[str] = []
    blocks: list[npt.NDArray[np.float64]] = []
    if total <= MAX_ENGINE_TRACES:
        has_ids = snapshot is not None and "worker_id" in snapshot and "dp_rank" in snapshot
        for pool, mask in masks.items():
            rows = np.flatnonzero(mask)
            for row in rows.tolist():
                row_pools.append(pool)
                if has_ids:
                    assert snapshot is not None
                    labels.append(_label(f"{snapshot['worker_id'][row]}:{int(snapshot['dp_rank'][row])}"))
                else:
                    labels.append(f"engine {int(view.worker[row])}")
            blocks.append(
                np.column_stack(
                    [
                        view.q_prefill_tokens[rows],
                        _column(snapshot, ("queued_num_prefill_requests", "queued_num_decode_requests"), rows),
                        _column(snapshot, ("scheduled_num_prefill_requests", "scheduled_num_decode_requests"), rows),
                        kv_usage[rows],
                    ]
                )
            )
    else:
        for pool, mask in masks.items():
            if not mask.any():
                continue
            columns = (view.q_prefill_tokens[mask], kv_usage[mask])
            for stat, fn in (("p50", np.median), ("max", np.max)):
                row_pools.append(pool)
                labels.append(f"{stat} of all engines")
                q, usage = (float(fn(c)) for c in columns)
                blocks.append(np.array([[q, math.nan, math.nan, usage]]))
    values = np.vstack(blocks) if blocks else np.empty((0, 4))
    return EngineBlock(tuple(row_pools), tuple(labels), values)


@dataclass
class _Entry:
    row: dict[str, Any]
    engines: EngineBlock | None


class ReportWindow:
    """Ticks and engine samples of one report period (or the dashboard's recent history)."""

    def __init__(
        self,
        pools: tuple[Pool, ...],
        sla_ttft_ms: float,
        sla_itl_ms: float,
        gpus_per_engine: Mapping[Pool, int],
        *,
        max_ticks: int,
        rolling: bool,
        kv_capacity_tokens: int | None = None,
    ) -> None:
        if max_ticks < 2:
            raise ValueError(f"max_ticks must be >= 2, got {max_ticks}")
        self.pools = tuple(p.value for p in pools)
        self.sla_ttft_ms = sla_ttft_ms
        self.sla_itl_ms = sla_itl_ms
        self.max_ticks = max_ticks
        self.rolling = rolling
        self.kv_capacity_tokens = kv_capacity_tokens
        self._gpu = GpuMeter(gpus_per_engine)
        self._entries: deque[_Entry] = deque()
        self.reset()

    def reset(self) -> None:
        """Start a new period: no ticks, GPU-hours from zero."""
        self._entries.clear()
        self._gpu_seconds_at_start = self._gpu.gpu_seconds
        self.counts: dict[str, Counter[str]] = {
            "ticks_by_kind": Counter(),
            "decisions_by_reason": Counter(),
            "applies_by_status": Counter(),
            "input_failures_by_kind": Counter(),
        }
        self.max_lag_s = 0.0
        self.ticks_seen = 0
        self.start_s: float | None = None
        self.end_s: float | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def gpu_hours(self) -> float:
        """GPU-hours requested since the period started."""
        return (self._gpu.gpu_seconds - self._gpu_seconds_at_start) / 3600.0

    def add(self, record: TickRecord) -> None:
        """Append one tick (see the module doc for what is kept)."""
        now = float(record.tick_input.now_s)
        self._gpu.update(now, record.deployment)
        self.start_s = now if self.start_s is None else self.start_s
        self.end_s = now
        self.ticks_seen += 1
        self.counts["ticks_by_kind"][record.tick.kind.value] += 1
        self.counts["decisions_by_reason"][record.decision.reason.value] += 1
        if record.apply is not None:
            self.counts["applies_by_status"][record.apply.status.value] += 1
        for kind in record.input_errors:
            self.counts["input_failures_by_kind"][kind] += 1
        self.max_lag_s = max(self.max_lag_s, record.lag_s)
        row = tick_row(record, self._gpu.gpus, self.gpu_hours())
        view = record.tick_input.engines
        block = (
            engine_block(view, record.snapshot, self.pools, self.kv_capacity_tokens)
            if isinstance(view, EngineView)
            else None
        )
        self._entries.append(_Entry(row, block))
        if len(self._entries) > self.max_ticks:
            if self.rolling:
                self._entries.popleft()
            else:
                self._entries = deque(list(self._entries)[::2])

    def summary(self) -> dict[str, Any]:
        """The period's totals, for the report's summary table."""
        peak: dict[str, float] = {}
        for entry in self._entries:
            for pool, n in (entry.row.get("replicas") or {}).items():
                peak[pool] = max(peak.get(pool, 0), n)
        out: dict[str, Any] = {
            "period_start_s": self.start_s,
            "period_end_s": self.end_s,
            "ticks": self.ticks_seen,
            "ticks_shown": len(self._entries),
            "gpu_hours": self.gpu_hours(),
            "max_tick_lag_s": self.max_lag_s,
            "replicas_peak": peak,
        }
        out.update({name: dict(sorted(c.items())) for name, c in self.counts.items()})
        return out

    def report_record(self, title: str, summary: Mapping[str, Any] | None = None) -> ReportRecord:
        """The window as a validated report record."""
        entries = list(self._entries)
        record = {
            "title": title,
            "generated_by": "sla-planner",
            "summary": {**self.summary(), **(summary or {})},
            "sla": {"ttft_ms": self.sla_ttft_ms, "itl_ms": self.sla_itl_ms},
            "pools": list(self.pools),
            "ticks": [e.row for e in entries],
        }
        rec = parse_record(record)
        return replace(rec, engines=_samples(entries))


def _samples(entries: list[_Entry]) -> EngineSamples:
    t: list[npt.NDArray[np.float64]] = []
    pools: list[str] = []
    labels: list[str] = []
    values: list[npt.NDArray[np.float64]] = []
    for e in entries:
        if e.engines is None or not e.engines.labels:
            continue
        t.append(np.full(len(e.engines.labels), e.row["t_s"]))
        pools.extend(e.engines.pools)
        labels.extend(e.engines.labels)
        values.append(e.engines.values)
    matrix = np.vstack(values) if values else np.empty((0, 4))
    columns = {name: matrix[:, j].copy() for j, name in enumerate(_FLOAT_COLUMNS)}
    return EngineSamples(
        t_s=np.concatenate(t) if t else np.empty(0),
        worker_id=labels,
        pool=pools,
        **columns,
    )
