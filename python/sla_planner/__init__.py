"""sla-planner: SLA-driven autoscaling for LLM inference (prefill / decode / aggregated pools)."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
