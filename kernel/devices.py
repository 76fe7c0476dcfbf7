"""Live messages to one socket ("device") wherever it is, outside the event log.

Most things a user is told are durable events for all their devices (the event log).
A few are for one socket only and worthless later: a call's offer, answer and ICE
candidates go to the one device in the call. A device is addressed as
``"<instance>/<connection id>"``; :meth:`Devices.send` delivers on this instance
directly and through a bus :class:`~kernel.bus.Signal` on the others (every
instance receives it, the one holding the socket sends it). Not durable: a message
for a socket that is gone is dropped.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from kernel.bus import Bus, Signal
from kernel.events import EventSpec, M
from kernel.rpc.codec import encode_live
from kernel.sockets import LocalSocket, SocketDirectory

_TOPIC = "devices.send"


class Devices:
    def __init__(self, bus: Bus, hub: SocketDirectory, *, instance_id: str | None = None) -> None:
        self._bus = bus
        self._hub = hub
        self.instance_id = instance_id or uuid.uuid4().hex[:16]
        hub.on_signal(_TOPIC, self._received)

    def address(self, connection_id: int) -> str:
        """The address of a socket of this instance."""
        return f"{self.instance_id}/{connection_id}"

    def is_local(self, address: str) -> bool:
        return address.partition("/")[0] == self.instance_id

    def on_closed(self, handler: Callable[[LocalSocket, str], None]) -> None:
        """Run ``handler(connection, address)`` when an authenticated socket closes."""

        def closed(conn: LocalSocket) -> None:
            if conn.user_id is not None:
                handler(conn, self.address(conn.id))

        self._hub.on_removed(closed)

    async def send(self, user_id: int, address: str, event: EventSpec[M], data: M) -> None:
        """Send ``event`` to the socket at ``address`` of ``user_id`` (if it is open)."""
        frame = _frame(event, data)
        if self.is_local(address):
            self._write(user_id, address, frame)
            return
        message: dict[str, object] = {"user": user_id, "to": address, "frame": frame.decode()}
        await self._bus.publish(Signal(_TOPIC, message))

    def send_local(self, user_id: int, address: str, event: EventSpec[M], data: M) -> bool:
        """Send ``event`` to a socket of this instance; False if it is not open."""
        return self._write(user_id, address, _frame(event, data))

    async def send_to_others(
        self, user_id: int, except_address: str, event: EventSpec[M], data: M
    ) -> None:
        """To every socket of ``user_id`` on every instance but the one at ``except_address``."""
        frame = _frame(event, data).decode()
        message: dict[str, object] = {"user": user_id, "except": except_address, "frame": frame}
        await self._bus.publish(Signal(_TOPIC, message))

    def _received(self, signal: Signal) -> None:
        data = signal.data
        user_id = data.get("user")
        frame = data.get("frame")
        if not isinstance(user_id, int) or not isinstance(frame, str):
            return
        to = data.get("to")
        if isinstance(to, str):
            if self.is_local(to):
                self._write(user_id, to, frame.encode())
            return
        skip = data.get("except")
        for conn in list(self._hub.sockets_of(user_id)):
            if self.address(conn.id) != skip:
                conn.send(frame.encode())

    def _write(self, user_id: int, address: str, frame: bytes) -> bool:
        connection_id = address.partition("/")[2]
        for conn in self._hub.sockets_of(user_id):
            if str(conn.id) == connection_id:
                return conn.send(frame)
        return False


def _frame(event: EventSpec[M], data: M) -> bytes:
    if event.logged:
        raise ValueError(f"{event.name} goes to the user's log: stage or publish it")
    return encode_live(event.name, event.encode(data))
