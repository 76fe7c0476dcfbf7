"""The HTTP port: liveness, readiness and Prometheus metrics (aiohttp).

``/healthz`` answers while the process runs. ``/readyz`` answers 200 only when the
database is reachable, every migration is applied and the server is not shutting
down; otherwise 503 with what is wrong, so a load balancer stops sending new sockets
here. The bus is reported but does not fail readiness: with Redis down every
instance is equally degraded (each still serves its own sockets, events stay in the
log), and taking them all out of the load balancer would serve nobody. Then the
answer is 200 with ``"status": "degraded"`` and ``"bus": false``. ``/metrics`` asks
for ``http.metrics_token`` when it is set: the port serves public routes too.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from rtc_server.config import HttpSettings
from rtc_server.kit import Route
from rtc_server.metrics import Metrics

# Checks that, failing, make the instance degraded rather than not ready.
_DEGRADABLE = frozenset({"bus"})

log = logging.getLogger("rtc.http")

ReadinessCheck = Callable[[], Awaitable[dict[str, bool]]]


class HttpServer:
    def __init__(self, settings: HttpSettings, metrics: Metrics, readiness: ReadinessCheck) -> None:
        self._settings = settings
        self._metrics = metrics
        self._readiness = readiness
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.app = web.Application()
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self.app.router.add_get("/metrics", self._metrics_page)

    def add_routes(self, routes: Iterable[Route]) -> None:
        """The features' routes (a GET also answers HEAD, as aiohttp's ``add_get``)."""
        for route in routes:
            if route.method == "GET":
                self.app.router.add_get(route.path, route.handler)
            else:
                self.app.router.add_route(route.method, route.path, route.handler)

    @property
    def port(self) -> int:
        assert self._runner is not None
        address = self._runner.addresses[0]
        return int(address[1])

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self._settings.host, self._settings.port)
        await self._site.start()
        log.info("http server listening", extra={"port": self.port})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        checks = await self._readiness()
        ready = all(ok for name, ok in checks.items() if name not in _DEGRADABLE)
        status = "not ready" if not ready else "ready" if all(checks.values()) else "degraded"
        return web.json_response({"status": status, "checks": checks}, status=200 if ready else 503)

    async def _metrics_page(self, request: web.Request) -> web.Response:
        token = self._settings.metrics_token
        if token:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), token.encode()
            ):
                return web.Response(
                    status=401,
                    text="metrics need Authorization: Bearer <http.metrics_token>\n",
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
        return web.Response(
            body=self._metrics.render(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )
