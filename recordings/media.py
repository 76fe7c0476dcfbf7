"""The server's own media path for a recorded call: two peer connections, audio
forwarded between them without decoding, each leg written to its own Ogg/Opus file.

Each party ("caller", "callee") connects to the server, not to the other party: the
server answers each offer with its own :class:`aiortc.RTCPeerConnection` (Opus only).
Every RTP packet a leg receives goes, still encoded, to two places:

- the other leg's sender, through a bounded :class:`ForwardTrack` (aiortc packs the
  encoded packet as is; no transcoding), once the other leg is connected. Packets that
  arrive before that are recorded but not forwarded;
- the leg's :class:`~recordings.timeline.LegTimeline` (reordering, loss concealment)
  and then its :class:`~recordings.writer.LegWriter`, which writes the Ogg/Opus file
  off the event loop.

A write error (disk full, I/O error) stops that leg's recording only: the file ends
there, ``on_failure(leg, reason)`` is called once, the call and the forwarding go on.
Nothing raised here reaches aiortc's tasks.
"""

from __future__ import annotations

import asyncio
import errno
import fractions
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceCandidate,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtpPacket
from aiortc.sdp import SessionDescription, candidate_from_sdp

from recordings.aiortc_hook import bypass_decoding
from recordings.ogg import RATE
from recordings.timeline import LegTimeline
from recordings.writer import DiskTooSlow, LegWriter

logger = logging.getLogger(__name__)

Leg = Literal["caller", "callee"]
LEGS: tuple[Leg, Leg] = ("caller", "callee")
OTHER: dict[Leg, Leg] = {"caller": "callee", "callee": "caller"}
TIME_BASE = fractions.Fraction(1, RATE)
# Remote candidates trickled before the leg's offer is answered are kept, up to this many.
MAX_EARLY_CANDIDATES = 64


@dataclass(frozen=True, slots=True)
class LegResult:
    leg: Leg
    path: Path | None  # the finished (closed, complete) file, or None if nothing was written
    bytes: int
    duration_ms: int  # the leg's timeline length (first packet to last, gaps included)
    packets: int  # RTP packets received
    lost: int  # packets never received (concealed so the timeline keeps its place)
    codec: str  # "opus"
    error: str | None  # e.g. "disk full" if writing failed (the file is cut there)
    # When the leg's first packet arrived, ms after the call's media began: where its
    # file starts on the call's timeline (for mixing the legs into one file).
    offset_ms: int = 0


class ForwardTrack(MediaStreamTrack):
    """Encoded Opus packets on their way to one party, as aiortc's sender pulls them.

    The queue is bounded: when the sender falls behind, the oldest packet is dropped
    (late audio is worth less than current audio), and counted.
    """

    kind = "audio"

    def __init__(self, max_queue: int) -> None:
        super().__init__()
        self._queue: asyncio.Queue[av.Packet[Any]] = asyncio.Queue(max_queue)
        self.forwarded = 0
        self.dropped = 0

    def put(self, payload: bytes, position: int) -> None:
        if self.readyState != "live":
            return
        packet = av.Packet(payload)
        packet.pts = position
        packet.time_base = TIME_BASE
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(packet)
        self.forwarded += 1

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        return await self._queue.get()


@dataclass(eq=False, slots=True)
class _LegMedia:
    """One party's connection and recording; the recording outlives reconnections."""

    leg: Leg
    timeline: LegTimeline = field(default_factory=LegTimeline)
    pc: RTCPeerConnection | None = None
    outgoing: ForwardTrack | None = None
    sent_tracks: list[ForwardTrack] = field(default_factory=list)  # one per connection
    writer: LegWriter | None = None
    error: str | None = None
    first_at: float | None = None  # time.monotonic() of the first packet received
    early_candidates: list[tuple[str, str | None, int | None]] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _parse_offer(offer_sdp: str) -> None:
    """Refuse an offer the server cannot answer, before anything is changed."""
    try:
        description = SessionDescription.parse(offer_sdp)
    except Exception as exc:  # aiortc's parser raises whatever it meets
        raise ValueError(f"the offer is not valid SDP: {exc}") from exc
    kinds = [media.kind for media in description.media]
    if kinds != ["audio"]:
        raise ValueError(f"a recorded call carries one audio stream, the offer has {kinds}")
    if not any(codec.name.lower() == "opus" for codec in description.media[0].rtp.codecs):
        raise ValueError("the offer does not offer Opus")


