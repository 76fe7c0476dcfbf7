"""The Paytm gateway client: Initiate Transaction, Transaction Status, Refund, Refund
Status, server to server over ``httpx``.

Every API takes and answers ``{"body": {...}, "head": {"signature": ...}}``; the
signature is Paytm's checksum (:mod:`.checksum`) of the ``body`` bytes exactly as sent.
So a request's body is serialized once, signed, and embedded as those very bytes; an
answer's signature is checked over the answer's ``body`` text as received, located with
:mod:`.jsonspan`, and only that verified text is parsed.

- Initiate Transaction, ``POST /theia/api/v1/initiateTransaction?mid=&orderId=``:
  https://developer.paytm.com/docs/api/initiate-transaction-api/ . resultStatus "S"
  gives the ``txnToken`` the checkout (JS Checkout, or a form POST to
  ``showPaymentPage``) needs; resultCode "0002" ("Success Idempotent") is the same token
  for a repeated identical request, which makes a retry after a timeout safe.
- Transaction Status, ``POST /v3/order/status``:
  https://developer.paytm.com/docs/api/v3/transaction-status-api/ . The authority on a
  payment: the browser callback is only a hint.
- Refund, ``POST /refund/apply`` (https://developer.paytm.com/docs/api/refund-api/), and
  Refund Status, ``POST /v2/refund/status``
  (https://developer.paytm.com/docs/api/refund-status-api/). Refunds are asynchronous:
  "PENDING" (601) first, "TXN_SUCCESS" (10) once the bank has it.

What counts as an answer. A signature, when present, must verify, else
:class:`~.errors.BadGatewaySignature`. Paytm sends refusals it makes before it has
authenticated the merchant (a bad checksum, an unknown MID) unsigned, so an unsigned
refusal is accepted as :class:`~.errors.GatewayRefused`: it grants nothing. Anything the
caller would act on (a token, a payment or refund state) must be signed, and a signed
status or refund answer must be about the order (and refund) asked for: a signed answer
about another order is a replay.

Amounts are integer paise here and rupee strings with two decimals on the wire, parsed
back exactly (:func:`.wire.parse_amount`).

Every call, successful or not, is reported to ``on_call`` as a :class:`GatewayCall` for
the audit log, with signatures, tokens and checksums replaced by ``"[redacted]"``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import httpx

from . import wire
from .checksum import generate_signature, verify_signature
from .errors import BadGatewaySignature, GatewayError, GatewayRefused, GatewayUnavailable
from .jsonspan import top_level_spans
from .wire import Endpoint, Outcome

__all__ = [
    "PRODUCTION",
    "STAGING",
    "GatewayCall",
    "Initiated",
    "PaytmClient",
    "RefundResult",
    "TxnStatus",
]

STAGING = "https://securegw-stage.paytm.in"
PRODUCTION = "https://securegw.paytm.in"

REDACTED = "[redacted]"
# Keys whose values let someone pay, or forge an answer, if they leaked from a log.
_SECRET_KEYS = frozenset({"signature", "txnToken", "CHECKSUMHASH", "checksum"})

T = TypeVar("T")


@dataclass(frozen=True)
class GatewayCall:
    """One request to Paytm and its outcome, for the audit log (secrets redacted)."""

    endpoint: Endpoint
    http_status: int | None  # None: no HTTP answer (timeout, connection error)
    latency_ms: float
    request: dict[str, Any]
    response: dict[str, Any] | None  # None: no JSON answer
    error: str | None  # None: the call succeeded
    order_id: str


@dataclass(frozen=True)
class Initiated:
    """A transaction Paytm has opened; ``txn_token`` lets the customer's browser pay."""

    txn_token: str
    order_id: str
    amount_paise: int
    result_code: str  # "0000", or "0002" when Paytm recognised a repeated request
    #: Where a browser form POSTs ``txnToken`` to reach Paytm's checkout page.
    checkout_url: str


@dataclass(frozen=True)
class TxnStatus:
    """What Transaction Status says of an order."""

    state: Outcome
    order_id: str
    mid: str | None
    amount_paise: int | None
    currency: str | None
    txn_id: str | None
    bank_txn_id: str | None
    result_code: str
    result_msg: str
    payment_mode: str | None
    txn_date: str | None  # as Paytm writes it, "2024-05-08 11:12:12.0" (IST)
    refund_amount_paise: int | None


