"""Booking reminders at local times (api/reminders.py): who is told what and when, once,
and never about a booking that is no longer open."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from api.reminders import DAY_BEFORE, RemindersFeature
from kernel.clock import FakeClock
from kernel.jobs import Job, PeriodicJobs, Tick
from rtc_server.app import App
from rtc_server.client import RtcClient

from .conftest import AppFactory, Clients
from .market import key, market, next_of

INDIA = ZoneInfo("Asia/Kolkata")


def at_local(clock: FakeClock, days: int, hour: int, minute: int = 0) -> datetime:
    """``days`` from today's local date at ``hour:minute`` in India."""
    day = clock.now().astimezone(INDIA).date() + timedelta(days=days)
    return datetime.combine(day, time(hour, minute), INDIA)


def move_to(clock: FakeClock, moment: datetime) -> None:
    clock.advance((moment - clock.now()).total_seconds())


def tick(clock: FakeClock) -> Job[Tick]:
    return Job(0, DAY_BEFORE.kind, Tick(slot=clock.now()), 1, 3)


async def notes(app: App, user_id: int) -> list[tuple[str, str, str]]:
    assert app.db is not None
    rows = await app.db.fetch(
        "SELECT type, title, body FROM notifications WHERE user_id = $1"
        " AND type IN ('daily_reminder', 'hourly_reminder', 'morning_summary',"
        " 'provider_reminder') ORDER BY id",
        user_id,
    )
    return [(r["type"], r["title"], r["body"]) for r in rows]


async def book(m: Any, at: datetime) -> int:
    booking = await m.customer.call("bookings.create", m.booking(at))
    return int(booking["id"])


async def test_tomorrows_bookings_are_reminded_once_and_cancelled_ones_never(
    clients: Clients, app: App, clock: FakeClock
) -> None:
    m = await market(clients, app)
    move_to(clock, at_local(clock, 1, 8))  # a fresh day, 08:00 local
    kept = await book(m, at_local(clock, 1, 10, 30))
    cancelled = await book(m, at_local(clock, 1, 11, 30))
    await book(m, at_local(clock, 2, 10, 0))  # the day after tomorrow: not yet
    await m.customer.call("bookings.cancel", {"idempotencyKey": key(), "bookingId": cancelled})
    reminders = app.feature(RemindersFeature).reminders
    move_to(clock, at_local(clock, 0, 9))
    await reminders.day_before(tick(clock))
    await reminders.day_before(tick(clock))  # the slot run twice: nobody told twice
    clock.advance(3600)
    await reminders.day_before(tick(clock))  # the next hour's slot
    assert await notes(app, m.customer_id) == [
        ("daily_reminder", "Booking reminder", "Your Plumber booking is tomorrow at 10:30 AM."),
    ]
    created = await next_live_reminder(m.customer)
    assert created["notification"]["type"] == "daily_reminder"
    assert created["notification"]["bookingId"] == kept


async def next_live_reminder(client: RtcClient) -> Any:
    while True:
        created = await next_of(client, "notification.created")
        if created["notification"]["type"].endswith("reminder"):
            return created


async def test_soon_reminders_to_the_customer_and_the_provider(
    clients: Clients, app: App, clock: FakeClock
) -> None:
    m = await market(clients, app)
    move_to(clock, at_local(clock, 1, 7))
    pending = await book(m, at_local(clock, 0, 10, 0))
    accepted = await book(m, at_local(clock, 0, 9, 30))
    await m.provider.call("bookings.accept", {"idempotencyKey": key(), "bookingId": accepted})
    reminders = app.feature(RemindersFeature).reminders
    move_to(clock, at_local(clock, 0, 7, 25))  # nothing within 2 h yet
    await reminders.soon(tick(clock))
    assert await notes(app, m.customer_id) == []
    move_to(clock, at_local(clock, 0, 7, 30))  # the accepted one is 2 h away
    await reminders.soon(tick(clock))
    assert len(await notes(app, m.customer_id)) == 1
    move_to(clock, at_local(clock, 0, 8, 0))  # the pending one too
    await reminders.soon(tick(clock))
    await reminders.soon(tick(clock))
    assert await notes(app, m.customer_id) == [
        ("hourly_reminder", "Appointment starting soon", "Your Plumber booking is at 9:30 AM."),
        ("hourly_reminder", "Appointment starting soon", "Your Plumber booking is at 10:00 AM."),
    ]
    # The provider: an hour before the accepted one only (not the pending one).
    assert await notes(app, m.provider_id) == []
    move_to(clock, at_local(clock, 0, 8, 30))
    await reminders.soon(tick(clock))
    move_to(clock, at_local(clock, 0, 9, 5))
    await reminders.soon(tick(clock))
    [(kind, title, body)] = await notes(app, m.provider_id)
    assert (kind, title) == ("provider_reminder", "Booking coming up")
    assert body.startswith("Your Plumber booking with ") and body.endswith(" is at 9:30 AM.")
    assert pending != accepted


