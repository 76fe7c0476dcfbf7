"""Recorded calls through the real server: each party's aiortc peer connection ends at
the server, which forwards the audio both ways and records each leg; the recordings are
downloaded through signed links on the HTTP port and analysed.

Each party sends a known number of pre-encoded Opus packets of its own tone (caller
440 Hz, callee 660 Hz): each must hear the other's tone, and each leg's recording must
decode, last as long as what was sent (within 60 ms), and carry its party's tone.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from multidict import CIMultiDict

from kernel.clock import FakeClock
from kernel.objects import PrefixedStore
from recordings import host as host_module
from recordings.feature import RecordingsFeature
from recordings.media import LEGS
from recordings.store import file_key
from rtc_server.client import RpcCallError, RtcClient
from storage.errors import DatabaseUnavailable
from storage.objects import LocalStore
from storage.objects.s3 import S3Store
from tests.media_tools import decode_ogg, dominant_frequency

from .admins import login_admin
from .calls import Booked, booked, live_of, start, step
from .conftest import AppFactory, Clients, Cluster, device
from .market import key, later, market, next_of
from .recorded import RecordedParty

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
    b: Booked,
    *,
    caller_loss: float = 0.0,
    packets: int = PACKETS,
    callee: RtcClient | None = None,
) -> tuple[int, RecordedParty, RecordedParty]:
    """A recorded call from the customer, both parties connected to the server, both
    tones sent in full and heard; then the customer hangs up. ``callee``: the
    provider's device that answers (another instance's, say)."""
    answering = callee or b.provider
    started = await start(b.customer, b.booking_id, media="recorded")
    call_id = started["callId"]
    assert started["recordingNotice"] is True
    incoming = await next_of(answering, "call.incoming")
    assert (incoming["media"], incoming["recordingNotice"]) == ("recorded", True)
    await step(answering, "calls.accept", call_id)
    caller = RecordedParty(b.customer, hz=CALLER_HZ, packets=packets)
    callee = RecordedParty(answering, hz=CALLEE_HZ, packets=packets)
    try:
        assert (await caller.connect(call_id, loss=caller_loss))["relayed"] is True
        await callee.connect(call_id)
        await next_of(b.customer, "call.connected", timeout=10)
        async with asyncio.timeout(20):
            await asyncio.gather(caller.tone.done.wait(), callee.tone.done.wait())
        # Hang up once the media host (the customer's instance, where the call
        # started) has every packet each party sent.
        host = b.m.app.feature(RecordingsFeature).media
        async with asyncio.timeout(5):
            while True:
                got = host.packets(call_id)
                assert got is not None, "the call's media is not where the call started"
                if got["caller"] >= caller.sent() and got["callee"] >= callee.sent():
                    break
                await asyncio.sleep(0.02)
        await step(b.customer, "calls.hangup", call_id)
    finally:
        await caller.close()
        await callee.close()
    return call_id, caller, callee


async def mixed_of(client: RtcClient, recording_id: int) -> Any:
    """The recording's mixed file, once the job that makes it after the call ran (the
    queue runs it at once; a recording has no event for it, so its state is polled)."""
    async with asyncio.timeout(15):
        while True:
            got = await client.call("recordings.get", {"recordingId": recording_id})
            if got["mixed"] is not None:
                return got["mixed"]
            await asyncio.sleep(0.05)


async def download(url: str, **headers: str) -> tuple[int, bytes, CIMultiDict[str]]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        return response.status, await response.read(), CIMultiDict(response.headers)


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
    assert (ready["callId"], ready["state"], ready["error"]) == (call_id, "ready", None)
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
        assert hashlib.sha256(path.read_bytes()).hexdigest() == legs[leg]["sha256"]

    # After the call a job mixes both legs into one file, each at its place in time.
    mixed = await mixed_of(b.customer, ready["recordingId"])
    path = await fetch_leg(b.customer, ready["recordingId"], "mixed", tmp_path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == mixed["sha256"]
    samples = decode_ogg(path)
    expected = max(leg["offsetMs"] + leg["durationMs"] for leg in legs.values())
    assert abs(len(samples) / 48 - expected) <= TOLERANCE_MS
    assert abs(mixed["durationMs"] - expected) <= TOLERANCE_MS
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / 48_000)
    for hz in (CALLER_HZ, CALLEE_HZ):  # both parties, about equally loud
        assert spectrum[np.abs(freqs - hz) < 5].max() > 0.5 * spectrum.max()

    # The operator's counters saw the call's packets.
    def packets(outcome: str) -> float:
        value = app.metrics.registry.get_sample_value(
            "rtc_recording_packets_total", {"outcome": outcome}
        )
        return value or 0.0

    assert packets("received") >= 2 * PACKETS
    assert packets("forwarded") >= 2 * PACKETS - 10
    assert packets("lost") == packets("dropped") == 0

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


SHORT = 25  # half a second: enough for the tests that are not about the audio


async def test_links_are_signed_expire_and_serve_ranges_and_retention_deletes(
    clients: Clients, make_app: AppFactory, clock: FakeClock
) -> None:
    app = await make_app(recordings={"link_ttl": 60, "retention_days": 30})
    clients.app = app
    b = await booked(clients, app)
    admin, _ = await login_admin(clients)
    await admin.call("admin.calls.watch", {})
    call_id, _, _ = await recorded_call(b, packets=SHORT)
    while (event := await live_of(admin, "admin.call.event", timeout=10))["event"] != (
        "recording.ready"
    ):
        pass
    assert (event["callId"], event["data"]["state"]) == (call_id, "ready")
    recording_id = event["data"]["recordingId"]
    # Parties may not download by default, and are not told it is ready.
    refusal = await refused(
        b.customer, "recordings.link", {"recordingId": recording_id, "leg": "caller"}
    )
    assert (refusal.name, refusal.data["reason"]) == ("forbidden", "recordings_admin_only")
    assert not [e for e in b.customer.received if e.method.startswith("recording.")]

    link = await admin.call("recordings.link", {"recordingId": recording_id, "leg": "caller"})
    url = link["url"]
    status, whole, headers = await download(url)
    assert status == 200 and whole.startswith(b"OggS")
    assert (headers["Accept-Ranges"], headers["Cache-Control"]) == ("bytes", "private, no-store")
    # A resumed download: the range only if the file is still the one it began with.
    status, part, _ = await download(url, Range="bytes=0-99", **{"If-Range": headers["ETag"]})
    assert (status, part) == (206, whole[:100])
    status, body, _ = await download(url, Range="bytes=0-99", **{"If-Range": '"changed"'})
    assert (status, body) == (200, whole)
    status, part, headers = await download(url, Range="bytes=0-99")
    assert (status, part, headers["Content-Range"]) == (
        206,
        whole[:100],
        f"bytes 0-99/{len(whole)}",
    )
    status, tail, _ = await download(url, Range=f"bytes={len(whole) - 10}-")
    assert (status, tail) == (206, whole[-10:])
    status, _, _ = await download(url, Range=f"bytes={len(whole) + 10}-")
    assert status == 416  # wrong range: refused
    # Tampered: another leg, another user, another expiry, a changed signature.
    for bad in (
        url.replace("/caller.ogg", "/callee.ogg"),
        url.replace("&u=", "&u=9"),
        url.replace("exp=", "exp=9"),
        url[:-2] + ("AA" if not url.endswith("AA") else "BB"),
        url.split("?")[0],
    ):
        status, body, _ = await download(bad)
        assert status == 403, (bad, body)
    clock.advance(61)  # expired, with a good signature
    status, body, _ = await download(url)
    assert (status, body) == (403, b'{"error": "link expired"}')

    # Retention: past 30 days the files go, the mixed one too, and the rows say so.
    await mixed_of(admin, recording_id)
    assert len(list((app.settings.data_dir / "objects/recordings").glob("**/*.ogg"))) == 3
    clock.advance(31 * 86400)
    fresh = await admin.call("recordings.link", {"recordingId": recording_id, "leg": "callee"})
    assert await app.feature(RecordingsFeature).service.enforce_retention() == 1
    status, _, _ = await download(fresh["url"])
    assert status == 410
    got = await admin.call("recordings.get", {"recordingId": recording_id})
    assert got["state"] == "deleted"
    assert not list((app.settings.data_dir / "objects/recordings").glob("**/*.ogg"))
    assert await app.feature(RecordingsFeature).service.enforce_retention() == 0


async def test_recorded_calls_are_capped_per_instance_and_can_be_switched_off(
    clients: Clients, make_app: AppFactory
) -> None:
    app = await make_app(recordings={"max_calls_per_instance": 1})
    clients.app = app
    first, second = await booked(clients, app), await booked(clients, app)
    await start(first.customer, first.booking_id, media="recorded")
    full = await refused(
        second.customer,
        "calls.start",
        {"idempotencyKey": key(), "bookingId": second.booking_id, "media": "recorded"},
    )
    assert (full.name, full.data["reason"], full.data["limit"]) == (
        "overloaded",
        "recordings_full",
        1,
    )
    direct = await start(second.customer, second.booking_id)  # direct calls are not capped
    assert direct["recordingNotice"] is False

    off = await make_app(recordings={"enabled": False})
    clients.app = off
    b = await booked(clients, off)
    unavailable = await refused(
        b.customer,
        "calls.start",
        {"idempotencyKey": key(), "bookingId": b.booking_id, "media": "recorded"},
    )
    assert (unavailable.name, unavailable.data["reason"]) == ("unprocessable", "media_unavailable")
    assert (
        await off.db.fetchval(
            "SELECT count(*) FROM call_sessions WHERE booking_id = $1", b.booking_id
        )
        == 0
    )  # type: ignore[union-attr]


async def test_bad_offers_are_refused_and_the_call_goes_on(
    clients: Clients, make_app: AppFactory
) -> None:
    app = await make_app()
    clients.app = app
    b = await booked(clients, app)
    call_id = (await start(b.customer, b.booking_id, media="recorded"))["callId"]
    await next_of(b.provider, "call.incoming")
    await step(b.provider, "calls.accept", call_id)
    answer = await refused(
        b.customer,
        "calls.signal",
        {"callId": call_id, "description": {"type": "answer", "sdp": "v=0"}},
    )
    assert answer.code == -32602 and "server answers" in str(answer.data)
    garbage = await refused(
        b.customer,
        "calls.signal",
        {"callId": call_id, "description": {"type": "offer", "sdp": "v=0\r\nnonsense"}},
    )
    assert (garbage.name, garbage.data["reason"]) == ("unprocessable", "bad_offer")
    video = await refused(
        b.customer,
        "calls.signal",
        {"callId": call_id, "description": {"type": "offer", "sdp": VIDEO_ONLY}},
    )
    assert (video.name, video.data["reason"]) == ("unprocessable", "bad_offer")
    # Still a working call: a real offer is answered.
    party = RecordedParty(b.customer, hz=CALLER_HZ, packets=SHORT)
    try:
        await party.connect(call_id)
    finally:
        await party.close()
    state = await app.db.fetchval("SELECT state FROM call_sessions WHERE id = $1", call_id)  # type: ignore[union-attr]
    assert state == "accepted"  # one leg answered: connected needs both


VIDEO_ONLY = "\r\n".join(
    [
        "v=0",
        "o=- 1 1 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "c=IN IP4 0.0.0.0",
        "a=rtpmap:96 VP8/90000",
        "a=mid:0",
        "a=sendrecv",
        "",
    ]
)


class DevFullStore(LocalStore):
    """The local store, but the caller leg's file is Linux's /dev/full: every write
    fails with ENOSPC, as on a full disk."""

    def temp_path(self, key: str) -> Path:
        path = super().temp_path(key)
        if key.endswith("/caller.ogg"):
            os.symlink("/dev/full", path)
        return path


async def test_a_full_disk_ends_the_recording_of_a_leg_not_the_call(
    clients: Clients, make_app: AppFactory, tmp_path: Path
) -> None:
    app = await make_app(recordings=PARTIES)
    recordings = app.feature(RecordingsFeature)
    store = PrefixedStore(DevFullStore(app.settings.data_dir / "objects"), "recordings/")
    recordings.media.store = recordings.service.store = store
    clients.app = app
    b = await booked(clients, app)
    call_id, caller, callee = await recorded_call(b, packets=SHORT)
    failed = await next_of(b.customer, "recording.failed", timeout=10)
    assert (failed["callId"], failed["leg"]) == (call_id, "caller")
    assert "disk full" in failed["reason"]
    # The call went on to its hangup, both ways.
    assert abs(dominant_frequency(callee.heard()) - CALLER_HZ) < 10
    ended_call = (await next_of(b.customer, "call.ended"))["call"]
    assert ended_call["endReason"] == "hangup"
    finished = await next_of(b.customer, "recording.ready", timeout=10)
    assert finished["state"] == "failed" and "caller" in finished["error"]
    # The callee's leg is complete; the recording says what failed.
    admin, _ = await login_admin(clients)
    page = await admin.call("admin.recordings.list", {"callId": call_id})
    (recording,) = page["recordings"]
    assert recording["state"] == "failed" and "caller" in recording["error"]
    legs = {leg["leg"]: leg for leg in recording["legs"]}
    assert legs["callee"]["error"] is None and legs["callee"]["bytes"] > 0
    path = await fetch_leg(admin, recording["recordingId"], "callee", tmp_path)
    assert abs(dominant_frequency(decode_ogg(path)) - CALLEE_HZ) < 10


async def test_a_recorded_call_across_instances_has_its_media_where_it_started(
    cluster: Cluster, tmp_path: Path
) -> None:
    a, b = await cluster(2, recordings=PARTIES)
    m = await market(a, a.app)
    booking = await m.customer.call("bookings.create", m.booking(later(a.app)))
    on_b = await device(b, m.provider_tokens)
    booked_call = Booked(m, booking["id"])
    call_id, caller, callee = await recorded_call(booked_call, packets=SHORT, callee=on_b)
    assert abs(dominant_frequency(caller.heard()) - CALLEE_HZ) < 10
    assert abs(dominant_frequency(callee.heard()) - CALLER_HZ) < 10
    ready = await next_of(on_b, "recording.ready", timeout=10)
    assert ready["callId"] == call_id
    assert (
        a.app.feature(RecordingsFeature).media.hosted == 0
        and b.app.feature(RecordingsFeature).media.hosted == 0
    )
    # The media was on A, where the call started (B's answer crossed the bus).
    assert a.app.db is not None
    instance = await a.app.db.fetchval(
        "SELECT instance_id FROM recordings WHERE call_id = $1", call_id
    )
    assert instance == a.app.devices.instance_id != b.app.devices.instance_id


async def test_with_s3_a_call_recorded_on_one_instance_is_mixed_and_served_by_another(
    cluster: Cluster, s3_objects: dict[str, Any], tmp_path: Path
) -> None:
    """Both instances on the S3 store (a real S3-protocol server) and nothing shared on
    disk: the call's media and legs are on A; A runs no jobs, so B mixes the legs it
    fetches from the bucket, and B serves the download, ranges included."""
    a, b = await cluster(2, recordings=PARTIES, objects=s3_objects)
    assert a.app.worker is not None
    await a.app.worker.stop()  # whatever is mixed, B mixes
    m = await market(a, a.app)
    booking = await m.customer.call("bookings.create", m.booking(later(a.app)))
    on_b = await device(b, m.provider_tokens)
    call_id, _, _ = await recorded_call(Booked(m, booking["id"]), callee=on_b)
    ready = await next_of(on_b, "recording.ready", timeout=10)
    assert (ready["callId"], ready["state"]) == (call_id, "ready")
    assert a.app.db is not None
    assert (
        await a.app.db.fetchval(
            "SELECT instance_id FROM recordings WHERE id = $1", ready["recordingId"]
        )
        == a.app.devices.instance_id
    )

    mixed = await mixed_of(on_b, ready["recordingId"])
    # The files are in the bucket, under the deployment's prefix; none is on disk.
    store = b.app.objects
    assert isinstance(store, S3Store)
    got = await on_b.call("recordings.get", {"recordingId": ready["recordingId"]})
    started = datetime.fromisoformat(got["startedAt"])
    for name in (*LEGS, "mixed"):
        info = await store.stat("recordings/" + file_key(started, call_id, name))
        assert info is not None and info.content_type == "audio/ogg", name
    assert not list(tmp_path.glob("**/*.ogg"))
    assert not list((tmp_path / "objects/.tmp").iterdir())  # no scratch file left behind

    link = await on_b.call("recordings.link", {"recordingId": ready["recordingId"], "leg": "mixed"})
    assert link["url"].startswith(b.app.kit.http_url())  # B's HTTP port answers
    status, whole, headers = await download(link["url"])
    assert status == 200 and headers["Content-Type"] == "audio/ogg"
    assert hashlib.sha256(whole).hexdigest() == mixed["sha256"]
    samples = decode_ogg(_write(tmp_path / "mixed.ogg", whole))
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / 48_000)
    for hz in (CALLER_HZ, CALLEE_HZ):  # both legs, mixed by B from A's files
        assert spectrum[np.abs(freqs - hz) < 5].max() > 0.5 * spectrum.max()
    status, part, headers = await download(link["url"], Range="bytes=100-1099")
    assert (status, part) == (206, whole[100:1100])
    assert headers["Content-Range"] == f"bytes 100-1099/{len(whole)}"
    status, _, headers = await download(link["url"], Range=f"bytes={len(whole)}-")
    assert (status, headers["Content-Range"]) == (416, f"bytes */{len(whole)}")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


async def test_recording_rows_wait_out_a_database_outage_and_no_file_outlives_retention(
    clients: Clients, make_app: AppFactory, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files of a finished call are stored before its rows are written. A database
    away for a moment is waited for; one that stays away leaves a recording that is
    marked failed, and whose files retention still finds and removes."""
    app = await make_app(recordings={"retention_days": 30})
    clients.app = app
    assert (
        app.feature(RecordingsFeature).media is not None
        and app.feature(RecordingsFeature).service is not None
    )
    app.feature(RecordingsFeature).media.finish_retry_delays = (0.01, 0.01)
    store = app.feature(RecordingsFeature).service.store
    real_finish = host_module.store_rows.finish
    outage = {"attempts": 0, "failing": 2}

    async def finish_in_outage(*args: Any, **kwargs: Any) -> bool:
        outage["attempts"] += 1
        if outage["failing"]:
            outage["failing"] -= 1
            raise DatabaseUnavailable("connection lost")
        return await real_finish(*args, **kwargs)

    monkeypatch.setattr(host_module.store_rows, "finish", finish_in_outage)
    admin, _ = await login_admin(clients)
    await admin.call("admin.calls.watch", {})
    b = await booked(clients, app)

    async def recording_of(call_id: int) -> dict[str, Any]:
        listed = await admin.call("admin.recordings.list", {"callId": call_id})
        (recording,) = listed["recordings"]
        return recording  # type: ignore[no-any-return]

    # Two failed attempts, then the database is back: the recording is complete.
    first_call, _, _ = await recorded_call(b, packets=SHORT)
    while (event := await live_of(admin, "admin.call.event", timeout=10))["event"] != (
        "recording.ready"
    ):
        pass
    assert event["callId"] == first_call
    first = await recording_of(first_call)
    assert (first["state"], outage["attempts"]) == ("ready", 3)
    await mixed_of(admin, first["recordingId"])

    # The database stays away past every retry: the files are stored, no rows say so.
    # (No event says so either: the operator's counter does.)
    outage.update(attempts=0, failing=1_000)
    failures = app.metrics.registry.get_sample_value("rtc_recording_failures_total")
    second_call, _, _ = await recorded_call(b, packets=SHORT)
    async with asyncio.timeout(10):
        while app.metrics.registry.get_sample_value("rtc_recording_failures_total") == failures:
            await asyncio.sleep(0.02)
    assert outage["attempts"] == 3
    second = await recording_of(second_call)
    assert second["state"] == "recording" and second["legs"] == []
    started = datetime.fromisoformat(second["startedAt"])
    orphans = [file_key(started, second_call, leg) for leg in LEGS]
    assert all([await store.stat(key) is not None for key in orphans])

    # Retention marks it failed once its call has been over for a while; at the end of
    # retention the files of both recordings go, the orphans included.
    clock.advance(11 * 60)
    assert await app.feature(RecordingsFeature).service.enforce_retention() == 0
    got = await admin.call("recordings.get", {"recordingId": second["recordingId"]})
    assert got["state"] == "failed"
    assert all([await store.stat(key) is not None for key in orphans])
    clock.advance(31 * 86400)
    assert await app.feature(RecordingsFeature).service.enforce_retention() == 2
    assert not list((app.settings.data_dir / "objects/recordings").glob("**/*.ogg"))
