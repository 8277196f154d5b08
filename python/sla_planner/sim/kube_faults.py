"""Fault switches of the Kubernetes API emulator: RBAC denials, injected HTTP errors, requests
that hang, and a concurrent writer before DGD patches. Thread-safe; tests flip them from any
thread while the emulator serves."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from ..connectors.kube_dgd import GROUP
from .kube_resources import DGDS, ApiError

__all__ = ["FaultSwitches"]


@dataclass
class _Failure:
    status: int
    count: int
    verb: str | None
    resource: str | None


def _matches(rules: set[tuple[str, str]], verb: str, resource: str) -> bool:
    return any(v in ("*", verb) and r in ("*", resource) for v, r in rules)


class FaultSwitches:
    """What the emulator does wrong on purpose. ``namespace`` names the service account in 403s."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._lock = threading.Lock()
        self._forbidden: set[tuple[str, str]] = set()
        self._failures: list[_Failure] = []
        self._hangs: set[tuple[str, str]] = set()
        self._conflicts = 0
        self._conflict_patch: dict[str, Any] | None = None

    def forbid(self, verb: str, resource: str = "*") -> None:
        """Deny ``verb`` on ``resource`` (``*``: every resource) with 403, as RBAC does."""
        with self._lock:
            self._forbidden.add((verb, resource))

    def allow(self, verb: str | None = None, resource: str | None = None) -> None:
        """Lift the matching :meth:`forbid` rules (all when no argument is given)."""
        with self._lock:
            self._forbidden = {
                (v, r) for v, r in self._forbidden if not (verb in (None, v) and resource in (None, r))
            }

    def fail_next(self, status: int = 500, count: int = 1, verb: str | None = None, resource: str | None = None) -> None:
        """Answer the next ``count`` matching requests with HTTP ``status``."""
        with self._lock:
            self._failures.append(_Failure(status, count, verb, resource))

    def hang(self, verb: str = "*", resource: str = "*") -> None:
        """Matching requests get no answer until :meth:`release`."""
        with self._lock:
            self._hangs.add((verb, resource))

    def release(self) -> None:
        """Let hung requests go on, and hang no new ones."""
        with self._lock:
            self._hangs.clear()

    def conflict_next(self, count: int = 1, patch: dict[str, Any] | None = None) -> None:
        """Have another writer merge-``patch`` the DGD before each of the next ``count`` DGD patches."""
        with self._lock:
            self._conflicts += count
            self._conflict_patch = patch

    def reset(self) -> None:
        """Lift every switch."""
        with self._lock:
            self._forbidden.clear()
            self._failures.clear()
            self._hangs.clear()
            self._conflicts = 0

    def hanging(self, verb: str, resource: str) -> bool:
        """Whether a request for ``verb`` on ``resource`` must wait now."""
        with self._lock:
            return _matches(self._hangs, verb, resource)

    def take_conflict(self) -> tuple[bool, dict[str, Any] | None]:
        """(whether a concurrent write is due before this DGD patch, its merge patch)."""
        with self._lock:
            due = self._conflicts > 0
            self._conflicts = max(self._conflicts - 1, 0)
            return due, self._conflict_patch

    def answer(self, verb: str, resource: str, name: str, namespace: str | None) -> ApiError | None:
        """The error this request gets from the switches, if any (a failure is used up)."""
        with self._lock:
            if _matches(self._forbidden, verb, resource):
                group = GROUP if resource == DGDS else ""
                where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
                noun = f'{resource}{"." + group if group else ""}' + (f' "{name}"' if name else "")
                return ApiError(
                    403, "Forbidden",
                    f'{noun} is forbidden: User "system:serviceaccount:{self.namespace}:planner" cannot {verb} '
                    f'resource "{resource}" in API group "{group}"{where}', {"name": name, "kind": resource},
                )
            for failure in self._failures:
                if failure.count > 0 and failure.verb in (None, verb) and failure.resource in (None, resource):
                    failure.count -= 1
                    reason = "InternalError" if failure.status == 500 else "ServiceUnavailable"
                    return ApiError(failure.status, reason, f"injected failure {failure.status} for {verb} {resource}")
        return None
