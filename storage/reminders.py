"""Queries of the reminder jobs (api/reminders.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage.database import Database
from storage.events import Executor
from storage.retention import delete_batched


@dataclass(frozen=True, slots=True)
class DueBooking:
    id: int
    customer_id: int | None
    provider_id: int | None
    service_name: str
    provider_name: str | None
    customer_name: str | None
    appointment_at: datetime
    status: str


async def open_bookings(
    db: Executor, start: datetime, end: datetime, statuses: tuple[str, ...]
) -> list[DueBooking]:
    """Bookings in ``statuses`` whose appointment is in [start, end), by time."""
    rows = await db.fetch(
        """
        SELECT id, customer_id, provider_id, service_name, provider_name, customer_name,
               appointment_at, status
        FROM bookings
        WHERE status IN ('pending', 'accepted') AND status = ANY($3::text[])
          AND appointment_at >= $1 AND appointment_at < $2
        ORDER BY appointment_at, id
        """,
        start,
        end,
        list(statuses),
    )
    return [DueBooking(*row.values()) for row in rows]


async def claim(db: Executor, kind: str, key: str, now: datetime) -> bool:
    """Mark reminder (kind, key) sent; False if it already was (inside the transaction
    that writes its notification)."""
    row = await db.fetchval(
        "INSERT INTO reminders_sent (kind, key, sent_at) VALUES ($1, $2, $3)"
        " ON CONFLICT DO NOTHING RETURNING 1",
        kind,
        key,
        now,
    )
    return row is not None


async def prune(db: Database, before: datetime) -> int:
    return await delete_batched(db, "reminders_sent", "sent_at < $1", before)


@dataclass(frozen=True, slots=True)
class EndingListing:
    id: int
    provider_id: int | None
    service_name: str
    price_paise: int
    active_until: datetime


async def paid_listings_ending(
    db: Executor, after: datetime, until: datetime
) -> list[EndingListing]:
    """Active listings of paid services whose period ends in (after, until]."""
    rows = await db.fetch(
        """
        SELECT ps.id, ps.provider_id, s.name, s.price_paise, ps.active_until
        FROM provider_services ps JOIN services s ON s.id = ps.service_id
        WHERE ps.status = 'active' AND ps.active_until > $1 AND ps.active_until <= $2
          AND s.is_paid
        ORDER BY ps.active_until, ps.id
        """,
        after,
        until,
    )
    return [EndingListing(*row.values()) for row in rows]


@dataclass(frozen=True, slots=True)
class Access:
    user_id: int
    active_until: datetime


async def labour_access_ending(db: Executor, after: datetime, until: datetime) -> list[Access]:
    """Customers whose labour access ends in (after, until]."""
    rows = await db.fetch(
        "SELECT user_id, active_until FROM labour_access"
        " WHERE active_until > $1 AND active_until <= $2 ORDER BY active_until, user_id",
        after,
        until,
    )
    return [Access(*row.values()) for row in rows]
