"""The sockets of this instance as the kernel sees them: something to write frames to.

The socket server (:mod:`rtc_server`) holds the real websockets; the kernel's parts
that must reach one socket (:class:`kernel.devices.Devices`) or hear instance-wide
signals (:class:`kernel.signals.Signals`) only need these two small views of it, so
that domain code never loads a websocket library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from kernel.bus import Signal
from kernel.rpc.registry import UserId


class LocalSocket(Protocol):
    """One client socket on this instance."""

    @property
    def id(self) -> int: ...

    @property
    def user_id(self) -> UserId | None: ...

    def send(self, frame: bytes) -> bool:
        """Queue one text frame without waiting; False if it was not sent."""
        ...


class SocketDirectory(Protocol):
    """Who is connected here (:class:`rtc_server.hub.Hub`)."""

    def sockets_of(self, user_id: int) -> Iterable[LocalSocket]: ...

    def on_signal(self, topic: str, handler: Callable[[Signal], None]) -> None:
        """Run ``handler`` (plain, quick) for every bus signal of ``topic``."""

    def on_removed(self, handler: Callable[[LocalSocket], None]) -> None:
        """Run ``handler`` (plain, quick) for every socket that closed."""
