"""The simulator's books: its orders and refunds, and Paytm's rules about them. No I/O.

:class:`Ledger` takes request bodies that the simulator has already parsed and
authenticated (signature, MID) and returns what Paytm would answer: a
:class:`ResultInfo` and the rest of the response body, unsigned. Time and randomness are
injected (a clock, a ``random.Random``), so its rules are tested with plain calls.

An order's life (``complete`` is the checkout page's buttons, or a test)::

               complete(success)
    created ─────────────────────────► success
      │  │     complete(failure)          ▲
      │  └────────────────────────► failure
      │ complete(pending)                 ▲ complete(success | failure), or the
      ▼                                   │ Transaction Status poll a test scripted
    pending ──────────────────────────────┘ with ``pending_then``

success and failure are final: Paytm never turns a settled payment around, so asking
for the other one raises :class:`TransitionRefused`. A refund is "pending" (601) when
taken and becomes "success" (10) after ``refund_settles_after`` Refund Status polls.

Where Paytm's documentation is silent the choices follow its staging gateway (each is
noted where it is made): an initiated order that nobody has paid yet is PENDING (402) to
Transaction Status; a repeated Initiate Transaction is "Success Idempotent" (0002, the
same token) while the order is unpaid and the request identical, "Repeat Request
Inconsistent" (2023) if anything differs, and "Duplicate Order Id" (325) once the
customer has acted on it.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol

from . import wire
from .wire import Code, Outcome

__all__ = [
    "Clock",
    "Ledger",
    "Order",
    "OrderState",
    "Refund",
    "ResultInfo",
    "SystemClock",
    "TransitionRefused",
]

IST = timezone(timedelta(hours=5, minutes=30), "IST")
#: How long a txnToken opens the checkout page (Paytm: 15 minutes).
TOKEN_TTL = timedelta(minutes=15)
# What the simulated customer pays with, in the callback's words.
PAYMENT_MODE = "UPI"
GATEWAY_NAME = "PPBL"
BANK_NAME = "Paytm Payments Bank"


class Clock(Protocol):
    """Any clock with ``now()``, timezone-aware UTC (``kernel.clock.Clock`` fits)."""

    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class OrderState(enum.StrEnum):
    CREATED = "created"  # initiated; the customer has not acted yet
    PENDING = "pending"
    SUCCESS = "success"
    FAILURE = "failure"


FINAL = frozenset({OrderState.SUCCESS, OrderState.FAILURE})


class TransitionRefused(ValueError):
    """A settled payment asked to end up otherwise."""


@dataclass(frozen=True)
class ResultInfo:
    """A response body's resultInfo."""

    status: str
    code: str
    message: str

    def __post_init__(self) -> None:
        # Plain strings, not Code members: these go into forms, JSON and reprs.
        object.__setattr__(self, "code", str(self.code))

    def as_wire(self) -> dict[str, str]:
        return {"resultStatus": self.status, "resultCode": self.code, "resultMsg": self.message}


def _fail(code: Code, message: str) -> ResultInfo:
    return ResultInfo(wire.RESULT_FAILURE, code, message)


# What Transaction Status and the callback say of an order in each state.
STATE_RESULTS = {
    OrderState.SUCCESS: ResultInfo(wire.TXN_SUCCESS, Code.TXN_OK, "Txn Success"),
    OrderState.FAILURE: ResultInfo(
        wire.TXN_FAILURE,
        Code.TXN_DECLINED,
        "Your payment has been declined by your bank. Please contact your bank for any "
        "queries. If money has been deducted from your account, your bank will inform us "
        "within 48 hrs and we will refund the same.",
    ),
    OrderState.PENDING: ResultInfo(
        wire.PENDING, Code.NOT_CONFIRMED, "Transaction status not confirmed yet."
    ),
    # Staging answers an order nobody has paid yet with 402.
    OrderState.CREATED: ResultInfo(
        wire.PENDING,
        Code.NOT_COMPLETE,
        "Looks like the payment is not complete. Please wait while we confirm the status "
        "with your bank.",
    ),
}
UNKNOWN_ORDER = ResultInfo(wire.TXN_FAILURE, Code.UNKNOWN_ORDER, "Invalid Order Id.")
REFUND_PENDING = ResultInfo(
    wire.PENDING,
    Code.REFUND_PENDING,
    "Refund request was raised for this transaction. But it is pending state.",
)
REFUND_SUCCESS = ResultInfo(wire.TXN_SUCCESS, Code.REFUND_OK, "Refund Successfull")
REFUND_UNKNOWN = ResultInfo(wire.TXN_FAILURE, Code.REFUND_UNKNOWN, "Record not found")


