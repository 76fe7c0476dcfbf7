"""The push notifications of bookings: what a phone shows for an offer or a change.

Registered with the core's push intents (``rtc_server/push/intents.py``) for the events
that bookings mark with ``push_after``: ``booking.offered`` (to the provider, from
``bookings.create``) and the ``notification.created`` of a status change (to the side
told of it). Both collapse on ``booking:<id>``: a device shows the newest news of a
booking.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from kernel.push import PushNotice, PushPolicy
from rtc_server.push.intents import Renderer


def offer_push(timezone: str) -> Renderer:
    """``booking.offered`` → "New booking request", one alert per booking (collapse key)."""
    zone = ZoneInfo(timezone)

    def render(data: dict[str, Any]) -> PushPolicy:
        booking = data["booking"]
        when = datetime.fromisoformat(booking["appointmentAt"]).astimezone(zone)
        customer = booking.get("customerName") or "A customer"
        return PushPolicy(
            PushNotice(
                "New booking request",
                f"{customer} booked {booking['serviceName']} for "
                f"{when.strftime('%d %b %Y, %I:%M %p')}.",
                "bookings",
                collapse_key=f"booking:{booking['id']}",
                urgency="high",
                data={"bookingId": str(booking["id"])},
            )
        )

    return render


def notification_push(data: dict[str, Any]) -> PushPolicy:
    """``notification.created`` → its own title and body (a booking's change)."""
    note = data["notification"]
    booking = note.get("bookingId")
    extra = {"notificationId": str(note["id"]), "type": str(note["type"])}
    if booking is not None:
        extra["bookingId"] = str(booking)
    return PushPolicy(
        PushNotice(
            note["title"],
            note["body"],
            "bookings",
            collapse_key=f"booking:{booking}" if booking is not None else None,
            urgency="high",
            data=extra,
        )
    )
