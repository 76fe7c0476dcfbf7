"""APNs over HTTP/2 with token auth: the real client against the local HTTP/2 server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kernel.clock import FakeClock
from kernel.push import PushPolicy
from rtc_server.push.providers.apns import ApnsKey, ApnsProvider
from rtc_server.push.providers.base import Outcome, PushMessage
from storage import Database
from storage import push as push_store
from tests.events import Loose, loose
from tests.fakes.apns import KEY_ID, TEAM, TOPIC, ApnsReply, FakeApns

from .push_env import PushEnv, offer_policy

TOKEN = "ab" * 32


@pytest.fixture
async def apns() -> AsyncIterator[FakeApns]:
    server = await FakeApns().start()
    yield server
    await server.close()


@pytest.fixture
async def provider(apns: FakeApns, tmp_path: Path) -> AsyncIterator[ApnsProvider]:
    key = ApnsKey.from_p8_file(apns.key_file(tmp_path), KEY_ID, TEAM)
    client = ApnsProvider(key, TOPIC, endpoint=apns.url)
    yield client
    await client.close()


@pytest.fixture
def env(db: Database, clock: FakeClock, provider: ApnsProvider) -> PushEnv:
    return PushEnv.build(db, clock, {"apns": provider})


async def pushed_user(env: PushEnv, policy: PushPolicy | None = None) -> int:
    user = await env.user()
    await env.device(user, "iphone", TOKEN, "apns")
    await env.publisher.publish(
        user, loose("booking.offered"), Loose.of({}), push=policy or offer_policy(7)
    )
    await env.deliver()
    return user


async def test_an_alert_goes_over_http2_with_its_headers(env: PushEnv, apns: FakeApns) -> None:
    user = await pushed_user(env)
    [sent] = apns.delivered
    assert apns.http_versions == {"2"}
    assert sent.token == TOKEN
    assert sent.headers["apns-push-type"] == "alert"
    assert sent.headers["apns-priority"] == "10"
    assert sent.headers["apns-collapse-id"] == "booking:7"
    assert sent.headers["apns-topic"] == TOPIC
    assert 86390 < int(sent.headers["apns-expiration"]) - datetime.now(UTC).timestamp() <= 86400
    assert sent.payload["aps"]["alert"] == {
        "title": "New job",
        "body": "Plumbing, tomorrow 10:00, Indiranagar",
    }
    assert sent.payload["bookingId"] == "7" and sent.payload["event"] == "booking.offered"
    assert await env.deliveries(user) == {"iphone": ("sent", "sent")}


async def test_a_call_is_time_sensitive_with_priority_10_and_expires_with_its_ring(
    env: PushEnv, apns: FakeApns
) -> None:
    await pushed_user(env, PushPolicy.call("Incoming call", "Ravi", ring_seconds=30, call_id="c"))
    [sent] = apns.delivered
    assert sent.headers["apns-priority"] == "10"
    assert 20 < int(sent.headers["apns-expiration"]) - datetime.now(UTC).timestamp() <= 30
    assert sent.payload["aps"]["interruption-level"] == "time-sensitive"


async def test_a_normal_notice_waits_for_a_convenient_time(env: PushEnv, apns: FakeApns) -> None:
    await pushed_user(env, offer_policy(urgency="normal"))
    assert apns.delivered[0].headers["apns-priority"] == "5"


async def test_410_deletes_a_token_registered_before_it_became_invalid(
    env: PushEnv, apns: FakeApns
) -> None:
    later = int((env.clock.now() + timedelta(seconds=5)).timestamp() * 1000)
    apns.script[TOKEN] = [ApnsReply(410, "Unregistered", timestamp_ms=later)]
    user = await pushed_user(env)
    assert await env.tokens(user) == {}
    assert await env.logs(user) == [("token_invalid", 410, "Unregistered")]


async def test_410_keeps_a_token_the_device_registered_after_it_became_invalid(
    env: PushEnv, apns: FakeApns
) -> None:
    # APNs saw the token invalid at some time; the app registered it again after that.
    earlier = int((env.clock.now() - timedelta(hours=1)).timestamp() * 1000)
    apns.script[TOKEN] = [ApnsReply(410, "Unregistered", timestamp_ms=earlier)]
    user = await pushed_user(env)
    assert await env.tokens(user) == {"iphone": TOKEN}
    assert await env.deliveries(user) == {"iphone": ("failed", "token_invalid")}


@pytest.mark.parametrize("reason", ["BadDeviceToken", "DeviceTokenNotForTopic"])
async def test_a_bad_device_token_is_deleted(env: PushEnv, apns: FakeApns, reason: str) -> None:
    apns.script[TOKEN] = [ApnsReply(400, reason)]
    user = await pushed_user(env)
    assert await env.tokens(user) == {}


async def test_other_400s_are_refused_and_keep_the_token(env: PushEnv, apns: FakeApns) -> None:
    apns.script[TOKEN] = [ApnsReply(400, "BadCollapseId")]
    user = await pushed_user(env)
    assert await env.tokens(user) == {"iphone": TOKEN}
    assert await env.deliveries(user) == {"iphone": ("failed", "BadCollapseId")}


@pytest.mark.parametrize(
    ("status", "reason"), [(429, "TooManyRequests"), (503, "ServiceUnavailable")]
)
async def test_throttling_and_outages_are_retried(
    env: PushEnv, apns: FakeApns, status: int, reason: str
) -> None:
    apns.script[TOKEN] = [ApnsReply(status, reason, headers={"retry-after": "12"})]
    start = env.clock.now()
    user = await pushed_user(env)
    [job] = await env.pending_jobs("push.send")
    assert job["run_at"] == start + timedelta(seconds=12)
    env.clock.advance(12)
    await env.deliver()
    assert len(apns.delivered) == 1
    assert [log[0] for log in await env.logs(user)] == ["retry", "sent"]


async def test_an_expired_provider_token_is_renewed_once(
    env: PushEnv, apns: FakeApns, provider: ApnsProvider
) -> None:
    apns.expired.add(provider.provider_token())  # made now, refused as expired
    await pushed_user(env)
    assert provider.tokens_made == 2 and len(apns.delivered) == 1


async def test_an_invalid_provider_token_alerts_and_deletes_nothing(
    env: PushEnv, apns: FakeApns, tmp_path: Path
) -> None:
    apns.script[TOKEN] = [ApnsReply(403, "InvalidProviderToken")]
    user = await pushed_user(env)
    assert await env.tokens(user) == {"iphone": TOKEN}
    assert await env.logs(user) == [("auth_error", 403, "InvalidProviderToken")]
    assert len(await env.pending_jobs("push.send")) == 1


async def test_the_provider_token_is_reused_and_requests_share_one_connection(
    provider: ApnsProvider, apns: FakeApns
) -> None:
    message = PushMessage(1, 1, "booking.offered", offer_policy().notice)
    devices = [
        push_store.Device(1, f"d{n}", "ios", "apns", f"{n:064x}", None, None, datetime.now(UTC))
        for n in range(100)
    ]
    results = await asyncio.gather(*(provider.send(d, message) for d in devices))
    assert {r.outcome for r in results} == {Outcome.SENT}
    assert provider.tokens_made == 1 and len(apns.delivered) == 100


async def test_a_payload_over_4096_bytes_is_refused_before_sending(
    env: PushEnv, apns: FakeApns
) -> None:
    user = await pushed_user(env, offer_policy(body="x" * 4096))
    assert apns.requests == 0
    assert await env.deliveries(user) == {"iphone": ("failed", "too_large")}
