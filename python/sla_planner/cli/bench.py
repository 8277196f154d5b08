"""``sla-planner bench``: time the compiled hot paths against their references on this machine."""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_bench_parser"]


def add_bench_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``bench``."""
    p = sub.add_parser(
        "bench",
        help="time the compiled kernels against their references and check the performance targets",
        description=(
            "Runs every case (correctness check first, then timings: the median of N repeats) and prints "
            "value, reference, speedup (times better than the reference) and whether the target is met."
        ),
    )
    p.add_argument("--quick", action="store_true", help="smaller inputs and fewer repeats (well under 20 s)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of {name, unit, value, reference_value, speedup, target, met}")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help="run only this case, or the cases under a leading part of their name such as "
                        "load_tick or kalman (repeatable)")
    p.set_defaults(func=_run_bench)


def _run_bench(ns: argparse.Namespace) -> int:
    from ..bench import FULL, QUICK, compiled_kernels, format_table, run_cases, selects
    from ..bench_cases import CASES, engine_batch
    from ..errors import ConfigError
    from ..kernels import USING_EXTENSIONS

    known = [c.name for c in CASES]
    unknown = [p for p in ns.only if not any(selects(p, name) for name in known)]
    if unknown:
        raise ConfigError(f"--only {unknown[0]!r} matches no case; cases: {', '.join(known)}")
    if not USING_EXTENSIONS:
        print("warning: SLA_PLANNER_NO_EXTENSIONS is set: timing the references against themselves",
              file=sys.stderr)

    def progress(name: str) -> None:
        if not ns.json:
            print(f"  running {name} ...", file=sys.stderr, flush=True)

    try:
        results = run_cases(CASES, compiled_kernels(), QUICK if ns.quick else FULL, ns.only, progress)
    finally:
        engine_batch.cache_clear()  # up to ~100 MB of FPM messages
    if ns.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        print(format_table(results))
        print("\nspeedup = reference / value for times and sizes, value / reference for rates; "
              "timings are the median of N repeats (a shared machine: medians, not best-of-N).")
    return 0
