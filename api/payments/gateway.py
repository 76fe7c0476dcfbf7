"""The payment gateway as the payments service sees it, and its Paytm adapter.

.. code-block:: text

    GatewayError              retryable
    ├── GatewayDown           yes: timeouts, connection errors, 5xx, unreadable answers
    ├── GatewayRefusal        no: the gateway said no (its code and message)
    └── ForgedAnswer          no: an answer whose signature does not verify, or about
                              another order: a security event

Every call is also written to the audit (``gateway_calls``), secrets redacted, before
the method returns or raises.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from api.payments.metrics import PaymentMetrics
from api.payments.paytm import checksum
from api.payments.paytm.client import GatewayCall, PaytmClient, RefundResult, TxnStatus
from api.payments.paytm.errors import (
    BadGatewaySignature,
    GatewayRefused,
    GatewayUnavailable,
)
from api.payments.paytm.errors import (
    GatewayError as PaytmError,
)
from api.payments.paytm.wire import format_amount
from api.payments.rules import Observed, Outcome
from storage import payments as store
from storage.database import Database

log = logging.getLogger("rtc.payments")


class GatewayError(Exception):
    retryable = False


class GatewayDown(GatewayError):
    retryable = True


class GatewayRefusal(GatewayError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ForgedAnswer(GatewayError):
    pass


@dataclass(frozen=True, slots=True)
class Started:
    """An order open at the gateway: what the app's checkout needs."""

    txn_token: str
    host: str  # the gateway's host (JS Checkout loads its script from there)
    page_url: str  # a browser form POSTs mid, orderId and txnToken here


@dataclass(frozen=True, slots=True)
class Status:
    """What the gateway's Transaction Status says of an order."""

    observed: Observed
    txn_id: str | None
    bank_txn_id: str | None
    payment_mode: str | None
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class RefundStatus:
    outcome: Outcome
    code: str
    message: str


class Gateway(Protocol):
    name: str
    merchant_id: str
    currency: str

    async def initiate(
        self, order_id: str, amount_paise: int, customer_id: str, callback_url: str
    ) -> Started: ...

    async def status(self, order_id: str) -> Status: ...

    async def refund(
        self, order_id: str, txn_id: str, refund_id: str, amount_paise: int
    ) -> RefundStatus: ...

    async def refund_status(self, order_id: str, refund_id: str) -> RefundStatus: ...

    def verify_callback(self, fields: Mapping[str, str]) -> bool:
        """The posted fields carry a valid checksum of this merchant (never raises)."""
        ...

    async def close(self) -> None: ...


class PaytmGateway:
    """Paytm (or the local simulator, which speaks the same protocol)."""

    name = "paytm"
    currency = "INR"

    def __init__(
        self,
        db: Database,
        metrics: PaymentMetrics,
        *,
        base_url: str,
        mid: str,
        key: str,
        website: str,
        timeout: float,
    ) -> None:
        self._db = db
        self._metrics = metrics
        self._key = key
        self.merchant_id = mid
        self._base_url = base_url
        self._calls: list[GatewayCall] = []
        self._client = PaytmClient(
            base_url, mid, key, website, timeout=timeout, on_call=self._calls.append
        )

    async def initiate(
        self, order_id: str, amount_paise: int, customer_id: str, callback_url: str
    ) -> Started:
        async with self._audited():
            started = await self._client.initiate(order_id, amount_paise, customer_id, callback_url)
        host = self._base_url.split("://", 1)[-1].split("/", 1)[0]
        return Started(started.txn_token, host, started.checkout_url)

    async def status(self, order_id: str) -> Status:
        async with self._audited():
            answer: TxnStatus = await self._client.status(order_id)
        return Status(
            Observed(
                outcome=answer.state,
                order_id=answer.order_id,
                amount_paise=answer.amount_paise,
                currency=answer.currency,
                merchant_id=answer.mid,
            ),
            answer.txn_id,
            answer.bank_txn_id,
            answer.payment_mode,
            answer.result_code,
            answer.result_msg,
        )

    async def refund(
        self, order_id: str, txn_id: str, refund_id: str, amount_paise: int
    ) -> RefundStatus:
        async with self._audited():
            answer = await self._client.refund(order_id, txn_id, refund_id, amount_paise)
        return _refund(answer)

    async def refund_status(self, order_id: str, refund_id: str) -> RefundStatus:
        async with self._audited():
            answer = await self._client.refund_status(order_id, refund_id)
        return _refund(answer)

    def verify_callback(self, fields: Mapping[str, str]) -> bool:
        signed = {k: v for k, v in fields.items() if k != "CHECKSUMHASH"}
        return checksum.verify_signature(signed, self._key, fields.get("CHECKSUMHASH"))

    async def close(self) -> None:
        await self._client.close()

    def _audited(self) -> _Audit:
        return _Audit(self)

    async def _flush(self) -> None:
        """Write the calls made so far to the audit (an audit that fails is logged: the
        payment itself must go on)."""
        calls, self._calls[:] = list(self._calls), []
        now = datetime.now(UTC)
        for call in calls:
            endpoint = str(call.endpoint)
            outcome = "ok" if call.error is None else "error"
            self._metrics.gateway_calls.labels(endpoint, outcome).inc()
            self._metrics.gateway_seconds.labels(endpoint).observe(call.latency_ms / 1000)
        rows = [
            store.GatewayCallRow(
                c.order_id,
                str(c.endpoint),
                c.http_status,
                c.latency_ms,
                c.request,
                c.response,
                c.error,
                now,
            )
            for c in calls
        ]
        try:
            await store.log_calls(self._db, rows)
        except Exception:  # noqa: BLE001 - see above
            log.exception("gateway calls not written to the audit", extra={"calls": len(rows)})


class _Audit:
    """Around one gateway call: write its audit rows, and map Paytm's errors to ours."""

    def __init__(self, gateway: PaytmGateway) -> None:
        self._gateway = gateway

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        await self._gateway._flush()
        if isinstance(error, GatewayUnavailable):
            raise GatewayDown(str(error)) from error
        if isinstance(error, GatewayRefused):
            raise GatewayRefusal(error.code, error.message) from error
        if isinstance(error, BadGatewaySignature):
            raise ForgedAnswer(str(error)) from error
        if isinstance(error, PaytmError):
            raise GatewayDown(str(error)) from error


def _refund(answer: RefundResult) -> RefundStatus:
    return RefundStatus(answer.state, answer.result_code, answer.result_msg)


def rupees(paise: int) -> str:
    """The amount as the checkout shows it ("99.00")."""
    return format_amount(paise)
