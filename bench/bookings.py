"""Benchmark of the booking loop: ``python -m bench.bookings [options]``.

Starts the embedded PostgreSQL and our server (:mod:`bench.server`) on core 0 and
seeds, with bulk SQL, 500 providers (an active plumbing listing each, two priced
sub-services) and 500 customers (an address each), every one with a login session.
One load client on core 1 opens their 1,000 authenticated sockets and pairs customer
*i* with provider *i*. Each pair runs the full loop, closed (one booking in flight
per pair):

    customer: bookings.create ──► provider: booking.offered ──► provider: bookings.accept
    ──► customer: booking.updated (accepted) ──► the customer's next bookings.create

After a warm-up, windows of ``--duration`` seconds: completed bookings per second
(loops that ended in the window), and the latency from sending ``bookings.create`` to
``booking.offered`` arriving at the provider's socket (p50/p99, client clock), with
the server's and PostgreSQL's CPU per booking; then, per booking sent, the rows the run
wrote to each table of the loop and the scans of each of their indexes (PostgreSQL's
statistics, reset after seeding: an index no query scans is only upkeep). Prints the
tables, writes
``bench/results/<timestamp>-bookings.json``; ``--profile`` records the server with
py-spy (collapsed stacks in ``bench/results/``; read them with ``python -m bench.stacks``).

The load client is this module too: ``python -m bench.bookings --load SPEC OUT``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import math
import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from api.auth.tokens import AccessTokens
from bench import report, scenario
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
from bench.seed import TOKEN_TTL, connect
from bench.wire import WsSocket, text_frame
from storage.migrate import apply_migrations

# Our server's per-customer booking limits (8/min, 20/h by default) would stop the
# loop after a few bookings: the benchmark lifts them as it lifts the socket rate.
BOOKING_LIMIT = 1_000_000_000
REQUEST_DEADLINE = 60.0  # seconds; the default is 5

_USERS = """
WITH new_users AS (
    INSERT INTO users (phone, role, full_name, is_verified)
    SELECT '+91' || ($2::bigint + g)::text, $3, initcap($3) || ' ' || g, true
    FROM generate_series(1, $1::int) AS g
    RETURNING id
)
INSERT INTO auth_sessions (id, user_id, device, ip, expires_at)
SELECT gen_random_uuid(), id, '{"platform": "other", "model": "bench"}'::jsonb,
       '127.0.0.1', now() + interval '1 day'
FROM new_users
RETURNING user_id, id
"""

_LISTINGS = """
INSERT INTO provider_services (provider_id, service_id, status, active_until, state, city,
                               full_address)
