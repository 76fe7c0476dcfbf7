"""Real ``rtc-server`` processes for the end-to-end tests: start, stop, log in."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from dataclasses import dataclass

import aiohttp
import orjson

from rtc_server.client import RtcClient

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


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``rtc-server ARGS`` to its end: its exit code, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


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


async def login(server: ServerProcess, phone: str, role: str = "customer") -> RtcClient:
    client = await RtcClient.connect(server.url)
    await client.call("auth.requestOtp", {"phone": phone, "role": role})
    async with asyncio.timeout(5):
        while not server.codes_for(phone[-10:]):
            await asyncio.sleep(0.05)
    await client.login(phone, role, server.codes_for(phone[-10:])[-1])
    return client
