"""Connectors that read and apply replica counts (the live loop's :class:`~sla_planner.live.Connector`)."""

from .kubernetes import KubernetesConnector
from .memory import InMemoryConnector

__all__ = ["InMemoryConnector", "KubernetesConnector"]