SELECT p, $2, 'active', now() + interval '365 days', 'Kerala', 'Kochi', 'Shop ' || p
FROM unnest($1::bigint[]) AS p
RETURNING provider_id, id
"""

_PRICES = """
INSERT INTO provider_service_prices (provider_service_id, sub_service_id, price_paise)
SELECT l, s, 25000 FROM unnest($1::bigint[]) AS l, unnest($2::bigint[]) AS s
"""

_ADDRESSES = """
INSERT INTO addresses (user_id, type, state, city, full_address, pincode)
SELECT c, 'home', 'Kerala', 'Kochi', 'House ' || c || ', Marine Drive', '682031'
FROM unnest($1::bigint[]) AS c
RETURNING user_id, id
"""


async def seed_market(dsn: str, pairs: int, jwt_secret: bytes) -> dict[str, Any]:
    """Providers with a listing, customers with an address, a session and token each."""
    db = await connect(dsn)
    try:
        await apply_migrations(db)
    finally:
        await db.close()
    conn = await asyncpg.connect(dsn)
    try:
        service = await conn.fetchrow("SELECT id FROM services WHERE slug = 'plumber'")
        subs = [
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM sub_services WHERE service_id = $1 ORDER BY position LIMIT 2",
                service["id"],
            )
        ]
        async with conn.transaction():
            providers = sorted(
                (r["user_id"], r["id"])
                for r in await conn.fetch(_USERS, pairs, 6_000_000_000, "provider")
            )
            customers = sorted(
                (r["user_id"], r["id"])
                for r in await conn.fetch(_USERS, pairs, 5_000_000_000, "customer")
            )
            listings = dict(
                tuple(r)
                for r in await conn.fetch(_LISTINGS, [p for p, _ in providers], service["id"])
            )
            await conn.execute(_PRICES, list(listings.values()), subs)
            addresses = dict(
                tuple(r) for r in await conn.fetch(_ADDRESSES, [c for c, _ in customers])
            )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    issuer = AccessTokens(jwt_secret, ttl=TOKEN_TTL)
    now = datetime.now(UTC)

    def tokens(rows: list[tuple[int, Any]], role: str) -> list[str]:
        return [issuer.issue(uid, role, UUID(str(sid)), now)[0] for uid, sid in rows]

    return {
        "customer_tokens": tokens(customers, "customer"),
        "provider_tokens": tokens(providers, "provider"),
        "listings": [listings[p] for p, _ in providers],
        "addresses": [addresses[c] for c, _ in customers],
        "sub_service_ids": subs,
    }


# --- load client (core 1) ----------------------------------------------------------------


class BookingLoop:
    """Customer *i* books provider *i*'s listing; the provider accepts each offer."""

    def __init__(
        self, customers: list[WsSocket], providers: list[WsSocket], spec: dict[str, Any]
    ) -> None:
        self.customers = customers
        self.providers = providers
        self.cpu = CpuMeter(spec["pid"], spec["postmaster"], spec["server_cpu"])
        self.listings: list[int] = spec["listings"]
        self.addresses: list[int] = spec["addresses"]
        self.subs: list[int] = spec["sub_service_ids"]
        self.max_bookings: int = spec["max_bookings"]
        # 0: closed loop (a pair books again when its loop ends); else an open loop:
        # bookings start at this rate, each by a pair that has none in flight.
        self.rate: float = spec["rate"]
        pairs = len(customers)
        self.idle: collections.deque[int] = collections.deque()
        self.skipped = 0  # open loop: starts due while every pair was busy
        self.created_at = [0.0] * pairs  # when pair i sent its current bookings.create
        self.offered_at = [0.0] * pairs
        self.booking = [0] * pairs  # pair i's current booking id (0: not offered yet)
        self.slot = [0] * pairs
        self.base = datetime.now(UTC) + timedelta(days=1)
        self.running = True
        self.sent = 0
        self.in_flight = 0
        self.window_start = math.inf
        self.window_end = math.inf
        self.reset()

    def reset(self) -> None:
        self.completed = 0
        self.offer_latencies: list[float] = []
        self.create_latencies: list[float] = []
        self.loop_latencies: list[float] = []
        self.errors = 0
        self.error_samples: list[str] = []

    def _error(self, payload: bytes) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(payload[:300].decode(errors="replace"))

    def create(self, i: int) -> None:
        if not self.running or self.sent >= self.max_bookings:
            self.running = False
            return
        self.sent += 1
        self.in_flight += 1
        self.slot[i] += 1
        sock = self.customers[i]
        sock.next_id += 1
        at = self.base + timedelta(minutes=self.slot[i])
        params = {
            "idempotencyKey": f"bench-{i}-{self.slot[i]}",
            "providerServiceId": self.listings[i],
            "subServiceIds": self.subs,
            "appointmentAt": at.isoformat(),
            "addressId": self.addresses[i],
        }
        self.booking[i] = 0
        self.created_at[i] = time.monotonic()
        frame = {"jsonrpc": "2.0", "id": sock.next_id, "method": "bookings.create"}
        sock.write(text_frame(orjson.dumps({**frame, "params": params})))

    def on_customer(self, sock: WsSocket, payload: bytes, now: float) -> None:
        i = sock.index
        if b'"id"' in payload and b'"method"' not in payload:  # an answer
            if b'"error"' in payload:
                self._error(payload)
                self.in_flight -= 1
                self.next(i)  # a new key: a fresh attempt
            elif self._in_window(now):
                self.create_latencies.append(now - self.created_at[i])
            return
        if b'"booking.updated"' not in payload or b'"change":"accepted"' not in payload:
            return
        self.in_flight -= 1
        if self._in_window(now):
            self.completed += 1
            self.loop_latencies.append(now - self.created_at[i])
        self.next(i)

    def next(self, i: int) -> None:
        if self.rate:
            self.idle.append(i)
        else:
            self.create(i)

    async def pace(self) -> None:
        """Open loop: start bookings at ``rate`` per second, whatever the answers do."""
        started = time.monotonic()
        due = 0
        while self.running:
            await asyncio.sleep(0.002)
            target = int((time.monotonic() - started) * self.rate)
            while due < target:
                due += 1
                if self.idle:
                    self.create(self.idle.popleft())
                else:
                    self.skipped += 1

    def on_provider(self, sock: WsSocket, payload: bytes, now: float) -> None:
        i = sock.index
        if b'"id"' in payload and b'"method"' not in payload:
            if b'"error"' in payload:
                self._error(payload)
            return
        if b'"booking.offered"' not in payload:
            return
        message = orjson.loads(payload)
        booking_id = message["params"]["data"]["booking"]["id"]
        self.booking[i] = booking_id
        self.offered_at[i] = now
        if self._in_window(now):
            self.offer_latencies.append(now - self.created_at[i])
        sock.next_id += 1
        frame = {
            "jsonrpc": "2.0",
            "id": sock.next_id,
            "method": "bookings.accept",
            "params": {"idempotencyKey": f"bench-accept-{booking_id}", "bookingId": booking_id},
        }
        sock.write(text_frame(orjson.dumps(frame)))

    def _in_window(self, now: float) -> bool:
        return self.window_start <= now < self.window_end

    async def measure(self, warmup: float, duration: float, windows: int) -> dict[str, Any]:
        for i, (customer, provider) in enumerate(zip(self.customers, self.providers, strict=True)):
            customer.index = provider.index = i
            customer.on_text = self.on_customer
            provider.on_text = self.on_provider
        pacer = None
        if self.rate:
            self.idle.extend(range(len(self.customers)))
            pacer = asyncio.ensure_future(self.pace())
        else:
            for i in range(len(self.customers)):
                self.create(i)
        await asyncio.sleep(warmup)
        warmup_errors, warmup_samples = self.errors, list(self.error_samples)
        measured: list[dict[str, Any]] = []
        offers: list[float] = []
        for _ in range(windows):
            self.reset()
            start = self.cpu.read()
            self.window_start = time.monotonic()
            self.window_end = math.inf
            await asyncio.sleep(duration)
            self.window_end = time.monotonic()
            spent = self.cpu.since(start)
            window = self.window_end - self.window_start
            offer = sorted(self.offer_latencies)
            offers += offer
            create = sorted(self.create_latencies)
            loop = sorted(self.loop_latencies)
            measured.append(
                {
                    "seconds": window,
                    "completed": self.completed,
                    "errors": self.errors,
                    "error_samples": self.error_samples,
                    "bookings_per_second": self.completed / window,
                    "offer_p50_ms": percentile(offer, 50) * 1000,
                    "offer_p99_ms": percentile(offer, 99) * 1000,
                    "create_p50_ms": percentile(create, 50) * 1000,
                    "create_p99_ms": percentile(create, 99) * 1000,
                    "loop_p50_ms": percentile(loop, 50) * 1000,
                    "loop_p99_ms": percentile(loop, 99) * 1000,
                    **spent.figures(self.completed, "booking", window),
                }
            )
        self.running = False
        if pacer is not None:
            await pacer
        deadline = time.monotonic() + 20
        while self.in_flight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        offers.sort()

        def median(key: str) -> float:
            return float(statistics.median(w[key] for w in measured))

        return {
            "pairs": len(self.customers),
            "window_seconds": duration,
            "windows": measured,
            "warmup_errors": warmup_errors,
            "warmup_error_samples": warmup_samples,
            "bookings_sent": self.sent,
            "rate": self.rate,
            "skipped_starts": self.skipped,
            "unfinished_at_end": self.in_flight,
            "completed": sum(w["completed"] for w in measured),
            "errors": sum(w["errors"] for w in measured) + warmup_errors,
            "offer_p50_ms": percentile(offers, 50) * 1000,
            "offer_p99_ms": percentile(offers, 99) * 1000,
            "offer_max_ms": offers[-1] * 1000 if offers else math.nan,
            **{
                key: median(key)
                for key in (
                    "bookings_per_second",
                    "create_p50_ms",
                    "create_p99_ms",
                    "loop_p50_ms",
                    "loop_p99_ms",
                    *CpuSpent.keys("booking"),
                )
            },
        }


