"""The MSG91 and Twilio senders against local servers speaking each gateway's API
(tests/fakes/msg91.py, tests/fakes/twilio.py), and the rules they share."""

from __future__ import annotations

import logging
import re
import socket
import traceback
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, TypeVar

import pytest

from api.auth.sms import (
    Msg91Sender,
    SmsError,
    SmsRefused,
    SmsUnavailable,
    TwilioSender,
    mask_phone,
)
from api.auth.sms.base import Redactor, minutes
from rtc_server.logs import JsonFormatter, TextFormatter
from tests.fakes import msg91 as msg91_fake
from tests.fakes import twilio as twilio_fake
from tests.fakes.msg91 import FakeMsg91, msg91_error
from tests.fakes.twilio import FakeTwilio, twilio_error

PHONE = "+919876543210"
MOBILE = "919876543210"  # as MSG91 wants it
MASKED = "+9198******10"
CODE = "730512"
TTL = 300

Sender = TypeVar("Sender", bound=Msg91Sender | TwilioSender)


class Closing(Protocol):
    def __call__(self, sender: Sender, /) -> Sender: ...


@pytest.fixture
async def closing() -> AsyncIterator[Closing]:
    """Closes the senders a test made, after it."""
    opened: list[Msg91Sender | TwilioSender] = []

    def track(sender: Sender) -> Sender:
        opened.append(sender)
        return sender

    yield track
    for sender in opened:
        await sender.close()


def msg91_sender(fake: FakeMsg91, **options: Any) -> Msg91Sender:
    settings: dict[str, Any] = {
        "sender_id": msg91_fake.SENDER_ID,
        "minutes_variable": "minutes",
        "timeout": 5.0,
        **options,
    }
    authkey = settings.pop("authkey", msg91_fake.AUTHKEY)
    return Msg91Sender(authkey, msg91_fake.TEMPLATE_ID, fake.url, **settings)


def twilio_sender(fake: FakeTwilio, **options: Any) -> TwilioSender:
    settings: dict[str, Any] = {"timeout": 5.0, **options}
    if "messaging_service_sid" not in settings:
        settings.setdefault("from_number", twilio_fake.FROM_NUMBER)
    token = settings.pop("auth_token", twilio_fake.AUTH_TOKEN)
    return TwilioSender(twilio_fake.ACCOUNT_SID, token, base_url=fake.url, **settings)


def code_in(text: str) -> str:
    """The code in an SMS, read as the phone's autofill reads it: the 6-digit number."""
    codes: list[str] = re.findall(r"\b[0-9]{6}\b", text)
    [code] = codes
    return code


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- MSG91 -------------------------------------------------------------------------------


async def test_msg91_delivers_our_code_in_the_template(msg91: FakeMsg91, closing: Closing) -> None:
    sender = closing(msg91_sender(msg91))
    await sender.send_code(PHONE, CODE, TTL)
    [sms] = msg91.inbox
    assert sms.mobile == MOBILE  # international format, no "+"
    assert sms.template_id == msg91_fake.TEMPLATE_ID
    assert sms.sender == msg91_fake.SENDER_ID
    assert sms.variables == {"otp": CODE, "minutes": "5"}
    assert code_in(sms.text) == CODE
    assert "expires in 5 minutes" in sms.text


async def test_msg91_sends_what_the_template_names(
    closing: Closing,
) -> None:
    fake = await FakeMsg91(templates={"t-2": "Code ##code##."}).start()
    try:
        sender = closing(
            Msg91Sender(msg91_fake.AUTHKEY, "t-2", fake.url, code_variable="code", timeout=5.0)
        )
        await sender.send_code(PHONE, CODE, TTL)
        [sms] = fake.inbox
        assert sms.variables == {"code": CODE}
        assert sms.text == f"Code {CODE}."
    finally:
        await fake.close()


def test_msg91_request_body() -> None:
    sender = Msg91Sender("key", "tpl", sender_id="BLDXPT", minutes_variable="ttl")
    assert sender.request_body(PHONE, CODE, 599) == {
        "template_id": "tpl",
        "short_url": "0",
        "sender": "BLDXPT",
        "recipients": [{"mobiles": MOBILE, "otp": CODE, "ttl": "9"}],
    }
    bare = Msg91Sender("key", "tpl")
    assert bare.request_body(PHONE, CODE, 300) == {
        "template_id": "tpl",
        "short_url": "0",
        "recipients": [{"mobiles": MOBILE, "otp": CODE}],
    }


