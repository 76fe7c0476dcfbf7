"""The Paytm client against the simulator on a loopback port, and against scripted
answers (an httpx mock transport) for what the simulator never says."""

from __future__ import annotations

import json
import random
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from api.payments.paytm.checksum import generate_signature, verify_signature
from api.payments.paytm.client import GatewayCall, PaytmClient
from api.payments.paytm.errors import (
    BadGatewaySignature,
    GatewayError,
    GatewayRefused,
    GatewayUnavailable,
)
from api.payments.paytm.jsonspan import value_span
from api.payments.paytm.simulator import PaytmSimulator
from api.payments.paytm.wire import Endpoint, Outcome
from tests.integration.paytm_env import KEY, MERCHANTS, MID, OTHER_KEY, closed_port

CALLBACK = "https://merchant.example/paytm/callback"


@pytest.fixture
async def simulator() -> AsyncIterator[PaytmSimulator]:
    sim = await PaytmSimulator(MERCHANTS, rng=random.Random(1)).start()
    yield sim
    await sim.close()


@pytest.fixture
def calls() -> list[GatewayCall]:
    return []


@pytest.fixture
async def client(simulator: PaytmSimulator, calls: list[GatewayCall]) -> AsyncIterator[PaytmClient]:
    async with PaytmClient(
        simulator.url, MID, KEY, "WEBSTAGING", timeout=5.0, on_call=calls.append
    ) as client:
        yield client


async def paid(client: PaytmClient, simulator: PaytmSimulator, order_id: str = "ORD-1") -> str:
    await client.initiate(order_id, 9900, "CUST-1", CALLBACK)
    await simulator.complete(order_id, "success")
    return simulator.order(order_id).txn_id


# Initiate Transaction.


async def test_initiate_opens_a_transaction(client: PaytmClient, simulator: PaytmSimulator) -> None:
    initiated = await client.initiate("ORD-1", 9900, "CUST-1", CALLBACK)
    order = simulator.order("ORD-1")
    assert initiated.txn_token == order.txn_token
    assert (initiated.result_code, initiated.amount_paise) == ("0000", 9900)
    assert (order.amount_paise, order.customer_id, order.callback_url) == (9900, "CUST-1", CALLBACK)
    assert (
        initiated.checkout_url
        == f"{simulator.url}/theia/api/v1/showPaymentPage?mid={MID}&orderId=ORD-1"
    )


async def test_a_retried_initiate_gets_the_same_token(client: PaytmClient) -> None:
    first = await client.initiate("ORD-1", 9900, "CUST-1", CALLBACK)
    again = await client.initiate("ORD-1", 9900, "CUST-1", CALLBACK)
    assert (again.result_code, again.txn_token) == ("0002", first.txn_token)


async def test_initiate_is_refused_for_an_order_already_paid(
    client: PaytmClient, simulator: PaytmSimulator
) -> None:
    await paid(client, simulator)
    with pytest.raises(GatewayRefused) as refused:
        await client.initiate("ORD-1", 9900, "CUST-1", CALLBACK)
    assert (refused.value.code, refused.value.retryable) == ("325", False)


async def test_initiate_is_refused_for_a_different_repeat(client: PaytmClient) -> None:
    await client.initiate("ORD-1", 9900, "CUST-1", CALLBACK)
    with pytest.raises(GatewayRefused) as refused:
        await client.initiate("ORD-1", 10000, "CUST-1", CALLBACK)
    assert refused.value.code == "2023"


async def test_initiate_signed_with_another_key_is_refused(simulator: PaytmSimulator) -> None:
    async with PaytmClient(simulator.url, MID, OTHER_KEY, "WEBSTAGING") as client:
        with pytest.raises(GatewayRefused) as refused:
            await client.initiate("ORD-1", 9900, "CUST-1", CALLBACK)
    assert (refused.value.code, refused.value.message) == ("2005", "Checksum provided is invalid")
    assert "ORD-1" not in simulator.ledger.orders


