"""Limits and bad input on real sockets: the right error or close code, and nothing else."""

from __future__ import annotations

import asyncio
import socket

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from kernel.errors import CloseCode
from kernel.rpc.registry import Access, Caller, Empty, Result
from rtc_server.app import App
from rtc_server.client import RpcCallError, RtcClient
from tests.events import Loose, loose

from .conftest import AppFactory, Clients, CodeLog, ws_url


async def send_and_read(app: App, frame: str | bytes) -> object:
    async with connect(ws_url(app)) as ws:
        await ws.send(frame)
        return orjson.loads(await asyncio.wait_for(ws.recv(), 5))


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", -32700),
        ('{"jsonrpc":"2.0","method":"system.ping","id":1,"params":"x"}', -32600),
        ('{"jsonrpc":"1.0","method":"system.ping","id":1}', -32600),
        ('{"jsonrpc":"2.0","method":"no.such","id":1}', -32601),
        ('{"jsonrpc":"2.0","method":"auth.requestOtp","id":1,"params":{"phone":5}}', -32602),
        ('{"jsonrpc":"2.0","method":"auth.requestOtp","id":1,"params":[1,2]}', -32602),
        ('{"jsonrpc":"2.0","method":"events.ack","id":1,"params":{"seq":1e400}}', -32700),
        ('{"jsonrpc":"2.0","method":"auth.sessions","id":1}', 4001),
        ("[" + "[" * 5000 + "]" * 5000 + "]", -32700),
    ],
)
async def test_malformed_frames_get_the_right_error(app: App, frame: str, code: int) -> None:
    answer = await send_and_read(app, frame)
    assert isinstance(answer, dict)
    assert answer["error"]["code"] == code
    assert "Traceback" not in answer["error"]["message"]


async def test_batch_answers_each_request_and_skips_notifications(app: App) -> None:
    frame = orjson.dumps(
        [
            {"jsonrpc": "2.0", "id": 1, "method": "system.ping"},
            {"jsonrpc": "2.0", "method": "system.ping"},
            {"jsonrpc": "2.0", "id": 2, "method": "no.such"},
            7,
        ]
    ).decode()
    answer = await send_and_read(app, frame)
    assert isinstance(answer, list) and len(answer) == 3
    by_id = {item.get("id"): item for item in answer}
    assert by_id[1]["result"]["pong"] is True
    assert by_id[2]["error"]["code"] == -32601
    assert by_id[None]["error"]["code"] == -32600


async def test_binary_frame_closes_1003(app: App) -> None:
    async with connect(ws_url(app)) as ws:
        await ws.send(b"\x00\x01")
        await ws.wait_closed()
        assert ws.close_code == CloseCode.UNSUPPORTED_DATA


async def test_oversized_frame_closes_1009(make_app: AppFactory) -> None:
    app = await make_app(server={"max_frame_bytes": 4096})
    async with connect(ws_url(app), max_size=None) as ws:
        await ws.send("x" * 5000)
        await ws.wait_closed()
        assert ws.close_code == CloseCode.MESSAGE_TOO_BIG


async def test_invalid_utf8_closes_1007(app: App) -> None:
    # A hand-made masked text frame whose payload is not UTF-8.
    host, port = "127.0.0.1", app.sockets.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    payload = b"\xff\xfe\xfd"
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    await writer.drain()
    header = await asyncio.wait_for(reader.readexactly(2), 5)
    assert header[0] == 0x88  # a close frame
    body = await reader.readexactly(header[1])
    assert int.from_bytes(body[:2], "big") == CloseCode.INVALID_PAYLOAD
    writer.close()


