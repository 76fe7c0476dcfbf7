"""Ratings (both sides, once, only after completion; listings' averages; a notification
to each side) and reports (both sides, once per booking and side, 5 a day; the
reporter's own list, notification and live status; the admin console's review, one
or many at once)."""

from __future__ import annotations

import json
from typing import Any

from kernel.clock import FakeClock
from rtc_server.app import App
from rtc_server.client import RtcClient

from .admins import login_admin
from .conftest import Clients, device
from .market import Market, key, later, market, next_of, refused


async def completed(m: Market, hours: float = 24) -> Any:
    booked = await m.customer.call("bookings.create", m.booking(later(m.app, hours)))
    ref = {"bookingId": booked["id"]}
    await m.provider.call("bookings.accept", {"idempotencyKey": key(), **ref})
    return await m.provider.call("bookings.complete", {"idempotencyKey": key(), **ref})


def rate(booking_id: int, stars: int, **extra: Any) -> dict[str, Any]:
    return {"idempotencyKey": key(), "bookingId": booking_id, "stars": stars, **extra}


def report(booking_id: int, reason: str = "No show") -> dict[str, Any]:
    return {
        "idempotencyKey": key(),
        "bookingId": booking_id,
        "reason": reason,
        "description": "Did not come and did not answer.",
    }


async def notified(client: RtcClient, type: str) -> Any:
    """The next notification of ``type`` that ``client`` is sent (others are skipped)."""
    while True:
        note = (await next_of(client, "notification.created"))["notification"]
        if note["type"] == type:
            return note


async def report_events(app: App, user_id: int) -> list[Any]:
    """The ``report.updated`` events in the user's log, in seq order."""
    assert app.db is not None
    rows = await app.db.fetch(
        "SELECT payload FROM user_events WHERE user_id = $1 AND event = 'report.updated'"
        " ORDER BY seq",
        user_id,
    )
    return [json.loads(r["payload"])["report"] for r in rows]


async def test_both_sides_rate_once_after_completion(clients: Clients, app: App) -> None:
    m = await market(clients, app)
    open_booking = await m.customer.call("bookings.create", m.booking(later(app, 48)))
    error = await refused(m.customer, "ratings.create", rate(open_booking["id"], 5))
    assert error.name == "state_conflict" and error.data["status"] == "pending"
    error = await refused(m.provider, "ratings.create", rate(open_booking["id"], 5))
    assert error.name == "state_conflict"
    job = await completed(m)
    given = await m.customer.call("ratings.create", rate(job["id"], 4, review="Quick and tidy"))
    assert (given["raterSide"], given["stars"], given["review"]) == (
        "customer",
        4,
        "Quick and tidy",
    )
    note = await notified(m.provider, "rating_received")
    assert note["body"] == "Asha Rao rated your Plumber job 4/5."
    mine = await notified(m.customer, "rating_submitted")
    assert (mine["title"], mine["bookingId"]) == ("Rating submitted", job["id"])
    assert mine["body"] == (
        "You rated Ravi Kumar 4/5 for the Plumber job. Thank you for your feedback."
    )
    error = await refused(m.customer, "ratings.create", rate(job["id"], 1))
    assert error.name == "conflict" and error.data["reason"] == "already_rated"
    await m.provider.call("ratings.create", rate(job["id"], 5))
    mine = await notified(m.provider, "rating_submitted")
    assert mine["body"].startswith("You rated Asha Rao 5/5 for the Plumber job.")
    # One of each per rating: the refused second rating wrote nothing.
    for client in (m.customer, m.provider):
        page = await client.call("notifications.list", {"type": "rating_submitted"})
        assert len(page["notifications"]) == 1
    seen = await m.customer.call("bookings.get", {"bookingId": job["id"]})
    assert seen["customerRating"]["stars"] == 4 and seen["providerRating"]["stars"] == 5
    assert seen["actions"] == []
    for bad in ({"stars": 0}, {"stars": 6}, {"review": "x" * 501}):
        error = await refused(m.customer, "ratings.create", {**rate(job["id"], 3), **bad})
        assert error.code == -32602
    stranger, _ = await clients.login()
    assert (await refused(stranger, "ratings.create", rate(job["id"], 1))).name == "not_found"