@dataclass(frozen=True)
class RefundResult:
    """What Refund or Refund Status says of a refund."""

    state: Outcome
    order_id: str
    refund_id: str  # ours: the refId we chose
    paytm_refund_id: str | None  # Paytm's refundId
    txn_id: str | None
    refund_amount_paise: int | None
    result_code: str
    result_msg: str


@dataclass(frozen=True)
class _Answer:
    """A parsed answer whose signature, if it had one, verified."""

    head: dict[str, Any]
    body: dict[str, Any]
    signed: bool
    status: str  # resultInfo.resultStatus
    code: str  # resultInfo.resultCode
    message: str  # resultInfo.resultMsg


class PaytmClient:
    """A client of one merchant (``mid``, ``merchant_key``) on one Paytm gateway.

    ``base_url`` is :data:`STAGING`, :data:`PRODUCTION` or any other URL (a simulator);
    ``website_name`` is the one Paytm gave the MID ("WEBSTAGING" on staging, often
    "DEFAULT" in production). ``transport`` replaces httpx's network transport (tests).
    """

    def __init__(
        self,
        base_url: str,
        mid: str,
        merchant_key: str,
        website_name: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        on_call: Callable[[GatewayCall], None] | None = None,
        monotonic: Callable[[], float] = time.perf_counter,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url is an http(s) URL, got {base_url!r}")
        if not mid or not website_name:
            raise ValueError("mid and website_name are required")
        generate_signature(b"", merchant_key)  # raises ValueError for a malformed key
        self._base_url = base_url.rstrip("/")
        self._mid = mid
        self._key = merchant_key
        self._website_name = website_name
        self._timeout = timeout
        self._on_call = on_call
        self._monotonic = monotonic
        self._http = httpx.AsyncClient(
            base_url=self._base_url,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
        )

    async def __aenter__(self) -> PaytmClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    # The four APIs.

    async def initiate(
        self, order_id: str, amount_paise: int, customer_id: str, callback_url: str
    ) -> Initiated:
        """Open a transaction of ``amount_paise`` for ``order_id``; its token lets the
        customer pay on Paytm's checkout, after which Paytm posts the result to
        ``callback_url`` (from the customer's browser)."""
        _check_reference("order_id", order_id)
        if not customer_id:
            raise ValueError("customer_id is required")
        if urlsplit(callback_url).scheme not in ("http", "https"):
            raise ValueError(f"callback_url is an http(s) URL, got {callback_url!r}")
        body = {
            "requestType": "Payment",
            "mid": self._mid,
            "websiteName": self._website_name,
            "orderId": order_id,
            "callbackUrl": callback_url,
            "txnAmount": {"value": wire.format_amount(amount_paise), "currency": "INR"},
            "userInfo": {"custId": customer_id},
        }

        def interpret(answer: _Answer) -> Initiated:
            _raise_unless(answer, wire.RESULT_SUCCESS)
            _require_signed(answer)
            token = answer.body.get("txnToken")
            if not isinstance(token, str) or not token:
                raise GatewayUnavailable("Initiate Transaction succeeded without a txnToken")
            return Initiated(
                txn_token=token,
                order_id=order_id,
                amount_paise=amount_paise,
                result_code=answer.code,
                checkout_url=self.checkout_url(order_id),
            )

        query = {"mid": self._mid, "orderId": order_id}
        return await self._call(Endpoint.INITIATE, order_id, body, interpret, query)

    async def status(self, order_id: str) -> TxnStatus:
        """Where the payment of ``order_id`` stands, from Transaction Status."""
        _check_reference("order_id", order_id)
        body = {"mid": self._mid, "orderId": order_id}

        def interpret(answer: _Answer) -> TxnStatus:
            state = _state(answer)
            _require_signed(answer)
            self._require_about(answer, order_id)
            body = answer.body
            return TxnStatus(
                state=state,
                order_id=order_id,
                mid=_optional_str(body, "mid"),
                amount_paise=_optional_amount(body, "txnAmount"),
                currency=_optional_str(body, "currency"),
                txn_id=_optional_str(body, "txnId"),
                bank_txn_id=_optional_str(body, "bankTxnId"),
                result_code=answer.code,
                result_msg=answer.message,
                payment_mode=_optional_str(body, "paymentMode"),
                txn_date=_optional_str(body, "txnDate"),
                refund_amount_paise=_optional_amount(body, "refundAmt"),
            )

        return await self._call(Endpoint.STATUS, order_id, body, interpret)

    async def refund(
        self, order_id: str, txn_id: str, refund_id: str, amount_paise: int
    ) -> RefundResult:
        """Ask Paytm to refund ``amount_paise`` of the payment ``txn_id`` of
        ``order_id``; ``refund_id`` (Paytm's refId) is ours and unique per refund. The
        answer is usually "pending": follow it with :meth:`refund_status`."""
        _check_reference("order_id", order_id)
        _check_reference("refund_id", refund_id)
        if not txn_id:
            raise ValueError("txn_id is required")
        body = {
            "mid": self._mid,
            "txnType": "REFUND",
            "orderId": order_id,
            "txnId": txn_id,
            "refId": refund_id,
            "refundAmount": wire.format_amount(amount_paise),
        }

        def interpret(answer: _Answer) -> RefundResult:
            # A refund Paytm did not take (TXN_FAILURE here) is a refusal: none exists.
            _raise_unless(answer, wire.TXN_SUCCESS, wire.PENDING)
            return self._refund_result(answer, order_id, refund_id)

        return await self._call(Endpoint.REFUND, order_id, body, interpret)

    async def refund_status(self, order_id: str, refund_id: str) -> RefundResult:
        """Where the refund ``refund_id`` of ``order_id`` stands."""
        _check_reference("order_id", order_id)
        _check_reference("refund_id", refund_id)
        body = {"mid": self._mid, "orderId": order_id, "refId": refund_id}

        def interpret(answer: _Answer) -> RefundResult:
            return self._refund_result(answer, order_id, refund_id)

        return await self._call(Endpoint.REFUND_STATUS, order_id, body, interpret)

    def checkout_url(self, order_id: str) -> str:
        """Paytm's checkout page for ``order_id``: a browser form POSTs ``mid``,
        ``orderId`` and ``txnToken`` there (the non-JS integration of JS Checkout)."""
        query = urlencode({"mid": self._mid, "orderId": order_id})
        return f"{self._base_url}{Endpoint.CHECKOUT.path}?{query}"

    # One exchange.

    async def _call(
        self,
        endpoint: Endpoint,
        order_id: str,
        body: dict[str, Any],
        interpret: Callable[[_Answer], T],
        query: dict[str, str] | None = None,
    ) -> T:
        body_bytes = _encode(body)
        signature = generate_signature(body_bytes, self._key)
        # The signed bytes themselves go on the wire: no second serialization.
        content = b'{"body":' + body_bytes + b',"head":{"signature":' + _encode(signature) + b"}}"
        started = self._monotonic()
        http_status: int | None = None
        document: dict[str, Any] | None = None
        try:
            response = await self._send(endpoint, content, query)
            http_status = response.status_code
            answer = self._read(response)
            document = {"head": answer.head, "body": answer.body}
            result = interpret(answer)
        except GatewayError as exc:
            self._report(endpoint, order_id, body, started, http_status, document, exc)
            raise
        self._report(endpoint, order_id, body, started, http_status, document, None)
        return result

    async def _send(
        self, endpoint: Endpoint, content: bytes, query: dict[str, str] | None
    ) -> httpx.Response:
        try:
            return await self._http.post(
                endpoint.path,
                content=content,
                params=query,
                headers={"Content-Type": "application/json"},
            )
        except httpx.TimeoutException as exc:
            raise GatewayUnavailable(f"{endpoint}: no answer within {self._timeout} s") from exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise GatewayUnavailable(f"{endpoint}: {type(exc).__name__}: {exc}") from exc

    def _read(self, response: httpx.Response) -> _Answer:
        if response.status_code >= 500:
            raise GatewayUnavailable(f"HTTP {response.status_code}")
        try:
            text = response.content.decode("utf-8")
            spans = top_level_spans(text)
            body_start, body_end = spans["body"]
            body = _json_object(text[body_start:body_end])
            head = _json_object(text[slice(*spans["head"])]) if "head" in spans else {}
        except (ValueError, KeyError) as exc:
            raise GatewayUnavailable(
                f"HTTP {response.status_code}: not a Paytm JSON answer"
            ) from exc
        signature = head.get("signature")
        signed = signature is not None
        body_bytes = text[body_start:body_end].encode("utf-8")
        if signed and not verify_signature(body_bytes, self._key, signature):
            raise BadGatewaySignature("the answer's signature does not verify")
        info = body.get("resultInfo")
        if not isinstance(info, dict):
            raise GatewayUnavailable("an answer without resultInfo")
        status, code, message = (info.get(k) for k in ("resultStatus", "resultCode", "resultMsg"))
        if not isinstance(status, str) or not isinstance(code, str):
            raise GatewayUnavailable("an answer without resultStatus or resultCode")
        return _Answer(
            head=head,
            body=body,
            signed=signed,
            status=status,
            code=code,
            message=message if isinstance(message, str) else "",
        )

    def _refund_result(self, answer: _Answer, order_id: str, refund_id: str) -> RefundResult:
        state = _state(answer)
        _require_signed(answer)
        self._require_about(answer, order_id)
        if answer.body.get("refId", refund_id) != refund_id:
            raise BadGatewaySignature(f"a signed answer about another refund than {refund_id}")
        body = answer.body
        return RefundResult(
            state=state,
            order_id=order_id,
            refund_id=refund_id,
            paytm_refund_id=_optional_str(body, "refundId"),
            txn_id=_optional_str(body, "txnId"),
            refund_amount_paise=_optional_amount(body, "refundAmount"),
            result_code=answer.code,
            result_msg=answer.message,
        )

    def _require_about(self, answer: _Answer, order_id: str) -> None:
        """A signed answer about another order (or merchant) is a replay."""
        said = answer.body.get("orderId")
        if not isinstance(said, str):
            raise GatewayUnavailable("a status answer without orderId")
        if said != order_id or answer.body.get("mid", self._mid) != self._mid:
            raise BadGatewaySignature(f"a signed answer about another order than {order_id}")

    def _report(
        self,
        endpoint: Endpoint,
        order_id: str,
        body: dict[str, Any],
        started: float,
        http_status: int | None,
        document: dict[str, Any] | None,
        error: GatewayError | None,
    ) -> None:
        if self._on_call is None:
            return
        self._on_call(
            GatewayCall(
                endpoint=endpoint,
                http_status=http_status,
                latency_ms=(self._monotonic() - started) * 1000.0,
                request={"body": _redacted(body), "head": {"signature": REDACTED}},
                response=None if document is None else _redacted(document),
                error=None if error is None else f"{type(error).__name__}: {error}",
                order_id=order_id,
            )
        )


def _state(answer: _Answer) -> Outcome:
    """The payment or refund state an answer of a status API reports, or the refusal."""
    if answer.status == wire.RESULT_UNKNOWN:
        raise GatewayUnavailable(f"Paytm system error ({answer.code}): {answer.message}")
    state = wire.OUTCOME_OF.get(answer.status)
    if state is None or answer.code in wire.LOOKUP_ERRORS:
        raise GatewayRefused(answer.code, answer.message)
    return state


def _raise_unless(answer: _Answer, *accepted: str) -> None:
    if answer.status == wire.RESULT_UNKNOWN:
        # "U" is a system error on Paytm's side, not a verdict on the request.
        raise GatewayUnavailable(f"Paytm system error ({answer.code}): {answer.message}")
    if answer.status not in accepted:
        raise GatewayRefused(answer.code, answer.message)


def _require_signed(answer: _Answer) -> None:
    if not answer.signed:
        raise BadGatewaySignature("an unsigned answer claims success")


def _check_reference(name: str, value: str) -> None:
    if not isinstance(value, str) or wire.REFERENCE.fullmatch(value) is None:
        raise ValueError(f"{name} is 1-50 letters, digits or @ - _ . ; got {value!r}")


def _encode(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return value


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    """A string field; None when Paytm leaves it out, null or empty."""
    value = body.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    raise GatewayUnavailable(f"{key} is not a string: {value!r}")


def _optional_amount(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    try:
        return wire.parse_amount(value)
    except wire.MalformedAmount as exc:
        raise GatewayUnavailable(f"{key}: {exc}") from exc


def _redacted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: REDACTED if k in _SECRET_KEYS else _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value
