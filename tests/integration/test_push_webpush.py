"""Web Push (RFC 8030 / 8291 / 8292) with the real client against the local push
service, which verifies VAPID and decrypts every payload as the browser would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from kernel.clock import FakeClock
from kernel.push import PushPolicy
from rtc_server.push.providers.webpush import MAX_BODY, VapidKey, WebPushProvider
from storage import Database
from tests.events import Loose, loose
from tests.fakes.fcm import Reply
from tests.fakes.webpush import Browser, FakeWebPush

from .push_env import PushEnv, offer_policy


@pytest.fixture
async def service() -> AsyncIterator[FakeWebPush]:
    server = await FakeWebPush().start()
    yield server
    await server.close()


@pytest.fixture
async def env(db: Database, clock: FakeClock) -> AsyncIterator[PushEnv]:
    vapid = VapidKey(ec.generate_private_key(ec.SECP256R1()), "mailto:ops@example.com")
    environment = PushEnv.build(db, clock, {"webpush": WebPushProvider(vapid)})
    yield environment
    await environment.delivery.close()


async def subscribed(env: PushEnv, browser: Browser) -> int:
    user = await env.user()
    await env.device(user, "laptop", browser.endpoint, "webpush", web_keys=browser.web_keys())
    return user


async def test_a_push_is_encrypted_for_the_browser_with_ttl_urgency_topic_and_vapid(
    env: PushEnv, service: FakeWebPush
) -> None:
    browser = service.browser()
    user = await subscribed(env, browser)
    seq = await env.publisher.publish(
        user, loose("booking.offered"), Loose.of({}), push=offer_policy(booking=9)
    )
    await env.deliver()
    [received] = service.received
    assert received.payload == {
        "title": "New job",
        "body": "Plumbing, tomorrow 10:00, Indiranagar",
        "tag": "booking:9",
        "call": False,
        "data": {"bookingId": "9", "event": "booking.offered", "seq": str(seq)},
    }
    assert received.headers["TTL"] == "86400" and received.headers["Urgency"] == "high"
    topic = received.headers["Topic"]
    assert len(topic) == 32 and topic.replace("-", "").replace("_", "").isalnum()
    assert await env.deliveries(user) == {"laptop": ("sent", "sent")}
    assert await env.logs(user) == [("sent", 201, None)]


@pytest.mark.parametrize("status", [404, 410])
async def test_a_gone_subscription_is_deleted(
    env: PushEnv, service: FakeWebPush, status: int
) -> None:
    browser = service.browser()
    service.script[browser.id] = [Reply(status)]
    user = await subscribed(env, browser)
    await env.publisher.publish(user, loose("booking.offered"), Loose.of({}), push=offer_policy())
    await env.deliver()
    assert await env.tokens(user) == {}
    assert await env.logs(user) == [("token_invalid", status, f"http_{status}")]


async def test_a_throttled_push_is_retried_after_retry_after(
    env: PushEnv, service: FakeWebPush
) -> None:
    browser = service.browser()
    service.script[browser.id] = [Reply(429, headers={"Retry-After": "40"})]
    user = await subscribed(env, browser)
    start = env.clock.now()
    await env.publisher.publish(user, loose("booking.offered"), Loose.of({}), push=offer_policy())
    await env.deliver()
    [job] = await env.pending_jobs("push.send")
    assert job["run_at"] == start + timedelta(seconds=40)
    env.clock.advance(40)
    await env.deliver()
    assert len(service.received) == 1
    assert [log[0] for log in await env.logs(user)] == ["retry", "sent"]


async def test_a_payload_over_the_limit_is_refused_before_sending(
    env: PushEnv, service: FakeWebPush
) -> None:
    browser = service.browser()
    user = await subscribed(env, browser)
    big = offer_policy(body="x" * MAX_BODY)
    await env.publisher.publish(user, loose("booking.offered"), Loose.of({}), push=big)
    await env.deliver()
    assert service.posts == 0
    assert await env.deliveries(user) == {"laptop": ("failed", "too_large")}


async def test_a_call_is_urgent_and_lives_for_its_ring_time(
    env: PushEnv, service: FakeWebPush
) -> None:
    browser = service.browser()
    user = await subscribed(env, browser)
    policy = PushPolicy.call("Incoming call", "Ravi", ring_seconds=25, call_id="c-3")
    await env.publisher.publish(user, loose("call.incoming"), Loose.of({}), push=policy)
    await env.deliver()
    [received] = service.received
    assert received.headers["TTL"] == "25" and received.headers["Urgency"] == "high"
    assert received.payload["call"] is True
