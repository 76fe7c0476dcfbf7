"""The Paytm simulator's rules, driven over a loopback port with httpx and hand-signed
requests: what it refuses, its checkout page and buttons, its callbacks and webhooks."""

from __future__ import annotations

import json
import random
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiohttp import web
from paytmchecksum import PaytmChecksum as official

from api.payments.paytm.checksum import CHECKSUM_FIELD, verify_signature
from api.payments.paytm.client import PaytmClient
from api.payments.paytm.jsonspan import value_span
from api.payments.paytm.ledger import OrderState, TransitionRefused
from api.payments.paytm.simulator import PaytmSimulator
from api.payments.paytm.wire import CALLBACK_FIELDS, Endpoint, Outcome
from tests.integration.paytm_env import (
    KEY,
    MERCHANTS,
    MID,
    OTHER_KEY,
    MerchantServer,
    closed_port,
    signed_request,
)

INITIATE = "/theia/api/v1/initiateTransaction"
CHECKOUT = "/theia/api/v1/showPaymentPage"


class FakeClock:
    def __init__(self) -> None:
        self.current = datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def merchant() -> AsyncIterator[MerchantServer]:
    server = await MerchantServer().start()
    yield server
    await server.close()


@pytest.fixture
async def simulator(clock: FakeClock) -> AsyncIterator[PaytmSimulator]:
    sim = await PaytmSimulator(MERCHANTS, clock=clock, rng=random.Random(3)).start()
    yield sim
    await sim.close()


@pytest.fixture
async def http(simulator: PaytmSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=simulator.url) as client:
        yield client


def initiate_body(
    order_id: str = "ORD-1", callback: str = "https://m.test/cb", **changes: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "requestType": "Payment",
        "mid": MID,
        "websiteName": "WEBSTAGING",
        "orderId": order_id,
        "callbackUrl": callback,
        "txnAmount": {"value": "99.00", "currency": "INR"},
        "userInfo": {"custId": "CUST-1"},
    }
    body.update(changes)
    return body


async def post(http: httpx.AsyncClient, path: str, content: bytes, **query: str) -> dict[str, Any]:
    """POST a JSON request; the answer's body, after checking its signature if any."""
    response = await http.post(path, content=content, params=query)
    assert response.status_code == 200
    text = response.text
    start, end = value_span(text, "body")
    document = json.loads(text)
    signature = document["head"].get("signature")
    if signature is not None:
        assert verify_signature(text[start:end].encode(), KEY, signature)
        assert official.verifySignature(text[start:end], KEY, signature)
    body: dict[str, Any] = json.loads(text[start:end])
    body["signed"] = signature is not None
    return body


async def initiate(
    http: httpx.AsyncClient, order_id: str = "ORD-1", **changes: Any
) -> dict[str, Any]:
    content = signed_request(initiate_body(order_id, **changes))
    return await post(http, INITIATE, content, mid=MID, orderId=order_id)


def result(body: dict[str, Any]) -> tuple[str, str]:
    return body["resultInfo"]["resultStatus"], body["resultInfo"]["resultCode"]


# Initiate Transaction.


async def test_a_signed_initiate_is_answered_with_a_signed_token(
    http: httpx.AsyncClient, simulator: PaytmSimulator
) -> None:
    body = await initiate(http)
    assert result(body) == ("S", "0000") and body["signed"]
    assert body["txnToken"] == simulator.order("ORD-1").txn_token
    assert simulator.calls[Endpoint.INITIATE] == 1


