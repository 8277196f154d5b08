"""Engine estimates from ``aiconfigurator-core``'s performance database (optional extra).

The package is imported lazily, only when an estimator is built or its choices are listed, and
its absence is a :class:`~sla_planner.errors.ProfileGenerationError` carrying the pip command.
Facts this module relies on (aiconfigurator-core 0.12):

* one engine is compiled per (model, system, backend, backend version, TP, quantisation);
* batch-1 prefill latency of ``isl`` tokens: ``predict_prefill_latency(1, isl)`` (ms);
* one decode step of ``B`` running requests at context ``C``: ``decode_step_latency(B, C - 1, 0)``
  (ms); ``decode_step_per_op`` gives the same step per operation with a data-source tag
  (``silicon`` measured tables, ``empirical`` formulas for small ops, ``sol`` / ``estimated``
  modelled without a measurement, ``mixed``);
* KV capacity: ``estimate_kv_cache(...)["total_kv_size_tokens"]`` with the memory fraction taken
  of the total memory (vLLM, SGLang) or of the free memory (TensorRT-LLM);
* quantisation defaults come from the checkpoint's config, so ``gemm_quant`` and
  ``kv_cache_dtype`` are worth setting explicitly (an FP8 checkpoint otherwise gets an FP8 KV
  cache, twice vLLM's default capacity).

The estimates are optimistic against measured engines (no fixed serving overhead); see the
README's "Profiles" section.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ProfileGenerationError

__all__ = [
    "INSTALL_HINT",
    "AiconfiguratorEngine",
    "EngineChoice",
    "installed_version",
    "supported_systems",
    "bundled_models",
    "resolve_model",
    "quant_choices",
]

INSTALL_HINT = "pip install 'sla-planner[aiconfigurator]'"
_PACKAGE = "aiconfigurator_core"
_MEMORY_KIND = {"vllm": "of_total", "sglang": "of_total", "trtllm": "of_free"}
_MODELLED_SOURCES = ("sol", "estimated")


def _sdk() -> Any:
    """The ``aiconfigurator_core.sdk`` module, or the install hint."""
    try:
        from aiconfigurator_core import sdk
    except ImportError as exc:
        raise ProfileGenerationError(
            f"sla-planner profile needs the optional package aiconfigurator-core ({exc}); "
            f"install it with: {INSTALL_HINT}"
        ) from None
    return sdk


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the package's notices (database loading, fallbacks) while it works."""
    logger = logging.getLogger(_PACKAGE)
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logger.setLevel(previous)


def installed_version() -> str:
    """Version of the installed aiconfigurator-core (the install hint when missing)."""
    _sdk()
    from importlib.metadata import version

    return version("aiconfigurator-core")


def supported_systems() -> dict[str, dict[str, list[str]]]:
    """System -> backend -> database versions the installed package holds data for."""
    _sdk()
    from aiconfigurator_core.sdk import perf_database

    with _quiet():
        found = perf_database.get_supported_databases()
    return {s: {b: list(v) for b, v in backends.items() if v} for s, backends in sorted(found.items())}


def _model_config_dir() -> Any:
    _sdk()
    return resources.files(_PACKAGE).joinpath("model_configs")


def bundled_models() -> list[str]:
    """Hub names (``org/name``) of the model configs bundled with the package."""
    suffix = "_config.json"
    names = []
    for entry in _model_config_dir().iterdir():
        name = entry.name
        if name.endswith(suffix) and not name.endswith("_hf_quant_config.json"):
            names.append(name[: -len(suffix)].replace("--", "/", 1))
    return sorted(names)


@dataclass(frozen=True)
class ResolvedModel:
    """A model the package can build: its name for the SDK and its config document."""

    name: str
    config: dict[str, Any]


def resolve_model(model: str) -> ResolvedModel:
    """A bundled model by ``org/name`` or ``name`` (case-insensitive), or a local directory."""
    path = Path(model)
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise ProfileGenerationError(f"--model {model!r}: the directory has no config.json")
        return ResolvedModel(str(path), _read_config(config_file.read_bytes(), str(config_file)))
    names = bundled_models()
    wanted = model.lower()
    matches = [n for n in names if n.lower() == wanted or n.split("/", 1)[-1].lower() == wanted]
    if len(matches) != 1:
        short = ", ".join(n.split("/", 1)[-1] for n in names)
        what = "ambiguous" if matches else "unknown"
        raise ProfileGenerationError(
            f"--model {model!r}: {what} model; choices (bundled with aiconfigurator-core, "
            f"or a local directory holding config.json): {short}"
        )
    name = matches[0]
    file = _model_config_dir().joinpath(name.replace("/", "--", 1) + "_config.json")
    return ResolvedModel(name, _read_config(file.read_bytes(), name))


