"""Benchmark of masked calls: ``python -m bench.calls [options]``.

Starts the embedded PostgreSQL and our server (:mod:`bench.server`) on core 0 and
seeds, with bulk SQL, ``--calls`` providers with a listing and as many customers, a
pending booking between customer *i* and provider *i*, and a login session each. One
load client on core 1 opens their sockets (2,000 for 1,000 calls) and measures:

1. **Call set-up**, for every pair, started at ``--setup-rate`` calls per second
   until all ``--calls`` calls are up at once::

       customer: calls.start ──► provider: call.incoming ──► provider: calls.accept
       ──► customer: call.accepted ──► customer: calls.signal (offer)
       ──► provider: call.signal ──► provider: calls.signal (answer)
       ──► customer: call.signal (answer)            set-up time = start → answer

2. **Signalling relay** with every call connected: ICE candidates sent by one party
   (``calls.signal``) until the other party's socket has them (``call.signal``),
   alternating direction, open loop at ``--rate`` signals per second over all calls,
   in windows of ``--duration`` seconds after a warm-up.

Latencies are on the client's clock (both parties' sockets are in the load client).
Prints a table, writes ``bench/results/<timestamp>-calls.json``. The load client is
this module too: ``python -m bench.calls --load SPEC OUT``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import time
from typing import Any

import asyncpg
import orjson

from bench import report, scenario
from bench.bookings import seed_market
from bench.load import PHASE_TIMEOUT, LoadClient, percentile
from bench.procfs import CpuMeter, CpuSpent
from bench.run import CLIENT_CPU, RATE, SERVER_CPU, Runner, say
from bench.scenario import Measured
from bench.wire import WsSocket, text_frame

# A pending booking between customer i and provider i (seed_market's listing i and
# address i belong to provider i and customer i).
_BOOKINGS = """
INSERT INTO bookings (customer_id, provider_id, provider_service_id, service_id,
                      service_slug, service_name, items, charge_paise, appointment_at,
                      address_id, address, created_at, updated_at)
SELECT a.user_id, ps.provider_id, ps.id, ps.service_id, 'plumber', 'Plumber', '[]',
       25000, now() + interval '1 day', a.id, '{}', now(), now()