async def test_msg91_wrong_authkey_is_refused(msg91: FakeMsg91, closing: Closing) -> None:
    sender = closing(msg91_sender(msg91, authkey="not-our-key"))
    with pytest.raises(SmsRefused) as caught:
        await sender.send_code(PHONE, CODE, TTL)
    error = caught.value
    assert (error.provider, error.code, error.http_status) == ("msg91", "401", 401)
    assert error.message == "AuthenticationFailure"
    assert not error.retryable and error.fault == "account"
    assert msg91.inbox == []


@pytest.mark.parametrize("phone", ["+91123", "+919876543210"])
async def test_msg91_invalid_number_is_refused_with_its_code(
    msg91: FakeMsg91, closing: Closing, phone: str
) -> None:
    msg91.invalid_numbers.add(MOBILE)  # well-formed, but no such subscriber
    sender = closing(msg91_sender(msg91))
    with pytest.raises(SmsRefused) as caught:
        await sender.send_code(phone, CODE, TTL)
    error = caught.value
    assert (error.code, error.http_status, error.fault) == ("202", 400, "recipient")
    assert error.message == f"Invalid mobile number {mask_phone(phone).lstrip('+')}"
    assert not error.retryable


async def test_msg91_unknown_sender_id_is_refused(msg91: FakeMsg91, closing: Closing) -> None:
    sender = closing(msg91_sender(msg91, sender_id="OTHERS"))
    with pytest.raises(SmsRefused) as caught:
        await sender.send_code(PHONE, CODE, TTL)
    assert (caught.value.code, caught.value.fault) == ("203", "account")


async def test_msg91_error_answered_with_http_200_is_a_refusal(
    msg91: FakeMsg91, closing: Closing
) -> None:
    msg91.script = [msg91_error(200, "IP not whitelisted", "418")]
    sender = closing(msg91_sender(msg91))
    with pytest.raises(SmsRefused) as caught:
        await sender.send_code(PHONE, CODE, TTL)
    assert (caught.value.code, caught.value.http_status) == ("418", 200)


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_msg91_throttling_and_server_errors_are_unavailable(
    msg91: FakeMsg91, closing: Closing, status: int
) -> None:
    reply = msg91_error(status, "Too many requests" if status == 429 else "Server error")
    reply.headers["Retry-After"] = "7"
    msg91.script = [reply]
    sender = closing(msg91_sender(msg91))
    with pytest.raises(SmsUnavailable) as caught:
        await sender.send_code(PHONE, CODE, TTL)
    error = caught.value
    assert error.retryable and error.http_status == status and error.retry_after == 7.0
    # The script is used up: the same send, again, goes through.
    await sender.send_code(PHONE, CODE, TTL)
    assert [code_in(sms.text) for sms in msg91.to(MOBILE)] == [CODE]


async def test_msg91_server_error_without_json_is_unavailable(
    msg91: FakeMsg91, closing: Closing
) -> None:
    msg91.script = [msg91_fake.Reply(502, b"<html>Bad Gateway</html>")]
    sender = closing(msg91_sender(msg91))
    with pytest.raises(SmsUnavailable) as caught:
        await sender.send_code(PHONE, CODE, TTL)
    assert (caught.value.code, caught.value.retry_after) == ("502", None)


async def test_msg91_unreadable_success_is_unavailable(msg91: FakeMsg91, closing: Closing) -> None:
    msg91.script = [msg91_fake.Reply(200, b"OK")]
    sender = closing(msg91_sender(msg91))
    with pytest.raises(SmsUnavailable) as caught:
        await sender.send_code(PHONE, CODE, TTL)
    assert (caught.value.code, caught.value.http_status) == ("unreadable", 200)


async def test_msg91_client_error_without_json_is_refused(
    msg91: FakeMsg91, closing: Closing
) -> None:
    msg91.script = [msg91_fake.Reply(403, b"Forbidden")]
    sender = closing(msg91_sender(msg91))
    with pytest.raises(SmsRefused) as caught:
        await sender.send_code(PHONE, CODE, TTL)
    assert (caught.value.code, caught.value.message) == ("403", "HTTP 403")


async def test_msg91_timeout_is_unavailable(msg91: FakeMsg91, closing: Closing) -> None:
    msg91.script = [msg91_fake.hang()]
    sender = closing(msg91_sender(msg91, timeout=0.2))
    with pytest.raises(SmsUnavailable) as caught:
        await sender.send_code(PHONE, CODE, TTL)
    assert caught.value.code == "timeout" and caught.value.retryable
    assert msg91.inbox == []


