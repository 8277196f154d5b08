"""One cell of the matrix: build the policy, replay the trace, and measure the result.

:func:`run_cell` is what worker processes (and Ray tasks) execute; it takes a picklable
:class:`CellTask` and returns a JSON-safe record. Everything a cell derives from its trace, profile
and simulator variant (the trace's arrays, the models, the oracle, the static sizes) is built
once per process and reused by the other cells of that group.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, SlaPlannerError
from ..types import Pool
from .best_static import search_best_static
from .matrix import Cell, Matrix
from .oracle import OraclePolicy, OracleSchedule, hindsight_oracle
from .workload import Workload, load_workload, static_sizes

__all__ = ["CellTask", "CellError", "run_cell", "format_replicas", "ORACLE_TICK_S"]

ORACLE_TICK_S = 10.0
"""How often the oracle's schedule is re-applied in its replay (s)."""

_POOL_LETTER = {Pool.PREFILL: "P", Pool.DECODE: "D", Pool.AGG: "A"}


class CellError(SlaPlannerError):
    """A cell could not run; the message names the cell and the cause."""


@dataclass(frozen=True)
class CellTask:
    """A cell and the matrix settings it runs with."""

    cell: Cell
    matrix: Matrix


def format_replicas(replicas: dict[Pool, int] | dict[str, int]) -> str:
    """``{prefill: 4, decode: 2}`` -> ``4P+2D``."""
    parts = []
    for pool, n in replicas.items():
        p = Pool(pool) if isinstance(pool, str) else pool
        parts.append(f"{n}{_POOL_LETTER[p]}")
    return "+".join(parts)


@dataclass
class _Group:
    """What the cells of one (trace, profile, simulator variant) share."""

    cfg: Any
    models: Any
    sim_models: Any
    sim_perf: Any
    settings: Any
    caps: Any
    work: Workload
    interval_s: float
    oracle: OracleSchedule
    statics: dict[str, dict[Pool, int]]


_GROUPS: dict[str, _Group] = {}


def _config(matrix: Matrix, cell: Cell, overrides: dict[str, Any] | None = None) -> Any:
    from ..config import PlannerConfig

    data = {**matrix.config_dict(), **(overrides or {}), "profile_results_dir": cell.profile.spec}
    try:
        return PlannerConfig.from_sources(None, env={}, overrides=data)
    except ConfigError as exc:
        raise ConfigError(f"policy {cell.policy.name!r}: {exc}") from None


def _group(task: CellTask) -> _Group:
    from ..core.load import EngineCapabilities
    from ..perf import adopt_profile_gpus, load_profile
    from ..sim.cluster import SimPerf, SimSettings

    cell, matrix = task.cell, task.matrix
    key = json.dumps(
        [cell.group, cell.trace.__dict__, cell.profile.__dict__, matrix.config_dict(), matrix.seed,
         matrix.sim.__dict__, matrix.oracle_interval_s],
        default=str,
        sort_keys=True,
    )
    if key in _GROUPS:
        return _GROUPS[key]
    cfg = _config(matrix, cell)
    if cfg.mode not in ("disagg", "agg"):
        raise ConfigError(f"mode: evaluate simulates 'disagg' or 'agg' deployments, not {cfg.mode!r}")
    models = load_profile(cell.profile.spec)
    cfg = adopt_profile_gpus(cfg, models)
    sim_models = models if cell.profile.sim_spec is None else load_profile(cell.profile.sim_spec)
    if sim_models.prefill is None or sim_models.decode is None:  # load_profile reads both sides
        raise SlaPlannerError(f"profile {cell.profile.simulated}: the simulator needs prefill and decode data")
    knobs = matrix.sim
    settings = SimSettings(
        mode=cfg.mode,
        max_num_batched_tokens=knobs.max_num_batched_tokens,
        max_num_seqs=knobs.max_num_seqs,
        startup_delay_s=cell.startup_delay_s,
        transfer_s=knobs.transfer_s,
        drain_timeout_s=knobs.drain_timeout_s,
        time_scale=cell.sim_time_scale,
        prefill_engine_num_gpu=cfg.prefill_engine_num_gpu,
        decode_engine_num_gpu=cfg.decode_engine_num_gpu,
        seed=matrix.seed,
    )
    sim_perf = SimPerf.from_models(sim_models.prefill, sim_models.decode)
    work = load_workload(cell.trace, matrix.seed)
    interval = float(matrix.oracle_interval_s or cfg.throughput_adjustment_interval)
    oracle = hindsight_oracle(
        work, sim_perf, settings, sim_models.decode, cfg.ttft, cfg.itl, interval, cfg.min_endpoint
    )
    caps = EngineCapabilities(
        max_num_batched_tokens=knobs.max_num_batched_tokens,
        context_length=knobs.engine_context_length,
        max_kv_tokens=int(sim_models.decode.max_kv_tokens),
    )
    statics = static_sizes(work, cfg, models, float(cfg.throughput_adjustment_interval))
    group = _Group(cfg, models, sim_models, sim_perf, settings, caps, work, interval, oracle, statics)
    if len(_GROUPS) >= 16:
        _GROUPS.clear()
    _GROUPS[key] = group
    return group