async def load_main(spec: dict[str, Any]) -> dict[str, Any]:
    client = LoadClient(spec)
    async with asyncio.timeout(PHASE_TIMEOUT):
        customers = await client.open_many(spec["customer_tokens"])
        providers = await client.open_many(spec["provider_tokens"])
        if len(customers) != len(providers):
            raise RuntimeError("not every socket opened")
        loop = BookingLoop(customers, providers, spec)
        result = await loop.measure(spec["warmup"], spec["duration"], spec["windows"])
        await client.close_many(customers + providers)
        return result


# --- runner (core 1, waits) --------------------------------------------------------------


class BookingRunner(Runner):
    def our_settings(self, port: int) -> dict[str, str]:
        return {
            **super().our_settings(port),
            "RTC_BOOKINGS__MAX_PER_MINUTE": str(BOOKING_LIMIT),
            "RTC_BOOKINGS__MAX_PER_HOUR": str(BOOKING_LIMIT),
            # The closed loop keeps 500 bookings in flight on purpose: with the server
            # and PostgreSQL on one core they queue for seconds (Little's law), and the
            # 5 s request deadline and wait for a pooled connection would turn the
            # slowest into retryable 5003s.
            "RTC_SERVER__REQUEST_DEADLINE": str(REQUEST_DEADLINE),
            "RTC_DATABASE__ACQUIRE_TIMEOUT": str(REQUEST_DEADLINE),
        }


