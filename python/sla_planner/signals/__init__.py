"""Live signals: engine discovery, the ZMQ ForwardPassMetrics subscriber and a mock engine.

The mock engine imports the simulator (numba); import it from
:mod:`sla_planner.signals.mock_engine` when needed rather than from here.
"""

from __future__ import annotations

from .discovery import (
    ROLES,
    Discovery,
    EngineEndpoint,
    FileDiscovery,
    MergedDiscovery,
    Role,
    StaticDiscovery,
    parse_discovery_text,
    parse_endpoint_list,
    validate_endpoint,
)
from .fpm_subscriber import UNKNOWN_ROLE, FpmSubscriber

__all__ = [
    "ROLES",
    "Role",
    "EngineEndpoint",
    "Discovery",
    "StaticDiscovery",
    "FileDiscovery",
    "MergedDiscovery",
    "parse_endpoint_list",
    "parse_discovery_text",
    "validate_endpoint",
    "FpmSubscriber",
    "UNKNOWN_ROLE",
]
