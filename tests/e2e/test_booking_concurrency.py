"""Bookings under concurrency and flaky networks: one winner among conflicting changes,
one booking for many retries of one create, and an offer that survives a dropped socket."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from rtc_server.app import App
from rtc_server.client import RpcCallError, RtcClient

from .conftest import Clients, ws_url
from .market import key, later, market


async def devices(app: App, tokens: Any, count: int, clients: Clients) -> list[RtcClient]:
    opened = []
    for _ in range(count):
        device = await RtcClient.connect(ws_url(app))
        clients.opened.append(device)
        await device.authenticate(tokens["accessToken"])
        opened.append(device)
    return opened


async def outcome(client: RtcClient, method: str, params: dict[str, Any]) -> str:
    try:
        await client.call(method, params, timeout=30)
    except RpcCallError as error:
        return error.name
    return "ok"


async def test_100_concurrent_conflicting_changes_have_exactly_one_winner(
    clients: Clients, app: App
) -> None:
    m = await market(clients, app)
    booked = await m.customer.call("bookings.create", m.booking(later(app)))
    ref = {"bookingId": booked["id"]}
    # Ten sockets a side (the per-socket in-flight limit is 16), ten requests each:
    # 50 accepts by the provider against 50 cancels by the customer, all at once.
    providers = await devices(app, m.provider_tokens, 5, clients)
    customers = await devices(app, m.customer_tokens, 5, clients)
    calls = [
        outcome(p, "bookings.accept", {"idempotencyKey": key(), **ref})
        for p in providers
        for _ in range(10)
    ] + [
        outcome(c, "bookings.cancel", {"idempotencyKey": key(), **ref})
        for c in customers
        for _ in range(10)
    ]
    results = await asyncio.gather(*calls)
    assert Counter(results) == {"ok": 1, "state_conflict": 99}
    winner = "accepted" if results.index("ok") < 50 else "cancelled"
    final = await m.customer.call("bookings.get", ref)
    assert final["status"] == winner
    assert app.db is not None
    notes = await app.db.fetchval(
        "SELECT count(*) FROM notifications WHERE booking_id = $1", ref["bookingId"]
    )
    assert notes == 2  # the offer, then the one change
    action = "accept" if winner == "accepted" else "cancel"
    sample = app.metrics.registry.get_sample_value
    assert sample("rtc_booking_transitions_total", {"action": action}) == 1
    conflicts = [
        sample("rtc_booking_conflicts_total", {"action": a}) or 0 for a in ("accept", "cancel")
    ]
    assert sum(conflicts) == 99


async def test_50_retries_of_one_create_make_one_booking(clients: Clients, app: App) -> None:
    m = await market(clients, app)
    params = m.booking(later(app))
    sockets = await devices(app, m.customer_tokens, 5, clients)

    async def create(client: RtcClient) -> Any:
        try:
            return await client.call("bookings.create", params, timeout=30)
        except RpcCallError as error:
            # The first attempt is still running: a retryable conflict.
            assert error.name == "conflict" and error.data["retryable"] is True
            return None

    calls = [(s, create(s)) for s in sockets for _ in range(10)]
    first = await asyncio.gather(*(call for _, call in calls))
    assert any(first)
    # Every attempt has been answered, so the first one is done: a retry of each
    # refused one now gets its stored answer.
    answers = [
        a if a is not None else await create(s) for (s, _), a in zip(calls, first, strict=True)
    ]
    assert len({a["id"] for a in answers}) == 1 and all(a == answers[0] for a in answers)
    assert app.db is not None
    assert await app.db.fetchval("SELECT count(*) FROM bookings") == 1
    offers = await app.db.fetchval(
        "SELECT count(*) FROM user_events WHERE event = 'booking.offered'"
    )
    assert offers == 1


async def test_a_dropped_provider_device_resumes_and_gets_everything_in_order(
    clients: Clients, app: App
) -> None:
    m = await market(clients, app)
    phone, tablet = m.provider, (await devices(app, m.provider_tokens, 1, clients))[0]
    first = await m.customer.call("bookings.create", m.booking(later(app)))
    for device in (phone, tablet):
        offer = await device.next_event(method="booking.offered")
        assert offer.data["booking"]["id"] == first["id"]
    # The tablet drops; meanwhile two more bookings and a cancellation happen.
    await tablet.close()
    dropped_at = tablet.last_seq or 0
    second = await m.customer.call("bookings.create", m.booking(later(app, 30)))
    third = await m.customer.call("bookings.create", m.booking(later(app, 40)))
    await m.customer.call("bookings.cancel", {"idempotencyKey": key(), "bookingId": second["id"]})
    assert app.db is not None
    newest = await app.db.fetchval(
        "SELECT last_seq FROM user_event_cursors WHERE user_id = $1", m.provider_id
    )

    async def until(client: RtcClient, seq: int) -> list[Any]:
        while (client.last_seq or 0) < seq:
            await client.next_event()
        return [(e.method, e.seq, e.data) for e in client.received if (e.seq or 0) > dropped_at]

    live = await until(phone, newest)  # the phone saw it all live
    resumed = await tablet.reconnect()
    clients.opened.append(resumed)
    replayed = await until(resumed, newest)
    assert [seq for _, seq, _ in replayed] == list(range(dropped_at + 1, newest + 1))
    assert replayed == live
    offered = [data["booking"]["id"] for name, _, data in replayed if name == "booking.offered"]
    assert offered == [second["id"], third["id"]]
    # Live events continue on the resumed socket; after a round trip nothing repeated.
    fourth = await m.customer.call("bookings.create", m.booking(later(app, 50)))
    newest = await app.db.fetchval(
        "SELECT last_seq FROM user_event_cursors WHERE user_id = $1", m.provider_id
    )
    after = await until(resumed, newest)
    assert after[-4][0] == "booking.offered" and after[-4][2]["booking"]["id"] == fourth["id"]
    await resumed.call("system.ping")
    seqs = [e.seq for e in resumed.received if e.seq is not None]
    assert seqs == list(range(dropped_at + 1, newest + 1))
