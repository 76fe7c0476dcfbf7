"""A local MSG91: the v5 "Send SMS" (flow) API, ``POST /api/v5/flow/``.

It checks the ``authkey`` header, validates the request as MSG91 documents it (a known
template, a known sender id, ``mobiles`` in international format without ``+``, every
variable of the template given), fills the template in and keeps the SMS in
:attr:`FakeMsg91.inbox`, so a test reads the code the way a phone would. The next
requests' answers can be scripted (:attr:`FakeMsg91.script`): a status, a body, a delay.

Documented answers: https://docs.msg91.com/sms/send-sms and
https://control.msg91.com/apidoc/textsms/send-sms-flow.php (``{"type": "success",
"message": <request id>}``, ``{"type": "error", "message": ...}``); error codes from
MSG91's list (101 missing mobile, 202 invalid mobile number, 203 invalid sender id,
401 "AuthenticationFailure"). The texts of errors MSG91 does not document are this
fake's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes import serve_locally

AUTHKEY = "412345AbCdEfGhIjKlMnOp1a"
TEMPLATE_ID = "6650a1b2d6fc05123456789a"
SENDER_ID = "BLDXPT"
TEMPLATE_TEXT = (
    "##otp## is your BuildXpert login code. It expires in ##minutes## minutes. "
    "Do not share it. - BuildXpert"
)

# "Mobile number should be in International format. Example: 919898989898"
_MOBILE = re.compile(r"[1-9][0-9]{7,14}")
_VARIABLE = re.compile(r"##([A-Za-z0-9_]+)##")


@dataclass
class Reply:
    """A scripted answer. ``delay``: seconds before answering; ``math.inf``: none before
    the server closes (the client times out)."""

    status: int
    body: dict[str, Any] | bytes = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def msg91_error(status: int, message: str, code: str | None = None) -> Reply:
    body: dict[str, Any] = {"type": "error", "message": message}
    if code is not None:
        body["code"] = code
    return Reply(status, body)


def hang() -> Reply:
    return Reply(200, {"type": "success", "message": "never sent"}, delay=math.inf)


@dataclass(frozen=True)
class Sms:
    """One SMS MSG91 accepted, as the phone would show it."""

    mobile: str  # as MSG91 got it: "919876543210"
    template_id: str
    sender: str
    variables: dict[str, str]
    text: str
    request_id: str


class FakeMsg91:
    def __init__(
        self,
        *,
        authkey: str = AUTHKEY,
        templates: dict[str, str] | None = None,
        sender_ids: tuple[str, ...] = (SENDER_ID,),
    ) -> None:
        self.authkey = authkey
        self.templates = templates if templates is not None else {TEMPLATE_ID: TEMPLATE_TEXT}
        self.sender_ids = sender_ids
        self.inbox: list[Sms] = []
        self.requests = 0  # every POST to the flow API
        self.script: list[Reply] = []  # answers to the next requests, whatever they ask
        self.invalid_numbers: set[str] = set()  # well-formed, but no such subscriber
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> FakeMsg91:
        app = web.Application()
        app.router.add_post("/api/v5/flow/", self._flow)
        app.router.add_post("/api/v5/flow", self._flow)
        self._runner, self.url = await serve_locally(app)
        return self

    async def close(self) -> None:
        self._closing.set()  # releases the requests held by a delay
        if self._runner is not None:
            await self._runner.cleanup()

    def to(self, mobile: str) -> list[Sms]:
        return [sms for sms in self.inbox if sms.mobile == mobile]

    async def _flow(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if self.script:
            return await self._scripted(self.script.pop(0))
        if request.headers.get("authkey") != self.authkey:
            return _answer(msg91_error(401, "AuthenticationFailure", "401"))
        try:
            payload = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _answer(msg91_error(400, "Invalid JSON body"))
        if not isinstance(payload, dict):
            return _answer(msg91_error(400, "Invalid JSON body"))
        refusal = self._check(payload)
        if refusal is not None:
            return _answer(refusal)
        request_id = secrets.token_hex(12)  # MSG91's ids: 24 hex digits
        template = self.templates[payload["template_id"]]
        for recipient in payload["recipients"]:
            variables = {k: str(v) for k, v in recipient.items() if k != "mobiles"}
            self.inbox.append(
                Sms(
                    mobile=recipient["mobiles"],
                    template_id=payload["template_id"],
                    sender=payload.get("sender", self.sender_ids[0]),
                    variables=variables,
                    text=_fill(template, variables),
                    request_id=request_id,
                )
            )
        return web.json_response({"type": "success", "message": request_id})

    def _check(self, payload: dict[str, Any]) -> Reply | None:
        template = self.templates.get(payload.get("template_id"))  # type: ignore[arg-type]
        if template is None:
            return msg91_error(400, "Template ID is missing or invalid")
        if "sender" in payload and payload["sender"] not in self.sender_ids:
            return msg91_error(400, "Invalid sender ID", "203")
        if payload.get("short_url", "0") not in ("0", "1", 0, 1):
            return msg91_error(400, "short_url must be 0 or 1")
        recipients = payload.get("recipients")
        if not isinstance(recipients, list) or not recipients:
            return msg91_error(400, "Missing mobile no.", "101")
        needed = set(_VARIABLE.findall(template))
        for recipient in recipients:
            mobile = recipient.get("mobiles") if isinstance(recipient, dict) else None
            if not isinstance(mobile, str) or not mobile:
                return msg91_error(400, "Missing mobile no.", "101")
            if not _MOBILE.fullmatch(mobile) or mobile in self.invalid_numbers:
                return msg91_error(400, f"Invalid mobile number {mobile}", "202")
            missing = needed - set(recipient)
            if missing:
                return msg91_error(400, f"Missing template variables: {sorted(missing)}")
        return None

    async def _scripted(self, reply: Reply) -> web.StreamResponse:
        if reply.delay:
            timeout = None if math.isinf(reply.delay) else reply.delay
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout)
        return _answer(reply)


def _fill(template: str, variables: dict[str, str]) -> str:
    """The template with each ``##name##`` replaced: the text the phone shows."""
    return _VARIABLE.sub(lambda match: variables[match.group(1)], template)


def _answer(reply: Reply) -> web.Response:
    if isinstance(reply.body, bytes):
        return web.Response(body=reply.body, status=reply.status, headers=reply.headers)
    return web.json_response(reply.body, status=reply.status, headers=reply.headers)
