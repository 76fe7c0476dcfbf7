"""Benchmark of ``providers.search``: ``python -m bench.search [options]``.

Starts the embedded PostgreSQL and our server (:mod:`bench.server`) on core 0, seeds
10,000 active provider registrations with bulk SQL (no RPC per provider), then one load
client on core 1 opens 100 authenticated sockets; each sends ``providers.search`` in a
closed loop (one request outstanding per socket) with a mix of city/state filters,
sometimes following the returned ``nextCursor`` for a second page. After a warm-up,
windows of ``--duration`` seconds: requests/s, client-side latency p50/p99, server
process CPU per request and PostgreSQL CPU per request. Prints a table, writes
``bench/results/<timestamp>-search.json``. Every process it started is stopped and the
temporary folder removed on exit, errors and Ctrl-C.

The load client is this module too: ``python -m bench.search --load SPEC OUT``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import statistics
import time
from typing import Any

import asyncpg
import orjson

from bench import report, scenario, seed
from bench.load import PHASE_TIMEOUT, LoadClient, percentile
from bench.procfs import CpuMeter, CpuSpent
from bench.run import (
    CLIENT_CPU,
    RATE,
    SERVER_CPU,
    Runner,
    say,
)
from bench.scenario import Measured
from bench.wire import WsSocket, text_frame

# Ten states, three cities each (the ``state``/``city`` text of registrations).
PLACES: dict[str, tuple[str, ...]] = {
    "Karnataka": ("Bengaluru", "Mysuru", "Hubballi"),
    "Maharashtra": ("Mumbai", "Pune", "Nagpur"),
    "Tamil Nadu": ("Chennai", "Coimbatore", "Madurai"),
    "Telangana": ("Hyderabad", "Warangal", "Nizamabad"),
    "Kerala": ("Kochi", "Thiruvananthapuram", "Kozhikode"),
    "Gujarat": ("Ahmedabad", "Surat", "Vadodara"),
    "Rajasthan": ("Jaipur", "Jodhpur", "Udaipur"),
    "West Bengal": ("Kolkata", "Howrah", "Durgapur"),
    "Uttar Pradesh": ("Lucknow", "Kanpur", "Varanasi"),
    "Delhi": ("New Delhi", "Dwarka", "Rohini"),
}

_PROVIDERS = """
WITH new_users AS (
    INSERT INTO users (phone, role, full_name, is_verified)
    SELECT '+91' || (8000000000 + g)::text, 'provider', 'Bench provider ' || g, true
    FROM generate_series(1, $1::int) AS g
    RETURNING id
)
INSERT INTO provider_profiles (user_id, years_of_experience, description,
                               is_engineering_provider)
SELECT id, floor(random() * 31)::int, 'Bench provider profile', random() < 0.2
FROM new_users
RETURNING user_id
"""

# One active registration per provider: service, place and experience spread at random
# (years_of_experience NULL on a quarter of them: the profile's is listed).
_REGISTRATIONS = """
INSERT INTO provider_services (provider_id, service_id, status, active_until,
                               years_of_experience, description, state, city, full_address)
SELECT t.user_id, ($2::bigint[])[1 + floor(random() * array_length($2::bigint[], 1))::int],
       'active', now() + interval '365 days',
       CASE WHEN random() < 0.25 THEN NULL ELSE floor(random() * 41)::int END,
       CASE WHEN random() < 0.5 THEN NULL ELSE 'Registration of bench provider' END,
       ($3::text[])[p], ($4::text[])[p], 'Shop ' || t.user_id || ', Main Road'
FROM (SELECT user_id, 1 + floor(random() * array_length($3::text[], 1))::int AS p
      FROM unnest($1::bigint[]) AS u (user_id)) t
