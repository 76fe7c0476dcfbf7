"""A local Twilio: Programmable Messaging's "Create a Message",
``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``.

It checks HTTP basic auth (AccountSid:AuthToken, the account of the path), validates the
form as Twilio does (``To`` in E.164, exactly one sender: ``From`` a number of the
account or ``MessagingServiceSid`` the account's service, a ``Body`` of at most 1600
characters), keeps the SMS in :attr:`FakeTwilio.messages` so a test reads the code the
way a phone would, and answers ``201 Created`` with the Message. The next requests'
answers can be scripted (:attr:`FakeTwilio.script`): a status, a body, a delay.

Documented answers: https://www.twilio.com/docs/messaging/api/message-resource,
https://www.twilio.com/docs/usage/twilios-response (errors: ``code``, ``message``,
``more_info``, ``status``) and the codes of https://www.twilio.com/docs/api/errors
(20003, 20404, 20429, 21211, 21602, 21603, 21604, 21606, 21608, 21614, 21617).
Messages of errors Twilio does not spell out are this fake's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from aiohttp import BasicAuth, web

from tests.fakes import serve_locally

ACCOUNT_SID = "AC" + "3f9d2c7e1b0a4d6e8f1a2b3c4d5e6f70"
AUTH_TOKEN = "9c1e7d3b5a2f4e6d8c0b1a2f3e4d5c6b"
FROM_NUMBER = "+15005550006"
MESSAGING_SERVICE_SID = "MG" + "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
MAX_BODY = 1600

_E164 = re.compile(r"\+[1-9][0-9]{7,14}")


@dataclass
class Reply:
    """A scripted answer. ``delay``: seconds before answering; ``math.inf``: none before
    the server closes (the client times out)."""

    status: int
    body: dict[str, Any] | bytes = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def twilio_error(status: int, code: int, message: str) -> Reply:
    return Reply(
        status,
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
    )


def hang() -> Reply:
    return Reply(201, {"sid": "SMnever"}, delay=math.inf)


@dataclass(frozen=True)
class TextMessage:
    """One message Twilio created, as the phone would show it."""

    sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str


class FakeTwilio:
    def __init__(
        self,
        *,
        account_sid: str = ACCOUNT_SID,
        auth_token: str = AUTH_TOKEN,
        numbers: tuple[str, ...] = (FROM_NUMBER,),
        messaging_service_sid: str = MESSAGING_SERVICE_SID,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.numbers = numbers  # the account's phone numbers (senders)
        self.messaging_service_sid = messaging_service_sid
        self.messages: list[TextMessage] = []
        self.requests = 0  # every POST to Messages.json
        self.script: list[Reply] = []  # answers to the next requests, whatever they ask
        self.invalid_numbers: set[str] = set()  # E.164-shaped, no such subscriber: 21211
        self.landlines: set[str] = set()  # 21614
        # A trial account sends only to its verified numbers (21608); None: upgraded.
        self.verified_numbers: set[str] | None = None
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> FakeTwilio:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", self._create)
        self._runner, self.url = await serve_locally(app)
        return self

    async def close(self) -> None:
        self._closing.set()  # releases the requests held by a delay
        if self._runner is not None:
            await self._runner.cleanup()

    def to(self, number: str) -> list[TextMessage]:
        return [m for m in self.messages if m.to == number]

    async def _create(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if self.script:
            return await self._scripted(self.script.pop(0))
        if not self._authenticated(request):
            return _answer(twilio_error(401, 20003, "Authenticate"))
        account = request.match_info["account"]
        if account != self.account_sid:
            resource = f"/2010-04-01/Accounts/{account}/Messages.json"
            return _answer(
                twilio_error(404, 20404, f"The requested resource {resource} was not found")
            )
        form = {k: str(v) for k, v in (await request.post()).items()}
        refusal = self._check(form)
        if refusal is not None:
            return _answer(refusal)
        message = TextMessage(
            sid="SM" + secrets.token_hex(16),
            to=form["To"],
            from_=form.get("From"),
            messaging_service_sid=form.get("MessagingServiceSid"),
            body=form["Body"],
        )
        self.messages.append(message)
        return web.json_response(self._resource(message), status=201)

    def _authenticated(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        try:
            auth = BasicAuth.decode(header)
        except ValueError:
            return False
        return (auth.login, auth.password) == (self.account_sid, self.auth_token)

    def _check(self, form: dict[str, str]) -> Reply | None:
        to = form.get("To", "")
        if not to:
            return twilio_error(400, 21604, "A 'To' phone number is required.")
        if not _E164.fullmatch(to) or to in self.invalid_numbers:
            return twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        sender, service = form.get("From"), form.get("MessagingServiceSid")
        if not sender and not service:
            return twilio_error(400, 21603, "A 'From' phone number is required.")
        if sender and service:
            return twilio_error(400, 21603, "Use either 'From' or 'MessagingServiceSid'.")
        if sender and sender not in self.numbers:
            return twilio_error(
                400,
                21606,
                f"The From phone number {sender} is not a valid, SMS-capable inbound phone "
                "number or short code for your account.",
            )
        if service and service != self.messaging_service_sid:
            return twilio_error(404, 20404, f"The requested resource {service} was not found")
        body = form.get("Body", "")
        if not body:
            return twilio_error(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY:
            return twilio_error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        if to in self.landlines:
            return twilio_error(400, 21614, f"'To' number {to} is not a valid mobile number")
        if self.verified_numbers is not None and to not in self.verified_numbers:
            return twilio_error(
                400,
                21608,
                f"The number {to} is unverified. Trial accounts cannot send messages to "
                "unverified numbers; verify it, or purchase a Twilio number to send "
                "messages to unverified numbers.",
            )
        return None

    def _resource(self, message: TextMessage) -> dict[str, Any]:
        now = format_datetime(datetime.now(UTC), usegmt=True)
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{message.sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": message.body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": message.from_,
            "messaging_service_sid": message.messaging_service_sid,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": None,
            "sid": message.sid,
            # A Messaging Service picks the sender later: "accepted" until then.
            "status": "accepted" if message.messaging_service_sid else "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": message.to,
            "uri": f"{uri}.json",
        }

    async def _scripted(self, reply: Reply) -> web.StreamResponse:
        if reply.delay:
            timeout = None if math.isinf(reply.delay) else reply.delay
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout)
        return _answer(reply)


def _answer(reply: Reply) -> web.Response:
    if isinstance(reply.body, bytes):
        return web.Response(body=reply.body, status=reply.status, headers=reply.headers)
    return web.json_response(reply.body, status=reply.status, headers=reply.headers)
