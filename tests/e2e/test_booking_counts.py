"""The badges and earnings in booking events are counted by the change's own statement
(storage.bookings: the booking's old version left out, its new one added): after every
kind of change they equal a fresh count by bookings.unreadCount and earnings.get."""

from __future__ import annotations

from typing import Any

from rtc_server.app import App
from rtc_server.client import RtcClient
from storage.bookings import FILL_COUNTS

from .conftest import Clients
from .market import Market, key, later, market


async def received(app: App, client: RtcClient, user_id: int) -> list[Any]:
    """Every event of the user's log so far, as this socket received it."""
    assert app.db is not None
    newest = await app.db.fetchval(
        "SELECT last_seq FROM user_event_cursors WHERE user_id = $1", user_id
    )
    while (client.last_seq or 0) < newest:
        await client.next_event()
    return list(client.received)


def last(events: list[Any], method: str) -> Any:
    return next((e.data for e in reversed(events) if e.method == method), None)


async def check_counts(m: Market) -> None:
    for client, user_id, side in (
        (m.customer, m.customer_id, "customer"),
        (m.provider, m.provider_id, "provider"),
    ):
        events = await received(m.app, client, user_id)
        badge = last(events, "booking.unreadCount") or {"as": side, "count": 0}
        assert badge == await client.call("bookings.unreadCount")
    money = last(await received(m.app, m.provider, m.provider_id), "earnings.updated")
    now = await m.provider.call("earnings.get")
    assert {k: v for k, v in money.items() if k != "asOf"} == {
        k: v for k, v in now.items() if k != "asOf"
    }


async def test_counts_in_events_equal_a_recount_after_every_change(
    clients: Clients, app: App
) -> None:
    m = await market(clients, app)
    first, second, third = [
        await m.customer.call("bookings.create", m.booking(later(app, hours)))
        for hours in (5, 6, 7)
    ]
    await check_counts(m)
    steps = [
        (m.provider, "bookings.accept", first, {}),
        (m.provider, "bookings.start", first, {}),
        (m.provider, "bookings.complete", first, {}),  # pending -> this month and today
        (m.provider, "bookings.reject", second, {"reason": "fully booked"}),  # leaves pending
        (m.provider, "bookings.accept", second, {}),  # back into pending
        (m.customer, "bookings.cancel", third, {}),
    ]
    for client, method, booking, extra in steps:
        await client.call(method, {"idempotencyKey": key(), "bookingId": booking["id"], **extra})
        await check_counts(m)
    money = await m.provider.call("earnings.get")
    charge = first["chargePaise"]
    assert (money["thisMonthPaise"], money["todayPaise"], money["pendingPaise"]) == (
        charge,
        charge,
        second["chargePaise"],
    )


async def test_only_the_count_events_are_filled_in(clients: Clients, app: App) -> None:
    """The statement fills the counts into stand-ins; text a user wrote that looks like
    one stays as written, in the log and live."""
    m = await market(clients, app)
    stand_in = str(FILL_COUNTS.unread["provider"])
    booked = await m.customer.call(
        "bookings.create", m.booking(later(app), description=f"gate code {stand_in}")
    )
    assert booked["description"] == f"gate code {stand_in}"
    events = await received(app, m.provider, m.provider_id)
    offer = last(events, "booking.offered")
    assert offer["booking"]["description"] == f"gate code {stand_in}"
    assert last(events, "booking.unreadCount") == {"as": "provider", "count": 1}
    assert app.db is not None
    stored = await app.db.fetchval(
        "SELECT payload::text FROM user_events WHERE user_id = $1 AND event = 'booking.offered'",
        m.provider_id,
    )
    assert stand_in in stored
    counted = await app.db.fetch(
        "SELECT payload::text AS p FROM user_events"
        " WHERE event IN ('booking.unreadCount', 'earnings.updated')"
    )
    assert len(counted) == 2 and not any("-9000" in r["p"] for r in counted)
