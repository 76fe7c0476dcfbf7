"""Scheduled jobs: each runs once per slot across all instances.

Two kinds of schedule: :class:`Periodic` (every ``every`` seconds, aligned on the Unix
epoch) and :class:`Calendar` (the times a cron expression names in an IANA time zone:
"09:00 in India"). Every instance runs a :class:`PeriodicJobs`; at each slot of a job,
each instance tries to insert ``(name, slot)`` into ``job_ticks``, and the one insert
that succeeds enqueues the slot's job in the same transaction. The job then runs on
whichever worker claims it, with the queue's leases and retries.

Missed slots: a periodic tick missed while every instance was down is not made up (the
next one runs). A calendar slot that passed during downtime runs once when an instance
is back, if it is less than the schedule's ``grace`` old; of several missed slots only
the latest runs, never several.

Calendar slots are computed with cronsim, which follows cron across daylight saving
changes (what the Debian and cronie crons do): a daily time that does not exist on the
spring-forward day runs at the first minute after the gap, one that exists twice on the
fall-back day runs once, at its first occurrence; schedules every N minutes run
through both hours. India has no DST; the other zones are tested anyway.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from kernel.clock import Clock
from kernel.jobs.queue import JobQueue
from kernel.jobs.spec import JobSpec, Tick
from storage import jobs as job_store
from storage.database import Database
from storage.errors import StorageError

log = logging.getLogger("rtc.jobs")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def tick_key(name: str, slot: datetime) -> str:
    """The dedup key of the job a schedule enqueued for ``slot``."""
    return f"periodic:{name}:{slot.isoformat()}"


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

    def slot(self, now: datetime) -> datetime | None:
        return slot_of(now, self.every)

    def next_after(self, now: datetime) -> datetime:
        return slot_of(now, self.every) + timedelta(seconds=self.every)

    def describe(self) -> str:
        return f"every {self.every:g} s"


_MAX_GRACE = 86400.0
# Slots looked at per check at most (a cron every minute with a day's grace: 1,440).
_MAX_SLOTS_SCANNED = 10_000


@dataclass(frozen=True, slots=True)
class Calendar:
    """Enqueue a job of ``spec`` at each time ``cron`` names in ``timezone`` (payload:
    the slot, in UTC). A slot still runs up to ``grace`` seconds late (after downtime)."""

    name: str
    cron: str
    spec: JobSpec[Tick]
    timezone: str = "Asia/Kolkata"
    grace: float = 3600.0
    max_attempts: int = 3

    def __post_init__(self) -> None:
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{self.name}: unknown time zone {self.timezone!r}") from None
        try:
            CronSim(self.cron, datetime.now(zone))
        except CronSimError as exc:
            raise ValueError(f"{self.name}: bad cron expression {self.cron!r}: {exc}") from None
        if not 0 < self.grace <= _MAX_GRACE:
            # Taken slots are kept a day (jobs.prune): a longer grace could run one twice.
            raise ValueError(f"{self.name}: grace must be positive and at most a day")

    def slot(self, now: datetime) -> datetime | None:
        """The latest slot at or before ``now`` that is less than ``grace`` old (UTC), or
        None."""
        zone = ZoneInfo(self.timezone)
        start = (now - timedelta(seconds=self.grace)).astimezone(zone)
        latest = None
        times = CronSim(self.cron, start)  # strictly after start, in cron's DST rules
        for _ in range(_MAX_SLOTS_SCANNED):
            fire = next(times)
            if fire > now:
                break
            latest = fire
        return None if latest is None else latest.astimezone(UTC)

    def next_after(self, now: datetime) -> datetime:
        """The first slot after ``now``, in the schedule's time zone (for operators)."""
        return next(CronSim(self.cron, now.astimezone(ZoneInfo(self.timezone))))

    def describe(self) -> str:
        return f"{self.cron} ({self.timezone})"


Schedule = Periodic | Calendar


class PeriodicJobs:
    def __init__(
        self,
        db: Database,
        queue: JobQueue,
        clock: Clock,
        schedules: Sequence[Schedule],
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
            slot = schedule.slot(now)
            if slot is None or self._last.get(schedule.name) == slot:
                continue
            async with self._db.transaction() as conn:
                if await job_store.take_tick(conn, schedule.name, slot):
                    job = self._queue.new(
                        schedule.spec,
                        Tick(slot=slot),
                        dedup_key=tick_key(schedule.name, slot),
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