def _replay(g: _Group, task: CellTask, policy: Any, initial: dict[Pool, int]) -> dict[str, Any]:
    """Replay ``policy`` from ``initial`` and measure it."""
    from ..replay import ReplayOptions, run_replay
    from ..sim.cluster import SimCluster

    cluster = SimCluster(g.sim_perf, g.settings, initial)
    options = ReplayOptions(
        ttft_target_ms=g.cfg.ttft, itl_target_ms=g.cfg.itl, drain_s=task.matrix.sim.drain_s
    )
    result = run_replay(g.work.requests(), policy, cluster, options)
    return _measure(g, result.summary, result.ticks, initial)


def _gpus(g: _Group, replicas: dict[Any, int]) -> int:
    return sum(g.settings.engine_num_gpu(Pool(p)) * int(n) for p, n in replicas.items())


def _measure(
    g: _Group, summary: dict[str, Any], ticks: list[dict[str, Any]], initial: dict[Pool, int]
) -> dict[str, Any]:
    requested = [_gpus(g, initial)] + [_gpus(g, t["targets"]) for t in ticks if t["targets"]]
    in_use = [_gpus(g, initial)] + [int(t["gpus"]) for t in ticks]
    hours = summary["sim_duration_s"] / 3600.0
    budget = int(g.cfg.max_gpu_budget)
    outcomes = summary.get("outcomes", {})
    peak_requested = max(requested)
    return {
        "requests": summary["requests_total"],
        "requests_infeasible": summary.get("requests_infeasible"),
        "sla_attainment": summary["sla_attainment"],
        "sla_attainment_feasible": summary.get("sla_attainment_feasible"),
        "ttft_attainment": summary["ttft_sla_attainment"],
        "itl_attainment": summary["itl_sla_attainment"],
        "ttft_p99_ms": summary["ttft_p99_ms"],
        "itl_p99_ms": summary["itl_p99_ms"],
        "gpu_hours": summary["gpu_hours"],
        "scale_events": summary["scale_events"],
        "scale_events_per_hour": summary["scale_events"] / hours if hours > 0 else None,
        "requests_failed": summary["requests_failed"],
        "requests_failed_scale_down": summary.get(
            "requests_failed_scale_down", outcomes.get("failed_engine_removed")
        ),
        "requests_unfinished": outcomes.get("unfinished"),
        "peak_gpus_requested": peak_requested,
        "peak_gpus_in_use": max(in_use),
        "gpu_budget": budget,
        # draining engines still hold their GPUs: the budget counts them too
        "within_budget": budget < 0 or max(peak_requested, max(in_use)) <= budget,
        "initial_replicas": format_replicas(initial),
        "ttft_target_ms": g.cfg.ttft,
        "itl_target_ms": g.cfg.itl,
        "sim_duration_s": summary["sim_duration_s"],
        "replay_wall_s": summary["wall_time_s"],
    }


def _static(g: _Group, task: CellTask, replicas: dict[Pool, int]) -> dict[str, Any]:
    from ..core.planner import StaticPolicy

    policy = StaticPolicy(replicas, float(g.cfg.throughput_adjustment_interval))
    record = _replay(g, task, policy, dict(replicas))
    record["deployment"] = format_replicas(replicas)
    return record


