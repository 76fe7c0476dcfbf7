"""Queries of in-app notifications (table ``notifications``). Every query names the
user: a notification is never reachable by id alone. Notifications of bookings are
inserted together with the booking change (:mod:`storage.bookings`, :mod:`storage.ratings`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from storage.bookings import NotificationRow, notification_row
from storage.database import Database
from storage.events import Executor
from storage.retention import delete_batched

_COLUMNS = "id, user_id, type, title, body, booking_id, created_at, read_at"


async def list_notifications(
    db: Executor,
    user_id: int,
    *,
    type: str | None,
    unread_only: bool,
    before_id: int | None,
    limit: int,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[NotificationRow]:
    """The user's notifications, newest first, ``limit`` before ``before_id`` (keyset).
    Each filter combination has a query text of its own, so each keeps its index plan
    ((user, id), (user, type, id), or the unread partial index)."""
    where = "user_id = $1 AND id < $2"
    args: list[Any] = [user_id, before_id or 2**63 - 1, limit]
    if type is not None:
        where += " AND type = $4"
        args.append(type)
    if unread_only:
        where += " AND read_at IS NULL"
    if since is not None:
        args.append(since)
        where += f" AND created_at >= ${len(args)}"
    if until is not None:
        args.append(until)
        where += f" AND created_at < ${len(args)}"
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM notifications WHERE {where} ORDER BY id DESC LIMIT $3", *args
    )
    return [notification_row(r) for r in rows]


async def unread_count(db: Executor, user_id: int) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL", user_id
    )
    return count


async def mark_read(db: Executor, user_id: int, ids: list[int], now: datetime) -> list[int]:
    """Mark those of ``ids`` that are the user's and unread as read; the ids changed."""
    rows = await db.fetch(
        """
        UPDATE notifications SET read_at = $3
        WHERE user_id = $1 AND id = ANY($2::bigint[]) AND read_at IS NULL
        RETURNING id
        """,
        user_id,
        ids,
        now,
    )
    return sorted(row["id"] for row in rows)


async def delete(db: Executor, user_id: int, ids: list[int]) -> list[int]:
    """Delete those of ``ids`` that are the user's; the ids deleted."""
    rows = await db.fetch(
        "DELETE FROM notifications WHERE user_id = $1 AND id = ANY($2::bigint[]) RETURNING id",
        user_id,
        ids,
    )
    return sorted(row["id"] for row in rows)


async def mark_all_read(db: Executor, user_id: int, now: datetime) -> int:
    status = await db.execute(
        "UPDATE notifications SET read_at = $2 WHERE user_id = $1 AND read_at IS NULL",
        user_id,
        now,
    )
    return _count(status)


async def prune(db: Database, before: datetime) -> int:
    """Delete notifications created before ``before``, read or not, in batches; how many."""
    return await delete_batched(db, "notifications", "created_at < $1", before)


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1]) if status and status[-1].isdigit() else 0


async def insert_notification(
    conn: Executor,
    *,
    user_id: int,
    type: str,
    title: str,
    body: str,
    booking_id: int | None,
    now: datetime,
) -> NotificationRow:
    row = await conn.fetchrow(
        f"""
        INSERT INTO notifications (user_id, type, title, body, booking_id, created_at)
        VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}
        """,
        user_id,
        type,
        title,
        body,
        booking_id,
        now,
    )
    return notification_row(row)