def _failure_reason(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk full"
    if isinstance(exc, DiskTooSlow):
        return "disk too slow"
    return f"I/O error: {exc.strerror or exc}"


class RecordedCall:
    """Both legs of one recorded call: answers, forwarding, recordings.

    ``leg_path(leg)`` names the file to write for a leg (a temporary name: the caller
    renames it when the call is over). ``ice_servers`` are the server's own STUN/TURN
    servers; by default none (host candidates only), never aiortc's public default.
    ``max_queue`` bounds each direction's forwarding queue, in packets (20 ms each).
    """

    def __init__(
        self,
        call_id: int,
        *,
        leg_path: Callable[[Leg], Path],
        on_failure: Callable[[Leg, str], None] | None = None,
        ice_servers: list[RTCIceServer] | None = None,
        max_queue: int = 50,
    ) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self.call_id = call_id
        self._leg_path = leg_path
        self._on_failure = on_failure
        self._ice_servers = list(ice_servers or [])
        self._max_queue = max_queue
        self._legs = {leg: _LegMedia(leg) for leg in LEGS}
        self._began = time.monotonic()
        self._closing: asyncio.Task[dict[Leg, LegResult]] | None = None

    async def answer(self, leg: Leg, offer_sdp: str) -> str:
        """Answer this party's offer with the server's own peer connection (Opus only;
        the answer SDP carries the server's candidates). A new offer for a leg (ICE
        restart / renegotiation after a reconnect) replaces that leg's connection,
        keeping its recording. Raises ``ValueError`` for an offer it cannot answer, and
        then changes nothing."""
        media = self._leg(leg)
        _parse_offer(offer_sdp)
        async with media.lock:
            self._check_open()
            pc = RTCPeerConnection(RTCConfiguration(iceServers=self._ice_servers))
            outgoing = ForwardTrack(self._max_queue)
            try:
                answer_sdp = await self._negotiate(media, pc, outgoing, offer_sdp)
            except BaseException:
                outgoing.stop()
                await pc.close()
                raise
            previous, media.pc, media.outgoing = media.pc, pc, outgoing
            media.sent_tracks.append(outgoing)
            # Candidates trickled while the offer was being answered belong to it.
            early, media.early_candidates = media.early_candidates, []
            for candidate in early:
                await self._add_candidate(pc, *candidate)
            if previous is not None:
                await previous.close()
            return answer_sdp

    async def _negotiate(
        self, media: _LegMedia, pc: RTCPeerConnection, outgoing: ForwardTrack, offer_sdp: str
    ) -> str:
        # The transceiver exists before the offer is applied: aiortc picks the codecs
        # when it applies the offer, from the preferences set by then (Opus only).
        transceiver = pc.addTransceiver(outgoing, direction="sendrecv")
        capabilities = RTCRtpReceiver.getCapabilities("audio")
        assert capabilities is not None
        transceiver.setCodecPreferences(
            [codec for codec in capabilities.codecs if codec.name.lower() == "opus"]
        )
        try:
            await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        except ValueError:
            raise
        except Exception as exc:
            raise ValueError(f"the offer cannot be used: {exc}") from exc
        if pc.getTransceivers() != [transceiver]:
            raise ValueError("a recorded call carries one audio stream")
        leg = media.leg

        def received(packet: RtpPacket, arrival_ms: int) -> None:
            # A replaced connection may still deliver a few packets: only the leg's
            # current connection feeds its timeline (one SSRC at a time).
            if media.pc is pc:
                self._received(leg, packet)

        bypass_decoding(transceiver.receiver, received)
        await pc.setLocalDescription(await pc.createAnswer())
        local = pc.localDescription
        assert local is not None
        return local.sdp

    async def add_candidate(
        self, leg: Leg, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        """A remote candidate trickled by the party ("" = end of candidates, with or
        without ``sdp_mid`` / ``sdp_mline_index``: browsers send both forms).

        Candidates that come before the leg's offer is answered (or while it is being
        answered) are kept, up to ``MAX_EARLY_CANDIDATES``, and applied with the
        answer: signalling may deliver them in any order. After ``close()`` they are
        ignored (a late trickle is normal). A candidate that cannot be parsed raises
        ``ValueError`` and changes nothing.
        """
        media = self._leg(leg)
        if self._closing is not None:
            return
        if candidate:
            _parse_candidate(candidate)
            if sdp_mid is None and sdp_mline_index is None:
                raise ValueError("a candidate needs its sdpMid or its sdpMLineIndex")
        if media.pc is None or media.lock.locked():
            if len(media.early_candidates) >= MAX_EARLY_CANDIDATES:
                raise ValueError("too many candidates before the offer")
            media.early_candidates.append((candidate, sdp_mid, sdp_mline_index))
            return
        await self._add_candidate(media.pc, candidate, sdp_mid, sdp_mline_index)

    @staticmethod
    async def _add_candidate(
        pc: RTCPeerConnection, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        if not candidate:
            await pc.addIceCandidate(None)
            return
        parsed = _parse_candidate(candidate)
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = sdp_mline_index
        await pc.addIceCandidate(parsed)

    def state(self) -> dict[Leg, str]:
        """Each leg's connection state ("new" before its offer, "closed" after close)."""
        if self._closing is not None:
            return {leg: "closed" for leg in LEGS}
        return {
            leg: media.pc.connectionState if media.pc is not None else "new"
            for leg, media in self._legs.items()
        }

    def packets(self) -> dict[Leg, int]:
        """RTP packets received so far on each leg (duplicates excluded), for metrics."""
        return {leg: media.timeline.packets for leg, media in self._legs.items()}

    def forwarded(self) -> dict[Leg, int]:
        """Packets forwarded so far TO each leg (those dropped by a full queue included)."""
        return {
            leg: sum(track.forwarded for track in media.sent_tracks)
            for leg, media in self._legs.items()
        }

    def dropped(self) -> dict[Leg, int]:
        """Packets to each leg dropped because its sender fell behind (queue full)."""
        return {
            leg: sum(track.dropped for track in media.sent_tracks)
            for leg, media in self._legs.items()
        }

    async def close(self) -> dict[Leg, LegResult]:
        """Hang up both connections, flush everything received (nothing clipped at the
        end), finish both files. Idempotent: later calls return the same results."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        return await asyncio.shield(self._closing)

    async def _close(self) -> dict[Leg, LegResult]:
        for media in self._legs.values():
            async with media.lock:
                if media.pc is not None:
                    await media.pc.close()
        return {leg: await self._finish(media) for leg, media in self._legs.items()}

    async def _finish(self, media: _LegMedia) -> LegResult:
        self._write(media, media.timeline.flush())
        writer = media.writer
        if writer is not None:
            await writer.close()
        timeline = media.timeline
        return LegResult(
            leg=media.leg,
            path=writer.path if writer is not None and writer.size else None,
            bytes=writer.size if writer is not None else 0,
            duration_ms=timeline.samples * 1000 // RATE,
            packets=timeline.packets,
            lost=timeline.lost,
            codec="opus",
            error=media.error,
            offset_ms=0
            if media.first_at is None
            else max(0, round((media.first_at - self._began) * 1000)),
        )

    def _received(self, leg: Leg, packet: RtpPacket) -> None:
        """One RTP packet from a party (called by the aiortc hook, on the loop)."""
        media = self._legs[leg]
        if media.first_at is None:
            media.first_at = time.monotonic()
        timeline = media.timeline
        taken = timeline.packets
        # The monotonic clock, not aiortc's wall-clock arrival time: a reconnect's pause
        # is measured with it, and the wall clock can be stepped.
        position, ready = timeline.receive(
            packet.ssrc, packet.sequence_number, packet.timestamp, packet.payload, time.monotonic()
        )
        if timeline.packets != taken:  # not a duplicate or a malformed packet
            other = self._legs[OTHER[leg]]
            if (
                other.outgoing is not None
                and other.pc is not None
                and other.pc.connectionState == "connected"
            ):
                other.outgoing.put(packet.payload, position)
        if ready:
            self._write(media, ready)

    def _write(self, media: _LegMedia, packets: list[tuple[bytes, int]]) -> None:
        if media.error is not None or not packets:
            return
        writer = media.writer
        if writer is None:
            try:
                path = self._leg_path(media.leg)
            except Exception as exc:
                logger.exception("call %s: no file for the %s leg", self.call_id, media.leg)
                self._fail(media, exc)
                return
            writer = media.writer = LegWriter(
                path,
                serial=random.getrandbits(32),
                on_error=lambda exc: self._fail(media, exc),
            )
        for payload, samples in packets:
            writer.write(payload, samples)

    def _fail(self, media: _LegMedia, exc: Exception) -> None:
        """Stop recording a leg (once): called on the loop, also by the writer."""
        if media.error is not None:
            return
        if isinstance(exc, OSError):
            reason = _failure_reason(exc)
            logger.warning(
                "call %s: recording of the %s leg stopped: %s", self.call_id, media.leg, exc
            )
        else:  # a bug
            reason = "internal error"
            logger.error(
                "call %s: recording of the %s leg failed", self.call_id, media.leg, exc_info=exc
            )
        media.error = reason
        if self._on_failure is not None:
            try:
                self._on_failure(media.leg, reason)
            except Exception:
                logger.exception("call %s: on_failure failed", self.call_id)

    def _leg(self, leg: Leg) -> _LegMedia:
        media = self._legs.get(leg)
        if media is None:
            raise ValueError(f"a leg is 'caller' or 'callee', not {leg!r}")
        return media

    def _check_open(self) -> None:
        if self._closing is not None:
            raise RuntimeError(f"recorded call {self.call_id} is closed")


def _parse_candidate(candidate: str) -> RTCIceCandidate:
    text = candidate.removeprefix("a=").removeprefix("candidate:")
    try:
        return candidate_from_sdp(text)
    except (ValueError, IndexError, KeyError, AssertionError) as exc:  # aiortc asserts
        raise ValueError(f"not an ICE candidate: {candidate!r}") from exc
