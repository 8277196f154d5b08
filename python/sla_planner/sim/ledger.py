"""Per-request outcomes of a replay: SLA attainment, latency quantiles, optional CSV rows.

Memory is bounded: counts are exact, quantiles come from a log-bucketed histogram with 0.5%
relative resolution, and per-request rows stream to a file as they arrive.

With an :class:`IdleFeasibility`, the ledger also counts the requests that could not meet the
SLA even alone on an idle engine of the simulated cluster, and the attainment over the others.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
from numba import njit

from . import _kernel as K
from ._lookup import bilinear_nb, hermite_nb

__all__ = ["IdleFeasibility", "LogHistogram", "RequestLedger"]

_OUTCOME = {
    K.STATUS_OK: "ok",
    K.STATUS_FAILED_REMOVED: "failed_engine_removed",
    K.STATUS_REJECTED_TOO_LONG: "rejected_too_long",
    K.STATUS_UNFINISHED: "unfinished",
}


class LogHistogram:
    """Quantiles of positive values to ~0.5% relative error in O(buckets) memory."""

    def __init__(self, min_value: float = 1e-6, max_value: float = 1e6, growth: float = 1.01) -> None:
        self._log_g = math.log(growth)
        self._lo = math.log(min_value)
        self._n = int(math.ceil((math.log(max_value) - self._lo) / self._log_g)) + 1
        self._counts = np.zeros(self._n + 1, dtype=np.int64)  # last bucket: zeros and tiny values
        self._growth = growth
        self.total = 0

    def add(self, values: npt.NDArray[np.float64]) -> None:
        """Add non-negative values (NaN ignored)."""
        v = values[np.isfinite(values)]
        if v.size == 0:
            return
        idx = np.full(v.shape, self._n, dtype=np.int64)
        pos = v > 0
        idx[pos] = np.clip(
            np.floor((np.log(v[pos]) - self._lo) / self._log_g).astype(np.int64), 0, self._n - 1
        )
        self._counts += np.bincount(idx, minlength=self._n + 1)
        self.total += int(v.size)

    def quantile(self, q: float) -> float | None:
        """The q-quantile (bucket midpoint in log space); None when empty."""
        if self.total == 0:
            return None
        rank = q * (self.total - 1)
        zeros = int(self._counts[self._n])
        if rank < zeros:
            return 0.0
        cum = np.cumsum(self._counts[: self._n]) + zeros
        b = int(np.searchsorted(cum, rank, side="right"))
        b = min(b, self._n - 1)
        return float(math.exp(self._lo + (b + 0.5) * self._log_g))


@njit(cache=True)
def _idle_times_nb(px, py, pd, z, kv_min, kv_step, ctx_min, ctx_step, max_kv, gpus, time_scale,
                   transfer_s, isl, osl, ttft_out, itl_out):  # pragma: no cover - jitted
    for i in range(isl.shape[0]):
        n = isl[i]
        rate = hermite_nb(px, py, pd, n) * gpus / time_scale
        ttft_out[i] = n / (rate if rate > 0.0 else 1.0) if n > 0 else 0.0
        steps = osl[i] - 1.0
        if steps <= 0.0:
            itl_out[i] = 0.0
            continue
        kv = n + (steps - 1.0) / 2.0  # mean KV of the decode iterations (isl .. isl + osl - 2)
        itl_ms = bilinear_nb(z, kv_min, kv_step, ctx_min, ctx_step, kv / max_kv, np.log(max(kv, 1.0)))
        itl_out[i] = itl_ms * time_scale / 1e3 + transfer_s / steps


class IdleFeasibility:
    """Which requests can meet the SLA alone on an idle engine of the simulated cluster.

    With the simulator's own lookups (see :mod:`._kernel`) and a ``SimCluster``'s perf and
    settings: the idle TTFT of ISL ``L`` is ``L / (thpt_per_gpu(L) * prefill GPUs / time_scale)``;
    the idle ITL is the batch-1 decode iteration time at the mean KV of the request's decode
    iterations, ``L + (OSL - 2) / 2`` tokens (usage = that / max_kv_tokens), times ``time_scale``,
    plus ``transfer_s`` spread over its ``OSL - 1`` gaps (0 when OSL <= 1). A request is
    infeasible when its idle TTFT exceeds the TTFT target, its idle ITL exceeds the ITL target,
    or ISL + OSL exceeds the KV capacity (it is rejected).
    """

    def __init__(self, cluster: Any, ttft_target_ms: float, itl_target_ms: float) -> None:
        perf, settings = cluster.perf, cluster.settings
        self._perf = perf
        self._gpus = float(
            settings.prefill_engine_num_gpu if settings.mode == "disagg" else settings.decode_engine_num_gpu
        )
        self._time_scale = float(settings.time_scale)
        self._transfer_s = float(settings.transfer_s) if settings.mode == "disagg" else 0.0
        self.ttft_target_s = ttft_target_ms / 1e3
        self.itl_target_s = itl_target_ms / 1e3

    def idle_times_s(
        self, isl: npt.ArrayLike, osl: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(idle TTFT, idle ITL) in seconds per request."""
        p = self._perf
        li = np.ascontiguousarray(isl, dtype=np.float64).reshape(-1)
        lo = np.ascontiguousarray(osl, dtype=np.float64).reshape(-1)
        ttft, itl = np.empty_like(li), np.empty_like(li)
        _idle_times_nb(
            p.prefill_isl, p.prefill_thpt_per_gpu, p.prefill_slopes, p.decode_itl_grid_ms,
            p.kv_min, p.kv_step, p.log_ctx_min, p.log_ctx_step, float(p.max_kv_tokens), self._gpus,
            self._time_scale, self._transfer_s, li, lo, ttft, itl,
        )
        return ttft, itl

    def __call__(self, isl: npt.ArrayLike, osl: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """True for each request that can meet both targets on an idle engine."""
        ttft, itl = self.idle_times_s(isl, osl)
        fits = np.asarray(isl, dtype=np.float64) + np.asarray(osl, dtype=np.float64) <= self._perf.max_kv_tokens
        return (ttft <= self.ttft_target_s) & (itl <= self.itl_target_s) & fits.reshape(-1)


class RequestLedger:
    """Folds simulator completion records into SLA counters and quantiles."""

    def __init__(
        self,
        ttft_target_ms: float,
        itl_target_ms: float,
        csv_path: Path | None = None,
        feasibility: IdleFeasibility | None = None,
    ) -> None:
        self.feasibility = feasibility
        self.feasible = 0
        self.feasible_met = 0
        self.ttft_target_s = ttft_target_ms / 1e3
        self.itl_target_s = itl_target_ms / 1e3
        self.total = 0
        self.ok = 0
        self.outcomes = {name: 0 for name in _OUTCOME.values()}
        self.ttft_met = 0
        self.itl_met = 0
        self.both_met = 0
        self.ttft_hist = LogHistogram()
        self.itl_hist = LogHistogram()
        self._csv_file: IO[str] | None = None
        self._csv: Any = None
        if csv_path is not None:
            self._csv_file = open(csv_path, "w", newline="")
            self._csv = csv.writer(self._csv_file)
            self._csv.writerow(
                ["trace_index", "arrival_s", "isl", "osl", "ttft_ms", "itl_ms", "finish_s", "outcome", "engine"]
            )

    def add(self, done: npt.NDArray[np.float64], engine_name: Any = None) -> None:
        """Fold records (first-token rows are skipped: outcomes only)."""
        status = done[:, K.D_STATUS]
        rows = done[status != K.STATUS_FIRST_TOKEN]
        if rows.shape[0] == 0:
            return
        st = rows[:, K.D_STATUS].astype(np.int64)
        self.total += rows.shape[0]
        for code, name in _OUTCOME.items():
            self.outcomes[name] += int((st == code).sum())
        ok = st == K.STATUS_OK
        ttft = np.where(rows[:, K.D_FIRST] >= 0, rows[:, K.D_FIRST] - rows[:, K.D_ARRIVAL], np.nan)
        gaps = rows[:, K.D_OSL] - 1.0
        itl = np.where(gaps > 0, (rows[:, K.D_DONE] - rows[:, K.D_FIRST]) / np.maximum(gaps, 1.0), 0.0)
        ttft_ok = ok & (ttft <= self.ttft_target_s)
        itl_ok = ok & (itl <= self.itl_target_s)
        self.ok += int(ok.sum())
        self.ttft_met += int(ttft_ok.sum())
        self.itl_met += int(itl_ok.sum())
        self.both_met += int((ttft_ok & itl_ok).sum())
        if self.feasibility is not None:
            feasible = self.feasibility(rows[:, K.D_ISL], rows[:, K.D_OSL])
            self.feasible += int(feasible.sum())
            self.feasible_met += int((feasible & ttft_ok & itl_ok).sum())
        self.ttft_hist.add(ttft[ok])
        self.itl_hist.add(itl[ok & (gaps > 0)])
        if self._csv is not None:
            for i in np.argsort(rows[:, K.D_TRACE], kind="stable"):
                r = rows[i]
                good = st[i] == K.STATUS_OK
                engine = int(r[K.D_ENGINE])
                self._csv.writerow([
                    int(r[K.D_TRACE]), f"{r[K.D_ARRIVAL]:.6f}", int(r[K.D_ISL]), int(r[K.D_OSL]),
                    f"{ttft[i] * 1e3:.3f}" if good else "",
                    f"{itl[i] * 1e3:.3f}" if good and gaps[i] > 0 else "",
                    f"{r[K.D_DONE]:.6f}", _OUTCOME[int(st[i])],
                    engine_name(engine) if (engine_name is not None and engine >= 0) else "",
                ])

    def close(self) -> None:
        """Flush and close the CSV file."""
        if self._csv_file is not None:
            self._csv_file.close()
            self._csv_file = None

    def summary(self) -> dict[str, Any]:
        """Counts, attainment shares (of all requests; failed ones never attain) and quantiles."""

        def share(n: int) -> float | None:
            return n / self.total if self.total else None

        def ms(v: float | None) -> float | None:
            return None if v is None else v * 1e3

        feasible: dict[str, Any] = {}
        if self.feasibility is not None:
            feasible = {
                "requests_infeasible": self.total - self.feasible,
                "sla_attainment_feasible": self.feasible_met / self.feasible if self.feasible else None,
            }
        return {
            **feasible,
            "requests_total": self.total,
            "requests_ok": self.ok,
            "requests_failed": self.total - self.ok,
            "outcomes": dict(self.outcomes),
            "ttft_sla_attainment": share(self.ttft_met),
            "itl_sla_attainment": share(self.itl_met),
            "sla_attainment": share(self.both_met),
            "ttft_p50_ms": ms(self.ttft_hist.quantile(0.5)),
            "ttft_p99_ms": ms(self.ttft_hist.quantile(0.99)),
            "itl_p50_ms": ms(self.itl_hist.quantile(0.5)),
            "itl_p99_ms": ms(self.itl_hist.quantile(0.99)),
        }
