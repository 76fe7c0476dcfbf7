"""The push notifications of bookings: what a phone shows for an offer or a change.

Declared with the events that bookings mark with ``push_after``: ``booking.offered``
(to the provider, from ``bookings.create``) and the ``notification.created`` of a
status change (to the side told of it, rendered by :mod:`api.notifications`). Both
collapse on ``booking:<id>``: a device shows the newest news of a booking.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from api.bookings.models import BookingOffered
from kernel.events import PushRenderer
from kernel.push import PushNotice, PushPolicy


def offer_push(timezone: str) -> PushRenderer[BookingOffered]:
    """``booking.offered`` → "New booking request", one alert per booking (collapse key)."""
    zone = ZoneInfo(timezone)

    def render(offer: BookingOffered) -> PushPolicy:
        booking = offer.booking
        when = booking.appointment_at.astimezone(zone)
        customer = booking.customer_name or "A customer"
        return PushPolicy(
            PushNotice(
                "New booking request",
                f"{customer} booked {booking.service_name} for "
                f"{when.strftime('%d %b %Y, %I:%M %p')}.",
                "bookings",
                collapse_key=f"booking:{booking.id}",
                urgency="high",
                data={"bookingId": str(booking.id)},
            )
        )

    return render