async def test_the_signature_covers_the_exact_body_bytes(
    http: httpx.AsyncClient, simulator: PaytmSimulator
) -> None:
    # Spaces and raw unicode, as another JSON library might write them: accepted as sent.
    content = signed_request(initiate_body(userInfo={"custId": "ग्राहक-1"}), spaced=True)
    assert result(await post(http, INITIATE, content)) == ("S", "0000")
    assert simulator.order("ORD-1").customer_id == "ग्राहक-1"
    # The same body written differently under the same signature: refused.
    document = json.loads(content)
    compact = json.dumps(document, separators=(",", ":")).encode()
    body = await post(http, INITIATE, compact.replace(b"ORD-1", b"ORD-2"))
    assert result(body) == ("F", "2005") and not body["signed"]


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (signed_request(initiate_body(), OTHER_KEY), "2005"),  # signed with another key
        (signed_request(initiate_body(mid="NOBODY")), "2006"),
        (b'{"body":{"mid":"' + MID.encode() + b'"},"head":{}}', "2005"),  # no signature
        (b"not json", "1001"),
        (b'{"body":{}}', "1001"),  # no head
    ],
)
async def test_unauthenticated_initiates_are_refused_unsigned(
    http: httpx.AsyncClient, simulator: PaytmSimulator, content: bytes, code: str
) -> None:
    body = await post(http, INITIATE, content)
    assert result(body) == ("F", code) and not body["signed"]
    assert simulator.ledger.orders == {}


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"txnAmount": {"value": "0.00", "currency": "INR"}}, "2007"),
        ({"txnAmount": {"value": "-5.00", "currency": "INR"}}, "2007"),
        ({"txnAmount": {"value": "9.999", "currency": "INR"}}, "2007"),
        ({"txnAmount": {"value": 99, "currency": "INR"}}, "2007"),
        ({"txnAmount": {"value": "99.00", "currency": "USD"}}, "2007"),
        ({"userInfo": {}}, "1007"),
        ({"orderId": "has spaces"}, "1001"),
    ],
)
async def test_bad_initiates_are_refused_signed(
    http: httpx.AsyncClient, changes: dict[str, Any], code: str
) -> None:
    content = signed_request(initiate_body(**changes))
    body = await post(http, INITIATE, content)
    assert result(body) == ("F", code) and body["signed"]


async def test_the_query_must_name_the_same_order(http: httpx.AsyncClient) -> None:
    content = signed_request(initiate_body())
    assert result(await post(http, INITIATE, content, mid=MID, orderId="ORD-9")) == ("F", "2014")


async def test_a_duplicate_order_is_refused(
    http: httpx.AsyncClient, simulator: PaytmSimulator
) -> None:
    await initiate(http)
    assert result(await initiate(http)) == ("S", "0002")  # not yet acted on: idempotent
    await simulator.complete("ORD-1", "failure")
    assert result(await initiate(http)) == ("F", "325")


# The checkout page and its buttons.


async def test_the_checkout_page_shows_the_order_and_three_buttons(
    http: httpx.AsyncClient, simulator: PaytmSimulator
) -> None:
    token = (await initiate(http))["txnToken"]
    for response in (
        await http.post(
            CHECKOUT, params={"mid": MID, "orderId": "ORD-1"}, data={"txnToken": token}
        ),
        await http.get(CHECKOUT, params={"mid": MID, "orderId": "ORD-1", "txnToken": token}),
    ):
        assert response.status_code == 200
        page = response.text
        assert MID in page and "ORD-1" in page and "₹99.00" in page
        assert re.findall(r"<button[^>]*>([^<]*)</button>", page) == [
            "Pay",
            "Fail",
            "Leave pending",
        ]
        assert '<html lang="en">' in page and "<title>" in page and "<legend>" in page
        assert "<script" not in page and "style=" not in page
        assert "script-src 'self'" in response.headers["content-security-policy"]
    assert simulator.calls[Endpoint.CHECKOUT] == 2
    assert simulator.order("ORD-1").state is OrderState.CREATED


@pytest.mark.parametrize("token", ["", "wrong-token"])
async def test_the_checkout_page_wants_the_orders_token(
    http: httpx.AsyncClient, token: str
) -> None:
    await initiate(http)
    response = await http.post(
        CHECKOUT, params={"mid": MID, "orderId": "ORD-1"}, data={"txnToken": token}
    )
    assert response.status_code == 400 and "1001" in response.text


async def test_a_token_expires_after_fifteen_minutes(
    http: httpx.AsyncClient, clock: FakeClock
) -> None:
    token = (await initiate(http))["txnToken"]
    clock.current += timedelta(minutes=16)
    response = await http.get(CHECKOUT, params={"mid": MID, "orderId": "ORD-1", "txnToken": token})
    assert response.status_code == 400 and "Your Session has expired" in response.text


def form_of(page: str) -> tuple[str, dict[str, str]]:
    """The callback form of a page: its action and hidden fields."""
    action = re.search(r'<form id="paytm-callback" method="post" action="([^"]*)"', page)
    assert action is not None
    fields = dict(re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page))
    return action.group(1), fields


