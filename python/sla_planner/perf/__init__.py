"""Profiling data and performance models.

``load_profile(spec)`` reads a profile directory (or ``builtin:example``) into a
:class:`ProfileModels` holding a :class:`PrefillModel` (TTFT and throughput versus ISL) and a
:class:`DecodeModel` (ITL and throughput versus KV usage and context length).
:mod:`sla_planner.perf.analytic` is the roofline engine model the bundled example was sampled from.
"""

from __future__ import annotations

from .decode import DecodeModel, DecodeOperatingPoint
from .prefill import PrefillModel
from .profile_data import (
    ProfileModels,
    adopt_profile_gpus,
    builtin_profiles,
    load_profile,
    read_decode_data,
    read_prefill_data,
    resolve_profile_dir,
)
from .validation import DecodeData, PrefillData

__all__ = [
    "DecodeData",
    "DecodeModel",
    "DecodeOperatingPoint",
    "PrefillData",
    "PrefillModel",
    "ProfileModels",
    "adopt_profile_gpus",
    "builtin_profiles",
    "load_profile",
    "read_decode_data",
    "read_prefill_data",
    "resolve_profile_dir",
]
