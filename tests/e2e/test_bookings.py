"""Bookings as live jobs: creating (its rules), the offer on every device of the
provider, status changes and their events, lists, unread badges."""

from __future__ import annotations

from datetime import timedelta

import orjson

from kernel.clock import FakeClock
from rtc_server.app import App
from rtc_server.client import RtcClient

from .conftest import Clients, ws_url
from .market import PRICES, key, later, market, next_of, refused


async def test_a_booking_is_offered_live_to_every_device_of_the_provider(
    clients: Clients, app: App
) -> None:
    m = await market(clients, app)
    second = await RtcClient.connect(ws_url(app))
    clients.opened.append(second)
    await second.authenticate(m.provider_tokens["accessToken"])
    at = later(app)
    booked = await m.customer.call("bookings.create", m.booking(at, description="Leaking tap"))
    assert booked["status"] == "pending" and booked["chargePaise"] == PRICES[0] + PRICES[1]
    assert [i["pricePaise"] for i in booked["items"]] == list(PRICES[:2])
    assert booked["providerName"] == "Ravi Kumar" and booked["customerName"] == "Asha Rao"
    assert booked["address"]["fullAddress"] == "12, Marine Drive, Kochi"
    assert booked["actions"] == ["cancel"] and booked["viewed"] is True
    for device in (m.provider, second):
        offer = await next_of(device, "booking.offered")
        assert offer["booking"]["id"] == booked["id"]
        assert offer["booking"]["actions"] == ["accept", "reject"]
        assert offer["booking"]["viewed"] is False
        note = await next_of(device, "notification.created")
        assert note["notification"]["type"] == "booking_request"
        assert "Asha Rao" in note["notification"]["body"]
        assert (await next_of(device, "booking.unreadCount")) == {"as": "provider", "count": 1}
        money = await next_of(device, "earnings.updated")
        assert money["pendingPaise"] == booked["chargePaise"]
    mine = await next_of(m.customer, "booking.updated")
    assert mine["change"] == "created" and mine["booking"] == booked
    # No phone number anywhere in what either side received.
    for client in (m.customer, m.provider, second):
        assert b"+91" not in orjson.dumps([e.params for e in client.received])
    # The offer is due for a push unless acknowledged in time (push_intents).
    assert app.db is not None
    intent = await app.db.fetchrow(
        "SELECT event, due_at FROM push_intents WHERE user_id = $1", m.provider_id
    )
    assert intent["event"] == "booking.offered"
    assert intent["due_at"] == app.clock.now() + timedelta(seconds=30)


async def test_booking_rules_refuse_and_change_nothing(clients: Clients, app: App) -> None:
    m = await market(clients, app)
    at = later(app)
    cases = [
        (m.booking(app.clock.now() - timedelta(minutes=1)), "unprocessable", "appointment_in_past"),
        (m.booking(app.clock.now() + timedelta(days=181)), "unprocessable", "appointment_too_far"),
        (m.booking(at, providerServiceId=999_999), "not_found", None),
        (m.booking(at, addressId=999_999), "not_found", None),
        (m.booking(at, subServiceIds=[m.subs[0], m.subs[0]]), "invalid_params", None),
        (m.booking(at, appointmentAt="2030-01-01T10:00:00"), "invalid_params", None),
    ]
    for params, name, reason in cases:
        error = await refused(m.customer, "bookings.create", params)
        assert error.name == name, (params, error)
        if reason:
            assert error.data["reason"] == reason
    # A sub-service of the service the provider does not price.
    assert app.db is not None
    unpriced = await app.db.fetchval(
        "SELECT ss.id FROM sub_services ss JOIN services s ON s.id = ss.service_id"
        " WHERE s.slug = 'plumber' ORDER BY ss.position DESC LIMIT 1"
    )
    error = await refused(m.customer, "bookings.create", m.booking(at, subServiceIds=[unpriced]))
    assert error.data["fields"][0]["field"] == "subServiceIds.0"
    # Another customer's address.
    other, _ = await clients.login()
    theirs = await other.call(
        "addresses.create",
        {"idempotencyKey": key(), "state": "Kerala", "fullAddress": "Somewhere else, Kochi"},
    )
    error = await refused(m.customer, "bookings.create", m.booking(at, addressId=theirs["id"]))
    assert error.name == "not_found" and error.data["field"] == "addressId"
    # A pending (unpaid) registration is not bookable.
    await app.db.execute("UPDATE provider_services SET status = 'pending' WHERE id = $1", m.listing)
    error = await refused(m.customer, "bookings.create", m.booking(at))
    assert error.name == "not_found" and error.data["field"] == "providerServiceId"
    assert await app.db.fetchval("SELECT count(*) FROM bookings") == 0
    # Nothing but the new accounts' welcomes.
    assert await app.db.fetchval("SELECT count(*) FROM notifications WHERE type <> 'welcome'") == 0
    events = "SELECT count(*) FROM user_events"
    events += " WHERE payload #>> '{notification,type}' IS DISTINCT FROM 'welcome'"
    assert await app.db.fetchval(events) == 0


