"""A local Paytm gateway: the same endpoints, fields, checksums and callbacks as Paytm's
staging gateway, for a developer's browser and for tests.

Endpoints (under an optional ``prefix``), as documented by Paytm (links in :mod:`.wire`):

==========================================================  ============================
``POST /theia/api/v1/initiateTransaction?mid=&orderId=``    opens an order, answers a
                                                            ``txnToken``
``GET|POST /theia/api/v1/showPaymentPage?mid=&orderId=``    the checkout page (form field
                                                            or query ``txnToken``)
``POST /v3/order/status``                                   Transaction Status
``POST /refund/apply``, ``POST /v2/refund/status``          Refund, Refund Status
==========================================================  ============================

and the simulator's own: ``POST /simulator/choose`` (the checkout page's buttons),
``GET /simulator/autosubmit.js`` and ``GET /simulator/checkout.css``.

JSON requests must carry ``head.signature``, Paytm's checksum over the exact ``body``
text (found with :mod:`.jsonspan`); answers are signed the same way with the merchant's
key. Refusals made before the merchant is authenticated (unknown MID, bad checksum,
unreadable JSON) go out unsigned, as staging's do. The rules about orders and refunds
are :class:`~.ledger.Ledger`'s.

The checkout page shows merchant, order and amount with three buttons, "Pay", "Fail"
and "Leave pending". A choice settles the order and answers the browser with a page
whose form POSTs Paytm's callback fields (CURRENCY, GATEWAYNAME, RESPMSG, BANKNAME,
PAYMENTMODE, MID, RESPCODE, TXNID, TXNAMOUNT, ORDERID, STATUS, BANKTXNID, TXNDATE and
their CHECKSUMHASH) to the order's callbackUrl; a small script served here submits it,
and a "Return to merchant" button does without script. If the MID has a webhook URL
(:meth:`PaytmSimulator.set_webhook`), the same fields are also POSTed there, server to
server, before the browser gets its page; each attempt is recorded, none retried.

Test controls, plain methods:

``await complete(order_id, outcome="success")``
    what the checkout buttons do, without a browser ("success", "failure", "pending");
    returns the signed callback fields, and delivers the webhook if one is set.
``callback_fields(order_id, *, amount_paise=None, status=None)``
    the exact, signed form fields Paytm would post now; ``amount_paise`` and ``status``
    forge a wrong TXNAMOUNT or a lying STATUS (still correctly signed).
``await send_callback(order_id, url=None, *, amount_paise=None, status=None) -> int``
    POST those fields to ``url`` (default: the order's callbackUrl); the HTTP status.
``fail_next(endpoint, status=503, times=1, delay=0.0)``
    the next ``times`` calls of ``endpoint`` (a :class:`~.wire.Endpoint`) answer HTTP
    ``status`` after ``delay`` seconds; ``status="timeout"`` holds the request
    ``delay`` seconds (default: until :meth:`~PaytmSimulator.close`) and then answers
    normally; ``status="tamper"`` answers normally with the body changed after signing.
``report_amount(order_id, paise)``
    Transaction Status reports this amount instead of the order's.
``pending_then(order_id, outcome, after_calls=1)``
    Transaction Status says PENDING ``after_calls`` times, then the order becomes
    ``outcome``.
``set_webhook(mid, url)``, ``webhook_attempts``
    the payment webhook and what was sent to it.
``calls``, ``order(order_id)``
    a count of calls per :class:`~.wire.Endpoint`; an order's record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
from aiohttp import web

from . import pages, wire
from .checksum import CHECKSUM_FIELD, generate_signature, verify_signature
from .jsonspan import top_level_spans
from .ledger import (
    FINAL,
    Clock,
    Ledger,
    Order,
    ResultInfo,
    SystemClock,
    TransitionRefused,
)
from .wire import Code, Endpoint, Outcome

__all__ = ["Fault", "PaytmSimulator", "WebhookAttempt"]

CHOOSE_PATH = "/simulator/choose"
SCRIPT_PATH = "/simulator/autosubmit.js"
STYLESHEET_PATH = "/simulator/checkout.css"
_OUTCOMES: tuple[Outcome, ...] = ("success", "failure", "pending")
# Paytm's webhook gives a merchant 10 s to answer.
WEBHOOK_TIMEOUT = 10.0

FaultStatus = int | Literal["timeout", "tamper"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Fault:
    """A scripted misbehaviour of one call (see :meth:`PaytmSimulator.fail_next`)."""

    status: FaultStatus
    delay: float | None


@dataclass(frozen=True)
class WebhookAttempt:
    """One POST of the payment webhook: ``http_status`` None if no answer came."""

    url: str
    fields: dict[str, str]
    http_status: int | None
    error: str | None


@dataclass(frozen=True)
class _Request:
    """An authenticated JSON request: the merchant and the body it signed."""

    mid: str
    key: str
    body: dict[str, Any]


class PaytmSimulator:
    """A Paytm gateway for ``merchants`` (MID → merchant key).

    Embed it in an aiohttp app with :meth:`add_routes`, or run it alone with
    :meth:`start` (then :attr:`url` is its base URL); :meth:`close` either way.
    ``callback_client`` sends webhooks and :meth:`send_callback` posts (default: one of
    its own); ``clock`` and ``rng`` make its times and ids reproducible.
    """

    def __init__(
        self,
        merchants: Mapping[str, str],
        *,
        clock: Clock | None = None,
        callback_client: httpx.AsyncClient | None = None,
        rng: random.Random | None = None,
        refund_settles_after: int = 1,
        webhook_timeout: float = WEBHOOK_TIMEOUT,
    ) -> None:
        for key in merchants.values():
            generate_signature(b"", key)  # raises ValueError for a malformed key
        self._merchants = dict(merchants)
        self._clock = clock or SystemClock()
        self.ledger = Ledger(
            clock=self._clock,
            rng=rng or random.SystemRandom(),
            refund_settles_after=refund_settles_after,
        )
        self._client = callback_client
        self._owns_client = callback_client is None
        self._webhook_timeout = webhook_timeout
        self._webhooks: dict[str, str] = {}
        self._faults: dict[Endpoint, deque[Fault]] = {}
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self.calls: Counter[Endpoint] = Counter()
        self.webhook_attempts: list[WebhookAttempt] = []

    # Serving.

    def routes(self, prefix: str = "") -> list[tuple[str, str, Handler]]:
        """The gateway's routes under ``prefix`` (e.g. "/paytm"): (method, path, handler)."""
        prefix = prefix.rstrip("/")

        def api(endpoint: Endpoint) -> Handler:
            async def handle(request: web.Request) -> web.StreamResponse:
                return await self._api(request, endpoint)

            return handle

        async def checkout(request: web.Request) -> web.StreamResponse:
            return await self._checkout(request, prefix)

        async def choose(request: web.Request) -> web.StreamResponse:
            return await self._choose(request, prefix)

        async def script(request: web.Request) -> web.StreamResponse:
            return _asset(pages.AUTOSUBMIT_JS, "application/javascript")

        async def stylesheet(request: web.Request) -> web.StreamResponse:
            return _asset(pages.STYLESHEET, "text/css")

        apis = (Endpoint.INITIATE, Endpoint.STATUS, Endpoint.REFUND, Endpoint.REFUND_STATUS)
        return [
            *(("POST", prefix + endpoint.path, api(endpoint)) for endpoint in apis),
            ("GET", prefix + Endpoint.CHECKOUT.path, checkout),
            ("POST", prefix + Endpoint.CHECKOUT.path, checkout),
            ("POST", prefix + CHOOSE_PATH, choose),
            ("GET", prefix + SCRIPT_PATH, script),
            ("GET", prefix + STYLESHEET_PATH, stylesheet),
        ]

    def add_routes(self, app: web.Application, prefix: str = "") -> None:
        """Serve the gateway from ``app`` under ``prefix``."""
        for method, path, handler in self.routes(prefix):
            app.router.add_route(method, path, handler)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> PaytmSimulator:
        """Serve on ``host:port`` (0: any free port) until :meth:`close`."""
        app = web.Application()
        self.add_routes(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound_port = runner.addresses[0][1]
        self._url = f"http://{host}:{bound_port}"
        return self

    @property
    def url(self) -> str:
        """The base URL of a simulator :meth:`start` ed on its own."""
        if self._url is None:
            raise RuntimeError("the simulator is not started")
        return self._url

    async def close(self) -> None:
        """Release held requests, stop serving, close the client the simulator owns."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    # Test controls.

    def set_webhook(self, mid: str, url: str | None) -> None:
        """POST the payment webhook of ``mid`` to ``url`` (None: none)."""
        if url is None:
            self._webhooks.pop(mid, None)
        else:
            self._webhooks[mid] = url

    def order(self, order_id: str) -> Order:
        """The record of ``order_id`` (``KeyError`` if never initiated)."""
        return self.ledger.orders[order_id]

    async def complete(self, order_id: str, outcome: Outcome = "success") -> dict[str, str]:
        """Settle ``order_id`` as the checkout page's buttons do; deliver the webhook if
        one is set; return the signed callback fields."""
        order = self.ledger.complete(order_id, outcome)
        fields = self.callback_fields(order_id)
        await self._deliver_webhook(order.mid, fields)
        return fields

    def callback_fields(
        self,
        order_id: str,
        *,
        amount_paise: int | None = None,
        status: Outcome | None = None,
    ) -> dict[str, str]:
        """The form fields Paytm would post for ``order_id`` now, CHECKSUMHASH included;
        ``amount_paise`` and ``status`` forge TXNAMOUNT and STATUS (still signed)."""
        order = self.order(order_id)
        fields = self.ledger.callback_fields(order, amount_paise=amount_paise, status=status)
        fields[CHECKSUM_FIELD] = generate_signature(fields, self._merchants[order.mid])
        return fields

    async def send_callback(
        self,
        order_id: str,
        url: str | None = None,
        *,
        amount_paise: int | None = None,
        status: Outcome | None = None,
    ) -> int:
        """POST the callback fields of ``order_id`` to ``url`` (default: the order's
        callbackUrl) as the customer's browser would; return the HTTP status."""
        fields = self.callback_fields(order_id, amount_paise=amount_paise, status=status)
        response = await self._http().post(url or self.order(order_id).callback_url, data=fields)
        return response.status_code

    def fail_next(
        self,
        endpoint: Endpoint,
        status: FaultStatus = 503,
        times: int = 1,
        delay: float | None = None,
    ) -> None:
        """Script the next ``times`` calls of ``endpoint``: see the module docstring."""
        if delay is None and status != "timeout":
            delay = 0.0
        queue = self._faults.setdefault(endpoint, deque())
        queue.extend(Fault(status, delay) for _ in range(times))

    def report_amount(self, order_id: str, paise: int) -> None:
        """Transaction Status reports ``paise`` for ``order_id`` from now on."""
        wire.format_amount(paise)  # raises ValueError unless a positive int
        self.order(order_id).reported_amount_paise = paise

    def pending_then(self, order_id: str, outcome: Outcome, after_calls: int = 1) -> None:
        """Transaction Status says PENDING ``after_calls`` times, then ``outcome``."""
        order = self.order(order_id)
        if order.state in FINAL:
            raise TransitionRefused(f"order {order_id} is already {order.state}")
        order.pending_polls = after_calls
        order.pending_outcome = outcome

    # The JSON APIs.

    async def _api(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        self.calls[endpoint] += 1
        fault = self._faults[endpoint].popleft() if self._faults.get(endpoint) else None
        raw = await request.read()  # before holding: a client that gave up sends no more
        if fault is not None:
            await self._hold(fault.delay)
            if isinstance(fault.status, int):
                return web.Response(status=fault.status, text="Service Unavailable")
        authenticated = self._authenticate(endpoint, raw, request.query)
        if isinstance(authenticated, ResultInfo):
            return _json_response(_unsigned(authenticated))
        mid, key, body = authenticated.mid, authenticated.key, authenticated.body
        if endpoint is Endpoint.INITIATE:
            result, answer = self.ledger.initiate(mid, body)
        elif endpoint is Endpoint.STATUS:
            result, answer = self.ledger.status(mid, body)
        elif endpoint is Endpoint.REFUND:
            result, answer = self.ledger.refund(mid, body)
        else:
            result, answer = self.ledger.refund_status(mid, body)
        document = self._signed({"resultInfo": result.as_wire(), **answer}, key)
        if fault is not None and fault.status == "tamper":
            # A byte changed in transit: the signature no longer matches the body.
            document = document.replace(b'"resultInfo":{', b'"resultInfo":{"x":1,', 1)
        return _json_response(document)

    def _authenticate(
        self, endpoint: Endpoint, raw: bytes, query: Mapping[str, str]
    ) -> _Request | ResultInfo:
        """The merchant and body of a request, or the refusal for it."""
        bad_request = ResultInfo(
            wire.RESULT_FAILURE, Code.REQUEST_INVALID, "Request parameters are not valid"
        )
        try:
            text = raw.decode("utf-8")
            spans = top_level_spans(text)
            body_start, body_end = spans["body"]
            body = json.loads(text[body_start:body_end])
            head = json.loads(text[slice(*spans["head"])])
        except (ValueError, KeyError):
            return bad_request
        if not isinstance(body, dict) or not isinstance(head, dict):
            return bad_request
        mid = body.get("mid")
        key = self._merchants.get(mid) if isinstance(mid, str) else None
        initiate = endpoint is Endpoint.INITIATE
        if mid is None or key is None:
            code = Code.BAD_MID if initiate else Code.STATUS_BAD_MID
            return ResultInfo(_refusal_status(endpoint), code, "Mid is invalid")
        signed = text[body_start:body_end].encode("utf-8")
        if not verify_signature(signed, key, head.get("signature")):
            code = Code.BAD_CHECKSUM if initiate else Code.STATUS_BAD_CHECKSUM
            return ResultInfo(_refusal_status(endpoint), code, "Checksum provided is invalid")
        if initiate and query.get("mid", mid) != mid:
            return ResultInfo(
                wire.RESULT_FAILURE,
                Code.MID_MISMATCH,
                "Mid in the query param doesn't match with the Mid send in the request",
            )
        if initiate and query.get("orderId", body.get("orderId")) != body.get("orderId"):
            return ResultInfo(
                wire.RESULT_FAILURE,
                Code.ORDER_MISMATCH,
                "OrderId in the query param doesn't match with the OrderId send in the request",
            )
        return _Request(mid=mid, key=key, body=body)

    def _signed(self, body: dict[str, Any], key: str) -> bytes:
        body_bytes = _encode(body)
        head = {
            "responseTimestamp": str(int(self._clock.now().timestamp() * 1000)),
            "version": "v1",
            "signature": generate_signature(body_bytes, key),
        }
        # Paytm writes head first; the client must find body wherever it is.
        return b'{"head":' + _encode(head) + b',"body":' + body_bytes + b"}"

    async def _hold(self, seconds: float | None) -> None:
        """Sleep ``seconds`` (None: until close), ended early by :meth:`close`."""
        if seconds == 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)

    # The checkout page.

    async def _checkout(self, request: web.Request, prefix: str) -> web.StreamResponse:
        self.calls[Endpoint.CHECKOUT] += 1
        found = await self._checkout_order(request)
        if isinstance(found, ResultInfo):
            return self._error_page(found, prefix)
        if found.state in FINAL:
            # Back to a settled payment: Paytm only offers the way back to the merchant.
            return self._callback_page(found, self.callback_fields(found.order_id), prefix)
        choose_url = f"{prefix}{CHOOSE_PATH}?" + _query(found)
        html = pages.checkout_page(
            mid=found.mid,
            order_id=found.order_id,
            amount=wire.format_amount(found.amount_paise),
            txn_token=found.txn_token,
            choose_url=choose_url,
            stylesheet_url=prefix + STYLESHEET_PATH,
        )
        return _html_response(html)

    async def _choose(self, request: web.Request, prefix: str) -> web.StreamResponse:
        found = await self._checkout_order(request)
        if isinstance(found, ResultInfo):
            return self._error_page(found, prefix)
        form = await request.post()
        outcome = next((o for o in _OUTCOMES if o == form.get("outcome")), None)
        if outcome is None:
            invalid = ResultInfo(
                wire.RESULT_FAILURE, Code.REQUEST_INVALID, "Choose Pay, Fail or Leave pending"
            )
            return self._error_page(invalid, prefix)
        settled = found.state in FINAL
        if not settled:
            self.ledger.complete(found.order_id, outcome)
        fields = self.callback_fields(found.order_id)
        if not settled:
            await self._deliver_webhook(found.mid, fields)
        return self._callback_page(found, fields, prefix)

    async def _checkout_order(self, request: web.Request) -> Order | ResultInfo:
        form = await request.post() if request.method == "POST" else None
        token = form.get("txnToken") if form is not None else None
        if not isinstance(token, str):
            token = request.query.get("txnToken", "")
        return self.ledger.checkout(
            request.query.get("mid", ""), request.query.get("orderId", ""), token
        )

    def _callback_page(
        self, order: Order, fields: dict[str, str], prefix: str
    ) -> web.StreamResponse:
        html = pages.callback_page(
            callback_url=order.callback_url,
            fields=fields,
            script_url=prefix + SCRIPT_PATH,
            stylesheet_url=prefix + STYLESHEET_PATH,
        )
        return _html_response(html)

    def _error_page(self, result: ResultInfo, prefix: str) -> web.StreamResponse:
        html = pages.error_page(
            code=result.code, message=result.message, stylesheet_url=prefix + STYLESHEET_PATH
        )
        return _html_response(html, status=400)

    # Server to server.

    async def _deliver_webhook(self, mid: str, fields: dict[str, str]) -> None:
        url = self._webhooks.get(mid)
        if url is None:
            return
        try:
            response = await self._http().post(url, data=fields, timeout=self._webhook_timeout)
        except httpx.HTTPError as exc:
            attempt = WebhookAttempt(url, dict(fields), None, f"{type(exc).__name__}: {exc}")
        else:
            attempt = WebhookAttempt(url, dict(fields), response.status_code, None)
        self.webhook_attempts.append(attempt)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False)
        return self._client


def _refusal_status(endpoint: Endpoint) -> str:
    # Initiate Transaction refuses with "F"; the status and refund APIs with TXN_FAILURE.
    return wire.RESULT_FAILURE if endpoint is Endpoint.INITIATE else wire.TXN_FAILURE


def _unsigned(result: ResultInfo) -> bytes:
    return b'{"head":{"version":"v1"},"body":' + _encode({"resultInfo": result.as_wire()}) + b"}"


def _encode(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _query(order: Order) -> str:
    return urlencode({"mid": order.mid, "orderId": order.order_id})


def _json_response(document: bytes) -> web.Response:
    return web.Response(body=document, content_type="application/json")


def _html_response(html: str, status: int = 200) -> web.Response:
    response = web.Response(text=html, content_type="text/html", status=status)
    response.headers["Content-Security-Policy"] = pages.CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "no-store"
    return response


def _asset(text: str, content_type: str) -> web.Response:
    return web.Response(text=text, content_type=content_type)
