"""See the core work end to end: login by SMS code, live events, a dropped socket,
and a resume that replays exactly what was missed.

    .venv/bin/python examples/resume_demo.py

It starts a real server in this process (embedded PostgreSQL in a temporary folder,
real websockets on a free port), reads the login code from the development SMS
sender's log line as a developer would, and talks to the server with the bundled
client. Events are published with the server's own EventPublisher, as domain code does.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path

from kernel.events import EventSpec
from kernel.rpc.registry import Result
from rtc_server.app import App
from rtc_server.client import RtcClient
from rtc_server.features import Settings


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
    print(f"{label:<34} {value}")


async def main() -> None:
    codes = Codes()
    logging.getLogger("rtc.auth").addHandler(codes)
    logging.getLogger("rtc.auth").setLevel(logging.INFO)
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(
            data_dir=Path(data),
            server={"host": "127.0.0.1", "port": 0},  # type: ignore[arg-type]
            http={"host": "127.0.0.1", "port": 0},  # type: ignore[arg-type]
        )
        app = App(settings)
        await app.start()
        url = f"ws://127.0.0.1:{app.sockets.port}/ws"
        try:
            phone = await RtcClient.connect(url)
            show(
                "auth.requestOtp",
                await phone.call("auth.requestOtp", {"phone": "98765 43210", "role": "provider"}),
            )
            code = codes.codes["+919876543210"]
            show("code from the SMS log line", code)
            tokens = await phone.login("9876543210", "provider", code, fullName="Ravi K")
            show("logged in as", f"user {tokens['user']['id']} ({tokens['user']['role']})")
            user_id = tokens["user"]["id"]

            await app.publisher.publish(user_id, DEMO_OFFER, DemoOffer(booking_id=1))
            first = await phone.next_event()
            show("live event", f"seq {first.seq} {first.method} {first.data}")
            await phone.ack(first.seq)

            await phone.close()
            show("socket dropped at seq", phone.last_seq)
            for booking in (2, 3, 4):
                seq = await app.publisher.publish(
                    user_id, DEMO_OFFER, DemoOffer(booking_id=booking)
                )
                show("published while offline", f"seq {seq} bookingId {booking}")

            resumed = await RtcClient.connect(url)
            answer = await resumed.authenticate(tokens["accessToken"], last_seq=phone.last_seq)
            show(
                "session.authenticate",
                {k: answer[k] for k in ("recovered", "resumeFrom", "lastSeq")},
            )
            for _ in range(3):
                event = await resumed.next_event()
                show("replayed", f"seq {event.seq} {event.method} {event.data}")
            await app.publisher.publish(user_id, DEMO_OFFER, DemoOffer(booking_id=5))
            event = await resumed.next_event()
            show("then live again", f"seq {event.seq} {event.method} {event.data}")
            await resumed.close()
        finally:
            await app.stop()


if __name__ == "__main__":
    asyncio.run(main())