async def test_rate_limit_answers_then_closes_abusers(make_app: AppFactory) -> None:
    app = await make_app(server={"rate_per_second": 1, "rate_burst": 5, "abuse_limit": 10})
    client = await RtcClient.connect(ws_url(app))
    results = await asyncio.gather(
        *(client.call("system.ping") for _ in range(8)), return_exceptions=True
    )
    limited = [r for r in results if isinstance(r, RpcCallError)]
    assert sum(isinstance(r, dict) for r in results) == 5
    assert len(limited) == 3 and all(r.name == "rate_limited" for r in limited)
    assert all(r.data["retryAfterMs"] > 0 for r in limited)
    for _ in range(12):
        await client.notify("system.ping")
    assert await client.wait_closed() == CloseCode.RATE_ABUSE


async def test_in_flight_limit_answers_overloaded(make_app: AppFactory) -> None:
    app = await make_app(server={"max_inflight": 2})
    release = asyncio.Event()

    async def slow(caller: Caller, params: Empty) -> Pong:
        await release.wait()
        return Pong()

    app.registry.add("test.slow", slow, result=Pong, access=Access.PUBLIC)
    client = await RtcClient.connect(ws_url(app))
    calls = [asyncio.create_task(client.call("test.slow")) for _ in range(3)]
    done, _ = await asyncio.wait(calls, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    (first,) = done
    with pytest.raises(RpcCallError) as overloaded:
        first.result()
    assert overloaded.value.name == "overloaded" and overloaded.value.data["retryable"]
    release.set()
    assert [(await c)["ok"] for c in calls if c is not first] == [True, True]
    await client.close()


class Pong(Result):
    ok: bool = True


async def test_unauthenticated_socket_is_closed_after_auth_timeout(make_app: AppFactory) -> None:
    app = await make_app(server={"auth_timeout": 0.3})
    client = await RtcClient.connect(ws_url(app))
    assert await client.wait_closed() == CloseCode.AUTH_TIMEOUT


async def test_slow_consumer_is_closed_not_buffered(
    make_app: AppFactory, code_log: CodeLog
) -> None:
    app = await make_app(server={"send_buffer_bytes": 65536})
    logins = Clients(app, code_log)
    _, tokens = await logins.login()
    user_id = tokens["user"]["id"]
    # A raw socket that never reads, with a tiny receive buffer.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", app.sockets.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {tokens['accessToken']}\r\n\r\n"
        ).encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    drops_before = app.metrics.send_drops._value.get()
    big = {"blob": "x" * 8000}
    async with asyncio.timeout(20):
        while app.metrics.send_drops._value.get() == drops_before:
            await app.publisher.publish(user_id, loose("bulk"), Loose.of(big))
    writer.close()
    await logins.close()


frames = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**70), 2**70)
        | st.floats()
        | st.text(max_size=20),
        lambda c: (
            st.lists(c, max_size=5)
            | st.dictionaries(
                st.sampled_from(["jsonrpc", "id", "method", "params", "x"]), c, max_size=5
            )
        ),
        max_leaves=25,
    ).map(
        lambda v: (
            orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS).decode() if _encodable(v) else "null"
        )
    ),
    st.fixed_dictionaries(
        {
            "jsonrpc": st.sampled_from(["2.0", "2", 2]),
            "id": st.one_of(st.integers(), st.text(max_size=5), st.none()),
            "method": st.sampled_from(
                [
                    "system.ping",
                    "auth.requestOtp",
                    "events.ack",
                    "session.authenticate",
                    "auth.verifyOtp",
                    "x",
                ]
            ),
            "params": st.dictionaries(
                st.sampled_from(["phone", "role", "code", "seq", "accessToken", "lastSeq"]),
                st.one_of(st.integers(), st.text(max_size=12), st.none()),
                max_size=4,
            ),
        }
    ).map(
        lambda d: (
            orjson.dumps(d, option=orjson.OPT_NON_STR_KEYS).decode() if _encodable(d) else "null"
        )
    ),
)


