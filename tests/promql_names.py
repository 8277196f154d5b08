"""Metric names out of a PromQL expression (enough of the grammar for dashboard queries), and the
sample names a planner-metrics registry exports."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["metric_names", "exported_sample_names", "grafana_exprs"]

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE)
_IDENT = re.compile(r"(?<![\w:.$])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")
_NOT_NAMES = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
     "offset", "inf", "nan", "atan2", "topk", "bottomk", "sum", "min", "max", "avg", "count",
     "stddev", "stdvar", "quantile", "count_values", "group"}
)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (function names, keywords, labels left out)."""
    text = _STRING.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _NOT_NAMES:
            continue
        names.add(name)
    return names


def exported_sample_names(registry: Any) -> set[str]:
    """Every sample name in ``registry`` (``_total``, ``_bucket``, ... included)."""
    return {sample.name for family in registry.collect() for sample in family.samples}


def grafana_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every query of every panel, rows' nested panels included."""
    out = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    out.append((panel.get("title", "?"), target["expr"]))
            walk(panel.get("panels", []))

    walk(dashboard.get("panels", []))
    return out
