"""Hostile profile files are refused before they cost memory, and `validate` refuses what `plan`
cannot use."""

from __future__ import annotations

import io
import json
import shutil
import tracemalloc
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from sla_planner.cli import main
from sla_planner.errors import ProfileDataError
from sla_planner.perf import read_prefill_data
from sla_planner.perf.profile_data import MAX_NPY_BYTES, MAX_PROFILE_POINTS

EXAMPLE = resources.files("sla_planner") / "data" / "profiles" / "example"
PREFILL: dict[str, Any] = json.loads((EXAMPLE / "prefill_raw_data.json").read_text())
DECODE: dict[str, Any] = json.loads((EXAMPLE / "decode_raw_data.json").read_text())


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def _npy_header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}".ljust(117) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()


def _write_prefill_npz(directory: Path, isl_member: bytes | None = None, **extra: bytes) -> Path:
    sub = directory / "selected_prefill_interpolation"
    sub.mkdir(parents=True, exist_ok=True)
    path = sub / "raw_data.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("prefill_isl.npy", isl_member if isl_member is not None
                         else _npy(np.asarray(PREFILL["prefill_isl"], dtype=np.float64)))
        for key in ("prefill_ttft", "prefill_thpt_per_gpu"):
            archive.writestr(f"{key}.npy", _npy(np.asarray(PREFILL[key], dtype=np.float64)))
        for name, member in extra.items():
            archive.writestr(name, member)
    return path


