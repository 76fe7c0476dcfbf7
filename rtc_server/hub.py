"""The hub: which sockets of which users this instance holds, and local delivery.

A user may have several sockets (phone, tablet, a second app). The hub receives bus
messages and hands each event to every socket of its recipient; each socket's
:class:`~rtc_server.delivery.DeliveryCursor` keeps it in order and free of duplicates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import orjson

from kernel.bus import Bus, BusMessage, EventBatch, SessionsRevoked, Signal
from kernel.errors import CloseCode
from kernel.rpc.codec import encode_event
from rtc_server.connection import Connection
from rtc_server.metrics import Metrics

log = logging.getLogger("rtc.hub")


class Hub:
    def __init__(self, bus: Bus, metrics: Metrics) -> None:
        self._bus = bus
        self._metrics = metrics
        self._by_user: dict[int, set[Connection]] = {}
        self.connections: set[Connection] = set()
        # Called for a socket whose cursor saw a gap (set by the delivery service).
        self.on_gap: Callable[[Connection], None] = lambda conn: None
        self._signal_handlers: dict[str, list[Callable[[Signal], None]]] = {}
        self._removed_handlers: list[Callable[[Connection], None]] = []
        bus.set_receiver(self.receive)

    def add(self, conn: Connection) -> None:
        self.connections.add(conn)
        self._metrics.sockets_open.inc()

    def remove(self, conn: Connection) -> None:
        self.connections.discard(conn)
        self._metrics.sockets_open.dec()
        self.detach(conn)
        for handler in self._removed_handlers:
            try:
                handler(conn)
            except Exception:  # noqa: BLE001 - one bad handler must not stop the rest
                log.exception("socket-closed handler failed", extra={"connection": conn.id})

    def on_removed(self, handler: Callable[[Connection], None]) -> None:
        """Run ``handler`` (plain, quick) for every socket that closed, with its user."""
        self._removed_handlers.append(handler)

    def attach(self, conn: Connection) -> None:
        """Start routing the user's events to ``conn`` (its user is bound)."""
        user_id = conn.user_id
        assert user_id is not None
        sockets = self._by_user.get(user_id)
        if sockets is None:
            sockets = self._by_user[user_id] = set()
            self._bus.watch(user_id)
        if conn not in sockets:
            sockets.add(conn)
            self._metrics.sockets_authenticated.inc()

    def detach(self, conn: Connection) -> None:
        user_id = conn.user_id
        if user_id is None:
            return
        sockets = self._by_user.get(user_id)
        if sockets is None or conn not in sockets:
            return
        sockets.discard(conn)
        self._metrics.sockets_authenticated.dec()
        if not sockets:
            del self._by_user[user_id]
            self._bus.unwatch(user_id)

    async def routed(self, user_id: int) -> None:
        """Return once the bus routes the user's new events to this instance."""
        await self._bus.routed(user_id)

    def sockets_of(self, user_id: int) -> set[Connection]:
        return self._by_user.get(user_id, set())

    def users(self) -> Iterator[int]:
        return iter(self._by_user)

    def receive(self, message: BusMessage) -> None:
        if isinstance(message, EventBatch):
            self._deliver(message)
        elif isinstance(message, SessionsRevoked):
            self._close_sessions(message)
        elif isinstance(message, Signal):
            for handler in self._signal_handlers.get(message.topic, ()):
                try:
                    handler(message)
                except Exception:  # noqa: BLE001 - one bad handler must not stop the rest
                    log.exception("signal handler failed", extra={"topic": message.topic})

    def on_signal(self, topic: str, handler: Callable[[Signal], None]) -> None:
        """Run ``handler`` (plain, quick) for every :class:`Signal` of ``topic``."""
        self._signal_handlers.setdefault(topic, []).append(handler)

    def _deliver(self, batch: EventBatch) -> None:
        method = orjson.dumps(batch.event)
        sent = 0
        by_user = self._by_user
        for user_id, seq in batch.seqs.items():
            sockets = by_user.get(user_id)
            if not sockets:
                continue
            frame = encode_event(method, seq, batch.payload)
            for conn in sockets:
                sent += len(conn.deliver(seq, frame))
                cursor = conn.cursor
                if cursor is not None and cursor.has_gap and conn.gap_timer is None:
                    self.on_gap(conn)
        if sent:
            self._metrics.events_delivered.labels("live").inc(sent)
            lag = time.time() - batch.published_at
            self._metrics.event_delivery_lag.observe(max(0.0, lag))

    def _close_sessions(self, message: SessionsRevoked) -> None:
        revoked = set(message.session_ids)
        for conn in list(self.sockets_of(message.user_id)):
            identity = conn.identity
            if identity is not None and str(identity.session_id) in revoked:
                conn.close(CloseCode.SESSION_REVOKED, message.reason)
