"""A small etcd v3 client over etcd's JSON gRPC-gateway (HTTP), for the virtual connector.

etcd serves its v3 API as JSON at ``/v3/...`` (etcd 3.4 also at ``/v3beta``; 3.3 only at
``/v3beta``, not supported): keys and values travel base64-encoded, 64-bit integers as decimal
strings. This client needs only aiohttp, and uses four calls: ``/v3/kv/range``, ``/v3/kv/put``,
``/v3/kv/txn`` and the streaming ``/v3/watch`` (one JSON object per line).

Every call has a timeout. Endpoints are tried in turn: a read or a watch moves on to the next
endpoint on any transport failure, a write only when the request never reached the server
(connection refused), because a write that timed out may have been applied. Every failure is an
:class:`~sla_planner.errors.EtcdError` naming the call, the endpoints and the causes.
Username/password authentication (``/v3/auth/authenticate``, token renewed when etcd rejects it)
and TLS (CA bundle, client certificate) are options.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from ..errors import EtcdError
from .virtual_wire import DEFAULT_ENDPOINT, parse_endpoints

__all__ = [
    "DEFAULT_ENDPOINT",
    "EtcdClient",
    "KeyValue",
    "RangeResult",
    "WatchResult",
    "parse_endpoints",
    "prefix_range_end",
]

_API = "/v3"
#: gRPC status codes etcd reports for a token it no longer accepts.
_AUTH_CODES = frozenset({16})
_AUTH_MESSAGES = ("invalid auth token", "user name is empty")


@dataclass(frozen=True)
class KeyValue:
    """One key as etcd returns it."""

    key: str
    value: bytes
    mod_revision: int
    create_revision: int = 0


@dataclass(frozen=True)
class RangeResult:
    """The keys of one range read and the store revision it saw."""

    kvs: tuple[KeyValue, ...]
    revision: int


@dataclass(frozen=True)
class WatchResult:
    """How a watch ended: changed keys, nothing before the deadline, or history compacted."""

    kind: Literal["events", "timeout", "compacted"]
    keys: tuple[str, ...] = ()
    revision: int = 0


def prefix_range_end(prefix: bytes) -> bytes:
    """The exclusive range end covering every key that starts with ``prefix``."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"  # every key


def _b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def _int(value: object, what: str) -> int:
    try:
        return int(str(value)) if value is not None else 0
    except ValueError:
        raise EtcdError(f"etcd: {what} is not an integer: {value!r}") from None


def _key_value(item: Mapping[str, Any]) -> KeyValue:
    try:
        key = base64.b64decode(item.get("key", ""), validate=True).decode("utf-8")
        value = base64.b64decode(item.get("value", ""), validate=True)
    except (ValueError, TypeError) as exc:
        raise EtcdError(f"etcd: undecodable key or value in a response: {exc}") from None
    return KeyValue(
        key=key,
        value=value,
        mod_revision=_int(item.get("mod_revision"), "mod_revision"),
        create_revision=_int(item.get("create_revision"), "create_revision"),
    )


class _Rejected(Exception):
    """etcd answered with an error: not a transport failure, no other endpoint will differ."""

    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    @property
    def auth_expired(self) -> bool:
        return self.code in _AUTH_CODES or any(m in self.message for m in _AUTH_MESSAGES)


