"""The driver tier: the whole server but its ports, driven through memory.

:meth:`rtc_server.app.App.prepare` builds everything a socket reaches (the kernel, every
feature, the dispatcher) on a real PostgreSQL and the in-process bus; each client is a
:class:`~rtc_server.client.RtcClient` over a :class:`tests.driver.memory.MemorySocket`:
its frames go to the dispatcher as the socket server hands them over, and it reads what
the server's connection wrote. What needs a real socket (handshakes, framing limits,
TCP back-pressure, keepalive, processes) stays in ``tests/e2e``.

    core        the prepared App (no ports listening)
    clients     opens logged-in or anonymous clients on it, closed after the test
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kernel.clock import FakeClock
from kernel.jobs import Worker
from rtc_server.app import App
from rtc_server.client import RtcClient
from storage import accounts
from tests.driver.memory import MemorySocket
from tests.servers import CodeLog, settings_for


async def prepared(db_dsn: str, data_dir: Path, clock: FakeClock, **sections: Any) -> App:
    app = App(settings_for(db_dsn, data_dir, **sections), clock=clock)
    await app.prepare()
    return app


@pytest.fixture
async def core(db_dsn: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[App]:
    app = await prepared(db_dsn, tmp_path, clock)
    yield app
    await app.stop()


class MemoryClients:
    """Clients of a prepared App, each on a socket in memory."""

    def __init__(self, app: App, code_log: CodeLog) -> None:
        self.app = app
        self.code_log = code_log
        self.opened: list[RtcClient] = []
        self.raw: list[MemorySocket] = []
        self._phones = iter(range(9_000_000_000, 9_999_999_999, 7_919))

    def new_phone(self) -> str:
        return str(next(self._phones))

    def anonymous(self, ip: str = "127.0.0.1") -> RtcClient:
        client = RtcClient(MemorySocket(self.app, ip), "memory:")  # type: ignore[arg-type]
        self.opened.append(client)
        return client

    async def login(
        self, phone: str | None = None, role: str = "customer"
    ) -> tuple[RtcClient, Any]:
        """A client logged in as a new (or the given) account; it and its tokens."""
        phone = phone or self.new_phone()
        client = self.anonymous()
        await client.call("auth.requestOtp", {"phone": phone, "role": role})
        tokens = await client.login(phone, role, self.code_log.last("+91" + phone[-10:]))
        return client, tokens

    async def login_existing(self, role: str = "customer") -> tuple[RtcClient, Any]:
        """A client logged in to an account that existed already (made in the database,
        not by a first login): its event log is empty, where a new account's starts
        with its welcome notification."""
        phone = self.new_phone()
        assert self.app.db is not None
        await accounts.upsert_verified_user(self.app.db, "+91" + phone[-10:], role, None)
        return await self.login(phone, role)

    async def admin(self) -> tuple[RtcClient, Any]:
        """An admin (made by an operator, as ``rtc-server create-admin`` does), logged in."""
        phone = self.new_phone()
        assert self.app.db is not None
        await accounts.create_admin(self.app.db, "+91" + phone[-10:], "Ops")
        return await self.login(phone, role="admin")

    def worker(self) -> Worker:
        """A job worker of this server whose rounds the test runs (``run_due()``)."""
        assert self.app.db is not None
        return Worker(self.app.db, self.app.kit.declared.jobs, self.app.clock, self.app.metrics)

    async def device(self, tokens: Any, last_seq: int | None = None) -> RtcClient:
        """Another socket of a logged-in user."""
        client = self.anonymous()
        await client.authenticate(tokens["accessToken"], last_seq=last_seq)
        return client

    def socket(self) -> MemorySocket:
        """A bare socket: write frames, read what the server wrote (``sink.take()``)."""
        sock = MemorySocket(self.app)
        self.raw.append(sock)
        return sock

    async def reconnect(self, client: RtcClient) -> RtcClient:
        """The same user on a new socket, resuming after the client's last seq (the
        network dropped: the old socket is closed)."""
        await client.close()
        fresh = self.anonymous()
        assert client.access_token is not None
        await fresh.authenticate(client.access_token, last_seq=client.last_seq or 0)
        return fresh

    async def close(self) -> None:
        for client in self.opened:
            await client.close()
        for sock in self.raw:
            await sock.close()


@pytest.fixture
async def clients(core: App, code_log: CodeLog) -> AsyncIterator[MemoryClients]:
    opened = MemoryClients(core, code_log)
    yield opened
    await opened.close()
