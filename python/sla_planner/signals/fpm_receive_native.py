"""The native receive path of :class:`~sla_planner.signals.fpm_subscriber.FpmSubscriber`.

``sla_planner._native.FpmReceiver`` keeps one ZMTP SUB connection per endpoint and reads them on
a native thread straight into the ingestor's table (no GIL, no per-message Python object). The
subscriber's own thread then only applies discovery and, every poll interval, maps the engines
the receiver learned to their endpoints. Used when the extension is built, the ingestor is the
native ``FpmIngestor`` (the receiver shares its table) and the receive time is the wall clock
(the receiver stamps messages itself); otherwise the Python loop (pyzmq) runs, and
``SLA_PLANNER_NO_EXTENSIONS=1`` always selects it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .. import kernels
from ..errors import KernelError

__all__ = ["native_receiver_for", "NATIVE_COUNTERS"]

#: counters the receiver keeps (the subscriber reports them instead of its own)
NATIVE_COUNTERS = ("received", "bad_frames", "oversized")


def native_receiver_for(
    ingestor: Any, clock: Callable[[], float], max_payload_bytes: int, prefer: bool | None
) -> Any | None:
    """A started ``FpmReceiver`` feeding ``ingestor``, or None when the Python loop must run
    (``prefer=False``, no extension, a reference ingestor, or a clock other than ``time.time``).
    ``prefer=True`` raises KernelError when the native path cannot be used."""
    if prefer is False:
        return None
    reasons = []
    native: Any = None
    if not kernels.USING_EXTENSIONS:
        reasons.append("SLA_PLANNER_NO_EXTENSIONS is set")
    else:
        from .. import _native

        native = _native
    if native is not None and not isinstance(ingestor, native.FpmIngestor):
        reasons.append(f"the ingestor is {type(ingestor).__name__}, not the native FpmIngestor")
    if clock is not time.time:
        reasons.append("a custom clock is set (the native loop stamps messages with time.time)")
    if reasons:
        if prefer:
            raise KernelError("the native FPM receive loop cannot be used: " + "; ".join(reasons))
        return None
    assert native is not None
    return native.FpmReceiver(ingestor, max_payload_bytes=max_payload_bytes)
