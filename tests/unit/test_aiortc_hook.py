"""The upgrade guard of recordings/aiortc_hook.py: the aiortc internals it relies on,
exercised on real aiortc objects (a DTLS transport's RTP routing, a receiver, a
sender), so that an aiortc upgrade that breaks the hook fails here, loudly.

No network: RTP packets are handed to the transport's routing entry point, which is
where packets decrypted from the socket go.
"""

from __future__ import annotations

import asyncio
import fractions
import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import aiortc
import av
import pytest
from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpDecodingParameters,
    RTCRtpReceiveParameters,
)
from aiortc.rtcrtpreceiver import RemoteStreamTrack, RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import RtpPacket

from recordings import aiortc_hook
from recordings.aiortc_hook import AiortcIncompatible, bypass_decoding, check_aiortc
from recordings.media import ForwardTrack
from tests.media_tools import opus_tone

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48_000, channels=2, payloadType=111)
SSRC = 4242
TONE = opus_tone(440.0, 1.0)


def test_the_installed_aiortc_is_the_tested_one_and_pyproject_pins_it() -> None:
    check_aiortc()
    first, last = aiortc_hook.TESTED_VERSIONS
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    (pin,) = [dep for dep in pyproject["project"]["dependencies"] if dep.startswith("aiortc")]
    assert pin == f"aiortc>={first[0]}.{first[1]},<{last[0]}.{last[1]}"
    installed = tuple(int(part) for part in aiortc.__version__.split(".")[:2])
    assert first <= installed < last


@pytest.mark.parametrize("version", ["1.15.0", "1.17.0", "2.0.0", "banana"])
def test_an_untested_aiortc_version_is_refused(
    monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    monkeypatch.setattr(aiortc, "__version__", version)
    with pytest.raises(AiortcIncompatible, match=re.escape(version)):
        check_aiortc()


def test_a_changed_internal_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    async def routes_elsewhere(self: RTCDtlsTransport, data: bytes, arrival_time_ms: int) -> None:
        return None

    monkeypatch.setattr(RTCDtlsTransport, "_handle_rtp_data", routes_elsewhere)
    with pytest.raises(AiortcIncompatible, match="_handle_rtp_packet"):
        check_aiortc()


@pytest.fixture
async def dtls() -> AsyncIterator[RTCDtlsTransport]:
    ice = RTCIceTransport(RTCIceGatherer(iceServers=[]))
    transport = RTCDtlsTransport(ice, [RTCCertificate.generateCertificate()])
    yield transport
    await transport.stop()
    await ice.stop()


async def receiving(dtls: RTCDtlsTransport) -> RTCRtpReceiver:
    receiver = RTCRtpReceiver("audio", dtls)
    receiver._track = RemoteStreamTrack(kind="audio")
    await receiver.receive(
        RTCRtpReceiveParameters(
            codecs=[OPUS], encodings=[RTCRtpDecodingParameters(ssrc=SSRC, payloadType=111)]
        )
    )
    return receiver


async def feed(dtls: RTCDtlsTransport, count: int) -> None:
    for seq in range(count):
        packet = RtpPacket(payload_type=111, sequence_number=seq, timestamp=960 * seq, ssrc=SSRC)
        packet.payload = TONE[seq]
        await dtls._handle_rtp_data(packet.serialize(), arrival_time_ms=1000 + 20 * seq)


async def test_without_the_hook_aiortc_decodes_received_packets(dtls: RTCDtlsTransport) -> None:
    # The control: the same feed reaches stock aiortc's decoder (so the test below,
    # where nothing is decoded, is not passing because nothing arrived at all).
    receiver = await receiving(dtls)
    await feed(dtls, 20)
    async with asyncio.timeout(5):
        frame = await receiver.track.recv()
    assert isinstance(frame, av.AudioFrame)
    await receiver.stop()


async def test_the_hook_hands_every_packet_over_undecoded(dtls: RTCDtlsTransport) -> None:
    receiver = await receiving(dtls)
    got: list[tuple[int, bytes, int]] = []
    bypass_decoding(
        receiver, lambda packet, ms: got.append((packet.sequence_number, packet.payload, ms))
    )
    await feed(dtls, 20)

    assert got == [(seq, TONE[seq], 1000 + 20 * seq) for seq in range(20)]
    # Nothing went to the jitter buffer or the decoder; receiver reports still count.
    assert receiver._RTCRtpReceiver__decoder_queue.empty()  # type: ignore[attr-defined]
    assert receiver.track._queue.empty()  # type: ignore[attr-defined]
    inbound = [s for s in (await receiver.getStats()).values() if s.type == "inbound-rtp"]
    assert [stat.packetsReceived for stat in inbound] == [20]
    await receiver.stop()


async def test_a_failing_sink_never_raises_into_aiortc(
    dtls: RTCDtlsTransport, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = await receiving(dtls)

    def sink(packet: RtpPacket, arrival_ms: int) -> None:
        raise RuntimeError("boom")

    bypass_decoding(receiver, sink)
    await feed(dtls, 2)
    assert caplog.text.count("the RTP packet sink failed") == 2
    await receiver.stop()


async def test_the_sender_sends_forwarded_packets_as_they_are(dtls: RTCDtlsTransport) -> None:
    track = ForwardTrack(max_queue=4)
    sender = RTCRtpSender(track, dtls)
    track.put(TONE[0], 5 * 960)
    track.put(TONE[1], 6 * 960)
    first = await sender._next_encoded_frame(OPUS)
    second = await sender._next_encoded_frame(OPUS)
    assert first is not None and second is not None
    assert (first.payloads, first.timestamp) == ([TONE[0]], 5 * 960)
    assert (second.payloads, second.timestamp) == ([TONE[1]], 6 * 960)
    track.stop()


def test_a_forward_track_drops_its_oldest_packet_when_full() -> None:
    track = ForwardTrack(max_queue=2)
    for index in range(5):
        track.put(TONE[index], index * 960)
    assert (track.forwarded, track.dropped) == (5, 3)
    queue: asyncio.Queue[av.Packet] = track._queue  # type: ignore[type-arg]
    kept = [queue.get_nowait() for _ in range(queue.qsize())]
    assert [(bytes(p), p.pts, p.time_base) for p in kept] == [
        (TONE[3], 3 * 960, fractions.Fraction(1, 48_000)),
        (TONE[4], 4 * 960, fractions.Fraction(1, 48_000)),
    ]
    track.stop()
    track.put(TONE[5], 5 * 960)  # a stopped track takes nothing more
    assert track.forwarded == 5