async def test_no_second_open_booking_of_the_same_slot(clients: Clients, app: App) -> None:
    m = await market(clients, app)
    at = later(app)
    first = await m.customer.call("bookings.create", m.booking(at))
    error = await refused(m.customer, "bookings.create", m.booking(at))
    assert error.name == "conflict" and error.data["reason"] == "duplicate_booking"
    # Another slot is fine; after a cancellation the slot is free again.
    await m.customer.call("bookings.create", m.booking(at + timedelta(hours=1)))
    await m.customer.call("bookings.cancel", {"idempotencyKey": key(), "bookingId": first["id"]})
    again = await m.customer.call("bookings.create", m.booking(at))
    assert again["id"] != first["id"]


async def test_per_customer_limits_per_minute_and_hour(
    clients: Clients, app: App, clock: FakeClock
) -> None:
    m = await market(clients, app)
    at = later(app, hours=48)
    slot = iter(range(1000))

    async def book() -> None:
        await m.customer.call("bookings.create", m.booking(at + timedelta(minutes=next(slot))))

    for _ in range(8):
        await book()
    error = await refused(
        m.customer, "bookings.create", m.booking(at + timedelta(minutes=next(slot)))
    )
    assert error.name == "rate_limited" and error.data["reason"] == "bookings_per_minute"
    assert 0 < error.data["retryAfterMs"] <= 60_000
    for more in (8, 4):  # 8 per minute, 20 per hour
        clock.advance(61)
        for _ in range(more):
            await book()
    assert app.db is not None
    assert await app.db.fetchval("SELECT count(*) FROM bookings") == 20
    error = await refused(
        m.customer, "bookings.create", m.booking(at + timedelta(minutes=next(slot)))
    )
    assert error.data["reason"] == "bookings_per_hour"
    clock.advance(3600)
    await book()


async def test_the_job_lifecycle_tells_the_other_side_each_step(clients: Clients, app: App) -> None:
    m = await market(clients, app)
    booked = await m.customer.call("bookings.create", m.booking(later(app)))
    ref = {"bookingId": booked["id"]}
    steps = [
        ("bookings.accept", {}, "accepted", "booking_accepted"),
        ("bookings.reject", {"reason": "Fell ill"}, "rejected", "booking_rejected"),
        ("bookings.accept", {}, "accepted", "booking_accepted"),
        ("bookings.start", {}, "in_progress", "booking_started"),
        ("bookings.complete", {}, "completed", "booking_completed"),
    ]
    for method, extra, status, kind in steps:
        done = await m.provider.call(method, {"idempotencyKey": key(), **ref, **extra})
        assert done["status"] == status
        told = await next_of(m.customer, "booking.updated")
        while told["change"] != status:
            told = await next_of(m.customer, "booking.updated")
        assert told["booking"]["status"] == status and told["booking"]["viewed"] is False
        note = await next_of(m.customer, "notification.created")
        assert note["notification"]["type"] == kind
    assert done["actions"] == ["rate"] and done["completedAt"] is not None
    final = await m.customer.call("bookings.get", ref)
    assert final["actions"] == ["rate"] and final["rejectionReason"] is None
    # Completed is final for everyone.
    for client, method in (
        (m.provider, "bookings.accept"),
        (m.provider, "bookings.start"),
        (m.provider, "bookings.complete"),
        (m.customer, "bookings.cancel"),
    ):
        error = await refused(client, method, {"idempotencyKey": key(), **ref})
        assert error.name == "state_conflict" and error.code == 4091
        assert error.data["status"] == "completed"


