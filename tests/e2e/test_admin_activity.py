"""``admin.stats``' activity per day, the admin console's chart: bookings made, calls
started and money received on each of the last 30 days of the server's calendar."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from kernel.clock import FakeClock
from rtc_server.app import App

from .admins import login_admin
from .calls import start, step
from .conftest import Clients
from .market import key, later, market, next_of

INDIA = ZoneInfo("Asia/Kolkata")  # database.timezone's default


async def test_stats_count_bookings_calls_and_revenue_per_day(
    clients: Clients, app: App, clock: FakeClock
) -> None:
    admin, _ = await login_admin(clients)
    m = await market(clients, app)
    assert app.db is not None
    db = app.db
    today = clock.now().astimezone(INDIA).date()
    midnight = datetime.combine(today, time(0), INDIA)

    # Five bookings, moved to known moments of the server's calendar: just after
    # midnight (the UTC day before), just before it, the first of the 30 days and the
    # day before that (left out); one stays now.
    bookings = [
        await m.customer.call("bookings.create", m.booking(later(app, hours)))
        for hours in range(5, 10)
    ]
    placed = [
        midnight + timedelta(minutes=30),
        midnight - timedelta(minutes=30),
        midnight - timedelta(days=29) + timedelta(hours=1),
        midnight - timedelta(days=29, minutes=1),
    ]
    for booking, created in zip(bookings, placed, strict=False):
        await db.execute(
            "UPDATE bookings SET created_at = $2 WHERE id = $1", booking["id"], created
        )

    # Two calls of one booking (answered or not, both count), one moved to yesterday.
    first = await start(m.customer, bookings[4]["id"])
    await next_of(m.provider, "call.incoming")
    await step(m.customer, "calls.cancel", first["callId"])
    second = await start(m.customer, bookings[4]["id"])
    await step(m.customer, "calls.cancel", second["callId"])
    await db.execute(
        "UPDATE call_sessions SET created_at = $2 WHERE id = $1",
        first["callId"],
        midnight - timedelta(hours=3),
    )

    # Payments by the day they were paid: paid today, a refund not settled yet
    # yesterday (still received), a refunded one and one never paid (neither counts).
    orders = [
        await m.provider.call(
            "payments.initiate",
            {"idempotencyKey": key(), "product": "listing", "providerServiceId": m.listing},
        )
        for _ in range(4)
    ]
    for order, status, paid_at in (
        (orders[0], "paid", midnight + timedelta(hours=1)),
        (orders[1], "refund_pending", midnight - timedelta(hours=1)),
        (orders[2], "refunded", midnight + timedelta(hours=2)),
    ):
        await db.execute(
            "UPDATE payments SET status = $2, paid_at = $3 WHERE order_id = $1",
            order["orderId"],
            status,
            paid_at,
        )
    fee = orders[0]["amountPaise"]

    stats = await admin.call("admin.stats")
    days = stats["activityPerDay"]
    assert [d["day"] for d in days] == [
        (today - timedelta(days=n)).isoformat() for n in range(29, -1, -1)
    ]
    active = {d["day"]: d for d in days if d["bookings"] or d["calls"] or d["revenuePaise"]}
    yesterday = (today - timedelta(days=1)).isoformat()
    first_day = (today - timedelta(days=29)).isoformat()
    assert active == {
        today.isoformat(): {
            "day": today.isoformat(),
            "bookings": 2,
            "calls": 1,
            "revenuePaise": fee,
        },
        yesterday: {"day": yesterday, "bookings": 1, "calls": 1, "revenuePaise": fee},
        first_day: {"day": first_day, "bookings": 1, "calls": 0, "revenuePaise": 0},
    }
    # The same calendar as joinedPerDay.
    assert [d["day"] for d in stats["joinedPerDay"]] == [d["day"] for d in days]