@dataclass
class Refund:
    ref_id: str  # the merchant's
    refund_id: str  # Paytm's
    amount_paise: int
    requested_at: datetime
    polls_left: int  # Refund Status polls still answered "pending"
    state: Outcome = "pending"


@dataclass
class Order:
    mid: str
    order_id: str
    amount_paise: int
    callback_url: str
    customer_id: str
    website_name: str
    txn_token: str
    created_at: datetime
    state: OrderState = OrderState.CREATED
    txn_id: str = ""  # given when the customer acts, as Paytm does
    bank_txn_id: str = ""
    acted_at: datetime | None = None
    # Test scripting: what Transaction Status reports instead of the truth.
    reported_amount_paise: int | None = None
    pending_polls: int = 0  # polls still answered PENDING before pending_outcome
    pending_outcome: Outcome | None = None
    refunds: dict[str, Refund] = field(default_factory=dict)

    @property
    def refunded_paise(self) -> int:
        return sum(r.amount_paise for r in self.refunds.values() if r.state == "success")

    @property
    def refundable_paise(self) -> int:
        # Refunds still pending count: Paytm will not refund the same money twice.
        return self.amount_paise - sum(
            r.amount_paise for r in self.refunds.values() if r.state != "failure"
        )


class Ledger:
    """The orders and refunds of every merchant of one simulator.

    Order ids share one namespace across merchants (Paytm's are per MID; the simulator's
    tests never need two merchants with the same order id).
    """

    def __init__(self, *, clock: Clock, rng: random.Random, refund_settles_after: int = 1) -> None:
        self._clock = clock
        self._rng = rng
        self._refund_settles_after = refund_settles_after
        self.orders: dict[str, Order] = {}

    # Initiate Transaction.

    def initiate(self, mid: str, body: Mapping[str, Any]) -> tuple[ResultInfo, dict[str, Any]]:
        """Open an order for the authenticated merchant ``mid``."""
        fields = _initiate_fields(body)
        if isinstance(fields, ResultInfo):
            return fields, {}
        order_id, amount_text, currency, callback_url, customer_id, website = fields
        if wire.REFERENCE.fullmatch(order_id) is None:
            return _fail(Code.REQUEST_INVALID, "Request parameters are not valid"), {}
        try:
            amount = wire.parse_amount(amount_text)
        except wire.MalformedAmount:
            amount = 0
        if amount <= 0 or currency != "INR":
            return _fail(Code.BAD_AMOUNT, "Txn amount is invalid"), {}
        existing = self.orders.get(order_id)
        if existing is not None:
            return self._repeat(existing, mid, amount, callback_url, customer_id, website)
        now = self._clock.now()
        order = Order(
            mid=mid,
            order_id=order_id,
            amount_paise=amount,
            callback_url=callback_url,
            customer_id=customer_id,
            website_name=website,
            txn_token=f"{self._rng.getrandbits(128):032x}{int(now.timestamp() * 1000)}",
            created_at=now,
        )
        self.orders[order_id] = order
        return ResultInfo(wire.RESULT_SUCCESS, Code.INITIATED, "Success"), _token(order)

    def _repeat(
        self,
        order: Order,
        mid: str,
        amount: int,
        callback_url: str,
        customer_id: str,
        website: str,
    ) -> tuple[ResultInfo, dict[str, Any]]:
        if order.state is not OrderState.CREATED or order.mid != mid:
            return _fail(Code.DUPLICATE_ORDER, "Duplicate Order Id"), {}
        same = (order.amount_paise, order.callback_url, order.customer_id, order.website_name)
        if same != (amount, callback_url, customer_id, website):
            return _fail(Code.REPEAT_INCONSISTENT, "Repeat Request Inconsistent"), {}
        return ResultInfo(wire.RESULT_SUCCESS, Code.IDEMPOTENT, "Success Idempotent"), _token(order)

    # The checkout page.

    def checkout(self, mid: str, order_id: str, txn_token: str) -> ResultInfo | Order:
        """The order a checkout page request may act on, or why not."""
        order = self.orders.get(order_id)
        if order is None or order.mid != mid or order.txn_token != txn_token:
            return _fail(Code.REQUEST_INVALID, "Request parameters are not valid")
        if order.state is OrderState.CREATED and self._clock.now() - order.created_at > TOKEN_TTL:
            return _fail(Code.SESSION_EXPIRED, "Your Session has expired")
        return order

    def complete(self, order_id: str, outcome: Outcome) -> Order:
        """The customer's choice (or a test's): the order ends up ``outcome``.

        Raises ``KeyError`` for an unknown order, :class:`TransitionRefused` for a
        settled order asked to end up otherwise (asking again for the same is a no-op).
        """
        order = self.orders[order_id]
        target = OrderState(outcome)
        if order.state in FINAL:
            if order.state is not target:
                raise TransitionRefused(f"order {order_id} is {order.state}, not {outcome}")
            return order
        if not order.txn_id:
            order.acted_at = self._clock.now()
            order.txn_id = self._paytm_id(order.acted_at)
        if target is OrderState.SUCCESS:
            order.bank_txn_id = str(self._rng.randrange(10**11, 10**12))
        order.state = target
        return order

    # Transaction Status.

    def status(self, mid: str, body: Mapping[str, Any]) -> tuple[ResultInfo, dict[str, Any]]:
        order_id = body.get("orderId")
        order = self.orders.get(order_id) if isinstance(order_id, str) else None
        if order is None or order.mid != mid:
            return UNKNOWN_ORDER, {"orderId": order_id, "mid": mid}
        if order.pending_outcome is not None and order.state not in FINAL:
            if order.pending_polls > 0:
                order.pending_polls -= 1
                self.complete(order.order_id, "pending")
            else:
                self.complete(order.order_id, order.pending_outcome)
                order.pending_outcome = None
        amount = order.reported_amount_paise or order.amount_paise
        answer: dict[str, Any] = {
            "txnId": order.txn_id,
            "bankTxnId": order.bank_txn_id,
            "orderId": order.order_id,
            "txnAmount": wire.format_amount(amount),
            "txnType": "SALE",
            "gatewayName": GATEWAY_NAME if order.acted_at else "",
            "bankName": BANK_NAME if order.acted_at else "",
            "mid": order.mid,
            "paymentMode": PAYMENT_MODE if order.acted_at else "",
            "refundAmt": f"{order.refunded_paise // 100}.{order.refunded_paise % 100:02d}",
            "txnDate": paytm_time(order.acted_at) if order.acted_at else "",
        }
        return STATE_RESULTS[order.state], answer

    def callback_fields(
        self, order: Order, *, amount_paise: int | None = None, status: Outcome | None = None
    ) -> dict[str, str]:
        """The callback's (and payment webhook's) form fields for ``order``, unsigned;
        ``amount_paise`` and ``status`` forge TXNAMOUNT and STATUS (with its RESPCODE and
        RESPMSG) for tests of a merchant's checks."""
        result = STATE_RESULTS[OrderState(status) if status else order.state]
        acted = order.acted_at is not None
        fields = {
            "CURRENCY": "INR",
            "GATEWAYNAME": GATEWAY_NAME if acted else "",
            "RESPMSG": result.message,
            "BANKNAME": BANK_NAME if acted else "",
            "PAYMENTMODE": PAYMENT_MODE if acted else "",
            "MID": order.mid,
            "RESPCODE": result.code,
            "TXNID": order.txn_id,
            "TXNAMOUNT": wire.format_amount(amount_paise or order.amount_paise),
            "ORDERID": order.order_id,
            "STATUS": result.status,
            "BANKTXNID": order.bank_txn_id,
            "TXNDATE": paytm_time(order.acted_at) if order.acted_at else "",
        }
        assert tuple(fields) == wire.CALLBACK_FIELDS
        return fields

    # Refunds.

    def refund(self, mid: str, body: Mapping[str, Any]) -> tuple[ResultInfo, dict[str, Any]]:
        order = self.orders.get(_text(body, "orderId"))
        ref_id = _text(body, "refId")
        echo = {"orderId": body.get("orderId"), "mid": mid, "refId": body.get("refId")}
        if order is None or order.mid != mid or order.txn_id != body.get("txnId"):
            return _refund_fail(Code.REFUND_ORDER_MISMATCH, "Order Details Mismatch"), echo
        if body.get("txnType") != "REFUND" or order.state is not OrderState.SUCCESS:
            message = "Invalid refund request or restricted by bank."
            return _refund_fail(Code.REFUND_BAD_REQUEST, message), echo
        if wire.REFERENCE.fullmatch(ref_id) is None or ref_id in order.refunds:
            return _refund_fail(Code.REFUND_REPEATED, "Refund Already Raised"), echo
        try:
            amount = wire.parse_amount(body.get("refundAmount"))
        except wire.MalformedAmount:
            amount = 0
        if not 0 < amount <= order.refundable_paise:
            return _refund_fail(Code.REFUND_BAD_AMOUNT, "Invalid refund amount"), echo
        now = self._clock.now()
        refund = Refund(
            ref_id=ref_id,
            refund_id=self._paytm_id(now),
            amount_paise=amount,
            requested_at=now,
            polls_left=self._refund_settles_after,
        )
        order.refunds[ref_id] = refund
        return REFUND_PENDING, _refund_body(order, refund)

    def refund_status(self, mid: str, body: Mapping[str, Any]) -> tuple[ResultInfo, dict[str, Any]]:
        order = self.orders.get(_text(body, "orderId"))
        refund = order.refunds.get(_text(body, "refId")) if order is not None else None
        if order is None or refund is None or order.mid != mid:
            echo = {"orderId": body.get("orderId"), "mid": mid, "refId": body.get("refId")}
            return REFUND_UNKNOWN, echo
        if refund.state == "pending":
            if refund.polls_left > 0:
                refund.polls_left -= 1
            else:
                refund.state = "success"
        result = REFUND_SUCCESS if refund.state == "success" else REFUND_PENDING
        answer = _refund_body(order, refund)
        answer["totalRefundAmount"] = wire.format_amount(refund.amount_paise)
        answer["refundDetailInfoList"] = [
            {
                "refundType": "TO_SOURCE",
                "payMethod": PAYMENT_MODE,
                "refundAmount": wire.format_amount(refund.amount_paise),
            }
        ]
        return result, answer

    def _paytm_id(self, when: datetime) -> str:
        # Paytm's TXNID and refundId: the date, then digits (35 in all).
        return f"{when.astimezone(IST):%Y%m%d}{self._rng.randrange(10**26, 10**27)}"


