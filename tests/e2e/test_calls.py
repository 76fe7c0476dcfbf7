"""Masked calls end to end over real sockets: ringing on every device, first accept
wins, the rules of who may call, busy, timeouts, hang-ups, history."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from kernel.clock import FakeClock
from rtc_server.app import App
from rtc_server.client import RtcClient
from signalling.feature import CallsFeature

from .admins import login_admin
from .calls import Booked, booked, connected_call, ended, live_of, start, step
from .conftest import AppFactory, Clients, CodeLog, ws_url
from .market import key, later, login_named, next_of, refused
from .test_call_signalling import OFFER

FAST = {"sweep_interval": 0.02}


async def second_device(clients: Clients, tokens: Any) -> RtcClient:
    client = await RtcClient.connect(ws_url(clients.app))
    clients.opened.append(client)
    await client.authenticate(tokens["accessToken"])
    return client


def keys(data: Any) -> set[str]:
    """Every key of every object nested in ``data``."""
    if isinstance(data, dict):
        return set(data).union(*(keys(v) for v in data.values()))
    if isinstance(data, list):
        return set().union(*(keys(v) for v in data))
    return set()


async def call_rows(app: App) -> int:
    assert app.db is not None
    return int(await app.db.fetchval("SELECT count(*) FROM call_sessions"))


async def test_a_call_rings_every_callee_device_masked_and_the_first_accept_wins(
    clients: Clients, app: App
) -> None:
    b = await booked(clients, app)
    tablet = await second_device(clients, b.m.provider_tokens)
    started = await start(b.customer, b.booking_id)
    call_id = started["callId"]
    assert started["policy"] == "open" and started["iceServers"] == []
    assert started["ringTimeoutMs"] == 30_000
    for device in (b.provider, tablet):
        incoming = await next_of(device, "call.incoming")
        assert incoming["callId"] == call_id and incoming["bookingId"] == b.booking_id
        assert incoming["from"] == {"displayName": "Asha Rao", "role": "customer", "avatar": None}
        assert incoming["media"] == "direct" and incoming["policy"] == "open"
    ringing = await next_of(b.customer, "call.ringing")
    assert ringing["call"]["state"] == "ringing" and ringing["call"]["direction"] == "outgoing"
    assert ringing["call"]["other"] == {
        "displayName": "Ravi Kumar",
        "role": "provider",
        "avatar": None,
    }

    answer = await step(tablet, "calls.accept", call_id)
    assert answer["state"] == "accepted" and answer["direction"] == "incoming"
    for device in (b.customer, b.provider, tablet):
        accepted = await next_of(device, "call.accepted")
        assert accepted["call"]["state"] == "accepted"
    elsewhere = await live_of(b.provider, "call.answeredElsewhere")
    assert elsewhere == {"callId": call_id}
    late = await refused(b.provider, "calls.accept", {"idempotencyKey": key(), "callId": call_id})
    assert late.name == "state_conflict" and late.data["status"] == "accepted"
    assert not any(e.method == "call.answeredElsewhere" for e in tablet.received)

    await step(b.customer, "calls.hangup", call_id)
    for device, ended_by in ((b.customer, "you"), (tablet, "other")):
        change = await ended(device, call_id)
        assert change["call"]["endReason"] == "hangup" and change["endedBy"] == ended_by
        assert change["call"]["durationMs"] >= 0
    # Neither side received a phone number or a user id in any call event.
    for client in (b.customer, b.provider, tablet):
        calls = [e.params for e in client.received if e.method.startswith("call.")]
        assert calls and "+91" not in orjson.dumps(calls).decode()
        assert not {k for k in keys(calls) if k.endswith("Id") or "phone" in k.lower()} - {
            "callId",
            "bookingId",
        }

    for client, direction in ((b.customer, "outgoing"), (b.provider, "incoming")):
        page = await client.call("calls.history", {"bookingId": b.booking_id})
        assert [c["callId"] for c in page["calls"]] == [call_id]
        assert page["calls"][0]["direction"] == direction
        assert page["calls"][0]["endReason"] == "hangup"


async def test_reject_and_cancel_end_the_call_for_both_and_only_the_right_party_may(
    clients: Clients, app: App
) -> None:
    b = await booked(clients, app)
    first = (await start(b.provider, b.booking_id))["callId"]  # the provider calls too
    incoming = await next_of(b.customer, "call.incoming")
    assert incoming["from"]["role"] == "provider"
    for client, method in ((b.provider, "calls.accept"), (b.provider, "calls.reject")):
        wrong = await refused(client, method, {"idempotencyKey": key(), "callId": first})
        assert wrong.name == "forbidden"
    wrong = await refused(b.customer, "calls.cancel", {"idempotencyKey": key(), "callId": first})
    assert wrong.name == "forbidden"
    early = await refused(b.customer, "calls.hangup", {"idempotencyKey": key(), "callId": first})
    assert early.name == "state_conflict"
    await step(b.customer, "calls.reject", first, reason="driving")
    for client in (b.customer, b.provider):
        assert (await ended(client, first))["call"]["endReason"] == "rejected"

    second = (await start(b.customer, b.booking_id))["callId"]
    await step(b.customer, "calls.cancel", second)
    for client in (b.customer, b.provider):
        assert (await ended(client, second))["call"]["endReason"] == "cancelled"
    stranger, _ = await clients.login()
    hidden = await refused(stranger, "calls.hangup", {"idempotencyKey": key(), "callId": second})
    assert hidden.name == "not_found"


async def test_who_may_call_whom_is_checked_on_the_server_and_refusals_change_nothing(
    clients: Clients, app: App
) -> None:
    b = await booked(clients, app)
    assert app.db is not None
    db = app.db

    async def refusal(client: RtcClient, booking_id: int, **params: Any) -> Any:
        before = await call_rows(app)
        error = await refused(
            client,
            "calls.start",
            {"idempotencyKey": key(), "bookingId": booking_id, **params},
        )
        assert await call_rows(app) == before
        return error

    stranger, _ = await clients.login()
    assert (await refusal(stranger, b.booking_id)).name == "not_found"
    assert (await refusal(b.customer, 10**12)).name == "not_found"
    admin, _ = await login_admin(clients)
    assert (await refusal(admin, b.booking_id)).name == "forbidden"

    cases = [
        (
            "UPDATE users SET is_verified = false WHERE id = $1",
            b.m.customer_id,
            "caller_not_verified",
        ),
        (
            "UPDATE users SET is_verified = false WHERE id = $1",
            b.m.provider_id,
            "callee_not_verified",
        ),
        ("UPDATE users SET is_active = false WHERE id = $1", b.m.provider_id, "callee_gone"),
        (
            "UPDATE provider_services SET status = 'expired' WHERE id = $1",
            b.m.listing,
            "registration_inactive",
        ),
        ("UPDATE bookings SET status = 'completed' WHERE id = $1", b.booking_id, "booking_status"),
    ]
    for sql, target, reason in cases:
        saved = await db.fetchrow("SELECT * FROM users WHERE id = $1", b.m.customer_id)
        await db.execute(sql, target)
        error = await refusal(b.customer, b.booking_id)
        assert (error.name, error.data["reason"]) == ("unprocessable", reason), reason
        # Undo: every user and the booking back as they were.
        await db.execute(
            "UPDATE users SET is_verified = true, is_active = true WHERE id = ANY($1)",
            [b.m.customer_id, b.m.provider_id],
        )
        await db.execute(
            "UPDATE provider_services SET status = 'active' WHERE id = $1", b.m.listing
        )
        await db.execute("UPDATE bookings SET status = 'pending' WHERE id = $1", b.booking_id)
        assert saved is not None
    # Accepted and in progress bookings may be called about; rejected ones not.
    for status, allowed in (("accepted", True), ("in_progress", True), ("rejected", False)):
        await db.execute("UPDATE bookings SET status = $2 WHERE id = $1", b.booking_id, status)
        if allowed:
            call_id = (await start(b.customer, b.booking_id))["callId"]
            await step(b.customer, "calls.cancel", call_id)
        else:
            assert (await refusal(b.customer, b.booking_id)).data["reason"] == "booking_status"


async def another_customer(clients: Clients, b: Booked) -> tuple[RtcClient, int]:
    """A second customer with a pending booking of the same provider listing."""
    customer, _ = await login_named(clients, "customer", "Meera Das")
    address = await customer.call(
        "addresses.create",
        {
            "idempotencyKey": key(),
            "type": "home",
            "state": "Kerala",
            "city": "Kochi",
            "fullAddress": "3, Fort Road, Kochi",
            "pincode": "682001",
        },
    )
    booking = await customer.call(
        "bookings.create",
        {**b.m.booking(later(b.m.app, 30)), "addressId": address["id"]},
    )
    return customer, booking["id"]


async def test_busy_in_call_and_the_rate_limit(clients: Clients, app: App) -> None:
    b = await booked(clients, app)
    meera, meera_booking = await another_customer(clients, b)
    call_id = await connected_call(b)
    busy = await refused(
        meera, "calls.start", {"idempotencyKey": key(), "bookingId": meera_booking}
    )
    assert (busy.name, busy.data["reason"]) == ("conflict", "busy")
    in_call = await refused(
        b.provider, "calls.start", {"idempotencyKey": key(), "bookingId": meera_booking}
    )
    assert (in_call.name, in_call.data["reason"]) == ("conflict", "in_call")
    assert in_call.data["callId"] == call_id and "callId" not in busy.data
    await step(b.provider, "calls.hangup", call_id)
    meera_call = (await start(meera, meera_booking))["callId"]  # free again
    await step(meera, "calls.cancel", meera_call)

    # Five calls a minute per caller; the sixth waits.
    for _ in range(4):  # one was made above
        started = await start(b.customer, b.booking_id)
        await step(b.customer, "calls.cancel", started["callId"])
    limited = await refused(
        b.customer, "calls.start", {"idempotencyKey": key(), "bookingId": b.booking_id}
    )
    assert limited.name == "rate_limited" and limited.data["retryAfterMs"] > 0
    clock = app.clock
    assert isinstance(clock, FakeClock)
    clock.advance(61)
    await step(b.customer, "calls.cancel", (await start(b.customer, b.booking_id))["callId"])

    # History: keyset pages, newest first, the same calls for both parties.
    pages: list[int] = []
    cursor = None
    while True:
        page = await b.customer.call(
            "calls.history", {"limit": 2, **({"cursor": cursor} if cursor else {})}
        )
        pages += [c["callId"] for c in page["calls"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert len(pages) == 6 and pages == sorted(pages, reverse=True)
    provider_side = await b.provider.call("calls.history", {"bookingId": b.booking_id})
    assert [c["callId"] for c in provider_side["calls"]] == pages
    meera_side = await meera.call("calls.history", {})
    assert [c["callId"] for c in meera_side["calls"]] == [meera_call]


async def test_busy_is_configurable_per_role(make_app: AppFactory, code_log: CodeLog) -> None:
    app = await make_app(calls={"busy_roles": ["customer"]})
    clients = Clients(app, code_log)
    try:
        b = await booked(clients, app)
        meera, meera_booking = await another_customer(clients, b)
        await connected_call(b)
        # Providers may take a second call (only customers get busy) ...
        second = (await start(meera, meera_booking))["callId"]
        await step(b.provider, "calls.accept", second)
        # ... but a customer in a call is busy for the provider.
        busy = await refused(
            b.provider, "calls.start", {"idempotencyKey": key(), "bookingId": meera_booking}
        )
        assert busy.data["reason"] == "busy"
    finally:
        await clients.close()


async def test_unanswered_calls_time_out_as_missed_told_to_both(
    make_app: AppFactory, code_log: CodeLog, clock: FakeClock
) -> None:
    app = await make_app(calls=FAST)
    clients = Clients(app, code_log)
    try:
        b = await booked(clients, app)
        call_id = (await start(b.customer, b.booking_id))["callId"]
        await next_of(b.provider, "call.incoming")
        clock.advance(29)
        assert await app.feature(CallsFeature).service.sweep() == 0  # 29 s: still ringing
        assert app.db is not None
        state = await app.db.fetchval("SELECT state FROM call_sessions WHERE id = $1", call_id)
        assert state == "ringing"
        clock.advance(1.5)  # the sweep (every 20 ms) ends it
        for client, ended_by in ((b.customer, "server"), (b.provider, "server")):
            change = await ended(client, call_id)
            assert change["call"]["endReason"] == "missed" and change["endedBy"] == ended_by
            assert change["call"]["durationMs"] == 0
        assert app.db is not None
        # Recorded for the push sender: the callee's missed call.
        intent = await app.db.fetchrow(
            "SELECT event, due_at FROM push_intents WHERE user_id = $1 AND event = 'call.ended'",
            b.m.provider_id,
        )
        assert intent is not None and intent["due_at"] == clock.now()
        # Only one instance of the end was recorded.
        ends = await app.db.fetchval(
            "SELECT count(*) FROM call_events WHERE call_id = $1 AND event = 'ended'", call_id
        )
        assert ends == 1
    finally:
        await clients.close()


async def test_per_instance_cap(make_app: AppFactory, code_log: CodeLog) -> None:
    app = await make_app(calls={"max_active_per_instance": 1})
    clients = Clients(app, code_log)
    try:
        first, second = await booked(clients, app), await booked(clients, app)
        call_id = (await start(first.customer, first.booking_id))["callId"]
        full = await refused(
            second.customer,
            "calls.start",
            {"idempotencyKey": key(), "bookingId": second.booking_id},
        )
        assert (full.name, full.data["reason"], full.data["retryable"]) == (
            "overloaded",
            "calls_full",
            True,
        )
        await step(first.customer, "calls.cancel", call_id)
        await start(second.customer, second.booking_id)
    finally:
        await clients.close()


async def test_a_dropped_socket_resumes_within_the_grace_else_the_call_ends(
    make_app: AppFactory, code_log: CodeLog, clock: FakeClock
) -> None:
    app = await make_app(calls={**FAST, "reconnect_grace": 20.0})
    clients = Clients(app, code_log)
    try:
        b = await booked(clients, app)
        call_id = await connected_call(b)
        assert app.db is not None
        await b.provider.close()
        await wait_for(lambda: lost(app, call_id, "callee"))
        clock.advance(15)
        back = await second_device(clients, b.m.provider_tokens)
        resumed = await back.call("calls.resume", {"callId": call_id})
        assert resumed["call"]["state"] == "accepted" and resumed["policy"] == "open"
        clock.advance(10)  # past the first drop's grace: resumed, so nothing ends
        await app.feature(CallsFeature).service.sweep()
        state = await app.db.fetchval("SELECT state FROM call_sessions WHERE id = $1", call_id)
        assert state == "accepted"
        # Signals now go to the new socket.
        await b.customer.call(
            "calls.signal",
            {"callId": call_id, "description": {"type": "offer", "sdp": OFFER}},
        )
        assert (await live_of(back, "call.signal"))["callId"] == call_id

        await back.close()
        await wait_for(lambda: lost(app, call_id, "callee"))
        clock.advance(21)
        change = await ended(b.customer, call_id)
        assert change["call"]["endReason"] == "disconnected" and change["endedBy"] == "server"
        trail = [
            r["event"]
            for r in await app.db.fetch(
                "SELECT event FROM call_events WHERE call_id = $1 ORDER BY id", call_id
            )
        ]
        assert trail == ["ringing", "accepted", "dropped", "resumed", "dropped", "ended"]
    finally:
        await clients.close()


async def lost(app: App, call_id: int, party: str) -> bool:
    assert app.db is not None
    value = await app.db.fetchval(
        f"SELECT {party}_lost_at FROM call_sessions WHERE id = $1", call_id
    )
    return value is not None


async def wait_for(check: Any, timeout: float = 5) -> None:
    """Poll an async condition (a state in the database) until it holds."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.01)


async def test_a_party_with_no_socket_anywhere_starts_its_grace_without_a_recorded_drop(
    make_app: AppFactory, code_log: CodeLog, clock: FakeClock
) -> None:
    # As after a SIGKILL: the customer's socket is gone, but no instance recorded it.
    app = await make_app(calls=FAST)
    clients = Clients(app, code_log)
    try:
        b = await booked(clients, app)
        call_id = await connected_call(b)
        assert app.db is not None
        assert (
            await app.feature(CallsFeature).service.check_presence() == 0
        )  # both parties are online
        await b.customer.close()
        await wait_for(lambda: lost(app, call_id, "caller"))
        await app.db.execute(
            "UPDATE call_sessions SET caller_lost_at = NULL WHERE id = $1", call_id
        )
        assert (
            await app.feature(CallsFeature).service.check_presence() == 1
        )  # the caller; the callee is online
        assert await lost(app, call_id, "caller") and not await lost(app, call_id, "callee")
        clock.advance(21)
        change = await ended(b.provider, call_id)
        assert change["call"]["endReason"] == "disconnected"
    finally:
        await clients.close()
