"""The attacks of the security review, replayed against a real server: each was seen to
work before its fix (issue 16). Login-code attacks (lockout, toll fraud) are at the end.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from api.payments.paytm.simulator import PaytmSimulator
from kernel.clock import FakeClock
from kernel.errors import CloseCode
from kernel.rpc.registry import Caller, Empty, Encoded
from kernel.settings import ConfigError
from rtc_server.app import App
from rtc_server.client import RpcCallError, RtcClient
from tests.fakes.msg91 import FakeMsg91

from .conftest import AppFactory, Clients, CodeLog, ws_url
from .production import METRICS_TOKEN, production


def closes(app: App, code: str) -> float:
    value = app.metrics.registry.get_sample_value("rtc_socket_closes_total", {"code": code})
    return value or 0.0


# --- Connection abuse --------------------------------------------------------------


async def test_a_flood_of_anonymous_sockets_from_one_address_is_capped(
    make_app: AppFactory, code_log: CodeLog
) -> None:
    app = await make_app(server={"max_anonymous_per_ip": 20})
    clients = Clients(app, code_log)
    try:
        user, tokens = await clients.login()  # logged in: not counted
        flood = await asyncio.gather(*(RtcClient.connect(ws_url(app)) for _ in range(100)))
        clients.opened += flood
        codes = await asyncio.gather(
            *(c.wait_closed(timeout=0.5) for c in flood), return_exceptions=True
        )
        refused = [c for c in codes if c == CloseCode.RATE_ABUSE]
        assert len(refused) == 80  # the 21st and later
        assert app.sockets.admission.anonymous_from("127.0.0.1") == 20
        # Logged-in users are untouched, and may still log in from that address.
        assert (await user.call("system.ping"))["pong"] is True
        with_header = await RtcClient.connect(ws_url(app), access_token=tokens["accessToken"])
        clients.opened.append(with_header)
        assert (await with_header.call("me.get"))["id"] == tokens["user"]["id"]
        # A place freed (closed, or logged in) is a place for the next.
        alive = [c for c, code in zip(flood, codes, strict=True) if code != CloseCode.RATE_ABUSE]
        await alive[0].close()
        phone = clients.new_phone()
        await alive[1].call("auth.requestOtp", {"phone": phone, "role": "customer"})
        await alive[1].login(phone, "customer", code_log.last("+91" + phone[-10:]))
        async with asyncio.timeout(5):
            while app.sockets.admission.anonymous_from("127.0.0.1") != 18:
                await asyncio.sleep(0.01)
        two_more = [await RtcClient.connect(ws_url(app)) for _ in range(2)]
        clients.opened += two_more
        assert (await two_more[1].call("system.ping"))["pong"] is True
        counted = app.metrics.registry.get_sample_value(
            "rtc_handshakes_refused_total", {"reason": "anonymous_cap"}
        )
        assert counted == 80
    finally:
        await clients.close()


async def test_a_forged_forwarded_for_does_not_dodge_the_cap(make_app: AppFactory) -> None:
    """Without trusted proxies the header is the client's own: ignored."""
    app = await make_app(server={"max_anonymous_per_ip": 2})
    opened = [
        await RtcClient.connect(
            ws_url(app), additional_headers={"X-Forwarded-For": f"198.51.100.{n}"}
        )
        for n in range(3)
    ]
    try:
        assert await opened[2].wait_closed() == CloseCode.RATE_ABUSE
        assert app.sockets.admission.anonymous_from("127.0.0.1") == 2
    finally:
        await asyncio.gather(*(c.close() for c in opened))