"""

# 3-6 prices per registration, each for one of its service's own sub-services.
_PRICES = """
INSERT INTO provider_service_prices (provider_service_id, sub_service_id, price_paise)
SELECT ps.id, ss.id, (10000 + floor(random() * 500000))::bigint
FROM provider_services ps
CROSS JOIN LATERAL (
    SELECT id FROM sub_services WHERE service_id = ps.service_id
    ORDER BY random() LIMIT 3 + floor(random() * 4)::int  -- per registration: a rescan
) ss
WHERE ps.provider_id = ANY($1::bigint[])
"""

# Active catalog services with the most sub-services (the catalog has one with 7,
# several with 5: 3-6 prices each, capped at the service's sub-service count).
_SERVICES = """
SELECT s.id FROM services s JOIN sub_services ss ON ss.service_id = s.id
WHERE s.is_active GROUP BY s.id HAVING count(*) >= 5 ORDER BY count(*) DESC, s.id LIMIT $1
"""


async def seed_providers(dsn: str, count: int, services: int) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT setseed(0.42)")  # the same spread every run
        service_ids = [r["id"] for r in await conn.fetch(_SERVICES, services)]
        if not service_ids:
            raise RuntimeError("no catalog service with 5 sub-services")
        states = [s for s, cities in PLACES.items() for _ in cities]
        cities = [c for cities in PLACES.values() for c in cities]
        async with conn.transaction():
            users = [r["user_id"] for r in await conn.fetch(_PROVIDERS, count)]
            await conn.execute(_REGISTRATIONS, users, service_ids, states, cities)
            await conn.execute(_PRICES, users)
        await conn.execute("VACUUM ANALYZE")
        stats: Any = await conn.fetchrow(
            """
            SELECT (SELECT count(*) FROM provider_services WHERE status = 'active') AS listed,
                   (SELECT count(*) FROM provider_service_prices) AS prices,
                   (SELECT min(n) FROM (SELECT count(*) n FROM provider_service_prices
                                        GROUP BY provider_service_id) x) AS min_prices,
                   (SELECT max(n) FROM (SELECT count(*) n FROM provider_service_prices
                                        GROUP BY provider_service_id) x) AS max_prices,
                   (SELECT count(DISTINCT city) FROM provider_services) AS cities,
                   (SELECT count(DISTINCT state) FROM provider_services) AS states
            """
        )
        per_service = {
            r["service_id"]: r["n"]
            for r in await conn.fetch(
                "SELECT service_id, count(*) n FROM provider_services GROUP BY 1 ORDER BY 1"
            )
        }
    finally:
        await conn.close()
    return {"service_ids": service_ids, "per_service": per_service, **dict(stats)}


# --- load client (core 1) ----------------------------------------------------------------


class SearchRun:
    """``providers.search`` in a closed loop on every socket."""

    def __init__(self, sockets: list[WsSocket], spec: dict[str, Any]) -> None:
        self.sockets = sockets
        self.cpu = CpuMeter(spec["pid"], spec["postmaster"], spec["server_cpu"])
        self.services: list[int] = spec["service_ids"]
        self.follow: float = spec["follow_cursor"]
        self.limit: int = spec["limit"]
        self.max_requests: int = spec["max_requests"]
        self.rng = random.Random(7)
        self.places = [(s, c) for s, cities in PLACES.items() for c in cities]
        self.running = True
        self.window_start = math.inf
        self.window_end = math.inf
        self.sent = 0
        self.reset()
        self.query: dict[int, dict[str, Any]] = {}

    def reset(self) -> None:
        self.answered = 0
        self.errors = 0
        self.error_samples: list[str] = []
        self.latencies: list[float] = []
        self.second_pages = 0
        self.empty = 0
        self.rows = 0
        self.kinds: dict[str, int] = {}

    def new_query(self) -> dict[str, Any]:
        rng = self.rng
        params: dict[str, Any] = {"serviceId": rng.choice(self.services), "limit": self.limit}
        state, city = rng.choice(self.places)
        roll = rng.random()
        if roll < 0.4:
            params["city"], params["state"] = city, state
        elif roll < 0.65:
            params["state"] = state
        elif roll < 0.8:
            params["city"] = city
        return params

    def send(self, sock: WsSocket, params: dict[str, Any]) -> None:
        if self.sent >= self.max_requests:  # bound in count, whatever the windows do
            self.running = False
            sock.sent_at = 0.0
            return
        self.sent += 1
        sock.next_id += 1
        self.query[sock.index] = params
        sock.sent_at = time.monotonic()
        sock.write(
            text_frame(
                orjson.dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": sock.next_id,
                        "method": "providers.search",
                        "params": params,
                    }
                )
            )
        )

    def on_text(self, sock: WsSocket, payload: bytes, now: float) -> None:
        if sock.sent_at == 0.0 or b'"id"' not in payload:
            return  # a notification, or an answer after the end
        message = orjson.loads(payload)
        if message.get("id") != sock.next_id:
            return
        params = self.query[sock.index]
        result = message.get("result")
        in_window = self.window_start <= now < self.window_end
        cursor = None
        if result is None:
            self.errors += 1
            if len(self.error_samples) < 5:
                self.error_samples.append(payload[:300].decode(errors="replace"))
        else:
            cursor = result.get("nextCursor")
        if in_window:
            self.answered += 1
            self.latencies.append(now - sock.sent_at)
            if result is not None:
                kind = "+".join(k for k in ("city", "state") if k in params) or "none"
                kind += " p2" if "cursor" in params else ""
                self.kinds[kind] = self.kinds.get(kind, 0) + 1
                self.rows += len(result["providers"])
                self.empty += not result["providers"]
                self.second_pages += "cursor" in params
        if not self.running:
            sock.sent_at = 0.0
            return
        if cursor is not None and "cursor" not in params and self.rng.random() < self.follow:
            self.send(sock, {**params, "cursor": cursor})
        else:
            self.send(sock, self.new_query())

    async def measure(self, warmup: float, duration: float, windows: int) -> dict[str, Any]:
        for sock in self.sockets:
            sock.on_text = self.on_text
            sock.sent_at = 0.0
        for sock in self.sockets:
            self.send(sock, self.new_query())
        await asyncio.sleep(warmup)
        warmup_errors = self.errors
        warmup_samples = list(self.error_samples)
        measured: list[dict[str, Any]] = []
        all_latencies: list[float] = []
        for _ in range(windows):
            self.reset()
            start = self.cpu.read()
            self.window_start = time.monotonic()
            self.window_end = math.inf
            await asyncio.sleep(duration)
            self.window_end = time.monotonic()
            spent = self.cpu.since(start)
            window = self.window_end - self.window_start
            answered = max(1, self.answered)
            latencies = sorted(self.latencies)
            all_latencies += latencies
            measured.append(
                {
                    "seconds": window,
                    "answered": self.answered,
                    "errors": self.errors,
                    "error_samples": self.error_samples,
                    "requests_per_second": self.answered / window,
                    "p50_ms": percentile(latencies, 50) * 1000,
                    "p99_ms": percentile(latencies, 99) * 1000,
                    **spent.figures(self.answered, "request", window),
                    "second_pages": self.second_pages,
                    "empty_pages": self.empty,
                    "rows_per_answer": self.rows / answered,
                    "kinds": self.kinds,
                }
            )
        self.running = False
        deadline = time.monotonic() + 10
        while any(s.sent_at != 0.0 for s in self.sockets) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        all_latencies.sort()

        def median(key: str) -> float:
            return float(statistics.median(w[key] for w in measured))

        return {
            "sockets": len(self.sockets),
            "window_seconds": duration,
            "windows": measured,
            "warmup_errors": warmup_errors,
            "warmup_error_samples": warmup_samples,
            "requests_sent": self.sent,
            "unanswered_at_end": sum(1 for s in self.sockets if s.sent_at != 0.0),
            "answered": sum(w["answered"] for w in measured),
            "errors": sum(w["errors"] for w in measured) + warmup_errors,
            "requests_per_second": median("requests_per_second"),
            "p50_ms": percentile(all_latencies, 50) * 1000,
            "p99_ms": percentile(all_latencies, 99) * 1000,
            "max_ms": all_latencies[-1] * 1000 if all_latencies else math.nan,
            **{
                key: median(key)
                for key in (
                    *CpuSpent.keys("request"),
                    "rows_per_answer",
                )
            },
            "second_pages": sum(w["second_pages"] for w in measured),
            "empty_pages": sum(w["empty_pages"] for w in measured),
        }


async def load_main(spec: dict[str, Any]) -> dict[str, Any]:
    client = LoadClient(spec)
    async with asyncio.timeout(PHASE_TIMEOUT):
        sockets = await client.open_many(spec["tokens"])
        run = SearchRun(sockets, spec)
        result = await run.measure(spec["warmup"], spec["duration"], spec["windows"])
        await client.close_many(sockets)
        return result


# --- runner (core 1, waits) --------------------------------------------------------------


def table(args: argparse.Namespace, seeded: dict[str, Any], r: dict[str, Any]) -> str:
    lines = [
        f"providers.search, closed loop, {r['sockets']} authenticated sockets (one request"
        " outstanding each)",
        f"  {seeded['listed']:,} active registrations over {len(seeded['service_ids'])} services"
        f" ({seeded['cities']} cities, {seeded['states']} states), {seeded['prices']:,} prices"
        f" ({seeded['min_prices']}-{seeded['max_prices']} each); limit {args.limit};"
        f" {args.follow_cursor:.0%} of first pages with a next page followed.",
        f"  Median over {len(r['windows'])} windows of {args.duration:g} s after a"
        f" {args.warmup:g} s warm-up; latency on the client's clock over every answer;",
        "  CPU per request = utime+stime over a window / answers in it (server process;"
        " PostgreSQL = postmaster + backends).",
        "  Server and PostgreSQL on core 0, load client on core 1.",
        f"  Our server runs with RTC_SERVER__RATE_PER_SECOND={RATE} and"
        f" RTC_SERVER__RATE_BURST={RATE}",
        "  (the default per-socket limit, 20/s, would throttle the loop).",
    ]
    w = r["windows"]
    rows = [
        (
            "requests per second",
            f"{r['requests_per_second']:,.0f}",
            f"{min(x['requests_per_second'] for x in w):,.0f}"
            f" - {max(x['requests_per_second'] for x in w):,.0f}",
        ),
        ("latency p50, ms", f"{r['p50_ms']:.2f}", ""),
        ("latency p99, ms", f"{r['p99_ms']:.2f}", f"max {r['max_ms']:.1f}"),
        (
            "server CPU per request, us",
            f"{r['server_cpu_us_per_request']:.0f}",
            f"{min(x['server_cpu_us_per_request'] for x in w):.0f}"
            f" - {max(x['server_cpu_us_per_request'] for x in w):.0f}",
        ),
        ("  of which user, us", f"{r['server_user_us_per_request']:.0f}", ""),
        ("  of which system, us", f"{r['server_system_us_per_request']:.0f}", ""),
        (
            "PostgreSQL CPU per request, us",
            f"{r['postgres_cpu_us_per_request']:.0f}",
            f"{min(x['postgres_cpu_us_per_request'] for x in w):.0f}"
            f" - {max(x['postgres_cpu_us_per_request'] for x in w):.0f}",
        ),
        ("server CPU busy, %", f"{r['server_cpu_busy'] * 100:.0f}", ""),
        ("PostgreSQL CPU busy, %", f"{r['postgres_cpu_busy'] * 100:.0f}", ""),
        (
            "core 0 busy (tasks), %",
            f"{r['core_busy'] * 100:.0f}",
            f"irq+softirq {r['core_irq'] * 100:.0f}",
        ),
        ("load client CPU busy, %", f"{r['client_cpu_busy'] * 100:.0f}", ""),
        ("listings per answer", f"{r['rows_per_answer']:.1f}", ""),
        ("second pages (cursor) answered", f"{r['second_pages']:,}", f"of {r['answered']:,}"),
        ("errors", f"{r['errors']}", "incl. warm-up"),
    ]
    lines += report.metric_rows(rows, "median")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__.split("\n\n")[0])
    p.add_argument("--providers", type=int, default=10_000, help="providers seeded (10000)")
    p.add_argument("--services", type=int, default=4, help="services they spread over (4)")
    p.add_argument("--sockets", type=int, default=100, help="concurrent sockets (100)")
    p.add_argument("--warmup", type=float, default=3.0, help="warm-up, seconds (3)")
    p.add_argument("--duration", type=float, default=10.0, help="window, seconds (10)")
    p.add_argument("--windows", type=int, default=3, help="windows (3)")
    p.add_argument("--limit", type=int, default=20, help="page size sent (20)")
    p.add_argument(
        "--follow-cursor",
        type=float,
        default=0.25,
        help="share of first pages whose nextCursor is followed (0.25)",
    )
    p.add_argument(
        "--max-requests", type=int, default=5_000_000, help="bound on requests sent (5000000)"
    )
    p.add_argument("--quick", action="store_true", help="1 s warm-up, 1 window of 3 s")
    args = p.parse_args(argv)
    if args.quick:
        args.warmup, args.duration, args.windows = 1.0, 3.0, 1
    return args


def measure(args: argparse.Namespace, runner: Runner) -> Measured:
    runner.start_postgres(int(SERVER_CPU))
    say(f"creating {args.sockets} customers with a session each, minting their tokens")
    tokens = asyncio.run(seed.create_users(runner.dsn, args.sockets, runner.jwt_secret.encode()))
    say(f"seeding {args.providers:,} providers (bulk SQL)")
    t0 = time.monotonic()
    seeded = asyncio.run(seed_providers(runner.dsn, args.providers, args.services))
    say(f"  seeded in {time.monotonic() - t0:.1f} s: {seeded}")
    os.sched_setaffinity(0, {int(CLIENT_CPU)})  # the runner waits on core 1
    say("starting our server; providers.search load")
    with runner.server(report.OURS, "search") as server:
        result = runner.run_load(
            server,
            "bench.search",
            {
                **runner.client_spec(server),
                "concurrency": 50,
                "tokens": tokens,
                "service_ids": seeded["service_ids"],
                "follow_cursor": args.follow_cursor,
                "limit": args.limit,
                "max_requests": args.max_requests,
                "warmup": args.warmup,
                "duration": args.duration,
                "windows": args.windows,
            },
        )
    return Measured(
        table(args, seeded, result), result, {"seeded": seeded}, failed=bool(result["errors"])
    )


def main(argv: list[str] | None = None) -> int:
    return scenario.main(
        "search", argv, parse_args=parse_args, load_main=load_main, measure=measure
    )


if __name__ == "__main__":
    raise SystemExit(main())