async def choose(http: httpx.AsyncClient, token: str, outcome: str) -> httpx.Response:
    page = (
        await http.get(CHECKOUT, params={"mid": MID, "orderId": "ORD-1", "txnToken": token})
    ).text
    action = re.search(r'<form method="post" action="([^"]*)"', page)
    assert action is not None
    url = action.group(1).replace("&amp;", "&")
    return await http.post(url, data={"txnToken": token, "outcome": outcome})


@pytest.mark.parametrize(
    ("outcome", "status", "code"),
    [
        ("success", "TXN_SUCCESS", "01"),
        ("failure", "TXN_FAILURE", "227"),
        ("pending", "PENDING", "400"),
    ],
)
async def test_a_button_settles_the_order_and_returns_to_the_merchant(
    http: httpx.AsyncClient, simulator: PaytmSimulator, outcome: Outcome, status: str, code: str
) -> None:
    token = (await initiate(http, callback="https://m.test/cb?x=1&y=2"))["txnToken"]
    response = await choose(http, token, outcome)
    assert response.status_code == 200
    assert simulator.order("ORD-1").state is OrderState(outcome)
    action, fields = form_of(response.text)
    assert action == "https://m.test/cb?x=1&amp;y=2"  # escaped in HTML, as it should be
    assert tuple(f for f in fields if f != CHECKSUM_FIELD) == CALLBACK_FIELDS
    assert (fields["STATUS"], fields["RESPCODE"], fields["TXNAMOUNT"]) == (status, code, "99.00")
    assert (fields["MID"], fields["ORDERID"], fields["TXNID"]) == (
        MID,
        "ORD-1",
        simulator.order("ORD-1").txn_id,
    )
    checksum = fields[CHECKSUM_FIELD]
    assert verify_signature(fields, KEY, checksum)
    assert official.verifySignature(dict(fields), KEY, checksum)
    assert "Return to merchant</button>" in response.text
    assert re.search(r'<script src="/simulator/autosubmit.js" defer></script>', response.text)


async def test_the_autosubmit_script_is_a_separate_file(http: httpx.AsyncClient) -> None:
    response = await http.get("/simulator/autosubmit.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/javascript")
    assert 'getElementById("paytm-callback").submit()' in response.text
    assert (
        (await http.get("/simulator/checkout.css")).headers["content-type"].startswith("text/css")
    )


async def test_a_settled_order_is_not_changed_by_its_page(
    http: httpx.AsyncClient, simulator: PaytmSimulator
) -> None:
    token = (await initiate(http))["txnToken"]
    await choose(http, token, "success")
    # The page of a settled order offers only the way back to the merchant...
    page = await http.get(CHECKOUT, params={"mid": MID, "orderId": "ORD-1", "txnToken": token})
    assert form_of(page.text)[1]["STATUS"] == "TXN_SUCCESS" and "<button" in page.text
    # ...and the back button resubmitting another choice changes nothing.
    query = {"mid": MID, "orderId": "ORD-1"}
    data = {"txnToken": token, "outcome": "failure"}
    response = await http.post("/simulator/choose", params=query, data=data)
    assert simulator.order("ORD-1").state is OrderState.SUCCESS
    assert form_of(response.text)[1]["STATUS"] == "TXN_SUCCESS"


# Webhooks and callbacks.


async def test_a_choice_posts_the_webhook(
    http: httpx.AsyncClient, simulator: PaytmSimulator, merchant: MerchantServer
) -> None:
    simulator.set_webhook(MID, merchant.url("webhook"))
    token = (await initiate(http))["txnToken"]
    page = await choose(http, token, "success")
    # Delivered before the browser got its page: nothing to wait for.
    assert merchant.pending("webhook") == 1
    fields = await merchant.received("webhook")
    assert fields == form_of(page.text)[1]
    assert verify_signature(fields, KEY, fields[CHECKSUM_FIELD])
    assert official.verifySignature(dict(fields), KEY, fields[CHECKSUM_FIELD])
    [attempt] = simulator.webhook_attempts
    assert (attempt.url, attempt.http_status, attempt.error) == (merchant.url("webhook"), 200, None)


async def test_a_webhook_that_cannot_be_delivered_is_recorded(
    http: httpx.AsyncClient, simulator: PaytmSimulator
) -> None:
    simulator.set_webhook(MID, f"http://127.0.0.1:{closed_port()}/webhook")
    await initiate(http)
    fields = await simulator.complete("ORD-1", "failure")
    [attempt] = simulator.webhook_attempts
    assert attempt.http_status is None and attempt.error and attempt.fields == fields