TARGET_PER_SECOND = 2000
TARGET_P99_MS = 50.0


def table(args: argparse.Namespace, r: dict[str, Any]) -> str:
    place = (
        f"Server and PostgreSQL on core {SERVER_CPU}, load client on core {CLIENT_CPU}."
        if args.postgres_cpu == SERVER_CPU
        else f"Server on core {SERVER_CPU}; PostgreSQL and the load client on core"
        f" {args.postgres_cpu}."
    )
    w = r["windows"]
    rate_met = r["bookings_per_second"] >= TARGET_PER_SECOND
    p99_met = r["offer_p99_ms"] < TARGET_P99_MS
    mode = (
        f"open loop at {args.rate:,.0f} bookings/s started (by pairs with none in flight)"
        if args.rate
        else "closed: one booking in flight per pair"
    )
    lines = [
        f"Booking loop, {r['pairs']} customers and {r['pairs']} providers connected"
        f" (one socket each); {mode}",
        "  bookings.create -> booking.offered (provider) -> bookings.accept ->"
        " booking.updated accepted (customer) -> next create.",
        f"  Median over {len(w)} windows of {args.duration:g} s after a {args.warmup:g} s"
        " warm-up; latencies on the client's clock over every booking of the windows;",
        "  CPU per booking = utime+stime over a window / bookings completed in it"
        " (server process; PostgreSQL = postmaster + backends).",
        f"  {place}",
        f"  Our server runs with RTC_SERVER__RATE_PER_SECOND={RATE},"
        f" RTC_SERVER__RATE_BURST={RATE},",
        f"  RTC_BOOKINGS__MAX_PER_MINUTE and RTC_BOOKINGS__MAX_PER_HOUR={BOOKING_LIMIT}"
        " (the defaults would throttle the loop),",
        f"  RTC_SERVER__REQUEST_DEADLINE and RTC_DATABASE__ACQUIRE_TIMEOUT={REQUEST_DEADLINE:g}"
        " (a closed loop queues for seconds on a saturated core).",
    ]

    def spread(key: str, digits: int = 0) -> str:
        return f"{min(x[key] for x in w):,.{digits}f} - {max(x[key] for x in w):,.{digits}f}"

    rows = [
        (
            "completed bookings per second",
            f"{r['bookings_per_second']:,.0f}",
            f"{spread('bookings_per_second')}; target >= {TARGET_PER_SECOND:,}"
            f" {'met' if rate_met else 'MISSED'}",
        ),
        ("create -> offered p50, ms", f"{r['offer_p50_ms']:.2f}", ""),
        (
            "create -> offered p99, ms",
            f"{r['offer_p99_ms']:.2f}",
            f"max {r['offer_max_ms']:.1f}; target < {TARGET_P99_MS:g}"
            f" {'met' if p99_met else 'MISSED'}",
        ),
        ("create answered p50 / p99, ms", f"{r['create_p50_ms']:.2f}", f"{r['create_p99_ms']:.2f}"),
        ("whole loop p50 / p99, ms", f"{r['loop_p50_ms']:.2f}", f"{r['loop_p99_ms']:.2f}"),
        (
            "server CPU per booking, us",
            f"{r['server_cpu_us_per_booking']:,.0f}",
            spread("server_cpu_us_per_booking"),
        ),
        ("  of which user, us", f"{r['server_user_us_per_booking']:,.0f}", ""),
        ("  of which system, us", f"{r['server_system_us_per_booking']:,.0f}", ""),
        (
            "PostgreSQL CPU per booking, us",
            f"{r['postgres_cpu_us_per_booking']:,.0f}",
            spread("postgres_cpu_us_per_booking"),
        ),
        ("server CPU busy, %", f"{r['server_cpu_busy'] * 100:.0f}", ""),
        ("PostgreSQL CPU busy, %", f"{r['postgres_cpu_busy'] * 100:.0f}", ""),
        (
            f"core {SERVER_CPU} busy (tasks), %",
            f"{r['core_busy'] * 100:.0f}",
            f"irq+softirq {r['core_irq'] * 100:.0f}",
        ),
        ("load client CPU busy, %", f"{r['client_cpu_busy'] * 100:.0f}", ""),
        ("bookings completed (windows)", f"{r['completed']:,}", ""),
        ("errors", f"{r['errors']}", "incl. warm-up"),
    ]
    if args.rate:
        rows.append(("starts skipped (every pair busy)", f"{r['skipped_starts']:,}", ""))
    lines += report.metric_rows(rows, "median", 44)
    return "\n".join(lines)


