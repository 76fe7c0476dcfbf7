"""Pruning in batches: each batch one short statement, the backlog bounded per round."""

from __future__ import annotations

from storage.database import Database
from storage.retention import delete_batched


async def rows(db: Database) -> list[int]:
    return [r["n"] for r in await db.fetch("SELECT n FROM pruned ORDER BY n")]


async def test_deletes_what_matches_in_batches_and_keeps_the_rest(db: Database) -> None:
    await db.execute("CREATE TABLE pruned (n int NOT NULL)")
    await db.execute("INSERT INTO pruned SELECT generate_series(1, 23)")
    deleted = await delete_batched(db, "pruned", "pruned.n % $1 = 0", 2, batch=5)
    assert deleted == 11
    assert await rows(db) == list(range(1, 24, 2))


async def test_a_round_stops_after_its_batches(db: Database) -> None:
    await db.execute("CREATE TABLE pruned (n int NOT NULL)")
    await db.execute("INSERT INTO pruned SELECT generate_series(1, 20)")
    assert await delete_batched(db, "pruned", "n > $1", 0, batch=4, max_batches=2) == 8
    assert len(await rows(db)) == 12
    assert await delete_batched(db, "pruned", "n > $1", 0, batch=4) == 12  # the next round
    assert await rows(db) == []


async def test_the_event_log_keeps_what_a_client_may_still_replay(db: Database) -> None:
    from storage import events as event_log
    from storage.events import NewEvent

    from .test_outbox import users

    aged, busy, recent = await users(db, 3)
    async with db.transaction() as conn:
        for _ in range(5):
            await event_log.append_each(
                conn, [NewEvent(u, "e", "{}", push_due=None) for u in (aged, busy)]
            )
        await event_log.append_each(conn, [NewEvent(recent, "e", "{}", push_due=None)] * 2)
    # The aged user's first two events are past the 7-day window.
    await db.execute(
        "UPDATE user_events SET created_at = now() - interval '8 days'"
        " WHERE user_id = $1 AND seq <= 2",
        aged,
    )
    removed = await event_log.prune(db, max_age_seconds=7 * 86400, max_per_user=3)
    left = await db.fetch("SELECT user_id, seq FROM user_events ORDER BY user_id, seq")
    kept = {u: [r["seq"] for r in left if r["user_id"] == u] for u in (aged, busy, recent)}
    # Age: seqs 1-2 of the aged user; count: all but the newest 3 of the others.
    assert kept == {aged: [3, 4, 5], busy: [3, 4, 5], recent: [1, 2]}
    assert removed == 4
