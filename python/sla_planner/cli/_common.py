"""Helpers the subcommands share: argument types and loading the profile a config names."""

from __future__ import annotations

import argparse
import logging
import math
from typing import Any

from ..errors import SlaPlannerError

__all__ = ["positive_float", "count", "load_models"]


def positive_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def count(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


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
    if models.num_gpu is not None:
        for pool in sorted(pools):
            if cfg.engine_num_gpu(pool) != models.num_gpu:
                logging.getLogger("sla_planner").warning(
                    "profile %s was taken with %d GPU(s) per engine but %s engines have %d: "
                    "set --%s-engine-num-gpu %d to match",
                    models.source, models.num_gpu, pool, cfg.engine_num_gpu(pool),
                    "prefill" if pool == "prefill" else "decode", models.num_gpu,
                )
    return models