async def test_the_customer_cancels_only_pending_or_rejected(clients: Clients, app: App) -> None:
    m = await market(clients, app)
    at = later(app)
    pending = await m.customer.call("bookings.create", m.booking(at))
    cancelled = await m.customer.call(
        "bookings.cancel",
        {"idempotencyKey": key(), "bookingId": pending["id"], "reason": "Fixed it myself"},
    )
    assert (
        cancelled["status"] == "cancelled" and cancelled["cancellationReason"] == "Fixed it myself"
    )
    note = await next_of(m.provider, "notification.created")
    while note["notification"]["type"] != "booking_cancelled":
        note = await next_of(m.provider, "notification.created")
    assert "Fixed it myself" in note["notification"]["body"]
    accepted = await m.customer.call("bookings.create", m.booking(at + timedelta(hours=1)))
    await m.provider.call("bookings.accept", {"idempotencyKey": key(), "bookingId": accepted["id"]})
    error = await refused(
        m.customer, "bookings.cancel", {"idempotencyKey": key(), "bookingId": accepted["id"]}
    )
    assert error.name == "state_conflict" and error.data["status"] == "accepted"
    await m.provider.call(
        "bookings.reject", {"idempotencyKey": key(), "bookingId": accepted["id"], "reason": "Busy"}
    )
    done = await m.customer.call(
        "bookings.cancel", {"idempotencyKey": key(), "bookingId": accepted["id"]}
    )
    assert done["status"] == "cancelled"
    error = await refused(
        m.provider, "bookings.accept", {"idempotencyKey": key(), "bookingId": accepted["id"]}
    )
    assert error.data["status"] == "cancelled"


async def test_only_the_two_parties_see_or_change_a_booking(clients: Clients, app: App) -> None:
    m = await market(clients, app)
    booked = await m.customer.call("bookings.create", m.booking(later(app)))
    ref = {"bookingId": booked["id"]}
    stranger, _ = await clients.login()
    other_provider, _ = await clients.login(role="provider")
    for client, method in (
        (stranger, "bookings.get"),
        (stranger, "bookings.markViewed"),
        (other_provider, "bookings.get"),
    ):
        assert (await refused(client, method, ref)).name == "not_found"
    for client, method in ((stranger, "bookings.cancel"), (other_provider, "bookings.accept")):
        error = await refused(client, method, {"idempotencyKey": key(), **ref})
        assert error.name == "not_found"
    assert (await m.customer.call("bookings.get", ref))["status"] == "pending"


async def test_a_retried_change_acts_once(clients: Clients, app: App) -> None:
    m = await market(clients, app)
    booked = await m.customer.call("bookings.create", m.booking(later(app)))
    params = {"idempotencyKey": key(), "bookingId": booked["id"]}
    first = await m.provider.call("bookings.accept", params)
    again = await m.provider.call("bookings.accept", params)
    assert first == again
    assert app.db is not None
    changes = await app.db.fetchval(
        "SELECT count(*) FROM notifications WHERE type = 'booking_accepted'"
    )
    assert changes == 1


async def test_lists_page_by_status_newest_first(clients: Clients, app: App) -> None:
    m = await market(clients, app)
    at = later(app)
    ids = [
        (await m.customer.call("bookings.create", m.booking(at + timedelta(hours=h))))["id"]
        for h in range(5)
    ]
    await m.provider.call("bookings.accept", {"idempotencyKey": key(), "bookingId": ids[1]})
    page = await m.customer.call("bookings.list", {"limit": 2})
    assert [b["id"] for b in page["bookings"]] == ids[:-3:-1]
    seen = [b["id"] for b in page["bookings"]]
    while page["nextCursor"]:
        page = await m.customer.call("bookings.list", {"limit": 2, "cursor": page["nextCursor"]})
        seen += [b["id"] for b in page["bookings"]]
    assert seen == ids[::-1]
    pending = await m.provider.call("bookings.list", {"as": "provider", "status": "pending"})
    assert [b["id"] for b in pending["bookings"]] == [i for i in ids[::-1] if i != ids[1]]
    accepted = await m.provider.call("bookings.list", {"status": "accepted"})
    assert [b["id"] for b in accepted["bookings"]] == [ids[1]]
    first = await m.customer.call("bookings.list", {"limit": 1})
    error = await refused(
        m.customer, "bookings.list", {"status": "pending", "cursor": first["nextCursor"]}
    )
    assert error.data["fields"] == [{"field": "cursor", "message": "not a cursor of this list"}]
    error = await refused(m.customer, "bookings.list", {"as": "provider"})
    assert error.name == "forbidden"


