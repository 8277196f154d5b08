"""`sla-planner validate`: check a config and its profiling data."""

from __future__ import annotations

import argparse

from ._common import load_models as _load_models

__all__ = ["add_validate_parser"]


def add_validate_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``validate``."""
    from ..config import add_config_arguments

    p = sub.add_parser(
        "validate",
        help="check a config (and its profiling data) and exit 0, or 2 with the errors",
    )
    add_config_arguments(p)
    p.set_defaults(func=_run_validate)


def _run_validate(ns: argparse.Namespace) -> int:
    from ..config import config_from_args

    cfg = config_from_args(ns)
    checked = ["config"]
    if cfg.profile_results_dir is not None:
        models = _load_models(cfg)
        checked.append(f"profile {models.source}")
    print(f"ok: {', '.join(checked)} valid (mode {cfg.mode}, optimization_target {cfg.optimization_target})")
    return 0
