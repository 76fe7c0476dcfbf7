"""A local Web Push service (RFC 8030) and the browsers subscribed to it.

It checks what a real push service checks (the VAPID JWT against the ``k`` key and the
origin, RFC 8292; a TTL header, RFC 8030 section 5.2) and, playing the browser too,
decrypts each payload with the subscription's private key and auth secret (RFC 8291):
a payload it cannot decrypt fails the test.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import time
from dataclasses import dataclass
from typing import Any

import http_ece
import jwt
import orjson
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.fakes import serve_locally
from tests.fakes.fcm import Reply


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Browser:
    """One PushSubscription: its endpoint and the keys only the browser holds."""

    id: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    def subscription(self) -> dict[str, Any]:
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "keys": {"p256dh": b64url(public), "auth": b64url(self.auth)},
        }

    def web_keys(self) -> dict[str, str]:
        return dict(self.subscription()["keys"])


@dataclass
class Received:
    browser: str
    payload: dict[str, Any]
    headers: dict[str, str]


class FakeWebPush:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: dict[str, list[Reply]] = {}  # browser id -> next answers
        self.posts = 0
        self._browsers: dict[str, Browser] = {}
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.delivered = asyncio.Event()

    async def start(self) -> FakeWebPush:
        app = web.Application()
        app.router.add_post("/push/{id}", self._push)
        self._runner, self.url = await serve_locally(app)
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def browser(self) -> Browser:
        browser_id = f"sub{next(self._ids)}"
        browser = Browser(
            browser_id,
            f"{self.url}/push/{browser_id}",
            ec.generate_private_key(ec.SECP256R1()),
            os.urandom(16),
        )
        self._browsers[browser_id] = browser
        return browser

    async def _push(self, request: web.Request) -> web.Response:
        self.posts += 1
        browser = self._browsers.get(request.match_info["id"])
        if browser is None:
            return web.Response(status=404)
        problem = self._check_vapid(request.headers.get("authorization", ""))
        if problem is not None:
            return web.Response(status=403, text=problem)
        if "ttl" not in {k.lower() for k in request.headers}:
            return web.Response(status=400, text="TTL required")
        if request.headers.get("content-encoding") != "aes128gcm":
            return web.Response(status=415)
        body = await request.read()
        scripted = self.script.get(browser.id)
        if scripted:
            reply = scripted.pop(0)
            return web.Response(status=reply.status, headers=reply.headers)
        plaintext = http_ece.decrypt(
            body, private_key=browser.private_key, auth_secret=browser.auth, version="aes128gcm"
        )
        self.received.append(Received(browser.id, orjson.loads(plaintext), dict(request.headers)))
        self.delivered.set()
        return web.Response(status=201, headers={"Location": f"{self.url}/message/{self.posts}"})

    def _check_vapid(self, header: str) -> str | None:
        if not header.startswith("vapid "):
            return "not vapid"
        fields = dict(part.strip().split("=", 1) for part in header[6:].split(","))
        try:
            key = ec.EllipticCurvePublicKey.from_encoded_point(
                ec.SECP256R1(), b64url_decode(fields["k"])
            )
            claims = jwt.decode(fields["t"], key, algorithms=["ES256"], audience=self.url)
        except (KeyError, ValueError, jwt.PyJWTError) as exc:
            return f"bad vapid: {exc}"
        if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
            return "bad sub"
        if claims["exp"] > time.time() + 86400:
            return "exp over 24 h"
        return None
