"""Queries of the job queue (tables ``jobs`` and ``job_ticks``, migration 0030).

Times come from the caller (the server's injected clock), never from ``now()``, so a
test moves time by hand. See :mod:`kernel.jobs` for the queue's rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from storage.database import Database
from storage.events import Executor
from storage.retention import delete_batched

#: The channel ``enqueue`` notifies (on commit) when a job is due at once.
CHANNEL = "rtc_jobs"


@dataclass(frozen=True, slots=True)
class NewJob:
    kind: str
    payload: str  # JSON text
    run_at: datetime
    dedup_key: str | None = None
    max_attempts: int = 10


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: int
    kind: str
    payload: str  # JSON text
    attempt: int  # 1 for the first claim; the fencing token of this attempt
    max_attempts: int
    dedup_key: str | None


_ENQUEUE = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::int[])
        AS t (kind, payload, run_at, dedup_key, max_attempts)
), added AS (
    INSERT INTO jobs (kind, payload, run_at, dedup_key, max_attempts, created_at)
    SELECT kind, payload::jsonb, run_at, dedup_key, max_attempts, $6 FROM input
    ON CONFLICT (dedup_key) DO NOTHING
    RETURNING id, run_at
)
-- NOTIFY is delivered when the transaction commits (and not at all if it rolls back);
-- identical notifications of one transaction are folded into one.
SELECT array_agg(id) AS ids,
       CASE WHEN bool_or(run_at <= $6) THEN pg_notify($7, '') END AS notified
FROM added
"""


async def enqueue(db: Executor, jobs: Sequence[NewJob], now: datetime) -> list[int]:
    """Insert ``jobs`` (skipping those whose dedup key exists); returns the new ids.

    Run it on the connection of the caller's transaction and the jobs commit, or roll
    back, with the change that caused them.
    """
    if not jobs:
        return []
    row = await db.fetchrow(
        _ENQUEUE,
        [j.kind for j in jobs],
        [j.payload for j in jobs],
        [j.run_at for j in jobs],
        [j.dedup_key for j in jobs],
        [j.max_attempts for j in jobs],
        now,
        CHANNEL,
    )
    return list(row["ids"] or []) if row is not None else []


_CLAIM = """
WITH due AS (
    SELECT id FROM jobs
    WHERE run_at <= $1 AND failed_at IS NULL AND ($5::text[] IS NULL OR kind = ANY($5))
    ORDER BY run_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs j SET attempts = j.attempts + 1, leased_by = $3, run_at = $4
FROM due WHERE j.id = due.id
RETURNING j.id, j.kind, j.payload, j.attempts, j.max_attempts, j.dedup_key
"""


async def claim(
    db: Executor,
    worker: str,
    limit: int,
    now: datetime,
    lease: timedelta,
    kinds: Sequence[str] | None = None,
) -> list[ClaimedJob]:
    """Lease up to ``limit`` due jobs to ``worker`` until ``now + lease``."""
    rows = await db.fetch(
        _CLAIM, now, limit, worker, now + lease, None if kinds is None else list(kinds)
    )
    return [
        ClaimedJob(
            r["id"], r["kind"], r["payload"], r["attempts"], r["max_attempts"], r["dedup_key"]
        )
        for r in rows
    ]


async def complete(db: Executor, job_id: int, attempt: int) -> bool:
    """Delete a job that succeeded; False if the attempt is no longer the current one."""
    status = await db.execute("DELETE FROM jobs WHERE id = $1 AND attempts = $2", job_id, attempt)
    return status == "DELETE 1"


async def retry(db: Executor, job_id: int, attempt: int, run_at: datetime, error: str) -> bool:
    """Release a failed attempt, to be claimed again at ``run_at``."""
    status = await db.execute(
        """
        UPDATE jobs SET run_at = $3, leased_by = NULL, last_error = $4
        WHERE id = $1 AND attempts = $2
        """,
        job_id,
        attempt,
        run_at,
        error,
    )
    return status == "UPDATE 1"


async def fail(db: Executor, job_id: int, attempt: int, error: str, now: datetime) -> bool:
    """Give a job up: it stays, with ``failed_at`` set, until pruned."""
    status = await db.execute(
        """
        UPDATE jobs SET failed_at = $4, leased_by = NULL, last_error = $3
        WHERE id = $1 AND attempts = $2
        """,
        job_id,
        attempt,
        error,
        now,
    )
    return status == "UPDATE 1"


async def next_due(db: Executor, kinds: Sequence[str] | None = None) -> datetime | None:
    """When the earliest live job (of ``kinds``) becomes claimable (None: there is none)."""
    value: datetime | None = await db.fetchval(
        """
        SELECT min(run_at) FROM jobs
        WHERE failed_at IS NULL AND ($1::text[] IS NULL OR kind = ANY($1))
        """,
        None if kinds is None else list(kinds),
    )
    return value


async def take_tick(db: Executor, name: str, slot: datetime) -> bool:
    """Record tick ``slot`` of periodic job ``name``; True for the one caller that did."""
    row = await db.fetchval(
        "INSERT INTO job_ticks (name, slot) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1",
        name,
        slot,
    )
    return row is not None


async def last_ticks(db: Executor) -> dict[str, datetime]:
    """The latest slot taken of each scheduled job."""
    rows = await db.fetch("SELECT name, max(slot) AS slot FROM job_ticks GROUP BY name")
    return {row["name"]: row["slot"] for row in rows}


@dataclass(frozen=True, slots=True)
class KeyedJob:
    dedup_key: str
    attempts: int
    leased: bool
    last_error: str | None
    failed_at: datetime | None


async def by_dedup_keys(db: Executor, keys: Sequence[str]) -> dict[str, KeyedJob]:
    """The jobs still present of these keys (a job that succeeded is deleted)."""
    rows = await db.fetch(
        "SELECT dedup_key, attempts, leased_by IS NOT NULL AS leased, last_error, failed_at"
        " FROM jobs WHERE dedup_key = ANY($1::text[])",
        list(keys),
    )
    return {row["dedup_key"]: KeyedJob(*row.values()) for row in rows}


async def prune(db: Database, failed_before: datetime, ticks_before: datetime) -> int:
    """Delete failed jobs and tick records older than the given times; returns rows."""
    failed = await delete_batched(
        db, "jobs", "failed_at IS NOT NULL AND failed_at < $1", failed_before
    )
    ticks = await delete_batched(db, "job_ticks", "slot < $1", ticks_before)
    return failed + ticks


async def counts(db: Executor) -> dict[str, int]:
    """Jobs by state: ``queued`` (incl. waiting to retry), ``leased``, ``failed``."""
    row = await db.fetchrow(
        """
        SELECT count(*) FILTER (WHERE failed_at IS NULL AND leased_by IS NULL) AS queued,
               count(*) FILTER (WHERE failed_at IS NULL AND leased_by IS NOT NULL) AS leased,
               count(*) FILTER (WHERE failed_at IS NOT NULL) AS failed
        FROM jobs
        """
    )
    return {"queued": row["queued"], "leased": row["leased"], "failed": row["failed"]}


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1]) if status and status[-1].isdigit() else 0
