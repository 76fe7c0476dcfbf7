"""``rtc-server jobs list`` and ``rtc-server jobs run NAME``: the scheduled jobs, for
operators.

Both build the server as ``serve`` would, without its ports (``App.prepare``: the
database, the kernel, the installed features and their schedules), so they list exactly
what a running server schedules. ``jobs run`` enqueues one extra run now in the shared
queue: a running server's workers take it at once (``NOTIFY``), whatever the schedule
already ran; handlers are idempotent, so nobody is told twice.
"""

from __future__ import annotations

import sys
from datetime import datetime
from zoneinfo import ZoneInfo

from kernel.jobs import Calendar, JobQueue, Schedule, Tick, tick_key
from rtc_server.app import App
from rtc_server.config import CoreSettings
from storage import jobs as job_store
from storage.database import Database


async def list_jobs(settings: CoreSettings) -> int:
    app = App(settings)
    await app.prepare()
    try:
        assert app.db is not None
        rows = await _rows(app.db, app.kit.declared.schedules, app.clock.now(), app.kit.timezone)
    finally:
        await app.stop()
    header = ("job", "schedule", "next run", "last run", "outcome")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return 0


async def _rows(
    db: Database, schedules: list[Schedule], now: datetime, timezone: str
) -> list[tuple[str, str, str, str, str]]:
    last = await job_store.last_ticks(db)
    keys = [tick_key(s.name, last[s.name]) for s in schedules if s.name in last]
    present = await job_store.by_dedup_keys(db, keys)
    rows = []
    for schedule in sorted(schedules, key=lambda s: s.name):
        zone = ZoneInfo(schedule.timezone if isinstance(schedule, Calendar) else timezone)
        slot = last.get(schedule.name)
        if slot is None:
            last_run, outcome = "never", "-"
        else:
            last_run = _local(slot, zone)
            job = present.get(tick_key(schedule.name, slot))
            if job is None:
                outcome = "done"  # a job that succeeded is deleted
            elif job.failed_at is not None:
                outcome = f"failed: {(job.last_error or '')[:60]}"
            elif job.leased:
                outcome = f"running (attempt {job.attempts})"
            else:
                outcome = "queued" if not job.attempts else f"retrying ({job.attempts} tries)"
        next_run = _local(schedule.next_after(now), zone)
        rows.append((schedule.name, schedule.describe(), next_run, last_run, outcome))
    return rows


def _local(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


async def run_job(settings: CoreSettings, name: str) -> int:
    app = App(settings)
    await app.prepare()
    try:
        assert app.db is not None
        schedules = {s.name: s for s in app.kit.declared.schedules}
        schedule = schedules.get(name)
        if schedule is None:
            known = ", ".join(sorted(schedules))
            print(f"rtc-server: no scheduled job {name!r}; the jobs: {known}", file=sys.stderr)
            return 2
        now = app.clock.now()
        job_id = await JobQueue(app.db, app.clock).enqueue(
            schedule.spec,
            Tick(slot=now),
            dedup_key=f"manual:{name}:{now.isoformat()}",
            max_attempts=schedule.max_attempts,
        )
    finally:
        await app.stop()
    print(f"{name}: job {job_id} enqueued; a running server's workers take it now")
    return 0
