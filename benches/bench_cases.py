"""Every ``sla-planner bench`` case under pytest-benchmark: one set of case definitions
(``sla_planner.bench_cases.CASES``) for both. Each case checks its kernel against the reference,
then measures both in the same run (medians of N repeats); the value, reference, ratio, target
and whether it is met go to ``extra_info`` and to the table printed at the end.

Run: ``make bench`` (or ``pytest benches/bench_cases.py --benchmark-only -s``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sla_planner.bench import FULL, BenchResult, compiled_kernels, format_table, run_cases
from sla_planner.bench_cases import CASES, engine_batch

pytest.importorskip("sla_planner._native")

_RESULTS: list[BenchResult] = []


@pytest.fixture(scope="module", autouse=True)
def _table() -> Iterator[None]:
    yield
    engine_batch.cache_clear()
    if _RESULTS:
        print("\n\n" + format_table(_RESULTS))
        print("\nvalues and references are medians of N repeats, measured in this run (shared machine)")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(benchmark: Any, case: Any) -> None:
    results: list[BenchResult] = []

    def once() -> None:
        results[:] = run_cases([case], compiled_kernels(), FULL)

    benchmark.pedantic(once, rounds=1, iterations=1)
    for r in results:
        _RESULTS.append(r)
        benchmark.extra_info.update(r.to_dict())
