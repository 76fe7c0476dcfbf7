"""A real WebRTC call through the server: two aiortc peers, each an authenticated
client, set it up with calls.start / calls.accept / calls.signal and send each other
a tone; both must hear the other (decoded audio) and count RTP packets both ways.

With TURN (a real coturn on loopback), the relay-only policy: the peers offer every
candidate they have, the server strips all but TURN relay ones, and audio still flows,
through the relay only.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiortc import RTCSessionDescription

from rtc_server.app import App

from .calls import booked, live_of, start, step
from .conftest import AppFactory, Clients, CodeLog
from .market import next_of
from .webrtc_peers import Peer

TURN_SECRET = "coturn-test-secret-0123456789abcdef"


async def talk(clients: Clients, app: App, *, peers_relay_only: bool = False) -> list[Peer]:
    """Set up a call through the server and let the two peers talk until both hear."""
    b = await booked(clients, app)
    started = await start(b.customer, b.booking_id)
    call_id = started["callId"]
    incoming = await next_of(b.provider, "call.incoming")
    await step(b.provider, "calls.accept", call_id)
    caller = Peer(b.customer, started["iceServers"], hz=440, relay_only=peers_relay_only)
    callee = Peer(b.provider, incoming["iceServers"], hz=880, relay_only=peers_relay_only)
    try:
        await caller.offer(call_id)
        offer = await live_of(b.provider, "call.signal", timeout=15)
        await callee.answer(call_id, offer["description"]["sdp"])
        answer = await live_of(b.customer, "call.signal", timeout=15)
        await caller.pc.setRemoteDescription(
            RTCSessionDescription(answer["description"]["sdp"], "answer")
        )
        await next_of(b.customer, "call.connected")
        async with asyncio.timeout(30):
            await asyncio.gather(caller.heard, callee.heard)
        for peer in (caller, callee):
            sent, received = await peer.packets()
            assert sent > 0 and received > 0, (sent, received)
        await step(b.customer, "calls.hangup", call_id)
        return [caller, callee]
    finally:
        await caller.close()
        await callee.close()


async def test_two_aiortc_peers_talk_through_server_signalling(clients: Clients, app: App) -> None:
    caller, callee = await talk(clients, app)
    # Open policy: host candidates pass as sent.
    assert "host" in caller.remote_candidates() and "host" in callee.remote_candidates()


# --- relay-only through a real coturn --------------------------------------------------


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[str]:
    """A coturn on loopback with use-auth-secret; yields its turn: URL."""
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.skip("coturn is not installed (Debian: apt-get install coturn; .ci/run does)")
    port = free_udp_port()
    process = subprocess.Popen(
        [
            binary,
            "-n",  # no configuration file
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            f"--listening-port={port}",
            "--min-port=50000",
            "--max-port=50999",
            "--use-auth-secret",
            f"--static-auth-secret={TURN_SECRET}",
            "--realm=rtc.test",
            "--allow-loopback-peers",  # both peers are on this host
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--simple-log",
            f"--log-file={tmp_path / 'turn.log'}",
            f"--pidfile={tmp_path / 'turn.pid'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_stun(port, process)
        yield f"turn:127.0.0.1:{port}?transport=udp"
    finally:
        process.terminate()
        process.wait(timeout=10)


def wait_for_stun(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Until coturn answers a STUN Binding request (RFC 8489 section 5): a peer that
    gathers candidates before coturn listens gets no relay candidate, and the call no
    media (seen on a loaded CI machine)."""
    request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(range(12))
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(0.2)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"coturn exited with {process.returncode}")
            probe.sendto(request, ("127.0.0.1", port))
            try:
                answer = probe.recv(2048)
            except TimeoutError:
                continue
            if answer[:2] == b"\x01\x01" and answer[8:20] == request[8:20]:
                return  # a Binding success response to our transaction
    raise RuntimeError(f"coturn did not answer STUN on port {port} within {timeout} s")


async def test_relay_only_peers_see_only_turn_relay_addresses(
    make_app: AppFactory, code_log: CodeLog, coturn: str
) -> None:
    app = await make_app(calls={"turn_urls": [coturn], "turn_secret": TURN_SECRET})
    clients = Clients(app, code_log)
    try:
        # The peers themselves offer every candidate (policy "all"): the server strips
        # all but relay ones, and media still flows through coturn.
        caller, callee = await talk(clients, app, peers_relay_only=False)
        for peer in (caller, callee):
            kinds = peer.remote_candidates()
            assert kinds and set(kinds) == {"relay"}, kinds
    finally:
        await clients.close()
