"""JSON and YAML documents from outside (config, profile, discovery files), parsed within bounds.

Every reader of a structured file goes through :func:`parse_json` or :func:`parse_yaml`, which
return plain Python data or raise :class:`DocumentError` (a message naming the position or the
key, never a traceback). Bounds, each checked before the data is used:

- nesting: at most :data:`MAX_DEPTH` levels of objects/lists (deeper input would exhaust the
  stack of the parser or of whatever walks the result);
- integers: at most :data:`MAX_INT_DIGITS` digits (a longer literal is refused naming its key,
  instead of Python's own 4,300-digit conversion error with no position);
- mapping keys: unique, and scalars (a YAML key such as ``? [a, b]`` is refused with its line);
- size: callers read at most ``max_bytes`` with :func:`read_bounded`.

YAML is read with a ``SafeLoader`` subclass (no Python objects); YAML 1.2 floats such as ``2e3``
are floats. Aliases are resolved as PyYAML does (shared objects, so no expansion in memory);
the depth check visits each object once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import IO, Any

import yaml

from .errors import SlaPlannerError

__all__ = [
    "DocumentError",
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "parse_json",
    "parse_yaml",
    "read_bounded",
    "short_repr",
    "short_text",
]

#: Deepest nesting of objects and lists accepted.
MAX_DEPTH = 64
#: Longest integer literal accepted, in digits (2**63 has 19).
MAX_INT_DIGITS = 40
_REPR_LIMIT = 80


class DocumentError(SlaPlannerError, ValueError):
    """A document could not be parsed or breaks a bound; the message says where."""


def short_repr(value: object, limit: int = _REPR_LIMIT) -> str:
    """``repr(value)`` cut to about ``limit`` characters (never walks a nested value)."""
    if isinstance(value, (dict, list, tuple, set)):
        count = len(value)
        return f"<{type(value).__name__} of {count} item{'' if count == 1 else 's'}>"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 133:
        return f"<integer of about {int(value.bit_length() * 0.30103) + 1:,} digits>"
    text = repr(value)
    if len(text) > limit:
        return f"{text[: max(limit - 24, 8)]}... ({len(text):,} characters)"
    return text


def short_text(text: str, limit: int = 200) -> str:
    """``text`` as it is when short, else cut with its length (for names quoted in messages)."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 24]}... ({len(text):,} characters)"


def read_bounded(fh: IO[bytes], max_bytes: int, where: str) -> bytes:
    """At most ``max_bytes`` bytes of ``fh``; DocumentError when there is more."""
    data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise DocumentError(f"{where}: larger than {max_bytes:,} bytes; refused")
    return data


# -- JSON ---------------------------------------------------------------------------------------


class _LongInt:
    """An integer literal longer than MAX_INT_DIGITS, kept as its digit count until reported."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _json_int(text: str) -> int | _LongInt:
    digits = len(text) - (1 if text.startswith("-") else 0)
    if digits > MAX_INT_DIGITS:
        return _LongInt(digits)
    return int(text)


def _long_int_in(value: object) -> _LongInt | None:
    """A _LongInt directly in ``value`` or in its lists (objects are checked by their own hook)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _LongInt):
            return item
        if isinstance(item, list):
            stack.extend(item)
    return None


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _JsonProblem(f"duplicate key {short_repr(key)}")
        long_int = _long_int_in(value)
        if long_int is not None:
            raise _JsonProblem(
                f"key {short_repr(key)}: integer of {long_int.digits:,} digits is out of range "
                f"(at most {MAX_INT_DIGITS})"
            )
        result[key] = value
    return result


class _JsonProblem(Exception):
    """Raised inside the JSON hooks; turned into a DocumentError naming the source."""