async def test_msg91_connection_refused_is_unavailable(
    closing: Closing,
) -> None:
    sender = closing(Msg91Sender(msg91_fake.AUTHKEY, "tpl", closed_port_url(), timeout=5.0))
    with pytest.raises(SmsUnavailable) as caught:
        await sender.send_code(PHONE, CODE, TTL)
    assert caught.value.code == "network"
    assert isinstance(caught.value.__cause__, Exception)  # the httpx error, kept as cause


@pytest.mark.parametrize(
    "options",
    [
        {"authkey": ""},
        {"template_id": ""},
        {"code_variable": "mobiles"},
        {"minutes_variable": "otp"},
        {"base_url": "control.msg91.com"},
        {"timeout": 0},
    ],
)
def test_msg91_refuses_a_bad_configuration(options: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {"authkey": "key", "template_id": "tpl", **options}
    with pytest.raises(ValueError):
        Msg91Sender(**arguments)


# --- Twilio ------------------------------------------------------------------------------


async def test_twilio_delivers_our_code_from_our_number(
    twilio: FakeTwilio, closing: Closing
) -> None:
    sender = closing(twilio_sender(twilio))
    await sender.send_code(PHONE, CODE, TTL)
    [message] = twilio.messages
    assert (message.to, message.from_, message.messaging_service_sid) == (
        PHONE,
        twilio_fake.FROM_NUMBER,
        None,
    )
    assert message.body == (
        f"Your BuildXpert code is {CODE}. It expires in 5 minutes. Do not share it."
    )
    assert code_in(message.body) == CODE


async def test_twilio_delivers_through_a_messaging_service(
    twilio: FakeTwilio, closing: Closing
) -> None:
    sender = closing(
        twilio_sender(
            twilio,
            messaging_service_sid=twilio_fake.MESSAGING_SERVICE_SID,
            body_template="{code} is your BuildXpert code ({minutes} min).",
        )
    )
    await sender.send_code(PHONE, CODE, 120)
    [message] = twilio.to(PHONE)
    assert message.from_ is None
    assert message.messaging_service_sid == twilio_fake.MESSAGING_SERVICE_SID
    assert message.body == f"{CODE} is your BuildXpert code (2 min)."


def test_twilio_form() -> None:
    sender = TwilioSender("AC1", "token", from_number="+15005550006")
    assert sender.form(PHONE, CODE, 90) == {
        "To": PHONE,
        "From": "+15005550006",
        "Body": f"Your BuildXpert code is {CODE}. It expires in 1 minutes. Do not share it.",
    }
    service = TwilioSender("AC1", "token", messaging_service_sid="MG1", body_template="{code}")
    assert service.form(PHONE, CODE, 90) == {
        "To": PHONE,
        "MessagingServiceSid": "MG1",
        "Body": CODE,
    }


async def test_twilio_wrong_token_is_refused(twilio: FakeTwilio, closing: Closing) -> None:
    sender = closing(twilio_sender(twilio, auth_token="0" * 32))
    with pytest.raises(SmsRefused) as caught:
        await sender.send_code(PHONE, CODE, TTL)
    error = caught.value
    assert (error.provider, error.code, error.http_status) == ("twilio", "20003", 401)
    assert error.message == "Authenticate"
    assert not error.retryable and error.fault == "account"
    assert twilio.messages == []


async def test_twilio_invalid_number_is_refused_with_its_code(
    twilio: FakeTwilio, closing: Closing
) -> None:
    twilio.invalid_numbers.add(PHONE)
    sender = closing(twilio_sender(twilio))
    with pytest.raises(SmsRefused) as caught:
        await sender.send_code(PHONE, CODE, TTL)
    error = caught.value
    assert (error.code, error.http_status, error.fault) == ("21211", 400, "recipient")
    # Twilio names the number in its message: masked in ours.
    assert error.message == f"The 'To' number {MASKED} is not a valid phone number."


@pytest.mark.parametrize(
    ("setup", "code", "fault"),
    [
        (lambda fake: fake.landlines.add(PHONE), "21614", "recipient"),
        (lambda fake: setattr(fake, "verified_numbers", set()), "21608", "account"),
        (lambda fake: setattr(fake, "numbers", ("+15005550001",)), "21606", "account"),
    ],
    ids=["landline", "trial-unverified", "not-our-number"],
)
async def test_twilio_refusals_say_whose_fault(
    twilio: FakeTwilio,
    closing: Closing,
    setup: Callable[[FakeTwilio], None],
    code: str,
    fault: str,
) -> None:
    setup(twilio)
    sender = closing(twilio_sender(twilio))
    with pytest.raises(SmsRefused) as caught:
        await sender.send_code(PHONE, CODE, TTL)
    assert (caught.value.code, caught.value.fault) == (code, fault)
    assert PHONE not in str(caught.value)


@pytest.mark.parametrize(("status", "code"), [(429, 20429), (500, 20500), (503, 20503)])
async def test_twilio_throttling_and_server_errors_are_unavailable(
    twilio: FakeTwilio, closing: Closing, status: int, code: int
) -> None:
    reply = twilio_error(status, code, "Too many requests" if status == 429 else "Server error")
    reply.headers["Retry-After"] = "3"
    twilio.script = [reply]
    sender = closing(twilio_sender(twilio))
    with pytest.raises(SmsUnavailable) as caught:
        await sender.send_code(PHONE, CODE, TTL)
    error = caught.value
    assert error.retryable and error.retry_after == 3.0
    assert (error.code, error.http_status) == (str(code), status)
    await sender.send_code(PHONE, CODE, TTL)
    assert [code_in(m.body) for m in twilio.to(PHONE)] == [CODE]


async def test_twilio_timeout_is_unavailable(twilio: FakeTwilio, closing: Closing) -> None:
    twilio.script = [twilio_fake.hang()]
    sender = closing(twilio_sender(twilio, timeout=0.2))
    with pytest.raises(SmsUnavailable) as caught:
        await sender.send_code(PHONE, CODE, TTL)
    assert caught.value.code == "timeout" and caught.value.retryable


async def test_twilio_connection_refused_is_unavailable(
    closing: Closing,
) -> None:
    sender = closing(
        TwilioSender("AC1", "token", from_number="+15005550006", base_url=closed_port_url())
    )
    with pytest.raises(SmsUnavailable) as caught:
        await sender.send_code(PHONE, CODE, TTL)
    assert caught.value.code == "network"


async def test_twilio_created_with_an_unreadable_body_counts_as_sent(
    twilio: FakeTwilio,
    closing: Closing,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Twilio created the message; sending again would send the code twice.
    twilio.script = [twilio_fake.Reply(201, b"")]
    sender = closing(twilio_sender(twilio))
    with caplog.at_level(logging.INFO, logger="rtc.auth.sms"):
        await sender.send_code(PHONE, CODE, TTL)
    [record] = [r for r in caplog.records if r.name == "rtc.auth.sms"]
    assert record.message_id is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"from_number": "+15005550006", "messaging_service_sid": "MG1"},
        {"from_number": ""},
        {"from_number": "+15005550006", "body_template": "Welcome to BuildXpert"},
        {"from_number": "+15005550006", "body_template": "{code} {user}"},
        {"from_number": "+15005550006", "body_template": "{code} {}"},
        {"from_number": "+15005550006", "body_template": "{code"},
        {"from_number": "+15005550006", "body_template": "{code}" + "x" * 1600},
        {"from_number": "+15005550006", "base_url": "ftp://api.twilio.com"},
    ],
)
def test_twilio_refuses_a_bad_configuration(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TwilioSender("AC1", "token", **options)


@pytest.mark.parametrize("make", [Msg91Sender, TwilioSender], ids=["msg91", "twilio"])
@pytest.mark.parametrize(
    "phone", ["919876543210", "+91 98765 43210", "+91abc", "+", "+9198765432101234"]
)
async def test_a_phone_not_in_e164_is_a_programming_error(make: type, phone: str) -> None:
    sender: Msg91Sender | TwilioSender
    if make is Msg91Sender:
        sender = Msg91Sender("key", "tpl", closed_port_url())
    else:
        sender = TwilioSender("AC1", "t", from_number="+15005550006", base_url=closed_port_url())
    try:
        with pytest.raises(ValueError, match="not an E.164"):
            await sender.send_code(phone, CODE, TTL)
    finally:
        await sender.close()


# --- What the senders share --------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("+919876543210", "+9198******10"),
        ("+14155552671", "+1415*****71"),
        ("+4930123456", "+4930****56"),
        ("+1234567", "******67"),
        ("", ""),
    ],
)
def test_mask_phone(phone: str, masked: str) -> None:
    assert mask_phone(phone) == masked