async def test_listings_show_the_customers_average(clients: Clients, app: App) -> None:
    m = await market(clients, app)
    anonymous = await clients.anonymous()
    listed = await anonymous.call("providers.get", {"providerServiceId": m.listing})
    assert listed["ratingAverage"] is None and listed["ratingCount"] == 0
    for hours, stars in ((24, 5), (30, 4), (36, 4)):
        job = await completed(m, hours)
        await m.customer.call("ratings.create", rate(job["id"], stars, review=f"{stars} stars"))
        await m.provider.call("ratings.create", rate(job["id"], 1))  # the customer's: not listed
    listed = await anonymous.call("providers.get", {"providerServiceId": m.listing})
    assert listed["ratingAverage"] == 4.33 and listed["ratingCount"] == 3
    assert [r["stars"] for r in listed["reviews"]] == [4, 4, 5]
    assert listed["reviews"][0]["customerName"] == "Asha"
    service_id = listed["serviceId"]
    found = await anonymous.call("providers.search", {"serviceId": service_id})
    assert found["providers"][0]["ratingAverage"] == 4.33


async def test_reports_once_per_booking_and_side_five_a_day(
    clients: Clients, app: App, clock: FakeClock
) -> None:
    m = await market(clients, app)
    jobs = [
        await m.customer.call("bookings.create", m.booking(later(app, 24 + h))) for h in range(7)
    ]

    def report(booking_id: int) -> dict[str, Any]:
        return {
            "idempotencyKey": key(),
            "bookingId": booking_id,
            "reason": "No show",
            "description": "Did not come and did not answer.",
        }

    first = await m.customer.call("reports.create", report(jobs[0]["id"]))
    assert (first["reporterSide"], first["status"]) == ("customer", "open")
    error = await refused(m.customer, "reports.create", report(jobs[0]["id"]))
    assert error.name == "conflict" and error.data["reason"] == "already_reported"
    back = await m.provider.call("reports.create", report(jobs[0]["id"]))  # the other side
    assert back["reporterSide"] == "provider"
    for job in jobs[1:5]:
        await m.customer.call("reports.create", report(job["id"]))
    error = await refused(m.customer, "reports.create", report(jobs[5]["id"]))
    assert error.name == "rate_limited" and error.data["reason"] == "reports_per_day"
    clock.advance(86400)
    await m.customer.call("reports.create", report(jobs[5]["id"]))
    error = await refused(m.customer, "reports.create", {**report(jobs[6]["id"]), "reason": ""})
    assert error.code == -32602
    stranger, _ = await clients.login()
    assert (await refused(stranger, "reports.create", report(jobs[6]["id"]))).name == "not_found"
    # The admin console.
    admin, _ = await login_admin(clients)
    page = await admin.call("admin.reports.list", {"limit": 4})
    assert len(page["reports"]) == 4 and page["nextCursor"]
    assert page["reports"][0]["reporterName"] == "Asha Rao"
    assert page["reports"][0]["reportedName"] == "Ravi Kumar"
    rest = await admin.call("admin.reports.list", {"limit": 4, "cursor": page["nextCursor"]})
    assert len(page["reports"]) + len(rest["reports"]) == 7
    done = await admin.call(
        "admin.reports.setStatus", {"reportId": back["id"], "status": "resolved"}
    )
    assert done["status"] == "resolved" and done["reporterName"] == "Ravi Kumar"
    resolved = await admin.call("admin.reports.list", {"status": "resolved"})
    assert [r["id"] for r in resolved["reports"]] == [back["id"]]
    missing = await refused(
        admin, "admin.reports.setStatus", {"reportId": 999_999, "status": "closed"}
    )
    assert missing.name == "not_found"


