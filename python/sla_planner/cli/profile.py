"""`sla-planner profile`: a profile directory estimated by aiconfigurator-core (optional extra)."""

from __future__ import annotations

import argparse
import sys

from ._common import count, float_in, output_path

__all__ = ["add_profile_parser"]


def _positive(text: str) -> int:
    value = count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text!r}")
    return value


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def add_profile_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``profile``."""
    p = sub.add_parser(
        "profile",
        help="generate a profile directory from aiconfigurator-core's performance database",
        description=(
            "Estimate a prefill/decode profile (the original profiler's rapid sweep) for one engine "
            "from aiconfigurator-core and write it in the profiler's layout. Needs the optional "
            "extra: pip install 'sla-planner[aiconfigurator]'."
        ),
    )
    p.add_argument("--system", help="GPU system, e.g. h100_sxm (see --list)")
    p.add_argument("--model", help="model, e.g. Qwen3-8B or Qwen/Qwen3-8B, or a directory with config.json")
    p.add_argument("--backend", default="vllm", help="serving engine: vllm, sglang or trtllm (default vllm)")
    p.add_argument("--backend-version", default=None, help="database version (default: the latest)")
    p.add_argument("--tp", type=_positive, default=1, help="tensor-parallel GPUs per engine (default 1)")
    p.add_argument("--gemm-quant", default=None, help="GEMM quantisation, e.g. bfloat16, fp8 (default: the checkpoint's)")
    p.add_argument("--kv-cache-dtype", default=None, help="KV-cache dtype: bfloat16, fp8, int8 (default: the checkpoint's)")
    p.add_argument("--max-num-seqs", type=_positive, default=256, help="engine's max running sequences (default 256)")
    p.add_argument("--max-num-batched-tokens", type=_positive, default=8192, help="engine's token budget per step (default 8192)")
    p.add_argument("--gpu-memory-utilization", type=_fraction, default=0.9, help="memory share the engine may use (default 0.9)")
    p.add_argument("--isl-max", type=_positive, default=None, help="longest prompt profiled (default: the model's max context)")
    p.add_argument("--context-max", type=_positive, default=None, help="longest decode context profiled (default: --isl-max)")
    p.add_argument("--prefill-granularity", type=_positive, default=16, help="prefill ISL steps (default 16)")
    p.add_argument("--decode-granularity", type=_positive, default=6, help="decode context and concurrency steps (default 6)")
    p.add_argument("--monotone-tolerance", type=float_in(0.0, 1.0), default=0.05, help="largest relative fall of TTFT/ITL accepted (default 0.05)")
    p.add_argument("--prefill-time-scale", type=_scale, default=1.0,
                   help="multiply every TTFT: >1 writes a slower engine, e.g. for --sim-profile-results-dir (default 1)")
    p.add_argument("--decode-time-scale", type=_scale, default=1.0,
                   help="multiply every ITL: >1 writes a slower engine (default 1)")
    p.add_argument("--allow-non-monotone", action="store_true", help="write the profile even when the estimates fall")
    p.add_argument("--force", action="store_true", help="replace a profile already in --out")
    p.add_argument("--out", type=output_path, help="output directory")
    p.add_argument("--list", action="store_true", help="list systems, backends and models, then exit")
    p.set_defaults(func=_run_profile)


def _run_profile(ns: argparse.Namespace) -> int:
    from ..errors import ProfileGenerationError
    from ..perf import aiconfigurator_source as aic
    from ..perf.generate import SweepSettings, generate_profile, write_profile

    if ns.list:
        for system, backends in aic.supported_systems().items():
            listed = "; ".join(f"{b} {', '.join(v)}" for b, v in sorted(backends.items()))
            print(f"{system}: {listed}")
        print("models: " + ", ".join(aic.bundled_models()))
        return 0
    missing = [flag for flag, value in (("--system", ns.system), ("--model", ns.model), ("--out", ns.out)) if not value]
    if missing:
        raise ProfileGenerationError(f"missing {', '.join(missing)} (see sla-planner profile --help)")
    choice = aic.EngineChoice(
        system=ns.system, model=ns.model, backend=ns.backend, tp=ns.tp,
        backend_version=ns.backend_version, gemm_quant=ns.gemm_quant,
        kv_cache_dtype=ns.kv_cache_dtype, max_num_seqs=ns.max_num_seqs,
        max_num_batched_tokens=ns.max_num_batched_tokens,
        gpu_memory_utilization=ns.gpu_memory_utilization,
    )
    engine = aic.AiconfiguratorEngine(choice)
    isl_max = ns.isl_max or engine.max_context_length or 16384
    sweep = SweepSettings(
        isl_max=isl_max, context_max=ns.context_max or isl_max, max_num_seqs=ns.max_num_seqs,
        prefill_granularity=ns.prefill_granularity, decode_granularity=ns.decode_granularity,
        monotone_tolerance=ns.monotone_tolerance, allow_non_monotone=ns.allow_non_monotone,
        prefill_time_scale=ns.prefill_time_scale, decode_time_scale=ns.decode_time_scale,
    )
    profile = generate_profile(engine, sweep, command=_command(ns, isl_max, engine.backend_version))
    for warning in profile.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    out = write_profile(profile, ns.out, force=ns.force)
    m = profile.metadata
    print(
        f"wrote {out}: {engine.label}, {m['points']['prefill']} prefill and "
        f"{m['points']['decode']} decode points, KV capacity {m['max_kv_tokens']} tokens"
    )
    return 0


def _command(ns: argparse.Namespace, isl_max: int, backend_version: str) -> list[str]:
    """The command line that regenerates this profile (every setting explicit)."""
    args = [
        "sla-planner", "profile", "--system", ns.system, "--model", ns.model, "--backend", ns.backend,
        "--backend-version", backend_version, "--tp", str(ns.tp), "--max-num-seqs", str(ns.max_num_seqs),
        "--max-num-batched-tokens", str(ns.max_num_batched_tokens),
        "--gpu-memory-utilization", str(ns.gpu_memory_utilization),
        "--isl-max", str(isl_max), "--context-max", str(ns.context_max or isl_max),
        "--prefill-granularity", str(ns.prefill_granularity),
        "--decode-granularity", str(ns.decode_granularity),
    ]
    for flag, value in (("--gemm-quant", ns.gemm_quant), ("--kv-cache-dtype", ns.kv_cache_dtype)):
        if value is not None:
            args += [flag, value]
    for flag, scale in (("--prefill-time-scale", ns.prefill_time_scale), ("--decode-time-scale", ns.decode_time_scale)):
        if scale != 1.0:
            args += [flag, repr(scale)]
    if ns.monotone_tolerance != 0.05:
        args += ["--monotone-tolerance", repr(ns.monotone_tolerance)]
    if ns.allow_non_monotone:
        args.append("--allow-non-monotone")
    return args + ["--out", "DIR"]
