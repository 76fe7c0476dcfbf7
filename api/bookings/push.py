"""The push notifications of bookings: what a provider's phone shows for an offer.

Registered with the core's push intents (``rtc_server/push/intents.py``) for the
``booking.offered`` events that ``bookings.create`` marks with ``push_after``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from rtc_server.push.intents import Renderer
from rtc_server.push.notice import PushNotice, PushPolicy


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
