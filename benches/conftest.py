"""Shared fixtures for the kernel benchmarks: profile-shaped inputs of realistic size."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from sla_planner.kernels import interp_ref


@dataclass(frozen=True)
class DecodeGrid:
    """A decode profile on a uniform grid: KV usage (x, 0-1) by context length (y, tokens)."""

    z_itl_ms: np.ndarray
    z_thpt_per_gpu: np.ndarray
    x_min: float
    dx: float
    y_min: float
    dy: float


@dataclass(frozen=True)
class PrefillCurve:
    """A prefill profile: input sequence length knots and TTFT with PCHIP slopes."""

    isl: np.ndarray
    ttft_ms: np.ndarray
    slopes: np.ndarray


@pytest.fixture(scope="session")
def decode_grid() -> DecodeGrid:
    """100 KV-usage points by 50 context lengths; ITL and throughput rise with KV usage."""
    kv = np.linspace(0.0, 1.0, 100)
    ctx = np.linspace(0.0, 8000.0, 50)
    x, y = np.meshgrid(kv, ctx, indexing="ij")
    itl_ms = 8.0 + 25.0 * x**1.5 + y / 1000.0
    thpt = 2000.0 * x * (1.0 - 0.3 * y / 8000.0) + 50.0
    return DecodeGrid(itl_ms, thpt, 0.0, float(kv[1] - kv[0]), 0.0, float(ctx[1] - ctx[0]))


@pytest.fixture(scope="session")
def prefill_curve() -> PrefillCurve:
    """20 ISL knots from 128 to 16384 tokens with a superlinear TTFT."""
    isl = np.geomspace(128.0, 16384.0, 20)
    ttft_ms = 20.0 + 0.01 * isl + 2e-6 * isl**2
    return PrefillCurve(isl, ttft_ms, interp_ref.pchip_slopes(isl, ttft_ms))


@pytest.fixture(scope="session")
def rng() -> np.random.Generator:
    """Seeded generator: every run times the same inputs."""
    return np.random.default_rng(20240601)
