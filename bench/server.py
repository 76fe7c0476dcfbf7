"""Our real server, as ``rtc-server serve`` runs it, plus two benchmark methods.

    RTC_SERVER__PORT=9000 ... python -m bench.server

Settings come from ``config.toml`` and ``RTC_*`` variables, exactly as for
``rtc-server serve`` (logging, uvloop, SIGTERM/SIGINT drain and stop). Added to the
registry, both public:

- ``bench.publishMany {userIds?, round?}``: one ``bench.broadcast`` event to
  ``userIds`` (omitted: every user with a socket on this instance, except the caller)
  through the real :meth:`EventPublisher.publish_many` (durable writes in chunks,
  each chunk delivered live while the next is written). Answers
  ``{users, serverMs, deliverMs}``: the time of the whole call and of the live
  delivery inside it (the bus receiver, timed by a wrapper, summed over chunks). The
  event carries ``at``, the wall time of the publish call, so that a client on the
  same host measures publish-to-delivery latency (``python -m bench.cluster``).
- ``bench.gc``: collect garbage and trim the heap before the runner reads the RSS.
"""

from __future__ import annotations

import asyncio
import signal
import time

import uvloop
from pydantic import Field

from bench.procfs import raise_fd_limit, release_memory
from kernel.bus import BusMessage
from kernel.events import EventSpec
from kernel.rpc.registry import Access, Caller, Params, Result
from rtc_server import logs
from rtc_server.app import App
from rtc_server.cli import tune_collector
from rtc_server.config import load_settings


class Broadcast(Result):
    round: int
    note: str
    at: float  # wall time of the publish call


BROADCAST = EventSpec("bench.broadcast", Broadcast, "one event to many users (figure 3)")


class PublishMany(Params):
    user_ids: list[int] | None = Field(None, max_length=100_000)
    round: int = 0


class Published(Result):
    users: int
    server_ms: float
    deliver_ms: float


class Collected(Result):
    collected: int


class BenchMethods:
    def __init__(self, app: App) -> None:
        self._app = app
        self._deliver_seconds = 0.0

    def register(self) -> None:
        registry = self._app.registry
        registry.add(
            "bench.publishMany",
            self.publish_many,
            params=PublishMany,
            result=Published,
            access=Access.PUBLIC,
        )
        registry.add("bench.gc", self.gc, result=Collected, access=Access.PUBLIC)

    def time_delivery(self) -> None:
        """Wrap the bus receiver (the hub) to time live delivery. Call after start."""
        receive = self._app.hub.receive

        def timed(message: BusMessage) -> None:
            started = time.perf_counter()
            receive(message)
            # A fan-out arrives in chunks (events.fanout_chunk): add them up.
            self._deliver_seconds += time.perf_counter() - started

        self._app.bus.set_receiver(timed)

    async def publish_many(self, caller: Caller, params: PublishMany) -> Published:
        """One event to many users through the real publisher."""
        users = params.user_ids
        if users is None:
            users = [u for u in self._app.hub.users() if u != caller.user_id]
        self._deliver_seconds = 0.0
        started = time.perf_counter()
        await self._app.publisher.publish_many(
            users,
            BROADCAST,
            # Wall time of the publish call: a client on this host measures delivery.
            Broadcast(round=params.round, note="fan-out", at=time.time()),
        )
        elapsed = time.perf_counter() - started
        return Published(
            users=len(users), server_ms=elapsed * 1000, deliver_ms=self._deliver_seconds * 1000
        )

    def gc(self, caller: Caller, params: object) -> Collected:
        """Collect garbage and trim the heap."""
        return Collected(collected=release_memory())


async def run() -> int:
    settings = load_settings()
    logs.configure(settings.log.format, settings.log.level)
    app = App(settings)
    bench = BenchMethods(app)
    bench.register()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await app.start()
        bench.time_delivery()
        tune_collector()  # as rtc-server serve does after start
        await stop.wait()
    finally:
        await app.stop()
    return 0


def main() -> int:
    raise_fd_limit()
    return uvloop.run(run())


if __name__ == "__main__":
    raise SystemExit(main())