def test_the_redactor_masks_the_phone_and_removes_the_code() -> None:
    redact = Redactor(CODE, PHONE)
    text = f"to {PHONE} / {MOBILE}: your code {CODE}"
    assert redact(text) == f"to {MASKED} / {MASKED[1:]}: your code [code]"
    assert CODE not in repr(redact) and PHONE not in repr(redact)
    assert Redactor("", "")("unchanged") == "unchanged"


@pytest.mark.parametrize(("ttl", "stated"), [(300, 5), (299, 4), (59, 1), (0, 1), (3600, 60)])
def test_the_lifetime_is_stated_in_whole_minutes_rounded_down(ttl: int, stated: int) -> None:
    assert minutes(ttl) == stated


def test_error_tree() -> None:
    assert issubclass(SmsUnavailable, SmsError) and issubclass(SmsRefused, SmsError)
    assert SmsUnavailable.retryable and not SmsRefused.retryable and not SmsError.retryable


# --- The code is in no log record and no error -------------------------------------------

OUTCOMES = ["sent", "bad-credentials", "invalid-number", "echo", "throttled", "down", "timeout"]


def _msg91_case(fake: FakeMsg91, outcome: str) -> Msg91Sender:
    options: dict[str, Any] = {}
    match outcome:
        case "bad-credentials":
            options["authkey"] = "wrong"
        case "invalid-number":
            fake.invalid_numbers.add(MOBILE)
        case "echo":  # a gateway that repeats what it got
            fake.script = [msg91_error(400, f"Bad value {CODE} for otp, mobiles {MOBILE}")]
        case "throttled":
            fake.script = [msg91_error(429, f"Too many codes for {MOBILE}: {CODE}")]
        case "down":
            fake.script = [msg91_fake.Reply(500, f"<pre>{CODE} {PHONE}</pre>".encode())]
        case "timeout":
            fake.script = [msg91_fake.hang()]
            options["timeout"] = 0.2
    return msg91_sender(fake, **options)


