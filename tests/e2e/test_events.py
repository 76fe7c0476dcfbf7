"""Events over real sockets: resuming at the handshake, and across a server restart.

The rest of event delivery (acks, replay, gap fills, fan-outs) is tested on sockets in
memory: ``tests/driver/test_events.py``."""

from __future__ import annotations

import asyncio
import gc

from websockets.exceptions import InvalidStatus
from websockets.http11 import Request

from rtc_server.app import App
from rtc_server.client import RtcClient
from storage import events as event_log
from tests.events import Loose, loose

from .conftest import AppFactory, Clients


async def collect(client: RtcClient, count: int, timeout: float = 10) -> list[int]:
    seqs: list[int] = []
    async with asyncio.timeout(timeout):
        while len(seqs) < count:
            event = await client.next_event()
            if event.seq is not None:
                seqs.append(event.seq)
    return seqs


async def test_header_auth_resumes_from_the_last_seq_header(app: App, clients: Clients) -> None:
    _, tokens = await clients.login()
    user_id = tokens["user"]["id"]
    for n in range(5):
        await app.publisher.publish(user_id, loose("e"), Loose.of({"n": n}))
    client = await RtcClient.connect(
        f"ws://127.0.0.1:{app.sockets.port}/ws", access_token=tokens["accessToken"], last_seq=3
    )
    clients.opened.append(client)
    ready = await client.next_event()
    assert ready.method == "session.ready" and ready.params["resumeFrom"] == 3
    assert await collect(client, 2) == [4, 5]


async def test_events_survive_a_server_restart(make_app: AppFactory, code_log: object) -> None:
    first = await make_app()
    opened = Clients(first, code_log)  # type: ignore[arg-type]
    client, tokens = await opened.login()
    user_id = tokens["user"]["id"]
    await first.publisher.publish(user_id, loose("e"), Loose.of({"n": 1}))
    await collect(client, 1)
    await first.stop()
    second = await make_app()
    await second.publisher.publish(user_id, loose("e"), Loose.of({"n": 2}))
    resumed = await RtcClient.connect(f"ws://127.0.0.1:{second.sockets.port}/ws")
    await resumed.authenticate(tokens["accessToken"], last_seq=1)
    assert await collect(resumed, 1) == [2]
    await resumed.close()
    await opened.close()


async def test_handshakes_arriving_together_each_get_their_own_session_and_events(
    app: App, clients: Clients
) -> None:
    """A reconnect storm in small: the session checks and cursor reads of handshakes
    made at the same moment are answered by shared queries, yet every socket is told
    about its own session and user, a revoked session is refused among live ones, and
    each replays exactly its own user's events (or none, then live ones)."""
    users = []
    for n in range(4):
        client, tokens = await clients.login()
        user_id = tokens["user"]["id"]
        for k in range(n):
            await app.publisher.publish(user_id, loose("e"), Loose.of({"k": k}))
        assert app.db is not None
        last = (await event_log.cursor(app.db, user_id)).last_seq
        users.append((user_id, tokens["accessToken"], last, n))
    revoked, revoked_tokens = await clients.login()
    await revoked.call("auth.logout")

    url = f"ws://127.0.0.1:{app.sockets.port}/ws"
    # Each user resumes from before its n events (n of them replayed) and, on a second
    # socket, from its newest event (nothing to replay: a live one follows).
    attempts = [
        RtcClient.connect(url, access_token=token, last_seq=last - n) for _, token, last, n in users
    ] + [RtcClient.connect(url, access_token=token, last_seq=last) for _, token, last, _ in users]
    attempts.append(RtcClient.connect(url, access_token=revoked_tokens["accessToken"]))
    opened = await asyncio.gather(*attempts, return_exceptions=True)
    refused = opened.pop()
    assert isinstance(refused, InvalidStatus) and refused.response.status_code == 401
    sockets = [c for c in opened if isinstance(c, RtcClient)]
    assert len(sockets) == len(opened) == 8
    clients.opened.extend(sockets)

    for i, (user_id, _, last, n) in enumerate(users):
        replaying, current = sockets[i], sockets[len(users) + i]
        for socket, resume_from in ((replaying, last - n), (current, last)):
            ready = await socket.next_event()
            assert ready.method == "session.ready"
            assert ready.params["userId"] == user_id
            assert ready.params["resumeFrom"] == resume_from
            assert ready.params["lastSeq"] == last
        assert await collect(replaying, n) == list(range(last - n + 1, last + 1))
        await app.publisher.publish(user_id, loose("e"), Loose.of({"k": "live"}))
        assert await collect(current, 1) == [last + 1]
        assert await collect(replaying, 1) == [last + 1]


async def test_the_handshake_headers_are_not_kept_for_the_sockets_life(
    app: App, clients: Clients
) -> None:
    """Once a socket is bound, nothing of the server keeps its handshake's headers (its
    access token among them): a few KiB per socket, for hours. A raw handshake, so the
    only request objects holding the token would be the server's."""
    _, tokens = await clients.login()
    token = tokens["accessToken"]
    reader, writer = await asyncio.open_connection("127.0.0.1", app.sockets.port)
    writer.write(
        (
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\nUser-Agent: {'x' * 200}\r\n\r\n"
        ).encode()
    )
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    await asyncio.wait_for(reader.readexactly(2), 5)  # session.ready's frame: bound
    holding = [
        obj
        for obj in gc.get_objects()
        if type(obj) is Request and any(token in value for _, value in obj.headers.raw_items())
    ]
    writer.close()
    await writer.wait_closed()
    assert holding == []
