"""In-app notifications (list, filters, read marks, retention) and a provider's
earnings (figures, the Asia/Kolkata calendar, live updates)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kernel.clock import FakeClock
from rtc_server.app import App

from .conftest import Clients, device
from .market import PRICES, key, later, market, next_of, refused


async def test_notifications_list_filter_page_and_read_marks(clients: Clients, app: App) -> None:
    m = await market(clients, app)
    at = later(app)
    booked = [
        await m.customer.call("bookings.create", m.booking(at + timedelta(hours=h)))
        for h in range(3)
    ]
    await m.provider.call(
        "bookings.accept", {"idempotencyKey": key(), "bookingId": booked[0]["id"]}
    )
    await m.provider.call(
        "bookings.reject",
        {"idempotencyKey": key(), "bookingId": booked[1]["id"], "reason": "Away that day"},
    )
    created = await next_of(m.customer, "notification.created")
    assert created["notification"]["type"] == "welcome"  # the new account's first event
    created = await next_of(m.customer, "notification.created")
    assert created["notification"]["type"] == "booking_accepted"
    page = await m.customer.call("notifications.list", {})
    assert [n["type"] for n in page["notifications"]] == [
        "booking_rejected",
        "booking_accepted",
        "welcome",
    ]
    assert page["unreadCount"] == 3 and page["nextCursor"] is None
    assert page["notifications"][1] == created["notification"]
    assert "Away that day" in page["notifications"][0]["body"]
    requests = await m.provider.call("notifications.list", {"type": "booking_request", "limit": 2})
    assert len(requests["notifications"]) == 2 and requests["unreadCount"] == 4  # and welcome
    rest = await m.provider.call(
        "notifications.list",
        {"type": "booking_request", "limit": 2, "cursor": requests["nextCursor"]},
    )
    ids = [n["id"] for n in requests["notifications"] + rest["notifications"]]
    assert len(ids) == 3 and ids == sorted(ids, reverse=True) and rest["nextCursor"] is None
    error = await refused(m.provider, "notifications.list", {"cursor": requests["nextCursor"]})
    assert error.data["fields"][0]["field"] == "cursor"
    # Read marks: only the caller's own ids count.
    mine = page["notifications"][0]["id"]
    marked = await m.customer.call("notifications.markRead", {"ids": [mine, ids[0]]})
    assert marked == {"updated": 1, "unreadCount": 2}
    assert await m.provider.call("notifications.unreadCount") == {"count": 4}
    unread = await m.customer.call("notifications.list", {"unreadOnly": True})
    assert [n["type"] for n in unread["notifications"]] == ["booking_accepted", "welcome"]
    assert (await m.customer.call("notifications.list", {}))["notifications"][0]["read"] is True
    assert await m.customer.call("notifications.markAllRead") == {"updated": 2, "unreadCount": 0}
    error = await refused(m.customer, "notifications.list", {"type": "no_such_type"})
    assert error.code == -32602


async def test_reads_and_deletes_reach_the_users_other_devices(
    clients: Clients, app: App, clock: FakeClock
) -> None:
    m = await market(clients, app)
    tablet = await device(clients, m.provider_tokens)
    at = later(app)
    for h in range(3):
        await m.customer.call("bookings.create", m.booking(at + timedelta(hours=h)))
        clock.advance(3600)
    page = await m.provider.call("notifications.list", {"type": "booking_request"})
    first, second, third = sorted(n["id"] for n in page["notifications"])
    # A date range: created at or after since, before until.
    created = sorted(datetime.fromisoformat(n["createdAt"]) for n in page["notifications"])
    ranged = await m.provider.call(
        "notifications.list",
        {"since": created[1].isoformat(), "until": created[2].isoformat()},
    )
    assert [n["id"] for n in ranged["notifications"]] == [second]
    error = await refused(
        m.provider,
        "notifications.list",
        {"since": created[2].isoformat(), "until": created[1].isoformat()},
    )
    assert error.code == -32602
    # Read on the phone: the tablet is told, with the badge (the welcome is unread too).
    assert await m.provider.call("notifications.markRead", {"ids": [first]}) == {
        "updated": 1,
        "unreadCount": 3,
    }
    changed = await next_of(tablet, "notifications.changed")
    assert changed == {"readIds": [first], "allRead": False, "deletedIds": [], "unreadCount": 3}
    # Deleted on the tablet (someone else's id ignored): gone, and the phone is told.
    deleted = await tablet.call("notifications.delete", {"ids": [second, 999_999]})
    assert deleted == {"deleted": 1, "unreadCount": 2}
    changed = await next_of(m.provider, "notifications.changed")
    while changed["deletedIds"] != [second]:  # the phone's own read came first
        changed = await next_of(m.provider, "notifications.changed")
    assert changed["unreadCount"] == 2
    left = await m.provider.call("notifications.list", {"type": "booking_request"})
    assert sorted(n["id"] for n in left["notifications"]) == [first, third]
    # Nothing changed: no event. Then all read.
    assert await tablet.call("notifications.delete", {"ids": [second]}) == {
        "deleted": 0,
        "unreadCount": 2,
    }
    assert await m.provider.call("notifications.markAllRead") == {"updated": 2, "unreadCount": 0}
    changed = await next_of(tablet, "notifications.changed")
    while not changed["allRead"]:
        changed = await next_of(tablet, "notifications.changed")
    assert changed["unreadCount"] == 0


async def test_notifications_are_pruned_after_their_retention(
    clients: Clients, app: App, clock: FakeClock
) -> None:
    m = await market(clients, app)
    await m.customer.call("bookings.create", m.booking(later(app)))
    clock.advance(89 * 86400)
    await app.housekeeping.run_once()
    assert (await m.provider.call("notifications.unreadCount"))["count"] == 2  # and welcome
    clock.advance(2 * 86400)
    await app.housekeeping.run_once()
    assert (await m.provider.call("notifications.unreadCount"))["count"] == 0
    # The request and both parties' welcomes.
    assert app.metrics.registry.get_sample_value("rtc_notifications_pruned_total") == 3


async def test_earnings_follow_the_jobs_live(clients: Clients, app: App) -> None:
    m = await market(clients, app)
    at = later(app)
    charge = PRICES[0] + PRICES[1]
    empty = await m.provider.call("earnings.get")
    assert (empty["thisMonthPaise"], empty["todayPaise"], empty["pendingPaise"]) == (0, 0, 0)
    assert empty["timezone"] == "Asia/Kolkata"
    one = await m.customer.call("bookings.create", m.booking(at))
    two = await m.customer.call("bookings.create", m.booking(at + timedelta(hours=1)))
    assert (await m.provider.call("earnings.get"))["pendingPaise"] == 2 * charge
    updates = [(await next_of(m.provider, "earnings.updated"))["pendingPaise"] for _ in range(2)]
    assert updates == [charge, 2 * charge]
    # Accepting and starting move nothing (still open work): no earnings event.
    await m.provider.call("bookings.accept", {"idempotencyKey": key(), "bookingId": one["id"]})
    await m.provider.call("bookings.start", {"idempotencyKey": key(), "bookingId": one["id"]})
    await m.provider.call("bookings.complete", {"idempotencyKey": key(), "bookingId": one["id"]})
    moved = await next_of(m.provider, "earnings.updated")
    assert (moved["thisMonthPaise"], moved["todayPaise"], moved["pendingPaise"]) == (
        charge,
        charge,
        charge,
    )
    await m.customer.call("bookings.cancel", {"idempotencyKey": key(), "bookingId": two["id"]})
    cancelled = await next_of(m.provider, "earnings.updated")
    assert cancelled["pendingPaise"] == 0 and cancelled["todayPaise"] == charge
    assert (await refused(m.customer, "earnings.get", {})).name == "forbidden"


async def test_today_and_this_month_are_on_the_kolkata_calendar(
    clients: Clients, app: App, clock: FakeClock
) -> None:
    # 23:50 on 31 January in Kolkata is 18:20 UTC (next January: sessions and tokens
    # are checked against the real time too).
    clock._now = datetime(datetime.now(UTC).year + 1, 1, 31, 18, 20, tzinfo=UTC)
    m = await market(clients, app)
    booked = await m.customer.call("bookings.create", m.booking(later(app, 2)))
    await m.provider.call("bookings.accept", {"idempotencyKey": key(), "bookingId": booked["id"]})
    await m.provider.call("bookings.complete", {"idempotencyKey": key(), "bookingId": booked["id"]})
    now = await m.provider.call("earnings.get")
    assert now["todayPaise"] == now["thisMonthPaise"] == booked["chargePaise"]
    clock.advance(15 * 60)  # 00:05 on 1 February in Kolkata, still January 31st in UTC
    later_on = await m.provider.call("earnings.get")
    assert (later_on["todayPaise"], later_on["thisMonthPaise"]) == (0, 0)
