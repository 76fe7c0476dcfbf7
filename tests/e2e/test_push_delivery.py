"""Push delivery in a running server: real sockets, real FCM client, the local FCM
server. The app with a live socket that acknowledges gets no push; the closed app does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kernel.clock import FakeClock
from kernel.push import PushNotice, PushPolicy
from rtc_server.app import App
from rtc_server.push.feature import PushFeature
from tests.events import Loose, loose
from tests.fakes.fcm import FakeFcm
from tests.fakes.webpush import FakeWebPush, b64url

from .conftest import Clients, CodeLog
from .market import Market, later, market

OFFER = PushPolicy(
    PushNotice(
        "New job", "Plumbing, tomorrow", "bookings", collapse_key="booking:7", urgency="high"
    )
)


@pytest.fixture
async def fcm() -> AsyncIterator[FakeFcm]:
    server = await FakeFcm().start()
    yield server
    await server.close()


@pytest.fixture
async def push_app(make_app: Any, fcm: FakeFcm, tmp_path: Path) -> App:
    app: App = await make_app(
        push={
            "fcm_credentials_file": str(fcm.credentials_file(tmp_path)),
            "fcm_endpoint": fcm.url,
            "ack_timeout": 10.0,
        }
    )
    assert app.worker is not None
    await app.worker.listening.wait()
    return app


@pytest.fixture
async def push_clients(push_app: App, code_log: CodeLog) -> AsyncIterator[Clients]:
    opened = Clients(push_app, code_log)
    yield opened
    await opened.close()


async def jobs_drained(app: App) -> None:
    assert app.db is not None
    async with asyncio.timeout(10):
        while await app.db.fetchval("SELECT count(*) FROM jobs WHERE kind LIKE 'push.%'"):
            await asyncio.sleep(0.01)


async def test_a_closed_app_is_pushed_once_and_an_acknowledging_one_is_not(
    push_app: App, push_clients: Clients, fcm: FakeFcm, clock: FakeClock
) -> None:
    online, online_tokens = await push_clients.login(role="provider")
    closed, closed_tokens = await push_clients.login(role="provider")
    for client, token in ((online, "fcm-online"), (closed, "fcm-closed")):
        await client.call(
            "push.register", {"platform": "android", "deviceId": "phone", "token": token}
        )
    await closed.close()
    closed_user, online_user = closed_tokens["user"]["id"], online_tokens["user"]["id"]
    async with asyncio.timeout(5):
        while await push_app.bus.online([closed_user]):
            await asyncio.sleep(0.01)

    await push_app.publisher.publish_many(
        [online_user, closed_user], loose("booking.offered"), Loose.of({"bookingId": 7}), push=OFFER
    )
    async with asyncio.timeout(10):
        await fcm.delivered.wait()  # the closed app, at once
    assert [m["token"] for m in fcm.messages] == ["fcm-closed"]
    event = await online.next_event(method="booking.offered")
    await online.ack(event.seq)
    clock.advance(10.0)  # the online app's wait is over: acknowledged, so no push
    assert push_app.worker is not None
    push_app.worker.wake()
    await jobs_drained(push_app)
    assert [m["token"] for m in fcm.messages] == ["fcm-closed"]
    assert (
        push_app.metrics.registry.get_sample_value(
            "rtc_push_attempts_total", {"provider": "fcm", "outcome": "sent"}
        )
        == 1
    )
    assert (
        push_app.metrics.registry.get_sample_value(
            "rtc_push_skipped_total", {"reason": "acknowledged"}
        )
        == 1
    )


# --- Booking offers: push intents written by bookings.create ----------------------------


async def offer_market(app: App, clients: Clients) -> Market:
    m = await market(clients, app)
    await m.provider.call(
        "push.register", {"platform": "android", "deviceId": "phone", "token": "fcm-provider"}
    )
    return m


async def settle(app: App) -> None:
    """Hand the offers' push intents over (the periodic push.intents job, run now) and
    let the worker finish every due push job (running ones included)."""
    await app.feature(PushFeature).intents.sweep()
    assert app.worker is not None
    app.worker.wake()
    await jobs_due_drained(app)


async def jobs_due_drained(app: App) -> None:
    assert app.db is not None
    async with asyncio.timeout(10):
        while await app.db.fetchval(
            "SELECT count(*) FROM jobs WHERE kind LIKE 'push.%'"
            " AND (run_at <= $1 OR leased_by IS NOT NULL)",
            app.clock.now(),
        ):
            await asyncio.sleep(0.01)


async def test_an_acknowledged_offer_is_not_pushed(
    push_app: App, push_clients: Clients, fcm: FakeFcm, clock: FakeClock
) -> None:
    m = await offer_market(push_app, push_clients)
    await m.customer.call("bookings.create", m.booking(later(push_app)))
    offered = await m.provider.next_event(method="booking.offered")
    await settle(push_app)
    await m.provider.ack(offered.seq)
    clock.advance(30.0)  # bookings.offer_push_after
    await settle(push_app)
    assert fcm.messages == []
    assert (
        push_app.metrics.registry.get_sample_value(
            "rtc_push_skipped_total", {"reason": "acknowledged"}
        )
        == 1
    )


async def test_an_unacknowledged_offer_is_pushed_once_after_the_delay(
    push_app: App, push_clients: Clients, fcm: FakeFcm, clock: FakeClock
) -> None:
    m = await offer_market(push_app, push_clients)
    booked = await m.customer.call("bookings.create", m.booking(later(push_app)))
    await m.provider.next_event(method="booking.offered")  # seen, never acknowledged
    clock.advance(29.0)
    await settle(push_app)
    assert fcm.messages == []
    clock.advance(1.0)
    await settle(push_app)
    [message] = fcm.messages
    assert message["notification"]["title"] == "New booking request"
    assert "Asha Rao booked Plumber for" in message["notification"]["body"]
    assert message["data"]["bookingId"] == str(booked["id"])
    assert message["android"]["collapse_key"] == f"booking:{booked['id']}"
    clock.advance(3600.0)
    await settle(push_app)
    assert len(fcm.messages) == 1


async def test_an_offline_providers_offer_is_pushed_at_once_and_only_once(
    push_app: App, push_clients: Clients, fcm: FakeFcm, clock: FakeClock
) -> None:
    m = await offer_market(push_app, push_clients)
    await m.provider.close()
    async with asyncio.timeout(5):
        while await push_app.bus.online([m.provider_id]):
            await asyncio.sleep(0.01)
    await m.customer.call("bookings.create", m.booking(later(push_app)))
    await settle(push_app)
    assert [msg["token"] for msg in fcm.messages] == ["fcm-provider"]
    clock.advance(30.0)
    await settle(push_app)
    assert len(fcm.messages) == 1


# --- Web Push, end to end --------------------------------------------------------------


async def test_a_browser_subscribes_with_the_servers_vapid_key_and_gets_pushes(
    make_app: Any, code_log: CodeLog, tmp_path: Path
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "vapid.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    service = await FakeWebPush().start()
    app: App = await make_app(
        push={
            "vapid_private_key_file": str(pem),
            "vapid_subject": "mailto:ops@example.com",
            "webpush_hosts": ["127.0.0.1"],
            "webpush_require_https": False,
        }
    )
    clients = Clients(app, code_log)
    try:
        client, tokens = await clients.login()
        served = await client.call("push.webPushKey")
        public = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        assert served["publicKey"] == b64url(public)
        browser = service.browser()
        await client.call(
            "push.register",
            {"platform": "web", "deviceId": "laptop", "subscription": browser.subscription()},
        )
        await client.close()
        user = tokens["user"]["id"]
        async with asyncio.timeout(5):
            while await app.bus.online([user]):
                await asyncio.sleep(0.01)
        await app.publisher.publish(
            user, loose("booking.offered"), Loose.of({"bookingId": 7}), push=OFFER
        )
        async with asyncio.timeout(10):
            await service.delivered.wait()
        assert service.received[0].payload["title"] == "New job"
    finally:
        await clients.close()
        await service.close()


async def test_a_customer_away_from_the_app_is_pushed_the_providers_answer(
    push_app: App, push_clients: Clients, fcm: FakeFcm, clock: FakeClock
) -> None:
    m = await offer_market(push_app, push_clients)
    await m.customer.call(
        "push.register", {"platform": "android", "deviceId": "phone", "token": "fcm-customer"}
    )
    booked = await m.customer.call("bookings.create", m.booking(later(push_app)))
    offered = await m.provider.next_event(method="booking.offered")
    await m.provider.ack(offered.seq)
    await m.customer.close()
    async with asyncio.timeout(5):
        while await push_app.bus.online([m.customer_id]):
            await asyncio.sleep(0.01)
    await m.provider.call(
        "bookings.accept", {"idempotencyKey": "accept-0001", "bookingId": booked["id"]}
    )
    await settle(push_app)
    [message] = fcm.to("fcm-customer")
    assert message["notification"]["title"] == "Booking accepted"
    assert "Ravi Kumar accepted your Plumber booking" in message["notification"]["body"]
    assert message["data"]["type"] == "booking_accepted"
    assert message["android"]["collapse_key"] == f"booking:{booked['id']}"
    assert fcm.to("fcm-provider") == []  # the provider acted, and acknowledged its offer
    clock.advance(60.0)
    await settle(push_app)
    assert len(fcm.messages) == 1


# --- Calls: a closed app still rings, and then shows the missed call --------------------


def call_pushes(fcm: FakeFcm) -> list[dict[str, Any]]:
    return [m for m in fcm.messages if m["data"]["event"].startswith("call.")]


async def test_a_closed_app_rings_by_push_and_then_shows_the_missed_call(
    make_app: Any, code_log: CodeLog, fcm: FakeFcm, tmp_path: Path, clock: FakeClock
) -> None:
    from .calls import booked, start

    app: App = await make_app(
        push={"fcm_credentials_file": str(fcm.credentials_file(tmp_path)), "fcm_endpoint": fcm.url},
        calls={"sweep_interval": 0.02},
    )
    assert app.worker is not None
    await app.worker.listening.wait()
    clients = Clients(app, code_log)
    try:
        b = await booked(clients, app)
        await b.provider.call(
            "push.register", {"platform": "android", "deviceId": "phone", "token": "fcm-callee"}
        )
        await b.provider.close()  # the callee's app is closed
        async with asyncio.timeout(5):
            while await app.bus.online([b.m.provider_id]):
                await asyncio.sleep(0.01)

        call_id = (await start(b.customer, b.booking_id))["callId"]
        await settle(app)
        (ring,) = call_pushes(fcm)  # (the booking's offer was pushed too: unacknowledged)
        assert ring["token"] == "fcm-callee"
        assert ring["android"]["priority"] == "HIGH" and ring["android"]["ttl"] == "30s"
        assert ring["android"]["collapse_key"] == f"call:{call_id}"
        assert ring["data"]["title"] == "Incoming call"  # data only: the app rings itself
        assert "+91" not in str(ring)  # a masked identity, never the caller's phone

        clock.advance(31)  # nobody answers: the sweep ends the call as missed
        async with asyncio.timeout(5):
            while (
                (
                    await app.db.fetchval("SELECT state FROM call_sessions WHERE id = $1", call_id)
                    != "ended"
                )
                if app.db is not None
                else True
            ):
                await asyncio.sleep(0.01)
        await settle(app)
        assert [m["token"] for m in call_pushes(fcm)] == ["fcm-callee", "fcm-callee"]
        missed = call_pushes(fcm)[1]
        assert missed["notification"]["title"] == "Missed call"
        assert missed["android"]["collapse_key"] == f"call:{call_id}"  # replaces the ring
        assert missed["android"]["priority"] == "NORMAL"
    finally:
        await clients.close()


# --- Reminders: a booking for tomorrow, reminded through the socket and FCM -------------


async def test_tomorrows_booking_is_reminded_by_push_and_on_the_socket(
    push_app: App, push_clients: Clients, fcm: FakeFcm, clock: FakeClock
) -> None:
    from datetime import datetime, time, timedelta
    from zoneinfo import ZoneInfo

    from api.reminders import DAY_BEFORE, RemindersFeature
    from kernel.jobs import Job, Tick

    india = ZoneInfo("Asia/Kolkata")

    def local(days: int, hour: int, minute: int = 0) -> datetime:
        day = clock.now().astimezone(india).date() + timedelta(days=days)
        return datetime.combine(day, time(hour, minute), india)

    clock.advance((local(1, 8) - clock.now()).total_seconds())  # a fresh day, 08:00
    m = await offer_market(push_app, push_clients)
    await m.customer.call(
        "push.register", {"platform": "android", "deviceId": "phone", "token": "fcm-customer"}
    )
    booked = await m.customer.call("bookings.create", m.booking(local(1, 10, 30)))
    await m.customer.close()  # the app is closed tonight
    async with asyncio.timeout(5):
        while await push_app.bus.online([m.customer_id]):
            await asyncio.sleep(0.01)
    clock.advance((local(0, 9) - clock.now()).total_seconds())
    reminders = push_app.feature(RemindersFeature).reminders
    assert await reminders.day_before(Job(0, DAY_BEFORE.kind, Tick(slot=clock.now()), 1, 3)) == 1
    await settle(push_app)
    [message] = fcm.to("fcm-customer")
    assert message["notification"]["title"] == "Booking reminder"
    assert message["notification"]["body"] == "Your Plumber booking is tomorrow at 10:30 AM."
    assert message["data"]["type"] == "daily_reminder"
    assert message["data"]["bookingId"] == str(booked["id"])
    # Opening the app the next morning (its access token long expired: refresh first),
    # it gets the same reminder on its socket (the resume replays it).
    back = await push_clients.anonymous()
    fresh = await back.call("auth.refresh", {"refreshToken": m.customer_tokens["refreshToken"]})
    await back.authenticate(fresh["accessToken"], last_seq=m.customer.last_seq)
    while True:
        event = await back.next_event(method="notification.created")
        if event.data["notification"]["type"] == "daily_reminder":
            break
    assert event.data["notification"]["bookingId"] == booked["id"]
