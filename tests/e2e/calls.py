"""Helpers of the call tests: a booked market (a customer and a provider with a pending
booking between them) and the calls' steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rtc_server.app import App
from rtc_server.client import RtcClient

from .conftest import Clients
from .market import Market, key, later, market, next_of


@dataclass
class Booked:
    m: Market
    booking_id: int

    @property
    def customer(self) -> RtcClient:
        return self.m.customer

    @property
    def provider(self) -> RtcClient:
        return self.m.provider


async def booked(clients: Clients, app: App) -> Booked:
    m = await market(clients, app)
    booking = await m.customer.call("bookings.create", m.booking(later(app)))
    return Booked(m, booking["id"])


async def start(client: RtcClient, booking_id: int, **params: Any) -> Any:
    return await client.call(
        "calls.start", {"idempotencyKey": key(), "bookingId": booking_id, **params}
    )


async def step(client: RtcClient, method: str, call_id: int, **params: Any) -> Any:
    """calls.accept / reject / cancel / hangup."""
    return await client.call(method, {"idempotencyKey": key(), "callId": call_id, **params})


async def ended(client: RtcClient, call_id: int, timeout: float = 5) -> Any:
    """The next call.ended of ``call_id`` on ``client``."""
    while True:
        change = await next_of(client, "call.ended", timeout)
        if change["call"]["callId"] == call_id:
            return change


async def connected_call(b: Booked) -> int:
    """A call from the customer, answered by the provider's first device."""
    started = await start(b.customer, b.booking_id)
    await next_of(b.provider, "call.incoming")
    await step(b.provider, "calls.accept", started["callId"])
    return int(started["callId"])


async def live_of(client: RtcClient, method: str, timeout: float = 5) -> Any:
    """The params of the next live notification ``method`` (no seq: not in the log)."""
    event = await client.next_event(timeout=timeout, method=method)
    assert event.seq is None
    return event.params
