"""The ``[bookings]`` settings section."""

from __future__ import annotations

from pydantic import Field

from kernel.settings import Section


class BookingSettings(Section):
    """Bookings: the per-customer creation limits, how far ahead, offers' push, reports."""

    # Bookings one customer may create per rolling minute and hour (reference 8.1).
    max_per_minute: int = Field(8, ge=1)
    max_per_hour: int = Field(20, ge=1)
    # An appointment at most this many days ahead.
    max_days_ahead: int = Field(180, ge=1, le=3650)
    # Seconds an offer may stay unacknowledged by every device of the provider before
    # it is marked due for a push (push_intents).
    offer_push_after: float = Field(30.0, ge=0)
    # Seconds the notification of a booking change (accepted, rejected, started,
    # completed, cancelled) may stay unacknowledged by the side told before it is
    # pushed (at once if that side has no live socket).
    change_push_after: float = Field(30.0, ge=0)
    # Reports one user may file per rolling 24 hours.
    reports_per_day: int = Field(5, ge=1)
