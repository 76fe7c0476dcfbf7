"""A server in production mode: every development part replaced by the real client of
a gateway (MSG91 for login codes, Paytm for payments), each talking to a local server
that speaks its API."""

from __future__ import annotations

from typing import Any

from api.payments.paytm.simulator import PaytmSimulator
from tests.fakes import msg91 as msg91_fake
from tests.fakes import twilio as twilio_fake
from tests.fakes.msg91 import FakeMsg91
from tests.fakes.twilio import FakeTwilio

from .payments import gateway

METRICS_TOKEN = "metrics-token-of-the-tests-0123456789"


def sms_by_msg91(msg91: FakeMsg91) -> dict[str, Any]:
    """The ``auth`` settings of login codes sent through ``msg91``."""
    return {
        "sms_sender": "msg91",
        "msg91_authkey": msg91_fake.AUTHKEY,
        "msg91_template_id": msg91_fake.TEMPLATE_ID,
        "msg91_sender_id": msg91_fake.SENDER_ID,
        "msg91_minutes_variable": "minutes",
        "msg91_base_url": msg91.url,
    }


def sms_by_twilio(twilio: FakeTwilio) -> dict[str, Any]:
    return {
        "sms_sender": "twilio",
        "twilio_account_sid": twilio_fake.ACCOUNT_SID,
        "twilio_auth_token": twilio_fake.AUTH_TOKEN,
        "twilio_from_number": twilio_fake.FROM_NUMBER,
        "twilio_base_url": twilio.url,
    }


def production(msg91: FakeMsg91, paytm: PaytmSimulator, **sections: Any) -> dict[str, Any]:
    """The settings sections of a production server (``make_app(**production(...))``);
    ``sections`` add to them."""
    settings: dict[str, dict[str, Any]] = {
        "server": {"environment": "production"},
        "http": {"metrics_token": METRICS_TOKEN},
        "auth": sms_by_msg91(msg91),
        "payments": gateway(paytm, public_url="https://api.buildxpert.example"),
        "recordings": {"public_url": "https://media.buildxpert.example"},
        "uploads": {"public_url": "https://api.buildxpert.example"},
        "console": {"socket_url": "wss://api.buildxpert.example/ws"},
    }
    for name, values in sections.items():
        settings[name] = {**settings.get(name, {}), **values}
    return settings


def code_in(msg91: FakeMsg91, phone: str) -> str:
    """The last code MSG91 delivered to ``phone`` (E.164 or national digits)."""
    mobile = "91" + phone[-10:]
    return msg91.to(mobile)[-1].variables["otp"]
