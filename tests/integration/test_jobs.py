"""The job queue against a real PostgreSQL: outbox, dedup, concurrency, leases,
backoff, LISTEN/NOTIFY wake-up, periodic jobs across two instances."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from kernel.clock import FakeClock
from kernel.jobs import (
    Backoff,
    Calendar,
    GiveUp,
    Job,
    JobHandler,
    JobPayload,
    JobQueue,
    JobSpec,
    Periodic,
    PeriodicJobs,
    RetryLater,
    Tick,
    Worker,
)
from rtc_server.metrics import Metrics
from storage import Database, PoolSettings
from storage import jobs as job_store


class Data(JobPayload):
    name: str | None = None
    n: int | None = None


Handler = Callable[[Job[Data]], Awaitable[int | None]]


def spec(kind: str) -> JobSpec[Data]:
    """The test's kinds of job all carry :class:`Data`."""
    return JobSpec(kind, Data)


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.01)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))


@pytest.fixture
def queue(db: Database, clock: FakeClock) -> JobQueue:
    return JobQueue(db, clock, max_attempts=3)


def make_worker(
    db: Database, clock: FakeClock, handlers: dict[str, Handler], **options: object
) -> Worker:
    by_kind = {kind: JobHandler(spec(kind), run) for kind, run in handlers.items()}
    return Worker(db, by_kind, clock, Metrics(), rng=random.Random(7), **options)  # type: ignore[arg-type]


async def job_row(db: Database, job_id: int) -> dict[str, object] | None:
    row = await db.fetchrow("SELECT * FROM jobs WHERE id = $1", job_id)
    return dict(row) if row is not None else None


async def test_a_job_runs_with_its_payload_and_is_deleted(
    db: Database, clock: FakeClock, queue: JobQueue
) -> None:
    seen: list[Job[Data]] = []

    async def handler(job: Job[Data]) -> None:
        seen.append(job)

    job_id = await queue.enqueue(spec("greet"), Data(name="Asha"))
    assert job_id is not None
    assert await make_worker(db, clock, {"greet": handler}).run_due() == 1
    assert [(j.kind, j.payload, j.attempt) for j in seen] == [("greet", Data(name="Asha"), 1)]
    assert await job_row(db, job_id) is None


async def test_a_job_that_says_what_it_did_is_counted_and_logged(
    db: Database, clock: FakeClock, queue: JobQueue, caplog: pytest.LogCaptureFixture
) -> None:
    async def sends(job: Job[Data]) -> int:
        return len(job.payload.name or "")

    async def quiet(job: Job[Data]) -> None:
        return None

    await queue.enqueue(spec("remind"), Data(name="Asha"))
    await queue.enqueue(spec("remind"), Data(name="Ravi Kumar"))
    await queue.enqueue(spec("quiet"), Data(name="x"))
    worker = make_worker(db, clock, {"remind": sends, "quiet": quiet})
    with caplog.at_level(logging.INFO, "rtc.jobs"):
        assert await worker.run_due() == 3
    items = worker._metrics.registry.get_sample_value
    assert items("rtc_job_items_total", {"kind": "remind"}) == 14
    assert items("rtc_job_items_total", {"kind": "quiet"}) is None
    ran = [r for r in caplog.records if r.getMessage() == "job ran"]
    assert sorted(r.__dict__["items"] for r in ran) == [4, 10]
    assert {r.__dict__["kind"] for r in ran} == {"remind"}


async def test_a_job_commits_and_rolls_back_with_the_callers_transaction(
    db: Database, queue: JobQueue
) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with db.transaction() as conn:
            await queue.enqueue(spec("greet"), Data(), conn=conn, dedup_key="rolled-back")
            raise Boom
    async with db.transaction() as conn:
        await queue.enqueue(spec("greet"), Data(), conn=conn, dedup_key="committed")
    keys = await db.fetch("SELECT dedup_key FROM jobs")
    assert [r["dedup_key"] for r in keys] == ["committed"]


async def test_a_dedup_key_is_enqueued_once_while_its_job_exists(
    db: Database, clock: FakeClock, queue: JobQueue
) -> None:
    first = await queue.enqueue(spec("greet"), Data(), dedup_key="push:1:7")
    assert first is not None
    assert await queue.enqueue(spec("greet"), Data(), dedup_key="push:1:7") is None
    ids = await queue.enqueue_many(
        [
            queue.new(spec("greet"), Data(), dedup_key="push:1:7"),
            queue.new(spec("greet"), Data(), dedup_key="push:1:8"),
        ]
    )
    assert len(ids) == 1 and ids[0] != first
    assert await db.fetchval("SELECT count(*) FROM jobs") == 2


