"""Queries of idempotency keys (table ``idempotency_keys``).

Two ways to claim a key. :func:`claim` commits the claim on its own, before the method
runs (any method). A method that changes the database in one transaction can instead
put :func:`claim_sql` into the first statement of that transaction (:class:`KeyClaim`):
the claim then commits or rolls back with the change, saving a commit and a round
trip, and a crash before the commit leaves no claimed key behind. A concurrent call
with the same key waits on the uncommitted claim's unique-index entry until the first
transaction ends, then either claims the key (the first rolled back) or finds it taken.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.database import Database
from storage.events import Executor
from storage.retention import delete_batched


@dataclass(frozen=True, slots=True)
class Claimed:
    """This call owns the key: run the method, then :func:`complete` or :func:`release`."""


@dataclass(frozen=True, slots=True)
class Existing:
    method: str
    params_hash: bytes
    result: str | None  # JSON of the first call's result; None while it still runs


_CLAIM = """
    INSERT INTO idempotency_keys AS k (user_id, key, method, params_hash)
    VALUES ($U, $K, $M, $H)
    ON CONFLICT (user_id, key) DO UPDATE SET created_at = now()
        WHERE k.result IS NULL AND k.method = $M AND k.params_hash = $H
          AND k.created_at < now() - make_interval(secs => $S)
    RETURNING true AS claimed
"""


def _numbered(sql: str, first: int) -> str:
    for i, name in enumerate(("$U", "$K", "$M", "$H", "$S"), start=first):
        sql = sql.replace(name, f"${i}")
    return sql


def claim_sql(first: int) -> str:
    """The claim as a statement usable as a CTE, its parameters numbered from ``first``
    (:meth:`KeyClaim.args`, in order); it returns one row when this call owns the key."""
    return _numbered(_CLAIM, first)


@dataclass(frozen=True, slots=True)
class KeyClaim:
    """A key to claim inside the method's own transaction (see the module docstring)."""

    user_id: int
    key: str
    method: str
    params_hash: bytes
    stale_after: float  # a claim without result this old belongs to a dead process

    def args(self) -> tuple[int, str, str, bytes, float]:
        return (self.user_id, self.key, self.method, self.params_hash, self.stale_after)


class KeyTaken(Exception):
    """Raised inside the method's transaction when its :class:`KeyClaim` found the key
    taken (by a first call that committed, or a claim not stale yet): the transaction
    rolls back and the caller reads the key with :func:`existing`."""


async def existing(db: Executor, user_id: int, key: str) -> Existing | None:
    row = await db.fetchrow(
        """
        SELECT method, params_hash, result::text AS result FROM idempotency_keys
        WHERE user_id = $1 AND key = $2
        """,
        user_id,
        key,
    )
    return None if row is None else Existing(row["method"], row["params_hash"], row["result"])


async def claim(
    db: Executor, user_id: int, key: str, method: str, params_hash: bytes, stale_after: float
) -> Claimed | Existing | None:
    """Claim the key; None when it changed hands under us (the caller may retry).

    A claim still without result after ``stale_after`` seconds belongs to a first call
    whose process died: it is taken over.
    """
    for _ in range(3):
        inserted = await db.fetchval(
            _numbered(_CLAIM, 1), user_id, key, method, params_hash, stale_after
        )
        if inserted:
            return Claimed()
        found = await existing(db, user_id, key)
        if found is not None:
            return found
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


async def prune(db: Database, max_age_seconds: float) -> None:
    await delete_batched(
        db, "idempotency_keys", "created_at < now() - make_interval(secs => $1)", max_age_seconds
    )
