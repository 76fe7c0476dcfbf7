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
