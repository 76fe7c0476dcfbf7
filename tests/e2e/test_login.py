"""Login over a real socket: codes, tokens, sessions, and every way it can be refused."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from websockets.exceptions import InvalidStatus

from kernel.clock import FakeClock
from kernel.errors import CloseCode
from rtc_server.app import App
from rtc_server.client import RpcCallError, RtcClient
from storage import accounts

from .conftest import AppFactory, Clients, CodeLog, e164, ws_url


async def test_login_with_sms_code_then_authenticated_calls(
    clients: Clients, code_log: CodeLog
) -> None:
    client = await clients.anonymous()
    answer = await client.call("auth.requestOtp", {"phone": "98765 43210", "role": "customer"})
    assert answer == {"sent": True, "expiresInSeconds": 300, "resendAfterSeconds": 30}
    code = code_log.last("+919876543210")
    assert len(code) == 6 and code.isdigit()

    tokens = await client.call(
        "auth.verifyOtp",
        {
            "phone": "+91 9876543210",
            "role": "customer",
            "code": code,
            "fullName": "Asha Rao",
            "device": {"deviceId": "pixel-7", "platform": "android"},
        },
    )
    assert tokens["user"]["phone"] == "+919876543210"
    assert tokens["user"]["fullName"] == "Asha Rao" and tokens["user"]["isVerified"]
    bound = await client.authenticate(tokens["accessToken"])
    assert bound["userId"] == tokens["user"]["id"] and bound["role"] == "customer"
    sessions = await client.call("auth.sessions")
    (session,) = sessions["sessions"]
    assert session["current"] and session["device"]["deviceId"] == "pixel-7"


async def test_code_is_single_use(clients: Clients, code_log: CodeLog) -> None:
    phone = clients.new_phone()
    client = await clients.anonymous()
    await client.call("auth.requestOtp", {"phone": phone, "role": "provider"})
    code = code_log.last(e164(phone))
    await client.call("auth.verifyOtp", {"phone": phone, "role": "provider", "code": code})
    with pytest.raises(RpcCallError) as refused:
        await client.call("auth.verifyOtp", {"phone": phone, "role": "provider", "code": code})
    assert refused.value.name == "invalid_code" and refused.value.data["reason"] == "no_code"


async def test_concurrent_verifies_of_one_code_log_in_once(
    clients: Clients, code_log: CodeLog
) -> None:
    phone = clients.new_phone()
    sockets = [await clients.anonymous() for _ in range(4)]
    await sockets[0].call("auth.requestOtp", {"phone": phone, "role": "customer"})
    code = code_log.last(e164(phone))
    results = await asyncio.gather(
        *(
            s.call("auth.verifyOtp", {"phone": phone, "role": "customer", "code": code})
            for s in sockets
        ),
        return_exceptions=True,
    )
    assert sum(isinstance(r, dict) for r in results) == 1
    assert all(
        isinstance(r, RpcCallError) and r.name == "invalid_code"
        for r in results
        if not isinstance(r, dict)
    )


async def test_wrong_codes_count_down_then_the_code_dies(
    clients: Clients, code_log: CodeLog, clock: FakeClock
) -> None:
    phone = clients.new_phone()
    client = await clients.anonymous()
    await client.call("auth.requestOtp", {"phone": phone, "role": "customer"})
    right = code_log.last(e164(phone))
    wrong = "000000" if right != "000000" else "111111"
    left = []
    for _ in range(5):
        with pytest.raises(RpcCallError) as refused:
            await client.call("auth.verifyOtp", {"phone": phone, "role": "customer", "code": wrong})
        assert refused.value.data["reason"] == "wrong_code"
        left.append(refused.value.data["attemptsLeft"])
    assert left == [4, 3, 2, 1, 0]  # the fifth killed it
    with pytest.raises(RpcCallError) as dead:
        await client.call("auth.verifyOtp", {"phone": phone, "role": "customer", "code": right})
    assert dead.value.data["reason"] == "no_code"
    # Nothing is locked: a fresh code (after the resend cooldown) logs in.
    clock.advance(31)
    await client.call("auth.requestOtp", {"phone": phone, "role": "customer"})
    tokens = await client.login(phone, "customer", code_log.last(e164(phone)))
    assert tokens["user"]["phone"] == e164(phone)


async def test_expired_code_is_refused(
    clients: Clients, code_log: CodeLog, clock: FakeClock
) -> None:
    phone = clients.new_phone()
    client = await clients.anonymous()
    await client.call("auth.requestOtp", {"phone": phone, "role": "customer"})
    clock.advance(301)
    with pytest.raises(RpcCallError) as refused:
        await client.call(
            "auth.verifyOtp",
            {"phone": phone, "role": "customer", "code": code_log.last(e164(phone))},
        )
    assert refused.value.data["reason"] == "expired"


async def test_resend_cooldown_and_phone_cap(clients: Clients, clock: FakeClock) -> None:
    phone = clients.new_phone()
    client = await clients.anonymous()
    await client.call("auth.requestOtp", {"phone": phone, "role": "customer"})
    with pytest.raises(RpcCallError) as cooldown:
        await client.call("auth.requestOtp", {"phone": phone, "role": "customer"})
    assert cooldown.value.data["reason"] == "cooldown"
    assert 0 < cooldown.value.data["retryAfterMs"] <= 30_000
    for _ in range(4):
        clock.advance(31)
        await client.call("auth.requestOtp", {"phone": phone, "role": "customer"})
    clock.advance(31)
    with pytest.raises(RpcCallError) as capped:
        await client.call("auth.requestOtp", {"phone": phone, "role": "customer"})
    assert capped.value.data["reason"] == "phone_cap"


async def test_invalid_phone_names_the_field(clients: Clients) -> None:
    client = await clients.anonymous()
    with pytest.raises(RpcCallError) as refused:
        await client.call("auth.requestOtp", {"phone": "12345", "role": "customer"})
    assert refused.value.code == -32602
    assert refused.value.data["fields"][0]["field"] == "phone"
    with pytest.raises(RpcCallError) as role:
        await client.call("auth.requestOtp", {"phone": "9876543210", "role": "root"})
    assert role.value.data["fields"][0]["field"] == "role"


async def test_admin_login_needs_an_admin_account(
    app: App, clients: Clients, code_log: CodeLog
) -> None:
    phone = clients.new_phone()
    client = await clients.anonymous()
    answer = await client.call("auth.requestOtp", {"phone": phone, "role": "admin"})
    assert answer["sent"] is True  # the same answer as for an existing account
    assert e164(phone) not in code_log.codes  # but no code went out
    assert app.db is not None
    await accounts.create_admin(app.db, e164(phone), "Ops")
    clock_free = await clients.anonymous()
    # Another phone avoids the resend cooldown of the first request.
    admin_phone = clients.new_phone()
    await accounts.create_admin(app.db, e164(admin_phone), "Ops 2")
    await clock_free.call("auth.requestOtp", {"phone": admin_phone, "role": "admin"})
    tokens = await clock_free.login(admin_phone, "admin", code_log.last(e164(admin_phone)))
    assert tokens["user"]["role"] == "admin"


async def test_anonymous_socket_may_only_call_public_methods(clients: Clients) -> None:
    client = await clients.anonymous()
    assert (await client.call("system.ping"))["pong"] is True
    assert (await client.call("rpc.discover"))["openrpc"].startswith("1.")
    for method in ("auth.sessions", "auth.logout", "events.ack"):
        params = {"seq": 1} if method == "events.ack" else None
        with pytest.raises(RpcCallError) as refused:
            await client.call(method, params)
        assert refused.value.code == 4001 and refused.value.data["reason"] == "missing"


async def test_bad_tokens_are_refused(app: App, clients: Clients) -> None:
    client = await clients.anonymous()
    with pytest.raises(RpcCallError) as refused:
        await client.authenticate("not.a.jwt")
    assert refused.value.data["reason"] == "token_invalid"
    with pytest.raises(InvalidStatus) as handshake:
        await RtcClient.connect(ws_url(app), access_token="garbage")
    assert handshake.value.response.status_code == 401


async def test_header_authentication_at_handshake(app: App, clients: Clients) -> None:
    _, tokens = await clients.login()
    client = await RtcClient.connect(ws_url(app), access_token=tokens["accessToken"])
    clients.opened.append(client)
    ready = await client.next_event(method="session.ready")
    assert ready.params["userId"] == tokens["user"]["id"]
    assert (await client.call("auth.sessions"))["sessions"]


async def test_token_in_url_is_refused(app: App) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await RtcClient.connect(ws_url(app) + "?access_token=abc")
    assert refused.value.response.status_code == 400


async def test_refresh_rotates_and_reuse_revokes_the_session(
    clients: Clients, clock: FakeClock
) -> None:
    client, tokens = await clients.login()
    fresh = await client.call("auth.refresh", {"refreshToken": tokens["refreshToken"]})
    assert fresh["refreshToken"] != tokens["refreshToken"]
    assert fresh["sessionId"] == tokens["sessionId"]
    clock.advance(31)  # past the retry grace: a second use is theft
    other = await clients.anonymous()
    with pytest.raises(RpcCallError) as reused:
        await other.call("auth.refresh", {"refreshToken": tokens["refreshToken"]})
    assert reused.value.data["reason"] == "token_reused"
    # The whole family is dead: the rotated token too, and the open socket is closed.
    with pytest.raises(RpcCallError) as dead:
        await other.call("auth.refresh", {"refreshToken": fresh["refreshToken"]})
    assert dead.value.data["reason"] in {"session_revoked", "token_reused"}
    assert await client.wait_closed() == CloseCode.SESSION_REVOKED


async def test_logout_closes_the_sockets_of_that_session_only(
    clients: Clients, code_log: CodeLog
) -> None:
    phone = clients.new_phone()
    phone_socket, _ = await clients.login(phone)
    tablet = await clients.anonymous()
    clients.app.clock.advance(31)  # type: ignore[attr-defined]
    await tablet.call("auth.requestOtp", {"phone": phone, "role": "customer"})
    await tablet.login(phone, "customer", code_log.last(e164(phone)))
    answer = await phone_socket.call("auth.logout")
    assert answer == {"ok": True, "revoked": 1}  # the answer arrives before the close
    assert await phone_socket.wait_closed() == CloseCode.SESSION_REVOKED
    assert (await tablet.call("system.ping"))["pong"]
    assert len((await tablet.call("auth.sessions"))["sessions"]) == 1
    with pytest.raises(InvalidStatus):
        await RtcClient.connect(ws_url(clients.app), access_token=phone_socket.access_token)


async def test_revoke_session_of_a_lost_phone(clients: Clients, code_log: CodeLog) -> None:
    phone = clients.new_phone()
    lost, lost_tokens = await clients.login(phone)
    clients.app.clock.advance(31)  # type: ignore[attr-defined]
    me = await clients.anonymous()
    await me.call("auth.requestOtp", {"phone": phone, "role": "customer"})
    await me.login(phone, "customer", code_log.last(e164(phone)))
    await me.call("auth.revokeSession", {"sessionId": lost_tokens["sessionId"]})
    assert await lost.wait_closed() == CloseCode.SESSION_REVOKED
    with pytest.raises(RpcCallError) as missing:
        await me.call("auth.revokeSession", {"sessionId": str(uuid.uuid4())})
    assert missing.value.name == "not_found"


async def test_expired_access_token_is_renewed_on_the_same_socket(
    clients: Clients, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, tokens = await clients.login()
    # The socket's token expires: calls are refused until it is renewed.
    conn = next(iter(clients.app.hub.connections))
    identity = conn.identity
    assert identity is not None
    from dataclasses import replace

    conn.bind(replace(identity, expires_at=0.0))
    with pytest.raises(RpcCallError) as expired:
        await client.call("auth.sessions")
    assert expired.value.data["reason"] == "token_expired"
    fresh = await client.call("auth.refresh", {"refreshToken": tokens["refreshToken"]})
    renewed = await client.authenticate(fresh["accessToken"])
    assert renewed["userId"] == tokens["user"]["id"]
    assert (await client.call("auth.sessions"))["sessions"]


async def test_logout_all_closes_every_device(clients: Clients, code_log: CodeLog) -> None:
    phone = clients.new_phone()
    first, _ = await clients.login(phone)
    clients.app.clock.advance(31)  # type: ignore[attr-defined]
    second, _ = await clients.login(phone)
    answer = await second.call("auth.logoutAll")
    assert answer["revoked"] == 2
    assert await first.wait_closed() == CloseCode.SESSION_REVOKED
    assert await second.wait_closed() == CloseCode.SESSION_REVOKED


async def test_code_cap_per_client_address(make_app: AppFactory, code_log: CodeLog) -> None:
    app = await make_app(auth={"otp_max_per_ip": 3})
    client = await RtcClient.connect(ws_url(app))
    phones = [f"98{n:08d}" for n in range(70000001, 70000005)]
    for phone in phones[:3]:
        await client.call("auth.requestOtp", {"phone": phone, "role": "customer"})
    with pytest.raises(RpcCallError) as capped:
        await client.call("auth.requestOtp", {"phone": phones[3], "role": "customer"})
    assert capped.value.data["reason"] == "ip_cap"
    await client.close()


async def test_client_address_behind_a_proxy(make_app: AppFactory, code_log: CodeLog) -> None:
    """Behind a trusted proxy, the cap counts the address the proxy saw, not the proxy's."""
    app = await make_app(auth={"otp_max_per_ip": 1}, server={"trusted_proxies": ["127.0.0.1"]})
    for n, address in enumerate(["203.0.113.7", "203.0.113.8"]):
        client = await RtcClient.connect(
            ws_url(app), additional_headers={"X-Forwarded-For": f"6.6.6.6, {address}"}
        )
        await client.call("auth.requestOtp", {"phone": f"987000000{n}", "role": "customer"})
        await client.close()
    spoofer = await RtcClient.connect(
        ws_url(app), additional_headers={"X-Forwarded-For": "203.0.113.99, 203.0.113.7"}
    )
    with pytest.raises(RpcCallError) as capped:
        await spoofer.call("auth.requestOtp", {"phone": "9870000009", "role": "customer"})
    assert capped.value.data["reason"] == "ip_cap"
    await spoofer.close()


