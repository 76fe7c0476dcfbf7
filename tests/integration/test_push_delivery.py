"""When to push, exactly once: the policy on published events, acks, categories,
restarts and crashes, against a real PostgreSQL and the local FCM server."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from kernel.clock import FakeClock
from kernel.events import EventSpec, PushedEvent
from kernel.jobs import Job
from kernel.push import PushNotice, PushPolicy
from kernel.rpc.registry import Result
from rtc_server.push.intents import BATCH, PushIntents
from rtc_server.push.jobs import PUSH_EVENT, PUSH_SEND, PushEvent, PushSend
from rtc_server.push.providers.fcm import FcmProvider, ServiceAccount
from rtc_server.push.settings import PushSettings
from storage import Database, PoolSettings
from storage import events as event_log
from storage import jobs as job_store
from storage import push as push_store
from tests.events import Loose, loose
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
        user, loose("booking.offered"), Loose.of({"bookingId": 42}), push=offer_policy()
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
        PUSH_EVENT,
        PushEvent(
            user=user,
            seq=seq,
            event="booking.offered",
            notice=offer_policy().notice.to_json(),
            published=env.clock.now(),
        ),
    )
    await env.deliver()
    assert len(fcm.messages) == 2


async def test_a_restarted_stack_does_not_push_an_event_again(
    db: Database, clock: FakeClock, fcm: FakeFcm, env: PushEnv, tmp_path: Path
) -> None:
    user = await env.user()
    await env.device(user, "phone", "fcm-phone-token")
    seq = await env.publisher.publish(
        user, loose("booking.offered"), Loose.of({}), push=offer_policy()
    )
    await env.deliver()
    restarted = PushEnv.build(db, clock, {"fcm": fcm_provider(fcm, clock, tmp_path)})
    try:
        # Everything the first stack could have left: both kinds of job for the event.
        decide = PushEvent(
            user=user,
            seq=seq,
            event="booking.offered",
            notice=offer_policy().notice.to_json(),
            published=clock.now(),
        )
        await restarted.queue.enqueue(PUSH_EVENT, decide)
        send = PushSend(**decide.model_dump(), device="phone")
        await restarted.queue.enqueue(PUSH_SEND, send)
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
    seq = await env.publisher.publish(
        user, loose("booking.offered"), Loose.of({}), push=offer_policy()
    )
    assert await env.deliver() == 0  # waiting for the ack
    await event_log.acknowledge(env.db, user, seq)
    env.clock.advance(10.0)
    assert await env.deliver() == 1
    assert fcm.messages == [] and await env.deliveries(user) == {}
    assert (
        env.metrics.registry.get_sample_value("rtc_push_skipped_total", {"reason": "acknowledged"})
        == 1
    )


async def test_an_online_user_who_does_not_acknowledge_is_pushed_after_the_wait(
    env: PushEnv, fcm: FakeFcm
) -> None:
    user = await env.user()
    await env.device(user, "phone", "fcm-phone-token")
    env.bus.watch(user)
    policy = PushPolicy(offer_policy().notice, wait_for_ack=25.0)
    await env.publisher.publish(user, loose("booking.offered"), Loose.of({}), push=policy)
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
    seq = await env.publisher.publish(
        user, loose("booking.offered"), Loose.of({}), push=offer_policy()
    )
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
    await env.publisher.publish(user, loose("promo.offer"), Loose.of({}), push=promo)
    await env.publisher.publish(user, loose("booking.offered"), Loose.of({}), push=offer_policy())
    await env.deliver()
    assert [m["data"]["event"] for m in fcm.messages] == ["booking.offered"]


async def test_an_event_without_a_policy_or_a_device_pushes_nothing(
    env: PushEnv, fcm: FakeFcm
) -> None:
    user = await env.user()
    await env.publisher.publish(user, loose("booking.offered"), Loose.of({}), push=offer_policy())
    assert await env.deliver() == 1  # decided: no device, nothing to send
    await env.device(user, "phone", "fcm-phone-token")
    await env.publisher.publish(user, loose("profile.updated"), Loose.of({}))  # no policy
    await env.deliver()
    assert fcm.messages == [] and await env.pending_jobs("push.send") == []


async def test_a_crash_between_claim_and_send_is_retried_exactly_once(
    env: PushEnv, fcm: FakeFcm
) -> None:
    user = await env.user()
    await env.device(user, "phone", "fcm-phone-token")
    await env.publisher.publish(user, loose("booking.offered"), Loose.of({}), push=offer_policy())
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
    await env.publisher.publish(
        user, loose("call.incoming"), Loose.of({"callId": "c-9"}), push=policy
    )
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
    await env.publisher.publish(user, loose("call.incoming"), Loose.of({}), push=policy)
    await env.deliver()  # 503: retried later
    env.clock.advance(3600.0)
    await env.deliver()
    assert fcm.messages == []
    assert await env.deliveries(user) == {"phone": ("failed", "expired")}


def _job(claimed: job_store.ClaimedJob) -> Job[PushEvent]:
    """The job a worker would hand its handler, for tests that run a handler by hand."""
    payload = PUSH_EVENT.decode(claimed.payload)
    return Job(claimed.id, claimed.kind, payload, claimed.attempt, claimed.max_attempts)


# --- Push intents written by domain transactions (bookings.create) ----------------------


class Offer(Result):
    customer: str
    service: str


OFFERED = EventSpec("test.offered", Offer, "a booking offer, as the tests of intents need it")


def offer_push(offer: Offer) -> PushPolicy:
    return PushPolicy(
        PushNotice(f"{offer.customer} booked {offer.service}", "", "bookings", urgency="high")
    )


RENDERED = {OFFERED.name: PushedEvent(OFFERED, offer_push)}


async def write_offer(env: PushEnv, user: int, push_after: float = 30.0) -> int:
    """An offer staged with a push intent, as a domain transaction writes it."""
    payload = OFFERED.encode(Offer(customer="Asha", service="Plumber")).decode()
    due = env.clock.now() + timedelta(seconds=push_after)
    async with env.db.transaction() as conn:
        [seq] = await event_log.append_each(
            conn, [event_log.NewEvent(user, OFFERED.name, payload, push_due=due)]
        )
    return seq


def intents_of(env: PushEnv) -> PushIntents:
    return PushIntents(env.db, env.delivery, env.clock, RENDERED)


async def test_intents_are_handed_over_once_by_concurrent_sweeps(
    env: PushEnv, fcm: FakeFcm, db_dsn: str
) -> None:
    users = [await env.user() for _ in range(30)]
    for user in users:
        await env.device(user, "phone", f"fcm-{user}")
        await write_offer(env, user)
    other = await Database.connect(PoolSettings(dsn=db_dsn, max_size=2))
    try:
        second = PushIntents(other, env.delivery, env.clock, RENDERED)
        handed = await asyncio.gather(intents_of(env).sweep(), second.sweep())
    finally:
        await other.close()
    assert sum(handed) == 30
    await env.deliver()  # all offline: pushed at once
    assert sorted(m["token"] for m in fcm.messages) == sorted(f"fcm-{u}" for u in users)
    assert fcm.messages[0]["notification"]["title"] == "Asha booked Plumber"
    assert await intents_of(env).sweep() == 0


async def test_an_intent_of_an_event_nobody_renders_is_dropped(
    env: PushEnv, fcm: FakeFcm, caplog: pytest.LogCaptureFixture
) -> None:
    user = await env.user()
    await env.device(user, "phone", "fcm-1")
    await write_offer(env, user)
    bare = PushIntents(env.db, env.delivery, env.clock, {})  # no renderer declared
    assert await bare.sweep() == 1
    assert await env.deliver() == 0 and fcm.messages == []
    assert "push intent dropped" in caplog.text


async def test_a_long_sweep_lets_the_event_loop_run_between_batches(env: PushEnv) -> None:
    """Rendering intents is work without a pause: a sweep of many must hand the loop
    back (to sockets waiting for their answers) at least every BATCH of them."""
    rendered = 0

    def counting(offer: Offer) -> PushPolicy:
        nonlocal rendered
        rendered += 1
        return offer_push(offer)

    users = [await env.user() for _ in range(4)]
    for user in users:
        for _ in range(40):
            await write_offer(env, user)
    seen: list[int] = []

    async def watch() -> None:
        while True:
            seen.append(rendered)
            await asyncio.sleep(0)

    watcher = asyncio.get_running_loop().create_task(watch())
    sweeper = PushIntents(
        env.db, env.delivery, env.clock, {OFFERED.name: PushedEvent(OFFERED, counting)}
    )
    try:
        assert await sweeper.sweep() == 160
    finally:
        watcher.cancel()
    seen.append(rendered)
    assert rendered == 160
    assert max(after - before for before, after in itertools.pairwise(seen)) <= BATCH < 160
