"""Booking reminders on the calendar (issue 17): customers are reminded of tomorrow's
bookings, of a booking two hours before it, and get a morning summary of today's;
providers are reminded an hour before an accepted booking.

Each job runs once per slot across instances (``Kit.at``: cron expressions in the
deployment's time zone, ``database.timezone``). Each reminder is claimed in
``reminders_sent`` in the transaction that writes its notification, so a slot run
twice, or two slots late, tells nobody twice; a booking cancelled (or rejected,
started, done) before its reminder is no longer open and gets none. Times in the texts
are local to the deployment.

============================  ================  ======================================
job                           default schedule  who, what
============================  ================  ======================================
``reminders.dayBefore``      ``0 9-21 * * *``  customers: each open booking on tomorrow's
                                                local date, once (later bookings for
                                                tomorrow are caught by the next hour)
``reminders.soon``            ``*/5 * * * *``   customers: 2 h before an open booking;
                                                providers: 1 h before an accepted one
``reminders.morning``         ``0 8 * * *``     customers: one summary of today's open
                                                bookings (none when there are none)
``reminders.access``          ``*/15 * * * *``  providers: 2 days before a paid listing
                                                ends (once per period: renewing moves
                                                the end); customers: a day before their
                                                labour access ends, and when it has
============================  ================  ======================================

The listing's own end (its status flips at the end, and its provider is told) is the
payments feature's ``listings.expire``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator

from api.notifications import NotificationType as Type
from api.notifications import new_notification, stage_notification
from api.payments.settings import PaymentSettings
from kernel.clock import Clock
from kernel.feature import Feature, Kit
from kernel.jobs import Calendar, Job, JobSpec, Tick
from kernel.outbox import Outbox
from kernel.settings import Section
from storage import reminders as store
from storage.database import Database

log = logging.getLogger("rtc.reminders")

DAY_BEFORE = JobSpec("reminders.dayBefore", Tick)
SOON = JobSpec("reminders.soon", Tick)
MORNING = JobSpec("reminders.morning", Tick)
ACCESS = JobSpec("reminders.access", Tick)

OPEN = ("pending", "accepted")
_TICK = timedelta(microseconds=1)
# Seconds before a reminder nobody acknowledged goes out as a push.
PUSH_AFTER = 30.0


class ReminderSettings(Section):
    """Booking reminders: cron expressions in ``database.timezone``."""

    # False: the jobs are not scheduled (they still run when asked: rtc-server jobs run).
    enabled: bool = True
    day_before: str = "0 9-21 * * *"
    soon: str = "*/5 * * * *"
    morning: str = "0 8 * * *"
    access: str = "*/15 * * * *"
    listing_days_before: float = Field(2.0, gt=0, le=30)
    labour_days_before: float = Field(1.0, gt=0, le=30)
    customer_hours_before: float = Field(2.0, gt=0, le=24)
    provider_hours_before: float = Field(1.0, gt=0, le=24)

    @field_validator("day_before", "soon", "morning", "access")
    @classmethod
    def _cron(cls, cron: str) -> str:
        Calendar("check", cron, DAY_BEFORE)  # raises ValueError naming what is wrong
        return cron


class Reminders:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        clock: Clock,
        zone: str,
        settings: ReminderSettings,
        labour_price_paise: int,
    ) -> None:
        self._labour_price = labour_price_paise
        self._db = db
        self._outbox = outbox
        self._clock = clock
        self._zone = ZoneInfo(zone)
        self._settings = settings

    async def day_before(self, job: Job[Tick]) -> int:
        now = self._clock.now()
        tomorrow = now.astimezone(self._zone).date() + timedelta(days=1)
        start = datetime.combine(tomorrow, time(), self._zone)
        bookings = await store.open_bookings(self._db, start, start + timedelta(days=1), OPEN)
        sent = 0
        for b in bookings:
            if b.customer_id is None:
                continue
            sent += await self._tell(
                "day_before",
                str(b.id),
                b.customer_id,
                Type.DAILY_REMINDER,
                {"service": b.service_name, "time": self._clock_time(b.appointment_at)},
                b.id,
                now,
            )
        return sent

    async def soon(self, job: Job[Tick]) -> int:
        now = self._clock.now()
        s = self._settings
        sent = 0
        # At or after appointment - N hours: the window's end is included (PostgreSQL
        # keeps microseconds).
        customers = await store.open_bookings(
            self._db, now, now + timedelta(hours=s.customer_hours_before) + _TICK, OPEN
        )
        for b in customers:
            if b.customer_id is not None:
                sent += await self._tell(
                    "customer_soon",
                    str(b.id),
                    b.customer_id,
                    Type.HOURLY_REMINDER,
                    {"service": b.service_name, "time": self._clock_time(b.appointment_at)},
                    b.id,
                    now,
                )
        providers = await store.open_bookings(
            self._db, now, now + timedelta(hours=s.provider_hours_before) + _TICK, ("accepted",)
        )
        for b in providers:
            if b.provider_id is not None:
                sent += await self._tell(
                    "provider_soon",
                    str(b.id),
                    b.provider_id,
                    Type.PROVIDER_REMINDER,
                    {
                        "service": b.service_name,
                        "customer": b.customer_name or None,
                        "time": self._clock_time(b.appointment_at),
                    },
                    b.id,
                    now,
                )
        return sent

    async def morning(self, job: Job[Tick]) -> int:
        now = self._clock.now()
        today = now.astimezone(self._zone).date()
        start = datetime.combine(today, time(), self._zone)
        bookings = await store.open_bookings(self._db, start, start + timedelta(days=1), OPEN)
        by_customer: dict[int, list[store.DueBooking]] = {}
        for b in bookings:
            if b.customer_id is not None:
                by_customer.setdefault(b.customer_id, []).append(b)
        sent = 0
        for customer_id, theirs in by_customer.items():
            sent += await self._tell(
                "morning",
                f"{customer_id}:{today.isoformat()}",
                customer_id,
                Type.MORNING_SUMMARY,
                self._summary(theirs),
                theirs[0].id if len(theirs) == 1 else None,
                now,
            )
        return sent

    async def access(self, job: Job[Tick]) -> int:
        """Paid listings and labour access about to end; labour access that ended."""
        now = self._clock.now()
        s = self._settings
        sent = 0
        listings = await store.paid_listings_ending(
            self._db, now, now + timedelta(days=s.listing_days_before)
        )
        for listing in listings:
            if listing.provider_id is None:
                continue
            sent += await self._tell(
                "listing_ending",
                f"{listing.id}:{listing.active_until.isoformat()}",  # once per period
                listing.provider_id,
                Type.SERVICE_EXPIRY_WARNING,
                {
                    "service": listing.service_name,
                    "date": self._date(listing.active_until),
                    "price": _rupees(listing.price_paise),
                },
                None,
                now,
            )
        ending = await store.labour_access_ending(
            self._db, now, now + timedelta(days=s.labour_days_before)
        )
        for access in ending:
            sent += await self._tell(
                "labour_ending",
                f"{access.user_id}:{access.active_until.isoformat()}",
                access.user_id,
                Type.LABOUR_ACCESS_EXPIRING,
                {
                    "date": self._date(access.active_until),
                    "time": self._clock_time(access.active_until),
                    "price": _rupees(self._labour_price),
                },
                None,
                now,
            )
        # Ended within the last day (a later payment moves active_until: a new period).
        ended = await store.labour_access_ending(self._db, now - timedelta(days=1), now)
        for access in ended:
            sent += await self._tell(
                "labour_ended",
                f"{access.user_id}:{access.active_until.isoformat()}",
                access.user_id,
                Type.LABOUR_ACCESS_EXPIRED,
                {"price": _rupees(self._labour_price)},
                None,
                now,
            )
        return sent

    def _date(self, moment: datetime) -> str:
        return moment.astimezone(self._zone).strftime("%d %b %Y").lstrip("0")

    def _summary(self, bookings: Sequence[store.DueBooking]) -> dict[str, object]:
        items = ", ".join(
            f"{b.service_name} at {self._clock_time(b.appointment_at)}" for b in bookings
        )
        count = "1 booking" if len(bookings) == 1 else f"{len(bookings)} bookings"
        return {"count": count, "bookings": items}

    async def _tell(
        self,
        kind: str,
        key: str,
        user_id: int,
        type: Type,
        values: Mapping[str, object],
        booking_id: int | None,
        now: datetime,
    ) -> int:
        """Write one reminder (its texts from the catalogue with ``values``) unless it
        was sent; 1 if it was written now."""
        staged = self._outbox.stage()
        async with self._db.transaction() as conn:
            if not await store.claim(conn, kind, key, now):
                return 0
            row = await new_notification(
                conn, user_id, type, values, booking_id=booking_id, now=now
            )
            stage_notification(staged, row, push_after=PUSH_AFTER, now=now)
            await staged.write(conn)
        await staged.deliver()
        return 1

    def _clock_time(self, moment: datetime) -> str:
        return moment.astimezone(self._zone).strftime("%I:%M %p").lstrip("0")

    async def prune(self) -> None:
        await store.prune(self._db, self._clock.now() - timedelta(days=3))


def _rupees(paise: int) -> str:
    return f"{paise // 100}" if paise % 100 == 0 else f"{paise / 100:.2f}"


class RemindersFeature(Feature):
    """Booking reminders at local times (jobs ``reminders.*``)."""

    name = "reminders"
    settings = ReminderSettings

    async def install(self, kit: Kit) -> None:
        s = kit.settings(ReminderSettings)
        labour_price = kit.settings(PaymentSettings).labour_access_price_paise
        self.reminders = Reminders(kit.db, kit.outbox, kit.clock, kit.timezone, s, labour_price)
        kit.job(DAY_BEFORE, self.reminders.day_before)
        kit.job(SOON, self.reminders.soon)
        kit.job(MORNING, self.reminders.morning)
        kit.job(ACCESS, self.reminders.access)
        if s.enabled:
            kit.at(s.day_before, DAY_BEFORE, grace=3600.0)
            kit.at(s.soon, SOON, grace=600.0)
            kit.at(s.morning, MORNING, grace=3 * 3600.0)
            kit.at(s.access, ACCESS, grace=900.0)
        kit.cleanup(self.reminders.prune)