async def test_a_job_is_not_run_before_its_time(
    db: Database, clock: FakeClock, queue: JobQueue
) -> None:
    ran: list[int] = []

    async def handler(job: Job[Data]) -> None:
        ran.append(job.id)

    await queue.enqueue(spec("later"), Data(), delay=10.0)
    worker = make_worker(db, clock, {"later": handler})
    assert await worker.run_due() == 0
    clock.advance(10.0)
    assert await worker.run_due() == 1


async def test_several_workers_run_every_job_exactly_once(db_dsn: str, clock: FakeClock) -> None:
    # Four workers, each with its own pool (as four instances), racing for 300 jobs
    # with their real loops: claims by SKIP LOCKED, wake-ups by NOTIFY.
    pools = [await Database.connect(PoolSettings(dsn=db_dsn, max_size=4)) for _ in range(4)]
    runs: Counter[int] = Counter()
    by_worker: Counter[str] = Counter()

    def handler_for(name: str) -> Handler:
        async def handler(job: Job[Data]) -> None:
            await asyncio.sleep(0)  # let the others claim meanwhile
            runs[job.payload.n or 0] += 1
            by_worker[name] += 1

        return handler

    workers = [
        make_worker(pool, clock, {"count": handler_for(f"w{i}")}, concurrency=8, name=f"w{i}")
        for i, pool in enumerate(pools)
    ]
    try:
        for w in workers:
            w.start()
        await asyncio.gather(*(w.listening.wait() for w in workers))
        queue = JobQueue(pools[0], clock)
        for start in range(0, 300, 50):
            await queue.enqueue_many(
                [queue.new(spec("count"), Data(n=n)) for n in range(start, start + 50)]
            )

        async def all_done() -> bool:
            return bool(await pools[0].fetchval("SELECT count(*) FROM jobs") == 0)

        await wait_until(all_done)
    finally:
        for w in workers:
            await w.stop()
        for pool in pools:
            await pool.close()
    assert sorted(runs) == list(range(300))
    assert set(runs.values()) == {1}
    assert len(by_worker) >= 2  # the work really was shared


async def test_notify_wakes_an_idle_worker_long_before_its_poll(
    db: Database, clock: FakeClock, queue: JobQueue
) -> None:
    done = asyncio.Event()

    async def handler(job: Job[Data]) -> None:
        done.set()

    worker = make_worker(db, clock, {"ping": handler}, poll_interval=60.0)
    worker.start()
    try:
        await worker.listening.wait()
        await worker.run_due()  # nothing: the loop is idle and waits up to 60 s
        await queue.enqueue(spec("ping"), Data())
        async with asyncio.timeout(5):
            await done.wait()
    finally:
        await worker.stop()


async def test_a_crashed_workers_job_is_retried_once_its_lease_ends(
    db: Database, clock: FakeClock, queue: JobQueue
) -> None:
    ran: list[int] = []

    async def handler(job: Job[Data]) -> None:
        ran.append(job.attempt)

    job_id = await queue.enqueue(spec("send"), Data())
    # A worker claims it, then dies before finishing (nothing recorded).
    [claimed] = await job_store.claim(db, "dead", 10, clock.now(), timedelta(seconds=60))
    assert claimed.id == job_id and claimed.attempt == 1
    survivor = make_worker(db, clock, {"send": handler}, lease=60.0)
    clock.advance(59.0)
    assert await survivor.run_due() == 0  # still leased
    clock.advance(1.0)
    assert await survivor.run_due() == 1
    assert ran == [2]
    assert await job_row(db, job_id) is None
    # The dead worker's late answer changes nothing.
    assert not await job_store.complete(db, claimed.id, claimed.attempt)


async def test_a_late_outcome_of_an_expired_lease_is_ignored(
    db: Database, clock: FakeClock, queue: JobQueue
) -> None:
    job_id = await queue.enqueue(spec("send"), Data())
    assert job_id is not None
    [first] = await job_store.claim(db, "slow", 10, clock.now(), timedelta(seconds=5))
    clock.advance(6.0)
    [second] = await job_store.claim(db, "fresh", 10, clock.now(), timedelta(seconds=5))
    assert second.attempt == 2
    assert not await job_store.retry(db, job_id, first.attempt, clock.now(), "late")
    row = await job_row(db, job_id)
    assert row is not None and row["leased_by"] == "fresh"


