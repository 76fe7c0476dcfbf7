"""A small marketplace for booking tests: a provider with an active plumbing listing
(three priced sub-services), a customer with an address, both logged in."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from rtc_server.app import App
from rtc_server.client import RpcCallError, RtcClient

from .conftest import Clients

_keys = itertools.count(1)
PRICES = (10_000, 20_000, 35_000)


def key() -> str:
    return f"market-key-{next(_keys):07d}"


@dataclass
class Market:
    app: App
    customer: RtcClient
    customer_id: int
    customer_tokens: Any
    provider: RtcClient
    provider_id: int
    provider_tokens: Any
    listing: int  # provider_service_id
    subs: list[int]  # the listing's sub-service ids, priced PRICES
    address_id: int

    def booking(self, at: datetime, **fields: Any) -> dict[str, Any]:
        return {
            "idempotencyKey": key(),
            "providerServiceId": self.listing,
            "subServiceIds": self.subs[:2],
            "appointmentAt": at.isoformat(),
            "addressId": self.address_id,
            **fields,
        }


async def login_named(clients: Clients, role: str, name: str) -> tuple[RtcClient, Any]:
    phone = clients.new_phone()
    client = await clients.anonymous()
    await client.call("auth.requestOtp", {"phone": phone, "role": role})
    code = clients.code_log.last("+91" + phone[-10:])
    tokens = await client.login(phone, role, code, fullName=name)
    return client, tokens


async def listing(app: App, provider: RtcClient, slug: str = "plumber") -> tuple[int, list[int]]:
    """Register ``provider`` for ``slug`` with PRICES, made active as if paid for."""
    assert app.db is not None
    service_id = await app.db.fetchval("SELECT id FROM services WHERE slug = $1", slug)
    subs = [
        r["id"]
        for r in await app.db.fetch(
            "SELECT id FROM sub_services WHERE service_id = $1 ORDER BY position LIMIT 3",
            service_id,
        )
    ]
    registered = await provider.call(
        "providers.registerService",
        {
            "idempotencyKey": key(),
            "serviceId": service_id,
            "subServices": [
                {"subServiceId": s, "pricePaise": p} for s, p in zip(subs, PRICES, strict=False)
            ],
            "state": "Kerala",
            "city": "Kochi",
            "fullAddress": "Shop 4, Broadway, Kochi",
        },
    )
    await app.db.execute(
        "UPDATE provider_services SET status = 'active', active_until = $2 WHERE id = $1",
        registered["providerServiceId"],
        app.clock.now() + timedelta(days=30),
    )
    return registered["providerServiceId"], subs


async def home_address(client: RtcClient) -> Any:
    """A new home address of ``client``'s user in Kochi (the market's city)."""
    return await client.call(
        "addresses.create",
        {
            "idempotencyKey": key(),
            "type": "home",
            "state": "Kerala",
            "city": "Kochi",
            "fullAddress": "12, Marine Drive, Kochi",
            "pincode": "682031",
        },
    )


async def market(clients: Clients, app: App) -> Market:
    provider, ptokens = await login_named(clients, "provider", "Ravi Kumar")
    customer, ctokens = await login_named(clients, "customer", "Asha Rao")
    listing_id, subs = await listing(app, provider)
    address = await home_address(customer)
    return Market(
        app=app,
        customer=customer,
        customer_id=ctokens["user"]["id"],
        customer_tokens=ctokens,
        provider=provider,
        provider_id=ptokens["user"]["id"],
        provider_tokens=ptokens,
        listing=listing_id,
        subs=subs,
        address_id=address["id"],
    )


def later(app: App, hours: float = 24) -> datetime:
    now: datetime = app.clock.now()
    return now + timedelta(hours=hours)


async def refused(client: RtcClient, method: str, params: dict[str, Any]) -> RpcCallError:
    with pytest.raises(RpcCallError) as error:
        await client.call(method, params)
    return error.value


async def next_of(client: RtcClient, method: str, timeout: float = 5) -> Any:
    """The data of the next event ``method`` on ``client`` (others are skipped)."""
    return (await client.next_event(timeout=timeout, method=method)).data
