"""Frontend metrics in Prometheus exposition format, as a Dynamo frontend serves them.

:class:`FrontendMetrics` keeps the ``dynamo_frontend_*`` counters and histograms the planner
reads, with the frontend's names, labels and default bucket layouts (log-spaced between the
frontend's defaults, rounded to 2 significant figures, with a 0 bucket first), fed from finished
requests: the replay simulator's ``done`` rows (:meth:`~FrontendMetrics.on_done_rows`) or plain
per-request numbers (:meth:`~FrontendMetrics.observe_request`). Observation points follow the
frontend: a request is counted as started when it arrives; TTFT and ISL are observed at its first
token; ITL (once per inter-token gap), OSL and duration when it completes; ``requests_total`` counts
completions by ``status``.

:class:`FrontendMetricsServer` serves ``/metrics`` over HTTP (aiohttp, in a background thread) for
a real Prometheus to scrape. The real frontend's series carry ``dynamo_namespace`` only after the
scrape configuration adds it; here it can be put in the exposition directly.
"""

from __future__ import annotations

import asyncio
import math
import threading
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from aiohttp import web

from . import _kernel as K

__all__ = ["log_buckets", "HISTOGRAM_BUCKETS", "FrontendMetrics", "FrontendMetricsServer"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _round_sig(value: float, digits: int = 2) -> float:
    if value == 0:
        return 0.0
    magnitude = math.floor(math.log10(abs(value)))
    scale = 10.0 ** (digits - 1 - magnitude)
    return round(value * scale) / scale


def log_buckets(low: float, high: float, count: int) -> tuple[float, ...]:
    """0, then ``count - 1`` log-spaced bounds from ``low`` to ``high`` (2 significant figures,
    duplicates dropped): the frontend's bucket layout."""
    out = [0.0]
    for i in range(1, count):
        value = math.exp(math.log(low) + (math.log(high) - math.log(low)) * i / (count - 1))
        bound = _round_sig(value)
        if bound != out[-1]:
            out.append(bound)
    return tuple(out)


#: Upper bounds (without +Inf) of each histogram, the frontend's defaults.
HISTOGRAM_BUCKETS: dict[str, tuple[float, ...]] = {
    "request_duration_seconds": log_buckets(1.0, 512.0, 10),
    "input_sequence_tokens": log_buckets(50.0, 128_000.0, 12),
    "output_sequence_tokens": log_buckets(50.0, 32_000.0, 10),
    "time_to_first_token_seconds": log_buckets(0.001, 480.0, 18),
    "inter_token_latency_seconds": log_buckets(0.001, 2.0, 13),
}
_HELP = {
    "request_duration_seconds": "Duration of LLM requests",
    "input_sequence_tokens": "Input sequence length in tokens",
    "output_sequence_tokens": "Output sequence length in tokens",
    "time_to_first_token_seconds": "Time to first token in seconds",
    "inter_token_latency_seconds": "Inter-token latency in seconds",
}
_PREFIX = "dynamo_frontend"


class _Histogram:
    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = list(bounds)
        self.counts = [0.0] * (len(self.bounds) + 1)  # last: above every bound (+Inf only)
        self.sum = 0.0
        self.count = 0.0

    def observe(self, value: float, times: float = 1.0) -> None:
        # le semantics: a value equal to a bound falls in that bound's bucket
        self.counts[bisect_left(self.bounds, value)] += times
        self.sum += value * times
        self.count += times


def _fmt(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _label_text(labels: dict[str, str]) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return ",".join(f'{k}="{esc(v)}"' for k, v in labels.items())


class FrontendMetrics:
    """The frontend's series for one model (see the module docstring). Thread-safe."""

    def __init__(
        self,
        model: str = "example-model",
        *,
        dynamo_namespace: str | None = None,
        endpoint: str = "chat_completions",
        request_type: str = "stream",
    ) -> None:
        self._lock = threading.Lock()
        self._labels = {"model": model.lower()}
        if dynamo_namespace is not None:
            self._labels["dynamo_namespace"] = dynamo_namespace
        self._route = {"endpoint": endpoint, "request_type": request_type}
        self.started = 0.0
        self.finished = {"success": 0.0, "error": 0.0}
        self._hist = {name: _Histogram(bounds) for name, bounds in HISTOGRAM_BUCKETS.items()}

    # ------------------------------------------------------------------ feeding
    def on_arrivals(self, n: int) -> None:
        """``n`` requests accepted by the frontend."""
        with self._lock:
            self.started += n

    def on_first_token(self, isl: float, ttft_s: float) -> None:
        """A request's first token: TTFT and ISL are observed."""
        with self._lock:
            self._hist["time_to_first_token_seconds"].observe(ttft_s)
            self._hist["input_sequence_tokens"].observe(isl)

    def on_completed(self, osl: float, decode_s: float, duration_s: float) -> None:
        """A successful completion: ``osl - 1`` ITL gaps of ``decode_s / (osl - 1)``, OSL, duration."""
        with self._lock:
            gaps = max(osl - 1.0, 0.0)
            if gaps > 0:
                self._hist["inter_token_latency_seconds"].observe(decode_s / gaps, gaps)
            self._hist["output_sequence_tokens"].observe(osl)
            self._hist["request_duration_seconds"].observe(duration_s)
            self.finished["success"] += 1

    def on_failed(self, n: int = 1) -> None:
        """Requests that ended in an error."""
        with self._lock:
            self.finished["error"] += n

    def observe_request(self, isl: float, osl: float, ttft_s: float, itl_s: float, duration_s: float) -> None:
        """One whole request at once: started, first token, completed."""
        self.on_arrivals(1)
        self.on_first_token(isl, ttft_s)
        self.on_completed(osl, itl_s * max(osl - 1.0, 0.0), duration_s)

    def on_done_rows(self, done: npt.NDArray[np.float64]) -> None:
        """Simulator records (columns ``_kernel.D_*``): first-token rows, completions, failures."""
        if done.shape[0] == 0:
            return
        status = done[:, K.D_STATUS]
        for row in done[status == K.STATUS_FIRST_TOKEN]:
            self.on_first_token(float(row[K.D_ISL]), float(row[K.D_FIRST] - row[K.D_ARRIVAL]))
        for row in done[status == K.STATUS_OK]:
            self.on_completed(
                float(row[K.D_OSL]), float(row[K.D_DONE] - row[K.D_FIRST]), float(row[K.D_DONE] - row[K.D_ARRIVAL])
            )
        failed = int(np.count_nonzero((status != K.STATUS_OK) & (status != K.STATUS_FIRST_TOKEN)))
        if failed:
            self.on_failed(failed)

    # ------------------------------------------------------------------ exposition
    def exposition(self) -> str:
        """Every series in Prometheus text format 0.0.4."""
        with self._lock:
            lines: list[str] = []
            name = f"{_PREFIX}_requests_started_total"
            lines += [f"# HELP {name} Total number of LLM requests accepted by the frontend handler",
                      f"# TYPE {name} counter",
                      f"{name}{{{_label_text({**self._labels, **self._route})}}} {_fmt(self.started)}"]
            name = f"{_PREFIX}_requests_total"
            lines += [f"# HELP {name} Total number of LLM requests processed", f"# TYPE {name} counter"]
            for status, n in self.finished.items():
                error_type = "" if status == "success" else "internal"
                labels = {**self._labels, **self._route, "status": status, "error_type": error_type}
                lines.append(f"{name}{{{_label_text(labels)}}} {_fmt(n)}")
            base = _label_text(self._labels)
            for short, hist in self._hist.items():
                name = f"{_PREFIX}_{short}"
                lines += [f"# HELP {name} {_HELP[short]}", f"# TYPE {name} histogram"]
                cumulative = 0.0
                for bound, count in zip([*hist.bounds, math.inf], hist.counts):
                    cumulative += count
                    lines.append(f'{name}_bucket{{{base},le="{_fmt(bound)}"}} {_fmt(cumulative)}')
                lines.append(f"{name}_sum{{{base}}} {_fmt(hist.sum)}")
                lines.append(f"{name}_count{{{base}}} {_fmt(hist.count)}")
        return "\n".join(lines) + "\n"


class FrontendMetricsServer:
    """Serves ``metrics.exposition()`` at ``/metrics`` from a background thread.

    ``port = 0`` picks a free port; :attr:`url` is the scrape URL once :meth:`start` returns.
    """

    def __init__(self, metrics: FrontendMetrics, host: str = "127.0.0.1", port: int = 0) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self.scrapes = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """``http://HOST:PORT/metrics``."""
        return f"http://{self.host}:{self.port}/metrics"

    async def _handle(self, request: web.Request) -> web.Response:
        self.scrapes += 1
        return web.Response(body=self.metrics.exposition().encode(), headers={"Content-Type": CONTENT_TYPE})

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server: Any = site._server  # noqa: SLF001 - the bound port of port 0
        self.port = int(server.sockets[0].getsockname()[1])

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        loop.run_forever()
        if self._runner is not None:
            loop.run_until_complete(self._runner.cleanup())
        loop.close()

    def start(self, timeout_s: float = 10.0) -> FrontendMetricsServer:
        """Listen; returns once the socket is bound (raises what binding raised)."""
        self._thread = threading.Thread(target=self._run, name="frontend-metrics", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise TimeoutError(f"frontend metrics server did not start within {timeout_s} s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving and release the port (idempotent)."""
        thread, self._thread = self._thread, None
        if thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        thread.join(timeout_s)

    def __enter__(self) -> FrontendMetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
