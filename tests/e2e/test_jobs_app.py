"""The job queue inside a running server: its worker and its periodic jobs."""

from __future__ import annotations

import asyncio

from kernel.jobs import Tick
from rtc_server.app import PRUNE_JOBS, App


async def test_the_servers_worker_runs_enqueued_jobs_and_its_periodic_ticks(app: App) -> None:
    assert app.db is not None and app.worker is not None
    await app.worker.listening.wait()
    # At start, this (only) instance took the current tick of jobs.prune; its job ran.
    async with asyncio.timeout(10):
        while await app.db.fetchval("SELECT count(*) FROM job_ticks") == 0:
            await asyncio.sleep(0.01)
    job_id = await app.jobs.enqueue(PRUNE_JOBS, Tick())
    assert job_id is not None
    async with asyncio.timeout(10):
        while await app.db.fetchval("SELECT count(*) FROM jobs") > 0:
            await asyncio.sleep(0.01)
    assert app.metrics.jobs_finished.labels("jobs.prune", "done")._value.get() >= 1
