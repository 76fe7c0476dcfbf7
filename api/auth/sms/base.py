"""What every SMS sender shares: its errors, the masking of phones and codes, the HTTP call.

.. code-block:: text

    SmsError                 retryable
    ├── SmsUnavailable       True    no usable answer: timeout, connection error, HTTP 429
    │                                or 5xx, a success status with an unreadable body
    └── SmsRefused           False   the gateway said no: a bad or unreachable number, an
                                     unverified sender, wrong credentials, an unknown
                                     template; carries the provider's code and message

``retryable`` says whether sending the same request again may succeed.
:class:`SmsRefused` also says whose ``fault`` it is: ``"recipient"`` (the number cannot
get an SMS: the user may give another one) or ``"account"`` (our credentials, sender or
template: an operator must act, the user can do nothing). No httpx exception escapes a
sender: it is mapped here (``raise SmsUnavailable(...) from exc``).

A login code is a password until it is used. No log record, exception message or repr
written by a sender contains it, and phone numbers appear masked (``+9198******10``):
whatever text came from the provider passes through a :class:`Redactor` first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import httpx
import orjson

__all__ = [
    "Fault",
    "Redactor",
    "SmsError",
    "SmsRefused",
    "SmsUnavailable",
    "mask_phone",
]

log = logging.getLogger("rtc.auth.sms")

Fault = Literal["recipient", "account"]

# The code stands in for the code wherever a provider's text repeated it.
CODE_REDACTED = "[code]"


class SmsError(Exception):
    """Base class of every failure of a sender; ``provider`` is "msg91" or "twilio"."""

    retryable: ClassVar[bool] = False

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        code: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.message = message
        self.code = code
        self.http_status = http_status


class SmsUnavailable(SmsError):
    """The gateway could not be reached or gave no usable answer; the same send may
    succeed later (after ``retry_after`` seconds when the gateway said so)."""

    retryable = True

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        code: str | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(provider, message, code=code, http_status=http_status)
        self.retry_after = retry_after


class SmsRefused(SmsError):
    """The gateway refused this SMS: ``code`` and ``message`` are its own (the message
    redacted). Sending it again unchanged will be refused again."""

    code: str
    fault: Fault

    def __init__(
        self,
        provider: str,
        code: str,
        message: str,
        *,
        http_status: int | None = None,
        fault: Fault = "account",
    ) -> None:
        super().__init__(
            provider, f"refused ({code}): {message}", code=code, http_status=http_status
        )
        self.code = code
        self.message = message
        self.fault = fault


def mask_phone(phone: str) -> str:
    """``+919876543210`` → ``+9198******10``: enough to tell numbers apart in a log (the
    country and operator prefix, the last two digits), not enough to call one."""
    if len(phone) >= 11:  # at least 4 of the digits hidden
        return phone[:5] + "*" * (len(phone) - 7) + phone[-2:]
    return "*" * max(0, len(phone) - 2) + phone[-2:]


@dataclass(frozen=True, slots=True)
class Redactor:
    """Takes one send's secrets out of text that may be logged or raised: the code is
    replaced, the phone number (with or without its ``+``) masked.

    Applied to every text a provider sends back, since some repeat the request (Twilio's
    21211 names the number; a gateway may echo a template variable)."""

    code: str = field(repr=False)
    phone: str = field(repr=False)

    def __call__(self, text: str) -> str:
        # The phone first: the masked form keeps too few digits to hold a code.
        if self.phone:
            masked = mask_phone(self.phone)
            text = text.replace(self.phone, masked)
            digits = self.phone.lstrip("+")
            if digits:
                text = text.replace(digits, masked.lstrip("+"))
        if self.code:  # str.replace("", x) would insert x between every character
            text = text.replace(self.code, CODE_REDACTED)
        return text


def e164_digits(phone: str) -> str:
    """The digits of an E.164 number (``+919876543210`` → ``919876543210``).

    Senders are given numbers from :func:`api.auth.phones.normalize_phone`; anything
    else is a programming error (ValueError, the number masked in its message)."""
    digits = phone[1:]
    # Only the form is checked (ITU-T E.164: "+", at most 15 digits): whether such a
    # subscriber exists is the gateway's to say, with its own error code.
    well_formed = digits.isascii() and digits.isdigit() and len(digits) <= 15
    if not phone.startswith("+") or not well_formed:
        raise ValueError(f"not an E.164 phone number: {mask_phone(phone)!r}")
    return digits


def minutes(ttl_seconds: int) -> int:
    """The code's lifetime as the SMS states it: rounded down, so the text never
    promises more time than the server will accept the code for (at least 1)."""
    return max(1, ttl_seconds // 60)


def check_base_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url is an http(s) URL, got {base_url!r}")
    return base_url.rstrip("/")


def http_client(
    base_url: str,
    *,
    timeout: float,
    transport: httpx.AsyncBaseTransport | None,
    headers: dict[str, str] | None = None,
    auth: httpx.Auth | None = None,
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout),
        transport=transport,
        headers=headers,
        auth=auth,
        follow_redirects=False,
        # Nothing of the environment (proxies, .netrc credentials) decides where a
        # login code goes or which credentials go with it.
        trust_env=False,
    )


async def post(
    client: httpx.AsyncClient,
    path: str,
    *,
    provider: str,
    timeout: float,
    redact: Redactor,
    **request: Any,
) -> httpx.Response:
    """POST, with httpx's exceptions mapped to :class:`SmsUnavailable`."""
    try:
        return await client.post(path, **request)
    except httpx.TimeoutException as exc:
        raise SmsUnavailable(provider, f"no answer within {timeout} s", code="timeout") from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        detail = redact(f"{type(exc).__name__}: {exc}")
        raise SmsUnavailable(provider, detail, code="network") from exc


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    """The body as a JSON object, or None (not JSON, or not an object)."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds from a Retry-After header in delta-seconds form (RFC 9110 section
    10.2.3); None when absent or an HTTP-date (neither gateway documents dates)."""
    value = headers.get("retry-after", "").strip()
    return float(value) if value.isdigit() else None


def throttled_or_down(status: int) -> bool:
    """HTTP statuses after which the same request may succeed later."""
    return status == 429 or status >= 500


def log_sent(provider: str, phone: str, message_id: str | None, latency_ms: float) -> None:
    log.info(
        "sms sent",
        extra={
            "provider": provider,
            "phone": mask_phone(phone),
            "message_id": message_id,
            "latency_ms": round(latency_ms, 1),
        },
    )


def log_failed(provider: str, phone: str, error: SmsError, latency_ms: float) -> None:
    log.warning(
        "sms not sent",
        extra={
            "provider": provider,
            "phone": mask_phone(phone),
            "error": error.code,
            "http_status": error.http_status,
            "retryable": error.retryable,
            "fault": error.fault if isinstance(error, SmsRefused) else None,
            "detail": error.message,  # already redacted
            "latency_ms": round(latency_ms, 1),
        },
    )
