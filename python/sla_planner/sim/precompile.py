"""Populate numba's on-disk cache for the simulator: ``python -m sla_planner.sim.precompile``.

The simulator's engine loop is jitted with ``cache=True``; compiling it is most of a first replay
(about 8 of 10 s on an idle core). This module compiles every specialisation a replay uses by
running the real code paths on small inputs, without depending on what the kernel contains: the
aggregated and disaggregated simulator (:func:`~sla_planner.sim.cluster.warm_up`), then a replay
of the bundled trace thinned to 5% and ten times faster, with the planner in the loop. ``make
install`` and CI run it right after ``pip install``, so the first real replay loads compiled code.
The cache lives where numba puts it (``__pycache__`` beside the sources when writable, else the
user cache directory; ``NUMBA_CACHE_DIR`` overrides both).
"""

from __future__ import annotations

import contextlib
import io
import time

__all__ = ["precompile"]

#: the short replay that compiles what a full one uses
REPLAY_ARGS = (
    "replay", "--trace", "builtin:mooncake_conversation", "--profile-results-dir", "builtin:example",
    "--rate-scale", "0.05", "--time-scale", "0.1", "--json",
)


def precompile() -> float:
    """Compile (or load) every simulator specialisation; returns the seconds it took."""
    from ..cli import main
    from .cluster import warm_up

    start = time.perf_counter()
    warm_up()
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(list(REPLAY_ARGS))
    if code != 0:
        raise RuntimeError(f"the precompile replay exited with {code}")
    return time.perf_counter() - start


if __name__ == "__main__":  # pragma: no cover - exercised by make install and CI
    print(f"sla-planner: simulator compiled and cached in {precompile():.1f} s")
