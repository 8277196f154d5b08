"""A small PromQL client over aiohttp: instant and range queries, retries within a deadline.

Every failure is a :class:`~sla_planner.errors.SignalError` naming the Prometheus URL and the
cause (connection refused, timeout, HTTP status with Prometheus' own error text, a body that is
not the API's JSON, a non-success status). Connection errors, timeouts, HTTP 429 and 5xx are
retried with exponential backoff and full jitter until ``deadline_s`` has passed since the call
began; everything else fails at once. The bearer token (a value, or a file re-read on every
request so a rotated Kubernetes token is picked up) is sent as ``Authorization: Bearer ...`` and
appears in no message and no log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from ..errors import ConfigError, SignalError

__all__ = ["PromSettings", "PromClient", "Sample", "Series"]

log = logging.getLogger(__name__)

Sample = tuple[dict[str, str], float]
"""One element of an instant vector: labels and value (NaN/Inf kept as floats)."""
Series = tuple[dict[str, str], list[tuple[float, float]]]
"""One range-vector series: labels and (timestamp, value) points."""

_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_MAX_ERROR_TEXT = 300


@dataclass(frozen=True)
class PromSettings:
    """Where Prometheus is and how to talk to it."""

    url: str
    """Base URL (``http(s)://host:port[/prefix]``); the API paths are appended."""
    timeout_s: float = 3.0
    """Per HTTP request (connect + response)."""
    deadline_s: float = 8.0
    """Total time one query may take, retries included."""
    bearer_token: str | None = field(default=None, repr=False)
    bearer_token_file: str | None = None
    ca_bundle: str | None = None
    backoff_s: float = 0.2
    """First retry delay; doubles per attempt (full jitter), capped at 2 s."""

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"Prometheus URL {self.url!r} must be http(s)://HOST[:PORT][/PATH]")
        for name in ("timeout_s", "deadline_s", "backoff_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"Prometheus {name} must be finite and > 0, got {value!r}")
        if self.bearer_token is not None and self.bearer_token_file is not None:
            raise ConfigError("Prometheus: set a bearer token or a bearer token file, not both")
        if self.bearer_token_file is not None and not Path(self.bearer_token_file).is_file():
            raise ConfigError(f"Prometheus bearer token file {self.bearer_token_file}: not found")
        if self.ca_bundle is not None and not Path(self.ca_bundle).is_file():
            raise ConfigError(f"Prometheus CA bundle {self.ca_bundle}: not found")


class _Retryable(Exception):
    """A failure worth another attempt (the message is the SignalError's cause)."""


class PromClient:
    """Instant and range PromQL queries against one Prometheus (see the module docstring).

    The aiohttp session is created on first use inside the running event loop; call
    :meth:`close` when done.
    """

    def __init__(self, settings: PromSettings, *, rng: random.Random | None = None) -> None:
        self.settings = settings
        self._base = settings.url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | None = None
        if settings.ca_bundle is not None:
            try:
                self._ssl = ssl.create_default_context(cafile=settings.ca_bundle)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"Prometheus CA bundle {settings.ca_bundle}: {exc}") from None
        self._rng = rng or random.Random()
        self.requests = 0
        self.retries = 0

    def _headers(self) -> dict[str, str]:
        token = self.settings.bearer_token
        if self.settings.bearer_token_file is not None:
            try:
                token = Path(self.settings.bearer_token_file).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise SignalError(
                    f"Prometheus {self._base}: cannot read the bearer token file "
                    f"{self.settings.bearer_token_file}: {type(exc).__name__}"
                ) from None
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
            connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True)
            self._session = aiohttp.ClientSession(timeout=timeout, connector=connector)
        return self._session

    async def close(self) -> None:
        """Close the HTTP session (idempotent)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    # ------------------------------------------------------------------ queries
    async def query(self, promql: str, at_s: float | None = None) -> list[Sample]:
        """Instant query: the vector's samples (raises SignalError)."""
        form = {"query": promql}
        if at_s is not None:
            form["time"] = f"{at_s:.3f}"
        data = await self._call("/api/v1/query", form)
        return _parse_vector(data, self._base)

    async def query_range(self, promql: str, start_s: float, end_s: float, step_s: float) -> list[Series]:
        """Range query from ``start_s`` to ``end_s`` every ``step_s`` seconds (raises SignalError)."""
        form = {"query": promql, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}", "step": f"{step_s:.3f}"}
        data = await self._call("/api/v1/query_range", form)
        return _parse_matrix(data, self._base)

    async def ready(self) -> bool:
        """Whether ``/-/ready`` answers 200 (one attempt; never raises)."""
        try:
            async with self._session_now().get(self._base + "/-/ready", headers=self._headers()) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError, SignalError):
            return False

    async def _call(self, path: str, form: dict[str, str]) -> Any:
        deadline = time.monotonic() + self.settings.deadline_s
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._once(path, form, deadline)
            except _Retryable as exc:
                delay = self._rng.uniform(0.0, min(2.0, self.settings.backoff_s * 2 ** (attempt - 1)))
                if time.monotonic() + delay >= deadline:
                    raise SignalError(
                        f"Prometheus {self._base}: {exc} (gave up after {attempt} attempt(s) "
                        f"within {self.settings.deadline_s:g} s)"
                    ) from None
                self.retries += 1
                log.debug("Prometheus %s: %s; retrying in %.2f s", self._base, exc, delay)
                await asyncio.sleep(delay)

    async def _once(self, path: str, form: dict[str, str], deadline: float) -> Any:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Retryable("deadline passed")
        timeout = aiohttp.ClientTimeout(total=min(self.settings.timeout_s, remaining))
        self.requests += 1
        try:
            async with self._session_now().post(
                self._base + path, data=form, headers=self._headers(), timeout=timeout
            ) as resp:
                body = await resp.read()
                status = resp.status
        except asyncio.TimeoutError:
            raise _Retryable(f"no answer within {timeout.total:g} s") from None
        except aiohttp.ClientError as exc:
            raise _Retryable(f"{type(exc).__name__}: {_short(str(exc))}") from None
        if status in _RETRY_STATUS:
            raise _Retryable(f"HTTP {status}{_api_error(body)}")
        if status != 200:
            raise SignalError(f"Prometheus {self._base}{path}: HTTP {status}{_api_error(body)}")
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise SignalError(
                f"Prometheus {self._base}{path}: the answer is not JSON ({_short(repr(body[:80]))})"
            ) from None
        if not isinstance(doc, dict):
            raise SignalError(f"Prometheus {self._base}{path}: the answer is not a JSON object")
        if doc.get("status") != "success":
            raise SignalError(
                f"Prometheus {self._base}{path}: status {doc.get('status')!r}: "
                f"{_short(str(doc.get('errorType', '')))} {_short(str(doc.get('error', '')))}".rstrip()
            )
        return doc.get("data")


