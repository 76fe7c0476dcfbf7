"""Queries of idempotency keys (table ``idempotency_keys``)."""

from __future__ import annotations

from dataclasses import dataclass

from storage.events import Executor


@dataclass(frozen=True, slots=True)
class Claimed:
    """This call owns the key: run the method, then :func:`complete` or :func:`release`."""


@dataclass(frozen=True, slots=True)
class Existing:
    method: str
    params_hash: bytes
    result: str | None  # JSON of the first call's result; None while it still runs


async def claim(
    db: Executor, user_id: int, key: str, method: str, params_hash: bytes, stale_after: float
) -> Claimed | Existing | None:
    """Claim the key; None when it changed hands under us (the caller may retry).

    A claim still without result after ``stale_after`` seconds belongs to a first call
    whose process died: it is taken over.
    """
    for _ in range(3):
        inserted = await db.fetchval(
            """
            INSERT INTO idempotency_keys AS k (user_id, key, method, params_hash)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (user_id, key) DO UPDATE SET created_at = now()
                WHERE k.result IS NULL AND k.method = $3 AND k.params_hash = $4
                  AND k.created_at < now() - make_interval(secs => $5)
            RETURNING true
            """,
            user_id,
            key,
            method,
            params_hash,
            stale_after,
        )
        if inserted:
            return Claimed()
        row = await db.fetchrow(
            """
            SELECT method, params_hash, result::text AS result FROM idempotency_keys
            WHERE user_id = $1 AND key = $2
            """,
            user_id,
            key,
        )
        if row is not None:
            return Existing(row["method"], row["params_hash"], row["result"])
        # Released by a failed first call in between: try to claim it again.
    return None


async def complete(db: Executor, user_id: int, key: str, result_json: str) -> None:
    await db.execute(
        "UPDATE idempotency_keys SET result = $3::json WHERE user_id = $1 AND key = $2",
        user_id,
        key,
        result_json,
    )


async def release(db: Executor, user_id: int, key: str) -> None:
    """The first call failed: forget the key so that a retry runs the method again."""
    await db.execute(
        "DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND result IS NULL",
        user_id,
        key,
    )


async def prune(db: Executor, max_age_seconds: float) -> None:
    await db.execute(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
        max_age_seconds,
    )
