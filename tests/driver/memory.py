"""A socket in memory: the server's :class:`~rtc_server.connection.Connection` writes into
a :class:`MemorySink`, and the client reads from it through :class:`MemorySocket`, which
speaks the part of websockets' client connection that :class:`rtc_server.client.RtcClient`
uses. Frames the client sends go straight to the dispatcher, as the socket server's read
loop hands them over (:meth:`rtc_server.server.SocketServer._handle`).

No port, no handshake, no framing: everything above the sink is the real server.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable

from kernel.errors import CloseCode
from rtc_server.app import App
from rtc_server.connection import Connection
from rtc_server.sink import SinkClosed

# Bytes a client may leave unread before a flow-controlled send waits (websockets'
# default write limit is 32 KiB; any bound will do for the tests).
HIGH_WATER = 65536
_NORMAL = 1000


class MemorySink:
    """The server's side: frames written, waiting for the client to read them."""

    def __init__(self) -> None:
        self._frames: deque[bytes] = deque()
        self._unread = 0
        self.most_unread = 0  # the most ever written and not yet read
        self._waiters: list[asyncio.Future[None]] = []
        self.close_code: int | None = None
        self.close_reason = ""

    @property
    def open(self) -> bool:
        return self.close_code is None

    def buffered(self) -> int:
        return self._unread

    def write(self, frame: bytes) -> None:
        self._frames.append(frame)
        self._unread += len(frame)
        self.most_unread = max(self.most_unread, self._unread)
        self._notify()

    async def send(self, frame: bytes) -> None:
        if not self.open:
            raise SinkClosed("closed")
        self.write(frame)
        await self._until(lambda: self._unread <= HIGH_WATER or not self.open)
        if not self.open:
            raise SinkClosed("closed")

    async def close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            self._notify()

    async def ping(self) -> asyncio.Future[float]:
        pong: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        pong.set_result(0.0)  # the memory peer always answers
        return pong

    async def take(self) -> bytes | None:
        """The next frame the server wrote; None once the socket is closed and read."""
        await self._until(lambda: bool(self._frames) or not self.open)
        if not self._frames:
            return None
        frame = self._frames.popleft()
        self._unread -= len(frame)
        self._notify()
        return frame

    async def _until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class MemorySocket:
    """The client's side, shaped as websockets' ``ClientConnection`` is for RtcClient."""

    def __init__(self, app: App, ip: str = "127.0.0.1") -> None:
        s = app.settings.server
        self._app = app
        self.sink = MemorySink()
        self.conn = Connection(
            self.sink,
            ip=ip,
            metrics=app.metrics,
            send_limit=s.send_buffer_bytes,
            rate=s.rate_per_second,
            burst=s.rate_burst,
            auth_timeout=s.auth_timeout,
        )
        self._removed = False
        app.hub.add(self.conn)
        self.conn.arm_auth_timer()

    @property
    def close_code(self) -> int | None:
        return self.sink.close_code

    async def send(self, data: str | bytes, text: bool | None = None) -> None:
        if not self.sink.open:
            raise ConnectionError("socket closed")
        if isinstance(data, bytes) and not text:
            await self.conn.close_now(CloseCode.UNSUPPORTED_DATA, "text frames only")
            self._gone()
            return
        self._app.dispatcher.handle_text(
            self.conn, data.decode() if isinstance(data, bytes) else data
        )
        await asyncio.sleep(0)  # as a socket write would yield

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (frame := await self.sink.take()) is not None:
            yield frame
        self._gone()

    async def close(self) -> None:
        await self.sink.close(_NORMAL, "")
        self._gone()

    async def wait_closed(self) -> None:
        while self.sink.open:
            await asyncio.sleep(0.005)
        self._gone()

    def _gone(self) -> None:
        """What the socket server does when a socket's read loop ends."""
        if self._removed:
            return
        self._removed = True
        conn = self.conn
        conn.closing = True
        for timer in (conn.auth_timer, conn.gap_timer):
            if timer is not None:
                timer.cancel()
        self._app.hub.remove(conn)