async def test_failures_back_off_exponentially_then_the_job_fails_for_good(
    db: Database, clock: FakeClock, queue: JobQueue
) -> None:
    attempts: list[int] = []

    async def flaky(job: Job[Data]) -> None:
        attempts.append(job.attempt)
        raise RuntimeError("provider down")

    job_id = await queue.enqueue(spec("flaky"), Data(), max_attempts=3)
    assert job_id is not None
    worker = make_worker(db, clock, {"flaky": flaky}, backoff=Backoff(base=10.0, cap=3600.0))
    for attempt, (low, high) in [(1, (5.0, 10.0)), (2, (10.0, 20.0))]:
        start = clock.now()
        assert await worker.run_due() == 1
        row = await job_row(db, job_id)
        assert row is not None and row["leased_by"] is None
        assert "provider down" in str(row["last_error"])
        wait = (row["run_at"] - start).total_seconds()  # type: ignore[operator]
        assert low <= wait <= high, (attempt, wait)
        clock.advance(wait - 0.001)
        assert await worker.run_due() == 0  # not yet
        clock.advance(0.001)
    assert await worker.run_due() == 1
    row = await job_row(db, job_id)
    assert row is not None and row["failed_at"] == clock.now()
    clock.advance(10 * 86400)
    assert await worker.run_due() == 0  # failed jobs are never claimed
    assert attempts == [1, 2, 3]


async def test_retry_later_honours_the_handlers_delay_and_give_up_stops_at_once(
    db: Database, clock: FakeClock, queue: JobQueue
) -> None:
    async def throttled(job: Job[Data]) -> None:
        raise RetryLater("429", after=30.0)

    async def hopeless(job: Job[Data]) -> None:
        raise GiveUp("token unregistered")

    throttled_id = await queue.enqueue(spec("throttled"), Data())
    hopeless_id = await queue.enqueue(spec("hopeless"), Data(), max_attempts=10)
    worker = make_worker(db, clock, {"throttled": throttled, "hopeless": hopeless})
    start = clock.now()
    assert await worker.run_due() == 2
    throttled_row = await job_row(db, throttled_id)  # type: ignore[arg-type]
    hopeless_row = await job_row(db, hopeless_id)  # type: ignore[arg-type]
    assert throttled_row is not None and throttled_row["run_at"] == start + timedelta(seconds=30)
    assert hopeless_row is not None and hopeless_row["failed_at"] == start
    assert hopeless_row["attempts"] == 1 and hopeless_row["last_error"] == "token unregistered"


async def test_a_lease_that_ends_on_the_last_attempt_fails_the_job(
    db: Database, clock: FakeClock, queue: JobQueue
) -> None:
    ran: list[int] = []

    async def handler(job: Job[Data]) -> None:
        ran.append(job.attempt)

    job_id = await queue.enqueue(spec("send"), Data(), max_attempts=1)
    await job_store.claim(db, "dead", 10, clock.now(), timedelta(seconds=60))
    clock.advance(61.0)
    assert await make_worker(db, clock, {"send": handler}).run_due() == 1
    row = await job_row(db, job_id)  # type: ignore[arg-type]
    assert ran == [] and row is not None and row["failed_at"] is not None


async def test_a_handler_that_outlives_its_lease_is_cancelled_and_retried(
    db: Database, clock: FakeClock, queue: JobQueue
) -> None:
    cancelled = asyncio.Event()

    async def stuck(job: Job[Data]) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job_id = await queue.enqueue(spec("stuck"), Data())
    assert await make_worker(db, clock, {"stuck": stuck}, lease=0.3).run_due() == 1
    row = await job_row(db, job_id)  # type: ignore[arg-type]
    assert cancelled.is_set()
    assert row is not None and row["attempts"] == 1 and "timed out" in str(row["last_error"])


async def test_a_worker_claims_only_the_kinds_it_handles(
    db: Database, clock: FakeClock, queue: JobQueue
) -> None:
    async def handler(job: Job[Data]) -> None:
        return None

    await queue.enqueue(spec("mine"), Data())
    other = await queue.enqueue(spec("theirs"), Data())
    assert await make_worker(db, clock, {"mine": handler}).run_due() == 1
    row = await job_row(db, other)  # type: ignore[arg-type]
    assert row is not None and row["attempts"] == 0


@pytest.fixture
async def two_instances(db_dsn: str) -> AsyncIterator[tuple[Database, Database]]:
    a = await Database.connect(PoolSettings(dsn=db_dsn, max_size=4))
    b = await Database.connect(PoolSettings(dsn=db_dsn, max_size=4))
    yield a, b
    await a.close()
    await b.close()


