"""Analytic (roofline) model of one LLM inference engine: prefill time and decode iteration time.

The bundled ``builtin:example`` profile is sampled from this model, and the simulator can call
:func:`prefill_time_s` and :func:`decode_iteration_time_s` directly. The defaults of
:class:`AnalyticEngineSpec` describe a dense ~8B-parameter transformer (Llama-3-8B shape: 32
layers, 32 query heads and 8 KV heads of dimension 128, BF16 weights and KV cache) served on one
80 GB H100-class GPU.

Physics
-------
Work is split over ``num_gpu`` GPUs with ideal scaling (tensor parallel, communication ignored):
compute rate and memory bandwidth are ``num_gpu`` times one GPU's.

*Prefill* of ``n`` new tokens (after ``c`` tokens already in the KV cache) is compute bound:

    t = prefill_overhead_s
        + n * 2 * num_params / (peak_flops * matmul_efficiency)                  (GEMMs)
        + 4 * num_layers * num_attention_heads * head_dim * n * (c + n / 2)
          / (peak_flops * attention_efficiency)                                  (causal attention)

The first term is a fixed cost (scheduling, kernel launches, sampling the first token); the
second is linear in tokens (2 FLOPs per parameter per token); the third is quadratic (QK^T and
AV, 2 FLOPs per multiply-add each, over the causal half of the score matrix).

*Decode* iteration for ``b`` sequences holding ``k`` KV tokens in total is memory bound:

    t = decode_overhead_s
        + num_params * bytes_per_param / (hbm_bandwidth * bandwidth_efficiency)  (read weights)
        + k * kv_bytes_per_token / (hbm_bandwidth * bandwidth_efficiency)        (read KV cache)
        + b * 2 * num_params / (peak_flops * matmul_efficiency)                  (per sequence)

The terms are summed, not overlapped, which is conservative at large batches.

*KV capacity*: ``max_kv_tokens = floor((num_gpu * (gpu_memory_bytes * gpu_memory_utilization
- activation_reserve_bytes) - weight bytes) / kv_bytes_per_token)`` with
``kv_bytes_per_token = 2 (K and V) * num_layers * num_kv_heads * head_dim * kv_bytes_per_element``.

*Profile quantities*: prefill TTFT = prefill time of ``isl`` tokens, prefill throughput/GPU =
``isl / ttft_s / num_gpu``; at decode operating point (kv_usage, context_length), batch =
``kv_usage * max_kv_tokens / context_length`` sequences, ITL = one decode iteration,
throughput/GPU = ``batch / itl_s / num_gpu``.

With the defaults: max_kv_tokens = 396,270 (128 KiB per token); TTFT about 49 ms at 1k tokens,
1.8 s at 32k and 15.7 s at 128k; ITL from about 10 ms (one short sequence) to about 42 ms (KV
cache full of 1k-token sequences).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = [
    "AnalyticEngineSpec",
    "EXAMPLE_ENGINE",
    "prefill_time_s",
    "decode_iteration_time_s",
    "prefill_point",
    "decode_point",
]


@dataclass(frozen=True)
class AnalyticEngineSpec:
    """Model shape and hardware constants of one engine (defaults: dense 8B on one 80 GB GPU)."""

    num_params: float = 8.03e9
    """Model parameters (Llama-3-8B: 8.03e9)."""
    bytes_per_param: float = 2.0
    """Weight precision in bytes (BF16)."""
    num_layers: int = 32
    """Transformer layers."""
    num_attention_heads: int = 32
    """Query heads per layer (hidden size 4096 = 32 x 128)."""
    num_kv_heads: int = 8
    """Key/value heads per layer (grouped-query attention)."""
    head_dim: int = 128
    """Dimension of one attention head."""
    kv_bytes_per_element: float = 2.0
    """KV-cache precision in bytes (BF16)."""
    num_gpu: int = 1
    """GPUs per engine (ideal tensor-parallel scaling)."""
    gpu_memory_bytes: float = 80e9
    """HBM per GPU (80 GB)."""
    gpu_memory_utilization: float = 0.90
    """Share of HBM the engine may use (a common serving-engine default)."""
    activation_reserve_bytes: float = 4e9
    """Per-GPU memory kept for activations, CUDA graphs and workspaces."""
    peak_flops: float = 989e12
    """Dense BF16 tensor-core peak per GPU (H100 SXM: 989 TFLOP/s)."""
    matmul_efficiency: float = 0.5
    """Achieved share of peak in the GEMMs (model FLOPs utilisation)."""
    attention_efficiency: float = 0.4
    """Achieved share of peak in the attention kernels."""
    hbm_bandwidth: float = 3.35e12
    """HBM bandwidth per GPU in bytes/s (H100 SXM: 3.35 TB/s)."""
    bandwidth_efficiency: float = 0.8
    """Achieved share of HBM bandwidth when streaming weights and KV cache."""
    prefill_overhead_s: float = 0.015
    """Fixed cost of one prefill (scheduling, launches, first-token sampling)."""
    decode_overhead_s: float = 0.004
    """Fixed cost of one decode iteration (scheduling, launches, sampling)."""

    def __post_init__(self) -> None:
        for name in (
            "num_params", "bytes_per_param", "kv_bytes_per_element", "gpu_memory_bytes",
            "peak_flops", "hbm_bandwidth",
        ):
            _require(getattr(self, name) > 0, name, "> 0")
        for name in ("num_layers", "num_attention_heads", "num_kv_heads", "head_dim", "num_gpu"):
            value = getattr(self, name)
            is_int = isinstance(value, int) and not isinstance(value, bool)
            _require(is_int and value >= 1, name, "an integer >= 1")
        for name in (
            "gpu_memory_utilization", "matmul_efficiency", "attention_efficiency",
            "bandwidth_efficiency",
        ):
            _require(0 < getattr(self, name) <= 1, name, "in (0, 1]")
        for name in ("activation_reserve_bytes", "prefill_overhead_s", "decode_overhead_s"):
            _require(getattr(self, name) >= 0, name, ">= 0")
        _require(
            self.max_kv_tokens >= 1,
            "gpu_memory_bytes",
            "large enough to hold the weights and one KV token",
        )

    @property
    def weight_bytes(self) -> float:
        """Bytes of model weights (all GPUs together)."""
        return self.num_params * self.bytes_per_param

    @property
    def kv_bytes_per_token(self) -> float:
        """KV-cache bytes of one token over all layers (K and V)."""
        return 2.0 * self.num_layers * self.num_kv_heads * self.head_dim * self.kv_bytes_per_element

    @property
    def max_kv_tokens(self) -> int:
        """KV-cache capacity of the engine in tokens."""
        usable = self.num_gpu * (
            self.gpu_memory_bytes * self.gpu_memory_utilization - self.activation_reserve_bytes
        )
        return max(int(math.floor((usable - self.weight_bytes) / self.kv_bytes_per_token)), 0)

    @property
    def matmul_flops_per_s(self) -> float:
        """Achieved GEMM rate of the engine (FLOP/s)."""
        return self.num_gpu * self.peak_flops * self.matmul_efficiency

    @property
    def attention_flops_per_s(self) -> float:
        """Achieved attention rate of the engine (FLOP/s)."""
        return self.num_gpu * self.peak_flops * self.attention_efficiency

    @property
    def memory_bytes_per_s(self) -> float:
        """Achieved HBM streaming rate of the engine (bytes/s)."""
        return self.num_gpu * self.hbm_bandwidth * self.bandwidth_efficiency


def _require(ok: bool, name: str, rule: str) -> None:
    if not ok:
        raise ConfigError(f"AnalyticEngineSpec.{name} must be {rule}")


EXAMPLE_ENGINE = AnalyticEngineSpec()
"""The engine the bundled ``builtin:example`` profile was sampled from."""


def prefill_time_s(
    new_tokens: float, spec: AnalyticEngineSpec = EXAMPLE_ENGINE, cached_tokens: float = 0.0
) -> float:
    """Seconds to prefill ``new_tokens`` tokens after ``cached_tokens`` already in the KV cache."""
    if new_tokens < 0 or cached_tokens < 0:
        raise ValueError(
            f"prefill_time_s: new_tokens ({new_tokens}) and cached_tokens ({cached_tokens}) "
            "must be >= 0"
        )
    gemm_flops = 2.0 * spec.num_params * new_tokens
    attn_flops = (
        4.0 * spec.num_layers * spec.num_attention_heads * spec.head_dim
        * new_tokens * (cached_tokens + new_tokens / 2.0)
    )
    return (
        spec.prefill_overhead_s
        + gemm_flops / spec.matmul_flops_per_s
        + attn_flops / spec.attention_flops_per_s
    )


def decode_iteration_time_s(
    num_seqs: float, kv_tokens: float, spec: AnalyticEngineSpec = EXAMPLE_ENGINE
) -> float:
    """Seconds of one decode iteration of ``num_seqs`` sequences holding ``kv_tokens`` in all."""
    if num_seqs < 0 or kv_tokens < 0:
        raise ValueError(
            f"decode_iteration_time_s: num_seqs ({num_seqs}) and kv_tokens ({kv_tokens}) "
            "must be >= 0"
        )
    return (
        spec.decode_overhead_s
        + spec.weight_bytes / spec.memory_bytes_per_s
        + kv_tokens * spec.kv_bytes_per_token / spec.memory_bytes_per_s
        + num_seqs * 2.0 * spec.num_params / spec.matmul_flops_per_s
    )


def prefill_point(isl: float, spec: AnalyticEngineSpec = EXAMPLE_ENGINE) -> tuple[float, float]:
    """Profile values at input length ``isl`` tokens: ``(ttft_ms, thpt_per_gpu)``."""
    if not isl > 0:
        raise ValueError(f"prefill_point: isl must be > 0 tokens, got {isl}")
    ttft_s = prefill_time_s(isl, spec)
    return ttft_s * 1e3, isl / ttft_s / spec.num_gpu


def decode_point(
    kv_usage: float, context_length: float, spec: AnalyticEngineSpec = EXAMPLE_ENGINE
) -> tuple[float, float]:
    """Profile values at (kv_usage 0..1, context_length tokens): ``(itl_ms, thpt_per_gpu)``."""
    if not 0.0 <= kv_usage <= 1.0:
        raise ValueError(f"decode_point: kv_usage must be in [0, 1], got {kv_usage}")
    if not context_length > 0:
        raise ValueError(f"decode_point: context_length must be > 0 tokens, got {context_length}")
    kv_tokens = kv_usage * spec.max_kv_tokens
    num_seqs = kv_tokens / context_length
    itl_s = decode_iteration_time_s(num_seqs, kv_tokens, spec)
    return itl_s * 1e3, num_seqs / itl_s / spec.num_gpu