async def test_refresh_retried_after_a_lost_answer_rotates_again(
    clients: Clients, clock: FakeClock
) -> None:
    """The phone sent auth.refresh, the answer was lost, it retries with the old token."""
    client, tokens = await clients.login()
    lost = await client.call("auth.refresh", {"refreshToken": tokens["refreshToken"]})
    clock.advance(5)
    retried = await client.call("auth.refresh", {"refreshToken": tokens["refreshToken"]})
    assert retried["sessionId"] == tokens["sessionId"]
    assert retried["refreshToken"] not in (lost["refreshToken"], tokens["refreshToken"])
    # Only the newest token lives on: the lost one was retired by the retry.
    clock.advance(60)
    with pytest.raises(RpcCallError) as stale:
        await client.call("auth.refresh", {"refreshToken": lost["refreshToken"]})
    assert stale.value.data["reason"] == "token_reused"


async def test_retries_do_not_stretch_the_refresh_grace(clients: Clients, clock: FakeClock) -> None:
    client, tokens = await clients.login()
    await client.call("auth.refresh", {"refreshToken": tokens["refreshToken"]})
    clock.advance(20)  # a retry 20 s after the first use: within the 30 s grace
    await client.call("auth.refresh", {"refreshToken": tokens["refreshToken"]})
    clock.advance(20)  # 40 s after the FIRST use, though only 20 s after the retry
    with pytest.raises(RpcCallError) as reused:
        await client.call("auth.refresh", {"refreshToken": tokens["refreshToken"]})
    assert reused.value.data["reason"] == "token_reused"


async def test_the_refresh_grace_covers_only_the_token_whose_answer_was_lost(
    clients: Clients, clock: FakeClock
) -> None:
    """T0 -> T1 (the phone got T1 and used it) -> T2: T0 presented again, even within
    the grace, is a replay of a stolen token, not a lost answer."""
    client, tokens = await clients.login()
    first = await client.call("auth.refresh", {"refreshToken": tokens["refreshToken"]})
    clock.advance(5)
    await client.call("auth.refresh", {"refreshToken": first["refreshToken"]})
    clock.advance(5)  # 10 s after T0's rotation: within the 30 s grace
    with pytest.raises(RpcCallError) as replayed:
        await client.call("auth.refresh", {"refreshToken": tokens["refreshToken"]})
    assert replayed.value.data["reason"] == "token_reused"
