"""The real command: ``rtc-server`` processes, signals, the embedded database, the CLI."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import orjson
import pytest

from kernel.errors import CloseCode
from rtc_server.client import RpcCallError, RtcClient

from .processes import CLI, ServerProcess, clean_env, login, run_cli, start_server, stop_server


@pytest.fixture
async def served(db_dsn: str, tmp_path: Path) -> AsyncIterator[ServerProcess]:
    server = await start_server(
        "--data-dir", str(tmp_path), env=clean_env(RTC_DATABASE__DSN=db_dsn)
    )
    yield server
    if server.proc.returncode is None:
        server.proc.kill()
        await server.proc.wait()


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
    # The process itself, and the collector's full collections (rtc_server.cli).
    assert re.search(r"^process_resident_memory_bytes \d", text, re.M)
    assert re.search(r'^python_gc_collections_total\{generation="2"\} \d', text, re.M)
    await client.close()
    assert await stop_server(served) == 0


async def test_embedded_database_persists_and_admin_is_created_while_serving(
    embedded_data_dir: Path,
) -> None:
    # Not pytest's tmp_path: PostgreSQL runs as the "pgserver" user, which cannot
    # traverse /tmp/pytest-of-root when another pytest run has reset it to 0700.
    tmp_path = embedded_data_dir
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


async def test_remove_admin_command(db_dsn: str, tmp_path: Path) -> None:
    env = clean_env(RTC_DATABASE__DSN=db_dsn, RTC_SERVER__SESSION_CHECK_INTERVAL="1")

    async def cli(*args: str) -> tuple[int, str, str]:
        return await run_cli(*args, env=env)

    server = await start_server("--data-dir", str(tmp_path), env=env)
    try:
        assert (await cli("create-admin", "--phone", "9844400000", "--name", "Ops"))[0] == 0
        admin = await RtcClient.connect(server.url)
        await admin.call("auth.requestOtp", {"phone": "9844400000", "role": "admin"})
        async with asyncio.timeout(5):
            while not server.codes_for("9844400000"):
                await asyncio.sleep(0.05)
        tokens = await admin.login("9844400000", "admin", server.codes_for("9844400000")[-1])
        code, out, _ = await cli("remove-admin", "--phone", "98444 00000")
        assert code == 0 and "+919844400000" in out and "removed" in out
        # Another process ended the session: the server's session check closes the
        # socket (within server.session_check_interval), and the refresh token is dead.
        assert await admin.wait_closed(timeout=15) == CloseCode.SESSION_REVOKED
        again = await RtcClient.connect(server.url)
        try:
            with pytest.raises(RpcCallError) as refused:
                await again.call("auth.refresh", {"refreshToken": tokens["refreshToken"]})
            assert refused.value.name == "unauthenticated"
        finally:
            await again.close()
        # A phone with no admin account: exit 1, and it says so.
        code, _, err = await cli("remove-admin", "--phone", "9844400001")
        assert code == 1 and "no admin account for +919844400001" in err
    finally:
        assert await stop_server(server) == 0


async def test_jobs_list_and_run(db_dsn: str, tmp_path: Path) -> None:
    env = clean_env(RTC_DATABASE__DSN=db_dsn)

    async def cli(*args: str) -> tuple[int, str, str]:
        return await run_cli("jobs", *args, "--data-dir", str(tmp_path / "cli"), env=env)

    server = await start_server("--data-dir", str(tmp_path), env=env)
    try:
        code, out, err = await cli("list")
        assert code == 0, err
        lines = {line.split()[0]: line for line in out.splitlines()[1:]}
        assert {"housekeeping", "push.prune", "payments.reconcile"} <= set(lines)
        assert "every 3600 s" in lines["jobs.prune"]
        assert "IST" in lines["housekeeping"]  # times in the deployment's zone
        # An extra run now, taken by the running server's workers.
        code, out, err = await cli("run", "jobs.prune")
        assert code == 0, err
        job_id = int(out.split("job ")[1].split()[0])
        conn = await asyncpg.connect(db_dsn)
        try:
            async with asyncio.timeout(15):
                while await conn.fetchval("SELECT count(*) FROM jobs WHERE id = $1", job_id):
                    await asyncio.sleep(0.1)  # deleted once it succeeded
        finally:
            await conn.close()
        code, _, err = await cli("run", "no.such.job")
        assert code == 2 and "no scheduled job 'no.such.job'" in err and "jobs.prune" in err
    finally:
        assert await stop_server(server) == 0