def paytm_time(when: datetime) -> str:
    """Paytm's way of writing a time: IST, tenths of a second ("2024-05-08 11:12:12.0")."""
    local = when.astimezone(IST)
    return f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond // 100_000}"


def _initiate_fields(
    body: Mapping[str, Any],
) -> ResultInfo | tuple[str, object, object, str, str, str]:
    """The fields of an Initiate Transaction body, or Missing mandatory element."""
    amount = body.get("txnAmount")
    user = body.get("userInfo")
    if not isinstance(amount, dict) or not isinstance(user, dict):
        return _fail(Code.MISSING_ELEMENT, "Missing mandatory element")
    strings = [body.get(k) for k in ("orderId", "callbackUrl", "websiteName")]
    strings.append(user.get("custId"))
    if body.get("requestType") != "Payment" or not all(isinstance(s, str) and s for s in strings):
        return _fail(Code.MISSING_ELEMENT, "Missing mandatory element")
    order_id, callback_url, website, customer_id = (str(s) for s in strings)
    return order_id, amount.get("value"), amount.get("currency"), callback_url, customer_id, website


def _token(order: Order) -> dict[str, Any]:
    return {"txnToken": order.txn_token, "isPromoCodeValid": False, "authenticated": False}


def _refund_fail(code: Code, message: str) -> ResultInfo:
    return ResultInfo(wire.TXN_FAILURE, code, message)


def _refund_body(order: Order, refund: Refund) -> dict[str, Any]:
    return {
        "txnTimestamp": paytm_time(order.acted_at or order.created_at),
        "orderId": order.order_id,
        "mid": order.mid,
        "refId": refund.ref_id,
        "refundId": refund.refund_id,
        "txnId": order.txn_id,
        "txnAmount": wire.format_amount(order.amount_paise),
        "refundAmount": wire.format_amount(refund.amount_paise),
        "merchantRefundRequestTimestamp": paytm_time(refund.requested_at),
    }


def _text(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    return value if isinstance(value, str) else ""
