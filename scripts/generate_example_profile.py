#!/usr/bin/env python3
"""Write the bundled synthetic profile (``builtin:example``) sampled from the analytic engine model.

The samples imitate a profiling sweep:

* prefill: one request at a time over an ISL grid from 128 to 131,072 tokens; TTFT carries 1 %
  multiplicative measurement noise and throughput/GPU is ``isl / ttft / num_gpu`` of the noisy TTFT;
* decode: at 12 context lengths (1k to 128k tokens, geometric), a concurrency sweep from one
  sequence up to a full KV cache; each sample's context (1 %) and KV usage (1 %) are jittered as
  real measurements would be, ITL carries 1 % noise and throughput/GPU is
  ``batch / itl / num_gpu``.

The output is deterministic (seeded generator, values rounded to 6 significant digits).
``--check`` compares instead of writing and exits 1 when the files are out of date.

Usage: python scripts/generate_example_profile.py [--out DIR] [--seed N] [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from sla_planner.perf.analytic import (
    EXAMPLE_ENGINE,
    AnalyticEngineSpec,
    decode_point,
    prefill_point,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "python" / "sla_planner" / "data" / "profiles" / "example"
DEFAULT_SEED = 20240611

PREFILL_ISL_TOKENS = (
    128, 256, 512, 1024, 2048, 3072, 4096, 6144, 8192, 12288, 16384, 20480, 24576,
    32768, 40960, 49152, 65536, 81920, 98304, 114688, 131072,
)
DECODE_CONTEXT_LEVELS = 12
DECODE_CONTEXT_MIN_TOKENS = 1024.0
DECODE_CONTEXT_MAX_TOKENS = 131072.0
DECODE_KV_TARGETS = np.linspace(0.02, 0.98, 17)
TTFT_NOISE = 0.01
ITL_NOISE = 0.01
CONTEXT_JITTER = 0.01
KV_JITTER = 0.01
SIGNIFICANT_DIGITS = 6


def _round(values: np.ndarray) -> list[float]:
    return [float(f"{v:.{SIGNIFICANT_DIGITS}g}") for v in np.asarray(values, dtype=np.float64)]


def _noise(rng: np.random.Generator, scale: float, size: int) -> np.ndarray:
    """Multiplicative noise factors 1 + N(0, scale), clipped to 1 +/- 3 scale."""
    return 1.0 + np.clip(rng.standard_normal(size) * scale, -3.0 * scale, 3.0 * scale)


def prefill_samples(spec: AnalyticEngineSpec, rng: np.random.Generator) -> dict[str, object]:
    """The prefill arrays of the profile."""
    isl = np.array(PREFILL_ISL_TOKENS, dtype=np.float64)
    ttft_ms = np.array([prefill_point(float(n), spec)[0] for n in isl])
    ttft_ms = ttft_ms * _noise(rng, TTFT_NOISE, isl.size)
    thpt_per_gpu = isl / (ttft_ms / 1e3) / spec.num_gpu
    return {
        "prefill_isl": [int(n) for n in isl],
        "prefill_ttft": _round(ttft_ms),
        "prefill_thpt_per_gpu": _round(thpt_per_gpu),
    }


def decode_samples(spec: AnalyticEngineSpec, rng: np.random.Generator) -> dict[str, object]:
    """The scattered decode arrays of the profile (a concurrency sweep per context length)."""
    max_kv = spec.max_kv_tokens
    levels = np.geomspace(
        DECODE_CONTEXT_MIN_TOKENS, DECODE_CONTEXT_MAX_TOKENS, DECODE_CONTEXT_LEVELS
    )
    kv_usage: list[float] = []
    context: list[float] = []
    for level in levels:
        swept = np.maximum(1.0, np.round(DECODE_KV_TARGETS * max_kv / level))
        concurrency = np.unique(np.concatenate(([1.0], swept)))
        concurrency = concurrency[concurrency * level <= max_kv]
        ctx = level * _noise(rng, CONTEXT_JITTER, concurrency.size)
        kv = concurrency * ctx / max_kv * _noise(rng, KV_JITTER, concurrency.size)
        kv = np.clip(kv, 0.0, 1.0)
        kv_usage.extend(kv)
        context.extend(ctx)
    x = np.array(_round(np.array(kv_usage)))
    y = np.array(_round(np.array(context)))
    itl_ms = np.array([decode_point(float(a), float(b), spec)[0] for a, b in zip(x, y)])
    itl_ms = itl_ms * _noise(rng, ITL_NOISE, x.size)
    batch = x * max_kv / y
    thpt_per_gpu = batch / (itl_ms / 1e3) / spec.num_gpu
    return {
        "x_kv_usage": _round(x),
        "y_context_length": _round(y),
        "z_itl": _round(itl_ms),
        "z_thpt_per_gpu": _round(thpt_per_gpu),
        "max_kv_tokens": max_kv,
    }


def _dump(doc: dict[str, object]) -> str:
    """One array per line: small, stable and diff-friendly."""
    lines = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in doc.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _readme(
    spec: AnalyticEngineSpec, seed: int, prefill: dict[str, object], decode: dict[str, object]
) -> str:
    n_prefill = len(prefill["prefill_isl"])  # type: ignore[arg-type]
    n_decode = len(decode["x_kv_usage"])  # type: ignore[arg-type]
    ttft_1k, _ = prefill_point(1024.0, spec)
    ttft_32k, _ = prefill_point(32768.0, spec)
    itl_lo, _ = decode_point(0.0, 1024.0, spec)
    itl_hi, _ = decode_point(1.0, 1024.0, spec)
    return f"""# `builtin:example` profile (synthetic)