async def test_initiate_for_an_unknown_mid_is_refused(simulator: PaytmSimulator) -> None:
    async with PaytmClient(simulator.url, "UNKNOWN", KEY, "WEBSTAGING") as client:
        with pytest.raises(GatewayRefused) as refused:
            await client.initiate("ORD-1", 9900, "CUST-1", CALLBACK)
    assert refused.value.code == "2006"


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("ORD 1", 9900, "C", CALLBACK), "order_id"),
        (("ORD-1", 0, "C", CALLBACK), "paise"),
        (("ORD-1", 99.5, "C", CALLBACK), "paise"),
        (("ORD-1", 9900, "", CALLBACK), "customer_id"),
        (("ORD-1", 9900, "C", "javascript:alert(1)"), "callback_url"),
    ],
)
async def test_initiate_refuses_bad_arguments_before_sending(
    client: PaytmClient, simulator: PaytmSimulator, args: tuple[Any, ...], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        await client.initiate(*args)
    assert simulator.calls[Endpoint.INITIATE] == 0


# Transaction Status.


@pytest.mark.parametrize(
    ("outcome", "code"), [("success", "01"), ("failure", "227"), ("pending", "400")]
)
async def test_status_reports_the_outcome(
    client: PaytmClient, simulator: PaytmSimulator, outcome: Outcome, code: str
) -> None:
    await client.initiate("ORD-1", 9900, "CUST-1", CALLBACK)
    await simulator.complete("ORD-1", outcome)
    status = await client.status("ORD-1")
    order = simulator.order("ORD-1")
    assert (status.state, status.result_code, status.amount_paise) == (outcome, code, 9900)
    assert (status.order_id, status.mid, status.txn_id) == ("ORD-1", MID, order.txn_id)
    assert status.bank_txn_id == (order.bank_txn_id or None)
    assert status.payment_mode == "UPI" and status.txn_date
    assert status.refund_amount_paise == 0


async def test_status_of_an_unpaid_order_is_pending(client: PaytmClient) -> None:
    await client.initiate("ORD-1", 9900, "CUST-1", CALLBACK)
    status = await client.status("ORD-1")
    assert (status.state, status.result_code, status.txn_id) == ("pending", "402", None)


async def test_status_pending_until_the_bank_confirms(
    client: PaytmClient, simulator: PaytmSimulator
) -> None:
    await client.initiate("ORD-1", 9900, "CUST-1", CALLBACK)
    simulator.pending_then("ORD-1", "success", after_calls=2)
    states = [(await client.status("ORD-1")).state for _ in range(3)]
    assert states == ["pending", "pending", "success"]


async def test_status_passes_on_the_amount_paytm_reports(
    client: PaytmClient, simulator: PaytmSimulator
) -> None:
    await paid(client, simulator)
    simulator.report_amount("ORD-1", 100)
    assert (await client.status("ORD-1")).amount_paise == 100  # the caller compares


async def test_status_of_an_unknown_order_is_refused(client: PaytmClient) -> None:
    with pytest.raises(GatewayRefused) as refused:
        await client.status("NEVER-INITIATED")
    assert refused.value.code == "334"


# Failures of the gateway.


async def test_a_5xx_is_unavailable_and_a_retry_succeeds(
    client: PaytmClient, simulator: PaytmSimulator, calls: list[GatewayCall]
) -> None:
    await client.initiate("ORD-1", 9900, "CUST-1", CALLBACK)
    simulator.fail_next(Endpoint.STATUS, 503)
    with pytest.raises(GatewayUnavailable) as unavailable:
        await client.status("ORD-1")
    assert unavailable.value.retryable
    assert calls[-1].http_status == 503 and calls[-1].error and calls[-1].response is None
    assert (await client.status("ORD-1")).state == "pending"
    assert simulator.calls[Endpoint.STATUS] == 2


async def test_a_slow_answer_is_a_timeout(
    simulator: PaytmSimulator, calls: list[GatewayCall]
) -> None:
    simulator.fail_next(Endpoint.INITIATE, "timeout")  # held until the simulator closes
    async with PaytmClient(
        simulator.url, MID, KEY, "WEBSTAGING", timeout=0.2, on_call=calls.append
    ) as client:
        with pytest.raises(GatewayUnavailable) as unavailable:
            await client.initiate("ORD-1", 9900, "CUST-1", CALLBACK)
    assert isinstance(unavailable.value.__cause__, httpx.TimeoutException)
    assert calls[-1].http_status is None and "no answer" in (calls[-1].error or "")


async def test_a_refused_connection_is_unavailable() -> None:
    async with PaytmClient(f"http://127.0.0.1:{closed_port()}", MID, KEY, "WEBSTAGING") as client:
        with pytest.raises(GatewayUnavailable) as unavailable:
            await client.status("ORD-1")
    assert isinstance(unavailable.value.__cause__, httpx.ConnectError)


@pytest.mark.parametrize("endpoint", [Endpoint.INITIATE, Endpoint.STATUS])
async def test_a_tampered_answer_is_a_bad_signature(
    client: PaytmClient, simulator: PaytmSimulator, endpoint: Endpoint
) -> None:
    if endpoint is Endpoint.STATUS:
        await paid(client, simulator)
    simulator.fail_next(endpoint, "tamper")
    with pytest.raises(BadGatewaySignature) as bad:
        if endpoint is Endpoint.STATUS:
            await client.status("ORD-1")
        else:
            await client.initiate("ORD-2", 9900, "CUST-1", CALLBACK)
    assert not bad.value.retryable


async def test_the_client_rejects_answers_signed_with_another_key() -> None:
    # The simulator believes MID's key is OTHER_KEY: it accepts the request (signed with
    # OTHER_KEY) and signs its answer with it; the client checks with its own KEY.
    sim = await PaytmSimulator({MID: OTHER_KEY}).start()
    try:
        transport = _ResigningTransport(OTHER_KEY)
        async with PaytmClient(sim.url, MID, KEY, "WEBSTAGING", transport=transport) as client:
            with pytest.raises(BadGatewaySignature):
                await client.initiate("ORD-1", 9900, "CUST-1", CALLBACK)
    finally:
        await sim.close()


# Refunds.


async def test_a_refund_is_pending_then_successful(
    client: PaytmClient, simulator: PaytmSimulator
) -> None:
    txn_id = await paid(client, simulator)
    refund = await client.refund("ORD-1", txn_id, "REF-1", 2500)
    assert (refund.state, refund.result_code, refund.refund_amount_paise) == (
        "pending",
        "601",
        2500,
    )
    assert refund.paytm_refund_id and refund.txn_id == txn_id and refund.refund_id == "REF-1"
    assert (await client.refund_status("ORD-1", "REF-1")).state == "pending"
    settled = await client.refund_status("ORD-1", "REF-1")
    assert (settled.state, settled.result_code) == ("success", "10")
    assert (await client.status("ORD-1")).refund_amount_paise == 2500


@pytest.mark.parametrize(
    ("ref_id", "paise", "code"), [("REF-1", 9901, "619"), ("REF-DUP", 100, "617")]
)
async def test_refunds_paytm_will_not_take_are_refused(
    client: PaytmClient, simulator: PaytmSimulator, ref_id: str, paise: int, code: str
) -> None:
    txn_id = await paid(client, simulator)
    await client.refund("ORD-1", txn_id, "REF-DUP", 100)
    with pytest.raises(GatewayRefused) as refused:
        await client.refund("ORD-1", txn_id, ref_id, paise)
    assert refused.value.code == code


async def test_the_status_of_an_unknown_refund_is_refused(
    client: PaytmClient, simulator: PaytmSimulator
) -> None:
    await paid(client, simulator)
    with pytest.raises(GatewayRefused) as refused:
        await client.refund_status("ORD-1", "REF-NONE")
    assert refused.value.code == "631"


# The audit log.


async def test_every_call_is_reported_without_secrets(
    client: PaytmClient, simulator: PaytmSimulator, calls: list[GatewayCall]
) -> None:
    initiated = await client.initiate("ORD-1", 9900, "CUST-1", CALLBACK)
    await simulator.complete("ORD-1", "success")
    status = await client.status("ORD-1")
    await client.refund("ORD-1", status.txn_id or "", "REF-1", 100)
    await client.refund_status("ORD-1", "REF-1")
    simulator.fail_next(Endpoint.STATUS, 502)
    with pytest.raises(GatewayUnavailable):
        await client.status("ORD-1")
    with pytest.raises(GatewayRefused):
        await client.initiate("ORD-1", 9900, "CUST-1", CALLBACK)

    assert [c.endpoint for c in calls] == [
        Endpoint.INITIATE,
        Endpoint.STATUS,
        Endpoint.REFUND,
        Endpoint.REFUND_STATUS,
        Endpoint.STATUS,
        Endpoint.INITIATE,
    ]
    assert all(c.order_id == "ORD-1" and c.latency_ms >= 0 for c in calls)
    assert [c.error is None for c in calls] == [True, True, True, True, False, False]
    assert calls[0].request["body"]["txnAmount"] == {"value": "99.00", "currency": "INR"}
    assert calls[0].request["head"] == {"signature": "[redacted]"}
    assert calls[0].response is not None
    assert calls[0].response["body"]["txnToken"] == "[redacted]"
    assert calls[0].response["head"]["signature"] == "[redacted]"
    assert "GatewayRefused" in (calls[-1].error or "") and "325" in (calls[-1].error or "")
    text = repr(calls)
    assert initiated.txn_token not in text and KEY not in text
    # No checksum (108 characters of base64) anywhere.
    assert re.search(r"[A-Za-z0-9+/]{100,}={0,2}", text) is None


# Answers the simulator never gives, scripted.


def scripted(answer: Callable[[dict[str, Any]], bytes]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=answer(json.loads(request.content)["body"]))

    return httpx.MockTransport(handle)


def signed(body: dict[str, Any], key: str = KEY) -> bytes:
    text = json.dumps(body)
    return f'{{"head":{{"signature":"{generate_signature(text, key)}"}},"body":{text}}}'.encode()


def status_body(request: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body = {
        "resultInfo": {
            "resultStatus": "TXN_SUCCESS",
            "resultCode": "01",
            "resultMsg": "Txn Success",
        },
        "orderId": request["orderId"],
        "mid": request["mid"],
        "txnId": "T1",
        "txnAmount": "99.00",
    }
    body.update(changes)
    return body


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (lambda r: b"<html>Bad gateway</html>", GatewayUnavailable),
        (lambda r: b'{"head":{},"body":[]}', GatewayUnavailable),
        (lambda r: signed(status_body(r, txnAmount="99.001")), GatewayUnavailable),
        (lambda r: signed(status_body(r, txnAmount=99.0)), GatewayUnavailable),
        (lambda r: signed(status_body(r, txnId=5)), GatewayUnavailable),
        (
            lambda r: signed(
                status_body(
                    r,
                    resultInfo={
                        "resultStatus": "U",
                        "resultCode": "00000900",
                        "resultMsg": "System error",
                    },
                )
            ),
            GatewayUnavailable,
        ),
        (lambda r: signed(status_body(r, orderId="ORD-OTHER")), BadGatewaySignature),  # replay
        (lambda r: signed(status_body(r, mid="OTHERMID")), BadGatewaySignature),
        (
            lambda r: b'{"head":{},"body":' + json.dumps(status_body(r)).encode() + b"}",
            BadGatewaySignature,
        ),
        (lambda r: signed(status_body(r), OTHER_KEY), BadGatewaySignature),
        # A second body after the signed one: json.loads would take it.
        (lambda r: signed(status_body(r))[:-1] + b',"body":{}}', GatewayUnavailable),
    ],
)
async def test_answers_that_cannot_be_used(
    answer: Callable[[dict[str, Any]], bytes], error: type[GatewayError]
) -> None:
    async with PaytmClient(
        "https://paytm.test", MID, KEY, "W", transport=scripted(answer)
    ) as client:
        with pytest.raises(error):
            await client.status("ORD-1")


