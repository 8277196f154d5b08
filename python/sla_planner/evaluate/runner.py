"""Run every cell of a matrix: in this process, in worker processes, or on a Ray cluster.

Cells are independent and each is deterministic given its inputs and the matrix seed, so the
records (apart from wall times) do not depend on where or in which order cells ran; they are
returned in table order. Long cells (the best-static search) are started first.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, SlaPlannerError
from .cells import CellError, CellTask, run_cell
from .matrix import Matrix

__all__ = ["Evaluation", "check_matrix", "run_matrix", "default_jobs"]

Progress = Callable[[int, int, dict[str, Any]], None]

_COST = {"static_best": 12, "planner": 4, "python": 4, "oracle": 2}


@dataclass(frozen=True)
class Evaluation:
    """Records in table order, with how the matrix ran."""

    matrix: Matrix
    records: list[dict[str, Any]]
    wall_s: float
    jobs: int
    backend: str


def default_jobs() -> int:
    """CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_matrix(matrix: Matrix) -> None:
    """Fail fast, before any replay: every profile loads, every trace opens and yields a request,
    every planner config validates and every fixed deployment fits the mode's pools."""
    from ..cli.replay import make_policy, parse_replicas
    from ..config import PlannerConfig
    from ..perf import load_profile
    from ..traces.open import open_trace
    from .workload import resolve_trace_spec

    for profile in matrix.profiles:
        for spec in {profile.spec, profile.simulated}:
            try:
                load_profile(spec)
            except SlaPlannerError as exc:
                raise ConfigError(f"profile {profile.name!r}: {exc}") from None
    for trace in matrix.traces:
        try:
            stream = open_trace(
                resolve_trace_spec(trace.spec), time_scale=trace.time_scale, rate_scale=trace.rate_scale,
                seed=matrix.seed, max_requests=trace.max_requests, max_duration_s=trace.max_duration_s,
            )
            if next(iter(stream), None) is None:
                raise ConfigError("it has no requests")
        except SlaPlannerError as exc:
            raise ConfigError(f"trace {trace.name!r}: {exc}") from None
    profile = matrix.profiles[0]
    base = {**matrix.config_dict(), "profile_results_dir": profile.spec}
    try:
        cfg = PlannerConfig.from_sources(None, env={}, overrides=base)
    except ConfigError as exc:
        raise ConfigError(f"config: {exc}") from None
    if cfg.mode not in ("disagg", "agg"):
        raise ConfigError(f"config: mode: evaluate simulates 'disagg' or 'agg' deployments, not {cfg.mode!r}")
    pools = (("prefill", "decode") if cfg.mode == "disagg" else ("agg",))
    if "," in matrix.initial_replicas or matrix.initial_replicas.isdigit():
        from ..types import Pool

        parse_replicas(matrix.initial_replicas, tuple(Pool(p) for p in pools))
    models = load_profile(profile.spec)
    for policy in matrix.policies:
        where = f"policy {policy.name!r}"
        if policy.kind == "static" and len(policy.replicas or ()) != len(pools):
            want = "P,D" if len(pools) == 2 else "N"
            raise ConfigError(f"{where}: {policy.spec!r} gives {len(policy.replicas or ())} counts; mode {cfg.mode} needs {want}")
        if policy.kind in ("planner", "python"):
            try:
                policy_cfg = PlannerConfig.from_sources(None, env={}, overrides={**base, **dict(policy.overrides)})
                if policy.kind == "python":
                    make_policy(policy.spec, policy_cfg, models)
            except SlaPlannerError as exc:
                raise ConfigError(f"{where}: {exc}") from None


def _order(tasks: Sequence[CellTask]) -> list[CellTask]:
    return sorted(tasks, key=lambda t: (-_COST.get(t.cell.policy.kind, 1), t.cell.index))


def run_matrix(
    matrix: Matrix,
    *,
    jobs: int | None = None,
    ray_address: str | None = None,
    progress: Progress | None = None,
) -> Evaluation:
    """Every cell's record, in table order (see the module docstring)."""
    started = time.perf_counter()
    tasks = [CellTask(cell, matrix) for cell in matrix.cells()]
    n_jobs = max(1, jobs if jobs is not None else default_jobs())
    records: list[dict[str, Any] | None] = [None] * len(tasks)

    def done(record: dict[str, Any]) -> None:
        records[int(record["index"])] = record
        if progress is not None:
            progress(sum(r is not None for r in records), len(records), record)

    if ray_address is not None:
        backend = "ray"
        _run_ray(_order(tasks), ray_address, done)
    elif n_jobs == 1 or len(tasks) == 1:
        backend = "serial"
        for task in _order(tasks):
            done(run_cell(task))
    else:
        backend = "processes"
        _run_processes(_order(tasks), min(n_jobs, len(tasks)), done)
    assert all(r is not None for r in records)
    return Evaluation(matrix, [r for r in records if r is not None], time.perf_counter() - started, n_jobs, backend)


def _run_processes(tasks: list[CellTask], jobs: int, done: Callable[[dict[str, Any]], None]) -> None:
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    # spawn: a fresh interpreter per worker (forking a process that holds numba/BLAS threads is unsafe)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_cell, t) for t in tasks]
        try:
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for f in finished:
                    done(f.result())
        except BrokenProcessPool:
            raise SlaPlannerError("a worker process died (out of memory?); rerun with fewer --jobs") from None
        except BaseException:
            # interrupted (Ctrl-C, SIGTERM) or a cell failed: stop the workers now rather than
            # leave them running cells after this process is gone (the pending futures then
            # fail with the broken pool; cancelling them too races the pool's own thread)
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            raise


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A HOST:PORT address must accept a TCP connection (Ray itself retries for minutes)."""
    import re
    import socket

    m = re.fullmatch(r"\[?([^\]/]+?)\]?:(\d+)", address.strip())
    if m is None:  # "auto", "ray://...": left to Ray
        return
    try:
        socket.create_connection((m.group(1), int(m.group(2))), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(f"--ray {address}: cannot connect to the Ray cluster ({exc.strerror or exc})") from None


def _run_ray(tasks: list[CellTask], address: str, done: Callable[[dict[str, Any]], None]) -> None:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--ray: the ray package is not installed (pip install 'sla-planner[ray]')"
        ) from None
    _check_reachable(address)
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"--ray {address}: cannot connect to the Ray cluster ({exc})") from None
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(run_cell)
        pending = [remote.remote(t) for t in tasks]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                done(ray.get(ready[0]))
            except ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, SlaPlannerError):
                    raise CellError(str(cause)) from None
                raise
    finally:
        ray.shutdown()
