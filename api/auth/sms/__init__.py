"""The SMS gateways that deliver login codes (``auth.sms_sender``): MSG91 and Twilio in
production, the log in development.

Each sender delivers the text of a code our server generated and will check; neither
gateway's own verify service is used. Errors: :mod:`api.auth.sms.base` (its docstring
draws the tree). Codes never reach a log record, an exception message or a repr (but
the development sender's, which production refuses).
"""

from __future__ import annotations

from typing import Protocol

from api.auth.settings import AuthSettings
from api.auth.sms.base import Fault, SmsError, SmsRefused, SmsUnavailable, mask_phone
from api.auth.sms.log import LogSmsSender
from api.auth.sms.msg91 import Msg91Sender
from api.auth.sms.twilio import TwilioSender
from kernel.settings import ConfigError


class SmsSender(Protocol):
    """Delivers one login code; raises :class:`SmsError` when it could not."""

    async def send_code(self, phone: str, code: str, ttl_seconds: int) -> None: ...

    async def close(self) -> None: ...


def make_sender(settings: AuthSettings, *, production: bool) -> SmsSender:
    """The sender ``auth.sms_sender`` names (its settings checked at start-up)."""
    s = settings
    match s.sms_sender:
        case "log":
            if production:
                raise ConfigError(
                    'auth.sms_sender = "log" writes every login code to the log: set "msg91"'
                    ' or "twilio" in production (RTC_AUTH__SMS_SENDER)'
                )
            return LogSmsSender()
        case "msg91":
            return Msg91Sender(
                s.msg91_authkey,
                s.msg91_template_id,
                s.msg91_base_url,
                sender_id=s.msg91_sender_id or None,
                code_variable=s.msg91_code_variable,
                minutes_variable=s.msg91_minutes_variable or None,
                timeout=s.sms_timeout,
            )
        case "twilio":
            return TwilioSender(
                s.twilio_account_sid,
                s.twilio_auth_token,
                from_number=s.twilio_from_number or None,
                messaging_service_sid=s.twilio_messaging_service_sid or None,
                base_url=s.twilio_base_url,
                body_template=s.twilio_body_template,
                timeout=s.sms_timeout,
            )


__all__ = [
    "Fault",
    "LogSmsSender",
    "SmsSender",
    "make_sender",
    "Msg91Sender",
    "SmsError",
    "SmsRefused",
    "SmsUnavailable",
    "TwilioSender",
    "mask_phone",
]
