"""`sla-planner profile`: the rapid sweep, the checks, the files, and the bundled generated profiles.

Tests marked ``aic`` run the real aiconfigurator-core (the optional extra, installed in CI) and
skip with a reason when it is missing; the rest use the analytic engine as the estimator.
"""

from __future__ import annotations

import builtins
import json
import re
import shlex
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sla_planner.cli import main
from sla_planner.errors import ProfileGenerationError
from sla_planner.perf import builtin_profiles, load_profile, resolve_profile_dir
from sla_planner.perf.analytic import EXAMPLE_ENGINE, AnalyticEngineSpec
from sla_planner.perf.generate import (
    METADATA_FILE,
    AnalyticEstimator,
    SweepSettings,
    decode_sweep_grid,
    generate_profile,
    prefill_isl_grid,
    write_profile,
)

try:
    AIC_VERSION: str | None = version("aiconfigurator-core")
except PackageNotFoundError:
    AIC_VERSION = None
aic = pytest.mark.skipif(AIC_VERSION is None, reason="aiconfigurator-core (extra 'aiconfigurator') not installed")

GENERATED = ["h100_sxm-qwen3_8b-vllm-tp1", "a100_sxm-qwen3_32b-vllm-tp2", "l40s-qwen3_8b-vllm-tp1"]
H100 = ["--system", "h100_sxm", "--model", "Qwen3-8B", "--backend", "vllm", "--tp", "1"]


# ---------------------------------------------------------------------------------------------
# The sweep grid (the original profiler's rapid sweep)


def test_prefill_grid_is_the_rapid_sweep() -> None:
    grid = prefill_isl_grid(16384, 16)
    assert grid[0] == 100 and grid[1] - grid[0] == (16384 - 612) // 16
    assert grid[-1] < 16384 - 512 <= grid[-1] + (16384 - 612) // 16
    assert len(grid) == 17


@pytest.mark.parametrize(
    ("max_kv", "max_num_seqs", "context", "batches"),
    [
        (1_000_000, 256, 350, [1, 52, 103, 154, 205, 256]),  # capped by max_num_seqs
        (2_000_000, 5000, 350, [1, 400, 800, 1200, 1600, 2000]),  # capped at 2000
        (3000, 256, 350, [1, 2, 3, 4, 5]),  # 3000 // 600 = 5 < granularity: every count
        (600, 256, 350, [1]),  # exactly one sequence fits
    ],
    ids=["max-num-seqs", "concurrency-cap", "few-fit", "one-fits"],
)
def test_decode_grid_caps(max_kv: int, max_num_seqs: int, context: int, batches: list[int]) -> None:
    points = decode_sweep_grid(16384, max_kv, 6, max_num_seqs)
    assert [b for c, b in points if c == context] == batches


def test_decode_grid_contexts_and_kv_limit() -> None:
    points = decode_sweep_grid(16384, 20_000, 6, 256)
    contexts = sorted({c for c, _ in points})
    assert contexts[0] == 350 and all(c - 250 < 16384 - 500 for c in contexts)
    # a level whose isl + 500 exceeds the KV capacity ends the sweep
    assert all(b * (c + 250) <= 20_000 for c, b in points)
    assert decode_sweep_grid(16384, 599, 6, 256) == []


# ---------------------------------------------------------------------------------------------
# Generating and writing (analytic estimator: no optional package needed)


def _sweep(**overrides: Any) -> SweepSettings:
    return SweepSettings(**{"isl_max": 16384, "context_max": 16384, **overrides})


def test_generated_profile_loads_and_matches_the_estimator(tmp_path: Path) -> None:
    profile = generate_profile(AnalyticEstimator(EXAMPLE_ENGINE), _sweep(), command=["x", "y z"])
    out = write_profile(profile, tmp_path / "p")
    models = load_profile(out)
    assert models.num_gpu == 1
    assert models.prefill is not None and models.decode is not None
    assert models.decode.max_kv_tokens == EXAMPLE_ENGINE.max_kv_tokens
    spec = EXAMPLE_ENGINE
    assert models.prefill.ttft_ms(4000.0) == pytest.approx(
        AnalyticEstimator(spec).prefill_ttft_ms(4000), rel=0.01)
    meta = json.loads((out / METADATA_FILE).read_text())
    assert meta["command"] == "x 'y z'" and meta["points"]["decode"] == profile.decode["z_itl"].size
    assert meta["warnings"] == [] and meta["checks"]["worst_relative_fall"] == 0.0
    assert main(["validate", "--profile-results-dir", str(out)]) == 0


