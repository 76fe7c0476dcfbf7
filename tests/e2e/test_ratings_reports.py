"""Ratings (both sides, once, only after completion; listings' averages) and reports
(both sides, once per booking and side, 5 a day; the admin console's review)."""

from __future__ import annotations

from typing import Any

from kernel.clock import FakeClock
from rtc_server.app import App

from .admins import login_admin
from .conftest import Clients
from .market import Market, key, later, market, next_of, refused


async def completed(m: Market, hours: float = 24) -> Any:
    booked = await m.customer.call("bookings.create", m.booking(later(m.app, hours)))
    ref = {"bookingId": booked["id"]}
    await m.provider.call("bookings.accept", {"idempotencyKey": key(), **ref})
    return await m.provider.call("bookings.complete", {"idempotencyKey": key(), **ref})


def rate(booking_id: int, stars: int, **extra: Any) -> dict[str, Any]:
    return {"idempotencyKey": key(), "bookingId": booking_id, "stars": stars, **extra}


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
    note = await next_of(m.provider, "notification.created")
    while note["notification"]["type"] != "rating_received":
        note = await next_of(m.provider, "notification.created")
    assert "4/5" in note["notification"]["body"]
    error = await refused(m.customer, "ratings.create", rate(job["id"], 1))
    assert error.name == "conflict" and error.data["reason"] == "already_rated"
    await m.provider.call("ratings.create", rate(job["id"], 5))
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
