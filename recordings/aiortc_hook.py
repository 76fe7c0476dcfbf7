"""The one place that reaches into aiortc's internals: received RTP skips decoding.

Stock aiortc puts every received audio packet through its jitter buffer and a decoder
thread. For relaying and recording we want neither: decoding costs CPU we do not need
(we forward and store the encoded Opus packets), and the audio jitter buffer never
releases its last frames at hang-up and drops good frames after a gap, which clips and
shortens recordings. So :func:`bypass_decoding` replaces one receiver's packet handler
with a function that hands each RTP packet to us as it arrives.

What this relies on (checked when this module is imported, so an aiortc upgrade fails
loudly at start-up instead of silently recording nothing; also covered by
``tests/unit/test_aiortc_hook.py``):

- ``RTCDtlsTransport._handle_rtp_data`` routes a packet by calling
  ``receiver._handle_rtp_packet(packet, arrival_time_ms=...)``, looked up on the
  instance, so an instance attribute replaces it for that receiver only.
- ``RTCRtpReceiver`` keeps the per-SSRC ``StreamStatistics`` it reports in RTCP
  receiver reports in ``__remote_streams``; we keep feeding them so the parties still
  get receiver reports (their loss and jitter figures).
- ``RTCRtpSender._next_encoded_frame`` sends a non-``Frame`` object from its track as
  already encoded (``encoder.pack(packet)``: ``bytes(packet)``, ``pts``, ``time_base``),
  which is how forwarded packets go out without transcoding.

The receiver's decoder thread still starts (aiortc starts it in ``receive()``) but stays
idle, blocked on its empty queue, and ends with the receiver.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import aiortc
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpreceiver import RTCRtpReceiver, StreamStatistics
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import RtpPacket

logger = logging.getLogger(__name__)

# The aiortc releases this hook was tested with: [first, last) as (major, minor).
# Keep pyproject.toml's pin the same.
TESTED_VERSIONS = ((1, 16), (1, 17))
OPUS_CLOCK_RATE = 48_000

PacketSink = Callable[[RtpPacket, int], None]
"""Called with each received RTP packet and its arrival time (ms, aiortc's clock)."""


class AiortcIncompatible(ImportError):
    """The installed aiortc is not one this hook was written and tested for."""


def check_aiortc() -> None:
    """Raise :class:`AiortcIncompatible` unless aiortc looks as this hook expects."""
    version = aiortc.__version__
    try:
        major_minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError as exc:
        raise AiortcIncompatible(f"cannot read aiortc's version {version!r}") from exc
    first, last = TESTED_VERSIONS
    if not first <= major_minor < last:
        raise AiortcIncompatible(
            f"aiortc {version} is not in the tested range >={first[0]}.{first[1]},"
            f"<{last[0]}.{last[1]}: check recordings/aiortc_hook.py against its source"
            " and run tests/unit/test_aiortc_hook.py, then widen TESTED_VERSIONS"
        )
    problems = []
    if "_handle_rtp_packet" not in _names(RTCDtlsTransport._handle_rtp_data):
        problems.append("RTCDtlsTransport._handle_rtp_data no longer calls _handle_rtp_packet")
    if "_RTCRtpReceiver__remote_streams" not in _names(RTCRtpReceiver.__init__):
        problems.append("RTCRtpReceiver no longer has __remote_streams")
    if not callable(getattr(StreamStatistics, "add", None)):
        problems.append("StreamStatistics.add is gone")
    if "pack" not in _names(RTCRtpSender._next_encoded_frame):
        problems.append("RTCRtpSender._next_encoded_frame no longer packs encoded packets")
    packet = RtpPacket()
    for attribute in ("ssrc", "sequence_number", "timestamp", "payload"):
        if not hasattr(packet, attribute):
            problems.append(f"RtpPacket.{attribute} is gone")
    if problems:
        raise AiortcIncompatible(f"aiortc {version}: " + "; ".join(problems))


def _names(function: Any) -> tuple[str, ...]:
    """The global and attribute names a function's code uses."""
    names: tuple[str, ...] = function.__code__.co_names
    return names


def bypass_decoding(receiver: RTCRtpReceiver, sink: PacketSink) -> None:
    """Send the receiver's RTP packets to ``sink`` instead of its jitter buffer and decoder.

    Call it before the connection carries media (after ``setRemoteDescription``). The
    sink runs on the event loop inside aiortc's transport task: an exception from it
    is logged and swallowed, never raised into aiortc.
    """
    streams: dict[int, StreamStatistics] = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]

    async def handle_rtp_packet(packet: RtpPacket, arrival_time_ms: int) -> None:
        statistics = streams.get(packet.ssrc)
        if statistics is None:
            statistics = streams[packet.ssrc] = StreamStatistics(OPUS_CLOCK_RATE)
        statistics.add(packet)
        try:
            sink(packet, arrival_time_ms)
        except Exception:
            logger.exception("the RTP packet sink failed")

    # An instance attribute: only this receiver is changed, not the class.
    setattr(receiver, "_handle_rtp_packet", handle_rtp_packet)  # noqa: B010


check_aiortc()
