"""The bus: how an event published on one instance reaches the instance holding the
recipient's socket.

:class:`InProcessBus` serves one instance; :class:`rtc_server.scaleout.redis_bus.RedisBus`
several, over Redis. The hub tells the bus which users it holds sockets for
(:meth:`Bus.watch` / :meth:`Bus.unwatch`) so that an instance receives only what is
for its own users, and everything else about delivery (order, gaps, duplicates) is
handled per socket by :mod:`rtc_server.delivery` against the event log. Both
implementations pass the same contract tests (``tests/integration/test_bus_contract.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class EventBatch:
    """One event for several users: the payload travels once, with each user's seq."""

    event: str
    payload: bytes  # the event's data as JSON
    seqs: dict[int, int]  # user id -> seq
    published_at: float  # wall time (time.time()) of the publish call: valid across hosts


@dataclass(frozen=True, slots=True)
class SessionsRevoked:
    """Close the user's sockets of these login sessions (logout, revocation)."""

    user_id: int
    session_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class Signal:
    """A message for every instance, not for users: "the catalog changed", for one.

    Not durable: an instance that misses one (Redis down) must also refresh on its
    own (caches expire), so signals are for freshness, never for correctness.
    """

    topic: str
    data: dict[str, object]


BusMessage = EventBatch | SessionsRevoked | Signal


class Bus(Protocol):
    def set_receiver(self, receiver: Callable[[BusMessage], None]) -> None:
        """Where messages for this instance go (the hub); called synchronously."""

    def on_restored(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` each time the bus comes back after an outage."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, message: BusMessage) -> None:
        """Deliver to this instance at once and to the instances concerned."""

    def watch(self, user_id: int) -> None:
        """This instance now holds sockets of ``user_id``: route its events here."""

    def unwatch(self, user_id: int) -> None: ...

    async def routed(self, user_id: int) -> None:
        """Return once events published from now on for the user reach this instance.

        Read the user's log only after this, so that no event falls between the read
        and live delivery. Gives up after a bounded wait if the bus is degraded.
        """

    async def online(self, user_ids: Iterable[int]) -> set[int]:
        """Those of ``user_ids`` with a socket on any instance."""

    @property
    def healthy(self) -> bool: ...


class InProcessBus:
    """Fan-out within one process: a publish is a function call."""

    def __init__(self) -> None:
        self._receiver: Callable[[BusMessage], None] | None = None
        self._watched: set[int] = set()

    def set_receiver(self, receiver: Callable[[BusMessage], None]) -> None:
        self._receiver = receiver

    def on_restored(self, callback: Callable[[], Awaitable[None]]) -> None:
        return None  # never down

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._receiver = None

    async def publish(self, message: BusMessage) -> None:
        if self._receiver is not None:
            self._receiver(message)

    def watch(self, user_id: int) -> None:
        self._watched.add(user_id)

    def unwatch(self, user_id: int) -> None:
        self._watched.discard(user_id)

    async def routed(self, user_id: int) -> None:
        return None

    async def online(self, user_ids: Iterable[int]) -> set[int]:
        return self._watched.intersection(user_ids)

    @property
    def healthy(self) -> bool:
        return True
