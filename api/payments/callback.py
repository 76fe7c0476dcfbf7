"""The gateway's callback and webhook on the HTTP port: ``POST /payments/paytm/callback``
(the payer's browser, sent back by the gateway) and ``POST /payments/paytm/webhook``
(the gateway, server to server), both with Paytm's form fields.

Before anything else, the checksum of the posted fields is verified (constant time): a
bad or missing one gets 400, changes nothing and is a security event. A valid post only
makes the server ask the gateway's Transaction Status API about the order, through the
one settlement path (:meth:`PaymentService.settle`): what the post says is never taken
for the outcome. A valid duplicate gets 200 and changes nothing. The browser gets a
small page saying what happened; the webhook gets ``OK``.
"""

from __future__ import annotations

import html
import ipaddress
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal
from urllib.parse import parse_qsl

from aiohttp import web

from api.payments.gateway import ForgedAnswer, GatewayDown, GatewayRefusal
from api.payments.paytm.wire import OUTCOME_OF, MalformedAmount, parse_amount
from api.payments.rules import Status
from api.payments.service import PaymentService, Source
from storage.payments import PaymentRow

log = logging.getLogger("rtc.payments")

CALLBACK_PATH = "/payments/paytm/callback"
WEBHOOK_PATH = "/payments/paytm/webhook"

# A post of Paytm's fields is well under a kilobyte; anything far bigger is not one.
_MAX_BODY = 16 * 1024
_MAX_FIELDS = 64

_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}

# What the payer reads, by how the order stands (title, text).
_PAGES: dict[str, tuple[str, str]] = {
    "paid": ("Payment received", "Thank you. Your payment went through; return to the app."),
    "failed": ("Payment failed", "Your payment did not go through and nothing was charged."),
    "pending": (
        "Payment being confirmed",
        "The payment is not confirmed yet. The app will show it once it is; you can "
        "return to it now.",
    ),
    "review": (
        "Payment under review",
        "Something about this payment needs a look from our team. We will contact you.",
    ),
    "unknown": ("Payment not found", "We do not know this payment."),
    "refused": ("Payment not accepted", "This request could not be verified."),
}


# Security events written per client address per minute at most: a flood of forged
# posts is counted (metrics, log) but cannot fill the table.
_EVENTS_PER_MINUTE = 30


class PaymentCallbacks:
    def __init__(
        self,
        service: PaymentService,
        networks: tuple[str, ...] = (),
        *,
        client_address: Callable[[str | None, Sequence[str]], str | None] = lambda p, f: p,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._service = service
        # The poster's address behind server.trusted_proxies (Kit.client_address).
        self._client_address = client_address
        self._networks = [ipaddress.ip_network(n, strict=False) for n in networks]
        self._monotonic = monotonic
        self._written: dict[str | None, tuple[float, int]] = {}  # ip -> (minute, count)

    async def _security_event(
        self, kind: str, order_id: str | None, ip: str | None, detail: dict[str, Any]
    ) -> None:
        minute = self._monotonic() // 60
        seen_minute, count = self._written.get(ip, (minute, 0))
        if seen_minute != minute:
            count = 0
        if len(self._written) > 10_000:
            self._written = {k: v for k, v in self._written.items() if v[0] == minute}
        self._written[ip] = (minute, count + 1)
        if count >= _EVENTS_PER_MINUTE:
            self._service.count_security_event(kind, first=count == _EVENTS_PER_MINUTE)
            return
        await self._service.security_event(kind, order_id, ip, detail)

    async def callback(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "callback")

    async def webhook(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "webhook")

    async def _handle(
        self, request: web.Request, source: Literal["callback", "webhook"]
    ) -> web.StreamResponse:
        ip = self._client_address(request.remote, request.headers.getall("X-Forwarded-For", []))
        if self._networks and not _within(ip, self._networks):
            await self._security_event("network_refused", None, ip, {"source": source})
            return _answer(source, "refused", 403)
        if request.content_length is not None and request.content_length > _MAX_BODY:
            return _answer(source, "refused", 413)
        try:
            raw = await request.content.read(_MAX_BODY + 1)
        except (ConnectionError, ValueError):
            return _answer(source, "refused", 400)
        if len(raw) > _MAX_BODY:
            return _answer(source, "refused", 413)
        fields = _form(raw)
        gateway = self._service.gateway
        if fields is None or gateway is None or not gateway.verify_callback(fields):
            order = fields.get("ORDERID") if fields else None
            await self._security_event(
                "bad_checksum", order, ip, {"source": source, "fields": sorted(fields or {})}
            )
            return _answer(source, "refused", 400)
        order_id = fields.get("ORDERID", "")
        payment = await self._service.find(order_id)
        if payment is None:
            await self._security_event("unknown_order", order_id, ip, {"source": source})
            return _answer(source, "unknown", 404)
        try:
            settled = await self._service.settle(order_id, source_of(source), ip=ip)
        except GatewayDown:
            # The reconciler asks again; the payer is told it is being confirmed.
            return _answer(source, "pending", 200)
        except (GatewayRefusal, ForgedAnswer):
            return _answer(source, "review", 502)
        await self._compare(fields, settled.payment, source, ip)
        return _answer(source, _page_of(settled.payment), 200)

    async def _compare(
        self, fields: dict[str, str], payment: PaymentRow, source: str, ip: str | None
    ) -> None:
        """A post whose claims the gateway's own answer contradicts is a security event
        (a forged post with a stolen key, or a replay of another order's)."""
        claimed = OUTCOME_OF.get(fields.get("STATUS", ""))
        try:
            amount = parse_amount(fields.get("TXNAMOUNT", ""))
        except MalformedAmount:
            amount = None
        paid = payment.status in (Status.PAID, Status.REFUND_PENDING, Status.REFUNDED)
        disagrees = (claimed == "success" and not paid) or (
            amount is not None and amount != payment.amount_paise
        )
        if disagrees:
            await self._security_event(
                "callback_disagrees",
                payment.order_id,
                ip,
                {
                    "source": source,
                    "claimed": fields.get("STATUS"),
                    "claimedAmount": fields.get("TXNAMOUNT"),
                    "status": payment.status,
                },
            )


def source_of(source: Literal["callback", "webhook"]) -> Source:
    return source


def _form(raw: bytes) -> dict[str, str] | None:
    """The posted form's fields (the last of a repeated name), or None if it is not a
    form of at most _MAX_FIELDS plain fields."""
    try:
        pairs = parse_qsl(
            raw.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=_MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        return None
    return dict(pairs)


def _within(ip: str | None, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    if ip is None:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in network for network in networks)


def _page_of(payment: PaymentRow) -> str:
    status = Status(payment.status)
    if status in (Status.PAID, Status.REFUND_PENDING, Status.REFUNDED):
        return "paid"
    if status in (Status.FAILED, Status.EXPIRED):
        return "failed"
    if status is Status.REVIEW:
        return "review"
    return "pending"


def _answer(source: str, page: str, status: int) -> web.Response:
    if source == "webhook":
        return web.Response(text="OK" if status == 200 else page, status=status, headers=_HEADERS)
    title, text = _PAGES[page]
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head><body><main>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>"
        "</main></body></html>"
    )
    return web.Response(
        text=body, status=status, content_type="text/html", charset="utf-8", headers=_HEADERS
    )