def parse_json(text: str | bytes, where: str, error: Callable[[str], Exception] = DocumentError) -> Any:
    """The value of a JSON document within the bounds above; ``error(message)`` on a problem.

    ``where`` names the source (``config file x.json``) and starts every message.
    """
    try:
        value = json.loads(text, object_pairs_hook=_unique_object, parse_int=_json_int)
    except json.JSONDecodeError as exc:
        raise error(f"{where}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except _JsonProblem as exc:
        raise error(f"{where}: invalid JSON: {exc}") from None
    except RecursionError:
        raise error(f"{where}: invalid JSON: nested more than {MAX_DEPTH} levels deep") from None
    except UnicodeDecodeError as exc:
        raise error(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:  # anything else the decoder refuses
        raise error(f"{where}: invalid JSON: {short_repr(str(exc), 200)}") from None
    long_int = _long_int_in(value)
    if long_int is not None:
        raise error(f"{where}: integer of {long_int.digits:,} digits is out of range")
    _check_depth(value, where, error)
    return value


def _check_depth(value: Any, where: str, error: Callable[[str], Exception]) -> None:
    """``error`` when ``value`` nests deeper than MAX_DEPTH (each object visited once)."""
    seen: set[int] = set()
    # (item, depth, the top-level key it sits under, for the message)
    stack: list[tuple[Any, int, str | None]] = [(value, 0, None)]
    while stack:
        item, depth, top_key = stack.pop()
        if not isinstance(item, (dict, list)) or id(item) in seen:
            continue
        seen.add(id(item))
        if depth >= MAX_DEPTH:
            at = f" under key {short_repr(top_key)}" if top_key is not None else ""
            raise error(f"{where}: nested more than {MAX_DEPTH} levels deep{at}")
        if isinstance(item, dict):
            for key, child in item.items():
                stack.append((child, depth + 1, str(key) if depth == 0 else top_key))
        else:
            stack.extend((child, depth + 1, top_key) for child in item)


# -- YAML ---------------------------------------------------------------------------------------

# YAML 1.1 needs a dot in a float ("2.0e3"); accept the YAML 1.2 / JSON spelling "2e3" as well.
_FLOAT_WITHOUT_DOT = re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$")


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader with unique scalar keys, bounded nesting and bounded integer literals."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)  # type: ignore[no-untyped-call]
        finally:
            self._depth -= 1


def _construct_mapping(loader: _BoundedLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)  # type: ignore[no-untyped-call]
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
            raise yaml.constructor.ConstructorError(
                None, None, f"a mapping key is a {kind}; keys must be scalars", key_node.start_mark
            )
        key = loader.construct_object(key_node)  # type: ignore[no-untyped-call]
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {short_repr(key)}", key_node.start_mark
            )
        try:
            result[key] = loader.construct_object(value_node)  # type: ignore[no-untyped-call]
        except _LongYamlInt as exc:
            raise yaml.constructor.ConstructorError(
                None, None,
                f"key {short_repr(key)}: integer of {exc.digits:,} digits is out of range "
                f"(at most {MAX_INT_DIGITS})",
                exc.mark,
            ) from None
    return result


class _LongYamlInt(Exception):
    def __init__(self, digits: int, mark: yaml.Mark) -> None:
        super().__init__(digits)
        self.digits = digits
        self.mark = mark


def _construct_int(loader: _BoundedLoader, node: yaml.ScalarNode) -> int:
    text = str(node.value).replace("_", "").lstrip("+-")
    if len(text) > MAX_INT_DIGITS:
        raise _LongYamlInt(len(text), node.start_mark)
    return int(loader.construct_yaml_int(node))  # type: ignore[no-untyped-call]


_BoundedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_BoundedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", _FLOAT_WITHOUT_DOT, list("-+0123456789")
)


def parse_yaml(text: str, where: str, error: Callable[[str], Exception] = DocumentError) -> Any:
    """The value of a YAML document within the bounds above; ``error(message)`` on a problem."""
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)  # the reader checks the characters here
        value = loader.get_single_data()  # type: ignore[no-untyped-call]
    except _LongYamlInt as exc:
        raise error(
            f"{where}: invalid YAML at line {exc.mark.line + 1} column {exc.mark.column + 1}: "
            f"integer of {exc.digits:,} digits is out of range (at most {MAX_INT_DIGITS})"
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        position = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise error(f"{where}: invalid YAML{position}: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise error(f"{where}: invalid YAML: {short_repr(str(exc), 200)}") from None
    except RecursionError:
        raise error(f"{where}: invalid YAML: nested more than {MAX_DEPTH} levels deep") from None
    except (ValueError, TypeError, OverflowError) as exc:  # a constructor refused a scalar
        raise error(f"{where}: invalid YAML: {short_repr(str(exc), 200)}") from None
    finally:
        if loader is not None:
            loader.dispose()  # type: ignore[no-untyped-call]
    _check_depth(value, where, error)
    return value