# The tables a booking loop writes: what each statement costs PostgreSQL follows the
# rows it writes and the indexes it keeps, and an index no query reads is pure cost.
_LOOP_TABLES = (
    "bookings",
    "notifications",
    "user_events",
    "user_event_cursors",
    "push_intents",
    "jobs",  # push.event: each push intent becomes a job that decides the push
    "idempotency_keys",
)


async def _reset_statistics(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_stat_reset()")
    finally:
        await conn.close()


async def _table_usage(dsn: str) -> dict[str, Any]:
    """Rows written and index scans on the loop's tables since :func:`_reset_statistics`
    (the server's own jobs included)."""
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch(
            """
            SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del, seq_scan
            FROM pg_stat_user_tables WHERE relname = ANY($1::text[])
            """,
            list(_LOOP_TABLES),
        )
        indexes = await conn.fetch(
            """
            SELECT relname, indexrelname, idx_scan FROM pg_stat_user_indexes
            WHERE relname = ANY($1::text[]) ORDER BY relname, indexrelname
            """,
            list(_LOOP_TABLES),
        )
    finally:
        await conn.close()
    return {
        "tables": {r["relname"]: dict(r) for r in tables},
        "indexes": [dict(r) for r in indexes],
    }


def usage_table(usage: dict[str, Any], loops: int) -> str:
    """Rows written per loop by table, and every index of those tables with its scans
    (0: no statement of the run read it, though each write maintains it)."""
    lines = [
        f"Rows written and index scans per booking loop ({loops:,} bookings sent;"
        " the server's jobs included)",
        f"  {'table':<20} {'inserted':>9} {'updated':>9} {'of which HOT':>13} {'deleted':>9}",
    ]
    per = max(loops, 1)
    for name in _LOOP_TABLES:
        t = usage["tables"].get(name)
        if t is None:
            continue
        lines.append(
            f"  {name:<20} {t['n_tup_ins'] / per:>9.2f} {t['n_tup_upd'] / per:>9.2f}"
            f" {t['n_tup_hot_upd'] / per:>13.2f} {t['n_tup_del'] / per:>9.2f}"
        )
    lines.append(f"  {'index':<44} {'scans per loop':>15}")
    for i in usage["indexes"]:
        lines.append(f"  {i['indexrelname']:<44} {i['idx_scan'] / per:>15.2f}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.bookings", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--pairs", type=int, default=500, help="customers = providers (500)")
    p.add_argument("--warmup", type=float, default=3.0, help="warm-up, seconds (3)")
    p.add_argument("--duration", type=float, default=10.0, help="window, seconds (10)")
    p.add_argument("--windows", type=int, default=3, help="windows (3)")
    p.add_argument(
        "--max-bookings", type=int, default=2_000_000, help="bound on bookings sent (2000000)"
    )
    p.add_argument(
        "--postgres-cpu",
        default=SERVER_CPU,
        help=f"core of the embedded PostgreSQL (default {SERVER_CPU}, the server's; "
        f"{CLIENT_CPU} puts it with the load client)",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="open loop: start this many bookings per second (0: closed loop, the default)",
    )
    p.add_argument("--profile", action="store_true", help="record the server with py-spy")
    p.add_argument("--quick", action="store_true", help="1 s warm-up, 1 window of 3 s")
    args = p.parse_args(argv)
    if args.quick:
        args.warmup, args.duration, args.windows = 1.0, 3.0, 1
    return args


def measure(args: argparse.Namespace, runner: Runner) -> Measured:
    runner.start_postgres(int(args.postgres_cpu))
    say(f"seeding {args.pairs} providers with a listing and {args.pairs} customers")
    seeded = asyncio.run(seed_market(runner.dsn, args.pairs, runner.jwt_secret.encode()))
    os.sched_setaffinity(0, {int(CLIENT_CPU)})  # the runner waits on core 1
    asyncio.run(_reset_statistics(runner.dsn))
    say("starting our server; booking loop")
    with runner.server(report.OURS, "bookings") as server:
        result = runner.run_load(
            server,
            "bench.bookings",
            {
                **runner.client_spec(server),
                "concurrency": 50,
                **seeded,
                "max_bookings": args.max_bookings,
                "rate": args.rate,
                "warmup": args.warmup,
                "duration": args.duration,
                "windows": args.windows,
            },
        )
    # Read once the server stopped: its backends have exited, so their counters are in.
    usage = asyncio.run(_table_usage(runner.dsn))
    extra = {
        "table_usage": usage,
        "our_settings_bookings": {
            "RTC_BOOKINGS__MAX_PER_MINUTE": BOOKING_LIMIT,
            "RTC_BOOKINGS__MAX_PER_HOUR": BOOKING_LIMIT,
            "RTC_SERVER__REQUEST_DEADLINE": REQUEST_DEADLINE,
            "RTC_DATABASE__ACQUIRE_TIMEOUT": REQUEST_DEADLINE,
        },
    }
    text = table(args, result) + "\n" + usage_table(usage, result["bookings_sent"])
    return Measured(text, result, extra, failed=bool(result["errors"]))


def main(argv: list[str] | None = None) -> int:
    return scenario.main(
        "bookings",
        argv,
        parse_args=parse_args,
        load_main=load_main,
        measure=measure,
        runner_class=BookingRunner,
    )


if __name__ == "__main__":
    raise SystemExit(main())