async def test_a_periodic_job_runs_once_per_tick_across_two_instances(
    two_instances: tuple[Database, Database], clock: FakeClock
) -> None:
    a, b = two_instances
    schedules = [
        Periodic("sweep", 10.0, JobSpec("sweep", Tick)),
        Periodic("report", 30.0, JobSpec("report", Tick)),
    ]
    instances = [PeriodicJobs(db, JobQueue(db, clock), clock, schedules) for db in (a, b)]
    taken: list[str] = []
    for _ in range(60):  # 60 checks a second apart: ticks at every 10 s and 30 s
        results = await asyncio.gather(*(i.run_once() for i in instances))
        taken += [name for result in results for name in result]
        clock.advance(1.0)
    # 09:00:00 .. 09:00:59: six 10-second slots and two 30-second slots.
    assert Counter(taken) == {"sweep": 6, "report": 2}
    ran: Counter[str] = Counter()

    async def handler(job: Job[Data]) -> None:
        ran[job.kind] += 1

    worker = make_worker(a, clock, {"sweep": handler, "report": handler})
    assert await worker.run_due() == 8
    assert ran == {"sweep": 6, "report": 2}


async def test_a_calendar_job_runs_once_per_slot_across_two_instances_and_days(
    two_instances: tuple[Database, Database],
) -> None:
    a, b = two_instances
    india = ZoneInfo("Asia/Kolkata")
    clock = FakeClock(datetime(2026, 12, 30, 7, 0, tzinfo=india).astimezone(UTC))
    schedules = [Calendar("morning", "0 8 * * *", JobSpec("morning", Tick), "Asia/Kolkata")]
    instances = [PeriodicJobs(db, JobQueue(db, clock), clock, schedules) for db in (a, b)]
    taken: list[str] = []
    for _ in range(4 * 24 * 6):  # four days, both instances checking every 10 minutes
        results = await asyncio.gather(*(i.run_once() for i in instances))
        taken += [name for result in results for name in result]
        clock.advance(600.0)
    assert taken == ["morning"] * 4  # Dec 30, Dec 31, Jan 1, Jan 2: once each
    slots = await a.fetch("SELECT slot FROM job_ticks WHERE name = 'morning' ORDER BY slot")
    assert [r["slot"].astimezone(india).isoformat() for r in slots] == [
        f"{day}T08:00:00+05:30" for day in ("2026-12-30", "2026-12-31", "2027-01-01", "2027-01-02")
    ]
    # A restart within the slot's grace does not run it again (the tick is taken).
    clock.advance((datetime(2027, 1, 2, 8, 30, tzinfo=india) - clock.now()).total_seconds())
    fresh = PeriodicJobs(a, JobQueue(a, clock), clock, schedules)
    assert await fresh.run_once() == []


async def test_a_worker_listens_again_after_its_connection_is_killed(
    db: Database, clock: FakeClock, queue: JobQueue
) -> None:
    done = asyncio.Event()

    async def handler(job: Job[Data]) -> None:
        done.set()

    worker = make_worker(db, clock, {"ping": handler}, poll_interval=60.0)
    worker.start()
    try:
        await worker.listening.wait()
        killed = await db.fetchval(
            """
            SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE datname = current_database() AND query LIKE 'LISTEN%'
            """
        )
        assert killed is True
        async with asyncio.timeout(5):
            while worker.listens < 2:  # the loss is noticed and a new connection listens
                await asyncio.sleep(0.01)
        await queue.enqueue(
            spec("ping"), Data()
        )  # woken by NOTIFY: the 60 s poll would be too late
        async with asyncio.timeout(5):
            await done.wait()
    finally:
        await worker.stop()


async def test_a_payload_its_spec_cannot_read_fails_the_job_at_once(
    db: Database, clock: FakeClock, queue: JobQueue
) -> None:
    ran: list[int] = []

    async def handler(job: Job[Data]) -> None:
        ran.append(job.id)

    # A row an older release (or a hand) wrote, with a payload the model refuses.
    job_id = await db.fetchval(
        "INSERT INTO jobs (kind, payload, run_at, max_attempts, created_at)"
        " VALUES ('greet', '{\"n\": \"many\"}', $1, 5, $1) RETURNING id",
        clock.now(),
    )
    assert await make_worker(db, clock, {"greet": handler}).run_due() == 1
    row = await job_row(db, job_id)
    assert ran == []
    assert row is not None and row["failed_at"] is not None and row["attempts"] == 1
    assert "unreadable payload" in str(row["last_error"])


def test_a_spec_refuses_a_payload_of_another_model() -> None:
    with pytest.raises(TypeError, match="carries Data, not Tick"):
        spec("greet").encode(Tick())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lowerCamel"):
        JobSpec("Greet Someone", Data)
