"""Shared builders for simulator tests: a constant-speed engine model and a runner."""

from __future__ import annotations

from typing import Any

import numpy as np

from sla_planner.sim import _kernel as K
from sla_planner.sim.cluster import SimCluster, SimPerf, SimSettings
from sla_planner.types import Pool


def constant_perf(prefill_tok_s: float = 1000.0, itl_ms: float = 10.0, max_kv: int = 10_000) -> SimPerf:
    """Prefill at a fixed tokens/s per GPU for any ISL; decode at a fixed ITL for any load."""
    return SimPerf(
        prefill_isl=np.array([1.0, 1e6]),
        prefill_thpt_per_gpu=np.array([prefill_tok_s, prefill_tok_s]),
        prefill_slopes=np.zeros(2),
        decode_itl_grid_ms=np.full((2, 2), itl_ms),
        kv_min=0.0,
        kv_step=1.0,
        log_ctx_min=0.0,
        log_ctx_step=20.0,
        max_kv_tokens=max_kv,
    )


class Run:
    """Drives a SimCluster step by step and keeps every record it emits."""

    def __init__(self, cluster: SimCluster) -> None:
        self.c = cluster
        self.done: list[np.ndarray] = []
        self.fpm: list[np.ndarray] = []

    def sink(self) -> None:
        self.done.append(self.c.take_done())
        self.fpm.append(self.c.take_fpm())

    def play(self, arrivals: list[tuple[float, int, int]], until: float, step: float = 1.0,
             actions: dict[float, dict[Pool, int]] | None = None, check: Any = None) -> None:
        arr = sorted(arrivals)
        t_arr = np.array([a[0] for a in arr], dtype=np.float64)
        isl = np.array([a[1] for a in arr], dtype=np.int64)
        osl = np.array([a[2] for a in arr], dtype=np.int64)
        idx = np.arange(len(arr), dtype=np.int64)
        t = self.c.now_s
        pos = 0
        actions = dict(actions or {})
        while t < until:
            t_next = min(t + step, until)
            hi = int(np.searchsorted(t_arr, t_next, side="right"))
            self.c.advance(t_next, t_arr[pos:hi], isl[pos:hi], osl[pos:hi], idx[pos:hi], self.sink)
            pos = hi
            self.sink()
            t = t_next
            for at in sorted(a for a in actions if a <= t):
                self.c.set_targets(actions.pop(at))
                self.sink()
            if check is not None:
                check(self.c)

    def records(self) -> np.ndarray:
        rows = [d for d in self.done if d.shape[0]]
        return np.concatenate(rows) if rows else np.zeros((0, K.N_D))

    def outcomes(self) -> np.ndarray:
        r = self.records()
        return r[r[:, K.D_STATUS] != K.STATUS_FIRST_TOKEN]

    def fpm_rows(self) -> np.ndarray:
        rows = [f for f in self.fpm if f.shape[0]]
        return np.concatenate(rows) if rows else np.zeros((0, K.N_F))


def cluster(initial: dict[Pool, int], perf: SimPerf | None = None, **settings: Any) -> SimCluster:
    return SimCluster(perf or constant_perf(), SimSettings(**settings), initial)
