"""Benchmark of the job queue and of push fan-out: ``python -m bench.push [--quick]``.

1. Queue throughput: ``--jobs`` no-op jobs are enqueued (1,000 per statement), then 4
   workers (each with its own connection pool, as 4 instances; ``--concurrency`` jobs
   at once each) drain them: jobs claimed and completed per second.
2. Push fan-out: ``--users`` users with one FCM device each and no live socket; one
   event with a push policy is published to all of them (``publish_many`` in chunks of
   250, so each chunk's push jobs commit with its events); 4 workers, each with its own
   FCM client, decide and send every push to a local FCM server (``tests/fakes/fcm.py``,
   in its own process). Pushes per second from the first enqueue to the last send, and
   enqueue-to-sent latency per push (from its chunk's commit to its delivery row turning
   ``sent``).

Everything runs on this machine: an embedded PostgreSQL, the workers in this process
(one event loop), the FCM server in a child process. The server itself is not started.
Numbers go to ``bench/results/<timestamp>-push.json``. Internal: ``--fcm-server DIR``
runs the FCM server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.load import percentile
from bench.procfs import core_seconds, cpu_seconds
from bench.run import ROOT, environment, save_results, say
from kernel.bus import InProcessBus
from kernel.clock import SystemClock
from kernel.events import EventSpec
from kernel.jobs import Job, JobHandler, JobQueue, JobSpec, Tick, Worker, handlers
from kernel.publisher import EventPublisher
from kernel.push import PushNotice, PushPolicy
from kernel.rpc.registry import Result
from rtc_server.metrics import Metrics
from rtc_server.push.delivery import PushDelivery
from rtc_server.push.jobs import PUSH_EVENT, PUSH_SEND
from rtc_server.push.metrics import PushMetrics
from rtc_server.push.providers.fcm import FcmProvider, ServiceAccount
from rtc_server.push.settings import PushSettings
from storage import Database, EmbeddedPostgres, PoolSettings, apply_migrations

WORKERS = 4
NOOP = JobSpec("bench.noop", Tick)


class Offered(Result):
    booking_id: int


OFFERED = EventSpec("booking.offered", Offered, "the benchmark's offers")
POLICY = PushPolicy(
    PushNotice(
        "New booking request",
        "Asha booked Plumber for 01 Dec, 10:30 AM.",
        "bookings",
        collapse_key="booking:1",
        urgency="high",
        data={"bookingId": "1"},
    )
)


async def pools(dsn: str, count: int, size: int) -> list[Database]:
    return [await Database.connect(PoolSettings(dsn=dsn, max_size=size)) for _ in range(count)]


async def queue_throughput(dsn: str, jobs: int, concurrency: int) -> dict[str, Any]:
    dbs = await pools(dsn, WORKERS, concurrency + 2)
    clock = SystemClock()
    done = 0
    finished = asyncio.Event()

    async def noop(job: Job[Tick]) -> None:
        nonlocal done
        done += 1
        if done == jobs:
            finished.set()

    queue = JobQueue(dbs[0], clock)
    started = time.perf_counter()
    for start in range(0, jobs, 1000):
        await queue.enqueue_many([queue.new(NOOP, Tick()) for _ in range(min(1000, jobs - start))])
    enqueue_seconds = time.perf_counter() - started
    workers = [
        Worker(
            db,
            handlers(JobHandler(NOOP, noop)),
            clock,
            Metrics(),
            concurrency=concurrency,
            name=f"w{i}",
        )
        for i, db in enumerate(dbs)
    ]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    await finished.wait()
    while await dbs[0].fetchval("SELECT count(*) FROM jobs WHERE kind = 'bench.noop'"):
        await asyncio.sleep(0.01)
    drain_seconds = time.perf_counter() - started
    for worker in workers:
        await worker.stop()
    for db in dbs:
        await db.close()
    return {
        "jobs": jobs,
        "enqueue_per_second": jobs / enqueue_seconds,
        "drain_seconds": drain_seconds,
        "jobs_per_second": jobs / drain_seconds,
    }


async def seed_devices(db: Database, users: int) -> list[int]:
    rows = await db.fetch(
        """
        WITH new_users AS (
            INSERT INTO users (phone, role)
            SELECT '+91' || (7000000000 + g)::text, 'provider' FROM generate_series(1, $1::int) g
            RETURNING id
        )
        INSERT INTO push_devices (user_id, device_id, platform, provider, token, registered_at)
        SELECT id, 'phone', 'android', 'fcm', 'fcm-token-' || id, now() FROM new_users
        RETURNING user_id
        """,
        users,
    )
    return sorted(r["user_id"] for r in rows)


def machine_busy() -> float:
    """Seconds every core spent running tasks or interrupts, since boot."""
    total = 0.0
    for cpu in range(os.cpu_count() or 1):
        spent = core_seconds(cpu)
        total += spent["tasks"] + spent["irq"]
    return total


async def push_fanout(
    dsn: str,
    users: int,
    concurrency: int,
    fcm_dir: Path,
    fcm_pid: int,
    *,
    paced_count: int,
    rate: float,
) -> dict[str, Any]:
    info = orjson.loads((fcm_dir / "server.json").read_bytes())
    account = ServiceAccount.from_file(Path(info["credentials"]))
    clock = SystemClock()
    dbs = await pools(dsn, WORKERS, concurrency + 4)
    user_ids = await seed_devices(dbs[0], users)
    instances = []
    for i, db in enumerate(dbs):
        bus = InProcessBus()
        provider = FcmProvider(account, clock, endpoint=info["url"])
        metrics = Metrics()
        delivery = PushDelivery(
            db,
            JobQueue(db, clock),
            bus.online,
            {"fcm": provider},
            PushSettings(),
            clock,
            PushMetrics(metrics.registry),
        )
        worker = Worker(
            db,
            handlers(JobHandler(PUSH_EVENT, delivery.decide), JobHandler(PUSH_SEND, delivery.send)),
            clock,
            metrics,
            concurrency=concurrency,
            name=f"w{i}",
        )
        instances.append((delivery, worker, EventPublisher(db, bus, Metrics(), push=delivery)))
    for _, worker, _ in instances:
        worker.start()
    await asyncio.gather(*(w.listening.wait() for _, w, _ in instances))
    publisher = instances[0][2]
    enqueued: dict[int, float] = {}
    cpu_before, fcm_before, busy_before = os.times(), cpu_seconds(fcm_pid), machine_busy()
    first = time.time()
    for start in range(0, len(user_ids), 250):
        chunk = user_ids[start : start + 250]
        await publisher.publish_many(chunk, OFFERED, Offered(booking_id=1), push=POLICY)
        now = time.time()
        enqueued.update(dict.fromkeys(chunk, now))
    publish_seconds = time.time() - first
    while (
        await dbs[0].fetchval("SELECT count(*) FROM push_deliveries WHERE status = 'sent'") < users
    ):
        await asyncio.sleep(0.05)
    cpu_after, fcm_after, busy_after = os.times(), cpu_seconds(fcm_pid), machine_busy()
    rows = await dbs[0].fetch("SELECT user_id, decided_at FROM push_deliveries")
    last = max(r["decided_at"].timestamp() for r in rows)
    latencies = sorted((r["decided_at"].timestamp() - enqueued[r["user_id"]]) * 1000 for r in rows)
    failed = await dbs[0].fetchval("SELECT count(*) FROM push_logs WHERE outcome <> 'sent'")
    fetches = sum(d.providers["fcm"].tokens.fetches for d, _, _ in instances)  # type: ignore[attr-defined]
    steady = await paced(dbs[0], publisher, user_ids[:paced_count], rate)
    for delivery, worker, _ in instances:
        await worker.stop()
        await delivery.close()
    for db in dbs:
        await db.close()
    return {
        "users": users,
        "publish_seconds": publish_seconds,
        "seconds": last - first,
        "pushes_per_second": users / (last - first),
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
            "max": latencies[-1],
        },
        "non_sent_attempts": failed,
        "workers_cpu_seconds": (cpu_after.user - cpu_before.user)
        + (cpu_after.system - cpu_before.system),
        "fcm_server_cpu_seconds": fcm_after - fcm_before,
        "machine_busy_seconds": busy_after - busy_before,
        "token_fetches": fetches,
        "paced": steady,
    }


async def paced(
    db: Database, publisher: EventPublisher, users: list[int], rate: float
) -> dict[str, Any]:
    """One push at a time at ``rate`` per second (open loop, no backlog): the latency of
    a push on a system that keeps up."""
    enqueued: dict[tuple[int, int], float] = {}
    start = time.perf_counter()
    for n, user in enumerate(users):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        seq = await publisher.publish(user, OFFERED, Offered(booking_id=2), push=POLICY)
        enqueued[(user, seq)] = time.time()
    keys = list(enqueued)
    while await db.fetchval(
        """
            SELECT count(*) FROM push_deliveries d
            JOIN unnest($1::bigint[], $2::bigint[]) AS k (u, s) ON d.user_id = k.u AND d.seq = k.s
            WHERE d.status = 'sent'
            """,
        [u for u, _ in keys],
        [s for _, s in keys],
    ) < len(keys):
        await asyncio.sleep(0.05)
    rows = await db.fetch(
        """
        SELECT d.user_id, d.seq, d.decided_at FROM push_deliveries d
        JOIN unnest($1::bigint[], $2::bigint[]) AS k (u, s) ON d.user_id = k.u AND d.seq = k.s
        """,
        [u for u, _ in keys],
        [s for _, s in keys],
    )
    latencies = sorted(
        (r["decided_at"].timestamp() - enqueued[(r["user_id"], r["seq"])]) * 1000 for r in rows
    )
    return {
        "pushes": len(keys),
        "rate": rate,
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
            "max": latencies[-1],
        },
    }


# --- The FCM server, in its own process ----------------------------------------------------


async def fcm_server(folder: Path) -> None:
    from tests.fakes.fcm import FakeFcm

    server = await FakeFcm().start()
    credentials = server.credentials_file(folder)
    (folder / "server.json").write_bytes(
        orjson.dumps({"url": server.url, "credentials": str(credentials)})
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    (folder / "received.json").write_bytes(orjson.dumps({"messages": len(server.messages)}))
    await server.close()


def start_fcm(folder: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.push", "--fcm-server", str(folder)], cwd=ROOT
    )
    deadline = time.time() + 30
    while not (folder / "server.json").exists():
        if process.poll() is not None or time.time() > deadline:
            raise RuntimeError("the FCM server did not start")
        time.sleep(0.05)
    return process


# --- Running and reporting ----------------------------------------------------------------


def table(args: argparse.Namespace, queue: dict[str, Any], fanout: dict[str, Any]) -> str:
    lat = fanout["latency_ms"]
    rows = [
        (
            "queue: jobs enqueued per second",
            f"{queue['enqueue_per_second']:,.0f}",
            "1,000 per statement",
        ),
        (
            "queue: jobs claimed+completed/s",
            f"{queue['jobs_per_second']:,.0f}",
            f"{queue['jobs']:,} no-op jobs in {queue['drain_seconds']:.2f} s",
        ),
        (
            "push: pushes per second",
            f"{fanout['pushes_per_second']:,.0f}",
            f"{fanout['users']:,} pushes in {fanout['seconds']:.2f} s",
        ),
        ("push: enqueue-to-sent p50, ms", f"{lat['p50']:,.0f}", ""),
        ("push: enqueue-to-sent p99, ms", f"{lat['p99']:,.0f}", f"max {lat['max']:,.0f}"),
        (
            "push: publish of all chunks, s",
            f"{fanout['publish_seconds']:.2f}",
            "events + push jobs, 250 users per transaction",
        ),
        (
            "push: workers' CPU per push, us",
            f"{fanout['workers_cpu_seconds'] / fanout['users'] * 1e6:,.0f}",
            "this process (4 workers, the publisher), user+system",
        ),
        (
            "push: local FCM server CPU per push, us",
            f"{fanout['fcm_server_cpu_seconds'] / fanout['users'] * 1e6:,.0f}",
            "its own process",
        ),
        (
            "push: machine busy, cores",
            f"{fanout['machine_busy_seconds'] / fanout['seconds']:.2f}",
            f"of {os.cpu_count()}; PostgreSQL is most of the rest",
        ),
        (
            "paced: enqueue-to-sent p50, ms",
            f"{fanout['paced']['latency_ms']['p50']:,.1f}",
            f"{fanout['paced']['pushes']:,} pushes, one every "
            f"{1000 / fanout['paced']['rate']:.0f} ms",
        ),
        (
            "paced: enqueue-to-sent p99, ms",
            f"{fanout['paced']['latency_ms']['p99']:,.1f}",
            f"max {fanout['paced']['latency_ms']['max']:,.1f}",
        ),
        ("push: FCM access token fetches", f"{fanout['token_fetches']}", "one per FCM client"),
        ("push: attempts not sent", f"{fanout['non_sent_attempts']}", ""),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [
        f"Job queue and push fan-out, {WORKERS} workers x {args.concurrency} concurrent jobs "
        "(one process, one event loop), embedded PostgreSQL, local FCM server process",
        "-" * 78,
        f"{'metric':<{width}}  {'value':>9}  note",
        "-" * 78,
    ]
    lines += [f"{name:<{width}}  {value:>9}  {note}" for name, value, note in rows]
    lines.append("-" * 78)
    return "\n".join(lines)


async def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    say("starting the embedded PostgreSQL")
    postgres = await asyncio.to_thread(EmbeddedPostgres.start, folder / "data")
    fcm = None
    try:
        admin = await Database.connect(PoolSettings(dsn=postgres.dsn))
        await apply_migrations(admin)
        await admin.close()
        say(f"queue: {args.jobs:,} jobs, {WORKERS} workers")
        queue = await queue_throughput(postgres.dsn, args.jobs, args.concurrency)
        fcm_dir = folder / "fcm"
        fcm_dir.mkdir()
        fcm = start_fcm(fcm_dir)
        say(f"push: {args.users:,} users, {WORKERS} workers")
        fanout = await push_fanout(
            postgres.dsn,
            args.users,
            args.concurrency,
            fcm_dir,
            fcm.pid,
            paced_count=args.paced,
            rate=args.rate,
        )
        return {"queue": queue, "fanout": fanout}
    finally:
        if fcm is not None:
            fcm.send_signal(signal.SIGTERM)
            fcm.wait(10)
        await asyncio.to_thread(postgres.stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.push", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16, help="jobs at once per worker")
    parser.add_argument("--paced", type=int, default=2_000, help="pushes of the paced run")
    parser.add_argument("--rate", type=float, default=100.0, help="pushes/s of the paced run")
    parser.add_argument("--quick", action="store_true", help="2,000 jobs and 1,000 pushes")
    parser.add_argument("--fcm-server", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fcm_server is not None:
        asyncio.run(fcm_server(args.fcm_server))
        return 0
    if args.quick:
        args.jobs, args.users, args.paced = 2_000, 1_000, 300
    random.seed(1)
    started = datetime.now()
    folder = Path(tempfile.mkdtemp(prefix="rtc-bench-push-"))
    os.chmod(folder, 0o755)  # the embedded PostgreSQL may run as another user
    try:
        results = asyncio.run(run(args, folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(table(args, results["queue"], results["fanout"]))
    save_results(
        started,
        "-push",
        {
            "environment": environment(),
            "args": vars(args) | {"fcm_server": None},
            **results,
            "at": datetime.now(UTC).isoformat(),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
