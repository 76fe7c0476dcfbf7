"""When to push, exactly once: the policy on published events, acks, categories,
restarts and crashes, against a real PostgreSQL and the local FCM server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from api.bookings.push import offer_push
from kernel.clock import FakeClock
from kernel.jobs import Job
from kernel.push import PushPolicy
from rtc_server.config import PushSettings
from rtc_server.push.intents import PushIntents
from rtc_server.push.providers.fcm import FcmProvider, ServiceAccount
from storage import Database, PoolSettings
from storage import events as event_log
from storage import jobs as job_store
from storage import push as push_store
from tests.fakes.fcm import FakeFcm, fcm_error

from .push_env import PushEnv, offer_policy


def fcm_provider(fcm: FakeFcm, clock: FakeClock, tmp_path: Path) -> FcmProvider:
    account = ServiceAccount.from_file(fcm.credentials_file(tmp_path))
    return FcmProvider(account, clock, endpoint=fcm.url)


@pytest.fixture
async def env(
    db: Database, clock: FakeClock, fcm: FakeFcm, tmp_path: Path
) -> AsyncIterator[PushEnv]:
    environment = PushEnv.build(
        db, clock, {"fcm": fcm_provider(fcm, clock, tmp_path)}, PushSettings(ack_timeout=10.0)
    )
    yield environment
    await environment.delivery.close()


async def test_an_offline_users_event_is_pushed_at_once_to_every_device_once(
    env: PushEnv, fcm: FakeFcm
) -> None:
    user = await env.user()
    await env.device(user, "phone", "fcm-phone-token")
    await env.device(user, "tablet", "fcm-tablet-token")
    seq = await env.publisher.publish(
        user, "booking.offered", {"bookingId": 42}, push=offer_policy()
    )
    await env.deliver()
    assert len(fcm.messages) == 2
    phone = fcm.to("fcm-phone-token")[0]
    assert phone["notification"] == {
        "title": "New job",
        "body": "Plumbing, tomorrow 10:00, Indiranagar",
    }
    assert phone["data"] == {"bookingId": "42", "event": "booking.offered", "seq": str(seq)}
    assert phone["android"] == {"priority": "HIGH", "ttl": "86400s", "collapse_key": "booking:42"}
    assert phone["apns"]["headers"]["apns-collapse-id"] == "booking:42"
    assert await env.deliveries(user) == {"phone": ("sent", "sent"), "tablet": ("sent", "sent")}
    assert await env.logs(user) == [("sent", 200, None), ("sent", 200, None)]
    # The decision again (a job replayed after a restart, a second publisher instance):
    # the delivery rows exist, nothing is sent twice.
    await env.queue.enqueue(
        "push.event",
        {
            "u": user,
            "s": seq,
            "e": "booking.offered",
            "n": offer_policy().notice.to_json(),
            "t": env.clock.now().isoformat(),
        },
    )
    await env.deliver()
    assert len(fcm.messages) == 2


async def test_a_restarted_stack_does_not_push_an_event_again(
    db: Database, clock: FakeClock, fcm: FakeFcm, env: PushEnv, tmp_path: Path
) -> None:
    user = await env.user()
    await env.device(user, "phone", "fcm-phone-token")
    seq = await env.publisher.publish(user, "booking.offered", {}, push=offer_policy())
    await env.deliver()
    restarted = PushEnv.build(db, clock, {"fcm": fcm_provider(fcm, clock, tmp_path)})
    try:
        # Everything the first stack could have left: both kinds of job for the event.
        payload = {
            "u": user,
            "s": seq,
            "e": "booking.offered",
            "n": offer_policy().notice.to_json(),
            "t": clock.now().isoformat(),
        }
        await restarted.queue.enqueue("push.event", payload)
        await restarted.queue.enqueue("push.send", {**payload, "d": "phone"})
        assert await restarted.deliver() == 2
    finally:
        await restarted.delivery.close()
    assert len(fcm.messages) == 1


async def test_an_online_user_who_acknowledges_in_time_is_not_pushed(
    env: PushEnv, fcm: FakeFcm
) -> None:
    user = await env.user()
    await env.device(user, "phone", "fcm-phone-token")
    env.bus.watch(user)  # a live socket
    seq = await env.publisher.publish(user, "booking.offered", {}, push=offer_policy())
    assert await env.deliver() == 0  # waiting for the ack
    await event_log.acknowledge(env.db, user, seq)
    env.clock.advance(10.0)
    assert await env.deliver() == 1
    assert fcm.messages == [] and await env.deliveries(user) == {}
    assert env.metrics.push_skipped.labels("acknowledged")._value.get() == 1


async def test_an_online_user_who_does_not_acknowledge_is_pushed_after_the_wait(
    env: PushEnv, fcm: FakeFcm
) -> None:
    user = await env.user()
    await env.device(user, "phone", "fcm-phone-token")
    env.bus.watch(user)
    policy = PushPolicy(offer_policy().notice, wait_for_ack=25.0)
    await env.publisher.publish(user, "booking.offered", {}, push=policy)
    env.clock.advance(24.9)
    assert await env.deliver() == 0
    env.clock.advance(0.1)
    await env.deliver()
    assert len(fcm.messages) == 1


async def test_an_ack_between_decision_and_send_cancels_the_send(
    env: PushEnv, fcm: FakeFcm
) -> None:
    user = await env.user()
    await env.device(user, "phone", "fcm-phone-token")
    seq = await env.publisher.publish(user, "booking.offered", {}, push=offer_policy())
    [decision] = await job_store.claim(
        env.db, "w", 1, env.clock.now(), timedelta(seconds=60), kinds=["push.event"]
    )
    await env.delivery.decide(_job(decision))
    await job_store.complete(env.db, decision.id, decision.attempt)
    await event_log.acknowledge(env.db, user, seq)
    await env.deliver()
    assert fcm.messages == []
    assert await env.deliveries(user) == {"phone": ("skipped", "acknowledged")}


async def test_a_switched_off_category_is_not_pushed(env: PushEnv, fcm: FakeFcm) -> None:
    user = await env.user()
    await env.device(user, "phone", "fcm-phone-token")
    await push_store.update_settings(env.db, user, {"promotional": False}, env.clock.now())
    promo = offer_policy(category="promotional", title="50% off", body="Deep cleaning")
    await env.publisher.publish(user, "promo.offer", {}, push=promo)
    await env.publisher.publish(user, "booking.offered", {}, push=offer_policy())
    await env.deliver()
    assert [m["data"]["event"] for m in fcm.messages] == ["booking.offered"]


async def test_an_event_without_a_policy_or_a_device_pushes_nothing(
    env: PushEnv, fcm: FakeFcm
) -> None:
    user = await env.user()
    await env.publisher.publish(user, "booking.offered", {}, push=offer_policy())
    assert await env.deliver() == 1  # decided: no device, nothing to send
    await env.device(user, "phone", "fcm-phone-token")
    await env.publisher.publish(user, "profile.updated", {})  # no policy
    await env.deliver()
    assert fcm.messages == [] and await env.pending_jobs("push.send") == []


async def test_a_crash_between_claim_and_send_is_retried_exactly_once(
    env: PushEnv, fcm: FakeFcm
) -> None:
    user = await env.user()
    await env.device(user, "phone", "fcm-phone-token")
    await env.publisher.publish(user, "booking.offered", {}, push=offer_policy())
    [decision] = await job_store.claim(
        env.db, "w", 1, env.clock.now(), timedelta(seconds=60), kinds=["push.event"]
    )
    await env.delivery.decide(_job(decision))
    await job_store.complete(env.db, decision.id, decision.attempt)
    # An instance claims the send and dies before calling FCM.
    [send] = await job_store.claim(env.db, "dead", 1, env.clock.now(), timedelta(seconds=60))
    assert send.kind == "push.send"
    assert await env.deliver() == 0  # leased
    env.clock.advance(60.0)
    assert await env.deliver() == 1
    env.clock.advance(3600.0)
    assert await env.deliver() == 0
    assert len(fcm.messages) == 1
    assert await env.deliveries(user) == {"phone": ("sent", "sent")}


async def test_a_call_is_pushed_at_once_with_high_priority_and_its_ring_time_as_ttl(
    env: PushEnv, fcm: FakeFcm
) -> None:
    user = await env.user()
    await env.device(user, "phone", "fcm-phone-token")
    env.bus.watch(user)  # even with a live socket: a call does not wait
    policy = PushPolicy.call("Incoming call", "Ravi (plumber)", ring_seconds=30, call_id="c-9")
    await env.publisher.publish(user, "call.incoming", {"callId": "c-9"}, push=policy)
    await env.deliver()
    [message] = fcm.messages
    assert "notification" not in message  # data only: the app rings itself
    assert message["data"]["callId"] == "c-9" and message["data"]["title"] == "Incoming call"
    assert message["android"] == {"priority": "HIGH", "ttl": "30s", "collapse_key": "call:c-9"}
    assert message["apns"]["headers"]["apns-priority"] == "10"


async def test_a_push_older_than_its_ttl_is_not_sent(env: PushEnv, fcm: FakeFcm) -> None:
    user = await env.user()
    await env.device(user, "phone", "fcm-phone-token")
    fcm.script["fcm-phone-token"] = [fcm_error(503, "UNAVAILABLE", "UNAVAILABLE")]
    policy = PushPolicy.call("Incoming call", "Ravi", ring_seconds=30, call_id="c-1")
    await env.publisher.publish(user, "call.incoming", {}, push=policy)
    await env.deliver()  # 503: retried later
    env.clock.advance(3600.0)
    await env.deliver()
    assert fcm.messages == []
    assert await env.deliveries(user) == {"phone": ("failed", "expired")}


def _job(claimed: job_store.ClaimedJob) -> Job:
    """The job a worker would hand its handler, for tests that run a handler by hand."""
    return Job(
        claimed.id,
        claimed.kind,
        orjson.loads(claimed.payload),
        claimed.attempt,
        claimed.max_attempts,
    )


# --- Push intents written by domain transactions (bookings.create) ----------------------


async def write_offer(env: PushEnv, user: int, push_after: float = 30.0) -> int:
    payload = orjson.dumps(
        {
            "booking": {
                "id": 5,
                "serviceName": "Plumber",
                "customerName": "Asha",
                "appointmentAt": "2026-12-01T10:30:00+05:30",
            }
        }
    ).decode()
    due = env.clock.now() + timedelta(seconds=push_after)
    async with env.db.transaction() as conn:
        [seq] = await event_log.append_each(
            conn, [event_log.NewEvent(user, "booking.offered", payload, push_due=due)]
        )
    return seq


def intents_of(env: PushEnv) -> PushIntents:
    intents = PushIntents(env.db, env.delivery, env.clock)
    intents.render("booking.offered", offer_push("Asia/Kolkata"))
    return intents


async def test_intents_are_handed_over_once_by_concurrent_sweeps(
    env: PushEnv, fcm: FakeFcm, db_dsn: str
) -> None:
    users = [await env.user() for _ in range(30)]
    for user in users:
        await env.device(user, "phone", f"fcm-{user}")
        await write_offer(env, user)
    other = await Database.connect(PoolSettings(dsn=db_dsn, max_size=2))
    try:
        second = PushIntents(other, env.delivery, env.clock)
        second.render("booking.offered", offer_push("Asia/Kolkata"))
        handed = await asyncio.gather(intents_of(env).sweep(), second.sweep())
    finally:
        await other.close()
    assert sum(handed) == 30
    await env.deliver()  # all offline: pushed at once
    assert sorted(m["token"] for m in fcm.messages) == sorted(f"fcm-{u}" for u in users)
    assert fcm.messages[0]["notification"]["body"] == (
        "Asha booked Plumber for 01 Dec 2026, 10:30 AM."
    )
    assert await intents_of(env).sweep() == 0


async def test_an_intent_of_an_event_nobody_renders_is_dropped(
    env: PushEnv, fcm: FakeFcm, caplog: pytest.LogCaptureFixture
) -> None:
    user = await env.user()
    await env.device(user, "phone", "fcm-1")
    await write_offer(env, user)
    bare = PushIntents(env.db, env.delivery, env.clock)  # no renderer registered
    assert await bare.sweep() == 1
    assert await env.deliver() == 0 and fcm.messages == []
    assert "push intent dropped" in caplog.text