def _read_config(raw: bytes, label: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfileGenerationError(f"model config {label}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ProfileGenerationError(f"model config {label}: top level must be a JSON object")
    return doc


def quant_choices() -> dict[str, list[str]]:
    """Accepted values of ``gemm_quant`` and ``kv_cache_dtype``."""
    _sdk()
    from aiconfigurator_core.sdk import common

    return {
        "gemm_quant": [m.name for m in common.GEMMQuantMode],
        "kv_cache_dtype": [m.name for m in common.KVCacheQuantMode],
    }


@dataclass(frozen=True)
class EngineChoice:
    """What to estimate: one engine of a model on one system and backend."""

    system: str
    model: str
    backend: str = "vllm"
    tp: int = 1
    backend_version: str | None = None
    """Database version; None takes the package's latest for (system, backend)."""
    gemm_quant: str | None = None
    kv_cache_dtype: str | None = None
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    gpu_memory_utilization: float = 0.9


def _check_choice(choice: EngineChoice) -> str:
    """Validate names against the installed package; return the database version to use."""
    systems = supported_systems()
    if choice.system not in systems:
        raise ProfileGenerationError(
            f"--system {choice.system!r}: unknown system; choices: {', '.join(systems)}"
        )
    backends = systems[choice.system]
    if choice.backend not in backends:
        raise ProfileGenerationError(
            f"--backend {choice.backend!r}: no data for system {choice.system}; "
            f"choices: {', '.join(sorted(backends))}"
        )
    versions = backends[choice.backend]
    if choice.backend_version is not None and choice.backend_version not in versions:
        raise ProfileGenerationError(
            f"--backend-version {choice.backend_version!r}: no {choice.backend} data on "
            f"{choice.system}; choices: {', '.join(versions)}"
        )
    quants = quant_choices()
    for field, value in (("gemm_quant", choice.gemm_quant), ("kv_cache_dtype", choice.kv_cache_dtype)):
        if value is not None and value not in quants[field]:
            flag = "--" + field.replace("_", "-")
            raise ProfileGenerationError(
                f"{flag} {value!r}: unknown; choices: {', '.join(quants[field])}"
            )
    if choice.tp < 1 or choice.max_num_seqs < 1 or choice.max_num_batched_tokens < 1:
        raise ProfileGenerationError("--tp, --max-num-seqs and max_num_batched_tokens must be >= 1")
    if not 0.0 < choice.gpu_memory_utilization <= 1.0:
        raise ProfileGenerationError(
            f"--gpu-memory-utilization {choice.gpu_memory_utilization!r}: must be in (0, 1]"
        )
    if choice.backend_version is not None:
        return choice.backend_version
    from aiconfigurator_core.sdk import perf_database

    with _quiet():
        latest = perf_database.get_latest_database_version(choice.system, choice.backend)
    return str(latest) if latest is not None else versions[-1]


class AiconfiguratorEngine:
    """One compiled engine: prefill and decode latencies, KV capacity, data-source shares."""

    def __init__(self, choice: EngineChoice) -> None:
        sdk = _sdk()
        self.choice = choice
        self.backend_version = _check_choice(choice)
        self.model = resolve_model(choice.model)
        self.num_gpu = choice.tp
        quant = {"gemm_quant_mode": choice.gemm_quant, "kvcache_quant_mode": choice.kv_cache_dtype}
        label = f"{self.model.name} on {choice.system} ({choice.backend} {self.backend_version}, TP{choice.tp})"
        try:
            with _quiet():
                self._handle = sdk.EngineHandle.compile(
                    self.model.name, choice.system, choice.backend,
                    backend_version=self.backend_version, tp_size=choice.tp, **quant,
                )
                kv = sdk.estimate_kv_cache(
                    self.model.name, choice.system, choice.backend, self.backend_version,
                    max_num_tokens=choice.max_num_batched_tokens,
                    max_batch_size=choice.max_num_seqs,
                    memory_fraction_kind=_MEMORY_KIND.get(choice.backend, "of_total"),
                    memory_fraction_value=choice.gpu_memory_utilization,
                    tp_size=choice.tp, **quant,
                )
        except Exception as exc:  # the package raises KeyError, AssertionError, ValueError, ...
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ProfileGenerationError(
                f"aiconfigurator-core cannot estimate {label}: {type(exc).__name__}: {first}"
            ) from None
        self.max_kv_tokens = int(kv["total_kv_size_tokens"])
        if self.max_kv_tokens < 1:
            raise ProfileGenerationError(f"{label}: no memory left for the KV cache")
        self.label = label

    @property
    def max_context_length(self) -> int | None:
        """The model's longest context (``max_position_embeddings``), when its config says."""
        value = self.model.config.get("max_position_embeddings")
        return int(value) if isinstance(value, int) and value > 0 else None

    def prefill_ttft_ms(self, isl: int) -> float:
        """Batch-1 prefill latency (ms) of ``isl`` tokens."""
        with _quiet():
            return float(self._handle.predict_prefill_latency(1, int(isl)))

    def decode_itl_ms(self, batch: int, context: int) -> float:
        """One decode step (ms) of ``batch`` running requests at context ``context`` tokens."""
        with _quiet():
            return float(self._handle.decode_step_latency(int(batch), int(context) - 1, 0))

    def modelled_share(self, batch: int, context: int) -> float:
        """Share of one decode step's latency resting on modelled (not measured) data."""
        with _quiet():
            ops = self._handle.decode_step_per_op(int(batch), int(context) - 1, 0)
        total = sum(float(op[1]) for op in ops)
        modelled = sum(float(op[1]) for op in ops if op[3] in _MODELLED_SOURCES)
        return modelled / total if total > 0 else 0.0

    def describe(self) -> dict[str, Any]:
        """Metadata naming the source and every setting that shaped the estimates."""
        c = self.choice
        return {
            "source": "aiconfigurator-core",
            "source_version": installed_version(),
            "system": c.system,
            "model": self.model.name,
            "backend": c.backend,
            "backend_version": self.backend_version,
            "tp": c.tp,
            "gemm_quant": c.gemm_quant or "from the checkpoint config",
            "kv_cache_dtype": c.kv_cache_dtype or "from the checkpoint config",
            "max_num_seqs": c.max_num_seqs,
            "max_num_batched_tokens": c.max_num_batched_tokens,
            "gpu_memory_utilization": c.gpu_memory_utilization,
        }
