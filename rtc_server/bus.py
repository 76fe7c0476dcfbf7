"""The bus: how an event published on one instance reaches the instance holding the
recipient's socket.

:class:`InProcessBus` serves one instance. A Redis implementation (scale-out) keeps
this interface: the hub tells the bus which users it holds sockets for
(:meth:`Bus.watch` / :meth:`Bus.unwatch`) so that an instance receives only what is
for its own users, and everything else about delivery (order, gaps, duplicates) is
already handled per socket by :mod:`rtc_server.delivery` against the event log.
"""

from __future__ import annotations

from collections.abc import Callable
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
    def set_receiver(self, receiver: Callable[[BusMessage], None]) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, message: BusMessage) -> None: ...

    def watch(self, user_id: int) -> None: ...

    def unwatch(self, user_id: int) -> None: ...

    @property
    def healthy(self) -> bool: ...


class InProcessBus:
    """Fan-out within one process: a publish is a function call."""

    def __init__(self) -> None:
        self._receiver: Callable[[BusMessage], None] | None = None

    def set_receiver(self, receiver: Callable[[BusMessage], None]) -> None:
        self._receiver = receiver

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._receiver = None

    async def publish(self, message: BusMessage) -> None:
        if self._receiver is not None:
            self._receiver(message)

    def watch(self, user_id: int) -> None:
        return None

    def unwatch(self, user_id: int) -> None:
        return None

    @property
    def healthy(self) -> bool:
        return True
