"""The socket port: websockets server, one read loop per socket, graceful shutdown.

A socket starts anonymous. It is bound to a user either at the handshake, by an
``Authorization: Bearer`` header (with ``RTC-Last-Seq`` to resume), or by
``session.authenticate`` as a request. Anonymous sockets that do not authenticate
within ``auth_timeout`` are closed with 4001.
"""

from __future__ import annotations

import asyncio
import http
import logging
import time
import weakref

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from kernel.errors import CloseCode, RpcError
from kernel.identity import Authenticator, Identity
from kernel.rpc.codec import encode_live
from rtc_server.admission import Admission
from rtc_server.config import ServerSettings
from rtc_server.connection import Connection
from rtc_server.dispatch import Dispatcher
from rtc_server.events import EventDelivery
from rtc_server.hub import Hub
from rtc_server.keepalive import KeepaliveSchedule
from rtc_server.metrics import Metrics
from rtc_server.session_methods import SESSION_READY
from rtc_server.session_state import session_state
from rtc_server.sink import SinkClosed, WebSocketSink
from storage.errors import StorageError

log = logging.getLogger("rtc.server")

# websockets logs every frame at DEBUG, and frames carry login codes and tokens: its
# records below INFO are dropped, whatever the root level (log.level = "debug"
# included). Above that it follows log.level: at "warning" its per-socket "connection
# open/closed" lines are not even formatted (a JSON line per handshake was 4% of the
# handshake benchmark's samples).
_WEBSOCKETS_LOG = logging.getLogger("rtc.websockets")
_WEBSOCKETS_LOG.addFilter(lambda record: record.levelno >= logging.INFO)

LAST_SEQ_HEADER = "RTC-Last-Seq"


