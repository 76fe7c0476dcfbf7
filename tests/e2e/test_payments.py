"""Payments end to end: real servers, real sockets, the real Paytm client against a local
server speaking Paytm's protocol (the simulator), callbacks and webhooks over HTTP."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from api.payments.callback import CALLBACK_PATH, WEBHOOK_PATH
from api.payments.paytm.client import PaytmClient
from api.payments.paytm.simulator import PaytmSimulator
from api.payments.paytm.wire import Endpoint
from kernel.clock import FakeClock
from rtc_server.app import App
from tests.fakes.msg91 import FakeMsg91
from tests.integration.paytm_env import KEY, MID

from .admins import login_admin
from .conftest import AppFactory, Clients, CodeLog
from .market import home_address, key, later, login_named, next_of, refused
from .payments import gateway, initiate, paid, payments_of, registered, shop
from .production import production


async def my_listing(client: Any, listing: int) -> dict[str, Any]:
    services = await client.call("providers.myServices", {})
    [found] = [s for s in services["services"] if s["providerServiceId"] == listing]
    return found


async def status_of(client: Any, order_id: str) -> str:
    payment = await client.call("payments.get", {"orderId": order_id})
    return str(payment["status"])


async def listing_order(provider: Any) -> str:
    """A new order for the provider's listing fee; its id."""
    checkout = await initiate(provider.client, providerServiceId=provider.listing)
    return str(checkout["orderId"])


async def service_id(app: App, slug: str) -> int:
    return await count(app, "SELECT id FROM services WHERE slug = $1", slug)


async def count(app: App, sql: str, *args: Any) -> int:
    assert app.db is not None
    value: int = await app.db.fetchval(sql, *args)
    return value