async def test_browser_origins_must_be_allowed(make_app: AppFactory) -> None:
    app = await make_app(server={"allowed_origins": ["https://admin.buildxpert.example"]})
    with pytest.raises(InvalidStatus) as refused:
        await connect(ws_url(app), origin="https://evil.example")  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    async with connect(ws_url(app), origin="https://admin.buildxpert.example") as ws:  # type: ignore[arg-type]
        await ws.send('{"jsonrpc":"2.0","id":1,"method":"system.ping"}')
        assert b"pong" in (await ws.recv()).encode()
    async with connect(ws_url(app)) as ws:  # an app: no Origin
        await ws.send('{"jsonrpc":"2.0","id":1,"method":"system.ping"}')
        assert "pong" in str(await ws.recv())
    default = await make_app()
    with pytest.raises(InvalidStatus) as none_allowed:
        await connect(ws_url(default), origin="http://127.0.0.1:8080")  # type: ignore[arg-type]
    assert none_allowed.value.response.status_code == 403


async def test_discovery_is_encoded_once(clients: Clients) -> None:
    client = await clients.anonymous()
    first = await client.call("rpc.discover")
    assert first["openrpc"] and len(first["methods"]) > 50
    assert await client.call("rpc.discover") == first
    # Answered from one encoded document: no model is built or serialized per call.
    spec = clients.app.registry.get("rpc.discover")
    assert spec is not None
    answer = spec.handler(Caller(0, None), Empty())
    assert isinstance(answer, Encoded) and spec.handler(Caller(0, None), Empty()) is answer


async def test_client_close_codes_are_not_metric_labels(clients: Clients) -> None:
    app = clients.app
    for code in (4321, 3999, 4999):
        async with connect(ws_url(app)) as ws:
            await ws.close(code=code)
    client = await clients.anonymous()
    await client.close()  # 1000
    async with asyncio.timeout(5):
        while closes(app, "other") < 3 or closes(app, "1000") < 1:
            await asyncio.sleep(0.01)
    assert closes(app, "4321") == 0


# --- Safer defaults -----------------------------------------------------------------


async def test_metrics_need_their_token(make_app: AppFactory) -> None:
    app = await make_app(http={"metrics_token": METRICS_TOKEN})
    url = f"http://127.0.0.1:{app.http.port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/metrics") as answer:
            assert answer.status == 401
        wrong = {"Authorization": "Bearer " + "x" * len(METRICS_TOKEN)}
        async with http.get(f"{url}/metrics", headers=wrong) as answer:
            assert answer.status == 401
        right = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        async with http.get(f"{url}/metrics", headers=right) as answer:
            assert answer.status == 200 and "rtc_sockets_open" in await answer.text()
        async with http.get(f"{url}/healthz") as answer:  # load balancers need no token
            assert answer.status == 200


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"http": {"host": "0.0.0.0", "metrics_token": ""}}, "http.metrics_token"),
        ({"recordings": {"public_url": ""}}, "recordings.public_url"),
        ({"payments": {"public_url": ""}}, "payments.public_url"),
        ({"console": {"socket_url": ""}}, "console.socket_url"),
        ({"uploads": {"public_url": ""}}, "uploads.public_url"),
        ({"auth": {"sms_sender": "log"}}, "auth.sms_sender"),
    ],
)
async def test_production_refuses_development_defaults(
    make_app: AppFactory,
    msg91: FakeMsg91,
    paytm: PaytmSimulator,
    change: dict[str, dict[str, Any]],
    named: str,
) -> None:
    settings = production(msg91, paytm)
    for section, values in change.items():
        settings[section] = {**settings[section], **values} if section != "auth" else dict(values)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        await make_app(**settings)


async def test_a_production_server_starts_with_everything_set(
    make_app: AppFactory, msg91: FakeMsg91, paytm: PaytmSimulator, clock: FakeClock
) -> None:
    app = await make_app(**production(msg91, paytm))
    assert app.settings.server.environment == "production"


# --- Login codes --------------------------------------------------------------------


async def from_address(app: App, address: str) -> RtcClient:
    """A socket whose client address is ``address`` (behind the trusted proxy)."""
    return await RtcClient.connect(ws_url(app), additional_headers={"X-Forwarded-For": address})


