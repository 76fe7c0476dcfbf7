"""Where a connection's frames go: the socket's websocket, or memory.

:class:`rtc_server.connection.Connection` writes through a :class:`FrameSink`, so
everything above it (the dispatcher, the hub, event delivery, the session methods)
runs the same against a real websocket (:class:`WebSocketSink`) and against memory:
the driver tests (``tests/driver``) feed text frames to the dispatcher and read what
it wrote, with no socket, port or handshake.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from rtc_server.framing import text_frame


class SinkClosed(Exception):
    """The peer is gone: nothing more can be sent."""


class FrameSink(Protocol):
    @property
    def open(self) -> bool:
        """Frames can still be sent."""
        ...

    def buffered(self) -> int:
        """Bytes written and not yet taken by the peer (the slow-consumer check)."""
        ...

    def write(self, frame: bytes) -> None:
        """One text frame (UTF-8 JSON), without waiting."""
        ...

    async def send(self, frame: bytes) -> None:
        """One text frame, waiting while the peer reads slowly; :class:`SinkClosed`
        when it is gone."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """The closing handshake (returns once it is done or timed out)."""
        ...

    async def ping(self) -> asyncio.Future[float]:
        """A ping; the future resolves when its pong arrives."""
        ...


class WebSocketSink:
    """A websocket of the socket port."""

    __slots__ = ("ws", "_plain")

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        # No extension negotiated: frames are plain header + payload (framing.py).
        self._plain = not ws.protocol.extensions

    @property
    def open(self) -> bool:
        return self.ws.protocol.state is State.OPEN

    def buffered(self) -> int:
        return self.ws.transport.get_write_buffer_size()

    def write(self, frame: bytes) -> None:
        ws = self.ws
        if self._plain:
            ws.transport.write(text_frame(frame))
        else:  # an extension (compression) transforms frames: the library's way
            ws.protocol.send_text(frame)
            ws.send_data()

    async def send(self, frame: bytes) -> None:
        try:
            await self.ws.send(frame, text=True)
        except ConnectionClosed as gone:
            raise SinkClosed(str(gone)) from gone

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code, reason)

    async def ping(self) -> asyncio.Future[float]:
        try:
            # websockets returns the pong future itself.
            return cast("asyncio.Future[float]", await self.ws.ping())
        except ConnectionClosed as gone:
            raise SinkClosed(str(gone)) from gone
