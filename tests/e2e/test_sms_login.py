"""Logging in in production: codes go out through a real SMS gateway client (MSG91,
Twilio) to a local server speaking its API, and never reach a log at any level."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from api.payments.paytm.simulator import PaytmSimulator
from kernel.clock import FakeClock
from kernel.settings import ConfigError
from rtc_server.client import RpcCallError, RtcClient
from rtc_server.logs import JsonFormatter, TextFormatter
from tests.fakes.msg91 import FakeMsg91, Reply, msg91_error
from tests.fakes.twilio import FakeTwilio

from .conftest import AppFactory, ws_url
from .production import code_in, production, sms_by_twilio


class Everything(logging.Handler):
    """Every record of every logger, formatted as both log formats would write it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self._formatters = [JsonFormatter(), TextFormatter()]

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("websockets.client"):
            return  # the test's own client, not the server
        self.lines += [f.format(record) for f in self._formatters]


@pytest.fixture
def logs() -> Iterator[Everything]:
    handler = Everything()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(previous)


async def refused(client: RtcClient, method: str, params: dict[str, Any]) -> RpcCallError:
    with pytest.raises(RpcCallError) as error:
        await client.call(method, params)
    return error.value


async def test_production_login_by_msg91_never_logs_the_code(
    make_app: AppFactory, msg91: FakeMsg91, paytm: PaytmSimulator, logs: Everything
) -> None:
    app = await make_app(**production(msg91, paytm))
    client = await RtcClient.connect(ws_url(app))
    try:
        asked = await client.call("auth.requestOtp", {"phone": "98765 43210", "role": "customer"})
        assert asked["sent"] is True
        [sms] = msg91.to("919876543210")
        code = sms.variables["otp"]
        assert sms.text.startswith(f"{code} is your BuildXpert login code. It expires in 5 ")
        wrong = "000000" if code != "000000" else "111111"
        await refused(
            client, "auth.verifyOtp", {"phone": "9876543210", "role": "customer", "code": wrong}
        )
        tokens = await client.login("9876543210", "customer", code)
        assert tokens["user"]["phone"] == "+919876543210"
    finally:
        await client.close()
    assert any("sms sent" in line for line in logs.lines)  # the capture works
    leaked = [line for line in logs.lines if code in line or wrong in line]
    assert leaked == []


async def test_production_login_by_twilio(
    make_app: AppFactory, msg91: FakeMsg91, twilio: FakeTwilio, paytm: PaytmSimulator
) -> None:
    app = await make_app(**production(msg91, paytm, auth=sms_by_twilio(twilio)))
    client = await RtcClient.connect(ws_url(app))
    try:
        await client.call("auth.requestOtp", {"phone": "9876543210", "role": "provider"})
        [message] = twilio.to("+919876543210")
        code = message.body.split("code is ")[1][:6]
        tokens = await client.login("9876543210", "provider", code)
        assert tokens["user"]["role"] == "provider"
    finally:
        await client.close()
    assert msg91.inbox == []


async def test_the_log_sender_is_refused_in_production(
    make_app: AppFactory, msg91: FakeMsg91, paytm: PaytmSimulator
) -> None:
    settings = production(msg91, paytm)
    settings["auth"] = {"sms_sender": "log"}
    with pytest.raises(ConfigError, match="auth.sms_sender"):
        await make_app(**settings)


async def test_a_number_the_gateway_refuses_is_invalid_and_not_counted(
    make_app: AppFactory, msg91: FakeMsg91, paytm: PaytmSimulator
) -> None:
    app = await make_app(**production(msg91, paytm))
    msg91.invalid_numbers.add("919876543210")
    client = await RtcClient.connect(ws_url(app))
    try:
        for _ in range(2):  # no cooldown started: nothing was sent
            error = await refused(
                client, "auth.requestOtp", {"phone": "9876543210", "role": "customer"}
            )
            assert error.code == -32602 and error.data["reason"] == "undeliverable"
        assert app.db is not None
        assert await app.db.fetchval("SELECT count(*) FROM otp_sends") == 0
    finally:
        await client.close()


async def test_a_gateway_outage_is_retryable_and_an_account_fault_is_logged(
    make_app: AppFactory,
    msg91: FakeMsg91,
    paytm: PaytmSimulator,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = await make_app(**production(msg91, paytm))
    client = await RtcClient.connect(ws_url(app))
    ask = {"phone": "9876543210", "role": "customer"}
    try:
        msg91.script.append(Reply(503, b"upstream down"))
        error = await refused(client, "auth.requestOtp", ask)
        assert error.name == "unavailable" and error.data["retryable"] is True
        # It may have gone out: it stays counted (the cooldown holds).
        error = await refused(client, "auth.requestOtp", ask)
        assert error.name == "rate_limited" and error.data["reason"] == "cooldown"
        clock.advance(31)
        msg91.script.append(msg91_error(401, "AuthenticationFailure", "401"))
        with caplog.at_level(logging.ERROR, "rtc.auth"):
            error = await refused(client, "auth.requestOtp", ask)
        assert error.name == "unavailable"
        assert "sms gateway refused a login code" in caplog.text
        # Refused: not sent, not counted; the next one goes out at once.
        await client.call("auth.requestOtp", ask)
        await client.login("9876543210", "customer", code_in(msg91, "9876543210"))
    finally:
        await client.close()
    sent = app.metrics.registry.get_sample_value
    assert sent("rtc_otp_sms_total", {"outcome": "unavailable"}) == 1
    assert sent("rtc_otp_sms_total", {"outcome": "refused"}) == 1
    assert sent("rtc_otp_sms_total", {"outcome": "sent"}) == 1
