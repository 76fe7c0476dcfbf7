"""What users are told of bookings (typed events: :class:`kernel.events.EventSpec`)."""

from __future__ import annotations

from api.bookings.models import BookingOffered, BookingUpdated, UnreadBookings
from kernel.events import EventSpec

BOOKING_OFFERED = EventSpec(
    "booking.offered", BookingOffered, "to the provider: a customer booked them"
)
BOOKING_UPDATED = EventSpec(
    "booking.updated",
    BookingUpdated,
    "to both sides: a booking was created, changed status or was rated",
)
BOOKING_UNREAD = EventSpec(
    "booking.unreadCount", UnreadBookings, "your bookings' unread badge changed"
)
