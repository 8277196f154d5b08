"""Reading a profile directory into validated samples and performance models.

A profile directory holds

* prefill: ``selected_prefill_interpolation/raw_data.npz`` or ``prefill_raw_data.json``
  (``prefill_isl``, ``prefill_ttft``, ``prefill_thpt_per_gpu``);
* decode: ``selected_decode_interpolation/raw_data.npz`` or ``decode_raw_data.json``
  (``x_kv_usage``, ``y_context_length``, ``z_itl``, ``z_thpt_per_gpu``, ``max_kv_tokens``).

When both forms of one side exist, the NPZ file wins and the JSON file is not read. NPZ archives
are opened with ``allow_pickle=False``: an object array is refused with an error, never unpickled.
The directory spec ``builtin:NAME`` names a profile bundled with the package
(``builtin:example`` is the synthetic profile described in :mod:`sla_planner.perf.analytic`).
The rules the arrays must satisfy are in :mod:`sla_planner.perf.validation`.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ProfileDataError
from .decode import DecodeModel
from .prefill import PrefillModel
from .validation import (
    DECODE_KEYS,
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
                f"unknown built-in profile {text!r}; available: "
                + (", ".join(BUILTIN_PREFIX + n for n in available) or "none")
            )
        return _builtin_root().joinpath(name), text
    path = Path(text)
    if not path.exists():
        raise ProfileDataError(f"profile directory {text!r} does not exist")
    if not path.is_dir():
        raise ProfileDataError(f"profile directory {text!r} is not a directory")
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
    label = str(file)
    out: dict[str, Any] = {}
    try:
        with file.open("rb") as fh:
            loaded = np.load(fh, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ProfileDataError(f"{label}: not an NPZ archive (a single .npy array)")
            with loaded as npz:
                for key in keys:
                    if key not in npz.files:
                        continue
                    try:
                        out[key] = npz[key]
                    except ValueError as exc:
                        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
                            raise ProfileDataError(
                                f"{label}: array '{key}' is an object array; refused "
                                "(NPZ profiles are loaded with allow_pickle=False)"
                            ) from None
                        raise _unreadable(label, key, exc) from None
                    except (zipfile.BadZipFile, OSError, EOFError) as exc:
                        raise _unreadable(label, key, exc) from None
                # Keys not asked for are reported by name only if a required one is missing.
                for key in npz.files:
                    out.setdefault(key, _Present())
    except ProfileDataError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ProfileDataError(f"{label}: not a readable NPZ archive ({exc})") from None
    return out


def _unreadable(label: str, key: str, exc: BaseException) -> ProfileDataError:
    return ProfileDataError(f"{label}: array '{key}' cannot be read: {exc}")


class _Present:
    """Marker for an NPZ member that exists but was not loaded (only its name is used)."""


def _read_json(file: Traversable) -> dict[str, Any]:
    label = str(file)
    try:
        with file.open("rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ProfileDataError(f"{label}: cannot read ({exc})") from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ProfileDataError(f"{label}: not UTF-8 text ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ProfileDataError(
            f"{label}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
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
