"""The Paytm simulator's rules about orders and refunds, with plain calls."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api.payments.paytm.ledger import Ledger, OrderState, TransitionRefused, paytm_time
from api.payments.paytm.wire import Outcome

MID = "BuildX00000000000001"


class FakeClock:
    def __init__(self) -> None:
        self.current = datetime(2026, 1, 1, 6, 30, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ledger(clock: FakeClock) -> Ledger:
    return Ledger(clock=clock, rng=random.Random(7), refund_settles_after=1)


def initiate_body(order_id: str = "ORD-1", value: Any = "99.00", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "requestType": "Payment",
        "mid": MID,
        "websiteName": "WEBSTAGING",
        "orderId": order_id,
        "callbackUrl": "https://merchant.example/paytm/callback",
        "txnAmount": {"value": value, "currency": "INR"},
        "userInfo": {"custId": "CUST-1"},
    }
    body.update(changes)
    return body


def paid(ledger: Ledger, order_id: str = "ORD-1") -> str:
    ledger.initiate(MID, initiate_body(order_id))
    return ledger.complete(order_id, "success").txn_id


def test_initiate_opens_an_order_with_a_token(ledger: Ledger) -> None:
    result, answer = ledger.initiate(MID, initiate_body())
    assert (result.status, result.code) == ("S", "0000")
    order = ledger.orders["ORD-1"]
    assert answer["txnToken"] == order.txn_token
    assert (order.amount_paise, order.state) == (9900, OrderState.CREATED)


def test_an_identical_repeat_is_idempotent_and_a_different_one_inconsistent(
    ledger: Ledger,
) -> None:
    _, first = ledger.initiate(MID, initiate_body())
    result, again = ledger.initiate(MID, initiate_body())
    assert (result.status, result.code, again["txnToken"]) == ("S", "0002", first["txnToken"])
    result, _ = ledger.initiate(MID, initiate_body(value="98.00"))
    assert (result.status, result.code) == ("F", "2023")


@pytest.mark.parametrize("outcome", ["success", "failure", "pending"])
def test_an_order_the_customer_acted_on_is_a_duplicate(ledger: Ledger, outcome: Outcome) -> None:
    ledger.initiate(MID, initiate_body())
    ledger.complete("ORD-1", outcome)
    result, answer = ledger.initiate(MID, initiate_body())
    assert (result.status, result.code, answer) == ("F", "325", {})


@pytest.mark.parametrize("value", ["0.00", "-1.00", "1.001", "abc", 100, None])
def test_bad_amounts_are_refused(ledger: Ledger, value: Any) -> None:
    result, _ = ledger.initiate(MID, initiate_body(value=value))
    assert (result.status, result.code) == ("F", "2007")


@pytest.mark.parametrize(
    "changes",
    [{"requestType": "NATIVE"}, {"orderId": ""}, {"userInfo": {}}, {"txnAmount": "1.00"}],
)
def test_missing_elements_are_refused(ledger: Ledger, changes: dict[str, Any]) -> None:
    result, _ = ledger.initiate(MID, initiate_body(**changes))
    assert result.code == "1007"


def test_settled_orders_never_turn_around(ledger: Ledger) -> None:
    ledger.initiate(MID, initiate_body())
    ledger.complete("ORD-1", "pending")
    ledger.complete("ORD-1", "failure")
    ledger.complete("ORD-1", "failure")  # the same again: a no-op
    with pytest.raises(TransitionRefused):
        ledger.complete("ORD-1", "success")
    assert ledger.orders["ORD-1"].state is OrderState.FAILURE


@pytest.mark.parametrize(
    ("outcome", "status", "code"),
    [
        (None, "PENDING", "402"),
        ("success", "TXN_SUCCESS", "01"),
        ("failure", "TXN_FAILURE", "227"),
        ("pending", "PENDING", "400"),
    ],
)
def test_status_reports_each_state(
    ledger: Ledger, outcome: Outcome | None, status: str, code: str
) -> None:
    ledger.initiate(MID, initiate_body())
    if outcome is not None:
        ledger.complete("ORD-1", outcome)
    result, answer = ledger.status(MID, {"mid": MID, "orderId": "ORD-1"})
    assert (result.status, result.code) == (status, code)
    assert (answer["orderId"], answer["txnAmount"]) == ("ORD-1", "99.00")
    assert bool(answer["bankTxnId"]) == (outcome == "success")


def test_status_of_an_unknown_order(ledger: Ledger) -> None:
    result, _ = ledger.status(MID, {"mid": MID, "orderId": "NOPE"})
    assert (result.status, result.code) == ("TXN_FAILURE", "334")


def test_a_scripted_pending_resolves_after_n_polls(ledger: Ledger) -> None:
    ledger.initiate(MID, initiate_body())
    order = ledger.orders["ORD-1"]
    order.pending_polls, order.pending_outcome = 2, "success"
    codes = [ledger.status(MID, {"orderId": "ORD-1"})[0].code for _ in range(4)]
    assert codes == ["400", "400", "01", "01"]


def test_callback_fields_are_paytms_and_can_be_forged(ledger: Ledger, clock: FakeClock) -> None:
    ledger.initiate(MID, initiate_body())
    order = ledger.complete("ORD-1", "success")
    fields = ledger.callback_fields(order)
    assert fields["STATUS"] == "TXN_SUCCESS" and fields["RESPCODE"] == "01"
    assert fields["TXNAMOUNT"] == "99.00" and fields["TXNDATE"] == "2026-01-01 12:00:00.0"
    forged = ledger.callback_fields(order, amount_paise=1, status="failure")
    assert (forged["TXNAMOUNT"], forged["STATUS"], forged["RESPCODE"]) == (
        "0.01",
        "TXN_FAILURE",
        "227",
    )


def test_paytm_time_is_ist_with_tenths() -> None:
    when = datetime(2026, 5, 8, 5, 42, 12, 345678, tzinfo=UTC)
    assert paytm_time(when) == "2026-05-08 11:12:12.3"


def test_a_token_opens_the_checkout_for_fifteen_minutes(ledger: Ledger, clock: FakeClock) -> None:
    _, answer = ledger.initiate(MID, initiate_body())
    token = answer["txnToken"]
    assert ledger.checkout(MID, "ORD-1", token) is ledger.orders["ORD-1"]
    assert getattr(ledger.checkout(MID, "ORD-1", "wrong"), "code", None) == "1001"
    clock.current += timedelta(minutes=15, seconds=1)
    assert getattr(ledger.checkout(MID, "ORD-1", token), "code", None) == "1006"


def refund_body(txn_id: str, ref_id: str = "REF-1", amount: str = "10.00") -> dict[str, Any]:
    return {
        "mid": MID,
        "txnType": "REFUND",
        "orderId": "ORD-1",
        "txnId": txn_id,
        "refId": ref_id,
        "refundAmount": amount,
    }


def test_a_refund_is_pending_then_successful(ledger: Ledger) -> None:
    txn_id = paid(ledger)
    result, answer = ledger.refund(MID, refund_body(txn_id))
    assert (result.status, result.code, answer["refundAmount"]) == ("PENDING", "601", "10.00")
    query = {"mid": MID, "orderId": "ORD-1", "refId": "REF-1"}
    assert ledger.refund_status(MID, query)[0].code == "601"
    result, answer = ledger.refund_status(MID, query)
    assert (result.status, result.code) == ("TXN_SUCCESS", "10")
    assert answer["refundId"] and answer["txnId"] == txn_id
    assert ledger.status(MID, {"orderId": "ORD-1"})[1]["refundAmt"] == "10.00"


def test_refund_refusals(ledger: Ledger) -> None:
    ledger.initiate(MID, initiate_body("UNPAID"))
    unpaid = ledger.complete("UNPAID", "failure").txn_id
    txn_id = paid(ledger)
    assert ledger.refund(MID, {**refund_body(unpaid), "orderId": "UNPAID"})[0].code == "600"
    assert ledger.refund(MID, refund_body("another-txn"))[0].code == "627"
    assert ledger.refund(MID, refund_body(txn_id, amount="99.01"))[0].code == "619"
    assert ledger.refund(MID, refund_body(txn_id, amount="0.00"))[0].code == "619"
    assert ledger.refund(MID, refund_body(txn_id, amount="60.00"))[0].code == "601"
    assert ledger.refund(MID, refund_body(txn_id, amount="1.00"))[0].code == "617"  # REF-1 again
    # 60.00 of 99.00 is already on its way back: 40.00 more would refund money twice.
    assert ledger.refund(MID, refund_body(txn_id, "REF-2", "40.00"))[0].code == "619"
    unknown = {"mid": MID, "orderId": "ORD-1", "refId": "REF-9"}
    assert ledger.refund_status(MID, unknown)[0].code == "631"