def _twilio_case(fake: FakeTwilio, outcome: str) -> TwilioSender:
    options: dict[str, Any] = {}
    match outcome:
        case "bad-credentials":
            options["auth_token"] = "wrong"
        case "invalid-number":
            fake.invalid_numbers.add(PHONE)
        case "echo":
            fake.script = [twilio_error(400, 21617, f"Body 'Your code {CODE}' to {PHONE}")]
        case "throttled":
            fake.script = [twilio_error(429, 20429, f"Too many requests for {PHONE}: {CODE}")]
        case "down":
            fake.script = [twilio_fake.Reply(503, f"{CODE} {PHONE}".encode())]
        case "timeout":
            fake.script = [twilio_fake.hang()]
            options["timeout"] = 0.2
    return twilio_sender(fake, **options)


def _everything_written(error: BaseException) -> str:
    """What a log of this error could show: message, repr, attributes, and the whole
    chain of causes as a traceback prints it."""
    return "\n".join(
        [
            str(error),
            repr(error),
            repr(error.args),
            repr(vars(error)),
            "".join(traceback.format_exception(error)),
        ]
    )


@pytest.mark.parametrize("outcome", OUTCOMES)
@pytest.mark.parametrize("provider", ["msg91", "twilio"])
async def test_the_code_is_in_no_log_record_and_no_error(
    msg91: FakeMsg91,
    twilio: FakeTwilio,
    closing: Closing,
    caplog: pytest.LogCaptureFixture,
    provider: str,
    outcome: str,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: ours, httpx, httpcore, aiohttp
    sender: Msg91Sender | TwilioSender = closing(
        _msg91_case(msg91, outcome) if provider == "msg91" else _twilio_case(twilio, outcome)
    )
    error: SmsError | None = None
    try:
        await sender.send_code(PHONE, CODE, TTL)
    except SmsError as exc:
        error = exc
    assert (error is None) == (outcome == "sent")

    written = [f.format(r) for r in caplog.records for f in (JsonFormatter(), TextFormatter())]
    assert any("httpx" in line or "httpcore" in line for line in written)  # DEBUG was on
    if error is not None:
        written.append(_everything_written(error))
    written.append(repr(sender))
    for text in written:
        assert CODE not in text
        assert MOBILE not in text  # the phone is masked wherever it appears

    [ours] = [r for r in caplog.records if r.name == "rtc.auth.sms"]
    assert ours.phone == MASKED  # type: ignore[attr-defined]
    assert ours.provider == provider  # type: ignore[attr-defined]
    assert isinstance(ours.latency_ms, float)  # type: ignore[attr-defined]
    if error is None:
        assert ours.levelno == logging.INFO
        fake_ids = (
            [sms.request_id for sms in msg91.inbox]
            if provider == "msg91"
            else [m.sid for m in twilio.messages]
        )
        assert [ours.message_id] == fake_ids  # type: ignore[attr-defined]
    else:
        assert ours.levelno == logging.WARNING
        assert ours.error == error.code  # type: ignore[attr-defined]
