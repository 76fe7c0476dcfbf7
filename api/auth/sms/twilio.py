"""Twilio Programmable Messaging: our code in a text we write.

API: "Create a Message resource",
https://www.twilio.com/docs/messaging/api/message-resource::

    POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json
    Authorization: Basic base64(AccountSid:AuthToken)
    Content-Type: application/x-www-form-urlencoded

    To=+919876543210&From=+15005550006&Body=Your+BuildXpert+code+is+...

``To`` in E.164; exactly one of ``From`` (a Twilio number or alphanumeric sender id of
the account) and ``MessagingServiceSid`` (``MG…``, which picks the sender). The answer
is ``201 Created`` with the Message (``sid`` ``SM…``, ``status`` "queued" or
"accepted"). Errors (https://www.twilio.com/docs/usage/twilios-response) are
``{"code": 21211, "message": "...", "more_info": "https://www.twilio.com/docs/errors/21211",
"status": 400}``; codes in https://www.twilio.com/docs/api/errors.

| answer | what we raise |
| --- | --- |
| 2xx | nothing: Twilio created the message (its ``sid`` is logged) |
| 429 (20429), 5xx | SmsUnavailable (Retry-After kept; a 429 "is safe to retry") |
| other 4xx | SmsRefused with Twilio's code (20003: credentials; 21211: the number ...) |

Twilio's own Verify service is not used: the server generates and checks codes, the
gateway only delivers the text.
"""

from __future__ import annotations

import string
import time
from collections.abc import Callable
from typing import Final
from urllib.parse import quote

import httpx

from api.auth.sms.base import (
    Fault,
    Redactor,
    SmsError,
    SmsRefused,
    SmsUnavailable,
    check_base_url,
    e164_digits,
    http_client,
    json_object,
    log_failed,
    log_sent,
    minutes,
    post,
    retry_after,
    throttled_or_down,
)

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_BODY", "TwilioSender"]

DEFAULT_BASE_URL: Final = "https://api.twilio.com"
DEFAULT_BODY: Final = (
    "Your BuildXpert code is {code}. It expires in {minutes} minutes. Do not share it."
)
PROVIDER: Final = "twilio"
# "The text content of the message ... can be up to 1,600 characters" (Message resource).
MAX_BODY: Final = 1600
# The longest code the server accepts (VerifyOtp.code: 4 to 8 digits), for checking the
# body's length once, at construction.
_LONGEST_CODE: Final = "0" * 8

# Twilio's codes that blame the number itself: 21211 invalid 'To', 21610 the recipient
# replied STOP, 21612 unroutable, 21614 not a mobile number. Every other refusal is ours
# to fix (20003 credentials, 21606 sender, 21608 trial account, 21408 region).
_RECIPIENT_CODES: Final = frozenset({"21211", "21610", "21612", "21614"})


class TwilioSender:
    """Sends login codes as ``body_template.format(code=..., minutes=...)``.

    Exactly one of ``from_number`` and ``messaging_service_sid``. ``transport``
    replaces httpx's network transport (tests).
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        body_template: str = DEFAULT_BODY,
        # Limits.
        timeout: float = 10.0,
        # Test seams.
        transport: httpx.AsyncBaseTransport | None = None,
        monotonic: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not account_sid or not auth_token:
            raise ValueError("account_sid and auth_token are required")
        if (from_number is None) == (messaging_service_sid is None):
            raise ValueError("give exactly one of from_number and messaging_service_sid")
        if from_number is not None and not from_number:
            raise ValueError("from_number is empty")
        if messaging_service_sid is not None and not messaging_service_sid:
            raise ValueError("messaging_service_sid is empty")
        _check_body_template(body_template)
        if timeout <= 0:
            raise ValueError("timeout is a positive number of seconds")
        self._base_url = check_base_url(base_url)
        self._account_sid = account_sid
        self._path = f"/2010-04-01/Accounts/{quote(account_sid, safe='')}/Messages.json"
        self._sender: tuple[str, str] = (
            ("From", from_number)
            if from_number is not None
            else ("MessagingServiceSid", messaging_service_sid or "")
        )
        self._body_template = body_template
        self._timeout = timeout
        self._monotonic = monotonic
        self._http = http_client(
            self._base_url,
            timeout=timeout,
            transport=transport,
            headers={"accept": "application/json"},
            auth=httpx.BasicAuth(account_sid, auth_token),
        )

    def __repr__(self) -> str:
        return (
            f"TwilioSender(base_url={self._base_url!r}, account_sid={self._account_sid!r}, "
            f"{self._sender[0]}={self._sender[1]!r})"
        )

    async def close(self) -> None:
        await self._http.aclose()

    def body(self, code: str, ttl_seconds: int) -> str:
        """The text the phone shows."""
        return self._body_template.format(code=code, minutes=minutes(ttl_seconds))

    def form(self, phone: str, code: str, ttl_seconds: int) -> dict[str, str]:
        """The form fields of the Messages request (``phone`` in E.164)."""
        e164_digits(phone)  # Twilio answers 21211 too, but a malformed number is our bug
        name, value = self._sender
        return {"To": phone, name: value, "Body": self.body(code, ttl_seconds)}

    async def send_code(self, phone: str, code: str, ttl_seconds: int) -> None:
        """Send ``code`` to ``phone`` (E.164); raise an :class:`SmsError` if not sent."""
        form = self.form(phone, code, ttl_seconds)
        redact = Redactor(code, phone)
        started = self._monotonic()
        try:
            response = await post(
                self._http,
                self._path,
                provider=PROVIDER,
                timeout=self._timeout,
                redact=redact,
                data=form,
            )
            sid = _read(response, redact)
        except SmsError as exc:
            log_failed(PROVIDER, phone, exc, (self._monotonic() - started) * 1000.0)
            raise
        log_sent(PROVIDER, phone, sid, (self._monotonic() - started) * 1000.0)


def _read(response: httpx.Response, redact: Redactor) -> str | None:
    """The sid of the created message, or the error the answer means."""
    status = response.status_code
    body = json_object(response) or {}
    code = str(body.get("code") or status)
    message = redact(str(body.get("message", "")))
    if throttled_or_down(status):
        raise SmsUnavailable(
            PROVIDER,
            f"HTTP {status} {message}".rstrip(),
            code=code,
            http_status=status,
            retry_after=retry_after(response.headers),
        )
    if 200 <= status < 300:
        # Created: the SMS is on its way even if the body cannot be read, and sending
        # again would send it twice. Only the sid (never "body", our text) is read.
        sid = body.get("sid")
        return sid if isinstance(sid, str) else None
    fault: Fault = "recipient" if code in _RECIPIENT_CODES else "account"
    raise SmsRefused(PROVIDER, code, message or f"HTTP {status}", http_status=status, fault=fault)


def _check_body_template(template: str) -> None:
    """The template names ``{code}``, nothing but ``{code}`` and ``{minutes}``, and fits
    in one Twilio message with the longest code."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ValueError(f"body_template: {exc}") from None
    if "code" not in fields:
        raise ValueError("body_template must contain {code}")
    unknown = fields - {"code", "minutes"}
    if unknown:
        raise ValueError(f"body_template: unknown fields {sorted(unknown)} (code, minutes)")
    if len(template.format(code=_LONGEST_CODE, minutes=9999)) > MAX_BODY:
        raise ValueError(f"body_template: longer than Twilio's {MAX_BODY} characters")
