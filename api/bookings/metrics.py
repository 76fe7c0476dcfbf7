"""The metrics of bookings (listed in ``docs/operations.md``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class BookingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.bookings_created = Counter(
            "rtc_bookings_created_total", "Bookings created", registry=r
        )
        self.booking_transitions = Counter(
            "rtc_booking_transitions_total",
            "Booking status changes, by action (accept, reject, start, complete, cancel)",
            ["action"],
            registry=r,
        )
        self.booking_conflicts = Counter(
            "rtc_booking_conflicts_total",
            "Booking status changes refused by the booking's current status, by action",
            ["action"],
            registry=r,
        )