This profile is **synthetic**: it was not measured on hardware. It was sampled from the analytic
roofline engine model in `sla_planner/perf/analytic.py` (`EXAMPLE_ENGINE`) by
`scripts/generate_example_profile.py` (seed {seed}). Rerun the script to regenerate the
files, or run it with `--check` to verify they are current.

Modelled engine (`AnalyticEngineSpec` defaults):

- model: dense {spec.num_params / 1e9:.2f}B parameters, {spec.num_layers} layers,
  {spec.num_attention_heads} query heads, {spec.num_kv_heads} KV heads of dimension {spec.head_dim},
  BF16 weights and KV cache;
- hardware: {spec.num_gpu} GPU with {spec.gpu_memory_bytes / 1e9:.0f} GB HBM,
  {spec.peak_flops / 1e12:.0f} TFLOP/s dense BF16 peak, {spec.hbm_bandwidth / 1e12:.2f} TB/s;
- prefill is compute bound: fixed overhead + GEMM time linear in tokens + causal attention time
  quadratic in tokens (TTFT {ttft_1k:.0f} ms at 1k tokens, {ttft_32k / 1e3:.1f} s at 32k);
- decode is memory bound: fixed overhead + weight read + KV-cache read per token + GEMMs per
  sequence (ITL {itl_lo:.0f} ms nearly empty, {itl_hi:.0f} ms with the KV cache full of 1k-token
  sequences);
- KV capacity: `max_kv_tokens` = {spec.max_kv_tokens}.

Files:

- `prefill_raw_data.json`: {n_prefill} points, ISL 128 to 131,072 tokens (`prefill_isl` tokens,
  `prefill_ttft` ms with 1 % noise, `prefill_thpt_per_gpu` tokens/s/GPU).
- `decode_raw_data.json`: {n_decode} scattered points from a concurrency sweep at
  {DECODE_CONTEXT_LEVELS} context lengths (1k to 128k tokens) with jittered context and KV
  usage (`x_kv_usage` 0..1, `y_context_length` tokens, `z_itl` ms with 1 % noise,
  `z_thpt_per_gpu` tokens/s/GPU, `max_kv_tokens`).

Use it for demos, tests and replay experiments; profile your own deployment for real planning.
"""


def render(seed: int = DEFAULT_SEED, spec: AnalyticEngineSpec = EXAMPLE_ENGINE) -> dict[str, str]:
    """File name -> content of the example profile."""
    rng = np.random.default_rng(seed)
    prefill = prefill_samples(spec, rng)
    decode = decode_samples(spec, rng)
    return {
        "prefill_raw_data.json": _dump(prefill),
        "decode_raw_data.json": _dump(decode),
        "README.md": _readme(spec, seed, prefill, decode),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="noise generator seed")
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 when stale")
    ns = parser.parse_args(argv)
    files = render(ns.seed)
    if ns.check:
        stale = [
            name
            for name, text in files.items()
            if not (ns.out / name).is_file() or (ns.out / name).read_text() != text
        ]
        for name in stale:
            print(f"out of date: {ns.out / name}", file=sys.stderr)
        return 1 if stale else 0
    ns.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (ns.out / name).write_text(text, encoding="utf-8")
        print(f"wrote {ns.out / name} ({len(text.encode())} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
