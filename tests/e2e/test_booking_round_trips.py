"""The booking loop's budget of PostgreSQL round trips (bench/README.md, bookings): each
is a wake-up of the server and of a backend, most of the loop's CPU. A change that adds
one fails here, where it is cheap to see, rather than as a slower benchmark."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from rtc_server.app import App
from rtc_server.dispatch import current_connection

from .conftest import Clients
from .market import key, later, market

# bookings.create: BEGIN, the claim with the locks, the insert with its counts, the
# events with the answer, COMMIT. A status change: BEGIN, the claim with the locks, the
# change with its counts, events and answer, COMMIT.
CREATE_ROUND_TRIPS = 4
CHANGE_ROUND_TRIPS = 4


def counting(calls: Counter[str], name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    async def counted(self: asyncpg.Connection, *args: Any, **kwargs: Any) -> Any:
        if current_connection.get(None) is not None:  # inside an RPC, not a background job
            calls[name] += 1
        return await method(self, *args, **kwargs)

    return counted


async def test_the_round_trips_of_a_create_and_an_accept(
    clients: Clients, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = await market(clients, app)
    calls: Counter[str] = Counter()
    for name in ("execute", "executemany", "fetch", "fetchrow", "fetchval"):
        monkeypatch.setattr(
            asyncpg.Connection, name, counting(calls, name, getattr(asyncpg.Connection, name))
        )
    for hours in (10, 11):  # the second is counted: the first also prepares statements
        calls.clear()
        booked = await m.customer.call("bookings.create", m.booking(later(app, hours)))
        created = sum(calls.values())
        await m.provider.call(
            "bookings.accept", {"idempotencyKey": key(), "bookingId": booked["id"]}
        )
        accepted = sum(calls.values()) - created
    assert (created, accepted) == (CREATE_ROUND_TRIPS, CHANGE_ROUND_TRIPS), calls
    assert calls["execute"] == 4  # BEGIN and COMMIT: one transaction per change
