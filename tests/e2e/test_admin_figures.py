"""The admin console's fuller figures: bookings by status, open reports and accounts
joined per day in ``admin.stats``; booking counts in ``admin.users.list``; and the
pushes a user was sent (``admin.push.history``), after real pushes through the local
FCM server."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from kernel.clock import FakeClock
from kernel.jobs import Job, Tick
from rtc_server.app import App
from rtc_server.push.feature import PushFeature
from rtc_server.push.jobs import PUSH_PRUNE
from tests.fakes.fcm import FakeFcm, fcm_error
from tests.waiting import until

from .admins import login_admin
from .conftest import Clients
from .market import Market, key, later, market, refused
from .test_push_delivery import fcm, offer_market, push_app, push_clients, settle

__all__ = ["fcm", "push_app", "push_clients"]  # fixtures of test_push_delivery

INDIA = ZoneInfo("Asia/Kolkata")  # database.timezone's default


async def not_online(app: App, user_id: int) -> bool:
    return not await app.bus.online([user_id])


async def four_bookings(m: Market) -> list[Any]:
    """Bookings of the market's customer with its provider: pending, accepted,
    cancelled, completed."""
    pending, accepted, cancelled, completed = [
        await m.customer.call("bookings.create", m.booking(later(m.app, hours)))
        for hours in (5, 6, 7, 8)
    ]
    await m.provider.call("bookings.accept", {"idempotencyKey": key(), "bookingId": accepted["id"]})
    await m.customer.call(
        "bookings.cancel", {"idempotencyKey": key(), "bookingId": cancelled["id"]}
    )
    for step in ("bookings.accept", "bookings.start", "bookings.complete"):
        await m.provider.call(step, {"idempotencyKey": key(), "bookingId": completed["id"]})
    return [pending, accepted, cancelled, completed]


async def report(m: Market, booking_id: int) -> Any:
    return await m.customer.call(
        "reports.create",
        {
            "idempotencyKey": key(),
            "bookingId": booking_id,
            "reason": "No show",
            "description": "Did not come and did not answer.",
        },
    )


async def test_stats_count_bookings_open_reports_and_accounts_joined_per_day(
    clients: Clients, app: App, clock: FakeClock
) -> None:
    admin, _ = await login_admin(clients)
    m = await market(clients, app)
    pending, _, cancelled, _ = await four_bookings(m)
    first = await report(m, pending["id"])
    second = await report(m, cancelled["id"])
    await admin.call("admin.reports.setStatus", {"reportId": first["id"], "status": "resolved"})
    # Accounts on known days of the server's calendar (Asia/Kolkata): everyone so far
    # today, then one just after midnight (the day before in UTC), two just before it,
    # one on the first day of the 30 and one a day earlier (left out).
    today = clock.now().astimezone(INDIA).date()
    midnight = datetime.combine(today, time(0), INDIA)
    assert app.db is not None
    await app.db.execute("UPDATE users SET created_at = $1", midnight + timedelta(hours=2))
    placed = {
        "after_midnight": ("customer", midnight + timedelta(minutes=30)),
        "before_midnight": ("customer", midnight - timedelta(minutes=30)),
        "provider_before_midnight": ("provider", midnight - timedelta(minutes=1)),
        "first_day": ("customer", midnight - timedelta(days=29) + timedelta(hours=1)),
        "too_old": ("provider", midnight - timedelta(days=29, minutes=1)),
    }
    for role, created in placed.values():
        _, tokens = await clients.login(role=role)
        await app.db.execute(
            "UPDATE users SET created_at = $2 WHERE id = $1", tokens["user"]["id"], created
        )
    # In UTC, "after midnight" is still yesterday: the calendar is the server's.
    assert (midnight + timedelta(minutes=30)).astimezone(ZoneInfo("UTC")).date() < today

    stats = await admin.call("admin.stats")
    assert stats["bookingsByStatus"] == {
        "pending": 1,
        "accepted": 1,
        "cancelled": 1,
        "completed": 1,
    }
    assert stats["openReports"] == 1
    assert stats["timezone"] == "Asia/Kolkata"
    days = stats["joinedPerDay"]
    assert [d["day"] for d in days] == [
        (today - timedelta(days=n)).isoformat() for n in range(29, -1, -1)
    ]
    joined = {date.fromisoformat(d["day"]): d for d in days if d["users"]}
    # Today: the admin, the market's provider and customer, and the one after midnight.
    assert joined == {
        today: {"day": today.isoformat(), "users": 4, "customers": 2, "providers": 1},
        today - timedelta(days=1): {
            "day": (today - timedelta(days=1)).isoformat(),
            "users": 2,
            "customers": 1,
            "providers": 1,
        },
        today - timedelta(days=29): {
            "day": (today - timedelta(days=29)).isoformat(),
            "users": 1,
            "customers": 1,
            "providers": 0,
        },
    }
    assert stats["revenuePaise"] == 0 and "usersByRole" in stats

    # Cached for 30 s; then a closed report and a new booking show.
    await admin.call("admin.reports.setStatus", {"reportId": second["id"], "status": "closed"})
    await m.customer.call("bookings.create", m.booking(later(app, 9)))
    clock.advance(29)
    assert await admin.call("admin.stats") == stats
    clock.advance(2)
    fresh = await admin.call("admin.stats")
    assert fresh["openReports"] == 0 and fresh["bookingsByStatus"]["pending"] == 2


async def test_users_list_rows_carry_their_booking_counts(clients: Clients, app: App) -> None:
    admin, admin_tokens = await login_admin(clients)
    m = await market(clients, app)
    await four_bookings(m)
    _, idle = await clients.login()
    zero = {
        "total": 0,
        "pending": 0,
        "accepted": 0,
        "rejected": 0,
        "inProgress": 0,
        "completed": 0,
        "cancelled": 0,
    }
    four = {**zero, "total": 4, "pending": 1, "accepted": 1, "cancelled": 1, "completed": 1}
    expected = {
        admin_tokens["user"]["id"]: zero,
        m.provider_id: four,  # as provider
        m.customer_id: four,  # as customer
        idle["user"]["id"]: zero,
    }
    everyone = await admin.call("admin.users.list", {})
    assert {u["id"]: u["bookings"] for u in everyone["users"]} == expected
    # Page by page, each page's own counts.
    seen: dict[int, Any] = {}
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1}
        if cursor is not None:
            params["cursor"] = cursor
        page = await admin.call("admin.users.list", params)
        seen.update({u["id"]: u["bookings"] for u in page["users"]})
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == expected
    customers = await admin.call("admin.users.list", {"role": "customer"})
    assert [u["bookings"]["total"] for u in customers["users"]] == [4, 0]


# --- Push history ------------------------------------------------------------------------


async def history(admin: Any, user_id: int, **params: Any) -> Any:
    return await admin.call("admin.push.history", {"userId": user_id, **params})


async def test_push_history_shows_what_was_sent_to_which_device_and_how_it_ended(
    push_app: App, push_clients: Clients, fcm: FakeFcm, clock: FakeClock
) -> None:
    admin, _ = await login_admin(push_clients)
    m = await offer_market(push_app, push_clients)  # the provider's "phone": fcm-provider
    for device, token in (("tablet", "fcm-dead"), ("old-phone", "fcm-busy")):
        await m.provider.call(
            "push.register", {"platform": "android", "deviceId": device, "token": token}
        )
    fcm.script["fcm-dead"] = [fcm_error(404, "NOT_FOUND", "UNREGISTERED")]
    busy = fcm_error(503, "UNAVAILABLE", "UNAVAILABLE")
    busy.headers["Retry-After"] = "17"
    fcm.script["fcm-busy"] = [busy]
    assert (await history(admin, m.provider_id)) == {"pushes": [], "nextCursor": None}
    await m.provider.close()  # the app is closed: the offer is pushed at once
    await until(lambda: not_online(push_app, m.provider_id), timeout=5)
    booked = await m.customer.call("bookings.create", m.booking(later(push_app)))
    await settle(push_app)
    clock.advance(17)  # the busy device's retry is due
    await settle(push_app)
    assert [msg["token"] for msg in fcm.messages] == ["fcm-provider", "fcm-busy"]

    page = await history(admin, m.provider_id)
    [push] = page["pushes"]
    assert page["nextCursor"] is None
    assert push["event"] == "booking.offered" and push["category"] == "bookings"
    assert push["title"] == "New booking request"
    assert push["body"].startswith("Asha Rao booked Plumber for")
    by_device = {d["deviceId"]: d for d in push["deliveries"]}
    assert list(by_device) == ["old-phone", "phone", "tablet"]
    common = {"platform": "android", "provider": "fcm"}
    assert by_device["phone"] | {"decidedAt": None} == {
        "deviceId": "phone",
        **common,
        "status": "sent",
        "reason": "sent",
        "attempts": 1,
        "httpStatus": 200,
        "providerCode": None,
        "decidedAt": None,
    }
    assert by_device["phone"]["decidedAt"] is not None
    # The dead token was deleted, but its history keeps what kind of device it was.
    assert by_device["tablet"] | {"decidedAt": None} == {
        "deviceId": "tablet",
        **common,
        "status": "failed",
        "reason": "token_invalid",
        "attempts": 1,
        "httpStatus": 404,
        "providerCode": "UNREGISTERED",
        "decidedAt": None,
    }
    assert by_device["old-phone"]["status"] == "sent" and by_device["old-phone"]["attempts"] == 2
    assert by_device["old-phone"]["httpStatus"] == 200  # the last attempt's answer

    # A second push (the customer cancels: the provider is told): newest first, paged.
    await m.customer.call("bookings.cancel", {"idempotencyKey": key(), "bookingId": booked["id"]})
    await settle(push_app)
    newest = await history(admin, m.provider_id, limit=1)
    [cancelled] = newest["pushes"]
    assert cancelled["event"] == "notification.created" and cancelled["seq"] > push["seq"]
    assert {d["deviceId"] for d in cancelled["deliveries"]} == {"phone", "old-phone"}
    older = await history(admin, m.provider_id, limit=1, cursor=newest["nextCursor"])
    assert older == {"pushes": [push], "nextCursor": None}
    # A cursor is of one user's history; an unknown user is not found.
    error = await refused(
        admin, "admin.push.history", {"userId": m.customer_id, "cursor": newest["nextCursor"]}
    )
    assert error.code == -32602 and error.data["fields"][0]["field"] == "cursor"
    error = await refused(admin, "admin.push.history", {"userId": 999_999})
    assert error.name == "not_found"
    error = await refused(admin, "admin.push.history", {"userId": m.provider_id, "limit": 101})
    assert error.code == -32602

    # Kept push.retention_days (30), then pruned by push.prune: the offer is older.
    assert push_app.db is not None
    await push_app.db.execute(
        "UPDATE push_deliveries SET created_at = created_at - interval '30 days 1 second'"
        " WHERE seq = $1",
        push["seq"],
    )
    await push_app.feature(PushFeature).delivery.prune(
        Job(0, PUSH_PRUNE.kind, Tick(slot=clock.now()), 1, 3)
    )
    assert await history(admin, m.provider_id) == {"pushes": [cancelled], "nextCursor": None}
