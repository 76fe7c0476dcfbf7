"""Wire models of bookings: the params of ``bookings.*`` and the Booking both sides see.

A Booking never carries a phone number or a user id: the two sides reach each other
through the server (masked calls).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, model_validator

from api.bookings.rules import Side, Status, allowed_actions
from kernel.idempotency import ClaimsKeyInTransaction
from kernel.rpc.cursors import Cursor
from kernel.rpc.registry import IdempotentParams, Params, Result
from kernel.rpc.text import Line, Paragraphs, invalid
from storage.bookings import BookingRow, RatingRow

MAX_PAGE = 50
MAX_SUB_SERVICES = 50

Id = Annotated[int, Field(ge=1, le=2**63 - 1)]
Reason = Annotated[str, Line(2, 500)]
Description = Annotated[str, Paragraphs(1, 1000)]
SideName = Literal["customer", "provider"]
StatusName = Literal["pending", "accepted", "rejected", "in_progress", "completed", "cancelled"]


# --- Params ------------------------------------------------------------------------------


class CreateBooking(IdempotentParams, ClaimsKeyInTransaction):
    provider_service_id: Id = Field(description="the listing (providers.search / providers.get)")
    sub_service_ids: list[Id] = Field(
        min_length=1, max_length=MAX_SUB_SERVICES, description="sub-services of the listing"
    )
    appointment_at: AwareDatetime = Field(description="in the future, with its UTC offset")
    address_id: Id = Field(description="one of the customer's addresses")
    description: Description | None = None

    @model_validator(mode="after")
    def _unique(self) -> CreateBooking:
        if len(set(self.sub_service_ids)) != len(self.sub_service_ids):
            raise invalid(("subServiceIds", "each sub-service at most once"))
        return self


class BookingRef(Params):
    booking_id: Id


class BookingStep(IdempotentParams, ClaimsKeyInTransaction):
    """accept, start, complete."""

    booking_id: Id


class RejectBooking(IdempotentParams, ClaimsKeyInTransaction):
    booking_id: Id
    reason: Reason


class CancelBooking(IdempotentParams, ClaimsKeyInTransaction):
    booking_id: Id
    reason: Reason | None = None


class ListBookings(Params):
    as_: SideName | None = Field(
        None, alias="as", description="the caller's side; omitted: the caller's role"
    )
    status: StatusName | None = None
    cursor: Cursor | None = Field(None, description="nextCursor of the previous page")
    limit: int = Field(20, ge=1, le=MAX_PAGE)


# --- Results and events ------------------------------------------------------------------


class BookingItem(Result):
    sub_service_id: int
    slug: str
    name: str
    price_paise: int


class BookingAddress(Result):
    type: str
    state: str
    city: str | None
    full_address: str | None = Field(
        None, description="null once the customer deleted their account (city and state stay)"
    )
    pincode: str | None = None


class RatingView(Result):
    stars: int
    review: str | None
    created_at: datetime


class Booking(Result):
    """A booking as one side sees it (``viewed`` and ``actions`` are that side's)."""

    id: int
    status: StatusName
    provider_service_id: int | None
    service_id: int | None
    service_slug: str
    service_name: str
    customer_name: str | None
    provider_name: str | None
    items: list[BookingItem]
    charge_paise: int = Field(description="the sum of the items' prices, in paise")
    appointment_at: datetime
    address: BookingAddress
    description: str | None
    rejection_reason: str | None
    cancellation_reason: str | None
    viewed: bool = Field(description="false: changed by the other side since you looked")
    actions: list[str] = Field(description="what you may do now: accept, reject, start ...")
    customer_rating: RatingView | None = Field(description="the customer's rating of the provider")
    provider_rating: RatingView | None = Field(description="the provider's rating of the customer")
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None


class BookingPage(Result):
    bookings: list[Booking]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: no more")


class UnreadBookings(Result):
    """Also the data of ``booking.unreadCount``."""

    as_: SideName = Field(alias="as")
    count: int = Field(description="bookings changed by the other side since you looked")


class BookingOffered(Result):
    """``booking.offered``: a customer booked one of the provider's listings."""

    booking: Booking


class BookingUpdated(Result):
    """``booking.updated``: a booking of yours changed (or was created by you)."""

    booking: Booking
    change: str = Field(
        description="created, accepted, rejected, in_progress, completed, cancelled or rated"
    )


def _rating(row: RatingRow | None) -> RatingView | None:
    if row is None:
        return None
    return RatingView(stars=row.stars, review=row.review, created_at=row.created_at)


def booking_view(row: BookingRow, side: Side) -> Booking:
    status = Status(row.status)
    actions = [str(a) for a in allowed_actions(status, side)]
    mine = row.customer_rating if side is Side.CUSTOMER else row.provider_rating
    if status is Status.COMPLETED and mine is None:
        actions.append("rate")
    return Booking(
        id=row.id,
        status=row.status,
        provider_service_id=row.provider_service_id,
        service_id=row.service_id,
        service_slug=row.service_slug,
        service_name=row.service_name,
        customer_name=row.customer_name,
        provider_name=row.provider_name,
        items=[BookingItem.model_validate(i) for i in row.items],
        charge_paise=row.charge_paise,
        appointment_at=row.appointment_at,
        address=BookingAddress.model_validate(row.address),
        description=row.description,
        rejection_reason=row.rejection_reason,
        cancellation_reason=row.cancellation_reason,
        viewed=row.viewed_by_customer if side is Side.CUSTOMER else row.viewed_by_provider,
        actions=actions,
        customer_rating=_rating(row.customer_rating),
        provider_rating=_rating(row.provider_rating),
        created_at=row.created_at,
        updated_at=row.updated_at,
        completed_at=row.completed_at,
    )
