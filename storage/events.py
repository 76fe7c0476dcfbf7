"""Queries of the per-user event log (tables ``user_event_cursors`` and ``user_events``).

Each event gets its user's next ``seq`` in the same statement that stores it. The
counter row stays locked until the transaction commits, so a user's events commit in
``seq`` order and a rolled-back event gives its ``seq`` back: the log has no holes
except where pruning removed old events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from storage.database import Database
from storage.retention import delete_batched


class Executor(Protocol):
    """A :class:`storage.database.Database` or a connection inside its transaction."""

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...

    async def fetchrow(self, query: str, *args: Any) -> Any: ...

    async def fetchval(self, query: str, *args: Any) -> Any: ...

    async def execute(self, query: str, *args: Any) -> str: ...


@dataclass(frozen=True, slots=True)
class StoredEvent:
    seq: int
    event: str
    payload: str  # JSON text, as sent on the wire


@dataclass(frozen=True, slots=True)
class Cursor:
    last_seq: int  # newest event's seq (0: none yet)
    acked_seq: int  # highest seq acknowledged by any of the user's devices
    first_seq: int | None  # oldest seq still in the log (None: log empty)


_APPEND = """
WITH seqs AS (
    INSERT INTO user_event_cursors AS c (user_id, last_seq)
    SELECT u, 1 FROM unnest($1::bigint[]) AS u ORDER BY u
    ON CONFLICT (user_id) DO UPDATE SET last_seq = c.last_seq + 1
    RETURNING user_id, last_seq
), stored AS (
    INSERT INTO user_events (user_id, seq, event, payload)
    SELECT user_id, last_seq, $2, $3::json FROM seqs
    RETURNING user_id, seq
)
-- Two arrays rather than a row per user: decoding thousands of rows costs the
-- publishing server more than the statement costs PostgreSQL.
SELECT array_agg(user_id) AS users, array_agg(seq) AS seqs FROM stored
"""


async def append(db: Executor, user_ids: Sequence[int], event: str, payload: str) -> dict[int, int]:
    """Store one event for each of ``user_ids`` in one statement; returns user → seq.

    Users are locked in id order, so two concurrent fan-outs cannot deadlock.
    """
    unique = sorted(set(user_ids))
    if not unique:
        return {}
    row = await db.fetchrow(_APPEND, unique, event, payload)
    if row is None or row["users"] is None:
        return {}
    return dict(zip(row["users"], row["seqs"], strict=True))


async def read_after(
    db: Executor, user_id: int, after_seq: int, limit: int, upto: int | None = None
) -> list[StoredEvent]:
    """Events of ``user_id`` with ``after_seq < seq <= upto``, oldest first."""
    rows = await db.fetch(
        """
        SELECT seq, event, payload FROM user_events
        WHERE user_id = $1 AND seq > $2 AND ($3::bigint IS NULL OR seq <= $3)
        ORDER BY seq LIMIT $4
        """,
        user_id,
        after_seq,
        upto,
        limit,
    )
    return [StoredEvent(row["seq"], row["event"], row["payload"]) for row in rows]


async def cursor(db: Executor, user_id: int) -> Cursor:
    row = await db.fetchrow(
        """
        SELECT c.last_seq, c.acked_seq,
               (SELECT min(seq) FROM user_events e WHERE e.user_id = $1) AS first_seq
        FROM user_event_cursors c WHERE c.user_id = $1
        """,
        user_id,
    )
    if row is None:
        return Cursor(0, 0, None)
    return Cursor(row["last_seq"], row["acked_seq"], row["first_seq"])


async def cursors(db: Executor, user_ids: Sequence[int]) -> dict[int, Cursor]:
    """:func:`cursor` of each of ``user_ids`` in one query (users without events are
    left out: their cursor is ``Cursor(0, 0, None)``)."""
    rows = await db.fetch(
        """
        SELECT c.user_id, c.last_seq, c.acked_seq,
               (SELECT min(seq) FROM user_events e WHERE e.user_id = c.user_id) AS first_seq
        FROM user_event_cursors c WHERE c.user_id = ANY($1::bigint[])
        """,
        list(user_ids),
    )
    return {
        row["user_id"]: Cursor(row["last_seq"], row["acked_seq"], row["first_seq"]) for row in rows
    }


async def last_seqs(db: Executor, user_ids: Sequence[int]) -> dict[int, int]:
    """The newest ``seq`` of each of ``user_ids`` that has events (others left out)."""
    rows = await db.fetch(
        "SELECT user_id, last_seq FROM user_event_cursors WHERE user_id = ANY($1::bigint[])",
        list(user_ids),
    )
    return {row["user_id"]: row["last_seq"] for row in rows}


async def acknowledge(db: Executor, user_id: int, seq: int) -> int:
    """Record a cumulative ack (never backwards, never past the newest event)."""
    acked = await db.fetchval(
        """
        UPDATE user_event_cursors SET acked_seq = LEAST(GREATEST(acked_seq, $2), last_seq)
        WHERE user_id = $1 RETURNING acked_seq
        """,
        user_id,
        seq,
    )
    return int(acked or 0)


async def prune(db: Database, max_age_seconds: float, max_per_user: int) -> int:
    """Delete events older than the age bound or beyond the count bound, in batches;
    returns rows."""
    by_age = await delete_batched(
        db, "user_events", "created_at < now() - make_interval(secs => $1)", max_age_seconds
    )
    by_count = await delete_batched(
        db,
        "user_events",
        "EXISTS (SELECT 1 FROM user_event_cursors c WHERE c.user_id = user_events.user_id"
        " AND user_events.seq <= c.last_seq - $1)",
        max_per_user,
    )
    # Push intents of events that are gone can no longer be sent.
    await delete_batched(
        db, "push_intents", "due_at < now() - make_interval(secs => $1)", max_age_seconds
    )
    return by_age + by_count


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1]) if status and status[-1].isdigit() else 0


# --- Events written inside a domain transaction ------------------------------------------


def lock_cursors_sql(users: str) -> str:
    """A statement (usable as a CTE) that row-locks the event cursors of ``users`` (an SQL
    ``bigint[]`` expression), creating missing ones, in user id order.

    A transaction that will write events for these users and put counts in them (unread
    badges, earnings) takes this lock *before* counting: under read committed, every
    statement after it sees what the previous holder of the lock committed, so the
    counts of a user's events are in ``seq`` order. INSERT ... ON CONFLICT DO UPDATE
    locks the conflicting row even when its WHERE is false (PostgreSQL manual, INSERT).
    """
    return f"""
        INSERT INTO user_event_cursors AS c (user_id)
        SELECT DISTINCT u FROM unnest({users}) AS u WHERE u IS NOT NULL ORDER BY u
        ON CONFLICT (user_id) DO UPDATE SET last_seq = c.last_seq WHERE false
        RETURNING user_id
    """


async def lock_cursors(conn: Executor, user_ids: Sequence[int]) -> None:
    await conn.execute(lock_cursors_sql("$1::bigint[]"), list(user_ids))


def append_each_sql(
    first: int, fill: str | None = None, only_if: str | None = None
) -> tuple[str, str]:
    """The CTEs that store events, each for its own user (parameters from ``first``:
    users, events, payloads, push due times, then with ``fill`` a boolean per event),
    and the expression of their seqs in order, for a statement of the caller's.

    ``fill`` is an SQL expression of ``i.payload``: it replaces the payload of the
    events flagged for it, so that a statement can put into an event a value it reads
    itself (the counts of storage.bookings). With ``only_if`` (an SQL condition), no
    event is stored unless it holds."""
    payload = "i.payload"
    types = ("bigint[]", "text[]", "text[]", "timestamptz[]")
    unnest = ", ".join(f"${first + i}::{t}" for i, t in enumerate(types))
    columns = "user_id, event, payload, push_due, ord"
    if fill is not None:
        unnest += f", ${first + 4}::boolean[]"
        columns = "user_id, event, payload, push_due, fill, ord"
        payload = f"CASE WHEN i.fill THEN {fill} ELSE i.payload END"
    ctes = f"""
    input AS (
        SELECT * FROM unnest({unnest}) WITH ORDINALITY AS t ({columns})
        {"WHERE " + only_if if only_if else ""}
    ), counts AS (
        SELECT user_id, count(*) AS n FROM input GROUP BY user_id
    ), seqs AS (
        INSERT INTO user_event_cursors AS c (user_id, last_seq)
        SELECT user_id, n FROM counts ORDER BY user_id
        ON CONFLICT (user_id) DO UPDATE SET last_seq = c.last_seq + EXCLUDED.last_seq
        RETURNING user_id, last_seq
    ), numbered AS (
        -- A user's events get the seqs just reserved for them, in the order given.
        SELECT i.user_id, i.event, {payload} AS payload, i.push_due, i.ord,
               s.last_seq - count(*) OVER w + row_number() OVER (w ORDER BY i.ord) AS seq
        FROM input i JOIN seqs s USING (user_id)
        WINDOW w AS (PARTITION BY i.user_id)
    ), stored AS (
        INSERT INTO user_events (user_id, seq, event, payload)
        SELECT user_id, seq, event, payload::json FROM numbered
    ), pushed AS (
        INSERT INTO push_intents (user_id, seq, event, due_at)
        SELECT user_id, seq, event, push_due FROM numbered WHERE push_due IS NOT NULL
    )"""
    return ctes, "(SELECT array_agg(seq ORDER BY ord) FROM numbered) AS seqs"


def answer_sql(first: int) -> str:
    """A CTE storing the method's result for its idempotency key (parameters from
    ``first``: :meth:`Answer.args`)."""
    return f"""
    answered AS (
        UPDATE idempotency_keys SET result = ${first + 2}::json
        WHERE user_id = ${first} AND key = ${first + 1}
    )"""


def event_args(events: Sequence[NewEvent], *, with_fill: bool = False) -> list[Any]:
    args: list[Any] = [
        [e.user_id for e in events],
        [e.event for e in events],
        [e.payload for e in events],
        [e.push_due for e in events],
    ]
    if with_fill:
        args.append([e.fill for e in events])
    return args


@dataclass(frozen=True, slots=True)
class Answer:
    """A method's result stored for its idempotency key with the events."""

    user_id: int
    key: str
    result: str  # JSON text

    def args(self) -> tuple[int, str, str]:
        return (self.user_id, self.key, self.result)


@dataclass(frozen=True, slots=True)
class NewEvent:
    user_id: int
    event: str
    payload: str  # JSON text
    push_due: datetime | None = None  # push it then unless a device acknowledged it
    fill: bool = False  # its payload is completed by the statement (append_each_sql)


_APPEND_CTES, _SEQS = append_each_sql(1)
_APPEND_EACH = f"WITH {_APPEND_CTES}\nSELECT {_SEQS}"
_APPEND_EACH_ANSWERED = f"WITH {_APPEND_CTES}, {answer_sql(5)}\nSELECT {_SEQS}"


async def append_each(
    conn: Executor, events: Sequence[NewEvent], *, answer: Answer | None = None
) -> list[int]:
    """Store events, each for its own user, in one statement; their seqs, in order.

    Meant for the caller's transaction (the events commit with the domain change that
    caused them). An event with ``push_due`` is also recorded in ``push_intents``;
    ``answer`` is stored as the result of its idempotency key by the same statement.
    """
    args = event_args(events)
    if answer is None:
        if not events:
            return []
        row = await conn.fetchrow(_APPEND_EACH, *args)
    else:
        row = await conn.fetchrow(_APPEND_EACH_ANSWERED, *args, *answer.args())
    return list(row["seqs"] or [])
