"""The planner's HTTP servers (aiohttp): a small start/stop wrapper and the metrics endpoint.

A server binds when started; a port that cannot be bound is a :class:`~sla_planner.errors.ConfigError`
naming the config field. Port 0 here means "any free port" (tests); the config's 0 ("disabled")
is handled by :mod:`sla_planner.observe.wiring`, which then builds no server at all.
"""

from __future__ import annotations

import socket
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from ..errors import ConfigError

__all__ = ["HttpServer", "MetricsServer", "SECURITY_HEADERS"]

SECURITY_HEADERS: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class HttpServer:
    """An aiohttp application bound to ``host:port`` between :meth:`start` and :meth:`stop`."""

    def __init__(self, app: web.Application, host: str, port: int, field: str) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self.field = field
        """Config field named in bind errors (``live_dashboard_port``, ...)."""
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    @property
    def port(self) -> int:
        """The bound port (the ephemeral one when started with port 0)."""
        if self._site is None:
            raise RuntimeError(f"{self.field}: server not started")
        server: Any = self._site._server
        sock: socket.socket = server.sockets[0]
        return int(sock.getsockname()[1])

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind and serve; raises ConfigError if the address cannot be bound."""
        if self._runner is not None:
            return
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.requested_port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            reason = exc.strerror or str(exc)
            raise ConfigError(
                f"{self.field}: cannot listen on {self.host}:{self.requested_port}: {reason}"
            ) from exc
        self._runner, self._site = runner, site

    async def stop(self) -> None:
        """Close the listening socket and open connections."""
        runner, self._runner, self._site = self._runner, None, None
        if runner is not None:
            await runner.cleanup()


@web.middleware
async def security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    """Add :data:`SECURITY_HEADERS` to every response (errors included)."""
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    if not response.prepared:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
    return response


class MetricsServer(HttpServer):
    """Serves ``registry`` at ``/metrics`` (Prometheus text or OpenMetrics, as the scraper asks)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int,
                 field: str = "metric_reporting_prometheus_port") -> None:
        self.registry = registry
        app = web.Application(middlewares=[security_headers])
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/", self._index)
        super().__init__(app, host, port, field)

    async def _metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(self.registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text="sla-planner metrics: /metrics\n")
