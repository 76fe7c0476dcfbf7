"""Audio helpers for the media tests and the recording benchmark: a pre-encoded Opus
tone that costs almost nothing to send, and decoding and frequency analysis of what was
heard or recorded.

Import from anywhere (unit, integration, e2e tests, ``bench``); numpy is in the test
extra.
"""

from __future__ import annotations

import asyncio
import fractions
import functools
import random
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

RATE = 48_000
FRAME = 960  # 20 ms
TIME_BASE = fractions.Fraction(1, RATE)


@functools.cache
def opus_tone(hz: float, seconds: float = 1.0, *, bitrate: int = 32_000) -> tuple[bytes, ...]:
    """Opus packets (20 ms each, mono) of a sine tone, encoded once and cached."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = RATE
    encoder.layout = "mono"
    encoder.format = "s16"
    encoder.bit_rate = bitrate
    encoder.options = {"frame_duration": "20", "application": "voip"}
    encoder.open()
    frames = round(seconds * RATE / FRAME)
    packets: list[bytes] = []
    for index in range(frames + 1):  # one more to drain the encoder's look-ahead
        t = np.arange(index * FRAME, (index + 1) * FRAME)
        samples = (8000 * np.sin(2 * np.pi * hz * t / RATE)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = index * FRAME
        packets += [bytes(packet) for packet in encoder.encode(frame)]
    return tuple(packets[:frames])


class EncodedToneTrack(MediaStreamTrack):
    """Sends ``count`` pre-encoded Opus packets of a tone, paced in real time, then
    nothing (the track stays live, so the connection stays up). With ``start``, the
    first packet waits for that event (so many tracks can start together).

    ``sent`` counts the packets handed to the sender; ``done`` is set after the last;
    ``first_sent`` and ``last_sent`` are when the first and last left (monotonic).
    """

    kind = "audio"

    def __init__(
        self,
        hz: float,
        count: int,
        *,
        loop_seconds: float = 1.0,
        start: asyncio.Event | None = None,
    ) -> None:
        super().__init__()
        self._start = start
        self._packets = opus_tone(hz, loop_seconds)
        self._count = count
        self._started: float | None = None
        self.sent = 0
        self.first_sent: float | None = None
        self.last_sent: float | None = None
        self.done = asyncio.Event()

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        if self.sent >= self._count:
            self.done.set()
            await asyncio.Future()  # nothing more to send; cancelled when the sender stops
        if self._started is None:
            if self._start is not None:
                await self._start.wait()
            self._started = time.monotonic()
        # Media pacing (a microphone's clock), not a wait for a state.
        ahead = self._started + self.sent * FRAME / RATE - time.monotonic()
        if ahead > 0:
            await asyncio.sleep(ahead)
        packet = av.Packet(self._packets[self.sent % len(self._packets)])
        packet.pts = self.sent * FRAME
        packet.time_base = TIME_BASE
        self.sent += 1
        self.last_sent = time.monotonic()
        if self.first_sent is None:
            self.first_sent = self.last_sent
        return packet


def drop_outgoing_rtp(pc: RTCPeerConnection, loss: float, seed: int) -> list[int]:
    """Make ``pc`` lose a fraction of the RTP packets it sends (not RTCP), chosen by a
    seeded RNG so every run loses the same ones. Call after ``setLocalDescription``.

    Returns a list that grows by one entry (the 0-based index of the packet among the
    RTP packets sent) per dropped packet.
    """
    rng = random.Random(seed)
    dropped: list[int] = []
    (sender,) = pc.getSenders()
    transport = sender.transport
    send_rtp = transport._send_rtp
    sent = 0

    async def lossy_send_rtp(data: bytes) -> None:
        nonlocal sent
        if 200 <= data[1] <= 206:  # RTCP packet types (RFC 5761 section 4)
            await send_rtp(data)
            return
        index, sent = sent, sent + 1
        if rng.random() < loss:
            dropped.append(index)
            return
        await send_rtp(data)

    transport._send_rtp = lossy_send_rtp
    return dropped


class TonePeer:
    """A party's aiortc peer connection: sends ``packets`` pre-encoded Opus packets of
    its ``hz`` tone (``tone``) and keeps the frames it hears (``frames``)."""

    def __init__(self, hz: float, packets: int) -> None:
        self.hz = hz
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.tone = EncodedToneTrack(hz, packets)
        self.pc.addTrack(self.tone)
        self.frames: list[av.AudioFrame] = []
        self.dropped: list[int] = []  # indexes of packets lost on purpose (offer's loss)
        self._listening: asyncio.Task[None] | None = None
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._listening = asyncio.get_running_loop().create_task(self._listen(track))

    async def _listen(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                assert isinstance(frame, av.AudioFrame)
                self.frames.append(frame)
        except MediaStreamError:
            pass

    async def offer(self, *, loss: float = 0.0, seed: int = 0) -> str:
        """The offer's SDP; with ``loss``, that fraction of the tone's packets is
        dropped on the way out (seeded: the same ones every run)."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        if loss:
            self.dropped = drop_outgoing_rtp(self.pc, loss, seed)
        local = self.pc.localDescription
        assert local is not None
        return local.sdp

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))

    def sent(self) -> int:
        """Packets that left this peer (the seeded loss excluded)."""
        return self.tone.sent - len(self.dropped)

    def heard(self) -> np.ndarray[Any, np.dtype[np.float32]]:
        return frames_to_samples(self.frames)

    async def close(self) -> None:
        await self.pc.close()
        if self._listening is not None:
            # A track that never received media is not ended by close().
            self._listening.cancel()
            await asyncio.gather(self._listening, return_exceptions=True)


def decode_ogg(path: Path) -> np.ndarray[Any, np.dtype[np.float32]]:
    """All samples of an Ogg/Opus file decoded by FFmpeg (PyAV): mono, 48 kHz, s16 scale."""
    with av.open(str(path)) as container:
        return frames_to_samples(list(container.decode(audio=0)))


def frames_to_samples(frames: list[av.AudioFrame]) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Decoded frames as one mono array on the s16 scale (whatever the sample format)."""
    chunks = []
    for frame in frames:
        array = frame.to_ndarray().astype(np.float32)
        channels = len(frame.layout.channels)
        if frame.format.is_planar:
            chunks.append(array.reshape(channels, -1).mean(axis=0))
        else:
            chunks.append(array.reshape(-1, channels).mean(axis=1))
        if frame.format.name.startswith(("flt", "dbl")):
            chunks[-1] *= 32768
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks)


def dominant_frequency(samples: np.ndarray[Any, Any], rate: int = RATE) -> float:
    """The frequency (Hz) of the strongest component of a signal (Hann window + FFT)."""
    if len(samples) < 2:
        raise ValueError("need at least two samples")
    window = np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(samples * window))
    spectrum[0] = 0  # ignore DC
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def loud_fraction(samples: np.ndarray[Any, Any], *, threshold: float = 1000.0) -> float:
    """The fraction of 20 ms blocks whose peak is above ``threshold`` (s16 scale)."""
    blocks = len(samples) // FRAME
    if blocks == 0:
        return 0.0
    peaks = np.abs(samples[: blocks * FRAME]).reshape(blocks, FRAME).max(axis=1)
    return float((peaks > threshold).mean())
