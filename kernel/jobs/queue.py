"""Enqueueing jobs, and the retry rules."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from kernel.clock import Clock
from kernel.jobs.spec import JobSpec, P
from storage import jobs as job_store
from storage.events import Executor


class JobError(Exception):
    """Raised by a handler to say how its failed attempt should be treated."""


class RetryLater(JobError):
    """Try again: after ``after`` seconds (a provider's Retry-After), else by backoff."""

    def __init__(self, reason: str, *, after: float | None = None) -> None:
        super().__init__(reason)
        self.after = after


class GiveUp(JobError):
    """The job can never succeed: no more attempts."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with jitter: attempt n waits a random time in
    ``[d/2, d]`` where ``d = min(cap, base * 2**(n-1))`` ("equal jitter": retries of
    many jobs that failed together spread out, yet none retries at once)."""

    base: float = 2.0
    cap: float = 3600.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        full = min(self.cap, self.base * 2.0 ** min(attempt - 1, 62))
        return rng.uniform(full / 2, full)


class JobQueue:
    """Enqueues jobs. Domain code holds one; handlers are registered on workers."""

    def __init__(self, db: Executor, clock: Clock, *, max_attempts: int = 10) -> None:
        self._db = db
        self._clock = clock
        self.max_attempts = max_attempts

    async def enqueue(
        self,
        spec: JobSpec[P],
        payload: P,
        *,
        conn: Executor | None = None,
        delay: float = 0.0,
        run_at: datetime | None = None,
        dedup_key: str | None = None,
        max_attempts: int | None = None,
    ) -> int | None:
        """Enqueue one job; its id, or None when ``dedup_key`` already exists.

        With ``conn`` (a connection inside the caller's transaction) the job commits
        with the caller's change, and workers are woken at the commit.
        """
        ids = await self.enqueue_many(
            [
                self.new(
                    spec,
                    payload,
                    delay=delay,
                    run_at=run_at,
                    dedup_key=dedup_key,
                    max_attempts=max_attempts,
                )
            ],
            conn=conn,
        )
        return ids[0] if ids else None

    def new(
        self,
        spec: JobSpec[P],
        payload: P,
        *,
        delay: float = 0.0,
        run_at: datetime | None = None,
        dedup_key: str | None = None,
        max_attempts: int | None = None,
    ) -> job_store.NewJob:
        """A job to pass to :meth:`enqueue_many`."""
        when = run_at or self._clock.now() + timedelta(seconds=delay)
        return job_store.NewJob(
            kind=spec.kind,
            payload=spec.encode(payload),
            run_at=when,
            dedup_key=dedup_key,
            max_attempts=max_attempts or spec.max_attempts or self.max_attempts,
        )

    async def enqueue_many(
        self, jobs: list[job_store.NewJob], *, conn: Executor | None = None
    ) -> list[int]:
        """Enqueue several jobs in one statement; the ids of those not deduplicated."""
        return await job_store.enqueue(conn or self._db, jobs, self._clock.now())
