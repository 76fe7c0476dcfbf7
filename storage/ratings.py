"""Queries of ratings (table ``ratings``) and the rating figures of registrations.

The customer's rating of a booking moves its registration's ``rating_count`` and
``rating_sum`` in the same transaction, so listings read an average without aggregating.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage.erasure import DELETED_NAME
from storage.events import Executor


@dataclass(frozen=True, slots=True)
class RatingRecord:
    booking_id: int
    rater_side: str
    stars: int
    review: str | None
    created_at: datetime


async def insert_rating(
    conn: Executor,
    *,
    booking_id: int,
    rater_side: str,
    rater_id: int,
    ratee_id: int | None,
    stars: int,
    review: str | None,
    now: datetime,
) -> RatingRecord | None:
    """Insert the side's rating of the booking; None if that side rated it already."""
    row = await conn.fetchrow(
        """
        INSERT INTO ratings (booking_id, rater_side, rater_id, ratee_id, stars, review,
                             created_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (booking_id, rater_side) DO NOTHING
        RETURNING booking_id, rater_side, stars, review, created_at
        """,
        booking_id,
        rater_side,
        rater_id,
        ratee_id,
        stars,
        review,
        now,
    )
    return None if row is None else RatingRecord(*(row[k] for k in RatingRecord.__slots__))


async def add_to_registration(conn: Executor, provider_service_id: int, stars: int) -> None:
    await conn.execute(
        """
        UPDATE provider_services
        SET rating_count = rating_count + 1, rating_sum = rating_sum + $2
        WHERE id = $1
        """,
        provider_service_id,
        stars,
    )


@dataclass(frozen=True, slots=True)
class ReviewRow:
    stars: int
    review: str | None
    customer_name: str | None
    created_at: datetime


async def recent_reviews(db: Executor, provider_service_id: int, limit: int) -> list[ReviewRow]:
    """The newest customer ratings of a registration (first names only)."""
    rows = await db.fetch(
        f"""
        SELECT r.stars, r.review,
               CASE WHEN b.customer_id IS NULL THEN '{DELETED_NAME}'
                    ELSE split_part(coalesce(u.full_name, b.customer_name), ' ', 1)
               END AS customer_name, r.created_at
        FROM bookings b
        JOIN ratings r ON r.booking_id = b.id AND r.rater_side = 'customer'
        LEFT JOIN users u ON u.id = b.customer_id
        WHERE b.provider_service_id = $1 AND b.status = 'completed'
        ORDER BY r.created_at DESC, r.booking_id DESC LIMIT $2
        """,
        provider_service_id,
        limit,
    )
    return [ReviewRow(*(r[k] for k in ReviewRow.__slots__)) for r in rows]
