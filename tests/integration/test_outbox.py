"""Events written inside a domain transaction (storage.events.append_each, lock_cursors)
against a real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from storage import Database
from storage import events as event_log
from storage.events import NewEvent


async def users(db: Database, count: int) -> list[int]:
    rows = await db.fetch(
        "INSERT INTO users (phone, role) SELECT '+9190000' || g, 'customer'"
        " FROM generate_series(10000, 10000 + $1 - 1) g RETURNING id",
        count,
    )
    return [r["id"] for r in rows]


async def test_each_user_gets_consecutive_seqs_in_the_order_given(db: Database) -> None:
    a, b = await users(db, 2)
    await event_log.append(db, [a], "before", "{}")
    due = datetime(2030, 1, 1, tzinfo=UTC)
    async with db.transaction() as conn:
        seqs = await event_log.append_each(
            conn,
            [
                NewEvent(b, "b1", '{"n": 1}'),
                NewEvent(a, "a1", '{"n": 2}', push_due=due),
                NewEvent(b, "b2", '{"n": 3}'),
                NewEvent(a, "a2", '{"n": 4}'),
            ],
        )
    assert seqs == [1, 2, 2, 3]
    stored = await event_log.read_after(db, a, 0, 10)
    assert [(e.seq, e.event) for e in stored] == [(1, "before"), (2, "a1"), (3, "a2")]
    assert [(e.seq, e.event) for e in await event_log.read_after(db, b, 0, 10)] == [
        (1, "b1"),
        (2, "b2"),
    ]
    intents = await db.fetch("SELECT user_id, seq, event, due_at FROM push_intents")
    assert [tuple(r) for r in intents] == [(a, 2, "a1", due)]
    assert (await event_log.cursor(db, a)).last_seq == 3


async def test_a_rolled_back_transaction_gives_its_seqs_back(db: Database) -> None:
    (a,) = await users(db, 1)

    class Abort(Exception):
        pass

    try:
        async with db.transaction() as conn:
            await event_log.append_each(conn, [NewEvent(a, "lost", "{}")])
            raise Abort
    except Abort:
        pass
    assert await event_log.append(db, [a], "kept", "{}") == {a: 1}


async def test_after_the_cursor_lock_a_transaction_sees_the_previous_holders_commit(
    db: Database,
) -> None:
    (a,) = await users(db, 1)
    first = await db._pool.acquire()  # noqa: SLF001 - two raw connections of the pool
    second = await db._pool.acquire()  # noqa: SLF001
    try:
        tx1 = first.transaction()
        await tx1.start()
        await event_log.lock_cursors(first, [a])
        tx2 = second.transaction()
        await tx2.start()
        waiting = asyncio.ensure_future(event_log.lock_cursors(second, [a]))
        pid = second.get_server_pid()
        async with asyncio.timeout(10):
            while not await db.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
            ):
                await asyncio.sleep(0.005)
        assert not waiting.done()
        await first.execute(
            "INSERT INTO notifications (user_id, type, title, body, created_at)"
            " VALUES ($1, 't', 't', 'b', now())",
            a,
        )
        await tx1.commit()
        await waiting
        # The count that goes into the second transaction's event sees the first's work.
        assert (
            await second.fetchval("SELECT count(*) FROM notifications WHERE user_id = $1", a) == 1
        )
        await tx2.commit()
    finally:
        await db._pool.release(first)  # noqa: SLF001
        await db._pool.release(second)  # noqa: SLF001


async def test_pruning_drops_push_intents_of_pruned_events(db: Database) -> None:
    (a,) = await users(db, 1)
    old = datetime.now(UTC) - timedelta(days=30)
    async with db.transaction() as conn:
        await event_log.append_each(conn, [NewEvent(a, "offer", "{}", push_due=old)])
    await event_log.prune(db, max_age_seconds=7 * 86400, max_per_user=1000)
    assert await db.fetchval("SELECT count(*) FROM push_intents") == 0


async def test_deleting_a_user_removes_their_events_and_push_intents(db: Database) -> None:
    # push_intents has no foreign key to users (migration 0071): the trigger that
    # removes a deleted user's events removes their intents too.
    a, b = await users(db, 2)
    due = datetime(2030, 1, 1, tzinfo=UTC)
    async with db.transaction() as conn:
        await event_log.append_each(
            conn,
            [NewEvent(a, "offer", "{}", push_due=due), NewEvent(b, "offer", "{}", push_due=due)],
        )
    await db.execute("DELETE FROM users WHERE id = $1", a)
    intents = await db.fetch("SELECT user_id FROM push_intents")
    assert [r["user_id"] for r in intents] == [b]
    assert await db.fetchval("SELECT count(*) FROM user_events WHERE user_id = $1", a) == 0
    assert await db.fetchval("SELECT count(*) FROM user_events WHERE user_id = $1", b) == 1
