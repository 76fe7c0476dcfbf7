"""Bad input and limits at the dispatcher: the right error or close code, and nothing
else (frames in memory; framing, TCP back-pressure and keepalive are in tests/e2e)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernel.clock import FakeClock
from kernel.errors import CloseCode
from kernel.rpc.registry import Access, Caller, Empty, Result
from rtc_server import dispatch
from rtc_server.app import App
from rtc_server.client import RpcCallError, RtcClient
from tests.events import Loose, loose
from tests.servers import CodeLog

from .conftest import MemoryClients, prepared
from .memory import MemorySocket


async def send_and_read(clients: MemoryClients, frame: str) -> object:
    sock = clients.socket()
    await sock.send(frame)
    answer = await asyncio.wait_for(sock.sink.take(), 5)
    assert answer is not None
    return orjson.loads(answer)


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
async def test_malformed_frames_get_the_right_error(
    clients: MemoryClients, frame: str, code: int
) -> None:
    answer = await send_and_read(clients, frame)
    assert isinstance(answer, dict)
    assert answer["error"]["code"] == code
    assert "Traceback" not in answer["error"]["message"]


async def test_batch_answers_each_request_and_skips_notifications(
    clients: MemoryClients,
) -> None:
    frame = orjson.dumps(
        [
            {"jsonrpc": "2.0", "id": 1, "method": "system.ping"},
            {"jsonrpc": "2.0", "method": "system.ping"},
            {"jsonrpc": "2.0", "id": 2, "method": "no.such"},
            7,
        ]
    ).decode()
    answer = await send_and_read(clients, frame)
    assert isinstance(answer, list) and len(answer) == 3
    by_id = {item.get("id"): item for item in answer}
    assert by_id[1]["result"]["pong"] is True
    assert by_id[2]["error"]["code"] == -32601
    assert by_id[None]["error"]["code"] == -32600


@pytest.fixture
async def limited(
    request: pytest.FixtureRequest,
    db_dsn: str,
    tmp_path: Path,
    clock: FakeClock,
    code_log: CodeLog,
) -> Iterator[MemoryClients]:
    """Clients of a server with the test's ``server`` settings (``indirect`` param)."""
    app = await prepared(db_dsn, tmp_path, clock, server=request.param)
    opened = MemoryClients(app, code_log)
    yield opened  # type: ignore[misc]
    await opened.close()
    await app.stop()


@pytest.mark.parametrize(
    "limited", [{"rate_per_second": 1, "rate_burst": 5, "abuse_limit": 10}], indirect=True
)
async def test_rate_limit_answers_then_closes_abusers(limited: MemoryClients) -> None:
    client = limited.anonymous()
    results = await asyncio.gather(
        *(client.call("system.ping") for _ in range(8)), return_exceptions=True
    )
    limited_calls = [r for r in results if isinstance(r, RpcCallError)]
    assert sum(isinstance(r, dict) for r in results) == 5
    assert len(limited_calls) == 3 and all(r.name == "rate_limited" for r in limited_calls)
    assert all(r.data["retryAfterMs"] > 0 for r in limited_calls)
    sent = 0
    while client.close_code is None:
        await client.notify("system.ping")
        sent += 1
    assert sent == 7  # abuse_limit (10) refusals in a row, the three above included
    assert await client.wait_closed() == CloseCode.RATE_ABUSE


class Pong(Result):
    ok: bool = True


@pytest.mark.parametrize("limited", [{"max_inflight": 2}], indirect=True)
async def test_in_flight_limit_answers_overloaded(limited: MemoryClients) -> None:
    release = asyncio.Event()

    async def slow(caller: Caller, params: Empty) -> Pong:
        await release.wait()
        return Pong()

    limited.app.registry.add("test.slow", slow, result=Pong, access=Access.PUBLIC)
    client = limited.anonymous()
    calls = [asyncio.create_task(client.call("test.slow")) for _ in range(3)]
    done, _ = await asyncio.wait(calls, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    (first,) = done
    with pytest.raises(RpcCallError) as overloaded:
        first.result()
    assert overloaded.value.name == "overloaded" and overloaded.value.data["retryable"]
    release.set()
    assert [(await c)["ok"] for c in calls if c is not first] == [True, True]


@pytest.mark.parametrize("limited", [{"auth_timeout": 0.3}], indirect=True)
async def test_unauthenticated_socket_is_closed_after_auth_timeout(
    limited: MemoryClients,
) -> None:
    anonymous = limited.anonymous()
    _, tokens = await limited.login()
    logged_in = await limited.device(tokens)
    assert await anonymous.wait_closed() == CloseCode.AUTH_TIMEOUT
    assert (await logged_in.call("system.ping"))["pong"]  # bound in time: it stays


@pytest.mark.parametrize("limited", [{"send_buffer_bytes": 65536}], indirect=True)
async def test_slow_consumer_is_closed_not_buffered(limited: MemoryClients) -> None:
    """Live events to a socket whose reader is 64 KiB behind close it (4008): the
    server never buffers for a slow client; the log keeps the events for its resume."""
    _, tokens = await limited.login()
    stalled = limited.socket()
    authenticate = {"accessToken": tokens["accessToken"]}
    await stalled.send(
        orjson.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": "session.authenticate", "params": authenticate}
        ).decode()
    )
    assert await stalled.sink.take() is not None  # its answer; nothing is read after it
    user_id = tokens["user"]["id"]
    big = Loose.of({"blob": "x" * 8000})
    for _ in range(12):
        await limited.app.publisher.publish(user_id, loose("bulk"), big)
    assert stalled.close_code == CloseCode.SLOW_CONSUMER
    assert stalled.sink.most_unread <= 65536 + 8100  # never buffered beyond the limit
    resumed = await limited.device(tokens, last_seq=0)
    async with asyncio.timeout(5):
        seqs = [(await resumed.next_event()).seq for _ in range(12)]
    assert seqs == list(range(1, 13))


