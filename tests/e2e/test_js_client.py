"""The JavaScript client (``clients/js``) against a real server.

Node's own test runner runs ``clients/js/test/`` against an App of this test:
``RTC_WS_URL`` is its socket port, and ``RTC_TEST_CONTROL`` a small HTTP server of this
test that does for node what a developer does by hand or a phone does by itself: hand
out a fresh phone number, read the login code the development SMS sender logged, make
an admin account (as ``rtc-server create-admin`` does), move the server's clock (tokens
issued with it moved back end soon by the wall clock, which checks each call; moved
forward, session.authenticate finds a token expired), and cut a user's sockets without a
closing handshake (a network drop, as the client sees it: close 1006).

The committed ``clients/js/src/types.d.ts`` and the list of idempotent methods in
``clients/js/src/client.js`` must be what ``scripts/gen-types.mjs`` makes of this
server's ``rpc.discover``: after adding or changing a method, event or error, regenerate
them with
``RTC_UPDATE_JS_TYPES=1 .venv/bin/python -m pytest tests/e2e/test_js_client.py -k types``
(or ``npm run gen-types -- ws://localhost:8765/ws`` in ``clients/js`` against a running
server).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
from aiohttp import web

from kernel.clock import FakeClock
from rtc_server.app import App
from rtc_server.sink import WebSocketSink
from storage import accounts
from tests.servers import CodeLog

from .conftest import AppFactory, e164, ws_url

CLIENT = Path(__file__).parents[2] / "clients" / "js"
# Node 20 has a WebSocket (undici's) only behind this flag; Node 22 and later have it
# anyway and still accept the flag. No npm package is needed.
NODE_FLAGS = ["--experimental-websocket", "--disable-warning=ExperimentalWarning"]


def _node() -> tuple[str | None, str]:
    """The node to run, or None and why not."""
    node = shutil.which("node")
    if node is None:
        return None, "node not found: the JavaScript client's tests need Node.js 20.11+"
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
    major, minor = (int(n) for n in re.findall(r"\d+", version)[:2])
    if (major, minor) < (20, 11):
        return None, f"node {version.strip()}: the JavaScript client's tests need 20.11+"
    return node, ""


NODE, NO_NODE = _node()
pytestmark = pytest.mark.skipif(NODE is None, reason=NO_NODE)


class SteppingClock(FakeClock):
    """The real time plus an offset node moves: tokens live as in production (the
    client schedules their renewal by its own clock), unless node moves it."""

    def __init__(self) -> None:
        super().__init__()
        self._offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock()


class Control:
    """What node may ask of the test, over HTTP on a loopback port."""

    def __init__(self, app: App, code_log: CodeLog, clock: SteppingClock) -> None:
        self.app = app
        self.code_log = code_log
        self.clock = clock
        self._phones = iter(range(9_000_000_000, 9_999_999_999, 7_919))
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        routes = web.Application()
        routes.router.add_get("/phone", self.phone)
        routes.router.add_get("/code", self.code)
        routes.router.add_post("/admins", self.admin)
        routes.router.add_post("/clock", self.advance)
        routes.router.add_post("/drop", self.drop)
        self._runner = web.AppRunner(routes, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = cast(list[tuple[str, int]], self._runner.addresses)[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def phone(self, request: web.Request) -> web.Response:
        return web.json_response({"phone": str(next(self._phones))})

    async def code(self, request: web.Request) -> web.Response:
        codes = self.code_log.codes.get(e164(request.query["phone"]))
        if not codes:
            return web.json_response({"error": "no code sent to this phone"}, status=404)
        return web.json_response({"code": codes[-1]})

    async def admin(self, request: web.Request) -> web.Response:
        phone = str(next(self._phones))
        assert self.app.db is not None
        await accounts.create_admin(self.app.db, e164(phone), "Ops")
        return web.json_response({"phone": phone})

    async def advance(self, request: web.Request) -> web.Response:
        self.clock.advance(float(request.query["seconds"]))
        return web.json_response({"now": self.clock.now().isoformat()})

    async def drop(self, request: web.Request) -> web.Response:
        """Abort the TCP connection of each socket of the user: no close frame."""
        sockets = list(self.app.hub.sockets_of(int(request.query["userId"])))
        for conn in sockets:
            cast(WebSocketSink, conn.sink).ws.transport.abort()
        return web.json_response({"dropped": len(sockets)})


@pytest.fixture
async def control(
    make_app: AppFactory, code_log: CodeLog, clock: SteppingClock
) -> AsyncIterator[Control]:
    app = await make_app(
        auth={
            "access_token_ttl": 30,
            # Every test file logs in several users from one address, some twice.
            "otp_resend_cooldown": 0,
            "otp_max_per_ip": 10_000,
            "otp_max_per_prefix": 10_000,
        },
    )
    served = Control(app, code_log, clock)
    await served.start()
    yield served
    await served.close()


async def run_node(*args: str, env: dict[str, str] | None = None, timeout: float) -> str:
    """Run node in ``clients/js``; its output (stdout and stderr), failing on a non-zero
    exit or when it runs past ``timeout`` seconds."""
    assert NODE is not None
    process = await asyncio.create_subprocess_exec(
        NODE,
        *NODE_FLAGS,
        *args,
        cwd=CLIENT,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its group: the test runner's file processes too
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = await process.communicate()
        pytest.fail(f"node {' '.join(args)} ran past {timeout} s:\n{output.decode()}")
    text = output.decode()
    if process.returncode != 0:
        pytest.fail(f"node {' '.join(args)} exited {process.returncode}:\n{text}")
    return text


@pytest.mark.timeout(240)
async def test_the_client_against_a_real_server(control: Control) -> None:
    output = await run_node(
        "--test",
        "--test-reporter=spec",
        "--test-concurrency=1",
        "--test-timeout=60000",
        "test/",
        env={"RTC_WS_URL": ws_url(control.app), "RTC_TEST_CONTROL": control.url},
        timeout=200,
    )
    sys.stdout.write(output)  # shown with -s, and with a failure below
    counts = {name: int(n) for name, n in re.findall(r"^ℹ (\w+) (\d+)$", output, re.MULTILINE)}
    assert counts["tests"] > 0 and counts["pass"] == counts["tests"], counts
    assert counts["skipped"] == counts["cancelled"] == counts["todo"] == 0, counts


async def test_types_are_generated_from_this_server(app: App, tmp_path: Path) -> None:
    committed = {name: (CLIENT / "src" / name) for name in ("types.d.ts", "client.js")}
    await run_node("scripts/gen-types.mjs", ws_url(app), str(tmp_path), timeout=30)
    if os.environ.get("RTC_UPDATE_JS_TYPES"):
        for name, path in committed.items():
            path.write_text((tmp_path / name).read_text())
    for name, path in committed.items():
        assert (tmp_path / name).read_text() == path.read_text(), (
            f"clients/js/src/{name} is not what the server's rpc.discover gives: regenerate "
            "it (RTC_UPDATE_JS_TYPES=1 .venv/bin/python -m pytest "
            "tests/e2e/test_js_client.py -k types, then scripts/sync-console) and commit it"
        )
