"""Push delivery in a running server: real sockets, real FCM client, the local FCM
server. The app with a live socket that acknowledges gets no push; the closed app does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rtc_server.app import App
from rtc_server.clock import FakeClock
from rtc_server.push.notice import PushNotice, PushPolicy
from tests.fakes.fcm import FakeFcm

from .conftest import Clients, CodeLog

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
        [online_user, closed_user], "booking.offered", {"bookingId": 7}, push=OFFER
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
    assert push_app.metrics.push_attempts.labels("fcm", "sent")._value.get() == 1
    assert push_app.metrics.push_skipped.labels("acknowledged")._value.get() == 1
