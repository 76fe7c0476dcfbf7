"""Keepalive pings, spread evenly over the interval instead of sent in bursts.

Every socket is pinged once per ``interval`` and closed when a ping stays unanswered
for ``timeout``. Each socket's first ping falls at a random point of its first
interval. Without that, sockets that connected together (a fleet reconnecting after
a restart, a load test) would be pinged together forever after: every ``interval`` a
burst of thousands of pings out and pongs back holds the event loop, and every event
waiting behind it, for tens of milliseconds.

The schedule is a heap of due times, so a tick touches only the sockets due then, not
every socket. It is pure (no clock, no I/O): :class:`rtc_server.server.SocketServer`
calls :meth:`KeepaliveSchedule.due` on each tick, sends the pings and closes the
silent sockets it returns.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class Pingable(Protocol):
    """What the schedule reads of a socket (:class:`rtc_server.connection.Connection`)."""

    closing: bool
    pong_waiter: asyncio.Future[float] | None


C = TypeVar("C", bound=Pingable)

_PING = 0
_CHECK = 1


class KeepaliveSchedule(Generic[C]):
    def __init__(
        self, interval: float, timeout: float, *, rng: Callable[[], float] = random.random
    ) -> None:
        if interval <= 0 or timeout <= 0:
            raise ValueError("interval and timeout must be positive")
        self.interval = interval
        self.timeout = timeout
        self._rng = rng
        self._heap: list[tuple[float, int, int, C]] = []
        self._order = itertools.count()  # ties: first scheduled, first due

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, conn: C, now: float) -> None:
        """A new socket: its first ping at a random point of the coming interval."""
        self._push(now + self.interval * self._rng(), _PING, conn)

    def due(self, now: float) -> tuple[list[C], list[C]]:
        """The sockets to ping now and those to close (no pong within ``timeout``).

        The caller pings every socket of the first list (setting ``pong_waiter`` once
        sent) and closes every one of the second.
        Closed sockets leave the schedule here, when they come due.
        """
        ping: list[C] = []
        close: list[C] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, kind, conn = heapq.heappop(heap)
            if conn.closing:
                continue
            waiting = conn.pong_waiter is not None and not conn.pong_waiter.done()
            if kind == _CHECK:
                if waiting:
                    close.append(conn)
                continue
            if waiting:
                # The previous ping is still unanswered (timeout > interval): its
                # check decides; ping again one interval later.
                self._push(now + self.interval, _PING, conn)
                continue
            ping.append(conn)
            self._push(now + self.interval, _PING, conn)
            self._push(now + self.timeout, _CHECK, conn)
        return ping, close

    def _push(self, at: float, kind: int, conn: C) -> None:
        heapq.heappush(self._heap, (at, next(self._order), kind, conn))
