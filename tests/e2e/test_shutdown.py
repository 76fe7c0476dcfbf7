"""Graceful shutdown: stop accepting, finish what is in flight, then ask for a reconnect."""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import InvalidStatus

from kernel.errors import CloseCode
from kernel.rpc.registry import Access, Caller, Empty, Result
from rtc_server.app import App
from rtc_server.client import RpcCallError, RtcClient

from .conftest import AppFactory, ws_url


class Slept(Result):
    slept: bool = True


async def draining(app: App) -> None:
    """Until stop() has begun draining (the first thing it does, with no I/O)."""
    async with asyncio.timeout(5):
        while not app.dispatcher.draining:
            await asyncio.sleep(0)


async def test_in_flight_request_finishes_before_the_1012_close(make_app: AppFactory) -> None:
    app = await make_app(server={"shutdown_grace": 5})
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(caller: Caller, params: Empty) -> Slept:
        started.set()
        await release.wait()
        return Slept()

    app.registry.add("test.slow", slow, result=Slept, access=Access.PUBLIC)
    client = await RtcClient.connect(ws_url(app))
    call = asyncio.create_task(client.call("test.slow"))
    await started.wait()
    stopping = asyncio.create_task(app.stop())
    await draining(app)
    # Draining: new sockets are refused, new requests answered "unavailable".
    with pytest.raises((InvalidStatus, OSError)):
        await RtcClient.connect(ws_url(app))
    assert not stopping.done()
    release.set()
    assert await call == {"slept": True}
    assert await client.wait_closed() == CloseCode.SERVICE_RESTART
    await stopping


async def test_requests_during_drain_are_answered_unavailable(make_app: AppFactory) -> None:
    app = await make_app(server={"shutdown_grace": 5})
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(caller: Caller, params: Empty) -> Slept:
        started.set()
        await release.wait()
        return Slept()

    app.registry.add("test.slow", slow, result=Slept, access=Access.PUBLIC)
    client = await RtcClient.connect(ws_url(app))
    call = asyncio.create_task(client.call("test.slow"))
    await started.wait()
    stopping = asyncio.create_task(app.stop())
    await draining(app)
    with pytest.raises(RpcCallError) as refused:
        await client.call("system.ping")
    assert refused.value.name == "unavailable" and refused.value.data["retryable"]
    release.set()
    await call
    await stopping
