"""A small Python client of the socket protocol (used by tests, benchmarks and tools).

    client = await RtcClient.connect("ws://127.0.0.1:8765/ws")
    await client.call("auth.requestOtp", {"phone": "9876543210", "role": "customer"})
    tokens = await client.call("auth.verifyOtp", {... "code": "123456"})
    await client.authenticate(tokens["accessToken"])
    event = await client.next_event()
    await client.ack(event.seq)
    client = await client.reconnect()    # resumes after client.last_seq

It keeps everything it receives as it arrives (no de-duplication), so tests can
check what the server really sent.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


class RpcCallError(Exception):
    """The server answered a request with a JSON-RPC error."""

    def __init__(self, error: Mapping[str, Any]) -> None:
        self.code: int = error.get("code", 0)
        self.message: str = error.get("message", "")
        self.data: dict[str, Any] = dict(error.get("data") or {})
        self.name: str = self.data.get("error", "")
        super().__init__(f"{self.code} {self.name}: {self.message}")


@dataclass(frozen=True, slots=True)
class Event:
    method: str
    seq: int | None  # None for notifications outside the event log (session.ready)
    data: Any
    params: dict[str, Any]


class RtcClient:
    def __init__(self, ws: ClientConnection, url: str) -> None:
        self.ws = ws
        self.url = url
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.received: list[Event] = []
        self.last_seq: int | None = None
        self.access_token: str | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int | str, asyncio.Future[Any]] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        access_token: str | None = None,
        last_seq: int | None = None,
        open_timeout: float = 10,
        additional_headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> RtcClient:
        """Open a socket; with ``access_token`` it is authenticated at the handshake."""
        headers: dict[str, str] = dict(additional_headers or {})
        if access_token is not None:
            headers["Authorization"] = f"Bearer {access_token}"
            if last_seq is not None:
                headers["RTC-Last-Seq"] = str(last_seq)
        ws = await connect(
            url,
            additional_headers=headers,
            open_timeout=open_timeout,
            max_size=2**22,
            compression=None,
            **kwargs,
        )
        client = cls(ws, url)
        client.access_token = access_token
        client.last_seq = last_seq
        return client

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                payload = orjson.loads(message)
                for item in payload if isinstance(payload, list) else [payload]:
                    self._dispatch(item)
        except ConnectionClosed:
            pass
        finally:
            error = ConnectionError(f"socket closed ({self.close_code})")
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(error)
            self._pending.clear()

    def _dispatch(self, item: dict[str, Any]) -> None:
        if "method" in item:
            params = item.get("params") or {}
            seq = params.get("seq") if isinstance(params, dict) else None
            event = Event(item["method"], seq, params.get("data"), params)
            if seq is not None:
                self.last_seq = max(self.last_seq or 0, seq)
            self.received.append(event)
            self.events.put_nowait(event)
            return
        request_id = item.get("id")
        future = self._pending.pop(request_id, None) if request_id is not None else None
        if future is None or future.done():
            return
        if "error" in item:
            future.set_exception(RpcCallError(item["error"]))
        else:
            future.set_result(item.get("result"))

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    async def call(
        self, method: str, params: Mapping[str, Any] | None = None, *, timeout: float = 10
    ) -> Any:
        """Send a request and wait for its result (raises :class:`RpcCallError`)."""
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        frame: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            frame["params"] = dict(params)
        await self.ws.send(orjson.dumps(frame), text=True)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(request_id, None)

    async def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        frame: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            frame["params"] = dict(params)
        await self.ws.send(orjson.dumps(frame), text=True)

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def authenticate(self, access_token: str, last_seq: int | None = None) -> Any:
        params: dict[str, Any] = {"accessToken": access_token}
        if last_seq is not None:
            params["lastSeq"] = last_seq
        result = await self.call("session.authenticate", params)
        self.access_token = access_token
        if self.last_seq is None or last_seq is not None:
            self.last_seq = result["resumeFrom"]
        return result

    async def login(self, phone: str, role: str, code: str, **extra: Any) -> Any:
        """Verify ``code`` (already requested) and authenticate this socket."""
        tokens = await self.call(
            "auth.verifyOtp", {"phone": phone, "role": role, "code": code, **extra}
        )
        await self.authenticate(tokens["accessToken"])
        return tokens

    async def next_event(self, timeout: float = 5, method: str | None = None) -> Event:
        """The next notification received (optionally the next of one method)."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.events.get()
                if method is None or event.method == method:
                    return event

    async def ack(self, seq: int | None = None) -> Any:
        return await self.call("events.ack", {"seq": self.last_seq if seq is None else seq})

    async def reconnect(self, url: str | None = None, **kwargs: Any) -> RtcClient:
        """A new socket for the same user, resuming after :attr:`last_seq`.

        ``url``: another instance (behind a load balancer, any instance will do).
        """
        await self.close()
        client = await RtcClient.connect(url or self.url, **kwargs)
        if self.access_token is not None:
            await client.authenticate(self.access_token, last_seq=self.last_seq or 0)
        return client

    async def wait_closed(self, timeout: float = 10) -> int | None:
        async with asyncio.timeout(timeout):
            await self.ws.wait_closed()
            await self._reader
        return self.close_code

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.gather(self._reader, return_exceptions=True)