def test_time_scales_write_a_slower_engine(tmp_path: Path) -> None:
    base = generate_profile(AnalyticEstimator(EXAMPLE_ENGINE), _sweep())
    slow = generate_profile(AnalyticEstimator(EXAMPLE_ENGINE), _sweep(prefill_time_scale=1.25, decode_time_scale=1.12))
    np.testing.assert_allclose(slow.prefill["prefill_ttft"], base.prefill["prefill_ttft"] * 1.25)
    np.testing.assert_allclose(slow.prefill["prefill_thpt_per_gpu"], base.prefill["prefill_thpt_per_gpu"] / 1.25)
    np.testing.assert_allclose(slow.decode["z_itl"], base.decode["z_itl"] * 1.12)
    assert "TTFT x1.25, ITL x1.12" in (write_profile(slow, tmp_path / "s") / "README.md").read_text()


def test_tensor_parallel_throughput_is_per_gpu(tmp_path: Path) -> None:
    tp2 = AnalyticEngineSpec(num_gpu=2)
    profile = generate_profile(AnalyticEstimator(tp2), _sweep())
    p = profile.prefill
    np.testing.assert_allclose(p["prefill_thpt_per_gpu"], p["prefill_isl"] / (p["prefill_ttft"] / 1e3) / 2)
    assert load_profile(write_profile(profile, tmp_path / "tp2")).num_gpu == 2


class _Dip(AnalyticEstimator):
    """The analytic engine whose ITL at 52 sequences (context 350) is ``dip`` below that of one."""

    def __init__(self, dip: float) -> None:
        super().__init__(EXAMPLE_ENGINE)
        self.dip = dip

    def decode_itl_ms(self, batch: int, context: int) -> float:
        if (batch, context) == (52, 350):
            return super().decode_itl_ms(1, 350) * (1 - self.dip)
        return super().decode_itl_ms(batch, context)


@pytest.mark.parametrize(
    ("dip", "tolerance", "refused", "warned"),
    [(0.2, 0.05, True, True), (0.051, 0.05, True, True), (0.049, 0.05, False, True),
     (0.006, 0.05, False, True), (0.004, 0.05, False, False)],
    ids=["far-over", "just-over", "just-under-warns", "just-over-warning", "just-under-warning"],
)
def test_non_monotone_estimates(dip: float, tolerance: float, refused: bool, warned: bool) -> None:
    # ITL falls by exactly `dip` from concurrency 1 to 52 at context 350
    sweep = _sweep(monotone_tolerance=tolerance)
    if refused:
        with pytest.raises(ProfileGenerationError, match=r"decode ITL at context 350 falls by .* concurrency 1 .* concurrency 52 .*--allow-non-monotone"):
            generate_profile(_Dip(dip), sweep)
        profile = generate_profile(_Dip(dip), _sweep(monotone_tolerance=tolerance, allow_non_monotone=True))
    else:
        profile = generate_profile(_Dip(dip), sweep)
    assert bool(profile.warnings) is warned


def test_write_refuses_an_existing_profile_and_leaves_no_staging(tmp_path: Path) -> None:
    profile = generate_profile(AnalyticEstimator(EXAMPLE_ENGINE), _sweep())
    out = write_profile(profile, tmp_path / "p")
    with pytest.raises(ProfileGenerationError, match="already holds a profile; pass --force"):
        write_profile(profile, out)
    write_profile(profile, out, force=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ProfileGenerationError, match="exists and is not a directory"):
        write_profile(profile, tmp_path / "file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "p"]  # no staging left behind
    assert oct(out.stat().st_mode & 0o777) != oct(0o700)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [({"isl_max": 612}, "--isl-max 612: must be > 612"), ({"context_max": 600}, "--context-max 600"),
     ({"prefill_time_scale": 0.0}, "--prefill-time-scale 0.0: must be > 0"),
     ({"decode_granularity": 0}, "decode_granularity must be >= 1")],
    ids=["isl-at-limit", "context-at-limit", "zero-scale", "zero-granularity"],
)
def test_sweep_settings_rules(overrides: dict[str, Any], needle: str) -> None:
    with pytest.raises(ProfileGenerationError, match=needle):
        _sweep(**overrides)


# ---------------------------------------------------------------------------------------------
# The CLI with the real aiconfigurator-core


