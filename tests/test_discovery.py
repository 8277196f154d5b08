"""Engine discovery: endpoint syntax, CLI endpoint lists, discovery files, merged sources."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sla_planner.errors import ConfigError
from sla_planner.signals.discovery import (
    Discovery,
    EngineEndpoint,
    FileDiscovery,
    MergedDiscovery,
    StaticDiscovery,
    parse_discovery_text,
    parse_endpoint_list,
    validate_endpoint,
)


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` in one rename, as a controller updating the file should."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ------------------------------------------------------------------ endpoint syntax
@pytest.mark.parametrize(
    "endpoint",
    [
        "tcp://127.0.0.1:20380",
        "tcp://127.0.0.1:1",  # lowest port, just inside
        "tcp://127.0.0.1:65535",  # highest port, just inside
        "tcp://decode-0.decode.svc.cluster.local:20380",
        "tcp://localhost:5555",
        "tcp://[::1]:20380",
        "ipc://fpm-0.sock",
        "ipc://@abstract-name",
    ],
    ids=["ipv4", "port-1", "port-65535", "dns-name", "localhost", "ipv6", "ipc-path", "ipc-abstract"],
)
def test_valid_endpoints_are_accepted(endpoint: str) -> None:
    assert validate_endpoint(endpoint) == endpoint


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("tcp://127.0.0.1:0", "port must be an integer in 1..65535"),  # just outside
        ("tcp://127.0.0.1:65536", "port must be an integer in 1..65535"),  # just outside
        ("tcp://127.0.0.1:-1", "port must be"),
        ("tcp://127.0.0.1:http", "port must be"),
        ("tcp://127.0.0.1", "expected tcp://HOST:PORT"),
        ("tcp://:20380", "expected tcp://HOST:PORT"),
        ("tcp://*:20380", "not a host name"),
        ("tcp://999.0.0.1:20380", "not an IPv4 address"),
        ("tcp://[::zz]:20380", "not an IPv6 address"),
        ("tcp://bad_host:20380", "not a host name"),
        ("udp://127.0.0.1:20380", "scheme 'udp' is not supported"),
        ("127.0.0.1:20380", "has no scheme"),
        ("ipc://", "ipc:// needs a path"),
        ("", "must not be empty"),
        (" tcp://127.0.0.1:20380", "whitespace"),
        ("tcp://127.0.0.1:2 0380", "whitespace"),
    ],
    ids=[
        "port-0", "port-65536", "port-negative", "port-name", "no-port", "no-host", "wildcard-host",
        "bad-ipv4", "bad-ipv6", "underscore-host", "udp", "no-scheme", "ipc-empty", "empty",
        "leading-space", "inner-space",
    ],
)
def test_invalid_endpoints_name_the_rule(endpoint: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_endpoint(endpoint)


def test_non_string_endpoint_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="must be a string"):
        validate_endpoint(20380)  # type: ignore[arg-type]


@pytest.mark.parametrize("role", ["prefill", "decode", "agg"])
def test_engine_endpoint_accepts_each_role(role: str) -> None:
    assert EngineEndpoint("tcp://127.0.0.1:1", role).role == role  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("endpoint", "role", "message"),
    [
        ("tcp://127.0.0.1:1", "router", "role must be one of prefill, decode, agg"),
        ("tcp://127.0.0.1:1", "Decode", "role must be one of"),
        ("tcp://127.0.0.1", "decode", "expected tcp://HOST:PORT"),
    ],
    ids=["unknown-role", "role-case", "bad-endpoint"],
)
def test_engine_endpoint_validates(endpoint: str, role: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EngineEndpoint(endpoint, role)  # type: ignore[arg-type]


# ------------------------------------------------------------------ CLI endpoint lists
@pytest.mark.parametrize(
    ("text", "default_role", "expected"),
    [
        ("tcp://127.0.0.1:20380", "decode", [("tcp://127.0.0.1:20380", "decode")]),
        ("decode=tcp://127.0.0.1:20380", "prefill", [("tcp://127.0.0.1:20380", "decode")]),
        (
            "prefill=tcp://h:1, decode=tcp://h:2,tcp://h:3",
            "agg",
            [("tcp://h:1", "prefill"), ("tcp://h:2", "decode"), ("tcp://h:3", "agg")],
        ),
        ("tcp://h:1,tcp://h:2", "prefill", [("tcp://h:1", "prefill"), ("tcp://h:2", "prefill")]),
        ("agg=ipc://run/fpm=0.sock", "decode", [("ipc://run/fpm=0.sock", "agg")]),
        ("ipc://run/fpm=0.sock", "decode", [("ipc://run/fpm=0.sock", "decode")]),
    ],
    ids=["plain", "prefixed", "mixed", "default-role", "ipc-with-equals", "ipc-equals-no-prefix"],
)
def test_parse_endpoint_list(text: str, default_role: str, expected: list[tuple[str, str]]) -> None:
    parsed = parse_endpoint_list(text, default_role)  # type: ignore[arg-type]
    assert [(ep.endpoint, ep.role) for ep in parsed] == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "item 1 is empty"),
        ("tcp://h:1,,tcp://h:2", "item 2 is empty"),
        ("tcp://h:1,", "item 2 is empty"),
        ("router=tcp://h:1", "role must be one of"),
        ("decode=tcp://h:0", "port must be"),
        ("tcp://h:1,prefill=tcp://h:1", "listed twice"),
        ("decode=", "item 1 has no endpoint after decode="),
    ],
    ids=["empty", "empty-middle", "trailing-comma", "unknown-role", "bad-port", "duplicate", "prefix-only"],
)
def test_parse_endpoint_list_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_endpoint_list(text)


# ------------------------------------------------------------------ discovery file text
GOOD = [("tcp://10.0.0.1:20380", "prefill"), ("tcp://10.0.0.2:20380", "decode"), ("ipc://run/a", "agg")]


def as_pairs(endpoints: list[EngineEndpoint]) -> list[tuple[str, str]]:
    return [(ep.endpoint, ep.role) for ep in endpoints]


@pytest.mark.parametrize(
    ("suffix", "text"),
    [
        (".json", json.dumps([{"endpoint": e, "role": r} for e, r in GOOD])),
        ("", json.dumps([{"endpoint": e, "role": r, "worker_id": "ignored"} for e, r in GOOD])),
        (".yaml", "".join(f"- endpoint: {e}\n  role: {r}\n" for e, r in GOOD)),
        ("", "# engines\n" + "".join(f"- {{endpoint: '{e}', role: {r}}}\n" for e, r in GOOD)),
        (".txt", "# role endpoint\n\n" + "".join(f"{r}  {e}   # rank 0\n" for e, r in GOOD)),
        ("", "".join(f"{r}\t{e}\n" for e, r in GOOD)),
    ],
    ids=["json", "json-sniffed-extra-keys", "yaml", "yaml-sniffed-flow", "lines", "lines-tabs"],
)
def test_discovery_text_formats(suffix: str, text: str) -> None:
    assert as_pairs(parse_discovery_text(text, "f", suffix=suffix)) == GOOD


@pytest.mark.parametrize(
    ("suffix", "text"),
    [
        (".json", json.dumps([{"endpoint": e, "role": r, "instance": f"pod-{i}"} for i, (e, r) in enumerate(GOOD)])),
        (".yaml", "".join(f"- {{endpoint: '{e}', role: {r}, instance: pod-{i}}}\n" for i, (e, r) in enumerate(GOOD))),
        ("", "".join(f"{r} {e} pod-{i}  # rank 0\n" for i, (e, r) in enumerate(GOOD))),
    ],
    ids=["json", "yaml", "lines"],
)
def test_discovery_entries_may_name_the_instance(suffix: str, text: str) -> None:
    endpoints = parse_discovery_text(text, "f", suffix=suffix)
    assert as_pairs(endpoints) == GOOD
    assert [ep.instance for ep in endpoints] == [f"pod-{i}" for i in range(len(GOOD))]


@pytest.mark.parametrize(
    ("suffix", "text"),
    [(".json", ""), (".yaml", ""), ("", ""), ("", "# nothing here\n\n"), (".yaml", "[]"), (".json", "[]")],
    ids=["empty-json", "empty-yaml", "empty-lines", "only-comments", "yaml-empty-list", "json-empty-list"],
)
def test_empty_discovery_text_means_no_engines(suffix: str, text: str) -> None:
    assert parse_discovery_text(text, "f", suffix=suffix) == []


@pytest.mark.parametrize(
    ("suffix", "text", "message"),
    [
        (".json", "[{", r"f: invalid JSON at line 1 column 3"),
        (".json", '{"endpoint": "tcp://h:1", "role": "decode"}', "expected a list"),
        (".json", '["tcp://h:1"]', r"entry \[0\] must be an object"),
        (".json", '[{"endpoint": "tcp://h:1"}]', r"entry \[0\] has no 'role'"),
        (".json", '[{"role": "decode"}]', r"entry \[0\] has no 'endpoint'"),
        (".json", '[{"endpoint": "tcp://h:1", "role": "decode"}, {"endpoint": "tcp://h:0", "role": "decode"}]',
         r"entry \[1\]: .*port must be"),
        (".json", '[{"endpoint": 5, "role": "decode"}]', r"entry \[0\]: endpoint must be a string"),
        (".yaml", "- endpoint: tcp://h:1\n  role: [decode\n", "invalid YAML at line"),
        (".yaml", "- endpoint: tcp://h:1\n  role: router\n", r"entry \[0\]: .*role must be one of"),
        ("", "decode tcp://h:1\nprefill\n", "f line 2: expected 'ROLE ENDPOINT \\[INSTANCE\\]'"),
        ("", "decode tcp://h:1\n\nrouter tcp://h:2\n", "f line 3: .*role must be one of"),
        ("", "decode tcp://h:1 pod-a extra\n", "f line 1: expected 'ROLE ENDPOINT \\[INSTANCE\\]'"),
        (".json", '[{"endpoint": "tcp://h:1", "role": "decode", "instance": ""}]', r"entry \[0\]: .*instance must be"),
        ("", "decode tcp://h:1\nprefill tcp://h:1\n", "tcp://h:1 is listed twice"),
    ],
    ids=[
        "json-syntax", "json-not-list", "json-entry-not-object", "json-no-role", "json-no-endpoint",
        "json-bad-port", "json-endpoint-not-string", "yaml-syntax", "yaml-bad-role", "lines-one-token",
        "lines-bad-role", "lines-four-tokens", "json-empty-instance", "duplicate",
    ],
)
def test_discovery_text_errors_name_the_place(suffix: str, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_discovery_text(text, "f", suffix=suffix)


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=200), suffix=st.sampled_from(["", ".json", ".yaml", ".txt"]))
def test_any_text_parses_or_raises_config_error(text: str, suffix: str) -> None:
    try:
        endpoints = parse_discovery_text(text, "f", suffix=suffix)
    except ConfigError:
        return
    assert all(isinstance(ep, EngineEndpoint) for ep in endpoints)


# ------------------------------------------------------------------ FileDiscovery
def test_file_discovery_follows_changes_and_keeps_the_last_good_set(tmp_path: Path) -> None:
    path = tmp_path / "engines.txt"
    d = FileDiscovery(path)
    assert isinstance(d, Discovery)

    assert d.poll() == []  # missing file: nothing yet, error recorded
    assert d.last_error is not None and "cannot read" in d.last_error and str(path) in d.last_error

    write_atomically(path, "decode tcp://127.0.0.1:20380\n")
    assert as_pairs(d.poll()) == [("tcp://127.0.0.1:20380", "decode")]
    assert d.last_error is None

    write_atomically(path, "decode tcp://127.0.0.1:20380\nprefill tcp://127.0.0.1:20390\n")
    assert len(d.poll()) == 2

    errors = d.errors
    write_atomically(path, "decode tcp://127.0.0.1:20380\nprefill tcp://127.0.0.1:0\n")
    assert len(d.poll()) == 2  # bad file: previous set kept
    assert d.last_error is not None and "line 2" in d.last_error and "port" in d.last_error
    assert d.errors == errors + 1
    assert len(d.poll()) == 2 and d.errors == errors + 1  # unchanged bad file is not re-read

    path.unlink()
    assert len(d.poll()) == 2  # deleted: previous set kept
    assert d.last_error is not None and "cannot read" in d.last_error

    write_atomically(path, "")
    assert d.poll() == []  # an empty file is a valid empty set
    assert d.last_error is None


def test_file_discovery_reports_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "engines.txt"
    path.write_bytes(b"decode tcp://127.0.0.1:1\n\xff\xfe\n")
    d = FileDiscovery(path)
    assert d.poll() == []
    assert d.last_error is not None and "not UTF-8" in d.last_error


def test_file_discovery_reads_json_by_suffix(tmp_path: Path) -> None:
    path = tmp_path / "engines.json"
    write_atomically(path, json.dumps([{"endpoint": "tcp://127.0.0.1:5", "role": "agg"}]))
    assert as_pairs(FileDiscovery(path).poll()) == [("tcp://127.0.0.1:5", "agg")]


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=300))
def test_file_discovery_never_raises_on_garbage(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("garbage") / "engines"
    path.write_bytes(data)
    d = FileDiscovery(path)
    assert isinstance(d.poll(), list)


# ------------------------------------------------------------------ static and merged
def test_static_discovery_returns_a_copy_and_rejects_duplicates() -> None:
    eps = [EngineEndpoint("tcp://h:1", "decode"), EngineEndpoint("tcp://h:2", "prefill")]
    d = StaticDiscovery(eps)
    got = d.poll()
    got.clear()
    assert d.poll() == eps
    with pytest.raises(ConfigError, match="listed twice"):
        StaticDiscovery([eps[0], EngineEndpoint("tcp://h:1", "prefill")])
    with pytest.raises(ConfigError, match=r"endpoints\[0\] must be an EngineEndpoint"):
        StaticDiscovery(["tcp://h:1"])  # type: ignore[list-item]


def test_merged_discovery_unions_first_wins_and_joins_errors(tmp_path: Path) -> None:
    static = StaticDiscovery([EngineEndpoint("tcp://h:1", "decode")])
    path = tmp_path / "engines.txt"
    write_atomically(path, "prefill tcp://h:1\nprefill tcp://h:2\n")
    missing = FileDiscovery(tmp_path / "missing.txt")
    merged = MergedDiscovery([static, FileDiscovery(path), missing])
    assert as_pairs(merged.poll()) == [("tcp://h:1", "decode"), ("tcp://h:2", "prefill")]
    assert merged.last_error is not None and "missing.txt" in merged.last_error
    assert MergedDiscovery([static]).last_error is None
