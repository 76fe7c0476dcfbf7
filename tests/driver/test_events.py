"""Events that are never lost: live delivery, acks, resuming after a dropped socket,
fan-outs (the real hub, delivery and session methods, on sockets in memory)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kernel.clock import FakeClock
from rtc_server.app import App
from rtc_server.client import RtcClient
from storage import events as event_log
from storage.errors import StorageError
from tests.events import Loose, loose
from tests.servers import CodeLog

from .conftest import MemoryClients, prepared
from .memory import HIGH_WATER


async def collect(client: RtcClient, count: int, timeout: float = 10) -> list[int]:
    seqs: list[int] = []
    async with asyncio.timeout(timeout):
        while len(seqs) < count:
            event = await client.next_event()
            if event.seq is not None:
                seqs.append(event.seq)
    return seqs


async def test_published_event_reaches_every_device_of_the_user(
    core: App, clients: MemoryClients
) -> None:
    first, tokens = await clients.login_existing()
    second = await clients.device(tokens)
    seq = await core.publisher.publish(
        tokens["user"]["id"], loose("booking.offered"), Loose.of({"bookingId": 42})
    )
    for device in (first, second):
        event = await device.next_event()
        assert (event.method, event.seq, event.data) == ("booking.offered", seq, {"bookingId": 42})


async def test_ack_is_cumulative_and_never_goes_back(core: App, clients: MemoryClients) -> None:
    client, tokens = await clients.login_existing()
    user_id = tokens["user"]["id"]
    for n in range(3):
        await core.publisher.publish(user_id, loose("notification.created"), Loose.of({"n": n}))
    await collect(client, 3)
    assert (await client.ack(2))["ackedSeq"] == 2
    assert (await client.ack(1))["ackedSeq"] == 2
    assert (await client.ack(99))["ackedSeq"] == 3  # never past the newest


async def test_reconnect_replays_missed_events_in_order(core: App, clients: MemoryClients) -> None:
    client, tokens = await clients.login_existing()
    user_id = tokens["user"]["id"]
    await core.publisher.publish(user_id, loose("e"), Loose.of({"n": 1}))
    assert await collect(client, 1) == [1]
    await client.close()  # the network drops
    for n in range(2, 6):
        await core.publisher.publish(user_id, loose("e"), Loose.of({"n": n}))
    resumed = await clients.reconnect(client)
    assert await collect(resumed, 4) == [2, 3, 4, 5]
    assert [e.data["n"] for e in resumed.received if e.seq] == [2, 3, 4, 5]
    await core.publisher.publish(user_id, loose("e"), Loose.of({"n": 6}))
    assert await collect(resumed, 1) == [6]


async def test_without_last_seq_a_new_socket_resumes_after_the_last_ack(
    core: App, clients: MemoryClients
) -> None:
    client, tokens = await clients.login_existing()
    user_id = tokens["user"]["id"]
    for n in range(4):
        await core.publisher.publish(user_id, loose("e"), Loose.of({"n": n}))
    await collect(client, 4)
    await client.ack(2)
    fresh = clients.anonymous()
    answer = await fresh.authenticate(tokens["accessToken"])
    assert answer["resumeFrom"] == 2 and answer["recovered"] is True
    assert await collect(fresh, 2) == [3, 4]


async def test_resume_under_concurrent_publishing_loses_and_repeats_nothing(
    core: App, clients: MemoryClients
) -> None:
    client, tokens = await clients.login_existing()
    user_id = tokens["user"]["id"]
    total = 300
    published: list[int] = []

    async def publisher() -> None:
        for n in range(total):
            published.append(await core.publisher.publish(user_id, loose("e"), Loose.of({"n": n})))
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
                current = await clients.reconnect(current)
        return seen

    seen, _ = await asyncio.wait_for(asyncio.gather(flaky_reader(), publisher()), 60)
    assert seen == published == list(range(1, total + 1))


async def test_publish_many_is_one_write_for_all_recipients(
    core: App, clients: MemoryClients
) -> None:
    logged_in = [await clients.login_existing() for _ in range(5)]
    users = [tokens["user"]["id"] for _, tokens in logged_in]
    seqs = await core.publisher.publish_many(users, loose("catalog.changed"), Loose.of({"v": 2}))
    assert sorted(seqs) == sorted(users)
    for client, tokens in logged_in:
        event = await client.next_event()
        assert event.seq == seqs[tokens["user"]["id"]] and event.data == {"v": 2}


async def test_pruned_log_answers_not_recovered(core: App, clients: MemoryClients) -> None:
    client, tokens = await clients.login_existing()
    user_id = tokens["user"]["id"]
    for n in range(30):
        await core.publisher.publish(user_id, loose("e"), Loose.of({"n": n}))
    await collect(client, 30)
    assert core.db is not None
    removed = await event_log.prune(core.db, max_age_seconds=3600, max_per_user=10)
    assert removed == 20
    fresh = clients.anonymous()
    answer = await fresh.authenticate(tokens["accessToken"], last_seq=5)
    assert answer["recovered"] is False and answer["resumeFrom"] == 30
    ok = clients.anonymous()
    answer = await ok.authenticate(tokens["accessToken"], last_seq=25)
    assert answer["recovered"] is True
    assert await collect(ok, 5) == [26, 27, 28, 29, 30]


async def test_client_ahead_of_the_log_is_told_to_refetch(clients: MemoryClients) -> None:
    _, tokens = await clients.login_existing()
    fresh = clients.anonymous()
    answer = await fresh.authenticate(tokens["accessToken"], last_seq=500)
    assert answer["recovered"] is False and answer["resumeFrom"] == 0


async def test_a_replay_follows_the_clients_reading_speed(
    core: App, clients: MemoryClients
) -> None:
    """More than a socket's send buffer holds: the replay writes as the client reads
    (never more than the high-water mark ahead of it), every event once, in order."""
    _, tokens = await clients.login_existing()
    user_id = tokens["user"]["id"]
    filler = "x" * 3000
    for n in range(400):  # 1.2 MB, beyond server.send_buffer_bytes
        await core.publisher.publish(user_id, loose("e"), Loose.of({"n": n, "filler": filler}))
    resumed = clients.anonymous()
    await resumed.authenticate(tokens["accessToken"], last_seq=0)
    assert await collect(resumed, 400) == list(range(1, 401))
    sink = resumed.ws.sink  # type: ignore[attr-defined]
    assert sink.open and sink.most_unread <= HIGH_WATER + 3100


async def five_users_in_chunks_of_two(
    db_dsn: str, tmp_path: Path, clock: FakeClock, code_log: CodeLog
) -> tuple[App, MemoryClients, list[tuple[RtcClient, Any]], list[int]]:
    """A server whose fan-outs write two users per statement, and five logged-in users."""
    app = await prepared(db_dsn, tmp_path, clock, events={"fanout_chunk": 2})
    opened = MemoryClients(app, code_log)
    logged_in = [await opened.login_existing() for _ in range(5)]
    return app, opened, logged_in, [tokens["user"]["id"] for _, tokens in logged_in]


async def test_fan_out_in_chunks_reaches_everyone_once(
    db_dsn: str, tmp_path: Path, clock: FakeClock, code_log: CodeLog
) -> None:
    app, opened, logged_in, users = await five_users_in_chunks_of_two(
        db_dsn, tmp_path, clock, code_log
    )
    try:
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
    finally:
        await opened.close()
        await app.stop()


async def test_fan_out_whose_write_fails_mid_way_tells_the_caller(
    db_dsn: str, tmp_path: Path, clock: FakeClock, code_log: CodeLog
) -> None:
    """Chunks written before the failed one are delivered; the failed one stores nothing."""
    app, opened, logged_in, users = await five_users_in_chunks_of_two(
        db_dsn, tmp_path, clock, code_log
    )
    try:
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
    finally:
        await opened.close()
        await app.stop()


async def test_deleting_a_user_deletes_their_events(core: App, clients: MemoryClients) -> None:
    _, tokens = await clients.login_existing()
    user_id = tokens["user"]["id"]
    await core.publisher.publish(user_id, loose("e"), Loose.of({"n": 1}))
    assert core.db is not None
    await core.db.execute("DELETE FROM users WHERE id = $1", user_id)
    count = await core.db.fetchval("SELECT count(*) FROM user_events WHERE user_id = $1", user_id)
    assert count == 0
