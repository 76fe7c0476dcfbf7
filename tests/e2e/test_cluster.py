"""Three real ``rtc-server`` processes, a real Redis, a real PostgreSQL.

Clients behave like the mobile app on a flaky network: when their socket closes
(instance killed, restarted, draining), they reconnect to another instance and resume
from the last ``seq`` they saw. Events are published concurrently, the whole time,
by a fourth instance: this test process, running the production publisher and Redis
bus. Every test ends by checking every event of every user: count, order, payload,
no duplicate.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from kernel.publisher import EventPublisher
from rtc_server.client import RtcClient
from rtc_server.config import RedisSettings
from rtc_server.metrics import Metrics
from rtc_server.scaleout.local_redis import RedisServer
from rtc_server.scaleout.redis_bus import RedisBus
from storage import accounts
from storage.database import Database, PoolSettings
from tests.events import Loose, loose

from .processes import ServerProcess, clean_env, login, start_server, stop_server

USERS = 9


@dataclass
class Cluster:
    redis: RedisServer
    db_dsn: str
    servers: list[ServerProcess]
    env: dict[str, str]

    def live_urls(self) -> list[str]:
        return [s.url for s in self.servers if s.proc.returncode is None]

    async def add_server(self) -> ServerProcess:
        server = await start_server(env=self.env)
        self.servers.append(server)
        return server


@pytest.fixture
async def cluster(
    db_dsn: str, redis_servers: Callable[[], RedisServer], redis_prefix: str
) -> AsyncIterator[Cluster]:
    redis = redis_servers()
    env = clean_env(
        RTC_DATABASE__DSN=db_dsn,
        RTC_REDIS__URL=redis.url,
        RTC_REDIS__PREFIX=redis_prefix,
        RTC_REDIS__PRESENCE_LEASE="3",
        RTC_REDIS__SOCKET_TIMEOUT="1",
        RTC_DATABASE__POOL_MAX="5",
    )
    servers = list(await asyncio.gather(*(start_server(env=env) for _ in range(3))))
    cluster = Cluster(redis, db_dsn, servers, env)
    yield cluster
    for server in cluster.servers:
        if server.proc.returncode is None:
            server.proc.kill()
            await server.proc.wait()


class Publisher:
    """A publishing instance: the production EventPublisher on its own Redis bus."""

    def __init__(self, db: Database, bus: RedisBus) -> None:
        self.db = db
        self.bus = bus
        self.events = EventPublisher(db, bus, Metrics())
        self.sent: dict[int, dict[int, Any]] = {}  # user -> seq -> data

    @classmethod
    async def start(cls, cluster: Cluster, prefix: str) -> Publisher:
        db = await Database.connect(PoolSettings(cluster.db_dsn, max_size=5))
        bus = RedisBus(
            RedisSettings(url=cluster.redis.url, prefix=prefix, socket_timeout=1.0), Metrics()
        )
        bus.set_receiver(lambda message: None)  # it holds no sockets
        await bus.start()
        return cls(db, bus)

    async def publish(self, users: list[int], data: dict[str, Any]) -> None:
        seqs = await self.events.publish_many(users, loose("test.event"), Loose.of(data))
        for user, seq in seqs.items():
            self.sent.setdefault(user, {})[seq] = data

    async def keep_publishing(self, users: list[int], stop: asyncio.Event, name: str) -> None:
        """Publish to a random few users at a time until ``stop``; several run at once."""
        for n in itertools.count():
            if stop.is_set():
                return
            await self.publish(random.sample(users, 3), {"from": name, "n": n})
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        await self.bus.close()
        await self.db.close()


@pytest.fixture
async def publisher(cluster: Cluster, redis_prefix: str) -> AsyncIterator[Publisher]:
    publisher = await Publisher.start(cluster, redis_prefix)
    yield publisher
    await publisher.close()


@dataclass
class App:
    """One user's app: reconnects to any live instance and resumes, like the mobile app."""

    user_id: int
    client: RtcClient
    cluster: Cluster
    sockets: list[RtcClient] = field(default_factory=list)
    reconnects: int = 0

    def __post_init__(self) -> None:
        self.sockets.append(self.client)
        self._task = asyncio.create_task(self._stay_connected())

    async def _stay_connected(self) -> None:
        while True:
            await self.client.ws.wait_closed()
            await self._reconnect()

    async def _reconnect(self) -> None:
        for attempt in itertools.count():
            urls = self.cluster.live_urls()
            try:
                client = await self.client.reconnect(random.choice(urls), open_timeout=5)
            except (OSError, ConnectionError, TimeoutError, Exception) as exc:  # noqa: BLE001
                if attempt > 200:
                    raise AssertionError(f"user {self.user_id} cannot reconnect") from exc
                await asyncio.sleep(0.05)
                continue
            self.client = client
            self.sockets.append(client)
            self.reconnects += 1
            return

    def seqs(self) -> list[int]:
        return [e.seq for s in self.sockets for e in s.received if e.seq is not None]

    def data(self) -> dict[int, Any]:
        return {e.seq: e.data for s in self.sockets for e in s.received if e.seq is not None}

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self.client.close()


