"""The payments storm: ``python -m bench.payments [--orders 100] [--callbacks 10] [--verifies 10]``.

Two server instances (``rtc-server`` processes) on one PostgreSQL (embedded) and one
Redis, paid through a Paytm simulator of this process (the gateway's protocol on a
loopback port). Seeds ``--orders`` providers with a pending paid listing each (bulk SQL,
a login session and token each), opens their sockets across both instances, and has
each start its listing fee (``payments.initiate``). The simulator then settles every
order as paid, telling nobody. The storm: for every order at once, ``--callbacks``
gateway callbacks (signed form posts, alternately to each instance's callback and
webhook) and ``--verifies`` ``payments.verify`` calls on the provider's socket, all
concurrently.

Then it counts, in PostgreSQL, what the storm bought: periods, ``paid`` transitions,
notifications, ``payment.updated`` events; each must equal ``--orders`` exactly. Prints
a table with verify and callback latency (p50/p99/max, client clock), the servers' CPU
during the storm, and the gateway's Transaction Status calls; writes
``bench/results/<timestamp>-payments.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
import asyncpg
import httpx

from api.auth.tokens import AccessTokens
from api.payments.paytm.simulator import PaytmSimulator
from api.payments.paytm.wire import Endpoint
from bench import report
from bench.load import percentile
from bench.procfs import cpu_seconds, own_cpu_seconds, postgres_cpu, postmaster_pid
from bench.run import ROOT, environment, free_port, save_results, say, server_env, tail
from bench.seed import TOKEN_TTL, connect
from rtc_server.client import RtcClient
from rtc_server.scaleout.local_redis import RedisServer
from storage.embedded import EmbeddedPostgres
from storage.migrate import apply_migrations

MID = "BenchMerchant000001"
KEY = "bench-paytm-key!"  # 16 characters: AES-128, as Paytm issues them
START_TIMEOUT = 60.0

_PROVIDERS = """
WITH new_users AS (
    INSERT INTO users (phone, role, full_name, is_verified)
    SELECT '+91' || (6500000000 + g)::text, 'provider', 'Provider ' || g, true
    FROM generate_series(1, $1::int) AS g
    RETURNING id
), sessions AS (
    INSERT INTO auth_sessions (id, user_id, device, ip, expires_at)
    SELECT gen_random_uuid(), id, '{"platform": "other", "model": "bench"}'::jsonb,
           '127.0.0.1', now() + interval '1 day'
    FROM new_users
    RETURNING user_id, id
), listings AS (
    INSERT INTO provider_services (provider_id, service_id, status, state, city, full_address)
    SELECT user_id, $2, 'pending', 'Kerala', 'Kochi', 'Shop ' || user_id FROM sessions
    RETURNING provider_id, id
)
SELECT s.user_id, s.id AS session_id, l.id AS listing FROM sessions s
JOIN listings l ON l.provider_id = s.user_id ORDER BY s.user_id
"""


class Storm:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.jwt_secret = secrets.token_hex(32)
        self.children: list[subprocess.Popen[bytes]] = []
        self.postgres: EmbeddedPostgres | None = None
        self.redis: RedisServer | None = None

    # -- set-up --

    def start_stores(self) -> None:
        say("starting the embedded PostgreSQL and a Redis")
        self.postgres = EmbeddedPostgres.start(self.workdir / "pg")
        self.redis = RedisServer()
        self.redis.start()

    async def seed(self) -> list[tuple[str, int]]:
        """Providers with a pending plumbing listing; their tokens and listings."""
        assert self.postgres is not None
        db = await connect(self.postgres.dsn)
        try:
            await apply_migrations(db)
        finally:
            await db.close()
        conn = await asyncpg.connect(self.postgres.dsn)
        try:
            service = await conn.fetchval("SELECT id FROM services WHERE slug = 'plumber'")
            rows = await conn.fetch(_PROVIDERS, self.args.orders, service)
        finally:
            await conn.close()
        issuer = AccessTokens(self.jwt_secret.encode(), ttl=TOKEN_TTL)
        now = datetime.now(UTC)
        return [
            (
                issuer.issue(r["user_id"], "provider", UUID(str(r["session_id"])), now)[0],
                r["listing"],
            )
            for r in rows
        ]

    def start_server(self, n: int, gateway_url: str) -> tuple[subprocess.Popen[bytes], int, int]:
        assert self.postgres is not None and self.redis is not None
        port, http_port = free_port(), free_port()
        env = dict(os.environ)
        env.update(
            {
                **server_env(
                    port=port,
                    http_port=http_port,
                    data_dir=self.workdir / f"data-{n}",
                    dsn=self.postgres.dsn,
                    jwt_secret=self.jwt_secret,
                    rate=100_000,
                ),
                "RTC_REDIS__URL": self.redis.url,
                "RTC_PAYMENTS__GATEWAY": "paytm",
                "RTC_PAYMENTS__PAYTM_MID": MID,
                "RTC_PAYMENTS__PAYTM_MERCHANT_KEY": KEY,
                "RTC_PAYMENTS__PAYTM_BASE_URL": gateway_url,
                # Not the storm's business: the reconciler stays out of the way.
                "RTC_PAYMENTS__CHECK_AFTER": "3600",
            }
        )
        log = self.workdir / f"server-{n}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "rtc_server.cli", "serve"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.children.append(process)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server {n} exited:\n" + tail(log))
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/readyz", timeout=1).status_code == 200:
                    return process, port, http_port
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server {n} not ready:\n" + tail(log))

    def close(self) -> None:
        for process in self.children:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in self.children:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        if self.redis is not None:
            self.redis.close()
        if self.postgres is not None:
            self.postgres.stop()

    # -- the storm --

    async def run(self) -> dict[str, Any]:
        self.start_stores()
        assert self.postgres is not None
        providers = await self.seed()
        simulator = await PaytmSimulator({MID: KEY}).start()
        try:
            servers = [self.start_server(n, simulator.url) for n in (1, 2)]
            say(f"{len(providers)} providers, two instances; opening their sockets")
            clients = [
                await RtcClient.connect(
                    f"ws://127.0.0.1:{servers[i % 2][1]}/ws", access_token=token
                )
                for i, (token, _) in enumerate(providers)
            ]
            try:
                return await self._storm(simulator, servers, clients, providers)
            finally:
                await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        finally:
            await simulator.close()

    async def _storm(
        self,
        simulator: PaytmSimulator,
        servers: list[tuple[subprocess.Popen[bytes], int, int]],
        clients: list[RtcClient],
        providers: list[tuple[str, int]],
    ) -> dict[str, Any]:
        args = self.args
        started = time.perf_counter()
        checkouts = await asyncio.gather(
            *(
                client.call(
                    "payments.initiate",
                    {
                        "idempotencyKey": f"bench-order-{listing}",
                        "product": "listing",
                        "providerServiceId": listing,
                    },
                )
                for client, (_, listing) in zip(clients, providers, strict=True)
            )
        )
        initiate_seconds = time.perf_counter() - started
        orders = [c["orderId"] for c in checkouts]
        forms = [await simulator.complete(order, "success") for order in orders]
        paths = ("/payments/paytm/callback", "/payments/paytm/webhook")
        verify_ms: list[float] = []
        callback_ms: list[float] = []
        statuses: list[int] = []
        verified: list[str] = []
        before = {p.pid: cpu_seconds(p.pid) for p, _, _ in servers}
        assert self.postgres is not None
        postmaster = postmaster_pid(self.postgres.pgdata)
        pg_before = sum(postgres_cpu(postmaster).values())
        client_before = own_cpu_seconds()
        status_calls = simulator.calls[Endpoint.STATUS]
        # aiohttp rather than httpx for the load: httpx's pool scans every connection
        # for every request, which costs more than the servers do at 1,000 at once.
        connector = aiohttp.TCPConnector(limit=2 * args.orders)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

            async def callback(n: int, fields: dict[str, str]) -> None:
                http_port = servers[n % 2][2]
                t0 = time.perf_counter()
                async with http.post(
                    f"http://127.0.0.1:{http_port}{paths[n % 2]}", data=fields
                ) as response:
                    await response.read()
                callback_ms.append((time.perf_counter() - t0) * 1000)
                statuses.append(response.status)

            async def verify(client: RtcClient, order: str) -> None:
                t0 = time.perf_counter()
                payment = await client.call("payments.verify", {"orderId": order}, timeout=60)
                verify_ms.append((time.perf_counter() - t0) * 1000)
                verified.append(payment["status"])

            say(
                f"the storm: {args.orders} orders × ({args.callbacks} callbacks + "
                f"{args.verifies} verifies), all at once"
            )
            storm_started = time.perf_counter()
            await asyncio.gather(
                *(callback(n, forms[i]) for i in range(args.orders) for n in range(args.callbacks)),
                *(
                    verify(clients[i], orders[i])
                    for i in range(args.orders)
                    for _ in range(args.verifies)
                ),
            )
            storm_seconds = time.perf_counter() - storm_started
        cpu = sum(cpu_seconds(p.pid) - before[p.pid] for p, _, _ in servers)
        pg_cpu = sum(postgres_cpu(postmaster).values()) - pg_before
        client_cpu = own_cpu_seconds() - client_before
        counts = await self._count(orders)
        verify_ms.sort()
        callback_ms.sort()
        return {
            "orders": args.orders,
            "callbacks_per_order": args.callbacks,
            "verifies_per_order": args.verifies,
            "initiate_seconds": initiate_seconds,
            "storm_seconds": storm_seconds,
            "requests": len(verify_ms) + len(callback_ms),
            "verify_ms": _latency(verify_ms),
            "callback_ms": _latency(callback_ms),
            "callback_statuses": sorted(set(statuses)),
            "verified_paid": verified.count("paid"),
            "status_calls": simulator.calls[Endpoint.STATUS] - status_calls,
            "servers_cpu_seconds": cpu,
            "postgres_cpu_seconds": pg_cpu,
            "client_cpu_seconds": client_cpu,
            **counts,
        }

    async def _count(self, orders: list[str]) -> dict[str, int]:
        assert self.postgres is not None
        conn = await asyncpg.connect(self.postgres.dsn)
        try:
            return {
                "periods": await conn.fetchval("SELECT count(*) FROM paid_periods"),
                "paid_transitions": await conn.fetchval(
                    "SELECT count(*) FROM payment_events WHERE to_status = 'paid'"
                ),
                "notifications": await conn.fetchval(
                    "SELECT count(*) FROM notifications WHERE type = 'payment_success'"
                ),
                "payment_updated_events": await conn.fetchval(
                    "SELECT count(*) FROM user_events WHERE event = 'payment.updated'"
                ),
                "push_intents": await conn.fetchval("SELECT count(*) FROM push_intents"),
                "orders_paid": await conn.fetchval(
                    "SELECT count(*) FROM payments WHERE status = 'paid' AND order_id = ANY($1)",
                    orders,
                ),
            }
        finally:
            await conn.close()


def _latency(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": values[-1] if values else 0.0,
    }


def table(r: dict[str, Any]) -> str:
    orders = r["orders"]

    def exact(name: str) -> str:
        return "exact" if r[name] == orders else f"WRONG: must be {orders}"

    rows = [
        (
            "orders",
            f"{orders:,}",
            f"{r['callbacks_per_order']} callbacks + "
            f"{r['verifies_per_order']} verifies each, across two instances",
        ),
        ("requests in the storm", f"{r['requests']:,}", f"in {r['storm_seconds']:.2f} s"),
        ("fulfilments (periods bought)", f"{r['periods']:,}", exact("periods")),
        ("paid transitions", f"{r['paid_transitions']:,}", exact("paid_transitions")),
        (
            "payment.updated events",
            f"{r['payment_updated_events']:,}",
            exact("payment_updated_events"),
        ),
        ("notifications (pushed)", f"{r['notifications']:,}", exact("notifications")),
        (
            "verify p50 / p99, ms",
            f"{r['verify_ms']['p50']:.1f}",
            f"{r['verify_ms']['p99']:.1f}; max {r['verify_ms']['max']:.1f}",
        ),
        (
            "callback p50 / p99, ms",
            f"{r['callback_ms']['p50']:.1f}",
            f"{r['callback_ms']['p99']:.1f}; max {r['callback_ms']['max']:.1f};"
            f" HTTP {r['callback_statuses']}",
        ),
        (
            "verifies answered paid",
            f"{r['verified_paid']:,}",
            f"of {orders * r['verifies_per_order']:,}",
        ),
        (
            "Transaction Status calls",
            f"{r['status_calls']:,}",
            "orders already paid are not asked about again",
        ),
        ("servers' CPU in the storm, s", f"{r['servers_cpu_seconds']:.2f}", "both instances"),
        ("PostgreSQL CPU in the storm, s", f"{r['postgres_cpu_seconds']:.2f}", ""),
        (
            "this process's CPU, s",
            f"{r['client_cpu_seconds']:.2f}",
            "the load and the gateway simulator",
        ),
        ("initiate (all orders), s", f"{r['initiate_seconds']:.2f}", "concurrently"),
    ]
    title = "Payments storm: every order fulfilled exactly once"
    return "\n".join([title, *report.metric_rows(rows, "value")])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=100)
    parser.add_argument("--callbacks", type=int, default=10)
    parser.add_argument("--verifies", type=int, default=10)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now()
    with tempfile.TemporaryDirectory(prefix="rtc-bench-payments-") as workdir:
        storm = Storm(args, Path(workdir))
        try:
            result = asyncio.run(storm.run())
        finally:
            storm.close()
    text = table(result)
    print(text)
    path = save_results(started, "payments", {"environment": environment(), "result": result})
    say(f"results in {path}")
    exact = all(
        result[name] == args.orders
        for name in ("periods", "paid_transitions", "payment_updated_events", "notifications")
    )
    return 0 if exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
