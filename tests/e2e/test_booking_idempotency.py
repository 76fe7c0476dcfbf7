"""Booking changes claim their idempotencyKey inside their own transaction
(kernel.idempotency.ClaimsKeyInTransaction): the claim commits or rolls back with
the change, a concurrent retry waits for the first call and gets its answer, and a
first call that dies between claim and commit leaves no claimed key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from rtc_server.app import App
from rtc_server.client import RpcCallError, RtcClient
from storage.database import Connection

from .conftest import Clients, ws_url
from .market import Market, key, later, market, refused


async def device(app: App, m: Market, clients: Clients) -> RtcClient:
    """A second socket of the provider."""
    client = await RtcClient.connect(ws_url(app))
    clients.opened.append(client)
    await client.authenticate(m.provider_tokens["accessToken"])
    return client


@asynccontextmanager
async def booking_locked(app: App, booking_id: int) -> AsyncIterator[Connection]:
    """Hold the booking's row lock: a change of it claims its key, then waits here."""
    assert app.db is not None
    async with app.db.transaction() as conn:
        await conn.execute("SELECT 1 FROM bookings WHERE id = $1 FOR UPDATE", booking_id)
        yield conn


async def waiting_for_locks(app: App, count: int) -> list[int]:
    """Wait until ``count`` server connections wait on a lock; their backend pids."""
    assert app.db is not None
    for _ in range(500):
        pids: list[int] = [
            r["pid"]
            for r in await app.db.fetch(
                """
                SELECT pid FROM pg_stat_activity
                WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()
                ORDER BY query_start
                """
            )
        ]
        if len(pids) >= count:
            return pids
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {count} waiting statements")


async def keys_named(app: App, idempotency_key: str) -> int:
    assert app.db is not None
    count: int = await app.db.fetchval(
        "SELECT count(*) FROM idempotency_keys WHERE key = $1", idempotency_key
    )
    return count


async def test_a_concurrent_retry_waits_and_gets_the_first_answer(
    clients: Clients, app: App
) -> None:
    m = await market(clients, app)
    booked = await m.customer.call("bookings.create", m.booking(later(app)))
    tablet = await device(app, m, clients)
    params = {"idempotencyKey": key(), "bookingId": booked["id"]}
    async with booking_locked(app, booked["id"]):
        first = asyncio.create_task(m.provider.call("bookings.accept", params, timeout=30))
        await waiting_for_locks(app, 1)  # claimed the key, waits for the booking
        retry = asyncio.create_task(tablet.call("bookings.accept", params, timeout=30))
        await waiting_for_locks(app, 2)  # waits for the first call's claim
        assert not first.done() and not retry.done()
    answers = await asyncio.gather(first, retry)
    assert answers[0] == answers[1] and answers[0]["status"] == "accepted"
    assert (
        app.metrics.registry.get_sample_value("rtc_booking_transitions_total", {"action": "accept"})
        == 1
    )
    assert app.db is not None
    notes = await app.db.fetchval(
        "SELECT count(*) FROM notifications WHERE booking_id = $1", booked["id"]
    )
    assert notes == 2  # the offer and one acceptance
    assert await keys_named(app, params["idempotencyKey"]) == 1


async def test_a_first_call_dying_between_claim_and_commit_leaves_no_key(
    clients: Clients, app: App
) -> None:
    m = await market(clients, app)
    booked = await m.customer.call("bookings.create", m.booking(later(app)))
    params = {"idempotencyKey": key(), "bookingId": booked["id"]}
    assert app.db is not None
    async with booking_locked(app, booked["id"]) as conn:
        first = asyncio.create_task(m.provider.call("bookings.accept", params, timeout=30))
        [pid] = await waiting_for_locks(app, 1)
        # The server's connection dies mid-transaction, as with a crashed process.
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
        with pytest.raises(RpcCallError):
            await first
    assert await keys_named(app, params["idempotencyKey"]) == 0
    assert (await m.customer.call("bookings.get", {"bookingId": booked["id"]}))[
        "status"
    ] == "pending"
    # Nothing stale is left to wait out: the retry runs at once.
    again = await m.provider.call("bookings.accept", params)
    assert again["status"] == "accepted"
    assert await keys_named(app, params["idempotencyKey"]) == 1


async def test_a_refused_first_call_leaves_no_key_and_the_retry_runs_again(
    clients: Clients, app: App
) -> None:
    m = await market(clients, app)
    assert app.db is not None
    other = await app.db.fetchval(
        "SELECT max(id) FROM sub_services WHERE NOT (id = ANY($1::bigint[]))", m.subs
    )
    params = m.booking(later(app), subServiceIds=[m.subs[0], other])
    for _ in range(2):  # refused inside the transaction, after the key's claim
        error = await refused(m.customer, "bookings.create", params)
        assert error.name == "invalid_params"
        assert await keys_named(app, params["idempotencyKey"]) == 0
    assert await app.db.fetchval("SELECT count(*) FROM bookings") == 0


async def test_a_retry_gets_the_first_answer_after_the_appointment_passed(
    clients: Clients, app: App
) -> None:
    m = await market(clients, app)
    params = m.booking(later(app, hours=1))
    first = await m.customer.call("bookings.create", params)
    app.clock.advance(2 * 3600)  # type: ignore[attr-defined]
    assert await m.customer.call("bookings.create", params) == first
    changed: dict[str, Any] = {**params, "description": "other"}
    mismatch = await refused(m.customer, "bookings.create", changed)
    assert mismatch.name == "idempotency_mismatch"
    late = await refused(m.customer, "bookings.create", {**params, "idempotencyKey": key()})
    assert late.data["reason"] == "appointment_in_past"