@pytest.fixture
async def apps(cluster: Cluster) -> AsyncIterator[list[App]]:
    """USERS users, spread over the three instances."""
    phones = [f"98{n:08d}" for n in random.sample(range(10**8), USERS)]
    # Accounts that exist already: their event logs hold only what the test publishes
    # (a first login would add the new account's welcome).
    db = await Database.connect(PoolSettings(cluster.db_dsn, max_size=1))
    try:
        for phone in phones:
            await accounts.upsert_verified_user(db, "+91" + phone, "customer", None)
    finally:
        await db.close()
    clients = await asyncio.gather(
        *(login(cluster.servers[i % 3], phone) for i, phone in enumerate(phones))
    )
    opened = []
    for client in clients:
        me = await client.call("me.get")
        opened.append(App(me["id"], client, cluster))
    yield opened
    await asyncio.gather(*(app.close() for app in opened), return_exceptions=True)


async def publish_while(
    publisher: Publisher, apps: list[App], during: Any, after: float = 0.5
) -> None:
    """Publish from three concurrent loops while ``during`` runs, then ``after`` more."""
    users = [app.user_id for app in apps]
    stop = asyncio.Event()
    loops = [asyncio.create_task(publisher.keep_publishing(users, stop, f"p{i}")) for i in range(3)]
    try:
        await during
        await asyncio.sleep(after)
    finally:
        stop.set()
        await asyncio.gather(*loops)


async def assert_everything_delivered(publisher: Publisher, apps: list[App]) -> None:
    async def caught_up(app: App) -> None:
        expected = max(publisher.sent.get(app.user_id, {0: None}))
        while app.client.last_seq is None or app.client.last_seq < expected:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(asyncio.gather(*(caught_up(app) for app in apps)), 20)
    total = 0
    for app in apps:
        sent = publisher.sent.get(app.user_id, {})
        assert app.seqs() == list(range(1, len(sent) + 1)), f"user {app.user_id}"
        assert app.data() == sent
        total += len(sent)
    assert total > 100  # the test published for real


async def test_events_cross_instances_in_order(
    cluster: Cluster, publisher: Publisher, apps: list[App]
) -> None:
    assert await publisher.bus.online(app.user_id for app in apps) == {a.user_id for a in apps}
    await publish_while(publisher, apps, asyncio.sleep(1.0))
    await assert_everything_delivered(publisher, apps)
    assert all(app.reconnects == 0 for app in apps)


async def test_an_instance_killed_loses_nothing(
    cluster: Cluster, publisher: Publisher, apps: list[App]
) -> None:
    victim = cluster.servers[0]

    async def kill() -> None:
        await asyncio.sleep(0.5)
        victim.proc.send_signal(signal.SIGKILL)
        await victim.proc.wait()

    await publish_while(publisher, apps, kill())
    await assert_everything_delivered(publisher, apps)
    assert sum(app.reconnects for app in apps) >= USERS // 3


async def test_a_rolling_restart_loses_nothing(
    cluster: Cluster, publisher: Publisher, apps: list[App]
) -> None:
    async def roll() -> None:
        for server in list(cluster.servers):
            await asyncio.sleep(0.3)
            await cluster.add_server()  # the replacement first, as an orchestrator does
            assert await stop_server(server) == 0

    await publish_while(publisher, apps, roll())
    await assert_everything_delivered(publisher, apps)
    assert all(app.reconnects >= 1 for app in apps)


async def test_a_redis_restart_loses_nothing(
    cluster: Cluster, publisher: Publisher, apps: list[App]
) -> None:
    # Published before and during the outage, none after: what the instances missed
    # can only reach the clients by the instances catching up from the log when
    # Redis is back (the publisher's resend queue is off for this test).
    publisher.bus._retry = deque(maxlen=0)

    async def outage() -> None:
        await asyncio.sleep(0.3)
        cluster.redis.stop()
        await asyncio.sleep(1.5)

    await publish_while(publisher, apps, outage(), after=0)
    assert publisher.bus.healthy is False
    cluster.redis.start()
    await assert_everything_delivered(publisher, apps)
    assert all(app.reconnects == 0 for app in apps)  # sockets stayed up throughout
    for server in cluster.servers:
        assert any("redis bus restored" in line for line in server.stderr)
