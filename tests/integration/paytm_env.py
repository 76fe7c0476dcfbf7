"""What the Paytm tests share: merchants, a merchant server that records what Paytm posts
to it, and hand-built signed requests."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import defaultdict
from typing import Any

from aiohttp import web

from api.payments.paytm.checksum import generate_signature

MID = "BuildX00000000000001"
KEY = "kbzk1DSbJiV_O3p5"
OTHER_MID = "BuildX00000000000002"
OTHER_KEY = "Xv5T&WcdRNhvz7#u"
MERCHANTS = {MID: KEY, OTHER_MID: OTHER_KEY}


class MerchantServer:
    """A merchant's callback and webhook endpoints on a loopback port: every form POST is
    recorded by path, and :meth:`received` waits for the next one."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self._posts: defaultdict[str, asyncio.Queue[dict[str, str]]] = defaultdict(asyncio.Queue)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> MerchantServer:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._record)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path}"

    async def received(self, path: str) -> dict[str, str]:
        """The next form posted to ``path`` (waits for it)."""
        return await self._posts[path].get()

    def pending(self, path: str) -> int:
        return self._posts[path].qsize()

    async def _record(self, request: web.Request) -> web.Response:
        form = await request.post()
        fields = {name: str(value) for name, value in form.items()}
        await self._posts[request.match_info["path"]].put(fields)
        return web.Response(status=self.status, text="ok")


def signed_request(body: dict[str, Any], key: str = KEY, *, spaced: bool = False) -> bytes:
    """A Paytm JSON request: ``body`` serialized once, signed over those bytes."""
    separators = (", ", ": ") if spaced else (",", ":")
    body_text = json.dumps(body, separators=separators, ensure_ascii=not spaced)
    signature = generate_signature(body_text, key)
    return f'{{"body":{body_text},"head":{{"signature":"{signature}"}}}}'.encode()


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
