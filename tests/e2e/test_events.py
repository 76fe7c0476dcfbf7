"""Events over real sockets: resuming at the handshake, and across a server restart.

The rest of event delivery (acks, replay, gap fills, fan-outs) is tested on sockets in
memory: ``tests/driver/test_events.py``."""

from __future__ import annotations

import asyncio

from rtc_server.app import App
from rtc_server.client import RtcClient
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
