"""Request traces: Mooncake JSONL, CSV, seeded synthetic workloads and transforms.

Used alike by replay (the simulator's arrivals), predictor warm-up and mock engines.
"""

from .mooncake import TraceRequest, TraceStats, iter_trace, iter_trace_paths, read_trace
from .open import open_trace

__all__ = ["TraceRequest", "TraceStats", "iter_trace", "iter_trace_paths", "read_trace", "open_trace"]