@aic
def test_cli_happy_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "h100"
    assert main(["profile", *H100, "--isl-max", "16384", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    models = load_profile(out)
    assert models.prefill is not None and models.decode is not None
    assert models.prefill.isl_range == (100.0, 15860.0)
    assert 300_000 < models.decode.max_kv_tokens < 500_000
    meta = json.loads((out / METADATA_FILE).read_text())
    assert meta["engine"]["source"] == "aiconfigurator-core" and meta["engine"]["source_version"] == AIC_VERSION
    assert "--backend-version" in meta["command"] and "--isl-max 16384" in meta["command"]
    assert main(["validate", "--profile-results-dir", str(out)]) == 0


@aic
def test_cli_refuses_non_monotone_estimates_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a100 + Qwen3-32B over TP2: at short contexts the ITL estimate dips between 6 and 8 sequences
    argv = ["profile", "--system", "a100_sxm", "--model", "Qwen3-32B", "--tp", "2", "--max-num-seqs", "8",
            "--isl-max", "8192", "--monotone-tolerance", "0.02", "--out", str(tmp_path / "p")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "falls by" in err and "--allow-non-monotone" in err
    assert not (tmp_path / "p").exists() and list(tmp_path.iterdir()) == []
    assert main([*argv, "--allow-non-monotone"]) == 0
    assert "warning: decode ITL" in capsys.readouterr().err
    assert json.loads((tmp_path / "p" / METADATA_FILE).read_text())["warnings"]


@aic
@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--system", "h100", "--model", "Qwen3-8B"], "--system 'h100': unknown system; choices: a100_sxm"),
        (["--system", "b60", "--model", "Qwen3-8B", "--backend", "trtllm"], "--backend 'trtllm': no data for system b60; choices: vllm"),
        (["--system", "h100_sxm", "--model", "Qwen3-9B"], "--model 'Qwen3-9B': unknown model; choices .*Qwen3-8B"),
        (["--system", "h100_sxm", "--model", "Qwen3-8B", "--kv-cache-dtype", "fp4"], "--kv-cache-dtype 'fp4': unknown; choices: bfloat16"),
        (["--system", "h100_sxm", "--model", "Qwen3-8B", "--backend-version", "9.9"], "--backend-version '9.9'"),
        (["--system", "h100_sxm", "--model", "Qwen3-8B", "--tp", "3"], "cannot estimate .*TP3.*divisible"),
        (["--system", "h100_sxm"], "missing --model"),
    ],
    ids=["system", "backend", "model", "kv-dtype", "backend-version", "tp-indivisible", "missing"],
)
def test_cli_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    out = [] if argv == ["--system", "h100_sxm"] else ["--out", str(tmp_path / "p")]
    assert main(["profile", *argv, *out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert re.search(needle, err), err
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("argv", [["--tp", "0"], ["--max-num-seqs", "x"], ["--gpu-memory-utilization", "1.5"],
                                  ["--decode-time-scale", "0"]], ids=["tp-zero", "seqs-word", "util-over-1", "scale-zero"])
def test_cli_bad_numbers_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["profile", *H100, *argv, "--out", "unused"])
    assert exc.value.code == 2


def test_cli_without_the_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    real_import = builtins.__import__

    def no_aiconfigurator(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] == "aiconfigurator_core":
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_aiconfigurator)
    assert main(["profile", *H100, "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'sla-planner[aiconfigurator]'" in err and "Traceback" not in err
    assert not (tmp_path / "p").exists()


def test_sla_planner_imports_without_the_extra() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['aiconfigurator_core'] = None\n"
        "import sla_planner.cli, sla_planner.perf, sla_planner.perf.generate, sla_planner.cli.profile\n"
        "from sla_planner.perf import load_profile; load_profile('builtin:h100_sxm-qwen3_8b-vllm-tp1')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------
# The bundled generated profiles


@pytest.mark.parametrize("name", GENERATED)
def test_bundled_generated_profile(name: str) -> None:
    assert name in builtin_profiles()
    models = load_profile(f"builtin:{name}")
    directory, _ = resolve_profile_dir(f"builtin:{name}")
    meta = json.loads(directory.joinpath(METADATA_FILE).read_text())
    assert meta["engine"]["source"] == "aiconfigurator-core" and meta["warnings"] == []
    assert models.num_gpu == meta["num_gpu"] == meta["engine"]["tp"]
    assert models.prefill is not None and models.decode is not None
    assert np.all(np.diff(models.prefill.data.ttft_ms) > 0)
    total = sum(len(directory.joinpath(*p).read_bytes()) for p in (
        ("selected_prefill_interpolation", "raw_data.npz"), ("selected_decode_interpolation", "raw_data.npz"),
        (METADATA_FILE,), ("README.md",)))
    assert total < 20_000


def test_bundled_profiles_span_three_gpu_classes() -> None:
    systems = set()
    for name in GENERATED:
        directory, _ = resolve_profile_dir(f"builtin:{name}")
        systems.add(json.loads(directory.joinpath(METADATA_FILE).read_text())["engine"]["system"])
    assert len(systems) >= 3


@aic
def test_regenerating_a_bundled_profile_reproduces_it(tmp_path: Path) -> None:
    name = GENERATED[0]
    directory, _ = resolve_profile_dir(f"builtin:{name}")
    meta = json.loads(directory.joinpath(METADATA_FILE).read_text())
    if meta["engine"]["source_version"] != AIC_VERSION:
        pytest.skip(f"bundled from aiconfigurator-core {meta['engine']['source_version']}, installed {AIC_VERSION}")
    argv = shlex.split(meta["command"])
    assert argv[:2] == ["sla-planner", "profile"] and argv[-2:] == ["--out", "DIR"]
    assert main([*argv[1:-1], str(tmp_path / "again")]) == 0
    for sub in ("selected_prefill_interpolation", "selected_decode_interpolation"):
        with np.load(directory.joinpath(sub, "raw_data.npz").open("rb"), allow_pickle=False) as want, \
                np.load(tmp_path / "again" / sub / "raw_data.npz", allow_pickle=False) as have:
            assert sorted(want.files) == sorted(have.files)
            for key in want.files:
                np.testing.assert_allclose(have[key], want[key], rtol=1e-12)
    assert json.loads((tmp_path / "again" / METADATA_FILE).read_text()) == meta


def _small_trace(path: Path) -> Path:
    """Three minutes of conversation-like traffic with some prompts past the profiles' 40k."""
    rng = np.random.default_rng(3)
    t = np.cumsum(rng.exponential(0.5, 360)) * 1e3
    isl = np.where(rng.random(360) < 0.1, rng.integers(41_000, 90_000, 360), rng.integers(200, 12_000, 360))
    lines = [json.dumps({"timestamp": int(a), "input_length": int(b), "output_length": int(c)})
             for a, b, c in zip(t, isl, rng.integers(20, 400, 360))]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("name", GENERATED)
def test_replay_runs_on_each_generated_profile(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = _small_trace(tmp_path / "trace.jsonl")
    gpus = ["--prefill-engine-num-gpu", "2", "--decode-engine-num-gpu", "2"] if name.endswith("tp2") else []
    assert main(["replay", "--profile-results-dir", f"builtin:{name}", "--trace", str(trace),
                 "--policy", "static:8,4", "--json", "--no-report", *gpus]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["requests_total"] == 360
    assert summary["outcomes"]["rejected_too_long"] == 0  # 90k-token prompts fit every KV cache


def test_mismatched_simulator_profile_is_slower(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The planner believes the estimate; the simulated engines follow a 1.25x/1.12x slower one."""
    slow = generate_profile(AnalyticEstimator(EXAMPLE_ENGINE),
                            _sweep(isl_max=40960, context_max=40960, prefill_time_scale=1.25, decode_time_scale=1.12))
    fast = generate_profile(AnalyticEstimator(EXAMPLE_ENGINE), _sweep(isl_max=40960, context_max=40960))
    slow_dir, fast_dir = write_profile(slow, tmp_path / "slow"), write_profile(fast, tmp_path / "fast")
    trace = _small_trace(tmp_path / "trace.jsonl")
    ttft = {}
    for label, extra in (("matched", []), ("profile", ["--sim-profile-results-dir", str(slow_dir)]),
                         ("time-scale", ["--sim-time-scale", "1.25"])):
        assert main(["replay", "--profile-results-dir", str(fast_dir), "--trace", str(trace),
                     "--policy", "static:2,2", "--json", "--no-report", *extra]) == 0
        ttft[label] = float(json.loads(capsys.readouterr().out)["ttft_p50_ms"])
    assert ttft["profile"] > ttft["matched"] * 1.1 and ttft["time-scale"] > ttft["matched"] * 1.1