async def test_the_morning_summary_is_one_message_per_customer(
    clients: Clients, app: App, clock: FakeClock
) -> None:
    m = await market(clients, app)
    move_to(clock, at_local(clock, 1, 6))
    await book(m, at_local(clock, 0, 11, 0))
    await book(m, at_local(clock, 0, 16, 30))
    await book(m, at_local(clock, 1, 9, 0))  # tomorrow: not in today's summary
    reminders = app.feature(RemindersFeature).reminders
    move_to(clock, at_local(clock, 0, 8))
    await reminders.morning(tick(clock))
    await reminders.morning(tick(clock))
    assert await notes(app, m.customer_id) == [
        (
            "morning_summary",
            "Today's bookings",
            "You have 2 bookings today: Plumber at 11:00 AM, Plumber at 4:30 PM.",
        ),
    ]
    assert await notes(app, m.provider_id) == []  # summaries are for customers


async def test_the_calendar_runs_each_reminder_job_once_per_slot(
    make_app: AppFactory, clock: FakeClock
) -> None:
    app = await make_app(reminders={"enabled": True})
    assert app.db is not None
    schedules = [s for s in app.kit.declared.schedules if s.name.startswith("reminders.")]
    assert {s.name: s.describe() for s in schedules} == {
        "reminders.dayBefore": "0 9-21 * * * (Asia/Kolkata)",
        "reminders.soon": "*/5 * * * * (Asia/Kolkata)",
        "reminders.morning": "0 8 * * * (Asia/Kolkata)",
        "reminders.access": "*/15 * * * * (Asia/Kolkata)",
    }
    move_to(clock, at_local(clock, 1, 7, 59))
    start = clock.now()
    # A second checker beside the app's own (which may take some slots first).
    checker = PeriodicJobs(app.db, app.jobs, clock, schedules)
    for _ in range(13):  # 07:59 .. 09:59, every 10 minutes, twice each
        await checker.run_once()
        await checker.run_once()
        clock.advance(600)
    rows = await app.db.fetch(
        "SELECT name, count(*) AS n FROM job_ticks WHERE name LIKE 'reminders.%' AND slot >= $1"
        " GROUP BY name",
        start - timedelta(hours=1),
    )
    taken = {r["name"]: r["n"] for r in rows}
    assert taken["reminders.morning"] == 1
    assert taken["reminders.dayBefore"] == 1  # 09:00 (08:00's slot was before the start)
    assert taken["reminders.soon"] == 13  # one 5-minute slot per check


async def test_listing_and_labour_access_endings_are_told_once_per_period(
    clients: Clients, app: App, clock: FakeClock
) -> None:
    assert app.db is not None
    m = await market(clients, app)
    now = clock.now()
    ends = now + timedelta(days=1, hours=12)
    await app.db.execute(
        "UPDATE provider_services SET status = 'active', active_until = $2 WHERE id = $1",
        m.listing,
        ends,
    )
    access_ends = now + timedelta(hours=20)
    await app.db.execute(
        "INSERT INTO labour_access (user_id, active_until, updated_at) VALUES ($1, $2, $3)",
        m.customer_id,
        access_ends,
        now,
    )
    reminders = app.feature(RemindersFeature).reminders
    await reminders.access(tick(clock))
    clock.advance(900)
    await reminders.access(tick(clock))
    [(kind, title, body)] = await notes_of(app, m.provider_id)
    assert (kind, title) == ("service_expiry_warning", "Service expiring soon")
    assert body.startswith("Your Plumber listing ends on ") and body.endswith(
        "Pay ₹99 to keep it listed."
    )
    [(kind, title, _)] = await notes_of(app, m.customer_id)
    assert (kind, title) == ("labour_access_expiring", "Labour access ending")
    # The provider renews: the new period is told about only when it, too, ends soon.
    await app.db.execute(
        "UPDATE provider_services SET active_until = $2 WHERE id = $1",
        m.listing,
        ends + timedelta(days=30),
    )
    # The access ends unrenewed: its end is told once.
    clock.advance((access_ends - clock.now()).total_seconds() + 60)
    await reminders.access(tick(clock))
    await reminders.access(tick(clock))
    assert [n[0] for n in await notes_of(app, m.customer_id)] == [
        "labour_access_expiring",
        "labour_access_expired",
    ]
    assert len(await notes_of(app, m.provider_id)) == 1


async def notes_of(app: App, user_id: int) -> list[tuple[str, str, str]]:
    assert app.db is not None
    rows = await app.db.fetch(
        "SELECT type, title, body FROM notifications WHERE user_id = $1 AND type IN"
        " ('service_expiry_warning', 'labour_access_expiring', 'labour_access_expired')"
        " ORDER BY id",
        user_id,
    )
    return [(r["type"], r["title"], r["body"]) for r in rows]


async def test_a_listing_renewed_before_its_warning_gets_none(
    clients: Clients, app: App, clock: FakeClock
) -> None:
    assert app.db is not None
    m = await market(clients, app)
    ends = clock.now() + timedelta(days=2, hours=1)  # not yet within the 2 days
    await app.db.execute(
        "UPDATE provider_services SET status = 'active', active_until = $2 WHERE id = $1",
        m.listing,
        ends,
    )
    reminders = app.feature(RemindersFeature).reminders
    assert await reminders.access(tick(clock)) == 0
    # Renewed (30 more days) before its end came within the warning's 2 days.
    await app.db.execute(
        "UPDATE provider_services SET active_until = $2 WHERE id = $1",
        m.listing,
        ends + timedelta(days=30),
    )
    clock.advance(3 * 3600)
    assert await reminders.access(tick(clock)) == 0
    assert await notes_of(app, m.provider_id) == []