def _bomb_member(data_bytes: int) -> bytes:
    """A well-formed .npy of zeros: tiny once deflated, ``data_bytes`` when read."""
    return _npy_header((data_bytes // 8,)) + bytes(data_bytes)


@pytest.mark.parametrize(
    ("member", "fragment"),
    [
        pytest.param(_npy_header((10**12,)) + bytes(64), "shape (1000000000000,) holds 1,000,000,000,000 values", id="header-claims-10**12"),
        pytest.param(_npy_header((MAX_PROFILE_POINTS + 1,)) + bytes(8), f"holds {MAX_PROFILE_POINTS + 1:,} values", id="points-just-outside"),
        pytest.param(_npy_header((3,)) + bytes(8 * 3 + 1), "declared size 153 bytes does not match its header", id="more-data-than-header"),
        pytest.param(_npy_header((3,)) + bytes(8 * 2), "declared size 144 bytes does not match its header", id="less-data-than-header"),
        pytest.param(_npy_header((3,), descr="|O"), "is an object array; refused", id="object-dtype-header"),
        pytest.param(b"\x93NUMPY\x09\x00" + bytes(40), "cannot be read", id="unknown-npy-version"),
        pytest.param(b"not an npy member at all", "cannot be read", id="not-npy"),
    ],
)
def test_npz_members_are_bounded_before_reading(tmp_path: Path, member: bytes, fragment: str) -> None:
    path = _write_prefill_npz(tmp_path, member)
    with pytest.raises(ProfileDataError) as caught:
        read_prefill_data(tmp_path)
    assert str(path) in str(caught.value) and "'prefill_isl'" in str(caught.value)
    assert fragment in str(caught.value)


def test_npz_points_just_inside_the_bound_are_read(tmp_path: Path) -> None:
    # exactly the bound: the reader reads it, then validation compares lengths
    _write_prefill_npz(tmp_path, _npy(np.arange(1.0, MAX_PROFILE_POINTS + 1.0)))
    with pytest.raises(ProfileDataError, match=f"'prefill_isl'={MAX_PROFILE_POINTS}"):
        read_prefill_data(tmp_path)


def test_a_zip_bomb_is_refused_by_its_declared_size_without_decompressing(tmp_path: Path) -> None:
    member = _bomb_member(MAX_NPY_BYTES + 8)  # deflates to ~70 kB
    path = _write_prefill_npz(tmp_path, member)
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(ProfileDataError, match=f"declares {MAX_NPY_BYTES + 8 + 128:,} bytes"):
            read_prefill_data(tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20  # nothing near the 64 MiB the member would inflate to


def test_a_member_whose_stream_is_longer_than_declared_fails_its_crc(tmp_path: Path) -> None:
    path = _write_prefill_npz(tmp_path)
    raw = bytearray(path.read_bytes())
    # change one byte of the first member's compressed data: the CRC no longer matches
    offset = 30 + len("prefill_isl.npy") + 10
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ProfileDataError, match="raw_data.npz"):
        read_prefill_data(tmp_path)


def test_unused_members_are_not_read(tmp_path: Path) -> None:
    _write_prefill_npz(tmp_path, notes=_npy_header((10**12,)))
    assert read_prefill_data(tmp_path).isl.shape == (len(PREFILL["prefill_isl"]),)


def test_too_many_members_is_refused(tmp_path: Path) -> None:
    _write_prefill_npz(tmp_path, **{f"m{i}": b"" for i in range(1100)})
    with pytest.raises(ProfileDataError, match="1,103 members; an NPZ profile holds at most 1024"):
        read_prefill_data(tmp_path)


def test_a_profile_directory_name_too_long_is_an_error() -> None:
    with pytest.raises(ProfileDataError, match="profile directory 'xxx.*cannot be used"):
        read_prefill_data("x" * 5000)


# -- validate refuses what plan cannot use --------------------------------------------------------


def _profile(tmp_path: Path, prefill: Callable[[dict[str, Any]], None] | None = None,
             decode: Callable[[dict[str, Any]], None] | None = None) -> Path:
    directory = tmp_path / "profile"
    directory.mkdir()
    p, d = json.loads(json.dumps(PREFILL)), json.loads(json.dumps(DECODE))
    if prefill:
        prefill(p)
    if decode:
        decode(d)
    (directory / "prefill_raw_data.json").write_text(json.dumps(p))
    (directory / "decode_raw_data.json").write_text(json.dumps(d))
    return directory


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc[key] = [value] * len(doc[key]) if isinstance(doc[key], list) else value
    return change


def _scale(key: str, factor: float) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc[key] = [v * factor for v in doc[key]]
    return change


def _add_empty_cache_samples(doc: dict[str, Any]) -> None:
    for context in sorted(set(doc["y_context_length"])):
        doc["x_kv_usage"].append(0.0)
        doc["y_context_length"].append(context)
        doc["z_itl"].append(1.0)
        doc["z_thpt_per_gpu"].append(0.0)


PROFILES = [
    pytest.param(None, _set("z_thpt_per_gpu", 0.0), id="decode-all-zero-throughput"),
    pytest.param(None, _set("z_thpt_per_gpu", 1e-300), id="decode-tiny-throughput"),
    pytest.param(_set("prefill_thpt_per_gpu", 1e-300), None, id="prefill-tiny-throughput"),
    pytest.param(_set("prefill_ttft", 1e300), None, id="prefill-huge-ttft"),
    pytest.param(None, _set("z_itl", 1e300), id="decode-huge-itl"),
    pytest.param(None, _scale("y_context_length", 1e12), id="decode-huge-context"),
    pytest.param(_scale("prefill_isl", 1e-12), None, id="prefill-sub-token-isl"),
    pytest.param(None, _set("max_kv_tokens", 2**53), id="decode-max-kv-2**53"),
    pytest.param(None, _add_empty_cache_samples, id="decode-empty-cache-samples"),
]


@pytest.mark.parametrize(("prefill", "decode"), PROFILES)
def test_validate_refuses_what_plan_cannot_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], prefill: Any, decode: Any
) -> None:
    directory = str(_profile(tmp_path, prefill, decode))
    valid = main(["validate", "--profile-results-dir", directory]) == 0
    capsys.readouterr()
    if not valid:
        return
    for itl in ("30", "5", "0.5", "0.001"):
        for num_req in ("0", "10", "1e15"):
            argv = ["plan", "--profile-results-dir", directory, "--optimization-target", "sla",
                    "--itl", itl, "--num-req", num_req, "--isl", "1e15", "--osl", "1e15"]
            assert main(argv) == 0, argv
            capsys.readouterr()


def test_the_bundled_profile_copy_validates_and_plans(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "copy"
    shutil.copytree(str(EXAMPLE), directory)
    assert main(["validate", "--profile-results-dir", str(directory)]) == 0
    assert main(["plan", "--profile-results-dir", str(directory), "--num-req", "100"]) == 0
