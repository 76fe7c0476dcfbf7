"""The bus contract, run against the in-process bus and the Redis bus (a real Redis).

The first part holds for both implementations on one node. The second part is what
only several instances have: targeted routing, presence across instances, leases of
dead instances, epochs, and an outage of Redis itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from kernel.bus import Bus, BusMessage, EventBatch, InProcessBus, SessionsRevoked, Signal
from rtc_server.config import RedisSettings
from rtc_server.metrics import Metrics
from rtc_server.scaleout.local_redis import RedisServer
from rtc_server.scaleout.redis_bus import RedisBus
from tests.waiting import until

PAYLOAD = b'{"bookingId":7,"note":"caf\xc3\xa9 \\n \\"quoted\\""}'


@dataclass
class Node:
    bus: Bus
    received: list[BusMessage] = field(default_factory=list)
    restored: int = 0

    def events(self) -> list[EventBatch]:
        return [m for m in self.received if isinstance(m, EventBatch)]

    def seqs_for(self, user_id: int) -> list[int]:
        return [b.seqs[user_id] for b in self.events() if user_id in b.seqs]


NodeFactory = Callable[..., Awaitable[Node]]


async def crash(bus: RedisBus) -> None:
    """Stop an instance the way SIGKILL does: no leave, no clean-up, just gone."""
    for task in bus._tasks:
        task.cancel()
    await asyncio.gather(*bus._tasks, return_exceptions=True)
    await bus.presence.close()
    await bus._client.aclose()
    bus._tasks = []


async def _start(bus: Bus) -> Node:
    node = Node(bus)
    bus.set_receiver(node.received.append)

    async def restored() -> None:
        node.restored += 1

    bus.on_restored(restored)
    await bus.start()
    return node


@pytest.fixture
async def redis_nodes(redis_url: str, redis_prefix: str) -> AsyncIterator[NodeFactory]:
    nodes: list[Node] = []

    async def make(url: str = redis_url, lease: float = 15.0) -> Node:
        settings = RedisSettings(
            url=url, prefix=redis_prefix, presence_lease=lease, socket_timeout=1.0
        )
        node = await _start(RedisBus(settings, Metrics()))
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        await node.bus.close()


@pytest.fixture(params=["in_process", "redis"])
async def node(request: pytest.FixtureRequest, redis_nodes: NodeFactory) -> AsyncIterator[Node]:
    if request.param == "redis":
        yield await redis_nodes()
        return
    one = await _start(InProcessBus())
    yield one
    await one.bus.close()


# -- the contract, one node ---------------------------------------------------------


async def test_an_event_for_a_watched_user_arrives_intact(node: Node) -> None:
    node.bus.watch(5)
    await node.bus.routed(5)
    batch = EventBatch("booking.offered", PAYLOAD, {5: 41, 6: 3}, 1_790_000_000.25)
    await node.bus.publish(batch)
    await until(lambda: bool(node.events()))
    (got,) = node.events()
    assert (got.event, got.payload, got.published_at) == (batch.event, PAYLOAD, batch.published_at)
    assert got.seqs[5] == 41


async def test_signals_and_revocations_reach_the_publisher_once(node: Node) -> None:
    await node.bus.publish(Signal("catalog.changed", {"version": 3}))
    await node.bus.publish(SessionsRevoked(9, ("a", "b"), "logout"))
    # Delivered here at once, in order. (That Redis's copies of an instance's own
    # broadcasts are not delivered twice: the next test, with a sentinel.)
    node.bus.watch(1)
    await node.bus.routed(1)
    await node.bus.publish(EventBatch("x", b"{}", {1: 1}, time.time()))
    await until(lambda: bool(node.events()))
    assert node.received[:2] == [
        Signal("catalog.changed", {"version": 3}),
        SessionsRevoked(9, ("a", "b"), "logout"),
    ]
    assert len(node.received) == 3


async def test_online_follows_watch_and_unwatch(node: Node) -> None:
    assert await node.bus.online([1, 2]) == set()
    node.bus.watch(1)
    await node.bus.routed(1)
    assert await node.bus.online([1, 2]) == {1}
    node.bus.unwatch(1)
    assert await node.bus.online([1, 2]) == set()
    assert node.bus.healthy


# -- several instances (Redis) -------------------------------------------------------


async def test_events_go_only_to_the_instances_holding_their_users(
    redis_nodes: NodeFactory,
) -> None:
    a, b, c = await redis_nodes(), await redis_nodes(), await redis_nodes()
    for bus, user in ((b.bus, 10), (b.bus, 11), (c.bus, 20)):
        bus.watch(user)
        await bus.routed(user)

    await a.bus.publish(EventBatch("e", PAYLOAD, {10: 1, 11: 4, 20: 2, 30: 9}, time.time()))
    await until(lambda: bool(b.events()) and bool(c.events()))
    (to_b,), (to_c,) = b.events(), c.events()
    assert to_b.seqs == {10: 1, 11: 4} and to_b.payload == PAYLOAD
    assert to_c.seqs == {20: 2} and to_c.payload == PAYLOAD
    # The publisher delivers locally (its hub keeps what it holds sockets for).
    assert [m.seqs for m in a.events()] == [{10: 1, 11: 4, 20: 2, 30: 9}]

    # Only B's users: C receives nothing. Proven by a later event C does receive.
    await a.bus.publish(EventBatch("e", b"{}", {10: 2}, time.time()))
    await a.bus.publish(EventBatch("e", b"{}", {20: 3}, time.time()))
    await until(lambda: c.seqs_for(20) == [2, 3])
    assert b.seqs_for(10) == [1, 2]
    assert len(c.events()) == 2


async def test_several_instances_of_one_user_all_receive(redis_nodes: NodeFactory) -> None:
    a, b, c = await redis_nodes(), await redis_nodes(), await redis_nodes()
    for bus in (b.bus, c.bus):
        bus.watch(7)
        await bus.routed(7)
    for seq in range(1, 51):
        await a.bus.publish(EventBatch("e", b"{}", {7: seq}, time.time()))
    await until(lambda: len(b.events()) == 50 and len(c.events()) == 50)
    assert b.seqs_for(7) == list(range(1, 51)) == c.seqs_for(7)


async def test_signals_and_revocations_reach_every_instance_once(
    redis_nodes: NodeFactory,
) -> None:
    a, b, c, d = [await redis_nodes() for _ in range(4)]
    await a.bus.publish(Signal("catalog.changed", {"version": 8}))
    await b.bus.publish(SessionsRevoked(3, ("s",), "revoked"))
    # A sentinel from D, published after both: Redis delivers one channel in order, so
    # once it is in, an echo of A's or B's own broadcast would have come before it.
    await d.bus.publish(Signal("sentinel", {}))
    for node in (a, b, c):
        await until(lambda n=node: Signal("sentinel", {}) in n.received)  # type: ignore[misc]
    expected = [
        Signal("catalog.changed", {"version": 8}),
        SessionsRevoked(3, ("s",), "revoked"),
        Signal("sentinel", {}),
    ]
    for node in (a, b, c):
        assert sorted(map(repr, node.received)) == sorted(map(repr, expected))


async def test_presence_is_shared_and_a_late_remove_cannot_erase_a_newer_entry(
    redis_nodes: NodeFactory,
) -> None:
    a, b = await redis_nodes(), await redis_nodes()
    assert isinstance(b.bus, RedisBus)
    b.bus.watch(42)
    await b.bus.routed(42)
    assert await a.bus.online([42, 43]) == {42}

    # Disconnect and reconnect on B; then the first disconnect's remove arrives late.
    b.bus.unwatch(42)
    b.bus.watch(42)
    await b.bus.routed(42)
    presence = b.bus.presence
    stale = presence.epoch_of(42) - 1
    removed = await presence.remove_entry(42, stale)
    assert removed is False
    assert await a.bus.online([42]) == {42}
    assert await presence.remove_entry(42, presence.epoch_of(42)) is True
    assert await a.bus.online([42]) == set()


async def test_a_dead_instance_stops_counting_when_its_lease_runs_out(
    redis_nodes: NodeFactory,
) -> None:
    a = await redis_nodes(lease=1.0)
    doomed = await redis_nodes(lease=1.0)
    assert isinstance(doomed.bus, RedisBus)
    doomed.bus.watch(77)
    await doomed.bus.routed(77)
    assert await a.bus.online([77]) == {77}

    await crash(doomed.bus)  # no goodbye: its entries stay until the lease runs out
    deadline = time.monotonic() + 5
    while await a.bus.online([77]):
        assert time.monotonic() < deadline, "the dead instance still counts"
        await asyncio.sleep(0.05)
    assert isinstance(a.bus, RedisBus)
    await until(lambda: doomed.bus.instance_id not in a.bus.presence.live_instances)


async def test_an_outage_of_redis_degrades_then_everything_comes_back(
    redis_servers: Callable[[], RedisServer], redis_nodes: NodeFactory
) -> None:
    server = redis_servers()
    a, b = await redis_nodes(server.url), await redis_nodes(server.url)
    b.bus.watch(5)
    await b.bus.routed(5)
    a.bus.watch(6)
    await a.bus.routed(6)

    server.stop()
    await until(lambda: not a.bus.healthy and not b.bus.healthy)
    # A keeps serving its own sockets; what was for B waits to be resent.
    await a.bus.publish(EventBatch("e", b"{}", {5: 1, 6: 1}, time.time()))
    assert [m.seqs for m in a.events()] == [{5: 1, 6: 1}]
    assert await a.bus.online([5, 6]) == {6}  # what A can still know

    server.start()
    await until(lambda: a.bus.healthy and b.bus.healthy, timeout=15)
    # Each instance runs its catch-up (the app's: every socket from the log), which
    # is what delivers events missed meanwhile: A's resend may run before B is
    # subscribed again (test_cluster.py checks the whole path with real processes).
    await until(lambda: a.restored == 1 and b.restored == 1)
    # Presence was written again into the empty Redis.
    assert await a.bus.online([5, 6]) == {5, 6}


async def test_what_could_not_be_sent_is_resent_when_the_bus_returns(
    redis_nodes: NodeFactory,
) -> None:
    a, b = await redis_nodes(), await redis_nodes()
    assert isinstance(a.bus, RedisBus)
    b.bus.watch(5)
    await b.bus.routed(5)
    a.bus._lost("connection reset (simulated)")  # only A lost Redis, for a moment
    await a.bus.publish(EventBatch("e", b"{}", {5: 1}, time.time()))
    await a.bus.publish(Signal("catalog.changed", {"version": 2}))
    assert b.received == []
    await until(lambda: a.bus.healthy and a.restored == 1)
    await until(lambda: b.seqs_for(5) == [1] and len(b.received) == 2)


async def test_an_unreadable_message_is_counted_and_dropped(
    redis_nodes: NodeFactory, redis_url: str, redis_prefix: str
) -> None:
    from redis.asyncio import Redis

    a = await redis_nodes()
    assert isinstance(a.bus, RedisBus)
    a.bus.watch(1)
    await a.bus.routed(1)
    raw = Redis.from_url(redis_url)
    try:
        channel = f"{redis_prefix}bus:{a.bus.instance_id}"
        for junk in (b"", b"E{not json\n{}", b"E{}\n", b"Xwhat", b'S{"topic":1}', b"\xff\xfe"):
            await raw.publish(channel, junk)
    finally:
        await raw.aclose()
    b = await redis_nodes()
    await b.bus.publish(EventBatch("e", b"{}", {1: 1}, time.time()))
    await until(lambda: a.seqs_for(1) == [1])  # still serving after the junk
    unreadable = a.bus._metrics.registry.get_sample_value("rtc_bus_unreadable_total")
    assert unreadable == 6
    assert len(a.received) == 1


async def test_a_failing_receiver_does_not_end_the_subscription(
    redis_nodes: NodeFactory,
) -> None:
    a, b = await redis_nodes(), await redis_nodes()
    got: list[BusMessage] = []

    def receiver(message: BusMessage) -> None:
        if not got:
            got.append(message)
            raise RuntimeError("a bug in delivery")
        got.append(message)

    b.bus.set_receiver(receiver)
    b.bus.watch(3)
    await b.bus.routed(3)
    await a.bus.publish(EventBatch("e", b"{}", {3: 1}, time.time()))
    await a.bus.publish(EventBatch("e", b"{}", {3: 2}, time.time()))
    await until(lambda: len(got) == 2)
    assert b.bus.healthy
