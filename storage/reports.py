"""Queries of reports (table ``reports``): one per booking and side, the daily limit
per reporter, the reporter's own list, and the admin console's list and status changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.erasure import DELETED_NAME
from storage.events import Executor


@dataclass(frozen=True, slots=True)
class ReportRow:
    id: int
    booking_id: int | None
    reporter_side: str
    reporter_id: int | None
    reporter_name: str | None
    reported_id: int | None
    reported_name: str | None
    service_name: str | None
    reason: str
    description: str
    status: str
    created_at: datetime
    updated_at: datetime


_SELECT = f"""
    SELECT r.id, r.booking_id, r.reporter_side, r.reporter_id,
           CASE WHEN r.reporter_id IS NULL THEN '{DELETED_NAME}' ELSE ru.full_name END
               AS reporter_name,
           r.reported_id,
           CASE WHEN r.reported_id IS NULL THEN '{DELETED_NAME}' ELSE du.full_name END
               AS reported_name,
           b.service_name, r.reason,
           r.description, r.status, r.created_at, r.updated_at
    FROM r
    LEFT JOIN users ru ON ru.id = r.reporter_id
    LEFT JOIN users du ON du.id = r.reported_id
    LEFT JOIN bookings b ON b.id = r.booking_id
"""


def _report(row: Any) -> ReportRow:
    return ReportRow(*(row[k] for k in ReportRow.__slots__))


async def reports_since(
    conn: Executor, reporter_id: int, since: datetime
) -> tuple[int, datetime | None]:
    """Row-lock the reporter, then count their reports since ``since`` (and the oldest).

    ``FOR NO KEY UPDATE`` serializes one reporter's reports without blocking the key
    share locks that inserts referencing the user (bookings, notifications) take."""
    await conn.execute("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE", reporter_id)
    row = await conn.fetchrow(
        "SELECT count(*) AS n, min(created_at) AS oldest FROM reports"
        " WHERE reporter_id = $1 AND created_at > $2",
        reporter_id,
        since,
    )
    return row["n"], row["oldest"]


async def insert_report(
    conn: Executor,
    *,
    booking_id: int,
    reporter_side: str,
    reporter_id: int,
    reported_id: int | None,
    reason: str,
    description: str,
    now: datetime,
) -> ReportRow | None:
    """Insert the report; None if this side of the booking reported it already."""
    row = await conn.fetchrow(
        f"""
        WITH r AS (
            INSERT INTO reports (booking_id, reporter_side, reporter_id, reported_id, reason,
                                 description, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
            ON CONFLICT (booking_id, reporter_side) DO NOTHING
            RETURNING *
        ) {_SELECT}
        """,
        booking_id,
        reporter_side,
        reporter_id,
        reported_id,
        reason,
        description,
        now,
    )
    return None if row is None else _report(row)


async def list_reports(
    db: Executor,
    *,
    status: str | None,
    before_id: int | None,
    limit: int,
    reporter_side: str | None = None,
    reporter_id: int | None = None,
) -> list[ReportRow]:
    """Reports newest first, ``limit`` before ``before_id`` (keyset), of one status,
    reporting side or reporter, or all. Each filter combination has a query text of its
    own, so each keeps its index plan ((reporter, id), (side, status, id), (status, id)
    or (side, id))."""
    where = "id < $1"
    args: list[Any] = [before_id or 2**63 - 1, limit]
    for column, value in (
        ("reporter_id", reporter_id),
        ("reporter_side", reporter_side),
        ("status", status),
    ):
        if value is not None:
            args.append(value)
            where += f" AND {column} = ${len(args)}"
    rows = await db.fetch(
        f"WITH r AS (SELECT * FROM reports WHERE {where} ORDER BY id DESC LIMIT $2)"
        f" {_SELECT} ORDER BY r.id DESC",
        *args,
    )
    return [_report(r) for r in rows]


async def get_report(db: Executor, report_id: int) -> ReportRow | None:
    row = await db.fetchrow(f"WITH r AS (SELECT * FROM reports WHERE id = $1) {_SELECT}", report_id)
    return None if row is None else _report(row)


async def missing(db: Executor, report_ids: list[int]) -> list[int]:
    """Those of ``report_ids`` that are no report's, ascending."""
    rows = await db.fetch(
        """
        SELECT want.id FROM unnest($1::bigint[]) AS want (id)
        WHERE NOT EXISTS (SELECT 1 FROM reports WHERE reports.id = want.id)
        ORDER BY want.id
        """,
        report_ids,
    )
    return [row["id"] for row in rows]


async def set_status(
    db: Executor, report_ids: list[int], status: str, now: datetime
) -> list[ReportRow]:
    """Set ``status`` on those of ``report_ids`` not in it already; the reports changed,
    by id. (A concurrent change of one of them is waited for, then seen.)"""
    rows = await db.fetch(
        f"""
        WITH r AS (
            UPDATE reports SET status = $2, updated_at = $3
            WHERE id = ANY($1::bigint[]) AND status <> $2
            RETURNING *
        ) {_SELECT} ORDER BY r.id
        """,
        report_ids,
        status,
        now,
    )
    return [_report(r) for r in rows]
