"""Bookings as a feature: bookings as live jobs, and what hangs on them (ratings,
reports, earnings)."""

from __future__ import annotations

from api.bookings.events import BOOKING_OFFERED, BOOKING_UNREAD, BOOKING_UPDATED
from api.bookings.metrics import BookingMetrics
from api.bookings.push import offer_push
from api.bookings.service import BookingService
from api.bookings.settings import BookingSettings
from api.earnings import EARNINGS_UPDATED, EarningsService
from api.erasure import ERASURE
from api.ratings import RatingService
from api.reports import REPORT_UPDATED, ReportService
from api.uploads.service import UPLOADS
from kernel.feature import Feature, Kit


class BookingsFeature(Feature):
    name = "bookings"
    settings = BookingSettings

    async def install(self, kit: Kit) -> None:
        s = kit.settings(BookingSettings)
        self.metrics = BookingMetrics(kit.metrics)
        methods = kit.methods
        service = BookingService(
            kit.db, kit.outbox, kit.clock, s, timezone=kit.timezone, metrics=self.metrics
        )
        service.register(methods)
        kit.port(ERASURE).step(service.close_account, lock=service.lock_for_closing)
        RatingService(kit.db, kit.outbox, kit.clock).register(methods)
        ReportService(
            kit.db, kit.outbox, kit.clock, s, timezone=kit.timezone, uploads=kit.port(UPLOADS)
        ).register(methods)
        EarningsService(kit.db, kit.clock, kit.timezone).register(methods)
        kit.event(BOOKING_OFFERED, push=offer_push(kit.timezone))
        kit.event(BOOKING_UPDATED)
        kit.event(BOOKING_UNREAD)
        kit.event(EARNINGS_UPDATED)
        kit.event(REPORT_UPDATED)
