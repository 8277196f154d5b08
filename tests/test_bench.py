"""``sla-planner bench``: documented output fields, correctness checks that catch a wrong kernel,
speedup / target semantics. No timing assertions: timings belong in benches/."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np
import pytest

from sla_planner import bench
from sla_planner.bench import BenchCase, BenchResult, Measurement, check_close, check_equal, run_cases
from sla_planner.bench_cases import CASES
from sla_planner.cli import main
from sla_planner.errors import KernelMismatchError
from sla_planner.kernels import USING_EXTENSIONS, interp_ref
from sla_planner.kernels.fpm_ingest_ref import FpmIngestor as FpmIngestorRef
from sla_planner.kernels.kalman_ref import KalmanBankRef
from sla_planner.kernels.regression_ref import SlidingRegression as SlidingRegressionRef

FIELDS = {"name", "unit", "value", "reference_value", "speedup", "target", "met"}
# smallest sizes that still exercise every code path (the test checks behaviour, not speed)
TINY = dataclasses.replace(
    bench.QUICK, repeat=1, fpm_messages=2_048, fpm_reference_messages=300, regression_samples=2_000,
    regression_reference_samples=500, kalman_series=100, interp_queries=1_000, scalar_calls=10,
    memory_engines=64, memory_reference_engines=16,
)


@pytest.fixture(scope="module")
def quick_json() -> list[dict[str, Any]]:
    """`sla-planner bench --quick --json` run once, in-process."""
    import contextlib
    import io

    if not USING_EXTENSIONS:
        pytest.skip("with SLA_PLANNER_NO_EXTENSIONS the quick run would time Python tables at 100k engines")

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["bench", "--quick", "--json"])
    assert code == 0
    data = json.loads(out.getvalue())
    assert isinstance(data, list)
    return data


def test_quick_json_has_every_case_with_the_documented_fields(quick_json: list[dict[str, Any]]) -> None:
    assert [row["name"] for row in quick_json] == [c.name for c in CASES if not c.full_only]
    for row in quick_json:
        assert set(row) == FIELDS, row["name"]
        assert isinstance(row["unit"], str) and row["unit"]
        assert isinstance(row["value"], float) and math.isfinite(row["value"]) and row["value"] > 0


def test_quick_json_references_only_where_measured(quick_json: list[dict[str, Any]]) -> None:
    rows = {row["name"]: row for row in quick_json}
    for name in ("load_tick_10000", "load_tick_80000", "load_tick_100000"):
        assert rows[name]["reference_value"] is None and rows[name]["speedup"] is None
    for name in ("load_tick_100", "load_tick_1000", "fpm_ingest", "kalman_bank", "interp_2d_batched"):
        assert rows[name]["reference_value"] > 0 and rows[name]["speedup"] > 0
    assert rows["load_tick_80000"]["target"] == 5.0 and isinstance(rows["load_tick_80000"]["met"], bool)
    assert rows["memory_per_engine"]["target"] is None and rows["memory_per_engine"]["met"] is None


def test_table_output_lists_the_selected_cases(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--quick", "--only", "interp_2d_single", "--only", "best_throughput"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["case", "value", "unit", "reference", "speedup", "target", "met"]
    assert [ln.split()[0] for ln in lines[2:4]] == ["interp_2d_single", "best_throughput"]


@pytest.mark.parametrize(
    ("pattern", "name", "selected"),
    [
        ("load_tick", "load_tick_100", True),
        ("load_tick_100", "load_tick_100", True),
        ("load_tick_100", "load_tick_1000", False),
        ("load_tic", "load_tick_100", False),
        ("kalman", "kalman_single", True),
    ],
    ids=["leading-words", "exact", "not-a-longer-number", "not-a-partial-word", "family"],
)
def test_only_selects_names_or_leading_words(pattern: str, name: str, selected: bool) -> None:
    assert bench.selects(pattern, name) is selected


def test_only_with_an_unknown_prefix_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--quick", "--only", "no_such_case"]) == 2
    err = capsys.readouterr().err
    assert "no_such_case" in err and "load_tick_80000" in err


# ---------------------------------------------------------------------------------------------
# correctness checks: a kernel that disagrees with its reference stops the run


class _WrongIngestor(FpmIngestorRef):
    def snapshot(self, now_s: float, *, with_ids: bool = True) -> dict[str, np.ndarray]:
        out = super().snapshot(now_s, with_ids=with_ids)
        out["wall_time"] = out["wall_time"] * 1.001
        return out


class _WrongRegression(SlidingRegressionRef):
    def fit(self, now_s: float) -> Any:
        got = super().fit(now_s)
        return None if got is None else (got[0] * 1.01, got[1])


class _WrongKalman(KalmanBankRef):
    def predict_one(self, i: int) -> float:
        return float(super().predict_one(i)) + 1e-9


def _off_by_ulp(*args: Any) -> Any:
    return np.nextafter(interp_ref.grid2d_eval(*args), np.inf)


def _references() -> bench.Kernels:
    return bench.Kernels(
        FpmIngestor=FpmIngestorRef, SlidingRegression=SlidingRegressionRef, KalmanBank=KalmanBankRef,
        grid2d_eval=interp_ref.grid2d_eval, grid2d_eval_scalar=interp_ref.grid2d_eval_scalar,
        best_under_target=interp_ref.best_under_target, DecodeGridSearch=interp_ref.DecodeGridSearch,
    )


WRONG = [
    pytest.param("fpm_ingest", {"FpmIngestor": _WrongIngestor}, "wall_time", id="ingest-snapshot"),
    pytest.param("memory_per_engine", {"FpmIngestor": _WrongIngestor}, "wall_time", id="memory-snapshot"),
    pytest.param("load_tick_100", {"SlidingRegression": _WrongRegression}, "coefficients", id="load-tick-fit"),
    pytest.param("regression_fit", {"SlidingRegression": _WrongRegression}, "coefficients", id="regression-fit"),
    pytest.param("kalman_single", {"KalmanBank": _WrongKalman}, "predict_one", id="kalman-single"),
    pytest.param("interp_2d_batched", {"grid2d_eval": _off_by_ulp}, "grid2d_eval", id="interp-one-ulp"),
    pytest.param("best_throughput", {"best_under_target": lambda *a: (0.0, 0, 0.0, False)}, "best_under_target",
                 id="best-throughput"),
]


@pytest.mark.parametrize(("case", "swap", "what"), WRONG)
def test_a_kernel_that_disagrees_with_its_reference_raises(case: str, swap: dict[str, Any], what: str) -> None:
    kernels = dataclasses.replace(_references(), **swap)
    with pytest.raises(KernelMismatchError, match=f"{case}: .*{what}"):
        run_cases(CASES, kernels, TINY, only=[case])


# the reference tables are Python: the large load ticks stay out of this test
@pytest.mark.parametrize("case", [c.name for c in CASES if c.name not in ("load_tick_10000", "load_tick_80000",
                                                                           "load_tick_100000") and not c.full_only])
def test_every_case_passes_its_check_with_the_references(case: str) -> None:
    (result,) = run_cases(CASES, _references(), TINY, only=[case])
    assert result.name == case and result.value > 0


# ---------------------------------------------------------------------------------------------
# check_close / check_equal and scoring


@pytest.mark.parametrize(
    ("got", "want", "rtol", "ok"),
    [
        pytest.param(1.0 + 0.9e-9, 1.0, 1e-9, True, id="just-inside-rtol"),
        pytest.param(1.0 + 1.1e-9, 1.0, 1e-9, False, id="just-outside-rtol"),
        pytest.param([np.nan, 2.0], [np.nan, 2.0], 0.0, True, id="nan-equals-nan"),
        pytest.param([1.0, 2.0], [1.0, 2.0, 3.0], 0.0, False, id="shape"),
        pytest.param(["a", "b"], ["a", "c"], 0.0, False, id="strings"),
        pytest.param(np.inf, np.inf, 0.0, True, id="inf"),
    ],
)
def test_check_close_boundaries(got: Any, want: Any, rtol: float, ok: bool) -> None:
    if ok:
        check_close("case", "x", got, want, rtol)
    else:
        with pytest.raises(KernelMismatchError, match="case: x"):
            check_close("case", "x", got, want, rtol)


def test_check_equal_names_the_first_differing_index() -> None:
    with pytest.raises(KernelMismatchError, match=r"case: arr\[2\] = 9\.0, reference 3\.0"):
        check_equal("case", "arr", np.array([1.0, 2.0, 9.0, 8.0]), np.array([1.0, 2.0, 3.0, 4.0]))


def _scored(value: float, ref: float | None, target: float | None, higher: bool) -> BenchResult:
    case = BenchCase("c", "u", higher, target, lambda k, s: Measurement(value, ref))
    (r,) = run_cases([case], _references(), TINY)
    return r


@pytest.mark.parametrize(
    ("value", "ref", "target", "higher", "speedup", "met"),
    [
        pytest.param(2.0, 10.0, 2.0 + 1e-9, False, 5.0, True, id="time-just-under-target"),
        pytest.param(2.0, 10.0, 2.0, False, 5.0, False, id="time-at-target-is-not-under"),
        pytest.param(5e6, 1e6, 5e6, True, 5.0, True, id="rate-at-target-meets"),
        pytest.param(5e6 - 1, 1e6, 5e6, True, (5e6 - 1) / 1e6, False, id="rate-just-below-target"),
        pytest.param(3.0, None, None, False, None, None, id="no-reference-no-target"),
    ],
)
def test_speedup_and_met(value: float, ref: float | None, target: float | None, higher: bool,
                         speedup: float | None, met: bool | None) -> None:
    r = _scored(value, ref, target, higher)
    assert r.speedup == (None if speedup is None else pytest.approx(speedup))
    assert r.met is met
    assert set(r.to_dict()) == FIELDS


@pytest.mark.parametrize(("repeat", "number"), [(0, 1), (1, 0)], ids=["repeat-0", "number-0"])
def test_median_seconds_rejects_empty_loops(repeat: int, number: int) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        bench.median_seconds(lambda: None, repeat, number)


def test_median_seconds_runs_setup_before_every_loop() -> None:
    calls: list[str] = []
    bench.median_seconds(lambda: calls.append("fn"), 3, 2, setup=lambda: calls.append("setup"))
    assert calls == ["setup", "fn", "fn"] * 3


def test_full_only_cases_run_only_in_full_runs() -> None:
    ran: list[str] = []
    case = BenchCase("slow_thing", "s", False, None, lambda k, s: ran.append("x") or Measurement(1.0, None),
                     full_only=True)
    assert run_cases([case], _references(), TINY) == [] and ran == []
    assert len(run_cases([case], _references(), dataclasses.replace(TINY, full=True))) == 1 and ran == ["x"]