class EtcdClient:
    """etcd v3 over HTTP: range, put, transaction and watch, with failover and timeouts.

    ``timeout_s`` bounds each request to one endpoint (connect and response); a watch is bounded
    by its own deadline. Create it anywhere; the HTTP session opens on first use in the running
    event loop. Call :meth:`close` when done.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str] = DEFAULT_ENDPOINT,
        *,
        timeout_s: float = 5.0,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"etcd timeout_s must be > 0, got {timeout_s}")
        if (username is None) != (password is None):
            raise ValueError("etcd authentication needs both a username and a password")
        if (cert_file is None) != (key_file is None):
            raise ValueError("etcd TLS client authentication needs both a certificate and a key")
        self.endpoints = parse_endpoints(endpoints)
        self.timeout_s = float(timeout_s)
        self._username = username
        self._password = password
        self._ssl: ssl.SSLContext | None = None
        if ca_file is not None or cert_file is not None:
            try:
                context = ssl.create_default_context(cafile=ca_file)
                if cert_file is not None and key_file is not None:
                    context.load_cert_chain(cert_file, key_file)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"etcd TLS files: {exc}") from None
            self._ssl = context
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._current = 0

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        endpoints: str | Sequence[str] | None = None,
        *,
        timeout_s: float = 5.0,
    ) -> EtcdClient:
        """A client configured as Dynamo's components are: ``ETCD_ENDPOINTS`` (comma list; the
        ``endpoints`` argument wins), ``ETCD_AUTH_USERNAME``/``ETCD_AUTH_PASSWORD``,
        ``ETCD_AUTH_CA`` and ``ETCD_AUTH_CLIENT_CERT``/``ETCD_AUTH_CLIENT_KEY``."""

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        chosen = endpoints if endpoints is not None else get("ETCD_ENDPOINTS") or DEFAULT_ENDPOINT
        return cls(
            chosen,
            timeout_s=timeout_s,
            username=get("ETCD_AUTH_USERNAME"),
            password=get("ETCD_AUTH_PASSWORD"),
            ca_file=get("ETCD_AUTH_CA"),
            cert_file=get("ETCD_AUTH_CLIENT_CERT"),
            key_file=get("ETCD_AUTH_CLIENT_KEY"),
        )

    @property
    def endpoint(self) -> str:
        """The endpoint the next request goes to first (the last one that answered)."""
        return self.endpoints[self._current]

    # -- public calls -------------------------------------------------------------------------

    async def get_prefix(self, prefix: str) -> RangeResult:
        """Every key under ``prefix`` and the revision of the read (linearizable)."""
        raw = prefix.encode()
        body = {"key": _b64(raw), "range_end": _b64(prefix_range_end(raw))}
        reply = await self._call("range", "/kv/range", body, idempotent=True)
        kvs = tuple(_key_value(item) for item in reply.get("kvs", ()))
        return RangeResult(kvs=kvs, revision=self._revision(reply))

    async def get(self, key: str) -> KeyValue | None:
        """One key, or None when it does not exist."""
        reply = await self._call("range", "/kv/range", {"key": _b64(key)}, idempotent=True)
        kvs = reply.get("kvs", ())
        return _key_value(kvs[0]) if kvs else None

    async def put(self, key: str, value: bytes) -> int:
        """Write one key; returns the new store revision."""
        body = {"key": _b64(key), "value": _b64(value)}
        return self._revision(await self._call("put", "/kv/put", body, idempotent=False))

    async def txn(
        self,
        puts: Mapping[str, bytes],
        mod_revisions: Mapping[str, int] | None = None,
    ) -> tuple[bool, int]:
        """Write every key of ``puts`` in one transaction, only if each key of ``mod_revisions``
        still has that mod revision (0 = the key does not exist). Returns (written, revision)."""
        compare = [
            {
                "key": _b64(key),
                "target": "MOD",
                "result": "EQUAL",
                "mod_revision": str(revision),
            }
            for key, revision in (mod_revisions or {}).items()
        ]
        success = [
            {"request_put": {"key": _b64(key), "value": _b64(value)}} for key, value in puts.items()
        ]
        body = {"compare": compare, "success": success}
        reply = await self._call("txn", "/kv/txn", body, idempotent=False)
        return bool(reply.get("succeeded", False)), self._revision(reply)

    async def watch_prefix(self, prefix: str, start_revision: int, timeout_s: float) -> WatchResult:
        """Wait until a key under ``prefix`` changes at or after ``start_revision``, at most
        ``timeout_s``. Moves to the next endpoint when a stream breaks; raises EtcdError when
        every endpoint failed in a row."""
        raw = prefix.encode()
        body = {
            "create_request": {
                "key": _b64(raw),
                "range_end": _b64(prefix_range_end(raw)),
                "start_revision": str(max(int(start_revision), 1)),
            }
        }
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout_s, 0.0)
        failures: dict[str, str] = {}
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return WatchResult("timeout")
            endpoint = self.endpoint
            try:
                async with asyncio.timeout(remaining):
                    return await self._watch_stream(endpoint, body)
            except TimeoutError:
                return WatchResult("timeout")
            except _Rejected as exc:
                raise EtcdError(f"etcd watch at {endpoint}: {exc.message}") from None
            except (aiohttp.ClientError, OSError, ValueError, EtcdError) as exc:
                failures[endpoint] = _describe(exc)
                self._current = (self._current + 1) % len(self.endpoints)
                if len(failures) == len(self.endpoints):
                    raise EtcdError(_all_failed("watch", failures)) from None

    async def close(self) -> None:
        """Close the HTTP session (idempotent)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- transport ----------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True),
            )
        return self._session

    def _timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self.timeout_s, connect=self.timeout_s)

    @staticmethod
    def _revision(reply: Mapping[str, Any]) -> int:
        header = reply.get("header") or {}
        return _int(header.get("revision"), "header revision")

    async def _call(
        self, what: str, path: str, body: Mapping[str, Any], *, idempotent: bool
    ) -> dict[str, Any]:
        """POST to the current endpoint, failing over as described in the module docstring."""
        failures: dict[str, str] = {}
        for _ in range(len(self.endpoints)):
            endpoint = self.endpoint
            try:
                return await self._post_authenticated(endpoint, path, body)
            except _Rejected as exc:
                raise EtcdError(f"etcd {what} at {endpoint}: {exc.message}") from None
            except (aiohttp.ClientConnectorError, ConnectionRefusedError) as exc:
                failures[endpoint] = _describe(exc)  # never reached the server: safe to retry
            except (aiohttp.ClientError, OSError, TimeoutError, EtcdError) as exc:
                failures[endpoint] = _describe(exc)
                if not idempotent:
                    self._current = (self._current + 1) % len(self.endpoints)
                    raise EtcdError(
                        f"etcd {what} at {endpoint}: {failures[endpoint]}; the write may or may "
                        "not have been applied"
                    ) from None
            self._current = (self._current + 1) % len(self.endpoints)
        raise EtcdError(_all_failed(what, failures))

    async def _post_authenticated(
        self, endpoint: str, path: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        if self._username is not None and self._token is None:
            await self._authenticate(endpoint)
        try:
            return await self._post(endpoint, path, body)
        except _Rejected as exc:
            if self._username is None or not exc.auth_expired:
                raise
            await self._authenticate(endpoint)  # the token expired: renew once
            return await self._post(endpoint, path, body)

    async def _authenticate(self, endpoint: str) -> None:
        self._token = None
        body = {"name": self._username, "password": self._password}
        try:
            reply = await self._post(endpoint, "/auth/authenticate", body, auth=False)
        except _Rejected as exc:
            raise EtcdError(
                f"etcd authentication as {self._username!r} at {endpoint}: {exc.message}"
            ) from None
        token = reply.get("token")
        if not isinstance(token, str) or not token:
            raise EtcdError(f"etcd authentication at {endpoint}: the reply carries no token")
        self._token = token

    async def _post(
        self, endpoint: str, path: str, body: Mapping[str, Any], *, auth: bool = True
    ) -> dict[str, Any]:
        headers = {"Authorization": self._token} if auth and self._token else {}
        async with self._http().post(
            endpoint + _API + path, json=body, headers=headers, timeout=self._timeout()
        ) as response:
            text = await response.text()
            reply = _json_object(text, endpoint + _API + path, response.status)
            if response.status >= 500:
                # leader change, member unavailable, request timed out: another endpoint may
                # answer (a write is then reported as possibly applied)
                message = str(reply.get("message") or reply.get("error") or text[:200])
                raise aiohttp.ClientResponseError(
                    response.request_info, (), status=response.status, message=message
                )
            if response.status >= 400 or "error" in reply:
                message = str(reply.get("message") or reply.get("error") or text[:200])
                code = reply.get("code")
                raise _Rejected(response.status, code if isinstance(code, int) else None, message)
            return reply

    async def _watch_stream(self, endpoint: str, body: Mapping[str, Any]) -> WatchResult:
        """One watch at ``endpoint``; an expired token is renewed once."""
        for attempt in (0, 1):
            if self._username is not None and self._token is None:
                await self._authenticate(endpoint)
            try:
                return await self._watch_once(endpoint, body)
            except _Rejected as exc:
                if attempt or self._username is None or not exc.auth_expired:
                    raise
                self._token = None
        raise AssertionError("unreachable")

    async def _watch_once(self, endpoint: str, body: Mapping[str, Any]) -> WatchResult:
        headers = {"Authorization": self._token} if self._token else {}
        timeout = aiohttp.ClientTimeout(total=None, connect=self.timeout_s)
        async with self._http().post(
            endpoint + _API + "/watch", json=body, headers=headers, timeout=timeout
        ) as response:
            if response.status != 200:
                text = await response.text()
                reply = _json_object(text, endpoint + _API + "/watch", response.status)
                message = str(reply.get("message") or reply.get("error") or text[:200])
                if 400 <= response.status < 500:
                    raise _Rejected(response.status, None, message)
                raise EtcdError(f"HTTP {response.status}: {message}")
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    outcome = _watch_message(line, endpoint)
                    if outcome is not None:
                        return outcome
            raise EtcdError("the watch stream ended")


def _watch_message(line: bytes, endpoint: str) -> WatchResult | None:
    """One line of the watch stream: an outcome, or None for a message to skip."""
    if not line.strip():
        return None
    message = _json_object(line.decode("utf-8", "replace"), endpoint + _API + "/watch", 200)
    if "error" in message:
        error = message["error"]
        detail = error.get("message") if isinstance(error, dict) else error
        raise EtcdError(f"watch error: {detail}")
    result = message.get("result") or {}
    if result.get("canceled"):
        if _int(result.get("compact_revision"), "compact_revision") > 0:
            return WatchResult("compacted")
        # refused (authentication, permission): another endpoint would refuse as well
        raise _Rejected(200, None, str(result.get("cancel_reason") or "watch canceled"))
    events = result.get("events") or ()
    if not events:
        return None  # the "created" confirmation or a progress notification
    keys = tuple(_key_value(event.get("kv") or {}).key for event in events)
    revision = _int((result.get("header") or {}).get("revision"), "header revision")
    return WatchResult("events", keys=keys, revision=revision)


def _json_object(text: str, url: str, status: int) -> dict[str, Any]:
    try:
        reply = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        raise EtcdError(f"{url}: HTTP {status}, not JSON: {text[:120]!r}") from None
    if not isinstance(reply, dict):
        raise EtcdError(f"{url}: HTTP {status}, expected a JSON object, got {text[:120]!r}")
    return reply


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status}: {exc.message}"
    return str(exc) or type(exc).__name__


def _all_failed(what: str, failures: Mapping[str, str]) -> str:
    causes = "; ".join(f"{endpoint}: {cause}" for endpoint, cause in failures.items())
    return f"etcd {what}: no endpoint answered ({causes})"
