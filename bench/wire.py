"""A minimal websocket client over a raw asyncio transport: the load client's sockets.

Why not the ``websockets`` client: the load client runs on one core against a server
on the other, and ``websockets``' client does per frame about the same Python work as
the server (a protocol object, an assembler, a future per ``recv``), so it, not the
server, would set the pace of the ping figure. This client does the least RFC 6455
needs from a client, on uvloop's ``asyncio.Protocol`` callbacks:

- the opening handshake (RFC 6455 §4.1), checking ``Sec-WebSocket-Accept``;
- frames sent masked (§5.3) with the all-zero key, so a frame is its header plus the
  payload as is (the server still runs its unmasking over it);
- frames received unfragmented and unmasked (the servers here never fragment);
- pings answered with pongs (§5.5.2), so the servers' keepalive sees a live client;
- the closing handshake (§5.5.1) when asked, else an abort.

No extension (compression) is offered. Text frames go to ``on_text(socket, payload,
received_at)``, where ``received_at`` is ``time.monotonic()`` taken once per read.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from collections.abc import Callable
from typing import cast

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_ZERO_MASK = b"\x00\x00\x00\x00"

OP_TEXT = 0x1
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

TextHandler = Callable[["WsSocket", bytes, float], None]


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked (zero key) client frame."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return header + _ZERO_MASK + payload


def text_frame(payload: bytes) -> bytes:
    return client_frame(OP_TEXT, payload)


class HandshakeFailed(Exception):
    """The server did not switch protocols (wrong path, refused token, at capacity)."""


class WsSocket(asyncio.Protocol):
    """One client websocket. ``opened`` resolves after the handshake, ``closed`` at EOF."""

    def __init__(
        self,
        index: int,
        host: str,
        port: int,
        path: str,
        headers: dict[str, str],
        on_text: TextHandler,
    ) -> None:
        self.index = index
        self.on_text = on_text
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.is_open = False
        self.protocol_errors = 0
        self.close_code: int | None = None
        # Per-phase state the load client keeps on the socket itself (cheap to reach).
        self.sent_at = 0.0
        self.next_id = 1
        self.received_at = 0.0
        self.waiter: asyncio.Future[None] | None = None
        key = base64.b64encode(os.urandom(16))
        self._accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key.decode()}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        self._request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self._buffer = b""

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        if not self.is_open:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self._buffer = data
                return
            self._finish_handshake(data[: end + 4])
            data = data[end + 4 :]
            if not data:
                return
        self._frames(data, now)

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_open = False
        if not self.opened.done():
            self.opened.set_exception(HandshakeFailed(f"connection lost: {exc!r}"))
        if not self.closed.done():
            self.closed.set_result(None)

    # -- frames --

    def _finish_handshake(self, head: bytes) -> None:
        status, _, rest = head.partition(b"\r\n")
        headers = {}
        for line in rest.split(b"\r\n"):
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if (
            status.split(b" ", 2)[1:2] != [b"101"]
            or headers.get(b"sec-websocket-accept") != self._accept
        ):
            if not self.opened.done():
                self.opened.set_exception(HandshakeFailed(status.decode(errors="replace")))
            self.abort()
            return
        self.is_open = True
        self.opened.set_result(None)

    def _frames(self, data: bytes, now: float) -> None:
        pos = 0
        size = len(data)
        while size - pos >= 2:
            b0 = data[pos]
            n = data[pos + 1] & 0x7F
            head = 2
            if n == 126:
                if size - pos < 4:
                    break
                n = int.from_bytes(data[pos + 2 : pos + 4], "big")
                head = 4
            elif n == 127:
                if size - pos < 10:
                    break
                n = int.from_bytes(data[pos + 2 : pos + 10], "big")
                head = 10
            end = pos + head + n
            if end > size:
                break
            payload = data[pos + head : end]
            pos = end
            opcode = b0 & 0x0F
            if opcode == OP_TEXT and b0 & 0x80:
                self.on_text(self, payload, now)
            elif opcode == OP_PING:
                self.write(client_frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self._answer_close(payload[:2])
                return
            elif opcode != OP_PONG:
                self.protocol_errors += 1  # fragmented or binary: not expected here
        if pos < size:
            self._buffer = data[pos:]

    def write(self, frame: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(frame)

    def send_text(self, payload: bytes) -> None:
        self.write(client_frame(OP_TEXT, payload))

    def _answer_close(self, code: bytes) -> None:
        if self.is_open:
            self.is_open = False
            self.write(client_frame(OP_CLOSE, code))
        # The server closes the TCP connection first (RFC 6455 §7.1.1).

    def start_close(self) -> None:
        """Send a close frame (1000); the server answers and closes the connection."""
        if self.is_open:
            self.is_open = False
            self.write(client_frame(OP_CLOSE, (1000).to_bytes(2, "big")))
        elif self.transport is not None and not self.opened.done():
            self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
