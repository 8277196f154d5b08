"""One exception hierarchy for sla-planner. Native code raises these classes too."""

from __future__ import annotations

__all__ = [
    "SlaPlannerError",
    "ConfigError",
    "ProfileDataError",
    "ProfileGenerationError",
    "TraceFormatError",
    "PredictorError",
    "KernelError",
    "FpmDecodeError",
    "InfeasibleBudgetError",
    "ReportDataError",
    "KernelMismatchError",
    "ConnectorError",
    "EtcdError",
    "SignalError",
    "SimulationError",
]


class SlaPlannerError(Exception):
    """Base class of every error sla-planner raises on purpose."""


class ConfigError(SlaPlannerError, ValueError):
    """A PlannerConfig field, file or override is invalid; the message names the field and rule."""


class InfeasibleBudgetError(ConfigError):
    """The minimum footprint (min_endpoint x GPUs per engine, every pool) exceeds max_gpu_budget."""


class ProfileDataError(SlaPlannerError, ValueError):
    """A profiling file is missing or malformed; the message names the file and the array."""


class ProfileGenerationError(SlaPlannerError):
    """A profile could not be generated (optional package missing, unknown system, model or
    backend, estimates failing the checks); the message names the argument or the point."""


class TraceFormatError(SlaPlannerError, ValueError):
    """A trace line is malformed; the message names the file and the line number."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line


class PredictorError(SlaPlannerError, ValueError):
    """A load predictor was configured or used incorrectly."""


class KernelError(SlaPlannerError, ValueError):
    """A compiled or reference kernel was given inputs it cannot accept (shape, dtype, range)."""


class FpmDecodeError(SlaPlannerError, ValueError):
    """A ForwardPassMetrics payload could not be decoded or failed validation.

    ``kind`` is the stable name of the rule broken (``"missing_field"``, ``"negative"``, ...),
    ``field`` the dotted schema path it is about (``None`` when the payload as a whole is bad).
    """

    def __init__(self, message: str, *, kind: str = "malformed", field: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.field = field


class ReportDataError(SlaPlannerError, ValueError):
    """A report record (replay or live run) is malformed; the message names the key path and rule."""


class KernelMismatchError(SlaPlannerError):
    """A compiled kernel disagreed with its reference on the same input (``sla-planner bench``
    checks before timing); the message names the case and the first differing value."""


class ConnectorError(SlaPlannerError):
    """The deployment could not be read or written (API error, timeout, unexpected resource);
    the message names the connector, the call and the cause."""


class EtcdError(ConnectorError):
    """etcd could not be reached, timed out or refused a request (virtual connector); the message
    names the call, the endpoints and the causes."""


class SignalError(SlaPlannerError):
    """An input signal (Prometheus traffic, engine metrics) could not be read or is not
    trustworthy; the message names the source and the cause. The tick treats it as unknown."""


class SimulationError(SlaPlannerError, ValueError):
    """The simulator was given arguments or calls it cannot accept (pools of another mode,
    negative counts, arrivals out of order, a full output buffer, a call after ``finish``);
    the message names the argument and the rule."""
