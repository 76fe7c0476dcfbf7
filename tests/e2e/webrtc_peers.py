"""Real WebRTC peers for the call tests: aiortc peer connections that send a tone and
report what they hear, driven by the server's call signalling.

Each side is an authenticated client of the server; offers and answers travel only
through ``calls.signal`` / ``call.signal`` (aiortc gathers its candidates before it
sends a description, so they travel inside the SDP). Against a peer that trickles its
candidates (a browser) or the server's own media path, :meth:`Peer.follow` applies
every ``call.signal`` as it arrives.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from array import array
from typing import Any

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.sdp import candidate_from_sdp

from rtc_server.client import Event, RtcClient
from tests.media_tools import dominant_frequency, frames_to_samples

RATE = 48_000
FRAME = 960  # 20 ms


class ToneTrack(MediaStreamTrack):
    """A sine tone at ``hz``, paced in real time like a microphone."""

    kind = "audio"

    def __init__(self, hz: float) -> None:
        super().__init__()
        self._hz = hz
        self._pts = 0
        self._started: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self._started is None:
            self._started = time.monotonic()
        # Media pacing (a microphone's clock), not a wait for a state.
        ahead = self._started + self._pts / RATE - time.monotonic()
        if ahead > 0:
            await asyncio.sleep(ahead)
        step = 2 * math.pi * self._hz / RATE
        samples = array("h", (int(8000 * math.sin(step * (self._pts + i))) for i in range(FRAME)))
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME)
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, RATE)
        self._pts += FRAME
        return frame


def loudness(frame: av.AudioFrame) -> int:
    """The largest sample of a decoded (s16) frame."""
    samples = array("h", bytes(frame.planes[0]))
    return max((abs(s) for s in samples), default=0)


class Peer:
    """One party: its socket to the server and its peer connection."""

    def __init__(
        self,
        client: RtcClient,
        ice_servers: list[dict[str, Any]],
        *,
        hz: float,
        relay_only: bool = False,
    ) -> None:
        self.client = client
        config = RTCConfiguration(
            iceServers=[
                RTCIceServer(
                    urls=server["urls"],
                    username=server.get("username"),
                    credential=server.get("credential"),
                )
                for server in ice_servers
            ],
            iceTransportPolicy=RTCIceTransportPolicy.RELAY
            if relay_only
            else RTCIceTransportPolicy.ALL,
        )
        self.pc = RTCPeerConnection(config)
        self.pc.addTrack(ToneTrack(hz))
        self.heard: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._listening: asyncio.Task[None] | None = None
        self.pc.on("track", self._on_track)
        self._loud: list[av.AudioFrame] = []  # what was heard while loud
        # follow(): signals applied in the background, the client's other events kept.
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self._following: asyncio.Task[None] | None = None

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._listening = asyncio.get_running_loop().create_task(self._listen(track))

    async def _listen(self, track: MediaStreamTrack) -> None:
        loud = 0
        try:
            while not self.heard.done():
                frame = await track.recv()
                if loudness(frame) > 1000:  # the other side's tone, not silence
                    loud += 1
                    self._loud.append(frame)
                    if loud >= 25:  # half a second of it
                        self.heard.set_result(loud)
        except MediaStreamError:
            if not self.heard.done():
                self.heard.set_exception(AssertionError("the track ended before the tone"))

    def heard_frequency(self) -> float:
        """The dominant frequency of what this peer heard while it was loud."""
        assert self._loud, "nothing loud was heard"
        return dominant_frequency(frames_to_samples(self._loud), self._loud[0].sample_rate)

    async def offer(self, call_id: int) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self._send(call_id)

    async def answer(self, call_id: int, offer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self._send(call_id)

    async def _send(self, call_id: int) -> None:
        local = self.pc.localDescription
        await self.client.call(
            "calls.signal",
            {"callId": call_id, "description": {"type": local.type, "sdp": local.sdp}},
        )

    def follow(self, call_id: int) -> None:
        """From now on, apply every ``call.signal`` of ``call_id`` as it arrives: an offer
        is answered, an answer applied, a trickled candidate added. The client's other
        events go to :attr:`events` (read them with :meth:`next_event`).

        A browser sends its candidates one by one after its description, and they come
        in no fixed number, so they cannot be awaited one by one as between two aiortc
        peers: they are applied in the background, in the order they were relayed."""
        self._following = asyncio.get_running_loop().create_task(self._follow(call_id))

    async def _follow(self, call_id: int) -> None:
        try:
            while True:
                event = await self.client.events.get()
                if event.method == "call.signal" and event.params.get("callId") == call_id:
                    await self._apply(call_id, event.params)
                else:
                    self.events.put_nowait(event)
        except Exception as error:
            # A test waits for the tone: tell it why it will never come.
            if not self.heard.done():
                self.heard.set_exception(error)
            raise

    async def _apply(self, call_id: int, signal: dict[str, Any]) -> None:
        if "error" in signal:  # recorded calls: the media host refused a signal
            raise AssertionError(f"call.signal error {signal['error']}")
        description = signal.get("description")
        if description is not None:
            if description["type"] == "offer":
                await self.answer(call_id, description["sdp"])
            else:
                await self.pc.setRemoteDescription(
                    RTCSessionDescription(description["sdp"], description["type"])
                )
            return
        candidate = signal["candidate"]
        if candidate["candidate"] == "":  # end of candidates (RFC 8838 section 13)
            await self.pc.addIceCandidate(None)
            return
        parsed = candidate_from_sdp(candidate["candidate"].removeprefix("candidate:"))
        parsed.sdpMid = candidate.get("sdpMid")
        parsed.sdpMLineIndex = candidate.get("sdpMLineIndex")
        await self.pc.addIceCandidate(parsed)

    async def next_event(self, method: str, timeout: float = 10) -> Any:
        """The data of the next event ``method`` (others skipped) while following;
        a failure to apply a signal is raised here."""
        following = self._following
        assert following is not None, "follow() first"
        async with asyncio.timeout(timeout):
            while True:
                getting = asyncio.ensure_future(self.events.get())
                try:
                    await asyncio.wait({getting, following}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    getting.cancel()  # no-op once it has its event
                if not getting.done() or getting.cancelled():
                    following.result()  # it ended: raises what went wrong
                    raise AssertionError("stopped following the call")
                event = getting.result()
                if event.method == method:
                    return event.data if event.seq is not None else event.params

    async def packets(self) -> tuple[int, int]:
        """RTP packets (sent, received) by this peer connection so far."""
        sent = received = 0
        for stat in (await self.pc.getStats()).values():
            if stat.type == "outbound-rtp":
                sent += stat.packetsSent
            elif stat.type == "inbound-rtp":
                received += stat.packetsReceived
        return sent, received

    def remote_candidates(self) -> list[str]:
        """The candidate types of the remote description this peer got."""
        remote = self.pc.remoteDescription
        if remote is None:
            return []
        return [
            line.split(" typ ")[1].split()[0]
            for line in remote.sdp.splitlines()
            if line.startswith("a=candidate:")
        ]

    async def close(self) -> None:
        await self.pc.close()
        for task in (self._listening, self._following):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
