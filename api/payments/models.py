"""Payments on the wire: what apps send, what they get back, and ``payment.updated``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from kernel.events import EventSpec
from kernel.rpc.cursors import Cursor
from kernel.rpc.registry import IdempotentParams, Params, Result
from kernel.rpc.text import Line, invalid

Id = Annotated[int, Field(ge=1, le=2**63 - 1)]
OrderId = Annotated[str, Field(pattern=r"^[A-Za-z0-9@._-]{1,50}$")]
Product = Literal["listing", "labourAccess"]
StatusName = Literal[
    "created", "pending", "paid", "failed", "expired", "review", "refund_pending", "refunded"
]
MAX_PAGE = 50

# The wire's product names and the database's.
PRODUCT_OF: dict[str, Literal["listing", "labour_access"]] = {
    "listing": "listing",
    "labourAccess": "labour_access",
}
WIRE_PRODUCT: dict[str, Product] = {"listing": "listing", "labour_access": "labourAccess"}


class Initiate(IdempotentParams):
    product: Product
    provider_service_id: Id | None = Field(
        None, description="the listing to pay for (product listing): one of yours"
    )

    @model_validator(mode="after")
    def _listing(self) -> Initiate:
        if (self.product == "listing") != (self.provider_service_id is not None):
            raise invalid(("providerServiceId", "required for a listing, and only for one"))
        return self


class CheckoutPage(Result):
    host: str = Field(description="the gateway's host: JS Checkout loads its script there")
    payment_page_url: str = Field(
        description="or: a form POST of mid, orderId and txnToken here (a WebView)"
    )
    callback_url: str = Field(
        description="where the gateway sends the browser back: close the WebView there, "
        "then call payments.verify"
    )


class Checkout(Result):
    """What the app needs to open the gateway's checkout (the amount is the server's)."""

    order_id: str
    product: Product
    amount_paise: int
    amount: str = Field(description='rupees as the checkout shows them, "99.00"')
    currency: str
    mid: str
    txn_token: str = Field(description="valid about 15 minutes; start a new order after")
    checkout: CheckoutPage


class OrderRef(Params):
    order_id: OrderId


class ListPayments(Params):
    cursor: Cursor | None = Field(None, description="nextCursor of the previous page")
    limit: int = Field(20, ge=1, le=MAX_PAGE)


class AdminListPayments(ListPayments):
    status: StatusName | None = None


class RenewListing(IdempotentParams):
    provider_service_id: Id


class ListingPeriod(Result):
    provider_service_id: int
    status: str
    active_until: datetime | None


class Refund(IdempotentParams):
    order_id: OrderId
    reason: Annotated[str, Line(3, 200)]


class Payment(Result):
    order_id: str
    product: Product
    provider_service_id: int | None
    amount_paise: int
    currency: str
    status: StatusName
    period_start: datetime | None = Field(description="what the payment bought: from")
    period_end: datetime | None = Field(description="until (null: no end, or not paid)")
    created_at: datetime
    paid_at: datetime | None
    refunded_at: datetime | None


class PaymentPage(Result):
    payments: list[Payment]
    next_cursor: str | None


class PaymentChange(Result):
    from_status: str | None
    to_status: str
    source: str
    detail: dict[str, Any]
    at: datetime


class GatewayCallView(Result):
    endpoint: str
    http_status: int | None
    latency_ms: float
    request: dict[str, Any]
    response: dict[str, Any] | None
    error: str | None
    at: datetime


class SecurityEventView(Result):
    kind: str
    source_ip: str | None
    detail: dict[str, Any]
    at: datetime


class AdminPayment(Payment):
    user_id: int | None
    gateway: str
    merchant_id: str
    gateway_txn_id: str | None
    bank_txn_id: str | None
    payment_mode: str | None
    result_code: str | None
    result_message: str | None
    checks: int
    refund_reason: str | None


class AdminPaymentDetail(Result):
    payment: AdminPayment
    changes: list[PaymentChange]
    gateway_calls: list[GatewayCallView]
    security_events: list[SecurityEventView]


class AdminPaymentPage(Result):
    payments: list[AdminPayment]
    next_cursor: str | None


class LabourAccess(Result):
    active: bool
    active_until: datetime | None
    price_paise: int
    days: int


class PaymentUpdated(Result):
    """``payment.updated``: to the payer, when a payment's status changed."""

    payment: Payment


PAYMENT_UPDATED = EventSpec(
    "payment.updated",
    PaymentUpdated,
    "to the payer: a payment was paid, failed, refunded or sent for review",
)