async def test_a_signed_answer_in_any_layout_is_read() -> None:
    def answer(request: dict[str, Any]) -> bytes:
        text = json.dumps(status_body(request, currency="INR"), indent=2, ensure_ascii=True)
        signature = generate_signature(text, KEY)
        return f'{{\n "body" : {text},\n "head": {{"signature": "{signature}"}}\n}}'.encode()

    async with PaytmClient(
        "https://paytm.test", MID, KEY, "W", transport=scripted(answer)
    ) as client:
        status = await client.status("ORD-1")
    assert (status.state, status.amount_paise, status.currency) == ("success", 9900, "INR")


async def test_the_request_embeds_the_bytes_it_signed() -> None:
    seen: list[bytes] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(
            200,
            content=b'{"body":{"resultInfo":{"resultStatus":"F","resultCode":"1001","resultMsg":"x"}}}',
        )

    async with PaytmClient(
        "https://paytm.test/base/", MID, KEY, "W", transport=httpx.MockTransport(handle)
    ) as client:
        with pytest.raises(GatewayRefused):
            await client.initiate("ORD-1", 9900, "CUST-é", CALLBACK)
    text = seen[0].decode()
    start, end = value_span(text, "body")
    signature = json.loads(text)["head"]["signature"]
    assert verify_signature(text[start:end].encode(), KEY, signature)
    assert json.loads(text[start:end])["userInfo"] == {"custId": "CUST-é"}


class _ResigningTransport(httpx.AsyncBaseTransport):
    """Re-signs each request with ``key`` before sending it on: a client
    whose requests are accepted but whose own key differs from the gateway's."""

    def __init__(self, key: str) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._key = key

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        text = (await request.aread()).decode()
        start, end = value_span(text, "body")
        body = text[start:end]
        signature = generate_signature(body, self._key)
        content = f'{{"body":{body},"head":{{"signature":"{signature}"}}}}'.encode()
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        forwarded = httpx.Request(request.method, request.url, headers=headers, content=content)
        return await self._inner.handle_async_request(forwarded)

    async def aclose(self) -> None:
        await self._inner.aclose()