def _short(text: str) -> str:
    return text if len(text) <= _MAX_ERROR_TEXT else text[:_MAX_ERROR_TEXT] + "..."


def _api_error(body: bytes) -> str:
    """``: <error>`` from a Prometheus error body, or a short excerpt of any other body."""
    try:
        doc = json.loads(body)
        if isinstance(doc, dict) and doc.get("error"):
            return f": {_short(str(doc['error']))}"
    except (ValueError, UnicodeDecodeError):
        pass
    text = body[:120].decode("utf-8", "replace").strip()
    return f": {_short(text)}" if text else ""


def _value(raw: Any, where: str) -> float:
    if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[1], str)):
        raise SignalError(f"{where}: expected [timestamp, \"value\"], got {_short(repr(raw))}")
    try:
        return float(raw[1])  # "NaN", "+Inf", "-Inf" parse; the caller decides what they mean
    except ValueError:
        raise SignalError(f"{where}: value {raw[1]!r} is not a number") from None


def _labels(raw: Any, where: str) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise SignalError(f"{where}: 'metric' must be an object of string labels")
    return dict(raw)


def _result(data: Any, kind: str, base: str) -> list[Any]:
    if not isinstance(data, dict) or data.get("resultType") != kind or not isinstance(data.get("result"), list):
        got = data.get("resultType") if isinstance(data, dict) else type(data).__name__
        raise SignalError(f"Prometheus {base}: expected a {kind} result, got {got!r}")
    items = data["result"]
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise SignalError(f"Prometheus {base}: result[{i}] is not an object")
    return items


def _parse_vector(data: Any, base: str) -> list[Sample]:
    out: list[Sample] = []
    for i, item in enumerate(_result(data, "vector", base)):
        where = f"Prometheus {base}: result[{i}]"
        out.append((_labels(item.get("metric"), where), _value(item.get("value"), where)))
    return out


def _parse_matrix(data: Any, base: str) -> list[Series]:
    out: list[Series] = []
    for i, item in enumerate(_result(data, "matrix", base)):
        where = f"Prometheus {base}: result[{i}]"
        values = item.get("values")
        if not isinstance(values, list):
            raise SignalError(f"{where}: 'values' must be a list")
        points = []
        for raw in values:
            if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], (int, float))):
                raise SignalError(f"{where}: expected [timestamp, \"value\"], got {_short(repr(raw))}")
            points.append((float(raw[0]), _value(raw, where)))
        out.append((_labels(item.get("metric"), where), points))
    return out
