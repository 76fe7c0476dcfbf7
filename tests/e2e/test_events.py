"""Events that are never lost: live delivery, acks, and resuming after a dropped socket."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rtc_server.app import App
from rtc_server.client import RtcClient
from storage import events as event_log
from storage.errors import StorageError
from tests.events import Loose, loose

from .conftest import AppFactory, Clients


async def collect(client: RtcClient, count: int, timeout: float = 10) -> list[int]:
    seqs: list[int] = []
    async with asyncio.timeout(timeout):
        while len(seqs) < count:
            event = await client.next_event()
            if event.seq is not None:
                seqs.append(event.seq)
    return seqs


async def test_published_event_reaches_every_device_of_the_user(app: App, clients: Clients) -> None:
    phone = clients.new_phone()
    first, tokens = await clients.login(phone)
    second = await RtcClient.connect(f"ws://127.0.0.1:{app.sockets.port}/ws")
    clients.opened.append(second)
    await second.authenticate(tokens["accessToken"])
    user_id = tokens["user"]["id"]
    seq = await app.publisher.publish(
        user_id, loose("booking.offered"), Loose.of({"bookingId": 42})
    )
    for device in (first, second):
        event = await device.next_event()
        assert (event.method, event.seq, event.data) == ("booking.offered", seq, {"bookingId": 42})


async def test_ack_is_cumulative_and_never_goes_back(app: App, clients: Clients) -> None:
    client, tokens = await clients.login()
    user_id = tokens["user"]["id"]
    for n in range(3):
        await app.publisher.publish(user_id, loose("notification.created"), Loose.of({"n": n}))
    await collect(client, 3)
    assert (await client.ack(2))["ackedSeq"] == 2
    assert (await client.ack(1))["ackedSeq"] == 2
    assert (await client.ack(99))["ackedSeq"] == 3  # never past the newest


async def test_reconnect_replays_missed_events_in_order(app: App, clients: Clients) -> None:
    client, tokens = await clients.login()
    user_id = tokens["user"]["id"]
    await app.publisher.publish(user_id, loose("e"), Loose.of({"n": 1}))
    assert await collect(client, 1) == [1]
    await client.close()  # the network drops
    for n in range(2, 6):
        await app.publisher.publish(user_id, loose("e"), Loose.of({"n": n}))
    resumed = await client.reconnect()
    clients.opened.append(resumed)
    assert await collect(resumed, 4) == [2, 3, 4, 5]
    assert [e.data["n"] for e in resumed.received if e.seq] == [2, 3, 4, 5]
    await app.publisher.publish(user_id, loose("e"), Loose.of({"n": 6}))
    assert await collect(resumed, 1) == [6]


async def test_without_last_seq_a_new_socket_resumes_after_the_last_ack(
    app: App, clients: Clients
) -> None:
    client, tokens = await clients.login()
    user_id = tokens["user"]["id"]
    for n in range(4):
        await app.publisher.publish(user_id, loose("e"), Loose.of({"n": n}))
    await collect(client, 4)
    await client.ack(2)
    fresh = await clients.anonymous()
    answer = await fresh.authenticate(tokens["accessToken"])
    assert answer["resumeFrom"] == 2 and answer["recovered"] is True
    assert await collect(fresh, 2) == [3, 4]


async def test_resume_under_concurrent_publishing_loses_and_repeats_nothing(
    app: App, clients: Clients
) -> None:
    client, tokens = await clients.login()
    user_id = tokens["user"]["id"]
    total = 300
    published: list[int] = []

    async def publisher() -> None:
        for n in range(total):
            published.append(await app.publisher.publish(user_id, loose("e"), Loose.of({"n": n})))
            if n % 10 == 0:
                await asyncio.sleep(0)

    async def flaky_reader() -> list[int]:
        current = client
        seen: list[int] = []
        while len(seen) < total:
            try:
                event = await current.next_event(timeout=0.05)
            except TimeoutError:
                event = None
            if event is not None and event.seq is not None:
                seen.append(event.seq)
            if len(seen) % 37 == 36 or event is None:
                # Drop the socket mid-stream and resume where we were.
                current.last_seq = seen[-1] if seen else 0
                current = await current.reconnect()
                clients.opened.append(current)
        return seen

    seen, _ = await asyncio.wait_for(asyncio.gather(flaky_reader(), publisher()), 60)
    assert seen == published == list(range(1, total + 1))


async def test_publish_many_is_one_write_for_all_recipients(app: App, clients: Clients) -> None:
    logged_in = [await clients.login() for _ in range(5)]
    users = [tokens["user"]["id"] for _, tokens in logged_in]
    seqs = await app.publisher.publish_many(users, loose("catalog.changed"), Loose.of({"v": 2}))
    assert sorted(seqs) == sorted(users)
    for client, tokens in logged_in:
        event = await client.next_event()
        assert event.seq == seqs[tokens["user"]["id"]] and event.data == {"v": 2}


async def test_pruned_log_answers_not_recovered(app: App, clients: Clients) -> None:
    client, tokens = await clients.login()
    user_id = tokens["user"]["id"]
    for n in range(30):
        await app.publisher.publish(user_id, loose("e"), Loose.of({"n": n}))
    await collect(client, 30)
    assert app.db is not None
    removed = await event_log.prune(app.db, max_age_seconds=3600, max_per_user=10)
    assert removed == 20
    fresh = await clients.anonymous()
    answer = await fresh.authenticate(tokens["accessToken"], last_seq=5)
    assert answer["recovered"] is False and answer["resumeFrom"] == 30
    ok = await clients.anonymous()
    answer = await ok.authenticate(tokens["accessToken"], last_seq=25)
    assert answer["recovered"] is True
    assert await collect(ok, 5) == [26, 27, 28, 29, 30]


async def test_client_ahead_of_the_log_is_told_to_refetch(app: App, clients: Clients) -> None:
    _, tokens = await clients.login()
    fresh = await clients.anonymous()
    answer = await fresh.authenticate(tokens["accessToken"], last_seq=500)
    assert answer["recovered"] is False and answer["resumeFrom"] == 0


async def test_header_auth_resumes_from_the_last_seq_header(app: App, clients: Clients) -> None:
    _, tokens = await clients.login()
    user_id = tokens["user"]["id"]
    for n in range(5):
        await app.publisher.publish(user_id, loose("e"), Loose.of({"n": n}))
    client = await RtcClient.connect(
        f"ws://127.0.0.1:{app.sockets.port}/ws", access_token=tokens["accessToken"], last_seq=3
    )
    clients.opened.append(client)
    ready = await client.next_event()
    assert ready.method == "session.ready" and ready.params["resumeFrom"] == 3
    assert await collect(client, 2) == [4, 5]


async def test_events_survive_a_server_restart(make_app: AppFactory, code_log: object) -> None:
    first = await make_app()
    opened = Clients(first, code_log)  # type: ignore[arg-type]
    client, tokens = await opened.login()
    user_id = tokens["user"]["id"]
    await first.publisher.publish(user_id, loose("e"), Loose.of({"n": 1}))
    await collect(client, 1)
    await first.stop()
    second = await make_app()
    await second.publisher.publish(user_id, loose("e"), Loose.of({"n": 2}))
    resumed = await RtcClient.connect(f"ws://127.0.0.1:{second.sockets.port}/ws")
    await resumed.authenticate(tokens["accessToken"], last_seq=1)
    assert await collect(resumed, 1) == [2]
    await resumed.close()
    await opened.close()


async def five_users_in_chunks_of_two(
    make_app: AppFactory, code_log: object
) -> tuple[App, Clients, list[tuple[RtcClient, Any]], list[int]]:
    """A server whose fan-outs write two users per statement, and five logged-in users."""
    app = await make_app(events={"fanout_chunk": 2})
    opened = Clients(app, code_log)  # type: ignore[arg-type]
    logged_in = [await opened.login() for _ in range(5)]
    return app, opened, logged_in, [tokens["user"]["id"] for _, tokens in logged_in]


async def test_fan_out_in_chunks_reaches_everyone_once(
    make_app: AppFactory, code_log: object
) -> None:
    app, opened, logged_in, users = await five_users_in_chunks_of_two(make_app, code_log)
    seqs = await app.publisher.publish_many(
        users + users[:2], loose("catalog.changed"), Loose.of({"v": 3})
    )
    assert sorted(seqs) == sorted(users)
    for client, tokens in logged_in:
        event = await client.next_event()
        assert event.seq == seqs[tokens["user"]["id"]] and event.data == {"v": 3}
    # A round trip after the fan-out: any duplicate would have arrived before its answer.
    for client, _ in logged_in:
        await client.call("system.ping")
    assert all(len([e for e in c.received if e.seq]) == 1 for c, _ in logged_in)
    await opened.close()


async def test_fan_out_whose_write_fails_mid_way_tells_the_caller(
    make_app: AppFactory, code_log: object
) -> None:
    """Chunks written before the failed one are delivered; the failed one stores nothing."""
    app, opened, logged_in, users = await five_users_in_chunks_of_two(make_app, code_log)
    missing = max(users) + 1_000_000  # no such user: its chunk (the third) fails
    with pytest.raises(StorageError):
        await app.publisher.publish_many(
            [*users, missing], loose("catalog.changed"), Loose.of({"v": 4})
        )
    for client, _ in logged_in[:4]:
        event = await client.next_event()
        assert event.data == {"v": 4}
    last, tokens = logged_in[4]
    await last.call("system.ping")  # an event sent before this answer would be here
    assert not [e for e in last.received if e.seq]
    assert app.db is not None
    stored = await app.db.fetchval(
        "SELECT count(*) FROM user_events WHERE user_id = ANY($1::bigint[])",
        [tokens["user"]["id"], missing],
    )
    assert stored == 0
    await opened.close()


async def test_deleting_a_user_deletes_their_events(app: App, clients: Clients) -> None:
    _, tokens = await clients.login()
    user_id = tokens["user"]["id"]
    await app.publisher.publish(user_id, loose("e"), Loose.of({"n": 1}))
    assert app.db is not None
    await app.db.execute("DELETE FROM users WHERE id = $1", user_id)
    assert (
        await app.db.fetchval("SELECT count(*) FROM user_events WHERE user_id = $1", user_id) == 0
    )