async def guess(client: RtcClient, phone: str, code: str) -> RpcCallError:
    with pytest.raises(RpcCallError) as refused:
        await client.call("auth.verifyOtp", {"phone": phone, "role": "customer", "code": code})
    return refused.value


def wrong_for(code: str) -> str:
    return "000000" if code != "000000" else "111111"


BEHIND_PROXY = {"trusted_proxies": ["127.0.0.1"]}


async def test_an_attacker_cannot_lock_the_owner_out(
    make_app: AppFactory, code_log: CodeLog, clock: FakeClock
) -> None:
    app = await make_app(server=BEHIND_PROXY)
    phone = "9876500001"
    owner = await from_address(app, "203.0.113.10")
    attackers = [await from_address(app, f"198.51.100.{n}") for n in range(1, 4)]
    try:
        for attacker in attackers[:2]:
            # The owner asks for a code; an attacker elsewhere burns it (5 wrong).
            await owner.call("auth.requestOtp", {"phone": phone, "role": "customer"})
            code = code_log.last("+91" + phone)
            for _ in range(5):
                error = await guess(attacker, phone, wrong_for(code))
                assert error.name == "invalid_code"
            assert (await guess(owner, phone, code)).data["reason"] == "no_code"
            clock.advance(31)
        # The phone's guess budget (10 an hour from other addresses) is spent: the
        # owner's fresh code is no longer tried from anywhere but the owner's address,
        # not even with the right code.
        await owner.call("auth.requestOtp", {"phone": phone, "role": "customer"})
        code = code_log.last("+91" + phone)
        error = await guess(attackers[2], phone, code)
        assert error.name == "rate_limited" and error.data["reason"] == "phone_guesses"
        tokens = await owner.login(phone, "customer", code)
        assert tokens["user"]["phone"] == "+91" + phone
        refused = app.metrics.registry.get_sample_value
        assert refused("rtc_otp_refused_total", {"reason": "phone_guesses"}) == 1
        assert refused("rtc_otp_wrong_guesses_total") == 10
    finally:
        await asyncio.gather(owner.close(), *(a.close() for a in attackers))


async def test_one_address_guessing_many_phones_is_stopped(
    make_app: AppFactory, code_log: CodeLog
) -> None:
    app = await make_app(server=BEHIND_PROXY, auth={"otp_max_guesses_per_ip": 4})
    guesser = await from_address(app, "198.51.100.7")
    owners = [await from_address(app, f"203.0.113.{20 + n}") for n in range(2)]
    phones = ["9876500011", "9876500012"]
    try:
        for owner, phone in zip(owners, phones, strict=True):
            await owner.call("auth.requestOtp", {"phone": phone, "role": "customer"})
        first = code_log.last("+91" + phones[0])
        for _ in range(4):
            assert (await guess(guesser, phones[0], wrong_for(first))).name == "invalid_code"
        # Its budget is spent: no code is tried from it, the right one neither.
        second = code_log.last("+91" + phones[1])
        error = await guess(guesser, phones[1], second)
        assert error.name == "rate_limited" and error.data["reason"] == "ip_guesses"
        assert error.data["retryAfterMs"] > 0
        # The owners are not touched.
        await owners[1].login(phones[1], "customer", second)
        await owners[0].login(phones[0], "customer", first)
    finally:
        await asyncio.gather(guesser.close(), *(o.close() for o in owners))