async def test_session_authenticate_must_be_sent_alone(clients: MemoryClients) -> None:
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
    answer = await send_and_read(clients, frame)
    assert isinstance(answer, list)
    by_id = {item["id"]: item for item in answer}
    assert by_id[1]["error"]["code"] == -32600
    assert by_id[2]["result"]["pong"] is True


@pytest.mark.parametrize("limited", [{"max_inflight": 4}], indirect=True)
async def test_refused_batch_is_answered_as_a_batch(limited: MemoryClients) -> None:
    big = orjson.dumps(
        [{"jsonrpc": "2.0", "id": n, "method": "system.ping"} for n in range(5)]
    ).decode()
    answer = await send_and_read(limited, big)
    assert isinstance(answer, dict) and answer["error"]["data"]["limit"] == 4
    sock = limited.socket()
    for _ in range(60):  # drain the bucket (burst 40)
        await sock.send('{"jsonrpc":"2.0","method":"system.ping"}')
    await sock.send('[{"jsonrpc":"2.0","id":"b","method":"system.ping"}]')
    async with asyncio.timeout(5):
        while True:
            frame = await sock.sink.take()
            assert frame is not None
            reply = orjson.loads(frame)
            if isinstance(reply, list) or reply.get("id") == "b":
                break
    assert isinstance(reply, list)
    assert reply[0]["id"] == "b" and reply[0]["error"]["code"] == 4029


def _encodable(value: object) -> bool:
    try:
        orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return False
    return True


def _json(value: object) -> str:
    return (
        orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
        if _encodable(value)
        else "null"
    )


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
    ).map(_json),
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
    ).map(_json),
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(frames, min_size=1, max_size=8))
def test_random_frames_never_break_the_server(
    served: tuple[asyncio.Runner, App, RtcClient], batch: list[str]
) -> None:
    """Whatever arrives, each request gets an answer or a clean close, and the server
    keeps serving a well-behaved socket."""
    runner, app, good = served

    async def attempt() -> None:
        sock = MemorySocket(app)
        for frame in batch:
            await sock.send(frame)
        await sock.send('{"jsonrpc":"2.0","id":"last","method":"system.ping"}')
        async with asyncio.timeout(5):
            while (frame := await sock.sink.take()) is not None:
                answer = orjson.loads(frame)
                items = answer if isinstance(answer, list) else [answer]
                for item in items:
                    if "error" in item:
                        assert set(item["error"]) == {"code", "message", "data"}
                        assert "Traceback" not in item["error"]["message"]
                if any(i.get("id") == "last" for i in items):
                    break
        await sock.close()
        assert (await good.call("system.ping"))["pong"]

    runner.run(attempt())


@pytest.fixture
def served(db_dsn: str, tmp_path: Path) -> Iterator[tuple[asyncio.Runner, App, RtcClient]]:
    """One prepared server for all hypothesis examples, on a loop of the test's own."""
    runner = asyncio.Runner()
    app = runner.run(
        prepared(
            db_dsn,
            tmp_path,
            FakeClock(),
            server={"rate_burst": 10_000, "rate_per_second": 10_000},
        )
    )

    async def good_client() -> RtcClient:
        return RtcClient(MemorySocket(app), "memory:")  # type: ignore[arg-type]

    good = runner.run(good_client())
    yield runner, app, good
    runner.run(good.close())
    runner.run(app.stop())
    runner.close()


async def test_slow_request_lines_are_bounded_under_overload(
    db_dsn: str,
    tmp_path: Path,
    clock: FakeClock,
    code_log: CodeLog,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When every request is slow (an overloaded server), the warnings stop at the
    budget instead of one per request; the latency metric still counts them all."""
    monkeypatch.setattr(dispatch, "SLOW_REQUEST_SECONDS", -1.0)  # every request is slow
    monkeypatch.setattr(dispatch, "SLOW_LINES_BURST", 5)
    monkeypatch.setattr(dispatch, "SLOW_LINES_PER_SECOND", 1e-6)
    app = await prepared(db_dsn, tmp_path, clock, server={"rate_per_second": 1000})
    opened = MemoryClients(app, code_log)
    try:
        with caplog.at_level(logging.INFO, logger="rtc.rpc"):
            for client in [opened.anonymous() for _ in range(4)]:
                await asyncio.gather(*(client.call("system.ping") for _ in range(10)))
        lines = [r for r in caplog.records if r.name == "rtc.rpc" and r.message == "request"]
        assert len(lines) == 5
        assert {(r.levelno, vars(r)["method"]) for r in lines} == {(logging.WARNING, "system.ping")}
        assert app.metrics.rpc.methods["system.ping"].count == 40
    finally:
        await opened.close()
        await app.stop()
