"""Instance-wide signals for domain code (cache invalidation and the like).

    signals.subscribe("catalog.changed", lambda signal: cache.clear())
    await signals.publish("catalog.changed", {"version": 7})

Every instance receives every signal of a topic, the publishing one included,
through the bus (in process today, Redis with scale-out). Signals are not durable:
use them to refresh early, and keep caches correct without them (an expiry, a
version check).
"""

from __future__ import annotations

from collections.abc import Callable

from kernel.bus import Bus, Signal
from kernel.sockets import SocketDirectory


class Signals:
    def __init__(self, bus: Bus, hub: SocketDirectory) -> None:
        self._bus = bus
        self._hub = hub

    def subscribe(self, topic: str, handler: Callable[[Signal], None]) -> None:
        self._hub.on_signal(topic, handler)

    async def publish(self, topic: str, data: dict[str, object] | None = None) -> None:
        await self._bus.publish(Signal(topic, data or {}))
