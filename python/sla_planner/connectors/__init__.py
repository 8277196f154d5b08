"""Connectors: read a deployment's state and ask it for replica counts (see :mod:`.base`).

``kubernetes`` and ``virtual`` need their extras and are imported from their own modules;
the in-memory connector is the fake shipped for tests and for embedding the planner in code.
"""

from .base import ApplyResult, ApplyStatus, Connector, DeploymentState, PoolState, ScaleRequest
from .memory import InMemoryConnector

__all__ = [
    "ApplyResult",
    "ApplyStatus",
    "Connector",
    "DeploymentState",
    "PoolState",
    "ScaleRequest",
    "InMemoryConnector",
]