async def test_each_side_lists_its_own_reports_and_is_told_they_were_received(
    clients: Clients, app: App
) -> None:
    m = await market(clients, app)
    jobs = [
        await m.customer.call("bookings.create", m.booking(later(app, 24 + h))) for h in range(2)
    ]
    first = await m.customer.call("reports.create", report(jobs[0]["id"]))
    note = await notified(m.customer, "report_submitted")
    assert (note["title"], note["bookingId"], note["read"]) == (
        "Report submitted",
        jobs[0]["id"],
        False,
    )
    assert note["body"].startswith("We received your report on the Plumber booking for ")
    second = await m.customer.call("reports.create", report(jobs[1]["id"], "Rude"))
    theirs = await m.provider.call("reports.create", report(jobs[0]["id"], "Abusive"))
    assert (await notified(m.provider, "report_submitted"))["bookingId"] == jobs[0]["id"]
    # A refused report tells nobody anything.
    await refused(m.customer, "reports.create", report(jobs[0]["id"]))
    told = await m.customer.call("notifications.list", {"type": "report_submitted"})
    assert len(told["notifications"]) == 2
    # Each side sees its own reports, newest first, as the reporter sees them.
    mine = await m.customer.call("reports.mine", {})
    assert [r["id"] for r in mine["reports"]] == [second["id"], first["id"]]
    assert mine["reports"][0] == second and mine["nextCursor"] is None
    assert (second["reportedName"], second["serviceName"], second["reason"]) == (
        "Ravi Kumar",
        "Plumber",
        "Rude",
    )
    assert "reporterId" not in second and "reporterName" not in second
    provider_side = await m.provider.call("reports.mine", {})
    assert [r["id"] for r in provider_side["reports"]] == [theirs["id"]]
    assert provider_side["reports"][0]["reporterSide"] == "provider"
    assert provider_side["reports"][0]["reportedName"] == "Asha Rao"
    # Pages, and a status filter.
    page = await m.customer.call("reports.mine", {"limit": 1})
    assert [r["id"] for r in page["reports"]] == [second["id"]] and page["nextCursor"]
    rest = await m.customer.call("reports.mine", {"limit": 1, "cursor": page["nextCursor"]})
    assert [r["id"] for r in rest["reports"]] == [first["id"]] and rest["nextCursor"] is None
    admin, _ = await login_admin(clients)
    await admin.call("admin.reports.setStatus", {"reportId": first["id"], "status": "resolved"})
    resolved = await m.customer.call("reports.mine", {"status": "resolved"})
    assert [(r["id"], r["status"]) for r in resolved["reports"]] == [(first["id"], "resolved")]
    still_open = await m.customer.call("reports.mine", {"status": "open"})
    assert [r["id"] for r in still_open["reports"]] == [second["id"]]
    error = await refused(
        m.customer, "reports.mine", {"status": "open", "cursor": page["nextCursor"]}
    )
    assert error.code == -32602 and error.data["fields"][0]["field"] == "cursor"
    for bad in ({"status": "pending"}, {"limit": 0}, {"limit": 101}):
        assert (await refused(m.customer, "reports.mine", bad)).code == -32602
    stranger, _ = await clients.login()
    assert (await stranger.call("reports.mine", {}))["reports"] == []


async def test_a_status_change_reaches_the_reporter_live_and_after_a_reconnect(
    clients: Clients, app: App
) -> None:
    m = await market(clients, app)
    booked = await m.customer.call("bookings.create", m.booking(later(app)))
    filed = await m.customer.call("reports.create", report(booked["id"]))
    tablet = await device(clients, m.customer_tokens)
    admin, _ = await login_admin(clients)
    done = await admin.call(
        "admin.reports.setStatus", {"reportId": filed["id"], "status": "resolved"}
    )
    # Live, on every device of the reporter, as reports.mine shows it.
    for socket in (m.customer, tablet):
        update = await next_of(socket, "report.updated")
        assert update["report"]["id"] == filed["id"]
        assert update["report"]["status"] == "resolved"
    mine = await m.customer.call("reports.mine", {})
    assert update["report"] == mine["reports"][0]
    assert update["report"]["updatedAt"] == done["updatedAt"]
    # The phone is offline while the report is closed: it gets the change on resume.
    await m.customer.close()
    await admin.call("admin.reports.setStatus", {"reportId": filed["id"], "status": "closed"})
    resumed = await m.customer.reconnect()
    clients.opened.append(resumed)
    update = await next_of(resumed, "report.updated")
    assert (update["report"]["id"], update["report"]["status"]) == (filed["id"], "closed")
    # Setting the status it has changes nothing and tells nobody.
    again = await admin.call(
        "admin.reports.setStatus", {"reportId": filed["id"], "status": "closed"}
    )
    assert again["status"] == "closed" and again["updatedAt"] == update["report"]["updatedAt"]
    assert [r["status"] for r in await report_events(app, m.customer_id)] == [
        "resolved",
        "closed",
    ]
    assert await report_events(app, m.provider_id) == []  # the reported side is not told


