"""Ratings (method ``ratings.create``; reference 8.3).

Both sides rate the other once per booking, and only once the job is completed (the
original let providers rate at any status). The customer's stars move the
registration's average, which listings show (``ratingAverage``, ``ratingCount``).
The rated side gets a notification (``rating_received``), the rater one too
(``rating_submitted``); both get ``booking.updated`` (change ``rated``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from api.bookings.events import BOOKING_UPDATED
from api.bookings.models import BookingUpdated, booking_view
from api.bookings.rules import Side, Status
from api.bookings.service import party, side_of
from api.notifications import NotificationType, new_notification, stage_notification
from kernel.clock import Clock
from kernel.errors import Conflict, NotFound, StateConflict
from kernel.outbox import Outbox
from kernel.rpc.registry import Caller, IdempotentParams, MethodRegistry, Result
from kernel.rpc.text import Paragraphs
from storage import bookings, ratings
from storage.database import Database
from storage.events import lock_cursors

ROLES = frozenset({"customer", "provider"})

Id = Annotated[int, Field(ge=1, le=2**63 - 1)]
Review = Annotated[str, Paragraphs(1, 500)]


class RateBooking(IdempotentParams):
    booking_id: Id
    stars: int = Field(ge=1, le=5)
    review: Review | None = None


class Rating(Result):
    booking_id: int
    rater_side: str = Field(description="customer (of the provider) or provider (of the customer)")
    stars: int
    review: str | None
    created_at: datetime


class RatingService:
    def __init__(self, db: Database, outbox: Outbox, clock: Clock) -> None:
        self._db = db
        self._outbox = outbox
        self._clock = clock

    def register(self, registry: MethodRegistry) -> None:
        registry.add("ratings.create", self.create, params=RateBooking, result=Rating, roles=ROLES)

    async def create(self, caller: Caller, params: RateBooking) -> Rating:
        """Rate the other side of one of your completed bookings (once)."""
        user_id = caller.require_user()
        side = side_of(caller)
        now = self._clock.now()
        staged = self._outbox.stage()
        async with self._db.transaction() as conn:
            locked = await bookings.lock_booking(conn, params.booking_id, user_id)
            if locked is None or party(locked, side) != user_id:
                raise NotFound("no such booking", field="bookingId")
            if locked.status != Status.COMPLETED:
                raise StateConflict(
                    f"the booking is {locked.status}: only completed jobs are rated",
                    bookingId=locked.id,
                    status=locked.status,
                    action="rate",
                )
            ratee = locked.provider_id if side is Side.CUSTOMER else locked.customer_id
            record = await ratings.insert_rating(
                conn,
                booking_id=locked.id,
                rater_side=side.value,
                rater_id=user_id,
                ratee_id=ratee,
                stars=params.stars,
                review=params.review,
                now=now,
            )
            if record is None:
                raise Conflict("you rated this booking already", reason="already_rated")
            if side is Side.CUSTOMER and locked.provider_service_id is not None:
                await ratings.add_to_registration(conn, locked.provider_service_id, params.stars)
            if side is Side.CUSTOMER:
                rater_name, ratee_name = locked.customer_name, locked.provider_name
            else:
                rater_name, ratee_name = locked.provider_name, locked.customer_name
            values = {
                "rater": rater_name or "Someone",
                "ratee": ratee_name or f"the {side.other.value}",
                "service": locked.service_name,
                "stars": params.stars,
            }
            notes = [
                await new_notification(conn, to, kind, values, booking_id=locked.id, now=now)
                for to, kind in (
                    (ratee, NotificationType.RATING_RECEIVED),
                    (user_id, NotificationType.RATING_SUBMITTED),
                )
                if to is not None
            ]
            await lock_cursors(conn, [u for u in (locked.customer_id, locked.provider_id) if u])
            row = await bookings.get_booking(conn, locked.id, user_id)
            assert row is not None
            for each in (Side.CUSTOMER, Side.PROVIDER):
                user = party(locked, each)
                if user is not None:
                    staged.add(
                        user,
                        BOOKING_UPDATED,
                        BookingUpdated(booking=booking_view(row, each), change="rated"),
                    )
            for note in notes:
                stage_notification(staged, note)
            rating = Rating(
                booking_id=record.booking_id,
                rater_side=record.rater_side,
                stars=record.stars,
                review=record.review,
                created_at=record.created_at,
            )
            staged.answer(rating)
            await staged.write(conn)
        await staged.deliver()
        return rating
