"""The worker: claims due jobs, runs their handlers, records the outcome.

One :class:`Worker` per instance runs up to ``concurrency`` jobs at once. Its loop::

    claim free slots' worth of due jobs (FOR UPDATE SKIP LOCKED, leased)
    run each in a task: handler -> complete (delete) | retry (backoff) | fail
    wait for: a NOTIFY (a job was enqueued), a slot freed, the next due time,
              or poll_interval (the fallback if a notification was lost)

A handler must finish within the lease: the worker cancels it at ``lease`` (minus a
margin) and counts a timeout as a failed attempt, so no other worker can claim a job
whose handler still runs. Outcomes are written only for the attempt this worker
claimed (``attempts`` is the fencing token).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

from kernel.clock import Clock
from kernel.jobs.queue import Backoff, GiveUp, RetryLater
from kernel.jobs.spec import Job, JobHandler
from kernel.metrics import KernelMetrics
from storage import jobs as job_store
from storage.database import Database
from storage.errors import StorageError

log = logging.getLogger("rtc.jobs")


# Seconds kept between a handler's deadline and its lease's end, for recording the outcome.
_LEASE_MARGIN = 0.1
# Seconds between attempts to get a LISTEN connection back (polling covers the gap).
_LISTEN_RETRY = 0.5


class Worker:
    def __init__(
        self,
        db: Database,
        handlers: Mapping[str, JobHandler[Any]],
        clock: Clock,
        metrics: KernelMetrics,
        *,
        # Capacity.
        concurrency: int = 16,
        # Timing, seconds.
        lease: float = 60.0,
        poll_interval: float = 1.0,
        backoff: Backoff | None = None,
        name: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._db = db
        self._handlers = dict(handlers)
        self._clock = clock
        self._metrics = metrics
        self._concurrency = concurrency
        self._lease = lease
        self._poll_interval = poll_interval
        self._backoff = backoff or Backoff()
        self.name = name or f"worker-{uuid.uuid4().hex[:12]}"
        self._rng = rng or random.Random()
        self._running: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()  # set while the LISTEN connection is up
        self.listens = 0  # LISTEN connections made so far

    # Lifecycle.

    def start(self) -> None:
        self._listen_task = asyncio.create_task(self._listen())
        self._loop_task = asyncio.create_task(self._run())

    def wake(self) -> None:
        """Claim now (tests call it after moving a fake clock)."""
        self._wake.set()

    async def stop(self, *, grace: float = 5.0) -> None:
        """Stop claiming; give running jobs ``grace`` seconds, then cancel them (their
        leases run out and another worker retries them)."""
        self._stopping = True
        self._wake.set()
        for task in (self._loop_task, self._listen_task):
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(t for t in (self._loop_task, self._listen_task) if t is not None),
            return_exceptions=True,
        )
        if self._running:
            _, pending = await asyncio.wait(set(self._running), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # One round, without the loop (tests and benchmarks drive it by hand).

    async def run_due(self) -> int:
        """Claim and run due jobs until none is due; returns how many ran."""
        ran = 0
        while True:
            claimed = await self._claim(self._concurrency)
            if not claimed:
                return ran
            await asyncio.gather(*(self._execute(job) for job in claimed))
            ran += len(claimed)

    # The loop.

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            timeout = self._poll_interval
            free = self._concurrency - len(self._running)
            if free > 0:
                try:
                    claimed = await self._claim(free)
                except StorageError:
                    log.warning("jobs: cannot claim, database unavailable; will retry")
                    claimed = []
                for job in claimed:
                    self._spawn(job)
                if len(claimed) == free:
                    continue  # more may be due: claim again when a slot frees
                timeout = await self._until_next_due(timeout)
            if timeout > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    pass

    async def _until_next_due(self, cap: float) -> float:
        try:
            due = await job_store.next_due(self._db, list(self._handlers))
        except StorageError:
            return cap
        if due is None:
            return cap
        return max(0.0, min(cap, (due - self._clock.now()).total_seconds()))

    async def _claim(self, limit: int) -> list[job_store.ClaimedJob]:
        return await job_store.claim(
            self._db,
            self.name,
            limit,
            self._clock.now(),
            timedelta(seconds=self._lease),
            kinds=list(self._handlers),
        )

    def _spawn(self, claimed: job_store.ClaimedJob) -> None:
        task = asyncio.create_task(self._execute(claimed))
        self._running.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._running.discard(t)
            self._wake.set()  # a slot is free

        task.add_done_callback(done)

    async def _execute(self, claimed: job_store.ClaimedJob) -> None:
        """Run one attempt and record its outcome. Never raises (but cancellation)."""
        kind = claimed.kind
        if claimed.attempt > claimed.max_attempts:
            # Its last attempt's lease ran out (the worker died): nothing left to try.
            await self._record(
                job_store.fail, claimed, "lease expired on the last attempt", self._clock.now()
            )
            self._metrics.jobs_finished.labels(kind, "failed").inc()
            return
        handler = self._handlers[kind]
        try:
            job: Job[Any] = handler.job(
                claimed.id, claimed.payload, claimed.attempt, claimed.max_attempts
            )
        except ValueError as unreadable:
            await self._give_up(claimed, f"unreadable payload: {unreadable}")
            return
        started = time.perf_counter()
        try:
            async with asyncio.timeout(max(0.0, self._lease - _LEASE_MARGIN)):
                items = await handler.run(job)
        except GiveUp as exc:
            await self._give_up(claimed, str(exc))
        except RetryLater as exc:
            await self._retry(claimed, str(exc), exc.after)
        except TimeoutError:
            await self._retry(claimed, "timed out (the lease ended)", None)
        except asyncio.CancelledError:
            raise  # stopping: the lease runs out and another worker retries it
        except Exception as exc:  # noqa: BLE001 - a handler's bug must not stop the worker
            log.exception("job failed", extra={"job": claimed.id, "kind": kind})
            await self._retry(claimed, f"{type(exc).__name__}: {exc}", None)
        else:
            await self._record(job_store.complete, claimed)
            self._metrics.jobs_finished.labels(kind, "done").inc()
            if items is not None:  # a job that says what it did: counted and logged
                self._metrics.job_items.labels(kind).inc(items)
                log.info(
                    "job ran",
                    extra={
                        "kind": kind,
                        "items": items,
                        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                    },
                )
        finally:
            self._metrics.job_seconds.labels(kind).observe(time.perf_counter() - started)

    async def _retry(self, claimed: job_store.ClaimedJob, error: str, after: float | None) -> None:
        if claimed.attempt >= claimed.max_attempts:
            await self._give_up(claimed, error)
            return
        delay = after if after is not None else self._backoff.delay(claimed.attempt, self._rng)
        run_at = self._clock.now() + timedelta(seconds=delay)
        await self._record(job_store.retry, claimed, run_at, error[:1000])
        self._metrics.jobs_finished.labels(claimed.kind, "retried").inc()

    async def _give_up(self, claimed: job_store.ClaimedJob, error: str) -> None:
        await self._record(job_store.fail, claimed, error[:1000], self._clock.now())
        self._metrics.jobs_finished.labels(claimed.kind, "failed").inc()
        log.warning(
            "job failed for good",
            extra={
                "job": claimed.id,
                "kind": claimed.kind,
                "attempts": claimed.attempt,
                "error": error[:200],
            },
        )

    async def _record(
        self, outcome: Callable[..., Awaitable[bool]], claimed: job_store.ClaimedJob, *args: Any
    ) -> None:
        try:
            current = await outcome(self._db, claimed.id, claimed.attempt, *args)
        except StorageError:
            # The lease runs out and the job is claimed again: at least once.
            log.warning("jobs: could not record an outcome", extra={"job": claimed.id})
            return
        if not current:
            log.warning(
                "job outcome ignored: its lease had ended and it was claimed again",
                extra={"job": claimed.id, "kind": claimed.kind},
            )

    # LISTEN/NOTIFY: a held connection that wakes the loop; polling covers its outages.

    async def _listen(self) -> None:
        while not self._stopping:
            lost = asyncio.Event()
            try:
                async with self._db.acquire() as conn:
                    conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                    await conn.add_listener(job_store.CHANNEL, self._notified)
                    self.listens += 1
                    self.listening.set()
                    self._wake.set()  # claim what was enqueued while nobody listened
                    try:
                        await lost.wait()
                    finally:
                        self.listening.clear()
                        if not conn.is_closed():
                            await conn.remove_listener(job_store.CHANNEL, self._notified)
            except StorageError:
                pass
            if not self._stopping:
                log.warning("jobs: LISTEN connection lost; polling until it is back")
                await asyncio.sleep(_LISTEN_RETRY)

    def _notified(self, *_args: object) -> None:
        self._wake.set()