def _encodable(value: object) -> bool:
    try:
        orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return False
    return True


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(frames, min_size=1, max_size=8))
def test_random_frames_never_break_the_server(app_loop_runner: object, batch: list[str]) -> None:
    """Whatever arrives, each request gets an answer or a clean close, and the server
    keeps serving a well-behaved socket."""
    runner, app, good = app_loop_runner  # type: ignore[misc]

    async def attempt() -> None:
        async with connect(ws_url(app)) as ws:
            for frame in batch:
                await ws.send(frame)
            await ws.send('{"jsonrpc":"2.0","id":"last","method":"system.ping"}')
            async with asyncio.timeout(5):
                while True:
                    try:
                        answer = orjson.loads(await ws.recv())
                    except Exception:  # closed by a limit: acceptable, not a crash
                        break
                    items = answer if isinstance(answer, list) else [answer]
                    for item in items:
                        if "error" in item:
                            assert set(item["error"]) == {"code", "message", "data"}
                            assert "Traceback" not in item["error"]["message"]
                    if any(i.get("id") == "last" for i in items):
                        break
        assert (await good.call("system.ping"))["pong"]

    runner.run(attempt())


@pytest.fixture
def app_loop_runner(db_dsn: str, tmp_path: object):  # type: ignore[no-untyped-def]
    """One server for all hypothesis examples (a fresh one per example would be slow)."""
    from .conftest import settings_for

    runner = asyncio.Runner()
    app = App(
        settings_for(
            db_dsn,
            tmp_path,
            server={
                "rate_burst": 10_000,  # type: ignore[arg-type]
                "rate_per_second": 10_000,
            },
        )
    )
    runner.run(app.start())
    good = runner.run(RtcClient.connect(ws_url(app)))
    yield runner, app, good
    runner.run(good.close())
    runner.run(app.stop())
    runner.close()


async def test_session_authenticate_must_be_sent_alone(app: App) -> None:
    frame = orjson.dumps(
        [
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "session.authenticate",
                "params": {"accessToken": "x"},
            },
            {"jsonrpc": "2.0", "id": 2, "method": "system.ping"},
        ]
    ).decode()
    answer = await send_and_read(app, frame)
    assert isinstance(answer, list)
    by_id = {item["id"]: item for item in answer}
    assert by_id[1]["error"]["code"] == -32600
    assert by_id[2]["result"]["pong"] is True


async def test_refused_batch_is_answered_as_a_batch(make_app: AppFactory) -> None:
    app = await make_app(server={"max_inflight": 4})
    big = orjson.dumps(
        [{"jsonrpc": "2.0", "id": n, "method": "system.ping"} for n in range(5)]
    ).decode()
    answer = await send_and_read(app, big)
    assert isinstance(answer, dict) and answer["error"]["data"]["limit"] == 4
    async with connect(ws_url(app)) as ws:
        for _ in range(60):  # drain the bucket (burst 40)
            await ws.send('{"jsonrpc":"2.0","method":"system.ping"}')
        await ws.send('[{"jsonrpc":"2.0","id":"b","method":"system.ping"}]')
        async with asyncio.timeout(5):
            while True:
                reply = orjson.loads(await ws.recv())
                if isinstance(reply, list) or reply.get("id") == "b":
                    break
        assert isinstance(reply, list)
        assert reply[0]["id"] == "b" and reply[0]["error"]["code"] == 4029


async def test_keepalive_pings_and_closes_a_silent_peer(make_app: AppFactory) -> None:
    app = await make_app(server={"ping_interval": 0.2, "ping_timeout": 0.2})
    # A live client answers pings (websockets does it by itself): it stays open.
    alive = await RtcClient.connect(ws_url(app))
    # A peer that never reads: no pong ever comes back.
    reader, writer = await asyncio.open_connection("127.0.0.1", app.sockets.port)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await reader.readuntil(b"\r\n\r\n")
    frames = b""
    async with asyncio.timeout(5):
        while b"\x88" not in frames:  # until a close frame arrives
            frames += await reader.read(100)
    assert frames[0] == 0x89  # a ping came first
    close_at = frames.index(b"\x88")
    code = int.from_bytes(frames[close_at + 2 : close_at + 4], "big")
    assert code == CloseCode.INTERNAL_ERROR
    writer.close()
    assert (await alive.call("system.ping"))["pong"]
    await alive.close()
