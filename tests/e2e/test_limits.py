"""Limits that need a real socket: framing (binary, oversized, invalid UTF-8), TCP
back-pressure and keepalive pings. The dispatcher's limits and bad JSON-RPC input are
tested on sockets in memory: ``tests/driver/test_limits.py``."""

from __future__ import annotations

import asyncio
import socket

from websockets.asyncio.client import connect

from kernel.errors import CloseCode
from rtc_server.app import App
from rtc_server.client import RtcClient
from tests.events import Loose, loose

from .conftest import AppFactory, Clients, CodeLog, ws_url


async def test_binary_frame_closes_1003(app: App) -> None:
    async with connect(ws_url(app)) as ws:
        await ws.send(b"\x00\x01")
        await ws.wait_closed()
        assert ws.close_code == CloseCode.UNSUPPORTED_DATA


async def test_oversized_frame_closes_1009(make_app: AppFactory) -> None:
    app = await make_app(server={"max_frame_bytes": 4096})
    async with connect(ws_url(app), max_size=None) as ws:
        await ws.send("x" * 5000)
        await ws.wait_closed()
        assert ws.close_code == CloseCode.MESSAGE_TOO_BIG


async def test_invalid_utf8_closes_1007(app: App) -> None:
    # A hand-made masked text frame whose payload is not UTF-8.
    host, port = "127.0.0.1", app.sockets.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    payload = b"\xff\xfe\xfd"
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    await writer.drain()
    header = await asyncio.wait_for(reader.readexactly(2), 5)
    assert header[0] == 0x88  # a close frame
    body = await reader.readexactly(header[1])
    assert int.from_bytes(body[:2], "big") == CloseCode.INVALID_PAYLOAD
    writer.close()


async def test_slow_consumer_is_closed_not_buffered(
    make_app: AppFactory, code_log: CodeLog
) -> None:
    app = await make_app(server={"send_buffer_bytes": 65536})
    logins = Clients(app, code_log)
    _, tokens = await logins.login()
    user_id = tokens["user"]["id"]
    # A raw socket that never reads, with a tiny receive buffer.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", app.sockets.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {tokens['accessToken']}\r\n\r\n"
        ).encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    drops_before = app.metrics.send_drops._value.get()
    big = {"blob": "x" * 8000}
    async with asyncio.timeout(20):
        while app.metrics.send_drops._value.get() == drops_before:
            await app.publisher.publish(user_id, loose("bulk"), Loose.of(big))
    writer.close()
    await logins.close()


async def test_keepalive_pings_and_closes_a_silent_peer(make_app: AppFactory) -> None:
    app = await make_app(server={"ping_interval": 0.2, "ping_timeout": 0.2})
    # A live client answers pings (websockets does it by itself): it stays open.
    alive = await RtcClient.connect(ws_url(app))
    # A peer that never reads: no pong ever comes back.
    reader, writer = await asyncio.open_connection("127.0.0.1", app.sockets.port)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await reader.readuntil(b"\r\n\r\n")
    frames = b""
    async with asyncio.timeout(5):
        while b"\x88" not in frames:  # until a close frame arrives
            frames += await reader.read(100)
    assert frames[0] == 0x89  # a ping came first
    close_at = frames.index(b"\x88")
    code = int.from_bytes(frames[close_at + 2 : close_at + 4], "big")
    assert code == CloseCode.INTERNAL_ERROR
    writer.close()
    assert (await alive.call("system.ping"))["pong"]
    await alive.close()