async def test_admins_filter_by_side_and_set_many_reports_at_once(
    clients: Clients, app: App
) -> None:
    m = await market(clients, app)
    jobs = [
        await m.customer.call("bookings.create", m.booking(later(app, 24 + h))) for h in range(3)
    ]
    by_customer = [
        (await m.customer.call("reports.create", report(j["id"])))["id"] for j in jobs[:2]
    ]
    by_provider = [
        (await m.provider.call("reports.create", report(j["id"])))["id"] for j in jobs[1:]
    ]
    admin, _ = await login_admin(clients)

    async def listed(**params: Any) -> list[int]:
        page = await admin.call("admin.reports.list", params)
        return [r["id"] for r in page["reports"]]

    assert await listed(reporterSide="customer") == by_customer[::-1]
    assert await listed(reporterSide="provider") == by_provider[::-1]
    page = await admin.call("admin.reports.list", {"reporterSide": "provider", "limit": 1})
    assert [r["reporterSide"] for r in page["reports"]] == ["provider"]
    rest = await admin.call(
        "admin.reports.list", {"reporterSide": "provider", "limit": 1, "cursor": page["nextCursor"]}
    )
    assert [r["id"] for r in rest["reports"]] == [by_provider[0]] and rest["nextCursor"] is None
    error = await refused(
        admin, "admin.reports.list", {"reporterSide": "customer", "cursor": page["nextCursor"]}
    )
    assert error.data["fields"][0]["field"] == "cursor"
    error = await refused(admin, "admin.reports.list", {"reporterSide": "admin"})
    assert error.code == -32602 and error.data["fields"][0]["field"] == "reporterSide"

    # Many at once (a repeated id counts once); what changed comes back.
    ids = [by_customer[0], by_provider[0], by_customer[0]]
    closed = await admin.call("admin.reports.setStatusMany", {"reportIds": ids, "status": "closed"})
    assert [r["id"] for r in closed["changed"]] == sorted({by_customer[0], by_provider[0]})
    assert all(r["status"] == "closed" for r in closed["changed"]) and closed["unchangedIds"] == []
    assert closed["changed"][0]["reporterName"] == "Asha Rao"
    again = await admin.call(
        "admin.reports.setStatusMany",
        {"reportIds": [by_customer[0], by_customer[1]], "status": "closed"},
    )
    assert [r["id"] for r in again["changed"]] == [by_customer[1]]
    assert again["unchangedIds"] == [by_customer[0]]
    assert await listed(reporterSide="customer", status="closed") == by_customer[::-1]
    assert await listed(reporterSide="provider", status="open") == [by_provider[1]]
    # Each change went to its reporter, live and in the log.
    update = await next_of(m.provider, "report.updated")
    assert (update["report"]["id"], update["report"]["status"]) == (by_provider[0], "closed")
    told = [(r["id"], r["status"]) for r in await report_events(app, m.customer_id)]
    assert told == [(by_customer[0], "closed"), (by_customer[1], "closed")]

    # One id not found: a clear error, and nothing changed.
    before = await admin.call("admin.reports.list", {})
    error = await refused(
        admin,
        "admin.reports.setStatusMany",
        {"reportIds": [by_customer[0], 999_999, by_provider[1]], "status": "open"},
    )
    assert error.name == "not_found"
    assert (error.data["field"], error.data["missing"]) == ("reportIds", [999_999])
    assert await admin.call("admin.reports.list", {}) == before
    assert len(await report_events(app, m.customer_id)) == 2
    assert len(await report_events(app, m.provider_id)) == 1
    # Over the limit, none, or a status that is not one: -32602 naming the field.
    for params, field in (
        ({"reportIds": list(range(1, 102)), "status": "open"}, "reportIds"),
        ({"reportIds": [], "status": "open"}, "reportIds"),
        ({"reportIds": [0], "status": "open"}, "reportIds.0"),
        ({"reportIds": [by_customer[0]], "status": "done"}, "status"),
    ):
        error = await refused(admin, "admin.reports.setStatusMany", params)
        assert error.code == -32602 and error.data["fields"][0]["field"] == field, params
    assert await admin.call("admin.reports.list", {}) == before