async def test_callbacks_without_a_browser_true_and_forged(
    http: httpx.AsyncClient, simulator: PaytmSimulator, merchant: MerchantServer
) -> None:
    await initiate(http, callback=merchant.url("callback"))
    await simulator.complete("ORD-1", "failure")
    assert await simulator.send_callback("ORD-1") == 200
    honest = await merchant.received("callback")
    assert honest["STATUS"] == "TXN_FAILURE"
    assert await simulator.send_callback("ORD-1", amount_paise=1, status="success") == 200
    forged = await merchant.received("callback")
    # Correctly signed, yet lying: only Transaction Status and the stored amount tell.
    assert verify_signature(forged, KEY, forged[CHECKSUM_FIELD])
    assert (forged["STATUS"], forged["TXNAMOUNT"]) == ("TXN_SUCCESS", "0.01")
    now = simulator.callback_fields("ORD-1")
    assert {**now, CHECKSUM_FIELD: ""} == {**honest, CHECKSUM_FIELD: ""}  # salts differ


async def test_a_settled_order_never_turns_around(
    http: httpx.AsyncClient, simulator: PaytmSimulator
) -> None:
    await initiate(http)
    await simulator.complete("ORD-1", "success")
    with pytest.raises(TransitionRefused):
        await simulator.complete("ORD-1", "failure")
    with pytest.raises(TransitionRefused):
        simulator.pending_then("ORD-1", "failure")


# Status and refunds, signed both ways.


async def test_status_and_refund_apis(http: httpx.AsyncClient, simulator: PaytmSimulator) -> None:
    unknown = await post(http, "/v3/order/status", signed_request({"mid": MID, "orderId": "NOPE"}))
    assert result(unknown) == ("TXN_FAILURE", "334")
    await initiate(http)
    await simulator.complete("ORD-1", "success")
    txn_id = simulator.order("ORD-1").txn_id
    status = await post(http, "/v3/order/status", signed_request({"mid": MID, "orderId": "ORD-1"}))
    assert result(status) == ("TXN_SUCCESS", "01") and status["signed"]
    refund = {
        "mid": MID,
        "txnType": "REFUND",
        "orderId": "ORD-1",
        "txnId": txn_id,
        "refId": "R1",
        "refundAmount": "9.00",
    }
    assert result(await post(http, "/refund/apply", signed_request(refund))) == ("PENDING", "601")
    query = signed_request({"mid": MID, "orderId": "ORD-1", "refId": "R1"})
    assert result(await post(http, "/v2/refund/status", query)) == ("PENDING", "601")
    assert result(await post(http, "/v2/refund/status", query)) == ("TXN_SUCCESS", "10")
    bad = await post(
        http, "/v3/order/status", signed_request({"mid": MID, "orderId": "ORD-1"}, OTHER_KEY)
    )
    assert result(bad) == ("TXN_FAILURE", "330") and not bad["signed"]
    assert simulator.calls[Endpoint.STATUS] == 3 and simulator.calls[Endpoint.REFUND_STATUS] == 2


async def test_scripted_failures_then_normal_answers(
    http: httpx.AsyncClient, simulator: PaytmSimulator
) -> None:
    simulator.fail_next(Endpoint.INITIATE, 502, times=2)
    content = signed_request(initiate_body())
    assert [(await http.post(INITIATE, content=content)).status_code for _ in range(3)] == [
        502,
        502,
        200,
    ]
    assert simulator.calls[Endpoint.INITIATE] == 3


async def test_embedded_under_a_prefix(clock: FakeClock) -> None:
    simulator = PaytmSimulator(MERCHANTS, clock=clock)
    app = web.Application()
    simulator.add_routes(app, prefix="/paytm")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}/paytm"
    try:
        async with PaytmClient(base, MID, KEY, "WEBSTAGING") as client:
            initiated = await client.initiate("ORD-1", 100, "CUST-1", "https://m.test/cb")
            async with httpx.AsyncClient() as browser:
                page = await browser.post(
                    initiated.checkout_url, data={"txnToken": initiated.txn_token}
                )
            assert 'action="/paytm/simulator/choose?' in page.text
            assert 'href="/paytm/simulator/checkout.css"' in page.text
            await simulator.complete("ORD-1", "success")
            assert (await client.status("ORD-1")).state == "success"
    finally:
        await simulator.close()
        await runner.cleanup()
