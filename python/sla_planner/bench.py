"""``sla-planner bench``: the compiled hot paths timed side by side with their references.

A dependency-free harness: :func:`median_seconds` calls a function ``number`` times per repeat
with :func:`time.perf_counter` around the loop and reports the **median** repeat: on a shared
machine it is what a user sees on a typical call, where the minimum would report the luckiest
one. ``benches/bench_cases.py`` runs the same cases under pytest-benchmark (``make bench``).

Every case first checks that the kernel under test agrees with its reference on the same input
(:class:`~sla_planner.errors.KernelMismatchError` otherwise), then times both in the same run.

``speedup`` always means "times better than the reference": ``reference / value`` for times and
sizes (lower is better), ``value / reference`` for rates (higher is better). ``met``: a rate is
at least its target, a time or size is under it (``None`` when a case has no target).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .errors import KernelMismatchError

__all__ = [
    "BenchSizes",
    "QUICK",
    "FULL",
    "Kernels",
    "compiled_kernels",
    "Measurement",
    "BenchCase",
    "BenchResult",
    "median_seconds",
    "check_close",
    "check_equal",
    "run_cases",
    "selects",
    "format_table",
]


@dataclass(frozen=True)
class BenchSizes:
    """Input sizes and repeat counts of one run (``QUICK`` or ``FULL``)."""

    repeat: int
    fpm_messages: int
    fpm_reference_messages: int
    regression_samples: int
    regression_reference_samples: int
    kalman_series: int
    interp_queries: int
    scalar_calls: int
    load_tick_reference_ranks: tuple[int, ...]
    memory_engines: int
    memory_reference_engines: int
    zmq_messages: int = 20_000
    zmq_reference_messages: int = 500
    full: bool = False
    """Also run the cases marked ``full_only`` (minutes, not seconds)."""


QUICK = BenchSizes(
    repeat=3, fpm_messages=50_000, fpm_reference_messages=2_000, regression_samples=50_000,
    regression_reference_samples=5_000, kalman_series=10_000, interp_queries=100_000, scalar_calls=2_000,
    load_tick_reference_ranks=(100, 1_000),
    memory_engines=10_000, memory_reference_engines=500,
    zmq_messages=4_000, zmq_reference_messages=200,
)
FULL = BenchSizes(
    repeat=15, fpm_messages=200_000, fpm_reference_messages=10_000, regression_samples=200_000,
    regression_reference_samples=20_000, kalman_series=10_000, interp_queries=1_000_000, scalar_calls=20_000,
    load_tick_reference_ranks=(100, 1_000),
    memory_engines=100_000, memory_reference_engines=2_000,
    zmq_messages=50_000, zmq_reference_messages=2_000, full=True,
)


@dataclass(frozen=True)
class Kernels:
    """The implementations under test; tests swap one for a wrong twin to exercise the checks."""

    FpmIngestor: Any
    SlidingRegression: Any
    KalmanBank: Any
    grid2d_eval: Callable[..., Any]
    grid2d_eval_scalar: Callable[..., Any]
    best_under_target: Callable[..., Any]
    DecodeGridSearch: Any


def compiled_kernels() -> Kernels:
    """What ``sla_planner.kernels`` selected (the references when ``SLA_PLANNER_NO_EXTENSIONS=1``)."""
    from . import kernels as k

    return Kernels(
        FpmIngestor=k.FpmIngestor, SlidingRegression=k.SlidingRegression, KalmanBank=k.KalmanBank,
        grid2d_eval=k.grid2d_eval, grid2d_eval_scalar=k.grid2d_eval_scalar, best_under_target=k.best_under_target,
        DecodeGridSearch=k.DecodeGridSearch,
    )


@dataclass(frozen=True)
class Measurement:
    """One case's numbers, in the case's unit; ``reference_value`` None when not measured."""

    value: float
    reference_value: float | None


@dataclass(frozen=True)
class BenchCase:
    """A named measurement: ``run`` checks correctness, then returns kernel and reference numbers."""

    name: str
    unit: str
    higher_is_better: bool
    target: float | None
    run: Callable[[Kernels, BenchSizes], Measurement]
    description: str = ""
    full_only: bool = False


@dataclass(frozen=True)
class BenchResult:
    """One output row (``--json`` prints ``to_dict()`` of each)."""

    name: str
    unit: str
    value: float
    reference_value: float | None
    speedup: float | None
    target: float | None
    met: bool | None
    higher_is_better: bool = field(default=False, compare=False)
    description: str = field(default="", compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON fields: name, unit, value, reference_value, speedup, target, met."""
        d = asdict(self)
        del d["higher_is_better"], d["description"]
        return d


