"""Generating a profile directory from an engine estimator (``sla-planner profile``).

The sweep is the original profiler's rapid pre-deployment sweep, asked of an estimator instead of
a running engine:

* prefill: one request at a time at ISL ``100, 100 + s, ...`` below ``isl_max - 512`` with
  ``s = (isl_max - 612) // prefill_granularity`` (16 by default); TTFT in ms and throughput per
  GPU ``isl / ttft_s / num_gpu``;
* decode: input lengths ``100, 100 + s, ...`` below ``context_max - 500`` with
  ``s = (context_max - 500) // decode_granularity`` (6 by default), output length 500, so the
  mean context is ``isl + 250``; at each, ``decode_granularity`` concurrencies from 1 to
  ``min(max_kv_tokens // (isl + 500), 2000, max_num_seqs)``; KV usage is
  ``context * concurrency / max_kv_tokens``, ITL one decode step (ms), throughput per GPU
  ``concurrency / itl_s / num_gpu``.

Checks before anything is written: TTFT must rise with ISL, and ITL with concurrency at each
context and with context at one sequence. A fall larger than ``monotone_tolerance`` (relative)
refuses the profile unless ``allow_non_monotone``; any fall over 0.5% is a warning. A decode step
resting for more than 20% of its latency on modelled rather than measured data (estimator's
``modelled_share``) is a warning. Warnings are printed and kept in ``profile_metadata.json``.

Output (the layout :func:`sla_planner.perf.load_profile` reads):
``selected_prefill_interpolation/raw_data.npz``, ``selected_decode_interpolation/raw_data.npz``,
``profile_metadata.json`` (source, settings, checks, the command that regenerates it) and a
short ``README.md``. Files are written to a fresh directory beside ``out`` and moved into place
at the end: a failed run leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .. import __version__
from ..errors import ProfileGenerationError
from .analytic import AnalyticEngineSpec, decode_iteration_time_s, prefill_time_s
from .profile_data import DECODE_NPZ, PREFILL_NPZ

__all__ = [
    "EngineEstimator",
    "AnalyticEstimator",
    "SweepSettings",
    "GeneratedProfile",
    "prefill_isl_grid",
    "decode_sweep_grid",
    "generate_profile",
    "write_profile",
    "METADATA_FILE",
]

METADATA_FILE = "profile_metadata.json"
DECODE_OSL = 500
DECODE_MAX_CONCURRENCY = 2000
WARN_DROP = 0.005
WARN_MODELLED_SHARE = 0.2


class EngineEstimator(Protocol):
    """What the sweep asks of an engine (aiconfigurator-core, the analytic model, ...)."""

    num_gpu: int
    max_kv_tokens: int

    def prefill_ttft_ms(self, isl: int) -> float: ...

    def decode_itl_ms(self, batch: int, context: int) -> float: ...

    def describe(self) -> dict[str, Any]: ...


class AnalyticEstimator:
    """The roofline engine of :mod:`sla_planner.perf.analytic` as an estimator."""

    def __init__(self, spec: AnalyticEngineSpec, label: str = "analytic engine") -> None:
        self.spec = spec
        self.num_gpu = spec.num_gpu
        self.max_kv_tokens = spec.max_kv_tokens
        self.label = label

    def prefill_ttft_ms(self, isl: int) -> float:
        return prefill_time_s(float(isl), self.spec) * 1e3

    def decode_itl_ms(self, batch: int, context: int) -> float:
        return decode_iteration_time_s(float(batch), float(batch) * float(context), self.spec) * 1e3

    def describe(self) -> dict[str, Any]:
        return {"source": "sla_planner.perf.analytic", "label": self.label, "spec": asdict(self.spec)}


@dataclass(frozen=True)
class SweepSettings:
    """The sweep's range and resolution, and how strict the checks are."""

    isl_max: int
    context_max: int
    max_num_seqs: int = 256
    prefill_granularity: int = 16
    decode_granularity: int = 6
    monotone_tolerance: float = 0.05
    allow_non_monotone: bool = False
    prefill_time_scale: float = 1.0
    """Multiplies every TTFT: > 1 writes a slower engine than the estimator's (a mismatched
    simulator profile; measured engines ran ~1.25x aiconfigurator's TTFT)."""
    decode_time_scale: float = 1.0
    """Multiplies every ITL (measured engines ran ~1.12x aiconfigurator's ITL)."""

    def __post_init__(self) -> None:
        if self.isl_max <= 612:
            raise ProfileGenerationError(f"--isl-max {self.isl_max}: must be > 612 tokens")
        if self.context_max <= 600:
            raise ProfileGenerationError(f"--context-max {self.context_max}: must be > 600 tokens")
        for name in ("max_num_seqs", "prefill_granularity", "decode_granularity"):
            if getattr(self, name) < 1:
                raise ProfileGenerationError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.monotone_tolerance >= 0:
            raise ProfileGenerationError("monotone_tolerance must be >= 0")
        for name in ("prefill_time_scale", "decode_time_scale"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ProfileGenerationError(f"--{name.replace('_', '-')} {value!r}: must be > 0")


def prefill_isl_grid(isl_max: int, granularity: int) -> list[int]:
    """The prefill ISLs of the rapid sweep."""
    top = isl_max - 512
    return list(range(100, top, max((top - 100) // granularity, 1)))


def decode_sweep_grid(
    context_max: int, max_kv_tokens: int, granularity: int, max_num_seqs: int
) -> list[tuple[int, int]]:
    """(context, concurrency) pairs of the rapid decode sweep."""
    points: list[tuple[int, int]] = []
    top = context_max - DECODE_OSL
    for isl in range(100, top, max(top // granularity, 1)):
        most = min(max_kv_tokens // (isl + DECODE_OSL), DECODE_MAX_CONCURRENCY, max_num_seqs)
        if most < 1:
            break
        if most < granularity:
            batches = list(range(1, most + 1))
        else:
            step = (most - 1) / (granularity - 1) if granularity > 1 else 0.0
            batches = sorted({1 + int(i * step) for i in range(granularity)})
        points.extend((isl + DECODE_OSL // 2, b) for b in batches)
    return points


@dataclass
class GeneratedProfile:
    """The arrays of one generated profile, its metadata and the checks' warnings."""

    prefill: dict[str, np.ndarray]
    decode: dict[str, np.ndarray]
    metadata: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def _worst_drop(values: list[float], labels: list[str]) -> tuple[float, str]:
    """Largest relative fall between consecutive values, and where."""
    worst, where = 0.0, ""
    for i in range(len(values) - 1):
        drop = (values[i] - values[i + 1]) / values[i] if values[i] > 0 else 0.0
        if drop > worst:
            worst = drop
            where = f"{labels[i]} ({values[i]:.4g} ms) -> {labels[i + 1]} ({values[i + 1]:.4g} ms)"
    return worst, where


def generate_profile(
    engine: EngineEstimator, sweep: SweepSettings, *, command: list[str] | None = None
) -> GeneratedProfile:
    """Run the sweep against ``engine`` and check it (see the module docstring)."""
    max_kv = int(engine.max_kv_tokens)
    isl = prefill_isl_grid(min(sweep.isl_max, max_kv), sweep.prefill_granularity)
    if len(isl) < 2:
        raise ProfileGenerationError(
            f"the prefill sweep has {len(isl)} point(s): raise --isl-max (KV capacity {max_kv})"
        )
    ttft = [engine.prefill_ttft_ms(n) * sweep.prefill_time_scale for n in isl]
    points = decode_sweep_grid(
        min(sweep.context_max, max_kv), max_kv, sweep.decode_granularity, sweep.max_num_seqs
    )
    itl = [engine.decode_itl_ms(b, c) * sweep.decode_time_scale for c, b in points]
    bad = [(what, v) for what, vs in (("TTFT", ttft), ("ITL", itl)) for v in vs if not (v > 0 and np.isfinite(v))]
    if bad:
        raise ProfileGenerationError(f"the estimator returned a non-positive {bad[0][0]} ({bad[0][1]!r})")
    contexts = sorted({c for c, _ in points})
    if len(contexts) < 2:
        raise ProfileGenerationError(
            f"the decode sweep reached {len(contexts)} context length(s): raise --context-max "
            f"(KV capacity {max_kv} tokens)"
        )

    checks: dict[str, Any] = {}
    warnings: list[str] = []
    drops = [("prefill TTFT", *_worst_drop(ttft, [f"ISL {n}" for n in isl]))]
    for ctx in contexts:
        level = [(b, v) for (c, b), v in zip(points, itl) if c == ctx]
        drops.append((f"decode ITL at context {ctx}", *_worst_drop(
            [v for _, v in level], [f"concurrency {b}" for b, _ in level])))
    single = [engine.decode_itl_ms(1, c) for c in contexts]
    drops.append(("decode ITL of one sequence", *_worst_drop(single, [f"context {c}" for c in contexts])))
    worst = max(drops, key=lambda d: d[1])
    checks["worst_relative_fall"] = round(worst[1], 6)
    checks["worst_fall_at"] = f"{worst[0]}: {worst[2]}" if worst[1] > 0 else ""
    for what, drop, where in drops:
        if drop > sweep.monotone_tolerance and not sweep.allow_non_monotone:
            raise ProfileGenerationError(
                f"{what} falls by {drop:.1%} between {where} (tolerance "
                f"{sweep.monotone_tolerance:.1%}); the estimates are not monotone, so the profile "
                "was not written. Pass --allow-non-monotone to write it anyway"
            )
        if drop > WARN_DROP:
            warnings.append(f"{what} falls by {drop:.1%} between {where}")
    modelled = getattr(engine, "modelled_share", None)
    if modelled is not None:
        share = max(modelled(max(b for c2, b in points if c2 == c), c) for c in contexts)
        checks["modelled_share_max"] = round(float(share), 4)
        if share > WARN_MODELLED_SHARE:
            warnings.append(
                f"up to {share:.0%} of a decode step rests on modelled (sol/estimated) data, not "
                "measurements: treat this profile as a rough estimate"
            )

    isl_a = np.array(isl, dtype=np.int64)
    ttft_a = np.array(ttft, dtype=np.float64)
    ctx_a = np.array([c for c, _ in points], dtype=np.float64)
    batch_a = np.array([b for _, b in points], dtype=np.float64)
    itl_a = np.array(itl, dtype=np.float64)
    prefill = {
        "prefill_isl": isl_a,
        "prefill_ttft": ttft_a,
        "prefill_thpt_per_gpu": isl_a / (ttft_a / 1e3) / engine.num_gpu,
    }
    decode = {
        "x_kv_usage": ctx_a * batch_a / max_kv,
        "y_context_length": ctx_a,
        "z_itl": itl_a,
        "z_thpt_per_gpu": batch_a / (itl_a / 1e3) / engine.num_gpu,
        "max_kv_tokens": np.array([max_kv], dtype=np.int64),
    }
    metadata = {
        "generator": "sla-planner profile",
        "sla_planner_version": __version__,
        "command": shlex.join(command) if command else None,
        "engine": engine.describe(),
        "num_gpu": engine.num_gpu,
        "max_kv_tokens": max_kv,
        "sweep": asdict(sweep),
        "points": {"prefill": len(isl), "decode": len(points)},
        "checks": checks,
        "warnings": warnings,
    }
    return GeneratedProfile(prefill=prefill, decode=decode, metadata=metadata, warnings=warnings)


def _readme(profile: GeneratedProfile) -> str:
    m = profile.metadata
    e = m["engine"]
    title = " ".join(str(e.get(k, "")) for k in ("model", "system", "backend")).strip() or e.get("label", "")
    p, d = profile.prefill, profile.decode
    lines = [
        f"# Generated profile: {title}",
        "",
        f"Estimated by {e.get('source')} {e.get('source_version', '')}, not measured on hardware,",
        "with `sla-planner profile` (the original profiler's rapid sweep). Regenerate with:",
        "",
        f"    {m['command']}" if m.get("command") else "    (generated through the Python API)",
        "",
        f"- GPUs per engine: {m['num_gpu']}; KV capacity: {m['max_kv_tokens']} tokens",
        f"- prefill: {p['prefill_isl'].size} points, ISL {int(p['prefill_isl'][0])} to "
        f"{int(p['prefill_isl'][-1])} tokens (TTFT {p['prefill_ttft'][0]:.1f} to "
        f"{p['prefill_ttft'][-1]:.0f} ms)",
        f"- decode: {d['z_itl'].size} points, context {int(d['y_context_length'].min())} to "
        f"{int(d['y_context_length'].max())} tokens (ITL {d['z_itl'].min():.1f} to "
        f"{d['z_itl'].max():.1f} ms)",
        "- past these ranges the models extrapolate along fitted cost curves (README, \"Profiles\")",
        *_scaled_note(m["sweep"]),
        "",
        "Estimates from a performance database are optimistic against a real engine (no fixed",
        "serving overhead); evaluate with slower simulated engines too (`--sim-time-scale`).",
        f"Settings, checks and warnings: `{METADATA_FILE}`.",
        "",
    ]
    return "\n".join(lines)


def _scaled_note(sweep: dict[str, Any]) -> list[str]:
    scales = (sweep["prefill_time_scale"], sweep["decode_time_scale"])
    if scales == (1.0, 1.0):
        return []
    return [f"- deliberately slower than the estimates: TTFT x{scales[0]:g}, ITL x{scales[1]:g}"]


def write_profile(profile: GeneratedProfile, out: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Write the profile directory ``out`` (see the module docstring); return its path."""
    target = Path(out)
    if target.exists() and not target.is_dir():
        raise ProfileGenerationError(f"--out {str(target)!r} exists and is not a directory")
    names = [Path(*PREFILL_NPZ), Path(*DECODE_NPZ), Path(METADATA_FILE), Path("README.md")]
    if target.is_dir() and any((target / n).exists() for n in names) and not force:
        raise ProfileGenerationError(
            f"--out {str(target)!r} already holds a profile; pass --force to replace it"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    umask = os.umask(0o022)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private; the profile is not
    try:
        for rel, arrays in ((Path(*PREFILL_NPZ), profile.prefill), (Path(*DECODE_NPZ), profile.decode)):
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            with open(staging / rel, "wb") as fh:
                np.savez(fh, **arrays)  # type: ignore[arg-type]
        (staging / METADATA_FILE).write_text(
            json.dumps(profile.metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        (staging / "README.md").write_text(_readme(profile), encoding="utf-8")
        if not target.exists():
            os.replace(staging, target)
            return target
        for rel in names:
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, target / rel)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