FROM unnest($1::bigint[], $2::bigint[]) AS t (listing, address)
JOIN provider_services ps ON ps.id = t.listing
JOIN addresses a ON a.id = t.address
RETURNING id, address_id
"""

OFFER_SDP = (
    "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "a=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:bnch\r\na=ice-pwd:benchbenchbenchbenchbe\r\n"
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\na=setup:actpass\r\na=mid:0\r\n"
    "a=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"
    "a=fmtp:111 minptime=10;useinbandfec=1\r\n"
)
CANDIDATE = "candidate:842163049 1 udp 1677729535 198.51.100.20 61234 typ srflx"


async def seed_calls(dsn: str, pairs: int, jwt_secret: bytes) -> dict[str, Any]:
    seeded = await seed_market(dsn, pairs, jwt_secret)
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(_BOOKINGS, seeded["listings"], seeded["addresses"])
        by_address = {r["address_id"]: r["id"] for r in rows}
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return {
        "customer_tokens": seeded["customer_tokens"],
        "provider_tokens": seeded["provider_tokens"],
        "bookings": [by_address[a] for a in seeded["addresses"]],
    }


# --- load client (core 1) ----------------------------------------------------------------


class CallLoad:
    """Pair i: customer i calls provider i about booking i."""

    def __init__(
        self, customers: list[WsSocket], providers: list[WsSocket], spec: dict[str, Any]
    ) -> None:
        self.customers = customers
        self.providers = providers
        self.bookings: list[int] = spec["bookings"]
        self.cpu = CpuMeter(spec["pid"], spec["postmaster"])
        pairs = len(customers)
        self.call_id = [0] * pairs
        self.started_at = [0.0] * pairs
        # When each step of a set-up arrived: call.incoming (provider), call.accepted
        # (customer), the offer (provider).
        self.stamps: dict[str, list[float]] = {
            k: [0.0] * pairs for k in ("incoming", "accepted", "offer")
        }
        self.setup_ms: list[float] = []
        self.up = 0
        self.all_up: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent_at: dict[str, float] = {}
        self.relay_ms: list[float] = []
        self.relayed = 0
        self.errors = 0
        self.error_samples: list[str] = []
        for i, (customer, provider) in enumerate(zip(customers, providers, strict=True)):
            customer.index = provider.index = i
            customer.on_text = self.on_customer
            provider.on_text = self.on_provider

    def _error(self, payload: bytes) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(payload[:300].decode(errors="replace"))

    @staticmethod
    def _send(sock: WsSocket, method: str, params: dict[str, Any]) -> None:
        sock.next_id += 1
        frame = {"jsonrpc": "2.0", "id": sock.next_id, "method": method, "params": params}
        sock.write(text_frame(orjson.dumps(frame)))

    def start(self, i: int) -> None:
        self.started_at[i] = time.monotonic()
        params = {"idempotencyKey": f"bench-call-{i}", "bookingId": self.bookings[i]}
        self._send(self.customers[i], "calls.start", params)

    def _signal(self, sock: WsSocket, i: int, **body: Any) -> None:
        self._send(sock, "calls.signal", {"callId": self.call_id[i], **body})

    def on_customer(self, sock: WsSocket, payload: bytes, now: float) -> None:
        i = sock.index
        if b'"method"' not in payload:  # an answer
            if b'"error"' in payload:
                self._error(payload)
            return
        if b'"call.accepted"' in payload:
            self.stamps["accepted"][i] = now
            self._signal(sock, i, description={"type": "offer", "sdp": OFFER_SDP})
        elif b'"call.signal"' in payload:
            self._relayed(payload, now, i)

    def on_provider(self, sock: WsSocket, payload: bytes, now: float) -> None:
        i = sock.index
        if b'"method"' not in payload:
            if b'"error"' in payload:
                self._error(payload)
            return
        if b'"call.incoming"' in payload:
            self.stamps["incoming"][i] = now
            self.call_id[i] = orjson.loads(payload)["params"]["data"]["callId"]
            self._send(
                sock,
                "calls.accept",
                {"idempotencyKey": f"bench-accept-{i}", "callId": self.call_id[i]},
            )
        elif b'"call.signal"' in payload:
            self._relayed(payload, now, i)

    def _relayed(self, payload: bytes, now: float, i: int) -> None:
        params = orjson.loads(payload)["params"]
        description = params.get("description")
        if description is not None:
            if description["type"] == "offer":  # the provider answers
                self.stamps["offer"][i] = now
                answer = {"type": "answer", "sdp": OFFER_SDP}
                self._signal(self.providers[i], i, description=answer)
            else:  # the caller has the answer: the call is set up
                self.setup_ms.append((now - self.started_at[i]) * 1000)
                self.up += 1
                if self.up == len(self.customers) and not self.all_up.done():
                    self.all_up.set_result(None)
            return
        tag = params["candidate"].get("usernameFragment")
        sent = self.sent_at.pop(tag, None)
        if sent is not None:
            self.relay_ms.append((now - sent) * 1000)
            self.relayed += 1

    async def set_up(self, rate: float) -> float:
        started = time.monotonic()
        for i in range(len(self.customers)):
            self.start(i)
            await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))
        await self.all_up
        return time.monotonic() - started

    async def relay(self, rate: float, seconds: float) -> None:
        """Candidates at ``rate`` per second, round robin over calls and directions."""
        started = time.monotonic()
        n = 0
        pairs = len(self.customers)
        while time.monotonic() - started < seconds:
            await asyncio.sleep(0.002)
            due = int((time.monotonic() - started) * rate)
            while n < due:
                i = n % pairs
                sock = self.customers[i] if (n // pairs) % 2 == 0 else self.providers[i]
                tag = f"s{n}"
                self.sent_at[tag] = time.monotonic()
                self._signal(sock, i, candidate={"candidate": CANDIDATE, "usernameFragment": tag})
                n += 1

    async def measure(self, spec: dict[str, Any]) -> dict[str, Any]:
        async with asyncio.timeout(PHASE_TIMEOUT):
            setup_seconds = await self.set_up(spec["setup_rate"])
        setup = sorted(self.setup_ms)
        steps = {}
        marks = [self.started_at, *self.stamps.values()]
        for name, (a, b) in zip(
            ("start_to_incoming", "incoming_to_accepted", "accepted_to_offer"),
            zip(marks, marks[1:], strict=False),
            strict=True,
        ):
            spans = sorted((y - x) * 1000 for x, y in zip(a, b, strict=True))
            steps[name] = {"p50_ms": percentile(spans, 50), "p99_ms": percentile(spans, 99)}
        await self.relay(spec["rate"], spec["warmup"])
        windows = []
        for _ in range(spec["windows"]):
            self.relay_ms, self.relayed = [], 0
            start = self.cpu.read()
            started = time.monotonic()
            await self.relay(spec["rate"], spec["duration"])
            # The window's last signals arrive within a few ms.
            async with asyncio.timeout(10):
                while self.sent_at:
                    await asyncio.sleep(0.01)
            elapsed = time.monotonic() - started
            spent = self.cpu.since(start)
            relay = sorted(self.relay_ms)
            windows.append(
                {
                    "seconds": elapsed,
                    "relayed": self.relayed,
                    "relay_p50_ms": percentile(relay, 50),
                    "relay_p99_ms": percentile(relay, 99),
                    "relay_max_ms": relay[-1] if relay else math.nan,
                    **spent.figures(self.relayed, "signal", elapsed),
                }
            )

        def median(key: str) -> float:
            return float(statistics.median(w[key] for w in windows))

        return {
            "calls": len(self.customers),
            "setup_seconds": setup_seconds,
            "setup_count": len(setup),
            "setup_p50_ms": percentile(setup, 50),
            "setup_p99_ms": percentile(setup, 99),
            "setup_max_ms": setup[-1] if setup else math.nan,
            "setup_steps": steps,
            "windows": windows,
            "errors": self.errors,
            "error_samples": self.error_samples,
            **{
                key: median(key)
                for key in (
                    "relay_p50_ms",
                    "relay_p99_ms",
                    "relay_max_ms",
                    *CpuSpent.keys("signal", core=False),
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
    result = await CallLoad(customers, providers, spec).measure(spec)
    await client.close_many(customers + providers)
    return result


# --- runner (core 1, waits) --------------------------------------------------------------


class CallRunner(Runner):
    calls = 1000  # set by measure() before the server starts

    def our_settings(self, port: int) -> dict[str, str]:
        return {
            **super().our_settings(port),
            # Each caller starts one call; the cap must hold every call of the run.
            "RTC_CALLS__MAX_ACTIVE_PER_INSTANCE": str(max(1000, self.calls)),
        }


def table(args: argparse.Namespace, r: dict[str, Any]) -> str:
    w = r["windows"]
    lines = [
        f"Masked calls, {r['calls']:,} concurrent calls ({2 * r['calls']:,} sockets: a customer"
        " and a provider per call), media direct, policy open.",
        f"  Set-up: calls started at {args.setup_rate:g}/s; start -> call.incoming -> accept ->"
        " call.accepted -> offer relayed -> answer relayed to the caller.",
        f"  Relay: with every call connected, ICE candidates at {args.rate:,.0f}/s (open loop,"
        " alternating direction), calls.signal sent -> call.signal received;",
        f"  median over {len(w)} windows of {args.duration:g} s after a {args.warmup:g} s"
        " warm-up. Client clock; server and PostgreSQL on core"
        f" {SERVER_CPU}, load client on core {CLIENT_CPU}.",
        f"  Our server runs with RTC_SERVER__RATE_PER_SECOND={RATE},"
        f" RTC_SERVER__RATE_BURST={RATE}.",
    ]

    def spread(key: str, digits: int = 2) -> str:
        return f"{min(x[key] for x in w):,.{digits}f} - {max(x[key] for x in w):,.{digits}f}"

    rows = [
        ("call set-up p50, ms", f"{r['setup_p50_ms']:.2f}", f"{r['setup_count']:,} calls"),
        ("call set-up p99, ms", f"{r['setup_p99_ms']:.2f}", f"max {r['setup_max_ms']:.1f}"),
        *(
            (
                f"  {name.replace('_', ' ')} p50 / p99, ms",
                f"{v['p50_ms']:.2f}",
                f"{v['p99_ms']:.2f}",
            )
            for name, v in r["setup_steps"].items()
        ),
        ("signal relay p50, ms", f"{r['relay_p50_ms']:.2f}", spread("relay_p50_ms")),
        ("signal relay p99, ms", f"{r['relay_p99_ms']:.2f}", spread("relay_p99_ms")),
        ("signals relayed per window", f"{statistics.median(x['relayed'] for x in w):,.0f}", ""),
        (
            "server CPU per signal, us",
            f"{r['server_cpu_us_per_signal']:,.0f}",
            spread("server_cpu_us_per_signal", 0),
        ),
        ("PostgreSQL CPU per signal, us", f"{r['postgres_cpu_us_per_signal']:,.0f}", ""),
        ("server CPU busy, %", f"{r['server_cpu_busy'] * 100:.0f}", ""),
        ("load client CPU busy, %", f"{r['client_cpu_busy'] * 100:.0f}", ""),
        ("errors", f"{r['errors']}", ""),
    ]
    lines += report.metric_rows(rows, "value")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.calls", description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=1000, help="concurrent calls (1000)")
    p.add_argument("--setup-rate", type=float, default=50.0, help="calls started per second (50)")
    p.add_argument("--rate", type=float, default=1000.0, help="signals per second (1000)")
    p.add_argument("--warmup", type=float, default=2.0, help="relay warm-up, seconds (2)")
    p.add_argument("--duration", type=float, default=5.0, help="window, seconds (5)")
    p.add_argument("--windows", type=int, default=3, help="windows (3)")
    p.add_argument("--quick", action="store_true", help="100 calls, 1 window of 2 s")
    args = p.parse_args(argv)
    if args.quick:
        args.calls, args.warmup, args.duration, args.windows = 100, 1.0, 2.0, 1
    return args


def measure(args: argparse.Namespace, runner: Runner) -> Measured:
    assert isinstance(runner, CallRunner)
    runner.calls = args.calls
    runner.start_postgres(int(SERVER_CPU))
    say(f"seeding {args.calls} customer-provider pairs with a pending booking each")
    seeded = asyncio.run(seed_calls(runner.dsn, args.calls, runner.jwt_secret.encode()))
    os.sched_setaffinity(0, {int(CLIENT_CPU)})  # the runner waits on core 1
    say("starting our server; setting up the calls, then relaying signals")
    with runner.server(report.OURS, "calls") as server:
        result = runner.run_load(
            server,
            "bench.calls",
            {
                **runner.client_spec(server),
                "concurrency": 50,
                **seeded,
                "setup_rate": args.setup_rate,
                "rate": args.rate,
                "warmup": args.warmup,
                "duration": args.duration,
                "windows": args.windows,
            },
        )
    return Measured(table(args, result), result, failed=bool(result["errors"]))


def main(argv: list[str] | None = None) -> int:
    return scenario.main(
        "calls",
        argv,
        parse_args=parse_args,
        load_main=load_main,
        measure=measure,
        runner_class=CallRunner,
    )


if __name__ == "__main__":
    raise SystemExit(main())
