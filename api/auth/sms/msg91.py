"""MSG91, the usual SMS gateway in India: our code in a DLT-approved template.

API: "Send SMS" (v5 flow), https://docs.msg91.com/sms/send-sms (earlier
https://control.msg91.com/apidoc/textsms/send-sms-flow.php)::

    POST {base}/api/v5/flow/
    authkey: <authkey>
    Content-Type: application/json

    {"template_id": "...", "short_url": "0", "sender": "BLDXPT",
     "recipients": [{"mobiles": "919876543210", "otp": "482913", "minutes": "5"}]}

``mobiles`` is the number in international format without the ``+``; every other key
of a recipient is a variable of the template (``##otp##`` in its text), case-sensitive.

Why this API and not SendOTP (``/api/v5/otp``, which also takes an ``otp`` value): the
server generates, stores and checks codes itself, so the gateway only has to deliver a
text. SendOTP keeps the code at MSG91 to verify it there (a second copy of the secret
with its own expiry and retries); the flow API sends a template and forgets. Both need
the template registered on India's DLT platform (TRAI's rules for commercial SMS):
its DLT template id is mapped to the MSG91 template named by ``template_id``.

Answers: ``{"type": "success", "message": "<request id>"}`` or
``{"type": "error", "message": "...", "code": "..."}`` (``code`` not always present).
The HTTP status of errors is not documented: ``type`` decides, whatever the status.

| answer | what we raise |
| --- | --- |
| 2xx, type "success" | nothing: sent (the request id is logged) |
| 429, 5xx (any body) | SmsUnavailable (Retry-After kept) |
| type "error" (any other status) | SmsRefused (its code, else the HTTP status) |
| 2xx, anything else | SmsUnavailable (unreadable: MSG91 may or may not have sent it) |
| 3xx, 4xx without a JSON error | SmsRefused (the HTTP status) |
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

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

__all__ = ["DEFAULT_BASE_URL", "Msg91Sender"]

DEFAULT_BASE_URL: Final = "https://control.msg91.com"
FLOW_PATH: Final = "/api/v5/flow/"
PROVIDER: Final = "msg91"

# MSG91's codes that blame the number itself (its error code list: 202 "Invalid mobile
# number"); every other refusal is ours to fix (authkey, sender id, template, balance,
# 418 IP not whitelisted).
_RECIPIENT_CODES: Final = frozenset({"202"})


class Msg91Sender:
    """Sends login codes through MSG91's flow API with one DLT template.

    ``template_id`` names the MSG91 template whose text holds ``##<code_variable>##``
    and, if ``minutes_variable`` is given, ``##<minutes_variable>##`` (the code's
    lifetime in whole minutes). ``sender_id`` is the DLT header ("BLDXPT"); None: the
    template's own. ``transport`` replaces httpx's network transport (tests).
    """

    def __init__(
        self,
        authkey: str,
        template_id: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        sender_id: str | None = None,
        code_variable: str = "otp",
        minutes_variable: str | None = None,
        # Limits.
        timeout: float = 10.0,
        # Test seams.
        transport: httpx.AsyncBaseTransport | None = None,
        monotonic: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not authkey or not template_id:
            raise ValueError("authkey and template_id are required")
        if not code_variable or code_variable == "mobiles":
            raise ValueError(f"code_variable {code_variable!r} cannot name a template variable")
        if minutes_variable is not None and minutes_variable in ("", "mobiles", code_variable):
            raise ValueError(f"minutes_variable {minutes_variable!r} is not another variable")
        if timeout <= 0:
            raise ValueError("timeout is a positive number of seconds")
        self._base_url = check_base_url(base_url)
        self._template_id = template_id
        self._sender_id = sender_id or None
        self._code_variable = code_variable
        self._minutes_variable = minutes_variable
        self._timeout = timeout
        self._monotonic = monotonic
        self._http = http_client(
            self._base_url,
            timeout=timeout,
            transport=transport,
            headers={"authkey": authkey, "accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"Msg91Sender(base_url={self._base_url!r}, template_id={self._template_id!r})"

    async def close(self) -> None:
        await self._http.aclose()

    def request_body(self, phone: str, code: str, ttl_seconds: int) -> dict[str, Any]:
        """The JSON the flow API gets for one code (``phone`` in E.164)."""
        recipient = {"mobiles": e164_digits(phone), self._code_variable: code}
        if self._minutes_variable is not None:
            recipient[self._minutes_variable] = str(minutes(ttl_seconds))
        # short_url "0": a login code has no link for MSG91 to rewrite.
        body: dict[str, Any] = {
            "template_id": self._template_id,
            "short_url": "0",
            "recipients": [recipient],
        }
        if self._sender_id is not None:
            body["sender"] = self._sender_id
        return body

    async def send_code(self, phone: str, code: str, ttl_seconds: int) -> None:
        """Send ``code`` to ``phone`` (E.164); raise an :class:`SmsError` if not sent."""
        body = self.request_body(phone, code, ttl_seconds)
        redact = Redactor(code, phone)
        started = self._monotonic()
        try:
            response = await post(
                self._http,
                FLOW_PATH,
                provider=PROVIDER,
                timeout=self._timeout,
                redact=redact,
                json=body,
            )
            request_id = _read(response, redact)
        except SmsError as exc:
            log_failed(PROVIDER, phone, exc, (self._monotonic() - started) * 1000.0)
            raise
        log_sent(PROVIDER, phone, request_id, (self._monotonic() - started) * 1000.0)


def _read(response: httpx.Response, redact: Redactor) -> str:
    """The request id of an accepted SMS, or the error the answer means."""
    status = response.status_code
    body = json_object(response) or {}
    kind = body.get("type")
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
    if kind == "success" and 200 <= status < 300:
        return message  # MSG91 puts the request id in "message"
    if kind == "error":
        fault: Fault = "recipient" if code in _RECIPIENT_CODES else "account"
        raise SmsRefused(PROVIDER, code, message, http_status=status, fault=fault)
    if 200 <= status < 300:
        raise SmsUnavailable(
            PROVIDER,
            f"HTTP {status} without a flow API answer",
            code="unreadable",
            http_status=status,
        )
    raise SmsRefused(PROVIDER, str(status), f"HTTP {status}", http_status=status)
