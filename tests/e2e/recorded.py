"""A party of a recorded call in the tests: an authenticated client whose aiortc peer
connection offers to the SERVER (not to the other party), sends a known number of
pre-encoded Opus packets of its own tone, and keeps what it hears."""

from __future__ import annotations

from typing import Any

from rtc_server.client import RtcClient
from tests.media_tools import TonePeer

from .calls import live_of


class RecordedParty(TonePeer):
    def __init__(self, client: RtcClient, *, hz: float, packets: int) -> None:
        super().__init__(hz, packets)
        self.client = client

    async def connect(self, call_id: int, *, loss: float = 0.0, seed: int = 7) -> Any:
        """Offer to the server through calls.signal; take its answer (call.signal)."""
        sdp = await self.offer(loss=loss, seed=seed)
        relayed = await self.client.call(
            "calls.signal", {"callId": call_id, "description": {"type": "offer", "sdp": sdp}}
        )
        answer = await live_of(self.client, "call.signal", timeout=15)
        assert answer["callId"] == call_id
        assert answer["description"]["type"] == "answer", answer
        await self.accept(answer["description"]["sdp"])
        return relayed
