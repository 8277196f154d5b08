"""Reading a profile directory into validated samples and performance models.

A profile directory holds

* prefill: ``selected_prefill_interpolation/raw_data.npz`` or ``prefill_raw_data.json``
  (``prefill_isl``, ``prefill_ttft``, ``prefill_thpt_per_gpu``);
* decode: ``selected_decode_interpolation/raw_data.npz`` or ``decode_raw_data.json``
  (``x_kv_usage``, ``y_context_length``, ``z_itl``, ``z_thpt_per_gpu``, ``max_kv_tokens``).

When both forms of one side exist, the NPZ file wins and the JSON file is not read. An NPZ
member is bounded before it is read: its declared size, then its .npy header (an object dtype is
refused, never unpickled; at most :data:`MAX_PROFILE_POINTS` values), then the declared size must
equal header plus data, and exactly that much is decompressed (a "zip bomb" or a header claiming
``shape (10**12,)`` is refused without allocating). JSON profiles are read within
:data:`MAX_PROFILE_JSON_BYTES` and the bounds of :mod:`sla_planner.documents`.
The directory spec ``builtin:NAME`` names a profile bundled with the package
(``builtin:example`` is the synthetic profile described in :mod:`sla_planner.perf.analytic`).
The rules the arrays must satisfy are in :mod:`sla_planner.perf.validation`.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import numpy as np

from ..documents import DocumentError, parse_json, read_bounded, short_repr
from ..errors import ProfileDataError
from .decode import DecodeModel
from .prefill import PrefillModel
from .validation import (
    DECODE_KEYS,
    MAX_PROFILE_POINTS,
    PREFILL_KEYS,
    DecodeData,
    PrefillData,
    validate_decode_arrays,
    validate_prefill_arrays,
)

__all__ = [
    "BUILTIN_PREFIX",
    "PREFILL_NPZ",
    "PREFILL_JSON",
    "DECODE_NPZ",
    "DECODE_JSON",
    "ProfileModels",
    "builtin_profiles",
    "resolve_profile_dir",
    "read_prefill_data",
    "read_decode_data",
    "load_profile",
]

BUILTIN_PREFIX = "builtin:"
PREFILL_NPZ = ("selected_prefill_interpolation", "raw_data.npz")
PREFILL_JSON = ("prefill_raw_data.json",)
DECODE_NPZ = ("selected_decode_interpolation", "raw_data.npz")
DECODE_JSON = ("decode_raw_data.json",)

ProfileSpec = str | os.PathLike[str]

#: Bounds checked before anything is read (with validation's MAX_PROFILE_POINTS values per
#: array): bytes per .npy member (header and data), members per archive, bytes of a JSON profile.
MAX_NPY_BYTES = 64 << 20
MAX_NPZ_MEMBERS = 1024
MAX_PROFILE_JSON_BYTES = 64 << 20
_NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True)
class ProfileModels:
    """The performance models of one profile; a side a mode does not need is None."""

    prefill: PrefillModel | None
    decode: DecodeModel | None
    source: str
    """Where the profile came from: ``builtin:NAME`` or the directory path."""


def _builtin_root() -> Traversable:
    return resources.files("sla_planner").joinpath("data", "profiles")


def builtin_profiles() -> list[str]:
    """Names of the bundled profiles (usable as ``builtin:NAME``)."""
    root = _builtin_root()
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))
    )


def resolve_profile_dir(spec: ProfileSpec) -> tuple[Traversable, str]:
    """The directory a spec names and a label for messages (``builtin:NAME`` or the path)."""
    text = os.fspath(spec)
    if text.startswith(BUILTIN_PREFIX):
        name = text[len(BUILTIN_PREFIX):]
        available = builtin_profiles()
        if name not in available:
            raise ProfileDataError(
                f"unknown built-in profile {short_repr(text)}; available: "
                + (", ".join(BUILTIN_PREFIX + n for n in available) or "none")
            )
        return _builtin_root().joinpath(name), text
    path = Path(text)
    shown = short_repr(text)
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except (OSError, ValueError) as exc:  # name too long, embedded NUL byte
        raise ProfileDataError(f"profile directory {shown} cannot be used ({exc})") from None
    if not exists:
        raise ProfileDataError(f"profile directory {shown} does not exist")
    if not is_dir:
        raise ProfileDataError(f"profile directory {shown} is not a directory")
    return path, text


def _pick(
    directory: Traversable, npz: tuple[str, ...], jsn: tuple[str, ...], side: str
) -> Traversable:
    candidates = [directory.joinpath(*npz), directory.joinpath(*jsn)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise ProfileDataError(f"no {side} profile data in {str(directory)!r}; tried {tried}")


def _read_npz(file: Traversable, keys: tuple[str, ...]) -> dict[str, Any]:
    """The arrays ``keys`` of an NPZ archive, each bounded before it is read (see module doc).

    Members not asked for are only listed (their names appear in messages), never read.
    """
    label = str(file)
    out: dict[str, Any] = {}
    try:
        with file.open("rb") as fh:
            if fh.read(len(_NPY_MAGIC)) == _NPY_MAGIC:
                raise ProfileDataError(f"{label}: not an NPZ archive (a single .npy array)")
            fh.seek(0)
            with zipfile.ZipFile(fh) as archive:
                members = archive.infolist()
                if len(members) > MAX_NPZ_MEMBERS:
                    raise ProfileDataError(
                        f"{label}: {len(members):,} members; an NPZ profile holds at most "
                        f"{MAX_NPZ_MEMBERS}"
                    )
                by_key = {info.filename.removesuffix(".npy"): info for info in members}
                for key in keys:
                    if key in by_key:
                        out[key] = _read_member(archive, by_key[key], label, key)
                for key in by_key:
                    out.setdefault(key, _Present())
    except ProfileDataError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError,
            NotImplementedError, zlib.error) as exc:
        raise ProfileDataError(f"{label}: not a readable NPZ archive ({exc})") from None
    return out


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str, key: str) -> Any:
    """One .npy member: sizes and header checked first, then exactly the declared data read."""
    if info.file_size > MAX_NPY_BYTES:
        raise _unreadable(
            label, key, f"declares {info.file_size:,} bytes; at most {MAX_NPY_BYTES:,} are read"
        )
    try:
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
            else:
                raise _unreadable(label, key, f"unsupported .npy format version {version}")
            if dtype.hasobject:
                raise ProfileDataError(
                    f"{label}: array '{key}' is an object array; refused "
                    "(NPZ profiles are loaded with allow_pickle=False)"
                )
            count = math.prod(shape)
            if count > MAX_PROFILE_POINTS:
                raise _unreadable(
                    label, key,
                    f"shape {shape} holds {count:,} values; a profile array holds at most "
                    f"{MAX_PROFILE_POINTS:,}",
                )
            data_bytes = count * dtype.itemsize
            header_bytes = member.tell()
            if info.file_size != header_bytes + data_bytes:
                raise _unreadable(
                    label, key,
                    f"declared size {info.file_size:,} bytes does not match its header "
                    f"({header_bytes:,} header + {data_bytes:,} data bytes for shape {shape}, "
                    f"dtype {dtype})",
                )
            raw = member.read(data_bytes)
            if len(raw) != data_bytes:
                raise _unreadable(label, key, f"truncated: {len(raw):,} of {data_bytes:,} data bytes")
            if member.read(1):
                raise _unreadable(label, key, "more data than its header declares")
    except ProfileDataError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError,
            NotImplementedError, zlib.error) as exc:
        raise _unreadable(label, key, str(exc)) from None
    array = np.frombuffer(raw, dtype=dtype, count=count)
    return array.reshape(shape, order="F" if fortran else "C")


def _unreadable(label: str, key: str, problem: object) -> ProfileDataError:
    return ProfileDataError(f"{label}: array '{key}' cannot be read: {problem}")


class _Present:
    """Marker for an NPZ member that exists but was not loaded (only its name is used)."""


def _read_json(file: Traversable) -> dict[str, Any]:
    label = str(file)
    try:
        with file.open("rb") as fh:
            raw = read_bounded(fh, MAX_PROFILE_JSON_BYTES, label)
    except DocumentError as exc:
        raise ProfileDataError(str(exc)) from None
    except OSError as exc:
        raise ProfileDataError(f"{label}: cannot read ({exc})") from None
    doc = parse_json(raw, label, ProfileDataError)
    if not isinstance(doc, dict):
        raise ProfileDataError(
            f"{label}: top level must be a JSON object, got {type(doc).__name__}"
        )
    return doc


def _read(file: Traversable, keys: tuple[str, ...]) -> dict[str, Any]:
    return _read_npz(file, keys) if file.name.endswith(".npz") else _read_json(file)


def _prefill_from(directory: Traversable) -> PrefillData:
    file = _pick(directory, PREFILL_NPZ, PREFILL_JSON, "prefill")
    return validate_prefill_arrays(_read(file, PREFILL_KEYS), str(file))


def _decode_from(directory: Traversable) -> DecodeData:
    file = _pick(directory, DECODE_NPZ, DECODE_JSON, "decode")
    return validate_decode_arrays(_read(file, DECODE_KEYS), str(file))


def read_prefill_data(spec: ProfileSpec) -> PrefillData:
    """Validated prefill samples of a profile directory (NPZ preferred over JSON)."""
    return _prefill_from(resolve_profile_dir(spec)[0])


def read_decode_data(spec: ProfileSpec) -> DecodeData:
    """Validated decode samples of a profile directory (NPZ preferred over JSON)."""
    return _decode_from(resolve_profile_dir(spec)[0])


def load_profile(
    spec: ProfileSpec, need_prefill: bool = True, need_decode: bool = True
) -> ProfileModels:
    """Load the sides a mode needs from a profile directory or ``builtin:NAME``.

    A side that is not needed is neither read nor validated and is None in the result.
    """
    directory, label = resolve_profile_dir(spec)
    prefill = PrefillModel.from_data(_prefill_from(directory)) if need_prefill else None
    decode = DecodeModel.from_data(_decode_from(directory)) if need_decode else None
    return ProfileModels(prefill=prefill, decode=decode, source=label)
