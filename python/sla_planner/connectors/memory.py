"""An in-memory deployment: the connector for tests, demos and embedding the planner in code."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..types import Pool

__all__ = ["InMemoryConnector"]


class InMemoryConnector:
    """Holds replica counts per pool; ``apply`` sets them and calls ``on_apply`` (if given).

    ``fail_reads`` / ``fail_applies`` make the next reads or applies raise, to exercise the
    planner's handling of a deployment API that is down.
    """

    def __init__(
        self,
        replicas: dict[Pool, int],
        on_apply: Callable[[dict[Pool, int]], None] | None = None,
    ) -> None:
        if any(n < 0 for n in replicas.values()):
            raise ValueError(f"replica counts must be >= 0, got {replicas}")
        self._replicas = dict(replicas)
        self._in_progress = {p: False for p in replicas}
        self._on_apply = on_apply
        self._lock = threading.Lock()
        self.history: list[dict[Pool, int]] = []
        self.fail_reads = 0
        self.fail_applies = 0

    def current(self) -> dict[Pool, int] | None:
        """Replica counts (raises while ``fail_reads`` > 0)."""
        with self._lock:
            if self.fail_reads > 0:
                self.fail_reads -= 1
                raise ConnectionError("in-memory deployment: read failure (injected)")
            return dict(self._replicas)

    def pools_in_progress(self) -> dict[Pool, bool]:
        """Per pool, whether a scale operation is still settling (set with set_in_progress)."""
        with self._lock:
            return dict(self._in_progress)

    def set_in_progress(self, pool: Pool, value: bool) -> None:
        """Mark a pool as scaling (or settled)."""
        with self._lock:
            self._in_progress[pool] = value

    def apply(self, targets: dict[Pool, int]) -> None:
        """Set the replica counts (raises while ``fail_applies`` > 0)."""
        with self._lock:
            if self.fail_applies > 0:
                self.fail_applies -= 1
                raise ConnectionError("in-memory deployment: apply failure (injected)")
            unknown = [p for p in targets if p not in self._replicas]
            if unknown:
                raise ValueError(f"unknown pools {[p.value for p in unknown]}")
            self._replicas.update({p: int(n) for p, n in targets.items()})
            self.history.append(dict(targets))
        if self._on_apply is not None:
            self._on_apply(dict(targets))
