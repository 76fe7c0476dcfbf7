"""Recorded calls through the real server: each party's aiortc peer connection ends at
the server, which forwards the audio both ways and records each leg; the recordings are
downloaded through signed links on the HTTP port and analysed.

Each party sends a known number of pre-encoded Opus packets of its own tone (caller
440 Hz, callee 660 Hz): each must hear the other's tone, and each leg's recording must
decode, last as long as what was sent (within 60 ms), and carry its party's tone.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rtc_server.client import RpcCallError, RtcClient
from tests.media_tools import decode_ogg, dominant_frequency

from .admins import login_admin
from .calls import Booked, booked, start, step
from .conftest import AppFactory, Clients
from .market import next_of
from .recorded import RecordedParty

pytestmark = pytest.mark.slow

CALLER_HZ, CALLEE_HZ = 440.0, 660.0
PACKETS = 100  # 2 s of audio per party
SENT_MS = PACKETS * 20
TOLERANCE_MS = 60
PARTIES = {"parties_may_download": True}


async def refused(client: RtcClient, method: str, params: dict[str, Any]) -> RpcCallError:
    with pytest.raises(RpcCallError) as error:
        await client.call(method, params)
    return error.value


async def recorded_call(
    b: Booked, *, caller_loss: float = 0.0
) -> tuple[int, RecordedParty, RecordedParty]:
    """A recorded call from the customer, both parties connected to the server, both
    tones sent in full and heard; then the customer hangs up."""
    started = await start(b.customer, b.booking_id, media="recorded")
    call_id = started["callId"]
    assert started["recordingNotice"] is True
    incoming = await next_of(b.provider, "call.incoming")
    assert (incoming["media"], incoming["recordingNotice"]) == ("recorded", True)
    await step(b.provider, "calls.accept", call_id)
    caller = RecordedParty(b.customer, hz=CALLER_HZ, packets=PACKETS)
    callee = RecordedParty(b.provider, hz=CALLEE_HZ, packets=PACKETS)
    try:
        assert (await caller.connect(call_id, loss=caller_loss))["relayed"] is True
        await callee.connect(call_id)
        await next_of(b.customer, "call.connected", timeout=10)
        async with asyncio.timeout(20):
            await asyncio.gather(caller.tone.done.wait(), callee.tone.done.wait())
        # The last packets are on their way (a network's worth of time, not a state).
        await asyncio.sleep(0.3)
        await step(b.customer, "calls.hangup", call_id)
    finally:
        await caller.close()
        await callee.close()
    return call_id, caller, callee


async def download(url: str, **headers: str) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        return response.status, await response.read(), dict(response.headers)


async def fetch_leg(client: RtcClient, recording_id: int, leg: str, folder: Path) -> Path:
    link = await client.call("recordings.link", {"recordingId": recording_id, "leg": leg})
    status, body, headers = await download(link["url"])
    assert status == 200, body
    assert headers["Content-Type"] == "audio/ogg"
    path = folder / f"{leg}.ogg"
    path.write_bytes(body)
    return path


def check_leg(path: Path, hz: float) -> None:
    samples = decode_ogg(path)
    duration_ms = len(samples) / 48
    assert abs(duration_ms - SENT_MS) <= TOLERANCE_MS, duration_ms
    assert abs(dominant_frequency(samples) - hz) < 10


async def test_a_recorded_call_forwards_both_ways_and_records_each_leg_completely(
    clients: Clients, make_app: AppFactory, tmp_path: Path
) -> None:
    app = await make_app(recordings=PARTIES)
    clients.app = app
    b = await booked(clients, app)
    call_id, caller, callee = await recorded_call(b)

    # Each party heard the other's tone, through the server.
    assert abs(dominant_frequency(caller.heard()) - CALLEE_HZ) < 10
    assert abs(dominant_frequency(callee.heard()) - CALLER_HZ) < 10

    ready = await next_of(b.customer, "recording.ready", timeout=10)
    assert ready["callId"] == call_id
    assert abs(ready["durationMs"] - SENT_MS) <= TOLERANCE_MS
    legs = {leg["leg"]: leg for leg in ready["legs"]}
    assert set(legs) == {"caller", "callee"}
    for leg in legs.values():
        assert leg["codec"] == "opus" and leg["lost"] == 0 and leg["error"] is None
        assert leg["packets"] >= PACKETS and leg["bytes"] > 0
    assert (await next_of(b.provider, "recording.ready"))["recordingId"] == ready["recordingId"]

    recording = await b.customer.call("recordings.get", {"recordingId": ready["recordingId"]})
    assert (recording["state"], recording["callId"]) == ("ready", call_id)
    for leg, hz in (("caller", CALLER_HZ), ("callee", CALLEE_HZ)):
        path = await fetch_leg(b.provider, ready["recordingId"], leg, tmp_path)
        check_leg(path, hz)
        import hashlib

        assert hashlib.sha256(path.read_bytes()).hexdigest() == legs[leg]["sha256"]

    # Admins see the trail: the call's events end with recording.ready.
    admin, _ = await login_admin(clients)
    detail = await admin.call("admin.calls.get", {"callId": call_id})
    assert [e["event"] for e in detail["events"]][-1] == "recording.ready"
    listed = await admin.call("admin.recordings.list", {"callId": call_id})
    assert [r["recordingId"] for r in listed["recordings"]] == [ready["recordingId"]]


async def test_a_recording_keeps_its_timeline_through_five_percent_packet_loss(
    clients: Clients, make_app: AppFactory, tmp_path: Path
) -> None:
    app = await make_app(recordings=PARTIES)
    clients.app = app
    b = await booked(clients, app)
    _, caller, _ = await recorded_call(b, caller_loss=0.05)
    assert caller.dropped  # the seeded loss did drop packets
    ready = await next_of(b.customer, "recording.ready", timeout=10)
    legs = {leg["leg"]: leg for leg in ready["legs"]}
    assert legs["caller"]["lost"] >= len(caller.dropped) - 1  # a lost last one is unknown
    path = await fetch_leg(b.customer, ready["recordingId"], "caller", tmp_path)
    check_leg(path, CALLER_HZ)
