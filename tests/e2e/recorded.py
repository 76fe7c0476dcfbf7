"""A party of a recorded call in the tests: an authenticated client whose aiortc peer
connection offers to the SERVER (not to the other party), sends a known number of
pre-encoded Opus packets of its own tone, and keeps what it hears."""

from __future__ import annotations

import asyncio
from typing import Any

import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from rtc_server.client import RtcClient
from tests.media_tools import EncodedToneTrack, drop_outgoing_rtp, frames_to_samples

from .calls import live_of


class RecordedParty:
    def __init__(self, client: RtcClient, *, hz: float, packets: int) -> None:
        self.client = client
        self.hz = hz
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.tone = EncodedToneTrack(hz, packets)
        self.pc.addTrack(self.tone)
        self.frames: list[av.AudioFrame] = []
        self._listening: asyncio.Task[None] | None = None
        self.dropped: list[int] | None = None
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._listening = asyncio.get_running_loop().create_task(self._listen(track))

    async def _listen(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                self.frames.append(await track.recv())
        except MediaStreamError:
            pass

    async def connect(self, call_id: int, *, loss: float = 0.0, seed: int = 7) -> Any:
        """Offer to the server through calls.signal; take its answer (call.signal)."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        if loss:
            self.dropped = drop_outgoing_rtp(self.pc, loss, seed)
        local = self.pc.localDescription
        relayed = await self.client.call(
            "calls.signal",
            {"callId": call_id, "description": {"type": "offer", "sdp": local.sdp}},
        )
        answer = await live_of(self.client, "call.signal", timeout=15)
        assert answer["callId"] == call_id
        assert answer["description"]["type"] == "answer", answer
        await self.pc.setRemoteDescription(
            RTCSessionDescription(answer["description"]["sdp"], "answer")
        )
        return relayed

    def sent(self) -> int:
        """Packets of this party that left its machine (its seeded loss excluded)."""
        return self.tone.sent - len(self.dropped or [])

    def heard(self) -> np.ndarray[Any, Any]:
        return frames_to_samples(self.frames)

    async def close(self) -> None:
        await self.pc.close()
        if self._listening is not None:
            self._listening.cancel()
            await asyncio.gather(self._listening, return_exceptions=True)
