"""The keepalive schedule: pings spread over the interval, silent sockets closed."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from rtc_server.keepalive import KeepaliveSchedule

_ids = iter(range(1_000_000))


@dataclass
class Peer:
    """A socket as the schedule sees it; ``answers`` says whether it sends pongs."""

    loop: asyncio.AbstractEventLoop
    answers: bool = True
    closing: bool = False
    pong_waiter: asyncio.Future[float] | None = None
    id: int = field(default_factory=lambda: next(_ids))
    pings: int = 0


def drive(
    schedule: KeepaliveSchedule[Peer], until: float, tick: float, start: float = 0.0
) -> tuple[Counter[int], list[tuple[float, Peer]]]:
    """Run the schedule like the server's loop; pongs come back at once if answered.

    Returns how many pings were sent per tick and which peers were closed when.
    """
    per_tick: Counter[int] = Counter()
    closed: list[tuple[float, Peer]] = []
    now = start
    n = 0
    while now < until:
        now = start + n * tick
        ping, silent = schedule.due(now)
        for peer in silent:
            peer.closing = True
            closed.append((now, peer))
        for peer in ping:
            peer.pings += 1
            waiter = peer.loop.create_future()
            if peer.answers:
                waiter.set_result(0.0)
            peer.pong_waiter = waiter
        per_tick[n] = len(ping)
        n += 1
    return per_tick, closed


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_sockets_that_connect_together_are_pinged_spread_out(
    loop: asyncio.AbstractEventLoop,
) -> None:
    schedule: KeepaliveSchedule[Peer] = KeepaliveSchedule(25.0, 20.0, rng=random.Random(7).random)
    peers = [Peer(loop) for _ in range(5_000)]
    for peer in peers:  # a whole fleet at the same instant
        schedule.add(peer, 0.0)
    per_tick, closed = drive(schedule, until=100.0, tick=0.5)
    assert not closed
    # 50 ticks per interval: about 100 pings per tick, never all 5,000 at once.
    assert max(per_tick.values()) < 200
    # Each peer once per interval: 4 in 100 s, give or take the first one's place.
    assert {peer.pings for peer in peers} <= {4, 5}
    assert sum(per_tick.values()) == sum(peer.pings for peer in peers)


def test_a_silent_socket_is_closed_after_the_timeout(loop: asyncio.AbstractEventLoop) -> None:
    schedule: KeepaliveSchedule[Peer] = KeepaliveSchedule(10.0, 4.0, rng=lambda: 0.5)
    silent, alive = Peer(loop, answers=False), Peer(loop)
    schedule.add(silent, 0.0)
    schedule.add(alive, 0.0)
    _, closed = drive(schedule, until=60.0, tick=0.5)
    assert [(at, peer) for at, peer in closed] == [(9.0, silent)]  # pinged at 5, closed at 9
    assert silent.pings == 1
    assert alive.pings == 6 and not alive.closing
    # Left: the live one's next ping (its last check has passed); nothing of the closed one.
    assert len(schedule) == 1


def test_timeout_longer_than_interval_does_not_ping_a_silent_socket_twice(
    loop: asyncio.AbstractEventLoop,
) -> None:
    schedule: KeepaliveSchedule[Peer] = KeepaliveSchedule(2.0, 5.0, rng=lambda: 0.0)
    silent = Peer(loop, answers=False)
    schedule.add(silent, 0.0)
    _, closed = drive(schedule, until=20.0, tick=0.5)
    assert closed == [(5.0, silent)]
    assert silent.pings == 1


def test_closed_sockets_leave_the_schedule(loop: asyncio.AbstractEventLoop) -> None:
    schedule: KeepaliveSchedule[Peer] = KeepaliveSchedule(1.0, 1.0)
    peers = [Peer(loop) for _ in range(10)]
    for peer in peers:
        schedule.add(peer, 0.0)
    for peer in peers[:7]:
        peer.closing = True
    drive(schedule, until=3.0, tick=0.1)
    assert {peer.pings for peer in peers[:7]} == {0}
    assert len(schedule) == 6  # three live peers, a ping and a check each


def test_interval_and_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError):
        KeepaliveSchedule(0.0, 1.0)
