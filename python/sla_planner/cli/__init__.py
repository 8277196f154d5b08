"""The `sla-planner` command: one subcommand per module, config flags shared by all of them."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import SlaPlannerError

__all__ = ["main", "build_parser"]

log = logging.getLogger("sla_planner")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="sla-planner",
        description="SLA-driven autoscaler for LLM inference (prefill / decode / aggregated pools).",
    )
    parser.add_argument("--version", action="version", version=f"sla-planner {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    from .bench import add_bench_parser
    from .evaluate import add_evaluate_parser
    from .fpm import add_fpm_parsers
    from .plan import add_plan_parser
    from .profile import add_profile_parser
    from .replay import add_replay_parsers
    from .run import add_run_parser
    from .validate import add_validate_parser

    add_plan_parser(sub)
    add_validate_parser(sub)
    add_replay_parsers(sub)
    add_fpm_parsers(sub)
    add_bench_parser(sub)
    add_run_parser(sub)
    add_profile_parser(sub)
    add_evaluate_parser(sub)  # policy evaluation matrix (issue 8)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `sla-planner` console script; returns the exit code."""
    parser = build_parser()
    ns = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(ns.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(ns.func(ns))
    except SlaPlannerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path or device the user named; never a traceback
        from ..documents import short_repr

        print(f"error: {short_repr(str(exc), 300)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
