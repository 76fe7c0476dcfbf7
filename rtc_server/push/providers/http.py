"""The HTTP clients under the providers, behind one small interface.

FCM and Web Push speak HTTP/1.1 through aiohttp (already the project's HTTP library;
per request it costs a fraction of httpx's CPU, measured in ``bench.push``); APNs needs
HTTP/2, which only httpx (with ``h2``) offers. Providers see :class:`HttpResponse` and
:class:`TransportError`, never an aiohttp or httpx type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

import aiohttp
import httpx
import orjson


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        """The body as JSON; ValueError if it is not."""
        return orjson.loads(self.body)


class TransportError(Exception):
    """The request got no answer: connection refused or lost, timeout."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind  # e.g. "ClientConnectorError", "TimeoutError"


class HttpClient(Protocol):
    async def post(self, url: str, *, body: bytes, headers: Mapping[str, str]) -> HttpResponse: ...

    async def close(self) -> None: ...


async def post_form(client: HttpClient, url: str, form: Mapping[str, str]) -> HttpResponse:
    body = urlencode(form).encode()
    return await client.post(
        url, body=body, headers={"content-type": "application/x-www-form-urlencoded"}
    )


class Http1Client:
    """aiohttp, one connection pool per provider (created on first use, in the loop)."""

    def __init__(self, *, timeout: float = 10.0, connections: int = 100) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._connections),
                # Nothing of the environment (proxies, .netrc) decides where pushes go.
                trust_env=False,
            )
        return self._session

    async def post(self, url: str, *, body: bytes, headers: Mapping[str, str]) -> HttpResponse:
        try:
            async with self._open().post(url, data=body, headers=dict(headers)) as response:
                content = await response.read()
                return HttpResponse(
                    response.status,
                    {k.lower(): v for k, v in response.headers.items()},
                    content,
                )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransportError(type(exc).__name__) from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class Http2Client:
    """httpx over HTTP/2 only: one connection multiplexes every request (APNs).

    Over ``http://`` this is h2c with prior knowledge (the tests' local server)."""

    def __init__(self, *, timeout: float = 10.0) -> None:
        self._client = httpx.AsyncClient(http1=False, http2=True, timeout=timeout, trust_env=False)

    async def post(self, url: str, *, body: bytes, headers: Mapping[str, str]) -> HttpResponse:
        try:
            response = await self._client.post(url, content=body, headers=dict(headers))
        except httpx.HTTPError as exc:
            raise TransportError(type(exc).__name__) from exc
        return HttpResponse(
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            response.content,
        )

    async def close(self) -> None:
        await self._client.aclose()
