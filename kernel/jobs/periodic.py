"""Periodic jobs: each runs once per tick across all instances.

Every instance runs a :class:`PeriodicJobs`. At each tick of a job (``every`` seconds,
aligned on the Unix epoch, so instances agree on the slots without talking), each
instance tries to insert ``(name, slot)`` into ``job_ticks``; the one insert that
succeeds enqueues the tick's job in the same transaction. The job then runs on
whichever worker claims it, with the queue's leases and retries. A tick missed while
every instance was down is not made up: the next one runs.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from kernel.clock import Clock
from kernel.jobs.queue import JobQueue
from kernel.jobs.spec import JobSpec, Tick
from storage import jobs as job_store
from storage.database import Database
from storage.errors import StorageError

log = logging.getLogger("rtc.jobs")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def slot_of(now: datetime, every: float) -> datetime:
    """The start of the tick of ``now`` for a job run every ``every`` seconds."""
    seconds = (now - _EPOCH).total_seconds()
    return datetime.fromtimestamp(math.floor(seconds / every) * every, UTC)


@dataclass(frozen=True, slots=True)
class Periodic:
    """Enqueue a job of ``spec`` every ``every`` seconds (its payload: the tick's slot)."""

    name: str
    every: float
    spec: JobSpec[Tick]
    max_attempts: int = 3


class PeriodicJobs:
    def __init__(
        self,
        db: Database,
        queue: JobQueue,
        clock: Clock,
        schedules: Sequence[Periodic],
        *,
        check_interval: float = 1.0,
    ) -> None:
        self._db = db
        self._queue = queue
        self._clock = clock
        self._schedules = tuple(schedules)
        self._check_interval = check_interval
        self._last: dict[str, datetime] = {}

    async def run_once(self) -> list[str]:
        """Take this moment's tick of every job not taken yet; the names this instance
        enqueued (empty when other instances took them first)."""
        now = self._clock.now()
        taken = []
        for schedule in self._schedules:
            slot = slot_of(now, schedule.every)
            if self._last.get(schedule.name) == slot:
                continue
            async with self._db.transaction() as conn:
                if await job_store.take_tick(conn, schedule.name, slot):
                    job = self._queue.new(
                        schedule.spec,
                        Tick(slot=slot),
                        dedup_key=f"periodic:{schedule.name}:{slot.isoformat()}",
                        max_attempts=schedule.max_attempts,
                    )
                    await self._queue.enqueue_many([job], conn=conn)
                    taken.append(schedule.name)
            self._last[schedule.name] = slot
        return taken

    async def run_forever(self) -> None:
        while True:
            try:
                await self.run_once()
            except StorageError:
                log.warning("periodic jobs: database unavailable; will retry")
            except Exception:  # noqa: BLE001 - the loop must outlive any one failure
                log.exception("periodic jobs failed; will retry")
            await asyncio.sleep(self._check_interval)
