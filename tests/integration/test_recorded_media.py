"""A recorded call's media path with real aiortc peers on loopback: each party hears
the other's tone through the server, and each leg's recording decodes, lasts as long as
what was sent (within 60 ms) and holds its own party's tone, with and without loss."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.sdp import SessionDescription

from recordings.media import Leg, LegResult, RecordedCall
from tests.media_tools import TonePeer, decode_ogg, dominant_frequency
from tests.waiting import until

pytestmark = pytest.mark.slow

TONES: dict[Leg, float] = {"caller": 440.0, "callee": 660.0}
SECONDS = 3
PACKETS = SECONDS * 50


async def recorded_call(
    tmp_path: Path, *, loss: float = 0.0
) -> tuple[dict[Leg, TonePeer], dict[Leg, LegResult], RecordedCall]:
    call = RecordedCall(1, leg_path=lambda leg: tmp_path / f"{leg}.ogg")
    peers = {leg: TonePeer(TONES[leg], PACKETS) for leg in TONES}
    try:
        for seed, (leg, peer) in enumerate(peers.items()):
            answer = await call.answer(leg, await peer.offer(loss=loss, seed=seed))
            (audio,) = SessionDescription.parse(answer).media
            assert [codec.name for codec in audio.rtp.codecs] == ["opus"]
            assert audio.ice_candidates  # the server's own, in the answer
            await peer.accept(answer)
        async with asyncio.timeout(SECONDS + 10):
            for peer in peers.values():
                await peer.tone.done.wait()
        # Every packet that was not dropped on purpose reaches the server.
        expected = {leg: PACKETS - len(peer.dropped) for leg, peer in peers.items()}
        await until(lambda: call.packets() == expected, timeout=2)
        results = await call.close()
    finally:
        await call.close()
        for peer in peers.values():
            await peer.close()
    return peers, results, call


def assert_recording(result: LegResult, leg: Leg, sent: int) -> None:
    assert result.error is None
    assert result.codec == "opus"
    assert result.path is not None and result.path.stat().st_size == result.bytes
    samples = decode_ogg(result.path)
    sent_ms = sent * 20
    assert abs(len(samples) / 48 - sent_ms) <= 60, (len(samples) / 48, sent_ms)
    assert abs(result.duration_ms - sent_ms) <= 60
    assert dominant_frequency(samples) == pytest.approx(TONES[leg], abs=5)


async def test_each_party_hears_the_other_and_each_leg_is_recorded(tmp_path: Path) -> None:
    peers, results, call = await recorded_call(tmp_path)

    for leg, peer in peers.items():
        other: Leg = "callee" if leg == "caller" else "caller"
        heard = peer.heard()
        assert len(heard) > 48_000  # more than a second of the other's tone
        assert dominant_frequency(heard) == pytest.approx(TONES[other], abs=5)
        result = results[leg]
        assert result.packets == PACKETS and result.lost == 0
        assert_recording(result, leg, PACKETS)
    assert call.state() == {"caller": "closed", "callee": "closed"}
    assert await call.close() == results  # idempotent


async def test_a_recording_keeps_its_timeline_through_packet_loss(tmp_path: Path) -> None:
    peers, results, _ = await recorded_call(tmp_path, loss=0.05)

    for leg, peer in peers.items():
        result = results[leg]
        assert 3 <= len(peer.dropped) <= 15  # about 5 % of 150, fixed by the seed
        assert result.packets == PACKETS - len(peer.dropped)
        # Loss at the very end cannot be told from the end of the call.
        trailing = 0
        while PACKETS - 1 - trailing in peer.dropped:
            trailing += 1
        assert result.lost == len(peer.dropped) - trailing
        assert_recording(result, leg, PACKETS)


async def connect(call: RecordedCall, leg: Leg, peer: TonePeer) -> None:
    await peer.accept(await call.answer(leg, await peer.offer()))


async def test_a_full_disk_stops_that_recording_only(tmp_path: Path) -> None:
    (tmp_path / "caller.ogg").symlink_to("/dev/full")
    failures: list[tuple[Leg, str]] = []
    call = RecordedCall(
        2,
        leg_path=lambda leg: tmp_path / f"{leg}.ogg",
        on_failure=lambda leg, reason: failures.append((leg, reason)),
    )
    peers = {leg: TonePeer(TONES[leg], 100) for leg in TONES}
    try:
        for leg, peer in peers.items():
            await connect(call, leg, peer)
        async with asyncio.timeout(12):
            for peer in peers.values():
                await peer.tone.done.wait()
        await until(lambda: call.packets() == {"caller": 100, "callee": 100}, timeout=2)
        results = await call.close()
    finally:
        await call.close()
        for peer in peers.values():
            await peer.close()

    assert failures == [("caller", "disk full")]  # once, though every packet failed
    assert results["caller"].error == "disk full" and results["caller"].path is None
    assert results["caller"].packets == 100  # the leg was still received...
    heard = peers["callee"].heard()  # ...and forwarded
    assert dominant_frequency(heard) == pytest.approx(TONES["caller"], abs=5)
    assert_recording(results["callee"], "callee", 100)


async def test_a_new_offer_replaces_the_connection_and_keeps_the_recording(
    tmp_path: Path,
) -> None:
    call = RecordedCall(3, leg_path=lambda leg: tmp_path / f"{leg}.ogg")
    first, second = TonePeer(440.0, 50), TonePeer(440.0, 50)
    try:
        await connect(call, "caller", first)
        async with asyncio.timeout(10):
            await first.tone.done.wait()
        started = first.tone.first_sent
        await first.close()  # the party's network went away; it comes back with an offer
        await asyncio.sleep(0.5)  # the time it was away (a scenario, not a wait for a state)
        await connect(call, "caller", second)
        async with asyncio.timeout(10):
            await second.tone.done.wait()
        ended = second.tone.last_sent
        await until(lambda: call.packets()["caller"] == 100, timeout=2)
        results = await call.close()
    finally:
        await call.close()
        await first.close()
        await second.close()

    result = results["caller"]
    assert result.packets == 100 and result.error is None and result.path is not None
    assert started is not None and ended is not None
    wall_ms = (ended - started) * 1000 + 20
    assert wall_ms > 2500  # the time away is kept in the recording
    assert abs(result.duration_ms - wall_ms) <= 60, (result.duration_ms, wall_ms)
    assert abs(len(decode_ogg(result.path)) / 48 - result.duration_ms) <= 1
    assert results["callee"].path is None and results["callee"].packets == 0


async def test_offers_and_candidates_it_cannot_use_are_refused(tmp_path: Path) -> None:
    call = RecordedCall(4, leg_path=lambda leg: tmp_path / f"{leg}.ogg")
    peer = TonePeer(440.0, 1)
    video = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    video.addTransceiver("video")
    try:
        offer = await peer.offer()
        with pytest.raises(ValueError, match="'caller' or 'callee'"):
            await call.answer("host", offer)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="not valid SDP|one audio stream"):
            await call.answer("caller", "hello")
        await video.setLocalDescription(await video.createOffer())
        assert video.localDescription is not None
        with pytest.raises(ValueError, match="one audio stream"):
            await call.answer("caller", video.localDescription.sdp)
        without_opus = re.sub(r"a=rtpmap:\d+ opus/48000/2\r\n", "", offer)
        with pytest.raises(ValueError, match="Opus"):
            await call.answer("caller", without_opus)
        with pytest.raises(ValueError, match="not an ICE candidate"):
            await call.add_candidate("caller", "candidate:nonsense", "0", 0)
        with pytest.raises(ValueError, match="sdpMid"):
            await call.add_candidate(
                "caller", "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host", None, None
            )
        assert call.state() == {"caller": "new", "callee": "new"}  # nothing changed

        # A candidate before the offer is kept and applied with it.
        await call.add_candidate(
            "caller", "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host", "0", 0
        )
        await peer.accept(await call.answer("caller", offer))
        await call.add_candidate("caller", "", None, None)  # end of candidates, as Chromium
        await call.close()
        with pytest.raises(RuntimeError, match="closed"):
            await call.answer("caller", offer)
    finally:
        await call.close()
        await peer.close()
        await video.close()


async def test_trickled_candidates_reach_the_leg_connection(tmp_path: Path) -> None:
    call = RecordedCall(5, leg_path=lambda leg: tmp_path / f"{leg}.ogg")
    peer = TonePeer(440.0, 1)
    try:
        offer = await peer.offer()
        lines = offer.split("\r\n")
        candidates = [line[2:] for line in lines if line.startswith("a=candidate:")]
        assert candidates
        # A browser's offer carries no candidates: they come one by one, in any order
        # with the offer (here: one before it is answered, the others after).
        bare = "\r\n".join(
            line for line in lines if not line.startswith(("a=candidate:", "a=end-of-candidates"))
        )
        await call.add_candidate("caller", candidates[0], "0", None)
        await peer.accept(await call.answer("caller", bare))
        for candidate in candidates[1:]:
            await call.add_candidate("caller", candidate, None, 0)
        await call.add_candidate("caller", "", "0", 0)

        pc = call._legs["caller"].pc  # the server's own connection (no public handle)
        assert pc is not None
        (transceiver,) = pc.getTransceivers()
        remote = transceiver.receiver.transport.transport.getRemoteCandidates()
        expected = {(c.split()[4], int(c.split()[5])) for c in candidates}
        assert {(c.ip, c.port) for c in remote} == expected
        await call.close()
        await call.add_candidate("caller", candidates[0], "0", 0)  # late: ignored
    finally:
        await call.close()
        await peer.close()