def median_seconds(
    fn: Callable[[], Any], repeat: int, number: int = 1, setup: Callable[[], Any] | None = None
) -> float:
    """Seconds per call of ``fn``: the median of ``repeat`` timed loops of ``number`` calls each.

    ``setup`` (untimed) runs before every loop, e.g. to feed fresh data.
    """
    if repeat < 1 or number < 1:
        raise ValueError(f"repeat and number must be >= 1, got {repeat} and {number}")
    loops: list[float] = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        start = time.perf_counter()
        for _ in range(number):
            fn()
        loops.append((time.perf_counter() - start) / number)
    return statistics.median(loops)


def check_equal(case: str, what: str, got: Any, want: Any) -> None:
    """Raise :class:`KernelMismatchError` unless ``got`` equals ``want`` exactly (arrays: same
    shape and values, NaN equal to NaN)."""
    check_close(case, what, got, want, rtol=0.0)


def check_close(case: str, what: str, got: Any, want: Any, rtol: float = 1e-9) -> None:
    """Raise :class:`KernelMismatchError` unless ``got`` and ``want`` agree to ``rtol``."""
    g, w = np.asarray(got), np.asarray(want)
    if g.shape != w.shape:
        raise KernelMismatchError(f"{case}: {what} has shape {g.shape}, reference {w.shape}")
    if g.dtype.kind in "fciub" and w.dtype.kind in "fciub":
        gf, wf = g.astype(np.float64, copy=False), w.astype(np.float64, copy=False)
        ok = np.isclose(gf, wf, rtol=rtol, atol=0.0, equal_nan=True) | (gf == wf)
    else:
        ok = g == w
    ok = np.asarray(ok, dtype=bool)
    if not ok.all():
        flat = int(np.flatnonzero(~ok.ravel())[0])
        i = tuple(int(j) for j in np.unravel_index(flat, ok.shape))
        where = f"[{', '.join(map(str, i))}]" if i else ""
        raise KernelMismatchError(
            f"{case}: {what}{where} = {g[i].item()!r}, reference {w[i].item()!r} (rtol {rtol:g})"
        )


def _score(case: BenchCase, m: Measurement) -> BenchResult:
    ref, value = m.reference_value, m.value
    speedup: float | None = None
    if ref is not None and value > 0 and ref > 0:
        speedup = value / ref if case.higher_is_better else ref / value
    met: bool | None = None
    if case.target is not None:
        met = value >= case.target if case.higher_is_better else value < case.target
    return BenchResult(case.name, case.unit, value, ref, speedup, case.target, met,
                       case.higher_is_better, case.description)


def run_cases(
    cases: Sequence[BenchCase],
    kernels: Kernels,
    sizes: BenchSizes,
    only: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
) -> list[BenchResult]:
    """Run the cases in order; with ``only``, just those selected by :func:`selects`."""
    results: list[BenchResult] = []
    for case in cases:
        if only and not any(selects(pattern, case.name) for pattern in only):
            continue
        if case.full_only and not sizes.full:
            continue
        if progress is not None:
            progress(case.name)
        results.append(_score(case, case.run(kernels, sizes)))
    return results


def selects(pattern: str, name: str) -> bool:
    """``pattern`` is the case name or its leading words: "load_tick" selects "load_tick_100"
    (and every other load tick), "load_tick_100" selects only that case."""
    return name == pattern or name.startswith(pattern + "_")


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    if x == 0 or 1e-3 <= abs(x) < 1e6:
        return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"
    return f"{x:.3g}"


def format_table(results: Sequence[BenchResult]) -> str:
    """A plain-text table: name, value, unit, reference, speedup, target, met."""
    head = ("case", "value", "unit", "reference", "speedup", "target", "met")
    rows = [
        (
            r.name, _num(r.value), r.unit, _num(r.reference_value),
            "-" if r.speedup is None else f"{r.speedup:.1f}x",
            "-" if r.target is None else (">= " if r.higher_is_better else "< ") + _num(r.target),
            "-" if r.met is None else ("yes" if r.met else "NO"),
        )
        for r in results
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    right = {1, 3, 4, 5}

    def line(cells: Sequence[str]) -> str:
        padded = (c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        return "  ".join(padded).rstrip()

    return "\n".join([line(head), line(["-" * w for w in widths]), *(line(r) for r in rows)])
