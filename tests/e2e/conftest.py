"""A real server on loopback ports, real websocket clients, a real PostgreSQL.

Login codes are read from the development SMS sender's log lines, the same way a
developer reads them: no part of the login path is replaced.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from api.payments.paytm.simulator import PaytmSimulator
from kernel.clock import FakeClock
from rtc_server.app import App
from rtc_server.client import RtcClient
from storage import accounts
from tests.integration.paytm_env import KEY, MID
from tests.servers import CodeLog, settings_for

AppFactory = Callable[..., Awaitable[App]]


@pytest.fixture
async def make_app(db_dsn: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[AppFactory]:
    apps: list[App] = []

    async def make(**sections: dict[str, Any]) -> App:
        app = App(settings_for(db_dsn, tmp_path, **sections), clock=clock)
        await app.start()
        apps.append(app)
        return app

    yield make
    for app in apps:
        await app.stop()


@pytest.fixture
async def app(make_app: AppFactory) -> App:
    return await make_app()


# Paytm's local server (the SMS gateways' are in tests/conftest.py).


@pytest.fixture
async def paytm() -> AsyncIterator[PaytmSimulator]:
    simulator = await PaytmSimulator({MID: KEY}).start()
    yield simulator
    await simulator.close()


def ws_url(app: App) -> str:
    return f"ws://127.0.0.1:{app.sockets.port}/ws"


class Clients:
    """Opens clients against an app and closes them all at the end of the test."""

    def __init__(self, app: App, code_log: CodeLog) -> None:
        self.app = app
        self.code_log = code_log
        self.opened: list[RtcClient] = []
        self._phones = iter(range(9_000_000_000, 9_999_999_999, 7_919))

    def share_phones(self, other: Clients) -> None:
        """Draw new phones from ``other``'s numbers (clients of several instances)."""
        self._phones = other._phones

    def new_phone(self) -> str:
        return str(next(self._phones))

    async def anonymous(self, **kwargs: Any) -> RtcClient:
        client = await RtcClient.connect(ws_url(self.app), **kwargs)
        self.opened.append(client)
        return client

    async def login(
        self, phone: str | None = None, role: str = "customer"
    ) -> tuple[RtcClient, Any]:
        """A socket logged in as a new (or the given) account; returns it and the tokens."""
        phone = phone or self.new_phone()
        client = await self.anonymous()
        await client.call("auth.requestOtp", {"phone": phone, "role": role})
        code = self.code_log.last("+91" + phone[-10:])
        tokens = await client.login(phone, role, code)
        return client, tokens

    async def login_existing(self, role: str = "customer") -> tuple[RtcClient, Any]:
        """A socket logged in to an account that existed already (made in the database,
        not by a first login): its event log is empty, where a new account's starts
        with its welcome notification."""
        phone = self.new_phone()
        assert self.app.db is not None
        await accounts.upsert_verified_user(self.app.db, e164(phone), role, None)
        return await self.login(phone, role)

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.opened), return_exceptions=True)


@pytest.fixture
async def clients(app: App, code_log: CodeLog) -> AsyncIterator[Clients]:
    opened = Clients(app, code_log)
    yield opened
    await opened.close()


def e164(phone: str) -> str:
    return "+91" + re.sub(r"\D", "", phone)[-10:]


Cluster = Callable[..., Awaitable[list[Clients]]]


@pytest.fixture
async def cluster(
    make_app: AppFactory, code_log: CodeLog, redis_url: str, redis_prefix: str
) -> AsyncIterator[Cluster]:
    """``await cluster(size, **sections)``: ``size`` more Apps on one Redis and one
    database (each its own bus, hub and port), their Clients drawing phones from one
    pool; every Clients made so far is returned, in order."""
    opened: list[Clients] = []

    async def start(size: int, **sections: dict[str, Any]) -> list[Clients]:
        redis = {"url": redis_url, "prefix": redis_prefix, **sections.pop("redis", {})}
        for _ in range(size):
            app = await make_app(redis=redis, **sections)
            clients = Clients(app, code_log)
            if opened:
                clients.share_phones(opened[0])  # one user base, not one per instance
            opened.append(clients)
        return opened

    yield start
    for clients in opened:
        await clients.close()


async def device(on: Clients, tokens: Any) -> RtcClient:
    """Another socket of a logged-in user, on the instance ``on``."""
    client = await RtcClient.connect(ws_url(on.app))
    on.opened.append(client)
    await client.authenticate(tokens["accessToken"])
    return client


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every end-to-end test is slow: it starts whole servers on real ports (run by
    the README's test command; left out by ``-m "not slow"``)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.slow)