class SocketServer:
    def __init__(
        self,
        settings: ServerSettings,
        *,
        hub: Hub,
        dispatcher: Dispatcher,
        delivery: EventDelivery,
        authenticator: Authenticator,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.hub = hub
        self.dispatcher = dispatcher
        self.delivery = delivery
        self.authenticator = authenticator
        self.metrics = metrics
        self._server: Server | None = None
        # Identities proven at the handshake, until the socket's handler takes them.
        self._handshake: weakref.WeakKeyDictionary[
            ServerConnection, tuple[Identity, int | None]
        ] = weakref.WeakKeyDictionary()
        self._background: list[asyncio.Task[None]] = []
        self._port: int | None = None
        self.admission = Admission(
            trusted_proxies=settings.trusted_proxies,
            allowed_origins=settings.allowed_origins,
            max_anonymous_per_ip=settings.max_anonymous_per_ip,
        )
        self._pings: KeepaliveSchedule[Connection] | None = None
        if settings.ping_interval:
            self._pings = KeepaliveSchedule(settings.ping_interval, settings.ping_timeout)

    @property
    def port(self) -> int:
        """The port listened on (the real one when settings asked for port 0)."""
        assert self._port is not None, "not started"
        return self._port

    async def start(self) -> None:
        s = self.settings
        self._server = await serve(
            self._handle,
            s.host,
            s.port,
            process_request=self._process_request,
            compression="deflate" if s.compression else None,
            max_size=s.max_frame_bytes,
            open_timeout=s.handshake_timeout,
            # Keepalive runs as one task for all sockets (_keepalive), not one per socket.
            ping_interval=None,
            close_timeout=5,
            server_header=None,
            logger=_WEBSOCKETS_LOG,
            backlog=s.listen_backlog,
        )
        self._port = int(self._server.sockets[0].getsockname()[1])
        loop = asyncio.get_running_loop()
        self._background = [loop.create_task(self._sweep_expired())]
        if self._pings is not None:
            self._background.append(loop.create_task(self._keepalive()))
        log.info("socket server listening", extra={"port": self.port, "path": s.path})

    async def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path != self.settings.path:
            return _http_error(ws, http.HTTPStatus.NOT_FOUND, "not found")
        if self.dispatcher.draining:
            return _http_error(ws, http.HTTPStatus.SERVICE_UNAVAILABLE, "restarting")
        if len(self.hub.connections) >= self.settings.max_connections:
            return _http_error(ws, http.HTTPStatus.SERVICE_UNAVAILABLE, "at capacity")
        if not self.admission.origin_allowed(request.headers.get("Origin")):
            self.metrics.handshakes_refused.labels("origin").inc()
            return _http_error(ws, http.HTTPStatus.FORBIDDEN, "origin not allowed")
        if "?" in request.path and "token" in request.path.lower():
            # Tokens in URLs end up in proxy logs: refuse rather than ignore.
            return _http_error(ws, http.HTTPStatus.BAD_REQUEST, "never put a token in the URL")
        authorization = request.headers.get("Authorization")
        if authorization is None:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return _http_error(ws, http.HTTPStatus.UNAUTHORIZED, "use Authorization: Bearer")
        last_seq = _parse_last_seq(request.headers)
        if last_seq == -1:
            return _http_error(ws, http.HTTPStatus.BAD_REQUEST, f"bad {LAST_SEQ_HEADER}")
        try:
            # Within the handshake's own timeout: a stalled database answers 503.
            async with asyncio.timeout(
                min(self.settings.request_deadline, self.settings.handshake_timeout / 2)
            ):
                identity = await self.authenticator.authenticate(token.strip())
        except RpcError as error:
            return _http_error(ws, http.HTTPStatus.UNAUTHORIZED, error.message)
        except (StorageError, TimeoutError):
            log.warning("handshake: database unavailable")
            return _http_error(ws, http.HTTPStatus.SERVICE_UNAVAILABLE, "try again")
        self._handshake[ws] = (identity, last_seq)
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        s = self.settings
        peer = ws.remote_address
        ip = self.admission.client_address(
            str(peer[0]) if peer else None,
            ws.request.headers.get_all("X-Forwarded-For") if ws.request is not None else [],
        )
        # The handshake's headers are not needed any more: a few KiB per socket.
        # Emptied in place: websockets' frame parser keeps the request object for
        # the socket's life (and reads "request is None" as "handshake not done").
        if ws.request is not None:
            ws.request.headers.clear()
        ws.response = None
        conn = Connection(
            WebSocketSink(ws),
            ip=ip,
            metrics=self.metrics,
            send_limit=s.send_buffer_bytes,
            rate=s.rate_per_second,
            burst=s.rate_burst,
            auth_timeout=s.auth_timeout,
        )
        self.hub.add(conn)
        if self._pings is not None:
            self._pings.add(conn, asyncio.get_running_loop().time())
        try:
            handshake = self._handshake.pop(ws, None)
            if handshake is not None:
                await self._bind_at_handshake(conn, *handshake)
            else:
                conn.anonymous_place = self.admission.admit_anonymous(ip)
                if conn.anonymous_place is None:
                    self.metrics.handshakes_refused.labels("anonymous_cap").inc()
                    await conn.close_now(
                        CloseCode.RATE_ABUSE, "too many sockets not logged in from your address"
                    )
                    return
                conn.arm_auth_timer()
            async for message in ws:
                if isinstance(message, bytes):
                    await conn.close_now(CloseCode.UNSUPPORTED_DATA, "text frames only")
                    break
                self.dispatcher.handle_text(conn, message)
        except ConnectionClosed:
            pass
        except Exception:  # noqa: BLE001 - e.g. the event log unreadable at the handshake
            log.exception("socket failed", extra={"user": conn.user_id})
            await conn.close_now(CloseCode.INTERNAL_ERROR, "try again")
        finally:
            conn.closing = True
            conn.leave_anonymous()
            for timer in (conn.auth_timer, conn.gap_timer):
                if timer is not None:
                    timer.cancel()
            self.hub.remove(conn)
            await ws.wait_closed()
            # The code this server sent when it closed, else the one the client sent
            # (1006: the connection dropped without a close frame).
            code = conn.closed_with if conn.closed_with is not None else ws.close_code
            self.metrics.socket_closes.labels(close_label(code)).inc()

    async def _bind_at_handshake(
        self, conn: Connection, identity: Identity, last_seq: int | None
    ) -> None:
        conn.bind(identity)
        resumed = await self.delivery.resume(conn, last_seq)
        ready = session_state(identity, resumed)
        conn.send(encode_live(SESSION_READY.name, SESSION_READY.encode(ready)))
        self.delivery.start_replay(conn, resumed)

    async def _sweep_expired(self) -> None:
        """Close sockets whose access token expired and was not renewed in time."""
        grace = self.settings.auth_timeout
        while True:
            await asyncio.sleep(min(30.0, grace))
            now = time.time()
            # Plain attribute reads and close(): nothing here can raise.
            for conn in list(self.hub.connections):
                identity = conn.identity
                if identity is not None and identity.expires_at + grace < now:
                    conn.close(CloseCode.TOKEN_EXPIRED, "access token expired")

    async def _keepalive(self) -> None:
        """Ping every socket each ``ping_interval``; close those silent ``ping_timeout``.

        One task for all sockets (websockets' own keepalive costs a task per socket),
        with the pings spread evenly over the interval (:mod:`rtc_server.keepalive`).
        """
        schedule = self._pings
        assert schedule is not None
        loop = asyncio.get_running_loop()
        # Fine enough that a ping is at most 2% of an interval late, and that each
        # tick pings about 2% of the sockets.
        tick = max(0.05, min(schedule.interval, schedule.timeout) / 50)
        pinging: set[asyncio.Task[None]] = set()
        while True:
            await asyncio.sleep(tick)
            ping, silent = schedule.due(loop.time())
            for conn in silent:
                conn.close(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
            for conn in ping:
                # ws.ping() waits while the socket's write buffer is full: one task
                # per ping, so one stuck client cannot hold up the others.
                task = loop.create_task(_ping(conn))
                pinging.add(task)
                task.add_done_callback(pinging.discard)

    async def shutdown(self) -> None:
        """Stop accepting, finish requests in flight, then ask every client to reconnect."""
        if self._server is None:
            return
        self._server.close(close_connections=False)
        finished = await self.dispatcher.drain(self.settings.shutdown_grace)
        if not finished:
            log.warning("shutdown: requests still in flight after the grace period")
        for conn in list(self.hub.connections):
            conn.close(CloseCode.SERVICE_RESTART, "server restarting: reconnect")
        for task in self._background:
            task.cancel()
        await self._server.wait_closed()
        for task in list(self.dispatcher.tasks):
            task.cancel()
        await self.delivery.close()
        log.info("socket server stopped")


# RFC 6455's codes and ours: a client may send any code from 1000 to 4999 in its close
# frame, and each would be a new metric series; the others are counted as "other".
_LABELLED_CODES = frozenset(range(1000, 1016)) | frozenset(int(code) for code in CloseCode)


def close_label(code: int | None) -> str:
    """The ``code`` label of ``rtc_socket_closes_total``: a bounded set of values."""
    if code is None:
        return "1006"  # no close frame: the connection dropped
    return str(code) if code in _LABELLED_CODES else "other"


async def _ping(conn: Connection) -> None:
    try:
        waiter = await conn.sink.ping()
    except SinkClosed:
        return
    conn.pong_waiter = waiter
    # A pong that never comes fails with ConnectionClosed at close: retrieve it so
    # asyncio does not log it as never retrieved.
    waiter.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[float]) -> None:
    if not future.cancelled():
        future.exception()


def _parse_last_seq(headers: Headers) -> int | None:
    raw = headers.get(LAST_SEQ_HEADER)
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.isdigit() or len(raw) > 18:
        return -1
    return int(raw)


def _http_error(ws: ServerConnection, status: http.HTTPStatus, text: str) -> Response:
    return ws.respond(status, text + "\n")
