"""Several instances on one Redis and one database, in one process: real sockets.

Each App has its own Redis bus, hub and sockets, as separate processes would (the
process-level tests, with SIGKILL and restarts, are in test_cluster.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp

from kernel.errors import CloseCode
from rtc_server.app import App
from rtc_server.scaleout.local_redis import RedisServer
from tests.events import Loose, loose
from tests.waiting import until

from .admins import login_admin
from .conftest import AppFactory, Clients, Cluster, CodeLog, device, ws_url
from .test_catalog import new_service
from .test_events import collect


async def test_events_published_on_one_instance_reach_sockets_on_the_others(
    cluster: Cluster,
) -> None:
    a, b, c = await cluster(3)
    # One user with a socket on B and one on C; another user only on C.
    phone_b, tokens = await b.login()
    on_c = await device(c, tokens)
    other, other_tokens = await c.login()
    user, other_user = tokens["user"]["id"], other_tokens["user"]["id"]

    async def publish(n: int) -> None:
        await a.app.publisher.publish(user, loose("e"), Loose.of({"n": n}))
        await a.app.publisher.publish_many([user, other_user], loose("both"), Loose.of({"n": n}))

    await asyncio.gather(*(publish(n) for n in range(50)))
    for client in (phone_b, on_c):
        assert await collect(client, 100) == list(range(1, 101))
    assert await collect(other, 50) == list(range(1, 51))

    # Targeted: events only for the user on C never reach B.
    before = received(b.app)
    for n in range(10):
        await a.app.publisher.publish(other_user, loose("e"), Loose.of({"n": n}))
    assert await collect(other, 10) == list(range(51, 61))
    assert received(b.app) == before


def received(app: App) -> float:
    value = app.metrics.registry.get_sample_value("rtc_bus_messages_received_total")
    assert value is not None
    return value


async def test_a_client_resumes_on_another_instance_with_nothing_lost(cluster: Cluster) -> None:
    a, b, c = await cluster(3)
    client, tokens = await b.login_existing()
    user = tokens["user"]["id"]
    for n in range(3):
        await a.app.publisher.publish(user, loose("e"), Loose.of({"n": n}))
    assert await collect(client, 3) == [1, 2, 3]
    await client.close()  # B's socket drops
    for n in range(3, 8):
        await a.app.publisher.publish(user, loose("e"), Loose.of({"n": n}))
    resumed = await client.reconnect(ws_url(c.app))
    c.opened.append(resumed)
    publishing = asyncio.gather(
        *(a.app.publisher.publish(user, loose("e"), Loose.of({"n": n})) for n in range(8, 20))
    )
    assert await collect(resumed, 17) == list(range(4, 21))
    await publishing
    # Published concurrently: in seq order, each exactly once.
    assert sorted(e.data["n"] for e in resumed.received if e.seq) == list(range(3, 20))


async def test_logout_on_one_instance_closes_the_session_everywhere(cluster: Cluster) -> None:
    a, b = await cluster(2)
    on_a, tokens = await a.login()
    on_b = await device(b, tokens)
    await on_a.call("auth.logout")
    assert await on_b.wait_closed() == 4003


async def test_presence_sees_users_on_every_instance(cluster: Cluster) -> None:
    a, b, c = await cluster(3)
    _, on_b = await b.login()
    on_c, tokens_c = await c.login()
    users = {on_b["user"]["id"], tokens_c["user"]["id"]}
    assert await a.app.bus.online(users | {999_999}) == users
    await on_c.close()
    gone = tokens_c["user"]["id"]

    async def offline() -> None:
        while gone in await a.app.bus.online(users):
            await asyncio.sleep(0.02)

    await asyncio.wait_for(offline(), 5)


async def test_a_catalog_change_refreshes_every_instance(cluster: Cluster) -> None:
    a, b = await cluster(2)
    reader = await b.anonymous()
    before = await reader.call("services.list")
    admin, _ = await login_admin(a)
    await admin.call("admin.services.create", new_service())

    async def refreshed() -> dict[str, Any]:
        while True:
            answer: dict[str, Any] = await reader.call("services.list", {"etag": before["etag"]})
            if not answer.get("notModified"):
                return answer
            await asyncio.sleep(0.02)

    fresh = await asyncio.wait_for(refreshed(), 5)
    assert len(fresh["services"]) == len(before["services"]) + 1


async def test_an_instance_starts_and_serves_its_own_sockets_without_redis(
    make_app: AppFactory, code_log: CodeLog, redis_prefix: str
) -> None:
    from rtc_server.scaleout.local_redis import free_port

    unreachable = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    app = await make_app(redis={"url": unreachable, "prefix": redis_prefix, "socket_timeout": 0.5})
    clients = Clients(app, code_log)
    try:
        assert not app.bus.healthy
        client, tokens = await clients.login()
        await app.publisher.publish(tokens["user"]["id"], loose("e"), Loose.of({"n": 1}))
        assert await collect(client, 1) == [1]
        # Degraded, not unready: the load balancer keeps sending sockets here.
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{app.http.port}/readyz") as answer:
                assert answer.status == 200
                body = await answer.json()
        assert body["status"] == "degraded"
        assert body["checks"]["bus"] is False and body["checks"]["database"] is True
        assert app.metrics.registry.get_sample_value("rtc_bus_up") == 0
    finally:
        await clients.close()


async def test_a_revocation_lost_in_a_redis_outage_closes_its_sockets_when_redis_returns(
    cluster: Cluster, redis_servers: Callable[[], RedisServer]
) -> None:
    redis = redis_servers()
    # No retry queue: what is published while Redis is down is lost for the others.
    a, b = await cluster(
        2,
        redis={"url": redis.url, "retry_queue": 0, "socket_timeout": 0.5},
        server={"session_check_interval": 3600},  # only the restore may catch it
    )
    admin, _ = await login_admin(a)
    on_b, tokens = await b.login()
    other_on_b, _ = await b.login()
    redis.stop()
    await until(lambda: not a.app.bus.healthy and not b.app.bus.healthy)
    removed = await admin.call("admin.users.remove", {"userId": tokens["user"]["id"]})
    assert removed["revoked"] == 1
    redis.start()
    assert await on_b.wait_closed(timeout=20) == CloseCode.SESSION_REVOKED
    # Closed by B's session check when the bus came back (the lost message said nothing).
    assert b.app.metrics.registry.get_sample_value("rtc_session_check_closed_total") == 1
    assert (await other_on_b.call("me.get"))["id"]  # the others are untouched


async def test_the_session_check_closes_sockets_of_sessions_ended_elsewhere(
    clients: Clients,
) -> None:
    app = clients.app
    assert app.db is not None
    client, tokens = await clients.login()
    second = await device(clients, tokens)
    other, _ = await clients.login()
    # Ended in the database only (another process, an operator's SQL): no bus message.
    await app.db.execute("UPDATE users SET is_active = false WHERE id = $1", tokens["user"]["id"])
    assert await app.session_check.check() == 2
    for socket in (client, second):
        assert await socket.wait_closed() == CloseCode.SESSION_REVOKED
    assert (await other.call("me.get"))["id"]
    assert await app.session_check.check() == 0
