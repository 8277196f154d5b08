"""Analytic profiles for evaluation tests: the example engine model on other GPU classes."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from sla_planner.perf.analytic import AnalyticEngineSpec

_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "generate_example_profile.py"

#: An A100-class GPU (312 TFLOP/s BF16, 2.0 TB/s): prefill ~3x and decode ~1.7x slower than the example.
A100_LIKE = AnalyticEngineSpec(peak_flops=312e12, hbm_bandwidth=2.0e12)


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_example_profile", _SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_profile(directory: Path, engine: AnalyticEngineSpec = A100_LIKE, seed: int = 7) -> Path:
    """Write a profile directory sampled from ``engine`` the way builtin:example was."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in _generator().render(seed, engine).items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory
