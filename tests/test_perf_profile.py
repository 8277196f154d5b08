"""Profile directories: resolution, NPZ/JSON reading, validation rules and their error messages."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sla_planner.errors import ProfileDataError
from sla_planner.perf import (
    builtin_profiles,
    load_profile,
    read_decode_data,
    read_prefill_data,
    resolve_profile_dir,
)

PREFILL: dict[str, Any] = {
    "prefill_isl": [100, 1000, 4000],
    "prefill_ttft": [20.0, 50.0, 200.0],
    "prefill_thpt_per_gpu": [5000.0, 20000.0, 20000.0],
}
DECODE: dict[str, Any] = {
    "x_kv_usage": [0.1, 0.5, 0.9, 0.1, 0.5, 0.9],
    "y_context_length": [1000.0, 1000.0, 1000.0, 4000.0, 4000.0, 4000.0],
    "z_itl": [10.0, 20.0, 30.0, 11.0, 21.0, 31.0],
    "z_thpt_per_gpu": [100.0, 400.0, 600.0, 25.0, 100.0, 150.0],
    "max_kv_tokens": 100000,
}


def _write_json(directory: Path, side: str, doc: dict[str, Any]) -> Path:
    path = directory / f"{side}_raw_data.json"
    path.write_text(json.dumps(doc))
    return path


def _write_npz(directory: Path, side: str, doc: dict[str, Any]) -> Path:
    sub = directory / f"selected_{side}_interpolation"
    sub.mkdir(exist_ok=True)
    path = sub / "raw_data.npz"
    arrays = {k: v if isinstance(v, np.ndarray) else np.asarray(v) for k, v in doc.items()}
    with path.open("wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    return path


WRITERS = {"json": _write_json, "npz": _write_npz}


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    doc = dict(base)
    for key, value in changes.items():
        if value is _DROP:
            doc.pop(key)
        else:
            doc[key] = value
    return doc


_DROP = object()


def _read(side: str, directory: Path) -> Any:
    return read_prefill_data(directory) if side == "prefill" else read_decode_data(directory)


# (id, side, changes, expected array name or None, message fragment regex)
BAD_FILES = [
    ("prefill-missing-key", "prefill", {"prefill_ttft": _DROP}, "prefill_ttft", r"missing array"),
    ("prefill-length-mismatch", "prefill", {"prefill_ttft": [20.0, 50.0]}, None, r"equal lengths.*'prefill_ttft'=2"),
    ("prefill-one-point", "prefill", {"prefill_isl": [100], "prefill_ttft": [20.0], "prefill_thpt_per_gpu": [1.0]}, "prefill_isl", r"at least 2 points, got 1"),
    ("prefill-empty", "prefill", {"prefill_isl": [], "prefill_ttft": [], "prefill_thpt_per_gpu": []}, "prefill_isl", r"at least 2 points, got 0"),
    ("prefill-nan-ttft", "prefill", {"prefill_ttft": [20.0, float("nan"), 200.0]}, "prefill_ttft", r"index 1: value nan is not finite"),
    ("prefill-inf-isl", "prefill", {"prefill_isl": [100, 1000, float("inf")]}, "prefill_isl", r"index 2: value inf is not finite"),
    ("prefill-zero-isl", "prefill", {"prefill_isl": [0, 1000, 4000]}, "prefill_isl", r"index 0: value 0 violates rule in \[1, 1e\+09\]"),
    ("prefill-isl-just-over-1e9", "prefill", {"prefill_isl": [100, 1000, 1.000001e9]}, "prefill_isl", r"index 2: value 1e\+09 violates rule in \[1, 1e\+09\]"),
    ("prefill-zero-ttft", "prefill", {"prefill_ttft": [20.0, 0.0, 200.0]}, "prefill_ttft", r"index 1: value 0 violates rule in \[0.001, 1e\+09\]"),
    ("prefill-negative-ttft", "prefill", {"prefill_ttft": [20.0, 50.0, -1.0]}, "prefill_ttft", r"index 2: value -1 violates rule in \[0.001, 1e\+09\]"),
    ("prefill-zero-thpt", "prefill", {"prefill_thpt_per_gpu": [5000.0, 0.0, 1.0]}, "prefill_thpt_per_gpu", r"index 1: value 0 violates rule in \[0.001, 1e\+09\]"),
    ("prefill-tiny-thpt", "prefill", {"prefill_thpt_per_gpu": [5000.0, 9.99e-4, 1.0]}, "prefill_thpt_per_gpu", r"index 1: value 0.000999 violates rule in \[0.001, 1e\+09\]"),
    ("prefill-duplicate-isl", "prefill", {"prefill_isl": [1000, 100, 1000]}, "prefill_isl", r"duplicate value 1000 at indices 0 and 2"),
    ("decode-missing-max-kv", "decode", {"max_kv_tokens": _DROP}, "max_kv_tokens", r"missing array"),
    ("decode-missing-itl", "decode", {"z_itl": _DROP}, "z_itl", r"missing array"),
    ("decode-length-mismatch", "decode", {"z_itl": [10.0] * 5}, None, r"equal lengths.*'z_itl'=5"),
    ("decode-two-points", "decode", {k: DECODE[k][:2] for k in ("x_kv_usage", "y_context_length", "z_itl", "z_thpt_per_gpu")}, "x_kv_usage", r"at least 3 points, got 2"),
    ("decode-nan-context", "decode", {"y_context_length": [1000.0, float("nan"), 1000.0, 4000.0, 4000.0, 4000.0]}, "y_context_length", r"index 1: value nan is not finite"),
    ("decode-kv-just-above-1", "decode", {"x_kv_usage": [0.1, 0.5, 1.0000001, 0.1, 0.5, 0.9]}, "x_kv_usage", r"index 2: value 1 violates rule in \[0, 1\]"),
    ("decode-kv-just-below-0", "decode", {"x_kv_usage": [-1e-9, 0.5, 0.9, 0.1, 0.5, 0.9]}, "x_kv_usage", r"index 0: value -1e-09 violates rule in \[0, 1\]"),
    ("decode-zero-context", "decode", {"y_context_length": [1000.0, 1000.0, 0.0, 4000.0, 4000.0, 4000.0]}, "y_context_length", r"index 2: value 0 violates rule in \[1, 1e\+09\]"),
    ("decode-zero-itl", "decode", {"z_itl": [10.0, 20.0, 30.0, 0.0, 21.0, 31.0]}, "z_itl", r"index 3: value 0 violates rule in \[0.001, 1e\+09\]"),
    ("decode-negative-thpt", "decode", {"z_thpt_per_gpu": [100.0, 400.0, 600.0, 25.0, -1e-9, 150.0]}, "z_thpt_per_gpu", r"index 4: value -1e-09 violates rule in \[0.001, 1e\+09\] \(a sample holding KV tokens"),
    ("decode-all-zero-thpt", "decode", {"z_thpt_per_gpu": [0.0] * 6}, "z_thpt_per_gpu", r"index 0: value 0 violates rule .*a sample holding KV tokens; only an empty cache may have 0"),
    ("decode-loaded-zero-thpt", "decode", {"z_thpt_per_gpu": [100.0, 400.0, 0.0, 25.0, 100.0, 150.0]}, "z_thpt_per_gpu", r"index 2: value 0 violates rule"),
    ("decode-duplicate-point", "decode", {"x_kv_usage": [0.1, 0.5, 0.9, 0.1, 0.5, 0.5], "y_context_length": [1000.0, 1000.0, 1000.0, 4000.0, 4000.0, 4000.0]}, "y_context_length", r"duplicate point \(0.5, 4000\) at indices 4 and 5"),
    ("decode-one-context", "decode", {"x_kv_usage": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], "y_context_length": [1000.0] * 6}, "y_context_length", r"lie on one line"),
    ("decode-collinear-in-log-plane", "decode", {"x_kv_usage": [0.0, 0.5, 1.0], "y_context_length": [1000.0, 2000.0, 4000.0], "z_itl": [1.0, 2.0, 3.0], "z_thpt_per_gpu": [1.0, 2.0, 3.0]}, "x_kv_usage", r"lie on one line"),
    ("decode-max-kv-zero", "decode", {"max_kv_tokens": 0}, "max_kv_tokens", r"integer > 0, got 0"),
    ("decode-max-kv-negative", "decode", {"max_kv_tokens": -5}, "max_kv_tokens", r"integer > 0, got -5"),
    ("decode-max-kv-fraction", "decode", {"max_kv_tokens": 1000.5}, "max_kv_tokens", r"integer > 0, got 1000.5"),
    ("decode-max-kv-two-values", "decode", {"max_kv_tokens": [1000, 2000]}, "max_kv_tokens", r"one value"),
    ("decode-no-kv-token", "decode", {"max_kv_tokens": 1}, "x_kv_usage", r"no sample holds one KV token \(max 0.9 x max_kv_tokens 1 < 1\)"),
    ("decode-max-kv-huge", "decode", {"max_kv_tokens": 2**53 + 1}, "max_kv_tokens", r"at most 2\*\*53"),
    ("decode-max-kv-nan", "decode", {"max_kv_tokens": float("nan")}, "max_kv_tokens", r"integer > 0, got nan"),
]


@pytest.mark.parametrize("form", ["json", "npz"])
@pytest.mark.parametrize(("side", "changes", "array", "fragment"), [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_file_names_file_and_array(
    tmp_path: Path, form: str, side: str, changes: dict[str, Any], array: str | None, fragment: str
) -> None:
    base = PREFILL if side == "prefill" else DECODE
    path = WRITERS[form](tmp_path, side, _with(base, **changes))
    with pytest.raises(ProfileDataError) as info:
        _read(side, tmp_path)
    message = str(info.value)
    assert message.startswith(str(path))
    if array is not None:
        assert f"'{array}'" in message
    assert re.search(fragment, message), message


# Problems only a JSON document can have.
BAD_JSON = [
    ("string-element", {"prefill_ttft": [20.0, "fast", 200.0]}, "prefill_ttft", r"index 1: expected a number, got 'fast'"),
    ("null-element", {"prefill_ttft": [20.0, None, 200.0]}, "prefill_ttft", r"index 1: expected a number, got None"),
    ("bool-element", {"prefill_isl": [100, True, 4000]}, "prefill_isl", r"index 1: expected a number, got True"),
    ("nested-list", {"prefill_isl": [[100, 1000], 4000]}, "prefill_isl", r"must be 1-D; index 0 is a nested list"),
    ("scalar-not-list", {"prefill_isl": 100}, "prefill_isl", r"must be a list of numbers, got int"),
]


@pytest.mark.parametrize(("changes", "array", "fragment"), [c[1:] for c in BAD_JSON], ids=[c[0] for c in BAD_JSON])
def test_bad_json_values(tmp_path: Path, changes: dict[str, Any], array: str, fragment: str) -> None:
    path = _write_json(tmp_path, "prefill", _with(PREFILL, **changes))
    with pytest.raises(ProfileDataError, match=re.escape(str(path))) as info:
        read_prefill_data(tmp_path)
    assert f"'{array}'" in str(info.value)
    assert re.search(fragment, str(info.value)), str(info.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"prefill_isl": [1, 2,]}', r"invalid JSON at line 1 column"),
        ('[1, 2, 3]', r"top level must be a JSON object, got list"),
        ("", r"invalid JSON at line 1"),
    ],
    ids=["syntax-error", "top-level-list", "empty-file"],
)
def test_malformed_json_document(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "prefill_raw_data.json"
    path.write_text(text)
    with pytest.raises(ProfileDataError, match=fragment) as info:
        read_prefill_data(tmp_path)
    assert str(path) in str(info.value)


# Problems only an NPZ archive can have.
BAD_NPZ = [
    ("object-array", {"prefill_ttft": np.array([20.0, "x", 200.0], dtype=object)}, "prefill_ttft", r"object array; refused"),
    ("two-dimensional", {"prefill_isl": np.array([[100, 1000, 4000]])}, "prefill_isl", r"must be 1-D, got shape \(1, 3\)"),
    ("zero-dimensional", {"prefill_isl": np.array(100)}, "prefill_isl", r"must be 1-D, got shape \(\)"),
    ("string-dtype", {"prefill_isl": np.array(["100", "1000", "4000"])}, "prefill_isl", r"must be numeric .*dtype <U4"),
    ("bool-dtype", {"prefill_ttft": np.array([True, True, True])}, "prefill_ttft", r"must be numeric .*dtype bool"),
    ("complex-dtype", {"prefill_ttft": np.array([1j, 2j, 3j])}, "prefill_ttft", r"must be numeric .*dtype complex128"),
]


@pytest.mark.parametrize(("changes", "array", "fragment"), [c[1:] for c in BAD_NPZ], ids=[c[0] for c in BAD_NPZ])
def test_bad_npz_arrays(tmp_path: Path, changes: dict[str, Any], array: str, fragment: str) -> None:
    path = _write_npz(tmp_path, "prefill", _with(PREFILL, **changes))
    with pytest.raises(ProfileDataError, match=re.escape(str(path))) as info:
        read_prefill_data(tmp_path)
    assert f"'{array}'" in str(info.value)
    assert re.search(fragment, str(info.value)), str(info.value)


def test_npz_object_max_kv_tokens_is_refused(tmp_path: Path) -> None:
    doc = _with(DECODE, max_kv_tokens=np.array([{"tokens": 1}], dtype=object))
    path = _write_npz(tmp_path, "decode", doc)
    with pytest.raises(ProfileDataError, match=r"'max_kv_tokens' is an object array; refused") as info:
        read_decode_data(tmp_path)
    assert str(path) in str(info.value)


def test_npz_unused_object_array_is_never_loaded(tmp_path: Path) -> None:
    """Members the loader does not need are not read, so an extra pickled member is harmless."""
    _write_npz(tmp_path, "prefill", _with(PREFILL, notes=np.array([{"a": 1}], dtype=object)))
    data = read_prefill_data(tmp_path)
    assert data.isl.tolist() == [100.0, 1000.0, 4000.0]


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [(b"definitely not a zip archive", r"not a readable NPZ archive"), (None, r"not an NPZ archive")],
    ids=["garbage-bytes", "single-npy"],
)
def test_unreadable_npz(tmp_path: Path, payload: bytes | None, fragment: str) -> None:
    sub = tmp_path / "selected_prefill_interpolation"
    sub.mkdir()
    path = sub / "raw_data.npz"
    if payload is None:
        with path.open("wb") as fh:
            np.save(fh, np.arange(3.0))
    else:
        path.write_bytes(payload)
    with pytest.raises(ProfileDataError, match=fragment) as info:
        read_prefill_data(tmp_path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.array(396270), 396270),
        (np.array([396270]), 396270),
        (np.array([396270.0]), 396270),
        (np.int64(2), 2),
    ],
    ids=["0-d-int", "1-element-int", "1-element-integral-float", "just-one-token-held"],
)
def test_npz_max_kv_tokens_forms(tmp_path: Path, value: Any, expected: int) -> None:
    _write_npz(tmp_path, "decode", _with(DECODE, max_kv_tokens=value))
    assert read_decode_data(tmp_path).max_kv_tokens == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(396270, 396270), ([396270], 396270), (396270.0, 396270), (2, 2), (2**53, 2**53)],
    ids=["int", "one-element-list", "integral-float", "just-one-token-held", "largest"],
)
def test_json_max_kv_tokens_forms(tmp_path: Path, value: Any, expected: int) -> None:
    _write_json(tmp_path, "decode", _with(DECODE, max_kv_tokens=value))
    assert read_decode_data(tmp_path).max_kv_tokens == expected


@pytest.mark.parametrize("value", [True, "400000", None], ids=["bool", "string", "null"])
def test_json_max_kv_tokens_not_a_number(tmp_path: Path, value: Any) -> None:
    _write_json(tmp_path, "decode", _with(DECODE, max_kv_tokens=value))
    with pytest.raises(ProfileDataError, match=r"'max_kv_tokens': must be an integer > 0"):
        read_decode_data(tmp_path)


@pytest.mark.parametrize(
    ("changes", "side"),
    [
        ({"prefill_ttft": [1e-3, 50.0, 1e9], "prefill_isl": [1, 1000, 1e9],
          "prefill_thpt_per_gpu": [1e-3, 1.0, 1e9]}, "prefill"),
        ({"x_kv_usage": [0.0, 0.5, 1.0, 0.0, 0.5, 1.0], "z_thpt_per_gpu": [0.0, 1e-3, 1e9, 0.0, 1.0, 2.0],
          "z_itl": [1e-3, 1.0, 1e9, 1.0, 2.0, 3.0], "y_context_length": [1, 1, 1, 1e9, 1e9, 1e9]}, "decode"),
    ],
    ids=["prefill-range-ends", "decode-range-ends-and-empty-cache-zero-thpt"],
)
def test_boundary_values_accepted(tmp_path: Path, changes: dict[str, Any], side: str) -> None:
    base = PREFILL if side == "prefill" else DECODE
    _write_json(tmp_path, side, _with(base, **changes))
    _read(side, tmp_path)


def test_prefill_points_sorted_by_isl(tmp_path: Path) -> None:
    _write_json(
        tmp_path,
        "prefill",
        {"prefill_isl": [4000, 100, 1000], "prefill_ttft": [200.0, 20.0, 50.0], "prefill_thpt_per_gpu": [3.0, 1.0, 2.0]},
    )
    data = read_prefill_data(tmp_path)
    assert data.isl.tolist() == [100.0, 1000.0, 4000.0]
    assert data.ttft_ms.tolist() == [20.0, 50.0, 200.0]
    assert data.thpt_per_gpu.tolist() == [1.0, 2.0, 3.0]
    assert not data.isl.flags.writeable


def test_npz_wins_over_json(tmp_path: Path) -> None:
    _write_npz(tmp_path, "prefill", _with(PREFILL, prefill_ttft=[21.0, 51.0, 201.0]))
    _write_json(tmp_path, "prefill", PREFILL)
    _write_npz(tmp_path, "decode", _with(DECODE, max_kv_tokens=np.array(777)))
    (tmp_path / "decode_raw_data.json").write_text("{ not json")  # never read
    models = load_profile(tmp_path)
    assert models.prefill is not None and models.decode is not None
    assert models.prefill.data.ttft_ms.tolist() == [21.0, 51.0, 201.0]
    assert models.decode.max_kv_tokens == 777
    assert "raw_data.npz" in models.prefill.data.source


def test_json_used_when_no_npz(tmp_path: Path) -> None:
    _write_json(tmp_path, "prefill", PREFILL)
    _write_json(tmp_path, "decode", DECODE)
    models = load_profile(str(tmp_path))
    assert models.source == str(tmp_path)
    assert models.prefill is not None and models.prefill.data.source.endswith("prefill_raw_data.json")
    assert models.decode is not None and models.decode.max_kv_tokens == 100000


def test_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ProfileDataError, match=r"profile directory .*nope.* does not exist"):
        load_profile(missing)


def test_directory_is_a_file(tmp_path: Path) -> None:
    file = tmp_path / "profile.json"
    file.write_text("{}")
    with pytest.raises(ProfileDataError, match=r"is not a directory"):
        load_profile(file)


@pytest.mark.parametrize("side", ["prefill", "decode"])
def test_missing_both_files_lists_paths_tried(tmp_path: Path, side: str) -> None:
    other = "decode" if side == "prefill" else "prefill"
    _write_json(tmp_path, other, PREFILL if other == "prefill" else DECODE)
    with pytest.raises(ProfileDataError) as info:
        load_profile(tmp_path)
    message = str(info.value)
    assert f"no {side} profile data" in message
    assert str(tmp_path / f"selected_{side}_interpolation" / "raw_data.npz") in message
    assert str(tmp_path / f"{side}_raw_data.json") in message


@pytest.mark.parametrize(
    ("need_prefill", "need_decode", "present"),
    [(True, False, "prefill"), (False, True, "decode"), (False, False, None)],
    ids=["prefill-only", "decode-only", "neither"],
)
def test_mode_needs_one_side(tmp_path: Path, need_prefill: bool, need_decode: bool, present: str | None) -> None:
    if present == "prefill":
        _write_json(tmp_path, "prefill", PREFILL)
        (tmp_path / "decode_raw_data.json").write_text("broken")  # not needed, so not read
    elif present == "decode":
        _write_json(tmp_path, "decode", DECODE)
    models = load_profile(tmp_path, need_prefill=need_prefill, need_decode=need_decode)
    assert (models.prefill is not None) == need_prefill
    assert (models.decode is not None) == need_decode


def test_builtin_example_resolves() -> None:
    assert "example" in builtin_profiles()
    directory, label = resolve_profile_dir("builtin:example")
    assert label == "builtin:example"
    assert directory.joinpath("prefill_raw_data.json").is_file()
    models = load_profile("builtin:example")
    assert models.source == "builtin:example"
    assert models.prefill is not None and models.decode is not None


def test_unknown_builtin_lists_available() -> None:
    with pytest.raises(ProfileDataError, match=r"unknown built-in profile 'builtin:nope'; available: .*builtin:example"):
        load_profile("builtin:nope")
