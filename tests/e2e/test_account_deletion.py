"""Deleting an account (``me.delete``), end to end across two instances: proved by a
fresh login code; the account's sockets close on every instance; its open bookings are
cancelled and the other side is told; what others rely on stays, naming a "Deleted
user"; the phone signs up again as a new, empty account. Admin removal erases the same
way and also blocks the phone."""

from __future__ import annotations

import asyncio
from typing import Any

from kernel.clock import FakeClock
from rtc_server.client import RpcCallError, RtcClient
from rtc_server.server import CloseCode

from .admins import login_admin
from .conftest import Clients, Cluster, device, e164
from .market import Market, key, later, market, refused


async def fresh_code(clients: Clients, client: RtcClient, phone: str, role: str) -> str:
    await client.call("auth.requestOtp", {"phone": phone, "role": role})
    return clients.code_log.last(e164(phone))


async def booking_at(m: Market, hours: float, then: str | None = None) -> Any:
    """A booking of the market's customer, taken by the provider to ``then``."""
    booked = await m.customer.call("bookings.create", m.booking(later(m.app, hours)))
    steps = {"accepted": ["accept"], "completed": ["accept", "complete"]}.get(then or "", [])
    for step in steps:
        await m.provider.call(
            f"bookings.{step}", {"idempotencyKey": key(), "bookingId": booked["id"]}
        )
    return booked


async def told_of_closing(client: RtcClient, count: int) -> tuple[list[Any], list[Any]]:
    """The next ``count`` cancellations (booking.updated) and ``count`` notifications of a
    cancelled booking on ``client``, whatever came between."""
    updates: list[Any] = []
    notes: list[Any] = []
    while len(updates) < count or len(notes) < count:
        event = await client.next_event()
        if event.method == "booking.updated" and event.data["change"] == "cancelled":
            updates.append(event.data)
        elif event.method == "notification.created":
            note = event.data["notification"]
            if note["type"] == "booking_party_gone":
                notes.append(note)
    return updates, notes


async def test_a_customer_deletes_their_account_across_two_instances(
    cluster: Cluster, clock: FakeClock
) -> None:
    a, b = await cluster(2)
    m = await market(a, a.app)
    phone = m.customer_tokens["user"]["phone"]
    on_b = await device(b, m.customer_tokens)
    pending = await booking_at(m, 24)
    accepted = await booking_at(m, 48, "accepted")
    done = await booking_at(m, 72, "completed")
    await m.customer.call(
        "ratings.create",
        {"idempotencyKey": key(), "bookingId": done["id"], "stars": 4, "review": "Neat work"},
    )
    await m.customer.call("me.update", {"email": "asha@example.in"})

    # A wrong code changes nothing; the right one of a fresh login deletes.
    clock.advance(31)  # past the resend cooldown of the login's code
    code = await fresh_code(a, m.customer, phone, "customer")
    wrong = "000000" if code != "000000" else "111111"
    error = await refused(m.customer, "me.delete", {"code": wrong})
    assert error.name == "invalid_code"
    assert (await on_b.call("me.get"))["email"] == "asha@example.in"
    assert await m.customer.call("me.delete", {"code": code}) == {"ok": True}

    # Its sockets close at once on both instances.
    assert await m.customer.wait_closed() == CloseCode.SESSION_REVOKED
    assert await on_b.wait_closed() == CloseCode.SESSION_REVOKED
    # The provider hears of both open bookings, without the customer's name.
    cancelled, told = await told_of_closing(m.provider, 2)
    assert sorted(u["booking"]["id"] for u in cancelled) == sorted([pending["id"], accepted["id"]])
    for note in told:
        assert "closed their account" in note["body"] and "Asha" not in note["body"]
    # What the provider relies on stays, naming a deleted user, never the old name.
    page = await m.provider.call("bookings.list", {})
    by_id = {bk["id"]: bk for bk in page["bookings"]}
    assert {bk["status"] for bk in page["bookings"]} == {"cancelled", "completed"}
    assert by_id[done["id"]]["status"] == "completed"
    for bk in page["bookings"]:
        assert bk["customerName"] == "Deleted user"
        assert bk["address"]["fullAddress"] is None and bk["address"]["pincode"] is None
        assert bk["address"]["city"] == "Kochi" and bk["description"] is None
    assert by_id[done["id"]]["customerRating"]["stars"] == 4
    listing = await m.provider.call("providers.get", {"providerServiceId": m.listing})
    assert [(r["customerName"], r["stars"]) for r in listing["reviews"]] == [("Deleted user", 4)]
    inbox = (await m.provider.call("notifications.list", {"limit": 50}))["notifications"]
    assert all("Asha" not in n["title"] + n["body"] for n in inbox)
    assert sum("Deleted user" in n["body"] for n in inbox) >= 3  # the three booking requests
    earnings = await m.provider.call("earnings.get")
    assert (earnings["pendingPaise"], earnings["thisMonthPaise"]) == (0, done["chargePaise"])
    # Nothing of the person is left in the database.
    db = a.app.db
    assert db is not None
    uid = m.customer_id
    assert await db.fetchval("SELECT count(*) FROM users WHERE id = $1", uid) == 0
    for table in ("addresses", "auth_sessions", "notifications", "push_devices", "user_events"):
        assert await db.fetchval(f"SELECT count(*) FROM {table} WHERE user_id = $1", uid) == 0
    assert await db.fetchval("SELECT count(*) FROM users WHERE phone = $1", e164(phone)) == 0
    assert await db.fetchval("SELECT count(*) FROM blocked_identifiers") == 0
    dump = await db.fetchval("SELECT string_agg(b::text, ' ') FROM bookings b")
    assert "Asha" not in dump and "Marine Drive" not in dump and "682031" not in dump
    # The old refresh token is dead.
    stranger = await b.anonymous()
    error = await refused(
        stranger, "auth.refresh", {"refreshToken": m.customer_tokens["refreshToken"]}
    )
    assert error.name == "unauthenticated"

    # The phone signs up again, on the other instance, as a new and empty account.
    clock.advance(31)
    again = await b.anonymous()
    code = await fresh_code(b, again, phone, "customer")
    tokens = await again.login(phone, "customer", code)
    assert tokens["user"]["id"] != uid and tokens["user"]["fullName"] is None
    me = await again.call("me.get")
    assert me["email"] is None and me["nameChangeCount"] == 0
    assert (await again.call("bookings.list", {}))["bookings"] == []
    assert (await again.call("addresses.list", {}))["addresses"] == []
    notes = await again.call("notifications.list", {})
    assert [n["type"] for n in notes["notifications"]] == ["welcome"]  # a new account's


