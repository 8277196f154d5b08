"""Redaction of anything that looks like a credential before a config or error leaves the planner
(dashboard ``/config``, logs shown to users)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["REDACTED", "is_sensitive_key", "redact", "redact_text"]

REDACTED = "[redacted]"

_SENSITIVE_WORDS = frozenset(
    {
        "token", "secret", "password", "passwd", "passphrase", "credential", "credentials",
        "apikey", "auth", "authorization", "cookie", "signature", "bearer", "pat", "jwt",
    }
)
"""Words of a field name that mark it as a credential (``tokens`` is not one: ``max_tokens``)."""
_SENSITIVE_PAIRS = frozenset({("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key")})
_WORD_SPLIT = re.compile(r"[^a-zA-Z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s?#]+@", re.IGNORECASE)
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&;](?:[^=&;#\s]*?(?:token|secret|passw(?:or)?d|api[_-]?key|access[_-]?key|auth"
    r"|signature|sig|key)[^=&;#\s]*)=)[^&;#\s]*",
    re.IGNORECASE,
)
_BEARER = re.compile(r"\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)


def is_sensitive_key(key: str) -> bool:
    """Whether a field name looks like it holds a credential (by its words: ``api_token``,
    ``clientSecret``, ``PASSWORD``, ``private-key``; not ``max_tokens``)."""
    words = [w.lower() for w in _WORD_SPLIT.split(key) if w]
    if words == ["key"] or any(w in _SENSITIVE_WORDS for w in words):
        return True
    return any(pair in _SENSITIVE_PAIRS for pair in zip(words, words[1:]))


def redact_text(text: str) -> str:
    """``text`` with URL user:password, secret-looking query parameters and bearer tokens masked."""
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)
    text = _QUERY_SECRET.sub(lambda m: f"{m.group('key')}{REDACTED}", text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


def redact(value: Any, key: str = "") -> Any:
    """A copy of ``value`` (JSON-like) with credential-looking fields and substrings masked: the
    whole value of a key that looks sensitive (unless it is empty), credentials inside strings."""
    if key and is_sensitive_key(key) and value not in (None, "", False):
        return REDACTED
    if isinstance(value, Mapping):
        return {str(k): redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
