"""Helpers of the payment tests: a Paytm simulator of the test's own (the fake that speaks
Paytm's protocol, on a loopback port), servers whose gateway it is, and a provider with
a paid listing waiting for its fee."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from api.payments.callback import WEBHOOK_PATH
from api.payments.feature import PaymentsFeature
from api.payments.paytm.simulator import PaytmSimulator
from api.payments.service import PaymentService
from rtc_server.app import App
from rtc_server.client import RtcClient
from tests.integration.paytm_env import KEY, MID

from .conftest import AppFactory, Clients
from .market import key, login_named, next_of


def gateway(paytm: PaytmSimulator, **extra: Any) -> dict[str, Any]:
    """The ``payments`` section of a server whose gateway is the test's simulator."""
    return {
        "gateway": "paytm",
        "paytm_mid": MID,
        "paytm_merchant_key": KEY,
        "paytm_base_url": paytm.url,
        **extra,
    }


async def shop(make_app: AppFactory, paytm: PaytmSimulator, **payments: Any) -> App:
    """A server paid through ``paytm``, its webhook wired."""
    app = await make_app(payments=gateway(paytm, **payments))
    paytm.set_webhook(MID, f"http://127.0.0.1:{app.http.port}{WEBHOOK_PATH}")
    return app


def payments_of(app: App) -> PaymentService:
    return app.feature(PaymentsFeature).service


@dataclass
class Provider:
    client: RtcClient
    tokens: Any
    listing: int  # provider_service_id of a paid service (plumber), pending
    subs: list[int]

    @property
    def user_id(self) -> int:
        return int(self.tokens["user"]["id"])


async def registered(clients: Clients, app: App, slug: str = "plumber") -> Provider:
    """A provider registered for ``slug`` (paid: pending until its fee is paid)."""
    client, tokens = await login_named(clients, "provider", "Ravi Kumar")
    assert app.db is not None
    service_id = await app.db.fetchval("SELECT id FROM services WHERE slug = $1", slug)
    subs = [
        r["id"]
        for r in await app.db.fetch(
            "SELECT id FROM sub_services WHERE service_id = $1 ORDER BY position LIMIT 2",
            service_id,
        )
    ]
    answer = await client.call(
        "providers.registerService",
        {
            "idempotencyKey": key(),
            "serviceId": service_id,
            "subServices": [{"subServiceId": s, "pricePaise": 25_000} for s in subs],
            "state": "Kerala",
            "city": "Kochi",
            "fullAddress": "Shop 4, Broadway, Kochi",
        },
    )
    return Provider(client, tokens, answer["providerServiceId"], subs)


async def initiate(client: RtcClient, product: str = "listing", **params: Any) -> Any:
    return await client.call(
        "payments.initiate", {"idempotencyKey": key(), "product": product, **params}
    )


async def paid(client: RtcClient, order_id: str) -> Any:
    """The payment.updated of ``order_id`` that says it is paid (waits for it)."""
    while True:
        update = await next_of(client, "payment.updated")
        if update["payment"]["orderId"] == order_id and update["payment"]["status"] == "paid":
            return update["payment"]
