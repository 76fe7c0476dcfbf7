"""A local APNs: the provider API over HTTP/2 (cleartext, prior knowledge), served by
hypercorn. It refuses HTTP/1.1, verifies the ES256 provider token (key id, team id,
age), and answers as scripted per device token, else 200 with an ``apns-id``.

Documented answers: Apple, "Handling notification responses from APNs".
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypercorn.asyncio import serve
from hypercorn.config import Config

TEAM = "TEAM123456"
KEY_ID = "KEY1234567"
TOPIC = "in.buildxpert.provider"


@dataclass
class ApnsReply:
    status: int
    reason: str | None = None
    timestamp_ms: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Delivered:
    token: str
    headers: dict[str, str]
    payload: dict[str, Any]


class FakeApns:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.delivered: list[Delivered] = []
        self.script: dict[str, list[ApnsReply]] = {}
        self.requests = 0
        self.http_versions: set[str] = set()
        self.expired: set[str] = set()  # provider tokens to answer ExpiredProviderToken
        self.received = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self.url = ""

    async def start(self) -> FakeApns:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(100)
        sock.setblocking(False)
        port = sock.getsockname()[1]
        config = Config()
        # hypercorn takes the socket over (and closes it when it stops).
        config.bind = [f"fd://{sock.detach()}"]
        config.accesslog = None
        config.errorlog = None
        self._task = asyncio.create_task(
            serve(self._app, config, shutdown_trigger=self._stop.wait, mode="asgi")  # type: ignore[arg-type]
        )
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def key_file(self, folder: Path) -> Path:
        path = folder / f"AuthKey_{KEY_ID}.p8"
        path.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return path

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.requests += 1
        self.http_versions.add(scope["http_version"])
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        reply = self._answer(scope, headers, body)
        response_headers = [(b"apns-id", str(uuid.uuid4()).encode())]
        response_headers += [(k.encode(), v.encode()) for k, v in reply.headers.items()]
        content = b""
        if reply.status != 200:
            error: dict[str, Any] = {"reason": reply.reason}
            if reply.timestamp_ms is not None:
                error["timestamp"] = reply.timestamp_ms
            content = orjson.dumps(error)
            response_headers.append((b"content-type", b"application/json"))
        await send(
            {"type": "http.response.start", "status": reply.status, "headers": response_headers}
        )
        await send({"type": "http.response.body", "body": content})

    def _answer(self, scope: dict[str, Any], headers: dict[str, str], body: bytes) -> ApnsReply:
        if scope["http_version"] != "2":
            return ApnsReply(400, "BadHttpVersion")  # APNs speaks HTTP/2 only
        path = scope["path"]
        if scope["method"] != "POST" or not path.startswith("/3/device/"):
            return ApnsReply(405, "MethodNotAllowed")
        token = path.removeprefix("/3/device/")
        auth = headers.get("authorization", "")
        if not auth.startswith("bearer "):
            return ApnsReply(403, "MissingProviderToken")
        try:
            header = jwt.get_unverified_header(auth[7:])
            claims = jwt.decode(auth[7:], self.key.public_key(), algorithms=["ES256"])
        except jwt.PyJWTError:
            return ApnsReply(403, "InvalidProviderToken")
        if header.get("kid") != KEY_ID or claims.get("iss") != TEAM:
            return ApnsReply(403, "InvalidProviderToken")
        if auth[7:] in self.expired or claims["iat"] < time.time() - 3600:
            return ApnsReply(403, "ExpiredProviderToken")
        if headers.get("apns-topic") != TOPIC:
            return ApnsReply(400, "TopicDisallowed")
        if headers.get("apns-push-type") not in ("alert", "background", "voip"):
            return ApnsReply(400, "InvalidPushType")
        if len(body) > 4096:
            return ApnsReply(413, "PayloadTooLarge")
        scripted = self.script.get(token)
        if scripted:
            return scripted.pop(0)
        self.delivered.append(Delivered(token, headers, orjson.loads(body)))
        self.received.set()
        next(self._ids)
        return ApnsReply(200)