async def post_form(app: App, path: str, fields: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(f"http://127.0.0.1:{app.http.port}{path}", data=fields)


async def test_a_provider_pays_to_be_listed_then_a_customer_finds_books_and_calls(
    make_app: AppFactory, paytm: PaytmSimulator, code_log: CodeLog
) -> None:
    app = await shop(make_app, paytm)
    clients = Clients(app, code_log)
    try:
        provider = await registered(clients, app)
        assert (await my_listing(provider.client, provider.listing))["status"] == "pending"
        customer, _ = await login_named(clients, "customer", "Asha Rao")
        search = {"serviceId": await service_id(app, "plumber"), "city": "Kochi"}
        assert (await customer.call("providers.search", search))["providers"] == []

        checkout = await initiate(provider.client, providerServiceId=provider.listing)
        assert checkout["amountPaise"] == 9900 and checkout["amount"] == "99.00"
        assert checkout["currency"] == "INR" and checkout["txnToken"]
        assert checkout["checkout"]["callbackUrl"].endswith(CALLBACK_PATH)
        order_id = checkout["orderId"]
        # The payer pays on the gateway's page; the gateway tells the server (webhook)
        # and sends the browser back (callback); the app then verifies.
        fields = await paytm.complete(order_id, "success")
        payment = await paid(provider.client, order_id)
        assert payment["amountPaise"] == 9900 and payment["product"] == "listing"
        browser = await post_form(app, CALLBACK_PATH, fields)
        assert browser.status_code == 200 and "Payment received" in browser.text
        assert browser.headers["Content-Security-Policy"].startswith("default-src 'none'")
        verified = await provider.client.call("payments.verify", {"orderId": order_id})
        assert verified["status"] == "paid"
        note = await next_of(provider.client, "notification.created")
        assert note["notification"]["type"] == "payment_success"

        listing = await my_listing(provider.client, provider.listing)
        assert listing["status"] == "active"
        until = datetime.fromisoformat(listing["activeUntil"])
        assert until - app.clock.now() > timedelta(days=364)  # a year: the catalog's cycle
        assert until == datetime.fromisoformat(verified["periodEnd"])

        found = await customer.call("providers.search", search)
        assert [p["providerServiceId"] for p in found["providers"]] == [provider.listing]
        address = await home_address(customer)
        booking = await customer.call(
            "bookings.create",
            {
                "idempotencyKey": key(),
                "providerServiceId": provider.listing,
                "subServiceIds": provider.subs[:1],
                "appointmentAt": later(app).isoformat(),
                "addressId": address["id"],
            },
        )
        call = await customer.call(
            "calls.start", {"idempotencyKey": key(), "bookingId": booking["id"]}
        )
        incoming = await next_of(provider.client, "call.incoming")
        assert incoming["callId"] == call["callId"]
        # One period, one notification, for all the ways the server heard of it.
        assert await count(app, "SELECT count(*) FROM paid_periods") == 1
        mine = await provider.client.call("payments.list", {})
        assert [p["orderId"] for p in mine["payments"]] == [order_id]
    finally:
        await clients.close()


async def test_a_callback_that_claims_success_does_not_decide(
    make_app: AppFactory, paytm: PaytmSimulator, code_log: CodeLog
) -> None:
    """The gateway still says pending: the order stays pending, nothing is bought, and a
    post contradicting the gateway is a security event."""
    app = await shop(make_app, paytm)
    clients = Clients(app, code_log)
    try:
        provider = await registered(clients, app)
        order_id = await listing_order(provider)
        status = await paytm.send_callback(order_id, status="success")
        assert status == 200
        payment = await provider.client.call("payments.get", {"orderId": order_id})
        assert payment["status"] == "pending" and payment["periodEnd"] is None
        assert (await my_listing(provider.client, provider.listing))["status"] == "pending"
        kinds = await app.db.fetch("SELECT kind FROM payment_security_events")  # type: ignore[union-attr]
        assert [r["kind"] for r in kinds] == ["callback_disagrees"]
    finally:
        await clients.close()


async def test_an_amount_that_does_not_match_is_never_fulfilled(
    make_app: AppFactory, paytm: PaytmSimulator, code_log: CodeLog
) -> None:
    app = await shop(make_app, paytm)
    clients = Clients(app, code_log)
    try:
        provider = await registered(clients, app)
        order_id = await listing_order(provider)
        paytm.report_amount(order_id, 100)  # the gateway says ₹1 was paid, not ₹99
        await paytm.complete(order_id, "success")
        verified = await provider.client.call("payments.verify", {"orderId": order_id})
        assert verified["status"] == "review" and verified["periodEnd"] is None
        assert (await my_listing(provider.client, provider.listing))["status"] == "pending"
        admin, _ = await login_admin(clients)
        detail = await admin.call("admin.payments.get", {"orderId": order_id})
        # The gateway's status says ₹1 (amount_mismatch); its webhook claimed a success
        # the server did not take (callback_disagrees).
        kinds = [e["kind"] for e in detail["securityEvents"]]
        assert kinds == ["amount_mismatch", "callback_disagrees"]
        assert detail["payment"]["status"] == "review"
        assert [c["toStatus"] for c in detail["changes"]] == ["created", "review"]
        assert {c["endpoint"] for c in detail["gatewayCalls"]} == {
            "initiateTransaction",
            "order/status",
        }
        # No secret of the gateway in the audit.
        assert "txnToken" not in str(detail["gatewayCalls"]).replace("'txnToken': '[redacted]'", "")
        assert await count(app, "SELECT count(*) FROM paid_periods") == 0
    finally:
        await clients.close()


@pytest.mark.parametrize(
    "fields",
    [
        {"ORDERID": "BX1", "STATUS": "TXN_SUCCESS", "TXNAMOUNT": "99.00"},  # no checksum
        {"ORDERID": "BX1", "STATUS": "TXN_SUCCESS", "CHECKSUMHASH": "garbage=="},
        {"CHECKSUMHASH": ""},
    ],
)
async def test_a_post_without_a_valid_checksum_is_refused_and_changes_nothing(
    make_app: AppFactory, paytm: PaytmSimulator, fields: dict[str, str]
) -> None:
    app = await shop(make_app, paytm)
    for path in (CALLBACK_PATH, WEBHOOK_PATH):
        answer = await post_form(app, path, fields)
        assert answer.status_code == 400
    assert (
        await count(app, "SELECT count(*) FROM payment_security_events WHERE kind = 'bad_checksum'")
        == 2
    )
    assert await count(app, "SELECT count(*) FROM payment_events") == 0


async def test_a_flood_of_forged_posts_cannot_fill_the_audit(
    make_app: AppFactory, paytm: PaytmSimulator
) -> None:
    app = await shop(make_app, paytm)
    forged = {"ORDERID": "BX1", "STATUS": "TXN_SUCCESS", "CHECKSUMHASH": "AAAA"}
    answers = [(await post_form(app, CALLBACK_PATH, forged)).status_code for _ in range(35)]
    assert answers == [400] * 35
    assert await count(app, "SELECT count(*) FROM payment_security_events") == 30
    counted = app.metrics.registry.get_sample_value(
        "rtc_payment_security_events_total", {"kind": "bad_checksum"}
    )
    assert counted == 35


async def test_a_tampered_callback_is_refused(
    make_app: AppFactory, paytm: PaytmSimulator, code_log: CodeLog
) -> None:
    app = await shop(make_app, paytm)
    clients = Clients(app, code_log)
    try:
        provider = await registered(clients, app)
        order_id = await listing_order(provider)
        fields = paytm.callback_fields(order_id, status="success")
        fields["TXNAMOUNT"] = "1.00"  # changed after signing
        assert (await post_form(app, CALLBACK_PATH, fields)).status_code == 400
        payment = await provider.client.call("payments.get", {"orderId": order_id})
        assert payment["status"] == "created"
        assert paytm.calls[Endpoint.STATUS] == 0  # refused before asking the gateway
    finally:
        await clients.close()


async def test_a_gateway_that_is_down_changes_nothing_and_the_reconciler_finishes(
    make_app: AppFactory, paytm: PaytmSimulator, code_log: CodeLog, clock: FakeClock
) -> None:
    app = await shop(make_app, paytm, request_timeout=0.5)
    clients = Clients(app, code_log)
    service = payments_of(app)
    try:
        provider = await registered(clients, app)
        order_id = await listing_order(provider)
        paytm.set_webhook(MID, None)  # nobody tells the server: only the reconciler
        await paytm.complete(order_id, "success")
        paytm.fail_next(Endpoint.STATUS, 503)
        error = await refused(provider.client, "payments.verify", {"orderId": order_id})
        assert error.name == "unavailable" and error.data["retryable"]
        paytm.fail_next(Endpoint.STATUS, "timeout", delay=2.0)
        error = await refused(provider.client, "payments.verify", {"orderId": order_id})
        assert error.name == "unavailable"
        assert (await provider.client.call("payments.get", {"orderId": order_id}))[
            "status"
        ] == "created"
        assert await service.reconcile_due() == 0  # not due yet (payments.check_after)
        clock.advance(61)
        paytm.fail_next(Endpoint.STATUS, 502)
        assert await service.reconcile_due() == 1  # asked, failed: backs off
        assert (await provider.client.call("payments.get", {"orderId": order_id}))[
            "status"
        ] == "created"
        clock.advance(121)
        assert await service.reconcile_due() == 1
        payment = await paid(provider.client, order_id)
        assert payment["periodEnd"] is not None
    finally:
        await clients.close()


async def test_the_reconciler_finishes_pending_orders_and_a_late_success_is_fulfilled(
    make_app: AppFactory, paytm: PaytmSimulator, code_log: CodeLog, clock: FakeClock
) -> None:
    app = await shop(make_app, paytm, give_up_after=3600.0)
    clients = Clients(app, code_log)
    service = payments_of(app)
    try:
        provider = await registered(clients, app)
        first = await listing_order(provider)
        paytm.pending_then(first, "success", after_calls=2)
        clock.advance(61)
        assert await service.reconcile_due() == 1  # PENDING
        assert (await provider.client.call("payments.get", {"orderId": first}))[
            "status"
        ] == "pending"
        clock.advance(121)
        assert await service.reconcile_due() == 1  # PENDING again
        clock.advance(241)
        assert await service.reconcile_due() == 1  # success
        await paid(provider.client, first)

        second = await listing_order(provider)
        paytm.set_webhook(MID, None)
        clock.advance(3601)  # nothing final within payments.give_up_after
        assert await service.reconcile_due() == 1
        assert (await provider.client.call("payments.get", {"orderId": second}))[
            "status"
        ] == "expired"
        await paytm.complete(second, "success")  # the payer paid after all
        assert await paytm.send_callback(second) == 200
        await paid(provider.client, second)
    finally:
        await clients.close()


async def test_paying_again_extends_from_the_current_end_up_to_the_horizon(
    make_app: AppFactory, paytm: PaytmSimulator, code_log: CodeLog
) -> None:
    app = await shop(make_app, paytm, listing_horizon_days=500.0)
    clients = Clients(app, code_log)
    try:
        provider = await registered(clients, app)
        ends: list[datetime] = []
        for _ in range(2):
            order_id = (await initiate(provider.client, providerServiceId=provider.listing))[
                "orderId"
            ]
            await paytm.complete(order_id, "success")
            payment = await paid(provider.client, order_id)
            ends.append(datetime.fromisoformat(payment["periodEnd"]))
        first_start = datetime.fromisoformat(
            (await provider.client.call("payments.list", {}))["payments"][1]["periodStart"]
        )
        # The second year starts where the first ends, not today.
        assert ends[1] - ends[0] >= timedelta(days=365)
        assert ends[0] - first_start >= timedelta(days=365)
        listing = await my_listing(provider.client, provider.listing)
        assert datetime.fromisoformat(listing["activeUntil"]) == ends[1]
        error = await refused(
            provider.client,
            "payments.initiate",
            {"idempotencyKey": key(), "product": "listing", "providerServiceId": provider.listing},
        )
        assert error.name == "conflict" and error.data["reason"] == "paid_ahead"
    finally:
        await clients.close()


async def test_an_expired_listing_leaves_search_and_its_provider_is_told(
    make_app: AppFactory, paytm: PaytmSimulator, code_log: CodeLog, clock: FakeClock
) -> None:
    app = await shop(make_app, paytm)
    clients = Clients(app, code_log)
    service = payments_of(app)
    try:
        provider = await registered(clients, app)
        order_id = await listing_order(provider)
        await paytm.complete(order_id, "success")
        payment = await paid(provider.client, order_id)
        customer, _ = await login_named(clients, "customer", "Asha Rao")
        search = {"serviceId": await service_id(app, "plumber")}
        assert len((await customer.call("providers.search", search))["providers"]) == 1
        end = datetime.fromisoformat(payment["periodEnd"])
        clock.advance((end - clock.now()).total_seconds() - 1)
        assert await service.expire_due() == 0  # one second before the end: still listed
        assert len((await customer.call("providers.search", search))["providers"]) == 1
        clock.advance(1)
        assert (await customer.call("providers.search", search))["providers"] == []
        await service.expire_due()
        assert (await my_listing(provider.client, provider.listing))["status"] == "expired"
        while True:
            note = await next_of(provider.client, "notification.created")
            if note["notification"]["type"] == "service_expired":
                break
        assert (
            await count(
                app,
                "SELECT count(*) FROM push_intents i JOIN user_events e"
                " ON e.user_id = i.user_id AND e.seq = i.seq WHERE e.user_id = $1"
                " AND e.payload::text LIKE '%service_expired%'",
                provider.user_id,
            )
            == 1
        )
        # Paying again lists it again, from now.
        again = await listing_order(provider)
        await paytm.complete(again, "success")
        await paid(provider.client, again)
        assert (await my_listing(provider.client, provider.listing))["status"] == "active"
    finally:
        await clients.close()


async def test_labour_needs_labour_access_which_customers_buy(
    make_app: AppFactory, paytm: PaytmSimulator, code_log: CodeLog, clock: FakeClock
) -> None:
    app = await shop(make_app, paytm)
    clients = Clients(app, code_log)
    try:
        labourer = await registered(clients, app, slug="labors")  # free: active at once
        assert (await my_listing(labourer.client, labourer.listing))["status"] == "active"
        customer, tokens = await login_named(clients, "customer", "Asha Rao")
        address = await home_address(customer)

        def booking() -> dict[str, Any]:
            return {
                "idempotencyKey": key(),
                "providerServiceId": labourer.listing,
                "subServiceIds": labourer.subs[:1],
                "appointmentAt": later(app).isoformat(),
                "addressId": address["id"],
            }

        # Search stays public; booking needs access.
        found = await customer.call(
            "providers.search", {"serviceId": await service_id(app, "labors")}
        )
        assert len(found["providers"]) == 1
        error = await refused(customer, "bookings.create", booking())
        assert error.code == 4020 and error.name == "payment_required"
        assert error.data["product"] == "labourAccess"
        access = await customer.call("payments.labourAccess", {})
        assert access == {"active": False, "activeUntil": None, "pricePaise": 9900, "days": 7}
        # A provider cannot buy it; a customer does.
        provider_error = await refused(
            labourer.client,
            "payments.initiate",
            {"idempotencyKey": key(), "product": "labourAccess"},
        )
        assert provider_error.name == "forbidden"
        checkout = await initiate(customer, "labourAccess")
        assert checkout["amountPaise"] == 9900
        await paytm.complete(checkout["orderId"], "success")
        payment = await paid(customer, checkout["orderId"])
        ends = datetime.fromisoformat(payment["periodEnd"])
        assert ends - clock.now() == timedelta(days=7)
        made = await customer.call("bookings.create", booking())
        call = await customer.call(
            "calls.start", {"idempotencyKey": key(), "bookingId": made["id"]}
        )
        await customer.call("calls.cancel", {"idempotencyKey": key(), "callId": call["callId"]})
        # Seven days later it has lapsed: both are refused again.
        clock.advance(7 * 86400 + 1)
        error = await refused(customer, "bookings.create", booking())
        assert error.name == "payment_required"
        error = await refused(
            customer, "calls.start", {"idempotencyKey": key(), "bookingId": made["id"]}
        )
        assert error.name == "payment_required" and error.data["product"] == "labourAccess"
        assert tokens["user"]["role"] == "customer"
    finally:
        await clients.close()


async def test_nobody_uses_someone_elses_order_and_amounts_come_from_the_server(
    make_app: AppFactory, paytm: PaytmSimulator, code_log: CodeLog
) -> None:
    app = await shop(make_app, paytm)
    clients = Clients(app, code_log)
    try:
        provider = await registered(clients, app)
        order_id = await listing_order(provider)
        await paytm.complete(order_id, "success")
        other, _ = await login_named(clients, "customer", "Mallory")
        for method in ("payments.verify", "payments.get"):
            error = await refused(other, method, {"orderId": order_id})
            assert error.name == "not_found"
        someone = await registered(clients, app)
        error = await refused(
            someone.client,
            "payments.initiate",
            {"idempotencyKey": key(), "product": "listing", "providerServiceId": provider.listing},
        )
        assert error.name == "not_found"  # not their listing
        error = await refused(
            provider.client,
            "payments.initiate",
            {
                "idempotencyKey": key(),
                "product": "listing",
                "providerServiceId": provider.listing,
                "amount": 1,
            },
        )
        assert error.code == -32602  # a client never sends an amount
        # The same key again: the same order, not a second one.
        params = {
            "idempotencyKey": "pay-listing-0001",
            "product": "listing",
            "providerServiceId": someone.listing,
        }
        first = await someone.client.call("payments.initiate", params)
        again = await someone.client.call("payments.initiate", params)
        assert first == again
        assert (
            await count(app, "SELECT count(*) FROM payments WHERE user_id = $1", someone.user_id)
            == 1
        )
    finally:
        await clients.close()


async def test_an_admin_refund_ends_the_period_it_paid_for(
    make_app: AppFactory, paytm: PaytmSimulator, code_log: CodeLog, clock: FakeClock
) -> None:
    app = await shop(make_app, paytm)
    clients = Clients(app, code_log)
    try:
        provider = await registered(clients, app)
        order_id = await listing_order(provider)
        await paytm.complete(order_id, "success")
        await paid(provider.client, order_id)
        admin, _ = await login_admin(clients)
        stats = await admin.call("admin.stats", {})
        assert stats["revenuePaise"] == 9900
        refunded = await admin.call(
            "admin.payments.refund",
            {"idempotencyKey": key(), "orderId": order_id, "reason": "listed by mistake"},
        )
        assert refunded["status"] == "refund_pending"
        assert (await my_listing(provider.client, provider.listing))["status"] == "expired"
        # The gateway settles a refund after a while: the reconciler asks until it has.
        for wait in (61, 121):
            clock.advance(wait)
            assert await payments_of(app).reconcile_due() == 1
        payment = await provider.client.call("payments.get", {"orderId": order_id})
        assert payment["status"] == "refunded" and payment["refundedAt"] is not None
        while True:
            note = await next_of(provider.client, "notification.created")
            if note["notification"]["type"] == "payment_refunded":
                break
        error = await refused(
            admin,
            "admin.payments.refund",
            {"idempotencyKey": key(), "orderId": order_id, "reason": "twice"},
        )
        assert error.name == "state_conflict"
        clock.advance(1)  # the stats cache
        listed = await admin.call("admin.payments.list", {"status": "refunded"})
        assert [p["orderId"] for p in listed["payments"]] == [order_id]
    finally:
        await clients.close()


async def test_the_simulator_is_refused_in_production(
    make_app: AppFactory, paytm: PaytmSimulator, msg91: FakeMsg91
) -> None:
    from kernel.settings import ConfigError

    settings = production(msg91, paytm)
    with pytest.raises(ConfigError, match="simulator"):
        await make_app(**{**settings, "payments": {"gateway": "simulator"}})
    app = await make_app(**settings)
    assert payments_of(app).gateway is not None


async def test_twenty_callbacks_and_a_verify_racing_on_two_instances_fulfil_once(
    cluster: Any, paytm: PaytmSimulator
) -> None:
    a, b = await cluster(2, payments=gateway(paytm))
    provider = await registered(a, a.app)
    order_id = await listing_order(provider)
    paytm.set_webhook(MID, None)
    fields = await paytm.complete(order_id, "success")
    apps = [a.app, b.app]

    async def one(n: int) -> int:
        app = apps[n % 2]
        path = CALLBACK_PATH if n % 3 else WEBHOOK_PATH
        return (await post_form(app, path, fields)).status_code

    asked = paytm.calls[Endpoint.STATUS]
    results = await asyncio.gather(
        *(one(n) for n in range(20)),
        provider.client.call("payments.verify", {"orderId": order_id}),
    )
    # Settlements running at once on an instance share one status call: a few calls,
    # not one per request.
    assert paytm.calls[Endpoint.STATUS] - asked <= 6
    assert results[:20] == [200] * 20
    assert results[20]["status"] == "paid"
    app = a.app
    user = provider.user_id
    assert await count(app, "SELECT count(*) FROM paid_periods") == 1
    told = "SELECT count(*) FROM notifications WHERE user_id = $1 AND type <> 'welcome'"
    assert await count(app, told, user) == 1
    assert (
        await count(
            app,
            "SELECT count(*) FROM user_events WHERE user_id = $1 AND event = 'payment.updated'",
            user,
        )
        == 1
    )
    assert await count(app, "SELECT count(*) FROM push_intents WHERE user_id = $1", user) == 1
    assert (
        await count(
            app,
            "SELECT count(*) FROM payment_events p JOIN payments o ON o.id = p.payment_id"
            " WHERE o.order_id = $1 AND p.to_status = 'paid'",
            order_id,
        )
        == 1
    )


async def test_a_callback_for_an_unknown_order_is_a_security_event(
    make_app: AppFactory, paytm: PaytmSimulator
) -> None:
    """A valid checksum, a real order at the gateway, but not one this server made."""
    app = await shop(make_app, paytm)
    client = PaytmClient(paytm.url, MID, KEY, "WEBSTAGING")
    try:
        await client.initiate("ELSEWHERE-0001", 9900, "U1", "https://elsewhere.invalid/cb")
    finally:
        await client.close()
    paytm.set_webhook(MID, None)  # only the browser comes back here
    fields = await paytm.complete("ELSEWHERE-0001", "success")
    answer = await post_form(app, CALLBACK_PATH, fields)
    assert answer.status_code == 404
    kinds = await app.db.fetch("SELECT kind, order_id FROM payment_security_events")  # type: ignore[union-attr]
    assert [(r["kind"], r["order_id"]) for r in kinds] == [("unknown_order", "ELSEWHERE-0001")]


async def test_callback_networks_see_the_poster_behind_the_trusted_proxy(
    make_app: AppFactory, paytm: PaytmSimulator
) -> None:
    """Behind a proxy (deploy/nginx), the callback's address is the one the proxy saw."""
    app = await make_app(
        server={"trusted_proxies": ["127.0.0.1"]},
        payments=gateway(paytm, callback_networks=["203.0.113.0/24"]),
    )
    url = f"http://127.0.0.1:{app.http.port}{WEBHOOK_PATH}"
    forged = {"ORDERID": "nope", "CHECKSUMHASH": "x"}
    async with httpx.AsyncClient() as http:
        outside = await http.post(url, data=forged, headers={"X-Forwarded-For": "198.51.100.9"})
        inside = await http.post(url, data=forged, headers={"X-Forwarded-For": "203.0.113.9"})
    assert outside.status_code == 403  # refused by network, before the checksum
    assert inside.status_code == 400  # let through; then its checksum is refused
    rows = await app.db.fetch(  # type: ignore[union-attr]
        "SELECT kind, source_ip FROM payment_security_events ORDER BY id"
    )
    assert [(r["kind"], r["source_ip"]) for r in rows] == [
        ("network_refused", "198.51.100.9"),
        ("bad_checksum", "203.0.113.9"),
    ]
