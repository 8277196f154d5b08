"""Prefill and decode performance models, the analytic engine model and the bundled example."""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial import Delaunay

from sla_planner import kernels
from sla_planner.errors import ConfigError, ProfileDataError
from sla_planner.kernels import interp_ref
from sla_planner.perf import DecodeModel, PrefillModel, load_profile, resolve_profile_dir
from sla_planner.perf.analytic import (
    EXAMPLE_ENGINE,
    AnalyticEngineSpec,
    decode_iteration_time_s,
    decode_point,
    prefill_point,
    prefill_time_s,
)

REPO = Path(__file__).resolve().parents[1]
KERNEL_NAMES = ("hermite_eval", "hermite_eval_scalar", "grid2d_eval", "grid2d_eval_scalar", "best_under_target")


@pytest.fixture(params=["active", "reference"], autouse=True)
def kernel_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run every model test on the active kernels and on the numpy references."""
    if request.param == "reference":
        for name in KERNEL_NAMES:
            monkeypatch.setattr(kernels, name, getattr(interp_ref, name))
    yield request.param


# ---------------------------------------------------------------------------------------------
# PrefillModel

ISL = [128.0, 1024.0, 4096.0, 16384.0, 65536.0]
TTFT_MS = [20.0, 50.0, 160.0, 720.0, 5000.0]
THPT = [6400.0, 20000.0, 25000.0, 22000.0, 13000.0]


@pytest.fixture
def prefill() -> PrefillModel:
    return PrefillModel(ISL, TTFT_MS, THPT)


def test_prefill_passes_through_profile_points(prefill: PrefillModel) -> None:
    for isl, ttft, thpt in zip(ISL, TTFT_MS, THPT):
        assert prefill.ttft_ms(isl) == pytest.approx(ttft, rel=1e-12)
        assert prefill.thpt_per_gpu(isl) == pytest.approx(thpt, rel=1e-12)


@pytest.mark.parametrize(
    ("isl", "expected_ttft"),
    [(1.0, 20.0), (127.999, 20.0), (65536.0, 5000.0)],
    ids=["far-below", "just-below", "at-last-point"],
)
def test_prefill_clamps_below_range(prefill: PrefillModel, isl: float, expected_ttft: float) -> None:
    assert prefill.ttft_ms(isl) == pytest.approx(expected_ttft, rel=1e-12)


@pytest.mark.parametrize("isl", [65536.001, 70000.0, 1e6, 1e9], ids=["just-above", "above", "far", "beyond-knots"])
def test_prefill_grows_past_range(prefill: PrefillModel, isl: float) -> None:
    # never flat: at least linear in tokens past the last point (throughput does not rise)
    assert prefill.ttft_ms(isl) >= 5000.0 * isl / 65536.0 * (1 - 1e-12)
    assert prefill.thpt_per_gpu(isl) <= 13000.0 * (1 + 1e-12)


def test_prefill_just_inside_range_is_interpolated(prefill: PrefillModel) -> None:
    assert 20.0 < prefill.ttft_ms(128.5) < 50.0
    assert prefill.isl_range == (128.0, 65536.0)


def test_prefill_monotone_between_points(prefill: PrefillModel) -> None:
    ttft = prefill.ttft_ms_batch(np.linspace(128.0, 65536.0, 2001))
    assert np.all(np.diff(ttft) >= 0)


def test_prefill_batch_matches_scalar_and_keeps_shape(prefill: PrefillModel) -> None:
    isl = np.array([[100.0, 500.0], [3000.0, 1e6]])
    ttft = prefill.ttft_ms_batch(isl)
    thpt = prefill.thpt_per_gpu_batch(isl)
    assert ttft.shape == thpt.shape == (2, 2)
    for q, t, h in zip(isl.ravel(), ttft.ravel(), thpt.ravel()):
        assert t == pytest.approx(prefill.ttft_ms(q), rel=1e-12)
        assert h == pytest.approx(prefill.thpt_per_gpu(q), rel=1e-12)


def test_prefill_nan_query_gives_nan(prefill: PrefillModel) -> None:
    assert math.isnan(prefill.ttft_ms(math.nan))


def test_prefill_sorts_unsorted_points() -> None:
    model = PrefillModel(ISL[::-1], TTFT_MS[::-1], THPT[::-1])
    assert model.ttft_ms(1024.0) == pytest.approx(50.0)


def test_prefill_constructor_validates() -> None:
    with pytest.raises(ProfileDataError, match=r"<arrays>: array 'prefill_ttft': index 1"):
        PrefillModel([1.0, 2.0], [1.0, -1.0], [1.0, 1.0])


# ---------------------------------------------------------------------------------------------
# DecodeModel on synthetic data with known answers


def _linear_decode(kv_resolution: int = 101) -> DecodeModel:
    """ITL = 10 + 30 * kv (ms) at every context; throughput = 1000 * kv / (context / 1000)."""
    kv = np.tile(np.linspace(0.0, 1.0, 6), 4)
    ctx = np.repeat([1000.0, 2000.0, 4000.0, 8000.0], 6)
    itl = 10.0 + 30.0 * kv
    thpt = 1e6 * kv / ctx
    return DecodeModel(kv, ctx, itl, thpt, 10000, kv_resolution=kv_resolution)


def test_decode_grid_reproduces_linear_itl_everywhere() -> None:
    model = _linear_decode()
    rng = np.random.default_rng(3)
    kv = rng.uniform(0.0, 1.0, 200)
    ctx = rng.uniform(1000.0, 8000.0, 200)
    np.testing.assert_allclose(model.itl_ms_batch(kv, ctx), 10.0 + 30.0 * kv, rtol=1e-9)


def test_decode_grid_reproduces_samples() -> None:
    model = _linear_decode()
    d = model.data
    np.testing.assert_allclose(model.itl_ms_batch(d.kv_usage, d.context_length), d.itl_ms, rtol=1e-9)
    # throughput ~ 1 / context is bilinear on the grid only up to the grid spacing
    np.testing.assert_allclose(
        model.thpt_per_gpu_batch(d.kv_usage, d.context_length), d.thpt_per_gpu, rtol=0.01, atol=1e-9
    )


def test_decode_scalar_and_batch_agree_and_broadcast() -> None:
    model = _linear_decode()
    kv = np.array([0.0, 0.25, 0.7, 1.0])
    out = model.thpt_per_gpu_batch(kv, 3000.0)
    assert out.shape == (4,)
    for q, v in zip(kv, out):
        assert v == pytest.approx(model.thpt_per_gpu(q, 3000.0), rel=1e-12)


def test_decode_grid_properties() -> None:
    model = _linear_decode(kv_resolution=11)
    # the context axis is uniform in log context: 100 points over the profiled 1000..8000, then
    # the same step on to max_kv_tokens = 10000
    steps_past = int(np.ceil(np.log(10000.0 / 8000.0) / (np.log(8.0) / 99) - 1e-9))
    assert model.itl_grid_ms.shape == model.thpt_grid_per_gpu.shape == (11, 100 + steps_past)
    assert model.kv_usage_range == (0.0, 1.0)
    assert model.profiled_kv_usage_range == (0.0, 1.0)
    assert model.profiled_context_range == (1000.0, 8000.0)
    assert model.context_range[0] == pytest.approx(1000.0)
    assert 10000.0 <= model.context_range[1] < 10000.0 * np.exp(np.log(8.0) / 99) + 1e-6
    assert model.context_grid[99] == pytest.approx(8000.0, rel=1e-12)
    np.testing.assert_allclose(np.diff(np.log(model.context_grid)), model.log_context_step, rtol=1e-9)
    assert model.max_kv_tokens == 10000
    for grid in (model.itl_grid_ms, model.thpt_grid_per_gpu, model.kv_usage_grid, model.context_grid):
        assert not grid.flags.writeable


@pytest.mark.parametrize("resolution", [1, 0, True, 2.5], ids=["one", "zero", "bool", "float"])
def test_decode_grid_resolution_rule(resolution: object) -> None:
    d = _linear_decode().data
    with pytest.raises(ConfigError, match=r"kv_resolution must be an integer >= 2"):
        DecodeModel.from_data(d, kv_resolution=resolution)  # type: ignore[arg-type]


def test_decode_two_point_grid_is_accepted() -> None:
    model = DecodeModel.from_data(_linear_decode().data, kv_resolution=2, context_resolution=2)
    assert model.itl_ms(0.5, 5000.0) == pytest.approx(25.0)


def _hull_decode() -> DecodeModel:
    """No sample at low KV usage and long context, as in a real sweep (one sequence is a lot)."""
    kv = [0.1, 0.5, 0.9, 0.5, 0.9]
    ctx = [1000.0, 1000.0, 1000.0, 8000.0, 8000.0]
    itl = [10.0, 20.0, 30.0, 35.0, 40.0]
    thpt = [500.0, 2000.0, 3000.0, 250.0, 400.0]
    return DecodeModel(kv, ctx, itl, thpt, 100000, kv_resolution=9, context_resolution=8)


def test_decode_outside_hull_continues_along_fitted_cost() -> None:
    model = _hull_decode()
    # (0.1, 8000) is outside the hull: fewer KV tokens than the nearest hull point, so faster
    assert model.itl_ms(0.1, 8000.0) < model.itl_ms(0.5, 8000.0)
    # longer context at the same batch holds more KV: slower, never flat
    batch = 0.5 * 100000 / 8000.0
    itl = [model.itl_ms(batch * c / 100000, c) for c in (8000.0, 9000.0, 10000.0)]
    assert itl[0] < itl[1] < itl[2]
    # throughput stays a batch / ITL shape: positive, and it falls with context at a fixed batch
    thpt = [model.thpt_per_gpu(batch * c / 100000, c) for c in (8000.0, 9000.0, 10000.0)]
    assert thpt[0] > thpt[1] > thpt[2] > 0.0


def test_decode_inside_hull_is_linear_interpolation() -> None:
    model = _hull_decode()
    assert model.itl_ms(0.3, 1000.0) == pytest.approx(15.0)
    assert model.itl_ms(0.9, 8000.0) == pytest.approx(40.0)


@pytest.mark.parametrize(
    ("target_ms", "kv_usage", "itl_ms", "meets"),
    [
        (25.0 + 1e-9, 0.50, 25.0, True),
        (25.0 - 1e-9, 0.49, 24.7, True),
        (40.0, 1.00, 40.0, True),
        (1e9, 1.00, 40.0, True),
        # an empty cache (0 tokens/s) is never an operating point: the fastest one serves 1%
        (10.3 + 1e-9, 0.01, 10.3, True),
        (10.3 - 1e-9, 0.01, 10.3, False),
        (5.0, 0.01, 10.3, False),
    ],
    ids=["just-meets-0.5", "just-misses-0.5", "max-exact", "huge-target", "just-meets-min", "just-misses-min", "unreachable"],
)
def test_best_throughput_per_gpu(target_ms: float, kv_usage: float, itl_ms: float, meets: bool) -> None:
    model = _linear_decode()
    point = model.best_throughput_per_gpu(target_ms, 4000.0)
    assert point.meets_target is meets
    assert point.kv_usage == pytest.approx(kv_usage, abs=1e-12)
    assert point.itl_ms == pytest.approx(itl_ms, rel=1e-9)
    assert point.thpt_per_gpu == pytest.approx(1e6 * kv_usage / 4000.0, rel=1e-3, abs=1e-9)


def test_best_throughput_per_gpu_nan() -> None:
    point = _linear_decode().best_throughput_per_gpu(math.nan, 4000.0)
    assert not point.meets_target and math.isnan(point.kv_usage) and math.isnan(point.thpt_per_gpu)


@pytest.mark.parametrize(
    ("concurrency", "context", "kv_usage"),
    [
        (0.0, 1000.0, 0.0),
        (-3.0, 1000.0, 0.0),
        (5.0, 1000.0, 0.5),
        (10.0, 1000.0, 1.0),
        (10.0001, 1000.0, 1.0),
        (1e9, 1000.0, 1.0),
        (9.999, 1000.0, 0.9999),
    ],
    ids=["zero", "negative", "half", "exactly-full", "just-over-full", "huge", "just-under-full"],
)
def test_itl_at_concurrency_clamps(concurrency: float, context: float, kv_usage: float) -> None:
    model = _linear_decode()  # max_kv_tokens = 10000
    assert model.kv_usage_at_concurrency(concurrency, context) == pytest.approx(kv_usage, rel=1e-12)
    assert model.itl_at_concurrency(concurrency, context) == pytest.approx(10.0 + 30.0 * kv_usage, rel=1e-9)


def test_itl_at_concurrency_nan() -> None:
    assert math.isnan(_linear_decode().itl_at_concurrency(math.nan, 1000.0))


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0.0, 1.0),
            st.floats(100.0, 200000.0),
            st.floats(1.0, 500.0),
            st.floats(0.0, 1e5),
        ),
        min_size=3,
        max_size=40,
        unique_by=lambda t: (t[0], t[1]),
    ),
    st.floats(-0.5, 1.5),
    st.floats(10.0, 300000.0),
)
def test_decode_values_finite_and_inside_hull_within_sample_range(
    samples: list[tuple[float, float, float, float]], kv_q: float, ctx_q: float
) -> None:
    kv, ctx, itl, thpt = (np.array(c) for c in zip(*samples))
    try:
        model = DecodeModel(kv, ctx, itl, thpt, 1000, kv_resolution=20, context_resolution=20)
    except ProfileDataError as exc:  # degenerate draws are rejected with a message, never a crash
        assert str(exc).startswith("<arrays>: array")
        return
    assert np.all(np.isfinite(model.itl_grid_ms)) and np.all(model.itl_grid_ms > 0.0)
    assert np.all(np.isfinite(model.thpt_grid_per_gpu)) and np.all(model.thpt_grid_per_gpu >= 0.0)
    # grid points inside the samples' hull interpolate: within the sample range
    gk, gc = np.meshgrid(model.kv_usage_grid, model.context_grid, indexing="ij")
    hull = Delaunay(np.column_stack((kv, np.log(ctx))))
    inside = hull.find_simplex(np.column_stack((gk.ravel(), np.log(gc.ravel())))) >= 0
    values = model.itl_grid_ms.ravel()[inside]
    assert np.all(values >= itl.min() * (1 - 1e-9)) and np.all(values <= itl.max() * (1 + 1e-9))
    assert model.itl_ms(kv_q, ctx_q) > 0.0
    assert model.thpt_per_gpu(kv_q, ctx_q) >= 0.0


# ---------------------------------------------------------------------------------------------
# Analytic engine model


def test_analytic_magnitudes() -> None:
    spec = EXAMPLE_ENGINE
    assert 300_000 <= spec.max_kv_tokens <= 500_000
    assert 30.0 <= prefill_point(1024.0)[0] <= 80.0
    assert 1000.0 <= prefill_point(32768.0)[0] <= 3000.0
    for kv in (0.0, 0.5, 1.0):
        for ctx in (1024.0, 8192.0, 131072.0):
            assert 9.0 <= decode_point(kv, ctx)[0] <= 60.0


def test_analytic_shapes() -> None:
    isl = np.geomspace(128, 131072, 30)
    ttft = np.array([prefill_point(float(n))[0] for n in isl])
    assert np.all(np.diff(ttft) > 0)
    assert prefill_time_s(1000.0, cached_tokens=4000.0) > prefill_time_s(1000.0)
    assert decode_iteration_time_s(0, 0) == pytest.approx(EXAMPLE_ENGINE.decode_overhead_s + 16.06e9 / (3.35e12 * 0.8))
    itl0, thpt0 = decode_point(0.0, 4096.0)
    assert thpt0 == 0.0
    itl_full, thpt_full = decode_point(1.0, 4096.0)
    assert itl_full > itl0 and thpt_full > 0.0


def test_analytic_tensor_parallel_per_gpu_accounting() -> None:
    tp2 = AnalyticEngineSpec(num_gpu=2)
    assert tp2.max_kv_tokens > 2 * EXAMPLE_ENGINE.max_kv_tokens  # the weights are paid once
    ttft1, thpt1 = prefill_point(4096.0)
    ttft2, thpt2 = prefill_point(4096.0, tp2)
    assert ttft2 < ttft1
    assert thpt2 == pytest.approx(4096.0 / (ttft2 / 1e3) / 2)


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("num_params", 0.0, "> 0"),
        ("num_gpu", 0, "an integer >= 1"),
        ("num_layers", 1.5, "an integer >= 1"),
        ("matmul_efficiency", 1.01, r"in \(0, 1\]"),
        ("bandwidth_efficiency", 0.0, r"in \(0, 1\]"),
        ("prefill_overhead_s", -0.001, ">= 0"),
        ("gpu_memory_bytes", 10e9, "large enough"),
    ],
    ids=["params", "num-gpu", "layers-float", "mfu-above-1", "bw-zero", "negative-overhead", "too-small-gpu"],
)
def test_analytic_spec_validation(field: str, value: float, rule: str) -> None:
    with pytest.raises(ConfigError, match=rf"AnalyticEngineSpec.{field if field != 'gpu_memory_bytes' else 'gpu_memory_bytes'} must be {rule}"):
        AnalyticEngineSpec(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "call",
    [
        lambda: prefill_time_s(-1.0),
        lambda: prefill_time_s(1.0, cached_tokens=-1.0),
        lambda: decode_iteration_time_s(-1.0, 0.0),
        lambda: decode_point(1.0001, 1000.0),
        lambda: decode_point(0.5, 0.0),
        lambda: prefill_point(0.0),
    ],
    ids=["negative-tokens", "negative-cached", "negative-seqs", "kv-above-1", "zero-context", "zero-isl"],
)
def test_analytic_bad_arguments(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]


# ---------------------------------------------------------------------------------------------
# The bundled example profile: round trip against the analytic model it was sampled from


@pytest.fixture(scope="module")
def example() -> tuple[PrefillModel, DecodeModel]:
    models = load_profile("builtin:example")
    assert models.prefill is not None and models.decode is not None
    return models.prefill, models.decode


def test_example_prefill_recovers_analytic(example: tuple[PrefillModel, DecodeModel]) -> None:
    prefill, _ = example
    assert prefill.isl_range[1] >= 131072
    isl = np.geomspace(128, 131072, 60)
    want = np.array([prefill_point(float(n)) for n in isl])
    np.testing.assert_allclose(prefill.ttft_ms_batch(isl), want[:, 0], rtol=0.03)
    np.testing.assert_allclose(prefill.thpt_per_gpu_batch(isl), want[:, 1], rtol=0.03)


def test_example_decode_recovers_analytic_inside_hull(example: tuple[PrefillModel, DecodeModel]) -> None:
    _, decode = example
    d = decode.data
    assert decode.max_kv_tokens == EXAMPLE_ENGINE.max_kv_tokens
    rng = np.random.default_rng(11)
    kv = rng.uniform(0.0, 1.0, 600)
    ctx = np.exp(rng.uniform(np.log(4096.0), np.log(131072.0), 600))
    hull = Delaunay(np.column_stack((d.kv_usage, np.log(d.context_length))))
    inside = hull.find_simplex(np.column_stack((kv, np.log(ctx)))) >= 0
    kv, ctx = kv[inside], ctx[inside]
    assert kv.size > 300
    want = np.array([decode_point(float(a), float(b)) for a, b in zip(kv, ctx)])
    np.testing.assert_allclose(decode.itl_ms_batch(kv, ctx), want[:, 0], rtol=0.05)
    np.testing.assert_allclose(decode.thpt_per_gpu_batch(kv, ctx), want[:, 1], rtol=0.06)


@pytest.mark.parametrize("context", [12000.0, 20000.0, 30000.0, 45000.0, 64000.0])
@pytest.mark.parametrize("itl_target_ms", [15.0, 20.0, 25.0, 30.0])
def test_example_best_throughput_near_analytic_optimum(
    example: tuple[PrefillModel, DecodeModel], context: float, itl_target_ms: float
) -> None:
    _, decode = example
    point = decode.best_throughput_per_gpu(itl_target_ms, context)
    assert point.meets_target
    kv_grid = np.linspace(0.0, min(decode.kv_usage_range[1], 1.0), 2001)
    itl = np.array([decode_point(float(k), context)[0] for k in kv_grid])
    best_kv = kv_grid[itl <= itl_target_ms].max()
    assert point.thpt_per_gpu == pytest.approx(decode_point(float(best_kv), context)[1], rel=0.05)


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_example_profile", REPO / "scripts" / "generate_example_profile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_files_are_current_and_small() -> None:
    files = _generator().render()
    assert files == _generator().render()  # deterministic
    directory, _ = resolve_profile_dir("builtin:example")
    total = 0
    for name, text in files.items():
        stored = directory.joinpath(name).read_text(encoding="utf-8")
        total += len(stored.encode())
        if name.endswith(".json"):
            want, have = json.loads(text), json.loads(stored)
            assert want.keys() == have.keys()
            for key in want:
                np.testing.assert_allclose(np.asarray(have[key], float), np.asarray(want[key], float), rtol=1e-5)
        else:
            assert stored == text
    assert total < 200_000
