"""Deleting what is past its retention in small batches: each batch is one short
statement in its own transaction, so pruning a large backlog never holds many row locks
or one long transaction (autovacuum and replicas keep up, writers never wait long)."""

from __future__ import annotations

from storage.database import Database

BATCH = 5000
# A backlog larger than this many batches is left for the next round.
MAX_BATCHES = 200


async def delete_batched(
    db: Database,
    table: str,
    condition: str,
    *args: object,
    batch: int = BATCH,
    max_batches: int = MAX_BATCHES,
) -> int:
    """``DELETE FROM table WHERE condition``, ``batch`` rows per statement; how many.

    ``table`` and ``condition`` are the caller's SQL (never user input); ``args`` are
    the condition's parameters ($1 ...). The condition may refer to ``table`` by name.
    """
    sql = (
        f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("
        f"SELECT ctid FROM {table} WHERE {condition} LIMIT {int(batch)}))"
    )
    total = 0
    for _ in range(max_batches):
        tag = await db.execute(sql, *args)
        deleted = int(tag.rsplit(" ", 1)[-1])
        total += deleted
        if deleted < batch:
            break
    return total
