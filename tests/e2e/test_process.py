"""The real command: ``rtc-server`` processes, signals, the embedded database, the CLI."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest

from rtc_server.client import RtcClient
from rtc_server.errors import CloseCode

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "rtc_server.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    proc: asyncio.subprocess.Process
    port: int
    http_port: int
    stderr: list[str]

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def codes_for(self, phone: str) -> list[str]:
        codes = []
        for line in self.stderr:
            if '"code"' in line and phone in line:
                codes.append(orjson.loads(line)["code"])
        return codes


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTC_")}
    env.update(extra)
    return env


async def start_server(*args: str, env: dict[str, str]) -> ServerProcess:
    port, http_port = free_port(), free_port()
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--port",
        str(port),
        "--http-port",
        str(http_port),
        *args,
        env=env,
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    server = ServerProcess(proc, port, http_port, [])

    async def pump() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            server.stderr.append(line.decode())

    server_pump = asyncio.create_task(pump())
    server.proc._pump = server_pump  # type: ignore[attr-defined]
    async with aiohttp.ClientSession() as http:
        async with asyncio.timeout(60):
            while True:
                if proc.returncode is not None:
                    raise AssertionError("server exited:\n" + "".join(server.stderr))
                try:
                    async with http.get(f"http://127.0.0.1:{http_port}/readyz") as r:
                        if r.status == 200:
                            return server
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)


async def stop_server(server: ServerProcess) -> int:
    if server.proc.returncode is None:
        server.proc.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(server.proc.wait(), 30)
    await server.proc._pump  # type: ignore[attr-defined]
    return code


@pytest.fixture
async def served(db_dsn: str, tmp_path: Path) -> AsyncIterator[ServerProcess]:
    server = await start_server(
        "--data-dir", str(tmp_path), env=clean_env(RTC_DATABASE__DSN=db_dsn)
    )
    yield server
    if server.proc.returncode is None:
        server.proc.kill()
        await server.proc.wait()


async def login(server: ServerProcess, phone: str, role: str = "customer") -> RtcClient:
    client = await RtcClient.connect(server.url)
    await client.call("auth.requestOtp", {"phone": phone, "role": role})
    async with asyncio.timeout(5):
        while not server.codes_for(phone[-10:]):
            await asyncio.sleep(0.05)
    await client.login(phone, role, server.codes_for(phone[-10:])[-1])
    return client


async def test_logs_are_json_lines_with_request_fields(served: ServerProcess) -> None:
    client = await login(served, "9811111111")
    await client.close()
    entries = [orjson.loads(line) for line in served.stderr if line.strip()]
    assert entries, "no log lines"
    for entry in entries:
        assert {"ts", "level", "event"} <= entry.keys()
    login_entry = next(e for e in entries if e["event"] == "login")
    assert login_entry["role"] == "customer" and isinstance(login_entry["user"], int)
    assert await stop_server(served) == 0


async def test_sigterm_tells_clients_to_reconnect_and_exits_cleanly(
    served: ServerProcess,
) -> None:
    client = await login(served, "9822222222")
    second = await RtcClient.connect(served.url)
    served.proc.send_signal(signal.SIGTERM)
    assert await client.wait_closed() == CloseCode.SERVICE_RESTART
    assert await second.wait_closed() == CloseCode.SERVICE_RESTART
    assert await stop_server(served) == 0
    assert any('"stopped"' in line for line in served.stderr)


async def test_metrics_and_health_on_the_http_port(served: ServerProcess) -> None:
    client = await login(served, "9833333333")
    await client.call("system.ping")
    base = f"http://127.0.0.1:{served.http_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/healthz") as r:
            assert r.status == 200
        async with http.get(base + "/readyz") as r:
            body = await r.json()
            assert r.status == 200
            assert body["checks"] == {
                "database": True,
                "migrations": True,
                "bus": True,
                "accepting": True,
            }
        async with http.get(base + "/metrics") as r:
            text = await r.text()
    assert re.search(r"^rtc_sockets_authenticated 1\.0$", text, re.M)
    assert re.search(r'^rtc_rpc_requests_total\{method="system.ping"\} 1\.0$', text, re.M)
    assert re.search(r"^rtc_db_pool_max 20\.0$", text, re.M)
    assert 'rtc_rpc_latency_seconds_bucket{le="0.005",method="auth.verifyOtp"}' in text
    await client.close()
    assert await stop_server(served) == 0


async def test_embedded_database_persists_and_admin_is_created_while_serving(
    tmp_path: Path,
) -> None:
    env = clean_env()

    async def create_admin() -> str:
        created = await asyncio.create_subprocess_exec(
            *CLI,
            "create-admin",
            "--phone",
            "98444 44444",
            "--name",
            "Ops",
            "--data-dir",
            str(tmp_path),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(created.communicate(), 60)
        assert created.returncode == 0, err.decode()
        return out.decode()

    server = await start_server("--data-dir", str(tmp_path), env=env)
    try:
        out = await create_admin()
        assert "+919844444444" in out and "created" in out and "already" not in out
        admin = await login(server, "9844444444", role="admin")
        first_id = (await admin.call("auth.sessions"))["sessions"][0]["sessionId"]
        assert first_id
        await admin.close()
        # The server still works after the CLI's process detached from the database.
        customer = await login(server, "9855555555")
        await customer.close()
    finally:
        assert await stop_server(server) == 0
    again = await start_server("--data-dir", str(tmp_path), env=env)
    try:
        assert "already existed" in await create_admin()  # the account was kept
        customer = await login(again, "9866666666")
        await customer.close()
    finally:
        assert await stop_server(again) == 0


async def test_bad_setting_stops_start_up_naming_it(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--data-dir",
        str(tmp_path),
        env=clean_env(RTC_SERVER__MAX_INFLIGHT="many"),
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert "server.max_inflight (RTC_SERVER__MAX_INFLIGHT)" in err.decode()


async def test_migrate_command(db_dsn: str, tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "migrate",
        "--data-dir",
        str(tmp_path),
        env=clean_env(RTC_DATABASE__DSN=db_dsn),
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert b"nothing to apply" in err  # the template database is already migrated