async def test_toll_fraud_is_refused_by_region_and_prefix(
    make_app: AppFactory, code_log: CodeLog, caplog: pytest.LogCaptureFixture
) -> None:
    app = await make_app(server=BEHIND_PROXY, auth={"otp_max_per_prefix": 3})
    clients = [await from_address(app, f"198.51.100.{n}") for n in range(1, 6)]
    try:
        # A premium-rate country: not served, nothing sent.
        error = await refused_request(clients[0], "+44 7911 123456")
        assert error.code == -32602 and error.data["reason"] == "region"
        # Numbers of one range, each from its own address (the per-address cap does
        # not see it): the prefix cap does.
        for n, client in enumerate(clients[:3]):
            await client.call("auth.requestOtp", {"phone": f"98765432{n:02d}", "role": "customer"})
        with caplog.at_level(logging.WARNING, "rtc.auth"):
            error = await refused_request(clients[3], "9876543299")
        assert error.name == "rate_limited" and error.data["reason"] == "prefix_cap"
        [record] = [
            r
            for r in caplog.records
            if r.getMessage() == "login code limit reached" and r.__dict__["reason"] == "prefix_cap"
        ]
        assert record.__dict__["phone"] == "+9198******99"  # masked
        assert record.__dict__["prefix"] == "91987654"
        # Another range is not affected.
        await clients[4].call("auth.requestOtp", {"phone": "9123456780", "role": "customer"})
        assert code_log.last("+919123456780")
        counted = app.metrics.registry.get_sample_value
        assert counted("rtc_otp_refused_total", {"reason": "prefix_cap"}) == 1
        assert counted("rtc_otp_refused_total", {"reason": "region"}) == 1
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def refused_request(client: RtcClient, phone: str) -> RpcCallError:
    with pytest.raises(RpcCallError) as refused:
        await client.call("auth.requestOtp", {"phone": phone, "role": "customer"})
    return refused.value


# --- Relay-only hides addresses -----------------------------------------------------

HIDDEN = "203.0.113.77"  # the customer's own address, hidden in every way the review found
BYPASSES = [
    # The o= line.
    "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
    # Mixed line endings.
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\ns=-\r\nt=0 0\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
    "c=IN IP4 {ip}\na=candidate:1 1 udp 2130706431 {ip} 50000 typ host\n",
    # A c= line with a trailing space.
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
    "c=IN IP4 {ip} \r\n",
    # a=remote-candidates.
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
    "a=remote-candidates:1 {ip} 50000\r\n",
    # A relay candidate with raddr but no rport.
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
    "a=candidate:3 1 udp 16777215 127.0.0.1 61000 typ relay raddr {ip}\r\n",
]


async def test_relay_only_sdp_bypasses_are_closed(make_app: AppFactory, code_log: CodeLog) -> None:
    from .calls import booked, live_of, start, step

    app = await make_app(
        calls={
            "turn_urls": ["turn:127.0.0.1:3478?transport=udp"],
            "turn_secret": "turn-secret-for-tests-0123456789",
        }
    )
    clients = Clients(app, code_log)
    try:
        b = await booked(clients, app)
        call_id = (await start(b.customer, b.booking_id))["callId"]
        await step(b.provider, "calls.accept", call_id)
        for sdp in BYPASSES:
            await b.customer.call(
                "calls.signal",
                {"callId": call_id, "description": {"type": "offer", "sdp": sdp.format(ip=HIDDEN)}},
            )
            relayed = (await live_of(b.provider, "call.signal"))["description"]["sdp"]
            assert HIDDEN not in relayed, relayed
            assert "\n" not in relayed.replace("\r\n", "")  # CRLF only
        # Trickled: the address in the fields beside the candidate is refused.
        for field in ("sdpMid", "usernameFragment"):
            error = await refused_signal(b.customer, call_id, {"candidate": "", field: HIDDEN})
            assert error.code == -32602 and f"candidate.{field}" in str(error.data)
        error = await refused_signal(b.customer, call_id, {"candidate": f"a {HIDDEN}"})
        assert error.code == -32602
        assert not [e for e in b.provider.received if HIDDEN in str(e.params)]
    finally:
        await clients.close()


async def refused_signal(
    client: RtcClient, call_id: int, candidate: dict[str, Any]
) -> RpcCallError:
    with pytest.raises(RpcCallError) as refused:
        await client.call("calls.signal", {"callId": call_id, "candidate": candidate})
    return refused.value
