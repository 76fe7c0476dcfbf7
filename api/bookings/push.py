"""The push notifications of bookings: what a phone shows for an offer or a change.

Declared with the events that bookings mark with ``push_after``: ``booking.offered``
(to the provider, from ``bookings.create``) and the ``notification.created`` of a
status change (to the side told of it, rendered by :mod:`api.notifications`). Both
collapse on ``booking:<id>``: a device shows the newest news of a booking.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from api.bookings.models import BookingOffered
from api.notifications import CATALOGUE, NotificationType
from kernel.events import PushRenderer
from kernel.push import PushNotice, PushPolicy


def offer_push(timezone: str) -> PushRenderer[BookingOffered]:
    """``booking.offered`` → the ``booking_request`` notification's texts, one alert per
    booking (collapse key)."""
    zone = ZoneInfo(timezone)
    kind = CATALOGUE[NotificationType.BOOKING_REQUEST]

    def render(offer: BookingOffered) -> PushPolicy:
        booking = offer.booking
        when = booking.appointment_at.astimezone(zone)
        title, body = kind.render(
            {
                "customer": booking.customer_name or "A customer",
                "service": booking.service_name,
                "when": when.strftime("%d %b %Y, %I:%M %p"),
            }
        )
        return PushPolicy(
            PushNotice(
                title,
                body,
                kind.category,
                collapse_key=f"booking:{booking.id}",
                urgency="high",
                data={"bookingId": str(booking.id)},
            )
        )

    return render
