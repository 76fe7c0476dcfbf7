"""A database that stops answering (no error, no close: a stall) costs each request at
most its deadline: the client gets a retryable 5003, a handshake gets HTTP 503, nothing
half-done is left, and everything works again when the database does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pytest
from websockets.exceptions import InvalidStatus

from kernel.clock import FakeClock
from rtc_server.app import App
from rtc_server.client import RpcCallError, RtcClient
from tests.servers import CodeLog, settings_for
from tests.stall_proxy import StallProxy

from .conftest import Clients, ws_url


@pytest.fixture
async def proxy(db_dsn: str) -> AsyncIterator[StallProxy]:
    """Between the server and PostgreSQL (a unix socket, or TCP)."""
    parts = urlsplit(db_dsn)
    query = parse_qs(parts.query)
    port = int(query.get("port", [parts.port or 5432])[0])
    if "host" in query and query["host"][0].startswith("/"):
        path = f"{query['host'][0]}/.s.PGSQL.{port}"
        stalling = await StallProxy.start(lambda: asyncio.open_unix_connection(path))
    else:
        host = parts.hostname or "127.0.0.1"
        stalling = await StallProxy.start(lambda: asyncio.open_connection(host, port))
    yield stalling
    await stalling.close()


def through(dsn: str, proxy: StallProxy) -> str:
    """``dsn`` reaching the database through ``proxy``."""
    parts = urlsplit(dsn)
    user = parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else ""
    netloc = f"{user}@127.0.0.1:{proxy.port}" if user else f"127.0.0.1:{proxy.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@pytest.fixture
async def stalled_app(
    db_dsn: str, proxy: StallProxy, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[App]:
    settings = settings_for(
        through(db_dsn, proxy),
        tmp_path,
        server={"request_deadline": 1.0},
        database={"acquire_timeout": 3.0, "command_timeout": 30.0},
    )
    app = App(settings, clock=clock)
    await app.start()
    yield app
    proxy.resume()
    await app.stop()


async def test_a_stalled_database_costs_a_request_its_deadline(
    stalled_app: App, proxy: StallProxy, code_log: CodeLog
) -> None:
    clients = Clients(stalled_app, code_log)
    try:
        client, tokens = await clients.login()
        before = await client.call("me.get")
        proxy.stall()
        t0 = time.monotonic()
        with pytest.raises(RpcCallError) as stalled:
            await client.call("me.update", {"fullName": "Never Written"}, timeout=10)
        waited = time.monotonic() - t0
        assert stalled.value.name == "unavailable" and stalled.value.data["retryable"] is True
        assert 0.9 < waited < 3, waited  # the deadline (1 s), not the 30 s command timeout
        # Other requests meanwhile: bounded too, and the socket still answers pings.
        with pytest.raises(RpcCallError) as also:
            await client.call("me.get", timeout=10)
        assert also.value.name == "unavailable"
        assert (await client.call("system.ping"))["pong"] is True
        # A handshake that needs the database answers 503 at once, not at its timeout.
        t0 = time.monotonic()
        with pytest.raises(InvalidStatus) as refused:
            await RtcClient.connect(
                ws_url(stalled_app),
                additional_headers={"Authorization": f"Bearer {tokens['accessToken']}"},
            )
        assert refused.value.response.status_code == 503
        assert time.monotonic() - t0 < 3
        proxy.resume()
        # Nothing half-done: the update never reached the database; now it works.
        async with asyncio.timeout(15):
            while True:
                try:
                    after = await client.call("me.get")
                    break
                except RpcCallError as error:
                    assert error.name == "unavailable"
                    await asyncio.sleep(0.2)
        assert after["fullName"] == before["fullName"]
        assert (await client.call("me.update", {"fullName": "Now Written"}))["fullName"] == (
            "Now Written"
        )
        deadlines = stalled_app.metrics.registry.get_sample_value(
            "rtc_rpc_deadline_exceeded_total", {"method": "me.update"}
        )
        assert deadlines == 1
    finally:
        await clients.close()
