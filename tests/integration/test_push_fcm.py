"""FCM HTTP v1's error rules and access tokens, with the real client against the
local FCM server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kernel.clock import FakeClock
from kernel.jobs import Backoff
from rtc_server.push.providers.base import Outcome, PushMessage
from rtc_server.push.providers.fcm import FcmProvider, ServiceAccount
from rtc_server.push.settings import PushSettings
from storage import Database
from storage import push as push_store
from tests.events import Loose, loose
from tests.fakes.fcm import FakeFcm, Reply, fcm_error

from .push_env import PushEnv, offer_policy


@pytest.fixture
async def provider(fcm: FakeFcm, clock: FakeClock, tmp_path: Path) -> AsyncIterator[FcmProvider]:
    account = ServiceAccount.from_file(fcm.credentials_file(tmp_path))
    client = FcmProvider(account, clock, endpoint=fcm.url)
    yield client
    await client.close()


@pytest.fixture
async def env(db: Database, clock: FakeClock, provider: FcmProvider) -> PushEnv:
    return PushEnv.build(
        db, clock, {"fcm": provider}, PushSettings(), backoff=Backoff(base=10.0, cap=600.0)
    )


async def push_one(env: PushEnv, token: str = "fcm-token-1") -> int:
    user = await env.user()
    await env.device(user, "phone", token)
    await env.publisher.publish(user, loose("booking.offered"), Loose.of({}), push=offer_policy())
    await env.deliver()
    return user


@pytest.mark.parametrize(
    "reply",
    [
        fcm_error(404, "NOT_FOUND", "UNREGISTERED"),
        fcm_error(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH"),
        fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", bad_field="message.token"),
    ],
    ids=["unregistered", "sender-id-mismatch", "invalid-token"],
)
async def test_a_dead_token_is_deleted(env: PushEnv, fcm: FakeFcm, reply: Reply) -> None:
    fcm.script["fcm-token-1"] = [reply]
    user = await push_one(env)
    assert await env.tokens(user) == {}
    assert await env.deliveries(user) == {"phone": ("failed", "token_invalid")}
    code = reply.body["error"]["details"][0]["errorCode"]
    assert await env.logs(user) == [("token_invalid", reply.status, code)]
    assert await env.pending_jobs("push.send") == []


async def test_invalid_argument_about_something_else_keeps_the_token(
    env: PushEnv, fcm: FakeFcm
) -> None:
    fcm.script["fcm-token-1"] = [
        fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", bad_field="message.android.ttl")
    ]
    user = await push_one(env)
    assert await env.tokens(user) == {"phone": "fcm-token-1"}
    assert await env.deliveries(user) == {"phone": ("failed", "INVALID_ARGUMENT")}
    assert await env.logs(user) == [("refused", 400, "INVALID_ARGUMENT")]


async def test_a_device_re_registered_with_a_new_token_keeps_it_when_the_old_one_dies(
    env: PushEnv, fcm: FakeFcm
) -> None:
    # The send read the old token; meanwhile the device registered a new one.
    user = await env.user()
    old = await env.device(user, "phone", "fcm-old-token")
    await env.device(user, "phone", "fcm-new-token")
    attempt = push_store.Attempt(
        user, 1, "phone", "fcm", "token_invalid", 404, "UNREGISTERED", 1.0, env.clock.now()
    )
    assert not await push_store.record_attempt(env.db, attempt, finish=None, forget_token=old.token)
    assert await env.tokens(user) == {"phone": "fcm-new-token"}


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_throttling_and_provider_errors_retry_after_retry_after(
    env: PushEnv, fcm: FakeFcm, status: int
) -> None:
    reply = fcm_error(status, "UNAVAILABLE", "UNAVAILABLE")
    reply.headers["Retry-After"] = "17"
    fcm.script["fcm-token-1"] = [reply]
    start = env.clock.now()
    user = await push_one(env)
    [job] = await env.pending_jobs("push.send")
    assert job["run_at"] == start + timedelta(seconds=17)
    env.clock.advance(16.9)
    assert await env.deliver() == 0
    env.clock.advance(0.1)
    assert await env.deliver() == 1
    assert len(fcm.messages) == 1
    assert [log[0] for log in await env.logs(user)] == ["retry", "sent"]
    assert await env.deliveries(user) == {"phone": ("sent", "sent")}


async def test_without_retry_after_the_backoff_is_exponential_with_jitter(
    env: PushEnv, fcm: FakeFcm
) -> None:
    fcm.script["fcm-token-1"] = [fcm_error(503, "UNAVAILABLE")] * 2
    start = env.clock.now()
    await push_one(env)
    [job] = await env.pending_jobs("push.send")
    first = (job["run_at"] - start).total_seconds()
    assert 5.0 <= first <= 10.0  # base 10: attempt 1 waits [5, 10]
    env.clock.advance(first)
    start = env.clock.now()
    await env.deliver()
    [job] = await env.pending_jobs("push.send")
    assert 10.0 <= (job["run_at"] - start).total_seconds() <= 20.0


async def test_retries_end_with_a_failed_delivery(env: PushEnv, fcm: FakeFcm) -> None:
    fcm.script["fcm-token-1"] = [fcm_error(500, "INTERNAL")] * 5
    user = await push_one(env)
    for _ in range(4):
        env.clock.advance(700.0)
        await env.deliver()
    assert await env.deliveries(user) == {"phone": ("failed", "gave_up:INTERNAL")}
    assert len(await env.logs(user)) == 5 and fcm.messages == []


async def test_third_party_auth_error_alerts_retries_and_deletes_nothing(
    env: PushEnv, fcm: FakeFcm, caplog: pytest.LogCaptureFixture
) -> None:
    fcm.script["fcm-token-1"] = [fcm_error(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR")]
    user = await push_one(env)
    assert await env.tokens(user) == {"phone": "fcm-token-1"}
    assert await env.logs(user) == [("auth_error", 401, "THIRD_PARTY_AUTH_ERROR")]
    assert fcm.token_fetches == 1  # not taken for an expired access token
    assert "THIRD_PARTY_AUTH_ERROR" in caplog.text
    assert len(await env.pending_jobs("push.send")) == 1  # retried later


async def test_an_expired_access_token_is_refreshed_once_and_the_send_repeated(
    env: PushEnv, fcm: FakeFcm
) -> None:
    user = await push_one(env, "fcm-token-1")
    fcm.expire_access_tokens()
    await env.device(user, "tablet", "fcm-token-2")
    await env.publisher.publish(user, loose("booking.offered"), Loose.of({}), push=offer_policy())
    await env.deliver()
    assert fcm.token_fetches == 2
    assert len(fcm.messages) == 3  # 1 before, then phone and tablet


async def test_a_second_401_is_an_auth_error_after_one_refresh(env: PushEnv, fcm: FakeFcm) -> None:
    fcm.script["fcm-token-1"] = [fcm_error(401, "UNAUTHENTICATED")] * 2
    user = await push_one(env)
    assert fcm.token_fetches == 2 and fcm.sends == 2
    assert await env.logs(user) == [("auth_error", 401, "UNAUTHENTICATED")]
    assert await env.tokens(user) == {"phone": "fcm-token-1"}


async def test_the_access_token_is_cached_until_it_nearly_expires(
    provider: FcmProvider, fcm: FakeFcm, clock: FakeClock
) -> None:
    device = _device("fcm-token-1")
    message = PushMessage(1, 1, "booking.offered", offer_policy().notice)
    for _ in range(3):
        assert (await provider.send(device, message)).outcome is Outcome.SENT
    assert fcm.token_fetches == 1
    clock.advance(3599 - 60)  # expires_in 3599, refreshed 60 s early
    await provider.send(device, message)
    assert fcm.token_fetches == 2


async def test_a_hundred_concurrent_sends_fetch_one_token(
    provider: FcmProvider, fcm: FakeFcm
) -> None:
    fcm.token_delay = 0.05  # the fetch is in flight while the others ask
    message = PushMessage(1, 1, "booking.offered", offer_policy().notice)
    results = await asyncio.gather(
        *(provider.send(_device(f"fcm-token-{n}"), message) for n in range(100))
    )
    assert {r.outcome for r in results} == {Outcome.SENT}
    assert fcm.token_fetches == 1 and len(fcm.messages) == 100


async def test_a_payload_over_4096_bytes_is_refused_before_sending(
    env: PushEnv, fcm: FakeFcm
) -> None:
    user = await env.user()
    await env.device(user, "phone", "fcm-token-1")
    big = offer_policy(body="x" * 4000, data={"note": "y" * 200})
    await env.publisher.publish(user, loose("booking.offered"), Loose.of({}), push=big)
    await env.deliver()
    assert fcm.sends == 0
    assert await env.deliveries(user) == {"phone": ("failed", "too_large")}
    assert await env.logs(user) == [("refused", None, "too_large")]


async def test_an_unreachable_fcm_is_retried(
    db: Database, clock: FakeClock, tmp_path: Path, fcm: FakeFcm
) -> None:
    account = ServiceAccount.from_file(fcm.credentials_file(tmp_path))
    await fcm.close()  # nothing listens there any more
    provider = FcmProvider(account, clock, endpoint=fcm.url)
    env = PushEnv.build(db, clock, {"fcm": provider})
    try:
        user = await push_one(env)
    finally:
        await provider.close()
    [(outcome, status, code)] = await env.logs(user)
    assert (outcome, status) == ("retry", None) and code == "network:ClientConnectorError"
    assert len(await env.pending_jobs("push.send")) == 1


def _device(token: str) -> push_store.Device:
    return push_store.Device(1, "d", "android", "fcm", token, None, None, datetime.now(UTC))