async def test_a_provider_deletes_their_account(clients: Clients, clock: FakeClock) -> None:
    m = await market(clients, clients.app)
    phone = m.provider_tokens["user"]["phone"]
    in_progress = await booking_at(m, 24, "accepted")
    await m.provider.call(
        "bookings.start", {"idempotencyKey": key(), "bookingId": in_progress["id"]}
    )
    anonymous = await clients.anonymous()
    labors = m.listing
    clock.advance(31)
    code = await fresh_code(clients, m.provider, phone, "provider")
    assert await m.provider.call("me.delete", {"code": code}) == {"ok": True}
    assert await m.provider.wait_closed() == CloseCode.SESSION_REVOKED
    [update], [note] = await told_of_closing(m.customer, 1)
    assert update["booking"]["providerName"] == "Deleted user"
    assert update["booking"]["cancellationReason"] == "account closed"
    assert note["body"].startswith("The provider closed their account")
    # The listing is gone from search and lookups.
    error = await refused(anonymous, "providers.get", {"providerServiceId": labors})
    assert error.name == "not_found"
    # Nobody is left to call.
    error = await refused(
        m.customer, "calls.start", {"idempotencyKey": key(), "bookingId": in_progress["id"]}
    )
    assert error.name == "unprocessable" and "no longer active" in error.message


async def test_me_delete_needs_a_fresh_code_of_the_account(
    clients: Clients, clock: FakeClock
) -> None:
    customer, tokens = await clients.login()
    other, other_tokens = await clients.login()
    # No code, a malformed one: invalid params.
    for params in ({}, {"code": "12ab56"}, {"code": "1" * 20}):
        error = await refused(customer, "me.delete", params)
        assert error.code == -32602
    # The code of the login itself was consumed by it.
    login_code = clients.code_log.last(e164(tokens["user"]["phone"]))
    error = await refused(customer, "me.delete", {"code": login_code})
    assert error.name == "invalid_code"
    # Another account's fresh code proves nothing for this one.
    clock.advance(31)
    code = await fresh_code(clients, other, other_tokens["user"]["phone"], "customer")
    error = await refused(customer, "me.delete", {"code": code})
    assert error.name == "invalid_code"
    assert (await customer.call("me.get"))["id"] == tokens["user"]["id"]
    # That code still works for its own account (a wrong guess elsewhere did not eat it).
    assert await other.call("me.delete", {"code": code}) == {"ok": True}
    assert await other.wait_closed() == CloseCode.SESSION_REVOKED
    # Admins are removed by operators, not by themselves.
    admin, _ = await login_admin(clients)
    error = await refused(admin, "me.delete", {"code": "123456"})
    assert error.name == "forbidden"


async def test_bookings_made_while_the_account_is_deleted_are_cancelled_too(
    cluster: Cluster, clock: FakeClock
) -> None:
    """Bookings created on another instance while the deletion runs: whatever got in
    before the account was sealed is cancelled with the rest, and nothing open is left
    without its customer."""
    a, b = await cluster(2)
    m = await market(a, a.app)
    phone = m.customer_tokens["user"]["phone"]
    on_b = await device(b, m.customer_tokens)
    clock.advance(31)
    code = await fresh_code(a, m.customer, phone, "customer")

    async def book(hours: int) -> Any:
        return await on_b.call("bookings.create", m.booking(later(m.app, hours)))

    outcomes = await asyncio.gather(
        m.customer.call("me.delete", {"code": code}),
        *(book(24 + h) for h in range(8)),
        return_exceptions=True,
    )
    assert outcomes[0] == {"ok": True}
    made = [o["id"] for o in outcomes[1:] if isinstance(o, dict)]
    refusals = {o.name for o in outcomes[1:] if isinstance(o, RpcCallError)}
    # Those that came too late are told their session ended (or, after a deadlock
    # PostgreSQL broke, to try again): never an internal error.
    assert refusals <= {"unauthenticated", "unavailable"}, refusals
    db = a.app.db
    assert db is not None
    rows = await db.fetch("SELECT id, status, customer_id FROM bookings ORDER BY id")
    assert sorted(r["id"] for r in rows) == sorted(made)
    assert {(r["status"], r["customer_id"]) for r in rows} <= {("cancelled", None)}
    # The provider was told of each one that got in.
    if made:
        cancelled, _ = await told_of_closing(m.provider, len(made))
        assert sorted(u["booking"]["id"] for u in cancelled) == sorted(made)
