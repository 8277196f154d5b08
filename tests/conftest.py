"""Session setup shared by all tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _compiled_simulator() -> None:
    """Compile the numba simulator once, first: on a fresh checkout that takes seconds, and
    tests that wait on real-time mock engines must not spend their timeouts compiling."""
    from sla_planner.sim.cluster import warm_up

    warm_up()
