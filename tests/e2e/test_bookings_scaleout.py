"""Bookings across instances on one Redis: an offer made through one instance reaches
the provider's devices on the others, and the answer comes back the same way."""

from __future__ import annotations

from .conftest import Cluster, device
from .market import key, later, market, next_of


async def test_an_offer_crosses_instances_and_the_accept_comes_back(
    cluster: Cluster,
) -> None:
    a, b, c = await cluster(3)
    m = await market(a, a.app)  # customer and provider log in on instance A
    on_b = await device(b, m.provider_tokens)
    on_c = await device(c, m.provider_tokens)
    booked = await m.customer.call("bookings.create", m.booking(later(a.app)))
    for provider_device in (m.provider, on_b, on_c):
        offer = await next_of(provider_device, "booking.offered")
        assert offer["booking"]["id"] == booked["id"]
    accepted = await on_c.call(
        "bookings.accept", {"idempotencyKey": key(), "bookingId": booked["id"]}
    )
    assert accepted["status"] == "accepted"
    told = await next_of(m.customer, "booking.updated")
    while told["change"] != "accepted":
        told = await next_of(m.customer, "booking.updated")
    assert told["booking"]["status"] == "accepted"
    for provider_device in (m.provider, on_b):  # the provider's other devices see it too
        mine = await next_of(provider_device, "booking.updated")
        assert mine["booking"]["status"] == "accepted"