async def test_unread_badges_per_side(clients: Clients, app: App) -> None:
    m = await market(clients, app)
    at = later(app)
    second = await RtcClient.connect(ws_url(app))
    clients.opened.append(second)
    await second.authenticate(m.provider_tokens["accessToken"])
    first = await m.customer.call("bookings.create", m.booking(at))
    other = await m.customer.call("bookings.create", m.booking(at + timedelta(hours=2)))
    assert await m.provider.call("bookings.unreadCount") == {"as": "provider", "count": 2}
    assert await m.customer.call("bookings.unreadCount") == {"as": "customer", "count": 0}
    viewed = await m.provider.call("bookings.markViewed", {"bookingId": first["id"]})
    assert viewed == {"as": "provider", "count": 1}
    counts = [(await next_of(second, "booking.unreadCount"))["count"] for _ in range(3)]
    assert counts == [1, 2, 1]
    # The provider acts: the customer's badge goes up, the provider's own down.
    await m.provider.call("bookings.accept", {"idempotencyKey": key(), "bookingId": other["id"]})
    assert await next_of(m.customer, "booking.unreadCount") == {"as": "customer", "count": 1}
    assert await next_of(second, "booking.unreadCount") == {"as": "provider", "count": 0}
    listed = await m.customer.call("bookings.list", {})
    assert [b["viewed"] for b in listed["bookings"]] == [False, True]
    assert await m.customer.call("bookings.markAllViewed") == {"as": "customer", "count": 0}
    assert await m.customer.call("bookings.markAllViewed") == {"as": "customer", "count": 0}
    missing = await refused(m.customer, "bookings.markViewed", {"bookingId": 999_999})
    assert missing.name == "not_found"


async def test_a_registration_with_open_bookings_cannot_be_removed(
    clients: Clients, app: App
) -> None:
    m = await market(clients, app)
    booked = await m.customer.call("bookings.create", m.booking(later(app)))
    ref = {"providerServiceId": m.listing}
    error = await refused(m.provider, "providers.removeService", ref)
    assert error.name == "conflict" and error.data["reason"] == "open_bookings"
    await m.provider.call(
        "bookings.reject", {"idempotencyKey": key(), "bookingId": booked["id"], "reason": "Away"}
    )
    assert await m.provider.call("providers.removeService", ref) == {"ok": True}


async def test_the_answer_commits_with_the_booking_and_a_refusal_frees_the_key(
    clients: Clients, app: App
) -> None:
    m = await market(clients, app)
    at = later(app)
    params = m.booking(at)
    first = await m.customer.call("bookings.create", params)
    assert app.db is not None
    stored = await app.db.fetchval(
        "SELECT result::text FROM idempotency_keys WHERE user_id = $1 AND key = $2",
        m.customer_id,
        params["idempotencyKey"],
    )
    assert orjson.loads(stored) == first
    # Refused (an open booking of the slot): nothing stored, the key is free again.
    again = m.booking(at)
    error = await refused(m.customer, "bookings.create", again)
    assert error.data["reason"] == "duplicate_booking"
    await m.customer.call("bookings.cancel", {"idempotencyKey": key(), "bookingId": first["id"]})
    second = await m.customer.call("bookings.create", again)
    assert second["id"] != first["id"]
    assert await m.customer.call("bookings.create", again) == second


async def test_a_rejected_booking_cannot_be_accepted_over_a_new_booking_of_its_slot(
    clients: Clients, app: App
) -> None:
    m = await market(clients, app)
    at = later(app)
    first = await m.customer.call("bookings.create", m.booking(at))
    await m.provider.call(
        "bookings.reject", {"idempotencyKey": key(), "bookingId": first["id"], "reason": "Busy"}
    )
    again = await m.customer.call("bookings.create", m.booking(at))  # the slot is free again
    error = await refused(
        m.provider, "bookings.accept", {"idempotencyKey": key(), "bookingId": first["id"]}
    )
    assert error.name == "conflict" and error.data["reason"] == "slot_taken"
    assert (await m.provider.call("bookings.get", {"bookingId": first["id"]}))["status"] == (
        "rejected"
    )
    accepted = await m.provider.call(
        "bookings.accept", {"idempotencyKey": key(), "bookingId": again["id"]}
    )
    assert accepted["status"] == "accepted"