def _pools(g: _Group) -> tuple[Pool, ...]:
    return tuple(g.settings.pools())


def _best_static(g: _Group, task: CellTask) -> dict[str, Any]:
    pools = _pools(g)
    records: dict[tuple[int, ...], dict[str, Any]] = {}

    def evaluate(r: tuple[int, ...]) -> float:
        records[r] = _static(g, task, dict(zip(pools, r)))
        value = records[r]["sla_attainment_feasible"]
        return 1.0 if value is None else float(value)  # no feasible request: nothing to miss

    oracle_peak = g.oracle.peak()
    start = tuple(max(2 * oracle_peak[p], g.statics["peak"][p]) for p in pools)
    budget = int(g.cfg.max_gpu_budget)
    target = task.cell.policy.target or task.matrix.best_static_target
    found = search_best_static(
        evaluate,
        start,
        tuple(g.settings.engine_num_gpu(p) for p in pools),
        target,
        min_replicas=int(g.cfg.min_endpoint),
        max_gpus=budget if budget > 0 else None,
        max_replays=task.matrix.best_static_max_replays,
    )
    record = dict(records[found.replicas])
    record["replays"] = found.replays
    record["best_static"] = {
        "target": found.target,
        "met": found.met,
        "exhausted": found.exhausted,
        "replays": found.replays,
        "probes": [
            {"replicas": format_replicas(dict(zip(pools, p.replicas))), "attainment": p.attainment,
             "phase": p.phase}
            for p in found.probes
        ],
    }
    return record


def _initial(g: _Group, task: CellTask) -> dict[Pool, int]:
    spec = task.matrix.initial_replicas
    if spec == "static:mean":
        return dict(g.statics["mean"])
    if spec == "static:peak":
        return dict(g.statics["peak"])
    from ..cli.replay import parse_replicas

    return parse_replicas(spec, _pools(g))


def _run(task: CellTask) -> dict[str, Any]:
    from ..cli.replay import make_policy

    started = time.perf_counter()
    cell = task.cell
    g = _group(task)
    kind = cell.policy.kind
    record: dict[str, Any]
    if kind == "static":
        replicas = cell.policy.replicas or ()
        pools = _pools(g)
        if len(replicas) != len(pools):
            raise ConfigError(
                f"policy {cell.policy.name!r}: {len(replicas)} replica counts for pools "
                f"{[p.value for p in pools]}"
            )
        record = _static(g, task, dict(zip(pools, replicas)))
    elif kind in ("static_mean", "static_peak"):
        record = _static(g, task, g.statics["mean" if kind == "static_mean" else "peak"])
    elif kind == "static_best":
        record = _best_static(g, task)
    elif kind == "oracle":
        policy = OraclePolicy(g.oracle, cell.startup_delay_s, min(ORACLE_TICK_S, g.interval_s))
        record = _replay(g, task, policy, policy.targets_at(0.0))
        record["deployment"] = "schedule"
    else:
        cfg = _config(task.matrix, cell, dict(cell.policy.overrides))
        spec = "planner" if kind == "planner" else cell.policy.spec
        policy = make_policy(spec, cfg, g.models, g.caps)
        record = _replay(g, task, policy, _initial(g, task))
        record["deployment"] = "dynamic"
    record.setdefault("replays", 1)
    oracle_hours = g.oracle.gpu_hours
    record["oracle_gpu_hours"] = oracle_hours
    record["gpu_hours_vs_oracle"] = record["gpu_hours"] / oracle_hours if oracle_hours > 0 else None
    record["wall_s"] = time.perf_counter() - started
    identity = {
        "index": cell.index,
        "trace": cell.trace.name,
        "profile": cell.profile.name,
        "sim_time_scale": cell.sim_time_scale,
        "startup_delay_s": cell.startup_delay_s,
        "policy": cell.policy.name,
        "policy_spec": cell.policy.spec,
    }
    return _finite({**identity, **record})


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def run_cell(task: CellTask) -> dict[str, Any]:
    """Run one cell; a SlaPlannerError becomes a CellError naming the cell."""
    try:
        return _run(task)
    except SlaPlannerError as exc:
        raise CellError(f"cell {task.cell.label}: {exc}") from None
