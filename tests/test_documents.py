"""Hostile JSON/YAML documents end in a DocumentError (or the caller's error) naming the place."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sla_planner.documents import (
    MAX_DEPTH,
    MAX_INT_DIGITS,
    DocumentError,
    parse_json,
    parse_yaml,
    read_bounded,
    short_repr,
)
from sla_planner.errors import ConfigError


def _table(*rows: tuple[object, ...]) -> list[object]:
    return [pytest.param(*row[1:], id=str(row[0])) for row in rows]


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    _table(
        ("json-deep-unclosed", "json", "[" * 100_000, "nested more than 64 levels deep"),
        ("json-deep-closed", "json", _nested(100_000), "nested more than 64 levels deep"),
        ("json-just-outside", "json", _nested(MAX_DEPTH + 1), "nested more than 64 levels deep"),
        ("json-deep-under-key", "json", '{"a": ' + _nested(70) + "}",
         "nested more than 64 levels deep under key 'a'"),
        ("json-5000-digits", "json", '{"max_gpu_budget": ' + "9" * 5000 + "}",
         "key 'max_gpu_budget': integer of 5,000 digits is out of range (at most 40)"),
        ("json-41-digits-in-list", "json", '{"x": [1, [2, ' + "9" * 41 + "]]}",
         "key 'x': integer of 41 digits is out of range"),
        ("json-negative-long", "json", '{"x": -' + "9" * 41 + "}", "integer of 41 digits"),
        ("json-top-level-long", "json", "9" * 50, "integer of 50 digits is out of range"),
        ("json-duplicate-key", "json", '{"a": 1, "a": 2}', "duplicate key 'a'"),
        ("json-bad-syntax", "json", '{"a": }', "invalid JSON at line 1 column 7"),
        ("json-not-utf8", "json", b'{"a": "\xff"}', "not UTF-8 text"),
        ("yaml-deep-flow", "yaml", "x: " + _nested(100_000), "nested more than 64 levels deep"),
        ("yaml-deep-block", "yaml",
         "".join("  " * i + f"k{i}:\n" for i in range(100)) + "  " * 100 + "v: 1\n",
         "nested more than 64 levels deep"),
        ("yaml-list-key", "yaml", "? [a, b]\n: 1\n",
         "line 1 column 3: a mapping key is a list; keys must be scalars"),
        ("yaml-mapping-key", "yaml", "? {a: 1}\n: 1\n", "a mapping key is a mapping"),
        ("yaml-5000-digits", "yaml", "max_gpu_budget: " + "9" * 5000,
         "line 1 column 17: key 'max_gpu_budget': integer of 5,000 digits is out of range"),
        ("yaml-long-int-in-list", "yaml", "x:\n  - 1\n  - " + "9" * 5000,
         "line 3 column 5: integer of 5,000 digits"),
        ("yaml-duplicate-key", "yaml", "a: 1\na: 2\n", "line 2 column 1: duplicate key 'a'"),
        ("yaml-control-char", "yaml", "a: \x1f", "invalid YAML"),
    ),
)
def test_hostile_documents_name_the_problem(kind: str, text: str | bytes, expected: str) -> None:
    parse = parse_json if kind == "json" else parse_yaml
    with pytest.raises(DocumentError) as caught:
        parse(text, "file x")  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.startswith("file x: ")
    assert expected in message
    assert len(message) < 400


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    _table(
        ("json-depth-just-inside", "json", _nested(MAX_DEPTH), None),
        ("json-40-digits", "json", "9" * MAX_INT_DIGITS, int("9" * MAX_INT_DIGITS)),
        ("yaml-40-digits", "yaml", "a: " + "9" * MAX_INT_DIGITS, {"a": int("9" * MAX_INT_DIGITS)}),
        ("yaml-float-without-dot", "yaml", "a: 2e3", {"a": 2000.0}),
        ("yaml-underscored-int", "yaml", "a: 1_000", {"a": 1000}),
    ),
)
def test_documents_within_bounds_parse(kind: str, text: str, value: object) -> None:
    parsed = (parse_json if kind == "json" else parse_yaml)(text, "file x")
    if value is not None:
        assert parsed == value


def test_yaml_aliases_are_shared_not_expanded() -> None:
    # a "billion laughs" document: the depth check visits each object once, so it is fast
    text = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefg", "bcdefgh")
    )
    parsed = parse_yaml(text, "file x")
    assert parsed["h"][0] is parsed["g"]


def test_the_caller_chooses_the_error_class() -> None:
    with pytest.raises(ConfigError, match="config file c.json: invalid JSON"):
        parse_json("{", "config file c.json", ConfigError)


def test_read_bounded_refuses_more_than_the_limit(tmp_path: object) -> None:
    import io

    assert read_bounded(io.BytesIO(b"x" * 10), 10, "f") == b"x" * 10
    with pytest.raises(DocumentError, match="f: larger than 10 bytes"):
        read_bounded(io.BytesIO(b"x" * 11), 10, "f")


@pytest.mark.parametrize(
    ("value", "expected"),
    _table(
        ("long-string", "x" * 5000, "... (5,002 characters)"),
        ("huge-int", 10**5000, "<integer of about 5,001 digits>"),
        ("list", [[1]] * 3, "<list of 3 items>"),
        ("short", 12, "12"),
    ),
)
def test_short_repr_is_short(value: object, expected: str) -> None:
    text = short_repr(value)
    assert expected in text and len(text) <= 100


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.sampled_from(["json", "yaml"]))
def test_any_text_parses_or_raises_document_error(text: str, kind: str) -> None:
    try:
        (parse_json if kind == "json" else parse_yaml)(text, "file x")
    except DocumentError:
        pass
