"""Helpers the subcommands share: bounded argument types and loading the profile a config names.

Every number a flag takes is bounded (bad-input rule): finite, within a range that keeps the
arithmetic it feeds finite, and refused by argparse (exit 2, ``error: ...``) otherwise.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable
from typing import Any

from ..documents import short_repr
from ..errors import SlaPlannerError

__all__ = [
    "MAX_COUNT",
    "output_path",
    "load_config_and_models",
    "MAX_NUMBER",
    "MAX_SECONDS",
    "positive_float",
    "count",
    "float_in",
    "int_in",
    "load_models",
]

#: Largest value of a plain number flag (request counts, latencies): products of three such
#: numbers stay far from float overflow.
MAX_NUMBER = 1e15
#: Largest duration flag (about 31 years).
MAX_SECONDS = 1e9
#: Largest integer flag (fits a C int everywhere it goes).
MAX_COUNT = 2**31 - 1


def float_in(low: float, high: float, *, low_inclusive: bool = True) -> Callable[[str], float]:
    """argparse type: a finite number in [low, high] (or (low, high] with low_inclusive False)."""
    opening = "[" if low_inclusive else "("

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {short_repr(text)}") from None
        above_low = value >= low if low_inclusive else value > low
        if not math.isfinite(value) or not above_low or value > high:
            raise argparse.ArgumentTypeError(
                f"must be a finite number in {opening}{low:g}, {high:g}], got {short_repr(text)}"
            )
        return value

    return parse


def int_in(low: int, high: int) -> Callable[[str], int]:
    """argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        stripped = text.strip().lstrip("+-")
        if len(stripped) > 40 or not stripped.isdigit():
            raise argparse.ArgumentTypeError(f"not an integer: {short_repr(text)}")
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in {low}..{high:,}, got {short_repr(text)}")
        return value

    return parse


#: argparse type: a finite number in [0, MAX_NUMBER].
positive_float = float_in(0.0, MAX_NUMBER)
#: argparse type: an integer in [0, MAX_COUNT].
count = int_in(0, MAX_COUNT)


def output_path(text: str) -> str:
    """argparse type: a path to write to: not empty, no NUL byte, within the system's limits."""
    parts = text.split("/")
    if not text or "\x00" in text or len(text) > 4096 or any(len(part) > 255 for part in parts):
        raise argparse.ArgumentTypeError(
            "must be a path: not empty, no NUL byte, at most 4096 characters and 255 per name"
        )
    return text


def load_config_and_models(cfg: Any) -> tuple[Any, Any]:
    """``cfg`` with the profile's GPUs per engine where the user set none, and the models."""
    from ..perf import adopt_profile_gpus

    models = load_models(cfg)
    return adopt_profile_gpus(cfg, models), models


def load_models(cfg: Any) -> Any:
    """The prefill/decode models of ``cfg.profile_results_dir`` for the pools of its mode."""
    from ..perf import load_profile

    if cfg.profile_results_dir is None:
        raise SlaPlannerError(
            "profile_results_dir is not set: pass --profile-results-dir DIR "
            "(or builtin:example for the profile bundled with sla-planner)"
        )
    pools = set(cfg.pools())
    models = load_profile(
        cfg.profile_results_dir,
        need_prefill=bool(pools & {"prefill", "agg"}),
        need_decode=bool(pools & {"decode", "agg"}),
    )
    return models
