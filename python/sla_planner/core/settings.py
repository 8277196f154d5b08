"""The decision core's settings: one frozen object built once from PlannerConfig.

The core never reads the (mutable, validated) PlannerConfig on a tick; it reads a
:class:`CoreSettings`, built by :meth:`CoreSettings.from_config` when the core is constructed.
Library users may build one directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..types import Pool, pools_for_mode
from .load import LoadSettings
from .throughput import ThroughputSettings

__all__ = ["PoolLimits", "CoreSettings"]


@dataclass(frozen=True)
class PoolLimits:
    """What the constraint step enforces last: per-pool minimums and the GPU budget."""

    min_replicas: dict[Pool, int]
    gpus_per_engine: dict[Pool, int]
    max_gpus: int | None = None
    """None: no budget (a negative max_gpu_budget in the config, as in the original)."""
    min_gpus: int | None = None
    """A GPU floor the pools are raised to (None: no floor)."""

    def gpus(self, targets: dict[Pool, int]) -> int:
        """GPUs the targets hold."""
        return sum(self.gpus_per_engine[p] * n for p, n in targets.items())


def _cfg(cfg: Any, name: str, default: Any) -> Any:
    """``cfg.name``, or ``default`` when it is missing or None."""
    value = getattr(cfg, name, default)
    return default if value is None else value


@dataclass(frozen=True)
class CoreSettings:
    """Everything the decision core reads, fixed for the life of a core."""

    mode: str
    optimization_target: str
    enable_throughput: bool
    enable_load: bool
    throughput_interval_s: float
    load_interval_s: float
    ttft_ms: float
    itl_ms: float
    default_isl: float
    default_osl: float
    limits: PoolLimits
    forecast_at_least_observed: bool = True
    include_backlog: bool = True
    startup_s: float = 120.0
    """Configured engine start-up time (refined live by observed ready times)."""
    stabilization_s: float | None = None
    """Scale-down stabilisation window; None follows the (learned) start-up time."""
    tolerance: float = 0.05
    headroom_quantile: float = 0.9
    throughput: ThroughputSettings = field(default_factory=ThroughputSettings)
    load: LoadSettings | None = None

    @classmethod
    def from_config(cls, cfg: Any) -> CoreSettings:
        """Project a PlannerConfig (or an object with its attribute names)."""
        pools = pools_for_mode(cfg.mode)
        gpus = {
            Pool.PREFILL: int(cfg.prefill_engine_num_gpu),
            Pool.DECODE: int(cfg.decode_engine_num_gpu),
            Pool.AGG: int(cfg.decode_engine_num_gpu),
        }
        limits = PoolLimits(
            min_replicas={p: int(cfg.min_replicas(p.value)) for p in pools},
            gpus_per_engine={p: gpus[p] for p in pools},
            max_gpus=cfg.gpu_budget(),
            min_gpus=cfg.gpu_floor() or None,
        )
        stabilization = getattr(cfg, "scale_down_stabilization", None)
        return cls(
            mode=cfg.mode,
            optimization_target=cfg.optimization_target,
            enable_throughput=bool(cfg.enable_throughput_scaling),
            enable_load=bool(cfg.enable_load_scaling),
            throughput_interval_s=float(cfg.throughput_adjustment_interval),
            load_interval_s=float(cfg.load_adjustment_interval),
            ttft_ms=float(cfg.ttft),
            itl_ms=float(cfg.itl),
            default_isl=float(cfg.isl),
            default_osl=float(cfg.osl),
            limits=limits,
            forecast_at_least_observed=bool(cfg.forecast_at_least_observed),
            include_backlog=bool(cfg.throughput_include_backlog),
            startup_s=float(_cfg(cfg, "engine_startup_time", 120.0)),
            stabilization_s=None if stabilization is None else float(stabilization),
            tolerance=float(_cfg(cfg, "scale_down_tolerance", 0.05)),
            headroom_quantile=float(_cfg(cfg, "forecast_headroom_quantile", 0.0)),
            throughput=ThroughputSettings.from_config(cfg),
            load=LoadSettings.from_config(cfg),
        )

    def pools(self) -> tuple[Pool, ...]:
        """Pools of the mode."""
        return pools_for_mode(self.mode)

    def intervals(self) -> dict[Any, float]:
        """Each enabled loop's interval in seconds (keys: TickKind)."""
        from ..types import TickKind

        out: dict[Any, float] = {}
        if self.enable_throughput:
            out[TickKind.THROUGHPUT] = self.throughput_interval_s
        if self.enable_load:
            out[TickKind.LOAD] = self.load_interval_s
        return out

    def window_s(self, learned_startup_s: float | None) -> float:
        """The scale-down stabilisation window given the start-up time learned so far."""
        if self.stabilization_s is not None:
            return self.stabilization_s
        startup = learned_startup_s if learned_startup_s is not None else self.startup_s
        return startup if math.isfinite(startup) else self.startup_s
