"""Signalling over real sockets: offers, answers and candidates from one party's
device to the other's only, their validation, relay-only address privacy and TURN
credentials; the admins' live view of calls."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from rtc_server.app import App
from rtc_server.client import RtcClient

from .admins import login_admin
from .calls import booked, connected_call, ended, live_of, start, step
from .conftest import AppFactory, Clients, CodeLog, ws_url
from .market import next_of, refused

HOST = "candidate:1 1 udp 2130706431 192.168.1.20 50000 typ host"
RELAY = "candidate:3 1 udp 16777215 127.0.0.1 61000 typ relay raddr 203.0.113.7 rport 40000"
OFFER = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
SECRET = "turn-secret-for-tests-0123456789"


def sdp_with_candidates() -> str:
    return OFFER + "c=IN IP4 192.168.1.20\r\na=" + HOST + "\r\na=" + RELAY + "\r\n"


async def signal(client: RtcClient, call_id: int, **params: Any) -> Any:
    return await client.call("calls.signal", {"callId": call_id, **params})


async def test_signals_go_from_device_to_device_and_an_answer_connects_the_call(
    clients: Clients, app: App
) -> None:
    b = await booked(clients, app)
    tablet = await RtcClient.connect(ws_url(app))
    clients.opened.append(tablet)
    await tablet.authenticate(b.m.provider_tokens["accessToken"])
    call_id = await connected_call(b)  # answered on the provider's first device
    offer = {"type": "offer", "sdp": sdp_with_candidates()}
    assert await signal(b.customer, call_id, description=offer) == {
        "relayed": True,
        "dropped": None,
    }
    got = await live_of(b.provider, "call.signal")
    assert got == {"callId": call_id, "description": offer}  # open policy: as sent
    await signal(b.provider, call_id, description={"type": "answer", "sdp": OFFER})
    assert (await live_of(b.customer, "call.signal"))["description"]["type"] == "answer"
    for client in (b.customer, b.provider):
        connected = await next_of(client, "call.connected")
        assert connected["call"]["state"] == "connected"
    candidate = {"candidate": HOST, "sdpMid": "0", "sdpMLineIndex": 0}
    await signal(b.provider, call_id, candidate=candidate)
    assert (await live_of(b.customer, "call.signal"))["candidate"] == candidate
    await signal(b.customer, call_id, candidate={"candidate": ""})  # end of candidates
    assert (await live_of(b.provider, "call.signal"))["candidate"] == {"candidate": ""}
    # The provider's other device saw none of it.
    assert not [e for e in tablet.received if e.method == "call.signal"]
    await step(b.provider, "calls.hangup", call_id)
    await ended(b.customer, call_id)


async def test_signals_are_validated_and_only_parties_devices_in_valid_states_may_send(
    clients: Clients, app: App
) -> None:
    b = await booked(clients, app)
    ringing = (await start(b.customer, b.booking_id))["callId"]
    early = await refused(
        b.customer, "calls.signal", {"callId": ringing, "candidate": {"candidate": HOST}}
    )
    assert early.name == "state_conflict" and early.data["status"] == "ringing"
    await step(b.provider, "calls.accept", ringing)
    call_id = ringing
    stranger, _ = await clients.login()
    other_device = await RtcClient.connect(ws_url(app))
    clients.opened.append(other_device)
    await other_device.authenticate(b.m.customer_tokens["accessToken"])
    cases: list[tuple[RtcClient, dict[str, Any], str]] = [
        (stranger, {"candidate": {"candidate": HOST}}, "not_found"),
        (other_device, {"candidate": {"candidate": HOST}}, "forbidden"),
        (b.customer, {"candidate": {"candidate": "candidate:x"}}, "invalid_params"),
        (b.customer, {"candidate": {"candidate": HOST + "\r\na=x"}}, "invalid_params"),
        (b.customer, {}, "invalid_params"),
        (
            b.customer,
            {"candidate": {"candidate": HOST}, "description": {"type": "offer", "sdp": OFFER}},
            "invalid_params",
        ),
        (b.customer, {"description": {"type": "pranswer", "sdp": OFFER}}, "invalid_params"),
        (b.customer, {"description": {"type": "offer", "sdp": "x" * 16385}}, "invalid_params"),
    ]
    for client, params, name in cases:
        error = await refused(client, "calls.signal", {"callId": call_id, **params})
        assert error.name == name, (params, error)
    assert not [e for e in b.provider.received if e.method == "call.signal"]
    await step(b.customer, "calls.hangup", call_id)
    after = await refused(
        b.customer, "calls.signal", {"callId": call_id, "candidate": {"candidate": HOST}}
    )
    assert after.name == "state_conflict" and after.data["status"] == "ended"


async def test_relay_only_hides_addresses_and_hands_out_turn_credentials(
    make_app: AppFactory, code_log: CodeLog
) -> None:
    turn = "turn:127.0.0.1:3478?transport=udp"
    app = await make_app(calls={"turn_urls": [turn], "turn_secret": SECRET, "turn_ttl": 600})
    clients = Clients(app, code_log)
    try:
        b = await booked(clients, app)
        started = await start(b.customer, b.booking_id)
        call_id = started["callId"]
        assert started["policy"] == "relay-only"
        incoming = await next_of(b.provider, "call.incoming")
        assert incoming["policy"] == "relay-only"
        for servers, user_id in (
            (started["iceServers"], b.m.customer_id),
            (incoming["iceServers"], b.m.provider_id),
        ):
            [server] = servers
            assert server["urls"] == [turn]
            expiry, owner = server["username"].split(":")
            assert owner == str(user_id) and 590 < int(expiry) - time.time() <= 600
            digest = hmac.new(SECRET.encode(), server["username"].encode(), hashlib.sha1)
            assert server["credential"] == base64.b64encode(digest.digest()).decode()
        await step(b.provider, "calls.accept", call_id)

        dropped = await signal(b.customer, call_id, candidate={"candidate": HOST})
        assert dropped["relayed"] is False and "relay-only" in dropped["dropped"]
        await signal(b.customer, call_id, candidate={"candidate": RELAY})
        got = await live_of(b.provider, "call.signal")
        assert got["candidate"]["candidate"] == RELAY.replace(
            "raddr 203.0.113.7 rport 40000", "raddr 0.0.0.0 rport 0"
        )
        await signal(
            b.customer, call_id, description={"type": "offer", "sdp": sdp_with_candidates()}
        )
        sdp = (await live_of(b.provider, "call.signal"))["description"]["sdp"]
        assert "192.168.1.20" not in sdp and "203.0.113.7" not in sdp and "typ relay" in sdp
        # Nothing the provider received carries the customer's addresses.
        assert not [e for e in b.provider.received if "192.168.1.20" in str(e.params)]
    finally:
        await clients.close()


async def test_admins_watch_every_call_event_live_after_a_replay(
    clients: Clients, app: App
) -> None:
    b = await booked(clients, app)
    earlier = (await start(b.customer, b.booking_id))["callId"]
    admin, _ = await login_admin(clients)
    not_admin = await refused(b.customer, "admin.calls.watch", {})
    assert not_admin.name == "forbidden"
    watching = await admin.call("admin.calls.watch", {})
    assert [(e["callId"], e["event"]) for e in watching["replayed"]] == [(earlier, "ringing")]
    await step(b.provider, "calls.accept", earlier)
    live = await live_of(admin, "admin.call.event")
    assert (live["callId"], live["event"], live["actor"]) == (earlier, "accepted", "callee")
    assert live["data"]["state"] == "accepted" and live["data"]["bookingId"] == b.booking_id

    active = await admin.call("admin.calls.active", {})
    [call] = active["calls"]
    assert (call["callId"], call["state"]) == (earlier, "accepted")
    assert (call["callerId"], call["calleeId"]) == (b.m.customer_id, b.m.provider_id)
    await step(b.customer, "calls.hangup", earlier)
    live = await live_of(admin, "admin.call.event")
    assert (live["event"], live["data"]["reason"]) == ("ended", "hangup")
    assert (await admin.call("admin.calls.active", {}))["calls"] == []
    detail = await admin.call("admin.calls.get", {"callId": earlier})
    assert [e["event"] for e in detail["events"]] == ["ringing", "accepted", "ended"]
    assert detail["call"]["endReason"] == "hangup" and detail["call"]["endedBy"] == "caller"
    listed = await admin.call("admin.calls.list", {"bookingId": b.booking_id})
    assert [c["callId"] for c in listed["calls"]] == [earlier]
    assert listed["nextCursor"] is None
    missing = await refused(admin, "admin.calls.get", {"callId": 10**9})
    assert missing.name == "not_found"
    await admin.call("admin.calls.unwatch", {})
    await start(b.customer, b.booking_id)
    await next_of(b.provider, "call.incoming")
    await admin.call("system.ping", {})  # a round trip: an event would have come first
    assert [e.method for e in admin.received].count("admin.call.event") == 2
