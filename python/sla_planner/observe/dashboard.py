"""The live dashboard: the report's charts over the recent ticks, redrawn as ticks arrive.

:class:`LiveDashboard` is a TickObserver (``on_tick`` only appends to bounded buffers and wakes
the page) and an aiohttp server (:meth:`start` / :meth:`stop`). Read-only, GET only:

- ``/`` the page; plotly.js is served from the installed plotly package, so it works offline;
- ``/api/figures`` the report's figures as Plotly JSON (built off the event loop, cached per tick);
- ``/events`` server-sent events, one ``tick`` event per tick (the page then refetches);
- ``/healthz`` ``ok`` / ``starting`` (200) or ``stale`` (503: no tick for ``stale_after_s``);
- ``/decisions?limit=N&before=SEQ`` the latest decisions, newest first, paged by sequence number;
- ``/config`` the planner's config with every credential-looking value redacted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from ..ticks import TickRecord
from ..types import Pool
from .record_view import decision_record, json_line
from .redact import redact
from .report_window import ReportWindow
from .servers import HttpServer, security_headers

__all__ = ["LiveDashboard", "MAX_PAGE"]

log = logging.getLogger(__name__)

MAX_PAGE = 1000
"""Most decisions one ``/decisions`` request returns."""

_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)
_KEEPALIVE_S = 15.0


def _static(name: str) -> Path:
    return Path(str(resources.files("sla_planner.observe") / "static" / name))


def _plotly_js() -> Path:
    return Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))


class LiveDashboard:
    """See the module doc. ``history_ticks`` bounds the charts' window, ``keep_decisions`` the
    decision log served by ``/decisions``."""

    def __init__(
        self,
        *,
        pools: tuple[Pool, ...],
        sla_ttft_ms: float,
        sla_itl_ms: float,
        gpus_per_engine: Mapping[Pool, int],
        host: str = "127.0.0.1",
        port: int = 0,
        kv_capacity_tokens: int | None = None,
        history_ticks: int = 720,
        keep_decisions: int = 10_000,
        stale_after_s: float = 300.0,
        config: Mapping[str, Any] | None = None,
        title: str = "sla-planner live dashboard",
        wall_clock: bool = True,
        field: str = "live_dashboard_port",
    ) -> None:
        self.title = title
        self.wall_clock = wall_clock
        self.stale_after_s = stale_after_s
        self._config = redact(dict(config)) if config is not None else None
        self._window = ReportWindow(
            pools, sla_ttft_ms, sla_itl_ms, gpus_per_engine,
            max_ticks=history_ticks, rolling=True, kv_capacity_tokens=kv_capacity_tokens,
        )
        self._decisions: deque[tuple[int, str]] = deque(maxlen=keep_decisions)
        self._lock = threading.Lock()
        self._seq = 0
        self._last_tick_mono: float | None = None
        self._last_tick_s: float | None = None
        self._figures_cache: tuple[int, bytes] | None = None
        self._build_lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: set[asyncio.Queue[int | None]] = set()
        app = web.Application(middlewares=[security_headers])
        app.router.add_get("/", self._page)
        app.router.add_get("/static/plotly.min.js", self._plotly)
        app.router.add_get("/static/{name:dashboard\\.(js|css)}", self._asset)
        app.router.add_get("/api/figures", self._figures)
        app.router.add_get("/events", self._events)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/decisions", self._decisions_page)
        app.router.add_get("/config", self._config_page)
        self.server = HttpServer(app, host, port, field)

    # -- TickObserver ----------------------------------------------------------------------------

    def on_tick(self, record: TickRecord) -> None:
        """Buffer the tick and wake the pages (callable from any thread)."""
        with self._lock:
            self._seq += 1
            seq = self._seq
            self._window.add(record)
            self._decisions.append((seq, json_line(decision_record(record, seq))))
            self._last_tick_mono = time.monotonic()
            self._last_tick_s = float(record.tick_input.now_s)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._publish, seq)
            except RuntimeError:  # the loop closed in between
                pass

    def close(self) -> None:
        """Nothing to flush (stop the server with :meth:`stop`)."""

    # -- server ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and serve (ConfigError naming ``live_dashboard_port`` if the port is taken)."""
        self._loop = asyncio.get_running_loop()
        self._build_lock = asyncio.Lock()
        await self.server.start()

    async def stop(self) -> None:
        """End the event streams and close the server."""
        for queue in list(self._subscribers):
            queue.put_nowait(None)
        await self.server.stop()
        self._loop = None

    @property
    def url(self) -> str:
        """Where the dashboard is served."""
        return self.server.url

    def _publish(self, seq: int) -> None:
        for queue in list(self._subscribers):
            if queue.qsize() < 8:  # a slow page skips ticks; it refetches everything anyway
                queue.put_nowait(seq)

    # -- handlers --------------------------------------------------------------------------------

    async def _page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(_static("dashboard.html"), headers={"Content-Security-Policy": _CSP,
                                                                    "Content-Type": "text/html"})

    async def _asset(self, request: web.Request) -> web.FileResponse:
        name = request.match_info["name"]
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        return web.FileResponse(_static(name), headers={"Content-Type": kind})

    async def _plotly(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(_plotly_js(), headers={"Content-Type": "text/javascript",
                                                       "Cache-Control": "max-age=86400"})

    def _when(self, t_s: float | None) -> str:
        if t_s is None:
            return "—"
        if self.wall_clock:
            return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t_s))
        return f"{t_s:,.0f} s"

    def _build_figures(self) -> tuple[int, bytes]:
        """Figures JSON for the current window (runs on a worker thread)."""
        from plotly.io.json import to_json_plotly

        from .report import build_figures

        with self._lock:
            seq = self._seq
            rec = self._window.report_record(self.title)
            last = self._last_tick_s
        figures = []
        for title, fig in build_figures(rec):
            plain = fig.to_plotly_json()
            for trace in plain.get("data", []):
                if trace.get("type") == "scattergl":  # no WebGL needed: plain SVG traces
                    trace["type"] = "scatter"
            figures.append('{"title": %s, "figure": %s}' % (json.dumps(title), to_json_plotly(plain)))
        head = {"title": self.title, "ticks": seq, "last_tick": self._when(last)}
        body = json.dumps(head)[:-1] + ', "figures": [' + ", ".join(figures) + "]}"
        return seq, body.encode()

    async def _figures(self, request: web.Request) -> web.Response:
        assert self._build_lock is not None
        async with self._build_lock:
            cached = self._figures_cache
            if cached is None or cached[0] != self._seq:
                cached = await asyncio.to_thread(self._build_figures)
                self._figures_cache = cached
        return web.Response(body=cached[1], content_type="application/json")

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-store"})
        await response.prepare(request)
        queue: asyncio.Queue[int | None] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            await response.write(b"retry: 2000\n\n")
            while True:
                try:
                    seq = await asyncio.wait_for(queue.get(), _KEEPALIVE_S)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if seq is None:
                    break
                await response.write(f"event: tick\ndata: {seq}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._subscribers.discard(queue)
        return response

    async def _healthz(self, request: web.Request) -> web.Response:
        with self._lock:
            last, ticks = self._last_tick_mono, self._seq
        age = None if last is None else time.monotonic() - last
        if last is None:
            status, code = "starting", 200
        elif age is not None and age > self.stale_after_s:
            status, code = "stale", 503
        else:
            status, code = "ok", 200
        body = {"status": status, "ticks": ticks, "last_tick_age_s": age,
                "stale_after_s": self.stale_after_s}
        return web.json_response(body, status=code)

    async def _decisions_page(self, request: web.Request) -> web.Response:
        try:
            limit = _int_param(request, "limit", 100, 1, MAX_PAGE) or 100
            before = _int_param(request, "before", None, 1, None)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        with self._lock:
            items = [item for item in reversed(self._decisions) if before is None or item[0] < before]
            oldest_kept = self._decisions[0][0] if self._decisions else None
        page = items[:limit]
        next_before = page[-1][0] if len(items) > limit else None
        body = ('{"decisions": [' + ", ".join(line for _, line in page) + "], "
                + json.dumps({"next_before": next_before, "oldest_kept": oldest_kept})[1:])
        return web.Response(text=body, content_type="application/json")

    async def _config_page(self, request: web.Request) -> web.Response:
        if self._config is None:
            return web.json_response({"error": "no config given to the dashboard"}, status=404)
        return web.json_response(self._config)


def _int_param(request: web.Request, name: str, default: int | None, low: int, high: int | None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}: expected an integer, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name}: must be {bound}, got {value}")
    return value
